//! The many-zones mode of the tracking benchmark (`bench-tracking --zones`): cache-service
//! serving 1,000 zones of the fake Cloudflare account (ids looked up by name), and
//! tracking-service on an injected clock with a grace period of 0, all in this process.
//! 10,000 hostnames spread over every zone (10 a zone) are reconciled (time, provider
//! requests), then orphaned, then one orphan sweep deletes them all (time, provider
//! requests, deleted count).
//!
//! The fake Cloudflare sets no request budget of its own; the client's
//! (`CLOUDFLARE_RATE_LIMIT`, 1,200 per 5 minutes) is raised so the figures measure the
//! code, not Cloudflare's budget (1,000 zones take 2,000 requests to start).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use trafego_common::clock::ManualClock;
use trafego_proto::cache::RefreshCacheRequest;
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::tracking::tracking_service_client::TrackingServiceClient;
use trafego_proto::tracking::*;
use trafego_tests::fake_cloudflare::FakeCloudflareAccount;

use super::{TOKEN, a, channel, ms};

const ZONES: usize = 1_000;
const ORPHANS: usize = 10_000;

/// Runs the mode and prints its lines.
pub async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let names: Vec<String> = (0..ZONES).map(|i| format!("z{i:04}.example.com")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let acct = FakeCloudflareAccount::start(TOKEN, &refs, |_| {}).await?;

    let cache_listener = TcpListener::bind("127.0.0.1:0").await?;
    let cache_addr = cache_listener.local_addr()?;
    let db = dir.path().join("cache.db").display().to_string();
    let api = acct.base_url();
    let zones = names.join(",");
    let cache_config = cache_service::Config::for_test(&[
        "--provider",
        "cloudflare",
        "--zones",
        &zones,
        "--cloudflare-api-url",
        &api,
        "--cloudflare-token",
        TOKEN,
        "--cloudflare-rate-limit",
        "1000000",
        "--db-path",
        &db,
    ]);
    tokio::spawn(cache_service::run(
        cache_listener,
        cache_config,
        std::future::pending(),
    ));

    let clock = ManualClock::new(1_767_225_600_000);
    let tracking_listener = TcpListener::bind("127.0.0.1:0").await?;
    let tracking_addr = tracking_listener.local_addr()?;
    let tdb = dir.path().join("tracking.db").display().to_string();
    let cache_url = format!("http://{cache_addr}");
    let tracking_config = tracking_service::Config::for_test(&[
        "--cache-service-url",
        &cache_url,
        "--db-path",
        &tdb,
        "--cleanup-orphaned",
        "true",
        "--cleanup-grace-period",
        "0",
        "--cleanup-interval",
        "1h",
    ]);
    tokio::spawn(tracking_service::run_with_clock(
        tracking_listener,
        tracking_config,
        std::future::pending(),
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

    println!(
        "tracking-service over {ZONES} zones (fake Cloudflare account, in-process services, \
         client budget raised from 1200/300s)"
    );
    let per_zone = ORPHANS / ZONES;
    let desired: Vec<DesiredRecord> = (0..ORPHANS)
        .map(|n| {
            let zone = &names[n / per_zone];
            a(format!("host{:02}.{zone}", n % per_zone), "192.0.2.10")
        })
        .collect();
    acct.reset_stats();
    let t = Instant::now();
    let r = tracking
        .reconcile(ReconcileRequest {
            source: "bench".into(),
            records: desired,
            dry_run: false,
            force: false,
        })
        .await?
        .into_inner();
    let took = t.elapsed();
    let s = r.summary.unwrap_or_default();
    anyhow::ensure!(
        usize::try_from(s.created).ok() == Some(ORPHANS),
        "created {} of {ORPHANS}: {s:?}",
        s.created
    );
    println!(
        "reconcile {ORPHANS} new hostnames over {ZONES} zones: {:>8}  provider requests {:>5}",
        ms(took),
        acct.total_requests()
    );

    let t = Instant::now();
    let r = tracking
        .reconcile(ReconcileRequest {
            source: "bench".into(),
            records: vec![],
            dry_run: false,
            force: true,
        })
        .await?
        .into_inner();
    let s = r.summary.unwrap_or_default();
    anyhow::ensure!(
        usize::try_from(s.orphaned).ok() == Some(ORPHANS),
        "orphaned {}",
        s.orphaned
    );
    println!(
        "orphan {ORPHANS} (forced):                       {:>8}",
        ms(t.elapsed())
    );

    clock.advance(Duration::from_secs(1));
    acct.reset_stats();
    let t = Instant::now();
    let sw = tracking
        .run_orphan_sweep(RunOrphanSweepRequest { dry_run: false })
        .await?
        .into_inner();
    let took = t.elapsed();
    let deleted = sw.deleted.iter().filter(|d| d.deleted).count();
    anyhow::ensure!(sw.ran, "{sw:?}");
    println!(
        "sweep deleting {ORPHANS} orphans over {ZONES} zones (grace 0): {:>8}  provider requests {:>5}  \
         deleted {deleted}{}{}",
        ms(took),
        acct.total_requests(),
        if sw.skipped_zones.is_empty() {
            String::new()
        } else {
            format!("  skipped zones {}", sw.skipped_zones.len())
        },
        if sw.skipped_reason.is_empty() {
            String::new()
        } else {
            format!("  ({})", sw.skipped_reason)
        }
    );
    let left: usize = acct.zones().map(|z| z.count()).sum();
    anyhow::ensure!(left == 0, "{left} records left at the provider");
    Ok(())
}
