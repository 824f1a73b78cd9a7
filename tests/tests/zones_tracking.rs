//! tracking-service over a cache-service serving several zones: declared
//! hostnames are routed to the longest served zone, a hostname in no zone is
//! refused naming the zones, MAX_ORPHAN_RATIO holds each zone on its own,
//! and a stale zone pauses deletes in that zone
//! only while the others are swept. Real services on loopback, the fake
//! Cloudflare account (three zones), an injected clock; no sleeps.

mod tracking_support;

use std::time::Duration;

use tokio::net::TcpListener;
use tonic::Code;
use tracking_support::*;
use trafego_common::clock::ManualClock;
use trafego_proto::cache::RefreshCacheRequest;
use trafego_proto::tracking::*;
use trafego_tests::fake_cloudflare::FakeCloudflareAccount;

const ZONES: [&str; 3] = ["example.com", "dev.example.com", "example.org"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostnames_over_three_zones_reconcile_and_a_stale_zone_pauses_its_deletes_only() {
    trafego_tests::init_test_logging();
    let acct = FakeCloudflareAccount::start(TOKEN, &ZONES, |_| {})
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "--provider",
        "cloudflare",
        "--zones",
        &ZONES.join(","),
        "--cloudflare-api-url",
        &acct.base_url(),
        "--cloudflare-token",
        TOKEN,
        "--db-path",
        &dir.path().join("cache.db").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cache = start_cache_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), args).await;
    let clock = ManualClock::new(T0);
    let tracking = start_tracking(
        &cache.url,
        dir.path(),
        &[
            "--cleanup-orphaned",
            "true",
            "--cleanup-grace-period",
            "15m",
        ],
        clock.clone(),
    )
    .await;
    let mut t = tracking_client(&tracking.url).await;
    let mut c = cache_client(&cache.url).await;
    c.refresh_cache(RefreshCacheRequest {
        force: false,
        ..Default::default()
    })
    .await
    .unwrap();

    let reconcile = |records: Vec<DesiredRecord>, force: bool| ReconcileRequest {
        source: "s".into(),
        records,
        dry_run: false,
        force,
    };
    let declared = vec![
        a("a.example.com", "192.0.2.1"),
        a("b.dev.example.com", "192.0.2.2"),
        a("c.example.org", "192.0.2.3"),
    ];
    let r = t
        .reconcile(reconcile(declared.clone(), false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(actions(&r), vec![ChangeAction::Create; 3], "{r:?}");
    let at = |z: &str, name: &str| acct.zone(z).records().iter().any(|r| r.name == name);
    assert!(at("example.com", "a.example.com"));
    assert!(
        at("dev.example.com", "b.dev.example.com"),
        "the longest zone"
    );
    assert!(!at("example.com", "b.dev.example.com"));
    assert!(at("example.org", "c.example.org"));
    // Idempotent across zones.
    let r = t
        .reconcile(reconcile(declared, false))
        .await
        .unwrap()
        .into_inner();
    assert!(
        actions(&r).iter().all(|a| *a == ChangeAction::Unchanged),
        "{r:?}"
    );

    // A hostname in no served zone is refused, naming the field and the zones.
    let e = t
        .reconcile(reconcile(vec![a("x.example.net", "192.0.2.9")], false))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("records[0].hostname")
            && e.message()
                .contains("dev.example.com, example.com, example.org"),
        "{e:?}"
    );

    // Everything orphaned, the grace period passes, dev.example.com goes stale.
    let r = t
        .reconcile(reconcile(vec![], true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(actions(&r), vec![ChangeAction::Orphan; 3], "{r:?}");
    clock.advance(Duration::from_secs(3600));
    acct.zone("dev.example.com").fail_list_page(1, 500);
    let e = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("dev.example.com"), "{e:?}");

    let s = t
        .run_orphan_sweep(RunOrphanSweepRequest { dry_run: false })
        .await
        .unwrap()
        .into_inner();
    assert!(s.ran && s.skipped_reason.is_empty(), "{s:?}");
    let deleted: Vec<&str> = s
        .deleted
        .iter()
        .filter(|d| d.deleted)
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(deleted.len(), 2, "{s:?}");
    assert!(deleted.contains(&"a.example.com") && deleted.contains(&"c.example.org"));
    let kept = s
        .deleted
        .iter()
        .find(|d| d.name == "b.dev.example.com")
        .expect("listed");
    assert!(
        !kept.deleted && kept.reason.contains("zone dev.example.com"),
        "{kept:?}"
    );
    assert_eq!(s.skipped_zones.len(), 1, "{s:?}");
    assert_eq!(s.skipped_zones[0].zone, "dev.example.com");
    assert!(!s.skipped_zones[0].reason.is_empty());
    assert!(!at("example.com", "a.example.com") && !at("example.org", "c.example.org"));
    assert!(
        at("dev.example.com", "b.dev.example.com"),
        "paused in its zone"
    );
    let st = t
        .get_tracker_status(GetTrackerStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.last_sweep_skipped_zones.len(), 1, "{st:?}");
    assert_eq!(st.last_sweep_skipped_zones[0].zone, "dev.example.com");

    // Fresh again: its delete goes through.
    acct.zone("dev.example.com").clear_faults();
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let s = t
        .run_orphan_sweep(RunOrphanSweepRequest { dry_run: false })
        .await
        .unwrap()
        .into_inner();
    assert!(s.ran && s.skipped_zones.is_empty(), "{s:?}");
    assert!(!at("dev.example.com", "b.dev.example.com"), "{s:?}");
    tracking.shutdown().await;
    cache.shutdown().await;
}

/// `n` hostnames `h<i>.<zone>`.
fn hosts_in(zone: &str, n: usize) -> Vec<DesiredRecord> {
    (0..n)
        .map(|i| a(&format!("h{i}.{zone}"), "192.0.2.50"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orphan_ratio_guard_holds_each_zone_so_a_large_zone_hides_no_mass_orphaning() {
    trafego_tests::init_test_logging();
    let acct = FakeCloudflareAccount::start(TOKEN, &ZONES, |_| {})
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "--provider",
        "cloudflare",
        "--zones",
        &ZONES.join(","),
        "--cloudflare-api-url",
        &acct.base_url(),
        "--cloudflare-token",
        TOKEN,
        "--db-path",
        &dir.path().join("cache.db").display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cache = start_cache_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), args).await;
    let tracking = start_tracking(&cache.url, dir.path(), &[], ManualClock::new(T0)).await;
    let mut t = tracking_client(&tracking.url).await;
    let reconcile = |records: Vec<DesiredRecord>, force: bool| ReconcileRequest {
        source: "s".into(),
        records,
        dry_run: false,
        force,
    };
    // 40 records in example.com, 10 in dev.example.com, 2 in example.org.
    let big = hosts_in("example.com", 40);
    let dev = hosts_in("dev.example.com", 10);
    let org = hosts_in("example.org", 2);
    let all: Vec<DesiredRecord> = [big.clone(), dev.clone(), org.clone()].concat();
    t.reconcile(reconcile(all, false)).await.unwrap();
    let dev_count = || {
        acct.zone("dev.example.com")
            .records()
            .iter()
            .filter(|r| r.name.starts_with('h'))
            .count()
    };
    assert_eq!(dev_count(), 10);

    // Half of dev.example.com dropped: 5 of 52 for the source (under 30%),
    // but 5 of 10 in that zone. Refused, naming the zone; nothing changed.
    let half: Vec<DesiredRecord> = [big.clone(), dev[..5].to_vec(), org.clone()].concat();
    let e = t
        .reconcile(reconcile(half.clone(), false))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(
        e.message().contains("MAX_ORPHAN_RATIO")
            && e.message()
                .contains("5 of its 10 records in zone dev.example.com")
            && !e.message().contains("zone example.com"),
        "{e:?}"
    );
    // A dry run is refused the same way.
    let e = t
        .reconcile(ReconcileRequest {
            dry_run: true,
            ..reconcile(half.clone(), false)
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // A zone where the source holds fewer than 10 is not held by it: both
    // example.org records dropped, the other zones untouched, goes through.
    let r = t
        .reconcile(reconcile([big.clone(), dev.clone()].concat(), false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        actions(&r)
            .iter()
            .filter(|a| **a == ChangeAction::Orphan)
            .count(),
        2,
        "{r:?}"
    );
    // Forced, the zone's half is orphaned.
    let r = t
        .reconcile(reconcile([big, dev[..5].to_vec()].concat(), true))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        actions(&r)
            .iter()
            .filter(|a| **a == ChangeAction::Orphan)
            .count(),
        5,
        "{r:?}"
    );
    tracking.shutdown().await;
    cache.shutdown().await;
}
