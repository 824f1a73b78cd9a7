//! Writing to Route53: each write is planned against the record set as this
//! provider last read it, as a DELETE of that set with its exact values and
//! TTL and a CREATE of the set it becomes (or a CREATE alone where there was
//! none), so Route53 refuses the batch if anyone changed the set meanwhile;
//! UPSERT is never used. Writes go out in rounds of batches (at most one
//! write per record set a round, DELETEs first, within Route53's limits of
//! changes, records and characters). When Route53 refuses a batch it lists
//! every problem: a write whose record set turned out changed is planned again
//! after reading that set; a write Route53 refuses for itself fails alone;
//! the others of the batch (which was atomic, so nothing of it was applied)
//! go out again. A batch whose answer was lost is reported as
//! [`ProviderError::Unanswered`] for its writes and nothing after it is sent.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;

use reqwest::Method;
use trafego_proto::validate::{RecordType, TTL_AUTO, ValidRecordInput};

use super::super::http::{Call, sanitize};
use super::super::{ProviderError, ProviderRecord, WriteOp, WriteResult};
use super::wire::{self, Action, Change, Problem};
use super::{
    API_VERSION, AUTO_TTL, BATCH_COMMENT, Key, Known, MAX_BATCH, MAX_BATCH_CHARS, Route53Provider,
    Rrset, Snapshot, simple_rrset,
};

/// Times a write may find its record set changed by someone else before it
/// fails as a conflict.
const MAX_REREADS: u32 = 2;

/// Record sets read one by one before a write; past this, the zone is listed.
const MAX_SET_READS: usize = 20;

/// One write, planned: the changes it sends and what it leaves behind.
#[derive(Debug, Clone)]
struct Plan {
    op: usize,
    keys: Vec<Key>,
    changes: Vec<Change>,
    after: Vec<(Key, Option<Rrset>)>,
    result: Option<ProviderRecord>,
}

/// What planning a write against the snapshot gives.
enum Planned {
    Send(Plan),
    Done(WriteResult),
    /// These record sets must be read first.
    Read(Vec<Key>),
    /// The id is not known and no whole listing was read: list the zone.
    List,
}

fn key_of(input: &ValidRecordInput) -> Key {
    (
        input.spec.name.as_str().to_string(),
        input.spec.rtype.as_str().to_string(),
    )
}

/// The TTL a write gives its record set: its own, or for an automatic TTL
/// the set's (or [`AUTO_TTL`] for a new set).
fn ttl_for(asked: u32, existing: Option<&Rrset>) -> u32 {
    if asked == TTL_AUTO {
        existing.map_or(AUTO_TTL, |rs| rs.ttl)
    } else {
        asked
    }
}

fn same_record(r: &ProviderRecord, input: &ValidRecordInput) -> bool {
    r.content == input.spec.content && r.priority == input.spec.priority.map(u32::from)
}

fn left_alone(key: &Key, why: &str) -> ProviderError {
    ProviderError::Invalid(format!(
        "{} {}: {why}, which this app never writes",
        key.1, key.0
    ))
}

fn delete(key: &Key, rs: &Rrset) -> Change {
    Change {
        action: Action::Delete,
        name: key.0.clone(),
        rtype: key.1.clone(),
        ttl: rs.ttl,
        values: rs.values.clone(),
    }
}

fn create(key: &Key, rs: &Rrset) -> Change {
    Change {
        action: Action::Create,
        name: key.0.clone(),
        rtype: key.1.clone(),
        ttl: rs.ttl,
        values: rs.values.clone(),
    }
}

/// Adds `input` at its key: the changes, the set it leaves, the record made.
/// `existing` is what the key holds now.
fn plan_add(
    key: &Key,
    existing: Option<&Rrset>,
    input: &ValidRecordInput,
) -> Result<(Vec<Change>, Rrset, ProviderRecord), ProviderError> {
    let value = wire::value_of(&input.spec);
    let ttl = ttl_for(input.spec.ttl, existing);
    let mut changes = Vec::with_capacity(2);
    let mut values = Vec::new();
    if let Some(rs) = existing {
        if let Some(why) = rs.read_only {
            return Err(ProviderError::Conflict(format!(
                "{} {}: the zone holds {why} there, which this app never writes",
                key.1, key.0
            )));
        }
        if rs.records.iter().any(|r| same_record(r, input)) {
            return Err(ProviderError::Conflict(format!(
                "{} {} {:?}: Route53 already holds this record",
                key.1, key.0, input.spec.content
            )));
        }
        if input.spec.rtype == RecordType::Cname {
            return Err(ProviderError::Conflict(format!(
                "CNAME {}: the name already has a CNAME, and a name holds one",
                key.0
            )));
        }
        changes.push(delete(key, rs));
        values.extend(rs.values.iter().cloned());
    }
    values.push(value);
    let rs = simple_rrset(key, ttl, values);
    changes.push(create(key, &rs));
    let made = rs
        .records
        .last()
        .cloned()
        .ok_or_else(|| ProviderError::Other("the planned record set holds no record".into()))?;
    Ok((changes, rs, made))
}

/// The changes that take record `i` out of `rs`, and the set that remains.
fn plan_remove(key: &Key, rs: &Rrset, i: usize) -> (Vec<Change>, Option<Rrset>) {
    let mut values = rs.values.clone();
    values.remove(i);
    let mut changes = vec![delete(key, rs)];
    if values.is_empty() {
        return (changes, None);
    }
    let rest = simple_rrset(key, rs.ttl, values);
    changes.push(create(key, &rest));
    (changes, Some(rest))
}

/// Why [`find`] found no record.
enum Missing {
    NotFound,
    /// The id is not known and no whole listing was read.
    List,
    /// Its record set must be read first.
    Read(Key),
}

impl Missing {
    fn planned(self, id: &str) -> Planned {
        match self {
            Missing::NotFound => Planned::Done(Err(not_found(id))),
            Missing::List => Planned::List,
            Missing::Read(k) => Planned::Read(vec![k]),
        }
    }
}

/// Finds the record with `id`: its key, set and index.
fn find<'a>(snap: &'a Snapshot, id: &str) -> Result<(Key, &'a Rrset, usize), Missing> {
    let Some(key) = snap.ids.get(id) else {
        return Err(if snap.complete {
            Missing::NotFound
        } else {
            Missing::List
        });
    };
    match snap.get(key) {
        Known::Unknown => Err(Missing::Read(key.clone())),
        Known::Absent => Err(Missing::NotFound),
        Known::Held(rs) => match rs.records.iter().position(|r| r.id == id) {
            Some(i) => Ok((key.clone(), rs, i)),
            None => Err(Missing::NotFound),
        },
    }
}

fn not_found(id: &str) -> ProviderError {
    ProviderError::NotFound(format!("no record with id {id} in the Route53 zone"))
}

/// What a planned write sends, leaves behind and produces, or why it cannot be.
type Outcome = Result<
    (
        Vec<Change>,
        Vec<(Key, Option<Rrset>)>,
        Option<ProviderRecord>,
    ),
    ProviderError,
>;

/// Plans one write against what the snapshot holds.
fn plan(snap: &Snapshot, index: usize, op: &WriteOp) -> Planned {
    let done = |r: Outcome| match r {
        Ok((changes, after, result)) => Planned::Send(Plan {
            op: index,
            keys: after.iter().map(|(k, _)| k.clone()).collect(),
            changes,
            after,
            result,
        }),
        Err(e) => Planned::Done(Err(e)),
    };
    match op {
        WriteOp::Create(input) => {
            let key = key_of(input);
            let existing = match snap.get(&key) {
                Known::Unknown => return Planned::Read(vec![key]),
                Known::Absent => None,
                Known::Held(rs) => Some(rs),
            };
            done(
                plan_add(&key, existing, input)
                    .map(|(c, rs, made)| (c, vec![(key.clone(), Some(rs))], Some(made))),
            )
        }
        WriteOp::Delete { id } => {
            let (key, rs, i) = match find(snap, id) {
                Ok(f) => f,
                Err(m) => return m.planned(id),
            };
            if let Some(why) = rs.read_only {
                return Planned::Done(Err(left_alone(&key, why)));
            }
            let (changes, rest) = plan_remove(&key, rs, i);
            done(Ok((changes, vec![(key, rest)], None)))
        }
        WriteOp::Update { id, input } => {
            let (old, rs, i) = match find(snap, id) {
                Ok(f) => f,
                Err(m) => return m.planned(id),
            };
            if let Some(why) = rs.read_only {
                return Planned::Done(Err(left_alone(&old, why)));
            }
            let new = key_of(input);
            if new == old {
                if rs
                    .records
                    .iter()
                    .enumerate()
                    .any(|(j, r)| j != i && same_record(r, input))
                {
                    return Planned::Done(Err(ProviderError::Conflict(format!(
                        "{} {} {:?}: Route53 already holds this record",
                        new.1, new.0, input.spec.content
                    ))));
                }
                let ttl = ttl_for(input.spec.ttl, Some(rs));
                let mut values = rs.values.clone();
                values[i] = wire::value_of(&input.spec);
                if values == rs.values && ttl == rs.ttl {
                    return Planned::Done(Ok(Some(rs.records[i].clone())));
                }
                let after = simple_rrset(&new, ttl, values);
                let made = after.records.get(i).cloned();
                let changes = vec![delete(&old, rs), create(&new, &after)];
                return done(Ok((changes, vec![(new, Some(after))], made)));
            }
            // The record moves to another name or type: out of one set, into another.
            let existing = match snap.get(&new) {
                Known::Unknown => return Planned::Read(vec![new]),
                Known::Absent => None,
                Known::Held(rs) => Some(rs),
            };
            let (mut changes, rest) = plan_remove(&old, rs, i);
            done(plan_add(&new, existing, input).map(|(c, added, made)| {
                changes.extend(c);
                (
                    changes,
                    vec![(old.clone(), rest), (new.clone(), Some(added))],
                    Some(made),
                )
            }))
        }
    }
}

/// Whether an error says nothing about a write but about Route53 or the
/// account, so the writes after it would fail the same way.
fn provider_wide(e: &ProviderError) -> bool {
    matches!(
        e,
        ProviderError::Unavailable(_)
            | ProviderError::RateLimited { .. }
            | ProviderError::Unauthorized(_)
    )
}

/// How a batch failed.
enum BatchError {
    /// `InvalidChangeBatch`: every problem Route53 listed (sanitized), and the
    /// error as a whole.
    Problems(Vec<String>, ProviderError),
    /// Anything else.
    Failed(ProviderError),
}

/// What became of one write of a refused batch.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Nothing was said of it: it was fine, but not applied (the batch is atomic).
    Untouched,
    /// Its record set changed meanwhile: read it, plan again.
    Stale,
    /// Refused for itself.
    Failed(ProviderError),
}

/// Reads the problems of a refused batch into one verdict per plan, and
/// whether some problem named no change.
fn verdicts(plans: &[Plan], problems: &[String]) -> (Vec<Verdict>, bool) {
    let mut out = vec![Verdict::Untouched; plans.len()];
    let mut unattributed = false;
    let fail = |out: &mut Vec<Verdict>, i: usize, e: ProviderError| {
        if !matches!(out[i], Verdict::Failed(_)) {
            out[i] = Verdict::Failed(e);
        }
    };
    for msg in problems {
        let mut hit = false;
        match wire::problem_of(msg) {
            Problem::Stale { name, rtype } => {
                for (i, p) in plans.iter().enumerate() {
                    if p.keys.iter().any(|k| k.0 == name && k.1 == rtype) {
                        hit = true;
                        if out[i] == Verdict::Untouched {
                            out[i] = Verdict::Stale;
                        }
                    }
                }
            }
            Problem::Conflict { name, rtype } => {
                for (i, p) in plans.iter().enumerate() {
                    if p.keys.iter().any(|k| k.0 == name && k.1 == rtype) {
                        hit = true;
                        fail(&mut out, i, ProviderError::Conflict(msg.clone()));
                    }
                }
            }
            Problem::Refused { name, rtype } => {
                for (i, p) in plans.iter().enumerate() {
                    if p.keys
                        .iter()
                        .any(|k| k.0 == name && rtype.as_ref().is_none_or(|t| *t == k.1))
                    {
                        hit = true;
                        fail(&mut out, i, ProviderError::Invalid(msg.clone()));
                    }
                }
            }
            Problem::BadValue(v) => {
                for (i, p) in plans.iter().enumerate() {
                    if p.changes
                        .iter()
                        .any(|c| c.action == Action::Create && c.values.contains(&v))
                    {
                        hit = true;
                        fail(&mut out, i, ProviderError::Invalid(msg.clone()));
                    }
                }
            }
            Problem::Unknown => {}
        }
        unattributed |= !hit;
    }
    (out, unattributed)
}

/// Splits a round's plans into batches within Route53's limits, keeping each
/// write's changes together; writes in `alone` get a batch each. A write too
/// large for any batch fails.
fn batches(
    plans: Vec<Plan>,
    alone: &HashSet<usize>,
    max_changes: usize,
) -> (Vec<Vec<Plan>>, Vec<(usize, ProviderError)>) {
    let mut out: Vec<Vec<Plan>> = Vec::new();
    let mut too_big = Vec::new();
    let (mut cur, mut changes, mut records, mut chars) = (Vec::new(), 0usize, 0usize, 0usize);
    for p in plans {
        let (c, r, ch) = (
            p.changes.len(),
            p.changes.iter().map(Change::records).sum::<usize>(),
            p.changes.iter().map(Change::chars).sum::<usize>(),
        );
        if c > max_changes || r > MAX_BATCH || ch > MAX_BATCH_CHARS {
            too_big.push((
                p.op,
                ProviderError::Invalid(format!(
                    "this write changes a record set of {r} records ({ch} characters), more \
                     than one Route53 batch holds ({MAX_BATCH} records, {MAX_BATCH_CHARS} \
                     characters)"
                )),
            ));
            continue;
        }
        if alone.contains(&p.op) {
            out.push(vec![p]);
            continue;
        }
        if changes + c > max_changes || records + r > MAX_BATCH || chars + ch > MAX_BATCH_CHARS {
            out.push(std::mem::take(&mut cur));
            (changes, records, chars) = (0, 0, 0);
        }
        changes += c;
        records += r;
        chars += ch;
        cur.push(p);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    (out, too_big)
}

impl Route53Provider {
    /// Sends one batch: the DELETEs of its writes first, then the CREATEs.
    async fn send_batch(
        &self,
        zone_id: &str,
        plans: &[Plan],
        reqs: &AtomicU64,
    ) -> Result<(), BatchError> {
        let changes: Vec<&Change> = plans
            .iter()
            .flat_map(|p| p.changes.iter())
            .filter(|c| c.action == Action::Delete)
            .chain(
                plans
                    .iter()
                    .flat_map(|p| p.changes.iter())
                    .filter(|c| c.action == Action::Create),
            )
            .collect();
        let body = wire::change_body(&changes, BATCH_COMMENT).map_err(BatchError::Failed)?;
        // The path of Route53's API model, trailing slash included.
        let url = self
            .base
            .url(&[API_VERSION, "hostedzone", zone_id, "rrset", ""], &[]);
        let what = format!("POST {}", url.path());
        let call = Call {
            method: Method::POST,
            url,
            body: Some(&body),
            operation: "change",
        };
        match self.http.send_keeping_refusal(call, reqs).await {
            Ok(bytes) => {
                // Accepted (2xx) means applied; an unreadable receipt changes nothing.
                if let Err(e) = wire::parse::<wire::ChangeResponse>(&bytes, &what) {
                    tracing::warn!(error = %e, "Route53 accepted a change batch with an unreadable receipt");
                }
                Ok(())
            }
            Err(f) => match f
                .refused
                .as_ref()
                .and_then(|(_, b)| wire::batch_problems(b))
            {
                Some(problems) => Err(BatchError::Problems(
                    problems
                        .iter()
                        .map(|m| sanitize(m, &self.cfg.secret_key))
                        .collect(),
                    f.error,
                )),
                None => Err(BatchError::Failed(f.error)),
            },
        }
    }

    /// Reads what planning asked for: the whole zone, or some record sets.
    async fn learn(
        &self,
        keys: Vec<Key>,
        list: bool,
        reqs: &AtomicU64,
    ) -> Result<(), ProviderError> {
        if list || keys.len() > MAX_SET_READS {
            let sets = self.list_sets(reqs).await?;
            self.snapshot().install(sets);
            return Ok(());
        }
        for key in keys {
            self.read_set(&key, reqs).await?;
        }
        Ok(())
    }

    pub(super) async fn apply_all(&self, ops: Vec<WriteOp>, reqs: &AtomicU64) -> Vec<WriteResult> {
        if ops.is_empty() {
            return Vec::new();
        }
        let _one_at_a_time = self.writes.lock().await;
        let zone_id = match self.zone_id(reqs).await {
            Ok(id) => id.to_string(),
            Err(e) => return ops.iter().map(|_| Err(e.clone())).collect(),
        };
        let n = ops.len();
        let mut results: Vec<Option<WriteResult>> = vec![None; n];
        let mut pending: Vec<usize> = (0..n).collect();
        let mut rereads = vec![0u32; n];
        let mut alone: HashSet<usize> = HashSet::new();
        let mut stop: Option<ProviderError> = None;
        let mut rounds = 0usize;
        while !pending.is_empty() {
            rounds += 1;
            if let Some(e) = &stop {
                for &i in &pending {
                    results[i] = Some(Err(e.clone()));
                }
                break;
            }
            if rounds > n.saturating_add(8) {
                for &i in &pending {
                    results[i] = Some(Err(ProviderError::Other(format!(
                        "gave up on this write after {rounds} rounds of Route53 batches"
                    ))));
                }
                break;
            }
            // 1. Plan every pending write; read first what planning lacks.
            let planned: Vec<(usize, Planned)> = {
                let snap = self.snapshot();
                pending
                    .iter()
                    .map(|&i| (i, plan(&snap, i, &ops[i])))
                    .collect()
            };
            let mut keys: Vec<Key> = Vec::new();
            let mut list = false;
            for (_, p) in &planned {
                match p {
                    Planned::Read(k) => keys.extend(k.iter().cloned()),
                    Planned::List => list = true,
                    _ => {}
                }
            }
            if list || !keys.is_empty() {
                keys.sort_unstable();
                keys.dedup();
                if let Err(e) = self.learn(keys, list, reqs).await {
                    // A zone that cannot be read: nothing can be planned.
                    stop = Some(e);
                }
                continue;
            }
            // 2. This round: at most one write per record set, in order.
            let mut used: HashSet<Key> = HashSet::new();
            let mut round = Vec::new();
            let mut next = Vec::new();
            for (i, p) in planned {
                match p {
                    Planned::Done(r) => results[i] = Some(r),
                    Planned::Send(plan) => {
                        if plan.keys.iter().any(|k| used.contains(k)) {
                            next.push(i);
                        } else {
                            used.extend(plan.keys.iter().cloned());
                            round.push(plan);
                        }
                    }
                    Planned::Read(_) | Planned::List => next.push(i),
                }
            }
            let (chunks, too_big) = batches(round, &alone, self.cfg.batch_size);
            for (i, e) in too_big {
                results[i] = Some(Err(e));
            }
            // 3. Send.
            for chunk in chunks {
                if let Some(e) = &stop {
                    for p in &chunk {
                        results[p.op] = Some(Err(e.clone()));
                    }
                    continue;
                }
                match self.send_batch(&zone_id, &chunk, reqs).await {
                    Ok(()) => {
                        let mut snap = self.snapshot();
                        for p in chunk {
                            for (k, rs) in p.after {
                                snap.put(k, rs);
                            }
                            results[p.op] = Some(Ok(p.result));
                        }
                    }
                    Err(BatchError::Problems(problems, whole)) => {
                        let (verdicts, unattributed) = verdicts(&chunk, &problems);
                        let mut snap = self.snapshot();
                        for (p, v) in chunk.iter().zip(verdicts) {
                            match v {
                                Verdict::Failed(e) => results[p.op] = Some(Err(e)),
                                Verdict::Stale => {
                                    rereads[p.op] += 1;
                                    if rereads[p.op] > MAX_REREADS {
                                        results[p.op] = Some(Err(ProviderError::Conflict(
                                            format!(
                                                "the record set kept changing at Route53 while this \
                                             write was planned: {}",
                                                problems.join("; ")
                                            ),
                                        )));
                                    } else {
                                        for k in &p.keys {
                                            snap.forget(k);
                                        }
                                        next.push(p.op);
                                    }
                                }
                                Verdict::Untouched if unattributed => {
                                    if chunk.len() == 1 {
                                        results[p.op] = Some(Err(whole.clone()));
                                    } else {
                                        alone.insert(p.op);
                                        next.push(p.op);
                                    }
                                }
                                Verdict::Untouched => next.push(p.op),
                            }
                        }
                    }
                    Err(BatchError::Failed(e)) => {
                        if let ProviderError::Unanswered(m) = &e {
                            let mut snap = self.snapshot();
                            for p in &chunk {
                                for k in &p.keys {
                                    snap.forget(k);
                                }
                                results[p.op] = Some(Err(e.clone()));
                            }
                            // What follows was never sent: say so plainly, so
                            // it is not taken for writes whose answer was lost.
                            stop = Some(ProviderError::Unavailable(format!(
                                "not sent: an earlier batch's answer was lost ({m})"
                            )));
                        } else if provider_wide(&e) || chunk.len() == 1 {
                            for p in &chunk {
                                results[p.op] = Some(Err(e.clone()));
                            }
                            if provider_wide(&e) {
                                stop = Some(e);
                            }
                        } else {
                            // Refused as a whole: find out which by sending each alone.
                            for p in &chunk {
                                alone.insert(p.op);
                                next.push(p.op);
                            }
                        }
                    }
                }
            }
            next.sort_unstable();
            next.dedup();
            pending = next;
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ProviderError::Other("no outcome".into()))))
            .collect()
    }
}
