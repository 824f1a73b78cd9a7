//! Unit tests of the PowerDNS provider's pure parts: content written the way
//! PowerDNS wants reads back as exactly what the zone file provider stores,
//! the API URL forms, and a zone answer read into the snapshot. The wire
//! behaviour against a real `pdns_server` is tested in
//! `tests/tests/powerdns_provider.rs` and the conformance suite.

use trafego_proto::validate::{Hostname, RecordSpec, RecordType, ValidRecordInput};

use super::list::parse_zone;
use super::wire::{from_wire, to_wire};
use super::{PowerDnsConfig, PowerDnsProvider};
use crate::provider::zonefile::{ZoneFileConfig, ZoneFileProvider};
use crate::provider::{DnsProvider, WriteOp, derived_id};

fn zone() -> Hostname {
    Hostname::parse("zone", "example.com").unwrap()
}

fn spec(rtype: &str, name: &str, content: &str, priority: Option<u32>) -> ValidRecordInput {
    ValidRecordInput {
        spec: RecordSpec::new("", rtype, name, content, 300, false, priority).unwrap(),
        comment: String::new(),
    }
}

/// Whatever the zone file provider stores for a record, PowerDNS's form of
/// it reads back to the same content, priority and id.
#[tokio::test]
async fn contents_round_trip_as_the_zone_file_stores_them() {
    let dir = tempfile::tempdir().unwrap();
    let zf =
        ZoneFileProvider::open(ZoneFileConfig::new(dir.path().join("z.zone"), zone())).unwrap();
    let long = format!("{}é{}", "x".repeat(254), "y".repeat(400));
    let inputs = vec![
        spec("A", "a.example.com", "192.0.2.1", None),
        spec("AAAA", "aaaa.example.com", "2001:DB8::1", None),
        spec("CNAME", "c.example.com", "Target.Example.NET.", None),
        spec("NS", "sub.example.com", "ns1.example.net", None),
        spec("MX", "mx.example.com", "mail.example.net", Some(10)),
        spec("MX", "nomail.example.com", ".", Some(0)),
        spec(
            "SRV",
            "_sip._tcp.example.com",
            "5 5060 sip.example.net",
            Some(1),
        ),
        spec("CAA", "caa.example.com", "0 issuewild \"pki.goog\"", None),
        spec(
            "TXT",
            "t1.example.com",
            "v=spf1 include:_spf.example.net -all",
            None,
        ),
        spec(
            "TXT",
            "t2.example.com",
            "quote \" and backslash \\ and café",
            None,
        ),
        spec("TXT", "t3.example.com", &long, None),
        spec("A", "*.wild.example.com", "192.0.2.2", None),
        spec("A", "my_host.example.com", "192.0.2.3", None),
    ];
    let (results, _) = zf
        .apply(inputs.iter().cloned().map(WriteOp::Create).collect())
        .await;
    for (input, stored) in inputs.iter().zip(results) {
        let stored = stored.unwrap().unwrap();
        let s = &input.spec;
        let wire = to_wire(s.rtype, &s.content, s.priority);
        let (content, priority) = from_wire(s.rtype.as_str(), &wire);
        assert_eq!(content, stored.content, "{} {wire}", s.rtype);
        assert_eq!(priority, stored.priority, "{} {wire}", s.rtype);
        assert_eq!(
            derived_id(&stored.rtype, &stored.name, &content),
            stored.id,
            "{}",
            s.rtype
        );
    }
}

#[test]
fn the_zone_url_is_built_from_either_url_form() {
    for (url, want) in [
        (
            "http://127.0.0.1:8081",
            "http://127.0.0.1:8081/api/v1/servers/localhost/zones/example.com.",
        ),
        (
            "http://127.0.0.1:8081/",
            "http://127.0.0.1:8081/api/v1/servers/localhost/zones/example.com.",
        ),
        (
            "https://pdns.example.net/api/v1",
            "https://pdns.example.net/api/v1/servers/localhost/zones/example.com.",
        ),
    ] {
        let p = PowerDnsProvider::new(PowerDnsConfig::new(url, "k", zone())).unwrap();
        assert_eq!(p.zone_url.as_str(), want, "{url}");
    }
    let mut cfg = PowerDnsConfig::new("http://127.0.0.1:8081", "k", zone());
    cfg.server_id = "a/b".into();
    let p = PowerDnsProvider::new(cfg).unwrap();
    assert!(
        p.zone_url.path().contains("/servers/a%2Fb/"),
        "{}",
        p.zone_url
    );
    let e = PowerDnsProvider::new(PowerDnsConfig::new("ftp://x", "k", zone())).unwrap_err();
    assert!(e.to_string().contains("http"), "{e}");
    let e = PowerDnsProvider::new(PowerDnsConfig::new("http://x", "", zone())).unwrap_err();
    assert!(e.to_string().contains("no API token"), "{e}");
    let dbg = format!(
        "{:?}",
        PowerDnsProvider::new(PowerDnsConfig::new("http://x", "sekrit-key", zone())).unwrap()
    );
    assert!(!dbg.contains("sekrit-key"), "{dbg}");
}

#[test]
fn a_zone_answer_is_read_into_rrsets() {
    let body = br#"{"name": "example.com.", "rrsets": [
        {"name": "example.com.", "type": "SOA", "ttl": 3600, "records": [{"content": "a. b. 1 2 3 4 5", "disabled": false}], "comments": []},
        {"name": "WWW.example.com.", "type": "a", "ttl": 60, "records": [
            {"content": "192.0.2.1", "disabled": false},
            {"content": "192.0.2.9", "disabled": true}], "comments": [{"content": "by hand", "account": "", "modified_at": 1}]},
        {"name": "mx.example.com.", "type": "MX", "ttl": 0, "records": [], "comments": [{"content": "orphan comment"}]}
    ]}"#;
    let sets = parse_zone(body, "GET", "k", None).unwrap();
    assert_eq!(sets.len(), 1, "no SOA, no comment-only entry: {sets:?}");
    let key = ("www.example.com".to_string(), "A".to_string());
    let set = &sets[&key];
    assert_eq!(set.ttl, 60);
    assert_eq!(set.records.len(), 1);
    assert_eq!(
        set.records[0].id,
        derived_id("A", "www.example.com", "192.0.2.1")
    );
    assert_eq!(set.disabled, ["192.0.2.9"]);
    assert_eq!(set.comment, "by hand");
    let listed: Vec<_> = set.provider_records(&key).collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].ttl, 60);
    assert_eq!(listed[0].comment, "by hand");
    assert!(parse_zone(b"{not json", "GET", "k", None).is_err());
    let only = parse_zone(body, "GET", "k", Some("mx.example.com")).unwrap();
    assert!(only.is_empty());
    assert!(RecordType::ALL.len() >= 8);
}
