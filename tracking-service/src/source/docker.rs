//! The Docker Engine client of the sources (bollard, over the unix socket or
//! plain TCP to a socket proxy; no TLS stack): the running containers with
//! their labels, and the `/events` stream of container `start`, `stop`,
//! `die` and `destroy`, read from `Action` and `Actor` (Docker 29 dropped the
//! old `status` field). The API version is negotiated with the engine, again
//! after every failure.
//!
//! A dropped event stream is reconnected with capped backoff, asking the
//! engine to replay what happened since the last event seen, and the source
//! re-reads everything (a re-list) once it is back. A failed list fails the
//! read whole: a partial container list must never reach reconcile.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::models::EventMessageTypeEnum;
use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder};
use futures::StreamExt;
use tokio::sync::{Mutex, Notify};
use tokio_util::sync::CancellationToken;

use super::labels::Container;
use super::{Registry, SourceError};
use crate::background::Backoff;

/// The container actions that change what is declared.
pub const ACTIONS: [&str; 4] = ["start", "stop", "die", "destroy"];

/// One Docker Engine, with the API version negotiated once it answers.
#[derive(Debug)]
pub struct DockerConn {
    base: Docker,
    host: String,
    timeout: Duration,
    negotiated: Mutex<Option<Docker>>,
}

impl DockerConn {
    /// A client of `host` (`unix:///path`, `tcp://host:port`); connects lazily.
    pub fn new(host: &str, timeout: Duration) -> anyhow::Result<Self> {
        let base = if let Some(addr) = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))
        {
            Docker::connect_with_http(addr, timeout.as_secs().max(1), bollard::API_DEFAULT_VERSION)
        } else {
            Docker::connect_with_unix(host, timeout.as_secs().max(1), bollard::API_DEFAULT_VERSION)
        }
        .map_err(|e| anyhow::anyhow!("Docker Engine at {host}: {e}"))?;
        Ok(Self {
            base,
            host: host.to_string(),
            timeout,
            negotiated: Mutex::new(None),
        })
    }

    /// Where the engine is.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A client at the version the engine speaks.
    async fn client(&self) -> Result<Docker, SourceError> {
        let mut n = self.negotiated.lock().await;
        if let Some(d) = &*n {
            return Ok(d.clone());
        }
        let d = tokio::time::timeout(self.timeout, self.base.clone().negotiate_version())
            .await
            .map_err(|_| self.error("negotiating the API version timed out (API_TIMEOUT)"))?
            .map_err(|e| self.error(&format!("negotiating the API version: {e}")))?;
        *n = Some(d.clone());
        Ok(d)
    }

    /// Forgets the negotiated client, after a failure.
    async fn reset(&self) {
        *self.negotiated.lock().await = None;
    }

    fn error(&self, what: &str) -> SourceError {
        SourceError(format!("Docker Engine at {}: {what}", self.host))
    }

    /// Every running container with its labels.
    pub async fn running(&self) -> Result<Vec<Container>, SourceError> {
        let docker = self.client().await?;
        let mut filters = HashMap::new();
        filters.insert("status", vec!["running"]);
        let opts = ListContainersOptionsBuilder::new()
            .filters(&filters)
            .build();
        let listed =
            match tokio::time::timeout(self.timeout, docker.list_containers(Some(opts))).await {
                Ok(Ok(l)) => l,
                Ok(Err(e)) => {
                    self.reset().await;
                    return Err(self.error(&format!("listing containers: {e}")));
                }
                Err(_) => {
                    self.reset().await;
                    return Err(self.error("listing containers timed out (API_TIMEOUT)"));
                }
            };
        Ok(listed
            .into_iter()
            .map(|c| Container {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                labels: c.labels.unwrap_or_default().into_iter().collect(),
            })
            .collect())
    }
}

/// Whether an event changes what is declared: a container's start, stop,
/// die or destroy, read from `Type`, `Action` (never the legacy `status`).
fn relevant(ev: &bollard::models::EventMessage) -> bool {
    ev.typ == Some(EventMessageTypeEnum::CONTAINER)
        && ev.action.as_deref().is_some_and(|a| ACTIONS.contains(&a))
}

/// `since` for a reconnect: the last event's time, as `seconds.nanos`.
fn since_of(time_nano: i64) -> String {
    format!(
        "{}.{:09}",
        time_nano.div_euclid(1_000_000_000),
        time_nano.rem_euclid(1_000_000_000)
    )
}

/// Follows the engine's events until `cancel` fires, waking the source's
/// runner (`wake`) on each relevant one, and after every reconnect.
pub async fn watch(
    conn: Arc<DockerConn>,
    wake: Arc<Notify>,
    registry: Arc<Registry>,
    index: usize,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    let mut last_seen: Option<i64> = None;
    let mut connected_before = false;
    let source = registry
        .snapshot()
        .get(index)
        .map(|s| s.name.clone())
        .unwrap_or_default();
    loop {
        if cancel.is_cancelled() {
            return;
        }
        let docker = match conn.client().await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(source, error = %e, "Docker events: engine unreachable; retrying");
                if !pause(&cancel, backoff.next_delay()).await {
                    return;
                }
                continue;
            }
        };
        let mut filters = HashMap::new();
        filters.insert("type", vec!["container"]);
        filters.insert("event", ACTIONS.to_vec());
        let mut opts = EventsOptionsBuilder::new().filters(&filters);
        let since = last_seen.map(since_of);
        if let Some(s) = &since {
            opts = opts.since(s);
        }
        let mut stream = docker.events(Some(opts.build()));
        if connected_before {
            // What happened while nobody listened: re-read everything.
            tracing::info!(
                source,
                "Docker event stream reconnected; re-reading every container"
            );
            wake.notify_one();
        }
        connected_before = true;
        let opened = Instant::now();
        let ended = loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                item = stream.next() => match item {
                    Some(Ok(ev)) => {
                        backoff.reset();
                        if let Some(t) = ev.time_nano.or(ev.time.map(|s| s.saturating_mul(1_000_000_000))) {
                            last_seen = Some(t);
                        }
                        if relevant(&ev) {
                            let actor = ev.actor.as_ref();
                            let name = actor
                                .and_then(|a| a.attributes.as_ref())
                                .and_then(|a| a.get("name"))
                                .map_or("", String::as_str);
                            tracing::debug!(
                                source,
                                action = ev.action.as_deref().unwrap_or(""),
                                container = name,
                                id = actor.and_then(|a| a.id.as_deref()).unwrap_or(""),
                                "Docker event"
                            );
                            registry.update(index, |s| s.events = s.events.saturating_add(1));
                            metrics::counter!("trafego_source_events_total", "source" => source.clone()).increment(1);
                            wake.notify_one();
                        }
                    }
                    Some(Err(e)) => break format!("broke: {e}"),
                    None => break "ended".to_string(),
                },
            }
        };
        conn.reset().await;
        if opened.elapsed() > Duration::from_secs(10) {
            backoff.reset();
        }
        tracing::warn!(
            source,
            host = conn.host(),
            "Docker event stream {ended}; reconnecting"
        );
        if !pause(&cancel, backoff.next_delay()).await {
            return;
        }
    }
}

/// Sleeps `d` unless `cancel` fires first; false when cancelled.
async fn pause(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_seconds_and_nanos() {
        assert_eq!(since_of(1_700_000_000_123_456_789), "1700000000.123456789");
        assert_eq!(since_of(5), "0.000000005");
    }

    #[test]
    fn only_container_lifecycle_actions_count() {
        let ev = |typ, action: &str| bollard::models::EventMessage {
            typ: Some(typ),
            action: Some(action.to_string()),
            ..Default::default()
        };
        assert!(relevant(&ev(EventMessageTypeEnum::CONTAINER, "start")));
        assert!(relevant(&ev(EventMessageTypeEnum::CONTAINER, "destroy")));
        assert!(!relevant(&ev(EventMessageTypeEnum::CONTAINER, "create")));
        assert!(!relevant(&ev(EventMessageTypeEnum::NETWORK, "start")));
    }
}
