//! Replicas that serve TLS forward over TLS: the built binaries on one real
//! PostgreSQL (a database per service), each replica serving TLS with a
//! bearer token, cache-service asking for client certificates (mTLS).
//!
//! - A cache-service follower with `FORWARD_CA_FILE` forwards `ApplyChanges`
//!   to the leader over TLS, presenting its own certificate to the leader's
//!   mTLS and checking the leader's against the CA for the host of its
//!   advertised address (`127.0.0.1`): the write is applied once.
//! - A follower whose `FORWARD_SERVER_NAME` the leader's certificate does not
//!   hold refuses to forward (`UNAVAILABLE` naming the leader, nothing
//!   written): the leader's certificate is really checked.
//! - A follower without `FORWARD_CA_FILE` answers `UNAVAILABLE` naming the
//!   leader and the setting, and warned so at start.
//! - A tracking-service follower (`FORWARD_SERVER_NAME=localhost`) forwards
//!   `Reconcile` to its leader, which writes through a cache-service
//!   follower, which forwards to the cache leader: two TLS forwards, one
//!   record at the provider, tracked on every tracking replica.
//!
//! Waits poll a condition under a deadline, never a fixed sleep. Needs
//! `cargo build -p cache-service -p tracking-service` first, and PostgreSQL.

use std::future::Future;
use std::time::{Duration, Instant};

use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::cache::{ApplyChangesRequest, ApplyChangesResponse, GetCacheStatusRequest};
use trafego_proto::tracking::tracking_service_client::TrackingServiceClient;
use trafego_proto::tracking::{
    DesiredRecord, GetTrackerStatusRequest, ListTrackedRecordsRequest, ReconcileRequest,
};
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions};
use trafego_tests::{RunningBinary, TestPki, create_a, free_port, make_pki, spawn_service};

const ZONE: &str = "example.com";
const CF: &str = "cf-token-replicas-tls";
const CACHE_AUTH: &str = "cache-replicas-tls-token-0123";
const TRACKING_AUTH: &str = "tracking-replicas-tls-token-0123";
const INTERVAL: &str = "200ms";

/// A channel to `port` over TLS checked against the test CA (as
/// `localhost`), with the client certificate.
async fn tls_channel(pki: &TestPki, port: u16) -> Option<Channel> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&pki.ca).unwrap()))
        .domain_name("localhost")
        .identity(Identity::from_pem(
            std::fs::read(&pki.client_cert).unwrap(),
            std::fs::read(&pki.client_key).unwrap(),
        ));
    Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .ok()?
        .tls_config(tls)
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .ok()
}

fn bearer<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// Polls `f` until it gives a value, for at most `within`.
async fn until<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn cache_role(pki: &TestPki, port: u16) -> Option<String> {
    let mut c = CacheServiceClient::new(tls_channel(pki, port).await?);
    let s = c
        .get_cache_status(bearer(GetCacheStatusRequest {}, CACHE_AUTH))
        .await
        .ok()?
        .into_inner();
    Some(s.role)
}

async fn tracking_role(pki: &TestPki, port: u16) -> Option<String> {
    let mut c = TrackingServiceClient::new(tls_channel(pki, port).await?);
    let s = c
        .get_tracker_status(bearer(GetTrackerStatusRequest {}, TRACKING_AUTH))
        .await
        .ok()?
        .into_inner();
    Some(s.role)
}

/// `ApplyChanges` of one A record, sent to the cache replica on `port`.
async fn create_at(
    pki: &TestPki,
    port: u16,
    name: &str,
    address: &str,
) -> Result<tonic::Response<ApplyChangesResponse>, tonic::Status> {
    let mut c = CacheServiceClient::new(tls_channel(pki, port).await.unwrap());
    c.apply_changes(bearer(
        ApplyChangesRequest {
            changes: vec![create_a(name, address)],
        },
        CACHE_AUTH,
    ))
    .await
}

/// Starts a replica on `port`; waits until its status reports `role`.
async fn replica<F, Fut>(
    bin: &str,
    envs: Vec<(&'static str, String)>,
    role: &str,
    status: F,
) -> RunningBinary
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<String>>,
{
    let proc = spawn_service(bin, &envs).await;
    until(
        &format!("{bin} to report role {role}"),
        Duration::from_secs(20),
        || {
            let f = status();
            async move { f.await.filter(|r| r == role) }
        },
    )
    .await;
    proc
}

#[tokio::test]
async fn replicas_serving_tls_forward_writes_over_tls_with_their_certificates() {
    let pki = make_pki();
    let cache_db = trafego_tests::postgres::fresh_database("tls_cache")
        .await
        .expect("PostgreSQL for cache-service");
    let tracking_db = trafego_tests::postgres::fresh_database("tls_tracking")
        .await
        .expect("PostgreSQL for tracking-service");
    let fake = FakeCloudflare::start(FakeOptions::new(CF, ZONE))
        .await
        .unwrap();
    let dir = trafego_tests::tempdir();
    let path = |p: &std::path::Path| p.display().to_string();

    // cache-service replicas: TLS, mTLS, a token; `forward` their extra settings.
    let cache_env = |i: usize, port: u16, forward: &[(&'static str, String)]| {
        let mut env = vec![
            ("CACHE_LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("ADVERTISE_ADDRESS", format!("127.0.0.1:{port}")),
            ("CACHE_DATABASE_URL", cache_db.clone()),
            ("CACHE_DB_PATH", path(&dir.path().join(format!("c{i}.db")))),
            ("DNS_PROVIDER", "cloudflare".into()),
            ("DNS_ZONE", ZONE.into()),
            ("CLOUDFLARE_API_URL", fake.base_url()),
            ("CLOUDFLARE_TOKEN", CF.into()),
            ("LEADER_RETRY_INTERVAL", INTERVAL.into()),
            ("LEADER_CHECK_INTERVAL", INTERVAL.into()),
            ("AUTH_TOKEN", CACHE_AUTH.into()),
            ("TLS_CERT_FILE", path(&pki.server_cert)),
            ("TLS_KEY_FILE", path(&pki.server_key)),
            ("TLS_CLIENT_CA_FILE", path(&pki.ca)),
        ];
        env.extend_from_slice(forward);
        env
    };
    let with_ca = [("FORWARD_CA_FILE", path(&pki.ca))];
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let roles = |port: u16| {
        let pki = &pki;
        move || cache_role(pki, port)
    };
    let _leader = replica(
        "cache-service",
        cache_env(0, ports[0], &with_ca),
        "leader",
        roles(ports[0]),
    )
    .await;
    let _follower = replica(
        "cache-service",
        cache_env(1, ports[1], &with_ca),
        "follower",
        roles(ports[1]),
    )
    .await;
    let wrong_name = [
        ("FORWARD_CA_FILE", path(&pki.ca)),
        ("FORWARD_SERVER_NAME", "not-the-leader.example".to_string()),
    ];
    let _misnamed = replica(
        "cache-service",
        cache_env(2, ports[2], &wrong_name),
        "follower",
        roles(ports[2]),
    )
    .await;
    let unforwarding = replica(
        "cache-service",
        cache_env(3, ports[3], &[]),
        "follower",
        roles(ports[3]),
    )
    .await;
    let leader_addr = format!("127.0.0.1:{}", ports[0]);

    // A write sent to the follower is forwarded over TLS and applied once.
    let r = create_at(&pki, ports[1], "via-follower.example.com", "192.0.2.10")
        .await
        .expect("forwarded ApplyChanges");
    assert_eq!(r.metadata().get("x-trafego-role").unwrap(), "follower");
    let r = r.into_inner();
    assert_eq!((r.succeeded, r.failed), (1, 0), "{r:?}");
    let at_provider = |name: &str| {
        fake.records()
            .into_iter()
            .filter(|r| r.name == name)
            .count()
    };
    assert_eq!(at_provider("via-follower.example.com"), 1);

    // The leader's certificate does not hold the name: nothing is forwarded.
    let e = create_at(&pki, ports[2], "misnamed.example.com", "192.0.2.11")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains(&leader_addr), "{e:?}");
    assert_eq!(at_provider("misnamed.example.com"), 0);

    // No FORWARD_CA_FILE: the follower names the leader and the setting.
    let e = create_at(&pki, ports[3], "unforwarded.example.com", "192.0.2.12")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains(&leader_addr) && e.message().contains("FORWARD_CA_FILE"),
        "{e:?}"
    );
    assert_eq!(
        e.metadata().get("x-trafego-leader").unwrap(),
        leader_addr.as_str()
    );
    assert_eq!(at_provider("unforwarded.example.com"), 0);
    assert!(
        unforwarding
            .log_text()
            .contains("FORWARD_CA_FILE is unset: a follower answers write calls UNAVAILABLE"),
        "{}",
        unforwarding.log_text()
    );

    // tracking-service replicas: TLS and a token, talking to the cache
    // follower (mTLS); a tracking follower forwards as `localhost`.
    let tracking_env = |i: usize, port: u16| {
        vec![
            ("TRACKING_LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("ADVERTISE_ADDRESS", format!("127.0.0.1:{port}")),
            ("TRACKING_DATABASE_URL", tracking_db.clone()),
            (
                "TRACKING_DB_PATH",
                path(&dir.path().join(format!("t{i}.db"))),
            ),
            (
                "CACHE_SERVICE_URL",
                format!("https://localhost:{}", ports[1]),
            ),
            ("CACHE_SERVICE_TOKEN", CACHE_AUTH.into()),
            ("CACHE_SERVICE_CA_FILE", path(&pki.ca)),
            ("CACHE_SERVICE_CLIENT_CERT_FILE", path(&pki.client_cert)),
            ("CACHE_SERVICE_CLIENT_KEY_FILE", path(&pki.client_key)),
            ("LEADER_RETRY_INTERVAL", INTERVAL.into()),
            ("LEADER_CHECK_INTERVAL", INTERVAL.into()),
            ("AUTH_TOKEN", TRACKING_AUTH.into()),
            ("TLS_CERT_FILE", path(&pki.server_cert)),
            ("TLS_KEY_FILE", path(&pki.server_key)),
            ("FORWARD_CA_FILE", path(&pki.ca)),
            ("FORWARD_SERVER_NAME", "localhost".into()),
        ]
    };
    let tports = [free_port(), free_port()];
    let troles = |port: u16| {
        let pki = &pki;
        move || tracking_role(pki, port)
    };
    let _tleader = replica(
        "tracking-service",
        tracking_env(0, tports[0]),
        "leader",
        troles(tports[0]),
    )
    .await;
    let _tfollower = replica(
        "tracking-service",
        tracking_env(1, tports[1]),
        "follower",
        troles(tports[1]),
    )
    .await;
    let mut t = TrackingServiceClient::new(tls_channel(&pki, tports[1]).await.unwrap());
    let r = t
        .reconcile(bearer(
            ReconcileRequest {
                source: "tls".into(),
                records: vec![DesiredRecord {
                    hostname: "app.example.com".into(),
                    r#type: Some("A".into()),
                    content: Some("192.0.2.20".into()),
                    ..Default::default()
                }],
                ..Default::default()
            },
            TRACKING_AUTH,
        ))
        .await
        .expect("forwarded Reconcile");
    assert_eq!(r.metadata().get("x-trafego-role").unwrap(), "follower");
    assert_eq!(at_provider("app.example.com"), 1);
    for port in tports {
        let mut t = TrackingServiceClient::new(tls_channel(&pki, port).await.unwrap());
        let tracked = t
            .list_tracked_records(bearer(ListTrackedRecordsRequest::default(), TRACKING_AUTH))
            .await
            .unwrap()
            .into_inner()
            .records;
        assert!(
            tracked.iter().any(|r| r.name == "app.example.com"),
            "tracked on the replica at {port}: {tracked:?}"
        );
    }
}
