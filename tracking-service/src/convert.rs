//! Conversions between the tracker's rows and the wire: a tracked row built
//! from a provider record, a row as the API shows it, a declared record as
//! cache-service's `RecordInput`, a plan as the `PlannedChange`s a reconcile
//! answers with, its summary, and the count gauges.
//!
//! Pure and shared by every job of the tracker (reconcile, sweep, check,
//! manual track), so each writes a row, and shows one, the same way.

use tonic::Code;
use trafego_common::num;
use trafego_proto::cache::{DnsRecord, RecordInput};
use trafego_proto::timestamp_ms;
use trafego_proto::tracking::{ChangeAction, PlannedChange, ReconcileSummary, TrackedRecord};
use trafego_proto::validate::RecordSpec;

use crate::plan::Planned;
use crate::store::{self, CacheView, TrackedRow};

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

/// A declared record as cache-service writes it.
pub fn input_of(spec: &RecordSpec) -> RecordInput {
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

/// A tracked row's metadata: why it is managed or not, and by whom.
pub fn metadata(app_managed: bool, source: &str, why: &str) -> String {
    serde_json::json!({ "app_managed": app_managed, "source": source, "why": why }).to_string()
}

/// A tracked row for provider record `r`, keeping the timestamps (and the
/// orphan clock) of `old` when the (name, type) was tracked before.
pub fn row_from(
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
pub fn row_current(t: &TrackedRow, r: &DnsRecord) -> bool {
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

/// A provider record as the missing/drift check compares it.
pub fn cache_view(r: &DnsRecord) -> CacheView {
    CacheView {
        record_id: r.record_id.clone(),
        name: r.name.clone(),
        rtype: r.r#type.clone(),
        content: r.content.clone(),
        ttl: r.ttl,
        proxied: r.proxied,
        priority: r.priority,
    }
}

/// The changes a reconcile answers with, before anything is applied: a held
/// create already carries UNAVAILABLE (it is not sent).
pub fn planned_changes(plan: &[Planned]) -> Vec<PlannedChange> {
    plan.iter()
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
        .collect()
}

/// A reconcile's counts by action: what was applied (or, in a dry run, what
/// would be), conflicts, and failures.
pub fn summarize(plan: &[Planned], out: &[PlannedChange], dry_run: bool) -> ReconcileSummary {
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
pub fn set_count_gauges(c: &store::Counts) {
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
