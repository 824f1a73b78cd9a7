//! End-to-end tests of the orphan lifecycle: grace periods on an injected
//! clock (no sleeps), cleanup off by default, preserved hostnames (invariant
//! 2), no deletion while the provider's state is unknown (invariant 3), and
//! records someone else made never deleted (invariant 1).

mod tracking_support;

use std::time::Duration;

use tracking_support::*;
use trafego_proto::tracking::ChangeAction;
use trafego_tests::fake_cloudflare::FakeRecord;

const CLEANUP: &[&str] = &[
    "--cleanup-orphaned",
    "true",
    "--cleanup-grace-period",
    "15m",
];

/// Creates `names` for source "s", then orphans them all (forced).
async fn create_then_orphan(env: &mut Env, names: &[&str]) {
    let recs = names.iter().map(|n| a(n, "192.0.2.1")).collect();
    let r = env.reconcile("s", recs).await;
    assert!(
        actions(&r).iter().all(|a| *a == ChangeAction::Create),
        "{r:?}"
    );
    let r = env.try_reconcile("s", vec![], false, true).await.unwrap();
    assert_eq!(actions(&r), vec![ChangeAction::Orphan; names.len()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orphan_is_deleted_only_after_the_grace_period() {
    let mut env = Env::start(vec![], CLEANUP).await;
    create_then_orphan(&mut env, &["gone.example.com"]).await;
    let t = &env.tracked().await[0];
    assert!(t.is_orphaned);
    assert_eq!(t.orphaned_at.as_ref().unwrap().seconds * 1000, T0);

    env.clock.advance(Duration::from_secs(14 * 60));
    let s = env.sweep(false).await;
    assert!(s.ran);
    assert_eq!(s.within_grace, 1);
    assert!(s.deleted.is_empty());
    assert_eq!(env.fake.count(), 1);

    // Dry run after the grace period: reported, not deleted.
    env.clock.advance(Duration::from_secs(2 * 60));
    let s = env.sweep(true).await;
    assert_eq!(s.deleted.len(), 1);
    assert!(!s.deleted[0].deleted);
    assert_eq!(env.fake.count(), 1);

    let s = env.sweep(false).await;
    assert_eq!(s.deleted.len(), 1, "{s:?}");
    assert!(s.deleted[0].deleted);
    assert_eq!(env.fake.count(), 0, "deleted at the provider");
    assert!(env.tracked().await.is_empty(), "untracked");
    let status = env.status().await;
    assert_eq!(status.last_sweep_deleted, 1);
    assert!(status.last_sweep_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_again_the_record_is_unorphaned_and_keeps_its_id() {
    let mut env = Env::start(vec![], CLEANUP).await;
    create_then_orphan(&mut env, &["back.example.com"]).await;
    let id = env.tracked().await[0].record_id.clone();
    env.clock.advance(Duration::from_secs(10 * 60));
    let r = env
        .reconcile("s", vec![a("back.example.com", "192.0.2.1")])
        .await;
    assert_eq!(actions(&r), vec![ChangeAction::Unorphan]);
    let t = &env.tracked().await[0];
    assert!(!t.is_orphaned && t.orphaned_at.is_none());
    assert_eq!(t.record_id, id);
    env.clock.advance(Duration::from_secs(60 * 60));
    let s = env.sweep(false).await;
    assert!(s.deleted.is_empty());
    assert_eq!(env.fake.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_is_off_by_default() {
    let mut env = Env::start(vec![], &[]).await;
    create_then_orphan(&mut env, &["x.example.com"]).await;
    env.clock.advance(Duration::from_secs(24 * 3600));
    let s = env.sweep(false).await;
    assert!(s.deleted.is_empty());
    assert!(
        s.skipped_reason.contains("CLEANUP_ORPHANED"),
        "{}",
        s.skipped_reason
    );
    assert_eq!(env.fake.count(), 1);
    assert!(!env.status().await.cleanup_enabled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preserved_hostname_survives_the_sweep() {
    let mut args = CLEANUP.to_vec();
    args.extend([
        "--preserved-hostnames",
        "keep.example.com,*.internal.example.com",
    ]);
    let mut env = Env::start(vec![], &args).await;
    create_then_orphan(
        &mut env,
        &[
            "keep.example.com",
            "db.internal.example.com",
            "drop.example.com",
        ],
    )
    .await;
    env.clock.advance(Duration::from_secs(3600));
    let s = env.sweep(false).await;
    assert_eq!(s.preserved, 2);
    let deleted: Vec<_> = s
        .deleted
        .iter()
        .filter(|d| d.deleted)
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(deleted, vec!["drop.example.com"]);
    assert_eq!(env.at_provider("keep.example.com").len(), 1);
    assert_eq!(env.at_provider("db.internal.example.com").len(), 1);
    assert!(env.at_provider("drop.example.com").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_deleted_while_the_last_refresh_failed() {
    let mut env = Env::start(vec![], CLEANUP).await;
    create_then_orphan(&mut env, &["x.example.com"]).await;
    env.clock.advance(Duration::from_secs(3600));
    env.fake.fail_list_page(1, 500);
    let _ = env
        .cache_client
        .refresh_cache(trafego_proto::cache::RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await;
    assert!(
        env.cache_stale().await,
        "the failed refresh makes the cache stale"
    );
    let s = env.sweep(false).await;
    assert!(s.deleted.is_empty(), "{s:?}");
    assert!(
        s.skipped_reason.contains("not fresh"),
        "{}",
        s.skipped_reason
    );
    assert_eq!(env.fake.count(), 1);
    assert_eq!(env.fake.stats().delete + env.fake.stats().batch, 0);

    // The provider answers again: the next sweep deletes.
    env.fake.clear_faults();
    env.refresh().await;
    let s = env.sweep(false).await;
    assert_eq!(s.deleted.iter().filter(|d| d.deleted).count(), 1, "{s:?}");
    assert_eq!(env.fake.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_someone_else_made_is_never_modified_or_deleted() {
    // Both carry TrafegoDNS's comment: it is not proof of ownership.
    let mut same = FakeRecord::new("A", "same.example.com", "192.0.2.1");
    same.comment = Some("Managed by TrafegoDNS".into());
    let mut other = FakeRecord::new("A", "other.example.com", "192.0.2.50");
    other.comment = Some("Managed by TrafegoDNS".into());
    let mut env = Env::start(vec![same.clone(), other.clone()], CLEANUP).await;
    let before = env.fake.records();

    let r = env
        .reconcile(
            "s",
            vec![
                a("same.example.com", "192.0.2.1"),
                a("other.example.com", "192.0.2.2"),
            ],
        )
        .await;
    assert_eq!(
        change_of(&r, "same.example.com").action,
        ChangeAction::Adopt as i32
    );
    assert_eq!(
        change_of(&r, "other.example.com").action,
        ChangeAction::Conflict as i32
    );
    let tracked = env.tracked().await;
    assert_eq!(tracked.len(), 1);
    assert!(!tracked[0].app_managed);
    assert_eq!(tracked[0].state, "unmanaged");

    // Orphan the adopted one, pass every grace period, sweep: still there.
    env.try_reconcile("s", vec![], false, true).await.unwrap();
    env.clock.advance(Duration::from_secs(30 * 24 * 3600));
    let s = env.sweep(false).await;
    assert_eq!(s.unmanaged, 1);
    assert!(s.deleted.is_empty());
    // Declared again with other content: conflict, never an update.
    let r = env
        .reconcile("s", vec![a("same.example.com", "192.0.2.9")])
        .await;
    assert_eq!(actions(&r), vec![ChangeAction::Conflict]);
    assert_eq!(env.fake.records(), before, "the provider is untouched");
    let st = env.fake.stats();
    assert_eq!(st.create + st.update + st.delete + st.batch, 0, "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cname_against_an_a_record_is_a_conflict() {
    let mut env = Env::start(
        vec![FakeRecord::new("A", "web.example.com", "192.0.2.1")],
        &[],
    )
    .await;
    let r = env.reconcile("s", vec![host("web.example.com")]).await;
    assert_eq!(actions(&r), vec![ChangeAction::Conflict]);
    assert!(
        r.changes[0].reason.contains("CNAME"),
        "{}",
        r.changes[0].reason
    );
    assert_eq!(r.summary.unwrap().conflicts, 1);
    assert_eq!(env.fake.count(), 1);
    assert!(env.tracked().await.is_empty());
}

/// An orphaned app record renamed at the provider by someone else (same id)
/// may be theirs now: after the grace period the sweep keeps it and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_never_deletes_a_record_renamed_at_the_provider() {
    let mut env = Env::start(vec![], CLEANUP).await;
    create_then_orphan(&mut env, &["a.example.com", "plain.example.com"]).await;
    let id = env
        .tracked()
        .await
        .into_iter()
        .find(|t| t.name == "a.example.com")
        .unwrap()
        .record_id;
    env.rename_at_provider(&id, "someone-elses.example.com");
    env.refresh().await;
    env.clock.advance(Duration::from_secs(16 * 60));
    let dry = env.sweep(true).await;
    let kept = dry.deleted.iter().find(|d| d.record_id == id).unwrap();
    assert!(!kept.deleted);
    assert!(kept.reason.starts_with("not deleted"), "{}", kept.reason);
    let s = env.sweep(false).await;
    assert!(s.ran);
    let kept = s.deleted.iter().find(|d| d.record_id == id).unwrap();
    assert!(!kept.deleted, "{s:?}");
    assert_eq!(s.changed_at_provider, 1, "{s:?}");
    assert!(
        kept.reason.contains("someone-elses.example.com"),
        "{}",
        kept.reason
    );
    // The untouched orphan beside it is deleted as usual.
    let plain = s
        .deleted
        .iter()
        .find(|d| d.name == "plain.example.com")
        .unwrap();
    assert!(plain.deleted, "{s:?}");
    assert_eq!(env.at_provider("someone-elses.example.com").len(), 1);
    assert!(env.at_provider("plain.example.com").is_empty());
    // Still tracked, with the rename reported as drift.
    let t = env.tracked().await;
    assert_eq!(t.len(), 1);
    assert!(t[0].metadata.contains("someone-elses.example.com"), "{t:?}");
}

/// A dry-run sweep writes nothing, not even the missing flags its check finds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_sweep_writes_nothing() {
    let mut env = Env::start(vec![], CLEANUP).await;
    let r = env
        .reconcile("s", vec![a("m.example.com", "192.0.2.1")])
        .await;
    let before = env.tracked().await;
    // Deleted through cache-service (no refresh event, so the background
    // check stays put and only the sweep's own check can notice it).
    env.cache_client
        .delete_record(trafego_proto::cache::DeleteRecordRequest {
            record_id: r.changes[0].record_id.clone(),
        })
        .await
        .unwrap();
    let s = env.sweep(true).await;
    assert!(s.ran && s.dry_run);
    assert_eq!(s.missing, 1, "reported");
    assert_eq!(env.tracked().await, before, "but not written");
    assert_eq!(env.status().await.missing, 0);
    assert!(env.status().await.last_sweep_at.is_none());
    // The real sweep writes the flag.
    let s = env.sweep(false).await;
    assert_eq!(s.missing, 1);
    assert_eq!(env.status().await.missing, 1);
}
