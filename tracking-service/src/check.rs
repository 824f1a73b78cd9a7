//! The missing/drift check: tracked records compared with cache-service's
//! view, when that view is fresh. A tracked record the provider no longer
//! holds is flagged missing (and cleared when it is back); one whose
//! provider copy differs (renamed, retyped, new content) gets a drift note.
//! The comparison is set-based, in the store: a fixed number of statements
//! whatever the number of records.

use std::collections::HashMap;
use std::time::Instant;

use trafego_common::num;
use trafego_proto::cache::DnsRecord;

use crate::convert::cache_view;
use crate::error::TrackingError;
use crate::store::{self, CacheView, CheckOutcome};
use crate::tracker::Tracker;

/// What a missing/drift check found, and the provider's records it saw.
pub(crate) struct Checked {
    pub(crate) outcome: CheckOutcome,
    pub(crate) records: HashMap<String, DnsRecord>,
}

/// The check, under the tracker's lock. With `dry_run` nothing is written.
/// `None` when cache-service's view is stale (or its last refresh failed).
pub(crate) async fn run(t: &Tracker, dry_run: bool) -> Result<Option<Checked>, TrackingError> {
    let st = t.client().status().await?;
    if st.stale || !st.last_error.is_empty() {
        return Ok(None);
    }
    let t0 = Instant::now();
    let (records, _) = t.client().list_all(0).await?;
    let listed_ms = num::elapsed_ms(t0);
    let view: Vec<CacheView> = records.iter().map(cache_view).collect();
    let now = t.now();
    let o = t
        .db()
        .run(move |c| Ok::<_, TrackingError>(store::check_against_cache(c, &view, now, dry_run)?))
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
