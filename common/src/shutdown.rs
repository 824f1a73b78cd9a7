//! The shutdown signal: one future that completes on SIGINT or SIGTERM.
//!
//! The handlers are installed when [`signal`] is called, not when the future
//! is first polled, so a SIGTERM that arrives while the service is still
//! starting is not lost (nor does it kill the process with the default action).

use std::future::Future;

/// Installs the SIGINT and SIGTERM handlers now and returns a future that
/// completes when either signal arrives. Call it inside the tokio runtime.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
                    _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
                },
                _ => {
                    tracing::warn!("signal handlers could not be installed; waiting for Ctrl-C");
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("Ctrl-C received, shutting down");
    }
}
