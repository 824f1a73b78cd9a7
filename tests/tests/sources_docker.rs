//! End-to-end tests of the `docker` hostname source: the fake Docker Engine
//! (a real HTTP server on a unix socket, or TCP as a socket proxy serves it,
//! with a streaming `/events`), cache-service on the fake Cloudflare, and
//! tracking-service with `SOURCES=docker`, all in-process. A container start
//! event declares its hostnames, a stop orphans them; `dns.skip`, the
//! `dns.manage` opt-in, the provider-specific labels and a label that does
//! not parse behave as TrafegoDNS documents; a dropped event stream is
//! reconnected and everything re-read; a burst of events is one read. The
//! poll interval is an hour, so only events (and the first read) move
//! anything; waits are on observable state, never sleeps.

mod sources_support;
mod tracking_support;

use sources_support::*;
use tracking_support::*;
use trafego_tests::fake_docker::{
    ContainerState, DockerOptions, FakeContainer, FakeDocker, Refusal, StreamDrop,
};

fn docker_args(host: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "--sources",
        "docker",
        "--docker-host",
        host,
        "--poll-interval",
        "1h",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !extra.contains(&"--source-debounce") {
        v.extend(["--source-debounce".to_string(), "0".to_string()]);
    }
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

fn running(name: &str, labels: &[(&str, &str)]) -> FakeContainer {
    labels
        .iter()
        .fold(FakeContainer::new(name, "nginx:1.27"), |c, (k, v)| {
            c.label(k, v)
        })
        .in_state(ContainerState::Running)
}

/// Starts everything and waits for the first read and the event stream.
async fn start(docker: &FakeDocker, host: &str, extra: &[&str]) -> Env {
    let args = docker_args(host, extra);
    let mut env = Env::start(vec![], &refs(&args)).await;
    wait_source(&mut env, "docker", "the first read", |s| s.polls >= 1).await;
    docker.wait_event_subscribers(1).await;
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_event_declares_and_a_stop_orphans() {
    let docker = FakeDocker::start(DockerOptions::docker_29()).await.unwrap();
    docker.add_container(running("keep", &[("dns.hostname", "keep.example.com")]));
    let mut env = start(&docker, &docker.unix_host(), &[]).await;
    wait_at_provider(&env, "keep.example.com").await;

    let id = docker.run_container(
        FakeContainer::new("web", "nginx").label("dns.hostname", "web.example.com,api.example.com"),
    );
    wait_at_provider(&env, "web.example.com").await;
    wait_at_provider(&env, "api.example.com").await;
    let t = env.tracked_named("web.example.com").await;
    assert_eq!(t[0].source, "docker");

    docker.stop_container(&id);
    eventually("web.example.com orphaned", || {
        let mut c = env.client.clone();
        async move {
            c.list_tracked_records(trafego_proto::tracking::ListTrackedRecordsRequest {
                name: "web.example.com".into(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_inner().records.iter().all(|t| t.is_orphaned))
            .unwrap_or(false)
        }
    })
    .await;
    let s = source(&mut env, "docker").await;
    assert!(s.events >= 2, "start, and stop/die: {s:?}");
    assert_eq!(s.hostnames, 1);
    assert!(!env.tracked_named("keep.example.com").await[0].is_orphaned);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_opt_in_and_provider_specific_labels_over_tcp() {
    let docker = FakeDocker::start(DockerOptions {
        tcp: true,
        ..DockerOptions::docker_29()
    })
    .await
    .unwrap();
    docker.add_container(running(
        "skipped",
        &[
            ("dns.hostname", "skipped.example.com"),
            ("dns.skip", "true"),
            ("dns.manage", "true"),
        ],
    ));
    docker.add_container(running(
        "opted",
        &[
            ("dns.hostname", "opted.example.com"),
            ("dns.manage", "true"),
        ],
    ));
    docker.add_container(running("plain", &[("dns.hostname", "plain.example.com")]));
    docker.add_container(running(
        "specific",
        &[
            ("dns.domain", "example.com"),
            ("dns.subdomain", "specific"),
            ("dns.cloudflare.manage", "true"),
            ("dns.type", "A"),
            ("dns.content", "192.0.2.1"),
            ("dns.cloudflare.content", "192.0.2.2"),
            ("dns.proxied", "true"),
            ("dns.cloudflare.proxied", "false"),
        ],
    ));
    let host = docker.tcp_host().unwrap();
    let mut env = start(&docker, &host, &["--dns-default-manage", "false"]).await;
    let s = wait_source(&mut env, "docker", "2 hostnames", |s| s.hostnames == 2).await;
    assert!(s.problems.is_empty(), "{s:?}");
    wait_at_provider(&env, "opted.example.com").await;
    let specific = wait_at_provider(&env, "specific.example.com").await;
    assert_eq!(
        (
            specific[0].r#type.as_str(),
            specific[0].content.as_str(),
            specific[0].proxied
        ),
        ("A", "192.0.2.2", false),
        "dns.cloudflare.* wins over dns.*"
    );
    assert!(
        env.at_provider("skipped.example.com").is_empty(),
        "dns.skip wins"
    );
    assert!(
        env.at_provider("plain.example.com").is_empty(),
        "not opted in"
    );
    assert_eq!(env.fake.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_label_that_does_not_parse_skips_its_container_whole() {
    let docker = FakeDocker::start(DockerOptions::docker_29()).await.unwrap();
    docker.add_container(running("good", &[("dns.hostname", "good.example.com")]));
    docker.add_container(running(
        "bad",
        &[
            ("dns.hostname", "bad1.example.com,bad2.example.com"),
            ("dns.proxied", "orange"),
        ],
    ));
    let mut env = start(&docker, &docker.unix_host(), &[]).await;
    let s = wait_source(&mut env, "docker", "1 hostname", |s| s.hostnames == 1).await;
    wait_at_provider(&env, "good.example.com").await;
    assert!(env.at_provider("bad1.example.com").is_empty());
    assert!(env.at_provider("bad2.example.com").is_empty());
    assert_eq!(s.problems.len(), 1, "{s:?}");
    assert!(
        s.problems[0].contains("container bad") && s.problems[0].contains("dns.proxied"),
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_event_stream_reconnects_and_re_lists() {
    let docker = FakeDocker::start(DockerOptions::docker_27()).await.unwrap();
    docker.add_container(running("keep", &[("dns.hostname", "keep.example.com")]));
    let mut env = start(&docker, &docker.unix_host(), &[]).await;
    wait_at_provider(&env, "keep.example.com").await;

    // The engine goes away; a container starts meanwhile, its event unheard.
    docker.set_refusing(Some(Refusal::Refused)).await.unwrap();
    docker.wait_event_subscribers(0).await;
    let lists = docker.stats().list;
    docker.add_container(running("late", &[("dns.hostname", "late.example.com")]));
    docker.set_refusing(None).await.unwrap();
    // Reconnected (the stream is open again) and re-listed: the record exists.
    docker.wait_event_subscribers(1).await;
    wait_at_provider(&env, "late.example.com").await;
    assert!(docker.stats().list > lists, "re-listed");

    // A stream that just breaks mid-answer: reconnected too.
    docker.drop_event_streams(StreamDrop::Abort);
    docker.wait_stats(|s| s.events >= 3).await;
    docker.wait_event_subscribers(1).await;
    docker.run_container(
        FakeContainer::new("after", "nginx").label("dns.hostname", "after.example.com"),
    );
    wait_at_provider(&env, "after.example.com").await;
    // The source's own figures are set after its reconcile returns, which
    // can be a moment after the record reached the provider.
    wait_source(&mut env, "docker", "three hostnames declared", |s| {
        s.hostnames == 3
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_events_is_one_read() {
    let docker = FakeDocker::start(DockerOptions::docker_29()).await.unwrap();
    docker.add_container(running("keep", &[("dns.hostname", "keep.example.com")]));
    let mut env = start(&docker, &docker.unix_host(), &["--source-debounce", "1s"]).await;
    wait_at_provider(&env, "keep.example.com").await;
    let before = source(&mut env, "docker").await;
    for i in 0..5 {
        docker.run_container(
            FakeContainer::new(&format!("b{i}"), "nginx")
                .label("dns.hostname", &format!("b{i}.example.com")),
        );
    }
    let s = wait_source(&mut env, "docker", "the burst declared", |s| {
        s.hostnames == 6
    })
    .await;
    assert_eq!(s.polls, before.polls + 1, "one read for five starts: {s:?}");
    assert!(s.events >= before.events + 5, "{s:?}");
    for i in 0..5 {
        assert_eq!(env.at_provider(&format!("b{i}.example.com")).len(), 1);
    }
}
