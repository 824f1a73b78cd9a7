//! tracking-service: decides which DNS records should exist, tracks what the
//! app manages (`dns_tracked_records`) and cleans up orphans safely. It
//! reaches the DNS provider only through cache-service's gRPC API and never
//! opens cache-service's database.
//!
//! The binary is thin: everything lives here, so tests start the real service
//! on `127.0.0.1:0` with their own shutdown signal and clock.

pub mod background;
pub mod cache_client;
pub mod check;
pub mod config;
pub mod convert;
pub mod desired;
pub mod error;
pub mod grpc;
pub mod ownership;
pub mod plan;
pub mod preserve;
pub mod reconcile;
pub mod schema;
pub mod source;
pub mod store;
pub mod sweep;
pub mod track;
pub mod tracker;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use trafego_common::clock::SharedClock;
use trafego_common::db::{AnyDb, Migrations};
use trafego_common::server::{ServeConfig, serve};
use trafego_proto::tracking::tracking_service_server::TrackingServiceServer;

pub use config::Config;

/// tracking-service's embedded SQLite migrations (`migrations/tracking/`).
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/tracking");

/// tracking-service's embedded PostgreSQL migrations
/// (`migrations/tracking-postgres/`), the twins of [`MIGRATIONS`].
pub const PG_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/tracking-postgres");

/// Both backends' migrations, for [`AnyDb::connect`].
pub fn migrations() -> Migrations {
    Migrations {
        sqlite: MIGRATIONS,
        postgres: PG_MIGRATIONS,
    }
}

/// The gRPC name health reports under.
pub const SERVICE_NAME: &str = "trafego.tracking.v1.TrackingService";

/// Runs tracking-service on `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    run_with_clock(listener, config, shutdown, trafego_common::clock::system()).await
}

/// The validated tracker settings of `config`.
pub fn settings(config: &Config) -> anyhow::Result<tracker::Settings> {
    config.validate()?;
    Ok(tracker::Settings {
        defaults: desired::Defaults {
            rtype: config.default_type()?,
            content: config.default_content.clone().filter(|c| !c.is_empty()),
            ttl: trafego_proto::validate::parse_ttl("DNS_DEFAULT_TTL", config.default_ttl)
                .map_err(|e| anyhow::anyhow!("{e}"))?,
            proxied: config.default_proxied,
            public_ip: config.public_ip,
            public_ipv6: config.public_ipv6,
        },
        zone: config.zone()?,
        cleanup: config.cleanup_orphaned,
        grace: config.cleanup_grace_period,
        preserved: config.preserved()?,
        managed: config.managed()?,
        max_orphan_ratio: config.max_orphan_ratio,
        max_staleness: config.reconcile_max_staleness,
        // How long a reconcile waits for cache-service to finish changes an
        // earlier one left in flight before planning around them.
        outcome_wait: (config.cache_service_timeout / 2).min(std::time::Duration::from_secs(10)),
        ownership: config.ownership()?,
    })
}

/// [`run`] with an injected clock, for tests of grace periods.
pub async fn run_with_clock(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send,
    clock: SharedClock,
) -> anyhow::Result<()> {
    let settings = settings(&config)?;
    let source_settings = config.sources.settings()?;
    let mesh = config.service.mesh.settings()?;
    config.service.mesh.install_metrics()?;
    // Series that exist from the start, so dashboards and alerts see zeros.
    metrics::counter!("trafego_orphans_deleted_total").increment(0);
    for guard in ["empty_declaration", "max_orphan_ratio"] {
        metrics::counter!("trafego_guard_refusals_total", "guard" => guard).increment(0);
    }
    let client = cache_client::CacheClient::new(
        &config.cache_service_url,
        config.cache_service_timeout,
        config.service.mesh.max_message_bytes,
        &config.cache_client_security()?,
    )?;
    let (db_url, setting) = config.database()?;
    let db = AnyDb::connect(&db_url, setting, migrations(), config.service.db_options())
        .with_context(|| format!("opening the database {setting} names ({db_url})"))?;
    tracing::info!(
        db = %db_url,
        cache_service = client.host(),
        cleanup = settings.cleanup,
        grace = %humantime::format_duration(settings.grace),
        managed_hostnames = settings.managed.len(),
        "tracking-service starting"
    );
    let tracker = Arc::new(tracker::Tracker::new(db, client, clock.clone(), settings));
    // Ownership markers: a mode the provider cannot hold stops the service
    // here; an empty table is rebuilt from markers before anything plans.
    match tracker.start_ownership().await {
        Ok(()) => {}
        Err(e @ error::TrackingError::FailedPrecondition(_)) => {
            return Err(anyhow::anyhow!("{e}"));
        }
        Err(e) => tracing::warn!(
            error = %e,
            "could not check ownership markers at start; the first reconcile, sweep or track does it"
        ),
    }
    let cancel = CancellationToken::new();
    let follower = tokio::spawn(background::follow_cache(tracker.clone(), cancel.clone()));
    let sweeper = tokio::spawn(background::sweep_loop(
        tracker.clone(),
        config.cleanup_interval,
        cancel.clone(),
    ));
    let (sources, source_tasks) = source::start(
        source_settings,
        tracker.clone(),
        clock.clone(),
        cancel.clone(),
    )?;
    let svc =
        TrackingServiceServer::new(grpc::TrackingApi::new(tracker.clone()).with_sources(sources))
            .max_decoding_message_size(config.service.mesh.max_message_bytes)
            .max_encoding_message_size(config.service.mesh.max_message_bytes);
    let res = serve(
        listener,
        svc,
        ServeConfig {
            service_name: SERVICE_NAME,
            descriptor_set: trafego_proto::TRACKING_FILE_DESCRIPTOR_SET,
            grace: config.service.shutdown_grace,
            mesh,
            role: None,
        },
        shutdown,
        cancel.clone(),
    )
    .await;
    cancel.cancel();
    // Background work in flight (a sweep, a re-check, a reconcile whose
    // caller hung up) gets the same grace as calls; it is never cut between a
    // provider write and its record.
    let background = async {
        let _ = follower.await;
        let _ = sweeper.await;
        for t in source_tasks {
            let _ = t.await;
        }
        tracker.idle().await;
    };
    if tokio::time::timeout(config.service.shutdown_grace, background)
        .await
        .is_err()
    {
        tracing::warn!("background work did not finish within the shutdown grace period");
    }
    res.map_err(Into::into)
}
