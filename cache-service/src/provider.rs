//! The DNS provider behind one trait: cache-service's only door to the outside.
//!
//! Implementations read every record of the zone and apply writes. They never
//! touch the cache database, and they never put a credential in an error, a log
//! line or a record.

pub mod cloudflare;
pub mod derived_id;
pub mod digitalocean;
pub mod http;
pub mod powerdns;
pub mod rdata;
pub mod rfc2136;
pub mod route53;
pub mod zonefile;

use std::ops::Range;
use std::time::Duration;

use futures::future::BoxFuture;
use trafego_proto::validate::{
    self, Hostname, IdFormat, ProviderRules, RecordType, ValidRecordInput,
};

pub use derived_id::{DERIVED_ID_FORMAT, derived_id};

/// The comment the app writes on records it creates. It says who wrote the
/// record for people reading the provider's dashboard; it is never taken as
/// proof of ownership (only tracking-service's table is).
pub const MANAGED_COMMENT: &str = "Managed by TrafegoDNS";

/// A record as a provider holds it. Fields are as the provider reports them,
/// so records of types this project does not manage are cached too.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProviderRecord {
    /// The provider's id, stable across refreshes and restarts.
    pub id: String,
    /// Record type, uppercase.
    pub rtype: String,
    /// Fully qualified name, lowercase, no trailing dot.
    pub name: String,
    /// Content in presentation form.
    pub content: String,
    /// TTL in seconds, 1 for automatic.
    pub ttl: u32,
    /// Proxied at the provider.
    pub proxied: bool,
    /// Priority for MX and SRV.
    pub priority: Option<u32>,
    /// The provider-side comment ("" when none).
    pub comment: String,
}

impl ProviderRecord {
    /// The record's fingerprint, computed as everywhere else in the project.
    pub fn fingerprint(&self) -> String {
        validate::fingerprint(
            &self.rtype,
            &self.name,
            &self.content,
            self.ttl,
            self.proxied,
            self.priority,
        )
    }

    /// The record an accepted write produced, for providers that echo nothing
    /// more than an id.
    pub fn from_input(id: String, input: &ValidRecordInput) -> Self {
        let s = &input.spec;
        ProviderRecord {
            id,
            rtype: s.rtype.as_str().to_string(),
            name: s.name.as_str().to_string(),
            content: s.content.clone(),
            ttl: s.ttl,
            proxied: s.proxied,
            priority: s.priority.map(u32::from),
            comment: input.comment.clone(),
        }
    }
}

/// One write, as asked of the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Create a record.
    Create(ValidRecordInput),
    /// Replace the record with this id.
    Update {
        /// The provider's id of the record.
        id: String,
        /// Its new fields.
        input: ValidRecordInput,
    },
    /// Delete the record with this id.
    Delete {
        /// The provider's id of the record.
        id: String,
    },
}

impl WriteOp {
    /// The id a write is about, if it has one yet.
    pub fn id(&self) -> Option<&str> {
        match self {
            WriteOp::Create(_) => None,
            WriteOp::Update { id, .. } | WriteOp::Delete { id } => Some(id),
        }
    }
}

/// The outcome of one write: the record as the provider now holds it, or
/// `None` for a delete.
pub type WriteResult = Result<Option<ProviderRecord>, ProviderError>;

/// Why a provider call failed. Mapped to a gRPC code once, in `From<ProviderError> for Status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The provider (or the client-side budget) says to slow down.
    #[error("provider rate limit reached{}", retry_after.map(|d| format!("; retry after {}s", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// How long the provider asked us to wait.
        retry_after: Option<Duration>,
    },
    /// The provider refused the credentials.
    #[error("the provider refused the credentials: {0}")]
    Unauthorized(String),
    /// The record or zone does not exist.
    #[error("not found at the provider: {0}")]
    NotFound(String),
    /// The provider already holds a conflicting record.
    #[error("the provider already holds a conflicting record: {0}")]
    Conflict(String),
    /// The provider refused the content.
    #[error("the provider refused the record: {0}")]
    Invalid(String),
    /// The provider could not be reached, or kept failing.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// A write was sent and its answer was lost (a timeout, a connection
    /// broken after sending, a server error): the provider may or may not
    /// have applied it. Never retried blindly: the cache settles it by
    /// looking (a targeted read) before anything is sent again.
    #[error("the provider's answer was lost: {0}")]
    Unanswered(String),
    /// Anything else the provider said.
    #[error("provider error: {0}")]
    Other(String),
}

impl ProviderError {
    /// The gRPC code for this condition, chosen in this one place.
    pub fn code(&self) -> tonic::Code {
        match self {
            ProviderError::RateLimited { .. } => tonic::Code::ResourceExhausted,
            // cache-service's caller authenticated fine; it is the provider
            // that denied cache-service's credentials.
            ProviderError::Unauthorized(_) => tonic::Code::PermissionDenied,
            ProviderError::NotFound(_) => tonic::Code::NotFound,
            ProviderError::Conflict(_) => tonic::Code::AlreadyExists,
            ProviderError::Invalid(_) => tonic::Code::InvalidArgument,
            ProviderError::Unavailable(_) | ProviderError::Unanswered(_) => {
                tonic::Code::Unavailable
            }
            ProviderError::Other(_) => tonic::Code::Internal,
        }
    }
}

impl From<ProviderError> for tonic::Status {
    fn from(e: ProviderError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}

/// Every record of the zone, read whole.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// The records.
    pub records: Vec<ProviderRecord>,
    /// Provider requests the listing took.
    pub requests: u64,
}

/// What a provider can hold and do, declared by the provider itself. The rest
/// of the service (validation, `GetCacheStatus`) reads these data and never
/// the provider's name, so a new provider is described, not special-cased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Record types the provider serves; writes of other types are refused.
    pub record_types: Vec<RecordType>,
    /// Whether it can proxy traffic (A, AAAA, CNAME).
    pub proxied: bool,
    /// Shortest explicit TTL it accepts (1, automatic, always passes).
    pub min_ttl: u32,
    /// Longest TTL it accepts.
    pub max_ttl: u32,
    /// Whether a CNAME may sit at the zone apex (CNAME flattening).
    pub cname_at_apex: bool,
    /// Changes it takes in one request; 0 means no limit.
    pub batch_size: u32,
    /// Whether records carry a comment at the provider.
    pub comments: bool,
    /// The exact shape of its record ids, checked before an id is used.
    pub id_format: IdFormat,
}

impl Capabilities {
    /// The part validation needs, shared with tracking-service's checks.
    pub fn rules(&self) -> ProviderRules {
        ProviderRules {
            record_types: self.record_types.clone(),
            proxied: self.proxied,
            min_ttl: self.min_ttl,
            max_ttl: self.max_ttl,
            cname_at_apex: self.cname_at_apex,
            id_format: self.id_format,
        }
    }

    /// The capabilities as `GetCacheStatus` reports them.
    pub fn to_proto(&self) -> trafego_proto::cache::Capabilities {
        trafego_proto::cache::Capabilities {
            record_types: self
                .record_types
                .iter()
                .map(|t| t.as_str().to_string())
                .collect(),
            proxied: self.proxied,
            min_ttl: self.min_ttl,
            max_ttl: self.max_ttl,
            cname_at_apex: self.cname_at_apex,
            batch_size: self.batch_size,
            comments: self.comments,
            record_id_format: Some(self.id_format.to_proto()),
        }
    }
}

/// A DNS provider: Cloudflare, a zone file, or anything else that can list a
/// zone and apply writes.
pub trait DnsProvider: Send + Sync + 'static {
    /// The provider's name as stored in the cache: "cloudflare", "zonefile".
    fn name(&self) -> &'static str;

    /// The zone this provider manages.
    fn zone(&self) -> &Hostname;

    /// What this provider can hold and do; validation reads it.
    fn capabilities(&self) -> Capabilities;

    /// Reads every record of the zone. Either the whole zone or an error:
    /// never a partial listing.
    fn list(&self) -> BoxFuture<'_, Result<Listing, ProviderError>>;

    /// Applies writes with the provider's batching. Returns exactly one result
    /// per op, in the order given, and the number of provider requests made.
    /// A write whose answer was lost is reported as
    /// [`ProviderError::Unanswered`], never re-sent by the provider itself.
    fn apply(&self, ops: Vec<WriteOp>) -> BoxFuture<'_, (Vec<WriteResult>, u64)>;

    /// Applies writes as [`DnsProvider::apply`] does, keeping each of
    /// `units` (adjacent ops of one `Change.group`, covering `ops` in order)
    /// in one provider request. The default packs units into calls of
    /// `apply` of at most `batch_size` ops; with `batch_size` 1 it sends a
    /// unit's ops in order and stops the unit at its first failure. A
    /// provider whose `apply` may split a call further (Cloudflare's
    /// op-by-op fallback) overrides it.
    fn apply_grouped(
        &self,
        ops: Vec<WriteOp>,
        units: Vec<Range<usize>>,
    ) -> BoxFuture<'_, (Vec<WriteResult>, u64)> {
        Box::pin(apply_in_units(self, ops, units))
    }

    /// Reads what the provider holds at one name and type, now: the targeted
    /// read that settles a write whose answer was lost. Returns the records
    /// and the provider requests made. The default reads the whole zone;
    /// providers with a filtered read override it.
    fn lookup<'a>(
        &'a self,
        name: &'a str,
        rtype: &'a str,
    ) -> BoxFuture<'a, Result<(Vec<ProviderRecord>, u64), ProviderError>> {
        Box::pin(async move {
            let listing = self.list().await?;
            let held = listing
                .records
                .into_iter()
                .filter(|r| r.name == name && r.rtype == rtype)
                .collect();
            Ok((held, listing.requests))
        })
    }
}

/// The units of a call: maximal runs of adjacent ops sharing a group
/// (`groups[i]` is op i's), each op without a group a unit of its own.
pub fn units(groups: &[Option<&str>]) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        match out.last_mut() {
            Some(last) if g.is_some() && groups[last.start] == *g => last.end = i + 1,
            _ => out.push(i..i + 1),
        }
    }
    out
}

/// `units` packed in order into chunks of at most `batch_size` ops (0: one
/// chunk), never splitting a unit; a unit bigger than `batch_size` is a chunk
/// of its own.
pub fn pack(units: &[Range<usize>], batch_size: usize) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    for u in units {
        match out.last_mut() {
            Some(last) if batch_size == 0 || u.end - last.start <= batch_size => last.end = u.end,
            _ => out.push(u.clone()),
        }
    }
    out
}

/// Whether an error says the provider as a whole failed, or that a write's
/// answer was lost: later requests are not sent.
fn stops_the_call(e: &ProviderError) -> bool {
    matches!(
        e,
        ProviderError::Unavailable(_)
            | ProviderError::RateLimited { .. }
            | ProviderError::Unauthorized(_)
            | ProviderError::Unanswered(_)
    )
}

/// The default [`DnsProvider::apply_grouped`].
async fn apply_in_units<P: DnsProvider + ?Sized>(
    p: &P,
    ops: Vec<WriteOp>,
    units: Vec<Range<usize>>,
) -> (Vec<WriteResult>, u64) {
    if units.iter().all(|u| u.len() == 1) {
        return p.apply(ops).await;
    }
    let batch = usize::try_from(p.capabilities().batch_size).unwrap_or(usize::MAX);
    let mut results: Vec<WriteResult> = Vec::with_capacity(ops.len());
    let mut requests = 0u64;
    let mut stop: Option<ProviderError> = None;
    let not_sent = |e: &ProviderError| {
        ProviderError::Unavailable(format!("not sent: an earlier write failed ({e})"))
    };
    if batch == 1 {
        // One change per request: a unit's changes go in order, and the rest
        // of a unit is not sent once one of them failed.
        for u in units {
            let mut failed: Option<ProviderError> = None;
            for op in &ops[u] {
                if let Some(e) = stop.as_ref().or(failed.as_ref()) {
                    results.push(Err(not_sent(e)));
                    continue;
                }
                let (mut r, n) = p.apply(vec![op.clone()]).await;
                requests = requests.saturating_add(n);
                let r = r
                    .pop()
                    .unwrap_or_else(|| Err(ProviderError::Other("no result".into())));
                if let Err(e) = &r {
                    if stops_the_call(e) {
                        stop = Some(e.clone());
                    }
                    failed = Some(e.clone());
                }
                results.push(r);
            }
        }
        return (results, requests);
    }
    for chunk in pack(&units, batch) {
        if let Some(e) = &stop {
            results.extend(chunk.map(|_| Err(not_sent(e))));
            continue;
        }
        let (rs, n) = p.apply(ops[chunk.clone()].to_vec()).await;
        requests = requests.saturating_add(n);
        if let Some(Err(e)) = rs.iter().find(|r| r.as_ref().is_err_and(stops_the_call)) {
            stop = Some(e.clone());
        }
        results.extend(rs);
    }
    (results, requests)
}

#[cfg(test)]
mod grouping_tests {
    use super::*;

    #[test]
    fn units_are_runs_of_one_group_and_packing_never_splits_them() {
        let g = [
            None,
            Some("a"),
            Some("a"),
            Some("b"),
            Some("b"),
            None,
            Some("a"),
        ];
        let u = units(&g);
        assert_eq!(u, vec![0..1, 1..3, 3..5, 5..6, 6..7]);
        assert_eq!(pack(&u, 2), vec![0..1, 1..3, 3..5, 5..7]);
        assert_eq!(pack(&u, 3), vec![0..3, 3..6, 6..7]);
        assert_eq!(pack(&u, 0), vec![0..7]);
        assert_eq!(pack(&u, 1), vec![0..1, 1..3, 3..5, 5..6, 6..7]);
        for size in 1..8 {
            for c in pack(&u, size) {
                for unit in &u {
                    let inside = c.start <= unit.start && unit.end <= c.end;
                    let outside = unit.end <= c.start || c.end <= unit.start;
                    assert!(inside || outside, "size {size}: {c:?} splits {unit:?}");
                }
            }
        }
    }
}
