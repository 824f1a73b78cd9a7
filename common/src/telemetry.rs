//! Logging through `tracing`: human-readable text by default, one JSON object
//! per line with `LOG_FORMAT=json`. Never log a secret: configuration types
//! that hold one redact it in their `Debug`.

use tracing_subscriber::EnvFilter;

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap_value::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

mod clap_value {
    //! Keeps the clap dependency out of the public path of this module.
    pub use clap::ValueEnum;
}

/// Installs the global subscriber. `level` is an `EnvFilter` directive such as
/// `info` or `cache_service=debug,info`. Returns an error for a bad directive.
/// Calling it twice is harmless (the second call keeps the first subscriber).
pub fn init(format: LogFormat, level: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(level).map_err(|e| format!("LOG_LEVEL {level:?}: {e}"))?;
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_target(true).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
    Ok(())
}
