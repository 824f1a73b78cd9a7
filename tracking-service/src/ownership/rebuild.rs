//! The rebuild after a lost tracked table: at start, when the table is
//! empty and markers are on, every record whose marker proves this OWNER_ID
//! is tracked again as app-managed; everything else stays foreign (adopted
//! as not app-managed if a source declares it, as always).
//!
//! Rebuilt records start orphaned (their sources are not known): a source
//! declaring them again un-orphans them, and those nobody declares are
//! deleted by the sweep after the grace period, like any orphan. Never
//! proof: a marker naming another owner id, external-dns's markers, or a
//! marker where markers of several owners name the same place (then nobody
//! can tell whose the record is, and it is left alone).

use std::collections::{HashMap, HashSet};

use trafego_proto::cache::DnsRecord;

use super::registry::parse_content;
use super::{MarkerMode, Ownership, zone_of};
use crate::convert::row_from;
use crate::error::TrackingError;
use crate::store::{self, Commit};
use crate::tracker::Tracker;
use trafego_proto::validate::Hostname;

/// The state key of the last rebuild.
pub(crate) const REBUILD_KEY: &str = "ownership_rebuild";

/// The source rebuilt rows are tracked under until a source declares them.
pub const REBUILD_SOURCE: &str = "ownership-rebuild";

/// What a rebuild found, as persisted for GetTrackerStatus.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// When it ran (unix ms).
    pub at: i64,
    /// Records tracked again as app-managed.
    pub claimed: u64,
    /// Markers of another owner or heritage seen.
    pub foreign_markers: u64,
    /// Records left alone: markers of several owners name their place.
    pub ambiguous: u64,
}

/// The records of `cache` whose markers prove `own`'s owner id, with the
/// counts of foreign markers and of records left alone as ambiguous. Pure.
pub fn claims<'a>(
    own: &Ownership,
    zones: &[Hostname],
    cache: &'a [DnsRecord],
) -> (Vec<&'a DnsRecord>, Report) {
    let mut report = Report::default();
    let is_marker = |r: &DnsRecord| r.r#type == "TXT" && parse_content(&r.content).is_some();
    match own.mode {
        MarkerMode::Comment => {
            let mut out = Vec::new();
            for r in cache {
                if own.comment_proves(&r.comment) {
                    out.push(r);
                } else if r.comment.contains("heritage=") {
                    report.foreign_markers += 1;
                }
            }
            (out, report)
        }
        MarkerMode::Txt => {
            let mut ours: HashSet<(String, String)> = HashSet::new();
            let mut others: HashSet<(String, String)> = HashSet::new();
            for r in cache.iter().filter(|r| is_marker(r)) {
                let target = own.registry.target_of(&r.name, zone_of(zones, &r.name));
                let key = target.and_then(|t| Some((t.name, t.rtype?)));
                if own.proves(&r.content) {
                    ours.extend(key);
                } else {
                    report.foreign_markers += 1;
                    others.extend(key);
                }
            }
            let mut at: HashMap<(&str, &str), Vec<&DnsRecord>> = HashMap::new();
            for r in cache.iter().filter(|r| !is_marker(r)) {
                at.entry((r.name.as_str(), r.r#type.as_str()))
                    .or_default()
                    .push(r);
            }
            let mut out = Vec::new();
            for key in &ours {
                let held = at
                    .get(&(key.0.as_str(), key.1.as_str()))
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                if others.contains(key) {
                    report.ambiguous += u64::try_from(held.len()).unwrap_or(u64::MAX);
                } else {
                    out.extend(held.iter().copied());
                }
            }
            out.sort_by(|a, b| (&a.name, &a.r#type).cmp(&(&b.name, &b.r#type)));
            (out, report)
        }
    }
}

/// Rebuilds the tracked table from markers when it is empty and markers are
/// on; `None` when nothing ran. Runs under the tracker's lock, before any
/// reconcile plans.
pub(crate) async fn run(t: &Tracker) -> Result<Option<Report>, TrackingError> {
    let Some(own) = &t.settings().ownership else {
        return Ok(None);
    };
    let zones = t.zone().await?.served().to_vec();
    let counts = t
        .db()
        .run(|c| Ok::<_, TrackingError>(store::counts(c)?))
        .await?;
    if counts.total > 0 {
        return Ok(None);
    }
    let staleness = u32::try_from(t.settings().max_staleness.as_secs().max(1)).unwrap_or(u32::MAX);
    let (cache, _) = t.client().list_all(staleness).await?;
    let (claimed, mut report) = claims(own, &zones, &cache);
    let now = t.now();
    report.at = now;
    report.claimed = u64::try_from(claimed.len()).unwrap_or(u64::MAX);
    let why = format!(
        "its ownership marker names OWNER_ID {}: tracked again after the tracked table was found empty",
        own.owner
    );
    let rows: Vec<_> = claimed
        .iter()
        .map(|r| row_from(r, None, true, REBUILD_SOURCE, &why, now))
        .collect();
    let commit = Commit {
        orphan: rows.iter().map(|r| r.record_id.clone()).collect(),
        orphan_reason:
            "tracked again from its ownership marker; orphaned until a source declares it".into(),
        insert: rows,
        source: REBUILD_SOURCE.into(),
        ..Default::default()
    };
    let json = serde_json::to_string(&report).unwrap_or_default();
    t.db()
        .run(move |c| {
            store::commit(c, &commit, now)?;
            store::state_set(c, REBUILD_KEY, &json)?;
            Ok::<_, TrackingError>(())
        })
        .await?;
    tracing::info!(
        owner_id = %own.owner,
        claimed = report.claimed,
        foreign_markers = report.foreign_markers,
        ambiguous = report.ambiguous,
        listed = cache.len(),
        "the tracked table was empty: rebuilt it from ownership markers (claimed records are orphaned until a source declares them)"
    );
    t.export_counts().await;
    Ok(Some(report))
}
