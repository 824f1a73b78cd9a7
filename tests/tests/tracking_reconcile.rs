//! End-to-end tests of Reconcile: defaults, idempotence (invariant 5),
//! concurrency, dry runs, refusals at the edge (invariant 6), sources kept
//! apart, and cache-service being down. Each runs the fake Cloudflare API,
//! cache-service and tracking-service in-process.

mod tracking_support;

use tonic::Code;
use tracking_support::*;
use trafego_proto::tracking::{ChangeAction, DesiredRecord, ReconcileRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_then_a_second_identical_call_makes_zero_provider_writes() {
    let mut env = Env::start(vec![], &[]).await;
    let recs = vec![
        a("a.example.com", "192.0.2.1"),
        a("b.example.com", "192.0.2.2"),
        txt("t.example.com", "hello world"),
    ];
    let r = env.reconcile("traefik", recs.clone()).await;
    assert_eq!(actions(&r), vec![ChangeAction::Create; 3]);
    assert!(
        r.changes
            .iter()
            .all(|c| c.applied && c.code == 0 && !c.record_id.is_empty())
    );
    assert_eq!(r.summary.unwrap().created, 3);
    assert_eq!(env.fake.count(), 3);
    let tracked = env.tracked().await;
    assert_eq!(tracked.len(), 3);
    assert!(
        tracked
            .iter()
            .all(|t| t.app_managed && t.state == "active" && t.source == "traefik")
    );

    env.fake.reset_stats();
    let r = env.reconcile("traefik", recs).await;
    assert_eq!(actions(&r), vec![ChangeAction::Unchanged; 3]);
    assert_eq!(writes(&env.fake.stats()), 0, "{:?}", env.fake.stats());
    assert_eq!(env.fake.count(), 3);
}

/// Fifty overlapping reconciles at once (the scenario is in
/// `tracking_support`, so the PostgreSQL tests run it too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_overlapping_reconciles_leave_one_record_per_hostname() {
    let mut env = Env::start(vec![], &[]).await;
    fifty_overlapping_reconciles(&mut env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_follow_trafegodns() {
    let mut env = Env::start(vec![], &["--public-ip", "198.51.100.4"]).await;
    let r = env
        .reconcile(
            "traefik",
            vec![
                host("app.example.com"),
                host("example.com"),
                DesiredRecord {
                    hostname: "v6.example.com".into(),
                    content: Some("2001:db8::5".into()),
                    ..Default::default()
                },
                DesiredRecord {
                    hostname: "ip.example.com".into(),
                    r#type: Some("A".into()),
                    ..Default::default()
                },
            ],
        )
        .await;
    assert_eq!(actions(&r), vec![ChangeAction::Create; 4]);
    let get = |name: &str| {
        let v = env.at_provider(name);
        assert_eq!(v.len(), 1, "{name}: {v:?}");
        v[0].clone()
    };
    let app = get("app.example.com");
    assert_eq!(
        (app.r#type.as_str(), app.content.as_str()),
        ("CNAME", "example.com")
    );
    assert!(app.proxied, "DNS_DEFAULT_PROXIED applies on Cloudflare");
    let apex = get("example.com");
    assert_eq!(
        (apex.r#type.as_str(), apex.content.as_str()),
        ("A", "198.51.100.4")
    );
    let v6 = get("v6.example.com");
    assert_eq!(
        (v6.r#type.as_str(), v6.content.as_str()),
        ("AAAA", "2001:db8::5")
    );
    assert_eq!(get("ip.example.com").content, "198.51.100.4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apex_without_public_ip_is_refused() {
    let mut env = Env::start(vec![], &[]).await;
    let e = env
        .try_reconcile(
            "traefik",
            vec![host("www.example.com"), host("example.com")],
            false,
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("records[1].hostname"),
        "{}",
        e.message()
    );
    assert!(e.message().contains("PUBLIC_IP"), "{}", e.message());
    assert_eq!(env.fake.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_returns_the_plan_and_writes_nothing() {
    let mut env = Env::start(vec![], &[]).await;
    env.reconcile("keep", vec![a("old.example.com", "192.0.2.1")])
        .await;
    env.fake.reset_stats();
    let before = env.tracked().await;
    let r = env
        .try_reconcile("keep", vec![a("new.example.com", "192.0.2.2")], true, true)
        .await
        .unwrap();
    assert!(r.dry_run);
    assert_eq!(
        actions(&r),
        vec![ChangeAction::Create, ChangeAction::Orphan]
    );
    assert!(r.changes.iter().all(|c| !c.applied));
    assert_eq!(writes(&env.fake.stats()), 0);
    assert_eq!(env.tracked().await, before, "no DB write");
    // And the declarations did not change: the same call for real still plans the same.
    let r = env
        .try_reconcile("keep", vec![a("new.example.com", "192.0.2.2")], false, true)
        .await
        .unwrap();
    assert_eq!(
        actions(&r),
        vec![ChangeAction::Create, ChangeAction::Orphan]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_field_and_nothing_is_written() {
    let mut env = Env::start(vec![], &[]).await;
    env.reconcile("s", vec![a("keep.example.com", "192.0.2.1")])
        .await;
    env.fake.reset_stats();
    let before = env.tracked().await;
    let long_label = format!("{}.example.com", "a".repeat(64));
    let long_name = format!("{}example.com", "abcdefghi.".repeat(25));
    let mut cases: Vec<(&str, Vec<DesiredRecord>, &str)> = vec![
        ("", vec![a("x.example.com", "192.0.2.1")], "source"),
        (
            "bad\nsource",
            vec![a("x.example.com", "192.0.2.1")],
            "source",
        ),
        ("managed-hostnames", vec![], "source"),
        (
            "s",
            vec![a("x.example.org", "192.0.2.1")],
            "records[0].hostname",
        ),
        (
            "s",
            vec![a(&long_label, "192.0.2.1")],
            "records[0].hostname",
        ),
        ("s", vec![a(&long_name, "192.0.2.1")], "records[0].hostname"),
        (
            "s",
            vec![a("x\n.example.com", "192.0.2.1")],
            "records[0].hostname",
        ),
        (
            "s",
            vec![
                a("ok.example.com", "192.0.2.1"),
                a("x.example.com", "300.0.0.1"),
            ],
            "records[1].content",
        ),
        (
            "s",
            vec![txt("x.example.com", "line\nbreak")],
            "records[0].content",
        ),
        (
            "s",
            vec![txt("x.example.com", "nul\u{0}byte")],
            "records[0].content",
        ),
        (
            "s",
            vec![
                a("x.example.com", "192.0.2.1"),
                a("X.example.com.", "192.0.2.2"),
            ],
            "records[1].hostname",
        ),
    ];
    let mut ttl = a("x.example.com", "192.0.2.1");
    ttl.ttl = Some(10);
    cases.push(("s", vec![ttl], "records[0].ttl"));
    let mut typ = a("x.example.com", "192.0.2.1");
    typ.r#type = Some("PTR".into());
    cases.push(("s", vec![typ], "records[0].type"));
    let mut prio = a("x.example.com", "192.0.2.1");
    prio.priority = Some(10);
    cases.push(("s", vec![prio], "records[0].priority"));
    let mut prox = txt("x.example.com", "t");
    prox.proxied = Some(true);
    cases.push(("s", vec![prox], "records[0].proxied"));
    for (source, records, field) in cases {
        let e = env
            .try_reconcile(source, records.clone(), false, true)
            .await
            .expect_err(&format!("accepted {source:?} {records:?}"));
        assert_eq!(e.code(), Code::InvalidArgument, "{records:?}: {e:?}");
        assert!(
            e.message().starts_with(field),
            "expected {field}: {}",
            e.message()
        );
    }
    assert_eq!(writes(&env.fake.stats()), 0);
    assert_eq!(env.tracked().await, before);
    let outside = env
        .try_reconcile("s", vec![a("x.example.org", "192.0.2.1")], false, false)
        .await
        .unwrap_err();
    assert!(
        outside.message().contains("is outside the zone"),
        "{}",
        outside.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_are_separate() {
    let mut env = Env::start(vec![], &[]).await;
    env.reconcile(
        "docker",
        vec![
            a("shared.example.com", "192.0.2.1"),
            a("d.example.com", "192.0.2.2"),
        ],
    )
    .await;
    let r = env
        .reconcile("traefik", vec![a("shared.example.com", "192.0.2.1")])
        .await;
    assert_eq!(actions(&r), vec![ChangeAction::Unchanged]);
    // traefik stops declaring shared: docker still does, so nothing is orphaned.
    let r = env
        .try_reconcile("traefik", vec![], false, true)
        .await
        .unwrap();
    assert!(actions(&r).is_empty(), "{r:?}");
    assert!(env.tracked().await.iter().all(|t| !t.is_orphaned));
    // A third source never touches docker's records.
    env.reconcile("ci", vec![a("c.example.com", "192.0.2.3")])
        .await;
    let r = env.try_reconcile("ci", vec![], false, true).await.unwrap();
    assert_eq!(actions(&r), vec![ChangeAction::Orphan]);
    assert_eq!(r.changes[0].hostname, "c.example.com");
    // docker drops shared: now no source declares it.
    let r = env
        .reconcile("docker", vec![a("d.example.com", "192.0.2.2")])
        .await;
    assert_eq!(
        change_of(&r, "shared.example.com").action,
        ChangeAction::Orphan as i32
    );
    // A source declaring the same name differently does not flip the record.
    let r = env
        .reconcile("other", vec![a("d.example.com", "192.0.2.99")])
        .await;
    assert_eq!(actions(&r), vec![ChangeAction::Conflict]);
    assert_eq!(env.at_provider("d.example.com")[0].content, "192.0.2.2");
    // ListTrackedRecords filters by source through the declarations.
    let list = env
        .client
        .list_tracked_records(trafego_proto::tracking::ListTrackedRecordsRequest {
            source: "docker".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = list.records.iter().map(|r| r.name.as_str()).collect();
    assert!(names.contains(&"d.example.com"), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unavailable_when_cache_service_is_down_and_nothing_half_written() {
    let mut env = Env::start(vec![], &[]).await;
    env.reconcile("s", vec![a("a.example.com", "192.0.2.1")])
        .await;
    let before = env.tracked().await;
    let cache = env.cache.take().unwrap();
    let addr = cache.addr;
    cache.shutdown().await;
    let e = env
        .try_reconcile(
            "s",
            vec![
                a("a.example.com", "192.0.2.1"),
                a("b.example.com", "192.0.2.2"),
            ],
            false,
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains(&addr.to_string()),
        "names the host: {}",
        e.message()
    );
    assert_eq!(env.tracked().await, before);
    assert_eq!(env.fake.count(), 1);
    let status = env.status().await;
    assert!(!status.cache_service_reachable);
    let sweep = env.sweep(false).await;
    assert!(!sweep.ran);
    assert!(!sweep.skipped_reason.is_empty());

    // cache-service comes back on the same address: reconcile resumes.
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    let back = start_cache_on(listener, cloudflare_args(&env.fake, env.dir.path())).await;
    let r = env
        .reconcile(
            "s",
            vec![
                a("a.example.com", "192.0.2.1"),
                a("b.example.com", "192.0.2.2"),
            ],
        )
        .await;
    assert_eq!(
        actions(&r),
        vec![ChangeAction::Unchanged, ChangeAction::Create]
    );
    assert!(env.status().await.cache_service_reachable);
    back.shutdown().await;
}

/// A caller whose deadline fires while ApplyChanges is in flight: the
/// provider still gets the create, and the reconcile still records it, so the
/// next reconcile finds the app's own record app-managed (not adopted as
/// someone else's) and creates no second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_timing_out_mid_apply_does_not_lose_ownership() {
    let mut env = Env::start(vec![], &[]).await;
    env.fake.set_delay(std::time::Duration::from_millis(1500));
    let mut req = tonic::Request::new(ReconcileRequest {
        source: "s".into(),
        records: vec![a("slow.example.com", "192.0.2.5")],
        dry_run: false,
        force: false,
    });
    req.set_timeout(std::time::Duration::from_millis(300));
    let e = env.client.reconcile(req).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{e:?}"
    );
    // The write lands at the provider after the caller gave up.
    let fake = env.fake.clone();
    eventually("the create reaches the provider", || {
        let f = fake.clone();
        async move { f.records().iter().any(|r| r.name == "slow.example.com") }
    })
    .await;
    env.fake.set_delay(std::time::Duration::ZERO);
    env.fake.reset_stats();
    let r = env
        .reconcile("s", vec![a("slow.example.com", "192.0.2.5")])
        .await;
    assert_eq!(actions(&r), vec![ChangeAction::Unchanged], "{r:?}");
    assert_eq!(writes(&env.fake.stats()), 0, "{:?}", env.fake.stats());
    assert_eq!(env.at_provider("slow.example.com").len(), 1, "no duplicate");
    let t = env.tracked_named("slow.example.com").await;
    assert_eq!(t.len(), 1);
    assert!(t[0].app_managed, "the app's own record: {t:?}");
    assert_eq!(t[0].source, "s");
}

/// CACHE_SERVICE_TIMEOUT fires while cache-service is still writing: the
/// reconcile fails UNAVAILABLE, a retry meanwhile does not send the create
/// again, and once the record shows up it is claimed as app-managed from the
/// pending-intent journal instead of adopted as someone else's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_finishing_after_cache_service_timeout_is_claimed_not_adopted() {
    let mut env = Env::start(vec![], &["--cache-service-timeout", "400ms"]).await;
    env.fake.set_delay(std::time::Duration::from_millis(2000));
    let recs = vec![a("late.example.com", "192.0.2.6")];
    let e = env
        .try_reconcile("s", recs.clone(), false, false)
        .await
        .unwrap_err();
    // The call cannot look like success: it ends with the transient code,
    // and the per-change detail rides in the status details.
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(e.message().contains("CACHE_SERVICE_TIMEOUT"), "{e:?}");
    let r = tracking_service::error::reconcile_response_of(&e).expect("details");
    let c = change_of(&r, "late.example.com");
    assert!(
        !c.applied && c.code == Code::DeadlineExceeded as i32,
        "{r:?}"
    );
    // A retry while cache-service is still writing: no second create, and
    // the call says it could not finish.
    let e = env
        .try_reconcile("s", recs.clone(), false, false)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let r = tracking_service::error::reconcile_response_of(&e).expect("details");
    let c = change_of(&r, "late.example.com");
    assert!(!c.applied && c.code == Code::Unavailable as i32, "{r:?}");
    assert!(c.reason.contains("earlier reconcile"), "{r:?}");
    // (`total` counts a request as it arrives; the delayed one is still in flight.)
    assert_eq!(
        env.fake.stats().total,
        1,
        "only the first create reached the provider: {:?}",
        env.fake.stats()
    );
    env.fake.set_delay(std::time::Duration::ZERO);
    eventually("cache-service records the late write", || {
        let env = &env;
        async move { !env.in_cache("late.example.com").await.is_empty() }
    })
    .await;
    env.fake.reset_stats();
    let r = env.reconcile("s", recs.clone()).await;
    let c = change_of(&r, "late.example.com");
    assert_eq!(c.action, ChangeAction::Create as i32, "{r:?}");
    assert!(c.applied && c.code == 0, "{r:?}");
    assert!(c.reason.contains("did not finish"), "{}", c.reason);
    assert_eq!(writes(&env.fake.stats()), 0, "claimed, not written again");
    assert_eq!(env.at_provider("late.example.com").len(), 1, "no duplicate");
    let t = env.tracked_named("late.example.com").await;
    assert_eq!(t.len(), 1);
    assert!(t[0].app_managed, "claimed as the app's own: {t:?}");
    // And it behaves as any app-managed record from now on.
    let r = env.reconcile("s", recs).await;
    assert_eq!(actions(&r), vec![ChangeAction::Unchanged]);
    let r = env
        .reconcile("s", vec![a("late.example.com", "192.0.2.7")])
        .await;
    assert_eq!(actions(&r), vec![ChangeAction::Update]);
}

/// The first declaration stands: a second source declaring a record
/// differently gets a conflict, but the first source keeps working as if
/// alone (it recreates the record when it is deleted, and updates it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_declaration_stands_and_keeps_working() {
    let mut env = Env::start(vec![], &[]).await;
    let r = env
        .reconcile("first", vec![a("x.example.com", "192.0.2.1")])
        .await;
    assert_eq!(actions(&r), vec![ChangeAction::Create]);
    let id = r.changes[0].record_id.clone();
    let r = env
        .reconcile("second", vec![a("x.example.com", "192.0.2.2")])
        .await;
    assert_eq!(actions(&r), vec![ChangeAction::Conflict]);
    assert!(r.changes[0].reason.contains("first"), "{r:?}");
    // Deleted at the provider: the first source recreates it.
    assert!(env.fake.remove(&id));
    env.refresh().await;
    let r = env
        .reconcile("first", vec![a("x.example.com", "192.0.2.1")])
        .await;
    assert_eq!(actions(&r), vec![ChangeAction::Create], "{r:?}");
    assert!(r.changes[0].applied);
    let x = env.at_provider("x.example.com");
    assert_eq!(x.len(), 1);
    assert_eq!(x[0].content, "192.0.2.1");
    // The first source changes its mind: the record follows it.
    let r = env
        .reconcile("first", vec![a("x.example.com", "192.0.2.3")])
        .await;
    assert_eq!(actions(&r), vec![ChangeAction::Update], "{r:?}");
    assert_eq!(env.at_provider("x.example.com")[0].content, "192.0.2.3");
    // The second source still loses, and changes nothing.
    let r = env
        .reconcile("second", vec![a("x.example.com", "192.0.2.2")])
        .await;
    assert_eq!(actions(&r), vec![ChangeAction::Conflict], "{r:?}");
    assert_eq!(env.at_provider("x.example.com")[0].content, "192.0.2.3");
}
