//! The provider cache's SQL, all of it (`dns_records`, the one-row
//! `cache_state`, the per-zone `zone_state` and the `change_journal`).
//!
//! Every record row carries its zone; a refresh's transaction reads and
//! writes only its zone's rows and its zone's `zone_state`, and takes the
//! next value of the one service-wide generation sequence (`cache_state`).
//!
//! Every function takes a connection and runs synchronously; callers run them
//! through `Db::run`. Writes happen in write transactions taken at their
//! start (`write_tx`) and touch only the rows that changed: an unchanged
//! refresh writes no record row.
//!
//! The SQL is all here, for both backends: the connection is
//! [`AnyConnection`] (SQLite or PostgreSQL, chosen by the database URL).
//! What is portable (diesel's DSL) is in this file; what one dialect alone
//! understands (how a write transaction begins and is fenced, the exact
//! suffix filter, the journal's whole-row upsert, chunk sizes) is in
//! [`sqlite`] and its twin [`postgres`], behind items of the same names,
//! picked by `dialect!` matching on the connection.

pub mod postgres;
pub mod sqlite;

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use trafego_common::db::{AnyConnection, Dialect, MultiBackend};
use trafego_common::duration::millis_i64;
use trafego_common::paging;
use trafego_common::{dialect, on_inner};

use crate::provider::ProviderRecord;
use crate::schema::{cache_state, change_journal, dns_records, zone_state};

/// The connection every store function takes: SQLite or PostgreSQL.
pub type Conn = AnyConnection;

/// Rows per multi-row statement on `conn`'s backend (bound-value limits differ).
fn chunk(conn: &Conn) -> usize {
    match conn.dialect() {
        Dialect::Sqlite => sqlite::CHUNK,
        Dialect::Postgres => postgres::CHUNK,
    }
}

/// Runs `f` in a write transaction opened by the dialect's `begin_write`,
/// committed when `f` succeeds and rolled back when it fails. Writers take
/// turns from its first statement on (`BEGIN IMMEDIATE` on SQLite, an
/// advisory lock on PostgreSQL, whose session fence is checked next), so two
/// never deadlock upgrading a read.
pub fn write_tx<T, E, F>(conn: &mut Conn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut Conn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    trafego_common::db::in_transaction(conn, |c| dialect!(c, begin_write()), f)
}

/// A cached name equal to `suffix` or ending in `"." + suffix`, compared
/// exactly (`LIKE` would take `_` as a wildcard), in `dialect`'s words.
fn suffix_filter(
    dialect: Dialect,
    suffix: &str,
) -> Box<dyn BoxableExpression<dns_records::table, MultiBackend, SqlType = Bool>> {
    let (open, mid, close) = match dialect {
        Dialect::Sqlite => sqlite::ENDS_WITH,
        Dialect::Postgres => postgres::ENDS_WITH,
    };
    let dotted = format!(".{suffix}");
    Box::new(
        dns_records::name
            .eq(suffix.to_string())
            .or(diesel::dsl::sql::<Bool>(open)
                .bind::<Text, _>(dotted.clone())
                .sql(mid)
                .bind::<Text, _>(dotted)
                .sql(close)),
    )
}

/// A cached record as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = dns_records)]
pub struct CachedRecord {
    /// The provider's id.
    pub record_id: String,
    /// The provider's name.
    pub provider: String,
    /// The zone.
    pub zone: String,
    /// Record type, uppercase.
    pub rtype: String,
    /// Fully qualified name.
    pub name: String,
    /// Content in presentation form.
    pub content: String,
    /// TTL (1 = automatic).
    pub ttl: i32,
    /// Proxied at the provider.
    pub proxied: bool,
    /// Priority for MX and SRV.
    pub priority: Option<i32>,
    /// Provider-side comment.
    pub comment: String,
    /// When the row last changed (unix ms).
    pub updated_at: i64,
    /// SHA-256 over the defining fields.
    pub fingerprint: String,
    /// When a refresh or write-through last confirmed the row (unix ms).
    pub last_refreshed: i64,
}

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = dns_records)]
struct NewRow<'a> {
    provider: &'a str,
    zone: &'a str,
    record_id: &'a str,
    rtype: &'a str,
    name: &'a str,
    content: &'a str,
    ttl: i32,
    proxied: bool,
    #[diesel(treat_none_as_null = true)]
    priority: Option<i32>,
    comment: &'a str,
    updated_at: i64,
    fingerprint: String,
    last_refreshed: i64,
}

impl<'a> NewRow<'a> {
    fn new(provider: &'a str, zone: &'a str, r: &'a ProviderRecord, now: i64) -> Self {
        NewRow {
            provider,
            zone,
            record_id: &r.id,
            rtype: &r.rtype,
            name: &r.name,
            content: &r.content,
            // TTLs and priorities past i32::MAX are not DNS values (RFC 2181
            // caps TTLs at 2^31-1): stored as the largest the column holds.
            ttl: i32::try_from(r.ttl).unwrap_or(i32::MAX),
            proxied: r.proxied,
            priority: r.priority.map(|p| i32::try_from(p).unwrap_or(i32::MAX)),
            comment: &r.comment,
            updated_at: now,
            fingerprint: r.fingerprint(),
            last_refreshed: now,
        }
    }
}

/// The state of the cache as a whole: the provider, the zones served and
/// the one generation sequence. (Its freshness columns are from before
/// zones; freshness is per zone, in [`ZoneState`].)
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = cache_state)]
pub struct CacheState {
    /// The provider the rows came from.
    pub provider: String,
    /// The zones the rows belong to, joined by ",".
    pub zone: String,
    /// Bumped by every committed change to the cache, whatever its zone.
    pub generation: i64,
}

/// The state of one zone's refresh.
#[derive(Debug, Clone, Default, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = zone_state, treat_none_as_null = true)]
pub struct ZoneState {
    /// The zone.
    pub zone: String,
    /// The generation of the zone's last change (a value of the one
    /// service-wide sequence); 0 before any.
    pub generation: i64,
    /// When the last successful refresh read the provider (unix ms).
    pub last_refreshed: Option<i64>,
    /// When the last refresh attempt ended (unix ms).
    pub last_attempt: Option<i64>,
    /// The last refresh's error; empty after a success.
    pub last_error: String,
    /// How long the last successful refresh took.
    pub last_refresh_duration_ms: i64,
}

impl ZoneState {
    /// The state of a zone never refreshed.
    pub fn new(zone: &str) -> Self {
        ZoneState {
            zone: zone.to_string(),
            ..Default::default()
        }
    }
}

/// Every zone's stored state.
pub fn zone_states(conn: &mut Conn) -> QueryResult<Vec<ZoneState>> {
    zone_state::table.select(ZoneState::as_select()).load(conn)
}

/// One zone's stored state (a zone never refreshed has none).
pub fn zone_state(conn: &mut Conn, zone: &str) -> QueryResult<ZoneState> {
    Ok(zone_state::table
        .filter(zone_state::zone.eq(zone))
        .select(ZoneState::as_select())
        .get_result(conn)
        .optional()?
        .unwrap_or_else(|| ZoneState::new(zone)))
}

/// Writes a zone's state whole.
fn put_zone_state(conn: &mut Conn, st: &ZoneState) -> QueryResult<()> {
    on_inner!(
        conn,
        diesel::insert_into(zone_state::table)
            .values(st)
            .on_conflict(zone_state::zone)
            .do_update()
            .set((
                zone_state::generation.eq(st.generation),
                zone_state::last_refreshed.eq(st.last_refreshed),
                zone_state::last_attempt.eq(st.last_attempt),
                zone_state::last_error.eq(&st.last_error),
                zone_state::last_refresh_duration_ms.eq(st.last_refresh_duration_ms),
            ))
    )?;
    Ok(())
}

/// Takes the next value of the service-wide generation sequence.
fn next_generation(conn: &mut Conn) -> QueryResult<i64> {
    diesel::update(cache_state::table.filter(cache_state::id.eq(1)))
        .set(cache_state::generation.eq(cache_state::generation + 1))
        .execute(conn)?;
    Ok(state(conn)?.generation)
}

/// Reads the cache state.
///
/// Point reads here use `get_result` on a unique key, never `first`: `first`
/// binds `LIMIT ?`, and SQLite re-prepares a statement whose LIMIT is a bound
/// parameter at every execution, so the cached statement would be parsed and
/// planned again on each call.
pub fn state(conn: &mut Conn) -> QueryResult<CacheState> {
    cache_state::table
        .filter(cache_state::id.eq(1))
        .select(CacheState::as_select())
        .get_result(conn)
}

/// What [`claim`] dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claimed {
    /// Rows of another provider (all the rows, when the provider changed).
    pub other_provider: usize,
    /// Rows of each zone no longer served, by zone.
    pub other_zones: Vec<(String, usize)>,
    /// Whether the change journal was started anew (it spoke of another
    /// provider or of a zone no longer served).
    pub journal_reset: bool,
}

/// Makes the cache belong to `provider` and `zones`. Rows cached for
/// another provider, or for a zone no longer served, are dropped (they
/// describe something else), with those zones' states; rows of the zones
/// still served stay. Returns what was dropped.
pub fn claim(conn: &mut Conn, provider: &str, zones: &[String]) -> QueryResult<Claimed> {
    write_tx(conn, |conn| {
        let st = state(conn)?;
        let joined = zones.join(",");
        if st.provider == provider && st.zone == joined {
            return Ok(Claimed::default());
        }
        let mut claimed = Claimed::default();
        if st.provider != provider {
            claimed.other_provider = diesel::delete(dns_records::table).execute(conn)?;
            diesel::delete(zone_state::table).execute(conn)?;
            claimed.journal_reset = true;
        } else {
            let held: Vec<(String, i64)> = dns_records::table
                .group_by(dns_records::zone)
                .select((dns_records::zone, diesel::dsl::count_star()))
                .load(conn)?;
            let mut gone: Vec<(String, usize)> = held
                .into_iter()
                .filter(|(z, _)| !zones.contains(z))
                .map(|(z, n)| (z, usize::try_from(n).unwrap_or(usize::MAX)))
                .collect();
            let states: Vec<String> = zone_state::table.select(zone_state::zone).load(conn)?;
            for z in states {
                if !zones.contains(&z) && !gone.iter().any(|(g, _)| *g == z) {
                    gone.push((z, 0));
                }
            }
            // A database of the one-zone schema names its zone only here.
            for z in st.zone.split(',').filter(|z| !z.is_empty()) {
                if !zones.iter().any(|s| s == z) && !gone.iter().any(|(g, _)| g == z) {
                    gone.push((z.to_string(), 0));
                }
            }
            gone.sort();
            for (z, _) in &gone {
                diesel::delete(dns_records::table.filter(dns_records::zone.eq(z))).execute(conn)?;
                diesel::delete(zone_state::table.filter(zone_state::zone.eq(z))).execute(conn)?;
            }
            claimed.journal_reset = !gone.is_empty();
            claimed.other_zones = gone;
        }
        if claimed.journal_reset {
            // The journal speaks of another provider or of a zone no longer
            // served: a new one starts, under a new id, so no old change id
            // is vouched for.
            diesel::delete(change_journal::table).execute(conn)?;
            diesel::update(cache_state::table.filter(cache_state::id.eq(1)))
                .set(cache_state::journal_id.eq(""))
                .execute(conn)?;
        }
        diesel::update(cache_state::table.filter(cache_state::id.eq(1)))
            .set((
                cache_state::provider.eq(provider),
                cache_state::zone.eq(&joined),
                cache_state::generation.eq(cache_state::generation + 1),
            ))
            .execute(conn)?;
        Ok(claimed)
    })
}

/// What a refresh changed.
#[derive(Debug, Clone, Default)]
pub struct RefreshDiff {
    /// Records new since the previous snapshot.
    pub added: Vec<ProviderRecord>,
    /// Records whose fingerprint changed.
    pub changed: Vec<ProviderRecord>,
    /// Ids gone from the provider.
    pub removed: Vec<String>,
    /// Records in the cache afterwards.
    pub total: u64,
    /// The generation after the refresh.
    pub generation: u64,
    /// The zone's state after the refresh.
    pub state: ZoneState,
}

/// Replaces `zone`'s rows with `records` in one write transaction,
/// writing only what changed by fingerprint, stamping the zone's
/// `last_refreshed` (the time the listing started) and the refresh's
/// duration since `began`, and taking the next generation. Rows of other
/// zones are not touched. On any error nothing is changed.
pub fn apply_refresh(
    conn: &mut Conn,
    provider: &str,
    zone: &str,
    records: Vec<ProviderRecord>,
    started_ms: i64,
    now_ms: i64,
    began: std::time::Instant,
) -> QueryResult<RefreshDiff> {
    write_tx(conn, |conn| {
        let existing: HashMap<String, String> = dns_records::table
            .filter(dns_records::zone.eq(zone))
            .select((dns_records::record_id, dns_records::fingerprint))
            .load_iter::<(String, String), diesel::connection::DefaultLoadingMode>(conn)?
            .collect::<QueryResult<_>>()?;
        let mut seen = std::collections::HashSet::with_capacity(records.len());
        let mut diff = RefreshDiff::default();
        for r in records {
            if !seen.insert(r.id.clone()) {
                continue;
            }
            match existing.get(&r.id) {
                None => diff.added.push(r),
                Some(fp) if *fp != r.fingerprint() => diff.changed.push(r),
                Some(_) => {}
            }
        }
        diff.removed = existing
            .into_keys()
            .filter(|id| !seen.contains(id))
            .collect();
        let rows_per = chunk(conn);
        for part in diff.added.chunks(rows_per) {
            let rows: Vec<NewRow> = part
                .iter()
                .map(|r| NewRow::new(provider, zone, r, now_ms))
                .collect();
            on_inner!(
                &mut *conn,
                diesel::insert_into(dns_records::table).values(&rows)
            )?;
        }
        for r in &diff.changed {
            diesel::update(
                dns_records::table
                    .filter(dns_records::zone.eq(zone))
                    .filter(dns_records::record_id.eq(&r.id)),
            )
            .set(&NewRow::new(provider, zone, r, now_ms))
            .execute(conn)?;
        }
        for part in diff.removed.chunks(rows_per) {
            diesel::delete(
                dns_records::table
                    .filter(dns_records::zone.eq(zone))
                    .filter(dns_records::record_id.eq_any(part)),
            )
            .execute(conn)?;
        }
        let generation = next_generation(conn)?;
        let st = ZoneState {
            zone: zone.to_string(),
            generation,
            last_refreshed: Some(started_ms),
            last_attempt: Some(now_ms),
            last_error: String::new(),
            last_refresh_duration_ms: millis_i64(began.elapsed()),
        };
        put_zone_state(conn, &st)?;
        diff.total = u64::try_from(seen.len()).unwrap_or(u64::MAX);
        diff.generation = counter(generation);
        diff.state = st;
        Ok(diff)
    })
}

/// Records a failed refresh of `zone`; its snapshot is left whole, and so
/// are the generation and every other zone. Returns the zone's state.
pub fn record_refresh_failure(
    conn: &mut Conn,
    zone: &str,
    error: &str,
    now_ms: i64,
) -> QueryResult<ZoneState> {
    write_tx(conn, |conn| {
        let mut st = zone_state(conn, zone)?;
        st.last_attempt = Some(now_ms);
        st.last_error = error.to_string();
        put_zone_state(conn, &st)?;
        Ok(st)
    })
}

/// One accepted write, as the cache must reflect it.
#[derive(Debug, Clone)]
pub enum Written {
    /// This record now exists (created or updated); `replaces` is the id it
    /// had before, when the provider gave it a new one.
    Upsert {
        /// The record as the provider holds it.
        record: ProviderRecord,
        /// The id the record had before the write, if different.
        replaces: Option<String>,
    },
    /// This id no longer exists.
    Removed(String),
}

/// Accepted changes, each with the zone it was written in.
pub type ZoneWritten = (String, Written);

/// Writes accepted changes into the cache in one transaction and takes the
/// next generation once; each zone written gets it as its generation.
/// Returns the new generation.
pub fn apply_written(
    conn: &mut Conn,
    provider: &str,
    written: &[ZoneWritten],
    now_ms: i64,
) -> QueryResult<u64> {
    write_tx(conn, |conn| write_rows(conn, provider, written, now_ms))
}

/// The body of [`apply_written`], inside the caller's transaction.
fn write_rows(
    conn: &mut Conn,
    provider: &str,
    written: &[ZoneWritten],
    now_ms: i64,
) -> QueryResult<u64> {
    {
        for (zone, w) in written {
            match w {
                Written::Upsert { record, replaces } => {
                    if let Some(old) = replaces {
                        diesel::delete(dns_records::table.filter(dns_records::record_id.eq(old)))
                            .execute(conn)?;
                    }
                    let row = NewRow::new(provider, zone, record, now_ms);
                    on_inner!(
                        &mut *conn,
                        diesel::insert_into(dns_records::table)
                            .values(&row)
                            .on_conflict((dns_records::provider, dns_records::record_id))
                            .do_update()
                            .set(&row)
                    )?;
                }
                Written::Removed(id) => {
                    diesel::delete(dns_records::table.filter(dns_records::record_id.eq(id)))
                        .execute(conn)?;
                }
            }
        }
        let generation = next_generation(conn)?;
        let mut zones: Vec<&str> = written.iter().map(|(z, _)| z.as_str()).collect();
        zones.sort_unstable();
        zones.dedup();
        for z in zones {
            let mut st = zone_state(conn, z)?;
            st.generation = generation;
            put_zone_state(conn, &st)?;
        }
        Ok(counter(generation))
    }
}

/// Filters of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Exact type.
    pub rtype: Option<String>,
    /// Exact name.
    pub name: Option<String>,
    /// Name equal to this suffix or ending in "." + suffix.
    pub name_suffix: Option<String>,
    /// Only this zone's records.
    pub zone: Option<String>,
}

pub use trafego_common::paging::PageKey;

impl paging::Keyed for CachedRecord {
    fn page_key(&self) -> PageKey {
        PageKey {
            name: self.name.clone(),
            rtype: self.rtype.clone(),
            record_id: self.record_id.clone(),
        }
    }
}

/// One page of records ordered by (name, type, record_id), and whether more follow.
pub fn list(
    conn: &mut Conn,
    filter: &ListFilter,
    after: Option<&PageKey>,
    limit: u32,
) -> QueryResult<(Vec<CachedRecord>, bool)> {
    let dialect = conn.dialect();
    let mut q = dns_records::table
        .select(CachedRecord::as_select())
        .into_boxed();
    if let Some(t) = &filter.rtype {
        q = q.filter(dns_records::rtype.eq(t.clone()));
    }
    if let Some(n) = &filter.name {
        q = q.filter(dns_records::name.eq(n.clone()));
    }
    if let Some(s) = &filter.name_suffix {
        q = q.filter(suffix_filter(dialect, s));
    }
    if let Some(z) = &filter.zone {
        q = q.filter(dns_records::zone.eq(z.clone()));
    }
    let q = trafego_common::keyset_page!(
        q,
        (
            dns_records::name,
            dns_records::rtype,
            dns_records::record_id
        ),
        after,
        limit
    );
    Ok(paging::split_page(q.load(conn)?, limit))
}

/// One record by id (unique in the cache, which holds one provider's rows);
/// `get_result`, not `first`, for the reason given at [`state`].
pub fn get(conn: &mut Conn, record_id: &str) -> QueryResult<Option<CachedRecord>> {
    dns_records::table
        .filter(dns_records::record_id.eq(record_id))
        .select(CachedRecord::as_select())
        .get_result(conn)
        .optional()
}

/// Records in the cache.
pub fn count(conn: &mut Conn) -> QueryResult<u64> {
    dns_records::table
        .count()
        .get_result::<i64>(conn)
        .map(counter)
}

/// Records in the cache, by zone (zones without records are absent).
pub fn count_by_zone(conn: &mut Conn) -> QueryResult<HashMap<String, u64>> {
    let rows: Vec<(String, i64)> = dns_records::table
        .group_by(dns_records::zone)
        .select((dns_records::zone, diesel::dsl::count_star()))
        .load(conn)?;
    Ok(rows.into_iter().map(|(z, n)| (z, counter(n))).collect())
}

/// The zone of the cached record `record_id`, if it is cached.
pub fn zone_of(conn: &mut Conn, record_id: &str) -> QueryResult<Option<String>> {
    dns_records::table
        .filter(dns_records::record_id.eq(record_id))
        .select(dns_records::zone)
        .get_result(conn)
        .optional()
}

/// A count or generation read from the database (an `i64` that is never negative)
/// as the `u64` the API carries; a negative value, impossible, reads as 0.
pub fn counter(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// One entry of the change journal, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = change_journal, treat_none_as_null = true)]
pub struct JournalRow {
    /// The caller's change id.
    pub change_id: String,
    /// `create`, `update` or `delete`.
    pub op: String,
    /// SHA-256 of the change, so a reused id for another change is refused.
    pub op_fingerprint: String,
    /// The record updated or deleted; empty for a create.
    pub target_id: String,
    /// The type looked for when settling by looking.
    pub rtype: String,
    /// The name looked for when settling by looking ("" when unknown).
    pub name: String,
    /// The content the change writes ("" for a delete).
    pub content: String,
    /// The TTL the change writes (1: any).
    pub ttl: i32,
    /// The priority the change writes.
    pub priority: Option<i32>,
    /// JSON array of the ids cached at (name, type) when the change was sent.
    pub prior_ids: String,
    /// `pending`, `applied` or `failed`.
    pub state: String,
    /// gRPC code of a failure.
    pub code: i32,
    /// Why it failed.
    pub message: String,
    /// The record the change produced, or was about.
    pub record_id: String,
    /// JSON of the provider record the change produced ("" when none).
    pub record: String,
    /// When the change was journaled.
    pub created_at: i64,
    /// When its outcome was recorded.
    pub settled_at: Option<i64>,
    /// The zone the change was sent to ("" for entries from before zones).
    pub zone: String,
}

/// A journal entry not settled yet.
pub const JOURNAL_PENDING: &str = "pending";
/// A journal entry whose change the provider holds.
pub const JOURNAL_APPLIED: &str = "applied";
/// A journal entry whose change was not applied.
pub const JOURNAL_FAILED: &str = "failed";

/// The journal's id, made at random the first time it is asked for (a new
/// database gets a new id).
pub fn journal_id(conn: &mut Conn) -> QueryResult<String> {
    write_tx(conn, |conn| {
        let id: String = cache_state::table
            .filter(cache_state::id.eq(1))
            .select(cache_state::journal_id)
            .first(conn)?;
        if !id.is_empty() {
            return Ok(id);
        }
        let id = format!("{:032x}", rand::random::<u128>());
        diesel::update(cache_state::table.filter(cache_state::id.eq(1)))
            .set(cache_state::journal_id.eq(&id))
            .execute(conn)?;
        Ok(id)
    })
}

/// The journal's id as stored, without making one (empty when none was
/// made yet): what a replica that does not lead reads.
pub fn stored_journal_id(conn: &mut Conn) -> QueryResult<String> {
    cache_state::table
        .filter(cache_state::id.eq(1))
        .select(cache_state::journal_id)
        .get_result(conn)
}

/// Journal entries of `ids` (those that exist).
pub fn journal_get(conn: &mut Conn, ids: &[String]) -> QueryResult<Vec<JournalRow>> {
    let mut out = Vec::with_capacity(ids.len());
    let rows_per = chunk(conn);
    for part in ids.chunks(rows_per) {
        out.extend(
            change_journal::table
                .filter(change_journal::change_id.eq_any(part))
                .select(JournalRow::as_select())
                .load(conn)?,
        );
    }
    Ok(out)
}

/// Every pending journal entry, oldest first.
pub fn journal_pending(conn: &mut Conn) -> QueryResult<Vec<JournalRow>> {
    change_journal::table
        .filter(change_journal::state.eq(JOURNAL_PENDING))
        .order((change_journal::created_at, change_journal::change_id))
        .select(JournalRow::as_select())
        .load(conn)
}

/// The ids the cache holds at each `(name, type)` asked for.
pub fn ids_at(
    conn: &mut Conn,
    keys: &[(String, String)],
) -> QueryResult<HashMap<(String, String), Vec<String>>> {
    let mut out: HashMap<(String, String), Vec<String>> = HashMap::new();
    let mut names: Vec<&str> = keys.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let rows_per = chunk(conn);
    for part in names.chunks(rows_per) {
        let rows: Vec<(String, String, String)> = dns_records::table
            .filter(dns_records::name.eq_any(part))
            .select((
                dns_records::name,
                dns_records::rtype,
                dns_records::record_id,
            ))
            .load(conn)?;
        for (name, rtype, id) in rows {
            out.entry((name, rtype)).or_default().push(id);
        }
    }
    Ok(out)
}

/// Journals `rows` as pending in one transaction, before their changes are
/// sent; an entry of the same id left by a failed change is replaced. It is
/// the last write transaction before the provider is asked, so it runs even
/// when `rows` is empty (changes without ids): the write transaction's fence
/// check (PostgreSQL) is what lets the provider request go.
pub fn journal_begin(conn: &mut Conn, rows: &[JournalRow]) -> QueryResult<()> {
    write_tx(conn, |conn| dialect!(conn, upsert_journal(rows)))
}

/// Writes accepted changes into the cache and settles their journal entries
/// in one write transaction, so the journal never says "applied"
/// without the cache row, nor the reverse. Takes the next generation once
/// when the cache changed. Returns the generation after it.
pub fn apply_settled(
    conn: &mut Conn,
    provider: &str,
    written: &[ZoneWritten],
    settled: &[JournalRow],
    now_ms: i64,
) -> QueryResult<u64> {
    write_tx(conn, |conn| {
        let generation = if written.is_empty() {
            counter(state(conn)?.generation)
        } else {
            write_rows(conn, provider, written, now_ms)?
        };
        // Whole rows rewritten a chunk at a time (see `upsert_journal`).
        dialect!(&mut *conn, upsert_journal(settled))?;
        Ok(generation)
    })
}

/// Drops settled journal entries created before `before`. Pending entries
/// stay until they are settled.
pub fn journal_purge(conn: &mut Conn, before: i64) -> QueryResult<usize> {
    diesel::delete(
        change_journal::table
            .filter(change_journal::state.ne(JOURNAL_PENDING))
            .filter(change_journal::created_at.lt(before)),
    )
    .execute(conn)
}

#[cfg(test)]
mod tests;
