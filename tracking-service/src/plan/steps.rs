//! The pure steps after planning: which provider writes a plan sends (each
//! with the intent journaled before it goes), and, once cache-service has
//! answered, what the reconcile records in one transaction.
//!
//! Neither reads nor writes anything: the reconcile task journals the
//! intents, sends the writes and commits what [`commit_of`] returns, so
//! every rule of what is recorded (which rows are inserted or rewritten,
//! orphaned or unorphaned, which intents are cleared, how declarations
//! change) is testable without a database or a cache-service.

use std::collections::{HashMap, HashSet};

use tonic::Code;
use trafego_common::num;
use trafego_proto::cache::{Change, DnsRecord, UpdateChange, change};
use trafego_proto::tracking::{ChangeAction, PlannedChange};
use trafego_proto::validate::RecordSpec;

use super::{Plan, decl_of};
use crate::cache_client::ChangeOutcome;
use crate::convert::{input_of, row_current, row_from};
use crate::store::{self, Commit, DeclRow, IntentRow, TrackedRow};

/// One write sent: the plan entry it carries out and its change id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The index of the change in the plan.
    pub index: usize,
    /// The change id, which is also the id of its intent.
    pub change_id: String,
}

/// The provider writes of a plan, in plan order.
#[derive(Debug, Default)]
pub struct Writes {
    /// The changes to send to cache-service, one per write.
    pub changes: Vec<Change>,
    /// The intent of each change, journaled before it is sent.
    pub intents: Vec<IntentRow>,
    /// Which plan entry each change carries out.
    pub sent: Vec<Sent>,
}

/// The writes of `plan` for `source`: a create (not claimed, not held) and an
/// update each become one change, under the change id of an earlier create
/// sent again or a new `<run_id>:<index>`, with its intent stamped `now`
/// and cache-service's `journal_id`. Nothing else is written to the provider.
pub fn writes_of(plan: &Plan, source: &str, run_id: &str, journal_id: &str, now: i64) -> Writes {
    let mut w = Writes::default();
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
        w.intents.push(IntentRow {
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
            journal_id: journal_id.to_string(),
        });
        w.changes.push(Change {
            kind: Some(kind),
            change_id: change_id.clone(),
            group: String::new(),
        });
        w.sent.push(Sent {
            index: i,
            change_id,
        });
    }
    w
}

/// What one reconcile declares, for the commit's declarations diff.
#[derive(Debug, Clone, Copy)]
pub struct Declared<'a> {
    /// The source reconciling.
    pub source: &'a str,
    /// What it declares now.
    pub specs: &'a [RecordSpec],
    /// What it declared before the call.
    pub previous: &'a [DeclRow],
    /// The `declared_at` of its new declarations.
    pub decl_stamp: i64,
    /// Now, in unix milliseconds.
    pub now: i64,
    /// Pending intents older than this are purged (too old to claim anything).
    pub intent_max_age_ms: i64,
}

/// What the reconcile records once cache-service has answered `sent` with
/// `outcomes` (one per write, in order): tracked rows for what the provider
/// accepted, claimed or adopted, orphans and unorphans, the declarations
/// diff and the intents resolved. `out` (one entry per plan entry) gets each
/// change's code, reason, record id and `applied` flag.
pub fn commit_of(
    plan: &Plan,
    sent: &[Sent],
    outcomes: Vec<ChangeOutcome>,
    declared: &Declared<'_>,
    out: &mut [PlannedChange],
) -> Commit {
    let (source, now) = (declared.source, declared.now);
    let mut commit = Commit {
        source: source.to_string(),
        orphan_reason: format!("{source} no longer declares it and no other source does"),
        purge_intents_before: Some(now.saturating_sub(declared.intent_max_age_ms)),
        ..Default::default()
    };
    let mut written: HashMap<usize, DnsRecord> = HashMap::new();
    for (o, s) in outcomes.into_iter().zip(sent) {
        let i = s.index;
        // An outcome nobody heard keeps its intent; any other resolves it.
        if !o.uncertain {
            commit.clear_intents.push(s.change_id.clone());
        }
        match (o.code, o.record) {
            (0, Some(r)) => {
                written.insert(i, r);
            }
            (0, None) => {
                out[i].code = Code::Internal as i32;
                out[i].reason = "cache-service accepted the change but returned no record".into();
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
    let (decl_delete, decl_insert) = declarations_diff(declared);
    commit.decl_delete = decl_delete;
    commit.decl_insert = decl_insert;
    commit.clear_intents.sort_unstable();
    commit.clear_intents.dedup();
    commit
}

/// Declarations: this source's are replaced with the new set, writing only
/// differences: the `(name, type)`s to delete and the declarations to insert.
/// A changed declaration keeps its place in line; a new one is stamped after
/// every stored one. A declaration that lost a conflict is stored too: it
/// takes effect once every earlier disagreeing declaration is gone, and keeps
/// the record from being orphaned while it stands.
fn declarations_diff(declared: &Declared<'_>) -> (Vec<(String, String)>, Vec<DeclRow>) {
    let (mut delete, mut insert) = (Vec::new(), Vec::new());
    let previous: HashMap<(&str, &str), &DeclRow> = declared
        .previous
        .iter()
        .map(|d| ((d.name.as_str(), d.rtype.as_str()), d))
        .collect();
    let mut kept = HashSet::new();
    for spec in declared.specs {
        let key = (spec.name.as_str(), spec.rtype.as_str());
        kept.insert(key);
        let mut d = decl_of(declared.source, spec, declared.now);
        match previous.get(&key) {
            Some(p) if p.same_spec(&d) => {}
            Some(p) => {
                d.declared_at = p.declared_at;
                delete.push((p.name.clone(), p.rtype.clone()));
                insert.push(d);
            }
            None => {
                d.declared_at = declared.decl_stamp;
                insert.push(d);
            }
        }
    }
    for (key, d) in &previous {
        if !kept.contains(key) {
            delete.push((d.name.clone(), d.rtype.clone()));
        }
    }
    (delete, insert)
}

#[cfg(test)]
mod tests;
