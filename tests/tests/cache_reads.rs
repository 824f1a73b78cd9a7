//! What cache-service's read RPCs cost in SQL: a `GetRecord` or a
//! `ListRecords` is one pooled query (freshness and the generation come from
//! the state cache-service keeps in memory, not from the `cache_state` row),
//! `GetCacheStatus` reads no `cache_state` either, and a point read binds no
//! `LIMIT` (a bound LIMIT makes SQLite re-prepare the statement at every call).
//!
//! Every statement the process runs is recorded through diesel's default
//! instrumentation, which is process-wide: this file holds one test, so nothing
//! else runs statements while it counts.

use std::sync::Mutex;

use diesel::connection::{Instrumentation, InstrumentationEvent, set_default_instrumentation};
use trafego_proto::cache::*;
use trafego_tests::*;

/// The SQL of every statement started since the last [`take_sql`].
static SQL: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn recorder() -> Option<Box<dyn Instrumentation>> {
    Some(Box::new(|event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            SQL.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(query.to_string());
        }
    }))
}

/// The statements recorded since the last call, without r2d2's check-out
/// pings (`-- SELECT 1;`), which touch no table.
fn take_sql() -> Vec<String> {
    std::mem::take(&mut *SQL.lock().unwrap_or_else(|e| e.into_inner()))
        .into_iter()
        .filter(|s| s.contains("FROM") || s.contains("UPDATE") || s.contains("INSERT"))
        .collect()
}

#[tokio::test]
async fn reads_are_one_query_and_never_read_the_cache_state_row() {
    init_test_logging();
    set_default_instrumentation(recorder).unwrap();
    let h = start_cache(&[]).await;
    let mut c = cache_client(&h).await;
    // The start-up refresh, joined (or run) so the cache is filled.
    c.refresh_cache(RefreshCacheRequest {
        force: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let created = c
        .create_record(CreateRecordRequest {
            record: Some(RecordInput {
                r#type: "A".into(),
                name: "www.example.com".into(),
                content: "192.0.2.10".into(),
                ttl: 300,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let id = created.record.unwrap().record_id;
    assert!(
        !take_sql().is_empty(),
        "the instrumentation sees the service's statements"
    );

    for _ in 0..10 {
        let r = c
            .get_record(GetRecordRequest {
                record_id: id.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.record.unwrap().content, "192.0.2.10");
    }
    let sql = take_sql();
    assert_eq!(sql.len(), 10, "one statement per GetRecord: {sql:#?}");
    for s in &sql {
        assert!(s.contains("`dns_records`"), "{s}");
        assert!(!s.contains("LIMIT"), "a point read binds no LIMIT: {s}");
    }

    for max_staleness_seconds in [0, 3600] {
        for _ in 0..10 {
            let r = c
                .list_records(ListRecordsRequest {
                    name: "www.example.com".into(),
                    max_staleness_seconds,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.records.len(), 1);
            // The kept state followed the write-through's commit.
            assert_eq!(r.generation, created.generation);
            assert!(r.last_refreshed.is_some());
        }
    }
    let sql = take_sql();
    assert_eq!(sql.len(), 20, "one statement per ListRecords: {sql:#?}");
    assert!(sql.iter().all(|s| !s.contains("cache_state")), "{sql:#?}");

    for _ in 0..5 {
        let s = c
            .get_cache_status(GetCacheStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(s.generation, created.generation);
        assert!(s.last_error.is_empty() && !s.stale);
        // The zone file's NS record and the one created.
        assert_eq!(s.record_count, 2);
    }
    let sql = take_sql();
    assert_eq!(sql.len(), 5, "one count per GetCacheStatus: {sql:#?}");
    assert!(sql.iter().all(|s| !s.contains("cache_state")), "{sql:#?}");
    h.shutdown().await.unwrap();
}
