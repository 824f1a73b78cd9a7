//! Benchmark of the built-in hostname sources, with cache-service, the fake
//! Cloudflare server, the fake Docker Engine and the fake Traefik API all in
//! this process:
//!
//! - the time from a container's start event to the provider receiving the
//!   write, p50 and p99 over 200 starts, with SOURCE_DEBOUNCE=0 (target: p99
//!   at most 100 ms);
//! - 10,000 routers over 100 pages (Traefik's `per_page` of 100): the read
//!   alone, then read and reconciled by the `traefik` source (time, Traefik
//!   and provider requests).
//!
//! Not a test: it prints figures. Run:
//! `cargo run --release -p trafego-tests --bin bench-sources`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tonic::transport::Channel;
use trafego_common::clock::ManualClock;
use trafego_proto::cache::RefreshCacheRequest;
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::tracking::tracking_service_client::TrackingServiceClient;
use trafego_proto::tracking::{GetTrackerStatusRequest, SourceStatus};
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions, FakeStats};
use trafego_tests::fake_docker::{DockerOptions, FakeContainer, FakeDocker};
use trafego_tests::fake_traefik::{FakeRouter, FakeTraefik, RouterKind, TraefikOptions};

const TOKEN: &str = "bench-token-0123456789abcdef";
const EVENTS: usize = 200;
const ROUTERS: usize = 10_000;

async fn channel(addr: std::net::SocketAddr) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn writes(s: &FakeStats) -> u64 {
    s.create + s.update + s.delete + s.batch
}

/// cache-service on `fake` and tracking-service with `source_args`, in this
/// process; clients of both once cache-service has its first snapshot.
async fn services(
    fake: &FakeCloudflare,
    dir: &std::path::Path,
    name: &str,
    source_args: &[String],
) -> anyhow::Result<TrackingServiceClient<Channel>> {
    let cache_listener = TcpListener::bind("127.0.0.1:0").await?;
    let cache_addr = cache_listener.local_addr()?;
    let db = dir.join(format!("{name}-cache.db")).display().to_string();
    let api = fake.base_url();
    let cache_config = cache_service::Config::for_test(&[
        "--provider",
        "cloudflare",
        "--zone",
        "example.com",
        "--cloudflare-api-url",
        &api,
        "--cloudflare-token",
        TOKEN,
        "--db-path",
        &db,
    ]);
    tokio::spawn(cache_service::run(
        cache_listener,
        cache_config,
        std::future::pending(),
    ));
    let mut cache = CacheServiceClient::new(channel(cache_addr).await?);
    cache
        .refresh_cache(RefreshCacheRequest {
            force: false,
            ..Default::default()
        })
        .await?;

    let tracking_listener = TcpListener::bind("127.0.0.1:0").await?;
    let tracking_addr = tracking_listener.local_addr()?;
    let tdb = dir
        .join(format!("{name}-tracking.db"))
        .display()
        .to_string();
    let cache_url = format!("http://{cache_addr}");
    let mut args: Vec<String> = [
        "--cache-service-url",
        &cache_url,
        "--db-path",
        &tdb,
        "--cleanup-interval",
        "1h",
        "--poll-interval",
        "1h",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(source_args.iter().cloned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let tracking_config = tracking_service::Config::for_test(&refs);
    tokio::spawn(tracking_service::run_with_clock(
        tracking_listener,
        tracking_config,
        std::future::pending(),
        Arc::new(ManualClock::new(1_767_225_600_000)),
    ));
    Ok(TrackingServiceClient::new(channel(tracking_addr).await?)
        .max_decoding_message_size(256 << 20))
}

/// Waits (polling the status every 5 ms) until the source satisfies `pred`.
async fn wait_source(
    tracking: &mut TrackingServiceClient<Channel>,
    pred: impl Fn(&SourceStatus) -> bool,
) -> anyhow::Result<SourceStatus> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let st = tracking
            .get_tracker_status(GetTrackerStatusRequest {})
            .await?
            .into_inner();
        if let Some(s) = st.sources.into_iter().next()
            && pred(&s)
        {
            return Ok(s);
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let i = (sorted.len().saturating_mul(p) / 100).min(sorted.len().saturating_sub(1));
    sorted[i]
}

async fn docker_events(dir: &std::path::Path) -> anyhow::Result<()> {
    let fake = FakeCloudflare::start(FakeOptions::new(TOKEN, "example.com")).await?;
    let docker = FakeDocker::start(DockerOptions::docker_29()).await?;
    docker.add_container(
        FakeContainer::new("keep", "nginx")
            .label("dns.hostname", "keep.example.com")
            .in_state(trafego_tests::fake_docker::ContainerState::Running),
    );
    let args: Vec<String> = [
        "--sources",
        "docker",
        "--docker-host",
        &docker.unix_host(),
        "--source-debounce",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut tracking = services(&fake, dir, "docker", &args).await?;
    wait_source(&mut tracking, |s| s.hostnames == 1).await?;
    docker.wait_event_subscribers(1).await;

    let mut took = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let before = writes(&fake.stats());
        let c = FakeContainer::new(&format!("app{i:03}"), "nginx")
            .label("dns.hostname", &format!("app{i:03}.example.com"))
            .label("dns.type", "A")
            .label("dns.content", "192.0.2.10");
        let t = Instant::now();
        docker.run_container(c);
        fake.wait_stats(|s| writes(s) > before).await;
        took.push(t.elapsed());
        // The write is recorded before the next start, so each one is alone.
        let want = u64::try_from(i).unwrap_or(u64::MAX).saturating_add(2);
        wait_source(&mut tracking, |s| s.hostnames == want).await?;
    }
    anyhow::ensure!(fake.count() == EVENTS + 1, "records: {}", fake.count());
    took.sort();
    println!(
        "container start event -> provider write, {EVENTS} starts (debounce 0): p50 {:>8}  p99 {:>8}  max {:>8}  (target: p99 100 ms)",
        ms(percentile(&took, 50)),
        ms(percentile(&took, 99)),
        ms(took[took.len() - 1]),
    );
    Ok(())
}

async fn traefik_routers(dir: &std::path::Path) -> anyhow::Result<()> {
    let fake = FakeCloudflare::start(FakeOptions::new(TOKEN, "example.com")).await?;
    let traefik = FakeTraefik::start(TraefikOptions {
        internal_routers: false,
        ..TraefikOptions::v3()
    })
    .await?;
    traefik.upsert_routers(
        RouterKind::Http,
        (0..ROUTERS).map(|i| {
            FakeRouter::new(
                &format!("r{i:05}"),
                "docker",
                &format!("Host(`r{i:05}.example.com`) && PathPrefix(`/`)"),
            )
        }),
    );

    // The read alone: every page, HTTP and TCP.
    let client = tracking_service::source::traefik::TraefikClient::new(
        &traefik.base_url(),
        None,
        Duration::from_secs(30),
    )?;
    let t = Instant::now();
    let (routers, requests) = client.routers().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let read = t.elapsed();
    anyhow::ensure!(routers.len() == ROUTERS, "read {} routers", routers.len());
    println!(
        "read {ROUTERS} routers ({requests} Traefik requests, {} per page):  {:>8}",
        tracking_service::source::traefik::PER_PAGE,
        ms(read)
    );

    // Read and reconciled by the source, from an empty zone.
    traefik.reset_stats();
    let args: Vec<String> = [
        "--sources",
        "traefik",
        "--traefik-api-url",
        &traefik.base_url(),
        "--docker-socket",
        "/nonexistent/docker.sock",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let before = fake.stats();
    let t = Instant::now();
    let mut tracking = services(&fake, dir, "traefik", &args).await?;
    let s = wait_source(&mut tracking, |s| s.polls >= 1).await?;
    let took = t.elapsed();
    anyhow::ensure!(
        s.hostnames == ROUTERS as u64 && s.last_error.is_empty(),
        "{s:?}"
    );
    anyhow::ensure!(fake.count() == ROUTERS, "records: {}", fake.count());
    println!(
        "{ROUTERS} routers read and reconciled:  {:>8}  (from service start; Traefik requests {}, provider requests {} of which writes {})",
        ms(took),
        traefik.stats().total,
        fake.stats().total.saturating_sub(before.total),
        writes(&fake.stats()).saturating_sub(writes(&before))
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let dir = tempfile::tempdir()?;
    println!(
        "hostname sources benchmark (fake Docker, fake Traefik, fake Cloudflare, in-process services)"
    );
    docker_events(dir.path()).await?;
    traefik_routers(dir.path()).await?;
    Ok(())
}
