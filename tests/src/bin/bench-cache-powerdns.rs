//! Benchmark of cache-service with the PowerDNS provider against a real
//! `pdns_server` (Debian's 4.7, `launch=gsqlite3`, started on loopback as the
//! tests start it): the cold refresh of a 10,000-record zone (time, provider
//! requests) and ApplyChanges of 1,000 creates (time, provider requests).
//! Requests are counted by the conformance backend's pass-through proxy in
//! front of PowerDNS.
//!
//! The service runs as its own process (the release binary next to this
//! one). Build both first:
//! `cargo build --release -p cache-service -p trafego-tests --bins`.
//! Arguments: the zone size and the number of creates (10000 1000).

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::cache::*;
use trafego_tests::conformance::powerdns::FaultProxy;
use trafego_tests::pdns::PdnsServer;

async fn start_service(
    api_url: &str,
    key: &str,
    dir: &std::path::Path,
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
        .env("DNS_PROVIDER", "powerdns")
        .env("DNS_ZONE", "example.com")
        .env("PDNS_API_URL", api_url)
        .env("PDNS_API_KEY", key)
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

/// Seeds `n` A records straight into PowerDNS, 2,000 RRsets per PATCH.
async fn seed(pdns: &PdnsServer, n: usize) -> anyhow::Result<()> {
    let names: Vec<usize> = (0..n).collect();
    for chunk in names.chunks(2000) {
        let rrsets: Vec<serde_json::Value> = chunk
            .iter()
            .map(|i| {
                serde_json::json!({
                    "name": format!("host-{i:07}.example.com."),
                    "type": "A",
                    "ttl": 300,
                    "changetype": "REPLACE",
                    "records": [{
                        "content": format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
                        "disabled": false
                    }],
                })
            })
            .collect();
        let (status, answer) = pdns
            .api(
                reqwest::Method::PATCH,
                "zones/example.com.",
                Some(serde_json::json!({ "rrsets": rrsets })),
            )
            .await?;
        anyhow::ensure!(status == 204, "seeding: {status} {answer}");
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(10_000);
    let creates = args.get(1).copied().unwrap_or(1_000);
    println!(
        "cache-service benchmark, PowerDNS provider ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let pdns = PdnsServer::start("example.com").await?;
    seed(&pdns, n).await?;
    let proxy = FaultProxy::start(&pdns.api_url).await?;
    let dir = tempfile::tempdir()?;
    let (mut child, mut c) = start_service(&proxy.url(), &pdns.api_key, dir.path()).await?;

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
    // The seeded hosts and the apex NS.
    anyhow::ensure!(
        status.record_count == u64::try_from(n)? + 1,
        "cached {} of {n}",
        status.record_count
    );
    println!(
        "records={n:>6}  cold_refresh={:>5} ms ({} provider requests)",
        status.last_refresh_duration_ms,
        proxy.counts().total
    );

    proxy.reset_counts();
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
    let counts = proxy.counts();
    println!(
        "apply_changes creates={creates}  time={} ms  provider_requests={} ({} GET, {} PATCH)",
        wall.as_millis(),
        counts.total,
        counts.get,
        counts.patch
    );
    child.start_kill()?;
    let _ = child.wait().await;
    Ok(())
}
