//! The planner: given what one source declares, what the provider cache
//! holds and what the tracker knows, decide one action per record.
//!
//! Pure: it reads nothing and writes nothing, so every rule is testable on
//! its own. Its one principle is ownership: only a tracked row with
//! `app_managed` makes a record the app's to change. A provider comment is
//! never looked at, so an untracked record carrying "Managed by TrafegoDNS"
//! is adopted as not managed or reported as a conflict, never changed.

use std::collections::{HashMap, HashSet};

use trafego_proto::cache::DnsRecord;
use trafego_proto::tracking::ChangeAction;
use trafego_proto::validate::{RecordSpec, RecordType};

use crate::desired::same_content;
use crate::store::{DeclRow, PlanInput, TrackedRow};

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

/// Plans `source` declaring `desired` against the cache view `cache` (every
/// record of the zone) and the tracker's `input`.
pub fn plan(source: &str, desired: &[RecordSpec], cache: &[DnsRecord], input: &PlanInput) -> Plan {
    let mut by_name: HashMap<&str, Vec<&DnsRecord>> = HashMap::new();
    for r in cache {
        by_name.entry(r.name.as_str()).or_default().push(r);
    }
    let mut tracked: HashMap<(&str, &str), Vec<&TrackedRow>> = HashMap::new();
    for t in &input.tracked {
        tracked
            .entry((t.name.as_str(), t.rtype.as_str()))
            .or_default()
            .push(t);
    }
    let mut others: HashMap<(&str, &str), Vec<&DeclRow>> = HashMap::new();
    for d in input.declarations.iter().filter(|d| d.source != source) {
        others
            .entry((d.name.as_str(), d.rtype.as_str()))
            .or_default()
            .push(d);
    }

    let mut changes = Vec::with_capacity(desired.len());
    let mut declared: HashSet<(&str, &str)> = HashSet::with_capacity(desired.len());
    for spec in desired {
        let name = spec.name.as_str();
        let rtype = spec.rtype.as_str();
        declared.insert((name, rtype));
        let here = decl_of(source, spec, 0);
        let disagreeing = others
            .get(&(name, rtype))
            .and_then(|ds| ds.iter().find(|d| !d.same_spec(&here)));
        let at_name: &[&DnsRecord] = by_name.get(name).map(Vec::as_slice).unwrap_or(&[]);
        let rows: &[&TrackedRow] = tracked
            .get(&(name, rtype))
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        changes.push(plan_one(spec, at_name, rows, disagreeing.copied()));
    }

    // Orphans: what this source declared before, no longer declares, and no
    // other source declares.
    let mut dropped = 0;
    let mut orphan_keys: Vec<(&str, &str)> = Vec::new();
    for d in &input.previous {
        let key = (d.name.as_str(), d.rtype.as_str());
        if declared.contains(&key) {
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
            if t.is_orphaned {
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
            });
        }
    }
    Plan {
        changes,
        previous: input.previous.len(),
        dropped,
    }
}

/// The declaration `source` makes with `spec`.
pub fn decl_of(source: &str, spec: &RecordSpec, now: i64) -> DeclRow {
    DeclRow {
        source: source.to_string(),
        name: spec.name.as_str().to_string(),
        rtype: spec.rtype.as_str().to_string(),
        content: spec.content.clone(),
        ttl: spec.ttl as i32,
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
) -> Planned {
    let rtype = spec.rtype.as_str();
    let mk =
        |action, cache: Option<&DnsRecord>, tracked: Option<&TrackedRow>, reason: String| Planned {
            action,
            name: spec.name.as_str().to_string(),
            rtype: rtype.to_string(),
            spec: Some(spec.clone()),
            cache: cache.cloned(),
            tracked: tracked.cloned(),
            reason,
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
                "source {} declares {} {} differently (content {}, ttl {}, proxied {}); the first declaration stands",
                d.source, d.name, d.rtype, d.content, d.ttl, d.proxied
            ),
        );
    }
    let same_type: Vec<&DnsRecord> = at_name
        .iter()
        .filter(|r| r.r#type == rtype)
        .copied()
        .collect();

    // A tracked record of this (name, type) that the provider still holds.
    let present = rows.iter().find_map(|t| {
        same_type
            .iter()
            .find(|r| r.record_id == t.record_id)
            .map(|r| (*t, *r))
    });
    if let Some((t, r)) = present {
        return if matches(spec, r) {
            if t.is_orphaned {
                mk(
                    ChangeAction::Unorphan,
                    Some(r),
                    Some(t),
                    "declared again".into(),
                )
            } else {
                mk(
                    ChangeAction::Unchanged,
                    Some(r),
                    Some(t),
                    "already as declared".into(),
                )
            }
        } else if t.app_managed {
            mk(
                ChangeAction::Update,
                Some(r),
                Some(t),
                format!(
                    "app-managed record drifted: the provider holds {}",
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
    }

    // Nothing tracked is there: look at what holds the name.
    let old = rows.first().copied();
    let is_cname = spec.rtype == RecordType::Cname;
    if let Some(r) = at_name
        .iter()
        .find(|r| (is_cname && r.r#type != "CNAME") || (!is_cname && r.r#type == "CNAME"))
    {
        return mk(
            ChangeAction::Conflict,
            Some(r),
            old,
            format!(
                "the name is held by {}; a CNAME cannot sit beside another record",
                describe(r)
            ),
        );
    }
    if let Some(r) = same_type.iter().find(|r| matches(spec, r)) {
        return mk(
            ChangeAction::Adopt,
            Some(r),
            old,
            "a matching record already exists at the provider; tracked as not app-managed".into(),
        );
    }
    if let Some(r) = same_type.first() {
        return mk(
            ChangeAction::Conflict,
            Some(r),
            old,
            format!(
                "held by {}, which this app does not manage; left alone",
                describe(r)
            ),
        );
    }
    let reason = match old {
        Some(t) if t.app_managed => {
            "the tracked record is missing at the provider; recreating it".to_string()
        }
        Some(_) => "the adopted record is gone from the provider; creating it".to_string(),
        None => "no record at this name and type".to_string(),
    };
    mk(ChangeAction::Create, None, old, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(t: &str, n: &str, c: &str) -> RecordSpec {
        RecordSpec::new("", t, n, c, 1, false, None).unwrap()
    }

    fn rec(id: &str, t: &str, n: &str, c: &str) -> DnsRecord {
        DnsRecord {
            record_id: id.into(),
            r#type: t.into(),
            name: n.into(),
            content: c.into(),
            ttl: 300,
            provider: "cloudflare".into(),
            zone: "example.com".into(),
            comment: "Managed by TrafegoDNS".into(),
            ..Default::default()
        }
    }

    fn row(id: &str, t: &str, n: &str, c: &str, managed: bool) -> TrackedRow {
        TrackedRow {
            provider: "cloudflare".into(),
            zone: "example.com".into(),
            record_id: id.into(),
            rtype: t.into(),
            name: n.into(),
            content: c.into(),
            ttl: 300,
            proxied: false,
            priority: None,
            fingerprint: String::new(),
            app_managed: managed,
            source: "s".into(),
            is_orphaned: false,
            orphaned_at: None,
            is_missing: false,
            missing_since: None,
            drift: String::new(),
            tracked_at: 0,
            updated_at: 0,
            first_seen: 0,
            metadata: "{}".into(),
        }
    }

    fn actions(p: &Plan) -> Vec<ChangeAction> {
        p.changes.iter().map(|c| c.action).collect()
    }

    #[test]
    fn the_comment_is_never_ownership() {
        // Untracked, carrying the managed comment, other content: conflict, not update.
        let cache = vec![rec("1", "A", "a.example.com", "192.0.2.1")];
        let p = plan(
            "s",
            &[spec("A", "a.example.com", "192.0.2.2")],
            &cache,
            &PlanInput::default(),
        );
        assert_eq!(actions(&p), vec![ChangeAction::Conflict]);
        // Same content: adopted as not managed.
        let p = plan(
            "s",
            &[spec("A", "a.example.com", "192.0.2.1")],
            &cache,
            &PlanInput::default(),
        );
        assert_eq!(actions(&p), vec![ChangeAction::Adopt]);
    }

    #[test]
    fn create_update_unchanged_and_cname_conflict() {
        let cache = vec![
            rec("1", "A", "a.example.com", "192.0.2.1"),
            rec("2", "A", "c.example.com", "192.0.2.1"),
        ];
        let input = PlanInput {
            tracked: vec![row("1", "A", "a.example.com", "192.0.2.1", true)],
            ..Default::default()
        };
        let p = plan(
            "s",
            &[
                spec("A", "a.example.com", "192.0.2.9"),
                spec("A", "b.example.com", "192.0.2.1"),
                spec("CNAME", "c.example.com", "example.com"),
            ],
            &cache,
            &input,
        );
        assert_eq!(
            actions(&p),
            vec![
                ChangeAction::Update,
                ChangeAction::Create,
                ChangeAction::Conflict
            ]
        );
        let p = plan(
            "s",
            &[spec("A", "a.example.com", "192.0.2.1")],
            &cache,
            &input,
        );
        assert_eq!(actions(&p), vec![ChangeAction::Unchanged]);
    }

    #[test]
    fn orphans_respect_other_sources() {
        let cache = vec![rec("1", "A", "a.example.com", "192.0.2.1")];
        let s = spec("A", "a.example.com", "192.0.2.1");
        let mut input = PlanInput {
            previous: vec![decl_of("s", &s, 0)],
            declarations: vec![decl_of("s", &s, 0), decl_of("other", &s, 0)],
            tracked: vec![row("1", "A", "a.example.com", "192.0.2.1", true)],
        };
        let p = plan("s", &[], &cache, &input);
        assert!(actions(&p).is_empty(), "another source still declares it");
        assert_eq!(p.dropped, 1);
        input.declarations.pop();
        let p = plan("s", &[], &cache, &input);
        assert_eq!(actions(&p), vec![ChangeAction::Orphan]);
    }
}
