//! Reconcile: one source's declared set made true at the provider, under
//! the tracker's lock.
//!
//! First the change-id protocol: every pending intent (a write an earlier
//! reconcile sent but never recorded) is settled by asking cache-service what
//! became of it, waiting for changes still in flight, so the listing that
//! follows already holds what they produced. Then the plan (pure:
//! [`crate::plan`]), the guards (invariant 7), and, unless it is a dry run,
//! the apply task: writes journaled as intents, sent in one batch, and their
//! outcomes recorded with the rest of the plan in one transaction
//! ([`plan::writes_of`], [`plan::commit_of`]). That task holds the lock and
//! is detached from the caller, so a caller that hangs up or times out never
//! cuts it between the provider's answer and the record of it. A change that
//! failed for a transient reason makes the call end with that code
//! ([`incomplete`]), the response in its details.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::OwnedMutexGuard;
use tonic::Code;
use trafego_common::num;
use trafego_proto::cache::{ChangeState, DnsRecord};
use trafego_proto::tracking::{PlannedChange, ReconcileResponse};
use trafego_proto::validate::RecordSpec;

use crate::cache_client;
use crate::convert::{planned_changes, summarize};
use crate::error::TrackingError;
use crate::ownership::markers;
use crate::plan::{self, IntentState, Timing};
use crate::store;
use crate::tracker::{INTENT_MAX_AGE_MS, Tracker};

/// A planned reconcile handed to the task that applies and records it.
struct Applied {
    specs: Vec<RecordSpec>,
    plan: plan::Plan,
    previous: Vec<store::DeclRow>,
    decl_stamp: i64,
    out: Vec<PlannedChange>,
    generation: u64,
    t0: Instant,
    /// The cache view planned against, kept when markers are on (they are
    /// looked up in it).
    cache: Vec<DnsRecord>,
}

/// Plans `source` declaring `specs` under the held lock `ops`, and (unless
/// `dry_run`) applies and records the plan in a task of its own that keeps
/// the lock. `t0` is when the call began, before it waited for the lock.
pub(crate) async fn run(
    t: &Arc<Tracker>,
    ops: OwnedMutexGuard<()>,
    t0: Instant,
    source: &str,
    specs: Vec<RecordSpec>,
    dry_run: bool,
    force: bool,
) -> Result<ReconcileResponse, TrackingError> {
    // First learn what became of writes earlier reconciles never heard
    // back about (waiting for those still in flight), so the listing
    // below already holds what they produced.
    let outcomes = resolve_intents(t).await?;
    let staleness = u32::try_from(t.settings().max_staleness.as_secs().max(1)).unwrap_or(u32::MAX);
    let (cache, generation) = t.client().list_all(staleness).await?;
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
    let now = t.now();
    let src = source.to_string();
    let mut input = t
        .db()
        .run(move |c| Ok::<_, TrackingError>(store::load_plan_input(c, &src, &names, &ids, now)?))
        .await?;
    input.outcomes = outcomes;
    let timing = Timing {
        now,
        intent_max_age_ms: INTENT_MAX_AGE_MS,
    };
    let plan = plan::plan(source, &specs, &cache, &input, timing);
    let served: Vec<String> = t
        .zone()
        .await?
        .served()
        .iter()
        .map(|z| z.as_str().to_string())
        .collect();
    guards(t, source, &plan, specs.len(), &served, force)?;

    let out = planned_changes(&plan.changes);
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
    let me = t.clone();
    let source = source.to_string();
    let run = Applied {
        specs,
        plan,
        previous: input.previous,
        decl_stamp: input.decl_stamp,
        out,
        generation,
        t0,
        cache: if t.settings().ownership.is_some() {
            cache
        } else {
            Vec::new()
        },
    };
    trafego_common::mesh::spawn_in_request(async move {
        let _ops = ops;
        apply_and_record(&me, &source, run).await
    })
    .await
    .map_err(|e| TrackingError::Internal(format!("reconcile task failed: {e}")))?
}

/// What cache-service's change journal says became of every pending
/// intent (the change-id protocol), waiting up to `outcome_wait` for
/// changes still in flight. An intent it cannot vouch for (another
/// journal, or no answer) is unvouched: claimed by content at best.
async fn resolve_intents(t: &Tracker) -> Result<HashMap<String, IntentState>, TrackingError> {
    let intents = t
        .db()
        .run(|c| Ok::<_, TrackingError>(store::intents(c)?))
        .await?;
    if intents.is_empty() {
        return Ok(HashMap::new());
    }
    let ids: Vec<String> = intents.iter().map(|i| i.id.clone()).collect();
    let (known, journal) = match t.client().outcomes(&ids, t.settings().outcome_wait).await {
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

/// Journals the plan's writes, sends them to cache-service, and records
/// what the provider accepted, with the plan's other changes, in one
/// transaction. Runs under the lock, detached from the caller.
async fn apply_and_record(
    t: &Tracker,
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
        cache,
    } = run;
    let now = t.now();
    // Provider writes: creates and updates, in one batch (chunked), each
    // journaled first.
    let run_id = format!("{:016x}", rand::random::<u64>());
    let journal_id = t.client().journal_id();
    let plan::Writes {
        changes,
        intents,
        sent,
    } = plan::writes_of(&plan, source, &run_id, &journal_id, now);
    // Ownership markers ride with their records (one provider group each).
    let (changes, positions) = match &t.settings().ownership {
        Some(own) => {
            let zones = t.zone().await?.served().to_vec();
            let a = markers::attach(own, &zones, &plan, &sent, changes, &cache);
            if a.markers > 0 {
                tracing::debug!(
                    markers = a.markers,
                    "ownership markers written with this reconcile"
                );
            }
            (a.changes, a.positions)
        }
        None => {
            let n = changes.len();
            (changes, (0..n).collect())
        }
    };
    if !intents.is_empty() {
        t.db()
            .run(move |c| Ok::<_, TrackingError>(store::write_intents(c, &intents)?))
            .await?;
    }
    // A call that got no answer leaves every change of it unknown: the
    // intents stay journaled, the rest of the plan is recorded, and a
    // later reconcile asks cache-service what became of them.
    let outcomes = if changes.is_empty() {
        Vec::new()
    } else {
        match t.client().apply(changes).await {
            Ok(o) => {
                // The plan's own writes; a marker write that failed is
                // written again by the next reconcile (its mending).
                let own: HashSet<usize> = positions.iter().copied().collect();
                for (i, m) in o.iter().enumerate() {
                    if m.code != 0 && !own.contains(&i) {
                        tracing::warn!(code = m.code, message = %m.message, "an ownership marker write failed; the next reconcile writes it again");
                    }
                }
                positions.iter().map(|&p| o[p].clone()).collect()
            }
            Err(e) => {
                let code = match &e {
                    TrackingError::DeadlineExceeded(_) => Code::DeadlineExceeded,
                    TrackingError::Cache(s) => s.code(),
                    _ => Code::Unavailable,
                };
                let uncertain = !matches!(e, TrackingError::Cache(_));
                let message = e.to_string();
                positions
                    .iter()
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
    // One transaction records what the provider accepted, with the
    // plan's other changes.
    let declared = plan::Declared {
        source,
        specs: &specs,
        previous: &previous,
        decl_stamp,
        now,
        intent_max_age_ms: INTENT_MAX_AGE_MS,
    };
    let commit = plan::commit_of(&plan, &sent, outcomes, &declared, &mut out);
    let commit_res = t
        .db()
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
    t.export_counts().await;
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

/// The source's earlier declarations per served zone (the longest zone a
/// name lies in): how many there were, and how many are dropped now.
fn per_zone<'a>(plan: &plan::Plan, zones: &'a [String]) -> Vec<(&'a str, usize, usize)> {
    let mut out: Vec<(&str, usize, usize)> = zones.iter().map(|z| (z.as_str(), 0, 0)).collect();
    for (name, dropped) in &plan.previous_names {
        let home = out
            .iter_mut()
            .filter(|(z, _, _)| name == z || name.ends_with(&format!(".{z}")))
            .max_by_key(|(z, _, _)| z.len());
        if let Some((_, previous, d)) = home {
            *previous = previous.saturating_add(1);
            if *dropped {
                *d = d.saturating_add(1);
            }
        }
    }
    out
}

/// Invariant 7: refuses a source that suddenly declares nothing, or a
/// plan orphaning too large a share of a source's records, unless forced.
/// The share is checked over the whole source and, with several zones
/// served, in each zone on its own (a zone where the source had at least
/// [`GUARD_MIN_RECORDS`]), so a mass orphaning in one zone is never hidden
/// behind the size of another. A refusal refuses the whole call: one
/// declaration is applied whole or not at all.
fn guards(
    t: &Tracker,
    source: &str,
    plan: &plan::Plan,
    declared: usize,
    zones: &[String],
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
    let ratio = t.settings().max_orphan_ratio;
    let exact = |n: usize| f64::from(u32::try_from(n).unwrap_or(u32::MAX));
    let over = |dropped: usize, previous: usize| {
        previous >= GUARD_MIN_RECORDS && exact(dropped) > ratio * exact(previous)
    };
    if zones.len() > 1 {
        let over_in: Vec<String> = per_zone(plan, zones)
            .into_iter()
            .filter(|&(_, previous, dropped)| over(dropped, previous))
            .map(|(z, previous, dropped)| {
                format!("{dropped} of its {previous} records in zone {z}")
            })
            .collect();
        if !over_in.is_empty() {
            metrics::counter!("trafego_guard_refusals_total", "guard" => "max_orphan_ratio")
                .increment(1);
            return Err(TrackingError::FailedPrecondition(format!(
                "guard (MAX_ORPHAN_RATIO {ratio}, per zone): source {source} would stop declaring {}; \
                 nothing was changed. Set force to apply it",
                over_in.join(", ")
            )));
        }
    }
    if over(plan.dropped, plan.previous) {
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

/// The fewest records a source must have had (in all, or in one zone) for
/// the MAX_ORPHAN_RATIO guard to hold it: small sources change by large
/// shares in normal use.
const GUARD_MIN_RECORDS: usize = 10;

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
