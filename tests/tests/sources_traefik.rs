//! End-to-end tests of the `traefik` hostname source: the fake Traefik API
//! (a real HTTP server, paged as Traefik pages), cache-service on the fake
//! Cloudflare, and tracking-service with `SOURCES=traefik`, all in-process.
//! A router appearing, changing and disappearing moves the records through
//! the same reconcile path as the RPC; every page is read; a Traefik that
//! fails orphans nothing; the empty-declaration guard holds; the labels of
//! the container behind a router override its record settings. Waits are on
//! observable state (the source's status, the fakes' counters), never sleeps;
//! the grace period runs on the injected clock.

mod sources_support;
mod tracking_support;

use std::time::Duration;

use sources_support::*;
use tracking_support::*;
use trafego_tests::fake_docker::{ContainerState, DockerOptions, FakeContainer, FakeDocker};
use trafego_tests::fake_traefik::{
    FakeRouter, FakeTraefik, RouterKind, RouterStatus, TraefikOptions, Unreachable,
};

/// tracking-service flags for a Traefik source on `fake`, polling every
/// 100 ms, with no Docker Engine unless `docker` names one.
fn traefik_args(fake: &FakeTraefik, docker: Option<&FakeDocker>, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--sources",
        "traefik",
        "--traefik-api-url",
        &fake.base_url(),
        "--poll-interval",
        "100",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !extra.contains(&"--api-timeout") {
        v.extend(["--api-timeout".to_string(), "5s".to_string()]);
    }
    match docker {
        Some(d) => v.extend(["--docker-host".to_string(), d.unix_host()]),
        None => v.extend([
            "--docker-socket".to_string(),
            "/nonexistent/docker.sock".to_string(),
        ]),
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn http(name: &str, rule: &str) -> FakeRouter {
    FakeRouter::new(name, "docker", rule)
}

async fn start(fake: &FakeTraefik, docker: Option<&FakeDocker>, extra: &[&str]) -> Env {
    let args = traefik_args(fake, docker, extra);
    Env::start(vec![], &refs(&args)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_appears_changes_and_disappears() {
    let traefik = FakeTraefik::start(TraefikOptions::v3()).await.unwrap();
    traefik.upsert_routers(
        RouterKind::Http,
        [
            http("app", "Host(`app.example.com`) && PathPrefix(`/`)"),
            http("keep", "Host(`keep.example.com`)"),
        ],
    );
    let mut env = start(
        &traefik,
        None,
        &[
            "--cleanup-orphaned",
            "true",
            "--cleanup-grace-period",
            "15m",
        ],
    )
    .await;

    // It appears: its record exists, declared under the source "traefik".
    let app = wait_at_provider(&env, "app.example.com").await;
    assert_eq!(app[0].r#type, "CNAME");
    assert_eq!(app[0].content, "example.com");
    wait_at_provider(&env, "keep.example.com").await;
    let tracked = env.tracked_named("app.example.com").await;
    assert_eq!(tracked[0].source, "traefik");
    assert!(tracked[0].app_managed);
    let s = source(&mut env, "traefik").await;
    assert_eq!(s.kind, "traefik");
    assert_eq!(s.hostnames, 2);
    assert!(
        s.last_success_at.is_some() && s.last_error.is_empty(),
        "{s:?}"
    );

    // Its rule changes: the record follows (the old name is orphaned).
    assert!(traefik.set_rule(RouterKind::Http, "app@docker", "Host(`new.example.com`)"));
    wait_at_provider(&env, "new.example.com").await;
    eventually("app.example.com orphaned", || {
        let mut c = env.client.clone();
        async move {
            c.list_tracked_records(trafego_proto::tracking::ListTrackedRecordsRequest {
                name: "app.example.com".into(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().records.iter().all(|t| t.is_orphaned))
            .unwrap_or(false)
        }
    })
    .await;

    // It disappears: orphaned, and deleted only after the grace period.
    assert!(traefik.remove_router(RouterKind::Http, "app@docker"));
    let before = source(&mut env, "traefik").await.polls;
    wait_reads(&mut env, "traefik", before, 2).await;
    let new = env.tracked_named("new.example.com").await;
    assert!(new[0].is_orphaned, "{new:?}");
    env.clock.advance(Duration::from_secs(14 * 60));
    let swept = env.sweep(false).await;
    assert!(
        swept.deleted.is_empty() && swept.within_grace == 2,
        "{swept:?}"
    );
    env.clock.advance(Duration::from_secs(2 * 60));
    let swept = env.sweep(false).await;
    assert_eq!(swept.deleted.len(), 2, "{swept:?}");
    assert!(env.at_provider("app.example.com").is_empty());
    assert!(env.at_provider("new.example.com").is_empty());
    assert_eq!(
        env.at_provider("keep.example.com").len(),
        1,
        "the declared one stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_read_250_routers_over_3_pages() {
    let traefik = FakeTraefik::start(TraefikOptions::v3()).await.unwrap();
    traefik.upsert_routers(
        RouterKind::Http,
        (0..250).map(|i| http(&format!("r{i:03}"), &format!("Host(`r{i:03}.example.com`)"))),
    );
    let mut env = start(&traefik, None, &[]).await;
    let s = wait_source(&mut env, "traefik", "250 hostnames declared", |s| {
        s.hostnames == 250
    })
    .await;
    assert!(s.last_error.is_empty(), "{s:?}");
    assert_eq!(env.fake.count(), 250, "250 records at the provider");
    assert_eq!(env.tracked().await.len(), 250);
    // 252 HTTP routers (with the two internal ones) are three pages of 100,
    // and one TCP page: four requests per read.
    traefik.reset_stats();
    let before = s.polls;
    wait_reads(&mut env, "traefik", before, 2).await;
    let stats = traefik.stats();
    assert!(stats.http_routers >= 3, "{stats:?}");
    assert_eq!(
        stats.bad_requests, 0,
        "never asked past the last page: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_failing_for_several_polls_orphans_nothing() {
    let traefik = FakeTraefik::start(TraefikOptions::v3()).await.unwrap();
    traefik.upsert_routers(
        RouterKind::Http,
        (0..12).map(|i| http(&format!("s{i}"), &format!("Host(`s{i}.example.com`)"))),
    );
    let mut env = start(
        &traefik,
        None,
        &["--cleanup-orphaned", "true", "--api-timeout", "1s"],
    )
    .await;
    wait_source(&mut env, "traefik", "12 hostnames", |s| s.hostnames == 12).await;
    let writes_before = writes(&env.fake.stats());

    for fault in ["refused", "503", "401", "garbage", "timeout"] {
        match fault {
            "refused" => traefik
                .set_unreachable(Some(Unreachable::Refused))
                .await
                .unwrap(),
            "503" => traefik
                .set_unreachable(Some(Unreachable::Status(503)))
                .await
                .unwrap(),
            "401" => traefik.set_unauthorized(true),
            "garbage" => traefik.set_garbage(true),
            _ => traefik.set_delay(Duration::from_secs(30)),
        }
        let before = source(&mut env, "traefik").await.errors;
        let s = wait_source(
            &mut env,
            "traefik",
            &format!("3 failed reads ({fault})"),
            |s| s.errors >= before + 3,
        )
        .await;
        assert!(!s.last_error.is_empty(), "{fault}: {s:?}");
        assert_eq!(s.hostnames, 12, "{fault}: the last good declaration stands");
        traefik.clear_faults().await.unwrap();
    }
    let tracked = env.tracked().await;
    assert_eq!(tracked.len(), 12);
    assert!(tracked.iter().all(|t| !t.is_orphaned), "nothing orphaned");
    assert_eq!(
        writes(&env.fake.stats()),
        writes_before,
        "records untouched"
    );
    // The sweep, cleanup on and the grace period long past, deletes nothing.
    env.clock.advance(Duration::from_secs(24 * 3600));
    assert!(env.sweep(false).await.deleted.is_empty());
    assert_eq!(env.fake.count(), 12);
    let s = wait_source(&mut env, "traefik", "a success after the faults", |s| {
        s.last_error.is_empty()
    })
    .await;
    assert_eq!(s.hostnames, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_answer_goes_through_the_guard() {
    let traefik = FakeTraefik::start(TraefikOptions::v3()).await.unwrap();
    traefik.upsert_router(RouterKind::Http, http("only", "Host(`only.example.com`)"));
    let mut env = start(&traefik, None, &[]).await;
    wait_at_provider(&env, "only.example.com").await;
    traefik.clear_routers(RouterKind::Http);
    let s = wait_source(&mut env, "traefik", "the guard refusing", |s| {
        s.last_error.contains("empty declaration")
    })
    .await;
    assert_eq!(s.hostnames, 1, "the last good declaration stands: {s:?}");
    let t = env.tracked_named("only.example.com").await;
    assert!(!t[0].is_orphaned, "never forced: {t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_routers_v2_rules_and_skipped_routers() {
    let traefik = FakeTraefik::start(TraefikOptions::v2()).await.unwrap();
    traefik.upsert_routers(
        RouterKind::Http,
        [
            http(
                "multi",
                "Host(`a.example.com`, `b.example.com`) && !Host(`not.example.com`)",
            ),
            http("twin", "Host(`a.example.com`)"),
            http("down", "Host(`down.example.com`)").with_status(RouterStatus::Disabled),
            http("regexp", "HostRegexp(`{sub:[a-z]+}.example.com`)"),
            http(
                "elsewhere",
                "Host(`www.example.org`) || Host(`c.example.com`)",
            ),
            http("broken", "Host(`x.example.com`"),
        ],
    );
    traefik.upsert_routers(
        RouterKind::Tcp,
        [
            FakeRouter::new("db", "docker", "HostSNI(`db.example.com`)"),
            FakeRouter::new("any", "docker", "HostSNI(`*`)"),
        ],
    );
    let mut env = start(&traefik, None, &[]).await;
    let s = wait_source(&mut env, "traefik", "4 hostnames", |s| s.hostnames == 4).await;
    let mut names: Vec<String> = env.tracked().await.into_iter().map(|t| t.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "a.example.com",
            "b.example.com",
            "c.example.com",
            "db.example.com"
        ]
    );
    assert_eq!(s.problems.len(), 1, "{s:?}");
    assert!(s.problems[0].contains("broken"), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_from_username_and_password_file() {
    let traefik = FakeTraefik::start(TraefikOptions::v3().with_basic_auth("dns", "hunter2-secret"))
        .await
        .unwrap();
    traefik.upsert_router(RouterKind::Http, http("app", "Host(`app.example.com`)"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "hunter2-secret\n").unwrap();
    let file = file.display().to_string();
    let mut env = start(
        &traefik,
        None,
        &[
            "--traefik-api-username",
            "dns",
            "--traefik-api-password-file",
            &file,
        ],
    )
    .await;
    wait_at_provider(&env, "app.example.com").await;
    // The password changed at Traefik: 401, reported without the password.
    traefik.set_unauthorized(true);
    let s = wait_source(&mut env, "traefik", "a 401", |s| {
        s.last_error.contains("401")
    })
    .await;
    assert!(s.last_error.contains("TRAEFIK_API_USERNAME"), "{s:?}");
    assert!(!format!("{s:?}").contains("hunter2"), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_labels_override_router_records() {
    let traefik = FakeTraefik::start(TraefikOptions::v3()).await.unwrap();
    let docker = FakeDocker::start(DockerOptions::docker_29()).await.unwrap();
    docker.add_container(
        FakeContainer::new("web", "nginx")
            .label("traefik.http.routers.web.rule", "Host(`web.example.com`)")
            .label("dns.type", "A")
            .label("dns.content", "192.0.2.5")
            .label("dns.cloudflare.content", "192.0.2.6")
            .label("dns.proxied", "false")
            .label("dns.ttl", "300")
            .in_state(ContainerState::Running),
    );
    docker.add_container(
        FakeContainer::new("hidden", "nginx")
            .label(
                "traefik.http.routers.hidden.rule",
                "Host(`hidden.example.com`)",
            )
            .label("dns.skip", "true")
            .in_state(ContainerState::Running),
    );
    docker.add_container(
        FakeContainer::new("bad", "nginx")
            .label("traefik.http.routers.bad.rule", "Host(`bad.example.com`)")
            .label("dns.ttl", "soon")
            .in_state(ContainerState::Running),
    );
    traefik.upsert_routers(
        RouterKind::Http,
        [
            http("web", "Host(`web.example.com`)"),
            http("hidden", "Host(`hidden.example.com`)"),
            http("bad", "Host(`bad.example.com`)"),
            FakeRouter::new("static", "file", "Host(`static.example.com`)"),
        ],
    );
    let mut env = start(&traefik, Some(&docker), &[]).await;
    let s = wait_source(&mut env, "traefik", "2 hostnames", |s| s.hostnames == 2).await;
    let web = env.at_provider("web.example.com");
    assert_eq!(web.len(), 1);
    assert_eq!(
        (
            web[0].r#type.as_str(),
            web[0].content.as_str(),
            web[0].proxied,
            web[0].ttl
        ),
        ("A", "192.0.2.6", false, 300),
        "the provider-specific label wins: {web:?}"
    );
    assert!(env.at_provider("hidden.example.com").is_empty(), "dns.skip");
    assert!(
        env.at_provider("bad.example.com").is_empty(),
        "bad value: skipped whole"
    );
    assert_eq!(env.at_provider("static.example.com")[0].r#type, "CNAME");
    assert_eq!(s.problems.len(), 1, "{s:?}");
    assert!(
        s.problems[0].contains("container bad") && s.problems[0].contains("dns.ttl"),
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_out_a_slow_traefik() {
    let traefik = FakeTraefik::start(TraefikOptions::v3()).await.unwrap();
    traefik.upsert_router(RouterKind::Http, http("app", "Host(`app.example.com`)"));
    traefik.set_delay(Duration::from_secs(120));
    // A shutdown grace longer than the bound below: the stop must not come
    // from the grace running out.
    let env = start(
        &traefik,
        None,
        &["--api-timeout", "120s", "--shutdown-grace", "15s"],
    )
    .await;
    // A read is under way, and would take two minutes.
    traefik.wait_stats(|s| s.total >= 1).await;
    let Env { tracking, .. } = env;
    let t = std::time::Instant::now();
    let res = tracking
        .shutdown_result()
        .await
        .expect("stopped within 20 s");
    res.expect("clean stop");
    assert!(t.elapsed() < Duration::from_secs(7), "{:?}", t.elapsed());
    traefik.shutdown();
}
