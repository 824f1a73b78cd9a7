//! Manual tracking (`TrackRecord`, `UntrackRecord`): a record cache-service
//! holds taken into (or out of) the tracker's table by hand, under the
//! tracker's lock. Untracking never touches the provider.

use trafego_common::num;
use trafego_proto::tracking::TrackedRecord;

use crate::convert::{row_from, row_to_proto};
use crate::error::TrackingError;
use crate::store;
use crate::tracker::Tracker;

/// Starts tracking a record that cache-service holds (`TrackRecord`).
/// A record already tracked gets the requested `app_managed` flag (and
/// source, when one is given): this is how a caller explicitly takes over
/// a record adopted as not managed, or gives one up.
pub(crate) async fn track(
    t: &Tracker,
    record_id: &str,
    app_managed: bool,
    source: &str,
) -> Result<TrackedRecord, TrackingError> {
    let Some(r) = t.client().get_record(record_id).await? else {
        return Err(TrackingError::NotFound(format!(
            "cache-service holds no record {record_id}; refresh its cache or check the id"
        )));
    };
    let id = r.record_id.clone();
    let existing = t
        .db()
        .run(move |c| Ok::<_, TrackingError>(store::get(c, &id)?))
        .await?;
    let now = t.now();
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
    t.db()
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
pub(crate) async fn untrack(t: &Tracker, record_id: &str) -> Result<(), TrackingError> {
    let id = record_id.to_string();
    let found = t
        .db()
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
