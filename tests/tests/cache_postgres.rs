//! cache-service on PostgreSQL, end to end: the real service (in-process
//! `cache_service::run` on 127.0.0.1:0) started with `--database-url`
//! (CACHE_DATABASE_URL) on a fresh PostgreSQL database over a zone file. It
//! refreshes, creates and deletes through ApplyChanges (journaled under
//! change ids), pages through ListRecords, and after a restart on the same
//! database keeps its rows, its generation and its journal. One throwaway
//! cluster per test binary, a database per test. Needs `postgresql`
//! (`apt-get install postgresql libpq-dev`); never skips.

use std::collections::HashSet;

use tonic::transport::Channel;
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::cache::*;
use trafego_tests::*;

/// A fresh database of this binary's cluster, or a failure saying what to install.
async fn database() -> String {
    postgres::fresh_database("cache")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Runs `sql` against `url` and returns the rows as psql prints them.
async fn sql(url: &str, sql: &str) -> String {
    postgres::shared()
        .await
        .unwrap()
        .psql_url(url, sql)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Every record, `page_size` at a time, checking each page's size.
async fn list_all(c: &mut CacheServiceClient<Channel>, page_size: u32) -> Vec<DnsRecord> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_records(ListRecordsRequest {
                page_size,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.records.len() <= usize::try_from(page_size).unwrap());
        out.extend(page.records);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

async fn status(c: &mut CacheServiceClient<Channel>) -> GetCacheStatusResponse {
    c.get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_writes_paging_and_restart_on_postgres() {
    let url = database().await;
    let args = ["--database-url", url.as_str()];
    let mut cache = start_cache(&args).await;
    let dir = cache.keep_dir().expect("the handle's directory");
    let mut c = cache_client(&cache).await;

    let r = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // What a new zone file holds (its apex records), cached beside ours.
    let base = r.total;

    // 250 creates in one call, each journaled under its change id.
    let changes: Vec<Change> = (0..250)
        .map(|i| Change {
            change_id: format!("pg-create-{i}"),
            ..create_a(&format!("h{i:03}.example.com"), "192.0.2.1")
        })
        .collect();
    let created = c
        .apply_changes(ApplyChangesRequest { changes })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((created.succeeded, created.failed), (250, 0), "{created:?}");
    let journal_id = created.journal_id.clone();
    assert!(!journal_id.is_empty());
    assert_eq!(
        sql(&url, "SELECT count(*) FROM dns_records").await,
        (250 + base).to_string(),
        "the rows are in PostgreSQL"
    );
    assert_eq!(
        sql(
            &url,
            "SELECT count(*) FROM change_journal WHERE state = 'applied'"
        )
        .await,
        "250"
    );
    assert!(
        !dir.path().join("cache.db").exists(),
        "no SQLite file beside the zone file"
    );

    // 50 deletes.
    let gone: Vec<String> = created.results[..50]
        .iter()
        .map(|r| r.record_id.clone())
        .collect();
    let deletes: Vec<Change> = gone
        .iter()
        .enumerate()
        .map(|(i, id)| Change {
            kind: Some(change::Kind::Delete(DeleteChange {
                record_id: id.clone(),
            })),
            change_id: format!("pg-delete-{i}"),
            group: String::new(),
        })
        .collect();
    let deleted = c
        .apply_changes(ApplyChangesRequest { changes: deletes })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((deleted.succeeded, deleted.failed), (50, 0), "{deleted:?}");
    assert_eq!(deleted.journal_id, journal_id);

    // A refresh reads the zone file back: nothing differs from the cache.
    let r = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.added, r.changed, r.removed, r.total),
        (0, 0, 0, 200 + base)
    );

    // Pages of 64, in name order, each record once.
    let all = list_all(&mut c, 64).await;
    assert_eq!(all.len(), usize::try_from(200 + base).unwrap());
    let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    let hosts: Vec<&str> = names.into_iter().filter(|n| n.starts_with('h')).collect();
    assert_eq!(hosts.len(), 200);
    assert_eq!(hosts[0], "h050.example.com");
    let ids: HashSet<String> = all.iter().map(|r| r.record_id.clone()).collect();
    assert!(gone.iter().all(|id| !ids.contains(id)));
    // The suffix filter runs on PostgreSQL too.
    let one = c
        .list_records(ListRecordsRequest {
            name_suffix: "h123.example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.records.len(), 1);

    let before = status(&mut c).await;
    assert_eq!(before.record_count, 200 + base);
    assert_eq!(
        sql(&url, "SELECT generation FROM cache_state").await,
        before.generation.to_string()
    );
    drop(c);
    cache.shutdown().await.unwrap();

    // A restart on the same database (and zone file) keeps rows, generation
    // and journal.
    let cache = start_cache_in(dir.path(), &args).await;
    let mut c = cache_client(&cache).await;
    let after = status(&mut c).await;
    assert_eq!(after.record_count, 200 + base);
    assert!(
        after.generation >= before.generation,
        "{} then {}",
        before.generation,
        after.generation
    );
    let again: HashSet<String> = list_all(&mut c, 500)
        .await
        .into_iter()
        .map(|r| r.record_id)
        .collect();
    assert_eq!(again, ids);
    let outcomes = c
        .get_change_outcomes(GetChangeOutcomesRequest {
            change_ids: vec!["pg-create-0".into(), "pg-delete-49".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(outcomes.journal_id, journal_id, "the journal is the same");
    assert!(
        outcomes
            .outcomes
            .iter()
            .all(|o| o.state == ChangeState::Applied as i32),
        "{outcomes:?}"
    );
    assert_eq!(outcomes.outcomes.len(), 2);
    cache.shutdown().await.unwrap();
    drop(dir);
}
