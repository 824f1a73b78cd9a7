//! The Route53 mode of the cache benchmark (`bench-cache --route53`): cache-service against
//! the fake Route53 (SigV4 checked on every request), twice: at Route53's own rate (the fake
//! throttles past 5 requests a second, the client budgets 5 a second, as in production) and
//! with both limits off (the client's own cost). Each prints the cold refresh of a
//! 10,000-record zone (time, provider requests) and ApplyChanges of 1,000 creates (time,
//! provider requests, change batches).

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::cache::*;
use trafego_tests::fake_route53::{FakeRoute53, RecordSet, Route53Options};

const AKID: &str = "AKIABENCHROUTE53";
const SECRET: &str = "bench/route53+secret-0123456789";

async fn start_service(
    fake: &FakeRoute53,
    dir: &std::path::Path,
    rate_limit: u32,
) -> anyhow::Result<(
    tokio::process::Child,
    CacheServiceClient<tonic::transport::Channel>,
)> {
    let bin = trafego_tests::workspace_bin("cache-service");
    anyhow::ensure!(
        bin.exists(),
        "{} not built: cargo build --release -p cache-service",
        bin.display()
    );
    let mut child = tokio::process::Command::new(bin)
        .env_clear()
        .env("CACHE_LISTEN_ADDR", "127.0.0.1:0")
        .env("CACHE_DB_PATH", dir.join("cache.db"))
        .env("DNS_PROVIDER", "route53")
        .env("ROUTE53_ZONE", "example.com")
        .env("ROUTE53_API_URL", fake.endpoint())
        .env("ROUTE53_ACCESS_KEY", AKID)
        .env("ROUTE53_SECRET_KEY", SECRET)
        .env("ROUTE53_RATE_LIMIT", rate_limit.to_string())
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "warn,trafego_common=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines
            .next_line()
            .await?
            .ok_or_else(|| anyhow::anyhow!("cache-service exited"))?;
        if line.contains("serving gRPC") {
            let v: serde_json::Value = serde_json::from_str(&line)?;
            break v["addr"].as_str().unwrap_or_default().to_string();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let client = CacheServiceClient::new(channel)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
    Ok((child, client))
}

async fn run_one(n: usize, creates: usize, throttled: bool) -> anyhow::Result<()> {
    let mut opts = Route53Options::new(AKID, SECRET, "example.com");
    if !throttled {
        opts.throttle = None;
    }
    let fake = FakeRoute53::start(opts).await?;
    fake.insert_many(
        (0..n)
            .map(|i| {
                let ip = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
                RecordSet::new("A", &format!("host-{i:07}.example.com"), 300, &[&ip])
            })
            .collect(),
    );
    // The zone's SOA and its four NS values are records too.
    let expected = u64::try_from(n.saturating_add(5)).unwrap_or(u64::MAX);
    let dir = tempfile::tempdir()?;
    let (mut child, mut c) =
        start_service(&fake, dir.path(), if throttled { 5 } else { 0 }).await?;
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
        "cold refresh failed: {}",
        status.last_error
    );
    anyhow::ensure!(
        status.record_count == expected,
        "cached {} of {expected}",
        status.record_count
    );
    let cold = fake.stats();
    fake.reset_stats();
    let changes = (0..creates)
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
        r.succeeded as usize == creates,
        "{} of {creates} succeeded",
        r.succeeded
    );
    let w = fake.stats();
    println!(
        "route53 ({})  records={n}  cold_refresh={} ms ({} provider requests, {} pages, {} throttled)  \
         apply_changes creates={creates}  time={} ms  provider_requests={} (change batches {})  \
         peak_rss={:.1} MiB",
        if throttled {
            "5 req/s, as Route53"
        } else {
            "unthrottled"
        },
        status.last_refresh_duration_ms,
        cold.total,
        cold.list,
        cold.throttled,
        wall.as_millis(),
        w.total,
        w.change_batches,
        super::peak_rss_mib(child.id().unwrap_or(0)),
    );
    child.start_kill()?;
    let _ = child.wait().await;
    Ok(())
}

/// Runs the Route53 figures.
pub async fn run() -> anyhow::Result<()> {
    run_one(10_000, 1_000, true).await?;
    run_one(10_000, 1_000, false).await
}
