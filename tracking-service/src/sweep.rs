//! The orphan sweep: orphaned, app-managed records past the grace period
//! deleted at the provider, when cleanup is on and cache-service's view is
//! fresh.
//!
//! Nothing is deleted that is not app-managed, preserved
//! (PRESERVED_HOSTNAMES) or still within CLEANUP_GRACE_PERIOD, and never a
//! record whose provider copy no longer matches what was tracked (renamed,
//! retyped or changed since: it may be someone else's now). Deletions go in
//! one batch; those the provider confirmed (or found already gone) move to
//! the orphan history in one transaction. The missing/drift check runs first
//! ([`crate::check`]), and its view of the provider decides what changed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tonic::Code;
use trafego_common::num;
use trafego_proto::cache::{Change, DnsRecord, GetCacheStatusResponse};
use trafego_proto::timestamp_ms;
use trafego_proto::tracking::{RunOrphanSweepResponse, SkippedZone, SweptRecord};

use crate::check;
use crate::desired;
use crate::error::{TrackingError, public_message};
use crate::ownership::markers;
use crate::store;
use crate::tracker::Tracker;

/// Why a sweep deletes a marker of its own.
const STALE_MARKER: &str = "an ownership marker of this OWNER_ID whose record is gone";

/// The state key of the last sweep.
pub(crate) const LAST_SWEEP: &str = "last_sweep";

/// The last sweep, as persisted.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct LastSweep {
    pub(crate) at: i64,
    pub(crate) deleted: u64,
    pub(crate) skipped_reason: String,
    /// Stale zones whose deletes waited: (zone, why).
    #[serde(default)]
    pub(crate) skipped_zones: Vec<(String, String)>,
}

/// The zones cache-service serves whose view is stale, with why, when it
/// serves several and some (not all) of them are: their deletes wait while
/// the others are swept. Empty otherwise (one zone, or every zone stale:
/// the whole sweep waits).
fn stale_zones(status: &GetCacheStatusResponse) -> Vec<(String, String)> {
    if status.zones.len() < 2 {
        return Vec::new();
    }
    let stale: Vec<(String, String)> = status
        .zones
        .iter()
        .filter(|z| z.stale || !z.last_error.is_empty())
        .map(|z| {
            let why = if z.last_error.is_empty() {
                "the last refresh is too old".to_string()
            } else {
                format!("last refresh failed: {}", z.last_error)
            };
            (z.zone.clone(), why)
        })
        .collect();
    if stale.len() == status.zones.len() {
        Vec::new()
    } else {
        stale
    }
}

/// The zone of `name` among `zones`: the longest one it lies in.
fn zone_of<'a>(name: &str, zones: &'a [(String, String)]) -> Option<&'a (String, String)> {
    zones
        .iter()
        .filter(|(z, _)| name == z || name.ends_with(&format!(".{z}")))
        .max_by_key(|(z, _)| z.len())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The orphan sweep, under the tracker's lock. `t0` is when the call began.
pub(crate) async fn run(
    t: &Tracker,
    dry_run: bool,
    t0: Instant,
) -> Result<RunOrphanSweepResponse, TrackingError> {
    let mut resp = RunOrphanSweepResponse {
        dry_run,
        ..Default::default()
    };
    let status = match t.client().status().await {
        Ok(s) => s,
        Err(e) => {
            resp.skipped_reason = format!("skipped: {}", public_message(e));
            resp.duration_ms = num::elapsed_ms(t0);
            if !dry_run {
                save(t, &resp).await;
            }
            tracing::warn!(reason = %resp.skipped_reason, "orphan sweep skipped");
            return Ok(resp);
        }
    };
    // Several zones, some stale: the fresh ones are swept, the stale ones wait.
    let paused = stale_zones(&status);
    let fresh = !paused.is_empty() || (!status.stale && status.last_error.is_empty());
    // The provider's records as of this sweep, when the cache is fresh.
    let mut held: Option<HashMap<String, DnsRecord>> = None;
    if !paused.is_empty() {
        // The missing check waits for every zone to be fresh; the listing
        // still tells what each record is now.
        match t.client().list_all(0).await {
            Ok((records, _)) => {
                held = Some(
                    records
                        .into_iter()
                        .map(|r| (r.record_id.clone(), r))
                        .collect(),
                );
            }
            Err(e) => {
                resp.skipped_reason = format!("skipped: {}", public_message(e));
                resp.duration_ms = num::elapsed_ms(t0);
                if !dry_run {
                    save(t, &resp).await;
                }
                return Ok(resp);
            }
        }
    } else if fresh {
        match check::run(t, dry_run).await {
            Ok(Some(c)) => {
                resp.missing = num::count_u32(c.outcome.newly_missing);
                held = Some(c.records);
            }
            Ok(None) => {}
            Err(e) => {
                resp.skipped_reason = format!("skipped: {}", public_message(e));
                resp.duration_ms = num::elapsed_ms(t0);
                if !dry_run {
                    save(t, &resp).await;
                }
                return Ok(resp);
            }
        }
    }
    let orphans = t
        .db()
        .run(|c| Ok::<_, TrackingError>(store::orphans(c)?))
        .await?;
    let now = t.now();
    let grace = millis(t.settings().grace);
    let mut candidates = Vec::new();
    for o in orphans {
        if !o.app_managed {
            resp.unmanaged += 1;
        } else if t.settings().preserved.contains(&o.name) {
            resp.preserved += 1;
        } else if now.saturating_sub(o.orphaned_at.unwrap_or(now)) < grace {
            resp.within_grace += 1;
        } else {
            candidates.push(o);
        }
    }
    let blocked = if !t.settings().cleanup {
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
    let grace_txt = humantime::format_duration(t.settings().grace).to_string();
    let swept = |o: &store::OrphanRow, deleted: bool, reason: String| SweptRecord {
        record_id: o.record_id.clone(),
        name: o.name.clone(),
        r#type: o.rtype.clone(),
        orphaned_at: o.orphaned_at.map(timestamp_ms),
        deleted,
        reason,
    };
    // Deletes in a stale zone wait for its next successful refresh.
    if !paused.is_empty() {
        candidates.retain(|o| match zone_of(&o.name, &paused) {
            None => true,
            Some((zone, why)) => {
                resp.deleted.push(swept(
                    o,
                    false,
                    format!(
                        "not deleted: the provider cache of zone {zone} is not fresh ({why}); \
                         deletes there wait until its refresh succeeds"
                    ),
                ));
                false
            }
        });
        resp.skipped_zones = paused
            .iter()
            .map(|(zone, reason)| SkippedZone {
                zone: zone.clone(),
                reason: reason.clone(),
            })
            .collect();
        tracing::warn!(zones = ?paused, "orphan sweep: deletes paused in stale zones");
    }
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
    // Ownership markers: each doomed record's goes with it, and markers
    // proving this owner whose record is gone are deleted too.
    let marks = match (&t.settings().ownership, &held) {
        (Some(own), Some(held)) => {
            let zones = t.zone().await?.served().to_vec();
            let doomed: Vec<markers::Doomed<'_>> = candidates
                .iter()
                .map(|o| markers::Doomed {
                    record_id: &o.record_id,
                    name: &o.name,
                    rtype: &o.rtype,
                })
                .collect();
            markers::sweep_deletes(own, &zones, &doomed, held)
        }
        _ => markers::SweepMarkers::default(),
    };
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
                    format!("would delete: orphaned longer than the grace period ({grace_txt})"),
                )
            }));
            resp.deleted.extend(marks.stale.iter().map(|m| SweptRecord {
                record_id: m.record_id.clone(),
                name: m.name.clone(),
                r#type: m.r#type.clone(),
                orphaned_at: None,
                deleted: false,
                reason: format!("would delete: {STALE_MARKER}"),
            }));
        }
    } else if !candidates.is_empty() || !marks.stale.is_empty() {
        // A deletion is safe to send again (a second one finds nothing): no
        // journal entry needed. A record's marker goes in its group, after it.
        let mut changes: Vec<Change> = Vec::with_capacity(candidates.len());
        let mut positions: Vec<usize> = Vec::with_capacity(candidates.len());
        for (k, o) in candidates.iter().enumerate() {
            positions.push(changes.len());
            match marks.with.get(&k) {
                Some(marker) => {
                    let group = format!("sweep:{k}");
                    changes.push(markers::delete(&o.record_id, &group));
                    changes.push(markers::delete(marker, &group));
                }
                None => changes.push(markers::delete(&o.record_id, "")),
            }
        }
        let stale_at = changes.len();
        changes.extend(
            marks
                .stale
                .iter()
                .map(|m| markers::delete(&m.record_id, "")),
        );
        let outcomes = match t.client().apply(changes).await {
            Ok(o) => {
                for (m, res) in marks.stale.iter().zip(o.iter().skip(stale_at)) {
                    let done = res.code == 0 || res.code == Code::NotFound as i32;
                    resp.deleted.push(SweptRecord {
                        record_id: m.record_id.clone(),
                        name: m.name.clone(),
                        r#type: m.r#type.clone(),
                        orphaned_at: None,
                        deleted: done,
                        reason: if done {
                            STALE_MARKER.to_string()
                        } else {
                            format!("the provider refused the deletion: {}", res.message)
                        },
                    });
                }
                positions
                    .iter()
                    .filter_map(|&p| o.get(p).cloned())
                    .collect::<Vec<_>>()
            }
            Err(e) => {
                resp.ran = false;
                resp.skipped_reason = format!("skipped: {}", public_message(e));
                resp.duration_ms = num::elapsed_ms(t0);
                save(t, &resp).await;
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
        t.db()
            .run(move |c| Ok::<_, TrackingError>(store::record_deleted(c, &gone, &r, now)?))
            .await?;
    }
    resp.duration_ms = num::elapsed_ms(t0);
    if !dry_run {
        save(t, &resp).await;
    }
    let deleted = resp.deleted.iter().filter(|d| d.deleted).count();
    if !dry_run {
        metrics::counter!("trafego_orphans_deleted_total").increment(deleted as u64);
        t.export_counts().await;
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

/// Persists what a sweep did, for GetTrackerStatus.
async fn save(t: &Tracker, resp: &RunOrphanSweepResponse) {
    let last = LastSweep {
        at: t.now(),
        deleted: resp.deleted.iter().filter(|d| d.deleted).count() as u64,
        skipped_reason: resp.skipped_reason.clone(),
        skipped_zones: resp
            .skipped_zones
            .iter()
            .map(|z| (z.zone.clone(), z.reason.clone()))
            .collect(),
    };
    let json = serde_json::to_string(&last).unwrap_or_default();
    let res = t
        .db()
        .run(move |c| Ok::<_, TrackingError>(store::state_set(c, LAST_SWEEP, &json)?))
        .await;
    if let Err(e) = res {
        tracing::warn!(error = %e, "could not record the last sweep");
    }
}
