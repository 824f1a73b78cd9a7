//! The SQL of leadership on PostgreSQL: the advisory lock key, the
//! `leadership` table, the takeover's fence bump, the holder's check and
//! [`check_fence`], the first statement of every fenced write.
//!
//! Everything here is blocking diesel work on a [`PgConnection`]; callers run
//! it on the blocking pool. Nothing here decides a role: that is the loop in
//! the parent module.

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Bool, Nullable, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use sha2::{Digest, Sha256};

/// The table holding each service's fence and leader. `fence` only grows;
/// `holder` is the leader's advertised address, for followers to forward to.
pub const LEADERSHIP_TABLE: &str = "CREATE TABLE IF NOT EXISTS leadership (
    service TEXT PRIMARY KEY,
    fence BIGINT NOT NULL,
    holder TEXT NOT NULL,
    since TIMESTAMPTZ NOT NULL
)";

/// The advisory lock key of `service`'s leadership: the first eight bytes of
/// SHA-256 of `trafego-leader/<service>`, big-endian, with the sign bit
/// cleared. Stable across versions and machines, so every replica of a
/// service contends for the same lock; in `pg_locks` it shows as
/// `classid = key >> 32`, `objid = key & 0xffffffff`, `objsubid = 1`.
pub fn lock_key(service: &str) -> i64 {
    hashed_key(&format!("trafego-leader/{service}"))
}

/// The key serialising `CREATE TABLE IF NOT EXISTS leadership` between
/// sessions (two concurrent creates can fail on PostgreSQL's catalog).
fn table_key() -> i64 {
    hashed_key("trafego-leadership-table")
}

fn hashed_key(text: &str) -> i64 {
    let digest = Sha256::digest(text.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes) & i64::MAX
}

/// Why a fenced write may not go on.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// Leadership moved on (or never was ours): the write must not happen.
    #[error(
        "leadership of {service} moved on: this replica writes with fence {ours}, the current \
         fence is {current}"
    )]
    Stale {
        /// The service whose leadership was checked.
        service: String,
        /// The fence the caller holds.
        ours: i64,
        /// The fence in the table (`none` when no leader ever took over).
        current: String,
    },
    /// The check itself failed.
    #[error("leadership check: {0}")]
    Query(#[from] diesel::result::Error),
}

impl From<FenceError> for tonic::Status {
    /// A stale fence is `UNAVAILABLE` (another replica leads: retry there);
    /// a failed query is internal, its detail only logged.
    fn from(e: FenceError) -> Self {
        match e {
            FenceError::Stale { .. } => tonic::Status::unavailable(e.to_string()),
            FenceError::Query(_) => crate::mesh::internal_status(&e),
        }
    }
}

#[derive(QueryableByName)]
struct FenceRow {
    #[diesel(sql_type = BigInt)]
    fence: i64,
}

#[derive(QueryableByName)]
struct Got {
    #[diesel(sql_type = Bool)]
    got: bool,
}

#[derive(QueryableByName)]
struct HolderRow {
    #[diesel(sql_type = Text)]
    holder: String,
}

#[derive(QueryableByName)]
struct Check {
    #[diesel(sql_type = Bool)]
    held: bool,
    #[diesel(sql_type = Nullable<BigInt>)]
    fence: Option<i64>,
}

/// Creates the `leadership` table if it is missing (idempotent, and safe
/// when several sessions start at once).
pub fn ensure_table(conn: &mut PgConnection) -> diesel::QueryResult<()> {
    conn.transaction(|c| {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<BigInt, _>(table_key())
            .execute(c)?;
        c.batch_execute(LEADERSHIP_TABLE)
    })
}

/// Checks the fence of `service` at the start of a write transaction, and
/// keeps it: the leadership row is read `FOR SHARE` and stays locked until
/// the transaction ends.
///
/// Why a stalled old leader cannot write after the new one starts: a
/// takeover bumps the fence with an `UPDATE` of this row, which waits for
/// every transaction holding the row `FOR SHARE`; the new leader acts only
/// once its bump has committed. So a write of the old leader either checked
/// its fence before the bump, and then commits before the bump does (before
/// the new leader does anything), or it checks after, and then reads the new
/// fence (a locking read sees the latest committed row version) and fails
/// here. Without `FOR SHARE` the bump would not wait, and a write that
/// checked just before it could commit after the new leader began.
///
/// Call it first in every write transaction (`conn.transaction(|c| {
/// check_fence(c, service, fence)?; … })`), with the fence of
/// [`Role::Leader`](super::Role::Leader). A provider write is fenced the same
/// way: check in the journal transaction right before the request is sent.
pub fn check_fence(conn: &mut PgConnection, service: &str, fence: i64) -> Result<(), FenceError> {
    let current = diesel::sql_query("SELECT fence FROM leadership WHERE service = $1 FOR SHARE")
        .bind::<Text, _>(service)
        .get_result::<FenceRow>(conn)
        .map(|r| r.fence);
    let current = match current {
        Ok(f) => Some(f),
        Err(diesel::result::Error::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    if current == Some(fence) {
        return Ok(());
    }
    Err(FenceError::Stale {
        service: service.to_string(),
        ours: fence,
        current: current.map_or_else(|| "none".to_string(), |f| f.to_string()),
    })
}

/// The session settings a fenced [`Db`](crate::db::Db) puts on a PostgreSQL
/// connection before each use: the service whose leadership fences it, and
/// the fence this replica holds (`0` when it follows: no fence is 0).
pub const FENCE_SERVICE_SETTING: &str = "trafego.fence_service";
/// See [`FENCE_SERVICE_SETTING`].
pub const FENCE_SETTING: &str = "trafego.fence";

#[derive(QueryableByName)]
struct SessionFence {
    #[diesel(sql_type = Nullable<Text>)]
    service: Option<String>,
    #[diesel(sql_type = Nullable<BigInt>)]
    ours: Option<i64>,
    #[diesel(sql_type = Nullable<BigInt>)]
    current: Option<i64>,
}

/// [`check_fence`] with the service and fence the session carries (set by a
/// fenced [`Db`](crate::db::Db)), in one round trip; the first statement of
/// every PostgreSQL write transaction of both stores. A session that carries
/// none (an unfenced `Db`: the one-shot import, store tests) is not checked.
/// A stale fence is a query error whose [`fence_error`] is `Some`.
pub fn check_session_fence(conn: &mut PgConnection) -> diesel::QueryResult<()> {
    let row = diesel::sql_query(
        "SELECT NULLIF(current_setting('trafego.fence_service', true), '') AS service, \
         CAST(NULLIF(current_setting('trafego.fence', true), '') AS BIGINT) AS ours, \
         (SELECT fence FROM leadership \
           WHERE service = current_setting('trafego.fence_service', true) FOR SHARE) AS current",
    )
    .get_result::<SessionFence>(conn)?;
    let (Some(service), Some(ours)) = (row.service, row.ours) else {
        return Ok(());
    };
    if row.current == Some(ours) {
        return Ok(());
    }
    Err(diesel::result::Error::QueryBuilderError(Box::new(
        FenceError::Stale {
            service,
            ours,
            current: row
                .current
                .map_or_else(|| "none".to_string(), |f| f.to_string()),
        },
    )))
}

/// The stale fence a failed write carries, if that is why it failed.
pub fn fence_error(e: &diesel::result::Error) -> Option<&FenceError> {
    match e {
        diesel::result::Error::QueryBuilderError(b) => b.downcast_ref::<FenceError>(),
        _ => None,
    }
}

/// The advertised address of `service`'s leader as the table records it
/// (the last one to take over; `None` before any took over).
pub fn read_leader(conn: &mut PgConnection, service: &str) -> diesel::QueryResult<Option<String>> {
    match diesel::sql_query("SELECT holder FROM leadership WHERE service = $1")
        .bind::<Text, _>(service)
        .get_result::<HolderRow>(conn)
    {
        Ok(r) => Ok(Some(r.holder)),
        Err(diesel::result::Error::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Tries the lock without waiting; `true` when this session now holds it.
pub(super) fn try_lock(conn: &mut PgConnection, key: i64) -> diesel::QueryResult<bool> {
    diesel::sql_query("SELECT pg_try_advisory_lock($1) AS got")
        .bind::<BigInt, _>(key)
        .get_result::<Got>(conn)
        .map(|g| g.got)
}

/// Releases the lock (a no-op when not held).
pub(super) fn unlock(conn: &mut PgConnection, key: i64) -> diesel::QueryResult<()> {
    diesel::sql_query("SELECT pg_advisory_unlock($1) AS got")
        .bind::<BigInt, _>(key)
        .get_result::<Got>(conn)
        .map(|_| ())
}

/// The takeover, in one statement: bumps `service`'s fence (1 for the first
/// leader ever), records `holder` and the time, and returns the new fence.
/// It waits for in-flight fenced writes (their `FOR SHARE`).
pub(super) fn bump_fence(
    conn: &mut PgConnection,
    service: &str,
    holder: &str,
) -> diesel::QueryResult<i64> {
    diesel::sql_query(
        "INSERT INTO leadership (service, fence, holder, since) VALUES ($1, 1, $2, now()) \
         ON CONFLICT (service) DO UPDATE \
         SET fence = leadership.fence + 1, holder = EXCLUDED.holder, since = EXCLUDED.since \
         RETURNING fence",
    )
    .bind::<Text, _>(service)
    .bind::<Text, _>(holder)
    .get_result::<FenceRow>(conn)
    .map(|r| r.fence)
}

/// What the holder's periodic check found.
pub(super) struct Held {
    /// This session still holds the advisory lock.
    pub held: bool,
    /// The fence in the table now.
    pub fence: Option<i64>,
}

/// The holder's check, one round trip: does this session still hold the
/// lock, and is the table's fence still the one it bumped to?
pub(super) fn check_held(
    conn: &mut PgConnection,
    service: &str,
    key: i64,
) -> diesel::QueryResult<Held> {
    diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
           AND pid = pg_backend_pid() AND classid::bigint = $1 AND objid::bigint = $2 \
           AND objsubid = 1) AS held, \
         (SELECT fence FROM leadership WHERE service = $3) AS fence",
    )
    .bind::<BigInt, _>(key >> 32)
    .bind::<BigInt, _>(key & 0xffff_ffff)
    .bind::<Text, _>(service)
    .get_result::<Check>(conn)
    .map(|c| Held {
        held: c.held,
        fence: c.fence,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_keys_are_stable_positive_and_per_service() {
        let cache = lock_key("trafego.cache.v1.CacheService");
        let tracking = lock_key("trafego.tracking.v1.TrackingService");
        assert!(cache >= 0 && tracking >= 0);
        assert_ne!(cache, tracking);
        assert_ne!(cache, table_key());
        // Fixed values (independently computed: SHA-256 in Python): changing
        // the derivation would split a rolling upgrade's replicas across two
        // locks, and two leaders would run.
        assert_eq!(cache, 2_776_416_555_032_115_387);
        assert_eq!(tracking, 8_558_713_918_654_455_758);
    }
}
