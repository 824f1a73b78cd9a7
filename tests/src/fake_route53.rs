//! A fake DNS provider that speaks the Amazon Route 53 REST/XML API (version 2013-04-01) as AWS
//! documents it: a real HTTP server on loopback with one hosted zone, or several of one account
//! ([`FakeRoute53::add_zone`], public and private ones, overlapping names); GetHostedZone,
//! ListHostedZonesByName, ListResourceRecordSets (Route 53's reversed-label order, `IsTruncated`
//! / `NextRecordName` / `NextRecordType` paging), ChangeResourceRecordSets (atomic batches of
//! CREATE / DELETE / UPSERT, `InvalidChangeBatch` listing every problem) and GetChange. Every
//! request must carry a valid AWS Signature Version 4, which the fake recomputes with the
//! `aws-sigv4` crate from the access key and secret it knows; requests over a settable rate are
//! throttled as Route 53 throttles them, on an injected clock. Faults are injected the way the
//! Cloudflare fake injects them and every request is counted. It exists so the Route 53 provider
//! client can be tested end to end without the network; it must never reach AWS, and it never
//! puts the secret key in an answer or a log.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};
use aws_sigv4::sign::v4;
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

/// The XML namespace of every Route 53 document.
pub const NAMESPACE: &str = "https://route53.amazonaws.com/doc/2013-04-01/";
/// Route 53's default and largest `maxitems` for ListResourceRecordSets.
pub const MAX_ITEMS: u32 = 300;
/// The signing name of Route 53 in a SigV4 credential scope.
pub const SERVICE: &str = "route53";
/// Record types Route 53 accepts.
const TYPES: [&str; 13] = [
    "A", "AAAA", "CAA", "CNAME", "DS", "MX", "NAPTR", "NS", "PTR", "SOA", "SPF", "SRV", "TXT",
];
/// Largest request body read (a batch of 1,000 changes is far below it).
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// How an invalid change batch is written: Route 53 answers both shapes, so clients must read
/// both; tests pick one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchErrorStyle {
    /// `<InvalidChangeBatch><Messages><Message>…` (one element per problem).
    Messages,
    /// `<ErrorResponse><Error><Code>InvalidChangeBatch</Code><Message>[m1, m2]</Message>…`.
    ErrorResponse,
}

/// Configuration of a fake: the credentials and zone it serves, and Route 53's limits. Exists so
/// tests can reproduce those limits (page size, batch size, throttling) at whatever scale and on
/// whatever clock they need.
#[derive(Clone)]
pub struct Route53Options {
    /// The only access key id accepted; any other is `InvalidClientTokenId`.
    pub access_key: String,
    /// Its secret, used to recompute each request's signature. Never written anywhere.
    pub secret_key: String,
    /// The hosted zone's name, e.g. `example.com` (kept lowercase, with its trailing dot).
    pub zone_name: String,
    /// The hosted zone's id without the `/hostedzone/` prefix (derived from the name by default).
    pub zone_id: String,
    /// The region the credential scope must name (Route 53 signs in `us-east-1`); `None` takes
    /// whatever region the client signed with.
    pub signing_region: Option<String>,
    /// Largest `maxitems` honoured by ListResourceRecordSets (larger values are capped).
    pub max_items: u32,
    /// ResourceRecord elements one batch may hold, an UPSERT counting twice (Route 53: 1,000).
    pub max_batch_records: usize,
    /// Characters all `Value` elements of one batch may hold, UPSERTs twice (Route 53: 32,000).
    pub max_batch_chars: usize,
    /// Requests allowed per window before `Throttling` (Route 53: 5 a second); `None` disables.
    pub throttle: Option<(u32, Duration)>,
    /// How far `x-amz-date` may be from the clock before the signature is refused (15 minutes).
    pub max_clock_skew: Duration,
    /// Clock for throttling, signature freshness and change timestamps; tests pass a
    /// `ManualClock`.
    pub clock: SharedClock,
    /// When true (the default), the zone starts with the SOA and NS record sets Route 53 creates
    /// with every hosted zone.
    pub apex_defaults: bool,
    /// How long after submission a change reads `INSYNC` (zero: at once).
    pub insync_after: Duration,
    /// The shape of `InvalidChangeBatch` answers.
    pub batch_error_style: BatchErrorStyle,
}

impl std::fmt::Debug for Route53Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route53Options")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("zone_name", &self.zone_name)
            .field("zone_id", &self.zone_id)
            .field("signing_region", &self.signing_region)
            .field("throttle", &self.throttle)
            .finish()
    }
}

impl Route53Options {
    /// Options with Route 53's documented limits (300 items a page, 1,000 records and 32,000
    /// characters a batch, 5 requests a second, signing region `us-east-1`) on the wall clock.
    pub fn new(access_key: &str, secret_key: &str, zone_name: &str) -> Self {
        let zone_name = fqdn(zone_name);
        Self {
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            zone_id: default_zone_id(&zone_name),
            zone_name,
            signing_region: Some("us-east-1".to_string()),
            max_items: MAX_ITEMS,
            max_batch_records: 1000,
            max_batch_chars: 32_000,
            throttle: Some((5, Duration::from_secs(1))),
            max_clock_skew: Duration::from_secs(15 * 60),
            clock: clock::system(),
            apex_defaults: true,
            insync_after: Duration::ZERO,
            batch_error_style: BatchErrorStyle::Messages,
        }
    }
}

/// An alias target (Route 53's own kind of record set, pointing at an AWS resource).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasTarget {
    /// Hosted zone of the target.
    #[serde(rename = "HostedZoneId")]
    pub hosted_zone_id: String,
    /// Name of the target.
    #[serde(rename = "DNSName")]
    pub dns_name: String,
    /// Whether Route 53 checks the target's health.
    #[serde(rename = "EvaluateTargetHealth")]
    pub evaluate_target_health: bool,
}

/// A resource record set as the fake stores it. Tests use it to seed the zone and to inspect
/// what a client did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordSet {
    /// Fully qualified name, lowercase, with the trailing dot, `*` unescaped
    /// (`*.example.com.`); the wire form writes `\052`.
    pub name: String,
    /// Record type.
    pub r#type: String,
    /// Only for weighted (and other routing-policy) record sets.
    pub set_identifier: Option<String>,
    /// Weight of a weighted record set.
    pub weight: Option<u64>,
    /// TTL in seconds; `None` for an alias.
    pub ttl: Option<u32>,
    /// The record values as Route 53 writes them: TXT quoted (`"v=spf1 -all"`), MX
    /// `10 mail.example.com.`.
    pub values: Vec<String>,
    /// Set for an alias record set (then `ttl` is `None` and `values` empty).
    pub alias: Option<AliasTarget>,
}

impl RecordSet {
    /// A simple (non-alias, no routing policy) record set: the common case in tests.
    pub fn new(rtype: &str, name: &str, ttl: u32, values: &[&str]) -> Self {
        Self {
            name: fqdn(&unescape_name(name)),
            r#type: rtype.to_ascii_uppercase(),
            set_identifier: None,
            weight: None,
            ttl: Some(ttl),
            values: values.iter().map(|v| v.to_string()).collect(),
            alias: None,
        }
    }
}

/// Request counters, so tests can assert how many calls of each kind a client made.
///
/// `total` counts every HTTP request; `unauthorized` those refused by the signature check,
/// `throttled` those refused for the rate, `faults` every injected failure. The per-operation
/// counters count requests that got past those, whatever their outcome; `changes` adds the
/// number of changes in each such batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Route53Stats {
    /// Every request received.
    pub total: u64,
    /// GetHostedZone and ListHostedZonesByName.
    pub zones: u64,
    /// ListResourceRecordSets.
    pub list: u64,
    /// ChangeResourceRecordSets.
    pub change_batches: u64,
    /// Changes contained in those batches.
    pub changes: u64,
    /// GetChange.
    pub get_change: u64,
    /// Requests answered `Throttling` (the rate, or `throttle_next`).
    pub throttled: u64,
    /// Requests answered with an injected failure (throttling injected included).
    pub faults: u64,
    /// Requests refused by authentication (missing, malformed, unknown key, bad signature).
    pub unauthorized: u64,
    /// Batches applied whose answer was then lost (`lose_write_answers`).
    pub answers_lost: u64,
}

/// Handle on a running fake Route 53. Cheap to clone; every clone controls the same server.
/// A handle is bound to one hosted zone (the first, or the one [`FakeRoute53::zone`] or
/// [`FakeRoute53::add_zone`] gave): its seeding and inspection methods work on that zone, its
/// fault and counter methods on the whole account.
#[derive(Clone)]
pub struct FakeRoute53 {
    inner: Arc<Inner>,
    /// Index of this handle's zone in `Inner::hosted`.
    idx: usize,
}

/// One hosted zone of the account: its name (lowercase, trailing dot), id, whether it is
/// private, and its record sets.
#[derive(Clone)]
struct Hosted {
    name: String,
    id: String,
    private: bool,
    store: Arc<Mutex<Store>>,
}

impl std::fmt::Debug for FakeRoute53 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRoute53")
            .field("addr", &self.inner.addr)
            .field("zone_name", &self.zone_name())
            .field("zone_id", &self.zone_id())
            .finish()
    }
}

struct Inner {
    opts: Route53Options,
    addr: SocketAddr,
    /// Every hosted zone of the account, the first one first.
    hosted: Mutex<Vec<Hosted>>,
    /// Change batches applied in all zones, so change ids are unique across them.
    change_seq: std::sync::atomic::AtomicU64,
    faults: Mutex<Faults>,
    stats: Mutex<Route53Stats>,
    /// Clock ms of the requests inside the throttling window, oldest first.
    window: Mutex<VecDeque<i64>>,
    shutdown: CancellationToken,
    lost: tokio::sync::watch::Sender<u64>,
    counted: tokio::sync::watch::Sender<u64>,
}

/// Sort key of a record set: reversed-label name, type, set identifier.
type Key = (String, String, String);

struct Store {
    sets: BTreeMap<Key, RecordSet>,
    /// Change id -> (submitted at, clock ms; comment).
    changes: HashMap<String, (i64, Option<String>)>,
    seq: u64,
}

impl Store {
    fn put(&mut self, rs: RecordSet) -> Option<RecordSet> {
        self.sets.insert(key_of(&rs), rs)
    }
}

#[derive(Clone)]
struct Injected {
    status: u16,
    code: String,
    message: String,
}

#[derive(Default, Clone)]
struct Faults {
    /// Runs of injected failures: (how many more, which), so `u32::MAX` costs one entry.
    fail_next: VecDeque<(u32, Injected)>,
    delay: Duration,
    fail_names: HashMap<String, Injected>,
    /// Hosted zone id -> the failure every request naming that zone gets.
    fail_zones: HashMap<String, Injected>,
    lose_left: u32,
    lose_how: Option<LostAnswer>,
}

impl Faults {
    /// Takes one failure off the front run.
    fn next_failure(runs: &mut VecDeque<(u32, Injected)>) -> Option<Injected> {
        let (left, i) = runs.front_mut()?;
        *left -= 1;
        let i = i.clone();
        if *left == 0 {
            runs.pop_front();
        }
        Some(i)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn bump(&self, f: impl FnOnce(&mut Route53Stats)) {
        f(&mut lock(&self.stats));
        self.counted.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl FakeRoute53 {
    /// Binds 127.0.0.1 on a free port and starts serving. The socket is bound before this
    /// returns, so requests can be sent right away (no sleeps, no race).
    pub async fn start(opts: Route53Options) -> std::io::Result<FakeRoute53> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        Self::start_on(listener, opts).await
    }

    /// Starts serving on an already bound listener (for a fixed address, as the binary does).
    pub async fn start_on(
        listener: TcpListener,
        opts: Route53Options,
    ) -> std::io::Result<FakeRoute53> {
        let addr = listener.local_addr()?;
        let store = Arc::new(Mutex::new(new_store(&opts.zone_name, opts.apex_defaults)));
        let first = Hosted {
            name: opts.zone_name.clone(),
            id: opts.zone_id.clone(),
            private: false,
            store,
        };
        let inner = Arc::new(Inner {
            opts,
            addr,
            hosted: Mutex::new(vec![first]),
            change_seq: std::sync::atomic::AtomicU64::new(0),
            faults: Mutex::new(Faults::default()),
            stats: Mutex::new(Route53Stats::default()),
            window: Mutex::new(VecDeque::new()),
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
                tracing::warn!(error = %e, "fake route53 server stopped");
            }
        });
        Ok(FakeRoute53 { inner, idx: 0 })
    }

    /// Adds a public hosted zone named `name` to the account (with the apex SOA and NS when
    /// `apex_defaults`; its id derived from the name) and returns a handle bound to it.
    pub fn add_zone(&self, name: &str) -> FakeRoute53 {
        self.add_hosted(name, false)
    }

    /// Adds a private hosted zone (as for a VPC): Route 53 allows one of the same name as a
    /// public zone, and lists both by name; its id differs from the public one's.
    pub fn add_private_zone(&self, name: &str) -> FakeRoute53 {
        self.add_hosted(name, true)
    }

    fn add_hosted(&self, name: &str, private: bool) -> FakeRoute53 {
        let name = fqdn(name);
        let mut hosted = lock(&self.inner.hosted);
        let id = if private {
            default_zone_id(&format!("private:{name}"))
        } else {
            default_zone_id(&name)
        };
        hosted.push(Hosted {
            store: Arc::new(Mutex::new(new_store(&name, self.inner.opts.apex_defaults))),
            name,
            id,
            private,
        });
        FakeRoute53 {
            inner: self.inner.clone(),
            idx: hosted.len() - 1,
        }
    }

    /// A handle bound to the hosted zone named `name` (the public one when both exist).
    /// Panics when the account has none: a test's mistake.
    pub fn zone(&self, name: &str) -> FakeRoute53 {
        let name = fqdn(name);
        let hosted = lock(&self.inner.hosted);
        let idx = hosted
            .iter()
            .position(|h| h.name == name && !h.private)
            .or_else(|| hosted.iter().position(|h| h.name == name))
            .unwrap_or_else(|| panic!("the fake Route 53 holds no zone {name}"));
        FakeRoute53 {
            inner: self.inner.clone(),
            idx,
        }
    }

    /// This handle's hosted zone.
    fn hosted(&self) -> Hosted {
        lock(&self.inner.hosted)[self.idx].clone()
    }

    /// Every request naming this handle's hosted zone (listing, changes, GetHostedZone) fails
    /// with `status` and Route 53's error for it until [`FakeRoute53::clear_faults`]; the other
    /// zones answer as usual.
    pub fn fail_zone(&self, status: u16) {
        let (code, message) = default_error(status);
        lock(&self.inner.faults).fail_zones.insert(
            self.hosted().id,
            Injected {
                status,
                code: code.to_string(),
                message: message.to_string(),
            },
        );
    }

    /// The endpoint to give the client under test: `http://127.0.0.1:PORT` (paths start with
    /// `/2013-04-01/`).
    pub fn endpoint(&self) -> String {
        let mut addr = self.inner.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        format!("http://{addr}")
    }

    /// The socket address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The hosted zone id (without `/hostedzone/`).
    pub fn zone_id(&self) -> String {
        self.hosted().id
    }

    /// The hosted zone name, with its trailing dot.
    pub fn zone_name(&self) -> String {
        self.hosted().name
    }

    /// Stops accepting connections and lets in-flight requests finish (graceful).
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Seeds one record set as-is (no validation), replacing one with the same name, type and
    /// set identifier.
    pub fn insert(&self, rs: RecordSet) {
        lock(&self.hosted().store).put(rs);
    }

    /// Seeds many record sets under one lock.
    pub fn insert_many(&self, sets: Vec<RecordSet>) {
        let hosted = self.hosted();
        let mut store = lock(&hosted.store);
        for rs in sets {
            store.put(rs);
        }
    }

    /// Every record set, in Route 53's listing order.
    pub fn record_sets(&self) -> Vec<RecordSet> {
        lock(&self.hosted().store).sets.values().cloned().collect()
    }

    /// The simple record set with this name (written either way: `*` or `\052`, with or
    /// without the trailing dot) and type.
    pub fn get(&self, name: &str, rtype: &str) -> Option<RecordSet> {
        let name = fqdn(&unescape_name(name));
        let key = (sort_name(&name), rtype.to_ascii_uppercase(), String::new());
        lock(&self.hosted().store).sets.get(&key).cloned()
    }

    /// Deletes a record set behind the client's back. Returns whether it existed.
    pub fn remove(&self, name: &str, rtype: &str) -> bool {
        let name = fqdn(&unescape_name(name));
        let key = (sort_name(&name), rtype.to_ascii_uppercase(), String::new());
        lock(&self.hosted().store).sets.remove(&key).is_some()
    }

    /// Number of record sets held (the apex defaults included).
    pub fn count(&self) -> usize {
        lock(&self.hosted().store).sets.len()
    }

    /// Removes every injected fault (the throttling window is left: see
    /// [`FakeRoute53::reset_throttle`]).
    pub fn clear_faults(&self) {
        *lock(&self.inner.faults) = Faults::default();
    }

    /// The next `n` authenticated requests answer `status` with Route 53's error for it
    /// (500 `InternalFailure`, 503 `ServiceUnavailable`, 400 `Throttling`, …), state untouched.
    pub fn fail_next(&self, n: u32, status: u16) {
        let (code, message) = default_error(status);
        self.fail_next_with(n, status, code, message);
    }

    /// The next `n` authenticated requests answer `Throttling` / `Rate exceeded` (HTTP 400).
    pub fn throttle_next(&self, n: u32) {
        self.fail_next_with(n, 400, "Throttling", "Rate exceeded");
    }

    /// The next `n` authenticated requests answer `status` with error `code` and `message`
    /// (e.g. 400 `PriorRequestNotComplete`).
    pub fn fail_next_with(&self, n: u32, status: u16, code: &str, message: &str) {
        if n == 0 {
            return;
        }
        lock(&self.inner.faults).fail_next.push_back((
            n,
            Injected {
                status,
                code: code.to_string(),
                message: message.to_string(),
            },
        ));
    }

    /// Delays every answer by `d`; zero disables.
    pub fn set_delay(&self, d: Duration) {
        lock(&self.inner.faults).delay = d;
    }

    /// Any change batch touching `name` fails whole with `status` and error `code`, as if
    /// Route 53 refused it; nothing in the batch is applied.
    pub fn fail_writes_for_name(&self, name: &str, status: u16, code: &str) {
        let name = fqdn(&unescape_name(name));
        lock(&self.inner.faults).fail_names.insert(
            name.clone(),
            Injected {
                status,
                code: code.to_string(),
                message: format!("Injected failure for {}", escape_name(&name)),
            },
        );
    }

    /// The next `n` change batches are applied, then their answer is lost as `how` says.
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
    pub async fn wait_stats(&self, pred: impl Fn(&Route53Stats) -> bool) {
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
    pub fn stats(&self) -> Route53Stats {
        lock(&self.inner.stats).clone()
    }

    /// Zeroes the request counters.
    pub fn reset_stats(&self) {
        *lock(&self.inner.stats) = Route53Stats::default();
    }

    /// Forgets the requests counted in the throttling window.
    pub fn reset_throttle(&self) {
        lock(&self.inner.window).clear();
    }
}

/// A hosted zone's record sets as Route 53 creates them: the apex SOA and NS when `apex`.
fn new_store(zone_name: &str, apex: bool) -> Store {
    let mut store = Store {
        sets: BTreeMap::new(),
        changes: HashMap::new(),
        seq: 0,
    };
    if apex {
        let ns = name_servers();
        store.put(RecordSet::new(
            "SOA",
            zone_name,
            900,
            &[&format!(
                "{} awsdns-hostmaster.amazon.com. 1 7200 900 1209600 86400",
                ns[0]
            )],
        ));
        store.put(RecordSet::new("NS", zone_name, 172_800, &ns));
    }
    store
}

fn name_servers() -> [&'static str; 4] {
    [
        "ns-2048.awsdns-64.com.",
        "ns-2049.awsdns-65.net.",
        "ns-2050.awsdns-66.org.",
        "ns-2051.awsdns-67.co.uk.",
    ]
}

// ---------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------

/// Lowercase with exactly one trailing dot: how Route 53 holds names (a name given without the
/// dot is taken as fully qualified, as Route 53 does).
fn fqdn(name: &str) -> String {
    let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
    format!("{n}.")
}

/// Decodes Route 53's `\ooo` octal escapes (`\052` is `*`).
fn unescape_name(name: &str) -> String {
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len() + 1
            && b.get(i + 1..i + 4)
                .is_some_and(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)))
        {
            let v = (u32::from(b[i + 1] - b'0') << 6)
                | (u32::from(b[i + 2] - b'0') << 3)
                | u32::from(b[i + 3] - b'0');
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The wire form of a name: characters other than a-z, 0-9, `-`, `_` and `.` as `\ooo`.
fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\{b:03o}"));
        }
    }
    out
}

/// Route 53's listing order: labels reversed, trailing dot kept (`com.example.www.`).
fn sort_name(name: &str) -> String {
    let trimmed = name.trim_end_matches('.');
    let mut labels: Vec<&str> = trimmed.split('.').collect();
    labels.reverse();
    format!("{}.", labels.join("."))
}

fn key_of(rs: &RecordSet) -> Key {
    (
        sort_name(&rs.name),
        rs.r#type.clone(),
        rs.set_identifier.clone().unwrap_or_default(),
    )
}

fn in_zone(name: &str, zone: &str) -> bool {
    name == zone || name.ends_with(&format!(".{zone}"))
}

/// A stable hosted zone id derived from the name: `Z` and 13 characters of base 36.
fn default_zone_id(zone: &str) -> String {
    let h = zone.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("Z{}", base36(h, 13))
}

fn base36(mut v: u64, len: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut out = vec![b'0'; len];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[usize::try_from(v % 36).unwrap_or(0)];
        v /= 36;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Route 53's ids arrive bare (`Z123`) or with their resource prefix (`/hostedzone/Z123`).
fn bare_id<'a>(id: &'a str, prefix: &str) -> &'a str {
    id.trim_start_matches('/')
        .strip_prefix(prefix.trim_matches('/'))
        .map_or(id, |rest| rest.trim_start_matches('/'))
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

#[derive(Serialize)]
struct ErrorOut<'a> {
    #[serde(rename = "Type")]
    kind: &'a str,
    #[serde(rename = "Code")]
    code: &'a str,
    #[serde(rename = "Message")]
    message: &'a str,
}

#[derive(Serialize)]
struct ErrorResponseOut<'a> {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "Error")]
    error: ErrorOut<'a>,
    #[serde(rename = "RequestId")]
    request_id: &'a str,
}

#[derive(Serialize)]
struct MessagesOut {
    #[serde(rename = "Message")]
    message: Vec<String>,
}

#[derive(Serialize)]
struct InvalidChangeBatchOut<'a> {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "Messages")]
    messages: MessagesOut,
    #[serde(rename = "RequestId")]
    request_id: &'a str,
}

/// A Route 53 error answer; `injected` marks failures caused by fault injection.
#[derive(Debug)]
struct R53Error {
    status: StatusCode,
    code: String,
    message: String,
    /// Every problem of an invalid change batch (then `code` is `InvalidChangeBatch`).
    batch: Option<(Vec<String>, BatchErrorStyle)>,
    injected: bool,
}

impl R53Error {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
            batch: None,
            injected: false,
        }
    }
    fn input(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidInput", message)
    }
    fn no_zone(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NoSuchHostedZone",
            format!("No hosted zone found with ID: {id}"),
        )
    }
    fn forbidden(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }
    fn bad_signature(message: impl Into<String>) -> Self {
        Self::forbidden("SignatureDoesNotMatch", message)
    }
    fn incomplete(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "IncompleteSignature", message)
    }
    fn throttling() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Throttling", "Rate exceeded")
    }
    fn batch(messages: Vec<String>, style: BatchErrorStyle) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidChangeBatch",
            format!("[{}]", messages.join(", ")),
        );
        e.batch = Some((messages, style));
        e
    }
    fn injected(i: &Injected) -> Self {
        let status = StatusCode::from_u16(i.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut e = Self::new(status, &i.code, i.message.clone());
        e.injected = true;
        e
    }
}

/// Route 53's code and message for an HTTP status, for injected failures.
fn default_error(status: u16) -> (&'static str, &'static str) {
    match status {
        400 => ("Throttling", "Rate exceeded"),
        403 => (
            "AccessDenied",
            "User is not authorized to perform this action",
        ),
        404 => ("NoSuchHostedZone", "No hosted zone found"),
        429 => ("Throttling", "Rate exceeded"),
        503 => (
            "ServiceUnavailable",
            "The request has failed due to a temporary failure of the server.",
        ),
        _ => (
            "InternalFailure",
            "The request processing has failed because of an unknown error, exception or failure.",
        ),
    }
}

fn new_request_id() -> String {
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

/// An XML answer with the declaration Route 53 writes and its request id header.
fn xml_response(status: StatusCode, root: &str, body: &impl Serialize) -> Response {
    let rid = new_request_id();
    xml_response_with(status, root, body, &rid)
}

fn xml_response_with(status: StatusCode, root: &str, body: &impl Serialize, rid: &str) -> Response {
    match quick_xml::se::to_string_with_root(root, body) {
        Ok(xml) => {
            let mut resp = Response::new(Body::from(format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{xml}"
            )));
            *resp.status_mut() = status;
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/xml"));
            if let Ok(v) = HeaderValue::from_str(rid) {
                h.insert("x-amzn-requestid", v);
            }
            resp
        }
        Err(e) => {
            let mut resp = Response::new(Body::from(format!("serialization failed: {e}")));
            *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            resp
        }
    }
}

impl IntoResponse for R53Error {
    fn into_response(self) -> Response {
        let rid = new_request_id();
        match self.batch {
            Some((messages, BatchErrorStyle::Messages)) => xml_response_with(
                self.status,
                "InvalidChangeBatch",
                &InvalidChangeBatchOut {
                    xmlns: NAMESPACE,
                    messages: MessagesOut { message: messages },
                    request_id: &rid,
                },
                &rid,
            ),
            _ => {
                let kind = if self.status.is_server_error() {
                    "Receiver"
                } else {
                    "Sender"
                };
                xml_response_with(
                    self.status,
                    "ErrorResponse",
                    &ErrorResponseOut {
                        xmlns: NAMESPACE,
                        error: ErrorOut {
                            kind,
                            code: &self.code,
                            message: &self.message,
                        },
                        request_id: &rid,
                    },
                    &rid,
                )
            }
        }
    }
}

fn finish(inner: &Inner, r: Result<Response, R53Error>) -> Response {
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
// Signature Version 4
// ---------------------------------------------------------------------------------------

/// What a SigV4 signature covers, as the server received it: exists so the signature can be
/// recomputed (by [`sigv4_signature`]) exactly over what the client said it signed.
#[derive(Debug)]
pub struct SignedParts<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Absolute URI as sent (`http://host:port/path?query`, still percent-encoded).
    pub uri: &'a str,
    /// Request headers (any case), values as received.
    pub headers: &'a [(String, String)],
    /// The body.
    pub body: &'a [u8],
    /// Access key id of the credential scope.
    pub access_key: &'a str,
    /// `x-amz-date` (`YYYYMMDDTHHMMSSZ`).
    pub amz_date: &'a str,
    /// Region of the credential scope.
    pub region: &'a str,
    /// Service of the credential scope.
    pub service: &'a str,
    /// The `SignedHeaders` list, lowercase.
    pub signed_headers: &'a [String],
}

/// Recomputes the hex SigV4 signature of a received request with the `aws-sigv4` crate (the
/// signer the client uses): only the headers named in `SignedHeaders` are fed to it, and the
/// payload hash is always computed from the body, so a client that signed anything else gets a
/// different signature. Public so tests can check it against AWS's published test vectors.
pub fn sigv4_signature(p: &SignedParts<'_>, secret_key: &str) -> Result<String, String> {
    let time = parse_amz_date(p.amz_date).ok_or_else(|| "x-amz-date is malformed".to_string())?;
    let identity = Credentials::new(p.access_key, secret_key, None, None, "fake-route53").into();
    let mut settings = SigningSettings::default();
    // Exactly the client's list is signed: nothing left out, nothing added.
    settings.excluded_headers = None;
    if p.signed_headers.iter().any(|h| h == "x-amz-content-sha256") {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(p.region)
        .name(p.service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| format!("signing parameters: {e}"))?
        .into();
    let mut headers: Vec<(&str, &str)> = Vec::new();
    for name in p.signed_headers {
        // The signer writes these two itself, from the date and the body.
        if name == "x-amz-date" || name == "x-amz-content-sha256" {
            continue;
        }
        let mut found = false;
        for (k, v) in p.headers {
            if k.eq_ignore_ascii_case(name) {
                headers.push((name.as_str(), v.as_str()));
                found = true;
            }
        }
        if !found {
            return Err(format!("signed header {name} is missing"));
        }
    }
    let req = SignableRequest::new(
        p.method,
        p.uri,
        headers.into_iter(),
        SignableBody::Bytes(p.body),
    )
    .map_err(|e| format!("request cannot be signed: {e}"))?;
    let out = sign(req, &params).map_err(|e| format!("signing failed: {e}"))?;
    Ok(out.signature().to_string())
}

/// Parses `YYYYMMDDTHHMMSSZ`.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

fn system_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

/// `YYYYMMDDTHHMMSSZ` of clock milliseconds, for signature-expiry messages.
fn amz_date_of(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms.max(0)).unwrap_or(0));
    let s = humantime::format_rfc3339_seconds(t).to_string();
    // 2015-08-30T12:36:00Z -> 20150830T123600Z
    s.chars().filter(|c| *c != '-' && *c != ':').collect()
}

/// Checks the request's SigV4 authentication as Route 53 does; the error is what it answers.
fn authenticate(
    inner: &Inner,
    parts: &axum::http::request::Parts,
    body: &[u8],
) -> Result<(), R53Error> {
    let auth = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let Some(auth) = auth else {
        return Err(R53Error::forbidden(
            "MissingAuthenticationToken",
            "Missing Authentication Token",
        ));
    };
    let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err(R53Error::incomplete(format!(
            "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' parameter. Authorization header requires 'SignedHeaders' parameter. (Hashed with SHA-256 and encoded with Base64) Authorization={}",
            auth.split_whitespace().next().unwrap_or("")
        )));
    };
    let mut credential = None;
    let mut signed = None;
    let mut signature = None;
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v.trim()),
            Some(("SignedHeaders", v)) => signed = Some(v.trim()),
            Some(("Signature", v)) => signature = Some(v.trim()),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    for (name, v) in [
        ("Credential", credential),
        ("Signature", signature),
        ("SignedHeaders", signed),
    ] {
        if v.is_none() {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    let (Some(credential), Some(signed), Some(signature)) = (credential, signed, signature) else {
        return Err(R53Error::incomplete(missing.join(" ")));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [akid, date, region, service, terminator] = scope[..] else {
        return Err(R53Error::incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{credential}'"
        )));
    };
    let amz_date = parts
        .headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let Some(amz_date) = amz_date else {
        return Err(R53Error::incomplete(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
        ));
    };
    if akid != inner.opts.access_key {
        return Err(R53Error::forbidden(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ));
    }
    if terminator != "aws4_request" {
        return Err(R53Error::bad_signature(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'."
        )));
    }
    if service != SERVICE {
        return Err(R53Error::bad_signature(format!(
            "Credential should be scoped to correct service: '{SERVICE}'."
        )));
    }
    if let Some(want) = &inner.opts.signing_region
        && region != want
    {
        return Err(R53Error::bad_signature(format!(
            "Credential should be scoped to a valid region, not '{region}'."
        )));
    }
    let Some(sent) = parse_amz_date(amz_date) else {
        return Err(R53Error::incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'."
        )));
    };
    if amz_date.get(0..8) != Some(date) {
        return Err(R53Error::bad_signature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{date}' != '{}', from '{amz_date}'.",
            amz_date.get(0..8).unwrap_or("")
        )));
    }
    let now = inner.opts.clock.now_ms();
    let skew = i64::try_from(inner.opts.max_clock_skew.as_millis()).unwrap_or(i64::MAX);
    let sent_ms = system_ms(sent);
    if sent_ms < now.saturating_sub(skew) {
        return Err(R53Error::bad_signature(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - 15 min.)",
            amz_date_of(now.saturating_sub(skew)),
            amz_date_of(now)
        )));
    }
    if sent_ms > now.saturating_add(skew) {
        return Err(R53Error::bad_signature(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + 15 min.)",
            amz_date_of(now.saturating_add(skew)),
            amz_date_of(now)
        )));
    }
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| inner.addr.to_string(), str::to_string);
    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri = format!("http://{host}{path_and_query}");
    let signed_headers: Vec<String> = signed.split(';').map(str::to_ascii_lowercase).collect();
    let mismatch = || {
        R53Error::bad_signature(
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        )
    };
    let expected = sigv4_signature(
        &SignedParts {
            method: parts.method.as_str(),
            uri: &uri,
            headers: &headers,
            body,
            access_key: akid,
            amz_date,
            region,
            service,
            signed_headers: &signed_headers,
        },
        &inner.opts.secret_key,
    )
    .map_err(|_| mismatch())?;
    if expected.eq_ignore_ascii_case(signature) {
        Ok(())
    } else {
        Err(mismatch())
    }
}

// ---------------------------------------------------------------------------------------
// Router, middleware
// ---------------------------------------------------------------------------------------

type Shared = State<Arc<Inner>>;

fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/2013-04-01/hostedzone/{id}", get(get_hosted_zone))
        .route("/2013-04-01/hostedzonesbyname", get(list_zones_by_name))
        .route(
            "/2013-04-01/hostedzone/{id}/rrset",
            get(list_rrsets).post(change_rrsets),
        )
        .route(
            "/2013-04-01/hostedzone/{id}/rrset/",
            get(list_rrsets).post(change_rrsets),
        )
        .route("/2013-04-01/change/{id}", get(get_change))
        .fallback(no_route)
        .method_not_allowed_fallback(no_route)
        .layer(middleware::from_fn_with_state(inner.clone(), gatekeeper))
        .with_state(inner)
}

async fn no_route() -> Response {
    R53Error::new(
        StatusCode::NOT_FOUND,
        "UnknownOperationException",
        "The requested operation does not exist.",
    )
    .into_response()
}

/// Runs before every operation: counts, delays, reads the body, checks the signature, applies
/// the rate and injected failures, and loses a batch's answer when told to.
async fn gatekeeper(State(inner): Shared, req: Request, next: Next) -> Response {
    inner.bump(|s| s.total += 1);
    let delay = lock(&inner.faults).delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    tracing::debug!(method = %req.method(), uri = %req.uri(), "fake route53 request");
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, BODY_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return R53Error::input("The request body could not be read.").into_response();
        }
    };
    if let Err(e) = authenticate(&inner, &parts, &body) {
        inner.bump(|s| s.unauthorized += 1);
        return e.into_response();
    }
    if let Some((limit, per)) = inner.opts.throttle {
        let now = inner.opts.clock.now_ms();
        let per_ms = i64::try_from(per.as_millis()).unwrap_or(i64::MAX);
        let mut w = lock(&inner.window);
        while w.front().is_some_and(|&t| t <= now.saturating_sub(per_ms)) {
            w.pop_front();
        }
        if w.len() >= usize::try_from(limit).unwrap_or(usize::MAX) {
            drop(w);
            inner.bump(|s| s.throttled += 1);
            return R53Error::throttling().into_response();
        }
        w.push_back(now);
    }
    let write = parts.method == Method::POST;
    let (fail, lose) = {
        let mut f = lock(&inner.faults);
        if let Some(i) = Faults::next_failure(&mut f.fail_next) {
            (Some(i), None)
        } else if write && f.lose_left > 0 && f.lose_how.is_some() {
            f.lose_left -= 1;
            (None, f.lose_how)
        } else {
            (None, None)
        }
    };
    if let Some(i) = fail {
        inner.bump(|s| {
            s.faults += 1;
            if i.code == "Throttling" {
                s.throttled += 1;
            }
        });
        return R53Error::injected(&i).into_response();
    }
    let resp = next.run(Request::from_parts(parts, Body::from(body))).await;
    let Some(how) = lose else {
        return resp;
    };
    inner.bump(|s| s.answers_lost += 1);
    inner.lost.send_modify(|n| *n += 1);
    let (code, message) = default_error(503);
    let lost = Injected {
        status: 503,
        code: code.to_string(),
        message: message.to_string(),
    };
    match how {
        LostAnswer::Status(status) => {
            let (code, message) = default_error(status);
            R53Error::injected(&Injected {
                status,
                code: code.to_string(),
                message: message.to_string(),
            })
            .into_response()
        }
        LostAnswer::Hang => {
            inner.shutdown.cancelled().await;
            R53Error::injected(&lost).into_response()
        }
    }
}

/// The hosted zone a path names, or `NoSuchHostedZone`; a zone failing on purpose
/// ([`FakeRoute53::fail_zone`]) answers its injected failure.
fn check_zone(inner: &Inner, id: &str) -> Result<Hosted, R53Error> {
    let id = bare_id(id, "hostedzone");
    let found = lock(&inner.hosted).iter().find(|h| h.id == id).cloned();
    let Some(h) = found else {
        return Err(R53Error::no_zone(id));
    };
    if let Some(i) = lock(&inner.faults).fail_zones.get(&h.id) {
        return Err(R53Error::injected(i));
    }
    Ok(h)
}

type QueryMap = Result<Query<HashMap<String, String>>, QueryRejection>;

fn query_map(q: QueryMap) -> Result<HashMap<String, String>, R53Error> {
    q.map(|Query(m)| m)
        .map_err(|e| R53Error::input(format!("Invalid query string: {e}")))
}

fn parse_max_items(q: &HashMap<String, String>, default: u32, cap: u32) -> Result<u32, R53Error> {
    match q.get("maxitems") {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n.min(cap)),
            _ => Err(R53Error::input(format!(
                "1 validation error detected: Value '{v}' at 'maxItems' failed to satisfy constraint: Member must be a positive integer"
            ))),
        },
    }
}

// ---------------------------------------------------------------------------------------
// Hosted zones
// ---------------------------------------------------------------------------------------

#[derive(Serialize)]
struct ConfigOut {
    #[serde(rename = "Comment")]
    comment: &'static str,
    #[serde(rename = "PrivateZone")]
    private_zone: bool,
}

#[derive(Serialize)]
struct HostedZoneOut {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "CallerReference")]
    caller_reference: String,
    #[serde(rename = "Config")]
    config: ConfigOut,
    #[serde(rename = "ResourceRecordSetCount")]
    count: usize,
}

#[derive(Serialize)]
struct NameServersOut {
    #[serde(rename = "NameServer")]
    name_server: Vec<String>,
}

#[derive(Serialize)]
struct DelegationSetOut {
    #[serde(rename = "NameServers")]
    name_servers: NameServersOut,
}

#[derive(Serialize)]
struct GetHostedZoneOut {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "HostedZone")]
    zone: HostedZoneOut,
    #[serde(rename = "DelegationSet")]
    delegation: DelegationSetOut,
}

fn zone_out(h: &Hosted) -> HostedZoneOut {
    HostedZoneOut {
        id: format!("/hostedzone/{}", h.id),
        name: escape_name(&h.name),
        caller_reference: format!("trafego-fake-{}", h.id),
        config: ConfigOut {
            comment: "",
            private_zone: h.private,
        },
        count: lock(&h.store).sets.len(),
    }
}

async fn get_hosted_zone(State(inner): Shared, Path(id): Path<String>) -> Response {
    inner.bump(|s| s.zones += 1);
    let r = check_zone(&inner, &id).map(|h| {
        xml_response(
            StatusCode::OK,
            "GetHostedZoneResponse",
            &GetHostedZoneOut {
                xmlns: NAMESPACE,
                zone: zone_out(&h),
                delegation: DelegationSetOut {
                    name_servers: NameServersOut {
                        name_server: name_servers()
                            .iter()
                            .map(|n| n.trim_end_matches('.').to_string())
                            .collect(),
                    },
                },
            },
        )
    });
    finish(&inner, r)
}

#[derive(Serialize)]
struct HostedZonesOut {
    #[serde(rename = "HostedZone")]
    zones: Vec<HostedZoneOut>,
}

#[derive(Serialize)]
struct ListByNameOut {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "HostedZones")]
    zones: HostedZonesOut,
    #[serde(rename = "DNSName", skip_serializing_if = "Option::is_none")]
    dns_name: Option<String>,
    #[serde(rename = "HostedZoneId", skip_serializing_if = "Option::is_none")]
    zone_id: Option<String>,
    #[serde(rename = "IsTruncated")]
    truncated: bool,
    #[serde(rename = "NextDNSName", skip_serializing_if = "Option::is_none")]
    next_dns_name: Option<String>,
    #[serde(rename = "NextHostedZoneId", skip_serializing_if = "Option::is_none")]
    next_zone_id: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: u32,
}

/// ListHostedZonesByName: the zones whose name sorts at or after `dnsname` (Route 53's
/// reversed-label order, then id), from `hostedzoneid` on when given, `maxitems` at most
/// with `NextDNSName` / `NextHostedZoneId` when more follow; so a client must check the name of
/// what it gets back (a public and a private zone may share it).
async fn list_zones_by_name(State(inner): Shared, q: QueryMap) -> Response {
    inner.bump(|s| s.zones += 1);
    let r = (|| {
        let q = query_map(q)?;
        let max = parse_max_items(&q, 100, 100)?;
        let dns_name = q.get("dnsname").cloned();
        let zone_id = q.get("hostedzoneid").cloned();
        if zone_id.is_some() && dns_name.is_none() {
            return Err(R53Error::input(
                "Invalid request: hostedzoneid requires dnsname",
            ));
        }
        let start = (
            dns_name
                .as_deref()
                .map(|d| sort_name(&fqdn(&unescape_name(d))))
                .unwrap_or_default(),
            zone_id
                .as_deref()
                .map(|z| bare_id(z, "hostedzone").to_string())
                .unwrap_or_default(),
        );
        let mut all: Vec<Hosted> = lock(&inner.hosted)
            .iter()
            .filter(|h| (sort_name(&h.name), h.id.clone()) >= start)
            .cloned()
            .collect();
        all.sort_by_key(|h| (sort_name(&h.name), h.id.clone()));
        let per = usize::try_from(max).unwrap_or(usize::MAX);
        let next = all.get(per).cloned();
        all.truncate(per);
        let zones = all.iter().map(zone_out).collect();
        Ok(xml_response(
            StatusCode::OK,
            "ListHostedZonesByNameResponse",
            &ListByNameOut {
                xmlns: NAMESPACE,
                zones: HostedZonesOut { zones },
                dns_name,
                zone_id,
                truncated: next.is_some(),
                next_dns_name: next.as_ref().map(|h| escape_name(&h.name)),
                next_zone_id: next.map(|h| h.id),
                max_items: max,
            },
        ))
    })();
    finish(&inner, r)
}

// ---------------------------------------------------------------------------------------
// Record sets: listing
// ---------------------------------------------------------------------------------------

#[derive(Serialize, Deserialize, Debug)]
struct ResourceRecordXml {
    #[serde(rename = "Value")]
    value: String,
}

#[derive(Serialize, Deserialize, Debug, Default)]
struct ResourceRecordsXml {
    #[serde(rename = "ResourceRecord", default)]
    records: Vec<ResourceRecordXml>,
}

#[derive(Serialize)]
struct RecordSetOut {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Type")]
    rtype: String,
    #[serde(rename = "SetIdentifier", skip_serializing_if = "Option::is_none")]
    set_identifier: Option<String>,
    #[serde(rename = "Weight", skip_serializing_if = "Option::is_none")]
    weight: Option<u64>,
    #[serde(rename = "TTL", skip_serializing_if = "Option::is_none")]
    ttl: Option<u32>,
    #[serde(rename = "ResourceRecords", skip_serializing_if = "Option::is_none")]
    records: Option<ResourceRecordsXml>,
    #[serde(rename = "AliasTarget", skip_serializing_if = "Option::is_none")]
    alias: Option<AliasTarget>,
}

fn set_out(rs: &RecordSet) -> RecordSetOut {
    RecordSetOut {
        name: escape_name(&rs.name),
        rtype: rs.r#type.clone(),
        set_identifier: rs.set_identifier.clone(),
        weight: rs.weight,
        ttl: rs.ttl,
        records: (rs.alias.is_none()).then(|| ResourceRecordsXml {
            records: rs
                .values
                .iter()
                .map(|v| ResourceRecordXml { value: v.clone() })
                .collect(),
        }),
        alias: rs.alias.clone(),
    }
}

#[derive(Serialize)]
struct RecordSetsOut {
    #[serde(rename = "ResourceRecordSet")]
    sets: Vec<RecordSetOut>,
}

#[derive(Serialize)]
struct ListRrsetsOut {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "ResourceRecordSets")]
    sets: RecordSetsOut,
    #[serde(rename = "IsTruncated")]
    truncated: bool,
    #[serde(rename = "NextRecordName", skip_serializing_if = "Option::is_none")]
    next_name: Option<String>,
    #[serde(rename = "NextRecordType", skip_serializing_if = "Option::is_none")]
    next_type: Option<String>,
    #[serde(
        rename = "NextRecordIdentifier",
        skip_serializing_if = "Option::is_none"
    )]
    next_identifier: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: u32,
}

async fn list_rrsets(State(inner): Shared, Path(id): Path<String>, q: QueryMap) -> Response {
    inner.bump(|s| s.list += 1);
    let r = list_rrsets_inner(&inner, &id, q);
    finish(&inner, r)
}

fn list_rrsets_inner(inner: &Inner, id: &str, q: QueryMap) -> Result<Response, R53Error> {
    let hosted = check_zone(inner, id)?;
    let q = query_map(q)?;
    let max = parse_max_items(&q, inner.opts.max_items, inner.opts.max_items.max(1))?;
    let name = q.get("name").map(|n| fqdn(&unescape_name(n)));
    let rtype = q.get("type").map(|t| t.trim().to_string());
    let ident = q.get("identifier").cloned();
    if rtype.is_some() && name.is_none() {
        return Err(R53Error::input(
            "The input is not valid: a type requires a name",
        ));
    }
    if ident.is_some() && rtype.is_none() {
        return Err(R53Error::input(
            "The input is not valid: an identifier requires a name and a type",
        ));
    }
    if let Some(t) = &rtype
        && !TYPES.contains(&t.as_str())
    {
        return Err(R53Error::input(format!(
            "1 validation error detected: Value '{t}' at 'startRecordType' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            TYPES.join(", ")
        )));
    }
    let start: Key = (
        name.as_deref().map(sort_name).unwrap_or_default(),
        rtype.unwrap_or_default(),
        ident.unwrap_or_default(),
    );
    let store = lock(&hosted.store);
    let per = usize::try_from(max).unwrap_or(usize::MAX);
    let mut it = store.sets.range(start..);
    let page: Vec<RecordSetOut> = it.by_ref().take(per).map(|(_, rs)| set_out(rs)).collect();
    let next = it.next().map(|(_, rs)| rs.clone());
    Ok(xml_response(
        StatusCode::OK,
        "ListResourceRecordSetsResponse",
        &ListRrsetsOut {
            xmlns: NAMESPACE,
            sets: RecordSetsOut { sets: page },
            truncated: next.is_some(),
            next_name: next.as_ref().map(|n| escape_name(&n.name)),
            next_type: next.as_ref().map(|n| n.r#type.clone()),
            next_identifier: next.and_then(|n| n.set_identifier),
            max_items: max,
        },
    ))
}

// ---------------------------------------------------------------------------------------
// Record sets: changes
// ---------------------------------------------------------------------------------------

#[derive(Deserialize, Debug)]
struct ChangeRequestXml {
    #[serde(rename = "ChangeBatch")]
    batch: ChangeBatchXml,
}

#[derive(Deserialize, Debug)]
struct ChangeBatchXml {
    #[serde(rename = "Comment", default)]
    comment: Option<String>,
    #[serde(rename = "Changes")]
    changes: ChangesXml,
}

#[derive(Deserialize, Debug, Default)]
struct ChangesXml {
    #[serde(rename = "Change", default)]
    changes: Vec<ChangeXml>,
}

#[derive(Deserialize, Debug)]
struct ChangeXml {
    #[serde(rename = "Action")]
    action: String,
    #[serde(rename = "ResourceRecordSet")]
    set: RecordSetXml,
}

#[derive(Deserialize, Debug)]
struct RecordSetXml {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Type")]
    rtype: String,
    #[serde(rename = "SetIdentifier", default)]
    set_identifier: Option<String>,
    #[serde(rename = "Weight", default)]
    weight: Option<String>,
    #[serde(rename = "TTL", default)]
    ttl: Option<String>,
    #[serde(rename = "ResourceRecords", default)]
    records: Option<ResourceRecordsXml>,
    #[serde(rename = "AliasTarget", default)]
    alias: Option<AliasXml>,
}

#[derive(Deserialize, Debug)]
struct AliasXml {
    #[serde(rename = "HostedZoneId")]
    hosted_zone_id: String,
    #[serde(rename = "DNSName")]
    dns_name: String,
    #[serde(rename = "EvaluateTargetHealth", default)]
    evaluate_target_health: Option<String>,
}

#[derive(Serialize)]
struct ChangeInfoOut {
    #[serde(rename = "Id")]
    id: String,
    #[serde(rename = "Status")]
    status: &'static str,
    #[serde(rename = "SubmittedAt")]
    submitted_at: String,
    #[serde(rename = "Comment", skip_serializing_if = "Option::is_none")]
    comment: Option<String>,
}

#[derive(Serialize)]
struct ChangeInfoEnvelope {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "ChangeInfo")]
    info: ChangeInfoOut,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Action {
    Create,
    Delete,
    Upsert,
}

/// One change, checked for its shape (what Route 53 refuses as `InvalidInput` before it looks
/// at the zone).
fn parse_change(c: ChangeXml, index: usize) -> Result<(Action, RecordSet), R53Error> {
    let action = match c.action.trim() {
        "CREATE" => Action::Create,
        "DELETE" => Action::Delete,
        "UPSERT" => Action::Upsert,
        other => {
            return Err(R53Error::input(format!(
                "1 validation error detected: Value '{other}' at 'changeBatch.changes.{index}.member.action' failed to satisfy constraint: Member must satisfy enum value set: [CREATE, DELETE, UPSERT]"
            )));
        }
    };
    let s = c.set;
    let rtype = s.rtype.trim().to_string();
    if !TYPES.contains(&rtype.as_str()) {
        return Err(R53Error::input(format!(
            "1 validation error detected: Value '{rtype}' at 'changeBatch.changes.{index}.member.resourceRecordSet.type' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            TYPES.join(", ")
        )));
    }
    let name = fqdn(&unescape_name(&s.name));
    let ttl = match s.ttl.as_deref().map(str::trim) {
        None => None,
        Some(t) => match t.parse::<u32>() {
            Ok(v) if v <= 2_147_483_647 => Some(v),
            _ => {
                return Err(R53Error::input(format!(
                    "1 validation error detected: Value '{t}' at 'changeBatch.changes.{index}.member.resourceRecordSet.tTL' failed to satisfy constraint: Member must have value between 0 and 2147483647"
                )));
            }
        },
    };
    let weight = match s.weight.as_deref().map(str::trim) {
        None => None,
        Some(w) => Some(w.parse::<u64>().map_err(|_| {
            R53Error::input(format!(
                "Invalid request: Weight '{w}' is not a number in Change {index}"
            ))
        })?),
    };
    let alias = s.alias.map(|a| AliasTarget {
        hosted_zone_id: a.hosted_zone_id.trim().to_string(),
        dns_name: fqdn(&unescape_name(&a.dns_name)),
        evaluate_target_health: a
            .evaluate_target_health
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
    });
    let values: Option<Vec<String>> = s.records.map(|r| {
        r.records
            .into_iter()
            .map(|v| v.value.trim().to_string())
            .collect()
    });
    let describe = || {
        format!(
            "Change with [Action={}, Name={}, Type={rtype}, SetIdentifier={}]",
            c.action.trim(),
            escape_name(&name),
            s.set_identifier.as_deref().unwrap_or("null")
        )
    };
    let simple = ttl.is_some() && values.is_some();
    if alias.is_some() == simple || (alias.is_some() && (ttl.is_some() || values.is_some())) {
        let found = if alias.is_some() {
            "more than one"
        } else {
            "none"
        };
        return Err(R53Error::input(format!(
            "Invalid request: Expected exactly one of [AliasTarget, all of [TTL, and ResourceRecords], or TrafficPolicyInstanceId], but found {found} in {}",
            describe()
        )));
    }
    if values.as_ref().is_some_and(Vec::is_empty) {
        return Err(R53Error::input(format!(
            "1 validation error detected: Value '[]' at 'changeBatch.changes.{index}.member.resourceRecordSet.resourceRecords' failed to satisfy constraint: Member must have length greater than or equal to 1"
        )));
    }
    if weight.is_some() != s.set_identifier.is_some() {
        return Err(R53Error::input(format!(
            "Invalid request: a weighted record set needs both SetIdentifier and Weight in {}",
            describe()
        )));
    }
    Ok((
        action,
        RecordSet {
            name,
            r#type: rtype,
            set_identifier: s.set_identifier,
            weight,
            ttl,
            values: values.unwrap_or_default(),
            alias,
        },
    ))
}

fn describe_set(rs: &RecordSet) -> String {
    match &rs.set_identifier {
        Some(id) => format!(
            "[name='{}', type='{}', set-identifier='{id}']",
            escape_name(&rs.name),
            rs.r#type
        ),
        None => format!("[name='{}', type='{}']", escape_name(&rs.name), rs.r#type),
    }
}

fn fatal(code: &str, value: &str) -> String {
    format!("Invalid Resource Record: 'FATAL problem: {code} encountered with '{value}''")
}

fn valid_domain(name: &str) -> bool {
    let n = name.trim_end_matches('.');
    n.is_empty() || (n.len() <= 253 && n.split('.').all(|l| !l.is_empty() && l.len() <= 63))
}

/// A TXT/SPF value: one or more quoted strings of at most 255 characters each.
fn txt_problem(v: &str) -> Option<&'static str> {
    let b = v.as_bytes();
    let mut i = 0;
    let mut strings = 0;
    while i < b.len() {
        if b[i] == b' ' {
            i += 1;
            continue;
        }
        if b[i] != b'"' {
            return Some("InvalidCharacterString (Value should be enclosed in quotation marks)");
        }
        i += 1;
        let mut len = 0;
        loop {
            match b.get(i) {
                None => {
                    return Some(
                        "InvalidCharacterString (Value should be enclosed in quotation marks)",
                    );
                }
                // `\ooo` (an octal byte) and `\c` are one character each.
                Some(b'\\') => {
                    let octal = b
                        .get(i + 1..i + 4)
                        .is_some_and(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
                    i += if octal { 4 } else { 2 };
                    len += 1;
                }
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(_) => {
                    i += 1;
                    len += 1;
                }
            }
        }
        if len > 255 {
            return Some("TXTRDATATooLong (Value is too long)");
        }
        strings += 1;
    }
    (strings == 0).then_some("InvalidCharacterString (Value should be enclosed in quotation marks)")
}

/// Route 53's checks of one record set's values, as `InvalidChangeBatch` messages.
fn value_problems(rs: &RecordSet, zone: &str) -> Vec<String> {
    let mut out = Vec::new();
    if !in_zone(&rs.name, zone) {
        out.push(format!(
            "RRSet with DNS name {} is not permitted in zone {}",
            escape_name(&rs.name),
            escape_name(zone)
        ));
        return out;
    }
    if rs.r#type == "CNAME" && rs.name == zone {
        out.push(format!(
            "RRSet of type CNAME with DNS name {} is not permitted at apex in zone {}",
            escape_name(&rs.name),
            escape_name(zone)
        ));
    }
    if matches!(rs.r#type.as_str(), "CNAME" | "SOA") && rs.values.len() > 1 {
        out.push(format!(
            "RRSet of type {} with DNS name {} has more than one resource record",
            rs.r#type,
            escape_name(&rs.name)
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for v in &rs.values {
        if !seen.insert(v.as_str()) {
            out.push(format!("Duplicate Resource Record: '{v}'"));
        }
        let fields: Vec<&str> = v.split_whitespace().collect();
        let problem = match rs.r#type.as_str() {
            "A" => v
                .parse::<Ipv4Addr>()
                .is_err()
                .then_some("ARRDATAIllegalIPv4Address (Value is not a valid IPv4 address)"),
            "AAAA" => v
                .parse::<Ipv6Addr>()
                .is_err()
                .then_some("AAAARRDATAIllegalIPv6Address (Value is not a valid IPv6 address)"),
            "CNAME" | "NS" | "PTR" => (fields.len() != 1 || !valid_domain(v))
                .then_some("DomainLabelEmpty (Domain label is empty)"),
            "MX" => (fields.len() != 2
                || fields[0].parse::<u16>().is_err()
                || !valid_domain(fields[1]))
            .then_some("MXRRDATANotTwoFields (MX record must be a priority and a domain name)"),
            "SRV" => (fields.len() != 4
                || fields[..3].iter().any(|f| f.parse::<u16>().is_err())
                || !valid_domain(fields[3]))
            .then_some("SRVRRDATANotFourFields (SRV record must be priority, weight, port and a domain name)"),
            "CAA" => (fields.len() < 3 || fields[0].parse::<u8>().is_err())
                .then_some("CAARRDATAInvalid (CAA record must be flags, tag and a quoted value)"),
            "TXT" | "SPF" => txt_problem(v),
            _ => None,
        };
        if let Some(p) = problem {
            out.push(fatal(p, v));
        }
    }
    out
}

/// Applies one change to the store (the batch's undo log records what it replaced), or says
/// why Route 53 would refuse it.
fn apply_change(
    store: &mut Store,
    zone: &str,
    action: Action,
    rs: RecordSet,
    undo: &mut Vec<(Key, Option<RecordSet>)>,
) -> Result<(), Vec<String>> {
    let mut problems = value_problems(&rs, zone);
    if !problems.is_empty() {
        return Err(problems);
    }
    let key = key_of(&rs);
    let current = store.sets.get(&key).cloned();
    match action {
        Action::Create if current.is_some() => {
            return Err(vec![format!(
                "Tried to create resource record set {} but it already exists",
                describe_set(&rs)
            )]);
        }
        Action::Delete => {
            let Some(cur) = current else {
                return Err(vec![format!(
                    "Tried to delete resource record set {} but it was not found",
                    describe_set(&rs)
                )]);
            };
            let mut a = cur.values.clone();
            let mut b = rs.values.clone();
            a.sort();
            b.sort();
            if cur.ttl != rs.ttl || a != b || cur.alias != rs.alias || cur.weight != rs.weight {
                return Err(vec![format!(
                    "Tried to delete resource record set {} but the values provided do not match the current values",
                    describe_set(&rs)
                )]);
            }
            if rs.name == zone && rs.r#type == "SOA" {
                return Err(vec![
                    "A HostedZone must contain exactly one SOA record.".into(),
                ]);
            }
            if rs.name == zone && rs.r#type == "NS" {
                return Err(vec![
                    "A HostedZone must contain at least one NS record for the zone itself.".into(),
                ]);
            }
            store.sets.remove(&key);
            undo.push((key, Some(cur)));
            return Ok(());
        }
        _ => {}
    }
    // A CNAME shares its name with nothing else (weighted CNAMEs share with their kind).
    let sn = sort_name(&rs.name);
    let clash = store
        .sets
        .range((sn.clone(), String::new(), String::new())..)
        .take_while(|((n, _, _), _)| *n == sn)
        .any(|(k, other)| {
            *k != key
                && (rs.r#type == "CNAME" || other.r#type == "CNAME")
                && !(rs.r#type == other.r#type && rs.set_identifier.is_some())
        });
    if clash {
        problems.push(format!(
            "RRSet of type {} with DNS name {} is not permitted as it conflicts with other records with the same DNS name in zone {}",
            rs.r#type,
            escape_name(&rs.name),
            escape_name(zone)
        ));
        return Err(problems);
    }
    let old = store.put(rs);
    undo.push((key, old));
    Ok(())
}

async fn change_rrsets(State(inner): Shared, Path(id): Path<String>, body: Bytes) -> Response {
    inner.bump(|s| s.change_batches += 1);
    let r = change_inner(&inner, &id, &body);
    finish(&inner, r)
}

fn change_inner(inner: &Inner, id: &str, body: &Bytes) -> Result<Response, R53Error> {
    let hosted = check_zone(inner, id)?;
    let text =
        std::str::from_utf8(body).map_err(|_| R53Error::input("The request body is not UTF-8."))?;
    let req: ChangeRequestXml = quick_xml::de::from_str(text).map_err(|e| {
        R53Error::new(
            StatusCode::BAD_REQUEST,
            "MalformedInput",
            format!("Could not parse the ChangeResourceRecordSetsRequest: {e}"),
        )
    })?;
    let n = req.batch.changes.changes.len();
    inner.bump(|s| s.changes += u64::try_from(n).unwrap_or(u64::MAX));
    if n == 0 {
        return Err(R53Error::input(
            "1 validation error detected: Value '[]' at 'changeBatch.changes' failed to satisfy constraint: Member must have length greater than or equal to 1",
        ));
    }
    let mut parsed = Vec::with_capacity(n);
    for (i, c) in req.batch.changes.changes.into_iter().enumerate() {
        parsed.push(parse_change(c, i.saturating_add(1))?);
    }
    let style = inner.opts.batch_error_style;
    // Route 53's size limits: ResourceRecord elements and Value characters, UPSERT twice.
    let (mut records, mut chars) = (0usize, 0usize);
    for (action, rs) in &parsed {
        let times = if *action == Action::Upsert { 2 } else { 1 };
        records = records.saturating_add(rs.values.len().saturating_mul(times));
        let c: usize = rs.values.iter().map(String::len).sum();
        chars = chars.saturating_add(c.saturating_mul(times));
    }
    if records > inner.opts.max_batch_records {
        return Err(R53Error::batch(
            vec![format!(
                "Number of records limit of {} exceeded.",
                inner.opts.max_batch_records
            )],
            style,
        ));
    }
    if chars > inner.opts.max_batch_chars {
        return Err(R53Error::batch(
            vec![format!(
                "Number of characters limit of {} exceeded.",
                inner.opts.max_batch_chars
            )],
            style,
        ));
    }
    {
        let f = lock(&inner.faults);
        if let Some(i) = parsed.iter().find_map(|(_, rs)| f.fail_names.get(&rs.name)) {
            return Err(R53Error::injected(i));
        }
    }

    let zone = hosted.name.clone();
    let now = inner.opts.clock.now_ms();
    let mut store = lock(&hosted.store);
    let mut undo = Vec::with_capacity(parsed.len());
    let mut messages = Vec::new();
    for (action, rs) in parsed {
        if let Err(mut m) = apply_change(&mut store, &zone, action, rs, &mut undo) {
            messages.append(&mut m);
        }
    }
    if !messages.is_empty() {
        for (key, old) in undo.into_iter().rev() {
            match old {
                Some(rs) => {
                    store.sets.insert(key, rs);
                }
                None => {
                    store.sets.remove(&key);
                }
            }
        }
        return Err(R53Error::batch(messages, style));
    }
    store.seq = store.seq.saturating_add(1);
    // Numbered across the account's zones, so GetChange finds a change by its id alone.
    let seq = inner
        .change_seq
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .saturating_add(1);
    let change_id = format!(
        "C{}",
        base36(seq.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17), 13)
    );
    let comment = req.batch.comment;
    store
        .changes
        .insert(change_id.clone(), (now, comment.clone()));
    drop(store);
    Ok(xml_response(
        StatusCode::OK,
        "ChangeResourceRecordSetsResponse",
        &ChangeInfoEnvelope {
            xmlns: NAMESPACE,
            info: ChangeInfoOut {
                id: format!("/change/{change_id}"),
                status: "PENDING",
                submitted_at: clock::rfc3339(now),
                comment,
            },
        },
    ))
}

async fn get_change(State(inner): Shared, Path(id): Path<String>) -> Response {
    inner.bump(|s| s.get_change += 1);
    let r = (|| {
        let id = bare_id(&id, "change").to_string();
        let stores: Vec<Arc<Mutex<Store>>> = lock(&inner.hosted)
            .iter()
            .map(|h| h.store.clone())
            .collect();
        let found = stores
            .iter()
            .find_map(|st| lock(st).changes.get(&id).cloned());
        let Some((submitted, comment)) = found else {
            return Err(R53Error::new(
                StatusCode::NOT_FOUND,
                "NoSuchChange",
                format!("A change with the specified change ID does not exist: {id}"),
            ));
        };
        let after = i64::try_from(inner.opts.insync_after.as_millis()).unwrap_or(i64::MAX);
        let status = if inner.opts.clock.now_ms() >= submitted.saturating_add(after) {
            "INSYNC"
        } else {
            "PENDING"
        };
        Ok(xml_response(
            StatusCode::OK,
            "GetChangeResponse",
            &ChangeInfoEnvelope {
                xmlns: NAMESPACE,
                info: ChangeInfoOut {
                    id: format!("/change/{id}"),
                    status,
                    submitted_at: clock::rfc3339(submitted),
                    comment,
                },
            },
        ))
    })();
    finish(&inner, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_escape_sort_and_unescape_as_route53_writes_them() {
        assert_eq!(escape_name("*.example.com."), "\\052.example.com.");
        assert_eq!(unescape_name("\\052.example.com."), "*.example.com.");
        assert_eq!(sort_name("www.example.com."), "com.example.www.");
        assert_eq!(sort_name("example.com."), "com.example.");
        assert!(sort_name("example.com.") < sort_name("a.example.com."));
        assert_eq!(fqdn("WWW.Example.com"), "www.example.com.");
    }

    #[test]
    fn amz_dates_parse_to_the_right_instant() {
        let t = parse_amz_date("20150830T123600Z").expect("date");
        assert_eq!(
            t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).ok(),
            Some(1_440_938_160)
        );
        assert_eq!(amz_date_of(1_440_938_160_000), "20150830T123600Z");
        assert!(parse_amz_date("2015-08-30T12:36:00Z").is_none());
    }

    #[test]
    fn txt_values_must_be_quoted_strings() {
        assert_eq!(txt_problem("\"v=spf1 -all\""), None);
        assert_eq!(txt_problem("\"a\" \"b \\\" c\""), None);
        assert!(txt_problem("v=spf1 -all").is_some());
        assert!(txt_problem("\"unterminated").is_some());
        assert!(txt_problem(&format!("\"{}\"", "x".repeat(256))).is_some());
        // An octal escape is one byte: 255 of them fit one string.
        assert_eq!(txt_problem(&format!("\"{}\"", "\\303".repeat(255))), None);
        assert!(txt_problem(&format!("\"{}\"", "\\303".repeat(256))).is_some());
    }

    #[test]
    fn failures_without_end_cost_one_entry() {
        let mut runs = VecDeque::new();
        let i = Injected {
            status: 503,
            code: "ServiceUnavailable".into(),
            message: "down".into(),
        };
        runs.push_back((u32::MAX, i.clone()));
        runs.push_back((1, Injected { status: 400, ..i }));
        for _ in 0..1000 {
            assert_eq!(Faults::next_failure(&mut runs).map(|i| i.status), Some(503));
        }
        assert_eq!(runs.len(), 2);
        runs.front_mut().unwrap().0 = 1;
        assert_eq!(Faults::next_failure(&mut runs).map(|i| i.status), Some(503));
        assert_eq!(Faults::next_failure(&mut runs).map(|i| i.status), Some(400));
        assert!(Faults::next_failure(&mut runs).is_none());
    }
}
