//! `fake-route53`: runs the Route 53 (2013-04-01 REST/XML) compatible fake provider as a
//! standalone HTTP server, so the services can be pointed at it by hand (or from scripts and
//! benchmarks in other processes) without touching AWS. Requests must be SigV4-signed with the
//! access key and secret given here. Optionally seeds the zone with N `A` record sets, prints one
//! line with its endpoint and zone id, and serves until SIGINT or SIGTERM. It listens on loopback
//! unless told otherwise and never forwards anything anywhere.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tokio::net::TcpListener;
use trafego_tests::fake_route53::{FakeRoute53, RecordSet, Route53Options};

/// Command line of the fake; every flag also reads an environment variable.
#[derive(Debug, Parser)]
#[command(
    name = "fake-route53",
    about = "Route 53 (2013-04-01) compatible fake DNS provider for tests and benchmarks"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "FAKE_R53_LISTEN", default_value = "127.0.0.1:8789")]
    listen: SocketAddr,
    /// The only access key id accepted.
    #[arg(long, env = "FAKE_R53_ACCESS_KEY")]
    access_key: String,
    /// Its secret key, used to check signatures.
    #[arg(long, env = "FAKE_R53_SECRET_KEY", hide_env_values = true)]
    secret_key: String,
    /// Name of the single hosted zone served.
    #[arg(long, env = "FAKE_R53_ZONE", default_value = "example.com")]
    zone: String,
    /// Hosted zone id (default: derived from the zone name).
    #[arg(long, env = "FAKE_R53_ZONE_ID")]
    zone_id: Option<String>,
    /// Region the signature's credential scope must name; `any` accepts every region.
    #[arg(long, env = "FAKE_R53_SIGNING_REGION", default_value = "us-east-1")]
    signing_region: String,
    /// Requests per second before `Throttling` (Route 53: 5); 0 disables throttling.
    #[arg(long, env = "FAKE_R53_RATE", default_value_t = 5)]
    rate: u32,
    /// Number of `A` record sets `rec-{i}.<zone>` to create at start.
    #[arg(long, env = "FAKE_R53_SEED", default_value_t = 0)]
    seed: usize,
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

    let mut opts = Route53Options::new(&args.access_key, &args.secret_key, &args.zone);
    if let Some(id) = args.zone_id {
        opts.zone_id = id;
    }
    opts.signing_region = (args.signing_region != "any").then_some(args.signing_region);
    opts.throttle = (args.rate > 0).then_some((args.rate, Duration::from_secs(1)));
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let fake = FakeRoute53::start_on(listener, opts)
        .await
        .context("starting the fake")?;

    if args.seed > 0 {
        let zone = fake.zone_name();
        let blocks = ["192.0.2", "198.51.100", "203.0.113"];
        let sets = (0..args.seed)
            .map(|i| {
                let ip = format!("{}.{}", blocks[(i / 254) % blocks.len()], i % 254 + 1);
                RecordSet::new("A", &format!("rec-{i}.{zone}"), 300, &[&ip])
            })
            .collect();
        fake.insert_many(sets);
        tracing::info!(record_sets = args.seed, "seeded");
    }

    println!(
        "fake-route53 listening on {} zone {} id {}",
        fake.endpoint(),
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
