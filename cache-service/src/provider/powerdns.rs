//! The PowerDNS Authoritative provider (`DNS_PROVIDER=powerdns`): reads a
//! zone whole with `GET /api/v1/servers/{server}/zones/{zone}.` and writes
//! with one `PATCH` of the zone per batch, each RRset a `REPLACE` of the whole
//! RRset or a `DELETE` (Debian's 4.7 refuses `EXTEND` and `PRUNE`).
//!
//! PowerDNS has no per-record ids and writes whole RRsets, so this provider
//! keeps what it last read of the zone (its snapshot: every RRset, with the
//! disabled records PowerDNS keeps but does not serve) and computes each
//! RRset it replaces from it. Right before a `PATCH` it reads the RRsets it is
//! about to replace again and refuses, as a conflict, a change to one that
//! someone else changed since, rather than overwrite their change. What
//! remains is the moment between that read and the `PATCH`: PowerDNS has no
//! conditional write, so a change landing in between is overwritten. And the
//! filtered read hides disabled records, so those come from the snapshot: one
//! disabled since the last whole read is dropped by a `REPLACE` of its RRset
//! from a batch of few names.
//!
//! Every request goes through the shared client of `provider/http.rs` (budget,
//! backoff, a write never re-sent after its answer was lost). This module must
//! never put the API key in a log line, an error or a `Debug` output, never
//! return a partial listing as if it were whole, and never touch the cache
//! database.

mod list;
pub mod wire;
mod write;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::header::HeaderName;
use reqwest::{Method, Url};
use trafego_proto::validate::{Hostname, RecordType, TTL_MAX, TTL_MIN};

use super::http::{ApiRoot, Call, HeaderAuth, HttpClient, HttpSettings, HttpStats};
use super::{
    Capabilities, DERIVED_ID_FORMAT, DnsProvider, Listing, ProviderError, ProviderRecord, WriteOp,
    WriteResult,
};

/// The server id of a stand-alone PowerDNS (`PDNS_SERVER_ID`'s default).
pub const DEFAULT_SERVER_ID: &str = "localhost";

/// Changes sent in one `PATCH` unless configured otherwise (`PDNS_BATCH_SIZE`).
pub const DEFAULT_BATCH_SIZE: usize = 1000;

/// TTL written for records asking for an automatic TTL (`PDNS_DEFAULT_TTL`).
pub const DEFAULT_TTL: u32 = 300;

/// How the provider reaches PowerDNS and how hard it may push. `Debug` is
/// written by hand so the API key never shows.
#[derive(Clone)]
pub struct PowerDnsConfig {
    /// The API's webserver, e.g. `http://127.0.0.1:8081` (a URL ending in
    /// `/api/v1` is taken as it is).
    pub api_url: String,
    /// The API key (SECRET): sent only in the `X-API-Key` header.
    pub api_key: String,
    /// The server id in API paths, `localhost` for a stand-alone server.
    pub server_id: String,
    /// The zone.
    pub zone: Hostname,
    /// Changes per `PATCH`.
    pub batch_size: usize,
    /// TTL written for records asking for an automatic TTL.
    pub default_ttl: u32,
    /// Whole-request timeout, budget, retries and backoff.
    pub http: HttpSettings,
}

impl PowerDnsConfig {
    /// Production defaults: 1000 changes a `PATCH`, automatic TTLs written as
    /// 300, no client-side budget (PowerDNS has no rate limit of its own; a
    /// 429 from a proxy in front of it is still waited out), 5 retries with
    /// 250 ms..10 s backoff, 30 s timeout.
    pub fn new(api_url: &str, api_key: &str, zone: Hostname) -> Self {
        PowerDnsConfig {
            api_url: api_url.to_string(),
            api_key: api_key.to_string(),
            server_id: DEFAULT_SERVER_ID.to_string(),
            zone,
            batch_size: DEFAULT_BATCH_SIZE,
            default_ttl: DEFAULT_TTL,
            http: HttpSettings {
                request_timeout: Duration::from_secs(30),
                budget_requests: 0,
                budget_window: Duration::from_secs(60),
                max_budget_wait: Duration::from_secs(30),
                max_retries: 5,
                backoff_base: Duration::from_millis(250),
                backoff_max: Duration::from_secs(10),
                max_retry_after: Duration::from_secs(60),
            },
        }
    }
}

impl fmt::Debug for PowerDnsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PowerDnsConfig")
            .field("api_url", &self.api_url)
            .field("api_key", &"<redacted>")
            .field("server_id", &self.server_id)
            .field("zone", &self.zone.as_str())
            .field("batch_size", &self.batch_size)
            .field("default_ttl", &self.default_ttl)
            .field("http", &self.http)
            .finish()
    }
}

/// An RRset's place: canonical name and uppercase type.
pub(crate) type Key = (String, String);

/// A served record of an RRset, in both forms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rec {
    /// `derived_id` of type, name and canonical content.
    pub id: String,
    /// Canonical content.
    pub content: String,
    /// Priority of MX and SRV.
    pub priority: Option<u32>,
    /// Content as PowerDNS writes it.
    pub wire: String,
}

/// An RRset as PowerDNS holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct RRset {
    /// One TTL for all its records.
    pub ttl: u32,
    /// The records it serves.
    pub records: Vec<Rec>,
    /// Disabled records (content as PowerDNS holds it): not served, not
    /// listed, but carried through every `REPLACE` so none is lost.
    pub disabled: Vec<String>,
    /// Its comments, joined.
    pub comment: String,
}

impl RRset {
    /// What it serves, order aside: what a conflict check compares.
    pub fn served(&self) -> (u32, Vec<(&str, Option<u32>)>) {
        let mut v: Vec<(&str, Option<u32>)> = self
            .records
            .iter()
            .map(|r| (r.content.as_str(), r.priority))
            .collect();
        v.sort_unstable();
        (if v.is_empty() { 0 } else { self.ttl }, v)
    }

    /// Whether it holds nothing at all.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.disabled.is_empty()
    }
}

/// What the provider last knew of the zone.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// Whether a whole listing filled it (an empty snapshot is then a fact).
    pub seeded: bool,
    /// Every RRset but the SOA.
    pub rrsets: HashMap<Key, RRset>,
    /// Where each record id lives.
    pub ids: HashMap<String, Key>,
    /// RRsets a `PATCH` whose answer was lost may have changed: the next
    /// read of them is taken as it is, without a conflict check.
    pub uncertain: HashSet<Key>,
    /// Writes committed so far; a listing that began before the last one
    /// does not replace the snapshot.
    pub writes: u64,
}

impl Snapshot {
    /// Puts `set` at `key` (removing it when empty), keeping `ids` in step.
    pub fn put(&mut self, key: &Key, set: RRset) {
        if let Some(old) = self.rrsets.remove(key) {
            for r in &old.records {
                self.ids.remove(&r.id);
            }
        }
        if !set.is_empty() {
            for r in &set.records {
                self.ids.insert(r.id.clone(), key.clone());
            }
            self.rrsets.insert(key.clone(), set);
        }
    }
}

/// The PowerDNS provider.
pub struct PowerDnsProvider {
    cfg: PowerDnsConfig,
    /// `…/servers/{server}/zones/{zone}.`, the one URL it reads and patches.
    zone_url: Url,
    /// Shared by the providers of every zone of the server.
    http: Arc<HttpClient>,
    snapshot: Mutex<Snapshot>,
    /// One write at a time: re-read, `PATCH` and snapshot update go together.
    write_lock: tokio::sync::Mutex<()>,
}

impl fmt::Debug for PowerDnsProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PowerDnsProvider")
            .field("cfg", &self.cfg)
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl PowerDnsProvider {
    /// Builds the provider; makes no request. Refuses a URL that is not
    /// http(s), an empty server id, or an API key a header cannot carry.
    pub fn new(cfg: PowerDnsConfig) -> Result<Self, ProviderError> {
        let http = Arc::new(Self::client(&cfg)?);
        Self::with_client(cfg, http)
    }

    /// One provider per zone of `zones` (the zone of `cfg` is replaced),
    /// all sharing one HTTP client, so one request budget (the provider's
    /// rate limit is per account) and one connection pool.
    pub fn for_zones(cfg: PowerDnsConfig, zones: &[Hostname]) -> Result<Vec<Self>, ProviderError> {
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
    fn client(cfg: &PowerDnsConfig) -> Result<HttpClient, ProviderError> {
        let auth = HeaderAuth::new(HeaderName::from_static("x-api-key"), &cfg.api_key)?;
        HttpClient::new("powerdns", cfg.http, auth, &cfg.api_key, wire::map_error)
    }

    /// The provider of `cfg`'s zone over an existing client.
    fn with_client(cfg: PowerDnsConfig, http: Arc<HttpClient>) -> Result<Self, ProviderError> {
        if cfg.server_id.trim().is_empty() {
            return Err(ProviderError::Invalid(
                "PDNS_SERVER_ID must not be empty".into(),
            ));
        }
        let root = ApiRoot::parse("PowerDNS API URL", &cfg.api_url)?;
        let zone = wire::wire_name(cfg.zone.as_str());
        let mut zone_url = root.url(&[], &[]);
        let under_api = zone_url.path().trim_end_matches('/').ends_with("/api/v1");
        let mut segments = if under_api { vec![] } else { vec!["api", "v1"] };
        segments.extend(["servers", cfg.server_id.trim(), "zones", zone.as_str()]);
        zone_url = root.url(&segments, &[]);
        Ok(PowerDnsProvider {
            cfg,
            zone_url,
            http,
            snapshot: Mutex::new(Snapshot::default()),
            write_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The provider's configuration.
    pub fn config(&self) -> &PowerDnsConfig {
        &self.cfg
    }

    /// Counters since the provider was built, for metrics and benchmarks.
    pub fn stats(&self) -> HttpStats {
        self.http.stats()
    }

    fn snap(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        self.snapshot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends one request to the zone URL (with `query`), returning the body.
    async fn call(
        &self,
        method: Method,
        query: &[(&str, &str)],
        body: Option<&[u8]>,
        operation: &'static str,
        reqs: &AtomicU64,
    ) -> Result<Vec<u8>, ProviderError> {
        let mut url = self.zone_url.clone();
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let call = Call {
            method,
            url,
            body,
            operation,
        };
        self.http.send(call, reqs).await
    }
}

impl DnsProvider for PowerDnsProvider {
    fn name(&self) -> &'static str {
        "powerdns"
    }

    fn zone(&self) -> &Hostname {
        &self.cfg.zone
    }

    /// Every type the project manages and the contract's whole TTL range; no
    /// proxying; no CNAME at the apex (the SOA and NS live there); no
    /// per-record comments (PowerDNS keeps comments per RRset: listed records
    /// carry their RRset's, and writes leave them as they are); the
    /// configured changes per `PATCH`; [`super::derived_id`]s.
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
            let held = self.lookup_one(name, rtype, &reqs).await?;
            Ok((held, reqs.load(Ordering::Relaxed)))
        })
    }
}
