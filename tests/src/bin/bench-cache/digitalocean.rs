//! The DigitalOcean mode of the cache benchmark: cache-service (release, its
//! own process) against the fake DigitalOcean, a cold listing of a
//! 10,000-record domain (time, requests) and 1,000 creates through
//! ApplyChanges (time, requests). DigitalOcean has no batch endpoint, so each
//! create is one request.
//!
//! The fake's and the client's rate budgets are raised so the figures measure
//! the code, not the budget; the time DigitalOcean's own limits (250 requests
//! a minute, 5,000 an hour) would add is printed beside them.

use std::time::{Duration, Instant};

use trafego_proto::cache::*;
use trafego_tests::fake_digitalocean::{DoOptions, DoRecord, FakeDigitalOcean};

const TOKEN: &str = "bench-do-token-0123456789abcdef";
const RECORDS: usize = 10_000;
const CREATES: usize = 1_000;

/// The shortest time `n` requests take under DigitalOcean's limits, from an
/// empty budget: 250 at once, then 250 more each minute (and the hour's
/// 5,000 beyond that).
fn budget_floor(n: u64) -> Duration {
    let minutes = n.div_ceil(250).saturating_sub(1);
    let hours = n.div_ceil(5_000).saturating_sub(1);
    Duration::from_secs((minutes * 60).max(hours * 3_600))
}

/// Runs the mode and prints its two lines.
pub async fn run() -> anyhow::Result<()> {
    let mut opts = DoOptions::new(TOKEN, "example.com");
    opts.hourly_limit = 1_000_000;
    opts.minute_limit = 1_000_000;
    let fake = FakeDigitalOcean::start(opts).await?;
    fake.insert_many(
        (0..RECORDS)
            .map(|i| {
                let mut r = DoRecord::new(
                    "A",
                    &format!("host-{i:07}"),
                    &format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
                );
                r.ttl = 300;
                r
            })
            .collect(),
    );
    let total = fake.count();
    let dir = tempfile::tempdir()?;
    let env = [
        ("DNS_PROVIDER", "digitalocean".to_string()),
        ("DO_DOMAIN", "example.com".to_string()),
        ("DO_API_URL", fake.base_url()),
        ("DO_TOKEN", TOKEN.to_string()),
        ("DO_RATE_LIMIT", "1000000".to_string()),
        ("DO_BURST_LIMIT", "1000000".to_string()),
    ];
    let (mut child, mut c, _) =
        super::start_service_with(dir.path(), &env, "warn,trafego_common=info").await?;
    let pid = child.id().unwrap_or(0);
    // The service refreshes at start: that is the cold listing.
    let status = loop {
        let s = c
            .get_cache_status(GetCacheStatusRequest {})
            .await?
            .into_inner();
        if s.last_refreshed.is_some() || !s.last_error.is_empty() {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    anyhow::ensure!(
        status.last_error.is_empty(),
        "cold listing failed: {}",
        status.last_error
    );
    anyhow::ensure!(
        status.record_count == total as u64,
        "cached {} of {total}",
        status.record_count
    );
    let list_requests = fake.stats().total;
    println!(
        "digitalocean records={total}  cold_refresh={} ms ({list_requests} provider requests, \
         {} pages of 200; DigitalOcean's limits add {} s)",
        status.last_refresh_duration_ms,
        fake.stats().list,
        budget_floor(list_requests).as_secs(),
    );

    fake.reset_stats();
    let changes = (0..CREATES)
        .map(|i| Change {
            kind: Some(change::Kind::Create(RecordInput {
                r#type: "A".into(),
                name: format!("new-{i:06}.example.com"),
                content: "192.0.2.1".into(),
                ttl: 300,
                ..Default::default()
            })),
            change_id: String::new(),
            group: String::new(),
        })
        .collect();
    let t = Instant::now();
    let r = c
        .apply_changes(ApplyChangesRequest { changes })
        .await?
        .into_inner();
    let wall = t.elapsed();
    anyhow::ensure!(
        r.succeeded as usize == CREATES,
        "{} of {CREATES} succeeded",
        r.succeeded
    );
    let s = fake.stats();
    println!(
        "digitalocean apply_changes creates={CREATES}  time={} ms  provider_requests={} \
         (create {}; DigitalOcean's limits add {} s)  peak_rss={:.1} MiB",
        wall.as_millis(),
        s.total,
        s.create,
        budget_floor(s.total).as_secs(),
        super::peak_rss_mib(pid)
    );
    child.start_kill()?;
    let _ = child.wait().await;
    Ok(())
}
