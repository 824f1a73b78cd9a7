//! Settings every TrafegoDNS service takes the same way: shutdown grace, the
//! database pool, logging, the mesh settings and leader election. Flattened into each
//! service's own flags, so both read them under the same names.

use std::time::Duration;

use crate::db::DbOptions;
use crate::duration;
use crate::leader::LeaderArgs;
use crate::mesh::MeshArgs;
use crate::telemetry::LogFormat;

/// The settings shared by both services.
#[derive(Clone, Debug, clap::Args)]
pub struct ServiceArgs {
    /// How long in-flight calls may finish after SIGTERM (bare numbers are milliseconds).
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "10s", value_parser = duration::parse_millis)]
    pub shutdown_grace: Duration,

    /// Database connections in the pool.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 4)]
    pub db_pool_size: u32,

    /// Authentication, TLS, limits and metrics of this service's listener.
    #[command(flatten)]
    pub mesh: MeshArgs,

    /// Leader election among replicas (read with PostgreSQL only; see crate::leader).
    #[command(flatten)]
    pub leader: LeaderArgs,

    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Log level or filter directive (e.g. info, debug, cache_service=debug).
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,
}

impl ServiceArgs {
    /// Pool settings.
    pub fn db_options(&self) -> DbOptions {
        DbOptions {
            pool_size: self.db_pool_size.max(1),
            ..DbOptions::default()
        }
    }

    /// Installs the log subscriber; a bad LOG_LEVEL is an error.
    pub fn init_logging(&self) -> anyhow::Result<()> {
        crate::telemetry::init(self.log_format, &self.log_level).map_err(anyhow::Error::msg)
    }
}
