//! `fake-digitalocean`: runs the DigitalOcean-API-v2-compatible fake provider as a standalone
//! HTTP server, so the services can be pointed at it by hand (or from scripts and benchmarks in
//! other processes) without touching the real DigitalOcean. Optionally seeds the domain with N
//! `A` records, prints one line with its URL, and serves until SIGINT or SIGTERM. It listens on
//! loopback unless told otherwise and never forwards anything anywhere.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Parser;
use tokio::net::TcpListener;
use trafego_tests::fake_digitalocean::{DoOptions, DoRecord, FakeDigitalOcean};

/// Command line of the fake; every flag also reads an environment variable.
#[derive(Debug, Parser)]
#[command(
    name = "fake-digitalocean",
    about = "DigitalOcean API v2 (domain records) compatible fake DNS provider for tests and benchmarks"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "FAKE_DO_LISTEN", default_value = "127.0.0.1:8788")]
    listen: SocketAddr,
    /// The only bearer token accepted.
    #[arg(long, env = "FAKE_DO_TOKEN", hide_env_values = true)]
    token: String,
    /// The single domain served.
    #[arg(long, env = "FAKE_DO_DOMAIN", default_value = "example.com")]
    domain: String,
    /// Number of `A` records `rec-{i}` to create at start.
    #[arg(long, env = "FAKE_DO_SEED", default_value_t = 0)]
    seed: usize,
    /// Requests per hour before 429 (DigitalOcean: 5000).
    #[arg(long, env = "FAKE_DO_HOURLY_LIMIT", default_value_t = 5000)]
    hourly_limit: u32,
    /// Requests per minute before 429 (DigitalOcean: 250).
    #[arg(long, env = "FAKE_DO_MINUTE_LIMIT", default_value_t = 250)]
    minute_limit: u32,
    /// Start without the SOA and NS records DigitalOcean puts at every domain's apex.
    #[arg(long, env = "FAKE_DO_NO_APEX_DEFAULTS")]
    no_apex_defaults: bool,
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

    let mut opts = DoOptions::new(&args.token, &args.domain);
    opts.hourly_limit = args.hourly_limit;
    opts.minute_limit = args.minute_limit;
    opts.apex_defaults = !args.no_apex_defaults;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let fake = FakeDigitalOcean::start_on(listener, opts)
        .await
        .context("starting the fake")?;

    if args.seed > 0 {
        let blocks = ["192.0.2", "198.51.100", "203.0.113"];
        let records = (0..args.seed)
            .map(|i| {
                let ip = format!("{}.{}", blocks[(i / 254) % blocks.len()], i % 254 + 1);
                DoRecord::new("A", &format!("rec-{i}"), &ip)
            })
            .collect();
        fake.insert_many(records);
        tracing::info!(records = args.seed, "seeded");
    }

    println!(
        "fake-digitalocean listening on {} domain {}",
        fake.base_url(),
        fake.domain()
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
