//! A fake DNS provider that speaks the DigitalOcean API v2 domain-record endpoints as DigitalOcean
//! documents them: a real HTTP server on loopback with one domain, bearer-token authentication,
//! `links.pages` paging with absolute URLs, `type`/`name` filters, validation errors as 422
//! `unprocessable_entity`, and DigitalOcean's rate limits (an hourly and a per-minute budget per
//! token, each request expiring on its own timer, `ratelimit-*` headers on every answer) counted
//! on an injected clock so tests stay deterministic. Faults are injected the way the Cloudflare
//! fake injects them (failing requests, delays, lost write answers, per-name write failures) and
//! every request is counted. It exists so the DigitalOcean provider client can be tested end to
//! end without the network; it must never reach a real DigitalOcean.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use trafego_common::clock::{self, SharedClock};

pub use crate::fake_cloudflare::LostAnswer;

/// DigitalOcean's default `per_page`.
pub const DEFAULT_PER_PAGE: u32 = 20;
/// DigitalOcean's largest `per_page`; larger values are capped to it.
pub const MAX_PER_PAGE: u32 = 200;
/// The lowest TTL DigitalOcean accepts on a record.
pub const MIN_TTL: u32 = 30;
/// The TTL DigitalOcean gives a record created without one.
pub const DEFAULT_TTL: u32 = 1800;
/// Record types DigitalOcean serves (SOA only as the one record every domain has).
const TYPES: [&str; 9] = ["A", "AAAA", "CAA", "CNAME", "MX", "NS", "SOA", "SRV", "TXT"];
/// How long a request counts against the hourly budget, and the burst window, in ms.
const HOUR_MS: i64 = 3_600_000;
const MINUTE_MS: i64 = 60_000;
/// The message DigitalOcean gives a missing resource.
const NOT_FOUND: &str = "The resource you were accessing could not be found.";

/// Configuration of a fake: the token and domain it serves and its rate budget. Exists so tests
/// can reproduce DigitalOcean's limits at whatever scale (and on whatever clock) they need.
#[derive(Clone)]
pub struct DoOptions {
    /// The only bearer token accepted; anything else is answered 401 `unauthorized`.
    pub token: String,
    /// The single domain served, e.g. `example.com`.
    pub domain: String,
    /// Requests per token in any hour (DigitalOcean: 5,000); `ratelimit-limit` reports it.
    pub hourly_limit: u32,
    /// Requests per token in any minute (DigitalOcean: 250), the burst limit.
    pub minute_limit: u32,
    /// Clock the rate budget is counted on; tests pass a `ManualClock`.
    pub clock: SharedClock,
    /// When true (the default), the domain starts with the SOA and three NS records at the apex
    /// that DigitalOcean creates with every domain, so clients meet them as they would for real.
    pub apex_defaults: bool,
}

impl std::fmt::Debug for DoOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoOptions")
            .field("token", &"<redacted>")
            .field("domain", &self.domain)
            .field("hourly_limit", &self.hourly_limit)
            .field("minute_limit", &self.minute_limit)
            .field("apex_defaults", &self.apex_defaults)
            .finish()
    }
}

impl DoOptions {
    /// Options with DigitalOcean's documented limits (5,000 an hour, 250 a minute) on the wall
    /// clock, and the apex records every domain has, so tests only spell out what they change.
    pub fn new(token: &str, domain: &str) -> Self {
        Self {
            token: token.to_string(),
            domain: normalize_fqdn(domain),
            hourly_limit: 5000,
            minute_limit: 250,
            clock: clock::system(),
            apex_defaults: true,
        }
    }
}

/// A domain record exactly as DigitalOcean's API carries it (the field names are the wire
/// names). Tests use it to seed the provider's state and to inspect what a client did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoRecord {
    /// Record identifier; 0 when inserting means "assign the next one".
    pub id: u64,
    /// Record type (`A`, `AAAA`, `CNAME`, `MX`, `TXT`, `SRV`, `CAA`, `NS`, `SOA`).
    #[serde(rename = "type")]
    pub r#type: String,
    /// Name relative to the domain: `@` for the apex, `www` for `www.example.com`.
    pub name: String,
    /// The record's data; host names are kept without their trailing dot, as DigitalOcean
    /// answers them (`ns1.digitalocean.com`), and `@` stands for the apex.
    pub data: String,
    /// Priority, for MX and SRV.
    pub priority: Option<u32>,
    /// Port, for SRV.
    pub port: Option<u32>,
    /// TTL in seconds (at least 30).
    pub ttl: u32,
    /// Weight, for SRV.
    pub weight: Option<u32>,
    /// Flags (0-255), for CAA.
    pub flags: Option<u32>,
    /// Tag (`issue`, `issuewild`, `iodef`), for CAA.
    pub tag: Option<String>,
}

impl DoRecord {
    /// A record with id 0 (assigned on insert), TTL 1800 and no type-specific fields: the common
    /// case in tests.
    pub fn new(rtype: &str, name: &str, data: &str) -> Self {
        Self {
            id: 0,
            r#type: rtype.to_string(),
            name: name.to_string(),
            data: data.to_string(),
            priority: None,
            port: None,
            ttl: DEFAULT_TTL,
            weight: None,
            flags: None,
            tag: None,
        }
    }

    /// The record's fully qualified name in `domain` (lowercase, no trailing dot).
    pub fn fqdn(&self, domain: &str) -> String {
        if self.name == "@" {
            domain.to_string()
        } else {
            format!("{}.{domain}", self.name)
        }
    }
}

/// Request counters, so tests can assert how many calls of each kind a client made.
///
/// `total` counts every HTTP request; `unauthorized` and `rate_limited` those refused before
/// reaching an endpoint; `faults` every injected failure. The per-endpoint counters count
/// requests that got past authentication, the rate limit and `fail_next`, whatever their outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DoStats {
    /// Every request received.
    pub total: u64,
    /// `GET /v2/domains/{domain}`.
    pub domains: u64,
    /// `GET /v2/domains/{domain}/records`.
    pub list: u64,
    /// `GET /v2/domains/{domain}/records/{id}`.
    pub get: u64,
    /// `POST /v2/domains/{domain}/records`.
    pub create: u64,
    /// `PUT` and `PATCH /v2/domains/{domain}/records/{id}`.
    pub update: u64,
    /// `DELETE /v2/domains/{domain}/records/{id}`.
    pub delete: u64,
    /// Requests answered 429 because a rate budget was spent.
    pub rate_limited: u64,
    /// Requests answered with an injected failure.
    pub faults: u64,
    /// Requests refused for a missing or wrong token.
    pub unauthorized: u64,
    /// Writes applied whose answer was then lost (`lose_write_answers`).
    pub answers_lost: u64,
}

/// Handle on a running fake DigitalOcean API. Cheap to clone; every clone controls the same
/// server. Seeding and inspection methods are synchronous and act on the live state.
#[derive(Clone)]
pub struct FakeDigitalOcean {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeDigitalOcean {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeDigitalOcean")
            .field("addr", &self.inner.addr)
            .field("domain", &self.inner.opts.domain)
            .finish()
    }
}

struct Inner {
    opts: DoOptions,
    addr: SocketAddr,
    store: Mutex<Store>,
    faults: Mutex<Faults>,
    stats: Mutex<DoStats>,
    /// Times (clock ms) of the requests still counted against the budget, oldest first.
    budget: Mutex<VecDeque<i64>>,
    shutdown: CancellationToken,
    lost: tokio::sync::watch::Sender<u64>,
    counted: tokio::sync::watch::Sender<u64>,
}

struct Store {
    records: BTreeMap<u64, DoRecord>,
    next_id: u64,
}

impl Store {
    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.saturating_add(1);
        id
    }

    fn insert(&mut self, mut r: DoRecord) -> u64 {
        if r.id == 0 {
            r.id = self.take_id();
        } else if r.id >= self.next_id {
            self.next_id = r.id.saturating_add(1);
        }
        let id = r.id;
        self.records.insert(id, r);
        id
    }
}

#[derive(Default, Clone)]
struct Faults {
    failing_pages: HashMap<u32, u16>,
    fail_next_left: u32,
    fail_next_status: u16,
    delay: Duration,
    /// Relative record name -> HTTP status.
    fail_names: HashMap<String, u16>,
    lose_left: u32,
    lose_how: Option<LostAnswer>,
    /// Requests still to refuse as a spent burst window, and the wait they ask.
    rate_limit_left: u32,
    retry_after_secs: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }
    fn bump(&self, f: impl FnOnce(&mut DoStats)) {
        f(&mut lock(&self.stats));
        self.counted.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl FakeDigitalOcean {
    /// Binds 127.0.0.1 on a free port and starts serving. The socket is bound before this
    /// returns, so requests can be sent right away (no sleeps, no race).
    pub async fn start(opts: DoOptions) -> std::io::Result<FakeDigitalOcean> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        Self::start_on(listener, opts).await
    }

    /// Starts serving on an already bound listener (for a fixed address, as the binary does).
    pub async fn start_on(
        listener: TcpListener,
        opts: DoOptions,
    ) -> std::io::Result<FakeDigitalOcean> {
        let addr = listener.local_addr()?;
        let mut store = Store {
            records: BTreeMap::new(),
            // DigitalOcean's ids are large integers; start where theirs look alike.
            next_id: 28_448_429,
        };
        if opts.apex_defaults {
            let mut soa = DoRecord::new("SOA", "@", "1800");
            soa.ttl = 1800;
            store.insert(soa);
            for ns in ["ns1", "ns2", "ns3"] {
                store.insert(DoRecord::new("NS", "@", &format!("{ns}.digitalocean.com")));
            }
        }
        let inner = Arc::new(Inner {
            opts,
            addr,
            store: Mutex::new(store),
            faults: Mutex::new(Faults::default()),
            stats: Mutex::new(DoStats::default()),
            budget: Mutex::new(VecDeque::new()),
            shutdown: CancellationToken::new(),
            lost: tokio::sync::watch::channel(0).0,
            counted: tokio::sync::watch::channel(0).0,
        });
        let app = router(inner.clone());
        let stop = inner.shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "fake digitalocean server stopped");
            }
        });
        Ok(FakeDigitalOcean { inner })
    }

    /// The API base URL to give the client under test: `http://127.0.0.1:PORT/v2`.
    pub fn base_url(&self) -> String {
        base_url(self.inner.addr)
    }

    /// The socket address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The domain the fake serves.
    pub fn domain(&self) -> String {
        self.inner.opts.domain.clone()
    }

    /// Stops accepting connections and lets in-flight requests finish (graceful).
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Seeds one record as-is (no validation), as if created earlier at the provider. Id 0 gets
    /// the next id; an existing id is replaced. Returns the id.
    pub fn insert(&self, r: DoRecord) -> u64 {
        self.inner.store().insert(r)
    }

    /// Seeds many records under one lock; returns the ids in input order.
    pub fn insert_many(&self, rs: Vec<DoRecord>) -> Vec<u64> {
        let mut store = self.inner.store();
        rs.into_iter().map(|r| store.insert(r)).collect()
    }

    /// Every record, sorted by id (the order DigitalOcean lists them in).
    pub fn records(&self) -> Vec<DoRecord> {
        self.inner.store().records.values().cloned().collect()
    }

    /// One record by id.
    pub fn get(&self, id: u64) -> Option<DoRecord> {
        self.inner.store().records.get(&id).cloned()
    }

    /// Deletes a record behind the client's back. Returns whether it existed.
    pub fn remove(&self, id: u64) -> bool {
        self.inner.store().records.remove(&id).is_some()
    }

    /// Edits a record's data behind the client's back. Returns whether it existed.
    pub fn update_data(&self, id: u64, data: &str) -> bool {
        match self.inner.store().records.get_mut(&id) {
            Some(r) => {
                r.data = data.to_string();
                true
            }
            None => false,
        }
    }

    /// Number of records held (the apex defaults included).
    pub fn count(&self) -> usize {
        self.inner.store().records.len()
    }

    /// Makes every list request for page `page` (whatever the filters) answer `status`, until
    /// [`FakeDigitalOcean::clear_faults`].
    pub fn fail_list_page(&self, page: u32, status: u16) {
        lock(&self.inner.faults).failing_pages.insert(page, status);
    }

    /// Removes every injected fault (the rate budget is left as it is: see
    /// [`FakeDigitalOcean::reset_rate_limits`]).
    pub fn clear_faults(&self) {
        *lock(&self.inner.faults) = Faults::default();
    }

    /// The next `n` authenticated requests are refused as DigitalOcean refuses a spent burst
    /// window: 429 `too_many_requests` with `Retry-After: retry_after_secs` and the
    /// `ratelimit-*` headers, without touching the state or the budget. Lets a test stage the
    /// per-minute limit without filling it.
    pub fn rate_limit_next(&self, n: u32, retry_after_secs: u32) {
        let mut f = lock(&self.inner.faults);
        f.rate_limit_left = n;
        f.retry_after_secs = retry_after_secs;
    }

    /// The next `n` authenticated requests within budget answer `status` (e.g. 500, 503) with
    /// DigitalOcean's error body, without touching the state.
    pub fn fail_next(&self, n: u32, status: u16) {
        let mut f = lock(&self.inner.faults);
        f.fail_next_left = n;
        f.fail_next_status = status;
    }

    /// Delays every answer by `d` (slept before the request is processed); zero disables.
    pub fn set_delay(&self, d: Duration) {
        lock(&self.inner.faults).delay = d;
    }

    /// Writes touching record name `name` (relative, `@`, or the FQDN) fail with `status` and
    /// DigitalOcean's error body for it.
    pub fn fail_writes_for_name(&self, name: &str, status: u16) {
        // Here a name inside the domain may be given with or without its trailing dot.
        let domain = &self.inner.opts.domain;
        let n = normalize_fqdn(name);
        let in_zone = n == *domain || n.ends_with(&format!(".{domain}"));
        let rel = relative_name(&if in_zone { format!("{n}.") } else { n }, domain);
        lock(&self.inner.faults).fail_names.insert(rel, status);
    }

    /// The next `n` writes (create, update, delete) are applied, then their answer is lost as
    /// `how` says: what a client sees when a timeout hits after DigitalOcean did the work.
    pub fn lose_write_answers(&self, n: u32, how: LostAnswer) {
        let mut f = lock(&self.inner.faults);
        f.lose_left = n;
        f.lose_how = Some(how);
    }

    /// Waits until `n` write answers in all have been lost.
    pub async fn wait_answers_lost(&self, n: u64) {
        let mut rx = self.inner.lost.subscribe();
        let _ = rx.wait_for(|&lost| lost >= n).await;
    }

    /// Waits until the request counters satisfy `pred`, without polling on a timer.
    pub async fn wait_stats(&self, pred: impl Fn(&DoStats) -> bool) {
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

    /// A snapshot of the request counters.
    pub fn stats(&self) -> DoStats {
        lock(&self.inner.stats).clone()
    }

    /// Zeroes the request counters.
    pub fn reset_stats(&self) {
        *lock(&self.inner.stats) = DoStats::default();
    }

    /// Forgets every request counted against the rate budget (a fresh hour and minute).
    pub fn reset_rate_limits(&self) {
        lock(&self.inner.budget).clear();
    }

    /// Requests left in the hourly budget at the clock's current time.
    pub fn rate_limit_remaining(&self) -> u32 {
        let now = self.inner.opts.clock.now_ms();
        let mut hits = lock(&self.inner.budget);
        expire(&mut hits, now);
        remaining(self.inner.opts.hourly_limit, hits.len())
    }
}

fn base_url(mut addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    format!("http://{addr}/v2")
}

/// Lowercase, without trailing dot.
fn normalize_fqdn(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// A record name as DigitalOcean stores it: relative to the domain, `@` for the apex. A name
/// written absolute (with its trailing dot) inside the domain is made relative; any other name is
/// taken as relative already, as DigitalOcean does.
fn relative_name(name: &str, domain: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    if n.is_empty() || n == "@" {
        return "@".to_string();
    }
    if let Some(abs) = n.strip_suffix('.') {
        if abs == domain {
            return "@".to_string();
        }
        if let Some(rel) = abs.strip_suffix(&format!(".{domain}")) {
            return rel.to_string();
        }
        return abs.to_string();
    }
    n
}

// ---------------------------------------------------------------------------------------
// Rate budget
// ---------------------------------------------------------------------------------------

fn expire(hits: &mut VecDeque<i64>, now: i64) {
    while hits
        .front()
        .is_some_and(|&t| t <= now.saturating_sub(HOUR_MS))
    {
        hits.pop_front();
    }
}

fn remaining(limit: u32, used: usize) -> u32 {
    limit.saturating_sub(u32::try_from(used).unwrap_or(u32::MAX))
}

/// What the budget says about one request, and the headers every answer carries.
struct Budget {
    limit: u32,
    remaining: u32,
    /// Unix seconds when the oldest counted request stops counting.
    reset: i64,
    /// Set when the request is refused: seconds to wait, for a burst refusal.
    refused: Option<Option<i64>>,
}

impl Budget {
    fn apply(&self, resp: &mut Response) {
        let h = resp.headers_mut();
        h.insert("ratelimit-limit", HeaderValue::from(self.limit));
        h.insert("ratelimit-remaining", HeaderValue::from(self.remaining));
        h.insert("ratelimit-reset", HeaderValue::from(self.reset));
    }
}

/// Counts one request against the hourly and per-minute budgets: each request counts for an
/// hour after it was made (DigitalOcean gives every request its own timer); refused requests do
/// not count.
fn spend(inner: &Inner) -> Budget {
    let now = inner.opts.clock.now_ms();
    let limit = inner.opts.hourly_limit;
    let mut hits = lock(&inner.budget);
    expire(&mut hits, now);
    let minute_start = now.saturating_sub(MINUTE_MS);
    let in_minute: Vec<i64> = hits
        .iter()
        .rev()
        .take_while(|&&t| t > minute_start)
        .copied()
        .collect();
    let refused = if hits.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
        Some(None)
    } else if in_minute.len() >= usize::try_from(inner.opts.minute_limit).unwrap_or(usize::MAX) {
        // The oldest request of the minute is the last one collected (newest first).
        let oldest = in_minute.last().copied().unwrap_or(now);
        let wait_ms = oldest.saturating_add(MINUTE_MS).saturating_sub(now).max(0);
        Some(Some(wait_ms.saturating_add(999) / 1000))
    } else {
        hits.push_back(now);
        None
    };
    let oldest = hits.front().copied().unwrap_or(now);
    Budget {
        limit,
        remaining: remaining(limit, hits.len()),
        reset: oldest.saturating_add(HOUR_MS).div_euclid(1000),
        refused,
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

#[derive(Serialize)]
struct ErrorBody<'a> {
    id: &'a str,
    message: &'a str,
    request_id: String,
}

/// A DigitalOcean error answer; `injected` marks failures caused by fault injection.
#[derive(Debug)]
struct DoError {
    status: StatusCode,
    id: &'static str,
    message: String,
    injected: bool,
}

impl DoError {
    fn new(status: StatusCode, id: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            id,
            message: message.into(),
            injected: false,
        }
    }
    fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
            message,
        )
    }
    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", NOT_FOUND)
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    /// The answer DigitalOcean gives for `status`, marked injected.
    fn injected(status: u16) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let (id, message) = match status.as_u16() {
            400 => ("bad_request", "The request was malformed."),
            401 => ("unauthorized", "Unable to authenticate you"),
            403 => (
                "forbidden",
                "You do not have access for the attempted action.",
            ),
            404 => ("not_found", NOT_FOUND),
            422 => (
                "unprocessable_entity",
                "The request could not be processed.",
            ),
            429 => ("too_many_requests", "API Rate limit exceeded."),
            502 => ("bad_gateway", "Bad gateway."),
            503 => (
                "service_unavailable",
                "The service is temporarily unavailable.",
            ),
            504 => ("gateway_timeout", "Gateway timeout."),
            _ => ("server_error", "Server was unable to give you a response."),
        };
        let mut e = Self::new(status, id, message);
        e.injected = true;
        e
    }
}

/// A request id shaped like DigitalOcean's (a UUID), unique per answer.
fn request_id() -> String {
    let a: u128 = rand::random();
    let h = format!("{a:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut resp = Response::new(Body::from(bytes));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            resp
        }
        Err(e) => {
            let mut resp = Response::new(Body::from(format!("serialization failed: {e}")));
            *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            resp
        }
    }
}

impl IntoResponse for DoError {
    fn into_response(self) -> Response {
        let rid = request_id();
        let mut resp = json_response(
            self.status,
            &ErrorBody {
                id: self.id,
                message: &self.message,
                request_id: rid.clone(),
            },
        );
        if let Ok(v) = HeaderValue::from_str(&rid) {
            resp.headers_mut().insert("x-request-id", v);
        }
        resp
    }
}

/// Turns a handler result into a response, counting injected failures.
fn finish(inner: &Inner, r: Result<Response, DoError>) -> Response {
    match r {
        Ok(resp) => resp,
        Err(e) => {
            if e.injected {
                inner.bump(|s| s.faults += 1);
            }
            e.into_response()
        }
    }
}

// ---------------------------------------------------------------------------------------
// Router, middleware
// ---------------------------------------------------------------------------------------

type Shared = State<Arc<Inner>>;

fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/v2/domains/{domain}", get(get_domain))
        .route(
            "/v2/domains/{domain}/records",
            get(list_records).post(create_record),
        )
        .route(
            "/v2/domains/{domain}/records/{id}",
            get(get_record)
                .put(put_record)
                .patch(patch_record)
                .delete(delete_record),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(inner.clone(), gatekeeper))
        .with_state(inner)
}

async fn no_route() -> Response {
    DoError::not_found().into_response()
}

async fn method_not_allowed() -> Response {
    DoError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "The method is not allowed for this resource.",
    )
    .into_response()
}

/// Runs before every endpoint: counts, delays, authenticates, spends the rate budget, applies
/// injected failures, and puts the `ratelimit-*` headers on whatever the answer is.
async fn gatekeeper(State(inner): Shared, req: Request, next: Next) -> Response {
    inner.bump(|s| s.total += 1);
    let delay = lock(&inner.faults).delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    tracing::debug!(method = %req.method(), uri = %req.uri(), "fake digitalocean request");

    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        });
    if token.as_deref() != Some(inner.opts.token.as_str()) {
        inner.bump(|s| s.unauthorized += 1);
        return DoError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unable to authenticate you",
        )
        .into_response();
    }

    let staged = {
        let mut f = lock(&inner.faults);
        (f.rate_limit_left > 0).then(|| {
            f.rate_limit_left -= 1;
            i64::from(f.retry_after_secs)
        })
    };
    let mut budget = spend(&inner);
    if staged.is_some() && budget.refused.is_none() {
        // A staged refusal does not count against the budget (refused requests never do).
        lock(&inner.budget).pop_back();
        budget.remaining = budget.remaining.saturating_add(1);
        budget.refused = Some(staged);
    }
    if let Some(retry_after) = budget.refused {
        inner.bump(|s| s.rate_limited += 1);
        let mut resp = DoError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            "API Rate limit exceeded.",
        )
        .into_response();
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        budget.apply(&mut resp);
        return resp;
    }

    let write = req.method() != Method::GET && req.uri().path().contains("/records");
    let (fail, lose) = {
        let mut f = lock(&inner.faults);
        if f.fail_next_left > 0 {
            f.fail_next_left -= 1;
            (Some(f.fail_next_status), None)
        } else if write && f.lose_left > 0 && f.lose_how.is_some() {
            f.lose_left -= 1;
            (None, f.lose_how)
        } else {
            (None, None)
        }
    };
    let mut resp = if let Some(status) = fail {
        inner.bump(|s| s.faults += 1);
        DoError::injected(status).into_response()
    } else {
        let resp = next.run(req).await;
        match lose {
            None => resp,
            Some(how) => {
                inner.bump(|s| s.answers_lost += 1);
                inner.lost.send_modify(|n| *n += 1);
                match how {
                    LostAnswer::Status(status) => DoError::injected(status).into_response(),
                    LostAnswer::Hang => {
                        inner.shutdown.cancelled().await;
                        DoError::injected(503).into_response()
                    }
                }
            }
        }
    };
    budget.apply(&mut resp);
    resp
}

fn check_domain(inner: &Inner, domain: &str) -> Result<(), DoError> {
    if normalize_fqdn(domain) == inner.opts.domain {
        Ok(())
    } else {
        Err(DoError::not_found())
    }
}

// ---------------------------------------------------------------------------------------
// Domain
// ---------------------------------------------------------------------------------------

#[derive(Serialize)]
struct DomainOut<'a> {
    name: &'a str,
    ttl: u32,
    zone_file: String,
}

#[derive(Serialize)]
struct DomainEnvelope<'a> {
    domain: DomainOut<'a>,
}

/// The zone file DigitalOcean renders for the domain (informational; clients list records).
fn zone_file(domain: &str, records: &BTreeMap<u64, DoRecord>) -> String {
    let mut out = format!("$ORIGIN {domain}.\n$TTL {DEFAULT_TTL}\n");
    for r in records.values() {
        let name = if r.name == "@" {
            format!("{domain}.")
        } else {
            format!("{}.{domain}.", r.name)
        };
        let data = match r.r#type.as_str() {
            "MX" => format!("{} {}", r.priority.unwrap_or(0), r.data),
            "SRV" => format!(
                "{} {} {} {}",
                r.priority.unwrap_or(0),
                r.weight.unwrap_or(0),
                r.port.unwrap_or(0),
                r.data
            ),
            "CAA" => format!(
                "{} {} \"{}\"",
                r.flags.unwrap_or(0),
                r.tag.as_deref().unwrap_or(""),
                r.data
            ),
            _ => r.data.clone(),
        };
        out.push_str(&format!("{name} {} IN {} {data}\n", r.ttl, r.r#type));
    }
    out
}

async fn get_domain(State(inner): Shared, Path(domain): Path<String>) -> Response {
    inner.bump(|s| s.domains += 1);
    let r = check_domain(&inner, &domain).map(|()| {
        let store = inner.store();
        json_response(
            StatusCode::OK,
            &DomainEnvelope {
                domain: DomainOut {
                    name: &inner.opts.domain,
                    ttl: DEFAULT_TTL,
                    zone_file: zone_file(&inner.opts.domain, &store.records),
                },
            },
        )
    });
    finish(&inner, r)
}

// ---------------------------------------------------------------------------------------
// Records: reads
// ---------------------------------------------------------------------------------------

#[derive(Serialize, Default)]
struct Pages {
    #[serde(skip_serializing_if = "Option::is_none")]
    first: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prev: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last: Option<String>,
}

#[derive(Serialize, Default)]
struct Links {
    #[serde(skip_serializing_if = "Option::is_none")]
    pages: Option<Pages>,
}

#[derive(Serialize)]
struct Meta {
    total: usize,
}

#[derive(Serialize)]
struct ListOut<'a> {
    domain_records: Vec<&'a DoRecord>,
    links: Links,
    meta: Meta,
}

#[derive(Serialize)]
struct RecordEnvelope<'a> {
    domain_record: &'a DoRecord,
}

type QueryMap = Result<Query<HashMap<String, String>>, QueryRejection>;

fn parse_u32(q: &HashMap<String, String>, key: &str, default: u32) -> Result<u32, DoError> {
    match q.get(key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u32>()
            .map_err(|_| DoError::bad_request(format!("{key} must be a positive integer"))),
    }
}

async fn list_records(State(inner): Shared, Path(domain): Path<String>, q: QueryMap) -> Response {
    inner.bump(|s| s.list += 1);
    let r = list_inner(&inner, &domain, q);
    finish(&inner, r)
}

fn list_inner(inner: &Inner, domain: &str, q: QueryMap) -> Result<Response, DoError> {
    check_domain(inner, domain)?;
    let Query(q) = q.map_err(|e| DoError::bad_request(format!("invalid query string: {e}")))?;
    let page = parse_u32(&q, "page", 1)?.max(1);
    let per_page = parse_u32(&q, "per_page", DEFAULT_PER_PAGE)?.clamp(1, MAX_PER_PAGE);
    if let Some(&status) = lock(&inner.faults).failing_pages.get(&page) {
        return Err(DoError::injected(status));
    }
    let rtype = q.get("type").map(|t| t.trim().to_ascii_uppercase());
    // `name` is a fully qualified name (`sub.example.com`, `example.com` for the apex).
    let name = q.get("name").map(|n| normalize_fqdn(n));
    let zone = &inner.opts.domain;

    let store = inner.store();
    let matching: Vec<&DoRecord> = store
        .records
        .values()
        .filter(|r| rtype.as_deref().is_none_or(|t| r.r#type == t))
        .filter(|r| name.as_deref().is_none_or(|n| r.fqdn(zone) == n))
        .collect();
    let total = matching.len();
    let per = usize::try_from(per_page).unwrap_or(usize::MAX);
    let start = usize::try_from(page - 1)
        .unwrap_or(usize::MAX)
        .saturating_mul(per);
    let out: Vec<&DoRecord> = matching.into_iter().skip(start).take(per).collect();
    let last_page = u32::try_from(total.div_ceil(per))
        .unwrap_or(u32::MAX)
        .max(1);

    let mut links = Links::default();
    if last_page > 1 || page > 1 {
        // Absolute URLs, carrying the filters, as DigitalOcean writes them.
        let mut extra = String::new();
        if let Some(t) = q.get("type") {
            extra.push_str(&format!("&type={}", encode(t)));
        }
        if let Some(n) = q.get("name") {
            extra.push_str(&format!("&name={}", encode(n)));
        }
        let url = |p: u32| {
            format!(
                "{}/domains/{zone}/records?page={p}&per_page={per_page}{extra}",
                base_url(inner.addr)
            )
        };
        let mut pages = Pages::default();
        if page > 1 {
            pages.first = Some(url(1));
            pages.prev = Some(url((page - 1).min(last_page)));
        }
        if page < last_page {
            pages.next = Some(url(page + 1));
            pages.last = Some(url(last_page));
        }
        links.pages = Some(pages);
    }
    Ok(json_response(
        StatusCode::OK,
        &ListOut {
            domain_records: out,
            links,
            meta: Meta { total },
        },
    ))
}

/// Percent-encodes a query value (unreserved characters kept).
fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_id(id: &str) -> Result<u64, DoError> {
    id.parse::<u64>().map_err(|_| DoError::not_found())
}

async fn get_record(State(inner): Shared, Path((domain, id)): Path<(String, String)>) -> Response {
    inner.bump(|s| s.get += 1);
    let r = (|| {
        check_domain(&inner, &domain)?;
        let id = parse_id(&id)?;
        let store = inner.store();
        let rec = store.records.get(&id).ok_or_else(DoError::not_found)?;
        Ok(json_response(
            StatusCode::OK,
            &RecordEnvelope { domain_record: rec },
        ))
    })();
    finish(&inner, r)
}

// ---------------------------------------------------------------------------------------
// Records: writes
// ---------------------------------------------------------------------------------------

/// Body of POST/PUT/PATCH; every field optional so updates can merge. Numbers are read wide so
/// out-of-range values get DigitalOcean's 422 instead of a parse error.
#[derive(Deserialize, Default)]
struct RecordBody {
    #[serde(rename = "type")]
    rtype: Option<String>,
    name: Option<String>,
    data: Option<String>,
    priority: Option<i64>,
    port: Option<i64>,
    ttl: Option<i64>,
    weight: Option<i64>,
    flags: Option<i64>,
    tag: Option<String>,
}

fn parse_body(body: &Bytes) -> Result<RecordBody, DoError> {
    serde_json::from_slice(body)
        .map_err(|e| DoError::bad_request(format!("The request body is not valid JSON: {e}")))
}

fn ranged(v: Option<i64>, field: &str, lo: i64, hi: i64) -> Result<Option<u32>, DoError> {
    match v {
        None => Ok(None),
        Some(n) if (lo..=hi).contains(&n) => Ok(u32::try_from(n).ok()),
        Some(_) => Err(DoError::invalid(format!(
            "{field} must be between {lo} and {hi}"
        ))),
    }
}

/// `old` (or an empty record for a create) with the fields present in `b` applied.
fn merged(old: Option<&DoRecord>, b: RecordBody, domain: &str) -> Result<DoRecord, DoError> {
    let mut r = old.cloned().unwrap_or_else(|| DoRecord::new("", "", ""));
    if let Some(t) = b.rtype {
        r.r#type = t.trim().to_ascii_uppercase();
    }
    if let Some(n) = b.name {
        r.name = relative_name(&n, domain);
    }
    if let Some(d) = b.data {
        r.data = d;
    }
    if let Some(ttl) = b.ttl {
        if ttl < i64::from(MIN_TTL) {
            return Err(DoError::invalid(format!(
                "Record ttl must be greater than or equal to {MIN_TTL}"
            )));
        }
        r.ttl = u32::try_from(ttl).map_err(|_| DoError::invalid("Record ttl is too large"))?;
    }
    if let Some(p) = ranged(b.priority, "Priority", 0, 65535)? {
        r.priority = Some(p);
    }
    if let Some(p) = ranged(b.port, "Port", 0, 65535)? {
        r.port = Some(p);
    }
    if let Some(w) = ranged(b.weight, "Weight", 0, 65535)? {
        r.weight = Some(w);
    }
    if let Some(f) = ranged(b.flags, "Flags", 0, 255)? {
        r.flags = Some(f);
    }
    if let Some(t) = b.tag {
        r.tag = Some(t);
    }
    Ok(r)
}

fn valid_label_text(name: &str) -> bool {
    name == "@"
        || (!name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*'))
            }))
}

/// Host-name data (CNAME, MX, NS, SRV targets): `@`, or a fully qualified name ending with a dot,
/// which DigitalOcean stores (and answers) without it.
fn host_data(data: &str) -> Result<String, DoError> {
    let d = data.trim().to_ascii_lowercase();
    if d == "@" {
        return Ok(d);
    }
    let Some(abs) = d.strip_suffix('.') else {
        return Err(DoError::invalid("Data needs to end with a dot (.)"));
    };
    if !valid_label_text(abs) {
        return Err(DoError::invalid("Data is not a valid hostname"));
    }
    Ok(abs.to_string())
}

/// DigitalOcean's checks on a record about to be stored (`rec.id` is excluded from clashes);
/// normalizes host-name data in place.
fn validate(store: &Store, rec: &mut DoRecord) -> Result<(), DoError> {
    let t = rec.r#type.clone();
    if t.is_empty() {
        return Err(DoError::invalid("Type can't be blank"));
    }
    if !TYPES.contains(&t.as_str()) {
        return Err(DoError::invalid(format!("Type {t} is not supported")));
    }
    if rec.name.is_empty() && t != "MX" {
        return Err(DoError::invalid("Name can't be blank"));
    }
    if rec.name.is_empty() {
        rec.name = "@".to_string();
    }
    if !valid_label_text(&rec.name) {
        return Err(DoError::invalid("Name is not a valid hostname"));
    }
    if rec.data.trim().is_empty() {
        return Err(DoError::invalid("Data can't be blank"));
    }
    match t.as_str() {
        "A" if rec.data.parse::<Ipv4Addr>().is_err() => {
            return Err(DoError::invalid(
                "IP address did not match IPv4 format (e.g. 127.0.0.1).",
            ));
        }
        "AAAA" if rec.data.parse::<Ipv6Addr>().is_err() => {
            return Err(DoError::invalid(
                "IP address did not match IPv6 format (e.g. 2001:db8::1).",
            ));
        }
        "CNAME" | "NS" => rec.data = host_data(&rec.data)?,
        "MX" => {
            if rec.priority.is_none() {
                return Err(DoError::invalid("Priority can't be blank for MX records"));
            }
            rec.data = host_data(&rec.data)?;
        }
        "SRV" => {
            for (v, f) in [
                (rec.priority, "Priority"),
                (rec.port, "Port"),
                (rec.weight, "Weight"),
            ] {
                if v.is_none() {
                    return Err(DoError::invalid(format!(
                        "{f} can't be blank for SRV records"
                    )));
                }
            }
            rec.data = host_data(&rec.data)?;
        }
        "CAA" => {
            if rec.flags.is_none() {
                return Err(DoError::invalid("Flags can't be blank for CAA records"));
            }
            if !matches!(rec.tag.as_deref(), Some("issue" | "issuewild" | "iodef")) {
                return Err(DoError::invalid(
                    "Tag must be one of issue, issuewild or iodef",
                ));
            }
        }
        _ => {}
    }
    let mut others = store
        .records
        .values()
        .filter(|o| o.id != rec.id && o.name == rec.name);
    let mut clash = false;
    for o in &mut others {
        if o.r#type == rec.r#type
            && o.data == rec.data
            && o.priority == rec.priority
            && o.port == rec.port
            && o.weight == rec.weight
            && o.flags == rec.flags
            && o.tag == rec.tag
        {
            return Err(DoError::invalid("Record already exists"));
        }
        if t == "CNAME" || o.r#type == "CNAME" {
            clash = true;
        }
    }
    if clash {
        return Err(DoError::invalid(
            "CNAME records cannot share a name with other records",
        ));
    }
    Ok(())
}

fn check_name_fault(inner: &Inner, name: &str) -> Result<(), DoError> {
    match lock(&inner.faults).fail_names.get(name) {
        Some(&status) => {
            let mut e = DoError::injected(status);
            e.message = format!("Injected failure for {name}");
            Err(e)
        }
        None => Ok(()),
    }
}

async fn create_record(State(inner): Shared, Path(domain): Path<String>, body: Bytes) -> Response {
    inner.bump(|s| s.create += 1);
    let r = (|| {
        check_domain(&inner, &domain)?;
        let b = parse_body(&body)?;
        let zone = &inner.opts.domain;
        let mut rec = merged(None, b, zone)?;
        if rec.r#type == "SOA" {
            return Err(DoError::invalid("SOA records cannot be created"));
        }
        check_name_fault(&inner, &rec.name)?;
        let mut store = inner.store();
        rec.id = store.next_id;
        validate(&store, &mut rec)?;
        store.insert(rec.clone());
        Ok(json_response(
            StatusCode::CREATED,
            &RecordEnvelope {
                domain_record: &rec,
            },
        ))
    })();
    finish(&inner, r)
}

async fn put_record(
    State(inner): Shared,
    Path((domain, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    update_record(&inner, &domain, &id, &body)
}

async fn patch_record(
    State(inner): Shared,
    Path((domain, id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    update_record(&inner, &domain, &id, &body)
}

/// PUT and PATCH: DigitalOcean sets the attributes given and keeps the others; the type of a
/// record cannot change, and an SOA record only takes a new TTL.
fn update_record(inner: &Inner, domain: &str, id: &str, body: &Bytes) -> Response {
    inner.bump(|s| s.update += 1);
    let r = (|| {
        check_domain(inner, domain)?;
        let id = parse_id(id)?;
        let b = parse_body(body)?;
        let zone = &inner.opts.domain;
        let mut store = inner.store();
        let old = store
            .records
            .get(&id)
            .cloned()
            .ok_or_else(DoError::not_found)?;
        let mut rec = merged(Some(&old), b, zone)?;
        if rec.r#type != old.r#type {
            return Err(DoError::invalid("Type cannot be changed"));
        }
        if old.r#type == "SOA" && (rec.name != old.name || rec.data != old.data) {
            return Err(DoError::invalid("Only the TTL of an SOA record can change"));
        }
        check_name_fault(inner, &old.name)?;
        check_name_fault(inner, &rec.name)?;
        if old.r#type != "SOA" {
            validate(&store, &mut rec)?;
        }
        store.records.insert(id, rec.clone());
        Ok(json_response(
            StatusCode::OK,
            &RecordEnvelope {
                domain_record: &rec,
            },
        ))
    })();
    finish(inner, r)
}

async fn delete_record(
    State(inner): Shared,
    Path((domain, id)): Path<(String, String)>,
) -> Response {
    inner.bump(|s| s.delete += 1);
    let r = (|| {
        check_domain(&inner, &domain)?;
        let id = parse_id(&id)?;
        let mut store = inner.store();
        let old = store.records.get(&id).ok_or_else(DoError::not_found)?;
        if old.r#type == "SOA" {
            return Err(DoError::invalid("SOA records cannot be deleted"));
        }
        check_name_fault(&inner, &old.name)?;
        store.records.remove(&id);
        let mut resp = Response::new(Body::empty());
        *resp.status_mut() = StatusCode::NO_CONTENT;
        Ok(resp)
    })();
    finish(&inner, r)
}
