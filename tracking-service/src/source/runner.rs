//! One source's loop: a full read every POLL_INTERVAL, and one after each
//! burst of Docker events (debounced by SOURCE_DEBOUNCE), each read turned
//! into one declaration and reconciled through `Tracker::reconcile` under
//! the source's name, never forced.
//!
//! A read that fails declares nothing: the source's last good declaration,
//! which the tracker keeps, stands (nothing new, nothing orphaned), and the
//! read is tried again with backoff, never later than the next poll. A
//! reconcile the tracker refuses (a guard, cache-service away) is the same:
//! reported, retried, never forced. Status and metrics per source are kept
//! here.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use trafego_common::clock::SharedClock;
use trafego_proto::tracking::DesiredRecord;

use super::docker::DockerConn;
use super::labels::{self, Collector, LabelConfig};
use super::traefik::{self, TraefikClient};
use super::{Kind, Registry, SourceError};
use crate::background::Backoff;
use crate::tracker::Tracker;

/// Problems kept in the status (the rest are counted).
pub const MAX_PROBLEMS: usize = 50;

/// Where a source reads from (cloned for each leadership term's runner).
#[derive(Debug, Clone)]
pub enum Reader {
    /// Traefik's routers, with overrides from Docker when configured.
    Traefik {
        /// The API client.
        client: TraefikClient,
        /// The engine behind the routers, if any.
        docker: Option<Arc<DockerConn>>,
    },
    /// Containers' own labels.
    Docker {
        /// The engine.
        docker: Arc<DockerConn>,
    },
}

/// One running source.
pub struct Runner {
    /// Which source.
    pub kind: Kind,
    /// Its place in the registry.
    pub index: usize,
    /// Where it reads.
    pub reader: Reader,
    /// Where it declares.
    pub tracker: Arc<Tracker>,
    /// The service's clock, for the status' timestamps.
    pub clock: SharedClock,
    /// Where its status goes.
    pub registry: Arc<Registry>,
    /// POLL_INTERVAL.
    pub poll: Duration,
    /// SOURCE_DEBOUNCE.
    pub debounce: Duration,
    /// How labels are read.
    pub labels: LabelConfig,
    /// Woken by the Docker event watcher.
    pub wake: Arc<Notify>,
}

/// What one read produced.
struct Read {
    records: Vec<DesiredRecord>,
    problems: Vec<labels::Problem>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Runner {
    /// Runs until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        let name = self.kind.name();
        for m in [
            "trafego_source_polls_total",
            "trafego_source_errors_total",
            "trafego_source_events_total",
        ] {
            metrics::counter!(m, "source" => name).increment(0);
        }
        let mut logged = HashSet::new();
        let mut reported: Vec<String> = Vec::new();
        let mut backoff = Backoff::new(Duration::from_millis(500), self.poll);
        // The first read is due at once.
        let mut next_poll = Instant::now();
        let mut retry_at: Option<Instant> = None;
        loop {
            let due = retry_at.map_or(next_poll, |r| r.min(next_poll));
            let wait = due.saturating_duration_since(Instant::now());
            self.registry.update(self.index, |s| {
                s.next_run_ms = Some(self.clock.now_ms().saturating_add(ms(wait)));
            });
            let woken = tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep_until(due) => false,
                () = self.wake.notified() => true,
            };
            if woken && !self.settle(&cancel).await {
                return;
            }
            if !woken && due >= next_poll {
                next_poll = Instant::now() + self.poll;
            }
            // Stopping never waits out a slow Traefik or Docker: the read is
            // dropped, and a reconcile already under way finishes in the
            // tracker's own task.
            let ok = tokio::select! {
                () = cancel.cancelled() => return,
                ok = self.once(&mut logged, &mut reported) => ok,
            };
            retry_at = if ok {
                backoff.reset();
                None
            } else {
                Some(Instant::now() + backoff.next_delay())
            };
        }
    }

    /// The debounce: waits until SOURCE_DEBOUNCE passes without another
    /// event, at most ten times as long in all (a steady trickle still gets
    /// read). False when cancelled.
    async fn settle(&self, cancel: &CancellationToken) -> bool {
        if self.debounce.is_zero() {
            return true;
        }
        let deadline = Instant::now() + self.debounce.saturating_mul(10);
        loop {
            let quiet = (Instant::now() + self.debounce).min(deadline);
            tokio::select! {
                () = cancel.cancelled() => return false,
                () = tokio::time::sleep_until(quiet) => return true,
                () = self.wake.notified() => {
                    if Instant::now() >= deadline {
                        return true;
                    }
                }
            }
        }
    }

    /// One read and reconcile; true when both succeeded.
    async fn once(&mut self, logged: &mut HashSet<String>, reported: &mut Vec<String>) -> bool {
        let name = self.kind.name();
        metrics::counter!("trafego_source_polls_total", "source" => name).increment(1);
        let result = self.read_and_declare(logged).await;
        let now = self.clock.now_ms();
        match result {
            Ok((n, problems)) => {
                let texts: Vec<String> = problems.iter().map(ToString::to_string).collect();
                if texts != *reported {
                    for p in texts.iter().filter(|p| !reported.contains(p)) {
                        tracing::warn!(source = name, problem = %p, "skipped: not declared");
                    }
                    *reported = texts.clone();
                }
                metrics::gauge!("trafego_source_hostnames", "source" => name).set(n as f64);
                self.registry.update(self.index, |s| {
                    s.polls = s.polls.saturating_add(1);
                    s.last_success_ms = Some(now);
                    s.last_error.clear();
                    s.hostnames = u64::try_from(n).unwrap_or(u64::MAX);
                    let more = texts.len().saturating_sub(MAX_PROBLEMS);
                    s.problems = texts.into_iter().take(MAX_PROBLEMS).collect();
                    if more > 0 {
                        s.problems.push(format!("... and {more} more"));
                    }
                });
                true
            }
            Err(e) => {
                metrics::counter!("trafego_source_errors_total", "source" => name).increment(1);
                tracing::warn!(source = name, error = %e, "hostname source failed; its last good declaration stands");
                self.registry.update(self.index, |s| {
                    s.polls = s.polls.saturating_add(1);
                    s.errors = s.errors.saturating_add(1);
                    s.last_error = e.0.clone();
                    s.last_error_ms = Some(now);
                });
                false
            }
        }
    }

    /// Reads the source and reconciles what it declares; the number of
    /// records declared and the owners skipped.
    async fn read_and_declare(
        &mut self,
        logged: &mut HashSet<String>,
    ) -> Result<(usize, Vec<labels::Problem>), SourceError> {
        let tracker = self.tracker.clone();
        let zone = tracker
            .zone()
            .await
            .map_err(|e| SourceError(format!("cache-service: {}", public(e))))?;
        if self.labels.provider.is_none() {
            let st = tracker
                .client()
                .status()
                .await
                .map_err(|e| SourceError(format!("cache-service: {}", public(e))))?;
            self.labels.provider = Some(st.provider.to_ascii_lowercase());
        }
        let read = self.read(zone, logged).await?;
        let n = read.records.len();
        tracker
            .reconcile(self.kind.name(), &read.records, false, false)
            .await
            .map_err(|e| SourceError(format!("reconcile: {}", public(e))))?;
        Ok((n, read.problems))
    }

    async fn read(
        &self,
        zone: &crate::desired::ZoneInfo,
        logged: &mut HashSet<String>,
    ) -> Result<Read, SourceError> {
        let defaults = &self.tracker.settings().defaults;
        let mut collector = Collector::new(defaults, zone);
        match &self.reader {
            Reader::Traefik { client, docker } => {
                let (routers, _) = client.routers().await?;
                let containers = match docker {
                    Some(d) => Some(d.running().await?),
                    None => None,
                };
                traefik::declare_routers(
                    &routers,
                    containers.as_deref(),
                    &self.labels,
                    &mut collector,
                    logged,
                );
            }
            Reader::Docker { docker } => {
                let containers = docker.running().await?;
                labels::declare_containers(&containers, &self.labels, &mut collector);
            }
        }
        let (records, problems) = collector.finish();
        Ok(Read { records, problems })
    }
}

/// What may be shown of a tracker error: its gRPC message (internal errors
/// are only "internal error (request id …)").
fn public(e: crate::error::TrackingError) -> String {
    tonic::Status::from(e).message().to_string()
}
