//! End-to-end tests of missing and drifted records: a tracked record gone
//! from a fresh cache is flagged missing and recreated by the next
//! reconcile; an app-managed record changed behind the app's back is put
//! back, an unmanaged one is left; cache refresh events trigger the check;
//! MANAGED_HOSTNAMES is a built-in source kept in sync.

mod tracking_support;

use tracking_support::*;
use trafego_proto::tracking::{ChangeAction, TrackRecordRequest};
use trafego_tests::fake_cloudflare::FakeRecord;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_record_is_flagged_and_recreated() {
    let mut env = Env::start(vec![], &[]).await;
    let recs = vec![
        a("m.example.com", "192.0.2.1"),
        a("n.example.com", "192.0.2.2"),
    ];
    let r = env.reconcile("s", recs.clone()).await;
    let old_id = change_of(&r, "m.example.com").record_id.clone();
    let tracked_at = env.tracked().await[0].tracked_at;
    assert!(env.fake.remove(&old_id));
    env.refresh().await;
    // The sweep (or the follower, on the refresh event) flags it.
    let s = env.sweep(false).await;
    assert!(
        !s.ran && s.skipped_reason.contains("CLEANUP_ORPHANED"),
        "{s:?}"
    );
    let st = env.status().await;
    assert_eq!(st.missing, 1);
    let m = env
        .tracked()
        .await
        .into_iter()
        .find(|t| t.name == "m.example.com")
        .unwrap();
    assert!(m.missing);
    assert_eq!(m.state, "missing");

    let r = env.reconcile("s", recs).await;
    assert_eq!(
        change_of(&r, "m.example.com").action,
        ChangeAction::Create as i32
    );
    assert_eq!(
        change_of(&r, "n.example.com").action,
        ChangeAction::Unchanged as i32
    );
    assert_eq!(env.at_provider("m.example.com").len(), 1);
    let m = env
        .tracked()
        .await
        .into_iter()
        .find(|t| t.name == "m.example.com")
        .unwrap();
    assert!(!m.missing && m.app_managed);
    assert_ne!(m.record_id, old_id);
    assert_eq!(
        m.tracked_at, tracked_at,
        "the row is kept for its (name, type)"
    );
    assert_eq!(env.status().await.missing, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_put_back_when_managed_and_left_when_not() {
    let mut env = Env::start(
        vec![FakeRecord::new("A", "theirs.example.com", "192.0.2.8")],
        &[],
    )
    .await;
    let recs = vec![
        a("ours.example.com", "192.0.2.1"),
        a("theirs.example.com", "192.0.2.8"),
    ];
    let r = env.reconcile("s", recs.clone()).await;
    assert_eq!(actions(&r), vec![ChangeAction::Create, ChangeAction::Adopt]);
    let ours = change_of(&r, "ours.example.com").record_id.clone();
    let theirs = change_of(&r, "theirs.example.com").record_id.clone();
    env.fake.update_content(&ours, "203.0.113.1");
    env.fake.update_content(&theirs, "203.0.113.2");
    env.refresh().await;
    env.sweep(false).await;
    let drifted: Vec<_> = env
        .tracked()
        .await
        .into_iter()
        .filter(|t| t.metadata.contains("drift"))
        .map(|t| t.name)
        .collect();
    assert_eq!(drifted.len(), 2, "both reported as drifted: {drifted:?}");

    env.fake.reset_stats();
    let r = env.reconcile("s", recs).await;
    assert_eq!(
        change_of(&r, "ours.example.com").action,
        ChangeAction::Update as i32
    );
    assert_eq!(
        change_of(&r, "theirs.example.com").action,
        ChangeAction::Conflict as i32
    );
    assert_eq!(
        env.at_provider("ours.example.com")[0].content,
        "192.0.2.1",
        "put back"
    );
    assert_eq!(
        env.at_provider("theirs.example.com")[0].content,
        "203.0.113.2",
        "left alone"
    );
    assert_eq!(
        env.fake.stats().update + env.fake.stats().batch,
        1,
        "{:?}",
        env.fake.stats()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_event_triggers_the_missing_check() {
    let mut env = Env::start(vec![], &[]).await;
    let r = env
        .reconcile("s", vec![a("w.example.com", "192.0.2.1")])
        .await;
    // Let the follower subscribe: the start-up sync marks the service reachable.
    let mut client = env.client.clone();
    eventually("start-up sync", || {
        let mut c = client.clone();
        async move {
            c.get_tracker_status(trafego_proto::tracking::GetTrackerStatusRequest {})
                .await
                .map(|s| s.into_inner().cache_service_reachable)
                .unwrap_or(false)
        }
    })
    .await;
    env.fake.remove(&r.changes[0].record_id);
    // A refresh publishes REFRESHED; the follower re-checks without a sweep.
    eventually("missing flagged after a refresh event", || {
        let mut cache = env.cache_client.clone();
        let mut c = client.clone();
        async move {
            let _ = cache
                .refresh_cache(trafego_proto::cache::RefreshCacheRequest {
                    force: true,
                    ..Default::default()
                })
                .await;
            c.get_tracker_status(trafego_proto::tracking::GetTrackerStatusRequest {})
                .await
                .map(|s| s.into_inner().missing == 1)
                .unwrap_or(false)
        }
    })
    .await;
    client
        .get_tracker_status(trafego_proto::tracking::GetTrackerStatusRequest {})
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_hostnames_are_a_built_in_source() {
    let env = Env::start(
        vec![],
        &[
            "--managed-hostnames",
            "static.example.com:A:192.0.2.77:300:false,mx.example.com:TXT:v=spf1 -all",
        ],
    )
    .await;
    let fake = env.fake.clone();
    eventually("MANAGED_HOSTNAMES created at start", || {
        let f = fake.clone();
        async move { f.records().len() == 2 }
    })
    .await;
    let mut env = env;
    let st = env.at_provider("static.example.com");
    assert_eq!((st[0].content.as_str(), st[0].ttl), ("192.0.2.77", 300));
    // Another source declaring and dropping it does not orphan it.
    env.reconcile("s", vec![a("static.example.com", "192.0.2.77")])
        .await;
    let r = env.try_reconcile("s", vec![], false, true).await.unwrap();
    assert!(actions(&r).is_empty(), "{r:?}");
    let static_row = env
        .tracked()
        .await
        .into_iter()
        .find(|t| t.name == "static.example.com")
        .unwrap();
    assert!(!static_row.is_orphaned);
    assert_eq!(static_row.source, "managed-hostnames");
    // Deleted behind the app's back, it comes back on the next refresh event.
    let id = static_row.record_id.clone();
    env.fake.remove(&id);
    eventually("managed hostname recreated", || {
        let f = fake.clone();
        let mut cache = env.cache_client.clone();
        async move {
            let _ = cache
                .refresh_cache(trafego_proto::cache::RefreshCacheRequest {
                    force: true,
                    ..Default::default()
                })
                .await;
            f.records().iter().any(|r| r.name == "static.example.com")
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_record_adopts_explicitly_and_untrack_never_deletes() {
    let mut env = Env::start(
        vec![FakeRecord::new("A", "legacy.example.com", "192.0.2.3")],
        &[],
    )
    .await;
    let id = env.fake.records()[0].id.clone();
    let e = env
        .client
        .get_tracked_record(trafego_proto::tracking::GetTrackedRecordRequest {
            record_id: id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let t = env
        .client
        .track_record(TrackRecordRequest {
            record_id: id.clone(),
            app_managed: false,
            source: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert!(!t.app_managed);
    // Tracking it again as app-managed is the explicit adoption.
    let t = env
        .client
        .track_record(TrackRecordRequest {
            record_id: id.clone(),
            app_managed: true,
            source: "ops".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert!(t.app_managed);
    // Now it is the app's: a declaration with other content updates it.
    let r = env
        .reconcile("ops", vec![a("legacy.example.com", "192.0.2.4")])
        .await;
    assert_eq!(actions(&r), vec![ChangeAction::Update]);
    let e = env
        .client
        .track_record(TrackRecordRequest {
            // Well-formed (the provider's 32 hex digits) but unknown: NOT_FOUND.
            record_id: "0123456789abcdef0123456789abcdef".into(),
            app_managed: true,
            source: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    env.client
        .untrack_record(trafego_proto::tracking::UntrackRecordRequest {
            record_id: r.changes[0].record_id.clone(),
        })
        .await
        .unwrap();
    assert!(env.tracked().await.is_empty());
    assert_eq!(
        env.fake.count(),
        1,
        "untracking never deletes at the provider"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_and_status_counts() {
    let mut env = Env::start(vec![], &[]).await;
    let recs = (0..25)
        .map(|i| a(&format!("p{i:02}.example.com"), "192.0.2.1"))
        .collect();
    env.reconcile("s", recs).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = env
            .client
            .list_tracked_records(trafego_proto::tracking::ListTrackedRecordsRequest {
                page_size: 10,
                page_token: token.clone(),
                app_managed: Some(true),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.records.len() <= 10);
        seen.extend(page.records.into_iter().map(|r| r.name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
    assert_eq!(seen.len(), 25);
    let e = env
        .client
        .list_tracked_records(trafego_proto::tracking::ListTrackedRecordsRequest {
            page_token: "garbage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().starts_with("page_token"));
    let e = env
        .client
        .list_tracked_records(trafego_proto::tracking::ListTrackedRecordsRequest {
            page_size: 10_001,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().starts_with("page_size"));
    let st = env.status().await;
    assert_eq!(
        (st.total, st.active, st.orphaned, st.unmanaged),
        (25, 25, 0, 0)
    );
    assert_eq!(st.grace_period_seconds, 900);
}

/// A record the app created and someone renamed at the provider (same id,
/// new name) is still the same tracked record: declaring the new name finds
/// it by id instead of adopting it a second time (which used to break the
/// reconcile with an internal error after other creates had gone out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_renamed_at_the_provider_is_found_by_its_id() {
    let mut env = Env::start(vec![], &[]).await;
    let r = env
        .reconcile("s", vec![a("a.example.com", "192.0.2.1")])
        .await;
    let id = r.changes[0].record_id.clone();
    env.rename_at_provider(&id, "b.example.com");
    env.refresh().await;
    // The check reports the rename as drift.
    env.sweep(false).await;
    let t = env.tracked().await;
    assert_eq!(t.len(), 1);
    assert!(
        t[0].metadata.contains("b.example.com"),
        "drift names the new name: {}",
        t[0].metadata
    );

    let recs = vec![
        a("b.example.com", "192.0.2.1"),
        a("c.example.com", "192.0.2.3"),
    ];
    let r = env
        .try_reconcile("s", recs.clone(), false, false)
        .await
        .expect("no internal error");
    assert_eq!(
        actions(&r),
        vec![ChangeAction::Unchanged, ChangeAction::Create],
        "{r:?}"
    );
    let b = change_of(&r, "b.example.com");
    assert_eq!(b.record_id, id);
    assert!(b.reason.contains("renamed"), "{}", b.reason);
    let t = env.tracked().await;
    let names: Vec<_> = t.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, vec!["b.example.com", "c.example.com"], "{t:?}");
    assert!(
        t.iter()
            .all(|t| t.app_managed && !t.is_orphaned && !t.metadata.contains("drift"))
    );
    assert_eq!(t[0].record_id, id);
    // Idempotent from here, and nothing was created twice.
    env.fake.reset_stats();
    let r = env.reconcile("s", recs).await;
    assert_eq!(actions(&r), vec![ChangeAction::Unchanged; 2]);
    assert_eq!(writes(&env.fake.stats()), 0);
    assert_eq!(env.fake.count(), 2);
}
