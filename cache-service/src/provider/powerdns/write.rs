//! Writing PowerDNS: the changes of a batch become whole RRsets, computed from
//! the snapshot, and go out in one `PATCH` of the zone (`REPLACE` or `DELETE`
//! per RRset).
//!
//! Before the `PATCH`, the names it touches are read again (one filtered read
//! per name, or the whole zone when there are many). A change to an RRset
//! that no longer holds what the snapshot holds fails as a conflict instead of
//! overwriting someone else's change; the record it targets gone is NOT_FOUND;
//! a CNAME beside other data (or other data beside a CNAME) is a conflict, as
//! is a record that already exists. A `PATCH` is all or nothing at PowerDNS: a
//! refused one carrying several independent names is split in halves and
//! sent again (it was not applied), so one bad record fails alone. A `PATCH`
//! whose answer was lost is never sent again from here: its changes fail as
//! `Unanswered` and its RRsets become uncertain until read again.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::atomic::AtomicU64;

use reqwest::Method;
use trafego_proto::validate::{TTL_AUTO, ValidRecordInput};

use super::list::RRsets;
use super::wire::{self, Patch, PatchRRset, WireRecord};
use super::{Key, PowerDnsProvider, RRset, Rec};
use crate::provider::{ProviderError, ProviderRecord, WriteOp, WriteResult, derived_id};

/// Names read one by one before a `PATCH`; with more, the zone is read whole
/// in one request.
const TARGETED_READS: usize = 4;

/// A change that passed planning: the RRsets it changes and what it made.
struct Planned {
    index: usize,
    keys: Vec<Key>,
    made: Option<(Key, Rec)>,
}

/// What planning one change gives: the RRsets it changes and the record it made.
type Plan = (Vec<Key>, Option<(Key, Rec)>);

/// Changes whose RRsets share names, sent (or refused) together.
#[derive(Default)]
struct Group {
    changes: Vec<usize>,
    keys: BTreeSet<Key>,
}

fn key_of(input: &ValidRecordInput) -> Key {
    (
        input.spec.name.as_str().to_string(),
        input.spec.rtype.as_str().to_string(),
    )
}

fn changed(key: &Key) -> ProviderError {
    ProviderError::Conflict(format!(
        "{} {} changed at PowerDNS since cache-service last read it; not overwritten \
         (refresh the cache and try again)",
        key.1, key.0
    ))
}

fn gone(id: &str) -> ProviderError {
    ProviderError::NotFound(format!("no record with id {id} in the PowerDNS zone"))
}

fn holds(set: Option<&RRset>, id: &str) -> bool {
    set.is_some_and(|s| s.records.iter().any(|r| r.id == id))
}

fn served_of(set: Option<&RRset>) -> (u32, Vec<(&str, Option<u32>)>) {
    set.map(RRset::served).unwrap_or_default()
}

/// Why a record of `key` may not join what `working` holds at its name
/// (RFC 1034 section 3.6.2: a CNAME is alone at its name). `replacing` is the
/// record an update removes, which does not count.
fn cname_clash(working: &RRsets, key: &Key, replacing: Option<(&Key, &str)>) -> Option<String> {
    let (mut cnames, mut others) = (0usize, 0usize);
    for (k, set) in working.iter().filter(|(k, _)| k.0 == key.0) {
        let n = set
            .records
            .iter()
            .filter(|r| !matches!(replacing, Some((rk, rid)) if rk == k && r.id == rid))
            .count();
        if k.1 == "CNAME" {
            cnames += n;
        } else {
            others += n;
        }
    }
    if key.1 == "CNAME" && cnames + others > 0 {
        return Some(format!(
            "{} already has other records; a CNAME must be the only record at its name",
            key.0
        ));
    }
    if key.1 != "CNAME" && cnames > 0 {
        return Some(format!(
            "{} has a CNAME; no other record may sit beside it",
            key.0
        ));
    }
    None
}

impl PowerDnsProvider {
    /// The record a write asks for, checked to read back exactly as asked,
    /// and the TTL its RRset gets.
    fn record_of(&self, input: &ValidRecordInput) -> Result<(Rec, u32), ProviderError> {
        let s = &input.spec;
        let refuse = |why: String| {
            ProviderError::Invalid(format!(
                "{} {} {:?} cannot be written to PowerDNS: {why}",
                s.rtype, s.name, s.content
            ))
        };
        if s.proxied {
            return Err(refuse(
                "PowerDNS cannot proxy records; set proxied to false".into(),
            ));
        }
        if !s.name.is_in_zone(&self.cfg.zone) {
            return Err(refuse(format!("it is outside the zone {}", self.cfg.zone)));
        }
        let rtype = s.rtype.as_str();
        let wire_content = wire::to_wire(s.rtype, &s.content, s.priority);
        let back = wire::from_wire(rtype, &wire_content);
        if back != (s.content.clone(), s.priority.map(u32::from)) {
            return Err(refuse(format!("it would read back as {:?}", back.0)));
        }
        let ttl = if s.ttl == TTL_AUTO {
            self.cfg.default_ttl
        } else {
            s.ttl
        };
        Ok((
            Rec {
                id: derived_id(rtype, s.name.as_str(), &s.content),
                content: s.content.clone(),
                priority: s.priority.map(u32::from),
                wire: wire_content,
            },
            ttl,
        ))
    }

    /// Applies `ops` in batches of the configured size, one at a time.
    pub(crate) async fn apply_all(&self, ops: Vec<WriteOp>, reqs: &AtomicU64) -> Vec<WriteResult> {
        let n = ops.len();
        if n == 0 {
            return Vec::new();
        }
        let _one_writer = self.write_lock.lock().await;
        if !self.snap().seeded
            && let Err(e) = self.list_all(reqs).await
        {
            return (0..n).map(|_| Err(e.clone())).collect();
        }
        let mut results: Vec<Option<WriteResult>> = (0..n).map(|_| None).collect();
        let indices: Vec<usize> = (0..n).collect();
        for chunk in indices.chunks(self.cfg.batch_size.max(1)) {
            self.apply_batch(&ops, chunk, &mut results, reqs).await;
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(ProviderError::Other("no outcome".into()))))
            .collect()
    }

    /// Plans, checks and sends the changes `chunk` of `ops`.
    async fn apply_batch(
        &self,
        ops: &[WriteOp],
        chunk: &[usize],
        results: &mut [Option<WriteResult>],
        reqs: &AtomicU64,
    ) {
        // Where each change's record lives now, by the snapshot.
        let mut old_key: HashMap<usize, Key> = HashMap::new();
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut before: RRsets = HashMap::new();
        let uncertain: HashSet<Key>;
        {
            let snap = self.snap();
            for &i in chunk {
                if let Some(id) = ops[i].id() {
                    match snap.ids.get(id) {
                        Some(k) => {
                            names.insert(k.0.clone());
                            old_key.insert(i, k.clone());
                        }
                        None => {
                            results[i] = Some(Err(gone(id)));
                            continue;
                        }
                    }
                }
                if let WriteOp::Create(input) | WriteOp::Update { input, .. } = &ops[i] {
                    names.insert(input.spec.name.as_str().to_string());
                }
            }
            for (k, set) in snap.rrsets.iter().filter(|(k, _)| names.contains(&k.0)) {
                before.insert(k.clone(), set.clone());
            }
            uncertain = snap.uncertain.clone();
        }
        if names.is_empty() {
            return;
        }

        // What PowerDNS holds at those names now.
        let read = if names.len() <= TARGETED_READS {
            let mut all: RRsets = HashMap::new();
            let mut failed = None;
            for name in &names {
                match self.read_name(name, None, reqs).await {
                    Ok(sets) => all.extend(sets),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            failed.map_or(Ok((all, false)), Err)
        } else {
            self.read_zone(reqs).await.map(|mut all| {
                all.retain(|k, _| names.contains(&k.0));
                (all, true)
            })
        };
        let (mut working, whole) = match read {
            Ok(r) => r,
            Err(e) => {
                for &i in chunk {
                    results[i].get_or_insert_with(|| Err(e.clone()));
                }
                return;
            }
        };
        // A filtered read hides disabled records: the snapshot's are kept.
        if !whole {
            for (k, set) in &before {
                if !set.disabled.is_empty() {
                    working.entry(k.clone()).or_default().disabled = set.disabled.clone();
                }
            }
        }
        let touched: BTreeSet<Key> = before.keys().chain(working.keys()).cloned().collect();
        let conflicted: HashSet<Key> = touched
            .into_iter()
            .filter(|k| {
                !uncertain.contains(k) && served_of(before.get(k)) != served_of(working.get(k))
            })
            .collect();
        if !conflicted.is_empty() {
            // What was read becomes the snapshot: the next write is computed
            // from it, so nothing someone else wrote is lost.
            let mut snap = self.snap();
            for k in &conflicted {
                snap.put(k, working.get(k).cloned().unwrap_or_default());
            }
        }

        // Each change, in order, on the RRsets as read.
        let mut planned: Vec<Planned> = Vec::new();
        for &i in chunk {
            if results[i].is_some() {
                continue;
            }
            match self.plan(&ops[i], old_key.get(&i), &mut working, &conflicted) {
                Ok((keys, made)) => planned.push(Planned {
                    index: i,
                    keys,
                    made,
                }),
                Err(e) => results[i] = Some(Err(e)),
            }
        }
        if planned.is_empty() {
            return;
        }
        let groups = group(&planned);
        let made: HashMap<usize, Option<(Key, Rec)>> =
            planned.into_iter().map(|p| (p.index, p.made)).collect();
        self.send(groups, &working, &made, results, reqs).await;
    }

    /// Applies one change to `working`; returns the RRsets it changed and the
    /// record it made.
    fn plan(
        &self,
        op: &WriteOp,
        old: Option<&Key>,
        working: &mut RRsets,
        conflicted: &HashSet<Key>,
    ) -> Result<Plan, ProviderError> {
        if let (Some(id), Some(k)) = (op.id(), old)
            && !holds(working.get(k), id)
        {
            return Err(gone(id));
        }
        match op {
            WriteOp::Create(input) => {
                let key = key_of(input);
                if conflicted.contains(&key) {
                    return Err(changed(&key));
                }
                let (rec, ttl) = self.record_of(input)?;
                if holds(working.get(&key), &rec.id) {
                    return Err(ProviderError::Conflict(format!(
                        "{} {} {:?} already exists at PowerDNS",
                        key.1, key.0, rec.content
                    )));
                }
                if let Some(why) = cname_clash(working, &key, None) {
                    return Err(ProviderError::Conflict(why));
                }
                let set = working.entry(key.clone()).or_default();
                set.records.push(rec.clone());
                set.ttl = ttl;
                Ok((vec![key.clone()], Some((key, rec))))
            }
            WriteOp::Update { id, input } => {
                let old = old.ok_or_else(|| gone(id))?;
                let key = key_of(input);
                if conflicted.contains(old) {
                    return Err(changed(old));
                }
                if conflicted.contains(&key) {
                    return Err(changed(&key));
                }
                let (rec, ttl) = self.record_of(input)?;
                if rec.id != *id && holds(working.get(&key), &rec.id) {
                    return Err(ProviderError::Conflict(format!(
                        "{} {} {:?} already exists at PowerDNS",
                        key.1, key.0, rec.content
                    )));
                }
                if let Some(why) = cname_clash(working, &key, Some((old, id))) {
                    return Err(ProviderError::Conflict(why));
                }
                if let Some(set) = working.get_mut(old) {
                    set.records.retain(|r| r.id != *id);
                }
                let set = working.entry(key.clone()).or_default();
                set.records.push(rec.clone());
                set.ttl = ttl;
                let mut keys = vec![old.clone()];
                if key != *old {
                    keys.push(key.clone());
                }
                Ok((keys, Some((key, rec))))
            }
            WriteOp::Delete { id } => {
                let old = old.ok_or_else(|| gone(id))?;
                if conflicted.contains(old) {
                    return Err(changed(old));
                }
                if let Some(set) = working.get_mut(old) {
                    set.records.retain(|r| r.id != *id);
                }
                Ok((vec![old.clone()], None))
            }
        }
    }

    /// The `PATCH` body replacing or deleting `keys` as `working` holds them.
    fn patch_body(&self, keys: &BTreeSet<Key>, working: &RRsets) -> Result<Vec<u8>, ProviderError> {
        let empty = RRset::default();
        let rrsets = keys
            .iter()
            .map(|k| {
                let set = working.get(k).unwrap_or(&empty);
                let name = wire::wire_name(&k.0);
                if set.is_empty() {
                    return PatchRRset {
                        name,
                        rtype: &k.1,
                        changetype: "DELETE",
                        ttl: None,
                        records: Vec::new(),
                    };
                }
                let records = set
                    .records
                    .iter()
                    .map(|r| WireRecord {
                        content: r.wire.clone(),
                        disabled: false,
                    })
                    .chain(set.disabled.iter().map(|c| WireRecord {
                        content: c.clone(),
                        disabled: true,
                    }))
                    .collect();
                PatchRRset {
                    name,
                    rtype: &k.1,
                    changetype: "REPLACE",
                    ttl: Some(if set.ttl == 0 {
                        self.cfg.default_ttl
                    } else {
                        set.ttl
                    }),
                    records,
                }
            })
            .collect();
        serde_json::to_vec(&Patch { rrsets })
            .map_err(|e| ProviderError::Other(format!("cannot encode the PATCH: {e}")))
    }

    /// Sends the groups in one `PATCH`, halving a refused one until each
    /// refusal falls on the group that caused it.
    async fn send(
        &self,
        groups: Vec<Group>,
        working: &RRsets,
        made: &HashMap<usize, Option<(Key, Rec)>>,
        results: &mut [Option<WriteResult>],
        reqs: &AtomicU64,
    ) {
        let mut pending: Vec<Vec<Group>> = vec![groups];
        while let Some(mut gs) = pending.pop() {
            let keys: BTreeSet<Key> = gs.iter().flat_map(|g| g.keys.iter().cloned()).collect();
            let changes: Vec<usize> = gs.iter().flat_map(|g| g.changes.clone()).collect();
            let sent = match self.patch_body(&keys, working) {
                Ok(body) => {
                    self.call(Method::PATCH, &[], Some(&body), "patch", reqs)
                        .await
                }
                Err(e) => Err(e),
            };
            match sent {
                Ok(_) => {
                    let mut snap = self.snap();
                    snap.writes += 1;
                    for k in &keys {
                        snap.uncertain.remove(k);
                        snap.put(k, working.get(k).cloned().unwrap_or_default());
                    }
                    drop(snap);
                    for i in changes {
                        let record = made.get(&i).cloned().flatten().map(|(k, r)| {
                            let set = working.get(&k);
                            ProviderRecord {
                                id: r.id,
                                rtype: k.1,
                                name: k.0,
                                content: r.content,
                                ttl: set.map_or(self.cfg.default_ttl, |s| s.ttl),
                                proxied: false,
                                priority: r.priority,
                                comment: set.map(|s| s.comment.clone()).unwrap_or_default(),
                            }
                        });
                        results[i] = Some(Ok(record));
                    }
                }
                Err(ProviderError::Invalid(_) | ProviderError::Conflict(_)) if gs.len() > 1 => {
                    let second = gs.split_off(gs.len() / 2);
                    pending.push(second);
                    pending.push(gs);
                }
                Err(e) => {
                    if matches!(e, ProviderError::Unanswered(_)) {
                        let mut snap = self.snap();
                        snap.writes += 1;
                        snap.uncertain.extend(keys.iter().cloned());
                    }
                    for i in changes {
                        results[i] = Some(Err(e.clone()));
                    }
                }
            }
        }
    }
}

/// Splits planned changes into groups that share no name, so a refused
/// `PATCH` can be split without tearing a CNAME check or an update that moves
/// a record from one name to another.
fn group(planned: &[Planned]) -> Vec<Group> {
    let mut root: HashMap<&str, usize> = HashMap::new();
    let mut parent: Vec<usize> = Vec::new();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    for p in planned {
        let mut first = None;
        for k in &p.keys {
            let id = *root.entry(k.0.as_str()).or_insert_with(|| {
                parent.push(parent.len());
                parent.len() - 1
            });
            match first {
                None => first = Some(id),
                Some(f) => {
                    let (a, b) = (find(&mut parent, f), find(&mut parent, id));
                    parent[b] = a;
                }
            }
        }
    }
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<usize, usize> = HashMap::new();
    for p in planned {
        let Some(k) = p.keys.first() else { continue };
        let r = find(&mut parent, root[k.0.as_str()]);
        let g = *index.entry(r).or_insert_with(|| {
            groups.push(Group::default());
            groups.len() - 1
        });
        groups[g].changes.push(p.index);
        groups[g].keys.extend(p.keys.iter().cloned());
    }
    groups
}
