//! The RFC 2136 provider: a zone on any primary DNS server that takes
//! dynamic updates (BIND, Knot, PowerDNS, Windows DNS), reached over TCP with
//! every message signed with a TSIG key and every answer checked against it.
//!
//! The zone is listed by a zone transfer (AXFR). Writes are DNS UPDATE
//! messages whose prerequisites (RFC 2136 section 2.4) hold the RRset each
//! change touches as this provider last saw it: a create into an absent
//! RRset requires it to be absent still, and a change to an existing RRset
//! requires it to hold exactly the records last read, so a record someone
//! else changed in the meantime makes the write fail instead of being
//! overwritten. Changes to different names travel together in one message.
//!
//! DNS keeps no per-record ids: ids are [`derived_id`]s of type, name and
//! content, and the provider keeps the records it last read (with their wire
//! form, to state prerequisites exactly) to find a record by its id. It must
//! never send an update without prerequisites, resend one whose answer was
//! lost (that is [`ProviderError::Unanswered`], settled by the cache with
//! [`DnsProvider::lookup`]), or let the TSIG secret reach a log, an error or
//! `Debug`.

mod settings;
mod transport;
mod wire;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

use futures::future::BoxFuture;
use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType as WireType, TSigner};
use hickory_proto::serialize::binary::BinEncodable;
use trafego_proto::validate::{Hostname, RecordType, TTL_MAX, TTL_MIN, ValidRecordInput};

use super::{
    Capabilities, DERIVED_ID_FORMAT, DnsProvider, Listing, ProviderError, ProviderRecord, WriteOp,
    WriteResult,
};
use settings::with_port;
pub use settings::{
    DEFAULT_BATCH_SIZE, DEFAULT_TIMEOUT, DEFAULT_TTL, Rfc2136Config, TsigSecret, parse_algorithm,
};
use transport::{Failure, Reply, Transport};

/// Upper bound of an UPDATE message's records in bytes (uncompressed), well
/// under DNS's 65,535 so the header, zone and TSIG always fit.
const MAX_MESSAGE_BYTES: usize = 60_000;

/// A record as last read from the server (or written to it), with the wire
/// form prerequisites and deletions must repeat exactly.
#[derive(Debug, Clone)]
struct Seen {
    record: ProviderRecord,
    wire: Record,
}

/// An RRset's key: canonical name and uppercase type.
type Key = (String, String);

/// The zone as last seen: what prerequisites are stated against, and how an
/// id is found. Replaced whole by each listing, changed by each write the
/// server accepted.
#[derive(Debug, Default)]
struct Index {
    sets: HashMap<Key, Vec<Seen>>,
    ids: HashMap<String, Key>,
    /// RRsets per name, to tell whether a name is in use.
    names: HashMap<String, usize>,
    /// Wildcard owners (`*.example.com`), which answer queries for names
    /// that hold nothing themselves.
    wildcards: HashSet<String>,
}

impl Index {
    fn of(records: Vec<Seen>) -> Self {
        let mut index = Index::default();
        for s in records {
            index.insert(s);
        }
        index
    }

    fn insert(&mut self, s: Seen) {
        let key = (s.record.name.clone(), s.record.rtype.clone());
        if s.record.name.starts_with("*.") {
            self.wildcards.insert(s.record.name.clone());
        }
        self.ids.insert(s.record.id.clone(), key.clone());
        let set = self.sets.entry(key.clone()).or_default();
        if set.is_empty() {
            *self.names.entry(key.0).or_default() += 1;
        }
        set.retain(|o| o.record.id != s.record.id);
        set.push(s);
    }

    fn remove(&mut self, id: &str) {
        let Some(key) = self.ids.remove(id) else {
            return;
        };
        let Some(set) = self.sets.get_mut(&key) else {
            return;
        };
        set.retain(|s| s.record.id != id);
        if set.is_empty() {
            self.sets.remove(&key);
            if let Some(n) = self.names.get_mut(&key.0) {
                *n -= 1;
                if *n == 0 {
                    self.names.remove(&key.0);
                    self.wildcards.remove(&key.0);
                }
            }
        }
    }

    fn set(&self, key: &Key) -> &[Seen] {
        self.sets.get(key).map_or(&[], Vec::as_slice)
    }

    fn find(&self, id: &str) -> Option<(&Key, Vec<&Seen>)> {
        let key = self.ids.get(id)?;
        let held: Vec<&Seen> = self.set(key).iter().filter(|s| s.record.id == id).collect();
        (!held.is_empty()).then_some((key, held))
    }

    /// RRsets at `name` other than `except`.
    fn others_at(&self, name: &str, except: &Key) -> usize {
        let n = self.names.get(name).copied().unwrap_or(0);
        n.saturating_sub(usize::from(self.sets.contains_key(except)))
    }

    /// Whether a wildcard could answer a query for `name`.
    fn wildcard_covers(&self, name: &str) -> bool {
        self.wildcards.iter().any(|w| {
            let parent = &w[2..];
            name != parent && name.ends_with(&format!(".{parent}"))
        })
    }
}

/// What kind of change an UPDATE carries, for naming its failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Create,
    Update,
    Delete,
}

/// One change made ready to send: its prerequisites, its update records,
/// and what the index becomes once the server accepts it.
#[derive(Debug, Clone)]
struct Planned {
    kind: Kind,
    /// Names it reads or changes; two changes sharing a name never share a
    /// message.
    names: Vec<String>,
    prereqs: Vec<Record>,
    updates: Vec<Record>,
    /// The record it replaces or deletes: its key and wire form.
    old: Option<(Key, Vec<Record>)>,
    /// The id the index drops on success.
    remove: Option<String>,
    /// The record the index gains on success (and the write's result).
    add: Option<Seen>,
    /// Upper bound of its records' size on the wire.
    bytes: usize,
    /// For messages: `A www.example.com`.
    what: String,
}

/// A zone on a DNS server that takes RFC 2136 updates signed with TSIG.
pub struct Rfc2136Provider {
    cfg: Rfc2136Config,
    origin: Name,
    transport: Transport,
    index: Mutex<Index>,
    /// One apply at a time: each plans against the index the previous left.
    writing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Rfc2136Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rfc2136Provider")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// A prerequisite or update record with no RDATA, of class `class`.
fn empty(name: Name, rtype: WireType, class: DNSClass) -> Record {
    let mut r = Record::update0(name, 0, rtype);
    r.dns_class = class;
    r
}

/// "RRset exists (value dependent)": the set exactly as seen, TTL 0.
fn as_seen(set: &[Seen]) -> impl Iterator<Item = Record> + '_ {
    set.iter().map(|s| {
        let mut r = s.wire.clone();
        r.ttl = 0;
        r.dns_class = DNSClass::IN;
        r
    })
}

/// "Delete an RR from an RRset": class NONE, TTL 0.
fn deletion(wire: &Record) -> Record {
    let mut r = wire.clone();
    r.ttl = 0;
    r.dns_class = DNSClass::NONE;
    r
}

fn encoded_len(records: &[Record]) -> usize {
    records
        .iter()
        .map(|r| r.to_bytes().map_or(MAX_MESSAGE_BYTES, |b| b.len()))
        .sum()
}

fn is_prerequisite_failure(code: ResponseCode) -> bool {
    matches!(
        code,
        ResponseCode::YXDomain
            | ResponseCode::YXRRSet
            | ResponseCode::NXRRSet
            | ResponseCode::NXDomain
    )
}

impl Rfc2136Provider {
    /// A provider for `cfg`. Nothing is sent yet: a server that is down
    /// shows as a failed refresh, not as a service that cannot start.
    pub fn new(cfg: Rfc2136Config) -> Result<Self, ProviderError> {
        let origin = wire::absolute_name(cfg.zone.as_str())?;
        let key_name = Name::from_ascii(cfg.key_name.trim()).map_err(|e| {
            ProviderError::Invalid(format!(
                "RFC2136_TSIG_KEY_NAME {:?} is not a DNS name: {e}",
                cfg.key_name
            ))
        })?;
        let signer = TSigner::new(
            cfg.secret.0.clone(),
            cfg.algorithm.clone(),
            key_name,
            transport::FUDGE,
        )
        .map_err(|e| ProviderError::Invalid(format!("RFC2136_TSIG_ALGORITHM: {e}")))?;
        Ok(Rfc2136Provider {
            transport: Transport {
                server: with_port(cfg.server.trim()),
                signer,
                timeout: cfg.timeout,
            },
            cfg: Rfc2136Config {
                batch_size: cfg.batch_size.max(1),
                ..cfg
            },
            origin,
            index: Mutex::new(Index::default()),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Transfers the zone and replaces the index with it.
    async fn transfer(&self) -> Result<Vec<ProviderRecord>, ProviderError> {
        let mut message = Message::query();
        message.metadata.recursion_desired = false;
        message.add_query(Query::query(self.origin.clone(), WireType::AXFR));
        let (records, messages) = self.transport.transfer(message).await?;
        let seen: Vec<Seen> = records
            .into_iter()
            .filter(wire::listed)
            .map(|r| Seen {
                record: wire::to_provider(&r),
                wire: r,
            })
            .collect();
        let listed: Vec<ProviderRecord> = seen.iter().map(|s| s.record.clone()).collect();
        tracing::info!(
            zone = %self.cfg.zone,
            records = listed.len(),
            messages,
            "zone transfer read"
        );
        *self.index() = Index::of(seen);
        Ok(listed)
    }

    /// The names an op touches, as the index knows them now.
    fn names_of(&self, op: &WriteOp) -> Vec<String> {
        let mut names = Vec::new();
        if let WriteOp::Create(input) | WriteOp::Update { input, .. } = op {
            names.push(input.spec.name.as_str().to_string());
        }
        if let Some(id) = op.id()
            && let Some((key, _)) = self.index().find(id)
        {
            names.push(key.0.clone());
        }
        names
    }

    fn not_found(id: &str) -> ProviderError {
        ProviderError::NotFound(format!(
            "no record with id {id} in the zone as last transferred"
        ))
    }

    /// The new record of a create or update, checked against the zone.
    fn new_record(&self, input: &ValidRecordInput) -> Result<Seen, ProviderError> {
        let spec = &input.spec;
        if !spec.name.is_in_zone(&self.cfg.zone) {
            return Err(ProviderError::Invalid(format!(
                "{} is outside the zone {}",
                spec.name, self.cfg.zone
            )));
        }
        let wire = wire::spec_record(spec, DEFAULT_TTL)?;
        Ok(Seen {
            record: wire::to_provider(&wire),
            wire,
        })
    }

    /// Prerequisites and updates for one op, against the index as it is.
    fn plan(&self, op: &WriteOp) -> Result<Planned, ProviderError> {
        let index = self.index();
        let (kind, old) = match op {
            WriteOp::Create(_) => (Kind::Create, None),
            WriteOp::Update { id, .. } | WriteOp::Delete { id } => {
                let (key, held) = index.find(id).ok_or_else(|| Self::not_found(id))?;
                let wires: Vec<Record> = held.iter().map(|s| s.wire.clone()).collect();
                let kind = if matches!(op, WriteOp::Delete { .. }) {
                    Kind::Delete
                } else {
                    Kind::Update
                };
                (kind, Some((key.clone(), wires)))
            }
        };
        let mut prereqs: Vec<Record> = Vec::new();
        let mut updates: Vec<Record> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        if let Some((key, wires)) = &old {
            prereqs.extend(as_seen(index.set(key)));
            updates.extend(wires.iter().map(deletion));
            names.push(key.0.clone());
        }
        let mut add = None;
        if let WriteOp::Create(input) | WriteOp::Update { input, .. } = op {
            let new = self.new_record(input)?;
            let key: Key = (new.record.name.clone(), new.record.rtype.clone());
            let same_set = old.as_ref().is_some_and(|(k, _)| *k == key);
            let replaced = op.id().unwrap_or_default();
            if new.record.id != replaced
                && index.set(&key).iter().any(|s| s.record.id == new.record.id)
            {
                return Err(ProviderError::Conflict(format!(
                    "{} {} {:?} already exists at the server",
                    new.record.rtype, new.record.name, new.record.content
                )));
            }
            let name = new.wire.name.clone();
            let old_at_name = old
                .as_ref()
                .filter(|(k, _)| k.0 == key.0)
                .map(|(k, _)| k.1.clone());
            if !same_set {
                if new.wire.record_type() == WireType::CNAME {
                    match &old_at_name {
                        // Turning the name's only record into a CNAME: the
                        // old RRset's prerequisite already pins the name.
                        Some(old_type) => {
                            let old_key = (key.0.clone(), old_type.clone());
                            if index.others_at(&key.0, &old_key) > 0 {
                                return Err(ProviderError::Conflict(format!(
                                    "{} already has other records; a CNAME must be the only \
                                     record at its name",
                                    key.0
                                )));
                            }
                        }
                        // "Name is not in use": a CNAME must be alone.
                        None => prereqs.push(empty(name.clone(), WireType::ANY, DNSClass::NONE)),
                    }
                } else {
                    // "RRset does not exist" for a CNAME at the name, unless
                    // the CNAME is the record this update replaces.
                    if old_at_name.as_deref() != Some("CNAME") {
                        prereqs.push(empty(name.clone(), WireType::CNAME, DNSClass::NONE));
                    }
                    let set = index.set(&key);
                    if set.is_empty() {
                        prereqs.push(empty(name.clone(), new.wire.record_type(), DNSClass::NONE));
                    } else {
                        prereqs.extend(as_seen(set));
                    }
                }
            }
            updates.push(new.wire.clone());
            names.push(key.0.clone());
            add = Some(new);
        }
        names.sort_unstable();
        names.dedup();
        let what = match (&add, &old) {
            (Some(s), _) => format!("{} {}", s.record.rtype, s.record.name),
            (None, Some((k, _))) => format!("{} {}", k.1, k.0),
            (None, None) => String::new(),
        };
        let bytes = encoded_len(&prereqs) + encoded_len(&updates);
        Ok(Planned {
            kind,
            names,
            prereqs,
            updates,
            remove: op.id().map(str::to_string),
            old,
            add,
            bytes,
            what,
        })
    }

    fn message(&self, group: &[(usize, Planned)]) -> Message {
        let mut message = Message::query();
        message.metadata.op_code = OpCode::Update;
        message.metadata.recursion_desired = false;
        let mut zone = Query::new();
        zone.set_name(self.origin.clone())
            .set_query_class(DNSClass::IN)
            .set_query_type(WireType::SOA);
        message.add_query(zone);
        for (_, p) in group {
            message.add_answers(p.prereqs.iter().cloned());
            message.add_authorities(p.updates.iter().cloned());
        }
        message
    }

    /// Sends one group of independent changes as one UPDATE message and
    /// fills in their results. Returns why the remaining changes must not be
    /// sent, if they must not (the server refused the key, could not be
    /// reached, or an answer was lost).
    async fn send(
        &self,
        group: Vec<(usize, Planned)>,
        results: &mut [Option<WriteResult>],
        requests: &mut u64,
    ) -> Option<ProviderError> {
        if group.is_empty() {
            return None;
        }
        let reply = self.transport.exchange(self.message(&group)).await;
        *requests = requests.saturating_add(1);
        let set_all = |results: &mut [Option<WriteResult>], e: &ProviderError| {
            for (i, _) in &group {
                results[*i] = Some(Err(e.clone()));
            }
        };
        let reply = match reply {
            Ok(r) => r,
            Err(Failure::NotSent(m)) => {
                let e = ProviderError::Unavailable(m);
                set_all(results, &e);
                return Some(e);
            }
            Err(Failure::Lost(m)) => {
                set_all(results, &ProviderError::Unanswered(m));
                return Some(lost_before());
            }
        };
        let code = reply.message.response_code;
        if let Some(why) = &reply.unverified {
            let refused = matches!(code, ResponseCode::NotAuth | ResponseCode::Refused)
                || reply
                    .message
                    .signature()
                    .is_some_and(|s| s.data.error.is_some());
            if refused {
                let e = transport::refusal(&reply.message, "an update");
                set_all(results, &e);
                return Some(e);
            }
            // An answer that fails its check says nothing reliable about
            // whether the update was applied.
            set_all(
                results,
                &ProviderError::Unanswered(format!(
                    "the server's answer ({}) failed its TSIG check: {why}",
                    reply.describe()
                )),
            );
            return Some(lost_before());
        }
        match code {
            ResponseCode::NoError => {
                let mut index = self.index();
                for (i, p) in group {
                    if let Some(id) = &p.remove {
                        index.remove(id);
                    }
                    let record = p.add.map(|s| {
                        let r = s.record.clone();
                        index.insert(s);
                        r
                    });
                    results[i] = Some(Ok(record));
                }
                None
            }
            c if group.len() > 1
                && (is_prerequisite_failure(c)
                    || matches!(c, ResponseCode::FormErr | ResponseCode::NotZone)) =>
            {
                // The message failed as a whole and nothing of it was
                // applied: its halves, sent apart, narrow down which change
                // it was (a few messages for one conflict in a hundred).
                let mut group = group;
                let second = group.split_off(group.len() / 2);
                for half in [group, second] {
                    if let Some(stop) = Box::pin(self.send(half, results, requests)).await {
                        return Some(stop);
                    }
                }
                None
            }
            c if is_prerequisite_failure(c) => {
                let (i, p) = &group[0];
                let e = self.conflict(p, &reply, requests).await;
                results[*i] = Some(Err(e));
                None
            }
            ResponseCode::NotAuth | ResponseCode::Refused => {
                let e = transport::refusal(&reply.message, "an update");
                set_all(results, &e);
                Some(e)
            }
            ResponseCode::ServFail => {
                set_all(
                    results,
                    &ProviderError::Unanswered(format!(
                        "the server answered the update with {}",
                        reply.describe()
                    )),
                );
                Some(lost_before())
            }
            ResponseCode::FormErr | ResponseCode::NotZone | ResponseCode::NotImp => {
                let (i, p) = &group[0];
                results[*i] = Some(Err(ProviderError::Invalid(format!(
                    "the server refused the update of {} with {}",
                    p.what,
                    reply.describe()
                ))));
                None
            }
            _ => {
                let e = ProviderError::Other(format!(
                    "the server answered the update with {}",
                    reply.describe()
                ));
                set_all(results, &e);
                Some(e)
            }
        }
    }

    /// The error for one change whose prerequisites failed: a create meets
    /// a record the server holds ([`ProviderError::Conflict`]); an update or
    /// delete whose record is gone from the server is
    /// [`ProviderError::NotFound`], and one whose RRset changed around it a
    /// conflict (told apart by a query of the RRset).
    async fn conflict(&self, p: &Planned, reply: &Reply, requests: &mut u64) -> ProviderError {
        let words = reply.describe();
        let Some(((name, rtype), wires)) = &p.old else {
            return ProviderError::Conflict(format!(
                "{}: the server holds records cache-service has not read that conflict with it \
                 ({words}: a CNAME must be alone at its name, and an RRset created by someone \
                 else since the last refresh is not overwritten)",
                p.what
            ));
        };
        let held = self.query(name, rtype).await;
        *requests = requests.saturating_add(1);
        let gone = held.as_ref().is_ok_and(|records| {
            !wires
                .iter()
                .any(|w| records.iter().any(|r| r.data == w.data))
        });
        let verb = if p.kind == Kind::Delete {
            "delete"
        } else {
            "update"
        };
        if gone {
            ProviderError::NotFound(format!(
                "{rtype} {name}: the record to {verb} was changed or deleted at the server since \
                 cache-service last read the zone ({words})"
            ))
        } else {
            ProviderError::Conflict(format!(
                "{}: the server's records changed since cache-service last read the zone, so \
                 the {verb} was not applied over them ({words}); refresh and try again",
                p.what
            ))
        }
    }

    /// A signed query of one RRset, answered by the server itself.
    async fn query(&self, name: &str, rtype: &str) -> Result<Vec<Record>, ProviderError> {
        let qtype = WireType::from_str(rtype)
            .map_err(|_| ProviderError::Invalid(format!("{rtype:?} is not a DNS record type")))?;
        let qname = wire::absolute_name(name)?;
        let mut message = Message::query();
        message.metadata.recursion_desired = false;
        message.add_query(Query::query(qname.clone(), qtype));
        let reply = self
            .transport
            .exchange(message)
            .await
            .map_err(|f| match f {
                Failure::NotSent(m) | Failure::Lost(m) => ProviderError::Unavailable(m),
            })?;
        let code = reply.message.response_code;
        if let Some(why) = &reply.unverified {
            if code == ResponseCode::NoError {
                return Err(ProviderError::Unavailable(format!(
                    "the server's answer to a query of {rtype} {name} failed its TSIG check: {why}"
                )));
            }
            return Err(transport::refusal(&reply.message, "a query"));
        }
        match code {
            ResponseCode::NoError => Ok(reply
                .message
                .answers
                .into_iter()
                .filter(|r| {
                    r.record_type() == qtype && r.name.to_lowercase() == qname.to_lowercase()
                })
                .collect()),
            ResponseCode::NXDomain => Ok(Vec::new()),
            _ => Err(transport::refusal(&reply.message, "a query")),
        }
    }

    async fn apply_ops(&self, ops: Vec<WriteOp>) -> (Vec<WriteResult>, u64) {
        let _writing = self.writing.lock().await;
        let n = ops.len();
        let mut results: Vec<Option<WriteResult>> = vec![None; n];
        let mut requests = 0u64;
        // An id the index does not hold (cache-service restarted on a kept
        // database, or the record is new to this process): read the zone once.
        let unknown = {
            let index = self.index();
            ops.iter()
                .filter_map(WriteOp::id)
                .any(|id| index.find(id).is_none())
        };
        if unknown {
            requests += 1;
            if let Err(e) = self.transfer().await {
                return (ops.iter().map(|_| Err(e.clone())).collect(), requests);
            }
        }
        let mut group: Vec<(usize, Planned)> = Vec::new();
        let mut names: HashSet<String> = HashSet::new();
        let mut bytes = 0usize;
        let mut stop: Option<ProviderError> = None;
        for (i, op) in ops.iter().enumerate() {
            if let Some(e) = &stop {
                results[i] = Some(Err(not_sent(e)));
                continue;
            }
            let touched = self.names_of(op);
            if group.len() >= self.cfg.batch_size || touched.iter().any(|t| names.contains(t)) {
                stop = self
                    .send(std::mem::take(&mut group), &mut results, &mut requests)
                    .await;
                names.clear();
                bytes = 0;
                if let Some(e) = &stop {
                    results[i] = Some(Err(not_sent(e)));
                    continue;
                }
            }
            let planned = match self.plan(op) {
                Ok(p) => p,
                Err(e) => {
                    results[i] = Some(Err(e));
                    continue;
                }
            };
            if !group.is_empty() && bytes + planned.bytes > MAX_MESSAGE_BYTES {
                stop = self
                    .send(std::mem::take(&mut group), &mut results, &mut requests)
                    .await;
                names.clear();
                bytes = 0;
                if let Some(e) = &stop {
                    results[i] = Some(Err(not_sent(e)));
                    continue;
                }
            }
            bytes += planned.bytes;
            names.extend(planned.names.iter().cloned());
            group.push((i, planned));
        }
        if stop.is_none() {
            self.send(group, &mut results, &mut requests).await;
        }
        let results = results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ProviderError::Other("no result".into()))))
            .collect();
        (results, requests)
    }
}

/// Why changes after a lost answer are held back.
fn lost_before() -> ProviderError {
    ProviderError::Unavailable(
        "not sent: the server's answer to an earlier update of this batch was lost".into(),
    )
}

/// The error of a change held back because of `e`.
fn not_sent(e: &ProviderError) -> ProviderError {
    match e {
        ProviderError::Unavailable(m) if m.starts_with("not sent") => e.clone(),
        ProviderError::Unauthorized(_) => e.clone(),
        other => ProviderError::Unavailable(format!("not sent after an earlier failure: {other}")),
    }
}

impl DnsProvider for Rfc2136Provider {
    fn name(&self) -> &'static str {
        "rfc2136"
    }

    fn zone(&self) -> &Hostname {
        &self.cfg.zone
    }

    /// Every type the project manages, the contract's TTL range, no
    /// proxying, no CNAME at the apex (the SOA and NS live there), no
    /// comments (DNS has none); up to the configured number of changes per
    /// UPDATE message. Ids are [`derived_id`]s.
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
            let records = self.transfer().await?;
            Ok(Listing {
                records,
                requests: 1,
            })
        })
    }

    fn apply(&self, ops: Vec<WriteOp>) -> BoxFuture<'_, (Vec<WriteResult>, u64)> {
        Box::pin(self.apply_ops(ops))
    }

    /// A signed query of the RRset, or the whole zone when a wildcard could
    /// answer for a name that holds nothing (its answer would look like the
    /// record sought).
    fn lookup<'a>(
        &'a self,
        name: &'a str,
        rtype: &'a str,
    ) -> BoxFuture<'a, Result<(Vec<ProviderRecord>, u64), ProviderError>> {
        Box::pin(async move {
            if self.index().wildcard_covers(name) {
                let records = self.transfer().await?;
                let held = records
                    .into_iter()
                    .filter(|r| r.name == name && r.rtype == rtype)
                    .collect();
                return Ok((held, 1));
            }
            let records = self.query(name, rtype).await?;
            Ok((records.iter().map(wire::to_provider).collect(), 1))
        })
    }
}
