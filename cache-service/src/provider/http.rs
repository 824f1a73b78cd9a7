//! What every HTTP provider shares, so a provider module writes only its wire
//! format: one `reqwest` client (rustls, timeouts, user agent), the API root
//! its paths are built on, a client-side request budget (one sliding window or
//! several, held back when the provider's own rate-limit headers say its
//! budget is spent), capped backoff with full jitter that honours
//! `Retry-After`, one retry policy, secret-free error text, and request
//! metrics labelled with the provider's name.
//!
//! The retry policy, in [`HttpClient::send`]: a read is retried after a 429,
//! a 5xx or a network fault, up to `max_retries`. A write whose answer was lost
//! after it was sent (a timeout, a connection broken midway, a 5xx) may have
//! been applied: it is NEVER sent again from here but fails as
//! [`ProviderError::Unanswered`], and the cache settles it by looking. A write
//! whose connection was never made carried nothing and is retried like a
//! read, and so is a 429 (the provider refused it unapplied), and so is any
//! other refusal the provider's mapper reads as a rate limit (Route53 answers
//! throttling with a 400 and the code `Throttling`).
//!
//! This module must never put the credential in a log line, an error message
//! or a `Debug` output: it is sent only through [`Authorize`], and replaced by
//! `<redacted>` in anything a provider answers.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER,
};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use tokio::time::Instant;
use trafego_common::duration::millis_u64;

use super::ProviderError;

/// The User-Agent every request carries, so a provider's logs can tell us apart.
pub const USER_AGENT: &str = "trafego-dns/0.1";

/// The media type requests and answers carry unless a provider says otherwise.
pub const JSON: &str = "application/json";

/// Longest provider-supplied message kept in an error, in characters.
const MAX_MESSAGE_CHARS: usize = 500;

/// How hard a provider's client may push and how long it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpSettings {
    /// Whole-request timeout (connecting takes at most 10 s of it).
    pub request_timeout: Duration,
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
}

/// Counters since the client was built, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpStats {
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
/// sliding `window`, for each of its windows (DigitalOcean counts a minute
/// and an hour), and none before a hold the provider's rate-limit headers
/// asked for. Reservations may lie in the future; the queue stays sorted.
struct Budget {
    /// (limit, window) pairs; a pair with a zero limit or window is off.
    windows: Vec<(usize, Duration)>,
    max_wait: Duration,
    state: Mutex<BudgetState>,
}

#[derive(Default)]
struct BudgetState {
    sent: VecDeque<Instant>,
    /// No request before this instant: the provider said its budget is spent.
    hold: Option<Instant>,
}

impl Budget {
    fn new(limit: u32, window: Duration, max_wait: Duration) -> Self {
        let mut b = Budget {
            windows: Vec::new(),
            max_wait,
            state: Mutex::new(BudgetState::default()),
        };
        b.add_window(limit, window);
        b
    }

    /// Adds a window: at most `limit` requests in any `window` as well.
    fn add_window(&mut self, limit: u32, window: Duration) {
        if limit > 0 && !window.is_zero() {
            let limit = usize::try_from(limit).unwrap_or(usize::MAX);
            self.windows.push((limit, window));
        }
    }

    /// No request is sent before `until` (a later hold already set stays).
    fn hold(&self, until: Instant) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.hold = Some(st.hold.map_or(until, |h| h.max(until)));
    }

    /// Reserves the earliest instant at or after `now` at which one more
    /// request keeps every window within its limit and lies past any hold.
    /// `Err(wait)` when that instant is further than `max_wait` away
    /// (nothing is reserved then).
    fn reserve(&self, now: Instant) -> Result<Instant, Duration> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut at = now;
        if let Some(h) = st.hold {
            if h <= now {
                st.hold = None;
            } else {
                at = h;
            }
        }
        let Some(longest) = self.windows.iter().map(|&(_, w)| w).max() else {
            let wait = at.saturating_duration_since(now);
            return if wait > self.max_wait {
                Err(wait)
            } else {
                Ok(at)
            };
        };
        let q = &mut st.sent;
        // A window too long to add to an instant never ends: nothing expires.
        while q
            .front()
            .and_then(|&t| t.checked_add(longest))
            .is_some_and(|end| end <= now)
        {
            q.pop_front();
        }
        for &(limit, window) in &self.windows {
            if q.len() >= limit {
                match q[q.len() - limit].checked_add(window) {
                    Some(free) => at = at.max(free),
                    None => return Err(Duration::MAX),
                }
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

/// Reads a provider's rate-limit headers (DigitalOcean's `ratelimit-*`) on
/// every answer: `Some(d)` when they say the provider will refuse every
/// request for `d` from now (its budget is spent). The client then sends
/// nothing before that, and waits that long after a 429 without
/// `Retry-After`.
pub type RateHeaders = Box<dyn Fn(&HeaderMap) -> Option<Duration> + Send + Sync>;

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

/// A provider-supplied text made safe for an error: no `secret`, no control
/// characters (so no line breaks in log lines), bounded length. The secret is
/// replaced before the text is cut, so no part of it can survive the cut.
pub fn sanitize(text: &str, secret: &str) -> String {
    let text = if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "<redacted>")
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

/// Replaces `secret` wherever it might appear in an error's text.
pub fn scrub(e: ProviderError, secret: &str) -> ProviderError {
    if secret.is_empty() {
        return e;
    }
    let s = |m: String| {
        if m.contains(secret) {
            m.replace(secret, "<redacted>")
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

/// A network fault in words, without the URL.
pub fn describe(e: &reqwest::Error) -> String {
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

/// A provider's API root: an http or https URL that paths are built on, each
/// segment percent-encoded so a record id can never change the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRoot(Url);

impl ApiRoot {
    /// Parses `url` (a trailing slash, a query or a fragment are dropped).
    /// `what` names the setting in the error, e.g. "Cloudflare API URL".
    pub fn parse(what: &str, url: &str) -> Result<Self, ProviderError> {
        let mut base = Url::parse(url.trim())
            .map_err(|e| ProviderError::Invalid(format!("{what} {url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(ProviderError::Invalid(format!(
                "{what} {url:?} must be an http or https URL"
            )));
        }
        if let Ok(mut segs) = base.path_segments_mut() {
            segs.pop_if_empty();
        }
        base.set_query(None);
        base.set_fragment(None);
        Ok(ApiRoot(base))
    }

    /// `{root}/seg/seg/...?k=v`, each segment percent-encoded.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.0.clone();
        if let Ok(mut segs) = url.path_segments_mut() {
            segs.extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }
}

/// One request as a provider asks for it.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// GET (and HEAD) read; every other method writes.
    pub method: Method,
    /// The whole URL, built with [`ApiRoot::url`].
    pub url: Url,
    /// The request body, if any.
    pub body: Option<&'a [u8]>,
    /// The `operation` label of the request metrics: a fixed word of the
    /// provider's (`list`, `create`, `batch`...), never taken from the URL.
    pub operation: &'static str,
}

impl Call<'_> {
    /// Whether the call changes something at the provider.
    pub fn is_write(&self) -> bool {
        !matches!(self.method, Method::GET | Method::HEAD)
    }

    /// "METHOD /path", for errors and logs (no host, no query).
    pub fn what(&self) -> String {
        format!("{} {}", self.method, self.url.path())
    }
}

/// Adds a provider's credential to one attempt of a request. Each attempt is
/// authorised anew, so a signature over the request and the time (Route53's
/// SigV4) stays fresh across retries. Implementations never log the credential.
pub trait Authorize: Send + Sync + 'static {
    /// `request` with the credential added, or why it cannot be.
    fn authorize(
        &self,
        call: &Call<'_>,
        request: RequestBuilder,
    ) -> Result<RequestBuilder, ProviderError>;
}

/// A credential sent as one fixed header (`Authorization: Bearer …`,
/// `X-API-Key: …`), marked sensitive so no HTTP layer prints it.
pub struct HeaderAuth {
    name: HeaderName,
    value: HeaderValue,
}

impl fmt::Debug for HeaderAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeaderAuth({}: <redacted>)", self.name)
    }
}

impl HeaderAuth {
    /// `name: value`. Refuses an empty value or one a header cannot carry,
    /// without echoing it.
    pub fn new(name: HeaderName, value: &str) -> Result<Self, ProviderError> {
        if value.is_empty() {
            return Err(ProviderError::Unauthorized(
                "no API token configured".into(),
            ));
        }
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            ProviderError::Unauthorized(
                "the API token holds characters a header cannot carry".into(),
            )
        })?;
        value.set_sensitive(true);
        Ok(HeaderAuth { name, value })
    }

    /// `Authorization: Bearer <token>`.
    pub fn bearer(token: &str) -> Result<Self, ProviderError> {
        if token.is_empty() {
            return Err(ProviderError::Unauthorized(
                "no API token configured".into(),
            ));
        }
        HeaderAuth::new(AUTHORIZATION, &format!("Bearer {token}"))
    }
}

impl Authorize for HeaderAuth {
    fn authorize(
        &self,
        _call: &Call<'_>,
        request: RequestBuilder,
    ) -> Result<RequestBuilder, ProviderError> {
        Ok(request.header(self.name.clone(), self.value.clone()))
    }
}

/// How a provider reads a refused answer: the HTTP status, the body and
/// "METHOD /path" become a [`ProviderError`]. The last argument is the
/// secret, for [`sanitize`]; nothing it returns may hold it.
pub type ErrorMapper = fn(u16, &[u8], &str, &str) -> ProviderError;

/// A call that failed, as [`HttpClient::send_keeping_refusal`] reports it:
/// the error, and for an answer the provider refused (a 4xx its mapper read,
/// other than a rate limit) the status and body as sent, for providers whose
/// refusals say more than one error can hold (Route53's `InvalidChangeBatch`
/// lists every problem of a batch). The body is the provider's raw text:
/// whatever is taken from it must go through [`sanitize`].
pub struct Failure {
    /// The error, as [`HttpClient::send`] would return it.
    pub error: ProviderError,
    /// The refused answer's HTTP status and body, when there was one.
    pub refused: Option<(u16, Vec<u8>)>,
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failure")
            .field("error", &self.error)
            .field(
                "refused",
                &self
                    .refused
                    .as_ref()
                    .map(|(status, body)| format!("HTTP {status}, {} bytes", body.len())),
            )
            .finish()
    }
}

impl From<ProviderError> for Failure {
    fn from(error: ProviderError) -> Self {
        Failure {
            error,
            refused: None,
        }
    }
}

/// One provider's HTTP client: the one door to its API, with the budget, the
/// retry policy, the error mapping and the metrics in one place.
pub struct HttpClient {
    /// The metrics label and log field: the provider's name.
    provider: &'static str,
    client: reqwest::Client,
    auth: Box<dyn Authorize>,
    /// Scrubbed from every error; never sent but by `auth`.
    secret: String,
    media_type: &'static str,
    map_error: ErrorMapper,
    settings: HttpSettings,
    budget: Budget,
    rate_headers: Option<RateHeaders>,
    counters: Counters,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("provider", &self.provider)
            .field("settings", &self.settings)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Builds the client (rustls, timeouts, [`USER_AGENT`]). `provider`
    /// labels metrics and logs; `secret` is what `auth` sends, scrubbed from
    /// every error; `map_error` reads refused answers. Speaks JSON unless
    /// [`HttpClient::media_type`] says otherwise. Makes no request.
    pub fn new(
        provider: &'static str,
        settings: HttpSettings,
        auth: impl Authorize,
        secret: &str,
        map_error: ErrorMapper,
    ) -> Result<Self, ProviderError> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(USER_AGENT)
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout.min(Duration::from_secs(10)))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| {
                ProviderError::Other(format!("cannot build the HTTP client: {}", e.without_url()))
            })?;
        Ok(HttpClient {
            provider,
            client,
            auth: Box::new(auth),
            secret: secret.to_string(),
            media_type: JSON,
            map_error,
            budget: Budget::new(
                settings.budget_requests,
                settings.budget_window,
                settings.max_budget_wait,
            ),
            settings,
            rate_headers: None,
            counters: Counters::default(),
        })
    }

    /// A second (third...) budget window: at most `requests` in any `window`
    /// as well, for providers that count more than one (DigitalOcean: 250 a
    /// minute and 5,000 an hour). Zero for either turns it off.
    pub fn also_limit(mut self, requests: u32, window: Duration) -> Self {
        self.budget.add_window(requests, window);
        self
    }

    /// Reads the provider's rate-limit headers on every answer (see
    /// [`RateHeaders`]): a spent budget holds every request until it frees,
    /// or fails it as rate limited when that is further than the longest
    /// budget wait; a 429 without `Retry-After` waits what they say.
    pub fn rate_headers(mut self, reader: RateHeaders) -> Self {
        self.rate_headers = Some(reader);
        self
    }

    /// The media type of bodies and answers (`Content-Type`, `Accept`), for
    /// providers that do not speak JSON.
    pub fn media_type(mut self, media_type: &'static str) -> Self {
        self.media_type = media_type;
        self
    }

    /// Total HTTP requests sent since the client was built, retries included.
    pub fn requests_made(&self) -> u64 {
        self.counters.requests.load(Ordering::Relaxed)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> HttpStats {
        let c = &self.counters;
        HttpStats {
            requests: c.requests.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            budget_waits: c.budget_waits.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }

    /// Counts a call that failed after its answer arrived (an unreadable or
    /// refusing envelope the provider module found), like those `send` fails.
    pub fn count_error(&self) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends `call` under the budget and the retry policy and returns the
    /// body of a 2xx answer. Every attempt adds one to `reqs` and is counted
    /// in `trafego_provider_requests_total{provider,operation,outcome}`
    /// (retries also in `trafego_provider_retries_total`).
    pub async fn send(&self, call: Call<'_>, reqs: &AtomicU64) -> Result<Vec<u8>, ProviderError> {
        self.send_keeping_refusal(call, reqs)
            .await
            .map_err(|f| f.error)
    }

    /// [`HttpClient::send`], keeping the body of a refused answer beside the
    /// error (see [`Failure`]).
    pub async fn send_keeping_refusal(
        &self,
        call: Call<'_>,
        reqs: &AtomicU64,
    ) -> Result<Vec<u8>, Failure> {
        let result = self.send_inner(&call, reqs).await;
        result.map_err(|f| {
            self.count_error();
            Failure {
                error: scrub(f.error, &self.secret),
                refused: f.refused,
            }
        })
    }

    /// After a rate-limit answer (`asked`: the wait it asked for): the delay
    /// before the next attempt, or the error when it is not waited out.
    fn rate_limited(
        &self,
        call: &Call<'_>,
        status: u16,
        asked: Option<Duration>,
        attempt: u32,
    ) -> Result<Duration, ProviderError> {
        let provider = self.provider;
        let method = &call.method;
        let path = call.url.path();
        self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        if let Some(d) = asked
            && d > self.settings.max_retry_after
        {
            tracing::warn!(
                provider,
                %method,
                path,
                status,
                retry_after_s = d.as_secs(),
                "the provider asked to wait longer than allowed",
            );
            return Err(ProviderError::RateLimited {
                retry_after: Some(d),
            });
        }
        if attempt >= self.settings.max_retries {
            tracing::warn!(
                provider,
                %method,
                path,
                status,
                attempt = attempt + 1,
                "the provider is still rate limiting; giving up",
            );
            return Err(ProviderError::RateLimited { retry_after: asked });
        }
        let delay = asked.unwrap_or_else(|| self.backoff(attempt));
        tracing::warn!(
            provider,
            %method,
            path,
            status,
            attempt = attempt + 1,
            delay_ms = millis_u64(delay),
            "the provider rate limited the request; retrying",
        );
        Ok(delay)
    }

    async fn send_inner(&self, call: &Call<'_>, reqs: &AtomicU64) -> Result<Vec<u8>, Failure> {
        let provider = self.provider;
        let method = &call.method;
        let path = call.url.path();
        let op = call.operation;
        let write = call.is_write();
        let lost = |fault: String| {
            tracing::warn!(
                provider,
                %method,
                path,
                fault = %fault,
                "provider write sent but its answer was lost; not retried blindly",
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
                        provider,
                        %method,
                        path,
                        wait_ms = millis_u64(at - now),
                        "waiting for the provider's request budget",
                    );
                    tokio::time::sleep_until(at).await;
                }
                Ok(_) => {}
                Err(wait) => {
                    tracing::warn!(
                        provider,
                        %method,
                        path,
                        wait_ms = millis_u64(wait),
                        "provider request budget exhausted",
                    );
                    return Err(ProviderError::RateLimited {
                        retry_after: Some(wait),
                    }
                    .into());
                }
            }
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            reqs.fetch_add(1, Ordering::Relaxed);
            if attempt > 0 {
                self.counters.retries.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("trafego_provider_retries_total", "provider" => provider, "operation" => op)
                    .increment(1);
            }
            let mut req = self
                .client
                .request(method.clone(), call.url.clone())
                .header(ACCEPT, self.media_type);
            if let Some(b) = call.body {
                req = req.header(CONTENT_TYPE, self.media_type).body(b.to_vec());
            }
            let req = self.auth.authorize(call, req)?;
            let fault = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    count_request(provider, op, outcome_of(status.as_u16()));
                    let spent = self.rate_headers.as_ref().and_then(|r| r(resp.headers()));
                    if let Some(until) = spent
                        .filter(|d| !d.is_zero())
                        .and_then(|d| Instant::now().checked_add(d))
                    {
                        tracing::debug!(
                            provider,
                            %method,
                            path,
                            wait_ms = millis_u64(until.saturating_duration_since(Instant::now())),
                            "the provider's rate-limit headers say its budget is spent",
                        );
                        self.budget.hold(until);
                    }
                    if status.is_success() {
                        match resp.bytes().await {
                            Ok(b) => return Ok(Vec::from(b)),
                            Err(e) if write => {
                                return Err(
                                    lost(format!("reading the answer: {}", describe(&e))).into()
                                );
                            }
                            Err(e) => format!("reading the answer: {}", describe(&e)),
                        }
                    } else if status == StatusCode::TOO_MANY_REQUESTS {
                        let asked = parse_retry_after(resp.headers().get(RETRY_AFTER)).or(spent);
                        let delay = self.rate_limited(call, 429, asked, attempt)?;
                        attempt += 1;
                        tokio::time::sleep(delay).await;
                        continue;
                    } else if status.is_server_error() {
                        if write {
                            return Err(lost(format!("HTTP {}", status.as_u16())).into());
                        }
                        format!("HTTP {}", status.as_u16())
                    } else {
                        let header_wait = parse_retry_after(resp.headers().get(RETRY_AFTER));
                        let bytes = resp.bytes().await.unwrap_or_default();
                        let err = (self.map_error)(
                            status.as_u16(),
                            &bytes,
                            &format!("{method} {path}"),
                            &self.secret,
                        );
                        // A rate limit told with another status (Route53's
                        // 400 `Throttling`) was refused unapplied, as a 429 is.
                        if let ProviderError::RateLimited { retry_after } = &err {
                            let asked = header_wait.or(*retry_after);
                            let delay = self.rate_limited(call, status.as_u16(), asked, attempt)?;
                            attempt += 1;
                            tokio::time::sleep(delay).await;
                            continue;
                        }
                        tracing::debug!(
                            provider,
                            %method,
                            path,
                            status = status.as_u16(),
                            error = %err,
                            "the provider refused the request",
                        );
                        return Err(Failure {
                            error: err,
                            refused: Some((status.as_u16(), Vec::from(bytes))),
                        });
                    }
                }
                Err(e) => {
                    count_request(provider, op, "network_error");
                    // A connection never made carried nothing: safe to retry.
                    if write && !e.is_connect() {
                        return Err(lost(describe(&e)).into());
                    }
                    describe(&e)
                }
            };
            if attempt >= self.settings.max_retries {
                tracing::warn!(
                    provider,
                    %method,
                    path,
                    fault = %fault,
                    attempt = attempt + 1,
                    "provider request failed; giving up",
                );
                return Err(ProviderError::Unavailable(format!(
                    "{method} {path}: {fault} after {} attempts",
                    attempt + 1
                ))
                .into());
            }
            let delay = self.backoff(attempt);
            tracing::warn!(
                provider,
                %method,
                path,
                fault = %fault,
                attempt = attempt + 1,
                delay_ms = millis_u64(delay),
                "provider request failed; retrying",
            );
            attempt += 1;
            tokio::time::sleep(delay).await;
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        jitter(backoff_cap(
            attempt,
            self.settings.backoff_base,
            self.settings.backoff_max,
        ))
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

fn count_request(provider: &'static str, op: &'static str, outcome: &'static str) {
    metrics::counter!("trafego_provider_requests_total",
        "provider" => provider, "operation" => op, "outcome" => outcome)
    .increment(1);
}

#[cfg(test)]
mod tests;
