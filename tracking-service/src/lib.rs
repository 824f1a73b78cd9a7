//! tracking-service: decides which DNS records should exist, tracks what the
//! app manages (`dns_tracked_records`) and cleans up orphans safely. It
//! reaches the DNS provider only through cache-service's gRPC API and never
//! opens cache-service's database.
//!
//! Any number of replicas may share one PostgreSQL database: they elect one
//! leader ([`trafego_common::leader::Leadership`]); every replica serves the
//! reads, followers forward the write RPCs ([`WRITE_METHODS`]) to the leader,
//! and the work that must happen once (the rebuild from ownership markers,
//! the cache follower, the orphan sweep and the sources) runs on the leader
//! only, one term at a time ([`background::lead`]). Every PostgreSQL write
//! is fenced, so a replica that lost the lead never writes. With SQLite there
//! is one instance, which leads alone through the same code path.
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
use trafego_common::leader::forward::{Forward, Replication};
use trafego_common::leader::{self, Leadership};
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

/// The gRPC name health reports under, and the name of the service's
/// leadership among replicas on one PostgreSQL database.
pub const SERVICE_NAME: &str = "trafego.tracking.v1.TrackingService";

/// The RPCs that write: a follower forwards them to the leader (and the
/// tracker refuses them itself unless it leads). Everything else is a read,
/// served by every replica from the shared database.
pub const WRITE_METHODS: &[&str] = &[
    "/trafego.tracking.v1.TrackingService/Reconcile",
    "/trafego.tracking.v1.TrackingService/TrackRecord",
    "/trafego.tracking.v1.TrackingService/UntrackRecord",
    "/trafego.tracking.v1.TrackingService/RunOrphanSweep",
];

/// The longest start-up waits for the first try of the leadership lock to
/// settle (this replica leads, or knows who does) before serving.
pub const LEADER_START_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The longest a follower waits to connect to the leader it forwards to
/// (CACHE_SERVICE_TIMEOUT when that is shorter).
pub const FORWARD_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
    // Replicas on one PostgreSQL database elect one leader; a SQLite file has
    // one instance, which leads alone (the same code path, a fixed role).
    let listen = listener
        .local_addr()
        .map(|a| a.to_string())
        .context("reading the listener's address (TRACKING_LISTEN_ADDR)")?;
    let leadership =
        Leadership::for_database(&db_url, SERVICE_NAME, &listen, &config.service.leader);
    let role = leader::role_of(leadership.as_ref());
    let advertise = leadership
        .as_ref()
        .map_or_else(|| listen.clone(), |l| l.advertise().to_string());
    let db = db.fenced(SERVICE_NAME, role.clone());
    tracing::info!(
        db = %db_url,
        cache_service = client.host(),
        cleanup = settings.cleanup,
        grace = %humantime::format_duration(settings.grace),
        managed_hostnames = settings.managed.len(),
        replicas = leadership.is_some(),
        advertise = %advertise,
        "tracking-service starting"
    );
    let mut tracker = tracker::Tracker::new(db, client, clock.clone(), settings);
    if leadership.is_some() {
        tracker = tracker.with_replica(role.clone(), advertise);
    }
    let tracker = Arc::new(tracker);
    // The first try of the lock settles before serving, so a lone replica
    // (or the first of several) takes writes from its first call instead of
    // answering UNAVAILABLE for a moment.
    if leadership.is_some() {
        let mut first = role.clone();
        let settled = |r: &leader::Role| !matches!(r, leader::Role::Follower { leader: None });
        if tokio::time::timeout(LEADER_START_WAIT, first.wait_for(settled))
            .await
            .is_err()
        {
            tracing::warn!(
                "no leader known yet; serving reads, writes answer UNAVAILABLE until one leads"
            );
        }
    }
    // Ownership markers: a mode the provider cannot hold stops the service
    // here, on every replica. A replica leading from the start (always, with
    // SQLite) also rebuilds an empty table from markers before serving; a
    // later takeover does it at the start of its term (background::lead).
    let leading_at_start = role.borrow().fence().is_some();
    let ownership = if leading_at_start {
        tracker.start_ownership().await
    } else {
        tracker.check_marker_mode().await
    };
    match ownership {
        Ok(()) => {}
        Err(e @ error::TrackingError::FailedPrecondition(_)) => {
            return Err(anyhow::anyhow!("{e}"));
        }
        Err(e) => tracing::warn!(
            error = %e,
            "could not check ownership markers at start; the leader's first reconcile, sweep or track does it"
        ),
    }
    let sources = Arc::new(source::Sources::prepare(source_settings)?);
    let cancel = CancellationToken::new();
    // The work that runs once among replicas: the cache follower, the orphan
    // sweep and the sources, started at each takeover and ended at step-down.
    let work = Arc::new(background::LeaderWork {
        tracker: tracker.clone(),
        cleanup_interval: config.cleanup_interval,
        sources: sources.clone(),
        clock: clock.clone(),
    });
    let leading = tokio::spawn(leader::while_leading(
        role.clone(),
        cancel.clone(),
        move |fence, term| background::lead(work.clone(), fence, term),
    ));
    let api = TrackingServiceServer::new(
        grpc::TrackingApi::new(tracker.clone()).with_sources(sources.registry()),
    )
    .max_decoding_message_size(config.service.mesh.max_message_bytes)
    .max_encoding_message_size(config.service.mesh.max_message_bytes);
    // Followers forward the write RPCs to the leader (over TLS when the
    // replicas serve TLS and FORWARD_CA_FILE is set; with server TLS and no
    // FORWARD_CA_FILE they answer UNAVAILABLE naming the leader instead).
    let svc = Forward::new(
        api,
        leadership.as_ref().map(|_| Replication {
            role: role.clone(),
            writes: WRITE_METHODS,
            forwarding: mesh.forwarding.clone(),
            connect_timeout: config.cache_service_timeout.min(FORWARD_CONNECT_TIMEOUT),
        }),
    );
    let res = serve(
        listener,
        svc,
        ServeConfig {
            service_name: SERVICE_NAME,
            descriptor_set: trafego_proto::TRACKING_FILE_DESCRIPTOR_SET,
            grace: config.service.shutdown_grace,
            mesh,
            role: leadership.as_ref().map(|_| role.clone()),
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
        let _ = leading.await;
        tracker.idle().await;
    };
    if tokio::time::timeout(config.service.shutdown_grace, background)
        .await
        .is_err()
    {
        tracing::warn!("background work did not finish within the shutdown grace period");
    }
    // Last: the lock is released only once this replica's work has ended, so
    // a follower takes over at once and never overlaps it.
    if let Some(l) = leadership {
        l.shutdown().await;
    }
    res.map_err(Into::into)
}
