//! End-to-end tests of tracking-service over the zone-file provider: proxied
//! is never asked of a provider that cannot proxy (or the record would look
//! drifted forever), automatic TTLs match whatever the file holds, and a
//! record whose id changes on update keeps its tracked row.

mod tracking_support;

use tokio::net::TcpListener;
use tracking_support::*;
use trafego_common::clock::ManualClock;
use trafego_proto::tracking::{ChangeAction, GetTrackedRecordRequest, ReconcileRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zonefile_reconcile_is_idempotent_and_updates_in_place() {
    trafego_tests::init_test_logging();
    let dir = tempfile::tempdir().unwrap();
    let cache = start_cache_on(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        zonefile_args(dir.path()),
    )
    .await;
    let tracking = start_tracking(&cache.url, dir.path(), &[], ManualClock::new(T0)).await;
    let mut client = tracking_client(&tracking.url).await;
    let req = |records| ReconcileRequest {
        source: "s".into(),
        records,
        dry_run: false,
        force: false,
    };
    let r = client
        .reconcile(req(vec![
            host("app.example.com"),
            a("ip.example.com", "192.0.2.1"),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(actions(&r), vec![ChangeAction::Create; 2], "{r:#?}");
    let zone = std::fs::read_to_string(dir.path().join("example.com.zone")).unwrap();
    assert!(zone.contains("app"), "{zone}");
    let list = client
        .list_tracked_records(trafego_proto::tracking::ListTrackedRecordsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .records;
    assert!(
        list.iter().all(|t| !t.proxied),
        "no proxied record on a zone file: {list:?}"
    );

    let r = client
        .reconcile(req(vec![
            host("app.example.com"),
            a("ip.example.com", "192.0.2.1"),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(actions(&r), vec![ChangeAction::Unchanged; 2], "{r:#?}");

    let before = list
        .iter()
        .find(|t| t.name == "ip.example.com")
        .unwrap()
        .clone();
    let r = client
        .reconcile(req(vec![
            host("app.example.com"),
            a("ip.example.com", "192.0.2.2"),
        ]))
        .await
        .unwrap()
        .into_inner();
    let ch = change_of(&r, "ip.example.com");
    assert_eq!(ch.action, ChangeAction::Update as i32);
    assert!(ch.applied, "{ch:?}");
    let after = client
        .get_tracked_record(GetTrackedRecordRequest {
            record_id: ch.record_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert_eq!(after.content, "192.0.2.2");
    assert_eq!(after.tracked_at, before.tracked_at);
    assert_eq!(after.first_seen, before.first_seen);
    if after.record_id != before.record_id {
        let e = client
            .get_tracked_record(GetTrackedRecordRequest {
                record_id: before.record_id.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
    }
    let count = client
        .list_tracked_records(trafego_proto::tracking::ListTrackedRecordsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .records
        .len();
    assert_eq!(count, 2, "one row per record, no leftover of the old id");
    tracking.shutdown().await;
    cache.shutdown().await;
}
