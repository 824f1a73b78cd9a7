//! SQLite's dialect of the tracker's store: everything [`crate::store`] says
//! that only SQLite understands, behind small functions taking a
//! `SqliteConnection`; [`super::postgres`] is its twin, function for
//! function. `store.rs` picks one by matching on the connection.
//!
//! What is here: how a write transaction begins (`BEGIN IMMEDIATE`); a list
//! of ids bound as one parameter unpacked by `json_each`, which keeps every
//! statement over many records set-based; the statements written as raw SQL
//! (`?` placeholders, `json_set` and `json_remove` on metadata,
//! `json_extract`, `INSERT OR REPLACE` and `replace_into`, a temporary table
//! for the missing/drift check, `IS NOT`, sums of booleans). The store's
//! diesel DSL queries are portable and stay in `store.rs`.

use diesel::connection::AnsiTransactionManager;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::SqliteConnection as Conn;

use super::{CheckOutcome, Count, Counts, Ids, IntentRow, TrackedRow, ViewRows};
use crate::schema::dns_pending_intents;

/// Opens a write transaction: SQLite's `BEGIN IMMEDIATE` takes the write
/// lock up front, so two writers never deadlock upgrading a read.
pub fn begin_write(conn: &mut Conn) -> QueryResult<()> {
    AnsiTransactionManager::begin_transaction_sql(conn, "BEGIN IMMEDIATE")
}

/// Opens a read transaction: one snapshot for every statement in it.
pub fn begin_read(conn: &mut Conn) -> QueryResult<()> {
    AnsiTransactionManager::begin_transaction_sql(conn, "BEGIN")
}

/// `column IN (ids)` before and after the one bound parameter (a JSON array).
pub const IN_IDS: (&str, &str) = (" IN (SELECT value FROM json_each(", "))");

/// Journals `intents` (at most 500: two bound values per column stay under
/// SQLite's limit), rewriting an intent sent again under its own id.
pub fn replace_intents(conn: &mut Conn, intents: &[IntentRow]) -> QueryResult<usize> {
    diesel::replace_into(dns_pending_intents::table)
        .values(intents)
        .execute(conn)
}

/// Inserts `rows`, or rewrites the row already holding each one's
/// `(provider, record_id)`, keeping its `tracked_at`, `first_seen` and, while
/// it stays orphaned, its `orphaned_at`: one statement, whatever the count.
pub fn upsert_rows(conn: &mut Conn, rows: &[&TrackedRow]) -> QueryResult<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    let json = serde_json::to_string(rows).unwrap_or_else(|_| "[]".into());
    diesel::sql_query(
        "INSERT INTO dns_tracked_records (provider, zone, record_id, type, name, content, ttl, \
         proxied, priority, fingerprint, app_managed, source, is_orphaned, orphaned_at, \
         is_missing, missing_since, drift, tracked_at, updated_at, first_seen, metadata) \
         SELECT json_extract(value, '$.provider'), json_extract(value, '$.zone'), \
         json_extract(value, '$.record_id'), json_extract(value, '$.rtype'), \
         json_extract(value, '$.name'), json_extract(value, '$.content'), \
         json_extract(value, '$.ttl'), json_extract(value, '$.proxied'), \
         json_extract(value, '$.priority'), json_extract(value, '$.fingerprint'), \
         json_extract(value, '$.app_managed'), json_extract(value, '$.source'), \
         json_extract(value, '$.is_orphaned'), json_extract(value, '$.orphaned_at'), \
         json_extract(value, '$.is_missing'), json_extract(value, '$.missing_since'), \
         json_extract(value, '$.drift'), json_extract(value, '$.tracked_at'), \
         json_extract(value, '$.updated_at'), json_extract(value, '$.first_seen'), \
         json_extract(value, '$.metadata') FROM json_each(?) WHERE true \
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
        "UPDATE dns_tracked_records SET is_orphaned = 1, \
         orphaned_at = COALESCE(orphaned_at, ?), updated_at = ?, \
         metadata = json_set(metadata, '$.orphan_reason', ?) \
         WHERE is_orphaned = 0 AND record_id IN (SELECT value FROM json_each(?))",
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
        "UPDATE dns_tracked_records SET is_orphaned = 0, orphaned_at = NULL, updated_at = ?, \
         metadata = json_remove(metadata, '$.orphan_reason') \
         WHERE record_id IN (SELECT value FROM json_each(?))",
    )
    .bind::<BigInt, _>(now)
    .bind::<Text, _>(&ids.0)
    .execute(conn)
}

/// Deletes `source`'s declarations of `keys`, each `"<name> <type>"`.
pub fn delete_declarations(conn: &mut Conn, source: &str, keys: &Ids) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM dns_declarations WHERE source = ? AND \
         (name || ' ' || type) IN (SELECT value FROM json_each(?))",
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
         orphaned_at, ?, ?, metadata FROM dns_tracked_records \
         WHERE is_orphaned = 1 AND record_id IN (SELECT value FROM json_each(?))",
    )
    .bind::<BigInt, _>(now)
    .bind::<Text, _>(reason)
    .bind::<Text, _>(&ids.0)
    .execute(conn)?;
    diesel::sql_query(
        "DELETE FROM dns_tracked_records \
         WHERE is_orphaned = 1 AND record_id IN (SELECT value FROM json_each(?))",
    )
    .bind::<Text, _>(&ids.0)
    .execute(conn)
}

/// Counts by state in one statement.
pub fn counts(conn: &mut Conn) -> QueryResult<Counts> {
    diesel::sql_query(
        "SELECT COUNT(*) AS total, \
         COALESCE(SUM(app_managed = 1 AND is_orphaned = 0), 0) AS active, \
         COALESCE(SUM(is_orphaned = 1), 0) AS orphaned, \
         COALESCE(SUM(is_missing = 1), 0) AS missing, \
         COALESCE(SUM(app_managed = 0), 0) AS unmanaged FROM dns_tracked_records",
    )
    .get_result(conn)
}

/// The missing/drift check's statements, inside the caller's transaction:
/// `cache` is loaded into a temporary table (`cache_view`, emptied again
/// after), then tracked records absent from it are flagged missing, those
/// present cleared, and drift noted (name, type, content, proxied, priority,
/// or an explicit TTL differing): a fixed number of statements whatever the
/// sizes.
pub fn check_with_cache_view(
    conn: &mut Conn,
    cache: &ViewRows,
    now: i64,
) -> QueryResult<CheckOutcome> {
    diesel::sql_query(
        "CREATE TEMP TABLE IF NOT EXISTS cache_view (record_id TEXT PRIMARY KEY NOT NULL, \
         content TEXT NOT NULL, ttl INTEGER NOT NULL, proxied BOOLEAN NOT NULL, priority INTEGER, \
         name TEXT NOT NULL, type TEXT NOT NULL)",
    )
    .execute(conn)?;
    diesel::sql_query("DELETE FROM cache_view").execute(conn)?;
    diesel::sql_query(
        "INSERT OR REPLACE INTO cache_view (record_id, content, ttl, proxied, priority, name, type) \
         SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), \
         json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]'), \
         json_extract(value, '$[6]') FROM json_each(?)",
    )
    .bind::<Text, _>(&cache.0)
    .execute(conn)?;
    let newly_missing = diesel::sql_query(
        "UPDATE dns_tracked_records SET is_missing = 1, missing_since = ?, updated_at = ? \
         WHERE is_missing = 0 AND record_id NOT IN (SELECT record_id FROM cache_view)",
    )
    .bind::<BigInt, _>(now)
    .bind::<BigInt, _>(now)
    .execute(conn)?;
    let found_again = diesel::sql_query(
        "UPDATE dns_tracked_records SET is_missing = 0, missing_since = NULL, updated_at = ? \
         WHERE is_missing = 1 AND record_id IN (SELECT record_id FROM cache_view)",
    )
    .bind::<BigInt, _>(now)
    .execute(conn)?;
    diesel::sql_query(
        "UPDATE dns_tracked_records AS t SET drift = d.note, updated_at = ? FROM ( \
           SELECT c.record_id AS rid, CASE \
           WHEN c.name != t2.name OR c.type != t2.type \
           THEN 'the provider now holds it as ' || c.type || ' ' || c.name || ' ' || c.content || \
                ' (tracked as ' || t2.type || ' ' || t2.name || ')' \
           WHEN c.content != t2.content OR c.proxied != t2.proxied \
             OR c.priority IS NOT t2.priority OR (t2.ttl != 1 AND c.ttl != t2.ttl) \
           THEN 'the provider holds content ' || c.content || ', ttl ' || c.ttl || \
                ', proxied ' || CASE WHEN c.proxied THEN 'true' ELSE 'false' END \
           ELSE '' END AS note \
           FROM cache_view c JOIN dns_tracked_records t2 ON t2.record_id = c.record_id \
         ) AS d WHERE t.record_id = d.rid AND t.drift != d.note",
    )
    .bind::<BigInt, _>(now)
    .execute(conn)?;
    let drifted = diesel::sql_query(
        "SELECT COUNT(*) AS n FROM dns_tracked_records WHERE drift != '' AND is_missing = 0",
    )
    .get_result::<Count>(conn)?
    .n;
    let missing =
        diesel::sql_query("SELECT COUNT(*) AS n FROM dns_tracked_records WHERE is_missing = 1")
            .get_result::<Count>(conn)?
            .n;
    diesel::sql_query("DELETE FROM cache_view").execute(conn)?;
    Ok(CheckOutcome {
        newly_missing: u64::try_from(newly_missing).unwrap_or(u64::MAX),
        found_again: u64::try_from(found_again).unwrap_or(u64::MAX),
        drifted: u64::try_from(drifted).unwrap_or(0),
        missing: u64::try_from(missing).unwrap_or(0),
    })
}
