//! The tracker: a thin facade over one module per job, holding what they
//! share: one lock (`ops`), one clock, the database, the cache-service client
//! and the settings. Reconcile is [`crate::reconcile`] (planning is
//! [`crate::plan`]), the orphan sweep [`crate::sweep`], the missing/drift
//! check [`crate::check`], manual tracking [`crate::track`], and what goes
//! to and from the wire [`crate::convert`].
//!
//! Reconciles, sweeps, checks and manual tracking take the one async lock in
//! turn, so two overlapping reconciles never both create a record, and a
//! sweep never deletes what a concurrent reconcile just declared again.
//! Nothing is written anywhere before validation and the guards have passed,
//! and a record is changed or deleted at the provider only when this
//! tracker's table says it is app-managed.
//!
//! Provider writes are never cut off from their record: a reconcile's
//! writes, and the transaction recording them, run in a task of their own
//! holding the lock (an owned guard), so a caller that hangs up or times out
//! cannot split them, and the next reconcile waits for them. Each write is
//! journaled (a pending intent) before it is sent; if its outcome is never
//! recorded (cache-service did not answer in time, the process died), the
//! next reconcile asks cache-service what became of it, and claims the
//! record as app-managed instead of adopting the app's own record as someone
//! else's. The sweep runs the same way, and never deletes a record whose
//! provider copy no longer matches what was tracked (renamed, retyped or
//! changed since).
//!
//! With replicas on one PostgreSQL database only the leader writes: every
//! write entry (reconcile, sweep, check, track, untrack) refuses with
//! `UNAVAILABLE`, naming the leader, while this replica's role is not
//! [`Role::Leader`] — the second line of defence behind the forwarding of
//! write RPCs, for a call that raced a step-down; the third is the fence
//! every PostgreSQL write transaction checks. With one instance (SQLite) the
//! role is [`solo`](trafego_common::leader::solo): always leading.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, OnceCell, watch};
use trafego_common::clock::SharedClock;
use trafego_common::db::AnyDb as Db;
use trafego_common::leader::Role;
use trafego_common::num;
use trafego_proto::timestamp_ms;
use trafego_proto::tracking::{
    GetTrackerStatusResponse, ReconcileResponse, RunOrphanSweepResponse, TrackedRecord,
};
use trafego_proto::validate::{Hostname, RecordSpec};

use crate::cache_client::CacheClient;
use crate::config::ManagedEntry;
use crate::convert::set_count_gauges;
use crate::desired::{self, Defaults, MANAGED_SOURCE, ZoneInfo};
use crate::error::TrackingError;
use crate::ownership::{MarkerMode, Ownership, rebuild};
use crate::preserve::Preserved;
use crate::store::{self, CheckOutcome};
use crate::{check, reconcile, sweep, track};

/// What the tracker needs from the configuration, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Defaults for declarations.
    pub defaults: Defaults,
    /// DNS_ZONE, when set: must equal cache-service's zone.
    pub zone: Option<Hostname>,
    /// CLEANUP_ORPHANED.
    pub cleanup: bool,
    /// CLEANUP_GRACE_PERIOD.
    pub grace: Duration,
    /// PRESERVED_HOSTNAMES.
    pub preserved: Preserved,
    /// MANAGED_HOSTNAMES.
    pub managed: Vec<ManagedEntry>,
    /// MAX_ORPHAN_RATIO.
    pub max_orphan_ratio: f64,
    /// RECONCILE_MAX_STALENESS.
    pub max_staleness: Duration,
    /// How long a reconcile waits for changes an earlier one left in flight
    /// at cache-service (GetChangeOutcomes' wait) before planning around them.
    pub outcome_wait: Duration,
    /// OWNER_ID and OWNERSHIP_MARKER: `None` when markers are off.
    pub ownership: Option<Ownership>,
}

/// Pending intents older than this (a day) claim nothing and are purged.
pub const INTENT_MAX_AGE_MS: i64 = 24 * 3600 * 1000;

/// The tracker; one per tracking-service.
pub struct Tracker {
    db: Db,
    client: CacheClient,
    clock: SharedClock,
    settings: Settings,
    /// Held by every reconcile, sweep and check; owned (`lock_owned`) by the
    /// detached tasks that write, so a dropped caller never releases it early.
    ops: Arc<Mutex<()>>,
    zone: OnceCell<ZoneInfo>,
    /// The fence of the leadership term in which the rebuild from ownership
    /// markers last ran (or found nothing to do): nothing plans before it has
    /// run in the current term. Read and set with `ops` held.
    ready: std::sync::Mutex<Option<i64>>,
    /// This replica's role, as it changes: writes are refused unless it leads.
    role: watch::Receiver<Role>,
    /// This replica's advertised address, reported as the leader's while it
    /// leads (`None` with one instance).
    advertise: Option<String>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    /// A tracker over `db`, reaching the provider through `client`.
    pub fn new(db: Db, client: CacheClient, clock: SharedClock, settings: Settings) -> Self {
        Self {
            db,
            client,
            clock,
            settings,
            ops: Arc::new(Mutex::new(())),
            zone: OnceCell::new(),
            ready: std::sync::Mutex::new(None),
            role: trafego_common::leader::solo(),
            advertise: None,
        }
    }

    /// This tracker as one replica of several: `role` is its leadership's
    /// (writes are refused unless it leads), `advertise` its own address,
    /// reported as the leader's while it leads.
    pub fn with_replica(mut self, role: watch::Receiver<Role>, advertise: String) -> Self {
        self.role = role;
        self.advertise = Some(advertise);
        self
    }

    /// The role as it changes (always leading with one instance).
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// The fence of the term this replica leads now, or `UNAVAILABLE` naming
    /// the leader: a write that reached a follower (one that raced a
    /// step-down) never runs here.
    fn leading(&self) -> Result<i64, TrackingError> {
        match &*self.role.borrow() {
            Role::Leader { fence } => Ok(*fence),
            Role::Follower { leader: Some(l) } => Err(TrackingError::Unavailable(format!(
                "this tracking-service replica does not lead; the leader is at {l}: retry there"
            ))),
            Role::Follower { leader: None } => Err(TrackingError::Unavailable(
                "this tracking-service replica does not lead and no leader is known yet; retry \
                 shortly"
                    .into(),
            )),
        }
    }

    /// The role and the leader's address for `GetTrackerStatus`: `leader`
    /// and this replica's address while it leads (`""` with one instance),
    /// `follower` and the leader's address as last read.
    fn role_status(&self) -> (String, String) {
        match &*self.role.borrow() {
            r @ Role::Leader { .. } => (
                r.name().to_string(),
                self.advertise.clone().unwrap_or_default(),
            ),
            r @ Role::Follower { leader } => {
                (r.name().to_string(), leader.clone().unwrap_or_default())
            }
        }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The cache-service client.
    pub fn client(&self) -> &CacheClient {
        &self.client
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Now, by the tracker's clock (unix milliseconds).
    pub(crate) fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The zone and its provider's capabilities, asked of cache-service once
    /// and then kept. A cache-service that reports no capabilities (older than
    /// this tracking-service) is refused: guessing them could, for one,
    /// un-proxy every proxied record as "drifted".
    pub async fn zone(&self) -> Result<&ZoneInfo, TrackingError> {
        self.zone
            .get_or_try_init(|| async {
                let st = self.client.status().await?;
                // Every zone served (`zones`); an older cache-service reports
                // its one zone in `zone` only.
                let names: Vec<&str> = if st.zones.is_empty() {
                    vec![st.zone.as_str()]
                } else {
                    st.zones.iter().map(|z| z.zone.as_str()).collect()
                };
                let mut zones = names
                    .iter()
                    .map(|z| Hostname::parse("zone", z))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        TrackingError::FailedPrecondition(format!(
                            "cache-service reports an invalid zone: {e}"
                        ))
                    })?;
                zones.sort();
                let Some(zone) = zones.first().cloned() else {
                    return Err(TrackingError::FailedPrecondition(
                        "cache-service reports no zone".into(),
                    ));
                };
                if let Some(want) = &self.settings.zone
                    && !zones.contains(want)
                {
                    return Err(TrackingError::FailedPrecondition(format!(
                        "DNS_ZONE is {want} but cache-service at {} manages {}",
                        self.client.host(),
                        names.join(", ")
                    )));
                }
                let zones = if zones.len() > 1 { zones } else { Vec::new() };
                let Some(caps) = &st.capabilities else {
                    return Err(TrackingError::FailedPrecondition(format!(
                        "cache-service at {} reports no provider capabilities; upgrade it to this version",
                        self.client.host()
                    )));
                };
                if let Some(own) = &self.settings.ownership
                    && own.mode == MarkerMode::Comment
                    && !caps.comments
                {
                    return Err(TrackingError::FailedPrecondition(format!(
                        "OWNERSHIP_MARKER=comment needs a provider whose records carry comments,                          and cache-service at {} reports provider {} with capability                          comments=false; use OWNERSHIP_MARKER=txt (a TXT marker beside each                          record works with any provider)",
                        self.client.host(),
                        st.provider
                    )));
                }
                Ok(ZoneInfo {
                    zone,
                    zones,
                    rules: trafego_proto::validate::ProviderRules::from_proto(caps),
                })
            })
            .await
    }

    /// Runs the rebuild from ownership markers ([`rebuild`]) once per
    /// leadership term: called with the lock held, before anything plans,
    /// sweeps or tracks. A failure (cache-service unreachable) is tried again
    /// by the next call.
    async fn ensure_ready(&self) -> Result<(), TrackingError> {
        let fence = self.leading()?;
        if *self.ready.lock().unwrap_or_else(|e| e.into_inner()) == Some(fence) {
            return Ok(());
        }
        rebuild::run(self).await?;
        *self.ready.lock().unwrap_or_else(|e| e.into_inner()) = Some(fence);
        Ok(())
    }

    /// At start, on every replica, with markers on: checks the provider's
    /// capabilities for the marker mode (a read of cache-service).
    /// FAILED_PRECONDITION (a mode the provider cannot hold) stops the
    /// service; any other error is left to [`Tracker::start_ownership`].
    pub async fn check_marker_mode(&self) -> Result<(), TrackingError> {
        if self.settings.ownership.is_none() {
            return Ok(());
        }
        self.zone().await.map(|_| ())
    }

    /// At each takeover (and at start with one instance), with markers on:
    /// checks the marker mode and rebuilds the tracked table from markers if
    /// it is empty. A failure is tried again by the first call that plans.
    pub async fn start_ownership(&self) -> Result<(), TrackingError> {
        if self.settings.ownership.is_none() {
            return Ok(());
        }
        let _ops = self.ops.lock().await;
        self.ensure_ready().await
    }

    /// Validates and reconciles one source's declaration (the `Reconcile` RPC).
    /// Everything that can be checked without cache-service is checked
    /// first, so bad input is INVALID_ARGUMENT even while cache-service is down.
    pub async fn reconcile(
        self: &Arc<Self>,
        source: &str,
        records: &[trafego_proto::tracking::DesiredRecord],
        dry_run: bool,
        force: bool,
    ) -> Result<ReconcileResponse, TrackingError> {
        let source = desired::source("source", source)?;
        if source == MANAGED_SOURCE {
            return Err(desired_error(
                "source",
                format!("{MANAGED_SOURCE:?} is reserved for MANAGED_HOSTNAMES"),
            ));
        }
        if records.len() > desired::MAX_RECORDS {
            return Err(desired_error(
                "records",
                format!(
                    "{} records; at most {} per call",
                    records.len(),
                    desired::MAX_RECORDS
                ),
            ));
        }
        desired::precheck("records", records, &self.settings.defaults)?;
        let zone = self.zone().await?;
        let specs = desired::validate_all("records", records, &self.settings.defaults, zone)?;
        self.reconcile_specs(&source, specs, dry_run, force).await
    }

    /// Reconciles MANAGED_HOSTNAMES (the built-in source). Its entries were
    /// checked at start; here they are checked against the zone.
    pub async fn reconcile_managed(self: &Arc<Self>) -> Result<ReconcileResponse, TrackingError> {
        let zone = self.zone().await?;
        let records: Vec<_> = self
            .settings
            .managed
            .iter()
            .map(desired::from_managed)
            .collect();
        let specs =
            desired::validate_all("MANAGED_HOSTNAMES", &records, &self.settings.defaults, zone)?;
        // The configuration is a deliberate declaration: the guards, which
        // protect against a watcher suddenly seeing nothing, do not apply.
        self.reconcile_specs(MANAGED_SOURCE, specs, false, true)
            .await
    }

    /// Waits until no reconcile, sweep or check is in flight (for shutdown).
    pub async fn idle(&self) {
        let _ops = self.ops.lock().await;
    }

    /// Plans and applies one declaration under the lock ([`crate::reconcile`]).
    async fn reconcile_specs(
        self: &Arc<Self>,
        source: &str,
        specs: Vec<RecordSpec>,
        dry_run: bool,
        force: bool,
    ) -> Result<ReconcileResponse, TrackingError> {
        let t0 = Instant::now();
        self.leading()?;
        let ops = self.ops.clone().lock_owned().await;
        self.leading()?;
        self.ensure_ready().await?;
        reconcile::run(self, ops, t0, source, specs, dry_run, force).await
    }

    /// Re-checks missing and drifted records against cache-service's view,
    /// when that view is fresh. Returns `None` when the cache is stale.
    pub async fn check(&self) -> Result<Option<CheckOutcome>, TrackingError> {
        self.leading()?;
        let _ops = self.ops.lock().await;
        self.leading()?;
        Ok(check::run(self, false).await?.map(|c| c.outcome))
    }

    /// Runs the orphan sweep (the `RunOrphanSweep` RPC and the periodic loop).
    /// The sweep runs in its own task holding the lock, so a caller that
    /// hangs up never cuts it between a deletion and its record.
    pub async fn sweep(
        self: &Arc<Self>,
        dry_run: bool,
    ) -> Result<RunOrphanSweepResponse, TrackingError> {
        let t0 = Instant::now();
        self.leading()?;
        let ops = self.ops.clone().lock_owned().await;
        self.leading()?;
        self.ensure_ready().await?;
        let me = self.clone();
        trafego_common::mesh::spawn_in_request(async move {
            let _ops = ops;
            sweep::run(&me, dry_run, t0).await
        })
        .await
        .map_err(|e| TrackingError::Internal(format!("sweep task failed: {e}")))?
    }

    /// Publishes the tracked-record counts by state as metrics.
    pub async fn export_counts(&self) {
        match self
            .db
            .run(|c| Ok::<_, TrackingError>(store::counts(c)?))
            .await
        {
            Ok(c) => set_count_gauges(&c),
            Err(e) => tracing::warn!(error = %e, "could not count tracked records"),
        }
    }

    /// Counts, the last sweep and cache-service reachability.
    pub async fn status(&self) -> Result<GetTrackerStatusResponse, TrackingError> {
        let (counts, last) = self
            .db
            .run(|c| {
                let counts = store::counts(c)?;
                let last = store::state_get(c, sweep::LAST_SWEEP)?;
                let rebuilt = store::state_get(c, rebuild::REBUILD_KEY)?;
                Ok::<_, TrackingError>((counts, (last, rebuilt)))
            })
            .await?;
        let (last, rebuilt) = last;
        let rebuilt: Option<rebuild::Report> = rebuilt.and_then(|j| serde_json::from_str(&j).ok());
        set_count_gauges(&counts);
        let last: Option<sweep::LastSweep> = last.and_then(|j| serde_json::from_str(&j).ok());
        let (role, leader) = self.role_status();
        Ok(GetTrackerStatusResponse {
            role,
            leader,
            total: num::count(counts.total),
            active: num::count(counts.active),
            orphaned: num::count(counts.orphaned),
            missing: num::count(counts.missing),
            unmanaged: num::count(counts.unmanaged),
            last_sweep_at: last.as_ref().map(|l| timestamp_ms(l.at)),
            last_sweep_deleted: last.as_ref().map_or(0, |l| l.deleted),
            last_sweep_skipped_zones: last
                .as_ref()
                .map(|l| {
                    l.skipped_zones
                        .iter()
                        .map(|(zone, reason)| trafego_proto::tracking::SkippedZone {
                            zone: zone.clone(),
                            reason: reason.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            last_sweep_skipped_reason: last.map(|l| l.skipped_reason).unwrap_or_default(),
            cache_service_reachable: self.client.reachable(),
            cache_generation: self.client.generation(),
            cleanup_enabled: self.settings.cleanup,
            grace_period_seconds: self.settings.grace.as_secs(),
            // The built-in sources are filled in by the gRPC edge.
            sources: Vec::new(),
            ownership_marker: match self.settings.ownership.as_ref().map(|o| o.mode) {
                None => "off",
                Some(MarkerMode::Comment) => "comment",
                Some(MarkerMode::Txt) => "txt",
            }
            .to_string(),
            last_rebuild: rebuilt.map(|r| trafego_proto::tracking::OwnershipRebuild {
                at: Some(timestamp_ms(r.at)),
                claimed: r.claimed,
                foreign_markers: r.foreign_markers,
                ambiguous: r.ambiguous,
            }),
        })
    }

    /// Starts tracking a record that cache-service holds (`TrackRecord`).
    /// A record already tracked gets the requested `app_managed` flag (and
    /// source, when one is given): this is how a caller explicitly takes over
    /// a record adopted as not managed, or gives one up.
    pub async fn track(
        &self,
        record_id: &str,
        app_managed: bool,
        source: &str,
    ) -> Result<TrackedRecord, TrackingError> {
        self.leading()?;
        let _ops = self.ops.lock().await;
        self.ensure_ready().await?;
        track::track(self, record_id, app_managed, source).await
    }

    /// Stops tracking a record; never deletes it at the provider.
    pub async fn untrack(&self, record_id: &str) -> Result<(), TrackingError> {
        self.leading()?;
        let _ops = self.ops.lock().await;
        self.leading()?;
        track::untrack(self, record_id).await
    }
}

fn desired_error(field: &str, msg: String) -> TrackingError {
    TrackingError::Invalid(trafego_proto::validate::FieldError::new(field, msg))
}
