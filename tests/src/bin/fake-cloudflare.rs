//! `fake-cloudflare`: runs the Cloudflare-API-v4-compatible fake provider as a standalone
//! HTTP server, so the services can be pointed at it by hand (or from scripts and
//! benchmarks in other processes) without touching the real Cloudflare. Optionally seeds
//! the zone with N `A` records, prints one line with its URL, and serves until SIGINT or
//! SIGTERM.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use tokio::net::TcpListener;
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions, FakeRecord};

/// Command line of the fake; every flag also reads an environment variable.
#[derive(Debug, Parser)]
#[command(
    name = "fake-cloudflare",
    about = "Cloudflare API v4 compatible fake DNS provider for tests and benchmarks"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "FAKE_CF_LISTEN", default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// The only bearer token accepted.
    #[arg(long, env = "FAKE_CF_TOKEN", hide_env_values = true)]
    token: String,
    /// Name of the single zone served.
    #[arg(long, env = "FAKE_CF_ZONE", default_value = "example.com")]
    zone: String,
    /// Zone identifier (default: 32 hex chars derived from the zone name).
    #[arg(long, env = "FAKE_CF_ZONE_ID")]
    zone_id: Option<String>,
    /// Number of `A` records `rec-{i}.<zone>` to create at start.
    #[arg(long, env = "FAKE_CF_SEED", default_value_t = 0)]
    seed: usize,
    /// Largest `per_page` honoured by the list endpoint (larger values are capped).
    #[arg(long, env = "FAKE_CF_MAX_PER_PAGE")]
    max_per_page: Option<u32>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();

    let mut opts = FakeOptions::new(&args.token, &args.zone);
    if let Some(id) = args.zone_id {
        opts.zone_id = id;
    }
    if let Some(max) = args.max_per_page {
        opts.max_per_page = max;
    }
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let fake = FakeCloudflare::start_on(listener, opts)
        .await
        .context("starting the fake")?;

    if args.seed > 0 {
        let zone = fake.zone_name();
        let blocks = ["192.0.2", "198.51.100", "203.0.113"];
        let records = (0..args.seed)
            .map(|i| {
                let ip = format!("{}.{}", blocks[(i / 254) % blocks.len()], i % 254 + 1);
                FakeRecord::new("A", &format!("rec-{i}.{zone}"), &ip)
            })
            .collect();
        fake.insert_many(records);
        tracing::info!(records = args.seed, "seeded");
    }

    println!(
        "fake-cloudflare listening on {} zone {} id {}",
        fake.base_url(),
        fake.zone_name(),
        fake.zone_id()
    );

    shutdown_signal().await?;
    tracing::info!("shutting down");
    fake.shutdown();
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for SIGINT")?,
        _ = term.recv() => {}
    }
    Ok(())
}
