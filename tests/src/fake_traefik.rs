//! A fake Traefik API for the Traefik hostname source: a real HTTP server on loopback that
//! answers `/api/http/routers`, `/api/tcp/routers` (paged with `page`/`per_page` and the
//! `X-Next-Page` header, exactly as Traefik's API handler pages), `/api/rawdata` (unpaged
//! maps keyed by `name@provider`) and `/api/version`, with JSON shaped as Traefik v2 or v3
//! answers. Tests seed routers (any rule string), change and remove them at runtime, and
//! inject the failures a source must survive: connection refused, a 503 from a proxy in
//! front, 401 (optional basic auth, or forced), latency and bodies that are not JSON.
//! Request counters let tests assert how many pages a client read. It never parses rules:
//! what a rule means is the client's business.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::serve::Listener;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

/// Traefik's default `per_page` for every list endpoint.
pub const DEFAULT_PER_PAGE: usize = 100;
/// Priority Traefik gives `api@internal` (`math.MaxInt64 - 1`).
const API_PRIORITY: i64 = i64::MAX - 1;
/// Priority Traefik gives `dashboard@internal` (`math.MaxInt64 - 2`).
const DASHBOARD_PRIORITY: i64 = i64::MAX - 2;
/// `startDate` reported by `/api/version` (the fake does not track time).
const START_DATE: &str = "2025-01-01T00:00:00Z";
/// What the garbage switch answers instead of JSON: a body cut short, as from a proxy that
/// lost the upstream mid-answer.
const GARBAGE: &str = "[{\"entryPoints\":[\"web\"],\"name\":\"cut-sho";

/// Which major version of Traefik the fake imitates; the JSON differs in a few fields
/// (v3 adds `priorityStr`, `observability` and `ruleSyntax` on internal routers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraefikFlavor {
    /// Traefik v2.x.
    V2,
    /// Traefik v3.x.
    V3,
}

/// Configuration of a fake Traefik: what it is and who it lets in.
#[derive(Debug, Clone)]
pub struct TraefikOptions {
    /// Basic-auth user and password; `None` serves without authentication (Traefik's
    /// `api.insecure`), `Some` refuses other requests with 401 like a `basicAuth` middleware.
    pub basic_auth: Option<(String, String)>,
    /// JSON shape to imitate.
    pub flavor: TraefikFlavor,
    /// Version reported by `/api/version`.
    pub version: String,
    /// Codename reported by `/api/version`.
    pub codename: String,
    /// Seed `api@internal` and `dashboard@internal`, as a Traefik with its dashboard enabled
    /// has: a source must skip them (provider `internal`, no host in the rule).
    pub internal_routers: bool,
}

impl Default for TraefikOptions {
    fn default() -> Self {
        Self::v3()
    }
}

impl TraefikOptions {
    /// A Traefik v3.3 without authentication and with its two internal routers.
    pub fn v3() -> Self {
        Self {
            basic_auth: None,
            flavor: TraefikFlavor::V3,
            version: "3.3.4".into(),
            codename: "saintnectaire".into(),
            internal_routers: true,
        }
    }

    /// A Traefik v2.11 without authentication and with its two internal routers.
    pub fn v2() -> Self {
        Self {
            flavor: TraefikFlavor::V2,
            version: "2.11.20".into(),
            codename: "mimolette".into(),
            ..Self::v3()
        }
    }

    /// The same options with basic auth required.
    pub fn with_basic_auth(mut self, user: &str, password: &str) -> Self {
        self.basic_auth = Some((user.to_string(), password.to_string()));
        self
    }
}

/// HTTP routers (`/api/http/routers`) or TCP routers (`/api/tcp/routers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouterKind {
    /// An HTTP router (rules with `Host`, `HostRegexp`, `PathPrefix`...).
    Http,
    /// A TCP router (rules with `HostSNI`, `HostSNIRegexp`, `ClientIP`).
    Tcp,
}

/// A router's `status` as Traefik reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterStatus {
    /// Serving.
    Enabled,
    /// Not serving (a critical error, e.g. its service does not exist).
    Disabled,
    /// Serving with a non-critical error (e.g. one unknown entry point).
    Warning,
}

impl RouterStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Disabled => "disabled",
            Self::Warning => "warning",
        }
    }
}

/// One `tls.domains` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsDomain {
    /// Main name of the certificate.
    pub main: String,
    /// Other names of the certificate.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sans: Vec<String>,
}

/// A router's `tls` section. Its presence alone means "TLS on" (`"tls": {}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouterTls {
    /// `certResolver`.
    pub cert_resolver: Option<String>,
    /// `options`; Traefik shows `default` for an HTTP router that names none.
    pub options: Option<String>,
    /// `domains`: extra certificate names, which some tools read as hostnames too.
    pub domains: Vec<TlsDomain>,
    /// `passthrough` (TCP routers only; always shown for them).
    pub passthrough: bool,
}

/// A router as the fake stores it. Tests seed these; the API shows them as Traefik would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRouter {
    /// Name without provider, e.g. `web` (shown as `web@docker`).
    pub name: String,
    /// Provider, e.g. `docker`, `file`, `internal`.
    pub provider: String,
    /// The rule, any string (Traefik's are Go-like expressions with backticks).
    pub rule: String,
    /// Service name as configured (`web`, or qualified `api@internal`).
    pub service: String,
    /// `entryPoints`.
    pub entry_points: Vec<String>,
    /// `middlewares`.
    pub middlewares: Vec<String>,
    /// `status`.
    pub status: RouterStatus,
    /// `priority`; 0 (the default) is omitted, as Go's `omitempty` does.
    pub priority: i64,
    /// `tls`, when the router terminates (or passes through) TLS.
    pub tls: Option<RouterTls>,
    /// `error`: why a router is disabled or warning.
    pub errors: Vec<String>,
    /// `ruleSyntax` (v3 only; `v2` or `v3` on routers that set it).
    pub rule_syntax: Option<String>,
}

impl FakeRouter {
    /// An enabled router `name@provider` on entry point `web` whose service is `name`: what
    /// the Docker provider makes of a container's `traefik.http.routers.<name>.rule` label.
    pub fn new(name: &str, provider: &str, rule: &str) -> Self {
        Self {
            name: name.to_string(),
            provider: provider.to_string(),
            rule: rule.to_string(),
            service: name.to_string(),
            entry_points: vec!["web".to_string()],
            middlewares: Vec::new(),
            status: RouterStatus::Enabled,
            priority: 0,
            tls: None,
            errors: Vec::new(),
            rule_syntax: None,
        }
    }

    /// The router with `status` set (and a matching error for disabled/warning ones).
    pub fn with_status(mut self, status: RouterStatus) -> Self {
        self.status = status;
        if status != RouterStatus::Enabled && self.errors.is_empty() {
            self.errors.push(format!(
                "the service \"{}\" does not exist",
                self.full_name()
            ));
        }
        self
    }

    /// `name@provider`, the key Traefik's API uses.
    pub fn full_name(&self) -> String {
        format!("{}@{}", self.name, self.provider)
    }
}

/// How the fake is unreachable (see [`FakeTraefik::set_unreachable`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreachable {
    /// Nothing listens on the port: connections are refused.
    Refused,
    /// A proxy in front answers this status (e.g. 502, 503) with a plain-text body.
    Status(u16),
}

/// Request counters, so tests can assert what a client asked (e.g. three pages, not one).
///
/// `total` counts every request that reached the server; `unavailable`, `unauthorized` and
/// `garbage` count requests answered by an injected fault or refused by authentication.
/// The per-endpoint counters count requests that got past those, whatever their outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraefikStats {
    /// Every request received.
    pub total: u64,
    /// `GET /api/http/routers` (pages and single routers).
    pub http_routers: u64,
    /// `GET /api/tcp/routers` (pages and single routers).
    pub tcp_routers: u64,
    /// `GET /api/rawdata`.
    pub rawdata: u64,
    /// `GET /api/version`.
    pub version: u64,
    /// Requests refused with 401.
    pub unauthorized: u64,
    /// Requests answered by [`Unreachable::Status`].
    pub unavailable: u64,
    /// Requests answered with a body that is not JSON.
    pub garbage: u64,
    /// Requests answered 400 (bad `page` / `per_page`, page past the end).
    pub bad_requests: u64,
}

/// Handle on a running fake Traefik API. Cheap to clone; every clone controls the same
/// server. Seeding and inspection are synchronous and act on the live state.
#[derive(Clone)]
pub struct FakeTraefik {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeTraefik {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTraefik")
            .field("addr", &self.inner.addr)
            .field("flavor", &self.inner.opts.flavor)
            .finish()
    }
}

struct Inner {
    opts: TraefikOptions,
    addr: SocketAddr,
    /// `Authorization` header value accepted, precomputed from `opts.basic_auth`.
    expected_auth: Option<String>,
    routers: Mutex<BTreeMap<(RouterKind, String), FakeRouter>>,
    /// Service `name@provider` -> server URLs (HTTP) or addresses (TCP), for rawdata.
    servers: Mutex<BTreeMap<String, Vec<String>>>,
    faults: Mutex<Faults>,
    stats: Mutex<TraefikStats>,
    /// Bumped on every counter change, for `wait_stats`.
    counted: watch::Sender<u64>,
    /// The running listener, `None` while [`Unreachable::Refused`].
    serving: tokio::sync::Mutex<Option<Serving>>,
    shutdown: CancellationToken,
}

#[derive(Debug, Clone, Default)]
struct Faults {
    unreachable: Option<Unreachable>,
    unauthorized: bool,
    delay: Duration,
    garbage: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn bump(&self, f: impl FnOnce(&mut TraefikStats)) {
        f(&mut lock(&self.stats));
        self.counted.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// A listener being served: how to stop it, and how to know its socket is closed.
pub(crate) struct Serving {
    stop: CancellationToken,
    closed: oneshot::Receiver<()>,
}

impl Serving {
    /// Stops accepting and waits until the listening socket is closed, so that the next
    /// connection attempt is refused (no race with a connect that is already on its way).
    pub(crate) async fn close(self) {
        self.stop.cancel();
        let _ = self.closed.await;
    }
}

/// A listener that reports when it is dropped (its socket closed): axum's `serve` drops
/// the listener as soon as a graceful shutdown begins, and tests must know when.
pub(crate) struct ClosingListener<L> {
    inner: Option<L>,
    closed: Option<oneshot::Sender<()>>,
}

impl<L> Drop for ClosingListener<L> {
    fn drop(&mut self) {
        drop(self.inner.take());
        if let Some(tx) = self.closed.take() {
            let _ = tx.send(());
        }
    }
}

impl<L: Listener> Listener for ClosingListener<L> {
    type Io = L::Io;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.inner.as_mut() {
            Some(l) => l.accept().await,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        match &self.inner {
            Some(l) => l.local_addr(),
            None => Err(std::io::Error::other("listener closed")),
        }
    }
}

/// Serves `app` on `listener` until `parent` (the fake's shutdown) or the returned handle
/// stops it; in-flight requests finish.
pub(crate) fn serve_closable<L>(listener: L, app: Router, parent: &CancellationToken) -> Serving
where
    L: Listener,
    L::Addr: std::fmt::Debug,
{
    let (tx, closed) = oneshot::channel();
    let stop = parent.child_token();
    let listener = ClosingListener {
        inner: Some(listener),
        closed: Some(tx),
    };
    let signal = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { signal.cancelled().await })
            .await
            .ok();
    });
    Serving { stop, closed }
}

impl FakeTraefik {
    /// Binds 127.0.0.1 on a free port and starts serving. The socket is bound before this
    /// returns, so requests can be sent right away (no sleeps, no race).
    pub async fn start(opts: TraefikOptions) -> std::io::Result<FakeTraefik> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let expected_auth = opts
            .basic_auth
            .as_ref()
            .map(|(u, p)| format!("Basic {}", base64(format!("{u}:{p}").as_bytes())));
        let inner = Arc::new(Inner {
            addr,
            expected_auth,
            routers: Mutex::new(BTreeMap::new()),
            servers: Mutex::new(BTreeMap::new()),
            faults: Mutex::new(Faults::default()),
            stats: Mutex::new(TraefikStats::default()),
            counted: watch::channel(0).0,
            serving: tokio::sync::Mutex::new(None),
            shutdown: CancellationToken::new(),
            opts,
        });
        let fake = FakeTraefik { inner };
        if fake.inner.opts.internal_routers {
            fake.upsert_routers(RouterKind::Http, internal_routers(fake.inner.opts.flavor));
        }
        let serving = serve_closable(listener, app(fake.inner.clone()), &fake.inner.shutdown);
        *fake.inner.serving.lock().await = Some(serving);
        Ok(fake)
    }

    /// The API base URL to give the client under test: `http://127.0.0.1:PORT/api`.
    pub fn base_url(&self) -> String {
        format!("http://{}/api", self.inner.addr)
    }

    /// The socket address bound.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Stops the server (in-flight requests finish). It also stops with its tokio runtime.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Adds or replaces (by kind and `name@provider`) one router.
    pub fn upsert_router(&self, kind: RouterKind, r: FakeRouter) {
        lock(&self.inner.routers).insert((kind, r.full_name()), r);
    }

    /// Adds or replaces many routers under one lock.
    pub fn upsert_routers(&self, kind: RouterKind, rs: impl IntoIterator<Item = FakeRouter>) {
        let mut routers = lock(&self.inner.routers);
        for r in rs {
            routers.insert((kind, r.full_name()), r);
        }
    }

    /// Removes a router by `name@provider`; returns whether it existed.
    pub fn remove_router(&self, kind: RouterKind, full_name: &str) -> bool {
        lock(&self.inner.routers)
            .remove(&(kind, full_name.to_string()))
            .is_some()
    }

    /// Changes a router's rule; returns whether it existed.
    pub fn set_rule(&self, kind: RouterKind, full_name: &str, rule: &str) -> bool {
        self.update_router(kind, full_name, |r| r.rule = rule.to_string())
    }

    /// Changes a router's status (errors follow, as in [`FakeRouter::with_status`]);
    /// returns whether it existed.
    pub fn set_status(&self, kind: RouterKind, full_name: &str, status: RouterStatus) -> bool {
        self.update_router(kind, full_name, |r| {
            r.errors.clear();
            *r = r.clone().with_status(status);
        })
    }

    /// Edits a router in place; returns whether it existed.
    pub fn update_router(
        &self,
        kind: RouterKind,
        full_name: &str,
        edit: impl FnOnce(&mut FakeRouter),
    ) -> bool {
        match lock(&self.inner.routers).get_mut(&(kind, full_name.to_string())) {
            Some(r) => {
                edit(r);
                true
            }
            None => false,
        }
    }

    /// Removes every router of `kind`, internal ones included.
    pub fn clear_routers(&self, kind: RouterKind) {
        lock(&self.inner.routers).retain(|(k, _), _| *k != kind);
    }

    /// Every router of `kind`, sorted by `name@provider` (Traefik's default order).
    pub fn routers(&self, kind: RouterKind) -> Vec<FakeRouter> {
        lock(&self.inner.routers)
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Sets the servers `/api/rawdata` shows for service `name@provider` (URLs for HTTP
    /// services, `host:port` for TCP ones), e.g. to tie a router to a container's address.
    pub fn set_service_servers(&self, service: &str, servers: Vec<String>) {
        lock(&self.inner.servers).insert(service.to_string(), servers);
    }

    /// Makes the API unreachable (`Some`) or reachable again (`None`). With
    /// [`Unreachable::Refused`] the listening socket is closed before this returns, and
    /// reopened on the same port when reachable again; state is kept across.
    pub async fn set_unreachable(&self, how: Option<Unreachable>) -> std::io::Result<()> {
        lock(&self.inner.faults).unreachable = how;
        let mut serving = self.inner.serving.lock().await;
        match (how, serving.is_some()) {
            (Some(Unreachable::Refused), true) => {
                if let Some(s) = serving.take() {
                    s.close().await;
                }
            }
            (Some(Unreachable::Refused), false) | (_, true) => {}
            (_, false) => {
                let listener = TcpListener::bind(self.inner.addr).await?;
                *serving = Some(serve_closable(
                    listener,
                    app(self.inner.clone()),
                    &self.inner.shutdown,
                ));
            }
        }
        Ok(())
    }

    /// While set, every request is refused with 401, even with the right credentials (a
    /// password changed at Traefik and not yet at the client).
    pub fn set_unauthorized(&self, on: bool) {
        lock(&self.inner.faults).unauthorized = on;
    }

    /// Delays every answer by `d` (zero disables), to exercise client timeouts.
    pub fn set_delay(&self, d: Duration) {
        lock(&self.inner.faults).delay = d;
    }

    /// While set, every endpoint answers 200 with a body cut short (not valid JSON).
    pub fn set_garbage(&self, on: bool) {
        lock(&self.inner.faults).garbage = on;
    }

    /// Removes every injected fault and reopens the port if it was refusing connections.
    pub async fn clear_faults(&self) -> std::io::Result<()> {
        self.set_unreachable(None).await?;
        *lock(&self.inner.faults) = Faults::default();
        Ok(())
    }

    /// A snapshot of the request counters.
    pub fn stats(&self) -> TraefikStats {
        lock(&self.inner.stats).clone()
    }

    /// Zeroes the request counters.
    pub fn reset_stats(&self) {
        *lock(&self.inner.stats) = TraefikStats::default();
    }

    /// Waits until the request counters satisfy `pred` (e.g. a third poll happened),
    /// without polling on a timer.
    pub async fn wait_stats(&self, pred: impl Fn(&TraefikStats) -> bool) {
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
}

/// The two routers a Traefik with its dashboard enabled always has.
fn internal_routers(flavor: TraefikFlavor) -> Vec<FakeRouter> {
    let syntax = (flavor == TraefikFlavor::V3).then(|| "default".to_string());
    let api = FakeRouter {
        service: "api@internal".into(),
        entry_points: vec!["traefik".into()],
        priority: API_PRIORITY,
        rule_syntax: syntax.clone(),
        ..FakeRouter::new("api", "internal", "PathPrefix(`/api`)")
    };
    let dashboard = FakeRouter {
        service: "dashboard@internal".into(),
        entry_points: vec!["traefik".into()],
        middlewares: vec![
            "dashboard_redirect@internal".into(),
            "dashboard_stripprefix@internal".into(),
        ],
        priority: DASHBOARD_PRIORITY,
        rule_syntax: syntax,
        ..FakeRouter::new("dashboard", "internal", "PathPrefix(`/`)")
    };
    vec![api, dashboard]
}

/// Standard base64 (with padding), for the expected `Authorization: Basic` value.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = usize::try_from((n >> (18 - 6 * i)) & 63).unwrap_or(0);
                out.push(char::from(ALPHABET[idx]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Wire format
// ---------------------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TlsOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    passthrough: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    options: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cert_resolver: Option<&'a str>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    domains: &'a [TlsDomain],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ObservabilityOut {
    access_logs: bool,
    metrics: bool,
    tracing: bool,
    trace_verbosity: &'static str,
}

/// A router in Traefik's field order (the embedded `dynamic.Router`, then the runtime
/// fields, then the representation's `name`, `provider`, `priorityStr`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RouterOut<'a> {
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    entry_points: &'a [String],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    middlewares: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    service: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    rule: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule_syntax: Option<&'a str>,
    #[serde(skip_serializing_if = "is_zero")]
    priority: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<TlsOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    observability: Option<ObservabilityOut>,
    #[serde(rename = "error", skip_serializing_if = "<[_]>::is_empty")]
    error: &'a [String],
    status: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    using: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority_str: Option<String>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// How a router is shown: in a list (`listed`: with name, provider and, on v3,
/// `priorityStr`; HTTP TLS options defaulted) or in `/api/rawdata` (keyed, without them).
fn router_out(
    kind: RouterKind,
    r: &FakeRouter,
    flavor: TraefikFlavor,
    listed: bool,
) -> RouterOut<'_> {
    let v3 = flavor == TraefikFlavor::V3;
    let tls = r.tls.as_ref().map(|t| TlsOut {
        passthrough: (kind == RouterKind::Tcp).then_some(t.passthrough),
        options: match (&t.options, kind, listed) {
            (Some(o), _, _) => Some(o.as_str()),
            (None, RouterKind::Http, true) => Some("default"),
            (None, _, _) => None,
        },
        cert_resolver: t.cert_resolver.as_deref(),
        domains: &t.domains,
    });
    let using: BTreeSet<&str> = r.entry_points.iter().map(String::as_str).collect();
    RouterOut {
        entry_points: &r.entry_points,
        middlewares: &r.middlewares,
        service: &r.service,
        rule: &r.rule,
        rule_syntax: if v3 { r.rule_syntax.as_deref() } else { None },
        priority: r.priority,
        tls,
        observability: (v3 && kind == RouterKind::Http).then_some(ObservabilityOut {
            access_logs: true,
            metrics: true,
            tracing: true,
            trace_verbosity: "minimal",
        }),
        error: &r.errors,
        status: r.status.as_str(),
        using: using.into_iter().collect(),
        name: listed.then(|| r.full_name()),
        provider: listed.then_some(r.provider.as_str()),
        priority_str: (listed && v3).then(|| r.priority.to_string()),
    }
}

/// A JSON answer as Go's `json.Encoder` writes it (trailing newline).
fn json_response(body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            let mut resp = Response::new(Body::from(bytes));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
    }
}

/// A plain-text answer, as Go's `http.Error` writes it.
fn plain(status: StatusCode, body: &str) -> Response {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// Traefik's API error: `http.Error` with a JSON `{"message": ...}` body.
fn api_error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "message": message }).to_string();
    plain(status, &format!("{body}\n"))
}

// ---------------------------------------------------------------------------------------
// Router, middleware
// ---------------------------------------------------------------------------------------

type Shared = State<Arc<Inner>>;
type QueryList = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn app(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/api/http/routers", get(http_routers))
        .route("/api/http/routers/{id}", get(http_router))
        .route("/api/tcp/routers", get(tcp_routers))
        .route("/api/tcp/routers/{id}", get(tcp_router))
        .route("/api/rawdata", get(rawdata))
        .route("/api/version", get(version))
        .fallback(|| async { plain(StatusCode::NOT_FOUND, "404 page not found\n") })
        .method_not_allowed_fallback(|| async { plain(StatusCode::METHOD_NOT_ALLOWED, "") })
        .layer(middleware::from_fn_with_state(inner.clone(), gatekeeper))
        .with_state(inner)
}

/// Runs before every endpoint: counts, delays, then answers for a proxy in front that
/// cannot reach Traefik, for basic auth, and for the garbage switch, in that order.
async fn gatekeeper(State(inner): Shared, req: Request, next: Next) -> Response {
    inner.bump(|s| s.total += 1);
    let faults = lock(&inner.faults).clone();
    if !faults.delay.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(faults.delay) => {}
            () = inner.shutdown.cancelled() => {}
        }
    }
    if let Some(Unreachable::Status(code)) = faults.unreachable {
        inner.bump(|s| s.unavailable += 1);
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let reason = status.canonical_reason().unwrap_or("Unavailable");
        return plain(status, reason);
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let authorized = match &inner.expected_auth {
        None => true,
        Some(expected) => presented.is_some_and(|p| p.trim() == expected),
    };
    if faults.unauthorized || !authorized {
        inner.bump(|s| s.unauthorized += 1);
        let mut resp = plain(StatusCode::UNAUTHORIZED, "401 Unauthorized\n");
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"traefik\""),
        );
        return resp;
    }
    if faults.garbage {
        inner.bump(|s| s.garbage += 1);
        let mut resp = Response::new(Body::from(GARBAGE));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        return resp;
    }
    next.run(req).await
}

async fn http_routers(State(inner): Shared, q: QueryList) -> Response {
    inner.bump(|s| s.http_routers += 1);
    list_routers(&inner, RouterKind::Http, q)
}

async fn tcp_routers(State(inner): Shared, q: QueryList) -> Response {
    inner.bump(|s| s.tcp_routers += 1);
    list_routers(&inner, RouterKind::Tcp, q)
}

async fn http_router(State(inner): Shared, Path(id): Path<String>) -> Response {
    inner.bump(|s| s.http_routers += 1);
    one_router(&inner, RouterKind::Http, &id)
}

async fn tcp_router(State(inner): Shared, Path(id): Path<String>) -> Response {
    inner.bump(|s| s.tcp_routers += 1);
    one_router(&inner, RouterKind::Tcp, &id)
}

fn one_router(inner: &Inner, kind: RouterKind, id: &str) -> Response {
    let routers = lock(&inner.routers);
    match routers.get(&(kind, id.to_string())) {
        Some(r) => json_response(&router_out(kind, r, inner.opts.flavor, true)),
        None => api_error(StatusCode::NOT_FOUND, &format!("router not found: {id}")),
    }
}

/// The first value of `key`, as Go's `url.Values.Get` returns it ("" when absent).
fn first<'a>(q: &'a [(String, String)], key: &str) -> &'a str {
    q.iter()
        .find(|(k, _)| k == key)
        .map_or("", |(_, v)| v.as_str())
}

/// Traefik's `getIntParam`: absent or empty means the default; anything else must be a
/// positive integer, and the error names the parameter with the value parsed (0 when the
/// text is not a number, as Go's `strconv.Atoi` leaves it).
fn int_param(q: &[(String, String)], key: &str, default: usize) -> Result<usize, String> {
    let raw = first(q, key);
    if raw.is_empty() {
        return Ok(default);
    }
    let value: i64 = raw.parse().unwrap_or(0);
    match usize::try_from(value) {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(format!("invalid request: {key}: {value}")),
    }
}

/// Traefik's search criterion: `status`, `search`, `serviceName`, `middlewareName`.
fn keep(r: &FakeRouter, q: &[(String, String)]) -> bool {
    let status = first(q, "status");
    let search = first(q, "search").to_lowercase();
    let service = first(q, "serviceName");
    let middleware = first(q, "middlewareName");
    let name = r.full_name();
    (status.is_empty() || status.eq_ignore_ascii_case(r.status.as_str()))
        && (search.is_empty()
            || r.rule.to_lowercase().contains(&search)
            || name.to_lowercase().contains(&search))
        && (service.is_empty()
            || if r.service.contains('@') {
                r.service == service
            } else {
                service.split('@').next() == Some(r.service.as_str())
            })
        && (middleware.is_empty() || r.middlewares.iter().any(|m| m == middleware))
}

/// Traefik's `sortRouters`: by `sortBy` (default name), ties broken by name.
fn sort_routers(rs: &mut [&FakeRouter], q: &[(String, String)]) {
    let desc = first(q, "direction") == "desc";
    let by = first(q, "sortBy");
    rs.sort_by(|a, b| {
        let primary = match by {
            "provider" => a.provider.cmp(&b.provider),
            "priority" => a.priority.cmp(&b.priority),
            "status" => a.status.as_str().cmp(b.status.as_str()),
            "rule" => a.rule.cmp(&b.rule),
            "service" => a.service.cmp(&b.service),
            "entryPoints" => a.entry_points.len().cmp(&b.entry_points.len()),
            _ => std::cmp::Ordering::Equal,
        };
        let ord = primary.then_with(|| a.full_name().cmp(&b.full_name()));
        if desc { ord.reverse() } else { ord }
    });
}

fn list_routers(inner: &Inner, kind: RouterKind, q: QueryList) -> Response {
    let Ok(Query(q)) = q else {
        inner.bump(|s| s.bad_requests += 1);
        return api_error(StatusCode::BAD_REQUEST, "invalid query string");
    };
    let routers = lock(&inner.routers);
    let mut results: Vec<&FakeRouter> = routers
        .iter()
        .filter(|((k, _), r)| *k == kind && keep(r, &q))
        .map(|(_, r)| r)
        .collect();
    sort_routers(&mut results, &q);

    // Traefik's `pagination`.
    let paged = int_param(&q, "per_page", DEFAULT_PER_PAGE).and_then(|per_page| {
        let page = int_param(&q, "page", 1)?;
        let start = (page - 1).saturating_mul(per_page);
        if start != 0 && start >= results.len() {
            return Err(format!(
                "invalid request: page: {page}, per_page: {per_page}"
            ));
        }
        let end = start.saturating_add(per_page).min(results.len());
        let next = if page.saturating_mul(per_page) < results.len() {
            page + 1
        } else {
            1
        };
        Ok((start, end, next))
    });
    let (start, end, next) = match paged {
        Ok(p) => p,
        Err(message) => {
            drop(routers);
            inner.bump(|s| s.bad_requests += 1);
            return api_error(StatusCode::BAD_REQUEST, &message);
        }
    };
    let page: Vec<RouterOut<'_>> = results[start..end]
        .iter()
        .map(|r| router_out(kind, r, inner.opts.flavor, true))
        .collect();
    let mut resp = json_response(&page);
    resp.headers_mut()
        .insert("X-Next-Page", HeaderValue::from(next));
    resp
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LoadBalancerOut<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    servers: Vec<BTreeMap<&'static str, &'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strategy: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pass_host_header: Option<bool>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServiceOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    load_balancer: Option<LoadBalancerOut<'a>>,
    status: &'static str,
    used_by: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    server_status: BTreeMap<&'a str, &'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MiddlewareOut {
    #[serde(flatten)]
    config: serde_json::Value,
    status: &'static str,
    used_by: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RawData<'a> {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    routers: BTreeMap<String, RouterOut<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    middlewares: BTreeMap<String, MiddlewareOut>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    services: BTreeMap<String, ServiceOut<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tcp_routers: BTreeMap<String, RouterOut<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    tcp_services: BTreeMap<String, ServiceOut<'a>>,
}

/// `name` qualified with `provider` unless it already names one.
fn qualified(name: &str, provider: &str) -> String {
    if name.contains('@') {
        name.to_string()
    } else {
        format!("{name}@{provider}")
    }
}

/// Configuration of the middlewares Traefik defines for its dashboard.
fn internal_middleware(name: &str) -> serde_json::Value {
    match name {
        "dashboard_redirect@internal" => serde_json::json!({
            "redirectRegex": {
                "regex": "^(http:\\/\\/(\\[[\\w:.]+\\]|[\\w\\._-]+)(:\\d+)?)\\/$",
                "replacement": "${1}/dashboard/",
                "permanent": true
            }
        }),
        "dashboard_stripprefix@internal" => serde_json::json!({
            "stripPrefix": { "prefixes": ["/dashboard/", "/dashboard"] }
        }),
        _ => serde_json::json!({}),
    }
}

async fn rawdata(State(inner): Shared) -> Response {
    inner.bump(|s| s.rawdata += 1);
    let routers = lock(&inner.routers);
    let servers = lock(&inner.servers);
    let flavor = inner.opts.flavor;
    let mut raw = RawData {
        routers: BTreeMap::new(),
        middlewares: BTreeMap::new(),
        services: BTreeMap::new(),
        tcp_routers: BTreeMap::new(),
        tcp_services: BTreeMap::new(),
    };
    for ((kind, full), r) in routers.iter() {
        let (routers_out, services_out) = match kind {
            RouterKind::Http => (&mut raw.routers, &mut raw.services),
            RouterKind::Tcp => (&mut raw.tcp_routers, &mut raw.tcp_services),
        };
        routers_out.insert(full.clone(), router_out(*kind, r, flavor, false));
        let service = qualified(&r.service, &r.provider);
        let entry = services_out.entry(service.clone()).or_insert_with(|| {
            let urls = servers.get(&service).map(Vec::as_slice).unwrap_or(&[]);
            let field = match kind {
                RouterKind::Http => "url",
                RouterKind::Tcp => "address",
            };
            let internal = service.ends_with("@internal");
            ServiceOut {
                load_balancer: (!internal).then(|| LoadBalancerOut {
                    servers: urls
                        .iter()
                        .map(|u| BTreeMap::from([(field, u.as_str())]))
                        .collect(),
                    strategy: (*kind == RouterKind::Http).then_some("wrr"),
                    pass_host_header: (*kind == RouterKind::Http).then_some(true),
                }),
                status: "enabled",
                used_by: Vec::new(),
                server_status: if *kind == RouterKind::Http {
                    urls.iter().map(|u| (u.as_str(), "UP")).collect()
                } else {
                    BTreeMap::new()
                },
            }
        });
        entry.used_by.push(full.clone());
        if *kind == RouterKind::Http {
            for m in &r.middlewares {
                let m = qualified(m, &r.provider);
                raw.middlewares
                    .entry(m.clone())
                    .or_insert_with(|| MiddlewareOut {
                        config: internal_middleware(&m),
                        status: "enabled",
                        used_by: Vec::new(),
                    })
                    .used_by
                    .push(full.clone());
            }
        }
    }
    json_response(&raw)
}

#[derive(Serialize)]
struct VersionOut<'a> {
    #[serde(rename = "Version")]
    version: &'a str,
    #[serde(rename = "Codename")]
    codename: &'a str,
    #[serde(rename = "startDate")]
    start_date: &'static str,
}

async fn version(State(inner): Shared) -> Response {
    inner.bump(|s| s.version += 1);
    let mut resp = json_response(&VersionOut {
        version: &inner.opts.version,
        codename: &inner.opts.codename,
        start_date: START_DATE,
    });
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::base64;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }
}
