//! The tracking-service binary: parses configuration, sets up logging, binds
//! the listener and runs the library until SIGINT or SIGTERM. With the
//! `import` subcommand it claims another tool's records once and exits
//! instead (`tracking_service::ownership::import`).

use clap::Parser;

/// tracking-service: decides which DNS records should exist, tracks what the
/// app manages and cleans up orphans, through cache-service. With no command
/// it runs the service.
#[derive(Parser)]
#[command(name = "tracking-service", version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: tracking_service::Config,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Claim the records TrafegoDNS (its dns-records.json or SQLite database) or
    /// external-dns (its TXT registry, for one owner id) managed, then exit.
    /// Only records the provider still holds are claimed; the rest are reported.
    Import {
        #[command(flatten)]
        args: tracking_service::ownership::import::ImportArgs,
        #[command(flatten)]
        config: tracking_service::Config,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // First, so a SIGTERM during start-up is handled, not fatal.
    let shutdown = trafego_common::shutdown::signal();
    let cli = Cli::parse();
    if let Some(Command::Import { args, config }) = cli.command {
        config.service.init_logging()?;
        let mut out = std::io::stdout().lock();
        if let Err(e) = tracking_service::ownership::import::run(&config, &args, &mut out).await {
            // One line naming what was wrong; nothing was written.
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
        return Ok(());
    }
    let config = cli.config;
    config.service.init_logging()?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .map_err(|e| bind_error(config.listen_addr, &e))?;
    let res = tracking_service::run(listener, config, shutdown).await;
    if let Err(e) = &res {
        tracing::error!(error = %e, "tracking-service failed");
    }
    res
}

/// The error of a failed bind, naming the variable to change: a port already
/// taken (another copy running, or another program) is the usual first-run
/// failure, and it gets one line that says what to do.
fn bind_error(addr: std::net::SocketAddr, e: &std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        anyhow::anyhow!("{addr} is already in use: set TRACKING_LISTEN_ADDR to a free address")
    } else {
        anyhow::anyhow!("cannot listen on {addr} (TRACKING_LISTEN_ADDR): {e}")
    }
}
