//! The many-zones mode of the cache benchmark (`bench-cache --zones`): cache-service
//! (release, its own process) serving 1,000 zones of 100 records each (100,000 records)
//! on the fake Cloudflare account, with `DNS_ZONES` of the 1,000 names and no
//! `CLOUDFLARE_ZONE_ID`, so each zone's id is looked up by name (`GET /zones?name=`), and
//! the default `REFRESH_CONCURRENCY`. It prints the start-up (process start to serving
//! gRPC) and the zone id lookups, the cold refresh of every zone (time, provider requests,
//! the service's peak RSS), an unchanged refresh (time, requests, rows written) and a
//! refresh with one zone changed (time), of every zone and of that zone alone.
//!
//! The fake Cloudflare sets no request budget of its own; the client's
//! (`CLOUDFLARE_RATE_LIMIT`, 1,200 per 5 minutes) is raised so the figures measure the
//! code: a cold start of 1,000 zones is 2,000 requests, and the time Cloudflare's budget
//! would add is printed beside it.

use std::time::{Duration, Instant};

use trafego_proto::cache::*;
use trafego_tests::fake_cloudflare::{FakeCloudflareAccount, FakeRecord};

const TOKEN: &str = "bench-zones-token-0123456789abcdef";
const ZONES: usize = 1_000;
const PER_ZONE: usize = 100;
/// Cloudflare's budget: requests in any window of [`CF_WINDOW_SECS`].
const CF_LIMIT: u64 = 1_200;
const CF_WINDOW_SECS: u64 = 300;

/// The shortest time `n` requests take under Cloudflare's budget from an empty one:
/// 1,200 at once, then 1,200 more each 5 minutes.
fn budget_floor(n: u64) -> Duration {
    Duration::from_secs(n.div_ceil(CF_LIMIT).saturating_sub(1) * CF_WINDOW_SECS)
}

fn zone_name(i: usize) -> String {
    format!("z{i:04}.example.com")
}

/// Milliseconds of `d`, saturating (a benchmark never runs for 584 million years).
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Runs the mode and prints its lines.
pub async fn run() -> anyhow::Result<()> {
    let names: Vec<String> = (0..ZONES).map(zone_name).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let acct = FakeCloudflareAccount::start(TOKEN, &refs, |_| {}).await?;
    let mut first_ids = Vec::with_capacity(ZONES);
    for (i, zone) in names.iter().enumerate() {
        let ids = acct.zone(zone).insert_many(
            (0..PER_ZONE)
                .map(|j| {
                    let n = i * PER_ZONE + j;
                    let mut r = FakeRecord::new(
                        "A",
                        &format!("host-{j:03}.{zone}"),
                        &format!("10.{}.{}.{}", n / 65536, (n / 256) % 256, n % 256),
                    );
                    r.ttl = 300;
                    r
                })
                .collect(),
        );
        first_ids.push(ids.into_iter().next().unwrap_or_default());
    }
    let total = u64::try_from(ZONES * PER_ZONE)?;
    let dir = tempfile::tempdir()?;
    let env = [
        ("DNS_PROVIDER", "cloudflare".to_string()),
        ("DNS_ZONES", names.join(",")),
        ("CLOUDFLARE_API_URL", acct.base_url()),
        ("CLOUDFLARE_TOKEN", TOKEN.to_string()),
        ("CLOUDFLARE_RATE_LIMIT", "1000000".to_string()),
    ];
    println!(
        "cache-service, {ZONES} zones x {PER_ZONE} records on the fake Cloudflare account \
         (REFRESH_CONCURRENCY default, client budget raised from 1200/300s)"
    );
    let t = Instant::now();
    let (mut child, mut c, _) =
        super::start_service_with(dir.path(), &env, "warn,trafego_common=info").await?;
    let startup = t.elapsed();
    let pid = child.id().unwrap_or(0);
    // The service refreshes every zone at start: that is the cold refresh, timed from
    // the process start (the refresh may begin before gRPC is served).
    let mut deadline = Duration::MAX;
    let status = loop {
        let s = c
            .get_cache_status(GetCacheStatusRequest {})
            .await?
            .into_inner();
        if let Some(z) = s.zones.iter().find(|z| !z.last_error.is_empty()) {
            anyhow::bail!("cold refresh of {} failed: {}", z.zone, z.last_error);
        }
        let done = s.zones.len() == ZONES && s.zones.iter().all(|z| z.last_refreshed.is_some());
        // A zone's count may trail its refresh stamp by a moment; wait up to 2 s for it.
        if done && (s.record_count == total || t.elapsed() > deadline) {
            break s;
        }
        if done && deadline == Duration::MAX {
            deadline = t.elapsed() + Duration::from_secs(2);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let cold = t.elapsed();
    let rss_cold = super::peak_rss_mib(pid);
    let short: Vec<String> = status
        .zones
        .iter()
        .filter(|z| z.record_count != u64::try_from(PER_ZONE).unwrap_or(0))
        .map(|z| format!("{} ({})", z.zone, z.record_count))
        .collect();
    anyhow::ensure!(
        status.record_count == total && short.is_empty(),
        "cached {} of {total}; zones short: {short:?}",
        status.record_count
    );
    let lookups = acct.zone_lookups();
    let cold_requests = acct.total_requests();
    let mut durations: Vec<(u64, &str)> = status
        .zones
        .iter()
        .map(|z| (z.last_refresh_duration_ms, z.zone.as_str()))
        .collect();
    durations.sort_unstable();
    let median = durations.get(ZONES / 2).map_or(0, |d| d.0);
    let slow = durations.iter().filter(|d| d.0 >= 1_000).count();
    let (longest, longest_zone) = durations.last().copied().unwrap_or((0, ""));
    println!(
        "start-up (process start to serving gRPC): {:>6} ms, 0 provider requests; zone ids are \
         looked up at each zone's first listing: {lookups} lookups (GET /zones?name=), inside the cold refresh",
        ms(startup)
    );
    println!(
        "cold refresh of {ZONES} zones ({total} records): {:>6} ms ({cold_requests} provider requests: \
         {lookups} lookups + {} listings; zones: median {median} ms, {slow} over 1 s, longest \
         {longest} ms ({longest_zone}); Cloudflare's budget adds {} s)  \
         peak_rss={rss_cold:.1} MiB",
        ms(cold),
        cold_requests.saturating_sub(lookups),
        budget_floor(cold_requests).as_secs(),
    );

    acct.reset_stats();
    let t = Instant::now();
    let warm = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let warm_wall = t.elapsed();
    let warm_requests = acct.total_requests();
    anyhow::ensure!(warm.zones.len() == ZONES, "{} zones", warm.zones.len());
    println!(
        "unchanged refresh of {ZONES} zones:          {:>6} ms (longest zone {} ms, \
         {warm_requests} provider requests, rows written {})",
        ms(warm_wall),
        warm.duration_ms,
        warm.added + warm.changed + warm.removed,
    );

    // One record of one zone changes at the provider.
    let changed = zone_name(ZONES / 2);
    let id = first_ids.get(ZONES / 2).cloned().unwrap_or_default();
    anyhow::ensure!(acct.zone(&changed).update_content(&id, "192.0.2.77"));
    acct.reset_stats();
    let t = Instant::now();
    let one = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let one_wall = t.elapsed();
    let one_requests = acct.total_requests();
    anyhow::ensure!(one.changed == 1, "{one:?}");
    println!(
        "one zone changed, refresh of every zone:   {:>6} ms ({one_requests} provider requests, \
         rows written {})",
        ms(one_wall),
        one.added + one.changed + one.removed,
    );

    anyhow::ensure!(acct.zone(&changed).update_content(&id, "192.0.2.78"));
    acct.reset_stats();
    let t = Instant::now();
    let alone = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            zone: changed.clone(),
        })
        .await?
        .into_inner();
    let alone_wall = t.elapsed();
    anyhow::ensure!(alone.changed == 1, "{alone:?}");
    println!(
        "one zone changed, refresh of that zone:    {:>6} ms ({} provider requests, rows written {})  \
         peak_rss={:.1} MiB",
        ms(alone_wall),
        acct.total_requests(),
        alone.added + alone.changed + alone.removed,
        super::peak_rss_mib(pid),
    );
    child.start_kill()?;
    let _ = child.wait().await;
    Ok(())
}
