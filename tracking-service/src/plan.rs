//! Planning: given what one source declares, what the provider cache
//! holds and what the tracker knows, decide one action per record; then
//! (in [`steps`]) which writes the plan sends and what the reconcile records.
//!
//! Pure: it reads nothing and writes nothing, so every rule is testable on
//! its own. Its one principle is ownership: only a tracked row with
//! `app_managed` makes a record the app's to change. A provider comment is
//! never looked at, so an untracked record carrying "Managed by TrafegoDNS"
//! is adopted as not managed or reported as a conflict, never changed.
//!
//! Three more rules:
//! - Tracked rows are matched to provider records by record id, not only by
//!   (name, type): a tracked record renamed (or retyped) at the provider is
//!   still the same tracked record, found at its new name.
//! - The first declaration stands: of two sources declaring one (name, type)
//!   differently, the one whose declaration is older (`declared_at`, then
//!   source name) plans as if alone; the later one gets a conflict.
//! - A pending intent (a write an earlier reconcile sent but never recorded)
//!   is settled by what cache-service's change journal says of it
//!   ([`IntentState`]): applied with record X → X is the app's own and is
//!   claimed as app-managed (by id, never by content); not applied → it is
//!   planned afresh (a create re-sent under the same change id); still in
//!   flight → nothing is planned for its (name, type) until it ends. Only
//!   when cache-service cannot vouch (another journal) is a record claimed by
//!   matching content, as the best guess left.

use std::collections::{HashMap, HashSet};

use trafego_common::num;
use trafego_proto::cache::DnsRecord;
use trafego_proto::tracking::ChangeAction;
use trafego_proto::validate::{RecordSpec, RecordType};

use crate::desired::same_content;
use crate::store::{DeclRow, INTENT_CREATE, IntentRow, PlanInput, TrackedRow};

mod steps;

pub use steps::{Declared, Sent, Writes, commit_of, writes_of};

/// One planned change.
#[derive(Debug, Clone)]
pub struct Planned {
    /// What to do.
    pub action: ChangeAction,
    /// The hostname.
    pub name: String,
    /// The record type.
    pub rtype: String,
    /// The declared record (absent for orphans).
    pub spec: Option<RecordSpec>,
    /// The provider record concerned, when one exists.
    pub cache: Option<DnsRecord>,
    /// The tracked row concerned, when one exists: rewritten in place by a
    /// create, update or adopt, so the (name, type) keeps its timestamps.
    pub tracked: Option<TrackedRow>,
    /// Why this action.
    pub reason: String,
    /// The provider record `cache` is the app's own, claimed from a pending
    /// intent: a create needs no write, an update rewrites it.
    pub claimed: bool,
    /// A create held back: an earlier create of this (name, type) is not
    /// confirmed yet. Nothing is written for it.
    pub held: bool,
    /// Pending intents this change resolves (cleared when it is recorded).
    pub clear_intents: Vec<String>,
    /// A create sent again under the change id of an earlier one that was
    /// not applied (cache-service dedups on it, so a copy of the earlier
    /// request still on its way can never make a second record).
    pub change_id: Option<String>,
}

/// What cache-service's change journal says became of a pending intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntentState {
    /// Applied: the provider holds the record with this id, the app's own.
    Applied(String),
    /// Not applied (refused, found absent, never received): planned afresh.
    NotApplied,
    /// Still being applied, or its outcome could not be settled yet: nothing
    /// is planned for its (name, type) until it is known.
    Pending(String),
    /// cache-service cannot vouch for it (another journal, or no answer):
    /// a record is claimed by matching content, the best guess left.
    Unvouched,
}

impl Planned {
    /// The record id to report: the provider's, or the tracked one.
    pub fn record_id(&self) -> String {
        self.cache
            .as_ref()
            .map(|c| c.record_id.clone())
            .or_else(|| self.tracked.as_ref().map(|t| t.record_id.clone()))
            .unwrap_or_default()
    }

    /// The content to report: declared, else held.
    pub fn content(&self) -> String {
        self.spec
            .as_ref()
            .map(|s| s.content.clone())
            .or_else(|| self.cache.as_ref().map(|c| c.content.clone()))
            .or_else(|| self.tracked.as_ref().map(|t| t.content.clone()))
            .unwrap_or_default()
    }
}

/// The plan of one reconcile.
#[derive(Debug, Default)]
pub struct Plan {
    /// One entry per declared record, then one per orphan.
    pub changes: Vec<Planned>,
    /// Declarations the source had before this call.
    pub previous: usize,
    /// Declarations the source had and no longer makes.
    pub dropped: usize,
    /// The name of each declaration the source had, and whether it no
    /// longer makes it: the guards count these per zone.
    pub previous_names: Vec<(String, bool)>,
}

/// The clock and the time rule of pending intents.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Now, in unix milliseconds.
    pub now: i64,
    /// Unvouched intents older than this claim nothing (and are purged).
    pub intent_max_age_ms: i64,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            now: 0,
            intent_max_age_ms: i64::MAX,
        }
    }
}

/// Whether the provider's record `r` is what `spec` asks for. A desired TTL of
/// 1 (automatic) matches any TTL, and so does any TTL of a proxied record
/// (the provider sets those itself).
pub fn matches(spec: &RecordSpec, r: &DnsRecord) -> bool {
    same_content(&r.r#type, &r.content, &spec.content)
        && r.proxied == spec.proxied
        && r.priority == spec.priority.map(u32::from)
        && (spec.ttl == 1 || spec.proxied || r.ttl == spec.ttl)
}

fn describe(r: &DnsRecord) -> String {
    format!("{} {} {} (id {})", r.r#type, r.name, r.content, r.record_id)
}

type Key<'a> = (&'a str, &'a str);

/// Plans `source` declaring `desired` against the cache view `cache` (every
/// record of the zone) and the tracker's `input`, at `timing`.
pub fn plan(
    source: &str,
    desired: &[RecordSpec],
    cache: &[DnsRecord],
    input: &PlanInput,
    timing: Timing,
) -> Plan {
    let mut by_name: HashMap<&str, Vec<&DnsRecord>> = HashMap::new();
    for r in cache {
        by_name.entry(r.name.as_str()).or_default().push(r);
    }
    let mut tracked: HashMap<Key, Vec<&TrackedRow>> = HashMap::new();
    let mut tracked_by_id: HashMap<&str, &TrackedRow> = HashMap::new();
    for t in &input.tracked {
        tracked
            .entry((t.name.as_str(), t.rtype.as_str()))
            .or_default()
            .push(t);
        tracked_by_id.insert(t.record_id.as_str(), t);
    }
    let mut others: HashMap<Key, Vec<&DeclRow>> = HashMap::new();
    for d in input.declarations.iter().filter(|d| d.source != source) {
        others
            .entry((d.name.as_str(), d.rtype.as_str()))
            .or_default()
            .push(d);
    }
    let mine: HashMap<Key, &DeclRow> = input
        .previous
        .iter()
        .map(|d| ((d.name.as_str(), d.rtype.as_str()), d))
        .collect();
    let unvouched = IntentState::Unvouched;
    let mut intents: HashMap<Key, Vec<(&IntentRow, &IntentState)>> = HashMap::new();
    for i in &input.intents {
        intents
            .entry((i.name.as_str(), i.rtype.as_str()))
            .or_default()
            .push((i, input.outcomes.get(&i.id).unwrap_or(&unvouched)));
    }

    // Tracked records the provider holds at a declared (name, type), whatever
    // the name and type they are tracked under: they belong to that
    // declaration, and to no other declaration or orphan of this plan.
    let mut placed: HashMap<&str, Key> = HashMap::new();
    for spec in desired {
        let key = (spec.name.as_str(), spec.rtype.as_str());
        for r in by_name.get(key.0).into_iter().flatten() {
            if r.r#type == key.1 && tracked_by_id.contains_key(r.record_id.as_str()) {
                placed.insert(r.record_id.as_str(), key);
            }
        }
    }

    let mut changes = Vec::with_capacity(desired.len());
    let mut declared: HashSet<Key> = HashSet::with_capacity(desired.len());
    for spec in desired {
        let name = spec.name.as_str();
        let rtype = spec.rtype.as_str();
        let key = (name, rtype);
        declared.insert(key);
        let here = decl_of(source, spec, 0);
        // Only a declaration made before this source's counts against it.
        let here_at = mine.get(&key).map_or(i64::MAX, |d| d.declared_at);
        let disagreeing = others
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|d| {
                !d.same_spec(&here) && (d.declared_at, d.source.as_str()) < (here_at, source)
            })
            .min_by_key(|d| (d.declared_at, d.source.as_str()))
            .copied();
        let at_name: &[&DnsRecord] = by_name.get(name).map(Vec::as_slice).unwrap_or(&[]);
        let mut rows: Vec<&TrackedRow> = tracked
            .get(&key)
            .into_iter()
            .flatten()
            .filter(|t| placed.get(t.record_id.as_str()).is_none_or(|k| *k == key))
            .copied()
            .collect();
        for r in at_name.iter().filter(|r| r.r#type == rtype) {
            if let Some(t) = tracked_by_id.get(r.record_id.as_str())
                && !rows.iter().any(|x| x.record_id == t.record_id)
            {
                rows.push(t);
            }
        }
        let pending: &[(&IntentRow, &IntentState)] =
            intents.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        changes.push(plan_one(spec, at_name, &rows, disagreeing, pending, timing));
    }

    // Orphans: what this source declared before, no longer declares, and no
    // other source declares.
    let mut dropped = 0;
    let mut orphan_keys: Vec<Key> = Vec::new();
    let mut previous_names = Vec::with_capacity(input.previous.len());
    for d in &input.previous {
        let key = (d.name.as_str(), d.rtype.as_str());
        let kept = declared.contains(&key);
        previous_names.push((d.name.clone(), !kept));
        if kept {
            continue;
        }
        dropped += 1;
        if !others.contains_key(&key) {
            orphan_keys.push(key);
        }
    }
    orphan_keys.sort_unstable();
    for key in orphan_keys {
        for t in tracked.get(&key).into_iter().flatten() {
            if t.is_orphaned || placed.contains_key(t.record_id.as_str()) {
                continue;
            }
            changes.push(Planned {
                action: ChangeAction::Orphan,
                name: t.name.clone(),
                rtype: t.rtype.clone(),
                spec: None,
                cache: None,
                tracked: Some((*t).clone()),
                reason: format!("{source} no longer declares it and no other source does"),
                claimed: false,
                held: false,
                clear_intents: Vec::new(),
                change_id: None,
            });
        }
    }
    Plan {
        changes,
        previous: input.previous.len(),
        dropped,
        previous_names,
    }
}

/// The declaration `source` makes with `spec`.
pub fn decl_of(source: &str, spec: &RecordSpec, now: i64) -> DeclRow {
    DeclRow {
        source: source.to_string(),
        name: spec.name.as_str().to_string(),
        rtype: spec.rtype.as_str().to_string(),
        content: spec.content.clone(),
        ttl: num::to_db(spec.ttl),
        proxied: spec.proxied,
        priority: spec.priority.map(i32::from),
        declared_at: now,
        updated_at: now,
    }
}

fn plan_one(
    spec: &RecordSpec,
    at_name: &[&DnsRecord],
    rows: &[&TrackedRow],
    disagreeing: Option<&DeclRow>,
    intents: &[(&IntentRow, &IntentState)],
    timing: Timing,
) -> Planned {
    let rtype = spec.rtype.as_str();
    let in_doubt = |st: &IntentState| matches!(st, IntentState::Pending(_));
    // Intents whose outcome is known (or past knowing): everything but those
    // still in flight or unsettled, which stay journaled.
    let resolved = || {
        intents
            .iter()
            .filter(|(_, st)| !in_doubt(st))
            .map(|(i, _)| i.id.clone())
            .collect::<Vec<_>>()
    };
    let mk =
        |action, cache: Option<&DnsRecord>, tracked: Option<&TrackedRow>, reason: String| Planned {
            action,
            name: spec.name.as_str().to_string(),
            rtype: rtype.to_string(),
            spec: Some(spec.clone()),
            cache: cache.cloned(),
            tracked: tracked.cloned(),
            reason,
            claimed: false,
            held: false,
            clear_intents: Vec::new(),
            change_id: None,
        };
    if let Some(d) = disagreeing {
        let present = rows
            .iter()
            .find_map(|t| at_name.iter().find(|r| r.record_id == t.record_id).copied());
        return mk(
            ChangeAction::Conflict,
            present,
            rows.first().copied(),
            format!(
                "source {} declared {} {} first, differently (content {}, ttl {}, proxied {}); the first declaration stands",
                d.source, d.name, d.rtype, d.content, d.ttl, d.proxied
            ),
        );
    }
    let same_type: Vec<&DnsRecord> = at_name
        .iter()
        .filter(|r| r.r#type == rtype)
        .copied()
        .collect();

    // A tracked record that the provider holds at this (name, type), found
    // by id: it may be tracked under another name or type if it was renamed
    // at the provider.
    let present = rows.iter().find_map(|t| {
        same_type
            .iter()
            .find(|r| r.record_id == t.record_id)
            .map(|r| (*t, *r))
    });
    if let Some((t, r)) = present {
        let moved = if t.name != r.name || t.rtype != r.r#type {
            format!(
                " (tracked as {} {}: renamed at the provider; now tracked under its new name)",
                t.rtype, t.name
            )
        } else {
            String::new()
        };
        let mut p = if matches(spec, r) {
            if t.is_orphaned {
                mk(
                    ChangeAction::Unorphan,
                    Some(r),
                    Some(t),
                    format!("declared again{moved}"),
                )
            } else {
                mk(
                    ChangeAction::Unchanged,
                    Some(r),
                    Some(t),
                    format!("already as declared{moved}"),
                )
            }
        } else if t.app_managed {
            mk(
                ChangeAction::Update,
                Some(r),
                Some(t),
                format!(
                    "app-managed record drifted: the provider holds {}{moved}",
                    describe(r)
                ),
            )
        } else {
            mk(
                ChangeAction::Conflict,
                Some(r),
                Some(t),
                format!(
                    "held by {}, which this app does not manage; left alone",
                    describe(r)
                ),
            )
        };
        p.clear_intents = resolved();
        return p;
    }

    // Nothing tracked is there. A record an earlier reconcile wrote but never
    // recorded is the app's own: claim it, by the id cache-service's journal
    // gives, or (only when it cannot vouch) by content.
    let old = rows.first().copied();
    let live = |i: &IntentRow| timing.now.saturating_sub(i.created_at) < timing.intent_max_age_ms;
    let by_id = same_type.iter().copied().find_map(|r| {
        intents
            .iter()
            .find(|(_, st)| matches!(st, IntentState::Applied(id) if *id == r.record_id))
            .map(|(i, _)| (r, *i))
    });
    let claim = by_id.or_else(|| {
        same_type.iter().copied().find_map(|r| {
            intents
                .iter()
                .filter(|(i, st)| **st == IntentState::Unvouched && live(i))
                .find(|(i, _)| same_content(&r.r#type, &r.content, &i.content))
                .map(|(i, _)| (r, *i))
        })
    });
    if let Some((r, i)) = claim {
        let why = format!(
            "created by an earlier reconcile that did not finish (for source {}); claimed as app-managed",
            i.source
        );
        let mut p = if matches(spec, r) {
            mk(ChangeAction::Create, Some(r), old, why)
        } else {
            mk(
                ChangeAction::Update,
                Some(r),
                old,
                format!("{why}; the provider holds {}", describe(r)),
            )
        };
        p.claimed = true;
        p.clear_intents = resolved();
        return p;
    }

    // A change for this (name, type) is still being applied (or could not be
    // settled): whatever the listing shows may be its doing, so nothing is
    // planned until its outcome is known.
    if let Some((i, IntentState::Pending(why))) = intents.iter().find(|(_, st)| in_doubt(st)) {
        let mut p = mk(
            ChangeAction::Create,
            None,
            old,
            format!(
                "an earlier reconcile sent a {} of it (content {}) whose outcome is not known yet                  ({why}); nothing is sent until cache-service settles it",
                i.action, i.content
            ),
        );
        p.held = true;
        p.clear_intents = resolved();
        return p;
    }

    // What else holds the name.
    let is_cname = spec.rtype == RecordType::Cname;
    if let Some(r) = at_name
        .iter()
        .find(|r| (is_cname && r.r#type != "CNAME") || (!is_cname && r.r#type == "CNAME"))
    {
        let mut p = mk(
            ChangeAction::Conflict,
            Some(r),
            old,
            format!(
                "the name is held by {}; a CNAME cannot sit beside another record",
                describe(r)
            ),
        );
        p.clear_intents = resolved();
        return p;
    }
    if let Some(r) = same_type.iter().find(|r| matches(spec, r)) {
        let mut p = mk(
            ChangeAction::Adopt,
            Some(r),
            old,
            "a matching record already exists at the provider; tracked as not app-managed".into(),
        );
        p.clear_intents = resolved();
        return p;
    }
    if let Some(r) = same_type.first() {
        let mut p = mk(
            ChangeAction::Conflict,
            Some(r),
            old,
            format!(
                "held by {}, which this app does not manage; left alone",
                describe(r)
            ),
        );
        p.clear_intents = resolved();
        return p;
    }
    let reason = match old {
        Some(t) if t.app_managed => {
            "the tracked record is missing at the provider; recreating it".to_string()
        }
        Some(_) => "the adopted record is gone from the provider; creating it".to_string(),
        None => "no record at this name and type".to_string(),
    };
    let mut p = mk(ChangeAction::Create, None, old, reason);
    // An earlier create of the same record that was not applied is sent
    // again under its own change id.
    p.change_id = intents
        .iter()
        .find(|(i, st)| {
            i.action == INTENT_CREATE
                && matches!(st, IntentState::NotApplied)
                && i.content == spec.content
                && i.ttl == i32::try_from(spec.ttl).unwrap_or(i32::MAX)
                && i.proxied == spec.proxied
                && i.priority == spec.priority.map(i32::from)
        })
        .map(|(i, _)| i.id.clone());
    p.clear_intents = resolved()
        .into_iter()
        .filter(|id| Some(id) != p.change_id.as_ref())
        .collect();
    p
}

#[cfg(test)]
mod tests;
