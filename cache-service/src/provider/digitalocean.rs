//! The DigitalOcean API v2 provider (`DNS_PROVIDER=digitalocean`): lists a
//! domain's records page by page (`GET /v2/domains/{domain}/records`,
//! following `links.pages.next`), and writes one record per request
//! (`POST`, `PUT`, `DELETE /v2/domains/{domain}/records/{id}`): DigitalOcean
//! has no batch endpoint, so a batch is sequential requests within the budget.
//!
//! Every request goes through the shared client of `provider/http.rs`: a
//! client-side budget of DigitalOcean's two limits (250 requests a minute and
//! 5,000 an hour), held back when its `ratelimit-*` headers say the hour is
//! spent, 429s ridden out honouring `Retry-After`, and a write whose answer
//! was lost reported as [`ProviderError::Unanswered`] (the cache settles it
//! with [`DnsProvider::lookup`]). This module writes only DigitalOcean's wire
//! format (`wire.rs`), its listing (`list.rs`) and its writes (`write.rs`).
//! It must never put the API token in a log line, an error or a `Debug`
//! output, never follow a link the API gives to another host (the token
//! would go with it), never return a partial listing as whole, and never
//! touch the cache database.

mod list;
mod wire;
mod write;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::header::HeaderMap;
use trafego_common::clock::{self, SharedClock};
use trafego_proto::validate::{Hostname, IdFormat, RecordType, TTL_MAX, TTL_MIN};

use super::http::{ApiRoot, HeaderAuth, HttpClient, HttpSettings, HttpStats, RateHeaders};
use super::{
    Capabilities, DnsProvider, Listing, ProviderError, ProviderRecord, WriteOp, WriteResult,
};

/// DigitalOcean's public API root, used unless a test or a proxy says otherwise.
pub const DEFAULT_API_URL: &str = "https://api.digitalocean.com/v2";

/// The largest page DigitalOcean serves (larger `per_page` values are capped to it).
pub const MAX_PER_PAGE: u32 = 200;

/// DigitalOcean's requests per token in any hour.
pub const HOURLY_LIMIT: u32 = 5_000;

/// DigitalOcean's requests per token in any minute (its burst limit).
pub const MINUTE_LIMIT: u32 = 250;

/// The shortest TTL DigitalOcean accepts on a record.
pub const MIN_TTL: u32 = 30;

/// The TTL written for a record asking for an automatic one (1): DigitalOcean
/// has no automatic TTL, and this is the one it gives a record created without.
pub const DEFAULT_TTL: u32 = 1_800;

/// How the provider reaches DigitalOcean and how hard it may push.
///
/// Built with [`DigitalOceanConfig::new`] and adjusted field by field.
/// `Debug` is written by hand so the token never shows.
#[derive(Clone)]
pub struct DigitalOceanConfig {
    /// API root, [`DEFAULT_API_URL`] in production; a trailing slash is fine.
    pub api_url: String,
    /// The personal access token (SECRET): sent only as `Authorization: Bearer`.
    pub token: String,
    /// The domain (DigitalOcean's word for the zone).
    pub domain: Hostname,
    /// Records asked for per listing page, 1 to [`MAX_PER_PAGE`].
    pub per_page: u32,
    /// Client-side budget: requests in any hour (0 turns it off).
    pub hourly_limit: u32,
    /// Client-side budget: requests in any minute (0 turns it off).
    pub minute_limit: u32,
    /// Longest a request waits for the budget before failing as rate limited:
    /// a minute, so a spent burst window is always waited out and a spent
    /// hour never is.
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
    /// The wall clock `ratelimit-reset` (unix seconds) is read against.
    pub clock: SharedClock,
}

impl DigitalOceanConfig {
    /// A configuration with production defaults: 200 records a page,
    /// DigitalOcean's limits (5,000 requests an hour, 250 a minute), at most
    /// 60 s waiting for the budget, 5 retries with 250 ms..10 s backoff, 429s
    /// asking for more than 60 s not waited out, 30 s timeout, the wall clock.
    pub fn new(api_url: &str, token: &str, domain: Hostname) -> Self {
        DigitalOceanConfig {
            api_url: api_url.to_string(),
            token: token.to_string(),
            domain,
            per_page: MAX_PER_PAGE,
            hourly_limit: HOURLY_LIMIT,
            minute_limit: MINUTE_LIMIT,
            max_budget_wait: Duration::from_secs(60),
            max_retries: 5,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            clock: clock::system(),
        }
    }
}

impl fmt::Debug for DigitalOceanConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigitalOceanConfig")
            .field("api_url", &self.api_url)
            .field("token", &"<redacted>")
            .field("domain", &self.domain.as_str())
            .field("per_page", &self.per_page)
            .field("hourly_limit", &self.hourly_limit)
            .field("minute_limit", &self.minute_limit)
            .field("max_budget_wait", &self.max_budget_wait)
            .field("max_retries", &self.max_retries)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .field("max_retry_after", &self.max_retry_after)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

/// The DigitalOcean provider: one HTTP client (with its budget), one domain.
pub struct DigitalOceanProvider {
    cfg: DigitalOceanConfig,
    base: ApiRoot,
    /// Shared by the providers of every domain of the account.
    http: Arc<HttpClient>,
}

impl fmt::Debug for DigitalOceanProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DigitalOceanProvider")
            .field("cfg", &self.cfg)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl DigitalOceanProvider {
    /// Builds the provider and its one HTTP client. Makes no request. Fails
    /// for a bad API URL, a token that cannot be a header value, or a page
    /// size outside 1 to [`MAX_PER_PAGE`].
    pub fn new(cfg: DigitalOceanConfig) -> Result<Self, ProviderError> {
        let http = Arc::new(Self::client(&cfg)?);
        Self::with_client(cfg, http)
    }

    /// One provider per zone of `zones` (the zone of `cfg` is replaced),
    /// all sharing one HTTP client, so one request budget (the provider's
    /// rate limit is per account) and one connection pool.
    pub fn for_zones(
        cfg: DigitalOceanConfig,
        zones: &[Hostname],
    ) -> Result<Vec<Self>, ProviderError> {
        let Some(first) = zones.first() else {
            return Ok(Vec::new());
        };
        let mut c = cfg.clone();
        c.domain = first.clone();
        let http = Arc::new(Self::client(&c)?);
        zones
            .iter()
            .map(|z| {
                let mut c = cfg.clone();
                c.domain = z.clone();
                Self::with_client(c, http.clone())
            })
            .collect()
    }

    /// The provider of `cfg`'s domain over an existing client.
    fn with_client(cfg: DigitalOceanConfig, http: Arc<HttpClient>) -> Result<Self, ProviderError> {
        let base = ApiRoot::parse("DigitalOcean API URL", &cfg.api_url)?;
        if !(1..=MAX_PER_PAGE).contains(&cfg.per_page) {
            return Err(ProviderError::Invalid(format!(
                "per_page {} is out of range 1 to {MAX_PER_PAGE}",
                cfg.per_page
            )));
        }
        Ok(DigitalOceanProvider { cfg, base, http })
    }

    /// The HTTP client `cfg` asks for.
    fn client(cfg: &DigitalOceanConfig) -> Result<HttpClient, ProviderError> {
        let auth = HeaderAuth::bearer(&cfg.token)?;
        let settings = HttpSettings {
            request_timeout: cfg.request_timeout,
            budget_requests: cfg.minute_limit,
            budget_window: Duration::from_secs(60),
            max_budget_wait: cfg.max_budget_wait,
            max_retries: cfg.max_retries,
            backoff_base: cfg.backoff_base,
            backoff_max: cfg.backoff_max,
            max_retry_after: cfg.max_retry_after,
        };
        Ok(
            HttpClient::new("digitalocean", settings, auth, &cfg.token, wire::map_error)?
                .also_limit(cfg.hourly_limit, Duration::from_secs(3600))
                .rate_headers(rate_headers(cfg.clock.clone())),
        )
    }

    /// Total HTTP requests sent since the provider was built, retries included.
    pub fn requests_made(&self) -> u64 {
        self.http.requests_made()
    }

    /// A snapshot of the provider's counters.
    pub fn stats(&self) -> HttpStats {
        self.http.stats()
    }

    /// The domain's name as its URL segment.
    fn domain(&self) -> &str {
        self.cfg.domain.as_str()
    }
}

/// DigitalOcean's `ratelimit-remaining` / `ratelimit-reset` read against
/// `clock`: when no request is left in the hour, the time until the oldest
/// one expires (`ratelimit-reset` is in whole unix seconds, so one second
/// more: the request may expire up to a second after it).
fn rate_headers(clock: SharedClock) -> RateHeaders {
    Box::new(move |h: &HeaderMap| spent_for(h, clock.now_ms()))
}

fn spent_for(h: &HeaderMap, now_ms: i64) -> Option<Duration> {
    let num = |name: &str| -> Option<i64> { h.get(name)?.to_str().ok()?.trim().parse().ok() };
    if num("ratelimit-remaining")? > 0 {
        return None;
    }
    let reset_ms = num("ratelimit-reset")?.saturating_mul(1000);
    let wait_ms = reset_ms.saturating_sub(now_ms).max(0).saturating_add(1000);
    Some(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)))
}

impl DnsProvider for DigitalOceanProvider {
    fn name(&self) -> &'static str {
        "digitalocean"
    }

    fn zone(&self) -> &Hostname {
        &self.cfg.domain
    }

    /// Every type the project manages (DigitalOcean serves them all), no
    /// proxying, TTLs of 30 s or more, no CNAME at the apex (the domain's own
    /// SOA and NS records sit there), one change per request (there is no
    /// batch endpoint), no comments on records, ids of decimal digits.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            record_types: RecordType::ALL.to_vec(),
            proxied: false,
            min_ttl: MIN_TTL.max(TTL_MIN),
            max_ttl: TTL_MAX,
            cname_at_apex: false,
            batch_size: 1,
            comments: false,
            id_format: IdFormat::DECIMAL,
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

    /// One filtered listing: `?name=<fqdn>&type=<type>` (DigitalOcean wants
    /// the name fully qualified there).
    fn lookup<'a>(
        &'a self,
        name: &'a str,
        rtype: &'a str,
    ) -> BoxFuture<'a, Result<(Vec<ProviderRecord>, u64), ProviderError>> {
        Box::pin(async move {
            let reqs = AtomicU64::new(0);
            let held = self.lookup_at(name, rtype, &reqs).await?;
            Ok((held, reqs.load(Ordering::Relaxed)))
        })
    }
}

#[cfg(test)]
mod tests;
