//! A fake Docker Engine API for the Docker hostname source: a real HTTP/1.1 server on a
//! unix socket in a temporary directory (and, on request, on TCP loopback, as a socket
//! proxy serves it for `DOCKER_HOST=tcp://`). It answers `/_ping`, `/version`,
//! `/containers/json` (with `all` and JSON `filters`), `/containers/{id}/json` and a
//! streaming `/events` (one JSON object per line, `filters`, `since`, `until`), with or
//! without a `/vX.Y` prefix, refusing versions outside its range as the engine does.
//! Events are shaped as Docker 29 sends them (`Type`, `Action`, `Actor`, `scope`, `time`,
//! `timeNano`, no legacy `status`/`id`/`from`, which come back for API versions before
//! 1.52 or with a switch, as from older engines). Tests start, stop and remove containers
//! (each emitting the engine's events), drop event streams, refuse connections, read
//! request counters and wait on them instead of sleeping. It keeps no real processes and
//! never touches a real Docker.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::fake_traefik::{Serving, serve_closable};

/// How many past events the engine keeps for `since`/`until` replays (moby's `eventsLimit`).
const EVENTS_KEPT: usize = 256;
/// Capacity of the live event fan-out; a subscriber that falls this far behind skips events,
/// as a slow client of the real engine does.
const FANOUT: usize = 4096;
/// Identifier of the `bridge` network, for network events and endpoint settings.
const BRIDGE_ID: &str = "6f1f2b0a4c3e5d7b9a8c6e4f2a1b3c5d7e9f0a2b4c6d8e0f1a3b5c7d9e1f3a5b";
/// Filters `GET /containers/json` accepts (moby's `acceptedPsFilterTags`).
const PS_FILTERS: [&str; 15] = [
    "ancestor",
    "before",
    "exited",
    "id",
    "isolation",
    "label",
    "name",
    "status",
    "health",
    "since",
    "volume",
    "network",
    "is-task",
    "publish",
    "expose",
];
/// The subset of [`PS_FILTERS`] the fake implements; the others are refused loudly.
const PS_FILTERS_DONE: [&str; 4] = ["id", "label", "name", "status"];
/// First API version whose events lack the legacy `status`, `id` and `from` fields.
const NO_LEGACY_FROM: [u64; 2] = [1, 52];

/// Configuration of a fake engine: what it says it is.
#[derive(Debug, Clone)]
pub struct DockerOptions {
    /// Engine version (`/version` `Version`, the `Server` header).
    pub version: String,
    /// Highest (and default) API version served, e.g. `1.52` for Docker 29.0 and 29.1.
    pub api_version: String,
    /// Lowest API version served; older prefixes are refused with 400.
    pub min_api_version: String,
    /// Always add the legacy `status`/`id`/`from` event fields, as engines before 29 did
    /// whatever the version asked.
    pub legacy_event_fields: bool,
    /// Also listen on TCP loopback (for `DOCKER_HOST=tcp://...`).
    pub tcp: bool,
    /// Emit the `network` `connect`/`disconnect` events that accompany a container's start
    /// and stop, as the engine does (a source must ignore them).
    pub network_events: bool,
}

impl Default for DockerOptions {
    fn default() -> Self {
        Self::docker_29()
    }
}

impl DockerOptions {
    /// Docker 29.1: API 1.52 (the first without legacy event fields), minimum 1.44.
    pub fn docker_29() -> Self {
        Self {
            version: "29.1.3".into(),
            api_version: "1.52".into(),
            min_api_version: "1.44".into(),
            legacy_event_fields: false,
            tcp: false,
            network_events: true,
        }
    }

    /// Docker 27.5: API 1.47, whose events still carry `status`, `id` and `from`.
    pub fn docker_27() -> Self {
        Self {
            version: "27.5.1".into(),
            api_version: "1.47".into(),
            min_api_version: "1.24".into(),
            ..Self::docker_29()
        }
    }
}

/// A container's `State` as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Paused (still counts as running).
    Paused,
    /// Restarting.
    Restarting,
    /// Stopped.
    Exited,
    /// Dead (failed removal).
    Dead,
}

impl ContainerState {
    /// The wire name (`running`, `exited`...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Restarting => "restarting",
            Self::Exited => "exited",
            Self::Dead => "dead",
        }
    }

    fn running(self) -> bool {
        matches!(self, Self::Running | Self::Paused | Self::Restarting)
    }
}

/// A container as tests seed and inspect it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeContainer {
    /// 64 lowercase hex characters; leave empty to get a random one.
    pub id: String,
    /// Name without the leading slash (shown as `/name`).
    pub name: String,
    /// Image reference, e.g. `nginx:1.27`.
    pub image: String,
    /// Labels (where `dns.*` and `traefik.*` settings live).
    pub labels: BTreeMap<String, String>,
    /// Current state.
    pub state: ContainerState,
    /// Exit code of the last run (meaningful when exited).
    pub exit_code: i64,
    /// `Command`, as shown by the list.
    pub command: String,
}

impl FakeContainer {
    /// A created (not running) container `name` from `image`, without labels.
    pub fn new(name: &str, image: &str) -> Self {
        Self {
            id: String::new(),
            name: name.to_string(),
            image: image.to_string(),
            labels: BTreeMap::new(),
            state: ContainerState::Created,
            exit_code: 0,
            command: "/docker-entrypoint.sh".to_string(),
        }
    }

    /// The container with one more label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// The container in `state`.
    pub fn in_state(mut self, state: ContainerState) -> Self {
        self.state = state;
        self
    }
}

/// An event as the engine publishes it. Tests read the log of emitted events and may
/// publish their own (an unknown action, a non-container type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeEvent {
    /// `Type`: `container`, `network`, `image`...
    pub kind: String,
    /// `Action`: `create`, `start`, `stop`, `die`, `destroy`...
    pub action: String,
    /// `Actor.ID`.
    pub actor_id: String,
    /// `Actor.Attributes`: for containers, the labels plus `name` and `image`.
    pub attributes: BTreeMap<String, String>,
    /// `scope`: `local`.
    pub scope: String,
    /// `timeNano` (and `time`, its seconds); 0 means "stamp with the engine's clock".
    pub time_nano: i64,
}

impl FakeEvent {
    /// A `local` event stamped when emitted.
    pub fn new(kind: &str, action: &str, actor_id: &str) -> Self {
        Self {
            kind: kind.to_string(),
            action: action.to_string(),
            actor_id: actor_id.to_string(),
            attributes: BTreeMap::new(),
            scope: "local".to_string(),
            time_nano: 0,
        }
    }
}

/// How open event streams end (see [`FakeDocker::drop_event_streams`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamDrop {
    /// The response ends normally (final chunk): the client sees end of stream.
    Clean,
    /// The connection breaks mid-response (no final chunk): the client sees an error.
    Abort,
}

/// How the engine refuses connections (see [`FakeDocker::set_refusing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The socket file stays but nothing listens: `connect` fails with "connection
    /// refused" (a stopped daemon); TCP connections are refused too.
    Refused,
    /// The socket file is gone too: `connect` fails with "no such file" (Docker not
    /// started yet).
    NoSocket,
}

/// Request counters, so tests can assert what a client did (one list, then a stream).
///
/// `total` counts every request; `bad_requests` and `not_found` count error answers; the
/// per-endpoint counters count requests that passed the version check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DockerStats {
    /// Every request received.
    pub total: u64,
    /// `GET`/`HEAD /_ping`.
    pub ping: u64,
    /// `GET /version`.
    pub version: u64,
    /// `GET /containers/json`.
    pub list: u64,
    /// `GET /containers/{id}/json`.
    pub inspect: u64,
    /// `GET /events` streams opened.
    pub events: u64,
    /// Event lines written, on all streams.
    pub events_sent: u64,
    /// Answers 404.
    pub not_found: u64,
    /// Answers 400 (bad filter, bad timestamp, API version out of range).
    pub bad_requests: u64,
}

/// Handle on a running fake engine. Cheap to clone; every clone controls the same server.
/// Container operations are synchronous and emit their events before they return.
#[derive(Clone)]
pub struct FakeDocker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeDocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDocker")
            .field("socket", &self.inner.socket)
            .field("tcp", &self.inner.tcp_addr)
            .finish()
    }
}

struct Inner {
    opts: DockerOptions,
    /// Holds the socket's directory (removed on drop).
    _dir: tempfile::TempDir,
    socket: PathBuf,
    tcp_addr: Option<SocketAddr>,
    legacy: AtomicBool,
    engine: Mutex<Engine>,
    events_tx: broadcast::Sender<Arc<FakeEvent>>,
    /// The current stream generation: dropping streams ends it and starts a new one.
    generation: Mutex<Arc<StreamGen>>,
    /// Open event streams.
    subscribers: watch::Sender<usize>,
    /// Pinned clock (Unix nanoseconds), `None` to follow the system clock.
    clock: Mutex<Option<i64>>,
    /// Bumped when the pinned clock moves, for streams waiting for their `until`.
    clock_moved: watch::Sender<u64>,
    stats: Mutex<DockerStats>,
    counted: watch::Sender<u64>,
    requests: Mutex<Vec<String>>,
    /// Running listeners; empty while refusing.
    serving: tokio::sync::Mutex<Vec<Serving>>,
    shutdown: CancellationToken,
}

/// Event streams opened in one generation, ended together by `drop_event_streams`.
struct StreamGen {
    token: CancellationToken,
    how: OnceLock<StreamDrop>,
}

impl StreamGen {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            token: CancellationToken::new(),
            how: OnceLock::new(),
        })
    }
}

#[derive(Debug, Clone)]
struct Stored {
    c: FakeContainer,
    seq: u64,
    created: i64,
    started: i64,
    finished: i64,
    ip: Ipv4Addr,
}

#[derive(Default)]
struct Engine {
    containers: BTreeMap<String, Stored>,
    seq: u64,
    id_state: u64,
    /// The last [`EVENTS_KEPT`] events, for replays.
    kept: VecDeque<Arc<FakeEvent>>,
    /// Every event emitted, for tests.
    emitted: Vec<Arc<FakeEvent>>,
}

impl Engine {
    /// SplitMix64 step, for container ids.
    fn next_u64(&mut self) -> u64 {
        self.id_state = self.id_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.id_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn new_id(&mut self) -> String {
        (0..4)
            .map(|_| format!("{:016x}", self.next_u64()))
            .collect()
    }

    /// Finds a container by id, name (with or without `/`) or unique id prefix.
    fn resolve(&self, key: &str) -> Option<String> {
        if self.containers.contains_key(key) {
            return Some(key.to_string());
        }
        let name = key.strip_prefix('/').unwrap_or(key);
        if let Some((id, _)) = self.containers.iter().find(|(_, s)| s.c.name == name) {
            return Some(id.clone());
        }
        let mut prefixed = self.containers.keys().filter(|id| id.starts_with(key));
        match (prefixed.next(), prefixed.next()) {
            (Some(id), None) if !key.is_empty() => Some(id.clone()),
            _ => None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn system_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

impl Inner {
    fn bump(&self, f: impl FnOnce(&mut DockerStats)) {
        f(&mut lock(&self.stats));
        self.counted.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn now(&self) -> i64 {
        lock(&self.clock).unwrap_or_else(system_nanos)
    }

    fn pinned(&self) -> bool {
        lock(&self.clock).is_some()
    }

    /// Stamps, keeps, logs and publishes one event (under the engine lock, so that a
    /// stream subscribing at the same time sees it either replayed or live, never both).
    fn emit(&self, engine: &mut Engine, mut ev: FakeEvent) {
        if ev.time_nano == 0 {
            ev.time_nano = self.now();
        }
        let ev = Arc::new(ev);
        if engine.kept.len() == EVENTS_KEPT {
            engine.kept.pop_front();
        }
        engine.kept.push_back(ev.clone());
        engine.emitted.push(ev.clone());
        let _ = self.events_tx.send(ev);
    }

    fn container_event(
        &self,
        engine: &mut Engine,
        id: &str,
        action: &str,
        extra: &[(&str, String)],
    ) {
        let Some(s) = engine.containers.get(id) else {
            return;
        };
        let mut ev = FakeEvent::new("container", action, id);
        ev.attributes = s.c.labels.clone();
        ev.attributes.insert("image".into(), s.c.image.clone());
        ev.attributes.insert("name".into(), s.c.name.clone());
        for (k, v) in extra {
            ev.attributes.insert((*k).to_string(), v.clone());
        }
        self.emit(engine, ev);
    }

    fn network_event(&self, engine: &mut Engine, id: &str, action: &str) {
        if !self.opts.network_events {
            return;
        }
        let mut ev = FakeEvent::new("network", action, BRIDGE_ID);
        ev.attributes = BTreeMap::from([
            ("container".to_string(), id.to_string()),
            ("name".to_string(), "bridge".to_string()),
            ("type".to_string(), "bridge".to_string()),
        ]);
        self.emit(engine, ev);
    }

    /// A running container stops: `kill` (with `signal`), `die`, network `disconnect`,
    /// and `stop` when it was asked to stop.
    fn stop_locked(
        &self,
        engine: &mut Engine,
        id: &str,
        signal: Option<&str>,
        exit_code: i64,
        stop_event: bool,
    ) {
        if let Some(sig) = signal {
            self.container_event(engine, id, "kill", &[("signal", sig.to_string())]);
        }
        let now = self.now();
        let exec_secs = engine
            .containers
            .get(id)
            .map_or(0, |s| now.saturating_sub(s.started) / 1_000_000_000);
        self.container_event(
            engine,
            id,
            "die",
            &[
                ("execDuration", exec_secs.to_string()),
                ("exitCode", exit_code.to_string()),
            ],
        );
        if let Some(s) = engine.containers.get_mut(id) {
            s.c.state = ContainerState::Exited;
            s.c.exit_code = exit_code;
            s.finished = now;
        }
        self.network_event(engine, id, "disconnect");
        if stop_event {
            self.container_event(engine, id, "stop", &[]);
        }
    }
}

/// Ends the stream's share of the subscriber count when its task ends, however it ends.
struct SubscriberGuard(Arc<Inner>);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.subscribers.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl FakeDocker {
    /// Creates a temporary directory, binds `docker.sock` in it (and TCP loopback if asked)
    /// and starts serving. The sockets are bound before this returns: no sleeps, no race.
    pub async fn start(opts: DockerOptions) -> std::io::Result<FakeDocker> {
        let dir = tempfile::Builder::new()
            .prefix("trafego-docker-")
            .tempdir()?;
        let socket = dir.path().join("docker.sock");
        let unix = UnixListener::bind(&socket)?;
        let tcp = if opts.tcp {
            Some(TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?)
        } else {
            None
        };
        let tcp_addr = tcp.as_ref().map(TcpListener::local_addr).transpose()?;
        let inner = Arc::new(Inner {
            legacy: AtomicBool::new(opts.legacy_event_fields),
            opts,
            _dir: dir,
            socket,
            tcp_addr,
            engine: Mutex::new(Engine {
                id_state: rand::random(),
                ..Engine::default()
            }),
            events_tx: broadcast::channel(FANOUT).0,
            generation: Mutex::new(StreamGen::new()),
            subscribers: watch::channel(0).0,
            clock: Mutex::new(None),
            clock_moved: watch::channel(0).0,
            stats: Mutex::new(DockerStats::default()),
            counted: watch::channel(0).0,
            requests: Mutex::new(Vec::new()),
            serving: tokio::sync::Mutex::new(Vec::new()),
            shutdown: CancellationToken::new(),
        });
        let mut serving = vec![serve_closable(unix, app(inner.clone()), &inner.shutdown)];
        if let Some(tcp) = tcp {
            serving.push(serve_closable(tcp, app(inner.clone()), &inner.shutdown));
        }
        *inner.serving.lock().await = serving;
        Ok(FakeDocker { inner })
    }

    /// Path of the unix socket (`DOCKER_SOCKET`).
    pub fn socket_path(&self) -> &Path {
        &self.inner.socket
    }

    /// `unix:///.../docker.sock`, for `DOCKER_HOST`.
    pub fn unix_host(&self) -> String {
        format!("unix://{}", self.inner.socket.display())
    }

    /// The TCP address, when started with `tcp`.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.inner.tcp_addr
    }

    /// `tcp://127.0.0.1:PORT`, for `DOCKER_HOST`, when started with `tcp`.
    pub fn tcp_host(&self) -> Option<String> {
        self.inner.tcp_addr.map(|a| format!("tcp://{a}"))
    }

    /// Stops serving and ends open event streams.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    // -- containers --------------------------------------------------------------------

    /// Seeds a container as-is, as if it existed before the client connected: no event.
    /// A running one counts as started now. Returns its id.
    pub fn add_container(&self, c: FakeContainer) -> String {
        let mut engine = lock(&self.inner.engine);
        self.insert_locked(&mut engine, c)
    }

    fn insert_locked(&self, engine: &mut Engine, mut c: FakeContainer) -> String {
        if c.id.is_empty() {
            c.id = engine.new_id();
        }
        engine.seq += 1;
        let now = self.inner.now();
        let host = u8::try_from(engine.seq % 250)
            .unwrap_or(0)
            .saturating_add(2);
        let third = u8::try_from((engine.seq / 250) % 250).unwrap_or(0);
        let id = c.id.clone();
        let running = c.state.running();
        engine.containers.insert(
            id.clone(),
            Stored {
                c,
                seq: engine.seq,
                created: now,
                started: if running { now } else { 0 },
                finished: 0,
                ip: Ipv4Addr::new(172, 17, third, host),
            },
        );
        id
    }

    /// `docker create`: the container exists, not running (`create` event). Returns its id.
    pub fn create_container(&self, c: FakeContainer) -> String {
        let mut engine = lock(&self.inner.engine);
        let id = self.insert_locked(&mut engine, c.in_state(ContainerState::Created));
        self.inner.container_event(&mut engine, &id, "create", &[]);
        id
    }

    /// `docker start`: network `connect`, then `start`. False if unknown or running.
    pub fn start_container(&self, key: &str) -> bool {
        let mut engine = lock(&self.inner.engine);
        let Some(id) = engine.resolve(key) else {
            return false;
        };
        let now = self.inner.now();
        match engine.containers.get_mut(&id) {
            Some(s) if !s.c.state.running() => {
                s.c.state = ContainerState::Running;
                s.started = now;
            }
            _ => return false,
        }
        self.inner.network_event(&mut engine, &id, "connect");
        self.inner.container_event(&mut engine, &id, "start", &[]);
        true
    }

    /// `docker run`: [`FakeDocker::create_container`] then [`FakeDocker::start_container`].
    pub fn run_container(&self, c: FakeContainer) -> String {
        let id = self.create_container(c);
        self.start_container(&id);
        id
    }

    /// `docker stop`: `kill` (signal 15), `die` (exit 0), network `disconnect`, `stop`.
    /// False if unknown or not running.
    pub fn stop_container(&self, key: &str) -> bool {
        let mut engine = lock(&self.inner.engine);
        match engine.resolve(key) {
            Some(id) if engine.containers[&id].c.state.running() => {
                self.inner
                    .stop_locked(&mut engine, &id, Some("15"), 0, true);
                true
            }
            _ => false,
        }
    }

    /// The process exits by itself (a crash): `die` with `exit_code`, network
    /// `disconnect`, no `stop`. False if unknown or not running.
    pub fn crash_container(&self, key: &str, exit_code: i64) -> bool {
        let mut engine = lock(&self.inner.engine);
        match engine.resolve(key) {
            Some(id) if engine.containers[&id].c.state.running() => {
                self.inner
                    .stop_locked(&mut engine, &id, None, exit_code, false);
                true
            }
            _ => false,
        }
    }

    /// `docker rm -f`: a running container is killed first (`kill` 9, `die` 137, network
    /// `disconnect`), then `destroy`. False if unknown.
    pub fn remove_container(&self, key: &str) -> bool {
        let mut engine = lock(&self.inner.engine);
        let Some(id) = engine.resolve(key) else {
            return false;
        };
        if engine.containers[&id].c.state.running() {
            self.inner
                .stop_locked(&mut engine, &id, Some("9"), 137, false);
        }
        self.inner.container_event(&mut engine, &id, "destroy", &[]);
        engine.containers.remove(&id);
        true
    }

    /// Publishes an arbitrary event (stamped now when its `time_nano` is 0).
    pub fn emit(&self, ev: FakeEvent) {
        let mut engine = lock(&self.inner.engine);
        self.inner.emit(&mut engine, ev);
    }

    /// Every container, oldest first.
    pub fn containers(&self) -> Vec<FakeContainer> {
        let engine = lock(&self.inner.engine);
        let mut all: Vec<&Stored> = engine.containers.values().collect();
        all.sort_by_key(|s| s.seq);
        all.into_iter().map(|s| s.c.clone()).collect()
    }

    /// One container by id, name or unique id prefix.
    pub fn container(&self, key: &str) -> Option<FakeContainer> {
        let engine = lock(&self.inner.engine);
        engine
            .resolve(key)
            .map(|id| engine.containers[&id].c.clone())
    }

    /// Every event emitted so far, in order.
    pub fn events(&self) -> Vec<FakeEvent> {
        lock(&self.inner.engine)
            .emitted
            .iter()
            .map(|e| (**e).clone())
            .collect()
    }

    // -- faults ------------------------------------------------------------------------

    /// Ends every open event stream as `how` says; the client must reconnect (and
    /// re-list, having missed what happened meanwhile). Streams opened later are kept.
    pub fn drop_event_streams(&self, how: StreamDrop) {
        let old = std::mem::replace(&mut *lock(&self.inner.generation), StreamGen::new());
        let _ = old.how.set(how);
        old.token.cancel();
    }

    /// Refuses connections (`Some`), ending open event streams as a dying daemon would
    /// (abruptly), or accepts them again (`None`) on the same socket path and TCP port.
    /// The sockets are closed (or open) when this returns; containers and events are kept.
    pub async fn set_refusing(&self, how: Option<Refusal>) -> std::io::Result<()> {
        let mut serving = self.inner.serving.lock().await;
        match how {
            Some(refusal) => {
                self.drop_event_streams(StreamDrop::Abort);
                for s in serving.drain(..) {
                    s.close().await;
                }
                if refusal == Refusal::NoSocket {
                    remove_socket_file(&self.inner.socket)?;
                }
            }
            None if serving.is_empty() => {
                remove_socket_file(&self.inner.socket)?;
                let unix = UnixListener::bind(&self.inner.socket)?;
                serving.push(serve_closable(
                    unix,
                    app(self.inner.clone()),
                    &self.inner.shutdown,
                ));
                if let Some(addr) = self.inner.tcp_addr {
                    let tcp = TcpListener::bind(addr).await?;
                    serving.push(serve_closable(
                        tcp,
                        app(self.inner.clone()),
                        &self.inner.shutdown,
                    ));
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Adds (or stops adding) the legacy `status`/`id`/`from` fields to every event,
    /// whatever API version the client asked.
    pub fn set_legacy_event_fields(&self, on: bool) {
        self.inner.legacy.store(on, Ordering::SeqCst);
    }

    // -- clock -------------------------------------------------------------------------

    /// The engine's time, Unix nanoseconds: the system clock unless pinned.
    pub fn now_nanos(&self) -> i64 {
        self.inner.now()
    }

    /// Pins the engine's clock (events, `Created`, `Status`, `until`) at `unix_nanos`.
    pub fn pin_clock(&self, unix_nanos: i64) {
        *lock(&self.inner.clock) = Some(unix_nanos);
        self.inner
            .clock_moved
            .send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Moves the clock forward by `d` (pinning it first if it follows the system clock).
    pub fn advance_clock(&self, d: Duration) {
        let step = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let now = self.inner.now();
        self.pin_clock(now.saturating_add(step));
    }

    // -- counters ----------------------------------------------------------------------

    /// A snapshot of the request counters.
    pub fn stats(&self) -> DockerStats {
        lock(&self.inner.stats).clone()
    }

    /// Zeroes the request counters and the request log.
    pub fn reset_stats(&self) {
        *lock(&self.inner.stats) = DockerStats::default();
        lock(&self.inner.requests).clear();
    }

    /// Every request received, as `METHOD /path?query`, in order (which API version prefix
    /// a client uses, which filters it sends).
    pub fn requests(&self) -> Vec<String> {
        lock(&self.inner.requests).clone()
    }

    /// Waits until the request counters satisfy `pred`, without polling on a timer.
    pub async fn wait_stats(&self, pred: impl Fn(&DockerStats) -> bool) {
        let mut rx = self.inner.counted.subscribe();
        loop {
            if pred(&self.stats()) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Number of event streams open now.
    pub fn event_subscribers(&self) -> usize {
        *self.inner.subscribers.borrow()
    }

    /// Waits until exactly `n` event streams are open (e.g. 1: the client is listening, so
    /// the next container start reaches it; 0: a dropped stream is gone).
    pub async fn wait_event_subscribers(&self, n: usize) {
        let mut rx = self.inner.subscribers.subscribe();
        let _ = rx.wait_for(|&open| open == n).await;
    }
}

fn remove_socket_file(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------
// Formatting helpers
// ---------------------------------------------------------------------------------------

/// Go's `time.RFC3339Nano` in UTC (fraction without trailing zeros), the zero time for 0.
fn rfc3339(unix_nanos: i64) -> String {
    if unix_nanos == 0 {
        return "0001-01-01T00:00:00Z".to_string();
    }
    let secs = unix_nanos.div_euclid(1_000_000_000);
    let frac = unix_nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    );
    if frac != 0 {
        let digits = format!("{frac:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

/// Docker's `units.HumanDuration`, for `Status` ("Up 5 minutes").
fn human_duration(nanos: i64) -> String {
    let secs = nanos.max(0) / 1_000_000_000;
    let minutes = secs / 60;
    // Go rounds hours half up: int(d.Hours() + 0.5).
    let hours = (secs + 1800) / 3600;
    match () {
        () if secs < 1 => "Less than a second".to_string(),
        () if secs == 1 => "1 second".to_string(),
        () if secs < 60 => format!("{secs} seconds"),
        () if minutes == 1 => "About a minute".to_string(),
        () if minutes < 60 => format!("{minutes} minutes"),
        () if hours == 1 => "About an hour".to_string(),
        () if hours < 48 => format!("{hours} hours"),
        () if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        () if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        () if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        () => format!("{} years", secs / 3600 / 24 / 365),
    }
}

/// The list's `Status` text for a container.
fn status_text(s: &Stored, now: i64) -> String {
    match s.c.state {
        ContainerState::Created => "Created".to_string(),
        ContainerState::Running => format!("Up {}", human_duration(now - s.started)),
        ContainerState::Paused => format!("Up {} (Paused)", human_duration(now - s.started)),
        ContainerState::Restarting => format!(
            "Restarting ({}) {} ago",
            s.c.exit_code,
            human_duration(now - s.finished)
        ),
        ContainerState::Exited => format!(
            "Exited ({}) {} ago",
            s.c.exit_code,
            human_duration(now - s.finished)
        ),
        ContainerState::Dead => "Dead".to_string(),
    }
}

/// A stable `sha256:` image id derived from the reference (four FNV-1a passes).
fn image_id(image: &str) -> String {
    let hex: String = (0u64..4)
        .map(|seed| {
            let h = image.bytes().fold(0xcbf2_9ce4_8422_2325 ^ seed, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
            format!("{h:016x}")
        })
        .collect();
    format!("sha256:{hex}")
}

fn endpoint(s: &Stored) -> Value {
    let up = s.c.state.running();
    let octets = s.ip.octets();
    json!({
        "IPAMConfig": null,
        "Links": null,
        "Aliases": null,
        "MacAddress": if up { format!("02:42:ac:11:{:02x}:{:02x}", octets[2], octets[3]) } else { String::new() },
        "DriverOpts": null,
        "GwPriority": 0,
        "NetworkID": BRIDGE_ID,
        "EndpointID": if up { format!("{:0>64}", &s.c.id[..s.c.id.len().min(16)]) } else { String::new() },
        "Gateway": if up { "172.17.0.1" } else { "" },
        "IPAddress": if up { s.ip.to_string() } else { String::new() },
        "IPPrefixLen": if up { 16 } else { 0 },
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DNSNames": null,
    })
}

/// One entry of `GET /containers/json` (moby's `container.Summary`).
fn summary(s: &Stored, now: i64) -> Value {
    json!({
        "Id": s.c.id,
        "Names": [format!("/{}", s.c.name)],
        "Image": s.c.image,
        "ImageID": image_id(&s.c.image),
        "Command": s.c.command,
        "Created": s.created.div_euclid(1_000_000_000),
        "Ports": [],
        "Labels": s.c.labels,
        "State": s.c.state.as_str(),
        "Status": status_text(s, now),
        "HostConfig": { "NetworkMode": "bridge" },
        "NetworkSettings": { "Networks": { "bridge": endpoint(s) } },
        "Mounts": [],
    })
}

/// `GET /containers/{id}/json` (moby's `container.InspectResponse`, the fields a client
/// may read).
fn inspect(s: &Stored) -> Value {
    let st = s.c.state;
    json!({
        "Id": s.c.id,
        "Created": rfc3339(s.created),
        "Path": s.c.command,
        "Args": [],
        "State": {
            "Status": st.as_str(),
            "Running": st.running(),
            "Paused": st == ContainerState::Paused,
            "Restarting": st == ContainerState::Restarting,
            "OOMKilled": false,
            "Dead": st == ContainerState::Dead,
            "Pid": if st.running() { 1000 + s.seq } else { 0 },
            "ExitCode": s.c.exit_code,
            "Error": "",
            "StartedAt": rfc3339(s.started),
            "FinishedAt": rfc3339(s.finished),
        },
        "Image": image_id(&s.c.image),
        "ResolvConfPath": format!("/var/lib/docker/containers/{}/resolv.conf", s.c.id),
        "HostnamePath": format!("/var/lib/docker/containers/{}/hostname", s.c.id),
        "HostsPath": format!("/var/lib/docker/containers/{}/hosts", s.c.id),
        "LogPath": format!("/var/lib/docker/containers/{0}/{0}-json.log", s.c.id),
        "Name": format!("/{}", s.c.name),
        "RestartCount": 0,
        "Driver": "overlayfs",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "docker-default",
        "ExecIDs": null,
        "HostConfig": { "NetworkMode": "bridge", "RestartPolicy": { "Name": "no", "MaximumRetryCount": 0 } },
        "Mounts": [],
        "Config": {
            "Hostname": &s.c.id[..s.c.id.len().min(12)],
            "Domainname": "",
            "User": "",
            "AttachStdin": false,
            "AttachStdout": false,
            "AttachStderr": false,
            "Tty": false,
            "OpenStdin": false,
            "StdinOnce": false,
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": [s.c.command],
            "Image": s.c.image,
            "Volumes": null,
            "WorkingDir": "",
            "Entrypoint": null,
            "OnBuild": null,
            "Labels": s.c.labels,
        },
        "NetworkSettings": {
            "SandboxID": "",
            "SandboxKey": "",
            "Ports": {},
            "Networks": { "bridge": endpoint(s) },
        },
    })
}

/// An event line, in the engine's field order; `legacy` adds the pre-1.52 fields first,
/// as engines before 29 wrote them.
#[derive(Serialize)]
struct EventOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    #[serde(rename = "Type")]
    kind: &'a str,
    #[serde(rename = "Action")]
    action: &'a str,
    #[serde(rename = "Actor")]
    actor: ActorOut<'a>,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
    #[serde(skip_serializing_if = "is_zero")]
    time: i64,
    #[serde(rename = "timeNano", skip_serializing_if = "is_zero")]
    time_nano: i64,
}

#[derive(Serialize)]
struct ActorOut<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "Attributes")]
    attributes: &'a BTreeMap<String, String>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn event_line(ev: &FakeEvent, legacy: bool) -> Bytes {
    let with_legacy = legacy && matches!(ev.kind.as_str(), "container" | "image");
    let out = EventOut {
        status: with_legacy.then_some(ev.action.as_str()),
        id: with_legacy.then_some(ev.actor_id.as_str()),
        from: (with_legacy && ev.kind == "container")
            .then(|| ev.attributes.get("image").map_or("", String::as_str)),
        kind: &ev.kind,
        action: &ev.action,
        actor: ActorOut {
            id: &ev.actor_id,
            attributes: &ev.attributes,
        },
        scope: &ev.scope,
        time: ev.time_nano.div_euclid(1_000_000_000),
        time_nano: ev.time_nano,
    };
    let mut bytes = serde_json::to_vec(&out).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

// ---------------------------------------------------------------------------------------
// Filters (moby's `filters.Args`)
// ---------------------------------------------------------------------------------------

type Filters = BTreeMap<String, BTreeSet<String>>;

/// `filters` in either encoding the engine accepts: `{"label":{"a=b":true}}` (today's) or
/// `{"label":["a=b"]}` (the older one, which bollard sends).
fn parse_filters(raw: &str) -> Result<Filters, String> {
    if raw.is_empty() {
        return Ok(Filters::new());
    }
    if let Ok(m) = serde_json::from_str::<BTreeMap<String, BTreeMap<String, bool>>>(raw) {
        return Ok(m
            .into_iter()
            .map(|(k, vs)| {
                (
                    k,
                    vs.into_iter()
                        .filter(|(_, on)| *on)
                        .map(|(v, _)| v)
                        .collect(),
                )
            })
            .collect());
    }
    serde_json::from_str::<BTreeMap<String, Vec<String>>>(raw)
        .map(|m| {
            m.into_iter()
                .map(|(k, vs)| (k, vs.into_iter().collect()))
                .collect()
        })
        .map_err(|_| "invalid filter".to_string())
}

/// `ExactMatch`: true when the key is absent, else the value must be listed.
fn exact(f: &Filters, key: &str, source: &str) -> bool {
    f.get(key)
        .is_none_or(|vs| vs.is_empty() || vs.contains(source))
}

/// `FuzzyMatch`: [`exact`], or a listed value is a prefix of `source`.
fn fuzzy(f: &Filters, key: &str, source: &str) -> bool {
    exact(f, key, source)
        || f.get(key)
            .is_some_and(|vs| vs.iter().any(|p| source.starts_with(p.as_str())))
}

/// `Match` with plain-text patterns: [`exact`], or a listed value occurs in `source`
/// (the engine reads the value as an unanchored regular expression; the fake does not
/// interpret metacharacters).
fn contains(f: &Filters, key: &str, source: &str) -> bool {
    exact(f, key, source)
        || f.get(key)
            .is_some_and(|vs| vs.iter().any(|p| source.contains(p.as_str())))
}

/// `MatchKVList`: every `key` or `key=value` listed must hold in `labels`.
fn labels_match(f: &Filters, key: &str, labels: &BTreeMap<String, String>) -> bool {
    let Some(wanted) = f.get(key).filter(|vs| !vs.is_empty()) else {
        return true;
    };
    wanted.iter().all(|w| match w.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
        None => labels.contains_key(w.as_str()),
    })
}

/// An image reference without its tag (`nginx:1.27` -> `nginx`).
fn strip_tag(image: &str) -> &str {
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// moby's `events.Filter.Include`.
fn event_included(f: &Filters, ev: &FakeEvent) -> bool {
    if f.is_empty() {
        return true;
    }
    let fuzzy_actions = ["health_status", "exec_create", "exec_start"];
    let action_ok = if f
        .get("event")
        .is_some_and(|vs| vs.iter().any(|v| fuzzy_actions.contains(&v.as_str())))
    {
        fuzzy(f, "event", &ev.action)
    } else {
        exact(f, "event", &ev.action)
    };
    let name = ev.attributes.get("name").map_or("", String::as_str);
    let names_ok = [
        "daemon",
        "container",
        "plugin",
        "volume",
        "network",
        "node",
        "service",
        "secret",
        "config",
    ]
    .iter()
    .all(|k| fuzzy(f, k, &ev.actor_id) || fuzzy(f, k, name));
    let image_attr = if ev.kind == "image" { "name" } else { "image" };
    let image = ev.attributes.get(image_attr).map_or("", String::as_str);
    let image_ok = exact(f, "image", &ev.actor_id)
        || exact(f, "image", image)
        || exact(f, "image", strip_tag(&ev.actor_id))
        || exact(f, "image", strip_tag(image));
    action_ok
        && exact(f, "type", &ev.kind)
        && exact(f, "scope", &ev.scope)
        && names_ok
        && image_ok
        && labels_match(f, "label", &ev.attributes)
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

type Shared = State<Arc<Inner>>;

fn app(inner: Arc<Inner>) -> Router {
    Router::new().fallback(dispatch).with_state(inner)
}

/// An API version as numbers, compared part by part like moby's `versions.compare`.
fn version_parts(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

fn version_less(a: &[u64], b: &[u64]) -> bool {
    let n = a.len().max(b.len());
    let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
    (0..n)
        .map(|i| at(a, i).cmp(&at(b, i)))
        .find(|o| o.is_ne())
        .is_some_and(|o| o.is_lt())
}

/// Splits `/v1.52/containers/json` into (`Some("1.52")`, `/containers/json`).
fn split_version(path: &str) -> (Option<&str>, &str) {
    if let Some(rest) = path.strip_prefix("/v") {
        let end = rest.find('/').unwrap_or(rest.len());
        let v = &rest[..end];
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            return (Some(v), &rest[end..]);
        }
    }
    (None, path)
}

/// A path segment with its `%XX` escapes decoded (the engine matches decoded paths, so
/// `/containers/%2Fweb/json` names `/web`).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The engine's error answer: `{"message": ...}`.
fn error(status: StatusCode, message: &str) -> Response {
    let mut bytes = serde_json::to_vec(&json!({ "message": message })).unwrap_or_default();
    bytes.push(b'\n');
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn json_ok(v: &Value) -> Response {
    let mut bytes = serde_json::to_vec(v).unwrap_or_default();
    bytes.push(b'\n');
    let mut resp = Response::new(Body::from(bytes));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The first value of `key` in the query (Go's `r.Form.Get`), "" when absent.
fn form<'a>(q: &'a [(String, String)], key: &str) -> &'a str {
    q.iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

/// moby's `httputils.BoolValue`.
fn bool_value(v: &str) -> bool {
    !matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "" | "0" | "no" | "false" | "none"
    )
}

/// moby's `timestamp.ParseTimestamps`: `seconds[.fraction]`, as Unix nanoseconds.
fn parse_timestamp(v: &str) -> Result<Option<i64>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    let (s, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = s.parse().map_err(|_| format!("invalid timestamp {v:?}"))?;
    let mut nanos = 0i64;
    if !frac.is_empty() {
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("invalid timestamp {v:?}"));
        }
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        nanos = digits.parse().unwrap_or(0);
    }
    Ok(Some(
        secs.saturating_mul(1_000_000_000).saturating_add(nanos),
    ))
}

/// Headers every answer carries (moby's version and experimental middlewares).
fn common_headers(inner: &Inner, h: &mut HeaderMap) {
    let pairs = [
        ("api-version", inner.opts.api_version.clone()),
        ("docker-experimental", "false".to_string()),
        ("ostype", "linux".to_string()),
        ("server", format!("Docker/{} (linux)", inner.opts.version)),
    ];
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
}

async fn dispatch(State(inner): Shared, req: Request) -> Response {
    inner.bump(|s| s.total += 1);
    let (parts, _body) = req.into_parts();
    lock(&inner.requests).push(format!(
        "{} {}",
        parts.method,
        parts
            .uri
            .path_and_query()
            .map_or(parts.uri.path(), |p| p.as_str())
    ));
    let mut resp = route(&inner, &parts);
    match resp.status() {
        StatusCode::NOT_FOUND => inner.bump(|s| s.not_found += 1),
        StatusCode::BAD_REQUEST => inner.bump(|s| s.bad_requests += 1),
        _ => {}
    }
    common_headers(&inner, resp.headers_mut());
    resp
}

fn route(inner: &Arc<Inner>, req: &Parts) -> Response {
    let (version, path) = split_version(req.uri.path());
    let api = match version {
        None => inner.opts.api_version.clone(),
        Some(v) => {
            let asked = version_parts(v);
            if version_less(&asked, &version_parts(&inner.opts.min_api_version)) {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "client version {v} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
                        inner.opts.min_api_version
                    ),
                );
            }
            if version_less(&version_parts(&inner.opts.api_version), &asked) {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "client version {v} is too new. Maximum supported API version is {}",
                        inner.opts.api_version
                    ),
                );
            }
            v.to_string()
        }
    };
    let q = match Query::<Vec<(String, String)>>::try_from_uri(&req.uri) {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let get = matches!(req.method, Method::GET | Method::HEAD);
    match (get, segments.as_slice()) {
        (true, ["_ping"]) => ping(inner, req.method == Method::HEAD),
        (true, ["version"]) => {
            inner.bump(|s| s.version += 1);
            json_ok(&version_body(inner))
        }
        (true, ["containers", "json"]) => {
            inner.bump(|s| s.list += 1);
            list(inner, &q)
        }
        (true, ["containers", key, "json"]) => {
            inner.bump(|s| s.inspect += 1);
            let key = percent_decode(key);
            let key = key.as_str();
            let engine = lock(&inner.engine);
            match engine.resolve(key) {
                Some(id) => json_ok(&inspect(&engine.containers[&id])),
                None => error(StatusCode::NOT_FOUND, &format!("No such container: {key}")),
            }
        }
        (true, ["events"]) => {
            inner.bump(|s| s.events += 1);
            events(inner, &q, &api, &req.headers)
        }
        _ => error(StatusCode::NOT_FOUND, "page not found"),
    }
}

fn ping(inner: &Inner, head: bool) -> Response {
    inner.bump(|s| s.ping += 1);
    let mut resp = Response::new(if head {
        Body::empty()
    } else {
        Body::from("OK")
    });
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert("builder-version", HeaderValue::from_static("2"));
    h.insert("swarm", HeaderValue::from_static("inactive"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn version_body(inner: &Inner) -> Value {
    let o = &inner.opts;
    json!({
        "Platform": { "Name": "Docker Engine - Community" },
        "Version": o.version,
        "ApiVersion": o.api_version,
        "MinAPIVersion": o.min_api_version,
        "Os": "linux",
        "Arch": "amd64",
        "Components": [{
            "Name": "Engine",
            "Version": o.version,
            "Details": {
                "ApiVersion": o.api_version,
                "Arch": "amd64",
                "BuildTime": "2025-12-12T14:49:49.000000000+00:00",
                "Experimental": "false",
                "GitCommit": "fbf3ed2",
                "GoVersion": "go1.25.5",
                "KernelVersion": "6.8.0-fake",
                "MinAPIVersion": o.min_api_version,
                "Os": "linux",
            }
        }],
        "GitCommit": "fbf3ed2",
        "GoVersion": "go1.25.5",
        "KernelVersion": "6.8.0-fake",
        "BuildTime": "2025-12-12T14:49:49.000000000+00:00",
    })
}

fn list(inner: &Inner, q: &[(String, String)]) -> Response {
    let filters = match parse_filters(form(q, "filters")) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    for key in filters.keys() {
        if !PS_FILTERS.contains(&key.as_str()) {
            return error(StatusCode::BAD_REQUEST, &format!("invalid filter '{key}'"));
        }
        if !PS_FILTERS_DONE.contains(&key.as_str()) {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("filter '{key}' is not implemented by the fake Docker engine"),
            );
        }
    }
    let states = [
        "created",
        "restarting",
        "running",
        "removing",
        "paused",
        "exited",
        "dead",
    ];
    let statuses = filters.get("status");
    if let Some(bad) = statuses
        .into_iter()
        .flatten()
        .find(|s| !states.contains(&s.as_str()))
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("invalid filter 'status={bad}'"),
        );
    }
    // `limit` lists the newest containers, stopped ones included, as `all` does.
    let limit = form(q, "limit").parse::<usize>().unwrap_or(0);
    let all = bool_value(form(q, "all")) || statuses.is_some() || limit > 0;
    let now = inner.now();
    let engine = lock(&inner.engine);
    let mut hits: Vec<&Stored> = engine
        .containers
        .values()
        .filter(|s| all || s.c.state.running())
        .filter(|s| {
            contains(&filters, "name", &format!("/{}", s.c.name))
                || contains(&filters, "name", &s.c.name)
        })
        .filter(|s| contains(&filters, "id", &s.c.id))
        .filter(|s| labels_match(&filters, "label", &s.c.labels))
        .filter(|s| exact(&filters, "status", s.c.state.as_str()))
        .collect();
    // Newest first, as the engine lists.
    hits.sort_by_key(|s| std::cmp::Reverse(s.seq));
    if limit > 0 {
        hits.truncate(limit);
    }
    json_ok(&Value::Array(
        hits.into_iter().map(|s| summary(s, now)).collect(),
    ))
}

fn events(inner: &Arc<Inner>, q: &[(String, String)], api: &str, headers: &HeaderMap) -> Response {
    let since = match parse_timestamp(form(q, "since")) {
        Ok(t) => t,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("invalid value for 'since': {e}"),
            );
        }
    };
    let until = match parse_timestamp(form(q, "until")) {
        Ok(t) => t,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("invalid value for 'until': {e}"),
            );
        }
    };
    if let (Some(s), Some(u)) = (since, until)
        && u < s
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!(
                "`since` time ({}) cannot be after `until` time ({})",
                form(q, "since"),
                form(q, "until")
            ),
        );
    }
    let filters = match parse_filters(form(q, "filters")) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let legacy =
        inner.legacy.load(Ordering::SeqCst) || version_less(&version_parts(api), &NO_LEGACY_FROM);
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // Docker 29.1 answers `application/json` unless the client asks for a JSON-lines type.
    let content_type = ["application/x-ndjson", "application/jsonl"]
        .into_iter()
        .find(|t| accept.contains(t))
        .unwrap_or("application/json");

    // Replay and subscription under one lock: no event is missed or sent twice.
    let (replay, rx) = {
        let engine = lock(&inner.engine);
        let replay: Vec<Arc<FakeEvent>> = if since.is_none() && until.is_none() {
            Vec::new()
        } else {
            let from = since.unwrap_or(0);
            engine
                .kept
                .iter()
                .filter(|e| e.time_nano >= from)
                .filter(|e| until.is_none_or(|u| e.time_nano <= u))
                .filter(|e| event_included(&filters, e))
                .cloned()
                .collect()
        };
        (replay, inner.events_tx.subscribe())
    };
    let only_past = until.is_some_and(|u| u < inner.now());
    let generation = lock(&inner.generation).clone();
    inner.subscribers.send_modify(|n| *n += 1);
    let guard = SubscriberGuard(inner.clone());
    let (tx, body_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let task = StreamTask {
        inner: inner.clone(),
        filters,
        legacy,
        until,
        tx,
    };
    tokio::spawn(task.run(guard, replay, rx, generation, only_past));

    let mut resp = Response::new(Body::from_stream(ReceiverStream::new(body_rx)));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// One open `/events` stream: writes replayed then live events until the client goes,
/// `until` passes, the stream is dropped or the engine shuts down.
struct StreamTask {
    inner: Arc<Inner>,
    filters: Filters,
    legacy: bool,
    until: Option<i64>,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl StreamTask {
    async fn send(&self, ev: &FakeEvent) -> bool {
        let ok = self.tx.send(Ok(event_line(ev, self.legacy))).await.is_ok();
        if ok {
            self.inner.bump(|s| s.events_sent += 1);
        }
        ok
    }

    /// Resolves once the engine's clock has reached `until` (never without one).
    async fn until_reached(&self, clock: &mut watch::Receiver<u64>) {
        let Some(until) = self.until else {
            return std::future::pending().await;
        };
        loop {
            let now = self.inner.now();
            if now >= until {
                return;
            }
            let wait = Duration::from_nanos(u64::try_from(until - now).unwrap_or(0));
            let pinned = self.inner.pinned();
            tokio::select! {
                changed = clock.changed() => {
                    if changed.is_err() {
                        return std::future::pending().await;
                    }
                }
                () = tokio::time::sleep(wait), if !pinned => {}
            }
        }
    }

    async fn run(
        self,
        _guard: SubscriberGuard,
        replay: Vec<Arc<FakeEvent>>,
        mut rx: broadcast::Receiver<Arc<FakeEvent>>,
        generation: Arc<StreamGen>,
        only_past: bool,
    ) {
        for ev in &replay {
            if !self.send(ev).await {
                return;
            }
        }
        if only_past {
            return;
        }
        let mut clock = self.inner.clock_moved.subscribe();
        loop {
            tokio::select! {
                () = generation.token.cancelled() => {
                    if generation.how.get() == Some(&StreamDrop::Abort) {
                        let _ = self.tx.send(Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionAborted,
                            "fake docker dropped the event stream",
                        ))).await;
                    }
                    return;
                }
                () = self.inner.shutdown.cancelled() => return,
                () = self.tx.closed() => return,
                () = self.until_reached(&mut clock) => return,
                got = rx.recv() => match got {
                    Ok(ev) => {
                        let in_time = self.until.is_none_or(|u| ev.time_nano <= u);
                        if in_time && event_included(&self.filters, &ev) && !self.send(&ev).await {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_like_go() {
        assert_eq!(rfc3339(0), "0001-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_600_000_000_000), "2025-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400_120_000_000), "2000-02-29T00:00:00.12Z");
        assert_eq!(
            rfc3339(1_709_164_799_999_999_999),
            "2024-02-28T23:59:59.999999999Z"
        );
    }

    #[test]
    fn human_durations_like_docker_units() {
        let s = 1_000_000_000;
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(s), "1 second");
        assert_eq!(human_duration(45 * s), "45 seconds");
        assert_eq!(human_duration(90 * s), "About a minute");
        assert_eq!(human_duration(5 * 60 * s), "5 minutes");
        assert_eq!(human_duration(3600 * s), "About an hour");
        assert_eq!(human_duration(5 * 3600 * s), "5 hours");
        assert_eq!(human_duration(3 * 86_400 * s), "3 days");
    }

    #[test]
    fn parses_both_filter_encodings_and_timestamps() {
        let new = parse_filters(r#"{"label":{"dns.hostname":true,"off":false}}"#).expect("new");
        let old = parse_filters(r#"{"label":["dns.hostname"]}"#).expect("old");
        assert_eq!(new, old);
        assert!(parse_filters("[1]").is_err());
        assert_eq!(parse_timestamp("12.5"), Ok(Some(12_500_000_000)));
        assert_eq!(parse_timestamp("12"), Ok(Some(12_000_000_000)));
        assert_eq!(parse_timestamp(""), Ok(None));
        assert!(parse_timestamp("1h").is_err());
        assert!(version_less(&version_parts("1.47"), &version_parts("1.52")));
        assert!(!version_less(
            &version_parts("1.52"),
            &version_parts("1.52")
        ));
        assert_eq!(split_version("/v1.52/events"), (Some("1.52"), "/events"));
        assert_eq!(split_version("/version"), (None, "/version"));
    }
}
