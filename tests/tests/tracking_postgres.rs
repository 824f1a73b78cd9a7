//! tracking-service on PostgreSQL, end to end: started with a PostgreSQL URL
//! against a real cache-service and the fake Cloudflare, it reconciles 200
//! hostnames, orphans and sweeps some, restarts on the same database and
//! finds its rows, and runs the fifty-overlapping-reconciles scenario of
//! `tracking_reconcile.rs` (invariant 5) on PostgreSQL. One throwaway
//! cluster per test binary, a database per test. Needs `postgresql`
//! (`apt-get install postgresql libpq-dev`); never skips.

mod tracking_support;

use std::time::Duration;

use tracking_support::*;
use trafego_proto::tracking::ChangeAction;
use trafego_tests::fake_cloudflare::FakeRecord;
use trafego_tests::postgres;

/// A fresh database of this binary's cluster, or a failure saying what to install.
async fn database() -> String {
    postgres::fresh_database("tracking")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Runs `sql` against `url` and returns the rows as psql prints them.
async fn sql(url: &str, sql: &str) -> String {
    postgres::shared()
        .await
        .unwrap()
        .psql_url(url, sql)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_orphan_sweep_and_restart_on_postgres() {
    let url = database().await;
    let args = [
        "--database-url",
        url.as_str(),
        "--cleanup-orphaned",
        "true",
        "--cleanup-grace-period",
        "15m",
    ];
    let foreign = FakeRecord::new("A", "foreign.example.com", "198.51.100.7");
    let mut env = Env::start(vec![foreign], &args).await;

    let names: Vec<String> = (0..200).map(|i| format!("h{i:03}.example.com")).collect();
    let all: Vec<_> = names.iter().map(|n| a(n, "192.0.2.1")).collect();
    let r = env.reconcile("s", all.clone()).await;
    assert_eq!(r.summary.unwrap().created, 200);
    assert_eq!(env.fake.count(), 201);
    // The rows are in PostgreSQL; no SQLite file was made beside cache-service's.
    assert_eq!(
        sql(
            &url,
            "SELECT count(*) FROM dns_tracked_records WHERE app_managed"
        )
        .await,
        "200"
    );
    assert_eq!(
        sql(
            &url,
            "SELECT count(*) FROM dns_declarations WHERE source = 's'"
        )
        .await,
        "200"
    );
    assert!(!env.dir.path().join("tracking.db").exists());
    // The second identical call writes nothing.
    env.fake.reset_stats();
    let r = env.reconcile("s", all).await;
    assert!(actions(&r).iter().all(|a| *a == ChangeAction::Unchanged));
    assert_eq!(writes(&env.fake.stats()), 0);

    // 40 of 200 go away (20%, under the 30% guard): orphaned, then swept
    // once the grace period has passed.
    let kept: Vec<_> = names[..160].iter().map(|n| a(n, "192.0.2.1")).collect();
    let r = env.reconcile("s", kept.clone()).await;
    let orphaned = actions(&r)
        .iter()
        .filter(|a| **a == ChangeAction::Orphan)
        .count();
    assert_eq!(orphaned, 40, "{r:?}");
    env.clock.advance(Duration::from_secs(14 * 60));
    let s = env.sweep(false).await;
    assert_eq!((s.within_grace, s.deleted.len()), (40, 0));
    env.clock.advance(Duration::from_secs(2 * 60));
    let s = env.sweep(false).await;
    assert_eq!(s.deleted.len(), 40, "{s:?}");
    assert!(s.deleted.iter().all(|d| d.deleted));
    assert_eq!(env.fake.count(), 161);
    assert!(
        env.fake
            .records()
            .iter()
            .any(|r| r.name == "foreign.example.com"),
        "a record someone else made is left alone"
    );
    assert_eq!(
        sql(&url, "SELECT count(*) FROM orphaned_records_history").await,
        "40"
    );

    // Restart on the same database: the rows are there, and nothing is written.
    env.restart_tracking(&args).await;
    let tracked = env.tracked().await;
    assert_eq!(tracked.len(), 160);
    assert!(tracked.iter().all(|t| t.app_managed && !t.is_orphaned));
    let status = env.status().await;
    assert_eq!(
        status.last_sweep_deleted, 40,
        "the last sweep is remembered"
    );
    env.fake.reset_stats();
    let r = env.reconcile("s", kept).await;
    assert!(actions(&r).iter().all(|a| *a == ChangeAction::Unchanged));
    assert_eq!(writes(&env.fake.stats()), 0);
}

/// `tracking_reconcile.rs`'s fifty overlapping reconciles, on PostgreSQL:
/// one record per hostname at the provider and one tracked row for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_overlapping_reconciles_on_postgres() {
    let url = database().await;
    let mut env = Env::start(vec![], &["--database-url", url.as_str()]).await;
    fifty_overlapping_reconciles(&mut env).await;
    assert_eq!(
        sql(&url, "SELECT count(*) FROM dns_tracked_records").await,
        "20"
    );
}

/// `DATABASE_URL` (the shared setting) selects PostgreSQL too when
/// `TRACKING_DATABASE_URL` is not set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_database_url_selects_postgres() {
    let url = database().await;
    let mut env = Env::start(vec![], &["--shared-database-url", url.as_str()]).await;
    env.reconcile("s", vec![a("one.example.com", "192.0.2.1")])
        .await;
    assert_eq!(
        sql(&url, "SELECT name FROM dns_tracked_records").await,
        "one.example.com"
    );
}

/// A schema of its own in a shared database, as README.md says:
/// `?options=-csearch_path%3D<schema>` puts every table there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_of_its_own_through_search_path() {
    let url = database().await;
    sql(&url, "CREATE SCHEMA tracking").await;
    let in_schema = format!("{url}?options=-csearch_path%3Dtracking");
    let mut env = Env::start(vec![], &["--database-url", in_schema.as_str()]).await;
    env.reconcile("s", vec![a("one.example.com", "192.0.2.1")])
        .await;
    assert_eq!(
        sql(&url, "SELECT name FROM tracking.dns_tracked_records").await,
        "one.example.com"
    );
    assert_eq!(
        sql(
            &url,
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        .await,
        "0",
        "nothing is made outside the schema"
    );
}
