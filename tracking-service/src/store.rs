//! The tracker's database: tracked records, per-source declarations, the
//! journal of pending writes, the orphan history and a little key/value state.
//!
//! Every function takes a connection and runs synchronously; callers run
//! them through `Db::run`, never holding a connection across an `.await`.
//! Writes happen in write transactions (`write_tx`), every one of them: on
//! PostgreSQL that is where the leadership fence is checked. Work over many records
//! is set-based: ids travel as one list bound to one parameter (`Ids`,
//! `in_ids`), so a sweep over 100,000 records is a fixed number of
//! statements, never one per record.
//!
//! The SQL is all here, for both backends: the connection is
//! [`AnyConnection`] (SQLite or PostgreSQL, chosen by the database URL).
//! What is portable (diesel's DSL, the JSON lists) is in this file; what one
//! dialect alone understands is in [`sqlite`] and its twin [`postgres`],
//! behind functions of the same names, picked by `dialect!` matching on
//! the connection.

use std::collections::HashMap;

use diesel::expression::BoxableExpression;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};
use trafego_common::db::{AnyConnection, Dialect, MultiBackend};
use trafego_common::{dialect, on_inner};

use crate::schema::{
    dns_declarations, dns_pending_intents, dns_tracked_records, orphaned_records_history,
    tracker_state,
};

pub mod postgres;
pub mod sqlite;

/// The connection every store function takes: SQLite or PostgreSQL.
pub type Conn = AnyConnection;

/// Runs `f` in a transaction opened by the dialect's `begin` (`begin_write`
/// or `begin_read`), committed when `f` succeeds and rolled back when it fails.
fn in_tx<T, E, F>(conn: &mut Conn, write: bool, f: F) -> Result<T, E>
where
    F: FnOnce(&mut Conn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    trafego_common::db::in_transaction(
        conn,
        |c| {
            if write {
                dialect!(c, begin_write())
            } else {
                dialect!(c, begin_read())
            }
        },
        f,
    )
}

/// Runs `f` in a write transaction: writers take turns from its first
/// statement on (`BEGIN IMMEDIATE` on SQLite, an advisory lock on
/// PostgreSQL), so two never deadlock upgrading a read.
pub fn write_tx<T, E, F>(conn: &mut Conn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut Conn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    in_tx(conn, true, f)
}

/// Runs `f` in a read transaction: one snapshot for all its statements.
pub fn read_tx<T, E, F>(conn: &mut Conn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut Conn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    in_tx(conn, false, f)
}

/// A list of strings bound as one parameter whatever its length: one JSON
/// array, unpacked in SQL by the dialect (`json_each`,
/// `jsonb_array_elements_text`). Built once, bound as often as needed.
#[derive(Debug, Clone)]
pub struct Ids(String);

impl Ids {
    /// The list of `items`.
    pub fn of<S: AsRef<str>>(items: &[S]) -> Self {
        Ids(serde_json::Value::Array(
            items
                .iter()
                .map(|s| serde_json::Value::String(s.as_ref().to_string()))
                .collect(),
        )
        .to_string())
    }
}

/// `column IN (ids)`, for the DSL's `filter`, with the list as one bound
/// parameter. `column` is a column name of the table filtered; `dialect` is
/// the connection's (`conn.dialect()`, taken before the query borrows it).
pub fn in_ids<QS>(
    dialect: Dialect,
    column: &'static str,
    ids: &Ids,
) -> Box<dyn BoxableExpression<QS, MultiBackend, SqlType = Bool>> {
    let (open, close) = match dialect {
        Dialect::Sqlite => sqlite::IN_IDS,
        Dialect::Postgres => postgres::IN_IDS,
    };
    Box::new(
        diesel::dsl::sql::<Bool>(&format!("{column}{open}"))
            .bind::<Text, _>(ids.0.clone())
            .sql(close),
    )
}

/// One count, read by the dialects' raw statements.
#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// The provider's records as the missing/drift check loads them: one JSON
/// array of `[id, content, ttl, proxied, priority, name, type]`, bound once.
#[derive(Debug, Clone)]
pub struct ViewRows(String);

impl ViewRows {
    /// The rows of `cache`.
    pub fn of(cache: &[CacheView]) -> Self {
        let rows: Vec<_> = cache
            .iter()
            .map(|r| {
                (
                    &r.record_id,
                    &r.content,
                    r.ttl,
                    r.proxied,
                    r.priority,
                    &r.name,
                    &r.rtype,
                )
            })
            .collect();
        ViewRows(serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into()))
    }
}

/// Rows per multi-row INSERT, kept under SQLite's bound-variable limit.
const INSERT_CHUNK: usize = 1000;

/// A tracked record as stored.
#[derive(
    Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset, serde::Serialize,
)]
#[diesel(table_name = dns_tracked_records, treat_none_as_null = true)]
pub struct TrackedRow {
    /// The provider holding the record.
    pub provider: String,
    /// The zone.
    pub zone: String,
    /// The provider's id; may change when the record is updated (zone files).
    pub record_id: String,
    /// Record type, uppercase.
    pub rtype: String,
    /// Fully qualified name.
    pub name: String,
    /// Content as the provider holds it.
    pub content: String,
    /// TTL (1 = automatic).
    pub ttl: i32,
    /// Proxied at the provider.
    pub proxied: bool,
    /// Priority for MX and SRV.
    pub priority: Option<i32>,
    /// Fingerprint of the record as last written or seen.
    pub fingerprint: String,
    /// Only these records are ever modified or deleted at the provider.
    pub app_managed: bool,
    /// The source that first declared or tracked it ("" by hand).
    pub source: String,
    /// No source declares it any more.
    pub is_orphaned: bool,
    /// When it became orphaned; the grace timer of its (name, type).
    pub orphaned_at: Option<i64>,
    /// A fresh cache no longer holds it.
    pub is_missing: bool,
    /// When it was first found missing.
    pub missing_since: Option<i64>,
    /// Non-empty when the provider's copy differs from the tracked one.
    pub drift: String,
    /// When tracking began.
    pub tracked_at: i64,
    /// When the row last changed.
    pub updated_at: i64,
    /// When the record was first seen at the provider.
    pub first_seen: i64,
    /// JSON: why it is managed or not, orphan reason.
    pub metadata: String,
}

impl TrackedRow {
    /// The row's `(name, type)` key.
    pub fn key(&self) -> (String, String) {
        (self.name.clone(), self.rtype.clone())
    }
}

/// One declaration: `source` wants this record.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = dns_declarations)]
pub struct DeclRow {
    /// Who declares it.
    pub source: String,
    /// The hostname.
    pub name: String,
    /// The record type.
    pub rtype: String,
    /// Declared content (canonical).
    pub content: String,
    /// Declared TTL.
    pub ttl: i32,
    /// Declared proxied flag.
    pub proxied: bool,
    /// Declared priority.
    pub priority: Option<i32>,
    /// When the source first declared it. Each reconcile stamps its new
    /// declarations strictly after every stored one, so of two sources
    /// declaring a record differently the earlier `declared_at` was first.
    pub declared_at: i64,
    /// When the declaration last changed.
    pub updated_at: i64,
}

impl DeclRow {
    /// Whether two declarations ask for the same record.
    pub fn same_spec(&self, other: &DeclRow) -> bool {
        self.content == other.content
            && self.ttl == other.ttl
            && self.proxied == other.proxied
            && self.priority == other.priority
    }
}

/// A write sent (or about to be sent) to cache-service whose outcome is not
/// recorded yet: the pending-intent journal.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = dns_pending_intents)]
pub struct IntentRow {
    /// `<run>:<index>`, unique per reconcile run and change.
    pub id: String,
    /// The source whose reconcile made the write.
    pub source: String,
    /// `create` or `update`.
    pub action: String,
    /// The record updated; empty for a create.
    pub record_id: String,
    /// The hostname.
    pub name: String,
    /// The record type.
    pub rtype: String,
    /// The content written (canonical).
    pub content: String,
    /// The TTL written.
    pub ttl: i32,
    /// The proxied flag written.
    pub proxied: bool,
    /// The priority written.
    pub priority: Option<i32>,
    /// When the write was about to be sent.
    pub created_at: i64,
    /// cache-service's change-journal id when it was sent ("" before the
    /// change-id protocol): an UNKNOWN answer from another journal proves nothing.
    pub journal_id: String,
}

/// The `action` of a create in the journal.
pub const INTENT_CREATE: &str = "create";
/// The `action` of an update in the journal.
pub const INTENT_UPDATE: &str = "update";

/// What a reconcile needs from the database: the source's current
/// declarations, every declaration, tracked row and pending intent of the
/// names concerned, tracked rows of the provider records found there (a
/// record renamed at the provider is still tracked under its old name), and
/// the stamp new declarations get.
#[derive(Debug, Default)]
pub struct PlanInput {
    /// This source's declarations before the call.
    pub previous: Vec<DeclRow>,
    /// Every source's declarations of the names concerned.
    pub declarations: Vec<DeclRow>,
    /// Tracked rows of the names concerned, and of the record ids given.
    pub tracked: Vec<TrackedRow>,
    /// Pending intents of the names concerned.
    pub intents: Vec<IntentRow>,
    /// What cache-service's change journal says of them, by intent id (an
    /// intent without an entry is unvouched).
    pub outcomes: HashMap<String, crate::plan::IntentState>,
    /// `declared_at` of declarations this reconcile makes: `now`, or later
    /// than every stored declaration if the clock has not moved past them.
    pub decl_stamp: i64,
}

/// Loads what planning `source` over `names` needs, in one read transaction.
/// `ids` are the provider ids of the cache records held at `names`.
pub fn load_plan_input(
    conn: &mut Conn,
    source: &str,
    names: &[String],
    ids: &[String],
    now: i64,
) -> QueryResult<PlanInput> {
    let d = conn.dialect();
    read_tx(conn, |conn| {
        let previous: Vec<DeclRow> = dns_declarations::table
            .filter(dns_declarations::source.eq(source))
            .select(DeclRow::as_select())
            .load(conn)?;
        let mut all: Vec<String> = names.to_vec();
        all.extend(previous.iter().map(|d| d.name.clone()));
        all.sort_unstable();
        all.dedup();
        let names = Ids::of(&all);
        let declarations = dns_declarations::table
            .filter(in_ids(d, "name", &names))
            .select(DeclRow::as_select())
            .load(conn)?;
        let tracked = dns_tracked_records::table
            .filter(in_ids(d, "name", &names).or(in_ids(d, "record_id", &Ids::of(ids))))
            .select(TrackedRow::as_select())
            .load(conn)?;
        let intents = dns_pending_intents::table
            .filter(in_ids(d, "name", &names))
            .select(IntentRow::as_select())
            .load(conn)?;
        let decl_stamp = next_decl_stamp(conn, now)?;
        Ok(PlanInput {
            previous,
            declarations,
            tracked,
            intents,
            outcomes: HashMap::new(),
            decl_stamp,
        })
    })
}

/// The `declared_at` of a new declaration: `now`, or one past the latest
/// stored one, so a later declaration never ties with an earlier one.
pub fn next_decl_stamp(conn: &mut Conn, now: i64) -> QueryResult<i64> {
    let latest: Option<i64> = dns_declarations::table
        .select(diesel::dsl::max(dns_declarations::declared_at))
        .first(conn)?;
    Ok(latest.map_or(now, |l| now.max(l.saturating_add(1))))
}

/// Journals `intents` in one transaction, before their writes are sent. An
/// intent sent again under its own id is rewritten.
pub fn write_intents(conn: &mut Conn, intents: &[IntentRow]) -> QueryResult<()> {
    if intents.is_empty() {
        return Ok(());
    }
    write_tx(conn, |conn| {
        for chunk in intents.chunks(INSERT_CHUNK / 2) {
            dialect!(&mut *conn, replace_intents(chunk))?;
        }
        Ok(())
    })
}

/// Every pending intent, oldest first (for tests and inspection).
pub fn intents(conn: &mut Conn) -> QueryResult<Vec<IntentRow>> {
    dns_pending_intents::table
        .select(IntentRow::as_select())
        .order((dns_pending_intents::created_at, dns_pending_intents::id))
        .load(conn)
}

/// Everything one reconcile records, written in one transaction.
#[derive(Debug, Default)]
pub struct Commit {
    /// New tracked rows (created, claimed or adopted). Upserted on
    /// `(provider, record_id)`: a row already holding the id is rewritten,
    /// keeping `tracked_at`, `first_seen` and (while orphaned) `orphaned_at`.
    pub insert: Vec<TrackedRow>,
    /// Rows rewritten in place, keyed by the record id they had (an update
    /// may give the record a new id; the row keeps its timestamps).
    pub replace: Vec<(String, TrackedRow)>,
    /// Record ids to mark orphaned, with the reason.
    pub orphan: Vec<String>,
    /// Why they are orphaned.
    pub orphan_reason: String,
    /// Record ids no longer orphaned.
    pub unorphan: Vec<String>,
    /// The source whose declarations change.
    pub source: String,
    /// `(name, type)` this source no longer declares, or declares differently.
    pub decl_delete: Vec<(String, String)>,
    /// Declarations new or changed.
    pub decl_insert: Vec<DeclRow>,
    /// Pending intents resolved: recorded, refused, claimed or superseded.
    pub clear_intents: Vec<String>,
    /// Pending intents created before this time are dropped as too old to
    /// claim anything.
    pub purge_intents_before: Option<i64>,
}

impl Commit {
    /// Whether the commit would write nothing.
    pub fn is_empty(&self) -> bool {
        self.insert.is_empty()
            && self.replace.is_empty()
            && self.orphan.is_empty()
            && self.unorphan.is_empty()
            && self.decl_delete.is_empty()
            && self.decl_insert.is_empty()
            && self.clear_intents.is_empty()
            && self.purge_intents_before.is_none()
    }
}

/// Writes `c` in one write transaction.
pub fn commit(conn: &mut Conn, c: &Commit, now: i64) -> QueryResult<()> {
    if c.is_empty() {
        return Ok(());
    }
    let d = conn.dialect();
    write_tx(conn, |conn| {
        let mut upsert: Vec<&TrackedRow> = Vec::new();
        for (old_id, row) in &c.replace {
            if *old_id != row.record_id {
                // The record got a new id that another row already holds:
                // that row is the same record; this one takes its place.
                diesel::delete(
                    dns_tracked_records::table
                        .filter(dns_tracked_records::provider.eq(&row.provider))
                        .filter(dns_tracked_records::record_id.eq(&row.record_id)),
                )
                .execute(conn)?;
            }
            let n = diesel::update(
                dns_tracked_records::table.filter(dns_tracked_records::record_id.eq(old_id)),
            )
            .set(row)
            .execute(conn)?;
            if n == 0 {
                upsert.push(row);
            }
        }
        upsert.extend(c.insert.iter());
        for chunk in upsert.chunks(INSERT_CHUNK) {
            dialect!(&mut *conn, upsert_rows(chunk))?;
        }
        if !c.orphan.is_empty() {
            dialect!(
                &mut *conn,
                mark_orphaned(&Ids::of(&c.orphan), &c.orphan_reason, now)
            )?;
        }
        if !c.unorphan.is_empty() {
            dialect!(&mut *conn, unorphan(&Ids::of(&c.unorphan), now))?;
        }
        if !c.decl_delete.is_empty() {
            let keys: Vec<String> = c
                .decl_delete
                .iter()
                .map(|(n, t)| format!("{n} {t}"))
                .collect();
            dialect!(&mut *conn, delete_declarations(&c.source, &Ids::of(&keys)))?;
        }
        for chunk in c.decl_insert.chunks(INSERT_CHUNK) {
            on_inner!(
                &mut *conn,
                diesel::insert_into(dns_declarations::table).values(chunk)
            )?;
        }
        if !c.clear_intents.is_empty() {
            diesel::delete(dns_pending_intents::table)
                .filter(in_ids(d, "id", &Ids::of(&c.clear_intents)))
                .execute(conn)?;
        }
        if let Some(before) = c.purge_intents_before {
            diesel::delete(
                dns_pending_intents::table.filter(dns_pending_intents::created_at.lt(before)),
            )
            .execute(conn)?;
        }
        Ok(())
    })
}

/// One record of the cache as the missing/drift check needs it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheView {
    /// The provider's id.
    pub record_id: String,
    /// Name: a record renamed at the provider has drifted.
    pub name: String,
    /// Type: a record whose type changed at the provider has drifted.
    pub rtype: String,
    /// Content.
    pub content: String,
    /// TTL.
    pub ttl: u32,
    /// Proxied.
    pub proxied: bool,
    /// Priority.
    pub priority: Option<u32>,
}

/// What one missing/drift check found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckOutcome {
    /// Tracked records newly flagged missing.
    pub newly_missing: u64,
    /// Tracked records found again.
    pub found_again: u64,
    /// Tracked records whose provider copy differs (after the check).
    pub drifted: u64,
    /// Tracked records missing (after the check).
    pub missing: u64,
}

/// Ends the check's transaction: `Db` for a failure, `DryRun` to roll back
/// what a dry run computed.
enum CheckEnd {
    Db(diesel::result::Error),
    DryRun(CheckOutcome),
}

impl From<diesel::result::Error> for CheckEnd {
    fn from(e: diesel::result::Error) -> Self {
        CheckEnd::Db(e)
    }
}

/// Flags tracked records absent from `cache` as missing, clears the flag of
/// those present, and notes drift (name, type, content, proxied, priority,
/// or an explicit TTL differing), in a fixed number of statements whatever
/// the sizes, in one write transaction. With `dry_run` the same outcome is computed and rolled back:
/// nothing is written.
pub fn check_against_cache(
    conn: &mut Conn,
    cache: &[CacheView],
    now: i64,
    dry_run: bool,
) -> QueryResult<CheckOutcome> {
    let rows = ViewRows::of(cache);
    let res = write_tx::<_, CheckEnd, _>(conn, |conn| {
        let outcome = dialect!(&mut *conn, check_with_cache_view(&rows, now))?;
        if dry_run {
            return Err(CheckEnd::DryRun(outcome));
        }
        Ok(outcome)
    });
    match res {
        Ok(o) | Err(CheckEnd::DryRun(o)) => Ok(o),
        Err(CheckEnd::Db(e)) => Err(e),
    }
}

/// An orphaned record as the sweep weighs it.
#[derive(Debug, Clone, Queryable)]
pub struct OrphanRow {
    /// The provider's id.
    pub record_id: String,
    /// The hostname.
    pub name: String,
    /// The record type.
    pub rtype: String,
    /// The content as last recorded.
    pub content: String,
    /// Whether the app may delete it.
    pub app_managed: bool,
    /// When it became orphaned.
    pub orphaned_at: Option<i64>,
}

/// Every orphaned record, in one statement.
pub fn orphans(conn: &mut Conn) -> QueryResult<Vec<OrphanRow>> {
    dns_tracked_records::table
        .filter(dns_tracked_records::is_orphaned.eq(true))
        .select((
            dns_tracked_records::record_id,
            dns_tracked_records::name,
            dns_tracked_records::rtype,
            dns_tracked_records::content,
            dns_tracked_records::app_managed,
            dns_tracked_records::orphaned_at,
        ))
        .order((dns_tracked_records::name, dns_tracked_records::rtype))
        .load(conn)
}

/// Moves deleted records into `orphaned_records_history` and untracks them,
/// in one transaction of two statements. Only rows still orphaned move.
pub fn record_deleted(
    conn: &mut Conn,
    ids: &[String],
    reason: &str,
    now: i64,
) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    let ids = Ids::of(ids);
    write_tx(conn, |conn| {
        dialect!(conn, move_to_history(&ids, reason, now))
    })
}

/// Counts of tracked records by state.
#[derive(Debug, Clone, Copy, Default, QueryableByName)]
pub struct Counts {
    /// All tracked records.
    #[diesel(sql_type = BigInt)]
    pub total: i64,
    /// App-managed and not orphaned.
    #[diesel(sql_type = BigInt)]
    pub active: i64,
    /// Orphaned.
    #[diesel(sql_type = BigInt)]
    pub orphaned: i64,
    /// Missing from a fresh cache.
    #[diesel(sql_type = BigInt)]
    pub missing: i64,
    /// Not app-managed.
    #[diesel(sql_type = BigInt)]
    pub unmanaged: i64,
}

/// Counts by state in one statement.
pub fn counts(conn: &mut Conn) -> QueryResult<Counts> {
    dialect!(conn, counts())
}

/// Reads one state value. Point reads use `get_result` on a unique key, never
/// `first`: `first` binds `LIMIT ?`, and SQLite re-prepares a statement whose
/// LIMIT is a bound parameter at every execution.
pub fn state_get(conn: &mut Conn, key: &str) -> QueryResult<Option<String>> {
    tracker_state::table
        .filter(tracker_state::key.eq(key))
        .select(tracker_state::value)
        .get_result(conn)
        .optional()
}

/// Writes one state value, in a write transaction of its own (so, on
/// PostgreSQL, fenced like every write).
pub fn state_set(conn: &mut Conn, key: &str, value: &str) -> QueryResult<()> {
    write_tx(conn, |conn| {
        on_inner!(
            conn,
            diesel::insert_into(tracker_state::table)
                .values((tracker_state::key.eq(key), tracker_state::value.eq(value)))
                .on_conflict(tracker_state::key)
                .do_update()
                .set(tracker_state::value.eq(value))
        )?;
        Ok(())
    })
}

/// Filters of `ListTrackedRecords`.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Orphaned or not.
    pub orphaned: Option<bool>,
    /// App-managed or not.
    pub app_managed: Option<bool>,
    /// Declared by, or first tracked for, this source.
    pub source: Option<String>,
    /// Exact name.
    pub name: Option<String>,
}

pub use trafego_common::paging::PageKey;

/// One page of tracked records ordered by (name, type, record_id), and whether more follow.
pub fn list(
    conn: &mut Conn,
    filter: &ListFilter,
    after: Option<&PageKey>,
    limit: u32,
) -> QueryResult<(Vec<TrackedRow>, bool)> {
    use dns_tracked_records as t;
    let mut q = t::table.select(TrackedRow::as_select()).into_boxed();
    if let Some(o) = filter.orphaned {
        q = q.filter(t::is_orphaned.eq(o));
    }
    if let Some(m) = filter.app_managed {
        q = q.filter(t::app_managed.eq(m));
    }
    if let Some(n) = &filter.name {
        q = q.filter(t::name.eq(n.clone()));
    }
    if let Some(s) = &filter.source {
        q = q.filter(
            t::source.eq(s.clone()).or(diesel::dsl::sql::<Bool>(
                "EXISTS (SELECT 1 FROM dns_declarations d WHERE d.name = dns_tracked_records.name \
                 AND d.type = dns_tracked_records.type AND d.source = ",
            )
            .bind::<Text, _>(s.clone())
            .sql(")")),
        );
    }
    let q = trafego_common::keyset_page!(q, (t::name, t::rtype, t::record_id), after, limit);
    Ok(trafego_common::paging::split_page(q.load(conn)?, limit))
}

impl trafego_common::paging::Keyed for TrackedRow {
    fn page_key(&self) -> PageKey {
        PageKey {
            name: self.name.clone(),
            rtype: self.rtype.clone(),
            record_id: self.record_id.clone(),
        }
    }
}

/// One tracked record by id (`get_result`, not `first`: see [`state_get`]).
pub fn get(conn: &mut Conn, record_id: &str) -> QueryResult<Option<TrackedRow>> {
    dns_tracked_records::table
        .filter(dns_tracked_records::record_id.eq(record_id))
        .select(TrackedRow::as_select())
        .get_result(conn)
        .optional()
}

/// Sources declaring each `(name, type)` of `rows`, for display.
pub fn sources_of(
    conn: &mut Conn,
    rows: &[TrackedRow],
) -> QueryResult<HashMap<(String, String), Vec<String>>> {
    if rows.is_empty() {
        return Ok(HashMap::new());
    }
    let d = conn.dialect();
    let mut names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let decls: Vec<(String, String, String)> = dns_declarations::table
        .filter(in_ids(d, "name", &Ids::of(&names)))
        .select((
            dns_declarations::name,
            dns_declarations::rtype,
            dns_declarations::source,
        ))
        .order(dns_declarations::source)
        .load(conn)?;
    let mut out: HashMap<(String, String), Vec<String>> = HashMap::new();
    for (n, t, s) in decls {
        out.entry((n, t)).or_default().push(s);
    }
    Ok(out)
}

/// Inserts or rewrites a hand-tracked row, and (when `decl` is given) the
/// declaration that attributes it to a source, in one transaction.
pub fn track(conn: &mut Conn, row: &TrackedRow, decl: Option<&DeclRow>) -> QueryResult<()> {
    write_tx(conn, |conn| {
        let n = diesel::update(
            dns_tracked_records::table.filter(dns_tracked_records::record_id.eq(&row.record_id)),
        )
        .set(row)
        .execute(conn)?;
        if n == 0 {
            diesel::insert_into(dns_tracked_records::table)
                .values(row)
                .execute(conn)?;
        }
        if let Some(d) = decl {
            let mine = dns_declarations::table
                .filter(dns_declarations::source.eq(&d.source))
                .filter(dns_declarations::name.eq(&d.name))
                .filter(dns_declarations::rtype.eq(&d.rtype));
            // A declaration the source already made keeps its place in line;
            // a new one comes after every stored one.
            let kept: Option<i64> = mine
                .select(dns_declarations::declared_at)
                .first(conn)
                .optional()?;
            let declared_at = match kept {
                Some(at) => at,
                None => next_decl_stamp(conn, d.declared_at)?,
            };
            diesel::delete(mine).execute(conn)?;
            diesel::insert_into(dns_declarations::table)
                .values(DeclRow {
                    declared_at,
                    ..d.clone()
                })
                .execute(conn)?;
        }
        Ok(())
    })
}

/// Stops tracking a record, in a write transaction; returns whether it was
/// tracked.
pub fn untrack(conn: &mut Conn, record_id: &str) -> QueryResult<bool> {
    write_tx(conn, |conn| {
        diesel::delete(
            dns_tracked_records::table.filter(dns_tracked_records::record_id.eq(record_id)),
        )
        .execute(conn)
        .map(|n| n > 0)
    })
}

/// Rows of the orphan history (for tests and inspection), newest first.
pub fn history(conn: &mut Conn) -> QueryResult<Vec<(String, String, String, String)>> {
    orphaned_records_history::table
        .select((
            orphaned_records_history::record_id,
            orphaned_records_history::name,
            orphaned_records_history::rtype,
            orphaned_records_history::reason,
        ))
        .order(orphaned_records_history::id.desc())
        .load(conn)
}

#[cfg(test)]
mod tests;

/// Which of `keys` (`(record_id, name, type)`) the table already tracks,
/// by record id or by (name, type): the import leaves those as they are.
pub fn already_tracked(
    conn: &mut Conn,
    keys: &[(String, String, String)],
) -> QueryResult<Vec<bool>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let names: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let d = conn.dialect();
    let found: Vec<(String, String, String)> = dns_tracked_records::table
        .filter(in_ids(d, "record_id", &Ids::of(&ids)).or(in_ids(d, "name", &Ids::of(&names))))
        .select((
            dns_tracked_records::record_id,
            dns_tracked_records::name,
            dns_tracked_records::rtype,
        ))
        .load(conn)?;
    let by_id: std::collections::HashSet<&str> = found.iter().map(|f| f.0.as_str()).collect();
    let by_key: std::collections::HashSet<(&str, &str)> =
        found.iter().map(|f| (f.1.as_str(), f.2.as_str())).collect();
    Ok(keys
        .iter()
        .map(|(id, n, t)| by_id.contains(id.as_str()) || by_key.contains(&(n.as_str(), t.as_str())))
        .collect())
}

/// Claims imported records (TrafegoDNS, external-dns) in one write
/// transaction: each row is inserted only if neither its record id nor its
/// (name, type) is tracked yet, so nothing tracked is changed and a second
/// run claims nothing. `decls` attribute claimed rows to a source (written
/// for the rows inserted only). Returns, per row, whether it was inserted.
pub fn claim(conn: &mut Conn, rows: &[TrackedRow], decls: &[DeclRow]) -> QueryResult<Vec<bool>> {
    write_tx(conn, |conn| {
        let keys: Vec<(String, String, String)> = rows
            .iter()
            .map(|r| (r.record_id.clone(), r.name.clone(), r.rtype.clone()))
            .collect();
        let taken = already_tracked(conn, &keys)?;
        let fresh: Vec<&TrackedRow> = rows
            .iter()
            .zip(&taken)
            .filter(|(_, t)| !**t)
            .map(|(r, _)| r)
            .collect();
        for chunk in fresh.chunks(INSERT_CHUNK / 2) {
            on_inner!(
                &mut *conn,
                diesel::insert_into(dns_tracked_records::table)
                    .values(chunk.iter().map(|r| (*r).clone()).collect::<Vec<_>>())
            )?;
        }
        let inserted: std::collections::HashSet<(&str, &str)> = fresh
            .iter()
            .map(|r| (r.name.as_str(), r.rtype.as_str()))
            .collect();
        let decls: Vec<&DeclRow> = decls
            .iter()
            .filter(|d| inserted.contains(&(d.name.as_str(), d.rtype.as_str())))
            .collect();
        for d in decls {
            on_inner!(
                &mut *conn,
                diesel::insert_into(dns_declarations::table)
                    .values(d.clone())
                    .on_conflict((
                        dns_declarations::source,
                        dns_declarations::name,
                        dns_declarations::rtype,
                    ))
                    .do_nothing()
            )?;
        }
        Ok(taken.into_iter().map(|t| !t).collect())
    })
}
