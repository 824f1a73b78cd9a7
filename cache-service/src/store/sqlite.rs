//! SQLite's dialect of cache-service's store: everything [`crate::store`]
//! says that only SQLite understands, behind small functions taking a
//! `SqliteConnection`; [`super::postgres`] is its twin, item for item.
//! `store.rs` picks one by matching on the connection.
//!
//! What is here: the write transaction (`BEGIN IMMEDIATE`), the exact
//! name-suffix filter (`substr` with a negative start), the journal's
//! whole-row upsert (`REPLACE INTO`) and how many rows one statement carries.
//!
//! Nothing here decides what is stored: these are the dialect's words for
//! what `store.rs` asks.

use diesel::connection::AnsiTransactionManager;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection as Conn;

use super::JournalRow;
use crate::schema::change_journal;

/// Rows per multi-row statement, kept well under SQLite's limit on bound
/// variables (32,766 since 3.32): 1,000 rows of 13 columns.
pub const CHUNK: usize = 1000;

/// Journal rows per statement: 18 bound values each, 4,500 per statement.
pub const JOURNAL_CHUNK: usize = CHUNK / 4;

/// Opens a write transaction that takes the write lock when it begins
/// (`BEGIN IMMEDIATE`): a busy database makes it wait up to `busy_timeout`
/// there, instead of failing midway when a read lock cannot be upgraded.
/// One instance per file: no fence to check.
pub fn begin_write(conn: &mut Conn) -> QueryResult<()> {
    AnsiTransactionManager::begin_transaction_sql(conn, "BEGIN IMMEDIATE")
}

/// A cached name ending in `dotted` (`"." + suffix`), compared exactly
/// (`LIKE` would take `_` as a wildcard): the SQL before, between and after
/// the two bound copies of `dotted`.
pub const ENDS_WITH: (&str, &str, &str) = ("substr(name, -length(", ")) = ", "");

/// Writes journal entries whole, replacing any entry of the same change id
/// (`REPLACE INTO`; of two rows with one id the later wins), a chunk of rows
/// per statement.
pub fn upsert_journal(conn: &mut Conn, rows: &[JournalRow]) -> QueryResult<()> {
    for chunk in rows.chunks(JOURNAL_CHUNK) {
        diesel::replace_into(change_journal::table)
            .values(chunk)
            .execute(conn)?;
    }
    Ok(())
}
