//! Unit tests of the store: the set-based statements, and what the point
//! reads send. Every test body runs twice, against a real SQLite file and
//! against a real PostgreSQL database (one throwaway cluster per test binary,
//! a database per test; PostgreSQL must be installed, these never skip).

use super::*;
use trafego_common::db::{AnyDb, DbOptions, DbUrl};

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
    let url = DbUrl::Sqlite(dir.path().join("t.db"));
    let db = AnyDb::connect(&url, "test", crate::migrations(), DbOptions::default()).unwrap();
    TestDb {
        db,
        _dir: Some(dir),
    }
}

/// A fresh database in this test binary's PostgreSQL cluster.
async fn postgres_db() -> TestDb {
    let url = trafego_pg_harness::fresh_database("store")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let url = DbUrl::parse(&url).unwrap();
    let db = AnyDb::connect(&url, "test", crate::migrations(), DbOptions::default()).unwrap();
    assert_eq!(db.dialect(), trafego_common::db::Dialect::Postgres);
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
    set_based_statements_do_what_they_say,
    upserts_keep_timestamps_and_dry_checks_write_nothing,
    point_reads_bind_no_limit,
    declarations_plan_inputs_and_hand_tracking,
    thousands_of_ids_in_one_statement,
);

fn row(id: &str, name: &str, managed: bool) -> TrackedRow {
    TrackedRow {
        provider: "zonefile".into(),
        zone: "example.com".into(),
        record_id: id.into(),
        rtype: "A".into(),
        name: name.into(),
        content: "192.0.2.1".into(),
        ttl: 1,
        proxied: false,
        priority: None,
        fingerprint: String::new(),
        app_managed: managed,
        source: "s".into(),
        is_orphaned: false,
        orphaned_at: None,
        is_missing: false,
        missing_since: None,
        drift: String::new(),
        tracked_at: 1,
        updated_at: 1,
        first_seen: 1,
        metadata: "{}".into(),
    }
}

fn view(id: &str, content: &str) -> CacheView {
    CacheView {
        record_id: id.into(),
        name: format!(
            "{}.example.com",
            ["a", "b", "c"][id.parse::<usize>().unwrap() - 1]
        ),
        rtype: "A".into(),
        content: content.into(),
        ttl: 300,
        proxied: false,
        priority: None,
    }
}

async fn set_based_statements_do_what_they_say(db: TestDb) {
    db.run(|c| {
        let commit_one = Commit {
            insert: vec![
                row("1", "a.example.com", true),
                row("2", "b.example.com", false),
                row("3", "c.example.com", true),
            ],
            orphan: vec![],
            source: "s".into(),
            ..Default::default()
        };
        commit(c, &commit_one, 10)?;
        let orphan = Commit {
            orphan: vec!["1".into(), "2".into()],
            orphan_reason: "gone".into(),
            source: "s".into(),
            ..Default::default()
        };
        commit(c, &orphan, 20)?;
        // A second orphan mark keeps the first orphaned_at.
        commit(c, &orphan, 30)?;
        assert_eq!(get(c, "1")?.unwrap().orphaned_at, Some(20));
        // "3" is gone from the cache, "1" drifted.
        let o = check_against_cache(
            c,
            &[view("1", "192.0.2.9"), view("2", "192.0.2.1")],
            40,
            false,
        )?;
        assert_eq!(o.newly_missing, 1);
        assert_eq!(o.drifted, 1);
        assert!(get(c, "3")?.unwrap().is_missing);
        assert!(!get(c, "1")?.unwrap().drift.is_empty());
        let o = check_against_cache(
            c,
            &[
                view("1", "192.0.2.1"),
                view("2", "192.0.2.1"),
                view("3", "192.0.2.1"),
            ],
            50,
            false,
        )?;
        assert_eq!((o.found_again, o.drifted, o.missing), (1, 0, 0));
        let n = counts(c)?;
        assert_eq!((n.total, n.active, n.orphaned, n.unmanaged), (3, 1, 2, 1));
        assert_eq!(orphans(c)?.len(), 2);
        assert_eq!(
            record_deleted(c, &["1".into(), "3".into()], "grace passed", 60)?,
            1
        );
        assert!(get(c, "1")?.is_none());
        assert!(
            get(c, "3")?.is_some(),
            "a record not orphaned is never moved"
        );
        assert_eq!(history(c)?.len(), 1);
        let (page, more) = list(c, &ListFilter::default(), None, 1)?;
        assert!(more);
        let key = PageKey {
            name: page[0].name.clone(),
            rtype: page[0].rtype.clone(),
            record_id: page[0].record_id.clone(),
        };
        let key = PageKey::decode(&key.encode()).unwrap();
        let (page2, more) = list(c, &ListFilter::default(), Some(&key), 10)?;
        assert!(!more);
        assert_eq!(page2.len(), 1);
        Ok::<_, crate::error::TrackingError>(())
    })
    .await
    .unwrap();
}

async fn upserts_keep_timestamps_and_dry_checks_write_nothing(db: TestDb) {
    db.run(|c| {
        let mut orphaned = row("2", "b.example.com", true);
        orphaned.is_orphaned = true;
        orphaned.orphaned_at = Some(5);
        let first = Commit {
            insert: vec![row("1", "a.example.com", true), orphaned.clone()],
            source: "s".into(),
            ..Default::default()
        };
        commit(c, &first, 10)?;
        // The same ids again (a record renamed at the provider, one still
        // orphaned): rewritten in place, never a UNIQUE failure.
        let mut renamed = row("1", "z.example.com", true);
        renamed.tracked_at = 99;
        renamed.first_seen = 99;
        orphaned.orphaned_at = Some(50);
        let again = Commit {
            insert: vec![renamed, orphaned],
            source: "s".into(),
            ..Default::default()
        };
        commit(c, &again, 20)?;
        let r = get(c, "1")?.unwrap();
        assert_eq!(
            (r.name.as_str(), r.tracked_at, r.first_seen),
            ("z.example.com", 1, 1)
        );
        assert_eq!(
            get(c, "2")?.unwrap().orphaned_at,
            Some(5),
            "the orphan clock is kept"
        );
        // A dry check reports the missing record and writes nothing.
        let o = check_against_cache(c, &[view("2", "192.0.2.1")], 30, true)?;
        assert_eq!(o.newly_missing, 1);
        assert!(!get(c, "1")?.unwrap().is_missing);
        // Intents: written, then cleared or purged by a commit.
        let intent = |id: &str, at: i64| IntentRow {
            id: id.into(),
            source: "s".into(),
            action: INTENT_CREATE.into(),
            record_id: String::new(),
            name: "n.example.com".into(),
            rtype: "A".into(),
            content: "192.0.2.1".into(),
            ttl: 1,
            proxied: false,
            priority: None,
            created_at: at,
            journal_id: String::new(),
        };
        write_intents(
            c,
            &[intent("r:0", 10), intent("r:1", 40), intent("r:2", 40)],
        )?;
        let clear = Commit {
            source: "s".into(),
            clear_intents: vec!["r:1".into()],
            purge_intents_before: Some(20),
            ..Default::default()
        };
        commit(c, &clear, 50)?;
        let left: Vec<String> = intents(c)?.into_iter().map(|i| i.id).collect();
        assert_eq!(left, vec!["r:2".to_string()]);
        Ok::<_, crate::error::TrackingError>(())
    })
    .await
    .unwrap();
}

/// Point reads bind no `LIMIT`: a bound LIMIT makes SQLite re-prepare the
/// cached statement at every call.
async fn point_reads_bind_no_limit(db: TestDb) {
    use diesel::connection::{Connection, InstrumentationEvent};
    let sql = db
        .run(|c| {
            let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
            let rec = seen.clone();
            c.set_instrumentation(move |e: InstrumentationEvent<'_>| {
                if let InstrumentationEvent::StartQuery { query, .. } = e {
                    rec.lock().unwrap().push(query.to_string());
                }
            });
            assert!(get(c, "1")?.is_none());
            state_set(c, "k", "v")?;
            assert_eq!(state_get(c, "k")?.as_deref(), Some("v"));
            let sql = seen.lock().unwrap().clone();
            Ok::<_, crate::error::TrackingError>(sql)
        })
        .await
        .unwrap();
    // The write transaction's own statements on PostgreSQL (its lock and the
    // leadership fence check) are not point reads.
    let reads: Vec<_> = sql
        .iter()
        .filter(|s| s.starts_with("SELECT"))
        .filter(|s| !s.contains("pg_advisory_xact_lock") && !s.contains("trafego.fence"))
        .collect();
    assert_eq!(reads.len(), 2, "{sql:#?}");
    for s in reads {
        assert!(!s.contains("LIMIT"), "{s}");
    }
}

fn decl(source: &str, name: &str, at: i64) -> DeclRow {
    DeclRow {
        source: source.into(),
        name: name.into(),
        rtype: "A".into(),
        content: "192.0.2.1".into(),
        ttl: 1,
        proxied: false,
        priority: None,
        declared_at: at,
        updated_at: at,
    }
}

/// The rest of the store: declarations in and out of a commit, plan inputs,
/// unorphaning, a rewrite under a new id, hand tracking, listing filters,
/// state overwrites and an intent sent again under its id.
async fn declarations_plan_inputs_and_hand_tracking(db: TestDb) {
    db.run(|c| {
        let first = Commit {
            insert: vec![
                row("1", "a.example.com", true),
                row("2", "b.example.com", true),
            ],
            source: "s".into(),
            decl_insert: vec![
                decl("s", "a.example.com", 10),
                decl("s", "b.example.com", 10),
            ],
            ..Default::default()
        };
        commit(c, &first, 10)?;
        // A later declaration is stamped after every stored one.
        assert_eq!(next_decl_stamp(c, 5)?, 11);
        assert_eq!(next_decl_stamp(c, 50)?, 50);
        let input = load_plan_input(c, "s", &["c.example.com".into()], &["2".into()], 20)?;
        assert_eq!(input.previous.len(), 2);
        assert_eq!(
            input.declarations.len(),
            2,
            "the source's earlier names are loaded"
        );
        assert_eq!(input.tracked.len(), 2);
        assert_eq!(input.decl_stamp, 20);
        // Orphan one, then a commit that unorphans it, drops b's declaration
        // and rewrites "1" under a new id.
        let orphan = Commit {
            orphan: vec!["2".into()],
            orphan_reason: "gone".into(),
            source: "s".into(),
            ..Default::default()
        };
        commit(c, &orphan, 30)?;
        let meta: serde_json::Value =
            serde_json::from_str(&get(c, "2")?.unwrap().metadata).unwrap();
        assert_eq!(meta["orphan_reason"], "gone");
        let mut renamed = row("9", "a.example.com", true);
        renamed.content = "192.0.2.9".into();
        let second = Commit {
            replace: vec![("1".into(), renamed)],
            unorphan: vec!["2".into()],
            source: "s".into(),
            decl_delete: vec![("b.example.com".into(), "A".into())],
            ..Default::default()
        };
        commit(c, &second, 40)?;
        assert!(get(c, "1")?.is_none());
        let nine = get(c, "9")?.unwrap();
        assert_eq!((nine.content.as_str(), nine.tracked_at), ("192.0.2.9", 1));
        let two = get(c, "2")?.unwrap();
        assert!(!two.is_orphaned && two.orphaned_at.is_none());
        let meta: serde_json::Value = serde_json::from_str(&two.metadata).unwrap();
        assert!(meta.get("orphan_reason").is_none(), "{meta}");
        let all = list(c, &ListFilter::default(), None, 10)?.0;
        let by = sources_of(c, &all)?;
        assert_eq!(
            by.get(&("a.example.com".into(), "A".into())),
            Some(&vec!["s".to_string()])
        );
        assert_eq!(by.get(&("b.example.com".into(), "A".into())), None);
        // Hand tracking, attributed to another source, then listing by it.
        let mut hand = row("7", "h.example.com", false);
        hand.source = String::new();
        track(c, &hand, Some(&decl("hand", "h.example.com", 1)))?;
        let stamp = dns_declarations::table
            .filter(dns_declarations::source.eq("hand"))
            .select(dns_declarations::declared_at)
            .get_result::<i64>(c)?;
        assert!(
            stamp > 10,
            "a new declaration comes after the stored ones: {stamp}"
        );
        // Tracking it again keeps its place in line.
        track(c, &hand, Some(&decl("hand", "h.example.com", 99)))?;
        let again = dns_declarations::table
            .filter(dns_declarations::source.eq("hand"))
            .select(dns_declarations::declared_at)
            .get_result::<i64>(c)?;
        assert_eq!(again, stamp);
        let by_source = ListFilter {
            source: Some("hand".into()),
            ..Default::default()
        };
        let (rows, _) = list(c, &by_source, None, 10)?;
        assert_eq!(
            rows.iter()
                .map(|r| r.record_id.as_str())
                .collect::<Vec<_>>(),
            ["7"]
        );
        let unmanaged = ListFilter {
            app_managed: Some(false),
            ..Default::default()
        };
        assert_eq!(list(c, &unmanaged, None, 10)?.0.len(), 1);
        let named = ListFilter {
            name: Some("a.example.com".into()),
            orphaned: Some(false),
            ..Default::default()
        };
        assert_eq!(list(c, &named, None, 10)?.0[0].record_id, "9");
        assert!(untrack(c, "7")?);
        assert!(!untrack(c, "7")?);
        // State is overwritten; an intent sent again under its id is rewritten.
        state_set(c, "k", "1")?;
        state_set(c, "k", "2")?;
        assert_eq!(state_get(c, "k")?.as_deref(), Some("2"));
        let intent = |content: &str| IntentRow {
            id: "r:0".into(),
            source: "s".into(),
            action: INTENT_UPDATE.into(),
            record_id: "9".into(),
            name: "a.example.com".into(),
            rtype: "A".into(),
            content: content.into(),
            ttl: 1,
            proxied: false,
            priority: Some(10),
            created_at: 50,
            journal_id: "j".into(),
        };
        write_intents(c, &[intent("192.0.2.1")])?;
        write_intents(c, &[intent("192.0.2.2")])?;
        assert_eq!(intents(c)?, vec![intent("192.0.2.2")]);
        Ok::<_, crate::error::TrackingError>(())
    })
    .await
    .unwrap();
}

/// A set-based statement over many records stays one statement: 5,000 ids
/// in one commit, one check and one move to the history.
async fn thousands_of_ids_in_one_statement(db: TestDb) {
    db.run(|c| {
        let rows: Vec<TrackedRow> = (0..5000)
            .map(|i| row(&format!("id{i}"), &format!("h{i}.example.com"), true))
            .collect();
        let ids: Vec<String> = rows.iter().map(|r| r.record_id.clone()).collect();
        commit(
            c,
            &Commit {
                insert: rows,
                source: "s".into(),
                ..Default::default()
            },
            10,
        )?;
        commit(
            c,
            &Commit {
                orphan: ids.clone(),
                orphan_reason: "gone".into(),
                source: "s".into(),
                ..Default::default()
            },
            20,
        )?;
        let o = check_against_cache(c, &[], 30, false)?;
        assert_eq!((o.newly_missing, o.missing), (5000, 5000));
        assert_eq!(record_deleted(c, &ids, "grace passed", 40)?, 5000);
        assert_eq!(counts(c)?.total, 0);
        Ok::<_, crate::error::TrackingError>(())
    })
    .await
    .unwrap();
}

/// A write of a replica whose fence is stale fails before its first
/// statement, and changes nothing; the replica holding the table's fence
/// writes. Two fenced handles on one PostgreSQL database with hand-made
/// roles, the leadership row bumped by hand as a takeover bumps it.
#[tokio::test]
async fn on_postgres_a_write_under_a_stale_fence_fails_and_changes_nothing() {
    use diesel::RunQueryDsl;
    use tokio::sync::watch;
    use trafego_common::leader::{FenceError, Role, fence_error};

    fn sql(c: &mut Conn, q: &str) -> QueryResult<usize> {
        match c {
            AnyConnection::Postgres(pg) => diesel::sql_query(q).execute(pg),
            AnyConnection::Sqlite(_) => unreachable!("a PostgreSQL test"),
        }
    }
    /// `f`'s own diesel result (the pool's errors fail the test).
    async fn on<T: Send + 'static>(
        db: &AnyDb,
        f: impl FnOnce(&mut Conn) -> QueryResult<T> + Send + 'static,
    ) -> QueryResult<T> {
        db.run(move |c| Ok::<_, trafego_common::db::DbError>(f(c)))
            .await
            .unwrap()
    }
    let url = trafego_pg_harness::fresh_database("store")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let url = DbUrl::parse(&url).unwrap();
    let open = |role: watch::Receiver<Role>| {
        AnyDb::connect(&url, "test", crate::migrations(), DbOptions::default())
            .unwrap()
            .fenced(crate::SERVICE_NAME, role)
    };
    let (_old_tx, old_rx) = watch::channel(Role::Leader { fence: 1 });
    let (new_tx, new_rx) = watch::channel(Role::Follower { leader: None });
    let old = open(old_rx);
    let new = open(new_rx);
    let leadership = format!(
        "INSERT INTO leadership (service, fence, holder, since) \
         VALUES ('{}', 1, 'old:50052', now())",
        crate::SERVICE_NAME
    );
    on(&old, move |c| sql(c, &leadership)).await.unwrap();
    // The old replica leads with fence 1: it writes.
    on(&old, |c| state_set(c, "k", "old")).await.unwrap();
    // The other one follows (fence 0): it cannot.
    let e = on(&new, |c| state_set(c, "k", "follower"))
        .await
        .unwrap_err();
    assert!(fence_error(&e).is_some(), "{e}");

    // The new replica takes over: the fence moves to 2. The old one still
    // believes it leads with fence 1.
    let bump = format!(
        "UPDATE leadership SET fence = fence + 1, holder = 'new:50052' WHERE service = '{}'",
        crate::SERVICE_NAME
    );
    on(&new, move |c| sql(c, &bump)).await.unwrap();
    new_tx.send_replace(Role::Leader { fence: 2 });

    let e = on(&old, |c| state_set(c, "k", "stale")).await.unwrap_err();
    match fence_error(&e) {
        Some(FenceError::Stale { ours, current, .. }) => {
            assert_eq!((*ours, current.as_str()), (1, "2"), "{e}");
        }
        other => panic!("not a stale fence: {other:?} ({e})"),
    }
    let commit = Commit {
        insert: vec![row("1", "a.example.com", true)],
        orphan: vec!["1".into()],
        orphan_reason: "test".into(),
        source: "s".into(),
        ..Default::default()
    };
    let e = on(&old, move |c| commit_(c, &commit)).await.unwrap_err();
    assert!(fence_error(&e).is_some(), "{e}");
    let e = on(&old, |c| untrack(c, "1")).await.unwrap_err();
    assert!(fence_error(&e).is_some(), "{e}");
    // Nothing changed: the old replica's value stands, no row was written.
    let (value, total) = on(&new, |c| Ok((state_get(c, "k")?, counts(c)?.total)))
        .await
        .unwrap();
    assert_eq!((value.as_deref(), total), (Some("old"), 0));
    // The new leader writes.
    on(&new, |c| state_set(c, "k", "new")).await.unwrap();
    let value = on(&new, |c| state_get(c, "k")).await.unwrap();
    assert_eq!(value.as_deref(), Some("new"));
}

/// [`commit`] at a fixed time, for the fence test.
fn commit_(c: &mut Conn, commit: &Commit) -> QueryResult<()> {
    super::commit(c, commit, 1_000)
}
