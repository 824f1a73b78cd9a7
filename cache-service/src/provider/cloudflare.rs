//! The Cloudflare API v4 provider: lists a zone's DNS records page by page and
//! applies writes through the batch endpoint, falling back to single calls.
//!
//! Every HTTP request goes through one helper, [`CloudflareProvider::send`],
//! which paces requests with a client-side budget, rides out 429s, 5xx answers
//! and network faults with capped, jittered backoff, and maps Cloudflare's
//! error envelope onto [`ProviderError`]. This module must never put the API
//! token in a log line, an error message or a `Debug` output, must never return
//! a partial listing as if it were whole, and must never touch the cache
//! database.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{self, StreamExt, TryStreamExt};
use rand::Rng;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use tokio::time::Instant;
use trafego_common::duration::millis_u64;
use trafego_proto::validate::{
    Hostname, IdFormat, RecordType, TTL_MAX, TTL_MIN, ValidRecordInput, parse_content,
};

use super::{
    Capabilities, DnsProvider, Listing, MANAGED_COMMENT, ProviderError, ProviderRecord, WriteOp,
    WriteResult,
};

/// Cloudflare's public API root, used unless a test or a proxy says otherwise.
pub const DEFAULT_API_URL: &str = "https://api.cloudflare.com/client/v4";

/// The User-Agent every request carries, so the provider's logs can tell us apart.
pub const USER_AGENT: &str = "trafego-dns/0.1";

/// The smallest page size the listing falls back to when the API refuses a
/// larger one (Cloudflare's own default page size).
pub const MIN_PER_PAGE: u32 = 100;

/// Pages fetched at once once the first page has told how many there are:
/// enough to hide latency, few enough to keep memory and the budget modest.
const LIST_CONCURRENCY: usize = 4;

/// More pages than this is taken as a broken `result_info`, not a zone.
const MAX_PAGES: u32 = 1_000_000;

/// Longest provider-supplied message kept in an error, in characters.
const MAX_MESSAGE_CHARS: usize = 500;

/// Cloudflare's shortest TTL on every plan but Enterprise (which allows 30).
pub const DEFAULT_MIN_TTL: u32 = 60;

/// Cloudflare error codes meaning "a conflicting or identical record exists".
const CONFLICT_CODES: [u32; 3] = [81053, 81057, 81058];
/// Cloudflare error codes meaning "no such record" (81044) or "no such zone" (7003).
const NOT_FOUND_CODES: [u32; 2] = [81044, 7003];
/// Cloudflare error codes meaning the credentials were refused.
const AUTH_CODES: [u32; 6] = [9109, 10000, 6003, 6111, 9106, 9103];

/// How the provider reaches Cloudflare and how hard it may push.
///
/// Built with [`CloudflareConfig::new`] and adjusted field by field. `Debug`
/// is written by hand so the token never shows.
#[derive(Clone)]
pub struct CloudflareConfig {
    /// API root, [`DEFAULT_API_URL`] in production; a trailing slash is fine.
    pub api_url: String,
    /// The API token (SECRET): sent only in the `Authorization` header.
    pub token: String,
    /// The zone's name.
    pub zone: Hostname,
    /// The zone's id; when `None` it is looked up by name on first use.
    pub zone_id: Option<String>,
    /// Records asked for per listing page.
    pub per_page: u32,
    /// Writes per batch request.
    pub batch_size: usize,
    /// Requests allowed per `budget_window` (0 turns the budget off).
    pub budget_requests: u32,
    /// The sliding window the budget counts over.
    pub budget_window: Duration,
    /// Longest a request may wait for the budget before failing as rate limited.
    pub max_budget_wait: Duration,
    /// Retries after a 429, a 5xx or a network fault, per request.
    pub max_retries: u32,
    /// First backoff step.
    pub backoff_base: Duration,
    /// Longest backoff step.
    pub backoff_max: Duration,
    /// A 429 asking to wait longer than this fails as rate limited at once.
    pub max_retry_after: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
    /// Shortest explicit TTL the zone accepts: [`DEFAULT_MIN_TTL`], or 30 on
    /// Enterprise zones. Shorter TTLs are refused at the edge, naming it.
    pub min_ttl: u32,
}

impl CloudflareConfig {
    /// A configuration with production defaults: 5000 records a page, 200
    /// writes a batch, 1200 requests per 5 minutes (Cloudflare's global limit),
    /// at most 30 s waiting for the budget, 5 retries with 250 ms..10 s
    /// backoff, 429s asking for more than 60 s not waited out, 30 s timeout,
    /// TTLs of at least 60 s.
    pub fn new(api_url: &str, token: &str, zone: Hostname) -> Self {
        CloudflareConfig {
            api_url: api_url.to_string(),
            token: token.to_string(),
            zone,
            zone_id: None,
            per_page: 5000,
            batch_size: 200,
            budget_requests: 1200,
            budget_window: Duration::from_secs(300),
            max_budget_wait: Duration::from_secs(30),
            max_retries: 5,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            min_ttl: DEFAULT_MIN_TTL,
        }
    }
}

impl fmt::Debug for CloudflareConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudflareConfig")
            .field("api_url", &self.api_url)
            .field("token", &"<redacted>")
            .field("zone", &self.zone.as_str())
            .field("zone_id", &self.zone_id)
            .field("per_page", &self.per_page)
            .field("batch_size", &self.batch_size)
            .field("budget_requests", &self.budget_requests)
            .field("budget_window", &self.budget_window)
            .field("max_budget_wait", &self.max_budget_wait)
            .field("max_retries", &self.max_retries)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .field("max_retry_after", &self.max_retry_after)
            .field("request_timeout", &self.request_timeout)
            .field("min_ttl", &self.min_ttl)
            .finish()
    }
}

/// Counters since the provider was built, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloudflareStats {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Requests that were retries of an earlier attempt.
    pub retries: u64,
    /// 429 answers received.
    pub rate_limited: u64,
    /// Requests that had to wait for the client-side budget.
    pub budget_waits: u64,
    /// Calls that ended in an error after any retries.
    pub errors: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    rate_limited: AtomicU64,
    budget_waits: AtomicU64,
    errors: AtomicU64,
}

/// The client-side request budget: at most `limit` request instants in any
/// sliding `window`. Reservations may lie in the future; the queue stays sorted.
struct Budget {
    limit: usize,
    window: Duration,
    max_wait: Duration,
    sent: Mutex<VecDeque<Instant>>,
}

impl Budget {
    fn new(limit: u32, window: Duration, max_wait: Duration) -> Self {
        Budget {
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
            window,
            max_wait,
            sent: Mutex::new(VecDeque::new()),
        }
    }

    /// Reserves the earliest instant at or after `now` at which one more
    /// request keeps every window within the limit. `Err(wait)` when that
    /// instant is further than `max_wait` away (nothing is reserved then).
    fn reserve(&self, now: Instant) -> Result<Instant, Duration> {
        if self.limit == 0 || self.window.is_zero() {
            return Ok(now);
        }
        let mut q = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        // A window too long to add to an instant never ends: nothing expires.
        while q
            .front()
            .and_then(|&t| t.checked_add(self.window))
            .is_some_and(|end| end <= now)
        {
            q.pop_front();
        }
        let mut at = now;
        if q.len() >= self.limit {
            match q[q.len() - self.limit].checked_add(self.window) {
                Some(free) => at = at.max(free),
                None => return Err(Duration::MAX),
            }
        }
        if let Some(&last) = q.back() {
            at = at.max(last);
        }
        let wait = at.saturating_duration_since(now);
        if wait > self.max_wait {
            return Err(wait);
        }
        q.push_back(at);
        Ok(at)
    }
}

/// The largest backoff for retry number `attempt` (0-based): `base * 2^attempt`, capped at `max`.
fn backoff_cap(attempt: u32, base: Duration, max: Duration) -> Duration {
    let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(max).min(max)
}

/// Full jitter: a uniformly random wait in `[0, cap]`.
fn jitter(cap: Duration) -> Duration {
    let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// `Retry-After` as delta-seconds; an HTTP date or garbage yields `None`.
fn parse_retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let s = value?.to_str().ok()?.trim();
    s.parse::<u64>().ok().map(Duration::from_secs)
}

/// A provider-supplied text made safe for an error: no token, no control
/// characters (so no line breaks in log lines), bounded length.
fn sanitize(text: &str, token: &str) -> String {
    let text = if token.is_empty() {
        text.to_string()
    } else {
        text.replace(token, "<redacted>")
    };
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_MESSAGE_CHARS)
        .collect();
    if text.chars().count() > MAX_MESSAGE_CHARS {
        out.push('…');
    }
    out
}

/// Replaces the token wherever it might appear in an error's text.
fn scrub(e: ProviderError, token: &str) -> ProviderError {
    if token.is_empty() {
        return e;
    }
    let s = |m: String| {
        if m.contains(token) {
            m.replace(token, "<redacted>")
        } else {
            m
        }
    };
    match e {
        ProviderError::RateLimited { retry_after } => ProviderError::RateLimited { retry_after },
        ProviderError::Unauthorized(m) => ProviderError::Unauthorized(s(m)),
        ProviderError::NotFound(m) => ProviderError::NotFound(s(m)),
        ProviderError::Conflict(m) => ProviderError::Conflict(s(m)),
        ProviderError::Invalid(m) => ProviderError::Invalid(s(m)),
        ProviderError::Unavailable(m) => ProviderError::Unavailable(s(m)),
        ProviderError::Unanswered(m) => ProviderError::Unanswered(s(m)),
        ProviderError::Other(m) => ProviderError::Other(s(m)),
    }
}

/// One entry of Cloudflare's `errors` array, with the details it chains.
#[derive(Debug, Deserialize)]
struct CfError {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    message: String,
    #[serde(default)]
    error_chain: Vec<CfError>,
}

impl CfError {
    /// This error's code and those of the errors it chains.
    fn codes(&self) -> Vec<u32> {
        let mut out = vec![self.code];
        for e in &self.error_chain {
            out.extend(e.codes());
        }
        out
    }

    /// "code N: message (code M: detail)", sanitized.
    fn describe(&self, token: &str) -> String {
        let mut s = format!("code {}: {}", self.code, sanitize(&self.message, token));
        if !self.error_chain.is_empty() {
            let chain: Vec<String> = self.error_chain.iter().map(|e| e.describe(token)).collect();
            s.push_str(&format!(" ({})", chain.join("; ")));
        }
        s
    }
}

/// Cloudflare's error envelope, read leniently: only the codes and messages.
#[derive(Debug, Default, Deserialize)]
struct ErrorEnvelope {
    #[serde(default)]
    errors: Vec<CfError>,
}

/// Maps a refused request to a [`ProviderError`]: Cloudflare's error codes
/// first, then the HTTP status. `what` names the call ("GET /zones"); `token`
/// is scrubbed from anything the server said.
fn map_error(status: u16, body: &[u8], what: &str, token: &str) -> ProviderError {
    let env: ErrorEnvelope = serde_json::from_slice(body).unwrap_or_default();
    map_cf_errors(status, &env.errors, what, token)
}

fn map_cf_errors(status: u16, errors: &[CfError], what: &str, token: &str) -> ProviderError {
    let detail = if errors.is_empty() {
        format!("{what}: HTTP {status}")
    } else {
        let said: Vec<String> = errors.iter().map(|e| e.describe(token)).collect();
        sanitize(
            &format!("{what}: HTTP {status}: {}", said.join("; ")),
            token,
        )
    };
    let codes: Vec<u32> = errors.iter().flat_map(CfError::codes).collect();
    let has = |set: &[u32]| codes.iter().any(|c| set.contains(c));
    if has(&AUTH_CODES) || status == 401 || status == 403 {
        return ProviderError::Unauthorized(detail);
    }
    if has(&CONFLICT_CODES) {
        return ProviderError::Conflict(detail);
    }
    if has(&NOT_FOUND_CODES) {
        return ProviderError::NotFound(detail);
    }
    if codes
        .iter()
        .any(|&c| c == 1004 || (9000..=9999).contains(&c))
    {
        return ProviderError::Invalid(detail);
    }
    match status {
        404 => ProviderError::NotFound(detail),
        409 => ProviderError::Conflict(detail),
        429 => ProviderError::RateLimited { retry_after: None },
        400..=499 => ProviderError::Invalid(detail),
        500..=599 => ProviderError::Unavailable(detail),
        _ => ProviderError::Other(detail),
    }
}

/// Cloudflare's success envelope around a `result` of type `T`.
#[derive(Debug, Deserialize)]
struct Envelope<T> {
    #[serde(default = "yes")]
    success: bool,
    #[serde(default)]
    errors: Vec<CfError>,
    result: Option<T>,
    #[serde(default)]
    result_info: Option<ResultInfo>,
}

fn yes() -> bool {
    true
}

/// Paging information of a list answer.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
struct ResultInfo {
    #[serde(default)]
    per_page: Option<u32>,
    #[serde(default)]
    total_pages: Option<u32>,
    #[serde(default)]
    total_count: Option<u64>,
}

/// A zone as `GET /zones?name=` reports it: only what the lookup needs.
#[derive(Debug, Deserialize)]
struct CfZone {
    id: String,
    #[serde(default)]
    name: String,
}

/// The `data` object of SRV records, for the priority Cloudflare keeps there.
#[derive(Debug, Default, Deserialize)]
struct CfData {
    #[serde(default)]
    priority: Option<u32>,
}

/// A DNS record as Cloudflare reports it: only the fields the cache keeps, so
/// a 100,000-record zone deserializes into small structs.
#[derive(Debug, Deserialize)]
struct CfRecord {
    id: String,
    name: String,
    #[serde(rename = "type")]
    rtype: String,
    #[serde(default)]
    content: String,
    #[serde(default = "ttl_auto")]
    ttl: u32,
    #[serde(default)]
    proxied: Option<bool>,
    #[serde(default)]
    priority: Option<u32>,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    data: Option<CfData>,
}

fn ttl_auto() -> u32 {
    1
}

impl CfRecord {
    /// The record in the cache's normal form: name lowercase without the
    /// trailing dot, type uppercase, content canonical for known types (so it
    /// compares equal to what callers asked), priority only for MX and SRV.
    fn into_provider(self) -> ProviderRecord {
        let rtype = self.rtype.to_ascii_uppercase();
        let mut name = self.name.to_ascii_lowercase();
        if name.ends_with('.') {
            name.pop();
        }
        let known = rtype.parse::<RecordType>().ok();
        let content = match known {
            Some(t) => parse_content("content", t, &self.content).unwrap_or(self.content),
            None => self.content,
        };
        let priority = if known.is_some_and(RecordType::has_priority) {
            self.priority.or_else(|| self.data.and_then(|d| d.priority))
        } else {
            None
        };
        ProviderRecord {
            id: self.id,
            rtype,
            name,
            content,
            ttl: self.ttl,
            proxied: self.proxied.unwrap_or(false),
            priority,
            comment: self.comment.unwrap_or_default(),
        }
    }
}

/// The `result` of a batch call: the new state of each put and post, in request order.
#[derive(Debug, Default, Deserialize)]
struct BatchResult {
    #[serde(default)]
    deletes: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    puts: Option<Vec<CfRecord>>,
    #[serde(default)]
    posts: Option<Vec<CfRecord>>,
}

/// Structured content Cloudflare wants for SRV and CAA records.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum WriteData<'a> {
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: &'a str,
    },
    Caa {
        flags: u8,
        tag: &'a str,
        value: &'a str,
    },
}

/// A record as written in a POST, a PUT or a batch entry, following
/// Cloudflare's record schema: SRV and CAA records carry their value in
/// `data` only (their `content` is read-only there, and SRV's priority lives
/// in `data`), and neither type has `proxied`. Other types send `content`.
#[derive(Debug, Serialize)]
struct WriteBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type")]
    rtype: &'static str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    ttl: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    proxied: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<u16>,
    comment: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<WriteData<'a>>,
}

impl<'a> WriteBody<'a> {
    fn new(id: Option<&'a str>, input: &'a ValidRecordInput) -> Self {
        let s = &input.spec;
        let comment = if input.comment.is_empty() {
            MANAGED_COMMENT
        } else {
            input.comment.as_str()
        };
        let data = write_data(s.rtype, &s.content, s.priority);
        // With `data`, the value is all there: `content` would be a read-only field.
        let structured = data.is_some();
        WriteBody {
            id,
            rtype: s.rtype.as_str(),
            name: s.name.as_str(),
            content: (!structured).then_some(s.content.as_str()),
            ttl: s.ttl,
            proxied: (!structured).then_some(s.proxied),
            priority: if structured { None } else { s.priority },
            comment,
            data,
        }
    }
}

/// Splits canonical SRV (`weight port target`) and CAA (`flags tag "value"`)
/// content into the `data` object Cloudflare's API expects for those types.
fn write_data(rtype: RecordType, content: &str, priority: Option<u16>) -> Option<WriteData<'_>> {
    match rtype {
        RecordType::Srv => {
            let mut it = content.split_ascii_whitespace();
            let weight = it.next()?.parse().ok()?;
            let port = it.next()?.parse().ok()?;
            let target = it.next()?;
            Some(WriteData::Srv {
                priority: priority.unwrap_or(0),
                weight,
                port,
                target,
            })
        }
        RecordType::Caa => {
            let mut it = content.splitn(3, ' ');
            let flags = it.next()?.parse().ok()?;
            let tag = it.next()?;
            let value = it.next()?;
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            Some(WriteData::Caa { flags, tag, value })
        }
        _ => None,
    }
}

/// Request body of `POST /dns_records/batch`.
#[derive(Debug, Default, Serialize)]
struct BatchBody<'a> {
    deletes: Vec<IdOnly<'a>>,
    puts: Vec<WriteBody<'a>>,
    posts: Vec<WriteBody<'a>>,
}

#[derive(Debug, Serialize)]
struct IdOnly<'a> {
    id: &'a str,
}

/// Whether a batch refused with this error should be retried op by op: the
/// endpoint refused the chunk as a whole (a 4xx other than 429 or auth).
fn refused_as_a_whole(e: &ProviderError) -> bool {
    matches!(
        e,
        ProviderError::Invalid(_) | ProviderError::NotFound(_) | ProviderError::Conflict(_)
    )
}

/// Whether an error says nothing about the op itself but about the provider,
/// so later chunks would fail the same way and are not tried.
fn provider_wide(e: &ProviderError) -> bool {
    matches!(
        e,
        ProviderError::Unavailable(_)
            | ProviderError::RateLimited { .. }
            | ProviderError::Unauthorized(_)
    )
}

/// The Cloudflare provider: one HTTP client, one request budget, one zone.
pub struct CloudflareProvider {
    cfg: CloudflareConfig,
    client: reqwest::Client,
    base: Url,
    auth: HeaderValue,
    zone_id: OnceCell<String>,
    budget: Budget,
    counters: Counters,
}

impl fmt::Debug for CloudflareProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloudflareProvider")
            .field("cfg", &self.cfg)
            .field("zone_id", &self.zone_id.get())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn valid_zone_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl CloudflareProvider {
    /// Builds the provider and its one HTTP client (rustls, timeouts, user
    /// agent). Makes no request: the zone id, if not configured, is looked up
    /// on first use. Fails for a bad API URL, a token that cannot be a header
    /// value, a malformed zone id or zero page or batch sizes.
    pub fn new(cfg: CloudflareConfig) -> Result<Self, ProviderError> {
        let mut base = Url::parse(cfg.api_url.trim()).map_err(|e| {
            ProviderError::Invalid(format!("Cloudflare API URL {:?}: {e}", cfg.api_url))
        })?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ProviderError::Invalid(format!(
                "Cloudflare API URL {:?} must be an http or https URL",
                cfg.api_url
            )));
        }
        if let Ok(mut segs) = base.path_segments_mut() {
            segs.pop_if_empty();
        }
        base.set_query(None);
        base.set_fragment(None);
        if cfg.token.is_empty() {
            return Err(ProviderError::Unauthorized(
                "no API token configured".into(),
            ));
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", cfg.token)).map_err(|_| {
            ProviderError::Unauthorized(
                "the API token holds characters a header cannot carry".into(),
            )
        })?;
        auth.set_sensitive(true);
        if let Some(id) = &cfg.zone_id
            && !valid_zone_id(id)
        {
            return Err(ProviderError::Invalid(format!(
                "zone id {id:?} must be 1 to 64 letters, digits, '-' or '_'"
            )));
        }
        if !(TTL_MIN..=TTL_MAX).contains(&cfg.min_ttl) {
            return Err(ProviderError::Invalid(format!(
                "minimum TTL {} is out of range {TTL_MIN} to {TTL_MAX}",
                cfg.min_ttl
            )));
        }
        if cfg.per_page == 0 || cfg.batch_size == 0 {
            return Err(ProviderError::Invalid(
                "per_page and batch_size must be at least 1".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(USER_AGENT)
            .timeout(cfg.request_timeout)
            .connect_timeout(cfg.request_timeout.min(Duration::from_secs(10)))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| {
                ProviderError::Other(format!("cannot build the HTTP client: {}", e.without_url()))
            })?;
        let zone_id = match &cfg.zone_id {
            Some(id) => OnceCell::new_with(Some(id.clone())),
            None => OnceCell::new(),
        };
        let budget = Budget::new(cfg.budget_requests, cfg.budget_window, cfg.max_budget_wait);
        Ok(CloudflareProvider {
            cfg,
            client,
            base,
            auth,
            zone_id,
            budget,
            counters: Counters::default(),
        })
    }

    /// Total HTTP requests sent since the provider was built, retries included.
    pub fn requests_made(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }

    /// A snapshot of the provider's counters.
    pub fn stats(&self) -> CloudflareStats {
        let c = &self.counters;
        CloudflareStats {
            requests: c.requests.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            budget_waits: c.budget_waits.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }

    /// `{api}/seg/seg/...?k=v`, each segment percent-encoded so a record id
    /// can never change the path.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// The one door to Cloudflare: budget, auth, retries, error mapping.
    /// Every attempt is counted in `trafego_provider_requests_total` by
    /// operation and outcome.
    /// Returns the body of a 2xx answer. Every attempt adds one to `reqs`.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&[u8]>,
        reqs: &AtomicU64,
    ) -> Result<Vec<u8>, ProviderError> {
        let result = self.send_inner(&method, &url, body, reqs).await;
        result.map_err(|e| {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            scrub(e, &self.cfg.token)
        })
    }

    async fn send_inner(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&[u8]>,
        reqs: &AtomicU64,
    ) -> Result<Vec<u8>, ProviderError> {
        let path = url.path();
        let token = self.cfg.token.as_str();
        let op = operation(method, path);
        // A write whose answer is lost after it was sent may have been
        // applied: it is reported as unanswered, never sent again from here.
        let write = *method != Method::GET;
        let lost = |fault: String| {
            tracing::warn!(
                %method,
                path,
                fault = %fault,
                "Cloudflare write sent but its answer was lost; not retried blindly",
            );
            ProviderError::Unanswered(format!("{method} {path}: {fault}"))
        };
        let mut attempt: u32 = 0;
        loop {
            let now = Instant::now();
            match self.budget.reserve(now) {
                Ok(at) if at > now => {
                    self.counters.budget_waits.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        %method,
                        path,
                        wait_ms = millis_u64(at - now),
                        "waiting for the Cloudflare request budget",
                    );
                    tokio::time::sleep_until(at).await;
                }
                Ok(_) => {}
                Err(wait) => {
                    tracing::warn!(
                        %method,
                        path,
                        wait_ms = millis_u64(wait),
                        "Cloudflare request budget exhausted",
                    );
                    return Err(ProviderError::RateLimited {
                        retry_after: Some(wait),
                    });
                }
            }
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            reqs.fetch_add(1, Ordering::Relaxed);
            if attempt > 0 {
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("trafego_provider_retries_total", "provider" => "cloudflare", "operation" => op)
                    .increment(1);
            }
            let mut req = self
                .client
                .request(method.clone(), url.clone())
                .header(AUTHORIZATION, self.auth.clone())
                .header(ACCEPT, "application/json");
            if let Some(b) = body {
                req = req
                    .header(CONTENT_TYPE, "application/json")
                    .body(b.to_vec());
            }
            let fault = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    count_request(op, outcome_of(status.as_u16()));
                    if status.is_success() {
                        match resp.bytes().await {
                            Ok(b) => return Ok(Vec::from(b)),
                            Err(e) if write => {
                                return Err(lost(format!("reading the answer: {}", describe(&e))));
                            }
                            Err(e) => format!("reading the answer: {}", describe(&e)),
                        }
                    } else if status == StatusCode::TOO_MANY_REQUESTS {
                        self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                        let asked = parse_retry_after(resp.headers().get(RETRY_AFTER));
                        if let Some(d) = asked
                            && d > self.cfg.max_retry_after
                        {
                            tracing::warn!(
                                %method,
                                path,
                                status = 429,
                                retry_after_s = d.as_secs(),
                                "Cloudflare asked to wait longer than allowed",
                            );
                            return Err(ProviderError::RateLimited {
                                retry_after: Some(d),
                            });
                        }
                        if attempt >= self.cfg.max_retries {
                            tracing::warn!(
                                %method,
                                path,
                                status = 429,
                                attempt = attempt + 1,
                                "Cloudflare still rate limiting; giving up",
                            );
                            return Err(ProviderError::RateLimited { retry_after: asked });
                        }
                        let delay = asked.unwrap_or_else(|| self.backoff(attempt));
                        tracing::warn!(
                            %method,
                            path,
                            status = 429,
                            attempt = attempt + 1,
                            delay_ms = millis_u64(delay),
                            "Cloudflare rate limited the request; retrying",
                        );
                        attempt += 1;
                        tokio::time::sleep(delay).await;
                        continue;
                    } else if status.is_server_error() {
                        if write {
                            return Err(lost(format!("HTTP {}", status.as_u16())));
                        }
                        format!("HTTP {}", status.as_u16())
                    } else {
                        let bytes = resp.bytes().await.unwrap_or_default();
                        let err =
                            map_error(status.as_u16(), &bytes, &format!("{method} {path}"), token);
                        tracing::debug!(
                            %method,
                            path,
                            status = status.as_u16(),
                            error = %err,
                            "Cloudflare refused the request",
                        );
                        return Err(err);
                    }
                }
                Err(e) => {
                    count_request(op, "network_error");
                    // A connection never made carried nothing: safe to retry.
                    if write && !e.is_connect() {
                        return Err(lost(describe(&e)));
                    }
                    describe(&e)
                }
            };
            if attempt >= self.cfg.max_retries {
                tracing::warn!(
                    %method,
                    path,
                    fault = %fault,
                    attempt = attempt + 1,
                    "Cloudflare request failed; giving up",
                );
                return Err(ProviderError::Unavailable(format!(
                    "{method} {path}: {fault} after {} attempts",
                    attempt + 1
                )));
            }
            let delay = self.backoff(attempt);
            tracing::warn!(
                %method,
                path,
                fault = %fault,
                attempt = attempt + 1,
                delay_ms = millis_u64(delay),
                "Cloudflare request failed; retrying",
            );
            attempt += 1;
            tokio::time::sleep(delay).await;
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        jitter(backoff_cap(
            attempt,
            self.cfg.backoff_base,
            self.cfg.backoff_max,
        ))
    }

    /// Sends and reads a success envelope's `result`, which must be there.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&[u8]>,
        reqs: &AtomicU64,
    ) -> Result<(T, Option<ResultInfo>), ProviderError> {
        let what = format!("{method} {}", url.path());
        match self.call_opt(method, url, body, reqs).await? {
            (Some(r), info) => Ok((r, info)),
            (None, _) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                Err(ProviderError::Other(format!(
                    "{what}: answer without a result"
                )))
            }
        }
    }

    /// Sends and reads a success envelope, whose `result` may be absent.
    async fn call_opt<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&[u8]>,
        reqs: &AtomicU64,
    ) -> Result<(Option<T>, Option<ResultInfo>), ProviderError> {
        let what = format!("{method} {}", url.path());
        let bytes = self.send(method, url, body, reqs).await?;
        let env: Envelope<T> = serde_json::from_slice(&bytes).map_err(|e| {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            ProviderError::Other(sanitize(
                &format!("{what}: unreadable answer: {e}"),
                &self.cfg.token,
            ))
        })?;
        if !env.success {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            return Err(map_cf_errors(200, &env.errors, &what, &self.cfg.token));
        }
        Ok((env.result, env.result_info))
    }

    /// The zone id: configured, or looked up by name once and remembered.
    async fn zone_id(&self, reqs: &AtomicU64) -> Result<&str, ProviderError> {
        let id = self
            .zone_id
            .get_or_try_init(|| async {
                let zone = self.cfg.zone.as_str();
                let url = self.url(&["zones"], &[("name", zone)]);
                let (zones, _): (Vec<CfZone>, _) = self.call(Method::GET, url, None, reqs).await?;
                let found = zones
                    .into_iter()
                    .find(|z| {
                        z.name.is_empty() || z.name.trim_end_matches('.').eq_ignore_ascii_case(zone)
                    })
                    .ok_or_else(|| ProviderError::NotFound(format!("zone {zone} not found")))?;
                if !valid_zone_id(&found.id) {
                    return Err(ProviderError::Other(format!(
                        "zone {zone}: the provider gave a malformed zone id"
                    )));
                }
                tracing::info!(zone, zone_id = %found.id, "found the Cloudflare zone");
                Ok(found.id)
            })
            .await?;
        Ok(id.as_str())
    }

    /// One listing page at `per_page`.
    async fn fetch_page(
        &self,
        zone_id: &str,
        page: u32,
        per_page: u32,
        reqs: &AtomicU64,
    ) -> Result<(Vec<CfRecord>, ResultInfo), ProviderError> {
        let page_s = page.to_string();
        let per_page_s = per_page.to_string();
        let url = self.url(
            &["zones", zone_id, "dns_records"],
            &[("page", &page_s), ("per_page", &per_page_s)],
        );
        let (records, info) = self.call(Method::GET, url, None, reqs).await?;
        Ok((records, info.unwrap_or_default()))
    }

    /// Reads the whole zone at `per_page` (records may repeat), or fails.
    /// Also returns the record count the last page reported, if any, and
    /// whether the pages disagreed about it (the zone changed meanwhile).
    async fn list_at(
        &self,
        zone_id: &str,
        per_page: u32,
        reqs: &AtomicU64,
    ) -> Result<(Vec<ProviderRecord>, Option<u64>, bool), ProviderError> {
        let (first, info) = self.fetch_page(zone_id, 1, per_page, reqs).await?;
        let mut total_count = info.total_count;
        let first_count = info.total_count;
        let mut changed = false;
        let mut out: Vec<ProviderRecord> = Vec::new();
        let mut last_len = first.len();
        out.extend(first.into_iter().map(CfRecord::into_provider));
        match info.total_pages {
            Some(total) => {
                if total > MAX_PAGES {
                    return Err(ProviderError::Other(format!(
                        "listing reports {total} pages; refusing to read that many"
                    )));
                }
                out.reserve(
                    last_len
                        .saturating_mul(
                            usize::try_from(total.saturating_sub(1)).unwrap_or(usize::MAX),
                        )
                        .min(1 << 20),
                );
                let mut done = 1u32;
                let mut known = total;
                while done < known {
                    // In page order, a few in flight, each page converted as it
                    // arrives so only a few raw pages are ever held at once.
                    let mut pages = stream::iter((done + 1)..=known)
                        .map(|p| self.fetch_page(zone_id, p, per_page, reqs))
                        .buffered(LIST_CONCURRENCY);
                    done = known;
                    while let Some((records, info)) = pages.try_next().await? {
                        changed |= info.total_count.is_some() && info.total_count != first_count;
                        total_count = info.total_count.or(total_count);
                        if let Some(t) = info.total_pages
                            && t > known
                            && t <= MAX_PAGES
                        {
                            // The zone grew while we read it: read the new pages too.
                            known = t;
                        }
                        out.extend(records.into_iter().map(CfRecord::into_provider));
                    }
                }
            }
            None => {
                // No paging information: read on until a short or empty page.
                let size = usize::try_from(info.per_page.unwrap_or(per_page)).unwrap_or(usize::MAX);
                let mut page = 1u32;
                while last_len > 0 && last_len >= size && page < MAX_PAGES {
                    page += 1;
                    let (records, info) = self.fetch_page(zone_id, page, per_page, reqs).await?;
                    changed |= info.total_count.is_some() && info.total_count != first_count;
                    total_count = info.total_count.or(total_count);
                    last_len = records.len();
                    out.extend(records.into_iter().map(CfRecord::into_provider));
                }
            }
        }
        Ok((out, total_count, changed))
    }

    /// Reads the whole zone. Pages are read by offset, so records deleted by
    /// someone else during the listing can shift others past a page boundary.
    /// When the pages disagree about the zone's size, or the records read do
    /// not add up to it, the zone is read once more, and a second such listing
    /// fails (the cache then keeps its previous snapshot whole).
    async fn list_all(&self, reqs: &AtomicU64) -> Result<Vec<ProviderRecord>, ProviderError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (records, total_count, changed) = self.list_once(reqs).await?;
            match total_count {
                Some(expected)
                    if changed || u64::try_from(records.len()).ok() != Some(expected) =>
                {
                    if attempt >= 2 {
                        return Err(ProviderError::Unavailable(format!(
                            "the zone changed while it was listed: read {} records, the provider reports {expected}",
                            records.len()
                        )));
                    }
                    tracing::warn!(
                        read = records.len(),
                        expected,
                        "the zone changed during the listing; reading it again"
                    );
                }
                _ => return Ok(records),
            }
        }
    }

    async fn list_once(
        &self,
        reqs: &AtomicU64,
    ) -> Result<(Vec<ProviderRecord>, Option<u64>, bool), ProviderError> {
        let zone_id = self.zone_id(reqs).await?;
        let mut per_page = self.cfg.per_page;
        let (mut records, total_count, changed) = loop {
            match self.list_at(zone_id, per_page, reqs).await {
                Ok(r) => break r,
                Err(ProviderError::Invalid(msg)) if per_page > MIN_PER_PAGE => {
                    let next = (per_page / 2).max(MIN_PER_PAGE);
                    tracing::warn!(
                        per_page,
                        next,
                        error = %msg,
                        "Cloudflare refused the listing; halving the page size",
                    );
                    per_page = next;
                }
                Err(e) => return Err(e),
            }
        };
        let mut seen: HashSet<String> = HashSet::with_capacity(records.len());
        records.retain(|r| seen.insert(r.id.clone()));
        Ok((records, total_count, changed))
    }

    /// One write through the single-record endpoints.
    async fn apply_one(&self, zone_id: &str, op: &WriteOp, reqs: &AtomicU64) -> WriteResult {
        match op {
            WriteOp::Create(input) => {
                let body = encode(&WriteBody::new(None, input))?;
                let url = self.url(&["zones", zone_id, "dns_records"], &[]);
                let (r, _): (CfRecord, _) = self.call(Method::POST, url, Some(&body), reqs).await?;
                Ok(Some(r.into_provider()))
            }
            WriteOp::Update { id, input } => {
                let body = encode(&WriteBody::new(None, input))?;
                let url = self.url(&["zones", zone_id, "dns_records", id], &[]);
                let (r, _): (CfRecord, _) = self.call(Method::PUT, url, Some(&body), reqs).await?;
                Ok(Some(r.into_provider()))
            }
            WriteOp::Delete { id } => {
                let url = self.url(&["zones", zone_id, "dns_records", id], &[]);
                let _: (Option<IgnoredAny>, _) =
                    self.call_opt(Method::DELETE, url, None, reqs).await?;
                Ok(None)
            }
        }
    }

    /// One chunk through the batch endpoint; per-op results in op order.
    async fn apply_batch(
        &self,
        zone_id: &str,
        ops: &[WriteOp],
        reqs: &AtomicU64,
    ) -> Result<Vec<WriteResult>, ProviderError> {
        let mut body = BatchBody::default();
        // Where each op's answer is: (kind, index within kind).
        let mut slots: Vec<(u8, usize)> = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                WriteOp::Delete { id } => {
                    slots.push((0, body.deletes.len()));
                    body.deletes.push(IdOnly { id });
                }
                WriteOp::Update { id, input } => {
                    slots.push((1, body.puts.len()));
                    body.puts.push(WriteBody::new(Some(id), input));
                }
                WriteOp::Create(input) => {
                    slots.push((2, body.posts.len()));
                    body.posts.push(WriteBody::new(None, input));
                }
            }
        }
        let bytes = encode(&body)?;
        let url = self.url(&["zones", zone_id, "dns_records", "batch"], &[]);
        let (result, _): (BatchResult, _) =
            self.call(Method::POST, url, Some(&bytes), reqs).await?;
        let deletes = result.deletes.map_or(0, |d| d.len());
        let mut puts: Vec<Option<CfRecord>> = result
            .puts
            .unwrap_or_default()
            .into_iter()
            .map(Some)
            .collect();
        let mut posts: Vec<Option<CfRecord>> = result
            .posts
            .unwrap_or_default()
            .into_iter()
            .map(Some)
            .collect();
        let missing = || ProviderError::Other("the batch answer did not report this write".into());
        Ok(slots
            .into_iter()
            .map(|(kind, i)| match kind {
                0 if i < deletes => Ok(None),
                1 => puts
                    .get_mut(i)
                    .and_then(Option::take)
                    .map(|r| Some(r.into_provider()))
                    .ok_or_else(missing),
                2 => posts
                    .get_mut(i)
                    .and_then(Option::take)
                    .map(|r| Some(r.into_provider()))
                    .ok_or_else(missing),
                _ => Err(missing()),
            })
            .collect())
    }

    async fn apply_all(&self, ops: Vec<WriteOp>, reqs: &AtomicU64) -> Vec<WriteResult> {
        if ops.is_empty() {
            return Vec::new();
        }
        let zone_id = match self.zone_id(reqs).await {
            Ok(id) => id,
            Err(e) => return ops.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut results: Vec<WriteResult> = Vec::with_capacity(ops.len());
        let mut stop: Option<ProviderError> = None;
        for chunk in ops.chunks(self.cfg.batch_size) {
            if let Some(e) = &stop {
                results.extend(chunk.iter().map(|_| Err(e.clone())));
                continue;
            }
            if let [op] = chunk {
                let r = self.apply_one(zone_id, op, reqs).await;
                match &r {
                    Err(ProviderError::Unanswered(m)) => {
                        stop = Some(ProviderError::Unavailable(format!(
                            "not sent: an earlier write's answer was lost ({m})"
                        )));
                    }
                    Err(e) if provider_wide(e) => stop = Some(e.clone()),
                    _ => {}
                }
                results.push(r);
                continue;
            }
            match self.apply_batch(zone_id, chunk, reqs).await {
                Ok(rs) => results.extend(rs),
                Err(e) if refused_as_a_whole(&e) => {
                    tracing::info!(
                        ops = chunk.len(),
                        error = %e,
                        "Cloudflare refused the batch; writing its records one by one",
                    );
                    for op in chunk {
                        results.push(self.apply_one(zone_id, op, reqs).await);
                    }
                }
                Err(e) => {
                    if let ProviderError::Unanswered(m) = &e {
                        // Later chunks were never sent: say so plainly, so
                        // they are not taken for writes whose answer was lost.
                        stop = Some(ProviderError::Unavailable(format!(
                            "not sent: an earlier batch's answer was lost ({m})"
                        )));
                    } else if provider_wide(&e) {
                        stop = Some(e.clone());
                    }
                    results.extend(chunk.iter().map(|_| Err(e.clone())));
                }
            }
        }
        results
    }
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ProviderError> {
    serde_json::to_vec(value)
        .map_err(|e| ProviderError::Other(format!("cannot encode the request: {e}")))
}

/// A network fault in words, without the URL.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "broken answer"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} ({detail})")
    }
}

impl DnsProvider for CloudflareProvider {
    fn name(&self) -> &'static str {
        "cloudflare"
    }

    fn zone(&self) -> &Hostname {
        &self.cfg.zone
    }

    /// Every type the project manages, proxying, CNAME flattening at the
    /// apex, comments, the configured batch size and minimum TTL, and ids of
    /// 32 lowercase hex digits (what the API has always issued).
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            record_types: RecordType::ALL.to_vec(),
            proxied: true,
            min_ttl: self.cfg.min_ttl,
            max_ttl: TTL_MAX,
            cname_at_apex: true,
            batch_size: u32::try_from(self.cfg.batch_size).unwrap_or(u32::MAX),
            comments: true,
            id_format: IdFormat::HEX32,
        }
    }

    fn list(&self) -> BoxFuture<'_, Result<Listing, ProviderError>> {
        Box::pin(async move {
            let reqs = AtomicU64::new(0);
            let records = self.list_all(&reqs).await?;
            Ok(Listing {
                records,
                requests: reqs.load(Ordering::Relaxed),
            })
        })
    }

    fn apply(&self, ops: Vec<WriteOp>) -> BoxFuture<'_, (Vec<WriteResult>, u64)> {
        Box::pin(async move {
            let reqs = AtomicU64::new(0);
            let results = self.apply_all(ops, &reqs).await;
            (results, reqs.load(Ordering::Relaxed))
        })
    }

    fn lookup<'a>(
        &'a self,
        name: &'a str,
        rtype: &'a str,
    ) -> BoxFuture<'a, Result<(Vec<ProviderRecord>, u64), ProviderError>> {
        Box::pin(async move {
            let reqs = AtomicU64::new(0);
            let zone_id = self.zone_id(&reqs).await?;
            // One (name, type) holds a handful of records: one page at the
            // largest size reads them all.
            let per_page = self.cfg.per_page.max(1).to_string();
            let url = self.url(
                &["zones", zone_id, "dns_records"],
                &[
                    ("name.exact", name),
                    ("type", rtype),
                    ("per_page", &per_page),
                ],
            );
            let (records, _): (Vec<CfRecord>, _) = self.call(Method::GET, url, None, &reqs).await?;
            let held = records
                .into_iter()
                .map(CfRecord::into_provider)
                .filter(|r| r.name == name && r.rtype == rtype)
                .collect();
            Ok((held, reqs.load(Ordering::Relaxed)))
        })
    }
}

/// The operation a request performs, for metrics labels.
fn operation(method: &Method, path: &str) -> &'static str {
    let tail = path.trim_end_matches('/');
    if tail.ends_with("/zones") || !tail.contains("/dns_records") {
        "zone"
    } else if tail.ends_with("/dns_records/batch") {
        "batch"
    } else if tail.ends_with("/dns_records") {
        if *method == Method::GET {
            "list"
        } else {
            "create"
        }
    } else if *method == Method::DELETE {
        "delete"
    } else if *method == Method::GET {
        "get"
    } else {
        "update"
    }
}

/// The outcome label of an HTTP status.
fn outcome_of(status: u16) -> &'static str {
    match status {
        200..=299 => "ok",
        429 => "rate_limited",
        500..=599 => "server_error",
        _ => "client_error",
    }
}

fn count_request(op: &'static str, outcome: &'static str) {
    metrics::counter!("trafego_provider_requests_total",
        "provider" => "cloudflare", "operation" => op, "outcome" => outcome)
    .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Hostname {
        Hostname::parse("zone", "example.com").unwrap()
    }

    #[test]
    fn budget_allows_the_limit_then_paces() {
        let b = Budget::new(3, Duration::from_millis(100), Duration::from_secs(1));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(b.reserve(t0), Ok(t0));
        }
        // The fourth waits until the first leaves the window.
        assert_eq!(b.reserve(t0), Ok(t0 + Duration::from_millis(100)));
        assert_eq!(b.reserve(t0), Ok(t0 + Duration::from_millis(100)));
        assert_eq!(b.reserve(t0), Ok(t0 + Duration::from_millis(100)));
        assert_eq!(b.reserve(t0), Ok(t0 + Duration::from_millis(200)));
        // Later, the old entries are gone.
        let later = t0 + Duration::from_millis(500);
        assert_eq!(b.reserve(later), Ok(later));
    }

    #[test]
    fn budget_refuses_a_wait_over_the_maximum() {
        let b = Budget::new(2, Duration::from_secs(10), Duration::from_secs(5));
        let t0 = Instant::now();
        assert!(b.reserve(t0).is_ok());
        assert!(b.reserve(t0).is_ok());
        assert_eq!(b.reserve(t0), Err(Duration::from_secs(10)));
        // Nothing was reserved by the refusal.
        let t1 = t0 + Duration::from_secs(6);
        assert_eq!(b.reserve(t1), Ok(t0 + Duration::from_secs(10)));
    }

    #[test]
    fn budget_never_exceeds_its_limit_in_any_window() {
        let window = Duration::from_millis(50);
        let b = Budget::new(5, window, Duration::from_secs(60));
        let t0 = Instant::now();
        let mut times = Vec::new();
        for i in 0..200u64 {
            let now = t0 + Duration::from_millis(i / 3);
            times.push(b.reserve(now).unwrap());
        }
        for (i, &t) in times.iter().enumerate() {
            let in_window = times.iter().filter(|&&u| u <= t && u + window > t).count();
            assert!(in_window <= 5, "request {i}: {in_window} in one window");
        }
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn budget_of_zero_is_off() {
        let b = Budget::new(0, Duration::from_secs(1), Duration::ZERO);
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(b.reserve(t0), Ok(t0));
        }
    }

    #[test]
    fn budget_with_a_window_too_long_for_an_instant_never_panics() {
        // CLOUDFLARE_RATE_WINDOW=18446744073709551615 (bare: ms) or larger.
        let b = Budget::new(2, Duration::MAX, Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(b.reserve(t0), Ok(t0));
        assert_eq!(b.reserve(t0), Ok(t0));
        // The window never ends: the third request waits "forever", refused.
        assert_eq!(b.reserve(t0), Err(Duration::MAX));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_millis(250);
        let max = Duration::from_secs(10);
        assert_eq!(backoff_cap(0, base, max), Duration::from_millis(250));
        assert_eq!(backoff_cap(1, base, max), Duration::from_millis(500));
        assert_eq!(backoff_cap(3, base, max), Duration::from_secs(2));
        assert_eq!(backoff_cap(6, base, max), max);
        assert_eq!(backoff_cap(40, base, max), max);
        assert_eq!(backoff_cap(u32::MAX, base, max), max);
        for attempt in 0..10 {
            let cap = backoff_cap(attempt, base, max);
            for _ in 0..50 {
                assert!(jitter(cap) <= cap);
            }
        }
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_read_as_seconds() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(parse_retry_after(Some(&v("0"))), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(Some(&v(" 7 "))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after(Some(&v("Wed, 21 Oct 2015 07:28:00 GMT"))),
            None
        );
        assert_eq!(parse_retry_after(None), None);
    }

    fn body(code: u32, message: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "success": false,
            "errors": [{"code": code, "message": message}],
            "messages": [],
            "result": null
        }))
        .unwrap()
    }

    #[test]
    fn error_codes_map_to_provider_errors() {
        let t = "s3cr3t-token";
        let m = |status, code, msg: &str| map_error(status, &body(code, msg), "POST /x", t);
        assert!(matches!(
            m(400, 81053, "exists"),
            ProviderError::Conflict(_)
        ));
        assert!(matches!(
            m(400, 81057, "exists"),
            ProviderError::Conflict(_)
        ));
        assert!(matches!(
            m(404, 81044, "no record"),
            ProviderError::NotFound(_)
        ));
        assert!(matches!(
            m(400, 7003, "no zone"),
            ProviderError::NotFound(_)
        ));
        for code in AUTH_CODES {
            assert!(
                matches!(m(400, code, "auth"), ProviderError::Unauthorized(_)),
                "{code}"
            );
        }
        for code in [1004, 9005, 9006, 9021, 9000, 9999] {
            assert!(
                matches!(m(400, code, "bad"), ProviderError::Invalid(_)),
                "{code}"
            );
        }
        assert!(matches!(
            map_error(401, b"", "GET /x", t),
            ProviderError::Unauthorized(_)
        ));
        assert!(matches!(
            map_error(403, b"not json", "GET /x", t),
            ProviderError::Unauthorized(_)
        ));
        assert!(matches!(
            map_error(400, b"{}", "GET /x", t),
            ProviderError::Invalid(_)
        ));
        assert!(matches!(
            map_error(422, b"{}", "GET /x", t),
            ProviderError::Invalid(_)
        ));
        assert!(matches!(
            map_error(404, b"{}", "GET /x", t),
            ProviderError::NotFound(_)
        ));
        assert!(matches!(
            map_error(409, b"{}", "GET /x", t),
            ProviderError::Conflict(_)
        ));
        assert!(matches!(
            map_error(503, b"{}", "GET /x", t),
            ProviderError::Unavailable(_)
        ));
        assert!(matches!(
            map_error(429, b"{}", "GET /x", t),
            ProviderError::RateLimited { .. }
        ));
        // gRPC codes, through the one mapping in provider.rs.
        assert_eq!(m(400, 81053, "x").code(), tonic::Code::AlreadyExists);
        assert_eq!(m(400, 9109, "x").code(), tonic::Code::PermissionDenied);
        assert_eq!(m(400, 9005, "x").code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn chained_errors_count_and_show() {
        let b = br#"{"success":false,"errors":[{"code":1004,"message":"DNS Validation Error",
            "error_chain":[{"code":9005,"message":"Content for A record is invalid."}]}]}"#;
        let e = map_error(400, b, "POST /x", "t0k3n");
        assert!(matches!(e, ProviderError::Invalid(_)), "{e:?}");
        assert!(
            e.to_string().contains("Content for A record is invalid."),
            "{e}"
        );
        let b = br#"{"success":false,"errors":[{"code":1000,"message":"outer",
            "error_chain":[{"code":81057,"message":"Record already exists."}]}]}"#;
        assert!(matches!(
            map_error(400, b, "POST /x", "t0k3n"),
            ProviderError::Conflict(_)
        ));
        let b = br#"{"success":false,"errors":[{"code":6003,"message":"Invalid request headers",
            "error_chain":[{"code":6111,"message":"Invalid format for Authorization header"}]}]}"#;
        assert!(matches!(
            map_error(400, b, "GET /x", "t0k3n"),
            ProviderError::Unauthorized(_)
        ));
    }

    #[test]
    fn error_messages_keep_cloudflare_words_but_never_the_token() {
        let t = "s3cr3t-token";
        let e = map_error(
            400,
            &body(9005, "Content for A record is invalid."),
            "POST /zones/z/dns_records",
            t,
        );
        let s = e.to_string();
        assert!(s.contains("Content for A record is invalid."), "{s}");
        assert!(s.contains("POST /zones/z/dns_records"), "{s}");
        assert!(s.contains("9005"), "{s}");
        let e = map_error(
            403,
            &body(10000, &format!("bad token {t}\nsecond line")),
            "GET /zones",
            t,
        );
        let s = e.to_string();
        assert!(s.starts_with("the provider refused the credentials"), "{s}");
        assert!(!s.contains(t), "{s}");
        assert!(!s.contains('\n'), "{s}");
        let long = "x".repeat(5000);
        let s = map_error(400, &body(9005, &long), "GET /zones", t).to_string();
        assert!(s.len() < 1000, "{}", s.len());
        let e = scrub(ProviderError::Unavailable(format!("oops {t}")), t);
        assert!(!e.to_string().contains(t));
    }

    #[test]
    fn config_debug_redacts_the_token() {
        let cfg = CloudflareConfig::new(DEFAULT_API_URL, "s3cr3t-token", zone());
        let d = format!("{cfg:?}");
        assert!(!d.contains("s3cr3t-token"), "{d}");
        assert!(d.contains("<redacted>"));
        let p = CloudflareProvider::new(cfg).unwrap();
        let d = format!("{p:?}");
        assert!(!d.contains("s3cr3t-token"), "{d}");
        assert_eq!(p.requests_made(), 0);
        assert_eq!(p.stats(), CloudflareStats::default());
    }

    #[test]
    fn construction_checks_its_inputs() {
        let ok = CloudflareConfig::new("http://127.0.0.1:1/client/v4/", "t", zone());
        let p = CloudflareProvider::new(ok.clone()).unwrap();
        assert_eq!(
            p.url(
                &["zones", "abc", "dns_records", "a/../b?c"],
                &[("page", "1")]
            )
            .as_str(),
            "http://127.0.0.1:1/client/v4/zones/abc/dns_records/a%2F..%2Fb%3Fc?page=1"
        );
        let mut bad = ok.clone();
        bad.api_url = "not a url".into();
        assert!(matches!(
            CloudflareProvider::new(bad),
            Err(ProviderError::Invalid(_))
        ));
        let mut bad = ok.clone();
        bad.api_url = "ftp://example.com".into();
        assert!(CloudflareProvider::new(bad).is_err());
        let mut bad = ok.clone();
        bad.token = "line\nbreak".into();
        let e = CloudflareProvider::new(bad).unwrap_err();
        assert!(!e.to_string().contains("line"), "{e}");
        let mut bad = ok.clone();
        bad.zone_id = Some("../zones".into());
        assert!(CloudflareProvider::new(bad).is_err());
        let mut bad = ok;
        bad.batch_size = 0;
        assert!(CloudflareProvider::new(bad).is_err());
    }

    #[test]
    fn records_are_parsed_and_normalised() {
        let page = r#"{
            "success": true, "errors": [], "messages": [],
            "result": [
              {"id":"1","zone_id":"z","zone_name":"example.com","name":"WWW.Example.com.","type":"a","content":"192.0.2.1","proxiable":true,"proxied":true,"ttl":1,"settings":{},"meta":{},"comment":null,"tags":[],"created_on":"2024-01-01T00:00:00Z","modified_on":"2024-01-01T00:00:00Z"},
              {"id":"2","name":"example.com","type":"AAAA","content":"2001:DB8:0:0::1","proxied":false,"ttl":300,"comment":"hi"},
              {"id":"3","name":"example.com","type":"MX","content":"Mail.Example.com","priority":10,"ttl":300},
              {"id":"4","name":"_sip._tcp.example.com","type":"SRV","content":"5 5060 sip.example.com","data":{"priority":20,"weight":5,"port":5060,"target":"sip.example.com"},"ttl":300},
              {"id":"5","name":"example.com","type":"A","content":"not-an-ip","priority":3,"ttl":300},
              {"id":"6","name":"example.com","type":"HTTPS","content":"1 . alpn=h2","ttl":300},
              {"id":"7","name":"example.com","type":"CAA","content":"0 ISSUE \"letsencrypt.org\"","ttl":300}
            ],
            "result_info": {"page":1,"per_page":5000,"count":7,"total_count":7,"total_pages":1}
        }"#;
        let env: Envelope<Vec<CfRecord>> = serde_json::from_slice(page.as_bytes()).unwrap();
        assert!(env.success);
        assert_eq!(env.result_info.unwrap().total_pages, Some(1));
        let rs: Vec<ProviderRecord> = env
            .result
            .unwrap()
            .into_iter()
            .map(CfRecord::into_provider)
            .collect();
        assert_eq!(
            rs[0],
            ProviderRecord {
                id: "1".into(),
                rtype: "A".into(),
                name: "www.example.com".into(),
                content: "192.0.2.1".into(),
                ttl: 1,
                proxied: true,
                priority: None,
                comment: String::new(),
            }
        );
        assert_eq!(rs[1].content, "2001:db8::1");
        assert_eq!(rs[1].comment, "hi");
        assert_eq!(rs[2].content, "mail.example.com");
        assert_eq!(rs[2].priority, Some(10));
        assert_eq!(rs[3].priority, Some(20));
        assert_eq!(rs[3].content, "5 5060 sip.example.com");
        assert_eq!(
            rs[4].content, "not-an-ip",
            "unparseable content is kept raw"
        );
        assert_eq!(rs[4].priority, None, "no priority outside MX and SRV");
        assert_eq!(rs[5].rtype, "HTTPS");
        assert_eq!(rs[5].content, "1 . alpn=h2");
        assert_eq!(rs[6].content, "0 issue \"letsencrypt.org\"");
    }

    #[test]
    fn a_record_read_back_fingerprints_like_the_input() {
        let spec = trafego_proto::validate::RecordSpec::new(
            "",
            "AAAA",
            "v6.example.com",
            "2001:db8::1",
            300,
            false,
            None,
        )
        .unwrap();
        let input = ValidRecordInput {
            spec: spec.clone(),
            comment: String::new(),
        };
        let sent = serde_json::to_value(WriteBody::new(None, &input)).unwrap();
        assert_eq!(sent["comment"], MANAGED_COMMENT);
        assert!(sent.get("priority").is_none());
        assert!(sent.get("id").is_none());
        let mut echoed = sent.clone();
        echoed["id"] = "abc".into();
        echoed["name"] = "V6.EXAMPLE.COM".into();
        echoed["content"] = "2001:0db8:0000::0001".into();
        let r: CfRecord = serde_json::from_value(echoed).unwrap();
        assert_eq!(r.into_provider().fingerprint(), spec.fingerprint());
    }

    #[test]
    fn srv_and_caa_writes_carry_data() {
        let srv = trafego_proto::validate::RecordSpec::new(
            "",
            "SRV",
            "_sip._tcp.example.com",
            "5 5060 sip.example.com",
            300,
            false,
            Some(10),
        )
        .unwrap();
        let input = ValidRecordInput {
            spec: srv,
            comment: "mine".into(),
        };
        let v = serde_json::to_value(WriteBody::new(Some("id1"), &input)).unwrap();
        assert_eq!(v["id"], "id1");
        assert_eq!(v["comment"], "mine");
        assert_eq!(
            v["data"],
            serde_json::json!({"priority":10,"weight":5,"port":5060,"target":"sip.example.com"})
        );
        // Cloudflare's schema: SRV's content is read-only and its priority lives in data.
        for absent in ["content", "priority", "proxied"] {
            assert!(v.get(absent).is_none(), "{absent} sent: {v}");
        }
        let caa = trafego_proto::validate::RecordSpec::new(
            "",
            "CAA",
            "example.com",
            "0 issue \"letsencrypt.org\"",
            300,
            false,
            None,
        )
        .unwrap();
        let input = ValidRecordInput {
            spec: caa,
            comment: String::new(),
        };
        let v = serde_json::to_value(WriteBody::new(None, &input)).unwrap();
        assert_eq!(
            v["data"],
            serde_json::json!({"flags":0,"tag":"issue","value":"letsencrypt.org"})
        );
        for absent in ["content", "priority", "proxied"] {
            assert!(v.get(absent).is_none(), "{absent} sent: {v}");
        }
    }

    #[test]
    fn batch_answers_parse() {
        let answer = r#"{"success":true,"errors":[],"messages":[],"result":{
            "deletes":[{"id":"d1","name":"gone.example.com","type":"A","content":"192.0.2.9","ttl":1}],
            "patches":[],
            "puts":[{"id":"u1","name":"u.example.com","type":"A","content":"192.0.2.2","ttl":300,"proxied":false}],
            "posts":[{"id":"n1","name":"n.example.com","type":"TXT","content":"hello","ttl":1,"proxied":false,"comment":"Managed by TrafegoDNS"}]
        }}"#;
        let env: Envelope<BatchResult> = serde_json::from_str(answer).unwrap();
        let r = env.result.unwrap();
        assert_eq!(r.deletes.unwrap().len(), 1);
        assert_eq!(r.puts.unwrap()[0].id, "u1");
        assert_eq!(
            r.posts.unwrap()[0].comment.as_deref(),
            Some(MANAGED_COMMENT)
        );
    }

    #[test]
    fn batch_refusals_are_told_apart() {
        assert!(refused_as_a_whole(&ProviderError::Invalid("x".into())));
        assert!(refused_as_a_whole(&ProviderError::Conflict("x".into())));
        assert!(!refused_as_a_whole(&ProviderError::Unauthorized(
            "x".into()
        )));
        assert!(!refused_as_a_whole(&ProviderError::RateLimited {
            retry_after: None
        }));
        assert!(!refused_as_a_whole(&ProviderError::Unavailable("x".into())));
        assert!(!refused_as_a_whole(&ProviderError::Other("x".into())));
    }
}
