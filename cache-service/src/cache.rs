//! The cache itself: refresh (shared by concurrent callers, whole or not at
//! all), write-through to the provider, freshness, and event publishing.
//!
//! Refreshes and writes take one gate in turn, so a listing never overwrites a
//! write that was accepted while it ran, and generations are published in
//! order. A failed refresh never touches the snapshot: only the status records
//! the error.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tonic::Code;
use trafego_common::clock::SharedClock;
use trafego_common::db::Db;
use trafego_common::duration::millis_i64;
use trafego_proto::cache::{CacheEventKind, DnsRecord};
use trafego_proto::timestamp_ms;

use crate::events::{self, Hub};
use crate::provider::{DnsProvider, ProviderError, ProviderRecord, WriteOp, WriteResult};
use crate::store::{self, CacheState, CachedRecord, Written};

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
    zone: String,
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
        let (dropped, st) = db
            .run(move |c| {
                let dropped = store::claim(c, name, &z)?;
                Ok::<_, CacheError>((dropped, store::state(c)?))
            })
            .await?;
        if dropped > 0 {
            tracing::warn!(dropped, provider = name, zone = %zone, "dropped cached rows of another provider or zone");
        }
        Ok(Arc::new(Cache {
            hub: Hub::new(settings.watch_buffer, st.generation as u64),
            db,
            provider,
            clock,
            settings,
            gate: tokio::sync::Mutex::new(()),
            inflight: Mutex::new(None),
            last_outcome: Mutex::new(None),
            zone,
        }))
    }

    /// The provider's name.
    pub fn provider_name(&self) -> &'static str {
        self.provider.name()
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
    pub async fn refresh(self: &Arc<Self>) -> Result<RefreshOutcome, CacheError> {
        let fut = {
            let mut slot = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_ref() {
                Some(f) => f.clone(),
                None => {
                    let me = self.clone();
                    let task = tokio::spawn(async move { me.refresh_now().await });
                    let f = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(CacheError::internal(format!("refresh task: {e}")))
                        })
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
                store::apply_refresh(c, name, &zone, listing.records, started_ms, now, t0)
                    .map_err(CacheError::from)
            })
            .await;
        let diff = match diff {
            Ok(d) => d,
            Err(e) => return Err(self.refresh_failed(e).await),
        };
        let duration_ms = t0.elapsed().as_millis() as u64;
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
                Ok::<_, CacheError>(store::state(c)?.generation as u64)
            })
            .await;
        if let Ok(g) = res {
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
        let st = self
            .db
            .run(|c| Ok::<_, CacheError>(store::state(c)?))
            .await?;
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

    /// The cache's status.
    pub async fn status(&self) -> Result<Status, CacheError> {
        let (state, record_count) = self
            .db
            .run(|c| Ok::<_, CacheError>((store::state(c)?, store::count(c)?)))
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

    /// Applies writes at the provider, then writes what it accepted into the
    /// cache at once. Returns one result per op, the generation after the
    /// writes, and the provider requests made.
    ///
    /// The work runs in its own task: a caller that hangs up (or times out)
    /// never cuts it between the provider's answer and the cache's record.
    pub async fn write(
        self: &Arc<Self>,
        ops: Vec<WriteOp>,
    ) -> Result<(Vec<WriteResult>, u64, u64), CacheError> {
        let me = self.clone();
        tokio::spawn(async move { me.write_now(ops).await })
            .await
            .unwrap_or_else(|e| Err(CacheError::internal(format!("write task: {e}"))))
    }

    async fn write_now(
        &self,
        ops: Vec<WriteOp>,
    ) -> Result<(Vec<WriteResult>, u64, u64), CacheError> {
        let _gate = self.gate.lock().await;
        let (results, requests) = self.provider.apply(ops.clone()).await;
        if results.len() != ops.len() {
            return Err(CacheError::internal(format!(
                "provider answered {} results for {} changes",
                results.len(),
                ops.len()
            )));
        }
        let mut written = Vec::new();
        let mut created = Vec::new();
        for (op, res) in ops.iter().zip(&results) {
            match (op, res) {
                (WriteOp::Create(_), Ok(Some(r))) => {
                    created.push(r.id.clone());
                    written.push(Written::Upsert {
                        record: r.clone(),
                        replaces: None,
                    })
                }
                (WriteOp::Update { id, .. }, Ok(Some(r))) => written.push(Written::Upsert {
                    record: r.clone(),
                    replaces: (*id != r.id).then(|| id.clone()),
                }),
                (WriteOp::Delete { id }, Ok(_)) => written.push(Written::Removed(id.clone())),
                // The provider no longer has it: neither should the cache.
                (
                    WriteOp::Update { id, .. } | WriteOp::Delete { id },
                    Err(ProviderError::NotFound(_)),
                ) => written.push(Written::Removed(id.clone())),
                _ => {}
            }
        }
        let name = self.provider.name();
        let zone = self.zone.clone();
        let now = self.clock.now_ms();
        let generation = if written.is_empty() {
            self.db
                .run(|c| Ok::<_, CacheError>(store::state(c)?.generation as u64))
                .await?
        } else {
            let w = written.clone();
            let g = self
                .db
                .run(move |c| {
                    store::apply_written(c, name, &zone, &w, now).map_err(CacheError::from)
                })
                .await?;
            self.publish_written(g, &written, &created, now);
            metrics::gauge!("trafego_cache_generation").set(g as f64);
            g
        };
        let ok = results.iter().filter(|r| r.is_ok()).count();
        tracing::info!(
            changes = ops.len(),
            succeeded = ok,
            failed = ops.len() - ok,
            provider_requests = requests,
            generation,
            "write-through applied"
        );
        Ok((results, generation, requests))
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
        ttl: r.ttl as u32,
        proxied: r.proxied,
        priority: r.priority.map(|p| p as u32),
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
        let _ = cache.refresh().await;
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(cache.settings.refresh_interval.mul_f64(0.9)) => {}
        }
    }
}
