//! Many zones on Route53: one cache-service serving three hosted zones of one
//! fake account (overlapping `example.com` and `dev.example.com` included),
//! each zone's id found with ListHostedZonesByName (signed with SigV4 like
//! every request), its own status, writes routed to the longest zone, and one
//! zone failing while the others stay fresh; a name held by a public and a
//! private hosted zone is refused with the ids of both, never guessed.

use tonic::Code;
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::cache::*;
use trafego_tests::create_a as create;
use trafego_tests::fake_route53::{FakeRoute53, RecordSet, Route53Options};
use trafego_tests::*;

const AKID: &str = "AKIDZONESEXAMPLE0001";
const SECRET: &str = "route53-zones-secret-key-do-not-log-0123";
const ZONES: [&str; 3] = ["example.com", "dev.example.com", "example.org"];

/// A fake account holding the three zones (and an unrelated one sorting
/// between them), a record or two in each.
async fn account() -> FakeRoute53 {
    let mut o = Route53Options::new(AKID, SECRET, "example.com");
    o.throttle = None;
    let fake = FakeRoute53::start(o).await.expect("fake starts");
    fake.add_zone("dev.example.com");
    fake.add_zone("example.org");
    fake.add_zone("other.example.com");
    fake.zone("example.com")
        .insert(RecordSet::new("A", "www.example.com", 300, &["192.0.2.1"]));
    fake.zone("example.com")
        .insert(RecordSet::new("A", "api.example.com", 300, &["192.0.2.2"]));
    fake.zone("dev.example.com").insert(RecordSet::new(
        "A",
        "app.dev.example.com",
        300,
        &["192.0.2.3"],
    ));
    fake.zone("example.org")
        .insert(RecordSet::new("TXT", "example.org", 300, &["\"hello\""]));
    fake
}

async fn start(fake: &FakeRoute53, zones: &str) -> ServiceHandle {
    let url = fake.endpoint();
    start_cache(&[
        "--provider",
        "route53",
        "--route53-api-url",
        url.as_str(),
        "--route53-access-key",
        AKID,
        "--route53-secret-key",
        SECRET,
        "--route53-rate-limit",
        "0",
        "--zones",
        zones,
    ])
    .await
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

/// Records the fake holds in one zone (one per value, SOA and NS included).
fn held(fake: &FakeRoute53, z: &str) -> u64 {
    let n: usize = fake
        .zone(z)
        .record_sets()
        .iter()
        .map(|rs| rs.values.len().max(1))
        .sum();
    u64::try_from(n).unwrap()
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
        assert_eq!(rec.zone, zone, "{rec:?}");
    }
    r.records.into_iter().map(|r| r.name).collect()
}

#[tokio::test]
async fn three_hosted_zones_are_found_by_name_listed_written_and_fail_alone() {
    let fake = account().await;
    let cache = start(&fake, &ZONES.join(",")).await;
    let mut c = cache_client(&cache).await;
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let st = fake.stats();
    assert_eq!(st.unauthorized, 0, "every request was signed right: {st:?}");
    assert_eq!(st.zones, 3, "each zone's id looked up by name once: {st:?}");

    let s = status(&mut c).await;
    assert!(!s.stale && s.last_error.is_empty(), "{s:?}");
    for z in ZONES {
        assert_eq!(zone(&s, z).record_count, held(&fake, z), "{z}: {s:?}");
    }
    let dev = names_in(&mut c, "dev.example.com").await;
    assert!(dev.contains(&"app.dev.example.com".to_string()), "{dev:?}");
    assert!(
        !names_in(&mut c, "example.com")
            .await
            .iter()
            .any(|n| n.ends_with("dev.example.com") || n.ends_with("other.example.com")),
        "the parent zone lists only its own hosted zone"
    );

    // Writes go to the longest zone's hosted zone, one batch per zone.
    fake.reset_stats();
    let r = c
        .apply_changes(ApplyChangesRequest {
            changes: vec![
                create("a.example.com", "192.0.2.30"),
                create("b.dev.example.com", "192.0.2.31"),
                create("c.example.org", "192.0.2.32"),
                create("d.example.com", "192.0.2.33"),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.succeeded, r.failed), (4, 0), "{r:?}");
    let zone_of = |i: usize| r.results[i].record.as_ref().unwrap().zone.clone();
    assert_eq!(zone_of(1), "dev.example.com");
    assert_eq!(fake.stats().change_batches, 3, "{:?}", fake.stats());
    let at = |z: &str, name: &str| fake.zone(z).get(name, "A").is_some();
    assert!(at("example.com", "a.example.com") && at("example.com", "d.example.com"));
    assert!(at("dev.example.com", "b.dev.example.com"));
    assert!(!at("example.com", "b.dev.example.com"));
    assert!(at("example.org", "c.example.org"));

    // dev.example.com's hosted zone fails; the others refresh and stay fresh.
    let before = status(&mut c).await;
    fake.zone("example.com")
        .insert(RecordSet::new("A", "new.example.com", 300, &["192.0.2.40"]));
    fake.zone("example.org")
        .insert(RecordSet::new("A", "new.example.org", 300, &["192.0.2.41"]));
    fake.zone("dev.example.com").fail_zone(503);
    let e = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().starts_with("zone dev.example.com: "), "{e:?}");
    assert!(!e.message().contains(SECRET), "{e:?}");
    let s = status(&mut c).await;
    let d = zone(&s, "dev.example.com");
    assert!(d.stale && !d.last_error.is_empty(), "{d:?}");
    assert_eq!(d.generation, zone(&before, "dev.example.com").generation);
    for z in ["example.com", "example.org"] {
        let st = zone(&s, z);
        assert!(!st.stale && st.last_error.is_empty(), "{z}: {st:?}");
        assert_eq!(st.record_count, held(&fake, z), "{z}: {st:?}");
    }
    // A write to a fresh zone still goes through.
    let r = c
        .apply_changes(ApplyChangesRequest {
            changes: vec![create("e.example.org", "192.0.2.42")],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.succeeded, 1, "{r:?}");
    fake.clear_faults();
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        zone: "dev.example.com".into(),
    })
    .await
    .unwrap();
    assert!(!status(&mut c).await.stale);
    cache.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_zone_name_held_by_a_public_and_a_private_hosted_zone_is_refused_naming_both() {
    let fake = account().await;
    let private = fake.add_private_zone("example.org");
    let public = fake.zone("example.org").zone_id();
    assert_ne!(public, private.zone_id());
    let cache = start(&fake, &ZONES.join(",")).await;
    let mut c = cache_client(&cache).await;
    let e = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_ne!(e.code(), Code::Ok);
    let s = status(&mut c).await;
    let org = zone(&s, "example.org");
    assert!(org.stale, "{org:?}");
    let m = &org.last_error;
    assert!(
        m.contains("2 Route53 hosted zones are named example.org")
            && m.contains(&format!("{public} public"))
            && m.contains(&format!("{} private", private.zone_id()))
            && m.contains("ROUTE53_ZONE_ID"),
        "{m}"
    );
    assert_eq!(
        fake.zone("example.org").stats().change_batches,
        0,
        "nothing was written"
    );
    for z in ["example.com", "dev.example.com"] {
        assert!(!zone(&s, z).stale, "{z}: {s:?}");
    }
    cache.shutdown().await.unwrap();
}
