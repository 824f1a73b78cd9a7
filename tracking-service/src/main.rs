//! The tracking-service binary: parses configuration, sets up logging, binds
//! the listener and runs the library until SIGINT or SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // First, so a SIGTERM during start-up is handled, not fatal.
    let shutdown = trafego_common::shutdown::signal();
    let config = tracking_service::Config::parse();
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
