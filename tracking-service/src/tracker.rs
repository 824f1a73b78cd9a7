//! The tracker: reconcile, the orphan sweep and the missing/drift check,
//! coordinating cache-service (the provider's state, and the only way to
//! change it) with the tracker's own table.
//!
//! Reconciles, sweeps and checks take one async lock in turn, so two
//! overlapping reconciles never both create a record, and a sweep never
//! deletes what a concurrent reconcile just declared again. Nothing is
//! written anywhere before validation and the guards have passed, and a
//! record is changed or deleted at the provider only when this tracker's
//! table says it is app-managed.
//!
//! Provider writes are never cut off from their record: a reconcile's
//! writes, and the transaction recording them, run in a task of their own
//! holding the lock (an owned guard), so a caller that hangs up or times out
//! cannot split them, and the next reconcile waits for them. Each write is
//! journaled (a pending intent) before it is sent; if its outcome is never
//! recorded (cache-service did not answer in time, the process died), the
//! next reconcile claims the record as app-managed instead of adopting the
//! app's own record as someone else's, and does not send an unconfirmed
//! create again while cache-service may still be writing it. The sweep runs
//! the same way, and never deletes a record whose provider copy no longer
//! matches what was tracked (renamed, retyped or changed since).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, OnceCell};
use tonic::Code;
use trafego_common::clock::SharedClock;
use trafego_common::db::Db;
use trafego_common::num;
use trafego_proto::cache::{
    Change, ChangeState, DeleteChange, DnsRecord, RecordInput, UpdateChange, change,
};
use trafego_proto::timestamp_ms;
use trafego_proto::tracking::{
    ChangeAction, GetTrackerStatusResponse, PlannedChange, ReconcileResponse, ReconcileSummary,
    RunOrphanSweepResponse, SweptRecord, TrackedRecord,
};
use trafego_proto::validate::{Hostname, RecordSpec};

use crate::cache_client::{self, CacheClient};
use crate::config::ManagedEntry;
use crate::desired::{self, Defaults, MANAGED_SOURCE, ZoneInfo};
use crate::error::TrackingError;
use crate::planner::{self, IntentState, Planned, Timing};
use crate::preserve::Preserved;
use crate::store::{self, CacheView, CheckOutcome, Commit, TrackedRow};

/// What the tracker needs from the configuration, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Defaults for declarations.
    pub defaults: Defaults,
    /// DNS_ZONE, when set: must equal cache-service's zone.
    pub zone: Option<Hostname>,
    /// CLEANUP_ORPHANED.
    pub cleanup: bool,
    /// CLEANUP_GRACE_PERIOD.
    pub grace: Duration,
    /// PRESERVED_HOSTNAMES.
    pub preserved: Preserved,
    /// MANAGED_HOSTNAMES.
    pub managed: Vec<ManagedEntry>,
    /// MAX_ORPHAN_RATIO.
    pub max_orphan_ratio: f64,
    /// RECONCILE_MAX_STALENESS.
    pub max_staleness: Duration,
    /// How long a reconcile waits for changes an earlier one left in flight
    /// at cache-service (GetChangeOutcomes' wait) before planning around them.
    pub outcome_wait: Duration,
}

/// Pending intents older than this (a day) claim nothing and are purged.
pub const INTENT_MAX_AGE_MS: i64 = 24 * 3600 * 1000;

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// What a missing/drift check found, and the provider's records it saw.
struct Checked {
    outcome: CheckOutcome,
    records: HashMap<String, DnsRecord>,
}

/// A planned reconcile handed to the task that applies and records it.
struct Applied {
    specs: Vec<RecordSpec>,
    plan: planner::Plan,
    previous: Vec<store::DeclRow>,
    decl_stamp: i64,
    out: Vec<PlannedChange>,
    generation: u64,
    t0: Instant,
}

/// The state key of the last sweep.
const LAST_SWEEP: &str = "last_sweep";

/// The last sweep, as persisted.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct LastSweep {
    at: i64,
    deleted: u64,
    skipped_reason: String,
}

/// The tracker; one per tracking-service.
pub struct Tracker {
    db: Db,
    client: CacheClient,
    clock: SharedClock,
    settings: Settings,
    /// Held by every reconcile, sweep and check; owned (`lock_owned`) by the
    /// detached tasks that write, so a dropped caller never releases it early.
    ops: Arc<Mutex<()>>,
    zone: OnceCell<ZoneInfo>,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// The name of an action, for logs and messages.
pub fn action_name(a: ChangeAction) -> &'static str {
    match a {
        ChangeAction::Create => "create",
        ChangeAction::Update => "update",
        ChangeAction::Adopt => "adopt",
        ChangeAction::Conflict => "conflict",
        ChangeAction::Orphan => "orphan",
        ChangeAction::Unorphan => "unorphan",
        ChangeAction::Unchanged => "unchanged",
        ChangeAction::Unspecified => "unspecified",
    }
}

fn input_of(spec: &RecordSpec) -> RecordInput {
    RecordInput {
        r#type: spec.rtype.as_str().to_string(),
        name: spec.name.as_str().to_string(),
        content: spec.content.clone(),
        ttl: spec.ttl,
        proxied: spec.proxied,
        priority: spec.priority.map(u32::from),
        comment: String::new(),
    }
}

fn metadata(app_managed: bool, source: &str, why: &str) -> String {
    serde_json::json!({ "app_managed": app_managed, "source": source, "why": why }).to_string()
}

/// A tracked row for provider record `r`, keeping the timestamps (and the
/// orphan clock) of `old` when the (name, type) was tracked before.
fn row_from(
    r: &DnsRecord,
    old: Option<&TrackedRow>,
    app_managed: bool,
    source: &str,
    why: &str,
    now: i64,
) -> TrackedRow {
    TrackedRow {
        provider: r.provider.clone(),
        zone: r.zone.clone(),
        record_id: r.record_id.clone(),
        rtype: r.r#type.clone(),
        name: r.name.clone(),
        content: r.content.clone(),
        ttl: num::to_db(r.ttl),
        proxied: r.proxied,
        priority: r.priority.map(num::to_db),
        fingerprint: r.fingerprint.clone(),
        app_managed,
        source: old
            .map(|o| o.source.clone())
            .unwrap_or_else(|| source.to_string()),
        is_orphaned: false,
        orphaned_at: None,
        is_missing: false,
        missing_since: None,
        drift: String::new(),
        tracked_at: old.map_or(now, |o| o.tracked_at),
        updated_at: now,
        first_seen: old.map_or(now, |o| o.first_seen),
        metadata: metadata(app_managed, old.map_or(source, |o| o.source.as_str()), why),
    }
}

/// Whether the tracked row already says what the provider holds.
fn row_current(t: &TrackedRow, r: &DnsRecord) -> bool {
    t.record_id == r.record_id
        && t.name == r.name
        && t.rtype == r.r#type
        && t.content == r.content
        && t.ttl == num::to_db(r.ttl)
        && t.proxied == r.proxied
        && t.priority == r.priority.map(num::to_db)
        && t.fingerprint == r.fingerprint
        && !t.is_missing
        && t.drift.is_empty()
}

/// The state name of a tracked row.
pub fn state_of(t: &TrackedRow) -> &'static str {
    if t.is_orphaned {
        "orphaned"
    } else if t.is_missing {
        "missing"
    } else if !t.app_managed {
        "unmanaged"
    } else {
        "active"
    }
}

/// A tracked row as the API shows it; `sources` lists every declaring source.
pub fn row_to_proto(t: TrackedRow, sources: &[String]) -> TrackedRecord {
    let state = state_of(&t).to_string();
    let mut meta: serde_json::Value =
        serde_json::from_str(&t.metadata).unwrap_or_else(|_| serde_json::json!({}));
    if let Some(m) = meta.as_object_mut() {
        m.insert("app_managed".into(), t.app_managed.into());
        m.insert("sources".into(), sources.to_vec().into());
        if !t.drift.is_empty() {
            m.insert("drift".into(), t.drift.clone().into());
        }
    }
    TrackedRecord {
        record_id: t.record_id,
        provider: t.provider,
        zone: t.zone,
        r#type: t.rtype,
        name: t.name,
        content: t.content,
        ttl: num::from_db(t.ttl),
        proxied: t.proxied,
        priority: t.priority.map(num::from_db),
        fingerprint: t.fingerprint,
        app_managed: t.app_managed,
        is_orphaned: t.is_orphaned,
        orphaned_at: t.orphaned_at.map(timestamp_ms),
        tracked_at: Some(timestamp_ms(t.tracked_at)),
        first_seen: Some(timestamp_ms(t.first_seen)),
        updated_at: Some(timestamp_ms(t.updated_at)),
        source: t.source,
        metadata: meta.to_string(),
        missing: t.is_missing,
        state,
    }
}

impl Tracker {
    /// A tracker over `db`, reaching the provider through `client`.
    pub fn new(db: Db, client: CacheClient, clock: SharedClock, settings: Settings) -> Self {
        Self {
            db,
            client,
            clock,
            settings,
            ops: Arc::new(Mutex::new(())),
            zone: OnceCell::new(),
        }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The cache-service client.
    pub fn client(&self) -> &CacheClient {
        &self.client
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The zone and its provider's capabilities, asked of cache-service once
    /// and then kept. A cache-service that reports no capabilities (older than
    /// this tracking-service) is refused: guessing them could, for one,
    /// un-proxy every proxied record as "drifted".
    pub async fn zone(&self) -> Result<&ZoneInfo, TrackingError> {
        self.zone
            .get_or_try_init(|| async {
                let st = self.client.status().await?;
                let zone = Hostname::parse("zone", &st.zone).map_err(|e| {
                    TrackingError::FailedPrecondition(format!(
                        "cache-service reports an invalid zone: {e}"
                    ))
                })?;
                if let Some(want) = &self.settings.zone
                    && *want != zone
                {
                    return Err(TrackingError::FailedPrecondition(format!(
                        "DNS_ZONE is {want} but cache-service at {} manages {zone}",
                        self.client.host()
                    )));
                }
                let Some(caps) = &st.capabilities else {
                    return Err(TrackingError::FailedPrecondition(format!(
                        "cache-service at {} reports no provider capabilities; upgrade it to this version",
                        self.client.host()
                    )));
                };
                Ok(ZoneInfo {
                    zone,
                    rules: trafego_proto::validate::ProviderRules::from_proto(caps),
                })
            })
            .await
    }

    /// Validates and reconciles one source's declaration (the `Reconcile` RPC).
    /// Everything that can be checked without cache-service is checked
    /// first, so bad input is INVALID_ARGUMENT even while cache-service is down.
    pub async fn reconcile(
        self: &Arc<Self>,
        source: &str,
        records: &[trafego_proto::tracking::DesiredRecord],
        dry_run: bool,
        force: bool,
    ) -> Result<ReconcileResponse, TrackingError> {
        let source = desired::source("source", source)?;
        if source == MANAGED_SOURCE {
            return Err(desired_error(
                "source",
                format!("{MANAGED_SOURCE:?} is reserved for MANAGED_HOSTNAMES"),
            ));
        }
        if records.len() > desired::MAX_RECORDS {
            return Err(desired_error(
                "records",
                format!(
                    "{} records; at most {} per call",
                    records.len(),
                    desired::MAX_RECORDS
                ),
            ));
        }
        desired::precheck("records", records, &self.settings.defaults)?;
        let zone = self.zone().await?;
        let specs = desired::validate_all("records", records, &self.settings.defaults, zone)?;
        self.reconcile_specs(&source, specs, dry_run, force).await
    }

    /// Reconciles MANAGED_HOSTNAMES (the built-in source). Its entries were
    /// checked at start; here they are checked against the zone.
    pub async fn reconcile_managed(self: &Arc<Self>) -> Result<ReconcileResponse, TrackingError> {
        let zone = self.zone().await?;
        let records: Vec<_> = self
            .settings
            .managed
            .iter()
            .map(desired::from_managed)
            .collect();
        let specs =
            desired::validate_all("MANAGED_HOSTNAMES", &records, &self.settings.defaults, zone)?;
        // The configuration is a deliberate declaration: the guards, which
        // protect against a watcher suddenly seeing nothing, do not apply.
        self.reconcile_specs(MANAGED_SOURCE, specs, false, true)
            .await
    }

    /// What cache-service's change journal says became of every pending
    /// intent (the change-id protocol), waiting up to `outcome_wait` for
    /// changes still in flight. An intent it cannot vouch for (another
    /// journal, or no answer) is unvouched: claimed by content at best.
    async fn resolve_intents(&self) -> Result<HashMap<String, IntentState>, TrackingError> {
        let intents = self
            .db
            .run(|c| Ok::<_, TrackingError>(store::intents(c)?))
            .await?;
        if intents.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<String> = intents.iter().map(|i| i.id.clone()).collect();
        let (known, journal) = match self.client.outcomes(&ids, self.settings.outcome_wait).await {
            Ok(k) => k,
            Err(e @ (TrackingError::Unavailable(_) | TrackingError::DeadlineExceeded(_))) => {
                return Err(e);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cache-service could not say what became of earlier writes; they are matched by content");
                return Ok(HashMap::new());
            }
        };
        let mut out = HashMap::with_capacity(intents.len());
        for (i, k) in intents.iter().zip(known) {
            let state = match k.state {
                ChangeState::Applied => IntentState::Applied(k.record_id),
                ChangeState::Failed => IntentState::NotApplied,
                ChangeState::Unknown if !journal.is_empty() && i.journal_id == journal => {
                    IntentState::NotApplied
                }
                ChangeState::InFlight => {
                    IntentState::Pending("cache-service is still applying it".into())
                }
                ChangeState::Unsettled => IntentState::Pending(k.message),
                ChangeState::Unknown | ChangeState::Unspecified => IntentState::Unvouched,
            };
            out.insert(i.id.clone(), state);
        }
        let applied = out
            .values()
            .filter(|s| matches!(s, IntentState::Applied(_)))
            .count();
        tracing::info!(
            pending = intents.len(),
            applied,
            "asked cache-service what became of writes earlier reconciles did not hear back about"
        );
        Ok(out)
    }

    /// Waits until no reconcile, sweep or check is in flight (for shutdown).
    pub async fn idle(&self) {
        let _ops = self.ops.lock().await;
    }

    async fn reconcile_specs(
        self: &Arc<Self>,
        source: &str,
        specs: Vec<RecordSpec>,
        dry_run: bool,
        force: bool,
    ) -> Result<ReconcileResponse, TrackingError> {
        let t0 = Instant::now();
        let ops = self.ops.clone().lock_owned().await;
        // First learn what became of writes earlier reconciles never heard
        // back about (waiting for those still in flight), so the listing
        // below already holds what they produced.
        let outcomes = self.resolve_intents().await?;
        let staleness =
            u32::try_from(self.settings.max_staleness.as_secs().max(1)).unwrap_or(u32::MAX);
        let (cache, generation) = self.client.list_all(staleness).await?;
        let names: Vec<String> = specs.iter().map(|s| s.name.as_str().to_string()).collect();
        // The provider ids held at the declared names: a tracked record
        // renamed there is found by its id.
        let ids: Vec<String> = {
            let wanted: HashSet<&str> = names.iter().map(String::as_str).collect();
            cache
                .iter()
                .filter(|r| wanted.contains(r.name.as_str()))
                .map(|r| r.record_id.clone())
                .collect()
        };
        let now = self.now();
        let src = source.to_string();
        let mut input = self
            .db
            .run(move |c| {
                Ok::<_, TrackingError>(store::load_plan_input(c, &src, &names, &ids, now)?)
            })
            .await?;
        input.outcomes = outcomes;
        let timing = Timing {
            now,
            intent_max_age_ms: INTENT_MAX_AGE_MS,
        };
        let plan = planner::plan(source, &specs, &cache, &input, timing);
        self.guards(source, &plan, specs.len(), force)?;

        let out: Vec<PlannedChange> = plan
            .changes
            .iter()
            .map(|p| PlannedChange {
                action: p.action as i32,
                hostname: p.name.clone(),
                r#type: p.rtype.clone(),
                record_id: p.record_id(),
                reason: p.reason.clone(),
                content: p.content(),
                applied: false,
                code: if p.held { Code::Unavailable as i32 } else { 0 },
            })
            .collect();
        if dry_run {
            let summary = summarize(&plan.changes, &out, true);
            return Ok(ReconcileResponse {
                changes: out,
                summary: Some(summary),
                dry_run: true,
                cache_generation: generation,
            });
        }

        // From the journal to the record, the work runs in its own task that
        // holds the lock: a caller that hangs up or times out never cuts it
        // between the provider's answer and the record of it, and the next
        // reconcile waits for it.
        let me = self.clone();
        let source = source.to_string();
        let run = Applied {
            specs,
            plan,
            previous: input.previous,
            decl_stamp: input.decl_stamp,
            out,
            generation,
            t0,
        };
        trafego_common::mesh::spawn_in_request(async move {
            let _ops = ops;
            me.apply_and_record(&source, run).await
        })
        .await
        .map_err(|e| TrackingError::Internal(format!("reconcile task failed: {e}")))?
    }

    /// Journals the plan's writes, sends them to cache-service, and records
    /// what the provider accepted, with the plan's other changes, in one
    /// transaction. Runs under the lock, detached from the caller.
    async fn apply_and_record(
        &self,
        source: &str,
        run: Applied,
    ) -> Result<ReconcileResponse, TrackingError> {
        let Applied {
            specs,
            plan,
            previous,
            decl_stamp,
            mut out,
            generation,
            t0,
        } = run;
        let now = self.now();
        // Provider writes: creates and updates, in one batch (chunked), each
        // journaled first.
        let run_id = format!("{:016x}", rand::random::<u64>());
        let journal_id = self.client.journal_id();
        let mut writes: Vec<Change> = Vec::new();
        let mut write_of: Vec<usize> = Vec::new();
        let mut intents: Vec<store::IntentRow> = Vec::new();
        for (i, p) in plan.changes.iter().enumerate() {
            let Some(spec) = &p.spec else { continue };
            if p.held {
                continue;
            }
            let (kind, action, record_id) = match p.action {
                ChangeAction::Create if !p.claimed => (
                    change::Kind::Create(input_of(spec)),
                    store::INTENT_CREATE,
                    String::new(),
                ),
                ChangeAction::Update => (
                    change::Kind::Update(UpdateChange {
                        record_id: p.record_id(),
                        record: Some(input_of(spec)),
                    }),
                    store::INTENT_UPDATE,
                    p.record_id(),
                ),
                _ => continue,
            };
            let change_id = p
                .change_id
                .clone()
                .unwrap_or_else(|| format!("{run_id}:{i}"));
            intents.push(store::IntentRow {
                id: change_id.clone(),
                source: source.to_string(),
                action: action.to_string(),
                record_id,
                name: spec.name.as_str().to_string(),
                rtype: spec.rtype.as_str().to_string(),
                content: spec.content.clone(),
                ttl: num::to_db(spec.ttl),
                proxied: spec.proxied,
                priority: spec.priority.map(i32::from),
                created_at: now,
                journal_id: journal_id.clone(),
            });
            writes.push(Change {
                kind: Some(kind),
                change_id,
            });
            write_of.push(i);
        }
        let intent_ids: Vec<String> = intents.iter().map(|i| i.id.clone()).collect();
        if !intents.is_empty() {
            self.db
                .run(move |c| Ok::<_, TrackingError>(store::write_intents(c, &intents)?))
                .await?;
        }
        // A call that got no answer leaves every change of it unknown: the
        // intents stay journaled, the rest of the plan is recorded, and a
        // later reconcile asks cache-service what became of them.
        let outcomes = if writes.is_empty() {
            Vec::new()
        } else {
            let n = writes.len();
            match self.client.apply(writes).await {
                Ok(o) => o,
                Err(e) => {
                    let code = match &e {
                        TrackingError::DeadlineExceeded(_) => Code::DeadlineExceeded,
                        TrackingError::Cache(s) => s.code(),
                        _ => Code::Unavailable,
                    };
                    let uncertain = !matches!(e, TrackingError::Cache(_));
                    let message = e.to_string();
                    (0..n)
                        .map(|_| cache_client::ChangeOutcome {
                            code: code as i32,
                            message: message.clone(),
                            record: None,
                            uncertain,
                        })
                        .collect()
                }
            }
        };
        let mut commit = Commit {
            source: source.to_string(),
            orphan_reason: format!("{source} no longer declares it and no other source does"),
            purge_intents_before: Some(now.saturating_sub(INTENT_MAX_AGE_MS)),
            ..Default::default()
        };
        let mut written: HashMap<usize, DnsRecord> = HashMap::new();
        for ((o, &i), intent) in outcomes.into_iter().zip(&write_of).zip(intent_ids) {
            // An outcome nobody heard keeps its intent; any other resolves it.
            if !o.uncertain {
                commit.clear_intents.push(intent);
            }
            match (o.code, o.record) {
                (0, Some(r)) => {
                    written.insert(i, r);
                }
                (0, None) => {
                    out[i].code = Code::Internal as i32;
                    out[i].reason =
                        "cache-service accepted the change but returned no record".into();
                }
                (code, _) if o.uncertain => {
                    out[i].code = code;
                    out[i].reason = format!(
                        "outcome not known yet ({}); cache-service settles it and the next \
                         reconcile learns what became of it",
                        o.message
                    );
                }
                (code, _) => {
                    out[i].code = code;
                    out[i].reason = format!("the provider refused it: {}", o.message);
                }
            }
        }

        // One transaction records what the provider accepted.
        for (i, p) in plan.changes.iter().enumerate() {
            let old = p.tracked.as_ref();
            if !p.held {
                commit.clear_intents.extend(p.clear_intents.iter().cloned());
            }
            let record = |row: TrackedRow, commit: &mut Commit| match old {
                Some(o) => commit.replace.push((o.record_id.clone(), row)),
                None => commit.insert.push(row),
            };
            match p.action {
                ChangeAction::Create | ChangeAction::Update => {
                    if let Some(r) = written.get(&i) {
                        out[i].record_id = r.record_id.clone();
                        out[i].applied = true;
                        let why = match (p.action, p.claimed) {
                            (ChangeAction::Create, _) => format!("created for {source}"),
                            (_, true) => format!(
                                "created by an earlier reconcile that did not finish; updated for {source}"
                            ),
                            _ => format!("updated for {source}"),
                        };
                        record(row_from(r, old, true, source, &why, now), &mut commit);
                    } else if p.claimed
                        && let Some(r) = &p.cache
                    {
                        // The app's own record: tracked as app-managed even
                        // when the update putting it right failed.
                        if p.action == ChangeAction::Create {
                            out[i].applied = true;
                        }
                        let why = format!(
                            "created by an earlier reconcile that did not finish; claimed for {source}"
                        );
                        record(row_from(r, old, true, source, &why, now), &mut commit);
                    }
                }
                ChangeAction::Adopt => {
                    let Some(r) = &p.cache else { continue };
                    out[i].applied = true;
                    let row = row_from(
                        r,
                        old,
                        false,
                        source,
                        &format!("pre-existing record adopted for {source}; not app-managed"),
                        now,
                    );
                    record(row, &mut commit);
                }
                ChangeAction::Unorphan | ChangeAction::Unchanged => {
                    out[i].applied = true;
                    if let (Some(t), Some(r)) = (old, &p.cache) {
                        if p.action == ChangeAction::Unorphan {
                            commit.unorphan.push(t.record_id.clone());
                        }
                        if !row_current(t, r) {
                            let mut row = row_from(r, Some(t), t.app_managed, source, "", now);
                            row.metadata = t.metadata.clone();
                            if p.action == ChangeAction::Unchanged {
                                row.is_orphaned = t.is_orphaned;
                                row.orphaned_at = t.orphaned_at;
                            }
                            commit.replace.push((t.record_id.clone(), row));
                        }
                    }
                }
                ChangeAction::Orphan => {
                    if let Some(t) = old {
                        out[i].applied = true;
                        commit.orphan.push(t.record_id.clone());
                    }
                }
                ChangeAction::Conflict | ChangeAction::Unspecified => {}
            }
        }
        // Declarations: replace this source's with the new set, writing only
        // differences. A changed declaration keeps its place in line; a new
        // one is stamped after every stored one. A declaration that lost a
        // conflict is stored too: it takes effect once every earlier
        // disagreeing declaration is gone, and keeps the record from being
        // orphaned while it stands.
        let previous: HashMap<(&str, &str), &store::DeclRow> = previous
            .iter()
            .map(|d| ((d.name.as_str(), d.rtype.as_str()), d))
            .collect();
        let mut kept = HashSet::new();
        for spec in &specs {
            let key = (spec.name.as_str(), spec.rtype.as_str());
            kept.insert(key);
            let mut d = planner::decl_of(source, spec, now);
            match previous.get(&key) {
                Some(p) if p.same_spec(&d) => {}
                Some(p) => {
                    d.declared_at = p.declared_at;
                    commit.decl_delete.push((p.name.clone(), p.rtype.clone()));
                    commit.decl_insert.push(d);
                }
                None => {
                    d.declared_at = decl_stamp;
                    commit.decl_insert.push(d);
                }
            }
        }
        for (key, d) in &previous {
            if !kept.contains(key) {
                commit.decl_delete.push((d.name.clone(), d.rtype.clone()));
            }
        }
        commit.clear_intents.sort_unstable();
        commit.clear_intents.dedup();
        let commit_res = self
            .db
            .run(move |c| Ok::<_, TrackingError>(store::commit(c, &commit, now)?))
            .await;
        if let Err(e) = commit_res {
            tracing::error!(
                error = %e,
                source,
                "the provider accepted changes that could not be recorded; the pending-intent journal lets the next reconcile claim them"
            );
            return Err(e);
        }
        let summary = summarize(&plan.changes, &out, false);
        tracing::info!(
            source,
            created = summary.created,
            updated = summary.updated,
            adopted = summary.adopted,
            conflicts = summary.conflicts,
            orphaned = summary.orphaned,
            unorphaned = summary.unorphaned,
            unchanged = summary.unchanged,
            failed = summary.failed,
            duration_ms = num::elapsed_ms(t0),
            generation,
            "reconciled"
        );
        self.export_counts().await;
        let response = ReconcileResponse {
            changes: out,
            summary: Some(summary),
            dry_run: false,
            cache_generation: generation,
        };
        match incomplete(&response) {
            Some((code, message)) => Err(TrackingError::Incomplete {
                code,
                message,
                response: Box::new(response),
            }),
            None => Ok(response),
        }
    }

    /// Invariant 7: refuses a source that suddenly declares nothing, or a
    /// plan orphaning too large a share of a source's records, unless forced.
    fn guards(
        &self,
        source: &str,
        plan: &planner::Plan,
        declared: usize,
        force: bool,
    ) -> Result<(), TrackingError> {
        if force {
            return Ok(());
        }
        if plan.previous > 0 && declared == 0 {
            metrics::counter!("trafego_guard_refusals_total", "guard" => "empty_declaration")
                .increment(1);
            return Err(TrackingError::FailedPrecondition(format!(
                "guard (empty declaration): source {source} declared {} records and now declares none; \
                 nothing was changed. Set force to apply it",
                plan.previous
            )));
        }
        let ratio = self.settings.max_orphan_ratio;
        if plan.previous >= 10 && plan.dropped as f64 > ratio * plan.previous as f64 {
            metrics::counter!("trafego_guard_refusals_total", "guard" => "max_orphan_ratio")
                .increment(1);
            return Err(TrackingError::FailedPrecondition(format!(
                "guard (MAX_ORPHAN_RATIO {ratio}): source {source} would stop declaring {} of its {} records; \
                 nothing was changed. Set force to apply it",
                plan.dropped, plan.previous
            )));
        }
        Ok(())
    }

    /// Re-checks missing and drifted records against cache-service's view,
    /// when that view is fresh. Returns `None` when the cache is stale.
    pub async fn check(&self) -> Result<Option<CheckOutcome>, TrackingError> {
        let _ops = self.ops.lock().await;
        Ok(self.check_locked(false).await?.map(|c| c.outcome))
    }

    /// The check, under the lock. With `dry_run` nothing is written.
    async fn check_locked(&self, dry_run: bool) -> Result<Option<Checked>, TrackingError> {
        let st = self.client.status().await?;
        if st.stale || !st.last_error.is_empty() {
            return Ok(None);
        }
        let t0 = Instant::now();
        let (records, _) = self.client.list_all(0).await?;
        let listed_ms = num::elapsed_ms(t0);
        let view: Vec<CacheView> = records
            .iter()
            .map(|r| CacheView {
                record_id: r.record_id.clone(),
                name: r.name.clone(),
                rtype: r.r#type.clone(),
                content: r.content.clone(),
                ttl: r.ttl,
                proxied: r.proxied,
                priority: r.priority,
            })
            .collect();
        let now = self.now();
        let o = self
            .db
            .run(move |c| {
                Ok::<_, TrackingError>(store::check_against_cache(c, &view, now, dry_run)?)
            })
            .await?;
        tracing::debug!(
            listed_ms,
            checked_ms = num::elapsed_ms(t0).saturating_sub(listed_ms),
            dry_run,
            "missing/drift check timings"
        );
        if !dry_run && (o.newly_missing > 0 || o.found_again > 0) {
            tracing::info!(
                newly_missing = o.newly_missing,
                found_again = o.found_again,
                missing = o.missing,
                drifted = o.drifted,
                "checked tracked records against the cache"
            );
        }
        let records = records
            .into_iter()
            .map(|r| (r.record_id.clone(), r))
            .collect();
        Ok(Some(Checked {
            outcome: o,
            records,
        }))
    }

    /// Runs the orphan sweep (the `RunOrphanSweep` RPC and the periodic loop).
    /// The sweep runs in its own task holding the lock, so a caller that
    /// hangs up never cuts it between a deletion and its record.
    pub async fn sweep(
        self: &Arc<Self>,
        dry_run: bool,
    ) -> Result<RunOrphanSweepResponse, TrackingError> {
        let t0 = Instant::now();
        let ops = self.ops.clone().lock_owned().await;
        let me = self.clone();
        trafego_common::mesh::spawn_in_request(async move {
            let _ops = ops;
            me.sweep_locked(dry_run, t0).await
        })
        .await
        .map_err(|e| TrackingError::Internal(format!("sweep task failed: {e}")))?
    }

    async fn sweep_locked(
        &self,
        dry_run: bool,
        t0: Instant,
    ) -> Result<RunOrphanSweepResponse, TrackingError> {
        let mut resp = RunOrphanSweepResponse {
            dry_run,
            ..Default::default()
        };
        let status = match self.client.status().await {
            Ok(s) => s,
            Err(e) => {
                resp.skipped_reason = format!("skipped: {}", public_message(e));
                resp.duration_ms = num::elapsed_ms(t0);
                if !dry_run {
                    self.save_sweep(&resp).await;
                }
                tracing::warn!(reason = %resp.skipped_reason, "orphan sweep skipped");
                return Ok(resp);
            }
        };
        let fresh = !status.stale && status.last_error.is_empty();
        // The provider's records as of this sweep, when the cache is fresh.
        let mut held: Option<HashMap<String, DnsRecord>> = None;
        if fresh {
            match self.check_locked(dry_run).await {
                Ok(Some(c)) => {
                    resp.missing = num::count_u32(c.outcome.newly_missing);
                    held = Some(c.records);
                }
                Ok(None) => {}
                Err(e) => {
                    resp.skipped_reason = format!("skipped: {}", public_message(e));
                    resp.duration_ms = num::elapsed_ms(t0);
                    if !dry_run {
                        self.save_sweep(&resp).await;
                    }
                    return Ok(resp);
                }
            }
        }
        let orphans = self
            .db
            .run(|c| Ok::<_, TrackingError>(store::orphans(c)?))
            .await?;
        let now = self.now();
        let grace = millis(self.settings.grace);
        let mut candidates = Vec::new();
        for o in orphans {
            if !o.app_managed {
                resp.unmanaged += 1;
            } else if self.settings.preserved.contains(&o.name) {
                resp.preserved += 1;
            } else if now.saturating_sub(o.orphaned_at.unwrap_or(now)) < grace {
                resp.within_grace += 1;
            } else {
                candidates.push(o);
            }
        }
        let blocked = if !self.settings.cleanup {
            Some("cleanup is disabled (CLEANUP_ORPHANED=false)".to_string())
        } else if !fresh || held.is_none() {
            Some(format!(
                "the provider cache is not fresh ({}); nothing is deleted until a refresh succeeds",
                if status.last_error.is_empty() {
                    "the last refresh is too old".to_string()
                } else {
                    format!("last refresh failed: {}", status.last_error)
                }
            ))
        } else {
            None
        };
        let grace_txt = humantime::format_duration(self.settings.grace).to_string();
        let swept = |o: &store::OrphanRow, deleted: bool, reason: String| SweptRecord {
            record_id: o.record_id.clone(),
            name: o.name.clone(),
            r#type: o.rtype.clone(),
            orphaned_at: o.orphaned_at.map(timestamp_ms),
            deleted,
            reason,
        };
        // A record whose provider copy is no longer what was tracked (renamed,
        // retyped, new content) may be someone else's now: never deleted.
        if let Some(held) = &held {
            let mut changed = 0u64;
            candidates.retain(|o| {
                let Some(r) = held.get(&o.record_id) else {
                    return true;
                };
                if r.name == o.name
                    && r.r#type == o.rtype
                    && desired::same_content(&r.r#type, &r.content, &o.content)
                {
                    return true;
                }
                changed += 1;
                resp.deleted.push(swept(
                    o,
                    false,
                    format!(
                        "not deleted: changed at the provider since it was tracked (tracked as {} {} {}, \
                         the provider now holds {} {} {}); it may no longer be this app's",
                        o.rtype, o.name, o.content, r.r#type, r.name, r.content
                    ),
                ));
                false
            });
            resp.changed_at_provider = num::count_u32(changed);
            if changed > 0 && !dry_run {
                metrics::counter!("trafego_orphans_kept_total", "reason" => "changed_at_provider")
                    .increment(changed);
            }
        }
        if let Some(reason) = &blocked {
            resp.skipped_reason = reason.clone();
        }
        // Ran: it could delete (cleanup on, cache fresh); never beside a reason it could not.
        resp.ran = blocked.is_none();
        if dry_run || blocked.is_some() {
            if dry_run {
                resp.deleted.extend(candidates.iter().map(|o| {
                    swept(
                        o,
                        false,
                        format!(
                            "would delete: orphaned longer than the grace period ({grace_txt})"
                        ),
                    )
                }));
            }
        } else if !candidates.is_empty() {
            let changes: Vec<Change> = candidates
                .iter()
                .map(|o| Change {
                    kind: Some(change::Kind::Delete(DeleteChange {
                        record_id: o.record_id.clone(),
                    })),
                    // A deletion is safe to send again (a second one finds
                    // nothing): no journal entry needed.
                    change_id: String::new(),
                })
                .collect();
            let outcomes = match self.client.apply(changes).await {
                Ok(o) => o,
                Err(e) => {
                    resp.ran = false;
                    resp.skipped_reason = format!("skipped: {}", public_message(e));
                    resp.duration_ms = num::elapsed_ms(t0);
                    self.save_sweep(&resp).await;
                    return Ok(resp);
                }
            };
            let reason = format!("orphaned longer than the grace period ({grace_txt})");
            let mut gone = Vec::new();
            for (o, res) in candidates.iter().zip(outcomes) {
                if res.code == 0 || res.code == Code::NotFound as i32 {
                    gone.push(o.record_id.clone());
                    resp.deleted.push(swept(o, true, reason.clone()));
                } else {
                    resp.deleted.push(swept(
                        o,
                        false,
                        format!("the provider refused the deletion: {}", res.message),
                    ));
                }
            }
            let r = reason.clone();
            self.db
                .run(move |c| Ok::<_, TrackingError>(store::record_deleted(c, &gone, &r, now)?))
                .await?;
        }
        resp.duration_ms = num::elapsed_ms(t0);
        if !dry_run {
            self.save_sweep(&resp).await;
        }
        let deleted = resp.deleted.iter().filter(|d| d.deleted).count();
        if !dry_run {
            metrics::counter!("trafego_orphans_deleted_total").increment(deleted as u64);
            self.export_counts().await;
        }
        tracing::info!(
            dry_run,
            deleted,
            within_grace = resp.within_grace,
            preserved = resp.preserved,
            unmanaged = resp.unmanaged,
            missing = resp.missing,
            skipped_reason = %resp.skipped_reason,
            duration_ms = resp.duration_ms,
            "orphan sweep"
        );
        Ok(resp)
    }

    async fn save_sweep(&self, resp: &RunOrphanSweepResponse) {
        let last = LastSweep {
            at: self.now(),
            deleted: resp.deleted.iter().filter(|d| d.deleted).count() as u64,
            skipped_reason: resp.skipped_reason.clone(),
        };
        let json = serde_json::to_string(&last).unwrap_or_default();
        let res = self
            .db
            .run(move |c| Ok::<_, TrackingError>(store::state_set(c, LAST_SWEEP, &json)?))
            .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "could not record the last sweep");
        }
    }

    /// Publishes the tracked-record counts by state as metrics.
    pub async fn export_counts(&self) {
        match self
            .db
            .run(|c| Ok::<_, TrackingError>(store::counts(c)?))
            .await
        {
            Ok(c) => set_count_gauges(&c),
            Err(e) => tracing::warn!(error = %e, "could not count tracked records"),
        }
    }

    /// Counts, the last sweep and cache-service reachability.
    pub async fn status(&self) -> Result<GetTrackerStatusResponse, TrackingError> {
        let (counts, last) = self
            .db
            .run(|c| {
                let counts = store::counts(c)?;
                let last = store::state_get(c, LAST_SWEEP)?;
                Ok::<_, TrackingError>((counts, last))
            })
            .await?;
        set_count_gauges(&counts);
        let last: Option<LastSweep> = last.and_then(|j| serde_json::from_str(&j).ok());
        Ok(GetTrackerStatusResponse {
            total: num::count(counts.total),
            active: num::count(counts.active),
            orphaned: num::count(counts.orphaned),
            missing: num::count(counts.missing),
            unmanaged: num::count(counts.unmanaged),
            last_sweep_at: last.as_ref().map(|l| timestamp_ms(l.at)),
            last_sweep_deleted: last.as_ref().map_or(0, |l| l.deleted),
            last_sweep_skipped_reason: last.map(|l| l.skipped_reason).unwrap_or_default(),
            cache_service_reachable: self.client.reachable(),
            cache_generation: self.client.generation(),
            cleanup_enabled: self.settings.cleanup,
            grace_period_seconds: self.settings.grace.as_secs(),
            // The built-in sources are filled in by the gRPC edge.
            sources: Vec::new(),
        })
    }

    /// Starts tracking a record that cache-service holds (`TrackRecord`).
    /// A record already tracked gets the requested `app_managed` flag (and
    /// source, when one is given): this is how a caller explicitly takes over
    /// a record adopted as not managed, or gives one up.
    pub async fn track(
        &self,
        record_id: &str,
        app_managed: bool,
        source: &str,
    ) -> Result<TrackedRecord, TrackingError> {
        let _ops = self.ops.lock().await;
        let Some(r) = self.client.get_record(record_id).await? else {
            return Err(TrackingError::NotFound(format!(
                "cache-service holds no record {record_id}; refresh its cache or check the id"
            )));
        };
        let id = r.record_id.clone();
        let existing = self
            .db
            .run(move |c| Ok::<_, TrackingError>(store::get(c, &id)?))
            .await?;
        let now = self.now();
        let why = if app_managed {
            "tracked by hand as app-managed"
        } else {
            "tracked by hand; not app-managed"
        };
        let mut row = row_from(&r, existing.as_ref(), app_managed, source, why, now);
        if let Some(e) = &existing {
            row.is_orphaned = e.is_orphaned;
            row.orphaned_at = e.orphaned_at;
            if !source.is_empty() {
                row.source = source.to_string();
            }
        }
        let decl = (!source.is_empty()).then(|| store::DeclRow {
            source: source.to_string(),
            name: r.name.clone(),
            rtype: r.r#type.clone(),
            content: r.content.clone(),
            ttl: num::to_db(r.ttl),
            proxied: r.proxied,
            priority: r.priority.map(num::to_db),
            declared_at: now,
            updated_at: now,
        });
        let saved = row.clone();
        self.db
            .run(move |c| Ok::<_, TrackingError>(store::track(c, &row, decl.as_ref())?))
            .await?;
        tracing::info!(record_id, app_managed, source, "record tracked by hand");
        let sources = if source.is_empty() {
            vec![]
        } else {
            vec![source.to_string()]
        };
        Ok(row_to_proto(saved, &sources))
    }

    /// Stops tracking a record; never deletes it at the provider.
    pub async fn untrack(&self, record_id: &str) -> Result<(), TrackingError> {
        let _ops = self.ops.lock().await;
        let id = record_id.to_string();
        let found = self
            .db
            .run(move |c| Ok::<_, TrackingError>(store::untrack(c, &id)?))
            .await?;
        if !found {
            return Err(TrackingError::NotFound(format!(
                "record {record_id} is not tracked"
            )));
        }
        tracing::info!(record_id, "record untracked (left at the provider)");
        Ok(())
    }
}

/// Whether a reconcile's changes failed for a transient reason (cache-service
/// or the provider unreachable, rate limited, too slow): the code the call
/// must end with and why. Refusals and conflicts are results, not failures.
fn incomplete(r: &ReconcileResponse) -> Option<(Code, String)> {
    let transient = |c: i32| {
        matches!(
            Code::from_i32(c),
            Code::Unavailable | Code::ResourceExhausted | Code::DeadlineExceeded
        )
    };
    let failed: Vec<&PlannedChange> = r.changes.iter().filter(|c| transient(c.code)).collect();
    let first = failed.first()?;
    let code = Code::from_i32(first.code);
    Some((
        code,
        format!(
            "{} of {} changes did not go through ({code:?}: {} {}: {}); everything else was \
             applied and recorded, and the same call again picks up where this one stopped; \
             the summary and the changes that did not succeed are in the status details \
             (trafego.tracking.v1.ReconcileResponse)",
            failed.len(),
            r.changes.len(),
            first.r#type,
            first.hostname,
            first.reason
        ),
    ))
}

/// What a caller may read of an error: its gRPC message, which for internal
/// errors is only "internal error (request id …)" (the detail is logged).
fn public_message(e: TrackingError) -> String {
    tonic::Status::from(e).message().to_string()
}

fn desired_error(field: &str, msg: String) -> TrackingError {
    TrackingError::Invalid(trafego_proto::validate::FieldError::new(field, msg))
}

fn summarize(plan: &[Planned], out: &[PlannedChange], dry_run: bool) -> ReconcileSummary {
    let mut s = ReconcileSummary::default();
    for (p, o) in plan.iter().zip(out) {
        if o.code != 0 {
            s.failed += 1;
            continue;
        }
        if !dry_run && !o.applied && p.action != ChangeAction::Conflict {
            continue;
        }
        match p.action {
            ChangeAction::Create => s.created += 1,
            ChangeAction::Update => s.updated += 1,
            ChangeAction::Adopt => s.adopted += 1,
            ChangeAction::Conflict => s.conflicts += 1,
            ChangeAction::Orphan => s.orphaned += 1,
            ChangeAction::Unorphan => s.unorphaned += 1,
            ChangeAction::Unchanged => s.unchanged += 1,
            ChangeAction::Unspecified => {}
        }
    }
    s
}

/// `trafego_tracked_records{state}` from one count query.
fn set_count_gauges(c: &store::Counts) {
    for (state, n) in [
        ("total", c.total),
        ("active", c.active),
        ("orphaned", c.orphaned),
        ("missing", c.missing),
        ("unmanaged", c.unmanaged),
    ] {
        metrics::gauge!("trafego_tracked_records", "state" => state).set(n as f64);
    }
}
