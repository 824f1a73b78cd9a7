//! Internal errors reach callers as `internal error (request id …)` and
//! nothing more: no SQL, no table names, no file paths. The detail goes to
//! the service's log, on a line carrying that request id.
//!
//! Each test runs the real binary (its JSON log is collected), breaks its
//! database through a second SQLite connection (drops a table the call
//! reads), and calls it with a known `x-request-id`.

use std::path::Path;

use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};
use tonic::Code;
use tonic::transport::Channel;
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::cache::{GetRecordRequest, RefreshCacheRequest};
use trafego_proto::tracking::tracking_service_client::TrackingServiceClient;
use trafego_proto::tracking::{ListTrackedRecordsRequest, RunOrphanSweepRequest};
use trafego_tests::*;

/// Drops `table` from the SQLite database at `db`, as a second connection.
fn drop_table(db: &Path, table: &str) {
    let mut c = SqliteConnection::establish(&db.display().to_string()).expect("open db");
    c.batch_execute(&format!("PRAGMA busy_timeout = 10000; DROP TABLE {table};"))
        .expect("drop table");
}

fn with_request_id<T>(msg: T, id: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("x-request-id", id.parse().unwrap());
    r
}

/// The status says only "internal error (request id <id>)"; the log has the
/// detail (`detail` is a fragment of SQLite's message) on a line with the id.
fn assert_internal(
    status: &tonic::Status,
    id: &str,
    dir: &Path,
    table: &str,
    log: &str,
    detail: &str,
) {
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    let msg = status.message();
    assert_eq!(
        msg,
        format!("internal error (request id {id})"),
        "{status:?}"
    );
    for leak in [
        table,
        detail,
        "SELECT",
        "database",
        &dir.display().to_string(),
        ".db",
    ] {
        assert!(!msg.contains(leak), "{leak:?} leaked: {msg}");
    }
    let line = log
        .lines()
        .find(|l| l.contains(id) && l.contains("internal error") && l.contains(detail))
        .unwrap_or_else(|| panic!("no log line with {id} and {detail:?}:\n{log}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
    assert_eq!(v["level"], "ERROR", "{line}");
}

fn cache_env(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("CACHE_LISTEN_ADDR", "127.0.0.1:0".to_string()),
        ("CACHE_DB_PATH", dir.join("cache.db").display().to_string()),
        ("DNS_ZONE", "example.com".into()),
        (
            "ZONEFILE_PATH",
            dir.join("example.com.zone").display().to_string(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_service_database_failure_names_the_request_id_only() {
    let dir = tempdir();
    let mut svc = spawn_service("cache-service", &cache_env(dir.path())).await;
    let ch = Channel::from_shared(format!("http://{}", svc.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = CacheServiceClient::new(ch);
    // The start-up refresh writes dns_records: let it finish first, or the
    // dropped table fails the refresh and the read answers "not ready".
    c.refresh_cache(RefreshCacheRequest {
        force: false,
        ..Default::default()
    })
    .await
    .expect("first refresh");
    drop_table(&dir.path().join("cache.db"), "dns_records");
    let id = "req-internal-cache-0001";
    let err = c
        .get_record(with_request_id(
            GetRecordRequest {
                record_id: "0123456789abcdef0123456789abcdef".into(),
            },
            id,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.metadata()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok()),
        Some(id)
    );
    assert!(svc.terminate().await.success());
    assert_internal(
        &err,
        id,
        dir.path(),
        "dns_records",
        &svc.log_text(),
        "no such table",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_service_database_failure_names_the_request_id_only() {
    let dir = tempdir();
    let mut cache = spawn_service("cache-service", &cache_env(dir.path())).await;
    let tracking_db = dir.path().join("tracking.db");
    let mut tracking = spawn_service(
        "tracking-service",
        &[
            ("TRACKING_LISTEN_ADDR", "127.0.0.1:0".to_string()),
            ("TRACKING_DB_PATH", tracking_db.display().to_string()),
            ("CACHE_SERVICE_URL", format!("http://{}", cache.addr)),
        ],
    )
    .await;
    let ch = Channel::from_shared(format!("http://{}", tracking.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = TrackingServiceClient::new(ch);
    drop_table(&tracking_db, "dns_tracked_records");
    let id = "req-internal-tracking-0002";
    let err = c
        .list_tracked_records(with_request_id(ListTrackedRecordsRequest::default(), id))
        .await
        .unwrap_err();
    // A sweep that cannot read its table says why it skipped without the
    // database's words either.
    let sweep = c
        .run_orphan_sweep(with_request_id(
            RunOrphanSweepRequest { dry_run: false },
            "req-internal-tracking-0003",
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!sweep.ran, "{sweep:?}");
    assert!(
        sweep
            .skipped_reason
            .contains("internal error (request id req-internal-tracking-0003)"),
        "{sweep:?}"
    );
    for leak in ["no such table", "dns_tracked_records", "database", ".db"] {
        assert!(
            !sweep.skipped_reason.contains(leak),
            "{leak:?} leaked: {sweep:?}"
        );
    }
    assert!(tracking.terminate().await.success());
    assert!(cache.terminate().await.success());
    assert_internal(
        &err,
        id,
        dir.path(),
        "dns_tracked_records",
        &tracking.log_text(),
        "no such table",
    );
}
