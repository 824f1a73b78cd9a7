//! End-to-end tests of defects found by reading and trying (issue 8): huge
//! durations that must mean "never yet", `RunOrphanSweep`'s `ran` flag, and
//! internal errors that must reach callers without SQL or file paths.
//!
//! Every test starts the real services in-process on loopback with an
//! injected clock; none sleeps to wait for a server.

mod tracking_support;

use std::time::Duration;

use tracking_support::*;
use trafego_proto::tracking::ChangeAction;

/// `CLEANUP_GRACE_PERIOD=18446744073709551615` (a bare number: minutes).
const HUGE: &str = "18446744073709551615";

/// Creates `name` for source "s", then orphans it (forced).
async fn create_then_orphan(env: &mut Env, name: &str) {
    let r = env.reconcile("s", vec![a(name, "192.0.2.1")]).await;
    assert_eq!(actions(&r), vec![ChangeAction::Create], "{r:?}");
    let r = env.try_reconcile("s", vec![], false, true).await.unwrap();
    assert_eq!(actions(&r), vec![ChangeAction::Orphan], "{r:?}");
}

/// A grace period too large to count in milliseconds means "not yet", for
/// ever: it used to wrap to a negative grace, and the orphan was deleted at
/// the first sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_grace_period_never_deletes_an_orphan() {
    let mut env = Env::start(
        vec![],
        &["--cleanup-orphaned", "true", "--cleanup-grace-period", HUGE],
    )
    .await;
    create_then_orphan(&mut env, "kept.example.com").await;
    for _ in 0..3 {
        // A thousand years at a time.
        env.clock
            .advance(Duration::from_secs(1000 * 365 * 24 * 3600));
        let s = env.sweep(false).await;
        assert!(s.ran, "{s:?}");
        assert_eq!(s.within_grace, 1, "{s:?}");
        assert!(s.deleted.is_empty(), "{s:?}");
        assert_eq!(env.at_provider("kept.example.com").len(), 1);
    }
    let status = env.status().await;
    assert_eq!(status.grace_period_seconds, u64::MAX, "{status:?}");
    assert_eq!(env.tracked().await.len(), 1);
}

/// A refresh interval too large to count in milliseconds means the cache
/// stays fresh; it used to wrap to -1 ms and call every cache stale, which
/// pauses orphan cleanup for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_refresh_interval_keeps_the_cache_fresh() {
    let dir = trafego_tests::tempdir();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut args = zonefile_args(dir.path());
    args.extend(["--refresh-interval".to_string(), HUGE.to_string()]);
    let cache = start_cache_on(listener, args).await;
    let mut c = cache_client(&cache.url).await;
    c.refresh_cache(trafego_proto::cache::RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let st = c
        .get_cache_status(trafego_proto::cache::GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!st.stale, "{st:?}");
    assert!(st.last_error.is_empty(), "{st:?}");
    cache.shutdown().await;
}

/// `ran` is true only when the sweep could delete, and never beside a reason
/// why it could not: cleanup disabled or a stale cache give ran = false and
/// the reason; cleanup on and a fresh cache give ran = true and no reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_that_cannot_delete_does_not_say_it_ran() {
    // Cleanup disabled (the default).
    let mut env = Env::start(vec![], &[]).await;
    create_then_orphan(&mut env, "off.example.com").await;
    env.clock.advance(Duration::from_secs(24 * 3600));
    for dry_run in [false, true] {
        let s = env.sweep(dry_run).await;
        assert!(!s.ran, "{s:?}");
        assert!(s.skipped_reason.contains("CLEANUP_ORPHANED"), "{s:?}");
        assert!(s.deleted.iter().all(|d| !d.deleted), "{s:?}");
    }
    assert_eq!(env.at_provider("off.example.com").len(), 1);
    let st = env.status().await;
    assert!(st.last_sweep_at.is_some(), "{st:?}");

    // Cleanup on, but the last refresh failed: the cache is stale.
    let mut env = Env::start(
        vec![],
        &[
            "--cleanup-orphaned",
            "true",
            "--cleanup-grace-period",
            "15m",
        ],
    )
    .await;
    create_then_orphan(&mut env, "stale.example.com").await;
    env.clock.advance(Duration::from_secs(3600));
    env.fake.fail_list_page(1, 500);
    let _ = env
        .cache_client
        .refresh_cache(trafego_proto::cache::RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await;
    assert!(env.cache_stale().await);
    for dry_run in [true, false] {
        let s = env.sweep(dry_run).await;
        assert!(!s.ran, "{s:?}");
        assert!(s.skipped_reason.contains("not fresh"), "{s:?}");
    }
    assert_eq!(env.at_provider("stale.example.com").len(), 1);

    // Fresh again: the sweep runs (a dry run says it would), no reason given.
    env.fake.clear_faults();
    env.refresh().await;
    let s = env.sweep(true).await;
    assert!(s.ran && s.skipped_reason.is_empty(), "{s:?}");
    assert_eq!(s.deleted.len(), 1, "{s:?}");
    let s = env.sweep(false).await;
    assert!(s.ran && s.skipped_reason.is_empty(), "{s:?}");
    assert!(s.deleted[0].deleted, "{s:?}");
    assert!(env.at_provider("stale.example.com").is_empty());
}
