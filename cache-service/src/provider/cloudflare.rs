//! The Cloudflare API v4 provider: lists a zone's DNS records page by page and
//! applies writes through the batch endpoint, falling back to single calls.
//!
//! Every HTTP request goes through the shared client of `provider/http.rs`,
//! which paces requests with a client-side budget, rides out 429s, 5xx answers
//! and network faults with capped, jittered backoff; this module maps
//! Cloudflare's error envelope onto [`ProviderError`]. It must never put the API
//! token in a log line, an error message or a `Debug` output, must never return
//! a partial listing as if it were whole, and must never touch the cache
//! database.
//!
//! Here: the configuration, the provider and its one door to the API
//! (`call`), the zone lookup and the [`DnsProvider`] impl. `wire.rs` holds
//! the API's types and error codes, `list.rs` the paged listing, `write.rs`
//! the batched writes.

mod list;
mod wire;
mod write;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use tokio::sync::OnceCell;
use trafego_proto::validate::{Hostname, IdFormat, RecordType, TTL_MAX, TTL_MIN};

use super::http::{ApiRoot, Call, HeaderAuth, HttpClient, HttpSettings, HttpStats, sanitize};
use super::{
    Capabilities, DnsProvider, Listing, ProviderError, ProviderRecord, WriteOp, WriteResult,
};
use wire::{CfRecord, CfZone, Envelope, ResultInfo, map_cf_errors, map_error};

/// Cloudflare's public API root, used unless a test or a proxy says otherwise.
pub const DEFAULT_API_URL: &str = "https://api.cloudflare.com/client/v4";

/// The User-Agent every request carries, so the provider's logs can tell us apart.
pub use super::http::USER_AGENT;

/// The smallest page size the listing falls back to when the API refuses a
/// larger one (Cloudflare's own default page size).
pub const MIN_PER_PAGE: u32 = 100;

/// Cloudflare's shortest TTL on every plan but Enterprise (which allows 30).
pub const DEFAULT_MIN_TTL: u32 = 60;

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
pub type CloudflareStats = HttpStats;

/// The Cloudflare provider: one HTTP client (with its request budget), one zone.
pub struct CloudflareProvider {
    cfg: CloudflareConfig,
    base: ApiRoot,
    zone_id: OnceCell<String>,
    /// Shared by the providers of every zone of the account.
    http: Arc<HttpClient>,
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
        let http = Arc::new(Self::client(&cfg)?);
        Self::with_client(cfg, http)
    }

    /// One provider per zone of `zones` (the zone of `cfg` is replaced),
    /// all sharing one HTTP client, so one request budget (the provider's
    /// rate limit is per account) and one connection pool.
    pub fn for_zones(
        cfg: CloudflareConfig,
        zones: &[Hostname],
    ) -> Result<Vec<Self>, ProviderError> {
        let Some(first) = zones.first() else {
            return Ok(Vec::new());
        };
        let mut c = cfg.clone();
        c.zone = first.clone();
        let http = Arc::new(Self::client(&c)?);
        zones
            .iter()
            .map(|z| {
                let mut c = cfg.clone();
                c.zone = z.clone();
                Self::with_client(c, http.clone())
            })
            .collect()
    }

    /// The HTTP client `cfg` asks for.
    fn client(cfg: &CloudflareConfig) -> Result<HttpClient, ProviderError> {
        let auth = HeaderAuth::bearer(&cfg.token)?;
        let settings = HttpSettings {
            request_timeout: cfg.request_timeout,
            budget_requests: cfg.budget_requests,
            budget_window: cfg.budget_window,
            max_budget_wait: cfg.max_budget_wait,
            max_retries: cfg.max_retries,
            backoff_base: cfg.backoff_base,
            backoff_max: cfg.backoff_max,
            max_retry_after: cfg.max_retry_after,
        };
        HttpClient::new("cloudflare", settings, auth, &cfg.token, map_error)
    }

    /// The provider of `cfg`'s zone over an existing client.
    fn with_client(cfg: CloudflareConfig, http: Arc<HttpClient>) -> Result<Self, ProviderError> {
        let base = ApiRoot::parse("Cloudflare API URL", &cfg.api_url)?;
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
        let zone_id = match &cfg.zone_id {
            Some(id) => OnceCell::new_with(Some(id.clone())),
            None => OnceCell::new(),
        };
        Ok(CloudflareProvider {
            cfg,
            base,
            zone_id,
            http,
        })
    }

    /// Total HTTP requests sent since the provider was built, retries included.
    pub fn requests_made(&self) -> u64 {
        self.http.requests_made()
    }

    /// A snapshot of the provider's counters.
    pub fn stats(&self) -> CloudflareStats {
        self.http.stats()
    }

    /// `{api}/seg/seg/...?k=v`, each segment percent-encoded so a record id
    /// can never change the path.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        self.base.url(segments, query)
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
                self.http.count_error();
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
        let operation = operation(&method, url.path());
        let call = Call {
            method,
            url,
            body,
            operation,
        };
        let bytes = self.http.send(call, reqs).await?;
        let env: Envelope<T> = serde_json::from_slice(&bytes).map_err(|e| {
            self.http.count_error();
            ProviderError::Other(sanitize(
                &format!("{what}: unreadable answer: {e}"),
                &self.cfg.token,
            ))
        })?;
        if !env.success {
            self.http.count_error();
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
        let units = (0..ops.len()).map(|i| i..i + 1).collect();
        self.apply_grouped(ops, units)
    }

    fn apply_grouped(
        &self,
        ops: Vec<WriteOp>,
        units: Vec<std::ops::Range<usize>>,
    ) -> BoxFuture<'_, (Vec<WriteResult>, u64)> {
        Box::pin(async move {
            let reqs = AtomicU64::new(0);
            let results = self.apply_all(ops, units, &reqs).await;
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

#[cfg(test)]
mod tests;
