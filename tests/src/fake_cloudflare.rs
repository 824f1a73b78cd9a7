//! A fake DNS provider that speaks enough of the Cloudflare API v4 for the cache-service
//! to run against it: a real HTTP server on loopback, with one zone, in-memory DNS records,
//! the single-record endpoints, the atomic batch endpoint, pagination, validation errors
//! shaped like Cloudflare's, and fault injection (rate limiting, 5xx answers, failing list
//! pages, refused batches, per-name write failures, latency). Tests and benchmarks use it
//! to exercise the provider client end to end without the network; the `fake-cloudflare`
//! binary serves the same thing for manual runs. [`FakeCloudflareAccount`] serves several
//! zones of one account on one address (each zone a [`FakeCloudflare`] of its own, with its
//! own records, faults and counters), and answers `GET /zones?name=` over all of them.
//!
//! Bodies follow Cloudflare's published record schema: SRV and CAA records are written as
//! a `data` object (SRV: priority, weight, port, target; CAA: flags, tag, value) and their
//! `content` is read-only, so a write carrying `content` for them is refused with a DNS
//! Validation Error, as Cloudflare answers a malformed SRV.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Extension, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Deserializer, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Record types the fake accepts on writes (anything else is a Cloudflare "DNS Validation Error").
const ALLOWED_TYPES: [&str; 8] = ["A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "NS"];
/// The error-chain code Cloudflare answers a malformed SRV write with (under 1004, "DNS
/// Validation Error"); the fake uses it for SRV and CAA writes that are not a valid `data`.
const CODE_BAD_DATA: u32 = 9036;
/// Fixed timestamp used for `created_on` / `modified_on`: the fake does not track time.
const TIMESTAMP: &str = "2024-01-01T00:00:00.000000Z";
/// Cloudflare's default `per_page` for `dns_records`.
const DEFAULT_PER_PAGE: u32 = 100;

/// Configuration of a fake: what it accepts and how it caps requests. Exists so tests can
/// reproduce Cloudflare's limits (page size, batch size) at whatever scale they need.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// The only bearer token accepted; anything else is refused with code 9109.
    pub token: String,
    /// The single zone served, e.g. `example.com`.
    pub zone_name: String,
    /// Identifier of the zone (32 lowercase hex characters by default, derived from the name).
    pub zone_id: String,
    /// Largest `per_page` honoured by the list endpoint (default 5000).
    pub max_per_page: u32,
    /// When true, a `per_page` above `max_per_page` is refused (HTTP 400, code 1004) instead
    /// of being capped silently (default false).
    pub refuse_over_max_per_page: bool,
    /// Largest number of operations (all kinds together) accepted in one batch (default 200);
    /// a bigger batch is refused as a whole (HTTP 400, code 1004).
    pub max_batch: usize,
}

impl FakeOptions {
    /// Options with Cloudflare-like defaults for the given token and zone, so tests only
    /// spell out what they change.
    pub fn new(token: &str, zone_name: &str) -> Self {
        let zone_name = normalize_name(zone_name);
        Self {
            token: token.to_string(),
            zone_id: default_zone_id(&zone_name),
            zone_name,
            max_per_page: 5000,
            refuse_over_max_per_page: false,
            max_batch: 200,
        }
    }
}

/// A DNS record as the fake stores it. Tests use it to seed the provider's state and to
/// inspect what the client under test did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FakeRecord {
    /// Record identifier; leave empty when inserting to get a random 32-hex-char id.
    pub id: String,
    /// Record type (`A`, `AAAA`, `CNAME`, `TXT`, `MX`, ...).
    pub r#type: String,
    /// Fully qualified record name, without trailing dot (e.g. `www.example.com`).
    pub name: String,
    /// Record content (address, target, text, ...).
    pub content: String,
    /// TTL in seconds, 1 meaning "automatic".
    pub ttl: u32,
    /// Whether the record is proxied through Cloudflare.
    pub proxied: bool,
    /// Priority, meaningful for MX and SRV only.
    pub priority: Option<u32>,
    /// Free-form comment (TrafegoDNS may use it to mark ownership).
    pub comment: Option<String>,
}

impl FakeRecord {
    /// A record with an empty id (generated on insert), TTL 1 (automatic), not proxied, no
    /// priority and no comment: the common case in tests.
    pub fn new(rtype: &str, name: &str, content: &str) -> Self {
        Self {
            id: String::new(),
            r#type: rtype.to_string(),
            name: name.to_string(),
            content: content.to_string(),
            ttl: 1,
            proxied: false,
            priority: None,
            comment: None,
        }
    }
}

/// Request counters, so tests can assert how many calls of each kind a client made
/// (e.g. that a batch replaced N single writes, or that a 429 was retried once).
///
/// `total` counts every HTTP request. `unauthorized`, `rate_limited` count requests refused
/// before reaching an endpoint; `faults` counts every injected failure (`fail_next`,
/// `fail_list_page`, `refuse_batches`, `fail_writes_for_name`). The per-endpoint counters
/// (`zones`, `list`, `get`, `create`, `update`, `delete`, `batch`) count requests that got
/// past authentication, rate limiting and `fail_next`, whatever their outcome; `batch_ops`
/// adds the number of operations in each such batch request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FakeStats {
    /// Every request received.
    pub total: u64,
    /// `GET /zones` and `GET /zones/{id}`.
    pub zones: u64,
    /// `GET /zones/{id}/dns_records`.
    pub list: u64,
    /// `GET /zones/{id}/dns_records/{rid}`.
    pub get: u64,
    /// `POST /zones/{id}/dns_records`.
    pub create: u64,
    /// `PUT` and `PATCH /zones/{id}/dns_records/{rid}`.
    pub update: u64,
    /// `DELETE /zones/{id}/dns_records/{rid}`.
    pub delete: u64,
    /// `POST /zones/{id}/dns_records/batch`.
    pub batch: u64,
    /// Operations contained in batch requests.
    pub batch_ops: u64,
    /// Requests answered 429 by `rate_limit_next`.
    pub rate_limited: u64,
    /// Requests answered with an injected failure.
    pub faults: u64,
    /// Requests refused for a missing, malformed or wrong token.
    pub unauthorized: u64,
    /// Writes applied whose answer was then lost (`lose_write_answers`).
    pub answers_lost: u64,
}

/// One write the fake applied, in the order applied (`write_log`): tests check from it
/// who changed what (each caller its own token, `accept_token`) and which writes went in
/// one request (a record and its ownership marker in one batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeWrite {
    /// The number of the HTTP request that applied it (1, 2, ...): writes of one batch
    /// share it.
    pub request: u64,
    /// The bearer token of that request.
    pub token: String,
    /// `create`, `update` or `delete`.
    pub op: &'static str,
    /// The record's id.
    pub id: String,
    /// The record's type.
    pub rtype: String,
    /// The record's name (for a delete, the name it had).
    pub name: String,
    /// The record's content (for a delete, the content it had).
    pub content: String,
    /// The record's comment.
    pub comment: Option<String>,
}

/// The caller of a request, as the gatekeeper authenticated it.
#[derive(Debug, Clone)]
struct Caller(String);

/// How a write's answer is lost after the write was applied (`lose_write_answers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostAnswer {
    /// The client gets this HTTP status (e.g. 502) with an error body, as from
    /// a proxy that lost the origin's answer.
    Status(u16),
    /// The answer never comes: the connection stays open until the client
    /// gives up (its timeout) or dies.
    Hang,
}

/// Handle on a running fake Cloudflare API. Cheap to clone; every clone controls the same
/// server. Seeding and inspection methods are synchronous and act on the live state.
#[derive(Clone)]
pub struct FakeCloudflare {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for FakeCloudflare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCloudflare")
            .field("addr", &self.inner.addr)
            .field("zone_name", &self.inner.opts.zone_name)
            .field("zone_id", &self.inner.opts.zone_id)
            .finish()
    }
}

struct Inner {
    opts: FakeOptions,
    addr: SocketAddr,
    store: RwLock<Store>,
    faults: Mutex<Faults>,
    stats: Mutex<FakeStats>,
    shutdown: CancellationToken,
    /// Bumped each time a write's answer is lost, for tests to wait on.
    lost: tokio::sync::watch::Sender<u64>,
    /// Bumped each time a counter changes, for tests to wait on.
    counted: tokio::sync::watch::Sender<u64>,
    /// Tokens accepted besides `opts.token` (`accept_token`).
    tokens: Mutex<Vec<String>>,
    /// Every write applied, and the number of write requests that applied any.
    writes: Mutex<(u64, Vec<FakeWrite>)>,
    /// Listing requests by bearer token (`lists_by`).
    lists_by: Mutex<HashMap<String, u64>>,
}

/// Records by id (ordered, so pages are stable) plus an index name -> ids (each list kept
/// sorted), and a fast id generator (seeding 100k records must be cheap even unoptimized).
struct Store {
    records: BTreeMap<String, FakeRecord>,
    by_name: BTreeMap<String, Vec<String>>,
    id_state: u64,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            records: BTreeMap::new(),
            by_name: BTreeMap::new(),
            id_state: rand::random(),
        }
    }
}

#[derive(Default, Clone)]
struct Faults {
    failing_pages: HashMap<u32, u16>,
    rate_limit_left: u32,
    retry_after_secs: u32,
    fail_next_left: u32,
    fail_next_status: u16,
    delay: Duration,
    refuse_batches: bool,
    /// Normalized record name -> (Cloudflare error code, HTTP status).
    fail_names: HashMap<String, (u32, u16)>,
    /// Writes whose answer is still to be lost, and how.
    lose_left: u32,
    lose_how: Option<LostAnswer>,
}

impl Store {
    /// Inserts or replaces by id, keeping the name index right; returns the previous record.
    fn put(&mut self, rec: FakeRecord) -> Option<FakeRecord> {
        let id = rec.id.clone();
        let name = rec.name.clone();
        let old = self.records.insert(id.clone(), rec);
        if let Some(old) = &old {
            self.unindex(&old.name, &old.id);
        }
        let ids = self.by_name.entry(name).or_default();
        if let Err(at) = ids.binary_search(&id) {
            ids.insert(at, id);
        }
        old
    }

    fn unindex(&mut self, name: &str, id: &str) {
        if let Some(ids) = self.by_name.get_mut(name) {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.by_name.remove(name);
            }
        }
    }

    fn remove(&mut self, id: &str) -> Option<FakeRecord> {
        let old = self.records.remove(id)?;
        self.unindex(&old.name, id);
        Some(old)
    }

    /// SplitMix64 step: statistically random enough for ids, and cheap in debug builds.
    fn next_u64(&mut self) -> u64 {
        self.id_state = self.id_state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.id_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A fresh random id: 32 lowercase hex characters. SplitMix64 is a bijection of its
    /// counter, so ids generated by one store never repeat (no lookup needed).
    fn new_id(&mut self) -> String {
        format!("{:016x}{:016x}", self.next_u64(), self.next_u64())
    }

    fn named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a FakeRecord> + 'a {
        self.by_name
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|id| self.records.get(id))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn read(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|e| e.into_inner())
    }
    fn write(&self) -> RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(|e| e.into_inner())
    }
    /// Logs the writes one request applied: `(op, record)` in order.
    fn log(&self, caller: &Caller, ops: Vec<(&'static str, &FakeRecord)>) {
        if ops.is_empty() {
            return;
        }
        let mut w = lock(&self.writes);
        w.0 += 1;
        let request = w.0;
        for (op, r) in ops {
            w.1.push(FakeWrite {
                request,
                token: caller.0.clone(),
                op,
                id: r.id.clone(),
                rtype: r.r#type.clone(),
                name: r.name.clone(),
                content: r.content.clone(),
                comment: r.comment.clone(),
            });
        }
    }

    fn bump(&self, f: impl FnOnce(&mut FakeStats)) {
        f(&mut lock(&self.stats));
        self.counted.send_modify(|n| *n = n.wrapping_add(1));
    }
}

fn new_inner(opts: FakeOptions, addr: SocketAddr, shutdown: CancellationToken) -> Arc<Inner> {
    Arc::new(Inner {
        opts,
        addr,
        store: RwLock::new(Store::default()),
        faults: Mutex::new(Faults::default()),
        stats: Mutex::new(FakeStats::default()),
        shutdown,
        lost: tokio::sync::watch::channel(0).0,
        counted: tokio::sync::watch::channel(0).0,
        tokens: Mutex::new(Vec::new()),
        writes: Mutex::new((0, Vec::new())),
        lists_by: Mutex::new(HashMap::new()),
    })
}

impl FakeCloudflare {
    /// Binds 127.0.0.1 on a free port and starts serving. The socket is bound before this
    /// returns, so requests can be sent right away (no sleeps, no race).
    pub async fn start(opts: FakeOptions) -> std::io::Result<FakeCloudflare> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        Self::start_on(listener, opts).await
    }

    /// Starts serving on an already bound listener (for a fixed address, as the binary does).
    pub async fn start_on(
        listener: TcpListener,
        opts: FakeOptions,
    ) -> std::io::Result<FakeCloudflare> {
        let addr = listener.local_addr()?;
        let inner = new_inner(opts, addr, CancellationToken::new());
        let app = router(inner.clone());
        let stop = inner.shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "fake cloudflare server stopped");
            }
        });
        Ok(FakeCloudflare { inner })
    }

    /// The API base URL to give the client under test: `http://127.0.0.1:PORT/client/v4`.
    pub fn base_url(&self) -> String {
        let mut addr = self.inner.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        format!("http://{addr}/client/v4")
    }

    /// The socket address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The zone identifier the fake serves, for assertions and for clients configured by id.
    pub fn zone_id(&self) -> String {
        self.inner.opts.zone_id.clone()
    }

    /// The zone name the fake serves.
    pub fn zone_name(&self) -> String {
        self.inner.opts.zone_name.clone()
    }

    /// Stops accepting connections and lets in-flight requests finish (graceful). The server
    /// also stops when the tokio runtime that started it shuts down.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Seeds one record as-is (no validation, no name expansion), as if created earlier at
    /// the provider. An empty id gets a random one; an existing id is replaced. Returns the id.
    pub fn insert(&self, r: FakeRecord) -> String {
        let mut store = self.inner.write();
        insert_locked(&mut store, r)
    }

    /// Seeds many records under one lock (fast: 100k records in well under a second).
    /// Same rules as [`FakeCloudflare::insert`]; returns the ids in input order.
    pub fn insert_many(&self, rs: Vec<FakeRecord>) -> Vec<String> {
        let mut store = self.inner.write();
        rs.into_iter()
            .map(|r| insert_locked(&mut store, r))
            .collect()
    }

    /// Accepts `token` too (besides `FakeOptions::token`), so several clients can share
    /// the fake and the write log tells them apart.
    pub fn accept_token(&self, token: &str) {
        lock(&self.inner.tokens).push(token.to_string());
    }

    /// Listing requests (`GET /zones/{id}/dns_records`) made with `token`, so tests
    /// sharing the fake between clients (each its own token) tell who listed.
    pub fn lists_by(&self, token: &str) -> u64 {
        lock(&self.inner.lists_by).get(token).copied().unwrap_or(0)
    }

    /// Every write applied so far, in order (see [`FakeWrite`]).
    pub fn write_log(&self) -> Vec<FakeWrite> {
        lock(&self.inner.writes).1.clone()
    }

    /// Every record, sorted by id: what the provider holds now.
    pub fn records(&self) -> Vec<FakeRecord> {
        self.inner.read().records.values().cloned().collect()
    }

    /// One record by id.
    pub fn get(&self, id: &str) -> Option<FakeRecord> {
        self.inner.read().records.get(id).cloned()
    }

    /// Deletes a record behind the client's back ("someone else" at the provider). Returns
    /// whether it existed.
    pub fn remove(&self, id: &str) -> bool {
        self.inner.write().remove(id).is_some()
    }

    /// Edits a record's content behind the client's back. Returns whether it existed.
    pub fn update_content(&self, id: &str, content: &str) -> bool {
        match self.inner.write().records.get_mut(id) {
            Some(r) => {
                r.content = content.to_string();
                true
            }
            None => false,
        }
    }

    /// Number of records held.
    pub fn count(&self) -> usize {
        self.inner.read().records.len()
    }

    /// Makes every `GET` of page `page` of `dns_records` (whatever the filters) answer
    /// `status` with a Cloudflare error body, until [`FakeCloudflare::clear_faults`].
    pub fn fail_list_page(&self, page: u32, status: u16) {
        lock(&self.inner.faults).failing_pages.insert(page, status);
    }

    /// Removes every injected fault: failing pages, pending rate limits and failures,
    /// delay, refused batches and per-name write failures.
    pub fn clear_faults(&self) {
        *lock(&self.inner.faults) = Faults::default();
    }

    /// The next `n` authenticated requests (any endpoint) answer 429 with a `Retry-After`
    /// header of `retry_after_secs` and error code 971, as Cloudflare's rate limiter does.
    pub fn rate_limit_next(&self, n: u32, retry_after_secs: u32) {
        let mut f = lock(&self.inner.faults);
        f.rate_limit_left = n;
        f.retry_after_secs = retry_after_secs;
    }

    /// The next `n` authenticated requests (after any pending rate limit) answer `status`
    /// (e.g. 500, 502, 503) with a Cloudflare error body, without touching the state.
    pub fn fail_next(&self, n: u32, status: u16) {
        let mut f = lock(&self.inner.faults);
        f.fail_next_left = n;
        f.fail_next_status = status;
    }

    /// Delays every answer by `d` (slept before the request is processed); zero disables.
    pub fn set_delay(&self, d: Duration) {
        lock(&self.inner.faults).delay = d;
    }

    /// While set, the batch endpoint refuses every batch as a whole (HTTP 400, code 1004
    /// "batch refused"), so clients must fall back to single-record calls.
    pub fn refuse_batches(&self, refuse: bool) {
        lock(&self.inner.faults).refuse_batches = refuse;
    }

    /// Writes touching record name `name` (create, update from or to it, delete), single or
    /// in a batch, fail with Cloudflare error `code` and HTTP `status`. In a batch, the
    /// whole batch fails and nothing changes (Cloudflare batches are atomic).
    pub fn fail_writes_for_name(&self, name: &str, code: u32, status: u16) {
        lock(&self.inner.faults)
            .fail_names
            .insert(normalize_name(name), (code, status));
    }

    /// The next `n` writes (create, update, delete, batch) are applied, and
    /// then their answer is lost as `how` says: what a client sees when a
    /// timeout or a broken connection hits after Cloudflare did the work.
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

    /// Waits until the request counters satisfy `pred` (e.g. a first batch
    /// arrived), without polling on a timer.
    pub async fn wait_stats(&self, pred: impl Fn(&FakeStats) -> bool) {
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
    pub fn stats(&self) -> FakeStats {
        lock(&self.inner.stats).clone()
    }

    /// Zeroes the request counters (e.g. after seeding through the API).
    pub fn reset_stats(&self) {
        *lock(&self.inner.stats) = FakeStats::default();
    }
}

fn insert_locked(store: &mut Store, mut r: FakeRecord) -> String {
    if r.id.is_empty() {
        r.id = store.new_id();
    }
    let id = r.id.clone();
    store.put(r);
    id
}

/// Lowercase, without trailing dot: how Cloudflare stores names.
fn normalize_name(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Cloudflare expands names relative to the zone: `@` is the apex, `www` is `www.<zone>`.
fn expand_name(name: &str, zone: &str) -> String {
    let n = normalize_name(name);
    if n == "@" || n.is_empty() {
        zone.to_string()
    } else if n == zone || n.ends_with(&format!(".{zone}")) {
        n
    } else {
        format!("{n}.{zone}")
    }
}

/// A stable 32-hex-char id derived from the zone name (two FNV-1a 64-bit hashes).
fn default_zone_id(zone: &str) -> String {
    let fnv = |seed: u64| {
        zone.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    };
    format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x84222325_cbf29ce4)
    )
}

// ---------------------------------------------------------------------------------------
// Envelopes and errors
// ---------------------------------------------------------------------------------------

#[derive(Serialize)]
struct ErrorItem {
    code: u32,
    message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    error_chain: Vec<ErrorItem>,
}

#[derive(Serialize)]
struct ResultInfo {
    page: u32,
    per_page: u32,
    count: usize,
    total_count: usize,
    total_pages: usize,
}

#[derive(Serialize)]
struct Envelope<T: Serialize> {
    success: bool,
    errors: Vec<ErrorItem>,
    messages: [u8; 0],
    result: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    result_info: Option<ResultInfo>,
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut resp = Response::new(Body::from(bytes));
            *resp.status_mut() = status;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
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

fn ok<T: Serialize>(result: T) -> Response {
    ok_paged(result, None)
}

fn ok_paged<T: Serialize>(result: T, result_info: Option<ResultInfo>) -> Response {
    json_response(
        StatusCode::OK,
        &Envelope {
            success: true,
            errors: Vec::new(),
            messages: [],
            result,
            result_info,
        },
    )
}

/// A Cloudflare error answer; `injected` marks failures caused by fault injection.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    code: u32,
    message: String,
    chain: Vec<(u32, String)>,
    injected: bool,
}

impl ApiError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            chain: Vec::new(),
            injected: false,
        }
    }
    fn bad(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    fn validation(detail: impl Into<String>) -> Self {
        let mut e = Self::bad(1004, "DNS Validation Error");
        e.chain.push((1004, detail.into()));
        e
    }
    /// A SRV or CAA write that is not a valid `data` object (or carries the read-only
    /// `content`): 1004 "DNS Validation Error" with the SRV code in the chain.
    fn bad_data(detail: impl Into<String>) -> Self {
        let mut e = Self::bad(1004, "DNS Validation Error");
        e.chain.push((CODE_BAD_DATA, detail.into()));
        e
    }
    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, 81044, "Record does not exist.")
    }
    fn injected(status: u16) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let reason = status.canonical_reason().unwrap_or("Error");
        let code = match status.as_u16() {
            429 => 971,
            401 | 403 => 10000,
            500..=599 => 10001,
            _ => 1004,
        };
        let mut e = Self::new(status, code, format!("{reason} (injected)"));
        e.injected = true;
        e
    }
    fn injected_code(status: u16, code: u32, message: String) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut e = Self::new(status, code, message);
        e.injected = true;
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let item = ErrorItem {
            code: self.code,
            message: self.message,
            error_chain: self
                .chain
                .into_iter()
                .map(|(code, message)| ErrorItem {
                    code,
                    message,
                    error_chain: Vec::new(),
                })
                .collect(),
        };
        json_response(
            self.status,
            &Envelope {
                success: false,
                errors: vec![item],
                messages: [],
                result: (),
                result_info: None,
            },
        )
    }
}

// ---------------------------------------------------------------------------------------
// Router, middleware
// ---------------------------------------------------------------------------------------

type Shared = State<Arc<Inner>>;

fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/client/v4/zones", get(list_zones))
        .route("/client/v4/zones/{zone_id}", get(get_zone))
        .route(
            "/client/v4/zones/{zone_id}/dns_records",
            get(list_records).post(create_record),
        )
        .route(
            "/client/v4/zones/{zone_id}/dns_records/batch",
            post(batch_records),
        )
        .route(
            "/client/v4/zones/{zone_id}/dns_records/{record_id}",
            get(get_record)
                .put(put_record)
                .patch(patch_record)
                .delete(delete_record),
        )
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        // Large batches (benchmarks raise `max_batch`) must reach the handler.
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
        .layer(middleware::from_fn_with_state(inner.clone(), gatekeeper))
        .with_state(inner)
}

async fn no_route() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, 7000, "No route for that URI").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        7001,
        "Method not allowed for this route",
    )
    .into_response()
}

/// Runs before every endpoint: counts, delays, authenticates, then applies the pending
/// rate limit and injected failures, in that order.
async fn gatekeeper(State(inner): Shared, mut req: Request, next: Next) -> Response {
    inner.bump(|s| s.total += 1);
    let delay = lock(&inner.faults).delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    tracing::debug!(method = %req.method(), uri = %req.uri(), "fake cloudflare request");

    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        });
    match auth {
        None => {
            inner.bump(|s| s.unauthorized += 1);
            let mut e = ApiError::bad(6003, "Invalid request headers");
            e.chain
                .push((6111, "Invalid format for Authorization header".into()));
            return e.into_response();
        }
        Some(token) if token != inner.opts.token && !lock(&inner.tokens).contains(&token) => {
            inner.bump(|s| s.unauthorized += 1);
            return ApiError::new(StatusCode::FORBIDDEN, 9109, "Invalid access token")
                .into_response();
        }
        Some(token) => {
            req.extensions_mut().insert(Caller(token));
        }
    }

    enum Gate {
        Pass,
        RateLimited(u32),
        Fail(u16),
    }
    let gate = {
        let mut f = lock(&inner.faults);
        if f.rate_limit_left > 0 {
            f.rate_limit_left -= 1;
            Gate::RateLimited(f.retry_after_secs)
        } else if f.fail_next_left > 0 {
            f.fail_next_left -= 1;
            Gate::Fail(f.fail_next_status)
        } else {
            Gate::Pass
        }
    };
    let write = req.method() != Method::GET && req.uri().path().contains("/dns_records");
    let lose = {
        let mut f = lock(&inner.faults);
        match (&gate, f.lose_how) {
            (Gate::Pass, Some(how)) if write && f.lose_left > 0 => {
                f.lose_left -= 1;
                Some(how)
            }
            _ => None,
        }
    };
    match gate {
        Gate::Pass => {
            let resp = next.run(req).await;
            let Some(how) = lose else {
                return resp;
            };
            inner.bump(|s| s.answers_lost += 1);
            inner.lost.send_modify(|n| *n += 1);
            match how {
                LostAnswer::Status(status) => ApiError::injected(status).into_response(),
                LostAnswer::Hang => {
                    inner.shutdown.cancelled().await;
                    ApiError::injected(503).into_response()
                }
            }
        }
        Gate::RateLimited(secs) => {
            inner.bump(|s| s.rate_limited += 1);
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                971,
                "Please wait and consider throttling your request speed",
            )
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            resp
        }
        Gate::Fail(status) => {
            inner.bump(|s| s.faults += 1);
            ApiError::injected(status).into_response()
        }
    }
}

/// Turns a handler result into a response, counting injected failures.
fn finish(inner: &Inner, r: Result<Response, ApiError>) -> Response {
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

fn check_zone(inner: &Inner, zone_id: &str, suffix: &str) -> Result<(), ApiError> {
    if zone_id == inner.opts.zone_id {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            7003,
            format!(
                "Could not route to /zones/{zone_id}{suffix}, perhaps your object identifier is invalid?"
            ),
        ))
    }
}

type QueryMap = Result<Query<HashMap<String, String>>, QueryRejection>;

fn query_map(q: QueryMap) -> Result<HashMap<String, String>, ApiError> {
    q.map(|Query(m)| m)
        .map_err(|e| ApiError::bad(1004, format!("Invalid query string: {e}")))
}

fn parse_u32(q: &HashMap<String, String>, key: &str, default: u32) -> Result<u32, ApiError> {
    match q.get(key) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<u32>()
            .map_err(|_| ApiError::bad(1004, format!("Invalid value for {key}: {v}"))),
    }
}

// ---------------------------------------------------------------------------------------
// Zones
// ---------------------------------------------------------------------------------------

#[derive(Serialize)]
struct ZoneOut<'a> {
    id: &'a str,
    name: &'a str,
    status: &'static str,
    paused: bool,
    #[serde(rename = "type")]
    ztype: &'static str,
    name_servers: [&'static str; 2],
}

fn zone_out(opts: &FakeOptions) -> ZoneOut<'_> {
    ZoneOut {
        id: &opts.zone_id,
        name: &opts.zone_name,
        status: "active",
        paused: false,
        ztype: "full",
        name_servers: ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"],
    }
}

async fn list_zones(State(inner): Shared, q: QueryMap) -> Response {
    inner.bump(|s| s.zones += 1);
    let r = (|| {
        let q = query_map(q)?;
        let matches = q
            .get("name")
            .is_none_or(|n| normalize_name(n) == inner.opts.zone_name);
        let zones: Vec<ZoneOut<'_>> = if matches {
            vec![zone_out(&inner.opts)]
        } else {
            Vec::new()
        };
        let info = ResultInfo {
            page: 1,
            per_page: 20,
            count: zones.len(),
            total_count: zones.len(),
            total_pages: usize::from(!zones.is_empty()),
        };
        Ok(ok_paged(zones, Some(info)))
    })();
    finish(&inner, r)
}

async fn get_zone(State(inner): Shared, Path(zone_id): Path<String>) -> Response {
    inner.bump(|s| s.zones += 1);
    let r = check_zone(&inner, &zone_id, "").map(|()| ok(zone_out(&inner.opts)));
    finish(&inner, r)
}

// ---------------------------------------------------------------------------------------
// DNS records: reads
// ---------------------------------------------------------------------------------------

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct RecordOut<'a> {
    id: &'a str,
    zone_id: &'a str,
    zone_name: &'a str,
    name: &'a str,
    #[serde(rename = "type")]
    rtype: &'a str,
    content: &'a str,
    proxiable: bool,
    proxied: bool,
    ttl: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<u32>,
    /// SRV and CAA only: the components of `content`, as Cloudflare reports them.
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<serde_json::Value>,
    comment: Option<&'a str>,
    tags: [u8; 0],
    created_on: &'static str,
    modified_on: &'static str,
    meta: Empty,
    settings: Empty,
}

fn record_out<'a>(opts: &'a FakeOptions, r: &'a FakeRecord) -> RecordOut<'a> {
    RecordOut {
        id: &r.id,
        zone_id: &opts.zone_id,
        zone_name: &opts.zone_name,
        name: &r.name,
        rtype: &r.r#type,
        content: &r.content,
        proxiable: proxiable(&r.r#type),
        proxied: r.proxied,
        ttl: r.ttl,
        priority: if matches!(r.r#type.as_str(), "MX" | "SRV" | "URI") {
            r.priority
        } else {
            None
        },
        data: data_of(r),
        comment: r.comment.as_deref(),
        tags: [],
        created_on: TIMESTAMP,
        modified_on: TIMESTAMP,
        meta: Empty {},
        settings: Empty {},
    }
}

fn records_out<'a>(opts: &'a FakeOptions, rs: &'a [FakeRecord]) -> Vec<RecordOut<'a>> {
    rs.iter().map(|r| record_out(opts, r)).collect()
}

fn proxiable(rtype: &str) -> bool {
    matches!(rtype, "A" | "AAAA" | "CNAME")
}

async fn list_records(
    State(inner): Shared,
    Extension(caller): Extension<Caller>,
    Path(zone_id): Path<String>,
    q: QueryMap,
) -> Response {
    *lock(&inner.lists_by).entry(caller.0.clone()).or_default() += 1;
    inner.bump(|s| s.list += 1);
    let r = list_records_inner(&inner, &zone_id, q);
    finish(&inner, r)
}

fn list_records_inner(inner: &Inner, zone_id: &str, q: QueryMap) -> Result<Response, ApiError> {
    check_zone(inner, zone_id, "/dns_records")?;
    let q = query_map(q)?;
    let page = parse_u32(&q, "page", 1)?;
    if page == 0 {
        return Err(ApiError::bad(1004, "page must be at least 1"));
    }
    let max = inner.opts.max_per_page.max(1);
    // The default never trips the refusal, even with a tiny `max_per_page`.
    let mut per_page = parse_u32(&q, "per_page", DEFAULT_PER_PAGE.min(max))?;
    if per_page == 0 {
        return Err(ApiError::bad(1004, "per_page must be at least 1"));
    }
    if per_page > max {
        if inner.opts.refuse_over_max_per_page {
            return Err(ApiError::bad(
                1004,
                format!("per_page must be at most {max}"),
            ));
        }
        per_page = max;
    }
    if let Some(&status) = lock(&inner.faults).failing_pages.get(&page) {
        return Err(ApiError::injected(status));
    }

    let name = q
        .get("name.exact")
        .or_else(|| q.get("name"))
        .map(|n| normalize_name(n));
    let rtype = q.get("type").map(|t| t.trim().to_ascii_uppercase());
    let content = q.get("content.exact").or_else(|| q.get("content")).cloned();

    // u32 to usize never truncates on the platforms the fake runs on; saturate anyway.
    let (page_n, size) = (
        usize::try_from(page).unwrap_or(usize::MAX),
        usize::try_from(per_page).unwrap_or(usize::MAX),
    );
    let store = inner.read();
    let keep = |r: &FakeRecord| {
        rtype.as_deref().is_none_or(|t| r.r#type == t)
            && content.as_deref().is_none_or(|c| r.content == c)
    };
    let start = (page_n - 1).saturating_mul(size);
    let end = start.saturating_add(size);
    let mut total = 0usize;
    let mut out: Vec<RecordOut<'_>> = Vec::new();
    match &name {
        Some(n) => {
            for r in store.named(n).filter(|r| keep(r)) {
                if (start..end).contains(&total) {
                    out.push(record_out(&inner.opts, r));
                }
                total += 1;
            }
        }
        None if rtype.is_none() && content.is_none() => {
            total = store.records.len();
            out.extend(
                store
                    .records
                    .values()
                    .skip(start)
                    .take(size)
                    .map(|r| record_out(&inner.opts, r)),
            );
        }
        None => {
            for r in store.records.values().filter(|r| keep(r)) {
                if (start..end).contains(&total) {
                    out.push(record_out(&inner.opts, r));
                }
                total += 1;
            }
        }
    }
    let info = ResultInfo {
        page,
        per_page,
        count: out.len(),
        total_count: total,
        total_pages: total.div_ceil(size),
    };
    Ok(ok_paged(out, Some(info)))
}

async fn get_record(
    State(inner): Shared,
    Path((zone_id, record_id)): Path<(String, String)>,
) -> Response {
    inner.bump(|s| s.get += 1);
    let r = (|| {
        check_zone(&inner, &zone_id, &format!("/dns_records/{record_id}"))?;
        let store = inner.read();
        let rec = store
            .records
            .get(&record_id)
            .ok_or_else(ApiError::not_found)?;
        Ok(ok(record_out(&inner.opts, rec)))
    })();
    finish(&inner, r)
}

// ---------------------------------------------------------------------------------------
// DNS records: writes (shared by the single-record endpoints and the batch endpoint)
// ---------------------------------------------------------------------------------------

/// Body of POST/PUT/PATCH and of batch operations; every field optional so PATCH can merge.
#[derive(Deserialize, Default)]
struct RecordBody {
    id: Option<String>,
    #[serde(rename = "type")]
    rtype: Option<String>,
    name: Option<String>,
    content: Option<String>,
    ttl: Option<u32>,
    proxied: Option<bool>,
    priority: Option<u32>,
    /// SRV and CAA: the record's components (their `content` is read-only).
    data: Option<serde_json::Value>,
    /// Absent -> None, null -> Some(None), string -> Some(Some(..)).
    #[serde(default, deserialize_with = "double_option")]
    comment: Option<Option<String>>,
}

fn double_option<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

#[derive(Deserialize, Default)]
struct BatchBody {
    #[serde(default)]
    deletes: Option<Vec<IdOnly>>,
    #[serde(default)]
    patches: Option<Vec<RecordBody>>,
    #[serde(default)]
    puts: Option<Vec<RecordBody>>,
    #[serde(default)]
    posts: Option<Vec<RecordBody>>,
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let mut err = ApiError::bad(9207, "Request body is invalid.");
        err.chain.push((9207, e.to_string()));
        err
    })
}

/// What a write needs besides the store: the zone (for name expansion) and the per-name
/// injected failures (snapshotted before taking the store lock).
struct WriteCtx<'a> {
    zone: &'a str,
    fail_names: HashMap<String, (u32, u16)>,
}

impl WriteCtx<'_> {
    fn new(inner: &Inner) -> WriteCtx<'_> {
        WriteCtx {
            zone: &inner.opts.zone_name,
            fail_names: lock(&inner.faults).fail_names.clone(),
        }
    }

    fn check_name(&self, name: &str) -> Result<(), ApiError> {
        if self.fail_names.is_empty() {
            return Ok(());
        }
        match self.fail_names.get(&normalize_name(name)) {
            Some(&(code, status)) => Err(ApiError::injected_code(
                status,
                code,
                format!("Injected failure for {name}"),
            )),
            None => Ok(()),
        }
    }

    /// A complete record from a POST/PUT body (type, name and content required).
    fn full(&self, id: String, b: RecordBody) -> Result<FakeRecord, ApiError> {
        let rtype = b
            .rtype
            .ok_or_else(|| ApiError::validation("type is required"))?;
        let name = b
            .name
            .ok_or_else(|| ApiError::validation("name is required"))?;
        let rtype = rtype.trim().to_ascii_uppercase();
        let (content, priority) = if has_data(&rtype) {
            refuse_content(&rtype, b.content.is_some())?;
            let data = b.data.as_ref().ok_or_else(|| {
                ApiError::bad_data(format!("data is required for {rtype} records"))
            })?;
            from_data(&rtype, data)?
        } else {
            let content = b
                .content
                .ok_or_else(|| ApiError::validation("content is required"))?;
            (content, b.priority)
        };
        Ok(FakeRecord {
            id,
            r#type: rtype,
            name: expand_name(&name, self.zone),
            content,
            ttl: b.ttl.unwrap_or(1),
            proxied: b.proxied.unwrap_or(false),
            priority,
            comment: b.comment.flatten(),
        })
    }

    /// `old` with the fields present in a PATCH body replaced.
    fn merged(&self, old: &FakeRecord, b: RecordBody) -> Result<FakeRecord, ApiError> {
        let rtype = b
            .rtype
            .as_ref()
            .map_or_else(|| old.r#type.clone(), |t| t.trim().to_ascii_uppercase());
        let (content, priority) = if has_data(&rtype) {
            refuse_content(&rtype, b.content.is_some())?;
            match &b.data {
                Some(d) => from_data(&rtype, d)?,
                None => (old.content.clone(), old.priority),
            }
        } else {
            (
                b.content.clone().unwrap_or_else(|| old.content.clone()),
                b.priority.or(old.priority),
            )
        };
        Ok(FakeRecord {
            id: old.id.clone(),
            r#type: rtype,
            name: b
                .name
                .map_or_else(|| old.name.clone(), |n| expand_name(&n, self.zone)),
            content,
            ttl: b.ttl.unwrap_or(old.ttl),
            proxied: b.proxied.unwrap_or(old.proxied),
            priority,
            comment: b.comment.unwrap_or_else(|| old.comment.clone()),
        })
    }

    fn create(&self, store: &mut Store, b: RecordBody) -> Result<FakeRecord, ApiError> {
        let rec = self.full(store.new_id(), b)?;
        self.check_name(&rec.name)?;
        validate(store, &rec)?;
        store.put(rec.clone());
        Ok(rec)
    }

    fn replace(
        &self,
        store: &mut Store,
        id: &str,
        new: FakeRecord,
    ) -> Result<FakeRecord, ApiError> {
        let old = store.records.get(id).ok_or_else(ApiError::not_found)?;
        self.check_name(&old.name)?;
        self.check_name(&new.name)?;
        validate(store, &new)?;
        store.put(new.clone());
        Ok(new)
    }

    fn put(&self, store: &mut Store, id: &str, b: RecordBody) -> Result<FakeRecord, ApiError> {
        if !store.records.contains_key(id) {
            return Err(ApiError::not_found());
        }
        let new = self.full(id.to_string(), b)?;
        self.replace(store, id, new)
    }

    fn patch(&self, store: &mut Store, id: &str, b: RecordBody) -> Result<FakeRecord, ApiError> {
        let old = store.records.get(id).ok_or_else(ApiError::not_found)?;
        let new = self.merged(old, b)?;
        self.replace(store, id, new)
    }

    fn delete(&self, store: &mut Store, id: &str) -> Result<FakeRecord, ApiError> {
        let old = store.records.get(id).ok_or_else(ApiError::not_found)?;
        self.check_name(&old.name)?;
        store.remove(id).ok_or_else(ApiError::not_found)
    }
}

/// Whether Cloudflare writes this type as a `data` object, its `content` read-only.
fn has_data(rtype: &str) -> bool {
    matches!(rtype, "SRV" | "CAA")
}

/// Refuses a SRV or CAA body that sets (`has_content`) the read-only `content`.
fn refuse_content(rtype: &str, has_content: bool) -> Result<(), ApiError> {
    if has_content {
        return Err(ApiError::bad_data(format!(
            "content is read-only for {rtype} records; set data instead"
        )));
    }
    Ok(())
}

/// The content (and, for SRV, the priority) a `data` object stands for: SRV
/// `weight port target`, CAA `flags tag "value"`, as Cloudflare formats them.
fn from_data(rtype: &str, d: &serde_json::Value) -> Result<(String, Option<u32>), ApiError> {
    let num = |key: &str, max: u64| {
        d.get(key)
            .and_then(serde_json::Value::as_u64)
            .filter(|n| *n <= max)
            .ok_or_else(|| ApiError::bad_data(format!("data.{key} must be a number up to {max}")))
    };
    let text = |key: &str| {
        d.get(key)
            .and_then(serde_json::Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::bad_data(format!("data.{key} is required")))
    };
    match rtype {
        "SRV" => {
            let priority = num("priority", 65535)?;
            let weight = num("weight", 65535)?;
            let port = num("port", 65535)?;
            let target = text("target")?.trim_end_matches('.');
            let priority = u32::try_from(priority).unwrap_or(u32::MAX);
            Ok((format!("{weight} {port} {target}"), Some(priority)))
        }
        _ => {
            let flags = num("flags", 255)?;
            let tag = text("tag")?;
            let value = text("value")?;
            Ok((format!("{flags} {tag} \"{value}\""), None))
        }
    }
}

/// The `data` object Cloudflare reports for a SRV or CAA record, from its content.
fn data_of(r: &FakeRecord) -> Option<serde_json::Value> {
    match r.r#type.as_str() {
        "SRV" => {
            let mut it = r.content.split_ascii_whitespace();
            let weight: u16 = it.next()?.parse().ok()?;
            let port: u16 = it.next()?.parse().ok()?;
            let target = it.next()?;
            Some(serde_json::json!({
                "priority": r.priority.unwrap_or(0),
                "weight": weight,
                "port": port,
                "target": target,
            }))
        }
        "CAA" => {
            let mut it = r.content.splitn(3, ' ');
            let flags: u8 = it.next()?.parse().ok()?;
            let tag = it.next()?;
            let value = it.next()?;
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            Some(serde_json::json!({"flags": flags, "tag": tag, "value": value}))
        }
        _ => None,
    }
}

/// Cloudflare's checks on a record about to be stored (`rec.id` is excluded from clashes).
fn validate(store: &Store, rec: &FakeRecord) -> Result<(), ApiError> {
    let t = rec.r#type.as_str();
    if !ALLOWED_TYPES.contains(&t) {
        let mut e = ApiError::bad(1004, "DNS Validation Error");
        e.chain.push((1004, format!("Unsupported record type {t}")));
        return Err(e);
    }
    if rec.name.is_empty() {
        return Err(ApiError::validation("name is required"));
    }
    if rec.content.is_empty() {
        return Err(ApiError::validation("content is required"));
    }
    match t {
        "A" if rec.content.parse::<Ipv4Addr>().is_err() => {
            return Err(ApiError::bad(
                9005,
                "Content for A record must be a valid IPv4 address.",
            ));
        }
        "AAAA" if rec.content.parse::<Ipv6Addr>().is_err() => {
            return Err(ApiError::bad(
                9006,
                "Content for AAAA record must be a valid IPv6 address.",
            ));
        }
        _ => {}
    }
    if rec.ttl != 1 && !(30..=86400).contains(&rec.ttl) {
        return Err(ApiError::bad(9021, "Invalid TTL"));
    }
    if matches!(t, "MX" | "SRV") {
        match rec.priority {
            None => {
                return Err(ApiError::validation(format!(
                    "priority is required for {t} records"
                )));
            }
            Some(p) if p > 65535 => {
                return Err(ApiError::validation("priority must be at most 65535"));
            }
            Some(_) => {}
        }
    }
    if rec.proxied && !proxiable(t) {
        return Err(ApiError::bad(9004, "This record type cannot be proxied."));
    }
    let mut others = store.named(&rec.name).filter(|o| o.id != rec.id);
    let mut clash = false;
    for o in &mut others {
        if o.r#type == rec.r#type && o.content == rec.content {
            return Err(ApiError::bad(81057, "Record already exists."));
        }
        if t == "CNAME" || o.r#type == "CNAME" {
            clash = true;
        }
    }
    if clash {
        return Err(ApiError::bad(
            81053,
            "An A, AAAA, or CNAME record with that host already exists.",
        ));
    }
    Ok(())
}

async fn create_record(
    State(inner): Shared,
    Extension(caller): Extension<Caller>,
    Path(zone_id): Path<String>,
    body: Bytes,
) -> Response {
    inner.bump(|s| s.create += 1);
    let r = (|| {
        check_zone(&inner, &zone_id, "/dns_records")?;
        let b: RecordBody = parse_body(&body)?;
        let ctx = WriteCtx::new(&inner);
        let mut store = inner.write();
        let rec = ctx.create(&mut store, b)?;
        inner.log(&caller, vec![("create", &rec)]);
        Ok(ok(record_out(&inner.opts, &rec)))
    })();
    finish(&inner, r)
}

async fn put_record(
    State(inner): Shared,
    Extension(caller): Extension<Caller>,
    Path((zone_id, record_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    update_record(&inner, &caller, &zone_id, &record_id, &body, false)
}

async fn patch_record(
    State(inner): Shared,
    Extension(caller): Extension<Caller>,
    Path((zone_id, record_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    update_record(&inner, &caller, &zone_id, &record_id, &body, true)
}

fn update_record(
    inner: &Inner,
    caller: &Caller,
    zone_id: &str,
    record_id: &str,
    body: &Bytes,
    patch: bool,
) -> Response {
    inner.bump(|s| s.update += 1);
    let r = (|| {
        check_zone(inner, zone_id, &format!("/dns_records/{record_id}"))?;
        let b: RecordBody = parse_body(body)?;
        let ctx = WriteCtx::new(inner);
        let mut store = inner.write();
        let rec = if patch {
            ctx.patch(&mut store, record_id, b)?
        } else {
            ctx.put(&mut store, record_id, b)?
        };
        inner.log(caller, vec![("update", &rec)]);
        Ok(ok(record_out(&inner.opts, &rec)))
    })();
    finish(inner, r)
}

#[derive(Serialize)]
struct Deleted<'a> {
    id: &'a str,
}

async fn delete_record(
    State(inner): Shared,
    Extension(caller): Extension<Caller>,
    Path((zone_id, record_id)): Path<(String, String)>,
) -> Response {
    inner.bump(|s| s.delete += 1);
    let r = (|| {
        check_zone(&inner, &zone_id, &format!("/dns_records/{record_id}"))?;
        let ctx = WriteCtx::new(&inner);
        let mut store = inner.write();
        let old = ctx.delete(&mut store, &record_id)?;
        inner.log(&caller, vec![("delete", &old)]);
        Ok(ok(Deleted { id: &old.id }))
    })();
    finish(&inner, r)
}

#[derive(Serialize)]
struct BatchOut<'a> {
    deletes: Vec<RecordOut<'a>>,
    patches: Vec<RecordOut<'a>>,
    puts: Vec<RecordOut<'a>>,
    posts: Vec<RecordOut<'a>>,
}

async fn batch_records(
    State(inner): Shared,
    Extension(caller): Extension<Caller>,
    Path(zone_id): Path<String>,
    body: Bytes,
) -> Response {
    inner.bump(|s| s.batch += 1);
    let r = batch_inner(&inner, &caller, &zone_id, &body);
    finish(&inner, r)
}

fn batch_inner(
    inner: &Inner,
    caller: &Caller,
    zone_id: &str,
    body: &Bytes,
) -> Result<Response, ApiError> {
    check_zone(inner, zone_id, "/dns_records/batch")?;
    let b: BatchBody = parse_body(body)?;
    let deletes = b.deletes.unwrap_or_default();
    let patches = b.patches.unwrap_or_default();
    let puts = b.puts.unwrap_or_default();
    let posts = b.posts.unwrap_or_default();
    let n = deletes.len() + patches.len() + puts.len() + posts.len();
    inner.bump(|s| s.batch_ops += u64::try_from(n).unwrap_or(u64::MAX));
    if lock(&inner.faults).refuse_batches {
        return Err(ApiError::injected_code(400, 1004, "batch refused".into()));
    }
    if n > inner.opts.max_batch {
        return Err(ApiError::bad(
            1004,
            format!(
                "batch has {n} operations, at most {} are allowed",
                inner.opts.max_batch
            ),
        ));
    }

    let ctx = WriteCtx::new(inner);
    let mut store = inner.write();
    // Undo log: (id, previous record if any), replayed backwards on failure.
    let mut undo: Vec<(String, Option<FakeRecord>)> = Vec::with_capacity(n);
    let mut out = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let applied = (|| {
        for d in deletes {
            let old = ctx.delete(&mut store, &d.id)?;
            undo.push((old.id.clone(), Some(old.clone())));
            out.0.push(old);
        }
        for p in patches {
            let id =
                p.id.clone()
                    .ok_or_else(|| ApiError::validation("id is required"))?;
            let old = store.records.get(&id).cloned();
            let new = ctx.patch(&mut store, &id, p)?;
            undo.push((id, old));
            out.1.push(new);
        }
        for p in puts {
            let id =
                p.id.clone()
                    .ok_or_else(|| ApiError::validation("id is required"))?;
            let old = store.records.get(&id).cloned();
            let new = ctx.put(&mut store, &id, p)?;
            undo.push((id, old));
            out.2.push(new);
        }
        for p in posts {
            let new = ctx.create(&mut store, p)?;
            undo.push((new.id.clone(), None));
            out.3.push(new);
        }
        Ok::<(), ApiError>(())
    })();
    if let Err(e) = applied {
        for (id, old) in undo.into_iter().rev() {
            match old {
                Some(rec) => {
                    store.put(rec);
                }
                None => {
                    store.remove(&id);
                }
            }
        }
        return Err(e);
    }
    let log: Vec<(&'static str, &FakeRecord)> = out
        .0
        .iter()
        .map(|r| ("delete", r))
        .chain(out.1.iter().chain(&out.2).map(|r| ("update", r)))
        .chain(out.3.iter().map(|r| ("create", r)))
        .collect();
    inner.log(caller, log);
    drop(store);
    let opts = &inner.opts;
    Ok(ok(BatchOut {
        deletes: records_out(opts, &out.0),
        patches: records_out(opts, &out.1),
        puts: records_out(opts, &out.2),
        posts: records_out(opts, &out.3),
    }))
}

// ---------------------------------------------------------------------------------------
// Several zones of one account
// ---------------------------------------------------------------------------------------

/// Several zones of one Cloudflare account behind one address, as the real API serves
/// them: `GET /zones` (filtered by `name`, paged as Cloudflare pages it) lists them, and
/// every `/zones/{id}/...` request goes to that zone's own fake, so faults injected in one
/// zone (e.g. `fail_list_page`) hit that zone only. Exists so a cache-service serving
/// many zones can be tested and measured against one endpoint and one token.
#[derive(Clone)]
pub struct FakeCloudflareAccount {
    zones: Arc<Vec<(FakeCloudflare, Router)>>,
    addr: SocketAddr,
    token: String,
    shutdown: CancellationToken,
    /// `GET /zones` requests answered by the account.
    zone_lists: Arc<std::sync::atomic::AtomicU64>,
}

impl std::fmt::Debug for FakeCloudflareAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeCloudflareAccount")
            .field("addr", &self.addr)
            .field("zones", &self.zones.len())
            .finish()
    }
}

impl FakeCloudflareAccount {
    /// Binds 127.0.0.1 on a free port and serves `zones` (names) for `token`, each with
    /// [`FakeOptions::new`]'s defaults as changed by `tune`. Bound before it returns.
    pub async fn start(
        token: &str,
        zones: &[&str],
        tune: impl Fn(&mut FakeOptions),
    ) -> std::io::Result<FakeCloudflareAccount> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let zones: Vec<(FakeCloudflare, Router)> = zones
            .iter()
            .map(|z| {
                let mut opts = FakeOptions::new(token, z);
                tune(&mut opts);
                let inner = new_inner(opts, addr, shutdown.clone());
                let app = router(inner.clone());
                (FakeCloudflare { inner }, app)
            })
            .collect();
        let account = FakeCloudflareAccount {
            zones: Arc::new(zones),
            addr,
            token: token.to_string(),
            shutdown: shutdown.clone(),
            zone_lists: Arc::default(),
        };
        let app = Router::new()
            .route("/client/v4/zones", get(account_zones))
            .fallback(account_dispatch)
            .with_state(account.clone());
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "fake cloudflare account server stopped");
            }
        });
        Ok(account)
    }

    /// The API base URL: `http://127.0.0.1:PORT/client/v4`.
    pub fn base_url(&self) -> String {
        format!("http://{}/client/v4", self.addr)
    }

    /// The fake of zone `name` (panics if the account has no such zone: a test bug).
    pub fn zone(&self, name: &str) -> &FakeCloudflare {
        let name = normalize_name(name);
        self.zones
            .iter()
            .map(|(z, _)| z)
            .find(|z| z.inner.opts.zone_name == name)
            .unwrap_or_else(|| panic!("the fake account has no zone {name}"))
    }

    /// Every zone's fake, in the order given at start.
    pub fn zones(&self) -> impl Iterator<Item = &FakeCloudflare> {
        self.zones.iter().map(|(z, _)| z)
    }

    /// Requests received over every zone, and `GET /zones` lookups.
    pub fn total_requests(&self) -> u64 {
        self.zones().map(|z| z.stats().total).sum::<u64>()
            + self.zone_lists.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `GET /zones` requests answered.
    pub fn zone_lookups(&self) -> u64 {
        self.zone_lists.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Resets every zone's counters and the account's.
    pub fn reset_stats(&self) {
        for z in self.zones() {
            z.reset_stats();
        }
        self.zone_lists
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stops serving.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}

/// `GET /zones[?name=][&page=][&per_page=]` over the account's zones, answered as
/// Cloudflare does (result list, `result_info` paging; default 20 a page, at most 50).
async fn account_zones(
    State(acct): State<FakeCloudflareAccount>,
    headers: axum::http::HeaderMap,
    q: QueryMap,
) -> Response {
    acct.zone_lists
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("Bearer "))
        .map(str::trim);
    if token != Some(acct.token.as_str()) {
        return ApiError::new(StatusCode::FORBIDDEN, 9109, "Invalid access token").into_response();
    }
    let r = (|| {
        let q = query_map(q)?;
        let name = q.get("name").map(|n| normalize_name(n));
        let page = parse_u32(&q, "page", 1)?.max(1);
        let per_page = parse_u32(&q, "per_page", 20)?.clamp(5, 50);
        let matching: Vec<ZoneOut<'_>> = acct
            .zones()
            .filter(|z| name.as_ref().is_none_or(|n| *n == z.inner.opts.zone_name))
            .map(|z| zone_out(&z.inner.opts))
            .collect();
        let total = matching.len();
        let size = usize::try_from(per_page).unwrap_or(20);
        let skip = usize::try_from(page - 1).unwrap_or(0).saturating_mul(size);
        let out: Vec<ZoneOut<'_>> = matching.into_iter().skip(skip).take(size).collect();
        let info = ResultInfo {
            page,
            per_page,
            count: out.len(),
            total_count: total,
            total_pages: total.div_ceil(size),
        };
        Ok::<_, ApiError>(ok_paged(out, Some(info)))
    })();
    r.unwrap_or_else(IntoResponse::into_response)
}

/// Every other request: to the fake of the zone its path names.
async fn account_dispatch(State(acct): State<FakeCloudflareAccount>, req: Request) -> Response {
    use tower::ServiceExt;
    let id = req
        .uri()
        .path()
        .strip_prefix("/client/v4/zones/")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default()
        .to_string();
    let target = acct
        .zones
        .iter()
        .find(|(z, _)| z.inner.opts.zone_id == id)
        .or_else(|| acct.zones.first());
    match target {
        Some((_, app)) => match app.clone().oneshot(req).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        },
        None => no_route().await,
    }
}
