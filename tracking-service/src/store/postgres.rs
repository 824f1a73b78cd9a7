//! PostgreSQL's dialect of the tracker's store: the twin of
//! [`super::sqlite`], function for function, taking a `PgConnection`.
//! `store.rs` picks one by matching on the connection; what both dialects
//! share (diesel's DSL, the JSON lists bound as one parameter) stays there.
//!
//! What differs from SQLite: a write transaction is `BEGIN` plus a
//! transaction-scoped advisory lock ([`WRITE_LOCK`]), so writers take turns
//! as `BEGIN IMMEDIATE` makes them on SQLite; a read transaction is
//! `REPEATABLE READ READ ONLY`, one snapshot as on SQLite; lists are unpacked
//! with `jsonb_array_elements(_text)` from one `$n` parameter; `metadata` is
//! JSON kept as TEXT and edited through `jsonb` (`||`, `-`); `ON CONFLICT …
//! DO UPDATE` replaces `INSERT OR REPLACE`, and rows of one statement are
//! made unique first (PostgreSQL refuses to touch a row twice in one
//! statement, where SQLite lets the last one win, so the last one is kept);
//! `IS DISTINCT FROM` replaces `IS NOT`; counts use `FILTER`. Statements stay
//! set-based: one per batch, never one per record. Every write transaction
//! is fenced by the service's leadership (replicas on one database: only the
//! leader writes); SQLite has one instance per file and no fence.

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection as Conn;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel::upsert::excluded;

use super::{CheckOutcome, Count, Counts, Ids, IntentRow, TrackedRow, ViewRows};
use crate::schema::dns_pending_intents;

/// The advisory lock every write transaction takes first (a fixed key:
/// "trafego-tracking" folded into an i64), released at commit or rollback.
pub const WRITE_LOCK: i64 = 0x7472_6b67_7772_6974;

/// Opens a write transaction, waits for the write lock, so writers take
/// turns exactly as SQLite's `BEGIN IMMEDIATE` makes them, and then checks
/// the session's leadership fence
/// ([`check_session_fence`](trafego_common::leader::check_session_fence)):
/// a replica that does not lead (or no longer does) fails here, before its
/// first statement, with an error whose
/// [`fence_error`](trafego_common::leader::fence_error) is `Some`. The fence
/// row stays locked `FOR SHARE` until the transaction ends, so a takeover
/// waits for this write to commit. An unfenced session (the one-shot import,
/// the store tests) passes.
pub fn begin_write(conn: &mut Conn) -> QueryResult<()> {
    AnsiTransactionManager::begin_transaction_sql(conn, "BEGIN")?;
    let checked = conn
        .batch_execute(&format!("SELECT pg_advisory_xact_lock({WRITE_LOCK})"))
        .and_then(|()| trafego_common::leader::check_session_fence(conn));
    if let Err(e) = checked {
        // Do not leave the transaction open; the lock or fence error is the one to report.
        let _ = AnsiTransactionManager::rollback_transaction(conn);
        return Err(e);
    }
    Ok(())
}

/// Opens a read transaction: one snapshot for every statement in it.
pub fn begin_read(conn: &mut Conn) -> QueryResult<()> {
    AnsiTransactionManager::begin_transaction_sql(
        conn,
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    )
}

/// `column IN (ids)` before and after the one bound parameter (a JSON array).
pub const IN_IDS: (&str, &str) = (
    " IN (SELECT jsonb_array_elements_text(CAST(",
    " AS jsonb)))",
);

/// Journals `intents`, rewriting an intent sent again under its own id: one
/// statement (ids are unique within one call: `<run>:<index>`).
pub fn replace_intents(conn: &mut Conn, intents: &[IntentRow]) -> QueryResult<usize> {
    use dns_pending_intents as i;
    diesel::insert_into(i::table)
        .values(intents)
        .on_conflict(i::id)
        .do_update()
        .set((
            i::source.eq(excluded(i::source)),
            i::action.eq(excluded(i::action)),
            i::record_id.eq(excluded(i::record_id)),
            i::name.eq(excluded(i::name)),
            i::rtype.eq(excluded(i::rtype)),
            i::content.eq(excluded(i::content)),
            i::ttl.eq(excluded(i::ttl)),
            i::proxied.eq(excluded(i::proxied)),
            i::priority.eq(excluded(i::priority)),
            i::created_at.eq(excluded(i::created_at)),
            i::journal_id.eq(excluded(i::journal_id)),
        ))
        .execute(conn)
}

/// Inserts `rows`, or rewrites the row already holding each one's
/// `(provider, record_id)`, keeping its `tracked_at`, `first_seen` and, while
/// it stays orphaned, its `orphaned_at`: one statement, whatever the count.
/// Of two rows with one key the later wins, as on SQLite.
pub fn upsert_rows(conn: &mut Conn, rows: &[&TrackedRow]) -> QueryResult<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    let json = serde_json::to_string(rows).unwrap_or_else(|_| "[]".into());
    diesel::sql_query(
        "INSERT INTO dns_tracked_records (provider, zone, record_id, type, name, content, ttl, \
         proxied, priority, fingerprint, app_managed, source, is_orphaned, orphaned_at, \
         is_missing, missing_since, drift, tracked_at, updated_at, first_seen, metadata) \
         SELECT DISTINCT ON (v->>'provider', v->>'record_id') \
         v->>'provider', v->>'zone', v->>'record_id', v->>'rtype', v->>'name', v->>'content', \
         (v->>'ttl')::integer, (v->>'proxied')::boolean, (v->>'priority')::integer, \
         v->>'fingerprint', (v->>'app_managed')::boolean, v->>'source', \
         (v->>'is_orphaned')::boolean, (v->>'orphaned_at')::bigint, \
         (v->>'is_missing')::boolean, (v->>'missing_since')::bigint, v->>'drift', \
         (v->>'tracked_at')::bigint, (v->>'updated_at')::bigint, (v->>'first_seen')::bigint, \
         v->>'metadata' \
         FROM jsonb_array_elements(CAST($1 AS jsonb)) WITH ORDINALITY AS e(v, ord) \
         ORDER BY v->>'provider', v->>'record_id', ord DESC \
         ON CONFLICT (provider, record_id) DO UPDATE SET zone = excluded.zone, \
         type = excluded.type, name = excluded.name, content = excluded.content, \
         ttl = excluded.ttl, proxied = excluded.proxied, priority = excluded.priority, \
         fingerprint = excluded.fingerprint, app_managed = excluded.app_managed, \
         source = excluded.source, is_orphaned = excluded.is_orphaned, \
         orphaned_at = CASE WHEN excluded.is_orphaned \
           THEN COALESCE(dns_tracked_records.orphaned_at, excluded.orphaned_at) ELSE NULL END, \
         is_missing = excluded.is_missing, missing_since = excluded.missing_since, \
         drift = excluded.drift, updated_at = excluded.updated_at, metadata = excluded.metadata",
    )
    .bind::<Text, _>(json)
    .execute(conn)
}

/// Marks the records `ids` orphaned (those not already), starting their
/// grace clock at `now` unless it runs, with `reason` in their metadata.
pub fn mark_orphaned(conn: &mut Conn, ids: &Ids, reason: &str, now: i64) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE dns_tracked_records SET is_orphaned = true, \
         orphaned_at = COALESCE(orphaned_at, $1), updated_at = $2, \
         metadata = (CAST(metadata AS jsonb) || jsonb_build_object('orphan_reason', CAST($3 AS text)))::text \
         WHERE NOT is_orphaned AND record_id IN (SELECT jsonb_array_elements_text(CAST($4 AS jsonb)))",
    )
    .bind::<BigInt, _>(now)
    .bind::<BigInt, _>(now)
    .bind::<Text, _>(reason)
    .bind::<Text, _>(&ids.0)
    .execute(conn)
}

/// Clears the orphan flag, clock and reason of the records `ids`.
pub fn unorphan(conn: &mut Conn, ids: &Ids, now: i64) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE dns_tracked_records SET is_orphaned = false, orphaned_at = NULL, updated_at = $1, \
         metadata = (CAST(metadata AS jsonb) - 'orphan_reason')::text \
         WHERE record_id IN (SELECT jsonb_array_elements_text(CAST($2 AS jsonb)))",
    )
    .bind::<BigInt, _>(now)
    .bind::<Text, _>(&ids.0)
    .execute(conn)
}

/// Deletes `source`'s declarations of `keys`, each `"<name> <type>"`.
pub fn delete_declarations(conn: &mut Conn, source: &str, keys: &Ids) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM dns_declarations WHERE source = $1 AND \
         (name || ' ' || type) IN (SELECT jsonb_array_elements_text(CAST($2 AS jsonb)))",
    )
    .bind::<Text, _>(source)
    .bind::<Text, _>(&keys.0)
    .execute(conn)
}

/// Copies the records `ids` that are still orphaned into the orphan history,
/// deleted at `now` for `reason`, then untracks them: two statements.
pub fn move_to_history(conn: &mut Conn, ids: &Ids, reason: &str, now: i64) -> QueryResult<usize> {
    diesel::sql_query(
        "INSERT INTO orphaned_records_history (provider, zone, record_id, type, name, content, \
         ttl, proxied, priority, source, orphaned_at, deleted_at, reason, metadata) \
         SELECT provider, zone, record_id, type, name, content, ttl, proxied, priority, source, \
         orphaned_at, $1, $2, metadata FROM dns_tracked_records \
         WHERE is_orphaned AND record_id IN (SELECT jsonb_array_elements_text(CAST($3 AS jsonb)))",
    )
    .bind::<BigInt, _>(now)
    .bind::<Text, _>(reason)
    .bind::<Text, _>(&ids.0)
    .execute(conn)?;
    diesel::sql_query(
        "DELETE FROM dns_tracked_records \
         WHERE is_orphaned AND record_id IN (SELECT jsonb_array_elements_text(CAST($1 AS jsonb)))",
    )
    .bind::<Text, _>(&ids.0)
    .execute(conn)
}

/// Counts by state in one statement.
pub fn counts(conn: &mut Conn) -> QueryResult<Counts> {
    diesel::sql_query(
        "SELECT COUNT(*) AS total, \
         COUNT(*) FILTER (WHERE app_managed AND NOT is_orphaned) AS active, \
         COUNT(*) FILTER (WHERE is_orphaned) AS orphaned, \
         COUNT(*) FILTER (WHERE is_missing) AS missing, \
         COUNT(*) FILTER (WHERE NOT app_managed) AS unmanaged FROM dns_tracked_records",
    )
    .get_result(conn)
}

/// The missing/drift check's statements, inside the caller's transaction:
/// `cache` is loaded into a temporary table (`cache_view`, per connection,
/// emptied at the end of every transaction), then tracked records absent from
/// it are flagged missing, those present cleared, and drift noted (name,
/// type, content, proxied, priority, or an explicit TTL differing): a fixed
/// number of statements whatever the sizes.
pub fn check_with_cache_view(
    conn: &mut Conn,
    cache: &ViewRows,
    now: i64,
) -> QueryResult<CheckOutcome> {
    diesel::sql_query(
        "CREATE TEMP TABLE IF NOT EXISTS cache_view (record_id TEXT PRIMARY KEY NOT NULL, \
         content TEXT NOT NULL, ttl BIGINT NOT NULL, proxied BOOLEAN NOT NULL, priority BIGINT, \
         name TEXT NOT NULL, type TEXT NOT NULL) ON COMMIT DELETE ROWS",
    )
    .execute(conn)?;
    diesel::sql_query(
        "INSERT INTO cache_view (record_id, content, ttl, proxied, priority, name, type) \
         SELECT DISTINCT ON (v->>0) v->>0, v->>1, (v->>2)::bigint, (v->>3)::boolean, \
         (v->>4)::bigint, v->>5, v->>6 \
         FROM jsonb_array_elements(CAST($1 AS jsonb)) WITH ORDINALITY AS e(v, ord) \
         ORDER BY v->>0, ord DESC",
    )
    .bind::<Text, _>(&cache.0)
    .execute(conn)?;
    let newly_missing = diesel::sql_query(
        "UPDATE dns_tracked_records t SET is_missing = true, missing_since = $1, updated_at = $2 \
         WHERE NOT is_missing AND NOT EXISTS (SELECT 1 FROM cache_view c WHERE c.record_id = t.record_id)",
    )
    .bind::<BigInt, _>(now)
    .bind::<BigInt, _>(now)
    .execute(conn)?;
    let found_again = diesel::sql_query(
        "UPDATE dns_tracked_records t SET is_missing = false, missing_since = NULL, updated_at = $1 \
         WHERE is_missing AND EXISTS (SELECT 1 FROM cache_view c WHERE c.record_id = t.record_id)",
    )
    .bind::<BigInt, _>(now)
    .execute(conn)?;
    diesel::sql_query(
        "UPDATE dns_tracked_records AS t SET drift = d.note, updated_at = $1 FROM ( \
           SELECT c.record_id AS rid, CASE \
           WHEN c.name != t2.name OR c.type != t2.type \
           THEN 'the provider now holds it as ' || c.type || ' ' || c.name || ' ' || c.content || \
                ' (tracked as ' || t2.type || ' ' || t2.name || ')' \
           WHEN c.content != t2.content OR c.proxied != t2.proxied \
             OR c.priority IS DISTINCT FROM t2.priority OR (t2.ttl != 1 AND c.ttl != t2.ttl) \
           THEN 'the provider holds content ' || c.content || ', ttl ' || c.ttl || \
                ', proxied ' || CASE WHEN c.proxied THEN 'true' ELSE 'false' END \
           ELSE '' END AS note \
           FROM cache_view c JOIN dns_tracked_records t2 ON t2.record_id = c.record_id \
         ) AS d WHERE t.record_id = d.rid AND t.drift != d.note",
    )
    .bind::<BigInt, _>(now)
    .execute(conn)?;
    let drifted = diesel::sql_query(
        "SELECT COUNT(*) AS n FROM dns_tracked_records WHERE drift != '' AND NOT is_missing",
    )
    .get_result::<Count>(conn)?
    .n;
    let missing =
        diesel::sql_query("SELECT COUNT(*) AS n FROM dns_tracked_records WHERE is_missing")
            .get_result::<Count>(conn)?
            .n;
    Ok(CheckOutcome {
        newly_missing: u64::try_from(newly_missing).unwrap_or(u64::MAX),
        found_again: u64::try_from(found_again).unwrap_or(u64::MAX),
        drifted: u64::try_from(drifted).unwrap_or(0),
        missing: u64::try_from(missing).unwrap_or(0),
    })
}
