//! Write-through: changes applied at the provider and recorded in the cache
//! with their journal entries in one transaction; change ids in flight; the
//! outcomes of change ids (GetChangeOutcomes); and settling, by looking at
//! the provider, the changes whose answer was lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tonic::Code;
use trafego_proto::cache::CacheEventKind;

use super::{Cache, CacheError};
use crate::events;
use crate::journal::{self, ChangeReq, Judged, Outcome, Sought};
use crate::provider::{ProviderError, ProviderRecord, WriteOp};
use crate::store::{self, JournalRow, Written};

/// Times a change whose answer was lost, and that a look found absent, is
/// sent again before it is reported failed.
const RESEND_ROUNDS: u32 = 2;
/// Changes settled by looking with targeted reads, one per (name, type); more
/// than this many places are settled with one listing of the zone.
const SETTLE_LOOKUPS: usize = 20;

/// The outcomes of one write, in change order.
#[derive(Debug, Clone)]
pub struct WriteReport {
    /// One outcome per change.
    pub outcomes: Vec<Outcome>,
    /// The cache generation after the writes.
    pub generation: u64,
    /// Provider requests made.
    pub requests: u64,
    /// The zone each change went to (`None`: refused before it had one).
    pub zones: Vec<Option<usize>>,
}

/// What became of one change id (GetChangeOutcomes).
#[derive(Debug, Clone)]
pub enum ChangeStateOf {
    /// No journal entry: never sent through this cache-service.
    Unknown,
    /// Being applied now.
    InFlight,
    /// Recorded: applied, failed, or (answer lost, look failed) unsettled.
    Done {
        /// The outcome.
        outcome: Outcome,
        /// The record it produced or concerned.
        record_id: String,
    },
}

/// Marks change ids in flight while a write holds it; leaving (even by a
/// panic) clears them and wakes callers waiting on them.
struct InFlight {
    cache: Arc<Cache>,
    ids: Vec<String>,
}

impl InFlight {
    fn enter(cache: Arc<Cache>, ids: Vec<String>) -> Self {
        {
            let mut f = cache.in_flight.lock().unwrap_or_else(|e| e.into_inner());
            for id in &ids {
                *f.entry(id.clone()).or_default() += 1;
            }
        }
        Self { cache, ids }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut f = self
                .cache
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for id in &self.ids {
                if let Some(n) = f.get_mut(id) {
                    *n -= 1;
                    if *n == 0 {
                        f.remove(id);
                    }
                }
            }
        }
        self.cache.finished.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// What a change does to a record, as far as the cache must reflect it.
enum Kind<'a> {
    Create,
    Update(&'a str),
    Delete(&'a str),
}

impl<'a> Kind<'a> {
    fn of(op: &'a WriteOp) -> Self {
        match op {
            WriteOp::Create(_) => Kind::Create,
            WriteOp::Update { id, .. } => Kind::Update(id),
            WriteOp::Delete { id } => Kind::Delete(id),
        }
    }

    fn of_row(row: &'a JournalRow) -> Self {
        match row.op.as_str() {
            "create" => Kind::Create,
            "update" => Kind::Update(&row.target_id),
            _ => Kind::Delete(&row.target_id),
        }
    }

    /// What the cache must write for this change's outcome, if anything.
    fn written(&self, o: &Outcome) -> Option<Written> {
        match (self, o) {
            (Kind::Create, Outcome::Applied(Some(r))) => Some(Written::Upsert {
                record: r.clone(),
                replaces: None,
            }),
            (Kind::Update(id), Outcome::Applied(Some(r))) => Some(Written::Upsert {
                record: r.clone(),
                replaces: (*id != r.id).then(|| id.to_string()),
            }),
            (Kind::Delete(id), Outcome::Applied(_)) => Some(Written::Removed(id.to_string())),
            // The provider no longer has it: neither should the cache.
            (
                Kind::Update(id) | Kind::Delete(id),
                Outcome::Failed {
                    code: Code::NotFound,
                    ..
                },
            ) => Some(Written::Removed(id.to_string())),
            _ => None,
        }
    }
}

/// `row`, the journal entry of a change, with its outcome recorded at
/// `now`; `None` while it is unsettled (the entry stays pending).
fn settle_row(row: &JournalRow, o: &Outcome, now: i64) -> Option<JournalRow> {
    let mut row = row.clone();
    row.settled_at = Some(now);
    match o {
        Outcome::Applied(rec) => {
            row.state = store::JOURNAL_APPLIED.to_string();
            row.code = 0;
            row.message = String::new();
            row.record_id = rec
                .as_ref()
                .map_or_else(|| row.target_id.clone(), |r| r.id.clone());
            row.record = rec
                .as_ref()
                .and_then(|r| serde_json::to_string(r).ok())
                .unwrap_or_default();
        }
        Outcome::Failed { code, message } => {
            row.state = store::JOURNAL_FAILED.to_string();
            row.code = *code as i32;
            row.message = message.clone();
            row.record_id = row.target_id.clone();
            row.record = String::new();
        }
        Outcome::Unsettled(_) => return None,
    }
    Some(row)
}

/// The record a journal entry says its change produced.
fn journal_record(row: &JournalRow) -> Option<ProviderRecord> {
    (!row.record.is_empty())
        .then(|| serde_json::from_str(&row.record).ok())
        .flatten()
}

/// Where each change goes, for its journal entry: the cached (name, type) of
/// the record a delete concerns, and the ids the cache holds at the (name,
/// type) a create or update writes.
type Place = (Option<(String, String)>, Vec<String>);

fn places_of(
    conn: &mut store::Conn,
    ops: &[(usize, WriteOp)],
) -> diesel::QueryResult<Vec<(usize, Place)>> {
    let keys: Vec<(String, String)> = ops
        .iter()
        .filter_map(|(_, op)| match op {
            WriteOp::Create(input) | WriteOp::Update { input, .. } => Some((
                input.spec.name.as_str().to_string(),
                input.spec.rtype.as_str().to_string(),
            )),
            WriteOp::Delete { .. } => None,
        })
        .collect();
    let held = store::ids_at(conn, &keys)?;
    let mut out = Vec::with_capacity(ops.len());
    for (i, op) in ops {
        let place = match op {
            WriteOp::Create(input) | WriteOp::Update { input, .. } => {
                let key = (
                    input.spec.name.as_str().to_string(),
                    input.spec.rtype.as_str().to_string(),
                );
                (None, held.get(&key).cloned().unwrap_or_default())
            }
            WriteOp::Delete { id } => {
                (store::get(conn, id)?.map(|r| (r.name, r.rtype)), Vec::new())
            }
        };
        out.push((*i, place));
    }
    Ok(out)
}

impl Cache {
    /// Applies changes at the provider, then writes what it accepted into
    /// the cache at once, with each change's journal entry (see the
    /// change-id protocol in cache.proto). Returns one outcome per change,
    /// the generation after the writes, and the provider requests made.
    ///
    /// The work runs in its own task: a caller that hangs up (or times out)
    /// never cuts it between the provider's answer and the cache's record.
    /// Its change ids count as in flight from now until it is recorded.
    pub async fn write(
        self: &Arc<Self>,
        changes: Vec<ChangeReq>,
    ) -> Result<WriteReport, CacheError> {
        self.must_lead()?;
        let ids = changes.iter().filter_map(|c| c.change_id.clone()).collect();
        let guard = InFlight::enter(self.clone(), ids);
        let me = self.clone();
        trafego_common::mesh::spawn_in_request(async move {
            let _in_flight = guard;
            me.write_now(changes).await
        })
        .await
        .unwrap_or_else(|e| Err(CacheError::internal(format!("write task: {e}"))))
    }

    async fn write_now(&self, changes: Vec<ChangeReq>) -> Result<WriteReport, CacheError> {
        let n = changes.len();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; n];
        // Outcomes the journal already held, or refusals before sending:
        // neither written nor settled again.
        let mut known = vec![false; n];

        // 0. Each change's zone; the zones' locks, in zone order.
        let routes = self.route_changes(&changes).await?;
        let mut zone_of: Vec<usize> = vec![0; n];
        let mut routed = vec![false; n];
        for (i, r) in routes.into_iter().enumerate() {
            match r {
                Ok(z) => {
                    zone_of[i] = z;
                    routed[i] = true;
                }
                Err(o) => {
                    known[i] = true;
                    outcomes[i] = Some(*o);
                }
            }
        }
        let mut touched: Vec<usize> = (0..n).filter(|&i| !known[i]).map(|i| zone_of[i]).collect();
        touched.sort_unstable();
        touched.dedup();
        let mut _locks = Vec::with_capacity(touched.len());
        for &z in &touched {
            _locks.push(self.zones[z].lock.lock().await);
        }
        let now = self.clock.now_ms();
        let mut requests = 0u64;
        let mut written: Vec<(usize, Written)> = Vec::new();
        let mut created: Vec<String> = Vec::new();
        let mut settled: Vec<JournalRow> = Vec::new();
        // The journal entry of each change that has one, by change index.
        let mut entries: HashMap<usize, JournalRow> = HashMap::new();
        let fps: Vec<Option<String>> = changes
            .iter()
            .map(|c| c.change_id.as_ref().map(|_| journal::op_fingerprint(&c.op)))
            .collect();

        // 1. What the journal already knows of these change ids.
        let ids: Vec<String> = changes
            .iter()
            .enumerate()
            .filter(|(i, _)| !known[*i])
            .filter_map(|(_, c)| c.change_id.clone())
            .collect();
        let journaled: HashMap<String, JournalRow> = if ids.is_empty() {
            HashMap::new()
        } else {
            self.db
                .run(move |c| Ok::<_, CacheError>(store::journal_get(c, &ids)?))
                .await?
                .into_iter()
                .map(|r| (r.change_id.clone(), r))
                .collect()
        };
        let mut stale: Vec<(usize, JournalRow)> = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            if known[i] {
                continue;
            }
            let Some(row) = c.change_id.as_ref().and_then(|id| journaled.get(id)) else {
                continue;
            };
            if Some(&row.op_fingerprint) != fps[i].as_ref() {
                known[i] = true;
                outcomes[i] = Some(Outcome::Failed {
                    code: Code::InvalidArgument,
                    message: format!(
                        "change_id {} was already used for a different change",
                        row.change_id
                    ),
                });
                continue;
            }
            match row.state.as_str() {
                store::JOURNAL_APPLIED => {
                    known[i] = true;
                    outcomes[i] = Some(Outcome::Applied(journal_record(row)));
                }
                store::JOURNAL_PENDING => {
                    entries.insert(i, row.clone());
                    stale.push((i, row.clone()));
                }
                _ => {}
            }
        }

        // 2. Changes journaled by an earlier call whose outcome was never
        // recorded (cache-service died, or a look failed): settled by looking
        // before anything is sent again.
        if !stale.is_empty() {
            let sought: Vec<(usize, Sought)> = stale
                .iter()
                .map(|(i, r)| (zone_of[*i], Sought::from_row(r)))
                .collect();
            let (judged, reqs) = self.look_in_zones(&sought).await;
            requests += reqs;
            for (((i, _), (_, s)), j) in stale.iter().zip(&sought).zip(judged) {
                match j {
                    Ok(Judged::Applied(rec)) => outcomes[*i] = Some(Outcome::Applied(rec)),
                    Ok(Judged::NotApplied) => {}
                    Err(e) => {
                        known[*i] = true;
                        outcomes[*i] = Some(Outcome::Unsettled(e.to_string()));
                    }
                }
                tracing::info!(change_id = ?changes[*i].change_id, op = %s.op, name = %s.name, "settled an unconfirmed change by looking");
            }
        }

        // 3. Journal what is about to be sent, with its zone and the ids the
        // cache holds where it goes (a record found there later with another
        // id is its own).
        let send: Vec<usize> = (0..n).filter(|&i| outcomes[i].is_none()).collect();
        let mut sought: HashMap<usize, Sought> = HashMap::with_capacity(send.len());
        if !send.is_empty() {
            let ops: Vec<(usize, WriteOp)> =
                send.iter().map(|&i| (i, changes[i].op.clone())).collect();
            let places = self
                .db
                .run(move |c| Ok::<_, CacheError>(places_of(c, &ops)?))
                .await?;
            let mut rows = Vec::new();
            for (i, (target, prior)) in places {
                let s = Sought::of(&changes[i].op, target, prior);
                if let (Some(id), Some(fp)) = (&changes[i].change_id, &fps[i]) {
                    let mut row = s.journal_row(id, fp.clone(), now);
                    row.zone = self.zones[zone_of[i]].name.to_string();
                    entries.insert(i, row.clone());
                    rows.push(row);
                }
                sought.insert(i, s);
            }
            // Even with no rows: its fenced transaction is what lets the
            // provider requests go (a replica whose fence is stale stops here,
            // having sent nothing).
            self.db
                .run(move |c| Ok::<_, CacheError>(store::journal_begin(c, &rows)?))
                .await?;
            // A step-down seen since: nothing is sent (the entries just made
            // are settled by looking, by whichever replica leads next).
            self.must_lead()?;
        }

        // 4. Send, each zone's part as its provider's batch, the zones at
        // once; a change whose answer was lost is looked for, and sent again
        // only when the look finds it absent.
        let mut by_zone: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for &i in &send {
            by_zone.entry(zone_of[i]).or_default().push(i);
        }
        let runs = by_zone
            .into_iter()
            .map(|(z, idxs)| self.send_zone(z, idxs, &changes, &sought));
        for sent in futures::future::join_all(runs).await {
            let (done, reqs) = sent?;
            requests += reqs;
            for (i, o) in done {
                outcomes[i] = Some(o);
            }
        }

        // 5. One transaction records the cache rows and the journal outcomes.
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| Outcome::Unsettled("no outcome".into())))
            .collect();
        for (i, (c, o)) in changes.iter().zip(&outcomes).enumerate() {
            if known[i] {
                continue;
            }
            if let Some(w) = Kind::of(&c.op).written(o) {
                if let (WriteOp::Create(_), Written::Upsert { record, .. }) = (&c.op, &w) {
                    created.push(record.id.clone());
                }
                written.push((zone_of[i], w));
            }
            if let Some(s) = entries.get(&i).and_then(|row| settle_row(row, o, now)) {
                settled.push(s);
            }
        }
        let generation = self.commit(&written, &created, &settled, now).await?;
        let ok = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Applied(_)))
            .count();
        tracing::info!(
            changes = n,
            zones = touched.len(),
            succeeded = ok,
            failed = n - ok,
            provider_requests = requests,
            generation,
            "write-through applied"
        );
        let zones = (0..n).map(|i| routed[i].then_some(zone_of[i])).collect();
        Ok(WriteReport {
            outcomes,
            generation,
            requests,
            zones,
        })
    }

    /// The zone of each change: a create's is the longest served zone its
    /// name lies in; an update's or delete's is its cached record's (an
    /// update whose new name lies in another zone is refused: a record does
    /// not move between zones). A record not cached is looked for in the
    /// zone its new name lies in (update), or in the one zone (delete, with
    /// one zone served).
    async fn route_changes(
        &self,
        changes: &[ChangeReq],
    ) -> Result<Vec<Result<usize, Box<Outcome>>>, CacheError> {
        if self.zones.len() == 1 {
            return Ok(vec![Ok(0); changes.len()]);
        }
        let ids: Vec<String> = changes
            .iter()
            .filter_map(|c| c.op.id().map(str::to_string))
            .collect();
        let cached: HashMap<String, String> = self
            .db
            .run(move |c| {
                let mut out = HashMap::with_capacity(ids.len());
                for id in ids {
                    if let Some(z) = store::zone_of(c, &id)? {
                        out.insert(id, z);
                    }
                }
                Ok::<_, CacheError>(out)
            })
            .await?;
        let no_zone = |name: &str| {
            Box::new(Outcome::Failed {
                code: Code::InvalidArgument,
                message: self.no_zone_message(name),
            })
        };
        Ok(changes
            .iter()
            .map(|c| {
                let held =
                    c.op.id()
                        .and_then(|id| cached.get(id))
                        .and_then(|z| self.zone_index(z));
                match &c.op {
                    WriteOp::Create(input) => self
                        .route(&input.spec.name)
                        .ok_or_else(|| no_zone(input.spec.name.as_str())),
                    WriteOp::Update { id, input } => match held {
                        Some(h) if input.spec.name.is_in_zone(&self.zones[h].name) => Ok(h),
                        Some(h) => Err(Box::new(Outcome::Failed {
                            code: Code::InvalidArgument,
                            message: format!(
                                "record.name: {} lies outside zone {}, the zone of record {id}: an \
                                 update may not move a record to another zone (delete it and \
                                 create the new one)",
                                input.spec.name, self.zones[h].name
                            ),
                        })),
                        None => self
                            .route(&input.spec.name)
                            .ok_or_else(|| no_zone(input.spec.name.as_str())),
                    },
                    WriteOp::Delete { id } => held.ok_or_else(|| {
                        Box::new(Outcome::Failed {
                            code: Code::NotFound,
                            message: format!(
                                "record {id} is in the cache of none of the zones served ({})",
                                self.zone_list().replace(',', ", ")
                            ),
                        })
                    }),
                }
            })
            .collect())
    }

    /// Sends zone `z`'s changes (`idxs` of `changes`) as its provider's
    /// batches, settling lost answers by looking. Holds no lock of its own:
    /// the caller holds the zone's.
    async fn send_zone(
        &self,
        z: usize,
        idxs: Vec<usize>,
        changes: &[ChangeReq],
        sought: &HashMap<usize, Sought>,
    ) -> Result<(Vec<(usize, Outcome)>, u64), CacheError> {
        let provider = &self.zones[z].provider;
        let mut out: Vec<(usize, Outcome)> = Vec::with_capacity(idxs.len());
        let mut requests = 0u64;
        let mut pending = idxs;
        let mut round = 0;
        while !pending.is_empty() {
            if round > 0 && self.must_lead().is_err() {
                // Sent again only while still leading: a replica that stepped
                // down leaves them to the next leader's look.
                for i in pending {
                    out.push((
                        i,
                        Outcome::Unsettled(
                            "its provider answer was lost and this replica stopped leading \
                             before it could look again"
                                .into(),
                        ),
                    ));
                }
                break;
            }
            let ops: Vec<WriteOp> = pending.iter().map(|&i| changes[i].op.clone()).collect();
            let groups: Vec<Option<&str>> = pending
                .iter()
                .map(|&i| changes[i].group.as_deref())
                .collect();
            let units = crate::provider::units(&groups);
            let (results, reqs) = provider.apply_grouped(ops, units).await;
            requests += reqs;
            if results.len() != pending.len() {
                return Err(CacheError::internal(format!(
                    "provider answered {} results for {} changes",
                    results.len(),
                    pending.len()
                )));
            }
            let mut lost: Vec<(usize, String)> = Vec::new();
            for (&i, res) in pending.iter().zip(results) {
                match res {
                    Ok(rec) => out.push((i, Outcome::Applied(rec))),
                    Err(ProviderError::Unanswered(m)) => lost.push((i, m)),
                    Err(e) => out.push((i, Outcome::failed(&e))),
                }
            }
            if lost.is_empty() {
                break;
            }
            let look: Vec<Sought> = lost.iter().map(|(i, _)| sought[i].clone()).collect();
            let (judged, reqs) = self.look(z, &look).await;
            requests += reqs;
            round += 1;
            pending = Vec::new();
            for ((i, m), j) in lost.into_iter().zip(judged) {
                match j {
                    Ok(Judged::Applied(rec)) => out.push((i, Outcome::Applied(rec))),
                    Ok(Judged::NotApplied) if round <= RESEND_ROUNDS => pending.push(i),
                    Ok(Judged::NotApplied) => {
                        out.push((i, Outcome::Failed {
                            code: Code::Unavailable,
                            message: format!(
                                "the provider's answer was lost {round} times and each look found \
                                 the change not applied ({m})"
                            ),
                        }));
                    }
                    Err(e) => out.push((i, Outcome::Unsettled(format!("{m}; {e}")))),
                }
            }
            if !pending.is_empty() {
                tracing::info!(
                    zone = %self.zones[z].name,
                    changes = pending.len(),
                    round,
                    "answers lost; a look found the changes not applied: sending them again"
                );
            }
        }
        Ok((out, requests))
    }

    /// Writes `written` into the cache and `settled` into the journal in one
    /// transaction, and publishes the cache's changes, under the gate.
    /// Returns the generation.
    async fn commit(
        &self,
        written: &[(usize, Written)],
        created: &[String],
        settled: &[JournalRow],
        now: i64,
    ) -> Result<u64, CacheError> {
        let name = self.provider_name;
        let w: Vec<store::ZoneWritten> = written
            .iter()
            .map(|(z, w)| (self.zones[*z].name.to_string(), w.clone()))
            .collect();
        let s = settled.to_vec();
        let _gate = self.gate.lock().await;
        let g = self
            .db
            .run(move |c| store::apply_settled(c, name, &w, &s, now).map_err(CacheError::from))
            .await?;
        if !written.is_empty() {
            self.committed_generation(g);
            let gi = i64::try_from(g).unwrap_or(i64::MAX);
            let mut zs: Vec<usize> = written.iter().map(|(z, _)| *z).collect();
            zs.sort_unstable();
            zs.dedup();
            for z in zs {
                self.zones[z].committed_generation(gi);
            }
            self.publish_written(g, written, created, now);
            metrics::gauge!("trafego_cache_generation").set(g as f64);
        }
        Ok(g)
    }

    /// [`Cache::look`] for changes of several zones: each zone's looked for
    /// in its zone. One result per change, in order, and the requests made.
    async fn look_in_zones(
        &self,
        sought: &[(usize, Sought)],
    ) -> (Vec<Result<Judged, ProviderError>>, u64) {
        let mut by_zone: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (k, (z, _)) in sought.iter().enumerate() {
            by_zone.entry(*z).or_default().push(k);
        }
        let mut out: Vec<Option<Result<Judged, ProviderError>>> = vec![None; sought.len()];
        let mut requests = 0;
        for (z, ks) in by_zone {
            let these: Vec<Sought> = ks.iter().map(|&k| sought[k].1.clone()).collect();
            let (judged, reqs) = self.look(z, &these).await;
            requests += reqs;
            for (k, j) in ks.into_iter().zip(judged) {
                out[k] = Some(j);
            }
        }
        let out = out
            .into_iter()
            .map(|j| j.unwrap_or(Ok(Judged::NotApplied)))
            .collect();
        (out, requests)
    }

    /// Looks in zone `z` at the provider for each sought change: a targeted
    /// read per (name, type), or one listing of the zone when there are many
    /// (or a place is unknown). One result per change, and the requests made.
    async fn look(&self, z: usize, sought: &[Sought]) -> (Vec<Result<Judged, ProviderError>>, u64) {
        let provider = &self.zones[z].provider;
        let mut keys: Vec<(String, String)> = sought.iter().filter_map(Sought::key).collect();
        keys.sort_unstable();
        keys.dedup();
        let whole = keys.len() > SETTLE_LOOKUPS || sought.iter().any(|s| s.key().is_none());
        if whole {
            return match provider.list().await {
                Ok(listing) => {
                    let mut by_key: HashMap<(String, String), Vec<ProviderRecord>> = HashMap::new();
                    for r in &listing.records {
                        by_key
                            .entry((r.name.clone(), r.rtype.clone()))
                            .or_default()
                            .push(r.clone());
                    }
                    let judged = sought
                        .iter()
                        .map(|s| {
                            Ok(match s.key() {
                                Some(k) => journal::judge(s, by_key.get(&k).map_or(&[][..], |v| v)),
                                None => journal::judge(s, &listing.records),
                            })
                        })
                        .collect();
                    (judged, listing.requests)
                }
                Err(e) => (sought.iter().map(|_| Err(e.clone())).collect(), 0),
            };
        }
        let mut held: HashMap<(String, String), Result<Vec<ProviderRecord>, ProviderError>> =
            HashMap::new();
        let mut requests = 0;
        for (name, rtype) in keys {
            let res = provider.lookup(&name, &rtype).await;
            let res = res.map(|(records, reqs)| {
                requests += reqs;
                records
            });
            held.insert((name, rtype), res);
        }
        let judged = sought
            .iter()
            .map(|s| {
                let k = s.key().unwrap_or_default();
                match held.get(&k) {
                    Some(Ok(records)) => Ok(journal::judge(s, records)),
                    Some(Err(e)) => Err(e.clone()),
                    None => Ok(journal::judge(s, &[])),
                }
            })
            .collect();
        (judged, requests)
    }

    /// The change journal's id, as last read or made (see the change-id
    /// protocol); empty before a leader made one.
    pub fn journal_id(&self) -> String {
        self.journal_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// What became of changes sent with these ids (GetChangeOutcomes).
    /// Waits up to `wait` for those still in flight; settles by looking
    /// those whose provider answer was lost before answering.
    pub async fn outcomes_of(
        self: &Arc<Self>,
        ids: Vec<String>,
        wait: Duration,
    ) -> Result<(Vec<ChangeStateOf>, u64), CacheError> {
        let mut finished = self.finished.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        while self.any_in_flight(&ids) && tokio::time::Instant::now() < deadline {
            if tokio::time::timeout_at(deadline, finished.changed())
                .await
                .is_err()
            {
                break;
            }
        }
        let lookup = ids.clone();
        let rows = self
            .db
            .run(move |c| Ok::<_, CacheError>(store::journal_get(c, &lookup)?))
            .await?;
        let stale: Vec<String> = rows
            .iter()
            .filter(|r| r.state == store::JOURNAL_PENDING && !self.is_in_flight(&r.change_id))
            .map(|r| r.change_id.clone())
            .collect();
        let rows = if stale.is_empty() {
            rows
        } else {
            let me = self.clone();
            trafego_common::mesh::spawn_in_request(async move {
                me.settle_stale(Some(stale), None).await
            })
            .await
            .unwrap_or_else(|e| Err(CacheError::internal(format!("settle task: {e}"))))?;
            let lookup = ids.clone();
            self.db
                .run(move |c| Ok::<_, CacheError>(store::journal_get(c, &lookup)?))
                .await?
        };
        let by_id: HashMap<&str, &JournalRow> =
            rows.iter().map(|r| (r.change_id.as_str(), r)).collect();
        let out = ids
            .iter()
            .map(|id| {
                if self.is_in_flight(id) {
                    return ChangeStateOf::InFlight;
                }
                match by_id.get(id.as_str()) {
                    None => ChangeStateOf::Unknown,
                    Some(r) => match r.state.as_str() {
                        store::JOURNAL_APPLIED => ChangeStateOf::Done {
                            outcome: Outcome::Applied(journal_record(r)),
                            record_id: r.record_id.clone(),
                        },
                        store::JOURNAL_FAILED => ChangeStateOf::Done {
                            outcome: Outcome::Failed {
                                code: Code::from_i32(r.code),
                                message: r.message.clone(),
                            },
                            record_id: r.target_id.clone(),
                        },
                        _ => ChangeStateOf::Done {
                            outcome: Outcome::Unsettled(
                                "the provider could not be read to settle it".into(),
                            ),
                            record_id: r.target_id.clone(),
                        },
                    },
                }
            })
            .collect();
        Ok((
            out,
            u64::try_from(self.state().generation).unwrap_or_default(),
        ))
    }

    /// Settles pending journal entries that nothing is applying any more
    /// (left by a process that died, or whose look failed) by looking at the
    /// provider, each in its zone: `ids`, or every such entry (of zone
    /// `only`, when given). Takes the locks of the zones looked in, then the
    /// gate. Only the leader settles (`UNAVAILABLE` elsewhere).
    pub async fn settle_stale(
        &self,
        ids: Option<Vec<String>>,
        only: Option<usize>,
    ) -> Result<usize, CacheError> {
        self.must_lead()?;
        let rows = self
            .db
            .run(move |c| {
                Ok::<_, CacheError>(match ids {
                    Some(ids) => store::journal_get(c, &ids)?,
                    None => store::journal_pending(c)?,
                })
            })
            .await?;
        let rows: Vec<(usize, JournalRow)> = rows
            .into_iter()
            .filter(|r| r.state == store::JOURNAL_PENDING)
            .filter_map(|r| self.zone_of_row(&r).map(|z| (z, r)))
            .filter(|(z, _)| only.is_none_or(|o| o == *z))
            .collect();
        if rows.is_empty() {
            return Ok(0);
        }
        let mut zones: Vec<usize> = rows.iter().map(|(z, _)| *z).collect();
        zones.sort_unstable();
        zones.dedup();
        let mut _locks = Vec::with_capacity(zones.len());
        for &z in &zones {
            _locks.push(self.zones[z].lock.lock().await);
        }
        // Under the locks: a write of these zones that was still applying
        // them has recorded its outcome by now, or holds them in flight.
        let wanted: Vec<String> = rows.iter().map(|(_, r)| r.change_id.clone()).collect();
        let current: HashMap<String, JournalRow> = self
            .db
            .run(move |c| Ok::<_, CacheError>(store::journal_get(c, &wanted)?))
            .await?
            .into_iter()
            .map(|r| (r.change_id.clone(), r))
            .collect();
        let rows: Vec<(usize, JournalRow)> = rows
            .into_iter()
            .filter_map(|(z, r)| current.get(&r.change_id).map(|r| (z, r.clone())))
            .filter(|(_, r)| r.state == store::JOURNAL_PENDING && !self.is_in_flight(&r.change_id))
            .collect();
        if rows.is_empty() {
            return Ok(0);
        }
        let sought: Vec<(usize, Sought)> = rows
            .iter()
            .map(|(z, r)| (*z, Sought::from_row(r)))
            .collect();
        let (judged, requests) = self.look_in_zones(&sought).await;
        let now = self.clock.now_ms();
        let mut written = Vec::new();
        let mut created = Vec::new();
        let mut settled = Vec::new();
        let mut unsettled = 0;
        for ((z, row), j) in rows.iter().zip(judged) {
            let outcome = match j {
                Ok(Judged::Applied(rec)) => Outcome::Applied(rec),
                Ok(Judged::NotApplied) => Outcome::Failed {
                    code: Code::Unavailable,
                    message:
                        "not applied: its provider answer was lost (or cache-service stopped) \
                              and a look at the provider found it absent; it may be sent again"
                            .into(),
                },
                Err(_) => {
                    unsettled += 1;
                    continue;
                }
            };
            let kind = Kind::of_row(row);
            if let Some(w) = kind.written(&outcome) {
                if let (Kind::Create, Written::Upsert { record, .. }) = (&kind, &w) {
                    created.push(record.id.clone());
                }
                written.push((*z, w));
            }
            settled.extend(settle_row(row, &outcome, now));
        }
        let n = settled.len();
        self.commit(&written, &created, &settled, now).await?;
        tracing::info!(
            settled = n,
            unsettled,
            provider_requests = requests,
            "settled unconfirmed changes by looking at the provider"
        );
        Ok(n)
    }

    /// The zone a journal entry's change was sent to: its recorded zone, or
    /// (entries from before zones) the zone its name lies in, or the one
    /// zone served.
    fn zone_of_row(&self, row: &JournalRow) -> Option<usize> {
        if !row.zone.is_empty() {
            return self.zone_index(&row.zone);
        }
        if self.zones.len() == 1 {
            return Some(0);
        }
        trafego_proto::validate::Hostname::parse("name", &row.name)
            .ok()
            .and_then(|h| self.route(&h))
    }
    pub async fn purge_journal(&self) {
        let before = self.clock.now_ms().saturating_sub(
            i64::try_from(self.settings.journal_retention.as_millis()).unwrap_or(i64::MAX),
        );
        let res = self
            .db
            .run(move |c| Ok::<_, CacheError>(store::journal_purge(c, before)?))
            .await;
        match res {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "old change-journal entries purged"),
            Err(e) => tracing::warn!(error = %e, "could not purge the change journal"),
        }
    }

    fn is_in_flight(&self, id: &str) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(id)
    }

    fn any_in_flight(&self, ids: &[String]) -> bool {
        let f = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        ids.iter().any(|id| f.contains_key(id))
    }

    fn publish_written(&self, g: u64, written: &[(usize, Written)], created: &[String], now: i64) {
        if written.len() > self.settings.watch_buffer {
            self.hub.publish_gap(g, events::resync(g));
            return;
        }
        let created: std::collections::HashSet<&str> = created.iter().map(String::as_str).collect();
        let mut evs = Vec::with_capacity(written.len() + 1);
        for (z, w) in written {
            let zone = self.zones[*z].name.to_string();
            match w {
                Written::Upsert { record, replaces } => {
                    let kind = match replaces {
                        Some(old) => {
                            evs.push(events::removed_event(g, zone, old.clone()));
                            CacheEventKind::Added
                        }
                        None if created.contains(record.id.as_str()) => CacheEventKind::Added,
                        None => CacheEventKind::Changed,
                    };
                    evs.push(events::record_event(
                        kind,
                        g,
                        self.to_proto(*z, record, now, now),
                    ));
                }
                Written::Removed(id) => evs.push(events::removed_event(g, zone, id.clone())),
            }
        }
        self.hub.publish(g, evs);
    }
}
