//! Many zones per cache-service: each zone's own status, refresh and
//! staleness; zone filters of ListRecords and WatchCache; writes routed to
//! the longest matching zone (overlapping zones included), names in no zone
//! and updates across zones refused; a restart without a zone drops its rows.
//! Real cache-service on 127.0.0.1:0 against the fake Cloudflare account
//! (several zones on one endpoint) and the zone-file provider.

use tokio_stream::StreamExt;
use tonic::Code;
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::cache::*;
use trafego_tests::create_a as create;
use trafego_tests::fake_cloudflare::{FakeCloudflareAccount, FakeRecord};
use trafego_tests::*;

const TOKEN: &str = "cf-test-token-zones-0123456789";
const ZONES: [&str; 3] = ["example.com", "dev.example.com", "example.org"];

async fn account() -> FakeCloudflareAccount {
    let acct = FakeCloudflareAccount::start(TOKEN, &ZONES, |_| {})
        .await
        .unwrap();
    acct.zone("example.com")
        .insert(FakeRecord::new("A", "www.example.com", "192.0.2.1"));
    acct.zone("example.com")
        .insert(FakeRecord::new("A", "api.example.com", "192.0.2.2"));
    acct.zone("dev.example.com")
        .insert(FakeRecord::new("A", "app.dev.example.com", "192.0.2.3"));
    acct.zone("example.org")
        .insert(FakeRecord::new("TXT", "example.org", "\"hello\""));
    acct
}

async fn start(acct: &FakeCloudflareAccount, extra: &[&str]) -> ServiceHandle {
    let url = acct.base_url();
    let zones = ZONES.join(",");
    let mut args = vec![
        "--provider",
        "cloudflare",
        "--cloudflare-api-url",
        url.as_str(),
        "--cloudflare-token",
        TOKEN,
        "--zones",
        zones.as_str(),
    ];
    args.extend_from_slice(extra);
    start_cache(&args).await
}

async fn status(c: &mut CacheServiceClient<tonic::transport::Channel>) -> GetCacheStatusResponse {
    c.get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn zone<'a>(s: &'a GetCacheStatusResponse, name: &str) -> &'a ZoneStatus {
    s.zones
        .iter()
        .find(|z| z.zone == name)
        .unwrap_or_else(|| panic!("no zone {name} in {s:?}"))
}

async fn names_in(
    c: &mut CacheServiceClient<tonic::transport::Channel>,
    zone: &str,
) -> Vec<String> {
    let r = c
        .list_records(ListRecordsRequest {
            zone: zone.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    for rec in &r.records {
        assert!(zone.is_empty() || rec.zone == zone, "{rec:?}");
    }
    let mut names: Vec<String> = r.records.into_iter().map(|r| r.name).collect();
    names.sort();
    names
}

#[tokio::test]
async fn every_zone_has_its_own_status_and_the_filters_keep_to_their_zone() {
    let acct = account().await;
    let cache = start(&acct, &[]).await;
    let mut c = cache_client(&cache).await;
    let r = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.total, 4, "{r:?}");
    assert_eq!(r.zones.len(), 3, "{r:?}");
    // Zone ids were looked up by name, once per zone.
    assert_eq!(acct.zone_lookups(), 3);

    let s = status(&mut c).await;
    assert_eq!(s.zone, "dev.example.com,example.com,example.org");
    assert_eq!(s.record_count, 4);
    assert!(!s.stale && s.last_error.is_empty(), "{s:?}");
    assert_eq!(zone(&s, "example.com").record_count, 2);
    assert_eq!(zone(&s, "dev.example.com").record_count, 1);
    assert_eq!(zone(&s, "example.org").record_count, 1);
    for z in &s.zones {
        assert!(
            !z.stale && z.last_refreshed.is_some() && z.last_attempt.is_some(),
            "{z:?}"
        );
        assert!(z.generation > 0 && z.generation <= s.generation, "{z:?}");
    }

    assert_eq!(
        names_in(&mut c, "example.com").await,
        ["api.example.com", "www.example.com"]
    );
    assert_eq!(
        names_in(&mut c, "dev.example.com").await,
        ["app.dev.example.com"]
    );
    assert_eq!(names_in(&mut c, "").await.len(), 4);
    let e = c
        .list_records(ListRecordsRequest {
            zone: "example.net".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("zone")
            && e.message()
                .contains("dev.example.com, example.com, example.org"),
        "{e:?}"
    );

    // A watcher of one zone sees that zone's events (and no other's).
    let mut watch = c
        .watch_cache(WatchCacheRequest {
            from_generation: s.generation,
            zone: "example.org".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let applied = c
        .apply_changes(ApplyChangesRequest {
            changes: vec![
                create("one.example.com", "192.0.2.10"),
                create("two.example.org", "192.0.2.11"),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(applied.succeeded, 2, "{applied:?}");
    let ev = watch.next().await.unwrap().unwrap();
    assert_eq!(ev.zone, "example.org", "{ev:?}");
    assert_eq!(ev.record.as_ref().unwrap().name, "two.example.org");
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        zone: "example.com".into(),
    })
    .await
    .unwrap();
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        zone: "example.org".into(),
    })
    .await
    .unwrap();
    let ev = watch.next().await.unwrap().unwrap();
    assert_eq!(
        (ev.kind, ev.zone.as_str()),
        (CacheEventKind::Refreshed as i32, "example.org"),
        "the refresh of example.com is not sent: {ev:?}"
    );
    cache.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_zone_whose_listing_fails_keeps_its_snapshot_and_alone_is_stale() {
    let acct = account().await;
    let cache = start(&acct, &[]).await;
    let mut c = cache_client(&cache).await;
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let before = status(&mut c).await;
    // Every zone changes at the provider; then dev.example.com's listing fails.
    acct.zone("example.com")
        .insert(FakeRecord::new("A", "new.example.com", "192.0.2.20"));
    acct.zone("dev.example.com")
        .insert(FakeRecord::new("A", "new.dev.example.com", "192.0.2.21"));
    acct.zone("example.org")
        .insert(FakeRecord::new("A", "new.example.org", "192.0.2.22"));
    acct.zone("dev.example.com").fail_list_page(1, 500);
    let e = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().starts_with("zone dev.example.com: "), "{e:?}");

    let s = status(&mut c).await;
    assert!(s.stale, "{s:?}");
    assert!(s.last_error.starts_with("zone dev.example.com: "), "{s:?}");
    let dev = zone(&s, "dev.example.com");
    assert!(dev.stale && !dev.last_error.is_empty(), "{dev:?}");
    assert_eq!(
        dev.generation,
        zone(&before, "dev.example.com").generation,
        "its snapshot was not touched"
    );
    for z in ["example.com", "example.org"] {
        let st = zone(&s, z);
        assert!(!st.stale && st.last_error.is_empty(), "{st:?}");
        assert_eq!(st.record_count, zone(&before, z).record_count + 1, "{st:?}");
    }
    // The failing zone's old snapshot is still served.
    assert_eq!(
        names_in(&mut c, "dev.example.com").await,
        ["app.dev.example.com"]
    );
    assert!(
        names_in(&mut c, "example.org")
            .await
            .contains(&"new.example.org".to_string())
    );
    // One zone refreshes alone; the failing one recovers on its own.
    acct.zone("dev.example.com").clear_faults();
    let r = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            zone: "dev.example.com".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.added, r.total, r.zones.len()), (1, 2, 1), "{r:?}");
    let s = status(&mut c).await;
    assert!(!s.stale && s.last_error.is_empty(), "{s:?}");
    cache.shutdown().await.unwrap();
}

#[tokio::test]
async fn writes_go_to_the_longest_zone_and_a_name_in_no_zone_is_refused_alone() {
    let acct = account().await;
    let cache = start(&acct, &[]).await;
    let mut c = cache_client(&cache).await;
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    acct.reset_stats();
    let r = c
        .apply_changes(ApplyChangesRequest {
            changes: vec![
                create("a.example.com", "192.0.2.30"),
                create("b.dev.example.com", "192.0.2.31"),
                create("x.example.net", "192.0.2.32"),
                create("c.example.org", "192.0.2.33"),
                create("d.example.com", "192.0.2.34"),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.succeeded, r.failed), (4, 1), "{r:?}");
    let idx: Vec<u32> = r.results.iter().map(|x| x.index).collect();
    assert_eq!(idx, [0, 1, 2, 3, 4], "results in request order");
    let refused = &r.results[2];
    assert_eq!(refused.code, Code::InvalidArgument as i32, "{refused:?}");
    assert!(
        refused.message.contains("changes[2].create.name")
            && refused
                .message
                .contains("dev.example.com, example.com, example.org"),
        "{refused:?}"
    );
    let zone_of = |i: usize| r.results[i].record.as_ref().unwrap().zone.clone();
    assert_eq!(zone_of(0), "example.com");
    assert_eq!(zone_of(1), "dev.example.com", "the longest zone takes it");
    assert_eq!(zone_of(3), "example.org");
    let at = |z: &str, name: &str| acct.zone(z).records().iter().any(|r| r.name == name);
    assert!(at("example.com", "a.example.com") && at("example.com", "d.example.com"));
    assert!(at("dev.example.com", "b.dev.example.com"));
    assert!(!at("example.com", "b.dev.example.com"));
    assert!(at("example.org", "c.example.org"));
    // Each zone's part went to that zone in one request (a batch, or the
    // single-record call for a part of one change).
    assert_eq!(acct.zone("example.com").stats().batch, 1);
    assert_eq!(acct.zone("example.com").stats().batch_ops, 2);
    for z in ["dev.example.com", "example.org"] {
        let st = acct.zone(z).stats();
        assert_eq!(st.batch + st.create, 1, "{z}: {st:?}");
    }

    // A record id is found across zones.
    let id = r.results[1].record_id.clone();
    let got = c
        .get_record(GetRecordRequest {
            record_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .record
        .unwrap();
    assert_eq!(
        (got.zone.as_str(), got.name.as_str()),
        ("dev.example.com", "b.dev.example.com")
    );

    // An update may not move a record to another zone.
    let e = c
        .update_record(UpdateRecordRequest {
            record_id: id.clone(),
            record: Some(RecordInput {
                r#type: "A".into(),
                name: "b.example.org".into(),
                content: "192.0.2.31".into(),
                ttl: 300,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("another zone"), "{e:?}");
    assert!(at("dev.example.com", "b.dev.example.com"));
    assert!(!at("example.org", "b.example.org"));
    // A single create of a name in no zone is refused, naming the zones.
    let e = c
        .create_record(CreateRecordRequest {
            record: Some(RecordInput {
                r#type: "A".into(),
                name: "www.example.net".into(),
                content: "192.0.2.40".into(),
                ttl: 300,
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("record.name") && e.message().contains("example.org"),
        "{e:?}"
    );
    // An update staying in its zone, and a delete, go to the record's zone.
    let r = c
        .apply_changes(ApplyChangesRequest {
            changes: vec![
                Change {
                    kind: Some(change::Kind::Update(UpdateChange {
                        record_id: id.clone(),
                        record: Some(RecordInput {
                            r#type: "A".into(),
                            name: "b.dev.example.com".into(),
                            content: "192.0.2.99".into(),
                            ttl: 300,
                            ..Default::default()
                        }),
                    })),
                    change_id: "zones-update-1".into(),
                    group: String::new(),
                },
                Change {
                    kind: Some(change::Kind::Delete(DeleteChange {
                        record_id: r.results[3].record_id.clone(),
                    })),
                    change_id: "zones-delete-1".into(),
                    group: String::new(),
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.succeeded, 2, "{r:?}");
    assert_eq!(
        acct.zone("dev.example.com").get(&id).unwrap().content,
        "192.0.2.99"
    );
    assert!(!at("example.org", "c.example.org"));
    cache.shutdown().await.unwrap();
}

#[tokio::test]
async fn zone_files_one_per_zone_and_a_restart_without_a_zone_drops_its_rows() {
    let mut first = start_cache(&["--zones", "a.test,b.test,sub.a.test"]).await;
    let dir = first.dir.clone();
    let tmp = first.keep_dir();
    let mut c = cache_client(&first).await;
    let r = c
        .apply_changes(ApplyChangesRequest {
            changes: vec![
                create("www.a.test", "192.0.2.1"),
                create("www.b.test", "192.0.2.2"),
                create("x.sub.a.test", "192.0.2.3"),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.succeeded, 3, "{r:?}");
    let file = |z: &str| std::fs::read_to_string(dir.join(format!("{z}.zone"))).unwrap();
    assert!(file("a.test").contains("www"), "{}", file("a.test"));
    assert!(!file("a.test").contains("x.sub"), "{}", file("a.test"));
    assert!(file("sub.a.test").contains("x "), "{}", file("sub.a.test"));
    assert!(file("b.test").contains("www"));
    let s = status(&mut c).await;
    let b_rows = zone(&s, "b.test").record_count;
    assert!(b_rows >= 1, "{s:?}");
    drop(c);
    first.shutdown().await.unwrap();

    // Restarted without b.test: its rows are gone, the others stay.
    let again = start_cache_in(&dir, &["--zones", "a.test,sub.a.test"]).await;
    let mut c = cache_client(&again).await;
    let s = status(&mut c).await;
    assert_eq!(s.zone, "a.test,sub.a.test");
    assert_eq!(s.zones.len(), 2);
    let all = names_in(&mut c, "").await;
    assert!(all.iter().all(|n| !n.ends_with("b.test")), "{all:?}");
    assert!(all.contains(&"www.a.test".to_string()), "{all:?}");
    again.shutdown().await.unwrap();
    drop(tmp);
}
