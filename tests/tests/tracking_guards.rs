//! End-to-end tests of the reconcile guards (invariant 7): a source that
//! suddenly declares nothing, or would orphan more than MAX_ORPHAN_RATIO of
//! its records, is refused with FAILED_PRECONDITION unless forced, and a
//! refusal writes nothing.

mod tracking_support;

use tonic::Code;
use tracking_support::*;
use trafego_proto::tracking::{ChangeAction, DesiredRecord};

fn hosts(n: usize) -> Vec<DesiredRecord> {
    (0..n)
        .map(|i| a(&format!("h{i}.example.com"), "192.0.2.1"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_suddenly_declares_nothing_is_refused_unless_forced() {
    let mut env = Env::start(vec![], &[]).await;
    env.reconcile("traefik", hosts(2)).await;
    let before = env.tracked().await;
    let e = env
        .try_reconcile("traefik", vec![], false, false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("declares none") && e.message().contains("force"),
        "{}",
        e.message()
    );
    assert_eq!(env.tracked().await, before, "nothing written");
    // A dry run is refused the same way.
    let e = env
        .try_reconcile("traefik", vec![], true, false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let r = env
        .try_reconcile("traefik", vec![], false, true)
        .await
        .unwrap();
    assert_eq!(actions(&r), vec![ChangeAction::Orphan; 2]);
    // A source that never declared anything may declare nothing.
    env.try_reconcile("new-source", vec![], false, false)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaning_more_than_the_ratio_is_refused_unless_forced() {
    let mut env = Env::start(vec![], &[]).await;
    env.reconcile("ci", hosts(10)).await;
    env.fake.reset_stats();
    // 4 of 10 dropped (40% > 30%): refused, nothing written anywhere.
    let mut keep = hosts(6);
    keep.push(a("new.example.com", "192.0.2.1"));
    let e = env
        .try_reconcile("ci", keep.clone(), false, false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("MAX_ORPHAN_RATIO"), "{}", e.message());
    assert_eq!(writes(&env.fake.stats()), 0, "no provider write on refusal");
    assert!(env.tracked().await.iter().all(|t| !t.is_orphaned));
    // 3 of 10 (30%) passes.
    let r = env.reconcile("ci", hosts(7)).await;
    assert_eq!(r.summary.unwrap().orphaned, 3);
    // Forced, any share passes.
    let r = env
        .try_reconcile("ci", hosts(1), false, true)
        .await
        .unwrap();
    assert_eq!(r.summary.unwrap().orphaned, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_sources_are_not_held_by_the_ratio() {
    let mut env = Env::start(vec![], &[]).await;
    env.reconcile("small", hosts(9)).await;
    let r = env.reconcile("small", hosts(1)).await;
    assert_eq!(r.summary.unwrap().orphaned, 8);
}
