//! The PostgreSQL harness against Debian's real `postgresql`: a throwaway
//! cluster starts, takes a client over its URL (TCP, password), keeps what
//! was written, refuses a wrong password, and stops; two clusters run side by
//! side without seeing each other. Needs `postgresql` (`apt-get install
//! postgresql libpq-dev`); never skips.

use std::time::Instant;

use trafego_tests::postgres::PgCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_takes_clients_over_its_url() {
    let started = Instant::now();
    let pg = PgCluster::start().await.unwrap();
    eprintln!("PostgreSQL ready in {:?}", started.elapsed());
    assert_eq!(
        pg.url,
        format!(
            "postgres://trafego:{}@127.0.0.1:{}/trafego",
            pg.password, pg.port
        )
    );

    pg.psql("CREATE TABLE hosts (name text PRIMARY KEY, ttl integer NOT NULL)")
        .await
        .unwrap();
    pg.psql("INSERT INTO hosts VALUES ('a.example.com', 60), ('b.example.com', 300)")
        .await
        .unwrap();
    assert_eq!(
        pg.psql("SELECT name, ttl FROM hosts ORDER BY name")
            .await
            .unwrap(),
        "a.example.com|60\nb.example.com|300"
    );
    // The role owns its database and is no superuser.
    assert_eq!(
        pg.psql("SELECT current_user, current_database(), rolsuper FROM pg_roles WHERE rolname = current_user")
            .await
            .unwrap(),
        "trafego|trafego|f"
    );
    // Errors come back as errors.
    let err = pg
        .psql("INSERT INTO hosts VALUES ('a.example.com', 1)")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("duplicate key"), "{err}");

    // The password is checked (scram-sha-256 over TCP).
    let wrong = format!("postgres://trafego:wrong@127.0.0.1:{}/trafego", pg.port);
    let err = pg.psql_url(&wrong, "SELECT 1").await.unwrap_err();
    assert!(
        err.to_string().contains("password authentication failed"),
        "{err}"
    );

    // A second database for a second service, owned by the same role.
    let other = pg.create_database("tracking").await.unwrap();
    assert!(other.ends_with("/tracking"), "{other}");
    let err = pg
        .psql_url(&other, "SELECT count(*) FROM hosts")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");

    let port = pg.port;
    let dir = pg.dir().to_path_buf();
    pg.stop().unwrap();
    // Stopped: nothing listens on the port, and the directory is gone.
    let refused = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(refused.is_err(), "the postmaster still listens on {port}");
    assert!(!dir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clusters_run_side_by_side() {
    let started = Instant::now();
    let (a, b) = tokio::join!(PgCluster::start(), PgCluster::start());
    let (a, b) = (a.unwrap(), b.unwrap());
    eprintln!("two PostgreSQL clusters ready in {:?}", started.elapsed());
    assert_ne!(a.port, b.port);
    assert_ne!(a.password, b.password);

    a.psql("CREATE TABLE only_in_a (x integer)").await.unwrap();
    a.psql("INSERT INTO only_in_a VALUES (1)").await.unwrap();
    let err = b.psql("SELECT * FROM only_in_a").await.unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    // Each cluster has its own password: a's does not open b.
    let crossed = format!(
        "postgres://trafego:{}@127.0.0.1:{}/trafego",
        a.password, b.port
    );
    assert!(b.psql_url(&crossed, "SELECT 1").await.is_err());

    // Dropping one (pg_ctl stop -m immediate) leaves the other running.
    let a_port = a.port;
    drop(a);
    assert!(std::net::TcpStream::connect(("127.0.0.1", a_port)).is_err());
    assert_eq!(b.psql("SELECT 41 + 1").await.unwrap(), "42");
}
