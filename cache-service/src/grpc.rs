//! The gRPC edge of cache-service: every request is validated into domain
//! types here, and every error becomes a `tonic::Status` here. Handlers hold
//! no pooled connection across an `.await`.
//!
//! With replicas, every replica answers the reads from the shared database;
//! a read a follower cannot serve fresh enough goes to the leader
//! (`follower.rs`), and the write RPCs never reach a follower's handlers
//! (the `Forward` wrapper sends them on). A watch ends with `UNAVAILABLE`
//! when this replica stops leading, so its watcher resumes at the leader.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use trafego_common::{num, paging};
use trafego_proto::cache::cache_service_server::CacheService;
use trafego_proto::cache::{change, *};
use trafego_proto::timestamp_ms;
use trafego_proto::validate::{
    self, FieldError, Hostname, ProviderRules, RecordType, ValidRecordInput,
};

use crate::cache::{Cache, CacheError, ChangeStateOf, Freshness, row_to_proto};
use crate::follower::LeaderReads;
use crate::journal::{self, ChangeReq, Outcome};
use crate::provider::{Capabilities, ProviderRecord, WriteOp};
use crate::store::{self, ListFilter, PageKey};

/// Most changes accepted in one `ApplyChanges`.
pub const MAX_CHANGES: usize = 100_000;
const DEFAULT_PAGE: u32 = 1000;
const MAX_PAGE: u32 = 10_000;

/// The `trafego.cache.v1.CacheService` implementation.
#[derive(Clone)]
pub struct CacheApi {
    cache: Arc<Cache>,
    shutdown: CancellationToken,
    /// The provider's capabilities (fixed for its lifetime), reported by
    /// `GetCacheStatus`.
    capabilities: Arc<Capabilities>,
    /// The part of them every write and record id is checked against.
    rules: Arc<ProviderRules>,
    /// Where a follower sends a read it cannot serve fresh enough.
    reads: Arc<LeaderReads>,
}

impl CacheApi {
    /// Serves `cache`; streams end when `shutdown` is cancelled; reads a
    /// follower cannot serve go to the leader through `reads`.
    pub fn new(cache: Arc<Cache>, shutdown: CancellationToken, reads: LeaderReads) -> Self {
        let capabilities = cache.capabilities();
        let rules = Arc::new(capabilities.rules());
        Self {
            cache,
            shutdown,
            capabilities: Arc::new(capabilities),
            rules,
            reads: Arc::new(reads),
        }
    }

    /// Validates a record to write at `field`: the contract's rules, those
    /// of the zone its name goes to (the longest served zone it lies in),
    /// then the provider's capabilities. With several zones served, a name
    /// in none of them is [`Refused::NoZone`]; with one, it is refused as
    /// outside the zone.
    fn valid_input(
        &self,
        field: &str,
        input: Option<&RecordInput>,
    ) -> Result<ValidRecordInput, Refused> {
        let zones = self.cache.zones();
        let mut zone = zones[0].name();
        if zones.len() > 1
            && let Some(name) = input.map(|i| i.name.as_str())
            && let Ok(h) = Hostname::parse(&format!("{field}.name"), name)
        {
            match self.cache.route(&h) {
                Some(i) => zone = zones[i].name(),
                None => {
                    return Err(Refused::NoZone(FieldError::new(
                        format!("{field}.name"),
                        self.cache.no_zone_message(h.as_str()),
                    )));
                }
            }
        }
        let valid = validate::record_input(field, input, zone)?;
        valid.spec.check_for(field, "name", zone, &self.rules)?;
        Ok(valid)
    }

    /// The zone named at `field` (empty: `None`, every zone); a zone not
    /// served is refused, naming the zones served.
    fn zone_arg(&self, field: &str, zone: &str) -> Result<Option<usize>, FieldError> {
        if zone.is_empty() {
            return Ok(None);
        }
        let h = Hostname::parse(field, zone)?;
        self.cache.zone_index(h.as_str()).map(Some).ok_or_else(|| {
            FieldError::new(
                field,
                format!(
                    "{h} is not a zone served; the zones served are {}",
                    self.cache.zone_list().replace(',', ", ")
                ),
            )
        })
    }

    /// Validates a record id at `field` against the provider's id format.
    fn valid_id(&self, field: &str, id: &str) -> Result<String, FieldError> {
        self.rules.id_format.check(field, id)
    }

    /// Validates the `group` of each change: the charset of a change id,
    /// the changes of one group adjacent, and (when the provider takes more
    /// than one change per request) no bigger than its batch size.
    fn groups_of(&self, changes: &[Change]) -> Result<Vec<Option<String>>, FieldError> {
        let batch = usize::try_from(self.capabilities.batch_size).unwrap_or(usize::MAX);
        let mut out: Vec<Option<String>> = Vec::with_capacity(changes.len());
        let mut closed = std::collections::HashSet::new();
        let mut run = 0usize;
        for (i, c) in changes.iter().enumerate() {
            let field = format!("changes[{i}].group");
            let g = if c.group.is_empty() {
                None
            } else if journal::valid_change_id(&c.group) {
                Some(c.group.clone())
            } else {
                return Err(FieldError::new(
                    field,
                    format!(
                        "must be 1 to {} characters of A-Z a-z 0-9 . _ : -",
                        journal::MAX_CHANGE_ID_LEN
                    ),
                ));
            };
            let prev = out.last().cloned().flatten();
            if let Some(p) = &prev
                && prev != g
            {
                closed.insert(p.clone());
            }
            if let Some(g) = &g {
                if closed.contains(g) {
                    return Err(FieldError::new(
                        field,
                        format!("the changes of group {g:?} must be adjacent in the request"),
                    ));
                }
                run = if prev.as_ref() == Some(g) { run + 1 } else { 1 };
                if batch > 1 && run > batch {
                    return Err(FieldError::new(
                        field,
                        format!(
                            "group {g:?} has more than {batch} changes, the provider's batch size"
                        ),
                    ));
                }
            }
            out.push(g);
        }
        Ok(out)
    }

    fn record(&self, zone: Option<usize>, r: &ProviderRecord) -> DnsRecord {
        let now = self.cache.now_ms();
        let zone = zone
            .or_else(|| {
                Hostname::parse("name", &r.name)
                    .ok()
                    .and_then(|h| self.cache.route(&h))
            })
            .unwrap_or(0);
        self.cache.to_proto(zone, r, now, now)
    }

    async fn write_one(&self, op: WriteOp) -> Result<(Option<DnsRecord>, u64), Status> {
        let mut report = self.cache.write(vec![ChangeReq::plain(op)]).await?;
        let zone = report.zones.pop().flatten();
        match report.outcomes.pop() {
            Some(Outcome::Applied(r)) => {
                Ok((r.as_ref().map(|r| self.record(zone, r)), report.generation))
            }
            Some(o) => Err(Status::new(o.code(), o.message())),
            None => Err(Status::internal("the provider returned no result")),
        }
    }
}

/// Why a record to write was refused.
enum Refused {
    /// Bad input: the whole call is refused.
    Field(FieldError),
    /// A name in none of the zones served (several served): in ApplyChanges
    /// that change alone fails.
    NoZone(FieldError),
}

impl From<FieldError> for Refused {
    fn from(e: FieldError) -> Self {
        Refused::Field(e)
    }
}

impl From<Refused> for Status {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Field(e) | Refused::NoZone(e) => e.into(),
        }
    }
}

/// The wire state of an outcome.
fn state_of(o: &Outcome) -> ChangeState {
    match o {
        Outcome::Applied(_) => ChangeState::Applied,
        Outcome::Failed { .. } => ChangeState::Failed,
        Outcome::Unsettled(_) => ChangeState::Unsettled,
    }
}

/// Validates a change id field.
fn change_id(field: &str, id: &str) -> Result<String, FieldError> {
    if journal::valid_change_id(id) {
        Ok(id.to_string())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "must be 1 to {} characters of A-Z a-z 0-9 . _ : -",
                journal::MAX_CHANGE_ID_LEN
            ),
        ))
    }
}

/// Most change ids asked about in one GetChangeOutcomes.
pub const MAX_OUTCOME_IDS: usize = 100_000;
/// Longest wait GetChangeOutcomes accepts.
pub const MAX_OUTCOME_WAIT_MS: u32 = 60_000;

fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchCacheResponse, Status>> + Send>>;

#[tonic::async_trait]
impl CacheService for CacheApi {
    async fn list_records(
        &self,
        request: Request<ListRecordsRequest>,
    ) -> Result<Response<ListRecordsResponse>, Status> {
        let (metadata, _, req) = request.into_parts();
        let filter = ListFilter {
            rtype: non_empty(&req.r#type)
                .map(|t| RecordType::parse("type", t).map(|t| t.as_str().to_string()))
                .transpose()?,
            name: non_empty(&req.name)
                .map(|n| Hostname::parse("name", n).map(|h| h.to_string()))
                .transpose()?,
            name_suffix: non_empty(&req.name_suffix)
                .map(|n| Hostname::parse("name_suffix", n).map(|h| h.to_string()))
                .transpose()?,
            zone: None,
        };
        let zone = self.zone_arg("zone", &req.zone)?;
        let mut filter = filter;
        let zones: Vec<usize> = zone.into_iter().collect();
        // One zone served: its records are all the records (no filter needed).
        if self.cache.zones().len() > 1 {
            filter.zone = zone.map(|i| self.cache.zones()[i].name().to_string());
        }
        let limit = validate::page_size("page_size", req.page_size, DEFAULT_PAGE, MAX_PAGE)?;
        let after = PageKey::from_token(&req.page_token)
            .map_err(|_| FieldError::new("page_token", "is not a token returned by ListRecords"))?;
        let max = (req.max_staleness_seconds > 0)
            .then(|| Duration::from_secs(u64::from(req.max_staleness_seconds)));
        if let Freshness::AtLeader(addr) = self.cache.ensure_fresh(&zones, max).await? {
            let (mut leader, fwd) = self.reads.prepare(&addr, &metadata, req)?;
            return leader.list_records(fwd).await;
        }
        // Taken before the rows are read, so the rows are at least as new as
        // the generation the response reports (never older).
        let state = self.cache.state();
        let last_refreshed = self.cache.last_refreshed(&zones);
        let (rows, more) = self
            .cache
            .db()
            .run(move |c| Ok::<_, CacheError>(store::list(c, &filter, after.as_ref(), limit)?))
            .await?;
        let next_page_token = paging::next_token(&rows, more);
        Ok(Response::new(ListRecordsResponse {
            records: rows.into_iter().map(row_to_proto).collect(),
            next_page_token,
            generation: num::count(state.generation),
            last_refreshed: last_refreshed.map(timestamp_ms),
        }))
    }

    async fn get_record(
        &self,
        request: Request<GetRecordRequest>,
    ) -> Result<Response<GetRecordResponse>, Status> {
        let id = self.valid_id("record_id", &request.get_ref().record_id)?;
        if let Freshness::AtLeader(addr) = self.cache.ensure_fresh(&[], None).await? {
            let (metadata, _, req) = request.into_parts();
            let (mut leader, fwd) = self.reads.prepare(&addr, &metadata, req)?;
            return leader.get_record(fwd).await;
        }
        let lookup = id.clone();
        let row = self
            .cache
            .db()
            .run(move |c| Ok::<_, CacheError>(store::get(c, &lookup)?))
            .await?;
        match row {
            Some(r) => Ok(Response::new(GetRecordResponse {
                record: Some(row_to_proto(r)),
            })),
            None => Err(Status::not_found(format!("no record {id} in the cache"))),
        }
    }

    async fn refresh_cache(
        &self,
        request: Request<RefreshCacheRequest>,
    ) -> Result<Response<RefreshCacheResponse>, Status> {
        let req = request.get_ref();
        let zones: Vec<usize> = self.zone_arg("zone", &req.zone)?.into_iter().collect();
        let done = self.cache.refresh_zones(&zones, req.force).await?;
        let mut o = crate::cache::RefreshOutcome::default();
        let mut per_zone = Vec::with_capacity(done.len());
        for (i, z) in &done {
            o.add(z);
            per_zone.push(ZoneRefresh {
                zone: self.cache.zones()[*i].name().to_string(),
                added: z.added,
                changed: z.changed,
                removed: z.removed,
                total: z.total,
                duration_ms: z.duration_ms,
                generation: z.generation,
                provider_requests: z.provider_requests,
            });
        }
        Ok(Response::new(RefreshCacheResponse {
            added: o.added,
            changed: o.changed,
            removed: o.removed,
            total: o.total,
            duration_ms: o.duration_ms,
            generation: o.generation.max(num::count(self.cache.state().generation)),
            provider_requests: o.provider_requests,
            zones: per_zone,
        }))
    }

    async fn get_cache_status(
        &self,
        _request: Request<GetCacheStatusRequest>,
    ) -> Result<Response<GetCacheStatusResponse>, Status> {
        let s = self.cache.status().await?;
        // A replica is reported as the leader once it has taken over (ready
        // to write), not from the moment it won the lock.
        let role = match (self.cache.leading(), self.cache.role()) {
            (Some(fence), _) => trafego_common::leader::Role::Leader { fence },
            (None, trafego_common::leader::Role::Leader { .. }) => {
                trafego_common::leader::Role::Follower { leader: None }
            }
            (None, r) => r,
        };
        let zones = s
            .zones
            .iter()
            .map(|z| ZoneStatus {
                zone: z.state.zone.clone(),
                record_count: z.record_count,
                last_refreshed: z.state.last_refreshed.map(timestamp_ms),
                last_error: z.state.last_error.clone(),
                stale: z.stale,
                generation: num::count(z.state.generation),
                last_refresh_duration_ms: num::count(z.state.last_refresh_duration_ms),
                last_attempt: z.state.last_attempt.map(timestamp_ms),
            })
            .collect();
        Ok(Response::new(GetCacheStatusResponse {
            provider: self.cache.provider_name().to_string(),
            zone: self.cache.zone_list(),
            record_count: s.record_count(),
            last_refreshed: s.last_refreshed().map(timestamp_ms),
            last_error: s.last_error(),
            stale: s.stale(),
            generation: s.generation,
            refresh_interval_seconds: self.cache.settings().refresh_interval.as_secs(),
            last_refresh_duration_ms: s
                .zones
                .iter()
                .map(|z| num::count(z.state.last_refresh_duration_ms))
                .max()
                .unwrap_or(0),
            last_attempt: s
                .zones
                .iter()
                .filter_map(|z| z.state.last_attempt)
                .max()
                .map(timestamp_ms),
            journal_id: self.cache.journal_id(),
            capabilities: Some(self.capabilities.to_proto()),
            zones,
            role: trafego_common::leader::health_role(Some(&role)).to_string(),
            leader: match role {
                trafego_common::leader::Role::Follower { leader } => leader.unwrap_or_default(),
                trafego_common::leader::Role::Leader { .. } => String::new(),
            },
        }))
    }

    async fn create_record(
        &self,
        request: Request<CreateRecordRequest>,
    ) -> Result<Response<CreateRecordResponse>, Status> {
        let input = self.valid_input("record", request.get_ref().record.as_ref())?;
        let (record, generation) = self.write_one(WriteOp::Create(input)).await?;
        Ok(Response::new(CreateRecordResponse { record, generation }))
    }

    async fn update_record(
        &self,
        request: Request<UpdateRecordRequest>,
    ) -> Result<Response<UpdateRecordResponse>, Status> {
        let req = request.get_ref();
        let id = self.valid_id("record_id", &req.record_id)?;
        let input = self.valid_input("record", req.record.as_ref())?;
        let (record, generation) = self.write_one(WriteOp::Update { id, input }).await?;
        Ok(Response::new(UpdateRecordResponse { record, generation }))
    }

    async fn delete_record(
        &self,
        request: Request<DeleteRecordRequest>,
    ) -> Result<Response<DeleteRecordResponse>, Status> {
        let id = self.valid_id("record_id", &request.get_ref().record_id)?;
        let (_, generation) = self.write_one(WriteOp::Delete { id: id.clone() }).await?;
        Ok(Response::new(DeleteRecordResponse {
            record_id: id,
            generation,
        }))
    }

    async fn apply_changes(
        &self,
        request: Request<ApplyChangesRequest>,
    ) -> Result<Response<ApplyChangesResponse>, Status> {
        let req = request.into_inner();
        if req.changes.len() > MAX_CHANGES {
            return Err(FieldError::new(
                "changes",
                format!(
                    "{} changes; at most {MAX_CHANGES} per call",
                    req.changes.len()
                ),
            )
            .into());
        }
        let mut ops = Vec::with_capacity(req.changes.len());
        let mut ids: Vec<Option<String>> = Vec::with_capacity(req.changes.len());
        // Changes refused alone (a name in no served zone), by index.
        let mut refused: Vec<(usize, FieldError)> = Vec::new();
        let mut positions: Vec<usize> = Vec::with_capacity(req.changes.len());
        let mut seen = std::collections::HashSet::new();
        for (i, c) in req.changes.iter().enumerate() {
            let id = if c.change_id.is_empty() {
                None
            } else {
                let field = format!("changes[{i}].change_id");
                let id = change_id(&field, &c.change_id)?;
                if !seen.insert(id.clone()) {
                    return Err(FieldError::new(
                        field,
                        "is used by another change of this request",
                    )
                    .into());
                }
                Some(id)
            };
            let alone = |r: Refused| match r {
                Refused::NoZone(e) => Ok(e),
                Refused::Field(e) => Err(e),
            };
            let op = match &c.kind {
                Some(change::Kind::Create(input)) => {
                    match self.valid_input(&format!("changes[{i}].create"), Some(input)) {
                        Ok(v) => WriteOp::Create(v),
                        Err(r) => {
                            refused.push((i, alone(r)?));
                            continue;
                        }
                    }
                }
                Some(change::Kind::Update(u)) => {
                    let id =
                        self.valid_id(&format!("changes[{i}].update.record_id"), &u.record_id)?;
                    match self
                        .valid_input(&format!("changes[{i}].update.record"), u.record.as_ref())
                    {
                        Ok(input) => WriteOp::Update { id, input },
                        Err(r) => {
                            refused.push((i, alone(r)?));
                            continue;
                        }
                    }
                }
                Some(change::Kind::Delete(d)) => WriteOp::Delete {
                    id: self.valid_id(&format!("changes[{i}].delete.record_id"), &d.record_id)?,
                },
                None => {
                    return Err(FieldError::new(
                        format!("changes[{i}]"),
                        "must be one of create, update or delete",
                    )
                    .into());
                }
            };
            ids.push(id);
            positions.push(i);
            ops.push(op);
        }
        let groups = self.groups_of(&req.changes)?;
        let targets: Vec<String> = ops
            .iter()
            .map(|o| o.id().unwrap_or_default().to_string())
            .collect();
        let changes: Vec<ChangeReq> = ops
            .into_iter()
            .zip(ids)
            .zip(groups)
            .map(|((op, change_id), group)| ChangeReq {
                op,
                change_id,
                group,
            })
            .collect();
        let change_ids: Vec<String> = changes
            .iter()
            .map(|c| c.change_id.clone().unwrap_or_default())
            .collect();
        let report = if changes.is_empty() {
            crate::cache::WriteReport {
                outcomes: Vec::new(),
                generation: num::count(self.cache.state().generation),
                requests: 0,
                zones: Vec::new(),
            }
        } else {
            self.cache.write(changes).await?
        };
        let mut succeeded = 0u32;
        let mut failed = 0u32;
        let mut results: Vec<ChangeResult> = report
            .outcomes
            .iter()
            .zip(targets)
            .zip(change_ids)
            .zip(&report.zones)
            .zip(positions)
            .map(|((((o, target), change_id), zone), i)| {
                let record = match o {
                    Outcome::Applied(rec) => {
                        succeeded += 1;
                        rec.as_ref().map(|r| self.record(*zone, r))
                    }
                    _ => {
                        failed += 1;
                        None
                    }
                };
                ChangeResult {
                    index: u32::try_from(i).unwrap_or(u32::MAX),
                    code: o.code() as i32,
                    message: o.message(),
                    record_id: record.as_ref().map_or(target, |r| r.record_id.clone()),
                    record,
                    change_id,
                    state: state_of(o) as i32,
                }
            })
            .collect();
        for (i, e) in refused {
            failed += 1;
            let c = &req.changes[i];
            results.push(ChangeResult {
                index: u32::try_from(i).unwrap_or(u32::MAX),
                code: tonic::Code::InvalidArgument as i32,
                message: e.to_string(),
                record_id: match &c.kind {
                    Some(change::Kind::Update(u)) => u.record_id.clone(),
                    _ => String::new(),
                },
                record: None,
                change_id: c.change_id.clone(),
                state: ChangeState::Failed as i32,
            });
        }
        results.sort_by_key(|r| r.index);
        Ok(Response::new(ApplyChangesResponse {
            results,
            succeeded,
            failed,
            generation: report.generation,
            provider_requests: report.requests,
            journal_id: self.cache.journal_id(),
        }))
    }

    async fn get_change_outcomes(
        &self,
        request: Request<GetChangeOutcomesRequest>,
    ) -> Result<Response<GetChangeOutcomesResponse>, Status> {
        let req = request.into_inner();
        if req.change_ids.len() > MAX_OUTCOME_IDS {
            return Err(FieldError::new(
                "change_ids",
                format!(
                    "{} ids; at most {MAX_OUTCOME_IDS} per call",
                    req.change_ids.len()
                ),
            )
            .into());
        }
        if req.wait_ms > MAX_OUTCOME_WAIT_MS {
            return Err(FieldError::new(
                "wait_ms",
                format!("{} ms; at most {MAX_OUTCOME_WAIT_MS}", req.wait_ms),
            )
            .into());
        }
        let ids = req
            .change_ids
            .iter()
            .enumerate()
            .map(|(i, id)| change_id(&format!("change_ids[{i}]"), id))
            .collect::<Result<Vec<_>, _>>()?;
        let (states, generation) = self
            .cache
            .outcomes_of(ids.clone(), Duration::from_millis(u64::from(req.wait_ms)))
            .await?;
        let outcomes = ids
            .into_iter()
            .zip(states)
            .map(|(change_id, st)| match st {
                ChangeStateOf::Unknown => ChangeOutcome {
                    change_id,
                    state: ChangeState::Unknown as i32,
                    message: "cache-service holds no journal entry for this change id: it was never sent to the provider through it".into(),
                    ..Default::default()
                },
                ChangeStateOf::InFlight => ChangeOutcome {
                    change_id,
                    state: ChangeState::InFlight as i32,
                    message: "being applied now".into(),
                    ..Default::default()
                },
                ChangeStateOf::Done { outcome, record_id } => {
                    let record = match &outcome {
                        Outcome::Applied(Some(r)) => Some(self.record(None, r)),
                        _ => None,
                    };
                    ChangeOutcome {
                        change_id,
                        state: state_of(&outcome) as i32,
                        code: outcome.code() as i32,
                        message: outcome.message(),
                        record,
                        record_id,
                    }
                }
            })
            .collect();
        Ok(Response::new(GetChangeOutcomesResponse {
            outcomes,
            generation,
            journal_id: self.cache.journal_id(),
        }))
    }

    type WatchCacheStream = WatchStream;

    async fn watch_cache(
        &self,
        request: Request<WatchCacheRequest>,
    ) -> Result<Response<Self::WatchCacheStream>, Status> {
        let from = request.get_ref().from_generation;
        let zone = self
            .zone_arg("zone", &request.get_ref().zone)?
            .map(|i| self.cache.zones()[i].name().to_string())
            .unwrap_or_default();
        // A watch raced a step-down past the forwarding: refused, so the
        // watcher resumes at the leader (whose hub holds the events).
        let fence = self.cache.must_lead()?;
        let mut role = self.cache.role_watch();
        let sub = self.cache.hub().subscribe(from);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<WatchCacheResponse, Status>>(256);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            // Whether the role can still change (a single instance's cannot).
            let mut role_live = true;
            let mut last = from;
            for e in sub.backlog {
                last = last.max(e.generation);
                if !crate::events::for_zone(&e, &zone) {
                    continue;
                }
                if tx.send(Ok((*e).clone())).await.is_err() {
                    return;
                }
            }
            let mut live = sub.live;
            loop {
                let next = tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tx.closed() => return,
                    r = role.changed(), if role_live => {
                        match r {
                            Err(_) => role_live = false,
                            Ok(()) if role.borrow().fence() != Some(fence) => {
                                // This replica's events end here: the watcher
                                // resumes from `last` at the new leader.
                                let _ = tx
                                    .send(Err(Status::unavailable(format!(
                                        "this replica stopped leading; resume from generation \
                                         {last} at the leader"
                                    ))))
                                    .await;
                                return;
                            }
                            Ok(()) => {}
                        }
                        continue;
                    }
                    n = live.recv() => n,
                };
                let ev = match next {
                    Ok(e) => (*e).clone(),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            skipped = n,
                            "a cache watcher fell behind; telling it to resync"
                        );
                        crate::events::resync(last)
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                last = last.max(ev.generation);
                if !crate::events::for_zone(&ev, &zone) {
                    continue;
                }
                if tx.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}
