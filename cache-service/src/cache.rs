//! The cache itself: refresh (shared by concurrent callers, whole or not at
//! all), write-through to the provider, freshness, and event publishing.
//!
//! Refreshes and writes take one gate in turn, so a listing never overwrites a
//! write that was accepted while it ran, and generations are published in
//! order. A failed refresh never touches the snapshot: only the status records
//! the error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tonic::Code;
use trafego_common::clock::SharedClock;
use trafego_common::db::Db;
use trafego_common::duration::millis_i64;
use trafego_common::num;
use trafego_proto::cache::{CacheEventKind, DnsRecord};
use trafego_proto::timestamp_ms;

use crate::events::{self, Hub};
use crate::journal::{self, ChangeReq, Judged, Outcome, Sought};
use crate::provider::{DnsProvider, ProviderError, ProviderRecord, WriteOp};
use crate::store::{self, CacheState, CachedRecord, JournalRow, Written};

/// Times a change whose answer was lost, and that a look found absent, is
/// sent again before it is reported failed.
const RESEND_ROUNDS: u32 = 2;
/// Changes settled by looking with targeted reads, one per (name, type); more
/// than this many places are settled with one listing of the zone.
const SETTLE_LOOKUPS: usize = 20;

/// An error of the cache, already carrying its gRPC code. Cloneable, so one
/// shared refresh can hand the same failure to every caller waiting on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CacheError {
    /// The gRPC code.
    pub code: Code,
    /// What went wrong; never a secret.
    pub message: String,
}

impl CacheError {
    /// An internal error: the caller is told `internal error (request id …)`,
    /// the detail goes to the log only.
    fn internal(detail: impl std::fmt::Display) -> Self {
        Self {
            code: Code::Internal,
            message: trafego_common::mesh::internal_error(&detail),
        }
    }
}

impl From<ProviderError> for CacheError {
    fn from(e: ProviderError) -> Self {
        Self {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl From<trafego_common::db::DbError> for CacheError {
    fn from(e: trafego_common::db::DbError) -> Self {
        Self::internal(format_args!("database error: {e}"))
    }
}

impl From<diesel::result::Error> for CacheError {
    fn from(e: diesel::result::Error) -> Self {
        trafego_common::db::DbError::from(e).into()
    }
}

impl From<CacheError> for tonic::Status {
    fn from(e: CacheError) -> Self {
        tonic::Status::new(e.code, e.message)
    }
}

/// What one refresh did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshOutcome {
    /// Records new since the previous snapshot.
    pub added: u64,
    /// Records whose fingerprint changed.
    pub changed: u64,
    /// Records gone from the provider.
    pub removed: u64,
    /// Records in the cache after the refresh.
    pub total: u64,
    /// Wall time of the refresh.
    pub duration_ms: u64,
    /// Generation after the refresh.
    pub generation: u64,
    /// Provider requests the listing took.
    pub provider_requests: u64,
}

type SharedRefresh = Shared<BoxFuture<'static, Result<RefreshOutcome, CacheError>>>;

/// Settings of the cache.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Cache TTL and refresh period.
    pub refresh_interval: Duration,
    /// A listing taking longer than this fails the refresh.
    pub refresh_timeout: Duration,
    /// Recent events kept for watchers starting from a past generation.
    pub watch_buffer: usize,
    /// How long settled change-journal entries are kept.
    pub journal_retention: Duration,
}

/// The provider cache: one per cache-service.
pub struct Cache {
    db: Db,
    provider: Arc<dyn DnsProvider>,
    hub: Hub,
    clock: SharedClock,
    settings: CacheSettings,
    gate: tokio::sync::Mutex<()>,
    inflight: Mutex<Option<SharedRefresh>>,
    /// When the last successful refresh ended, and what it did.
    last_outcome: Mutex<Option<(Instant, RefreshOutcome)>>,
    /// `cache_state` as of the last committed change to it (loaded at open,
    /// replaced after each commit that changes it, never to an older
    /// generation), so a read checks freshness without a database round trip.
    state: Mutex<Arc<CacheState>>,
    zone: String,
    /// Change ids received and not recorded yet, with how many calls carry each.
    in_flight: Mutex<HashMap<String, usize>>,
    /// Bumped each time a write ends, for callers waiting on changes in flight.
    finished: tokio::sync::watch::Sender<u64>,
    /// The change journal's id (see the change-id protocol).
    journal_id: String,
}

/// The outcomes of one write, in change order.
#[derive(Debug, Clone)]
pub struct WriteReport {
    /// One outcome per change.
    pub outcomes: Vec<Outcome>,
    /// The cache generation after the writes.
    pub generation: u64,
    /// Provider requests made.
    pub requests: u64,
}

/// What became of one change id (GetChangeOutcomes).
#[derive(Debug, Clone)]
pub enum ChangeStateOf {
    /// No journal entry: never sent through this cache-service.
    Unknown,
    /// Being applied now.
    InFlight,
    /// Recorded: applied, failed, or (answer lost, look failed) unsettled.
    Done {
        /// The outcome.
        outcome: Outcome,
        /// The record it produced or concerned.
        record_id: String,
    },
}

/// Marks change ids in flight while a write holds it; leaving (even by a
/// panic) clears them and wakes callers waiting on them.
struct InFlight {
    cache: Arc<Cache>,
    ids: Vec<String>,
}

impl InFlight {
    fn enter(cache: Arc<Cache>, ids: Vec<String>) -> Self {
        {
            let mut f = cache.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            for id in &ids {
                *f.entry(id.clone()).or_default() += 1;
            }
        }
        Self { cache, ids }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut f = self
                .cache
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for id in &self.ids {
                if let Some(n) = f.get_mut(id) {
                    *n -= 1;
                    if *n == 0 {
                        f.remove(id);
                    }
                }
            }
        }
        self.cache.finished.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// What a change does to a record, as far as the cache must reflect it.
enum Kind<'a> {
    Create,
    Update(&'a str),
    Delete(&'a str),
}

impl<'a> Kind<'a> {
    fn of(op: &'a WriteOp) -> Self {
        match op {
            WriteOp::Create(_) => Kind::Create,
            WriteOp::Update { id, .. } => Kind::Update(id),
            WriteOp::Delete { id } => Kind::Delete(id),
        }
    }

    fn of_row(row: &'a JournalRow) -> Self {
        match row.op.as_str() {
            "create" => Kind::Create,
            "update" => Kind::Update(&row.target_id),
            _ => Kind::Delete(&row.target_id),
        }
    }

    /// What the cache must write for this change's outcome, if anything.
    fn written(&self, o: &Outcome) -> Option<Written> {
        match (self, o) {
            (Kind::Create, Outcome::Applied(Some(r))) => Some(Written::Upsert {
                record: r.clone(),
                replaces: None,
            }),
            (Kind::Update(id), Outcome::Applied(Some(r))) => Some(Written::Upsert {
                record: r.clone(),
                replaces: (*id != r.id).then(|| id.to_string()),
            }),
            (Kind::Delete(id), Outcome::Applied(_)) => Some(Written::Removed(id.to_string())),
            // The provider no longer has it: neither should the cache.
            (
                Kind::Update(id) | Kind::Delete(id),
                Outcome::Failed {
                    code: Code::NotFound,
                    ..
                },
            ) => Some(Written::Removed(id.to_string())),
            _ => None,
        }
    }
}

/// `row`, the journal entry of a change, with its outcome recorded at
/// `now`; `None` while it is unsettled (the entry stays pending).
fn settle_row(row: &JournalRow, o: &Outcome, now: i64) -> Option<JournalRow> {
    let mut row = row.clone();
    row.settled_at = Some(now);
    match o {
        Outcome::Applied(rec) => {
            row.state = store::JOURNAL_APPLIED.to_string();
            row.code = 0;
            row.message = String::new();
            row.record_id = rec
                .as_ref()
                .map_or_else(|| row.target_id.clone(), |r| r.id.clone());
            row.record = rec
                .as_ref()
                .and_then(|r| serde_json::to_string(r).ok())
                .unwrap_or_default();
        }
        Outcome::Failed { code, message } => {
            row.state = store::JOURNAL_FAILED.to_string();
            row.code = *code as i32;
            row.message = message.clone();
            row.record_id = row.target_id.clone();
            row.record = String::new();
        }
        Outcome::Unsettled(_) => return None,
    }
    Some(row)
}

/// The record a journal entry says its change produced.
fn journal_record(row: &JournalRow) -> Option<ProviderRecord> {
    (!row.record.is_empty())
        .then(|| serde_json::from_str(&row.record).ok())
        .flatten()
}

/// Where each change goes, for its journal entry: the cached (name, type) of
/// the record a delete concerns, and the ids the cache holds at the (name,
/// type) a create or update writes.
type Place = (Option<(String, String)>, Vec<String>);

fn places_of(
    conn: &mut store::Conn,
    ops: &[(usize, WriteOp)],
) -> diesel::QueryResult<Vec<(usize, Place)>> {
    let keys: Vec<(String, String)> = ops
        .iter()
        .filter_map(|(_, op)| match op {
            WriteOp::Create(input) | WriteOp::Update { input, .. } => Some((
                input.spec.name.as_str().to_string(),
                input.spec.rtype.as_str().to_string(),
            )),
            WriteOp::Delete { .. } => None,
        })
        .collect();
    let held = store::ids_at(conn, &keys)?;
    let mut out = Vec::with_capacity(ops.len());
    for (i, op) in ops {
        let place = match op {
            WriteOp::Create(input) | WriteOp::Update { input, .. } => {
                let key = (
                    input.spec.name.as_str().to_string(),
                    input.spec.rtype.as_str().to_string(),
                );
                (None, held.get(&key).cloned().unwrap_or_default())
            }
            WriteOp::Delete { id } => {
                (store::get(conn, id)?.map(|r| (r.name, r.rtype)), Vec::new())
            }
        };
        out.push((*i, place));
    }
    Ok(out)
}

/// The freshness of the cache, as `GetCacheStatus` shows it.
#[derive(Debug, Clone)]
pub struct Status {
    /// The stored state.
    pub state: CacheState,
    /// Records cached.
    pub record_count: u64,
    /// True when the last refresh failed, never happened or is too old.
    pub stale: bool,
}

impl Cache {
    /// A cache over `db` for `provider`. Rows cached for another provider or
    /// zone are dropped.
    pub async fn open(
        db: Db,
        provider: Arc<dyn DnsProvider>,
        clock: SharedClock,
        settings: CacheSettings,
    ) -> Result<Arc<Self>, CacheError> {
        let name = provider.name();
        let zone = provider.zone().to_string();
        let z = zone.clone();
        let (dropped, st, journal_id) = db
            .run(move |c| {
                let dropped = store::claim(c, name, &z)?;
                let journal_id = store::journal_id(c)?;
                Ok::<_, CacheError>((dropped, store::state(c)?, journal_id))
            })
            .await?;
        if dropped > 0 {
            tracing::warn!(dropped, provider = name, zone = %zone, "dropped cached rows of another provider or zone");
        }
        Ok(Arc::new(Cache {
            hub: Hub::new(settings.watch_buffer, num::count(st.generation)),
            db,
            provider,
            clock,
            settings,
            gate: tokio::sync::Mutex::new(()),
            inflight: Mutex::new(None),
            last_outcome: Mutex::new(None),
            state: Mutex::new(Arc::new(st)),
            zone,
            in_flight: Mutex::new(HashMap::new()),
            finished: tokio::sync::watch::channel(0).0,
            journal_id,
        }))
    }

    /// The cache's state as of the last committed change: what freshness
    /// checks and responses read instead of the `cache_state` row. The rows a
    /// read sees afterwards are at least this new, since it is replaced only
    /// after a commit.
    pub fn state(&self) -> Arc<CacheState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps `st`, read after a transaction that changed `cache_state`
    /// committed, unless the kept state has a newer generation already (the
    /// generation never goes backwards). Equal generations are taken: a failed
    /// refresh changes the error and attempt time but not the generation, and
    /// commits that change the state are serialised by the gate.
    fn committed(&self, st: CacheState) {
        let mut cur = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.generation >= cur.generation {
            *cur = Arc::new(st);
        }
    }

    /// Keeps generation `g` after a committed write-through, which changes
    /// nothing else in `cache_state`. An older generation is ignored.
    fn committed_generation(&self, g: u64) {
        let Ok(g) = i64::try_from(g) else { return };
        let mut cur = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if g > cur.generation {
            let mut st = CacheState::clone(&cur);
            st.generation = g;
            *cur = Arc::new(st);
        }
    }

    /// The provider's name.
    pub fn provider_name(&self) -> &'static str {
        self.provider.name()
    }

    /// What the provider can hold and do.
    pub fn capabilities(&self) -> crate::provider::Capabilities {
        self.provider.capabilities()
    }

    /// The zone.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The zone as a validated name.
    pub fn zone_name(&self) -> &trafego_proto::validate::Hostname {
        self.provider.zone()
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The event hub.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The settings.
    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// Now, by the cache's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Refreshes unless `force` is false and a refresh succeeded within the
    /// last second, in which case that refresh's outcome is returned.
    pub async fn refresh_recent(
        self: &Arc<Self>,
        force: bool,
    ) -> Result<RefreshOutcome, CacheError> {
        if !force {
            let last = self
                .last_outcome
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some((at, o)) = last
                && at.elapsed() < Duration::from_secs(1)
            {
                return Ok(o);
            }
        }
        self.refresh().await
    }

    /// Refreshes now. Concurrent callers share one provider listing.
    ///
    /// A refresh that panics is a failed refresh like any other: its error
    /// shows in the status, and the next caller starts a new one (the shared
    /// slot is cleared whatever way the refresh ended).
    pub async fn refresh(self: &Arc<Self>) -> Result<RefreshOutcome, CacheError> {
        let fut = {
            let mut slot = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_ref() {
                Some(f) => f.clone(),
                None => {
                    let me = self.clone();
                    let task = tokio::spawn(async move { me.refresh_now().await });
                    let me = self.clone();
                    let f = async move {
                        match task.await {
                            Ok(r) => r,
                            Err(e) => {
                                *me.inflight.lock().unwrap_or_else(|p| p.into_inner()) = None;
                                tracing::error!(error = %e, "the refresh task failed");
                                let err = CacheError::internal(format!(
                                    "internal error: the refresh failed unexpectedly ({})",
                                    if e.is_panic() { "panic" } else { "cancelled" }
                                ));
                                Err(me.refresh_failed(err).await)
                            }
                        }
                    }
                    .boxed()
                    .shared();
                    *slot = Some(f.clone());
                    f
                }
            }
        };
        fut.await
    }

    async fn refresh_now(&self) -> Result<RefreshOutcome, CacheError> {
        let _gate = self.gate.lock().await;
        let started_ms = self.clock.now_ms();
        let t0 = Instant::now();
        let listed =
            tokio::time::timeout(self.settings.refresh_timeout, self.provider.list()).await;
        // Callers arriving from now on need a listing that starts after this
        // one ended: they start the next refresh (which waits for the gate).
        *self.inflight.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let listing = match listed {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => return Err(self.refresh_failed(e.into()).await),
            Err(_) => {
                let e = CacheError {
                    code: Code::Unavailable,
                    message: format!(
                        "the provider listing timed out after {}",
                        humantime::format_duration(self.settings.refresh_timeout)
                    ),
                };
                return Err(self.refresh_failed(e).await);
            }
        };
        let requests = listing.requests;
        let name = self.provider.name();
        let zone = self.zone.clone();
        let now = self.clock.now_ms();
        let diff = self
            .db
            .run(move |c| {
                let diff =
                    store::apply_refresh(c, name, &zone, listing.records, started_ms, now, t0)?;
                // Committed: failing to read the new state back must not turn
                // the refresh into a failure.
                Ok::<_, CacheError>((diff, store::state(c)))
            })
            .await;
        let diff = match diff {
            Ok((d, st)) => {
                match st {
                    Ok(st) => self.committed(st),
                    // The older kept state errs on the safe side (staler,
                    // lower generation) until the next commit replaces it.
                    Err(e) => {
                        tracing::warn!(error = %e, "cache state unreadable after a refresh; keeping the previous one")
                    }
                }
                d
            }
            Err(e) => return Err(self.refresh_failed(e).await),
        };
        let duration_ms = num::elapsed_ms(t0);
        let outcome = RefreshOutcome {
            added: diff.added.len() as u64,
            changed: diff.changed.len() as u64,
            removed: diff.removed.len() as u64,
            total: diff.total,
            duration_ms,
            generation: diff.generation,
            provider_requests: requests,
        };
        let g = diff.generation;
        let changes = diff.added.len() + diff.changed.len() + diff.removed.len();
        if changes > self.settings.watch_buffer {
            self.hub
                .publish_gap(g, events::refreshed_event(g, String::new()));
        } else {
            let mut evs = Vec::with_capacity(changes + 1);
            for r in &diff.added {
                evs.push(events::record_event(
                    CacheEventKind::Added,
                    g,
                    self.to_proto(r, started_ms, now),
                ));
            }
            for r in &diff.changed {
                evs.push(events::record_event(
                    CacheEventKind::Changed,
                    g,
                    self.to_proto(r, started_ms, now),
                ));
            }
            for id in diff.removed {
                evs.push(events::removed_event(g, id));
            }
            evs.push(events::refreshed_event(g, String::new()));
            self.hub.publish(g, evs);
        }
        metrics::counter!("trafego_cache_refreshes_total", "outcome" => "ok").increment(1);
        metrics::gauge!("trafego_cache_records").set(outcome.total as f64);
        metrics::gauge!("trafego_cache_generation").set(g as f64);
        metrics::gauge!("trafego_cache_last_refresh_timestamp_seconds")
            .set(started_ms as f64 / 1000.0);
        metrics::gauge!("trafego_cache_refresh_duration_seconds").set(duration_ms as f64 / 1000.0);
        metrics::gauge!("trafego_cache_stale").set(0.0);
        *self.last_outcome.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), outcome.clone()));
        tracing::info!(
            added = outcome.added,
            changed = outcome.changed,
            removed = outcome.removed,
            total = outcome.total,
            duration_ms = outcome.duration_ms,
            provider_requests = outcome.provider_requests,
            generation = g,
            "cache refreshed"
        );
        Ok(outcome)
    }

    async fn refresh_failed(&self, e: CacheError) -> CacheError {
        tracing::warn!(code = ?e.code, error = %e.message, "cache refresh failed; the previous snapshot is kept");
        metrics::counter!("trafego_cache_refreshes_total", "outcome" => "error").increment(1);
        metrics::counter!("trafego_cache_refresh_failures_total").increment(1);
        metrics::gauge!("trafego_cache_stale").set(1.0);
        let now = self.clock.now_ms();
        let msg = e.message.clone();
        let res = self
            .db
            .run(move |c| {
                store::record_refresh_failure(c, &msg, now)?;
                Ok::<_, CacheError>(store::state(c)?)
            })
            .await;
        if let Ok(st) = res {
            let g = u64::try_from(st.generation).unwrap_or_default();
            self.committed(st);
            self.hub
                .publish(g, vec![events::refreshed_event(g, e.message.clone())]);
        }
        e
    }

    /// Refreshes first when the cache was never filled or is older than
    /// `max_staleness` (when given).
    pub async fn ensure_fresh(
        self: &Arc<Self>,
        max_staleness: Option<Duration>,
    ) -> Result<(), CacheError> {
        let st = self.state();
        let now = self.clock.now_ms();
        let too_old = match (st.last_refreshed, max_staleness) {
            (None, _) => true,
            (Some(at), Some(max)) => now.saturating_sub(at) > millis_i64(max),
            (Some(_), None) => false,
        };
        if too_old {
            self.refresh().await?;
        }
        Ok(())
    }

    /// The cache's status: the kept state, and the records counted now.
    pub async fn status(&self) -> Result<Status, CacheError> {
        let state = CacheState::clone(&self.state());
        let record_count = self
            .db
            .run(|c| Ok::<_, CacheError>(store::count(c)?))
            .await?;
        let stale = self.is_stale(&state);
        Ok(Status {
            state,
            record_count,
            stale,
        })
    }

    /// Stale: the last refresh failed, never happened, or is older than the
    /// refresh interval (the cache TTL). The periodic refresh runs a little
    /// before the TTL runs out, so a cache whose provider answers never is.
    pub fn is_stale(&self, st: &CacheState) -> bool {
        let limit = self.settings.refresh_interval;
        match st.last_refreshed {
            None => true,
            Some(_) if !st.last_error.is_empty() => true,
            Some(at) => self.clock.now_ms().saturating_sub(at) > millis_i64(limit),
        }
    }

    /// Applies changes at the provider, then writes what it accepted into
    /// the cache at once, with each change's journal entry (see the
    /// change-id protocol in cache.proto). Returns one outcome per change,
    /// the generation after the writes, and the provider requests made.
    ///
    /// The work runs in its own task: a caller that hangs up (or times out)
    /// never cuts it between the provider's answer and the cache's record.
    /// Its change ids count as in flight from now until it is recorded.
    pub async fn write(
        self: &Arc<Self>,
        changes: Vec<ChangeReq>,
    ) -> Result<WriteReport, CacheError> {
        let ids = changes.iter().filter_map(|c| c.change_id.clone()).collect();
        let guard = InFlight::enter(self.clone(), ids);
        let me = self.clone();
        trafego_common::mesh::spawn_in_request(async move {
            let _in_flight = guard;
            me.write_now(changes).await
        })
        .await
        .unwrap_or_else(|e| Err(CacheError::internal(format!("write task: {e}"))))
    }

    async fn write_now(&self, changes: Vec<ChangeReq>) -> Result<WriteReport, CacheError> {
        let _gate = self.gate.lock().await;
        let now = self.clock.now_ms();
        let n = changes.len();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
        // Outcomes the journal already held: neither written nor settled again.
        let mut known = vec![false; n];
        let mut requests = 0u64;
        let mut written: Vec<Written> = Vec::new();
        let mut created: Vec<String> = Vec::new();
        let mut settled: Vec<JournalRow> = Vec::new();
        // The journal entry of each change that has one, by change index.
        let mut entries: HashMap<usize, JournalRow> = HashMap::new();
        let fps: Vec<Option<String>> = changes
            .iter()
            .map(|c| c.change_id.as_ref().map(|_| journal::op_fingerprint(&c.op)))
            .collect();

        // 1. What the journal already knows of these change ids.
        let ids: Vec<String> = changes.iter().filter_map(|c| c.change_id.clone()).collect();
        let journaled: HashMap<String, JournalRow> = if ids.is_empty() {
            HashMap::new()
        } else {
            self.db
                .run(move |c| Ok::<_, CacheError>(store::journal_get(c, &ids)?))
                .await?
                .into_iter()
                .map(|r| (r.change_id.clone(), r))
                .collect()
        };
        let mut stale: Vec<(usize, JournalRow)> = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            let Some(row) = c.change_id.as_ref().and_then(|id| journaled.get(id)) else {
                continue;
            };
            if Some(&row.op_fingerprint) != fps[i].as_ref() {
                known[i] = true;
                outcomes[i] = Some(Outcome::Failed {
                    code: Code::InvalidArgument,
                    message: format!(
                        "change_id {} was already used for a different change",
                        row.change_id
                    ),
                });
                continue;
            }
            match row.state.as_str() {
                store::JOURNAL_APPLIED => {
                    known[i] = true;
                    outcomes[i] = Some(Outcome::Applied(journal_record(row)));
                }
                store::JOURNAL_PENDING => {
                    entries.insert(i, row.clone());
                    stale.push((i, row.clone()));
                }
                _ => {}
            }
        }

        // 2. Changes journaled by an earlier call whose outcome was never
        // recorded (cache-service died, or a look failed): settled by looking
        // before anything is sent again.
        if !stale.is_empty() {
            let sought: Vec<Sought> = stale.iter().map(|(_, r)| Sought::from_row(r)).collect();
            let (judged, reqs) = self.look(&sought).await;
            requests += reqs;
            for (((i, _), s), j) in stale.iter().zip(&sought).zip(judged) {
                match j {
                    Ok(Judged::Applied(rec)) => outcomes[*i] = Some(Outcome::Applied(rec)),
                    Ok(Judged::NotApplied) => {}
                    Err(e) => {
                        known[*i] = true;
                        outcomes[*i] = Some(Outcome::Unsettled(e.to_string()));
                    }
                }
                tracing::info!(change_id = ?changes[*i].change_id, op = %s.op, name = %s.name, "settled an unconfirmed change by looking");
            }
        }

        // 3. Journal what is about to be sent, with the ids the cache holds
        // where it goes (a record found there later with another id is its own).
        let send: Vec<usize> = (0..n).filter(|&i| outcomes[i].is_none()).collect();
        let mut sought: HashMap<usize, Sought> = HashMap::with_capacity(send.len());
        if !send.is_empty() {
            let ops: Vec<(usize, WriteOp)> =
                send.iter().map(|&i| (i, changes[i].op.clone())).collect();
            let places = self
                .db
                .run(move |c| Ok::<_, CacheError>(places_of(c, &ops)?))
                .await?;
            let mut rows = Vec::new();
            for (i, (target, prior)) in places {
                let s = Sought::of(&changes[i].op, target, prior);
                if let (Some(id), Some(fp)) = (&changes[i].change_id, &fps[i]) {
                    let row = s.journal_row(id, fp.clone(), now);
                    entries.insert(i, row.clone());
                    rows.push(row);
                }
                sought.insert(i, s);
            }
            if !rows.is_empty() {
                self.db
                    .run(move |c| Ok::<_, CacheError>(store::journal_begin(c, &rows)?))
                    .await?;
            }
        }

        // 4. Send; a change whose answer was lost is looked for, and sent
        // again only when the look finds it absent.
        let mut pending = send;
        let mut round = 0;
        while !pending.is_empty() {
            let ops: Vec<WriteOp> = pending.iter().map(|&i| changes[i].op.clone()).collect();
            let (results, reqs) = self.provider.apply(ops).await;
            requests += reqs;
            if results.len() != pending.len() {
                return Err(CacheError::internal(format!(
                    "provider answered {} results for {} changes",
                    results.len(),
                    pending.len()
                )));
            }
            let mut lost: Vec<(usize, String)> = Vec::new();
            for (&i, res) in pending.iter().zip(results) {
                match res {
                    Ok(rec) => outcomes[i] = Some(Outcome::Applied(rec)),
                    Err(ProviderError::Unanswered(m)) => lost.push((i, m)),
                    Err(e) => outcomes[i] = Some(Outcome::failed(&e)),
                }
            }
            if lost.is_empty() {
                break;
            }
            let look: Vec<Sought> = lost.iter().map(|(i, _)| sought[i].clone()).collect();
            let (judged, reqs) = self.look(&look).await;
            requests += reqs;
            round += 1;
            pending = Vec::new();
            for ((i, m), j) in lost.into_iter().zip(judged) {
                match j {
                    Ok(Judged::Applied(rec)) => outcomes[i] = Some(Outcome::Applied(rec)),
                    Ok(Judged::NotApplied) if round <= RESEND_ROUNDS => pending.push(i),
                    Ok(Judged::NotApplied) => {
                        outcomes[i] = Some(Outcome::Failed {
                            code: Code::Unavailable,
                            message: format!(
                                "the provider's answer was lost {round} times and each look found \
                                 the change not applied ({m})"
                            ),
                        });
                    }
                    Err(e) => outcomes[i] = Some(Outcome::Unsettled(format!("{m}; {e}"))),
                }
            }
            if !pending.is_empty() {
                tracing::info!(
                    changes = pending.len(),
                    round,
                    "answers lost; a look found the changes not applied: sending them again"
                );
            }
        }

        // 5. One transaction records the cache rows and the journal outcomes.
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::Unsettled("no outcome".into())))
            .collect();
        for (i, (c, o)) in changes.iter().zip(&outcomes).enumerate() {
            if known[i] {
                continue;
            }
            if let Some(w) = Kind::of(&c.op).written(o) {
                if let (WriteOp::Create(_), Written::Upsert { record, .. }) = (&c.op, &w) {
                    created.push(record.id.clone());
                }
                written.push(w);
            }
            if let Some(s) = entries.get(&i).and_then(|row| settle_row(row, o, now)) {
                settled.push(s);
            }
        }
        let generation = self.commit(&written, &created, &settled, now).await?;
        let ok = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Applied(_)))
            .count();
        tracing::info!(
            changes = n,
            succeeded = ok,
            failed = n - ok,
            provider_requests = requests,
            generation,
            "write-through applied"
        );
        Ok(WriteReport {
            outcomes,
            generation,
            requests,
        })
    }

    /// Writes `written` into the cache and `settled` into the journal in one
    /// transaction, and publishes the cache's changes. Returns the generation.
    async fn commit(
        &self,
        written: &[Written],
        created: &[String],
        settled: &[JournalRow],
        now: i64,
    ) -> Result<u64, CacheError> {
        let name = self.provider.name();
        let zone = self.zone.clone();
        let w = written.to_vec();
        let s = settled.to_vec();
        let g = self
            .db
            .run(move |c| {
                store::apply_settled(c, name, &zone, &w, &s, now).map_err(CacheError::from)
            })
            .await?;
        if !written.is_empty() {
            self.committed_generation(g);
            self.publish_written(g, written, created, now);
            metrics::gauge!("trafego_cache_generation").set(g as f64);
        }
        Ok(g)
    }

    /// Looks at the provider for each sought change: a targeted read per
    /// (name, type), or one listing of the zone when there are many (or a
    /// place is unknown). One result per change, and the requests made.
    async fn look(&self, sought: &[Sought]) -> (Vec<Result<Judged, ProviderError>>, u64) {
        let mut keys: Vec<(String, String)> = sought.iter().filter_map(Sought::key).collect();
        keys.sort_unstable();
        keys.dedup();
        let whole = keys.len() > SETTLE_LOOKUPS || sought.iter().any(|s| s.key().is_none());
        if whole {
            return match self.provider.list().await {
                Ok(listing) => {
                    let mut by_key: HashMap<(String, String), Vec<ProviderRecord>> = HashMap::new();
                    for r in &listing.records {
                        by_key
                            .entry((r.name.clone(), r.rtype.clone()))
                            .or_default()
                            .push(r.clone());
                    }
                    let judged = sought
                        .iter()
                        .map(|s| {
                            Ok(match s.key() {
                                Some(k) => journal::judge(s, by_key.get(&k).map_or(&[][..], |v| v)),
                                None => journal::judge(s, &listing.records),
                            })
                        })
                        .collect();
                    (judged, listing.requests)
                }
                Err(e) => (sought.iter().map(|_| Err(e.clone())).collect(), 0),
            };
        }
        let mut held: HashMap<(String, String), Result<Vec<ProviderRecord>, ProviderError>> =
            HashMap::new();
        let mut requests = 0;
        for (name, rtype) in keys {
            let res = self.provider.lookup(&name, &rtype).await;
            let res = res.map(|(records, reqs)| {
                requests += reqs;
                records
            });
            held.insert((name, rtype), res);
        }
        let judged = sought
            .iter()
            .map(|s| {
                let k = s.key().unwrap_or_default();
                match held.get(&k) {
                    Some(Ok(records)) => Ok(journal::judge(s, records)),
                    Some(Err(e)) => Err(e.clone()),
                    None => Ok(journal::judge(s, &[])),
                }
            })
            .collect();
        (judged, requests)
    }

    /// The journal's id (see the change-id protocol).
    pub fn journal_id(&self) -> &str {
        &self.journal_id
    }

    /// What became of changes sent with these ids (GetChangeOutcomes).
    /// Waits up to `wait` for those still in flight; settles by looking
    /// those whose provider answer was lost before answering.
    pub async fn outcomes_of(
        self: &Arc<Self>,
        ids: Vec<String>,
        wait: Duration,
    ) -> Result<(Vec<ChangeStateOf>, u64), CacheError> {
        let mut finished = self.finished.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        while self.any_in_flight(&ids) && tokio::time::Instant::now() < deadline {
            if tokio::time::timeout_at(deadline, finished.changed())
                .await
                .is_err()
            {
                break;
            }
        }
        let lookup = ids.clone();
        let rows = self
            .db
            .run(move |c| Ok::<_, CacheError>(store::journal_get(c, &lookup)?))
            .await?;
        let stale: Vec<String> = rows
            .iter()
            .filter(|r| r.state == store::JOURNAL_PENDING && !self.is_in_flight(&r.change_id))
            .map(|r| r.change_id.clone())
            .collect();
        let rows = if stale.is_empty() {
            rows
        } else {
            let me = self.clone();
            trafego_common::mesh::spawn_in_request(
                async move { me.settle_stale(Some(stale)).await },
            )
            .await
            .unwrap_or_else(|e| Err(CacheError::internal(format!("settle task: {e}"))))?;
            let lookup = ids.clone();
            self.db
                .run(move |c| Ok::<_, CacheError>(store::journal_get(c, &lookup)?))
                .await?
        };
        let by_id: HashMap<&str, &JournalRow> =
            rows.iter().map(|r| (r.change_id.as_str(), r)).collect();
        let out = ids
            .iter()
            .map(|id| {
                if self.is_in_flight(id) {
                    return ChangeStateOf::InFlight;
                }
                match by_id.get(id.as_str()) {
                    None => ChangeStateOf::Unknown,
                    Some(r) => match r.state.as_str() {
                        store::JOURNAL_APPLIED => ChangeStateOf::Done {
                            outcome: Outcome::Applied(journal_record(r)),
                            record_id: r.record_id.clone(),
                        },
                        store::JOURNAL_FAILED => ChangeStateOf::Done {
                            outcome: Outcome::Failed {
                                code: Code::from_i32(r.code),
                                message: r.message.clone(),
                            },
                            record_id: r.target_id.clone(),
                        },
                        _ => ChangeStateOf::Done {
                            outcome: Outcome::Unsettled(
                                "the provider could not be read to settle it".into(),
                            ),
                            record_id: r.target_id.clone(),
                        },
                    },
                }
            })
            .collect();
        Ok((
            out,
            u64::try_from(self.state().generation).unwrap_or_default(),
        ))
    }

    /// Settles pending journal entries that nothing is applying any more
    /// (left by a process that died, or whose look failed) by looking at the
    /// provider: `ids`, or every such entry. Takes the gate.
    pub async fn settle_stale(&self, ids: Option<Vec<String>>) -> Result<usize, CacheError> {
        let _gate = self.gate.lock().await;
        let rows = self
            .db
            .run(move |c| {
                Ok::<_, CacheError>(match ids {
                    Some(ids) => store::journal_get(c, &ids)?,
                    None => store::journal_pending(c)?,
                })
            })
            .await?;
        let rows: Vec<JournalRow> = rows
            .into_iter()
            .filter(|r| r.state == store::JOURNAL_PENDING && !self.is_in_flight(&r.change_id))
            .collect();
        if rows.is_empty() {
            return Ok(0);
        }
        let sought: Vec<Sought> = rows.iter().map(Sought::from_row).collect();
        let (judged, requests) = self.look(&sought).await;
        let now = self.clock.now_ms();
        let mut written = Vec::new();
        let mut created = Vec::new();
        let mut settled = Vec::new();
        let mut unsettled = 0;
        for (row, j) in rows.iter().zip(judged) {
            let outcome = match j {
                Ok(Judged::Applied(rec)) => Outcome::Applied(rec),
                Ok(Judged::NotApplied) => Outcome::Failed {
                    code: Code::Unavailable,
                    message:
                        "not applied: its provider answer was lost (or cache-service stopped) \
                              and a look at the provider found it absent; it may be sent again"
                            .into(),
                },
                Err(_) => {
                    unsettled += 1;
                    continue;
                }
            };
            let kind = Kind::of_row(row);
            if let Some(w) = kind.written(&outcome) {
                if let (Kind::Create, Written::Upsert { record, .. }) = (&kind, &w) {
                    created.push(record.id.clone());
                }
                written.push(w);
            }
            settled.extend(settle_row(row, &outcome, now));
        }
        let n = settled.len();
        self.commit(&written, &created, &settled, now).await?;
        tracing::info!(
            settled = n,
            unsettled,
            provider_requests = requests,
            "settled unconfirmed changes by looking at the provider"
        );
        Ok(n)
    }

    /// Drops journal entries older than the retention (refresh loop).
    pub async fn purge_journal(&self) {
        let before = self.clock.now_ms().saturating_sub(
            i64::try_from(self.settings.journal_retention.as_millis()).unwrap_or(i64::MAX),
        );
        let res = self
            .db
            .run(move |c| Ok::<_, CacheError>(store::journal_purge(c, before)?))
            .await;
        match res {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "old change-journal entries purged"),
            Err(e) => tracing::warn!(error = %e, "could not purge the change journal"),
        }
    }

    fn is_in_flight(&self, id: &str) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(id)
    }

    fn any_in_flight(&self, ids: &[String]) -> bool {
        let f = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        ids.iter().any(|id| f.contains_key(id))
    }

    fn publish_written(&self, g: u64, written: &[Written], created: &[String], now: i64) {
        if written.len() > self.settings.watch_buffer {
            self.hub.publish_gap(g, events::resync(g));
            return;
        }
        let created: std::collections::HashSet<&str> = created.iter().map(String::as_str).collect();
        let mut evs = Vec::with_capacity(written.len() + 1);
        for w in written {
            match w {
                Written::Upsert { record, replaces } => {
                    let kind = match replaces {
                        Some(old) => {
                            evs.push(events::removed_event(g, old.clone()));
                            CacheEventKind::Added
                        }
                        None if created.contains(record.id.as_str()) => CacheEventKind::Added,
                        None => CacheEventKind::Changed,
                    };
                    evs.push(events::record_event(
                        kind,
                        g,
                        self.to_proto(record, now, now),
                    ));
                }
                Written::Removed(id) => evs.push(events::removed_event(g, id.clone())),
            }
        }
        self.hub.publish(g, evs);
    }

    /// A provider record as the API shows it.
    pub fn to_proto(&self, r: &ProviderRecord, last_refreshed: i64, updated_at: i64) -> DnsRecord {
        DnsRecord {
            record_id: r.id.clone(),
            provider: self.provider.name().to_string(),
            zone: self.zone.clone(),
            r#type: r.rtype.clone(),
            name: r.name.clone(),
            content: r.content.clone(),
            ttl: r.ttl,
            proxied: r.proxied,
            priority: r.priority,
            fingerprint: r.fingerprint(),
            comment: r.comment.clone(),
            last_refreshed: Some(timestamp_ms(last_refreshed)),
            updated_at: Some(timestamp_ms(updated_at)),
        }
    }
}

/// A cached row as the API shows it.
pub fn row_to_proto(r: CachedRecord) -> DnsRecord {
    DnsRecord {
        record_id: r.record_id,
        provider: r.provider,
        zone: r.zone,
        r#type: r.rtype,
        name: r.name,
        content: r.content,
        ttl: num::from_db(r.ttl),
        proxied: r.proxied,
        priority: r.priority.map(num::from_db),
        fingerprint: r.fingerprint,
        comment: r.comment,
        last_refreshed: Some(timestamp_ms(r.last_refreshed)),
        updated_at: Some(timestamp_ms(r.updated_at)),
    }
}

/// Runs the periodic refresh until `cancel` fires: one refresh at once, then
/// one each time 90% of the refresh interval has passed, so the cache is
/// refreshed before its TTL runs out.
pub async fn refresh_loop(cache: Arc<Cache>, cancel: tokio_util::sync::CancellationToken) {
    loop {
        // Errors are logged and shown by the status RPC; health stays SERVING.
        if cache.refresh().await.is_ok() {
            // Changes left unconfirmed by an earlier process (or whose look
            // failed) are settled as soon as the provider answers again.
            if let Err(e) = cache.settle_stale(None).await {
                tracing::warn!(error = %e, "could not settle unconfirmed changes");
            }
            cache.purge_journal().await;
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(cache.settings.refresh_interval.mul_f64(0.9)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use futures::future::BoxFuture;
    use trafego_proto::validate::Hostname;

    use super::*;
    use crate::provider::zonefile::{ZoneFileConfig, ZoneFileProvider};
    use crate::provider::{Listing, WriteResult};
    use trafego_common::db::DbOptions;

    /// A provider whose first listing panics.
    struct PanicsOnce {
        zone: Hostname,
        lists: AtomicU32,
    }

    impl DnsProvider for PanicsOnce {
        fn name(&self) -> &'static str {
            "test"
        }

        fn zone(&self) -> &Hostname {
            &self.zone
        }

        fn capabilities(&self) -> crate::provider::Capabilities {
            crate::provider::Capabilities {
                record_types: trafego_proto::validate::RecordType::ALL.to_vec(),
                proxied: false,
                min_ttl: 30,
                max_ttl: 86_400,
                cname_at_apex: false,
                batch_size: 0,
                comments: false,
                id_format: trafego_proto::validate::IdFormat::HEX32,
            }
        }

        fn list(&self) -> BoxFuture<'_, Result<Listing, ProviderError>> {
            Box::pin(async move {
                if self.lists.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("a bug in a provider");
                }
                Ok(Listing::default())
            })
        }

        fn apply(&self, ops: Vec<WriteOp>) -> BoxFuture<'_, (Vec<WriteResult>, u64)> {
            Box::pin(async move { (ops.iter().map(|_| Ok(None)).collect(), 0) })
        }
    }

    #[tokio::test]
    async fn a_panicking_refresh_is_a_failed_refresh_and_the_next_one_runs() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(
            &dir.path().join("cache.db"),
            crate::MIGRATIONS,
            Default::default(),
        )
        .unwrap();
        let provider = Arc::new(PanicsOnce {
            zone: Hostname::parse("zone", "example.com").unwrap(),
            lists: AtomicU32::new(0),
        });
        let settings = CacheSettings {
            refresh_interval: Duration::from_secs(3600),
            refresh_timeout: Duration::from_secs(10),
            watch_buffer: 100,
            journal_retention: Duration::from_secs(3600),
        };
        let cache = Cache::open(
            db,
            provider.clone(),
            trafego_common::clock::system(),
            settings,
        )
        .await
        .unwrap();
        let e = cache.refresh().await.unwrap_err();
        assert_eq!(e.code, Code::Internal);
        assert!(e.message.contains("internal error"), "{e:?}");
        let st = cache.status().await.unwrap();
        assert!(st.stale);
        assert_eq!(st.state.last_error, e.message, "{st:?}");
        // Not wedged: the next refresh runs and succeeds.
        cache.refresh().await.unwrap();
        assert_eq!(provider.lists.load(Ordering::SeqCst), 2);
        let st = cache.status().await.unwrap();
        assert!(!st.stale && st.state.last_error.is_empty(), "{st:?}");
    }

    /// The kept state only moves forward: a state or generation older than
    /// the one kept is ignored, and a write-through's generation keeps the
    /// rest of the state.
    #[tokio::test]
    async fn the_kept_state_never_goes_back_a_generation() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(
            &dir.path().join("cache.db"),
            crate::MIGRATIONS,
            DbOptions::default(),
        )
        .unwrap();
        let zone = Hostname::parse("zone", "example.com").unwrap();
        let provider =
            ZoneFileProvider::open(ZoneFileConfig::new(dir.path().join("z.zone"), zone)).unwrap();
        let cache = Cache::open(
            db,
            Arc::new(provider),
            trafego_common::clock::system(),
            CacheSettings {
                refresh_interval: Duration::from_secs(3600),
                refresh_timeout: Duration::from_secs(10),
                watch_buffer: 16,
                journal_retention: Duration::from_secs(3600),
            },
        )
        .await
        .unwrap();
        let g0 = cache.state().generation;
        let newer = CacheState {
            generation: g0 + 2,
            last_error: "listing failed".into(),
            ..CacheState::clone(&cache.state())
        };
        cache.committed(newer.clone());
        assert_eq!(*cache.state(), newer);
        cache.committed(CacheState {
            generation: g0 + 1,
            last_error: String::new(),
            ..newer.clone()
        });
        assert_eq!(*cache.state(), newer, "an older state is ignored");
        cache.committed_generation(u64::try_from(g0 + 1).unwrap());
        assert_eq!(*cache.state(), newer, "an older generation is ignored");
        cache.committed_generation(u64::try_from(g0 + 3).unwrap());
        assert_eq!(
            *cache.state(),
            CacheState {
                generation: g0 + 3,
                ..newer
            }
        );
    }
}
