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
        .map_err(|e| anyhow::anyhow!("binding {}: {e}", config.listen_addr))?;
    let res = tracking_service::run(listener, config, shutdown).await;
    if let Err(e) = &res {
        tracing::error!(error = %e, "tracking-service failed");
    }
    res
}
