//! The client of cache-service: the only way tracking-service reaches the DNS
//! provider.
//!
//! The channel is built in exactly one function, [`connect`], so transport
//! security and credentials can be added in one place. Every call has a time
//! limit, and a failure to reach cache-service becomes `UNAVAILABLE` with a
//! message naming its host (never the full URL, which may one day carry
//! credentials). This module never writes to the tracker's database.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::cache::{
    ApplyChangesRequest, Change, ChangeState, DnsRecord, GetCacheStatusRequest,
    GetCacheStatusResponse, GetChangeOutcomesRequest, GetRecordRequest, ListRecordsRequest,
    WatchCacheRequest, WatchCacheResponse,
};

use crate::error::TrackingError;

/// Most changes sent in one `ApplyChanges` call.
pub const APPLY_CHUNK: usize = 10_000;
/// Records asked for per `ListRecords` page (cache-service's maximum).
pub const LIST_PAGE: u32 = 10_000;

/// Validates CACHE_SERVICE_URL and returns its endpoint and `host:port` (for messages).
pub fn parse_url(url: &str) -> anyhow::Result<(Endpoint, String)> {
    let endpoint = Endpoint::from_shared(url.to_string())
        .with_context(|| "CACHE_SERVICE_URL is not a valid URL (e.g. http://127.0.0.1:50051)")?;
    let uri = endpoint.uri();
    let host = match (uri.host(), uri.port_u16()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => anyhow::bail!("CACHE_SERVICE_URL has no host (e.g. http://127.0.0.1:50051)"),
    };
    Ok((endpoint, host))
}

/// How tracking-service proves itself to cache-service: a bearer token, TLS
/// (with a client certificate under mTLS). Never printed: `Debug` redacts it.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    /// The bearer token (cache-service's AUTH_TOKEN).
    pub token: Option<String>,
    /// TLS settings for an `https://` CACHE_SERVICE_URL.
    pub tls: Option<ClientTlsConfig>,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecurity")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Adds the bearer token and the current request id to every call.
#[derive(Clone)]
pub struct Outgoing {
    auth: Option<MetadataValue<Ascii>>,
}

impl Interceptor for Outgoing {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(a) = &self.auth {
            req.metadata_mut().insert("authorization", a.clone());
        }
        if let Some(id) = trafego_common::mesh::current_request_id()
            && let Ok(v) = id.parse()
        {
            req.metadata_mut()
                .insert(trafego_common::mesh::REQUEST_ID_HEADER, v);
        }
        Ok(req)
    }
}

/// The generated client with [`Outgoing`] in front of the channel.
pub type RawClient = CacheServiceClient<InterceptedService<Channel, Outgoing>>;

/// Builds the lazy channel to cache-service. The one place where the channel
/// is configured: TLS, the bearer token and request-id propagation.
pub fn connect(
    url: &str,
    timeout: Duration,
    max_message_bytes: usize,
    security: &ClientSecurity,
) -> anyhow::Result<(RawClient, String)> {
    let (mut endpoint, host) = parse_url(url)?;
    if let Some(tls) = &security.tls {
        endpoint = endpoint
            .tls_config(tls.clone())
            .context("CACHE_SERVICE_CA_FILE / client certificate")?;
    } else if url.starts_with("https://") {
        anyhow::bail!(
            "an https:// CACHE_SERVICE_URL needs CACHE_SERVICE_CA_FILE (the CA that signed cache-service's certificate)"
        );
    }
    let channel = endpoint
        .connect_timeout(timeout)
        .tcp_nodelay(true)
        .connect_lazy();
    let auth = match &security.token {
        Some(t) => {
            let mut v: MetadataValue<Ascii> = format!("Bearer {t}").parse().map_err(|_| {
                anyhow::anyhow!("CACHE_SERVICE_TOKEN holds characters a header cannot carry")
            })?;
            v.set_sensitive(true);
            Some(v)
        }
        None => None,
    };
    let client = CacheServiceClient::with_interceptor(channel, Outgoing { auth })
        .max_decoding_message_size(max_message_bytes)
        .max_encoding_message_size(max_message_bytes);
    Ok((client, host))
}

/// The outcome of one change sent to `ApplyChanges`.
#[derive(Debug, Clone)]
pub struct ChangeOutcome {
    /// gRPC code of the change: 0 when the provider accepted it.
    pub code: i32,
    /// Why it failed; empty on success.
    pub message: String,
    /// The record as the provider now holds it (creates and updates).
    pub record: Option<DnsRecord>,
    /// Nobody knows the outcome yet: the call carrying the change got no
    /// answer (a time limit, a dropped connection), or cache-service could
    /// not settle it (CHANGE_STATE_UNSETTLED). The provider may or may not
    /// have applied it: ask GetChangeOutcomes later.
    pub uncertain: bool,
}

/// What cache-service says became of one change id (GetChangeOutcomes).
#[derive(Debug, Clone)]
pub struct KnownOutcome {
    /// The state.
    pub state: ChangeState,
    /// The record it produced, when applied.
    pub record: Option<DnsRecord>,
    /// The record it produced or concerned.
    pub record_id: String,
    /// Why it failed or is unsettled.
    pub message: String,
}

/// A cache-service client that remembers whether the last call got through
/// and the last cache generation seen, for `GetTrackerStatus`.
#[derive(Clone)]
pub struct CacheClient {
    inner: RawClient,
    host: Arc<str>,
    timeout: Duration,
    reachable: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
    /// cache-service's change-journal id, from its last answer that carried one.
    journal_id: Arc<Mutex<String>>,
}

impl std::fmt::Debug for CacheClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheClient")
            .field("host", &self.host)
            .finish()
    }
}

impl CacheClient {
    /// A client of cache-service at `url`.
    pub fn new(
        url: &str,
        timeout: Duration,
        max_message_bytes: usize,
        security: &ClientSecurity,
    ) -> anyhow::Result<Self> {
        let (inner, host) = connect(url, timeout, max_message_bytes, security)?;
        Ok(Self {
            inner,
            host: host.into(),
            timeout,
            reachable: Arc::new(AtomicBool::new(false)),
            generation: Arc::new(AtomicU64::new(0)),
            journal_id: Arc::new(Mutex::new(String::new())),
        })
    }

    /// cache-service's change-journal id as last seen ("" before any answer
    /// carried one): a change sent now is vouched for by that journal.
    pub fn journal_id(&self) -> String {
        self.journal_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn saw_journal(&self, id: &str) {
        if !id.is_empty() {
            let mut j = self.journal_id.lock().unwrap_or_else(|e| e.into_inner());
            if *j != id {
                *j = id.to_string();
            }
        }
    }

    /// cache-service's `host:port`.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// True when cache-service answered the last call.
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    /// The last cache generation seen.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    fn seen(&self, generation: u64) {
        self.generation.fetch_max(generation, Ordering::Relaxed);
    }

    /// Runs one call under the time limit and maps the failure.
    async fn call<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, TrackingError> {
        let res = tokio::time::timeout(self.timeout, fut).await;
        match res {
            Ok(Ok(r)) => {
                self.reachable.store(true, Ordering::Relaxed);
                Ok(r.into_inner())
            }
            Ok(Err(s)) => Err(self.map_status(what, s)),
            Err(_) => {
                self.reachable.store(false, Ordering::Relaxed);
                Err(TrackingError::DeadlineExceeded(format!(
                    "cache-service at {} did not answer {what} within {} (CACHE_SERVICE_TIMEOUT)",
                    self.host,
                    humantime::format_duration(self.timeout)
                )))
            }
        }
    }

    fn map_status(&self, what: &str, s: Status) -> TrackingError {
        // A status with a source error comes from the transport: the service
        // was not reached. A status without one is cache-service's own answer.
        if std::error::Error::source(&s).is_some() {
            self.reachable.store(false, Ordering::Relaxed);
            return TrackingError::Unavailable(format!(
                "cache-service at {} (CACHE_SERVICE_URL) is unreachable ({what}): {}",
                self.host,
                s.message()
            ));
        }
        self.reachable.store(true, Ordering::Relaxed);
        if s.code() == Code::Unavailable {
            return TrackingError::Unavailable(format!(
                "cache-service at {} answered {what} with UNAVAILABLE: {}",
                self.host,
                s.message()
            ));
        }
        TrackingError::Cache(s)
    }

    /// `GetCacheStatus`.
    pub async fn status(&self) -> Result<GetCacheStatusResponse, TrackingError> {
        let mut c = self.inner.clone();
        let r = self
            .call(
                "GetCacheStatus",
                c.get_cache_status(GetCacheStatusRequest {}),
            )
            .await?;
        self.seen(r.generation);
        self.saw_journal(&r.journal_id);
        Ok(r)
    }

    /// Every record of the zone (all pages), refreshed first when the cache is
    /// older than `max_staleness_seconds` (0: as it is). Returns the records
    /// and the generation they were read at; pages read at different
    /// generations are read again, so the view is one snapshot.
    pub async fn list_all(
        &self,
        max_staleness_seconds: u32,
    ) -> Result<(Vec<DnsRecord>, u64), TrackingError> {
        let mut attempt = 0;
        'again: loop {
            attempt += 1;
            let mut out = Vec::new();
            let mut token = String::new();
            let mut generation = None;
            loop {
                let mut c = self.inner.clone();
                let page = self
                    .call(
                        "ListRecords",
                        c.list_records(ListRecordsRequest {
                            page_size: LIST_PAGE,
                            page_token: token.clone(),
                            max_staleness_seconds,
                            ..Default::default()
                        }),
                    )
                    .await?;
                self.seen(page.generation);
                match generation {
                    None => generation = Some(page.generation),
                    Some(g) if g != page.generation && attempt < 5 => continue 'again,
                    Some(_) => {}
                }
                out.extend(page.records);
                if page.next_page_token.is_empty() {
                    return Ok((out, generation.unwrap_or_default()));
                }
                token = page.next_page_token;
            }
        }
    }

    /// `GetRecord`; `None` when the cache does not hold it.
    pub async fn get_record(&self, record_id: &str) -> Result<Option<DnsRecord>, TrackingError> {
        let mut c = self.inner.clone();
        match self
            .call(
                "GetRecord",
                c.get_record(GetRecordRequest {
                    record_id: record_id.to_string(),
                }),
            )
            .await
        {
            Ok(r) => Ok(r.record),
            Err(TrackingError::Cache(s)) if s.code() == Code::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Applies `changes` in chunks of at most [`APPLY_CHUNK`]. Returns one
    /// outcome per change. If the first call fails the error is returned; if a
    /// later one fails, the changes of that and later chunks are reported
    /// failed with its code (the earlier ones stand).
    ///
    /// A failed call does not mean nothing was applied: when no answer came
    /// (CACHE_SERVICE_TIMEOUT, a dropped connection), cache-service may still
    /// complete the writes. Callers give each change a `change_id`, journal
    /// it before calling (the tracker's pending intents), treat such outcomes
    /// as unknown (`uncertain`), never as refused, and learn them later with
    /// [`CacheClient::outcomes`].
    pub async fn apply(&self, changes: Vec<Change>) -> Result<Vec<ChangeOutcome>, TrackingError> {
        let total = changes.len();
        let mut out: Vec<ChangeOutcome> = Vec::with_capacity(total);
        let mut rest = changes;
        while !rest.is_empty() {
            // Never between two changes of one group (a record and its marker).
            let mut at = rest.len().min(APPLY_CHUNK);
            while at > 1
                && at < rest.len()
                && !rest[at].group.is_empty()
                && rest[at].group == rest[at - 1].group
            {
                at -= 1;
            }
            let tail = rest.split_off(at);
            let chunk = std::mem::replace(&mut rest, tail);
            let n = chunk.len();
            let mut c = self.inner.clone();
            let res = self
                .call(
                    "ApplyChanges",
                    c.apply_changes(ApplyChangesRequest { changes: chunk }),
                )
                .await;
            match res {
                Ok(r) => {
                    self.seen(r.generation);
                    self.saw_journal(&r.journal_id);
                    let mut results: Vec<Option<ChangeOutcome>> = vec![None; n];
                    for cr in r.results {
                        let uncertain = cr.state == ChangeState::Unsettled as i32;
                        if let Some(slot) = usize::try_from(cr.index)
                            .ok()
                            .and_then(|i| results.get_mut(i))
                        {
                            *slot = Some(ChangeOutcome {
                                code: cr.code,
                                message: cr.message,
                                record: cr.record,
                                uncertain,
                            });
                        }
                    }
                    out.extend(results.into_iter().map(|o| {
                        o.unwrap_or(ChangeOutcome {
                            code: Code::Internal as i32,
                            message: "cache-service returned no result for this change".into(),
                            record: None,
                            uncertain: true,
                        })
                    }));
                }
                Err(e) if out.is_empty() => return Err(e),
                Err(e) => {
                    // cache-service's own refusal of a chunk applied nothing;
                    // no answer at all leaves the chunk's outcome unknown.
                    let (code, message, uncertain) = match &e {
                        TrackingError::Unavailable(m) => (Code::Unavailable, m.clone(), true),
                        TrackingError::DeadlineExceeded(m) => {
                            (Code::DeadlineExceeded, m.clone(), true)
                        }
                        TrackingError::Cache(s) => (s.code(), s.message().to_string(), false),
                        other => (Code::Internal, other.to_string(), true),
                    };
                    let failed = total - out.len();
                    out.extend((0..failed).map(|_| ChangeOutcome {
                        code: code as i32,
                        message: message.clone(),
                        record: None,
                        uncertain,
                    }));
                    break;
                }
            }
        }
        Ok(out)
    }

    /// What became of changes sent with these ids (`GetChangeOutcomes`),
    /// waiting up to `wait` for those still in flight. Returns one outcome
    /// per id and the journal id that vouches for `UNKNOWN`.
    pub async fn outcomes(
        &self,
        ids: &[String],
        wait: Duration,
    ) -> Result<(Vec<KnownOutcome>, String), TrackingError> {
        let wait_ms = u32::try_from(wait.as_millis())
            .unwrap_or(u32::MAX)
            .min(60_000);
        let mut out = Vec::with_capacity(ids.len());
        let mut journal = String::new();
        for chunk in ids.chunks(APPLY_CHUNK) {
            let mut c = self.inner.clone();
            let r = self
                .call(
                    "GetChangeOutcomes",
                    c.get_change_outcomes(GetChangeOutcomesRequest {
                        change_ids: chunk.to_vec(),
                        wait_ms,
                    }),
                )
                .await?;
            self.seen(r.generation);
            self.saw_journal(&r.journal_id);
            journal = r.journal_id;
            let mut by_id: std::collections::HashMap<String, KnownOutcome> = r
                .outcomes
                .into_iter()
                .map(|o| {
                    (
                        o.change_id,
                        KnownOutcome {
                            state: ChangeState::try_from(o.state)
                                .unwrap_or(ChangeState::Unspecified),
                            record: o.record,
                            record_id: o.record_id,
                            message: o.message,
                        },
                    )
                })
                .collect();
            out.extend(chunk.iter().map(|id| {
                by_id.remove(id).unwrap_or(KnownOutcome {
                    state: ChangeState::Unspecified,
                    record: None,
                    record_id: String::new(),
                    message: "cache-service said nothing of this change".into(),
                })
            }));
        }
        Ok((out, journal))
    }

    /// Opens a `WatchCache` stream from `from_generation`.
    pub async fn watch(
        &self,
        from_generation: u64,
    ) -> Result<tonic::Streaming<WatchCacheResponse>, TrackingError> {
        let mut c = self.inner.clone();
        self.call(
            "WatchCache",
            c.watch_cache(WatchCacheRequest {
                from_generation,
                zone: String::new(),
            }),
        )
        .await
    }
}
