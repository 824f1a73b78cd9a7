//! cache-service: owns the provider cache (`dns_records`) and is the only part
//! of TrafegoDNS that talks to the DNS provider. It refreshes the cache on a
//! TTL, writes changes through to the provider, and streams cache events.
//!
//! The binary is thin: everything lives here, so tests start the real service
//! on `127.0.0.1:0` with their own shutdown signal.
//!
//! The work that must happen once (refreshing from the provider, writing
//! through to it, the change journal) runs on the leader only, inside
//! `while_leading`. On PostgreSQL any number of replicas share the database
//! and contend for the leadership (`Leadership`); followers serve reads and
//! forward writes (`Forward`, `follower.rs`), and every database write is
//! fenced. One instance on its SQLite file leads alone (`leader::solo()`),
//! so the code path is the same.

pub mod cache;
pub mod config;
pub mod events;
pub mod follower;
pub mod grpc;
pub mod journal;
pub mod provider;
pub mod schema;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use trafego_common::clock::SharedClock;
use trafego_common::db::{AnyDb, Migrations};
use trafego_common::leader::forward::{Forward, Replication};
use trafego_common::leader::{Leadership, Role, while_leading};
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

/// The write RPCs: a follower sends them on to the leader (`Forward`).
/// `WatchCache` is among them: only the leader publishes events.
pub const WRITE_METHODS: &[&str] = &[
    "/trafego.cache.v1.CacheService/RefreshCache",
    "/trafego.cache.v1.CacheService/CreateRecord",
    "/trafego.cache.v1.CacheService/UpdateRecord",
    "/trafego.cache.v1.CacheService/DeleteRecord",
    "/trafego.cache.v1.CacheService/ApplyChanges",
    "/trafego.cache.v1.CacheService/GetChangeOutcomes",
    "/trafego.cache.v1.CacheService/WatchCache",
];

/// How long a follower may take connecting to the leader it forwards to.
pub const LEADER_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Pause between failed takeovers within one term (the database did not
/// answer): the term's work starts only once one succeeds.
const TAKEOVER_RETRY: Duration = Duration::from_millis(500);

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
    // PostgreSQL: replicas, one leader, writes fenced. SQLite: one instance,
    // which leads alone (the same code path, with a role that never changes).
    let listen = listener
        .local_addr()
        .map(|a| a.to_string())
        .context("reading the listener's address (CACHE_LISTEN_ADDR)")?;
    let leadership =
        Leadership::for_database(&db_url, SERVICE_NAME, &listen, &config.service.leader);
    let role = trafego_common::leader::role_of(leadership.as_ref());
    let db = db.fenced(SERVICE_NAME, role.clone());
    let cache =
        cache::Cache::open(db, providers, clock, config.cache_settings(), role.clone()).await?;
    if leadership.is_none() {
        // One instance: it takes over before it serves, as it always did.
        cache.take_over(0).await?;
    }
    let cancel = CancellationToken::new();
    let refresher = tokio::spawn(lead(cache.clone(), role.clone(), cancel.clone()));
    if leadership.is_some() {
        // The first try of the lock is made at once: wait for its outcome
        // (bounded), so a replica starting alone serves as the leader from
        // its first call.
        let s = config.service.leader.settings();
        cache
            .settled(s.retry_interval.max(s.check_interval).saturating_mul(2))
            .await;
    }
    let reads = follower::LeaderReads::new(
        mesh.forwarding.clone(),
        LEADER_CONNECT_TIMEOUT,
        config.service.mesh.max_message_bytes,
    );
    let api = grpc::CacheApi::new(cache, cancel.clone(), reads);
    let svc = CacheServiceServer::new(api)
        .max_decoding_message_size(config.service.mesh.max_message_bytes)
        .max_encoding_message_size(config.service.mesh.max_message_bytes);
    let replication = leadership.as_ref().map(|_| Replication {
        role: role.clone(),
        writes: WRITE_METHODS,
        forwarding: mesh.forwarding.clone(),
        connect_timeout: LEADER_CONNECT_TIMEOUT,
    });
    let svc = Forward::new(svc, replication);
    let res = serve(
        listener,
        svc,
        ServeConfig {
            service_name: SERVICE_NAME,
            descriptor_set: trafego_proto::CACHE_FILE_DESCRIPTOR_SET,
            grace: config.service.shutdown_grace,
            mesh,
            role: leadership.as_ref().map(|_| role.clone()),
        },
        shutdown,
        cancel.clone(),
    )
    .await;
    cancel.cancel();
    let _ = refresher.await;
    // Stand down last, after the work has stopped: the lock is released at
    // once, so a follower takes over without waiting for a timeout.
    if let Some(l) = leadership {
        l.shutdown().await;
    }
    res.map_err(Into::into)
}

/// The work of each leadership term, until `cancel` fires: take over the
/// cache (retried until it succeeds, or the term ends), then the periodic
/// refresh, journal settling and purge (`refresh_loop`), cancelled when the
/// term ends.
async fn lead(
    cache: Arc<cache::Cache>,
    role: tokio::sync::watch::Receiver<Role>,
    cancel: CancellationToken,
) {
    while_leading(role, cancel, |fence, term| {
        let cache = cache.clone();
        async move {
            loop {
                match cache.take_over(fence).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(fence, error = %e, "could not take over the cache; retrying");
                        tokio::select! {
                            () = term.cancelled() => return,
                            () = tokio::time::sleep(TAKEOVER_RETRY) => {}
                        }
                    }
                }
            }
            cache::refresh_loop(cache, term).await;
        }
    })
    .await;
}
