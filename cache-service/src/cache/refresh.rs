//! Refreshing the cache, zone by zone: one provider listing per zone shared
//! by every caller that asks meanwhile, applied whole or not at all (a failed
//! refresh changes only its zone's status), its changes published as events;
//! and the periodic refresh loop (one schedule per zone), which also settles
//! unconfirmed changes and purges the journal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tonic::Code;
use trafego_common::duration::millis_i64;
use trafego_common::num;
use trafego_proto::cache::CacheEventKind;

use trafego_common::leader::Role;

use super::{Cache, CacheError};
use crate::events;
use crate::store;

/// What one refresh did (of one zone, or summed over zones).
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

impl RefreshOutcome {
    /// Adds another zone's outcome to this sum: counts add up, the duration
    /// and generation are the largest.
    pub fn add(&mut self, o: &RefreshOutcome) {
        self.added = self.added.saturating_add(o.added);
        self.changed = self.changed.saturating_add(o.changed);
        self.removed = self.removed.saturating_add(o.removed);
        self.total = self.total.saturating_add(o.total);
        self.duration_ms = self.duration_ms.max(o.duration_ms);
        self.generation = self.generation.max(o.generation);
        self.provider_requests = self.provider_requests.saturating_add(o.provider_requests);
    }
}

pub(super) type SharedRefresh = Shared<BoxFuture<'static, Result<RefreshOutcome, CacheError>>>;

impl Cache {
    /// Refreshes `zones` (every zone when empty), at most
    /// REFRESH_CONCURRENCY listings at once. Each zone refreshes unless
    /// `force` is false and it refreshed within the last second (that
    /// outcome is returned). Returns each zone's outcome, or the first
    /// failing zone's error (prefixed with its zone when several are served).
    pub async fn refresh_zones(
        self: &Arc<Self>,
        zones: &[usize],
        force: bool,
    ) -> Result<Vec<(usize, RefreshOutcome)>, CacheError> {
        let all: Vec<usize> = if zones.is_empty() {
            (0..self.zones.len()).collect()
        } else {
            zones.to_vec()
        };
        let runs = all
            .iter()
            .map(|&i| async move { (i, self.refresh_recent(i, force).await) });
        let done = futures::future::join_all(runs).await;
        let mut out = Vec::with_capacity(done.len());
        for (i, r) in done {
            match r {
                Ok(o) => out.push((i, o)),
                Err(e) => return Err(self.zone_error(i, e)),
            }
        }
        Ok(out)
    }

    /// `e`, of zone `i`, prefixed with the zone when several are served.
    pub(super) fn zone_error(&self, i: usize, e: CacheError) -> CacheError {
        if self.zones.len() > 1 {
            CacheError {
                code: e.code,
                message: format!("zone {}: {}", self.zones[i].name, e.message),
            }
        } else {
            e
        }
    }

    /// Refreshes zone `i` unless `force` is false and it refreshed
    /// successfully within the last second, in which case that refresh's
    /// outcome is returned.
    pub async fn refresh_recent(
        self: &Arc<Self>,
        i: usize,
        force: bool,
    ) -> Result<RefreshOutcome, CacheError> {
        if !force {
            let last = self.zones[i]
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
        self.refresh(i).await
    }

    /// Refreshes zone `i` now. Concurrent callers share one provider listing.
    ///
    /// A refresh that panics is a failed refresh like any other: its error
    /// shows in the zone's status, and the next caller starts a new one (the
    /// shared slot is cleared whatever way the refresh ended).
    ///
    /// Only the leader refreshes: elsewhere this is `UNAVAILABLE` and the
    /// provider is not asked.
    pub async fn refresh(self: &Arc<Self>, i: usize) -> Result<RefreshOutcome, CacheError> {
        self.must_lead()?;
        let fut = {
            let mut slot = self.zones[i]
                .inflight
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match slot.as_ref() {
                Some(f) => f.clone(),
                None => {
                    let me = self.clone();
                    let task = tokio::spawn(async move { me.refresh_now(i).await });
                    let me = self.clone();
                    let f = async move {
                        match task.await {
                            Ok(r) => r,
                            Err(e) => {
                                *me.zones[i]
                                    .inflight
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner()) = None;
                                tracing::error!(error = %e, zone = %me.zones[i].name, "the refresh task failed");
                                let err = CacheError::internal(format!(
                                    "internal error: the refresh failed unexpectedly ({})",
                                    if e.is_panic() { "panic" } else { "cancelled" }
                                ));
                                Err(me.refresh_failed(i, err).await)
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

    async fn refresh_now(&self, i: usize) -> Result<RefreshOutcome, CacheError> {
        let zone = &self.zones[i];
        // A slot first, then the zone's lock: waiting for a slot never holds
        // up the zone's writes.
        let slot = self.refresh_slots.acquire().await;
        let _zone_lock = zone.lock.lock().await;
        let started_ms = self.clock.now_ms();
        let t0 = Instant::now();
        let listed =
            tokio::time::timeout(self.settings.refresh_timeout, zone.provider.list()).await;
        drop(slot);
        // Callers arriving from now on need a listing that starts after this
        // one ended: they start the next refresh (which waits for the lock).
        *zone.inflight.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let listing = match listed {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => return Err(self.refresh_failed(i, e.into()).await),
            Err(_) => {
                let e = CacheError {
                    code: Code::Unavailable,
                    message: format!(
                        "the provider listing timed out after {}",
                        humantime::format_duration(self.settings.refresh_timeout)
                    ),
                };
                return Err(self.refresh_failed(i, e).await);
            }
        };
        let requests = listing.requests;
        let name = self.provider_name;
        let zname = zone.name.to_string();
        let now = self.clock.now_ms();
        let gate = self.gate.lock().await;
        let diff = self
            .db
            .run(move |c| {
                Ok::<_, CacheError>(store::apply_refresh(
                    c,
                    name,
                    &zname,
                    listing.records,
                    started_ms,
                    now,
                    t0,
                )?)
            })
            .await;
        let diff = match diff {
            Ok(d) => d,
            Err(e) => {
                drop(gate);
                return Err(self.refresh_failed(i, e).await);
            }
        };
        zone.committed(diff.state.clone());
        self.committed_generation(diff.generation);
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
        let zname = zone.name.to_string();
        let changes = diff.added.len() + diff.changed.len() + diff.removed.len();
        if changes > self.settings.watch_buffer {
            self.hub
                .publish_gap(g, events::refreshed_event(g, zname.clone(), String::new()));
        } else {
            let mut evs = Vec::with_capacity(changes + 1);
            for r in &diff.added {
                evs.push(events::record_event(
                    CacheEventKind::Added,
                    g,
                    self.to_proto(i, r, started_ms, now),
                ));
            }
            for r in &diff.changed {
                evs.push(events::record_event(
                    CacheEventKind::Changed,
                    g,
                    self.to_proto(i, r, started_ms, now),
                ));
            }
            for id in diff.removed {
                evs.push(events::removed_event(g, zname.clone(), id));
            }
            evs.push(events::refreshed_event(g, zname.clone(), String::new()));
            self.hub.publish(g, evs);
        }
        drop(gate);
        metrics::counter!("trafego_cache_refreshes_total", "outcome" => "ok").increment(1);
        metrics::gauge!("trafego_cache_generation").set(g as f64);
        metrics::gauge!("trafego_cache_last_refresh_timestamp_seconds")
            .set(started_ms as f64 / 1000.0);
        metrics::gauge!("trafego_cache_refresh_duration_seconds").set(duration_ms as f64 / 1000.0);
        self.set_stale_gauge();
        *zone.last_outcome.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), outcome.clone()));
        // Records of every zone, as their last refreshes counted them.
        let records: u64 = self
            .zones
            .iter()
            .filter_map(|z| {
                z.last_outcome
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(|(_, o)| o.total)
            })
            .fold(0, u64::saturating_add);
        metrics::gauge!("trafego_cache_records").set(records as f64);
        tracing::info!(
            zone = %zone.name,
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

    /// Sets the stale gauge: 1 while any zone is stale.
    fn set_stale_gauge(&self) {
        let stale = self.zones.iter().any(|z| self.is_stale(&z.state()));
        metrics::gauge!("trafego_cache_stale").set(if stale { 1.0 } else { 0.0 });
    }

    /// Records zone `i`'s failed refresh (its snapshot stays) and publishes
    /// it. Takes the gate: the caller must not hold it.
    async fn refresh_failed(&self, i: usize, e: CacheError) -> CacheError {
        let zone = &self.zones[i];
        tracing::warn!(zone = %zone.name, code = ?e.code, error = %e.message, "cache refresh failed; the zone's previous snapshot is kept");
        metrics::counter!("trafego_cache_refreshes_total", "outcome" => "error").increment(1);
        metrics::counter!("trafego_cache_refresh_failures_total").increment(1);
        metrics::gauge!("trafego_cache_stale").set(1.0);
        let now = self.clock.now_ms();
        let msg = e.message.clone();
        let zname = zone.name.to_string();
        let _gate = self.gate.lock().await;
        let res = self
            .db
            .run(move |c| Ok::<_, CacheError>(store::record_refresh_failure(c, &zname, &msg, now)?))
            .await;
        if let Ok(st) = res {
            zone.committed(st);
            let g = num::count(self.state().generation);
            self.hub.publish(
                g,
                vec![events::refreshed_event(
                    g,
                    zone.name.to_string(),
                    e.message.clone(),
                )],
            );
        }
        e
    }

    /// Makes `zones` (every zone when empty) fresh enough for a read: none
    /// never filled, none older than `max_staleness` (when given).
    ///
    /// The leader refreshes those that are not. A replica that does not
    /// lead never refreshes: it reloads the zones' states and the generation
    /// from the database first (the leader commits without telling it), and
    /// when a zone is still too old the read belongs to the leader:
    /// [`Freshness::AtLeader`], or `UNAVAILABLE` when no leader is known.
    pub async fn ensure_fresh(
        self: &Arc<Self>,
        zones: &[usize],
        max_staleness: Option<Duration>,
    ) -> Result<Freshness, CacheError> {
        let all: Vec<usize> = if zones.is_empty() {
            (0..self.zones.len()).collect()
        } else {
            zones.to_vec()
        };
        if self.leading().is_none() {
            self.reload(false).await?;
            if self.too_old(&all, max_staleness).is_empty() {
                return Ok(Freshness::Here);
            }
            return match self.role() {
                Role::Follower { leader: Some(l) } => Ok(Freshness::AtLeader(l)),
                _ => {
                    let e = self.not_leading();
                    Err(CacheError {
                        code: e.code,
                        message: format!(
                            "the cache is too old for this read and only the leader refreshes \
                             it: {}",
                            e.message
                        ),
                    })
                }
            };
        }
        let old = self.too_old(&all, max_staleness);
        let runs = old
            .iter()
            .map(|&i| async move { (i, self.refresh(i).await) });
        for (i, r) in futures::future::join_all(runs).await {
            r.map_err(|e| self.zone_error(i, e))?;
        }
        Ok(Freshness::Here)
    }

    /// Those of `zones` never filled or older than `max_staleness`.
    fn too_old(&self, zones: &[usize], max_staleness: Option<Duration>) -> Vec<usize> {
        let now = self.clock.now_ms();
        zones
            .iter()
            .copied()
            .filter(|&i| {
                let st = self.zones[i].state();
                match (st.last_refreshed, max_staleness) {
                    (None, _) => true,
                    (Some(at), Some(max)) => now.saturating_sub(at) > millis_i64(max),
                    (Some(_), None) => false,
                }
            })
            .collect()
    }
}

/// Where a read is served, as [`Cache::ensure_fresh`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Freshness {
    /// Here: the cache is fresh enough.
    Here,
    /// At the leader, at this address: only it may refresh.
    AtLeader(String),
}

/// Runs the periodic refresh until `cancel` fires: every zone on its own
/// schedule (one refresh at once, then one each time 90% of the refresh
/// interval has passed, so it is refreshed before its TTL runs out), the
/// listings sharing REFRESH_CONCURRENCY slots; and, once per interval, the
/// purge of old journal entries.
pub async fn refresh_loop(cache: Arc<Cache>, cancel: tokio_util::sync::CancellationToken) {
    let mut tasks: Vec<_> = (0..cache.zones.len())
        .map(|i| {
            let cache = cache.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move { zone_loop(cache, i, cancel).await })
        })
        .collect();
    let purge = {
        let cache = cache.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            loop {
                cache.purge_journal().await;
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(cache.settings.refresh_interval) => {}
                }
            }
        })
    };
    tasks.push(purge);
    for t in tasks {
        let _ = t.await;
    }
}

/// One zone's schedule (see [`refresh_loop`]).
async fn zone_loop(cache: Arc<Cache>, i: usize, cancel: tokio_util::sync::CancellationToken) {
    loop {
        // Errors are logged and shown by the status RPC; health stays SERVING.
        let refreshed = tokio::select! {
            () = cancel.cancelled() => return,
            r = cache.refresh(i) => r.is_ok(),
        };
        if refreshed {
            // Changes left unconfirmed by an earlier process (or whose look
            // failed) are settled as soon as the zone's provider answers again.
            if let Err(e) = cache.settle_stale(None, Some(i)).await {
                tracing::warn!(error = %e, zone = %cache.zones[i].name, "could not settle unconfirmed changes");
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(cache.settings.refresh_interval.mul_f64(0.9)) => {}
        }
    }
}
