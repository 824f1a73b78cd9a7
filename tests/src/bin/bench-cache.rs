//! Benchmark of cache-service against the fake Cloudflare server: for zones of
//! 1,000, 10,000 and 100,000 records it prints the cold refresh (time,
//! provider requests), an unchanged refresh (time, rows written), a full
//! paged read through ListRecords, the service's peak RSS, and ApplyChanges of
//! 10,000 creates (time, provider requests).
//!
//! With the argument `rfc2136` it measures the RFC 2136 provider against a
//! real `knotd` instead: a cold listing of a 10,000-record zone (time, AXFR
//! messages) and 1,000 creates through ApplyChanges (time, UPDATE messages).
//! `bench-cache digitalocean` runs the DigitalOcean mode instead
//! (`bench-cache/digitalocean.rs`): against the fake DigitalOcean, a cold
//! listing of a 10,000-record domain and 1,000 creates.
//!
//! The service runs as its own process (the release binary next to this one),
//! so its peak RSS is its own. Build both first:
//! `cargo build --release -p cache-service -p trafego-tests --bins`.
//! `bench-cache --postgres` runs the 100,000-record refreshes (cold and
//! unchanged, with the paged read) on SQLite and then on PostgreSQL (a
//! throwaway cluster from `trafego_tests::postgres`, started and stopped
//! here; the service gets it as CACHE_DATABASE_URL), printing both.
//! `bench-cache --route53` runs the Route53 figures instead (`bench-cache/route53.rs`), and
//! `bench-cache --zones` the many-zones figures (`bench-cache/zones.rs`): 1,000 zones of
//! 100 records on the fake Cloudflare account.

#[path = "bench-cache/route53.rs"]
mod route53;

use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::cache::*;
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions, FakeRecord};

#[path = "bench-cache/digitalocean.rs"]
mod digitalocean;
#[path = "bench-cache/zones.rs"]
mod zones;

const TOKEN: &str = "bench-token-0123456789abcdef";

fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// Starts the release cache-service on `fake`, its database a SQLite file in
/// `dir`, or the PostgreSQL database `database_url`.
async fn start_service(
    fake: &FakeCloudflare,
    dir: &std::path::Path,
    database_url: Option<&str>,
) -> anyhow::Result<(
    tokio::process::Child,
    CacheServiceClient<tonic::transport::Channel>,
)> {
    let mut envs = vec![
        ("DNS_PROVIDER", "cloudflare".to_string()),
        ("CLOUDFLARE_API_URL", fake.base_url()),
        ("CLOUDFLARE_TOKEN", TOKEN.to_string()),
    ];
    if let Some(url) = database_url {
        envs.push(("CACHE_DATABASE_URL", url.to_string()));
    }
    let (child, client, _) = start_service_with(dir, &envs, "warn,trafego_common=info").await?;
    Ok((child, client))
}

/// Log lines of the service kept by [`start_service_with`].
type Kept = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Starts the release cache-service with `envs` and `log_level` (`DNS_ZONE`
/// is example.com unless `envs` sets `DNS_ZONES`); the log lines containing
/// "zone transfer read" are kept.
async fn start_service_with(
    dir: &std::path::Path,
    envs: &[(&str, String)],
    log_level: &str,
) -> anyhow::Result<(
    tokio::process::Child,
    CacheServiceClient<tonic::transport::Channel>,
    Kept,
)> {
    let bin = trafego_tests::workspace_bin("cache-service");
    anyhow::ensure!(
        bin.exists(),
        "{} not built: cargo build --release -p cache-service",
        bin.display()
    );
    let mut cmd = tokio::process::Command::new(bin);
    cmd.env_clear();
    if !envs.iter().any(|(k, _)| *k == "DNS_ZONES") {
        cmd.env("DNS_ZONE", "example.com");
    }
    let mut child = cmd
        .env("CACHE_LISTEN_ADDR", "127.0.0.1:0")
        .env("CACHE_DB_PATH", dir.join("cache.db"))
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", log_level)
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
    let kept: Kept = Default::default();
    let keep = kept.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("zone transfer read") {
                keep.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        }
    });
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let client = CacheServiceClient::new(channel)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
    Ok((child, client, kept))
}

/// The refresh figures of a zone of `n` records, on SQLite (`database_url`
/// `None`) or on the PostgreSQL database `database_url`; `label` starts the line.
async fn run_size(n: usize, label: &str, database_url: Option<&str>) -> anyhow::Result<()> {
    let fake = FakeCloudflare::start(FakeOptions::new(TOKEN, "example.com")).await?;
    fake.insert_many(
        (0..n)
            .map(|i| {
                let mut r = FakeRecord::new(
                    "A",
                    &format!("host-{i:07}.example.com"),
                    &format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
                );
                r.ttl = 300;
                r
            })
            .collect(),
    );
    let dir = tempfile::tempdir()?;
    let (mut child, mut c) = start_service(&fake, dir.path(), database_url).await?;
    let pid = child.id().unwrap_or(0);
    // The service refreshes at start: that is the cold refresh.
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
        status.record_count == n as u64,
        "cached {} of {n}",
        status.record_count
    );
    let cold_requests = fake.stats().total;
    fake.reset_stats();
    let t = Instant::now();
    let warm = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let warm_wall = t.elapsed();
    let warm_requests = fake.stats().total;

    // A full paged read.
    let t = Instant::now();
    let mut seen = HashSet::with_capacity(n);
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = c
            .list_records(ListRecordsRequest {
                page_size: 10_000,
                page_token: token,
                ..Default::default()
            })
            .await?
            .into_inner();
        pages += 1;
        for r in page.records {
            anyhow::ensure!(seen.insert(r.record_id), "a record came twice");
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    anyhow::ensure!(seen.len() == n, "paged {} of {n}", seen.len());
    let list_wall = t.elapsed();
    let rss = peak_rss_mib(pid);
    println!(
        "{label}records={n:>7}  cold_refresh={:>6} ms ({cold_requests} provider requests)  \
         unchanged_refresh={:>5} ms (wall {:>5} ms, rows written {}, {warm_requests} requests)  \
         list_all={:>5} ms ({pages} pages)  peak_rss={rss:.1} MiB",
        status.last_refresh_duration_ms,
        warm.duration_ms,
        warm_wall.as_millis(),
        warm.added + warm.changed + warm.removed,
        list_wall.as_millis(),
    );
    child.start_kill()?;
    let _ = child.wait().await;
    Ok(())
}

async fn run_creates(n: usize) -> anyhow::Result<()> {
    let fake = FakeCloudflare::start(FakeOptions::new(TOKEN, "example.com")).await?;
    let dir = tempfile::tempdir()?;
    let (mut child, mut c) = start_service(&fake, dir.path(), None).await?;
    let pid = child.id().unwrap_or(0);
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await?;
    fake.reset_stats();
    let changes = (0..n)
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
        r.succeeded as usize == n,
        "{} of {n} succeeded",
        r.succeeded
    );
    let s = fake.stats();
    println!(
        "apply_changes creates={n}  time={} ms  provider_requests={} (batch {})  peak_rss={:.1} MiB",
        wall.as_millis(),
        s.total,
        s.batch,
        peak_rss_mib(pid)
    );
    child.start_kill()?;
    let _ = child.wait().await;
    Ok(())
}

/// The RFC 2136 provider against a real knotd: a cold listing of `n`
/// records and `creates` creates.
async fn run_rfc2136(n: usize, creates: usize) -> anyhow::Result<()> {
    use trafego_tests::knot::KnotServer;
    let lines: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "host-{i:07} 300 A 10.{}.{}.{}",
                i / 65536,
                (i / 256) % 256,
                i % 256
            )
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let knot = KnotServer::start("example.com", &refs).await?;
    let dir = tempfile::tempdir()?;
    let envs = [
        ("DNS_PROVIDER", "rfc2136".to_string()),
        ("RFC2136_SERVER", knot.server()),
        ("RFC2136_TSIG_KEY_NAME", knot.key.name.clone()),
        ("RFC2136_TSIG_SECRET", knot.key.secret.clone()),
    ];
    let level = "warn,trafego_common=info,cache_service::provider::rfc2136=info";
    let (mut child, mut c, kept) = start_service_with(dir.path(), &envs, level).await?;
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
        "cold refresh failed: {}",
        status.last_error
    );
    let messages = kept
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .first()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["fields"]["messages"].as_u64().or(v["messages"].as_u64()))
        .unwrap_or(0);
    println!(
        "rfc2136 (knotd) records={} cold_refresh={} ms (1 AXFR, {messages} messages)",
        status.record_count, status.last_refresh_duration_ms
    );
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
    println!(
        "rfc2136 (knotd) apply_changes creates={creates}  time={} ms  UPDATE messages={}  peak_rss={:.1} MiB",
        wall.as_millis(),
        r.provider_requests,
        peak_rss_mib(pid)
    );
    child.start_kill()?;
    let _ = child.wait().await;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().any(|a| a == "rfc2136") {
        return run_rfc2136(10_000, 1_000).await;
    }
    if std::env::args().nth(1).as_deref() == Some("digitalocean") {
        return digitalocean::run().await;
    }
    if std::env::args().any(|a| a == "--route53") {
        return route53::run().await;
    }
    if std::env::args().any(|a| a == "--zones") {
        return zones::run().await;
    }
    if std::env::args().any(|a| a == "--postgres") {
        return run_postgres(100_000).await;
    }
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000, 100_000]
    } else {
        sizes
    };
    println!(
        "cache-service benchmark ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    for n in sizes {
        run_size(n, "", None).await?;
    }
    run_creates(10_000).await?;
    Ok(())
}

/// The refresh figures of `n` records on SQLite, then on PostgreSQL.
async fn run_postgres(n: usize) -> anyhow::Result<()> {
    println!(
        "cache-service benchmark, SQLite then PostgreSQL ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    run_size(n, "SQLite      ", None).await?;
    let pg = trafego_tests::postgres::PgCluster::start().await?;
    let res = match pg.create_database("bench_cache").await {
        Ok(url) => run_size(n, "PostgreSQL  ", Some(&url)).await,
        Err(e) => Err(e),
    };
    pg.stop()?;
    res
}
