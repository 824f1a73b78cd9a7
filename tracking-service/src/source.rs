//! Built-in hostname sources: Traefik routers (`traefik`) and Docker
//! container labels (`docker`), TrafegoDNS's two modes. Each watches what
//! services expose and declares it through the tracker's public reconcile
//! entry, the same path as the `Reconcile` RPC, under its own source name,
//! so the guards, ownership rules, grace periods and the separation of
//! sources hold for it unchanged.
//!
//! A source never forces a reconcile, and a source that fails (unreachable,
//! refused, too slow, an answer that does not parse) declares nothing: its
//! last good declaration, which the tracker keeps, stands until it answers
//! again. Nothing here writes to the provider or the tracker's table except
//! through `Tracker::reconcile`. With replicas the sources run on the leader
//! only: [`Sources`] builds their clients once at start and spawns them at
//! each takeover, ending them at step-down.
//!
//! - [`rule`]: the Traefik rule tokenizer and parser.
//! - [`labels`]: TrafegoDNS's label semantics, and the per-owner collector.
//! - [`traefik`]: the Traefik API client (HTTP and TCP routers, every page).
//! - [`docker`]: the Docker Engine client (list, events, reconnect).
//! - [`runner`]: the poll and debounce loop, status and metrics.

pub mod docker;
pub mod labels;
pub mod rule;
pub mod runner;
pub mod traefik;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use trafego_common::clock::SharedClock;
use trafego_common::duration;
use trafego_proto::timestamp_ms;
use trafego_proto::tracking::SourceStatus;

use crate::tracker::Tracker;

/// The settings of the built-in sources (TrafegoDNS's names). `Debug` is
/// written by hand: it never prints TRAEFIK_API_PASSWORD.
#[derive(Clone, clap::Args)]
pub struct SourceArgs {
    /// Built-in sources to run, comma-separated: `traefik`, `docker` (empty: the gRPC API alone).
    #[arg(long, env = "SOURCES", default_value = "")]
    pub sources: String,

    /// TrafegoDNS's mode, used when SOURCES is empty: `traefik` (routers, with
    /// container labels as overrides) or `direct` (labels only, the `docker` source).
    #[arg(long, env = "OPERATION_MODE")]
    pub operation_mode: Option<String>,

    /// Traefik's API, e.g. http://traefik:8080/api.
    #[arg(
        long,
        env = "TRAEFIK_API_URL",
        default_value = "http://traefik:8080/api"
    )]
    pub traefik_api_url: String,

    /// Basic-auth user for Traefik's API.
    #[arg(long, env = "TRAEFIK_API_USERNAME")]
    pub traefik_api_username: Option<String>,

    /// Basic-auth password for Traefik's API.
    #[arg(long, env = "TRAEFIK_API_PASSWORD", hide_env_values = true)]
    pub traefik_api_password: Option<String>,

    /// File holding the basic-auth password for Traefik's API.
    #[arg(long, env = "TRAEFIK_API_PASSWORD_FILE")]
    pub traefik_api_password_file: Option<PathBuf>,

    /// Time limit of each call to Traefik's or Docker's API (bare numbers are milliseconds).
    #[arg(long, env = "API_TIMEOUT", default_value = "60000", value_parser = duration::parse_millis)]
    pub api_timeout: Duration,

    /// Full re-read of every source, events or not (bare numbers are milliseconds).
    #[arg(long, env = "POLL_INTERVAL", default_value = "60000", value_parser = duration::parse_millis)]
    pub poll_interval: Duration,

    /// Quiet time after a Docker event before the re-read (a burst becomes one
    /// reconcile); 0 re-reads at once (bare numbers are milliseconds).
    #[arg(long, env = "SOURCE_DEBOUNCE", default_value = "1000", value_parser = duration::parse_millis)]
    pub source_debounce: Duration,

    /// The Docker Engine's unix socket (used when DOCKER_HOST is unset).
    #[arg(long, env = "DOCKER_SOCKET", default_value = "/var/run/docker.sock")]
    pub docker_socket: PathBuf,

    /// The Docker Engine as `unix:///path` or `tcp://host:port` (a socket proxy); wins over DOCKER_SOCKET.
    #[arg(long, env = "DOCKER_HOST")]
    pub docker_host: Option<String>,

    /// Follow Docker's event stream (start, stop, die, destroy) between polls.
    #[arg(long, env = "WATCH_DOCKER_EVENTS", default_value_t = true, action = clap::ArgAction::Set)]
    pub watch_docker_events: bool,

    /// Prefix of the DNS labels (`dns.hostname`, `dns.<provider>.ttl`...).
    #[arg(long, env = "DNS_LABEL_PREFIX", default_value = "dns.")]
    pub dns_label_prefix: String,

    /// Prefix of Traefik's labels, to find the container behind a router.
    #[arg(long, env = "TRAEFIK_LABEL_PREFIX", default_value = "traefik.")]
    pub traefik_label_prefix: String,

    /// Manage containers without a `dns.manage` label (false: opt-in with `dns.manage=true`).
    #[arg(long, env = "DNS_DEFAULT_MANAGE", default_value_t = true, action = clap::ArgAction::Set)]
    pub dns_default_manage: bool,
}

impl std::fmt::Debug for SourceArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceArgs")
            .field("sources", &self.sources)
            .field("operation_mode", &self.operation_mode)
            .field("traefik_api_url", &redact_url(&self.traefik_api_url))
            .field("traefik_api_username", &self.traefik_api_username)
            .field(
                "traefik_api_password",
                &self.traefik_api_password.as_ref().map(|_| "<redacted>"),
            )
            .field("traefik_api_password_file", &self.traefik_api_password_file)
            .field("api_timeout", &self.api_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("source_debounce", &self.source_debounce)
            .field("docker_socket", &self.docker_socket)
            .field("docker_host", &self.docker_host)
            .field("watch_docker_events", &self.watch_docker_events)
            .field("dns_label_prefix", &self.dns_label_prefix)
            .field("traefik_label_prefix", &self.traefik_label_prefix)
            .field("dns_default_manage", &self.dns_default_manage)
            .finish()
    }
}

/// A URL with any `user:password@` removed, for logs and messages.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://{host}{path}"),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

/// Why a source's read failed; the message names what was asked of whom,
/// never a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError(pub String);

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SourceError {}

/// Which kind of source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Traefik's routers, with container labels as overrides.
    Traefik,
    /// Container labels alone.
    Docker,
}

impl Kind {
    /// The source name declarations are made under (and the kind's name).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Traefik => "traefik",
            Kind::Docker => "docker",
        }
    }
}

/// Where the Docker Engine is, and whether to follow its events.
#[derive(Debug, Clone)]
pub struct DockerSettings {
    /// `unix:///path` or `tcp://host:port`.
    pub host: String,
    /// Whether DOCKER_HOST named it, or the DOCKER_SOCKET file exists: the
    /// Traefik source then reads overrides from it, and a Docker failure
    /// fails its poll (it never declares without the overrides it should have).
    pub available: bool,
    /// WATCH_DOCKER_EVENTS.
    pub watch_events: bool,
}

/// The sources' settings, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Sources to run, each once.
    pub kinds: Vec<Kind>,
    /// TRAEFIK_API_URL, without credentials in it.
    pub traefik_url: String,
    /// TRAEFIK_API_USERNAME and the password, when both are set.
    pub traefik_auth: Option<(String, traefik::Password)>,
    /// API_TIMEOUT.
    pub timeout: Duration,
    /// POLL_INTERVAL.
    pub poll: Duration,
    /// SOURCE_DEBOUNCE.
    pub debounce: Duration,
    /// The Docker Engine.
    pub docker: DockerSettings,
    /// How labels are read (the provider name is learnt from cache-service).
    pub labels: labels::LabelConfig,
}

impl SourceArgs {
    /// The sources to run: SOURCES, else OPERATION_MODE.
    pub fn kinds(&self) -> anyhow::Result<Vec<Kind>> {
        let mut kinds = Vec::new();
        let list = self.sources.trim();
        if list.is_empty() {
            match self.operation_mode.as_deref().map(str::trim) {
                None | Some("") => {}
                Some(m) if m.eq_ignore_ascii_case("traefik") => kinds.push(Kind::Traefik),
                Some(m) if m.eq_ignore_ascii_case("direct") || m.eq_ignore_ascii_case("docker") => {
                    kinds.push(Kind::Docker);
                }
                Some(m) => bail!("OPERATION_MODE {m:?} must be traefik or direct"),
            }
            return Ok(kinds);
        }
        for s in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let k = match s.to_ascii_lowercase().as_str() {
                "traefik" => Kind::Traefik,
                "docker" | "direct" => Kind::Docker,
                _ => bail!("SOURCES entry {s:?} must be traefik or docker"),
            };
            if !kinds.contains(&k) {
                kinds.push(k);
            }
        }
        Ok(kinds)
    }

    /// Validates every setting (read at start, so a typo stops the service).
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let kinds = self.kinds()?;
        let password = trafego_common::mesh::read_secret(
            "TRAEFIK_API_PASSWORD",
            self.traefik_api_password.as_deref(),
            self.traefik_api_password_file.as_ref(),
        )?;
        let user = self
            .traefik_api_username
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty());
        let traefik_auth = match (user, password) {
            (Some(u), Some(p)) => Some((u.to_string(), traefik::Password(p))),
            (None, None) => None,
            (Some(_), None) => bail!("TRAEFIK_API_USERNAME needs TRAEFIK_API_PASSWORD (or _FILE)"),
            (None, Some(_)) => bail!("TRAEFIK_API_PASSWORD needs TRAEFIK_API_USERNAME"),
        };
        let traefik_url = self
            .traefik_api_url
            .trim()
            .trim_end_matches('/')
            .to_string();
        if kinds.contains(&Kind::Traefik) {
            let u = reqwest::Url::parse(&traefik_url)
                .with_context(|| format!("TRAEFIK_API_URL {:?}", redact_url(&traefik_url)))?;
            if !matches!(u.scheme(), "http" | "https") {
                bail!("TRAEFIK_API_URL must be http:// or https://");
            }
            if !u.username().is_empty() || u.password().is_some() {
                bail!(
                    "TRAEFIK_API_URL must not carry credentials: set TRAEFIK_API_USERNAME and TRAEFIK_API_PASSWORD"
                );
            }
        }
        if self.poll_interval < Duration::from_millis(10) {
            bail!("POLL_INTERVAL must be at least 10ms");
        }
        if self.api_timeout.is_zero() {
            bail!("API_TIMEOUT must be more than 0");
        }
        let (host, available) = match self.docker_host.as_deref().map(str::trim) {
            Some(h) if !h.is_empty() => {
                if !(h.starts_with("unix://")
                    || h.starts_with("tcp://")
                    || h.starts_with("http://"))
                {
                    bail!("DOCKER_HOST {h:?} must be unix:///path or tcp://host:port (no TLS)");
                }
                (h.to_string(), true)
            }
            _ => (
                format!("unix://{}", self.docker_socket.display()),
                self.docker_socket.exists(),
            ),
        };
        for (name, p) in [
            ("DNS_LABEL_PREFIX", &self.dns_label_prefix),
            ("TRAEFIK_LABEL_PREFIX", &self.traefik_label_prefix),
        ] {
            if p.trim().is_empty() || p.chars().any(char::is_whitespace) {
                bail!("{name} {p:?} must be a non-empty label prefix such as \"dns.\"");
            }
        }
        Ok(Settings {
            kinds,
            traefik_url,
            traefik_auth,
            timeout: self.api_timeout,
            poll: self.poll_interval,
            debounce: self.source_debounce,
            docker: DockerSettings {
                host,
                available,
                watch_events: self.watch_docker_events,
            },
            labels: labels::LabelConfig {
                dns_prefix: self.dns_label_prefix.clone(),
                traefik_prefix: self.traefik_label_prefix.clone(),
                default_manage: self.dns_default_manage,
                provider: None,
            },
        })
    }
}

/// What one source reports in `GetTrackerStatus`.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// The source name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// When it last read its source and declared what it found (ms).
    pub last_success_ms: Option<i64>,
    /// The last failure ("" after a success).
    pub last_error: String,
    /// When that failure happened (ms).
    pub last_error_ms: Option<i64>,
    /// Records the last good declaration holds.
    pub hostnames: u64,
    /// When the next full read is due (ms).
    pub next_run_ms: Option<i64>,
    /// Reads done.
    pub polls: u64,
    /// Reads or reconciles that failed.
    pub errors: u64,
    /// Events received (Docker).
    pub events: u64,
    /// Containers or routers skipped at the last read, and why.
    pub problems: Vec<String>,
}

/// The state of every running source, shared by the runners and the gRPC edge.
#[derive(Debug, Default)]
pub struct Registry {
    states: Mutex<Vec<State>>,
}

impl Registry {
    /// Adds a source; returns its index.
    fn add(&self, kind: Kind) -> usize {
        let mut s = self.lock();
        s.push(State {
            name: kind.name().to_string(),
            kind: kind.name().to_string(),
            ..Default::default()
        });
        s.len() - 1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<State>> {
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Edits the state of source `i`.
    pub fn update(&self, i: usize, f: impl FnOnce(&mut State)) {
        if let Some(s) = self.lock().get_mut(i) {
            f(s);
        }
    }

    /// A copy of every source's state.
    pub fn snapshot(&self) -> Vec<State> {
        self.lock().clone()
    }

    /// Every source's state, as `GetTrackerStatus` lists it.
    pub fn to_proto(&self) -> Vec<SourceStatus> {
        self.snapshot()
            .into_iter()
            .map(|s| SourceStatus {
                name: s.name,
                kind: s.kind,
                last_success_at: s.last_success_ms.map(timestamp_ms),
                last_error: s.last_error,
                last_error_at: s.last_error_ms.map(timestamp_ms),
                hostnames: s.hostnames,
                next_run_at: s.next_run_ms.map(timestamp_ms),
                polls: s.polls,
                errors: s.errors,
                events: s.events,
                problems: s.problems,
            })
            .collect()
    }
}

/// One configured source, its client built: spawned at each leadership term.
struct Planned {
    kind: Kind,
    index: usize,
    reader: runner::Reader,
    /// The engine whose events wake it (the `docker` source with
    /// DOCKER_WATCH_EVENTS).
    events: Option<Arc<docker::DockerConn>>,
}

/// The configured sources, their clients built once at start (so a bad
/// setting stops the service there), and the registry the gRPC edge reports
/// from. They run only while this replica leads: [`Sources::spawn`] starts
/// them for one term.
pub struct Sources {
    registry: Arc<Registry>,
    planned: Vec<Planned>,
    poll: Duration,
    debounce: Duration,
    labels: labels::LabelConfig,
}

impl Sources {
    /// Builds every configured source's client and its registry entry;
    /// nothing runs yet.
    pub fn prepare(settings: Settings) -> anyhow::Result<Self> {
        let registry = Arc::new(Registry::default());
        let mut planned = Vec::new();
        let needs_docker = settings.kinds.contains(&Kind::Docker)
            || (settings.kinds.contains(&Kind::Traefik) && settings.docker.available);
        let docker = if needs_docker {
            Some(Arc::new(docker::DockerConn::new(
                &settings.docker.host,
                settings.timeout,
            )?))
        } else {
            None
        };
        if settings.kinds.contains(&Kind::Traefik) && docker.is_none() {
            tracing::info!(
                socket = %settings.docker.host,
                "no Docker Engine configured (DOCKER_HOST unset, DOCKER_SOCKET absent): Traefik routers are declared without container label overrides"
            );
        }
        for &kind in &settings.kinds {
            let index = registry.add(kind);
            let reader = match kind {
                Kind::Traefik => runner::Reader::Traefik {
                    client: traefik::TraefikClient::new(
                        &settings.traefik_url,
                        settings.traefik_auth.clone(),
                        settings.timeout,
                    )?,
                    docker: docker.clone(),
                },
                Kind::Docker => runner::Reader::Docker {
                    docker: docker
                        .clone()
                        .context("the docker source needs a Docker Engine")?,
                },
            };
            let events = if kind == Kind::Docker && settings.docker.watch_events {
                docker.clone()
            } else {
                None
            };
            planned.push(Planned {
                kind,
                index,
                reader,
                events,
            });
        }
        Ok(Self {
            registry,
            planned,
            poll: settings.poll,
            debounce: settings.debounce,
            labels: settings.labels,
        })
    }

    /// The registry the gRPC edge reports from (kept across terms).
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Starts every source for one leadership term; each runs until
    /// `cancel` (the term's token) fires. Returns the tasks to wait for.
    pub fn spawn(
        &self,
        tracker: &Arc<Tracker>,
        clock: &SharedClock,
        cancel: &CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        for p in &self.planned {
            let wake = Arc::new(tokio::sync::Notify::new());
            if let Some(d) = &p.events {
                tasks.push(tokio::spawn(docker::watch(
                    d.clone(),
                    wake.clone(),
                    self.registry.clone(),
                    p.index,
                    cancel.clone(),
                )));
            }
            let run = runner::Runner {
                kind: p.kind,
                index: p.index,
                reader: p.reader.clone(),
                tracker: tracker.clone(),
                clock: clock.clone(),
                registry: self.registry.clone(),
                poll: self.poll,
                debounce: self.debounce,
                labels: self.labels.clone(),
                wake,
            };
            tracing::info!(
                source = p.kind.name(),
                poll = %humantime::format_duration(self.poll),
                debounce = %humantime::format_duration(self.debounce),
                "hostname source starting"
            );
            tasks.push(tokio::spawn(run.run(cancel.clone())));
        }
        tasks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        s: SourceArgs,
    }

    fn args(a: &[&str]) -> SourceArgs {
        let mut cmd = <T as clap::CommandFactory>::command();
        for id in cmd
            .get_arguments()
            .map(|a| a.get_id().clone())
            .collect::<Vec<_>>()
        {
            cmd = cmd.mut_arg(id, |a| a.env(None::<&str>));
        }
        let m = cmd
            .try_get_matches_from(std::iter::once("t").chain(a.iter().copied()))
            .expect("args");
        <T as clap::FromArgMatches>::from_arg_matches(&m)
            .expect("args")
            .s
    }

    #[test]
    fn defaults_are_trafegodns_ones() {
        let a = args(&[]);
        assert_eq!(a.poll_interval, Duration::from_secs(60));
        assert_eq!(a.source_debounce, Duration::from_secs(1));
        assert_eq!(a.dns_label_prefix, "dns.");
        assert_eq!(a.traefik_label_prefix, "traefik.");
        assert!(a.dns_default_manage && a.watch_docker_events);
        assert!(
            a.kinds().unwrap().is_empty(),
            "the gRPC API alone by default"
        );
        let a = args(&["--poll-interval", "1500", "--source-debounce", "0"]);
        assert_eq!(a.poll_interval, Duration::from_millis(1500));
        assert!(a.source_debounce.is_zero());
        let a = args(&["--poll-interval", "2m"]);
        assert_eq!(a.poll_interval, Duration::from_secs(120));
    }

    #[test]
    fn sources_and_operation_mode() {
        assert_eq!(
            args(&["--sources", "traefik, docker,traefik"])
                .kinds()
                .unwrap(),
            [Kind::Traefik, Kind::Docker]
        );
        assert_eq!(
            args(&["--operation-mode", "traefik"]).kinds().unwrap(),
            [Kind::Traefik]
        );
        assert_eq!(
            args(&["--operation-mode", "direct"]).kinds().unwrap(),
            [Kind::Docker]
        );
        assert_eq!(
            args(&["--operation-mode", "direct", "--sources", "traefik"])
                .kinds()
                .unwrap(),
            [Kind::Traefik]
        );
        assert!(args(&["--sources", "kubernetes"]).kinds().is_err());
        assert!(args(&["--operation-mode", "swarm"]).kinds().is_err());
    }

    #[test]
    fn traefik_settings_are_checked_and_the_password_never_shown() {
        let a = args(&[
            "--sources",
            "traefik",
            "--traefik-api-url",
            "http://u:p@traefik:8080/api",
        ]);
        let e = a.settings().unwrap_err().to_string();
        assert!(e.contains("credentials") && !e.contains("u:p"), "{e}");
        let a = args(&["--sources", "traefik", "--traefik-api-username", "admin"]);
        assert!(a.settings().is_err());
        let a = args(&[
            "--sources",
            "traefik",
            "--traefik-api-username",
            "admin",
            "--traefik-api-password",
            "s3cret-value",
        ]);
        let s = a.settings().unwrap();
        assert_eq!(
            s.traefik_auth,
            Some(("admin".into(), traefik::Password("s3cret-value".into())))
        );
        assert!(!format!("{a:?}").contains("s3cret-value"));
        assert!(!format!("{s:?}").contains("s3cret-value"));
        assert!(args(&["--docker-host", "ssh://x"]).settings().is_err());
        let s = args(&["--docker-host", "tcp://127.0.0.1:2375"])
            .settings()
            .unwrap();
        assert!(s.docker.available);
        assert_eq!(redact_url("http://u:p@h:1/api"), "http://h:1/api");
        assert_eq!(redact_url("http://h:1/a@b"), "http://h:1/a@b");
    }
}
