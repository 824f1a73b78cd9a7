//! The Amazon Route53 provider (`DNS_PROVIDER=route53`): lists a hosted zone
//! with `ListResourceRecordSets` (paged by name and type) and writes with
//! `ChangeResourceRecordSets` (up to 1,000 changes a call), signed with SigV4
//! (`route53/sign.rs`), in Route53's XML (`route53/wire.rs`, its errors in
//! `route53/errors.rs`).
//!
//! Route53 holds record *sets* (one name, one type, one TTL, several values)
//! and has no per-record ids: each value is one [`ProviderRecord`] whose id is
//! [`derived_id`] of its type, name and content. A write never uses UPSERT: it
//! DELETEs the record set with the values this provider last read and CREATEs
//! the new one in the same atomic batch, so a record set someone else changed
//! meanwhile fails the batch instead of being overwritten; the provider then
//! reads that set again and plans the write once more against what is really
//! there (`route53/plan.rs`, `route53/write.rs`). Alias record sets,
//! routing-policy record sets (weighted, latency, failover, geolocation…) and
//! the zone's SOA are listed but never written, and nothing in them is taken
//! as proof of anything.
//!
//! Every request goes through `provider/http.rs` (budget, backoff honouring
//! Route53's `Throttling`, the rule that a write whose answer was lost is
//! never re-sent from here). This module must never log or return the secret
//! key, must never return a partial listing as whole, and must never touch
//! the cache database.

pub mod errors;
mod list;
mod plan;
mod sign;
#[cfg(test)]
mod tests;
pub mod wire;
mod write;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::OnceCell;
use trafego_proto::validate::{Hostname, RecordType, TTL_MAX, TTL_MIN};

use super::http::{ApiRoot, HttpClient, HttpSettings, HttpStats};
use super::{
    Capabilities, DERIVED_ID_FORMAT, DnsProvider, Listing, ProviderError, ProviderRecord, WriteOp,
    WriteResult, derived_id,
};

pub use sign::{default_endpoint, signing_region};

/// Route53's API version, the first segment of every path.
pub const API_VERSION: &str = "2013-04-01";

/// The region TrafegoDNS defaults to (Route53 itself signs in `us-east-1`).
pub const DEFAULT_REGION: &str = "eu-west-2";

/// Route53's largest (and default) page of `ListResourceRecordSets`.
pub const MAX_ITEMS: u32 = 300;

/// Route53's limit of changes, and of `ResourceRecord` elements, per batch.
pub const MAX_BATCH: usize = 1000;

/// Route53's limit of `Value` characters per batch.
pub const MAX_BATCH_CHARS: usize = 32_000;

/// The TTL written for a record asking for an automatic one (TTL 1): Route53
/// has no automatic TTL. A record added to an existing record set takes the
/// set's TTL instead.
pub const AUTO_TTL: u32 = 300;

/// Route53 allows five requests a second per account.
pub const DEFAULT_RATE_LIMIT: u32 = 5;

/// The comment every change batch carries (Route53 has no per-record comments).
const BATCH_COMMENT: &str = super::MANAGED_COMMENT;

/// How the provider reaches Route53 and how hard it may push. `Debug` never
/// shows the secret key.
#[derive(Clone)]
pub struct Route53Config {
    /// API root: [`default_endpoint`] of the region's partition in production.
    pub api_url: String,
    /// AWS access key id.
    pub access_key: String,
    /// AWS secret access key (SECRET): used to sign, never sent or logged.
    pub secret_key: String,
    /// `ROUTE53_REGION`: picks the partition (and so the signing region).
    pub region: String,
    /// The hosted zone's name.
    pub zone: Hostname,
    /// The hosted zone's id (`Z…`, `/hostedzone/` prefix allowed); looked up
    /// by name with ListHostedZonesByName on first use when `None`.
    pub zone_id: Option<String>,
    /// Record sets per listing page (1 to [`MAX_ITEMS`]).
    pub max_items: u32,
    /// Changes per `ChangeResourceRecordSets` call (1 to [`MAX_BATCH`]).
    pub batch_size: usize,
    /// Requests allowed per `budget_window` (0 turns the budget off).
    pub budget_requests: u32,
    /// The sliding window the budget counts over.
    pub budget_window: Duration,
    /// Longest a request may wait for the budget before failing as rate limited.
    pub max_budget_wait: Duration,
    /// Retries after throttling, a 5xx or a network fault, per request.
    pub max_retries: u32,
    /// First backoff step.
    pub backoff_base: Duration,
    /// Longest backoff step.
    pub backoff_max: Duration,
    /// Whole-request timeout.
    pub request_timeout: Duration,
}

impl Route53Config {
    /// Production defaults: 300 record sets a page, 1,000 changes a batch, 5
    /// requests a second, 5 retries with 250 ms..10 s backoff, 30 s timeout;
    /// the endpoint of `region`'s partition.
    pub fn new(access_key: &str, secret_key: &str, region: &str, zone: Hostname) -> Self {
        Route53Config {
            api_url: default_endpoint(region).to_string(),
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            region: region.to_string(),
            zone,
            zone_id: None,
            max_items: MAX_ITEMS,
            batch_size: MAX_BATCH,
            budget_requests: DEFAULT_RATE_LIMIT,
            budget_window: Duration::from_secs(1),
            max_budget_wait: Duration::from_secs(60),
            max_retries: 5,
            backoff_base: Duration::from_millis(250),
            backoff_max: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for Route53Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route53Config")
            .field("api_url", &self.api_url)
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("region", &self.region)
            .field("zone", &self.zone)
            .field("zone_id", &self.zone_id)
            .field("max_items", &self.max_items)
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

/// A record set's key: name (project form) and type.
type Key = (String, String);

/// One record set as this provider last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rrset {
    /// The set's TTL (0 for an alias, which has none).
    ttl: u32,
    /// Its values exactly as Route53 holds them (what a DELETE must name).
    values: Vec<String>,
    /// One record per value, in the same order (for a simple set).
    records: Vec<ProviderRecord>,
    /// Why the set is never written (alias, routing policy, SOA), if it is not.
    read_only: Option<&'static str>,
}

/// What the provider knows of one record set.
#[derive(Debug, Clone)]
enum Slot {
    Held(Rrset),
    Absent,
    /// Not known (a write's answer was lost, or a batch found it changed).
    Unknown,
}

/// The record sets as last read or written, so writes can name the current
/// values without reading them first. Never authoritative: a wrong entry
/// makes Route53 refuse the batch, and the set is read again.
#[derive(Debug, Default)]
struct Snapshot {
    /// Whether a whole listing was installed: then a key not held is absent.
    complete: bool,
    sets: HashMap<Key, Slot>,
    /// Every derived id seen, with its key (ids derive from the key, so an
    /// entry never goes stale).
    ids: HashMap<String, Key>,
}

/// What [`Snapshot::get`] says of a key.
enum Known<'a> {
    Held(&'a Rrset),
    Absent,
    Unknown,
}

impl Snapshot {
    fn get(&self, key: &Key) -> Known<'_> {
        match self.sets.get(key) {
            Some(Slot::Held(rs)) => Known::Held(rs),
            Some(Slot::Absent) => Known::Absent,
            Some(Slot::Unknown) => Known::Unknown,
            None if self.complete => Known::Absent,
            None => Known::Unknown,
        }
    }

    fn put(&mut self, key: Key, rs: Option<Rrset>) {
        match rs {
            Some(rs) => {
                for r in &rs.records {
                    self.ids.insert(r.id.clone(), key.clone());
                }
                self.sets.insert(key, Slot::Held(rs));
            }
            None => {
                self.sets.insert(key, Slot::Absent);
            }
        }
    }

    fn forget(&mut self, key: &Key) {
        self.sets.insert(key.clone(), Slot::Unknown);
    }

    fn install(&mut self, sets: Vec<(Key, Rrset)>) {
        self.sets = HashMap::with_capacity(sets.len());
        self.complete = true;
        for (k, rs) in sets {
            self.put(k, Some(rs));
        }
    }
}

/// The Route53 provider: one HTTP client, one hosted zone.
pub struct Route53Provider {
    cfg: Route53Config,
    base: ApiRoot,
    zone_id: OnceCell<String>,
    /// Shared by the providers of every hosted zone of the account.
    http: Arc<HttpClient>,
    snapshot: Mutex<Snapshot>,
    /// Writes run one at a time, so two never plan against the same values.
    writes: tokio::sync::Mutex<()>,
}

impl fmt::Debug for Route53Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route53Provider")
            .field("cfg", &self.cfg)
            .field("zone_id", &self.zone_id.get())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// A hosted zone id without its `/hostedzone/` prefix, if it has the shape
/// Route53 gives them (letters and digits, at most 32).
fn bare_zone_id(id: &str) -> Option<String> {
    let id = id.trim();
    let id = id
        .strip_prefix("/hostedzone/")
        .or_else(|| id.strip_prefix("hostedzone/"))
        .unwrap_or(id);
    (!id.is_empty() && id.len() <= 32 && id.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| id.to_ascii_uppercase())
}

impl Route53Provider {
    /// Builds the provider and its HTTP client. Makes no request: the zone id,
    /// if not configured, is looked up on first use. Fails for a bad API URL
    /// or region, missing keys, a malformed zone id, or sizes out of range.
    pub fn new(cfg: Route53Config) -> Result<Self, ProviderError> {
        let http = Arc::new(Self::client(&cfg)?);
        Self::with_client(cfg, http)
    }

    /// One provider per zone of `zones` (the zone of `cfg` is replaced),
    /// all sharing one HTTP client, so one request budget (the provider's
    /// rate limit is per account) and one connection pool.
    pub fn for_zones(cfg: Route53Config, zones: &[Hostname]) -> Result<Vec<Self>, ProviderError> {
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
    fn client(cfg: &Route53Config) -> Result<HttpClient, ProviderError> {
        Self::check_region(cfg)?;
        let auth = sign::SigV4::new(&cfg.access_key, &cfg.secret_key, &cfg.region)?;
        let settings = HttpSettings {
            request_timeout: cfg.request_timeout,
            budget_requests: cfg.budget_requests,
            budget_window: cfg.budget_window,
            max_budget_wait: cfg.max_budget_wait,
            max_retries: cfg.max_retries,
            backoff_base: cfg.backoff_base,
            backoff_max: cfg.backoff_max,
            max_retry_after: Duration::from_secs(60),
        };
        Ok(HttpClient::new(
            "route53",
            settings,
            auth,
            &cfg.secret_key,
            errors::map_error,
        )?
        .media_type(wire::XML))
    }

    fn check_region(cfg: &Route53Config) -> Result<(), ProviderError> {
        if cfg.region.is_empty()
            || !cfg
                .region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(ProviderError::Invalid(format!(
                "Route53 region {:?} is not a region name such as eu-west-2",
                cfg.region
            )));
        }
        Ok(())
    }

    /// The provider of `cfg`'s zone over an existing client.
    fn with_client(cfg: Route53Config, http: Arc<HttpClient>) -> Result<Self, ProviderError> {
        let base = ApiRoot::parse("Route53 API URL", &cfg.api_url)?;
        Self::check_region(&cfg)?;
        let zone_id = match &cfg.zone_id {
            Some(id) => OnceCell::new_with(Some(bare_zone_id(id).ok_or_else(|| {
                ProviderError::Invalid(format!(
                    "Route53 zone id {id:?} must be letters and digits (Z…), at most 32"
                ))
            })?)),
            None => OnceCell::new(),
        };
        if !(1..=MAX_ITEMS).contains(&cfg.max_items) || !(1..=MAX_BATCH).contains(&cfg.batch_size) {
            return Err(ProviderError::Invalid(format!(
                "Route53 page size must be 1 to {MAX_ITEMS} and batch size 1 to {MAX_BATCH}"
            )));
        }
        Ok(Route53Provider {
            cfg,
            base,
            zone_id,
            http,
            snapshot: Mutex::new(Snapshot::default()),
            writes: tokio::sync::Mutex::new(()),
        })
    }

    /// Total HTTP requests sent since the provider was built, retries included.
    pub fn requests_made(&self) -> u64 {
        self.http.requests_made()
    }

    /// A snapshot of the provider's request counters.
    pub fn stats(&self) -> HttpStats {
        self.http.stats()
    }

    fn snapshot(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.snapshot.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The records of a simple record set's values: one each, its id derived
/// from type, name and content; a value whose id another value of the set
/// already took (MX or SRV records differing only in priority) gets the id of
/// its content with an occurrence number, so ids stay unique and stable.
fn records_of(key: &Key, ttl: u32, values: &[String], comment: &str) -> Vec<ProviderRecord> {
    let (name, rtype) = key;
    let mut seen = std::collections::HashSet::with_capacity(values.len());
    values
        .iter()
        .map(|v| {
            let (content, priority) = wire::content_of(rtype, v);
            let mut id = derived_id(rtype, name, &content);
            let mut n = 1u32;
            while !seen.insert(id.clone()) {
                n = n.saturating_add(1);
                id = derived_id(rtype, name, &format!("{content}\0{n}"));
            }
            ProviderRecord {
                id,
                rtype: rtype.clone(),
                name: name.clone(),
                content,
                ttl,
                proxied: false,
                priority,
                comment: comment.to_string(),
            }
        })
        .collect()
}

/// A simple record set holding `values` with `ttl`.
fn simple_rrset(key: &Key, ttl: u32, values: Vec<String>) -> Rrset {
    let records = records_of(key, ttl, &values, "");
    Rrset {
        ttl,
        values,
        records,
        read_only: None,
    }
}

impl DnsProvider for Route53Provider {
    fn name(&self) -> &'static str {
        "route53"
    }

    fn zone(&self) -> &Hostname {
        &self.cfg.zone
    }

    /// Every type the project manages; no proxying; no CNAME at the apex (an
    /// alias is Route53's answer there, and aliases are never written); the
    /// project's TTL range (Route53 takes 0 to 2^31-1); the configured batch
    /// size; no per-record comments; derived ids.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            record_types: RecordType::ALL.to_vec(),
            proxied: false,
            min_ttl: TTL_MIN,
            max_ttl: TTL_MAX,
            cname_at_apex: false,
            batch_size: u32::try_from(self.cfg.batch_size).unwrap_or(u32::MAX),
            comments: false,
            id_format: DERIVED_ID_FORMAT,
        }
    }

    fn list(&self) -> BoxFuture<'_, Result<Listing, ProviderError>> {
        Box::pin(async move {
            let reqs = AtomicU64::new(0);
            let sets = self.list_sets(&reqs).await?;
            let records = sets
                .iter()
                .flat_map(|(_, rs)| rs.records.iter().cloned())
                .collect();
            self.snapshot().install(sets);
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
            let key = (name.to_string(), rtype.to_string());
            let rs = self.read_set(&key, &reqs).await?;
            let records = rs.map(|rs| rs.records).unwrap_or_default();
            Ok((records, reqs.load(Ordering::Relaxed)))
        })
    }
}
