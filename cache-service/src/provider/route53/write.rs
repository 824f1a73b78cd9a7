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

use super::super::http::{Call, sanitize};
use super::super::{ProviderError, WriteOp, WriteResult};
use super::errors::{self, Problem};
use super::plan::{Plan, Planned, plan};
use super::wire::{self, Action, Change};
use super::{API_VERSION, BATCH_COMMENT, Key, MAX_BATCH, MAX_BATCH_CHARS, Route53Provider};

/// Times a write may find its record set changed by someone else before it
/// fails as a conflict.
const MAX_REREADS: u32 = 2;

/// Record sets read one by one before a write; past this, the zone is listed.
const MAX_SET_READS: usize = 20;

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
        match errors::problem_of(msg) {
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
                .and_then(|(_, b)| errors::batch_problems(b))
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
