//! The tracker's background work: the start-up sync, following cache-service's
//! `WatchCache` stream, and the periodic orphan sweep — with the built-in
//! sources, the work that must happen once among replicas, so it runs only
//! while this replica leads ([`lead`], one leadership term).
//!
//! Each loop ends when its term's cancellation token fires (a step-down, or
//! the service's shutdown). None of them ever gives up on cache-service: an
//! unreachable service is logged and tried again with capped exponential
//! backoff, and the sweep simply skips its turn.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use trafego_proto::cache::CacheEventKind;

use crate::tracker::Tracker;

/// Capped exponential backoff between reconnection attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    min: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `min`, doubles up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            next: min,
            min,
            max,
        }
    }

    /// The next delay, with up to 20% jitter so restarted peers do not beat in step.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        let jitter = trafego_common::duration::millis_u64(d) / 5;
        d.saturating_add(Duration::from_millis(if jitter > 0 {
            rand::random::<u64>() % jitter
        } else {
            0
        }))
    }

    /// Back to the shortest delay, after a success.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Sleeps `d` unless `cancel` fires first; returns false when cancelled.
async fn pause(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

/// Re-checks missing and drifted records, then keeps MANAGED_HOSTNAMES in step.
async fn recheck(tracker: &Arc<Tracker>) -> Result<(), crate::error::TrackingError> {
    tracker.check().await?;
    if !tracker.settings().managed.is_empty() {
        tracker.reconcile_managed().await?;
    }
    Ok(())
}

/// The start-up sync, then the `WatchCache` follower, until `cancel` fires.
pub async fn follow_cache(tracker: Arc<Tracker>, cancel: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    // Start-up sync: once cache-service answers, check what is missing or
    // drifted and reconcile MANAGED_HOSTNAMES.
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let res = async {
            tracker.zone().await?;
            let managed = tracker.settings().managed.len();
            recheck(&tracker).await?;
            Ok::<_, crate::error::TrackingError>(managed)
        }
        .await;
        match res {
            Ok(managed) => {
                tracing::info!(
                    managed_hostnames = managed,
                    "start-up sync with cache-service done"
                );
                break;
            }
            Err(e) => {
                let d = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = trafego_common::duration::millis_u64(d), "start-up sync failed; retrying");
                if !pause(&cancel, d).await {
                    return;
                }
            }
        }
    }
    backoff.reset();
    let mut from = tracker.client().generation();
    let mut reconnect = false;
    loop {
        let opened = tokio::select! {
            () = cancel.cancelled() => return,
            o = tracker.client().watch(from) => o,
        };
        match opened {
            Ok(mut stream) => {
                tracing::debug!(from_generation = from, "following cache-service events");
                if reconnect {
                    // Events may have been missed while the stream was down.
                    if let Err(e) = recheck(&tracker).await {
                        tracing::warn!(error = %e, "re-check after reconnecting failed");
                    }
                }
                loop {
                    let msg = tokio::select! {
                        () = cancel.cancelled() => return,
                        m = stream.message() => m,
                    };
                    match msg {
                        Ok(Some(ev)) => {
                            backoff.reset();
                            from = from.max(ev.generation);
                            let kind = CacheEventKind::try_from(ev.kind).unwrap_or_default();
                            let refreshed_ok =
                                kind == CacheEventKind::Refreshed && ev.error.is_empty();
                            if (refreshed_ok || kind == CacheEventKind::Resync)
                                && let Err(e) = recheck(&tracker).await
                            {
                                tracing::warn!(error = %e, "re-check after a cache refresh failed");
                            }
                        }
                        Ok(None) => {
                            tracing::info!("cache-service ended the event stream");
                            break;
                        }
                        Err(s) => {
                            tracing::warn!(code = ?s.code(), error = %s.message(), "cache event stream failed");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot follow cache-service events"),
        }
        reconnect = true;
        let d = backoff.next_delay();
        if !pause(&cancel, d).await {
            return;
        }
    }
}

/// What one leadership term runs besides the RPCs.
pub struct LeaderWork {
    /// The tracker.
    pub tracker: Arc<Tracker>,
    /// CLEANUP_INTERVAL.
    pub cleanup_interval: Duration,
    /// The built-in sources.
    pub sources: Arc<crate::source::Sources>,
    /// The service's clock, for the sources' status.
    pub clock: trafego_common::clock::SharedClock,
}

/// One leadership term (with fence `fence`), until `term` fires: the rebuild
/// from ownership markers, then the cache follower (with its start-up sync),
/// the sweep loop and the sources, each ended and awaited when the term ends.
/// Called by [`trafego_common::leader::while_leading`]; with one instance
/// (SQLite) the only term lasts as long as the process.
pub async fn lead(work: Arc<LeaderWork>, fence: i64, term: CancellationToken) {
    tracing::info!(
        fence,
        "leading: the rebuild from markers, cache follower, orphan sweep and sources run here"
    );
    let tracker = &work.tracker;
    tokio::select! {
        () = term.cancelled() => return,
        res = tracker.start_ownership() => if let Err(e) = res {
            tracing::warn!(
                error = %e,
                "could not check ownership markers at takeover; the first reconcile, sweep or track does it"
            );
        },
    }
    let mut tasks = vec![
        tokio::spawn(follow_cache(tracker.clone(), term.clone())),
        tokio::spawn(sweep_loop(
            tracker.clone(),
            work.cleanup_interval,
            term.clone(),
        )),
    ];
    tasks.extend(work.sources.spawn(tracker, &work.clock, &term));
    for t in tasks {
        let _ = t.await;
    }
    tracing::info!(fence, "the leader's background work ended");
}

/// Runs the orphan sweep every `interval` until `cancel` fires.
pub async fn sweep_loop(tracker: Arc<Tracker>, interval: Duration, cancel: CancellationToken) {
    let interval = interval.max(Duration::from_millis(100));
    loop {
        if !pause(&cancel, interval).await {
            return;
        }
        if let Err(e) = tracker.sweep(false).await {
            tracing::warn!(error = %e, "orphan sweep failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_capped() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut last = Duration::ZERO;
        for _ in 0..10 {
            last = b.next_delay();
        }
        assert!(last <= Duration::from_millis(1200), "{last:?}");
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(130));
    }
}
