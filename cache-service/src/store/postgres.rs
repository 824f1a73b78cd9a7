//! PostgreSQL's dialect of cache-service's store: the twin of
//! [`super::sqlite`], item for item, taking a `PgConnection`. `store.rs`
//! picks one by matching on the connection; what both dialects share
//! (diesel's DSL) stays there.
//!
//! What differs from SQLite: a write transaction is `BEGIN` plus a
//! transaction-scoped advisory lock ([`WRITE_LOCK`], cache-service's own
//! key, not tracking-service's), so writers take turns as `BEGIN IMMEDIATE`
//! makes them on SQLite, and then checks the session's leadership fence
//! ([`check_session_fence`]): a replica that no longer leads writes nothing.
//! The suffix filter uses `right`; the journal's whole-row upsert is `ON
//! CONFLICT (change_id) DO UPDATE` with the rows made unique first
//! (PostgreSQL refuses to touch a row twice in one statement, where SQLite's
//! `REPLACE` lets the last one win, so the last one is kept); a statement
//! may carry 65,535 bound values, so chunks are larger. Statements stay
//! set-based: one per chunk, never one per record.

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::pg::PgConnection as Conn;
use diesel::prelude::*;
use diesel::upsert::excluded;
use trafego_common::leader::check_session_fence;

use super::JournalRow;
use crate::schema::change_journal;

/// Rows per multi-row statement: 5,000 rows of 13 columns stay under
/// PostgreSQL's 65,535 bound values.
pub const CHUNK: usize = 5000;

/// Journal rows per statement: 18 bound values each, 54,000 per statement.
pub const JOURNAL_CHUNK: usize = 3000;

/// The advisory lock every write transaction takes first (a fixed key:
/// "trafego-cache" folded into an i64, not tracking-service's key), released
/// at commit or rollback.
pub const WRITE_LOCK: i64 = 0x7472_6361_6368_6521;

/// Opens a write transaction, waits for the write lock (writers take turns
/// exactly as SQLite's `BEGIN IMMEDIATE` makes them), then checks the
/// session's fence: when this replica's leadership has moved on the
/// transaction is rolled back and the error's `fence_error` is `Some`.
pub fn begin_write(conn: &mut Conn) -> QueryResult<()> {
    AnsiTransactionManager::begin_transaction_sql(conn, "BEGIN")?;
    let checked = conn
        .batch_execute(&format!("SELECT pg_advisory_xact_lock({WRITE_LOCK})"))
        .and_then(|()| check_session_fence(conn));
    if let Err(e) = checked {
        // Do not leave the transaction open; the lock's or the fence's error
        // is the one to report.
        let _ = AnsiTransactionManager::rollback_transaction(conn);
        return Err(e);
    }
    Ok(())
}

/// A cached name ending in `dotted` (`"." + suffix`), compared exactly: the
/// SQL before, between and after the two bound copies of `dotted`.
pub const ENDS_WITH: (&str, &str, &str) = ("right(name, length(", ")) = ", "");

/// Writes journal entries whole, replacing any entry of the same change id,
/// a chunk of rows per statement. Of two rows with one id the later wins, as
/// with SQLite's `REPLACE`.
pub fn upsert_journal(conn: &mut Conn, rows: &[JournalRow]) -> QueryResult<()> {
    use change_journal as j;
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    let mut unique: Vec<&JournalRow> = rows
        .iter()
        .rev()
        .filter(|r| seen.insert(r.change_id.as_str()))
        .collect();
    unique.reverse();
    for chunk in unique.chunks(JOURNAL_CHUNK) {
        diesel::insert_into(j::table)
            .values(chunk.to_vec())
            .on_conflict(j::change_id)
            .do_update()
            .set((
                j::op.eq(excluded(j::op)),
                j::op_fingerprint.eq(excluded(j::op_fingerprint)),
                j::target_id.eq(excluded(j::target_id)),
                j::rtype.eq(excluded(j::rtype)),
                j::name.eq(excluded(j::name)),
                j::content.eq(excluded(j::content)),
                j::ttl.eq(excluded(j::ttl)),
                j::priority.eq(excluded(j::priority)),
                j::prior_ids.eq(excluded(j::prior_ids)),
                j::state.eq(excluded(j::state)),
                j::code.eq(excluded(j::code)),
                j::message.eq(excluded(j::message)),
                j::record_id.eq(excluded(j::record_id)),
                j::record.eq(excluded(j::record)),
                j::created_at.eq(excluded(j::created_at)),
                j::settled_at.eq(excluded(j::settled_at)),
                j::zone.eq(excluded(j::zone)),
            ))
            .execute(conn)?;
    }
    Ok(())
}
