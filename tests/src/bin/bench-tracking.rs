//! Benchmark of tracking-service with cache-service and the fake Cloudflare
//! server, all in this process: a reconcile of 10,000 new hostnames into an
//! empty zone (time, provider requests), the same call again (time, provider
//! requests: the target is zero), and orphan sweeps over 100,000 tracked
//! records (time). Not a test: it prints figures.
//!
//! With `--postgres` the same run follows on PostgreSQL (a throwaway cluster
//! from `trafego_tests::postgres`, started and stopped here), beside the
//! SQLite one, each with its own fake and cache-service.
//!
//! Run: `cargo run --release -p trafego-tests --bin bench-tracking [-- --postgres]`.
//! `bench-tracking --zones` runs the many-zones figures instead
//! (`bench-tracking/zones.rs`): a sweep deleting 10,000 orphans spread over 1,000 zones.

#[path = "bench-tracking/zones.rs"]
mod zones;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tonic::transport::Channel;
use trafego_common::clock::ManualClock;
use trafego_proto::cache::RefreshCacheRequest;
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::tracking::tracking_service_client::TrackingServiceClient;
use trafego_proto::tracking::*;
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions, FakeRecord};

const TOKEN: &str = "bench-token-0123456789abcdef";
const NEW: usize = 10_000;
const TRACKED: usize = 100_000;

fn a(name: String, ip: &str) -> DesiredRecord {
    DesiredRecord {
        hostname: name,
        r#type: Some("A".into()),
        content: Some(ip.into()),
        proxied: Some(false),
        ..Default::default()
    }
}

async fn channel(addr: std::net::SocketAddr) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    if std::env::args().any(|a| a == "--zones") {
        return zones::run().await;
    }
    let postgres = std::env::args().skip(1).any(|a| a == "--postgres");
    if !postgres {
        return run("SQLite", None).await;
    }
    run("SQLite", None).await?;
    let pg = trafego_tests::postgres::PgCluster::start().await?;
    let url = pg.create_database("bench_tracking").await?;
    let res = run("PostgreSQL", Some(&url)).await;
    pg.stop()?;
    res
}

/// One run of every measurement, on SQLite (`database_url` `None`) or on the
/// PostgreSQL database `database_url`; its services are stopped at the end.
async fn run(backend: &str, database_url: Option<&str>) -> anyhow::Result<()> {
    let stop = tokio_util::sync::CancellationToken::new();
    let _stop_at_end = stop.clone().drop_guard();
    let dir = tempfile::tempdir()?;
    let fake = FakeCloudflare::start(FakeOptions::new(TOKEN, "example.com")).await?;

    let cache_listener = TcpListener::bind("127.0.0.1:0").await?;
    let cache_addr = cache_listener.local_addr()?;
    let db = dir.path().join("cache.db").display().to_string();
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
    let cache_task = tokio::spawn(cache_service::run(
        cache_listener,
        cache_config,
        stop.clone().cancelled_owned(),
    ));

    let clock = ManualClock::new(1_767_225_600_000);
    let tracking_listener = TcpListener::bind("127.0.0.1:0").await?;
    let tracking_addr = tracking_listener.local_addr()?;
    let tdb = dir.path().join("tracking.db").display().to_string();
    let cache_url = format!("http://{cache_addr}");
    let mut tracking_args = vec![
        "--cache-service-url",
        &cache_url,
        "--db-path",
        &tdb,
        "--cleanup-orphaned",
        "true",
        "--cleanup-interval",
        "1h",
    ];
    if let Some(url) = database_url {
        tracking_args.extend(["--database-url", url]);
    }
    let tracking_config = tracking_service::Config::for_test(&tracking_args);
    let tracking_task = tokio::spawn(tracking_service::run_with_clock(
        tracking_listener,
        tracking_config,
        stop.clone().cancelled_owned(),
        Arc::new(clock.clone()),
    ));

    let mut cache =
        CacheServiceClient::new(channel(cache_addr).await?).max_decoding_message_size(256 << 20);
    let mut tracking = TrackingServiceClient::new(channel(tracking_addr).await?)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
    cache
        .refresh_cache(RefreshCacheRequest {
            force: false,
            ..Default::default()
        })
        .await?;
    // Let the start-up sync finish so it does not share the first measurement.
    tracking
        .run_orphan_sweep(RunOrphanSweepRequest { dry_run: true })
        .await?;

    println!("tracking-service benchmark on {backend} (fake Cloudflare, in-process services)");
    let desired: Vec<DesiredRecord> = (0..NEW)
        .map(|i| a(format!("host{i:05}.example.com"), "192.0.2.10"))
        .collect();
    let reconcile = |records: Vec<DesiredRecord>, source: &str, force: bool| ReconcileRequest {
        source: source.into(),
        records,
        dry_run: false,
        force,
    };

    fake.reset_stats();
    let t = Instant::now();
    let r = tracking
        .reconcile(reconcile(desired.clone(), "bench", false))
        .await?
        .into_inner();
    let took = t.elapsed();
    let s = r.summary.unwrap_or_default();
    anyhow::ensure!(
        s.created as usize == NEW,
        "created {} of {NEW}: {s:?}",
        s.created
    );
    println!(
        "reconcile {NEW} new hostnames:      {:>8}  provider requests {:>4}  (target: 10 s, 60 requests)",
        ms(took),
        fake.stats().total
    );

    fake.reset_stats();
    let t = Instant::now();
    let r = tracking
        .reconcile(reconcile(desired.clone(), "bench", false))
        .await?
        .into_inner();
    let took = t.elapsed();
    let s = r.summary.unwrap_or_default();
    anyhow::ensure!(
        s.unchanged as usize == NEW,
        "unchanged {} of {NEW}",
        s.unchanged
    );
    println!(
        "same reconcile again:              {:>8}  provider requests {:>4}  (target: 0.5 s, 0 requests)",
        ms(took),
        fake.stats().total
    );

    // 90,000 more records made by someone else, adopted as not app-managed:
    // the tracker then holds 100,000 records.
    let extra = TRACKED - NEW;
    fake.insert_many(
        (0..extra)
            .map(|i| FakeRecord::new("A", &format!("other{i:05}.example.com"), "198.51.100.1"))
            .collect(),
    );
    cache
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await?;
    fake.reset_stats();
    let adopt: Vec<DesiredRecord> = (0..extra)
        .map(|i| a(format!("other{i:05}.example.com"), "198.51.100.1"))
        .collect();
    let t = Instant::now();
    let r = tracking
        .reconcile(reconcile(adopt, "adopted", false))
        .await?
        .into_inner();
    let took = t.elapsed();
    let s = r.summary.unwrap_or_default();
    anyhow::ensure!(
        s.adopted as usize == extra,
        "adopted {} of {extra}",
        s.adopted
    );
    println!(
        "reconcile adopting {extra} records:  {:>8}  provider requests {:>4}",
        ms(took),
        fake.stats().total
    );

    // The 10,000 app-managed records become orphans.
    let t = Instant::now();
    let r = tracking
        .reconcile(reconcile(vec![], "bench", true))
        .await?
        .into_inner();
    let s = r.summary.unwrap_or_default();
    anyhow::ensure!(s.orphaned as usize == NEW, "orphaned {}", s.orphaned);
    println!("orphan {NEW} (forced):             {:>8}", ms(t.elapsed()));

    let status = tracking
        .get_tracker_status(GetTrackerStatusRequest {})
        .await?
        .into_inner();
    anyhow::ensure!(status.total == TRACKED as u64, "tracked {}", status.total);
    fake.reset_stats();
    let t = Instant::now();
    let sw = tracking
        .run_orphan_sweep(RunOrphanSweepRequest { dry_run: false })
        .await?
        .into_inner();
    let took = t.elapsed();
    anyhow::ensure!(sw.ran && sw.within_grace as usize == NEW, "{sw:?}");
    println!(
        "sweep over {TRACKED} tracked (in grace): {:>8}  provider requests {:>4}  (target: 2 s)",
        ms(took),
        fake.stats().total
    );

    clock.advance(Duration::from_secs(16 * 60));
    fake.reset_stats();
    let t = Instant::now();
    let sw = tracking
        .run_orphan_sweep(RunOrphanSweepRequest { dry_run: false })
        .await?
        .into_inner();
    let took = t.elapsed();
    let deleted = sw.deleted.iter().filter(|d| d.deleted).count();
    println!(
        "sweep deleting {NEW} of {TRACKED}:     {:>8}  provider requests {:>4}  deleted {deleted}{}",
        ms(took),
        fake.stats().total,
        if sw.skipped_reason.is_empty() {
            String::new()
        } else {
            format!("  ({})", sw.skipped_reason)
        }
    );
    // Both services stop before the next run starts.
    stop.cancel();
    for task in [tracking_task, cache_task] {
        tokio::time::timeout(Duration::from_secs(30), task).await???;
    }
    Ok(())
}
