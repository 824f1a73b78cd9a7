//! cache-service: owns the provider cache (`dns_records`) and is the only part
//! of TrafegoDNS that talks to the DNS provider. It refreshes the cache on a
//! TTL, writes changes through to the provider, and streams cache events.
//!
//! The binary is thin: everything lives here, so tests start the real service
//! on `127.0.0.1:0` with their own shutdown signal.

pub mod cache;
pub mod config;
pub mod events;
pub mod grpc;
pub mod journal;
pub mod provider;
pub mod schema;
pub mod store;

use std::future::Future;

use anyhow::Context;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use trafego_common::clock::SharedClock;
use trafego_common::db::{AnyDb, Migrations};
use trafego_common::server::{ServeConfig, serve};
use trafego_proto::cache::cache_service_server::CacheServiceServer;

pub use config::Config;

/// cache-service's embedded SQLite migrations (`migrations/cache/`).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/cache");

/// cache-service's embedded PostgreSQL migrations
/// (`migrations/cache-postgres/`), the twins of [`MIGRATIONS`].
pub const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/cache-postgres");

/// Both backends' migrations, for [`AnyDb::connect`].
pub fn migrations() -> Migrations {
    Migrations {
        sqlite: MIGRATIONS,
        postgres: PG_MIGRATIONS,
    }
}

/// The gRPC name health reports under.
pub const SERVICE_NAME: &str = "trafego.cache.v1.CacheService";

/// Runs cache-service on `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    run_with_clock(listener, config, shutdown, trafego_common::clock::system()).await
}

/// [`run`] with an injected clock, for tests of staleness.
pub async fn run_with_clock(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
    clock: SharedClock,
) -> anyhow::Result<()> {
    let mesh = config.service.mesh.settings()?;
    config.service.mesh.install_metrics()?;
    metrics::counter!("trafego_cache_refresh_failures_total").increment(0);
    let providers = config.providers()?;
    let (db_url, setting) = config.database()?;
    let db = AnyDb::connect(&db_url, setting, migrations(), config.service.db_options())
        .with_context(|| format!("opening the database {setting} names ({db_url})"))?;
    tracing::info!(
        provider = providers[0].name(),
        zones = %providers.iter().map(|p| p.zone().as_str()).collect::<Vec<_>>().join(","),
        db = %db_url,
        refresh_interval = %humantime::format_duration(config.refresh_interval),
        "cache-service starting"
    );
    let cache = cache::Cache::open(db, providers, clock, config.cache_settings()).await?;
    let cancel = CancellationToken::new();
    let refresher = tokio::spawn(cache::refresh_loop(cache.clone(), cancel.clone()));
    let api = grpc::CacheApi::new(cache, cancel.clone());
    let svc = CacheServiceServer::new(api)
        .max_decoding_message_size(config.service.mesh.max_message_bytes)
        .max_encoding_message_size(config.service.mesh.max_message_bytes);
    let res = serve(
        listener,
        svc,
        ServeConfig {
            service_name: SERVICE_NAME,
            descriptor_set: trafego_proto::CACHE_FILE_DESCRIPTOR_SET,
            grace: config.service.shutdown_grace,
            mesh,
            role: None,
        },
        shutdown,
        cancel.clone(),
    )
    .await;
    cancel.cancel();
    let _ = refresher.await;
    res.map_err(Into::into)
}
