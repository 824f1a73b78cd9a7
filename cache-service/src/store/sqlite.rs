//! Everything SQLite-specific in cache-service's SQL, in one file: the
//! connection type, the write transaction (`BEGIN IMMEDIATE`), the exact
//! name-suffix filter, the journal's whole-row upsert (`REPLACE`) and how
//! many rows one statement carries. `store.rs` itself is dialect-neutral
//! diesel; a PostgreSQL backend is a sibling file offering the same items
//! (and its migrations), not a rewrite of the store.
//!
//! Nothing here decides what is stored: these are the dialect's words for
//! what `store.rs` asks.

use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use diesel::sqlite::Sqlite;

use super::JournalRow;
use crate::schema::{change_journal, dns_records};

/// The connection every store function takes. Named once, so a second
/// backend can make it an enum of connections (`#[derive(MultiConnection)]`).
pub type Conn = diesel::SqliteConnection;

/// Rows per multi-row statement, kept well under SQLite's limit on bound
/// variables (32,766 since 3.32).
pub const CHUNK: usize = 1000;

/// Runs `f` in a transaction that takes the write lock when it begins
/// (`BEGIN IMMEDIATE`): a busy database makes it wait up to `busy_timeout`
/// there, instead of failing midway when a read lock cannot be upgraded.
pub fn write_tx<T, E, F>(conn: &mut Conn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut Conn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    conn.immediate_transaction(f)
}

/// A cached name equal to `suffix` or ending in `"." + suffix`, compared
/// exactly: `LIKE` would take `_` as a wildcard.
pub fn suffix_filter(
    suffix: &str,
) -> Box<dyn BoxableExpression<dns_records::table, Sqlite, SqlType = Bool>> {
    let dotted = format!(".{suffix}");
    Box::new(
        dns_records::name
            .eq(suffix.to_string())
            .or(diesel::dsl::sql::<Bool>("substr(name, -length(")
                .bind::<Text, _>(dotted.clone())
                .sql(")) = ")
                .bind::<Text, _>(dotted)),
    )
}

/// Writes journal entries whole, replacing any entry of the same change id
/// (`REPLACE INTO`), a chunk of rows per statement: a fixed number of
/// statements per thousand changes, never one per change.
pub fn upsert_journal(conn: &mut Conn, rows: &[JournalRow]) -> QueryResult<()> {
    for chunk in rows.chunks(CHUNK / 4) {
        diesel::replace_into(change_journal::table)
            .values(chunk)
            .execute(conn)?;
    }
    Ok(())
}
