//! Unit tests of the store: every operation, each body run twice, against a
//! real SQLite file and against a real PostgreSQL database (one throwaway
//! cluster per test binary, a database per test; PostgreSQL must be
//! installed, these never skip). Plus, on PostgreSQL, the fence every write
//! transaction checks.

use super::*;
use trafego_common::db::{AnyDb, DbError, DbOptions, DbUrl, SessionFence};

/// A database for one test, and the directory its SQLite file lives in.
struct TestDb {
    db: AnyDb,
    _dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for TestDb {
    type Target = AnyDb;
    fn deref(&self) -> &AnyDb {
        &self.db
    }
}

/// A fresh SQLite file in a temporary directory.
async fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = DbUrl::Sqlite(dir.path().join("c.db"));
    let db = AnyDb::connect(&url, "test", crate::migrations(), DbOptions::default()).unwrap();
    TestDb {
        db,
        _dir: Some(dir),
    }
}

/// A fresh database in this test binary's PostgreSQL cluster.
async fn postgres_db() -> TestDb {
    let url = trafego_pg_harness::fresh_database("cache_store")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let url = DbUrl::parse(&url).unwrap();
    let db = AnyDb::connect(&url, "test", crate::migrations(), DbOptions::default()).unwrap();
    assert_eq!(db.dialect(), Dialect::Postgres);
    TestDb { db, _dir: None }
}

/// Runs each named test body (`async fn name(db: TestDb)`) once per backend:
/// `on_sqlite::name` and `on_postgres::name`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::sqlite_db().await).await
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::postgres_db().await).await
                }
            )*
        }
    };
}

on_both_backends!(
    claims_keep_served_zones_and_drop_the_rest,
    refreshes_write_only_what_changed,
    refreshes_of_many_records_span_chunks,
    failed_refreshes_keep_the_snapshot,
    written_changes_upsert_and_remove,
    listings_filter_and_page,
    the_journal_begins_settles_and_purges,
);

const ZONE: &str = "example.com";

fn rec(id: &str, name: &str, content: &str) -> ProviderRecord {
    ProviderRecord {
        id: id.into(),
        rtype: "A".into(),
        name: name.into(),
        content: content.into(),
        ttl: 300,
        proxied: false,
        priority: None,
        comment: String::new(),
    }
}

/// Refreshes `zone` with `records` at time `now`.
fn refresh(
    c: &mut Conn,
    zone: &str,
    records: Vec<ProviderRecord>,
    now: i64,
) -> QueryResult<RefreshDiff> {
    apply_refresh(
        c,
        "zonefile",
        zone,
        records,
        now,
        now,
        std::time::Instant::now(),
    )
}

fn ids(rows: &[CachedRecord]) -> Vec<&str> {
    rows.iter().map(|r| r.record_id.as_str()).collect()
}

async fn claims_keep_served_zones_and_drop_the_rest(db: TestDb) {
    db.run(|c| {
        let zones = vec![ZONE.to_string(), "example.org".to_string()];
        let first = claim(c, "zonefile", &zones)?;
        // A new database "belongs" to provider "": its (no) rows are dropped.
        assert!(first.journal_reset);
        assert_eq!(state(c)?.zone, "example.com,example.org");
        let g = state(c)?.generation;
        // The same claim again changes nothing.
        assert_eq!(claim(c, "zonefile", &zones)?, Claimed::default());
        assert_eq!(state(c)?.generation, g);
        refresh(c, ZONE, vec![rec("1", "a.example.com", "192.0.2.1")], 10)?;
        refresh(
            c,
            "example.org",
            vec![rec("2", "a.example.org", "192.0.2.2")],
            10,
        )?;
        let jid = journal_id(c)?;
        assert_eq!(jid.len(), 32);
        assert_eq!(journal_id(c)?, jid, "the journal id is made once");
        // Dropping a zone drops its rows and state, and starts a new journal.
        let dropped = claim(c, "zonefile", &[ZONE.to_string()])?;
        assert_eq!(dropped.other_zones, vec![("example.org".to_string(), 1)]);
        assert!(dropped.journal_reset);
        assert_eq!(count(c)?, 1);
        assert_eq!(zone_states(c)?.len(), 1);
        assert_ne!(journal_id(c)?, jid);
        // Another provider: every row goes.
        let other = claim(c, "cloudflare", &[ZONE.to_string()])?;
        assert_eq!(other.other_provider, 1);
        assert_eq!(count(c)?, 0);
        assert!(zone_states(c)?.is_empty());
        assert!(state(c)?.generation > g);
        Ok::<_, DbError>(())
    })
    .await
    .unwrap();
}

async fn refreshes_write_only_what_changed(db: TestDb) {
    db.run(|c| {
        claim(
            c,
            "zonefile",
            &[ZONE.to_string(), "example.org".to_string()],
        )?;
        let other = refresh(
            c,
            "example.org",
            vec![rec("o", "x.example.org", "192.0.2.9")],
            5,
        )?;
        let d = refresh(
            c,
            ZONE,
            vec![
                rec("1", "a.example.com", "192.0.2.1"),
                rec("2", "b.example.com", "192.0.2.2"),
                // A duplicate id: the first one counts.
                rec("2", "b.example.com", "192.0.2.99"),
            ],
            10,
        )?;
        assert_eq!((d.added.len(), d.changed.len(), d.removed.len()), (2, 0, 0));
        assert_eq!(d.total, 2);
        assert!(d.generation > other.generation);
        assert_eq!(d.state.generation, i64::try_from(d.generation).unwrap());
        assert_eq!(d.state.last_refreshed, Some(10));
        assert_eq!(zone_state(c, ZONE)?, d.state);
        assert_eq!(get(c, "2")?.unwrap().content, "192.0.2.2");
        // Unchanged: no row written (updated_at stays), the generation moves.
        let same = refresh(
            c,
            ZONE,
            vec![
                rec("1", "a.example.com", "192.0.2.1"),
                rec("2", "b.example.com", "192.0.2.2"),
            ],
            20,
        )?;
        assert!(same.added.is_empty() && same.changed.is_empty() && same.removed.is_empty());
        assert_eq!(get(c, "1")?.unwrap().updated_at, 10);
        assert!(same.generation > d.generation);
        // One changed, one gone, one new.
        let next = refresh(
            c,
            ZONE,
            vec![
                rec("1", "a.example.com", "192.0.2.10"),
                rec("3", "c.example.com", "192.0.2.3"),
            ],
            30,
        )?;
        assert_eq!(ids_of(&next.added), ["3"]);
        assert_eq!(ids_of(&next.changed), ["1"]);
        assert_eq!(next.removed, ["2"]);
        let one = get(c, "1")?.unwrap();
        assert_eq!((one.content.as_str(), one.updated_at), ("192.0.2.10", 30));
        assert_eq!(get(c, "2")?, None);
        // The other zone is untouched.
        assert_eq!(zone_of(c, "o")?.as_deref(), Some("example.org"));
        assert_eq!(zone_state(c, "example.org")?, other.state);
        let by_zone = count_by_zone(c)?;
        assert_eq!(by_zone.get(ZONE), Some(&2));
        assert_eq!(by_zone.get("example.org"), Some(&1));
        assert_eq!(count(c)?, 3);
        assert_eq!(
            state(c)?.generation,
            i64::try_from(next.generation).unwrap()
        );
        Ok::<_, DbError>(())
    })
    .await
    .unwrap();
}

fn ids_of(records: &[ProviderRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

/// More records than one statement of either backend carries (insert,
/// delete, `eq_any` reads and journal rows all go in chunks).
async fn refreshes_of_many_records_span_chunks(db: TestDb) {
    db.run(|c| {
        claim(c, "zonefile", &[ZONE.to_string()])?;
        let n = 12_000;
        let all: Vec<ProviderRecord> = (0..n)
            .map(|i| rec(&format!("r{i}"), &format!("h{i}.example.com"), "192.0.2.1"))
            .collect();
        let d = refresh(c, ZONE, all.clone(), 1)?;
        assert_eq!(d.added.len(), n);
        assert_eq!(count(c)?, 12_000);
        let keys: Vec<(String, String)> = all
            .iter()
            .map(|r| (r.name.clone(), "A".to_string()))
            .collect();
        let held = ids_at(c, &keys)?;
        assert_eq!(held.len(), n);
        assert_eq!(held[&("h11999.example.com".into(), "A".into())], ["r11999"]);
        // Keep one record in six: the rest are deleted in chunks.
        let kept: Vec<ProviderRecord> = all.iter().step_by(6).cloned().collect();
        let d = refresh(c, ZONE, kept, 2)?;
        assert_eq!(d.removed.len(), 10_000);
        assert_eq!(count(c)?, 2_000);
        let rows: Vec<JournalRow> = (0..7_000)
            .map(|i| journal_row(&format!("c{i}"), JOURNAL_PENDING, 5))
            .collect();
        journal_begin(c, &rows)?;
        let wanted: Vec<String> = (0..7_000).map(|i| format!("c{i}")).collect();
        assert_eq!(journal_get(c, &wanted)?.len(), 7_000);
        assert_eq!(journal_pending(c)?.len(), 7_000);
        Ok::<_, DbError>(())
    })
    .await
    .unwrap();
}

async fn failed_refreshes_keep_the_snapshot(db: TestDb) {
    db.run(|c| {
        claim(c, "zonefile", &[ZONE.to_string()])?;
        // A zone never refreshed has a blank state.
        assert_eq!(zone_state(c, ZONE)?, ZoneState::new(ZONE));
        let st = record_refresh_failure(c, ZONE, "listing failed", 5)?;
        assert_eq!(
            (st.last_attempt, st.last_error.as_str()),
            (Some(5), "listing failed")
        );
        let ok = refresh(c, ZONE, vec![rec("1", "a.example.com", "192.0.2.1")], 10)?;
        let g = state(c)?.generation;
        let st = record_refresh_failure(c, ZONE, "timed out", 20)?;
        assert_eq!(st.last_refreshed, ok.state.last_refreshed);
        assert_eq!(st.generation, ok.state.generation);
        assert_eq!(zone_state(c, ZONE)?, st);
        assert_eq!(state(c)?.generation, g, "a failure takes no generation");
        assert_eq!(count(c)?, 1);
        Ok::<_, DbError>(())
    })
    .await
    .unwrap();
}

async fn written_changes_upsert_and_remove(db: TestDb) {
    db.run(|c| {
        claim(
            c,
            "zonefile",
            &[ZONE.to_string(), "example.org".to_string()],
        )?;
        refresh(
            c,
            ZONE,
            vec![
                rec("1", "a.example.com", "192.0.2.1"),
                rec("2", "b.example.com", "192.0.2.2"),
            ],
            10,
        )?;
        let g = apply_written(
            c,
            "zonefile",
            &[
                (
                    ZONE.to_string(),
                    Written::Upsert {
                        record: rec("1", "a.example.com", "192.0.2.100"),
                        replaces: None,
                    },
                ),
                (
                    ZONE.to_string(),
                    Written::Upsert {
                        record: rec("2b", "b.example.com", "192.0.2.22"),
                        replaces: Some("2".into()),
                    },
                ),
                (
                    "example.org".to_string(),
                    Written::Upsert {
                        record: rec("o", "x.example.org", "192.0.2.9"),
                        replaces: None,
                    },
                ),
            ],
            20,
        )?;
        assert_eq!(get(c, "1")?.unwrap().content, "192.0.2.100");
        assert_eq!(get(c, "2")?, None);
        assert_eq!(get(c, "2b")?.unwrap().updated_at, 20);
        assert_eq!(zone_of(c, "o")?.as_deref(), Some("example.org"));
        let gi = i64::try_from(g).unwrap();
        assert_eq!(zone_state(c, ZONE)?.generation, gi);
        assert_eq!(zone_state(c, "example.org")?.generation, gi);
        assert_eq!(state(c)?.generation, gi);
        let g2 = apply_written(
            c,
            "zonefile",
            &[(ZONE.to_string(), Written::Removed("1".into()))],
            30,
        )?;
        assert_eq!(g2, g + 1);
        assert_eq!(get(c, "1")?, None);
        assert_eq!(zone_state(c, "example.org")?.generation, gi);
        assert_eq!(count(c)?, 2);
        Ok::<_, DbError>(())
    })
    .await
    .unwrap();
}

async fn listings_filter_and_page(db: TestDb) {
    db.run(|c| {
        claim(
            c,
            "zonefile",
            &[ZONE.to_string(), "example.org".to_string()],
        )?;
        let mut mx = rec("m", "example.com", "10 mail.example.com");
        mx.rtype = "MX".into();
        mx.priority = Some(10);
        refresh(
            c,
            ZONE,
            vec![
                rec("1", "a.example.com", "192.0.2.1"),
                rec("2", "b.a.example.com", "192.0.2.2"),
                // `_` is no wildcard: xa.example.com does not end in ".a.example.com",
                // nor does b_a.example.com end in ".b.a.example.com"-like patterns.
                rec("3", "xa.example.com", "192.0.2.3"),
                rec("4", "b_a.example.com", "192.0.2.4"),
                mx,
            ],
            10,
        )?;
        refresh(
            c,
            "example.org",
            vec![rec("o", "a.example.org", "192.0.2.9")],
            10,
        )?;
        let all = |c: &mut Conn, f: &ListFilter| list(c, f, None, 100).map(|(r, _)| r);
        let suffix = ListFilter {
            name_suffix: Some("a.example.com".into()),
            ..Default::default()
        };
        assert_eq!(ids(&all(c, &suffix)?), ["1", "2"]);
        let underscore = ListFilter {
            name_suffix: Some("_a.example.com".into()),
            ..Default::default()
        };
        assert!(all(c, &underscore)?.is_empty(), "`_` is compared exactly");
        let typed = ListFilter {
            rtype: Some("MX".into()),
            ..Default::default()
        };
        let mxs = all(c, &typed)?;
        assert_eq!(ids(&mxs), ["m"]);
        assert_eq!(mxs[0].priority, Some(10));
        let named = ListFilter {
            name: Some("xa.example.com".into()),
            ..Default::default()
        };
        assert_eq!(ids(&all(c, &named)?), ["3"]);
        let zoned = ListFilter {
            zone: Some("example.org".into()),
            ..Default::default()
        };
        assert_eq!(ids(&all(c, &zoned)?), ["o"]);
        // Pages of two, in (name, type, record_id) order.
        let mut seen = Vec::new();
        let mut after: Option<PageKey> = None;
        loop {
            let (page, more) = list(c, &ListFilter::default(), after.as_ref(), 2)?;
            assert!(page.len() <= 2);
            seen.extend(page.iter().map(|r| r.name.clone()));
            after = page.last().map(paging::Keyed::page_key);
            if !more {
                break;
            }
        }
        assert_eq!(
            seen,
            [
                "a.example.com",
                "a.example.org",
                "b.a.example.com",
                "b_a.example.com",
                "example.com",
                "xa.example.com"
            ]
        );
        assert_eq!(get(c, "nope")?, None);
        assert_eq!(zone_of(c, "nope")?, None);
        let held = ids_at(
            c,
            &[
                ("a.example.com".into(), "A".into()),
                ("example.com".into(), "MX".into()),
                ("none.example.com".into(), "A".into()),
            ],
        )?;
        assert_eq!(held[&("a.example.com".into(), "A".into())], ["1"]);
        assert_eq!(held[&("example.com".into(), "MX".into())], ["m"]);
        assert!(!held.contains_key(&("none.example.com".into(), "A".into())));
        Ok::<_, DbError>(())
    })
    .await
    .unwrap();
}

fn journal_row(id: &str, state: &str, created_at: i64) -> JournalRow {
    JournalRow {
        change_id: id.into(),
        op: "create".into(),
        op_fingerprint: format!("fp-{id}"),
        target_id: String::new(),
        rtype: "A".into(),
        name: "a.example.com".into(),
        content: "192.0.2.1".into(),
        ttl: 300,
        priority: None,
        prior_ids: "[]".into(),
        state: state.into(),
        code: 0,
        message: String::new(),
        record_id: String::new(),
        record: String::new(),
        created_at,
        settled_at: None,
        zone: ZONE.into(),
    }
}

async fn the_journal_begins_settles_and_purges(db: TestDb) {
    db.run(|c| {
        claim(c, "zonefile", &[ZONE.to_string()])?;
        journal_begin(c, &[])?;
        journal_begin(
            c,
            &[
                journal_row("c1", JOURNAL_PENDING, 5),
                journal_row("c2", JOURNAL_PENDING, 6),
                journal_row("c3", JOURNAL_PENDING, 1),
            ],
        )?;
        let pending: Vec<String> = journal_pending(c)?
            .into_iter()
            .map(|r| r.change_id)
            .collect();
        assert_eq!(pending, ["c3", "c1", "c2"], "oldest first");
        let g = state(c)?.generation;
        // Settling with no cache change takes no generation.
        let failed = JournalRow {
            code: 9,
            message: "refused".into(),
            settled_at: Some(7),
            ..journal_row("c3", JOURNAL_FAILED, 1)
        };
        assert_eq!(
            apply_settled(c, "zonefile", &[], std::slice::from_ref(&failed), 7)?,
            counter(g)
        );
        // Settling with the row: one transaction, whole rows rewritten; of
        // two rows with one id the later wins (PostgreSQL refuses a row
        // touched twice, so the store makes them unique first).
        let applied = JournalRow {
            record_id: "new".into(),
            record: "{}".into(),
            settled_at: Some(8),
            priority: Some(3),
            ..journal_row("c1", JOURNAL_APPLIED, 5)
        };
        let g2 = apply_settled(
            c,
            "zonefile",
            &[(
                ZONE.to_string(),
                Written::Upsert {
                    record: rec("new", "a.example.com", "192.0.2.1"),
                    replaces: None,
                },
            )],
            &[journal_row("c1", JOURNAL_FAILED, 5), applied.clone()],
            8,
        )?;
        assert_eq!(g2, counter(g) + 1);
        assert!(get(c, "new")?.is_some());
        let mut got = journal_get(c, &["c1".into(), "c3".into(), "zz".into()])?;
        got.sort_by(|a, b| a.change_id.cmp(&b.change_id));
        assert_eq!(got, vec![applied, failed]);
        assert_eq!(journal_pending(c)?.len(), 1);
        // Purge: settled entries older than the cut go; pending ones stay.
        assert_eq!(journal_purge(c, 100)?, 2);
        let left: Vec<String> = journal_get(c, &["c1".into(), "c2".into(), "c3".into()])?
            .into_iter()
            .map(|r| r.change_id)
            .collect();
        assert_eq!(left, ["c2"]);
        Ok::<_, DbError>(())
    })
    .await
    .unwrap();
}

/// A write transaction whose session carries a fence that is not the
/// leadership table's fails at its start, with a fence error, and changes
/// nothing; the same write with the right fence goes through.
#[tokio::test]
async fn a_stale_session_fence_fails_a_write_and_changes_nothing() {
    let db = postgres_db().await;
    db.run(|c| {
        claim(c, "zonefile", &[ZONE.to_string()])?;
        refresh(c, ZONE, vec![rec("1", "a.example.com", "192.0.2.1")], 10)?;
        let AnyConnection::Postgres(pg) = &mut *c else {
            unreachable!("a PostgreSQL database")
        };
        trafego_common::leader::ensure_table(pg)?;
        diesel::sql_query(
            "INSERT INTO leadership (service, fence, holder, since) \
             VALUES ('cache', 7, '127.0.0.1:1', now())",
        )
        .execute(pg)?;
        let before = (state(c)?, zone_state(c, ZONE)?, get(c, "1")?);
        c.set_fence("cache", 6)?;
        let err = refresh(c, ZONE, vec![rec("2", "b.example.com", "192.0.2.2")], 20)
            .expect_err("a stale fence must fail the refresh");
        let fence = trafego_common::leader::fence_error(&err).expect("a fence error");
        assert!(fence.to_string().contains("fence 6"), "{fence}");
        let err = apply_written(
            c,
            "zonefile",
            &[(ZONE.to_string(), Written::Removed("1".into()))],
            20,
        )
        .expect_err("a stale fence must fail the write-through");
        assert!(trafego_common::leader::fence_error(&err).is_some(), "{err}");
        let err = journal_begin(c, &[journal_row("c1", JOURNAL_PENDING, 5)]).unwrap_err();
        assert!(trafego_common::leader::fence_error(&err).is_some(), "{err}");
        // Nothing changed, and the connection is usable (no transaction left open).
        assert_eq!((state(c)?, zone_state(c, ZONE)?, get(c, "1")?), before);
        assert_eq!(count(c)?, 1);
        assert!(journal_get(c, &["c1".into()])?.is_empty());
        // With the table's fence the same write goes through.
        c.set_fence("cache", 7)?;
        refresh(c, ZONE, vec![rec("2", "b.example.com", "192.0.2.2")], 20)?;
        assert_eq!(ids(&list(c, &ListFilter::default(), None, 10)?.0), ["2"]);
        Ok::<_, DbError>(())
    })
    .await
    .unwrap();
}
