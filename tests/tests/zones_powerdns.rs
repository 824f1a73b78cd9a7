//! Many zones on PowerDNS: one cache-service serving three zones of one real
//! `pdns_server` (`example.com`, its child zone `dev.example.com`, and
//! `example.org`): each zone listed on its own, writes routed to the longest
//! zone (the child zone's names never land in the parent), and what kdig
//! resolves comes from the zone the write went to. Needs `pdns-server`,
//! `pdns-backend-sqlite3` and `knot-dnsutils`; never skips.

use reqwest::Method;
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::cache::*;
use trafego_tests::create_a as create;
use trafego_tests::knot::dig_short;
use trafego_tests::pdns::PdnsServer;
use trafego_tests::*;

const ZONES: [&str; 3] = ["example.com", "dev.example.com", "example.org"];

/// The names of the RRsets PowerDNS holds in `zone` (trailing dots dropped).
async fn rrset_names(pdns: &PdnsServer, zone: &str) -> Vec<String> {
    let (status, body) = pdns
        .api(Method::GET, &format!("zones/{zone}."), None)
        .await
        .expect("read the zone");
    assert_eq!(status, 200, "{body}");
    body["rrsets"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .map(|n| n.trim_end_matches('.').to_string())
        .collect()
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
async fn three_zones_of_one_server_are_listed_apart_and_written_to_the_longest_zone() {
    let mut pdns = PdnsServer::start("example.com").await.expect("pdns starts");
    pdns.add_zone("dev.example.com").await.expect("child zone");
    pdns.add_zone("example.org").await.expect("second zone");
    let zones = ZONES.join(",");
    let cache = start_cache(&[
        "--provider",
        "powerdns",
        "--zones",
        zones.as_str(),
        "--pdns-api-url",
        pdns.api_url.as_str(),
        "--pdns-api-key",
        pdns.api_key.as_str(),
    ])
    .await;
    let mut c = cache_client(&cache).await;
    let r = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.zones.len(), 3, "{r:?}");

    let applied = c
        .apply_changes(ApplyChangesRequest {
            changes: vec![
                create("www.example.com", "192.0.2.1"),
                create("app.dev.example.com", "192.0.2.2"),
                create("dev.example.com", "192.0.2.3"),
                create("api.example.org", "192.0.2.4"),
                create("x.example.net", "192.0.2.5"),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((applied.succeeded, applied.failed), (4, 1), "{applied:?}");
    let zone_of = |i: usize| applied.results[i].record.as_ref().unwrap().zone.clone();
    assert_eq!(zone_of(0), "example.com");
    assert_eq!(zone_of(1), "dev.example.com", "the longest zone takes it");
    assert_eq!(zone_of(2), "dev.example.com", "a zone's apex is its own");
    assert_eq!(zone_of(3), "example.org");
    assert!(
        applied.results[4]
            .message
            .contains("changes[4].create.name"),
        "{applied:?}"
    );

    // PowerDNS holds each record in the zone it was routed to.
    let parent = rrset_names(&pdns, "example.com").await;
    let child = rrset_names(&pdns, "dev.example.com").await;
    assert!(
        parent.contains(&"www.example.com".to_string()),
        "{parent:?}"
    );
    assert!(
        !parent.iter().any(|n| n.ends_with("dev.example.com")),
        "{parent:?}"
    );
    assert!(
        child.contains(&"app.dev.example.com".to_string()),
        "{child:?}"
    );
    assert!(
        rrset_names(&pdns, "example.org")
            .await
            .contains(&"api.example.org".to_string())
    );

    // Each zone lists on its own, from a fresh listing too.
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let s = c
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!s.stale && s.zones.len() == 3, "{s:?}");
    let dev = names_in(&mut c, "dev.example.com").await;
    assert!(
        dev.contains(&"app.dev.example.com".to_string())
            && dev.contains(&"dev.example.com".to_string()),
        "{dev:?}"
    );
    let com = names_in(&mut c, "example.com").await;
    assert!(com.contains(&"www.example.com".to_string()), "{com:?}");
    assert!(
        !com.iter().any(|n| n.ends_with("dev.example.com")),
        "{com:?}"
    );
    assert!(
        names_in(&mut c, "example.org")
            .await
            .contains(&"api.example.org".to_string())
    );

    // The server answers each name from its zone.
    assert_eq!(
        dig_short(pdns.dns_port, "www.example.com", "A").await,
        ["192.0.2.1"]
    );
    assert_eq!(
        dig_short(pdns.dns_port, "app.dev.example.com", "A").await,
        ["192.0.2.2"]
    );
    assert_eq!(
        dig_short(pdns.dns_port, "dev.example.com", "A").await,
        ["192.0.2.3"]
    );
    assert_eq!(
        dig_short(pdns.dns_port, "api.example.org", "A").await,
        ["192.0.2.4"]
    );
    let soa = dig_short(pdns.dns_port, "dev.example.com", "SOA").await;
    assert!(
        soa.first()
            .is_some_and(|s| s.starts_with("ns1.dev.example.com.")),
        "the child zone is authoritative for its names: {soa:?}"
    );
    cache.shutdown().await.unwrap();
}
