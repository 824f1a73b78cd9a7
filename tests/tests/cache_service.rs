//! cache-service end to end against the fake Cloudflare server and the zone
//! file: refresh whole or not at all, write-through, error codes, the change
//! stream, shared refreshes and staleness.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use trafego_tests::create_a as create;

use tokio_stream::StreamExt;
use trafego_common::clock::ManualClock;
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::cache::*;
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions, FakeRecord};
use trafego_tests::*;

const TOKEN: &str = "cf-test-token-abcdef0123456789";

async fn fake_with(n: usize) -> FakeCloudflare {
    let fake = FakeCloudflare::start(FakeOptions::new(TOKEN, "example.com"))
        .await
        .unwrap();
    fake.insert_many(
        (0..n)
            .map(|i| {
                FakeRecord::new(
                    "A",
                    &format!("host-{i:06}.example.com"),
                    &format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
                )
            })
            .collect(),
    );
    fake
}

async fn list_all(
    c: &mut CacheServiceClient<tonic::transport::Channel>,
    page_size: u32,
) -> Vec<DnsRecord> {
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
        out.extend(page.records);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

#[tokio::test]
async fn a_12000_record_zone_is_read_whole_and_pages_stably() {
    let fake = fake_with(12_000).await;
    let cache = start_cache_cloudflare(&fake, TOKEN, &[]).await;
    let mut c = cache_client(&cache).await;
    fake.reset_stats();
    let r = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.total, 12_000);
    assert_eq!(fake.stats().list, 3, "5000 per page");
    let all = list_all(&mut c, 1000).await;
    assert_eq!(all.len(), 12_000);
    let ids: HashSet<_> = all.iter().map(|r| r.record_id.clone()).collect();
    assert_eq!(ids.len(), 12_000, "no record twice");
    let names: Vec<_> = all.iter().map(|r| r.name.clone()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "ordered by name");
    // Filters.
    let one = c
        .list_records(ListRecordsRequest {
            name: "HOST-000042.example.com.".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.records.len(), 1);
    assert_eq!(one.records[0].content, "10.0.0.42");
    let none = c
        .list_records(ListRecordsRequest {
            r#type: "CNAME".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(none.records.is_empty());
    let suffix = c
        .list_records(ListRecordsRequest {
            name_suffix: "example.com".into(),
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(suffix.records.len(), 10);
    assert!(!suffix.next_page_token.is_empty());
    let other = c
        .list_records(ListRecordsRequest {
            name_suffix: "xample.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        other.records.is_empty(),
        "a suffix matches whole labels only"
    );
    // An unchanged refresh writes nothing.
    let r = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.added, r.changed, r.removed, r.total), (0, 0, 0, 12_000));
    cache.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failed_page_keeps_the_old_snapshot_and_shows_the_error() {
    let fake = fake_with(12_000).await;
    let cache = start_cache_cloudflare(&fake, TOKEN, &[]).await;
    let mut c = cache_client(&cache).await;
    let first = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The provider changes, then page 3 starts failing.
    let gone = fake.records()[0].id.clone();
    fake.remove(&gone);
    fake.insert(FakeRecord::new("A", "new.example.com", "192.0.2.99"));
    fake.fail_list_page(3, 502);
    let err = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let status = c
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.stale);
    assert!(!status.last_error.is_empty());
    assert_eq!(status.record_count, 12_000);
    assert_eq!(status.generation, first.generation, "no partial write");
    // The old snapshot is whole: the removed record is still there, the new one is not.
    c.get_record(GetRecordRequest {
        record_id: gone.clone(),
    })
    .await
    .unwrap();
    let new = c
        .list_records(ListRecordsRequest {
            name: "new.example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(new.records.is_empty());
    // Health stays SERVING while the provider fails.
    let mut health = tonic_health::pb::health_client::HealthClient::new(cache.channel().await);
    let h = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        h.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    // Once the provider recovers, the refresh applies and clears the error.
    fake.clear_faults();
    let r = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.added, r.removed, r.total), (1, 1, 12_000));
    let status = c
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!status.stale);
    assert!(status.last_error.is_empty());
    cache.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_slow_provider_times_the_refresh_out_and_rolls_back() {
    let fake = fake_with(10).await;
    let cache = start_cache_cloudflare(&fake, TOKEN, &["--refresh-timeout", "300ms"]).await;
    let mut c = cache_client(&cache).await;
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    fake.insert(FakeRecord::new("A", "late.example.com", "192.0.2.7"));
    fake.set_delay(Duration::from_secs(2));
    let err = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    assert!(err.message().contains("timed out"), "{}", err.message());
    fake.set_delay(Duration::ZERO);
    let status = c
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.record_count, 10);
    assert!(status.stale);
    cache.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_429_storm_is_ridden_out() {
    let fake = fake_with(100).await;
    let cache = start_cache_cloudflare(&fake, TOKEN, &[]).await;
    let mut c = cache_client(&cache).await;
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    fake.rate_limit_next(4, 0);
    let r = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.total, 100);
    assert!(fake.stats().rate_limited >= 4);
    cache.shutdown().await.unwrap();
}

#[tokio::test]
async fn concurrent_refreshes_share_one_listing() {
    let fake = fake_with(100).await;
    let cache = start_cache_cloudflare(&fake, TOKEN, &[]).await;
    let mut c = cache_client(&cache).await;
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    fake.set_delay(Duration::from_millis(300));
    fake.reset_stats();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let mut c = c.clone();
            tokio::spawn(async move {
                c.refresh_cache(RefreshCacheRequest {
                    force: true,
                    ..Default::default()
                })
                .await
            })
        })
        .collect();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    // Eight callers, at most two listings (one may have started before the others arrived).
    assert!(fake.stats().list <= 2, "{:?}", fake.stats());
    cache.shutdown().await.unwrap();
}

#[tokio::test]
async fn writes_go_through_to_the_provider_and_into_the_cache_at_once() {
    let fake = fake_with(0).await;
    let cache = start_cache_cloudflare(&fake, TOKEN, &[]).await;
    let mut c = cache_client(&cache).await;
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    fake.reset_stats();
    let rec = c
        .create_record(CreateRecordRequest {
            record: Some(RecordInput {
                r#type: "CNAME".into(),
                name: "app.example.com".into(),
                content: "example.com".into(),
                ttl: 1,
                proxied: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    let at_provider = fake.get(&rec.record_id).expect("created at the provider");
    assert_eq!(
        at_provider.comment.as_deref(),
        Some("Managed by TrafegoDNS")
    );
    let cached = c
        .get_record(GetRecordRequest {
            record_id: rec.record_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert_eq!(cached.content, "example.com");
    assert!(cached.proxied);
    assert_eq!(fake.stats().list, 0, "no refresh was needed");

    let updated = c
        .update_record(UpdateRecordRequest {
            record_id: rec.record_id.clone(),
            record: Some(RecordInput {
                r#type: "CNAME".into(),
                name: "app.example.com".into(),
                content: "other.example.com".into(),
                ttl: 300,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert_eq!(
        fake.get(&updated.record_id).unwrap().content,
        "other.example.com"
    );

    // ALREADY_EXISTS for a clash, NOT_FOUND for an unknown id.
    let err = c
        .create_record(CreateRecordRequest {
            record: Some(RecordInput {
                r#type: "A".into(),
                name: "app.example.com".into(),
                content: "192.0.2.1".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err:?}");
    let err = c
        .delete_record(DeleteRecordRequest {
            record_id: "0123456789abcdef0123456789abcdef".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    c.delete_record(DeleteRecordRequest {
        record_id: updated.record_id.clone(),
    })
    .await
    .unwrap();
    assert!(fake.get(&updated.record_id).is_none());
    let err = c
        .get_record(GetRecordRequest {
            record_id: updated.record_id,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    cache.shutdown().await.unwrap();
}

#[tokio::test]
async fn batches_use_the_batch_endpoint_and_fall_back_to_single_calls() {
    let fake = fake_with(0).await;
    let cache = start_cache_cloudflare(&fake, TOKEN, &[]).await;
    let mut c = cache_client(&cache).await;
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    fake.reset_stats();
    let changes: Vec<_> = (0..450)
        .map(|i| create(&format!("b{i}.example.com"), "192.0.2.1"))
        .collect();
    let r = c
        .apply_changes(ApplyChangesRequest { changes })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.succeeded, r.failed), (450, 0));
    assert_eq!(fake.stats().batch, 3, "{:?}", fake.stats());
    assert_eq!(fake.count(), 450);

    // One change the provider refuses makes the batch fail whole; the service
    // retries one by one and every change gets its own result.
    fake.fail_writes_for_name("bad.example.com", 9005, 400);
    fake.reset_stats();
    let changes = vec![
        create("x1.example.com", "192.0.2.1"),
        create("bad.example.com", "192.0.2.1"),
        create("x2.example.com", "192.0.2.1"),
    ];
    let r = c
        .apply_changes(ApplyChangesRequest { changes })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.succeeded, r.failed), (2, 1));
    assert_eq!(r.results[1].code, tonic::Code::InvalidArgument as i32);
    assert!(r.results[0].record.is_some() && r.results[2].record.is_some());
    assert!(
        fake.stats().batch >= 1 && fake.stats().create >= 2,
        "{:?}",
        fake.stats()
    );
    let cached = list_all(&mut c, 1000).await;
    assert_eq!(cached.len(), 452);
    cache.shutdown().await.unwrap();
}

#[tokio::test]
async fn provider_errors_map_to_grpc_codes_without_the_token() {
    let fake = fake_with(1).await;
    // A rejected token.
    let bad = start_cache_cloudflare(&fake, "wrong-token-value-42", &[]).await;
    let mut c = cache_client(&bad).await;
    let err = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert!(
        err.message().contains("refused the credentials"),
        "{}",
        err.message()
    );
    assert!(!err.message().contains("wrong-token-value-42"));
    let status = c
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!status.last_error.contains("wrong-token-value-42"));
    bad.shutdown().await.unwrap();

    // An exhausted rate limit.
    let cache = start_cache_cloudflare(&fake, TOKEN, &[]).await;
    let mut c = cache_client(&cache).await;
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    fake.rate_limit_next(1000, 0);
    let err = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    fake.clear_faults();
    fake.rate_limit_next(0, 0);
    cache.shutdown().await.unwrap();

    // An unreachable provider.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = format!("http://{closed}/client/v4");
    let cache = start_cache(&[
        "--provider",
        "cloudflare",
        "--cloudflare-api-url",
        &dead,
        "--cloudflare-token",
        TOKEN,
        "--cloudflare-zone-id",
        "0123456789abcdef0123456789abcdef",
    ])
    .await;
    let mut c = cache_client(&cache).await;
    let err = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(!err.message().contains(TOKEN));
    cache.shutdown().await.unwrap();
}

#[tokio::test]
async fn watchers_get_events_in_generation_order_and_resync_when_behind() {
    let fake = fake_with(3).await;
    let cache = start_cache_cloudflare(&fake, TOKEN, &["--watch-buffer", "16"]).await;
    let mut c = cache_client(&cache).await;
    let first = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut stream = c
        .watch_cache(WatchCacheRequest {
            from_generation: first.generation,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let created = c
        .apply_changes(ApplyChangesRequest {
            changes: vec![create("w1.example.com", "192.0.2.1")],
        })
        .await
        .unwrap()
        .into_inner();
    let e = stream.next().await.unwrap().unwrap();
    assert_eq!(e.kind, CacheEventKind::Added as i32);
    assert_eq!(e.generation, created.generation);
    assert_eq!(e.record.unwrap().name, "w1.example.com");
    // Someone else deletes a record at the provider; the refresh reports it.
    let gone = fake.records()[0].id.clone();
    fake.remove(&gone);
    let r = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let e = stream.next().await.unwrap().unwrap();
    assert_eq!(
        (e.kind, e.record_id.as_str()),
        (CacheEventKind::Removed as i32, gone.as_str())
    );
    let e = stream.next().await.unwrap().unwrap();
    assert_eq!(
        (e.kind, e.generation),
        (CacheEventKind::Refreshed as i32, r.generation)
    );

    // A watcher starting from the past gets the backlog in order.
    let mut past = c
        .watch_cache(WatchCacheRequest {
            from_generation: first.generation,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<i32> = vec![
        past.next().await.unwrap().unwrap().kind,
        past.next().await.unwrap().unwrap().kind,
        past.next().await.unwrap().unwrap().kind,
    ];
    assert_eq!(
        kinds,
        vec![
            CacheEventKind::Added as i32,
            CacheEventKind::Removed as i32,
            CacheEventKind::Refreshed as i32
        ]
    );

    // A change bigger than the buffer: watchers are told to resync, and a
    // watcher from before it gets a resync rather than a stream with a hole.
    let changes: Vec<_> = (0..40)
        .map(|i| create(&format!("many{i}.example.com"), "192.0.2.2"))
        .collect();
    c.apply_changes(ApplyChangesRequest { changes })
        .await
        .unwrap();
    let e = stream.next().await.unwrap().unwrap();
    assert_eq!(e.kind, CacheEventKind::Resync as i32);
    let mut old = c
        .watch_cache(WatchCacheRequest {
            from_generation: first.generation,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        old.next().await.unwrap().unwrap().kind,
        CacheEventKind::Resync as i32
    );

    // Streams end cleanly at shutdown.
    cache.shutdown().await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(item) = stream.next().await {
            if item.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(end.is_ok(), "stream did not end at shutdown");
}

#[tokio::test]
async fn reads_refresh_when_the_cache_is_older_than_the_caller_allows() {
    let fake = fake_with(5).await;
    let clock = ManualClock::new(1_800_000_000_000);
    let dir = tempdir();
    let url = fake.base_url();
    let cache = start_cache_with_clock(
        dir.path(),
        &[
            "--provider",
            "cloudflare",
            "--cloudflare-api-url",
            &url,
            "--cloudflare-token",
            TOKEN,
            "--refresh-interval",
            "10m",
        ],
        Arc::new(clock.clone()),
    )
    .await;
    let mut c = cache_client(&cache).await;
    // The first read of an empty cache refreshes.
    let page = c
        .list_records(ListRecordsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.records.len(), 5);
    fake.reset_stats();
    fake.insert(FakeRecord::new("A", "fresh.example.com", "192.0.2.5"));
    // Within the caller's limit: served from the cache.
    let page = c
        .list_records(ListRecordsRequest {
            max_staleness_seconds: 60,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.records.len(), 5);
    assert_eq!(fake.stats().list, 0);
    // Older than the caller allows: refreshed first.
    clock.advance(Duration::from_secs(120));
    let page = c
        .list_records(ListRecordsRequest {
            max_staleness_seconds: 60,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.records.len(), 6);
    assert_eq!(fake.stats().list, 1);
    // Past the refresh interval the status says stale.
    let s = c
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!s.stale);
    clock.advance(Duration::from_secs(20 * 60));
    let s = c
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(s.stale);
    cache.shutdown().await.unwrap();
}

#[tokio::test]
async fn zone_file_edits_by_hand_appear_after_a_refresh() {
    let cache = start_cache(&[]).await;
    let mut c = cache_client(&cache).await;
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let path = cache.dir.join("example.com.zone");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("handmade 600 IN TXT \"written by a person\"\n");
    std::fs::write(&path, text).unwrap();
    let r = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.added, 1);
    let page = c
        .list_records(ListRecordsRequest {
            name: "handmade.example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.records[0].content, "written by a person");
    let id = page.records[0].record_id.clone();
    // Ids are stable across refreshes and restarts.
    let r = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.added, r.removed), (0, 0));
    c.get_record(GetRecordRequest { record_id: id })
        .await
        .unwrap();
    cache.shutdown().await.unwrap();
}

/// Someone deletes records while a listing reads the zone page by page: the
/// records after them shift to earlier pages. The listing notices that the
/// count does not add up, reads the zone again, and the cache ends whole.
#[tokio::test]
async fn a_zone_changing_during_the_listing_is_read_again_not_cached_short() {
    let fake = fake_with(12_000).await;
    let cache = start_cache_cloudflare(&fake, TOKEN, &[]).await;
    let mut c = cache_client(&cache).await;
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    fake.set_delay(Duration::from_millis(300));
    fake.reset_stats();
    let mut c2 = c.clone();
    let call = tokio::spawn(async move {
        c2.refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
    });
    // Pages 2 and 3 have arrived (page 1 is already answered): delete from page 1.
    while fake.stats().total < 3 {
        tokio::task::yield_now().await;
    }
    let doomed: Vec<String> = fake
        .records()
        .iter()
        .take(100)
        .map(|r| r.id.clone())
        .collect();
    for id in &doomed {
        fake.remove(id);
    }
    let r = call.await.unwrap().unwrap().into_inner();
    fake.set_delay(Duration::ZERO);
    assert_eq!(r.total, 11_900);
    assert_eq!(r.removed, 100);
    assert!(fake.stats().list >= 6, "read again: {:?}", fake.stats());
    let all = list_all(&mut c, 10_000).await;
    assert_eq!(all.len(), 11_900);
    cache.shutdown().await.unwrap();
}
