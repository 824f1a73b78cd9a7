//! Refreshing the cache: one provider listing shared by every caller that
//! asks meanwhile, applied whole or not at all (a failed refresh changes only
//! the status), its changes published as events; and the periodic refresh
//! loop, which also settles unconfirmed changes and purges the journal.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use tonic::Code;
use trafego_common::duration::millis_i64;
use trafego_common::num;
use trafego_proto::cache::CacheEventKind;

use super::{Cache, CacheError};
use crate::events;
use crate::store;

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

pub(super) type SharedRefresh = Shared<BoxFuture<'static, Result<RefreshOutcome, CacheError>>>;

impl Cache {
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
