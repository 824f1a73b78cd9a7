//! Unit tests of the RFC 2136 provider's parts that need no server: its
//! settings (errors name the setting, never the secret), the prerequisites
//! each kind of change carries, and the wire form of records.

use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType as WireType};
use trafego_proto::validate::{Hostname, RecordSpec, ValidRecordInput};

use super::*;
use crate::config::Config;
use hickory_proto::rr::rdata::tsig::TsigAlgorithm;

const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXh5eno=";

fn zone() -> Hostname {
    Hostname::parse("zone", "example.com").unwrap()
}

fn provider() -> Rfc2136Provider {
    let secret = TsigSecret::from_base64("RFC2136_TSIG_SECRET", SECRET).unwrap();
    Rfc2136Provider::new(Rfc2136Config::new(
        "127.0.0.1:1",
        zone(),
        "trafego-key",
        secret,
    ))
    .unwrap()
}

fn a(name: &str, addr: [u8; 4]) -> Record {
    Record::from_rdata(
        wire::absolute_name(name).unwrap(),
        300,
        RData::A(A::new(addr[0], addr[1], addr[2], addr[3])),
    )
}

fn seen(record: Record) -> Seen {
    Seen {
        record: wire::to_provider(&record),
        wire: record,
    }
}

fn input(rtype: &str, name: &str, content: &str) -> ValidRecordInput {
    ValidRecordInput {
        spec: RecordSpec::new("record", rtype, name, content, 300, false, None).unwrap(),
        comment: String::new(),
    }
}

/// (class, type, rdata empty) of each record, for comparing sections.
fn shape(records: &[Record]) -> Vec<(DNSClass, WireType, bool, u32)> {
    records
        .iter()
        .map(|r| {
            (
                r.dns_class,
                r.record_type(),
                matches!(r.data, RData::Update0(_)),
                r.ttl,
            )
        })
        .collect()
}

#[test]
fn secrets_decode_and_errors_name_the_setting_never_the_value() {
    let s = TsigSecret::from_base64("RFC2136_TSIG_SECRET", SECRET).unwrap();
    assert_eq!(s.0, b"secret-secret-secret-secret-xyzz".to_vec());
    assert_eq!(format!("{s:?}"), "TsigSecret(<redacted>)");
    let bad = "not base64 at all!!";
    let e = TsigSecret::from_base64("RFC2136_TSIG_SECRET_FILE", bad).unwrap_err();
    assert!(e.contains("RFC2136_TSIG_SECRET_FILE"), "{e}");
    assert!(!e.contains(bad) && !e.contains("base64 at"), "{e}");
    let e = TsigSecret::from_base64("RFC2136_TSIG_SECRET", "").unwrap_err();
    assert!(e.contains("empty"), "{e}");
}

#[test]
fn algorithms_are_the_hmac_sha2_family() {
    assert_eq!(
        parse_algorithm("A", "hmac-sha256").unwrap(),
        TsigAlgorithm::HmacSha256
    );
    assert_eq!(
        parse_algorithm("A", "HMAC-SHA384.").unwrap(),
        TsigAlgorithm::HmacSha384
    );
    assert_eq!(
        parse_algorithm("A", " hmac-sha512 ").unwrap(),
        TsigAlgorithm::HmacSha512
    );
    let e = parse_algorithm("RFC2136_TSIG_ALGORITHM", "hmac-md5").unwrap_err();
    assert!(
        e.contains("RFC2136_TSIG_ALGORITHM") && e.contains("hmac-sha512"),
        "{e}"
    );
}

#[test]
fn settings_name_what_is_missing_and_hide_the_secret() {
    let base = [
        "--provider",
        "rfc2136",
        "--zone",
        "example.com",
        "--rfc2136-server",
        "127.0.0.1:5353",
    ];
    let err = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend_from_slice(extra);
        Config::for_test(&args)
            .provider()
            .err()
            .expect("refused")
            .to_string()
    };
    let e = err(&[]);
    assert!(e.contains("RFC2136_TSIG_KEY_NAME"), "{e}");
    let e = err(&["--rfc2136-tsig-key-name", "k"]);
    assert!(e.contains("RFC2136_TSIG_SECRET"), "{e}");
    let e = err(&[
        "--rfc2136-tsig-key-name",
        "k",
        "--rfc2136-tsig-secret",
        "zz%%not-base64",
    ]);
    assert!(e.contains("RFC2136_TSIG_SECRET is not base64"), "{e}");
    assert!(!e.contains("zz%%"), "{e}");
    let e = err(&[
        "--rfc2136-tsig-key-name",
        "k",
        "--rfc2136-tsig-secret",
        SECRET,
        "--rfc2136-tsig-algorithm",
        "hmac-sha1",
    ]);
    assert!(e.contains("RFC2136_TSIG_ALGORITHM"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret");
    std::fs::write(&file, "!!!\n").unwrap();
    let path = file.display().to_string();
    let e = err(&[
        "--rfc2136-tsig-key-name",
        "k",
        "--rfc2136-tsig-secret-file",
        &path,
    ]);
    assert!(e.contains("RFC2136_TSIG_SECRET_FILE"), "{e}");

    std::fs::write(&file, format!("{SECRET}\n")).unwrap();
    let mut args = base.to_vec();
    args.extend_from_slice(&[
        "--rfc2136-tsig-key-name",
        "k",
        "--rfc2136-tsig-secret",
        SECRET,
    ]);
    let cfg = Config::for_test(&args);
    assert!(!format!("{cfg:?}").contains(SECRET));
    let p = cfg.provider().expect("built");
    assert_eq!(p.name(), "rfc2136");
    assert!(!p.capabilities().proxied);
    assert!(!p.capabilities().cname_at_apex);
    assert_eq!(p.capabilities().batch_size, 100);
}

/// A create into an absent RRset requires it (and a CNAME at the name) to
/// be absent; into an existing one, the RRset exactly as last seen.
#[test]
fn creates_carry_the_rrset_as_last_seen() {
    let p = provider();
    let plan = p
        .plan(&WriteOp::Create(input("A", "new.example.com", "192.0.2.1")))
        .unwrap();
    assert_eq!(
        shape(&plan.prereqs),
        [
            (DNSClass::NONE, WireType::CNAME, true, 0),
            (DNSClass::NONE, WireType::A, true, 0),
        ]
    );
    assert_eq!(
        shape(&plan.updates),
        [(DNSClass::IN, WireType::A, false, 300)]
    );

    *p.index() = Index::of(vec![
        seen(a("www.example.com", [192, 0, 2, 1])),
        seen(a("www.example.com", [192, 0, 2, 2])),
    ]);
    let plan = p
        .plan(&WriteOp::Create(input("A", "www.example.com", "192.0.2.3")))
        .unwrap();
    assert_eq!(
        shape(&plan.prereqs),
        [
            (DNSClass::NONE, WireType::CNAME, true, 0),
            (DNSClass::IN, WireType::A, false, 0),
            (DNSClass::IN, WireType::A, false, 0),
        ]
    );
    // Already there: refused before anything is sent.
    let e = p
        .plan(&WriteOp::Create(input("A", "www.example.com", "192.0.2.2")))
        .unwrap_err();
    assert!(matches!(e, ProviderError::Conflict(_)), "{e:?}");
    // A CNAME needs its name unused.
    let plan = p
        .plan(&WriteOp::Create(input(
            "CNAME",
            "alias.example.com",
            "www.example.com",
        )))
        .unwrap();
    assert_eq!(
        shape(&plan.prereqs),
        [(DNSClass::NONE, WireType::ANY, true, 0)]
    );
}

/// An update or delete requires the whole RRset as last seen and touches
/// only its own record; an id the index does not hold is not found.
#[test]
fn updates_and_deletes_carry_the_rrset_and_touch_one_record() {
    let p = provider();
    let one = seen(a("www.example.com", [192, 0, 2, 1]));
    let id = one.record.id.clone();
    *p.index() = Index::of(vec![one, seen(a("www.example.com", [192, 0, 2, 2]))]);
    let plan = p
        .plan(&WriteOp::Update {
            id: id.clone(),
            input: input("A", "www.example.com", "192.0.2.9"),
        })
        .unwrap();
    assert_eq!(
        shape(&plan.prereqs),
        [
            (DNSClass::IN, WireType::A, false, 0),
            (DNSClass::IN, WireType::A, false, 0),
        ]
    );
    assert_eq!(
        shape(&plan.updates),
        [
            (DNSClass::NONE, WireType::A, false, 0),
            (DNSClass::IN, WireType::A, false, 300),
        ]
    );
    assert_eq!(plan.updates[0].data, RData::A(A::new(192, 0, 2, 1)));
    assert_eq!(plan.names, ["www.example.com"]);

    let plan = p.plan(&WriteOp::Delete { id: id.clone() }).unwrap();
    assert_eq!(plan.prereqs.len(), 2);
    assert_eq!(
        shape(&plan.updates),
        [(DNSClass::NONE, WireType::A, false, 0)]
    );

    // Moving it to another name: the old RRset as seen, and the new one absent.
    let plan = p
        .plan(&WriteOp::Update {
            id,
            input: input("A", "other.example.com", "192.0.2.1"),
        })
        .unwrap();
    assert_eq!(plan.prereqs.len(), 4, "{:?}", shape(&plan.prereqs));
    assert_eq!(plan.names, ["other.example.com", "www.example.com"]);

    let e = p.plan(&WriteOp::Delete { id: "f".repeat(32) }).unwrap_err();
    assert!(matches!(e, ProviderError::NotFound(_)), "{e:?}");
}

#[test]
fn wire_records_read_back_as_their_spec() {
    for (rtype, name, content, priority) in [
        ("A", "a.example.com", "192.0.2.1", None),
        ("AAAA", "a.example.com", "2001:db8::1", None),
        ("CNAME", "c.example.com", "target.example.net", None),
        ("MX", "example.com", "mail.example.net", Some(10)),
        (
            "SRV",
            "_sip._tcp.example.com",
            "5 5060 sip.example.net",
            Some(20),
        ),
        ("CAA", "example.com", "0 issue \"letsencrypt.org\"", None),
        ("NS", "sub.example.com", "ns1.example.net", None),
        ("TXT", "t.example.com", &"y".repeat(600), None),
    ] {
        let spec = RecordSpec::new("r", rtype, name, content, 1, false, priority).unwrap();
        let record = wire::spec_record(&spec, DEFAULT_TTL).unwrap();
        assert_eq!(record.ttl, DEFAULT_TTL, "automatic TTL");
        let back = wire::to_provider(&record);
        assert_eq!(
            (
                back.rtype.as_str(),
                back.name.as_str(),
                back.content.as_str()
            ),
            (rtype, name, spec.content.as_str())
        );
        assert_eq!(back.priority, priority);
        assert_eq!(
            back.id,
            crate::provider::derived_id(rtype, name, &spec.content)
        );
    }
    let mut proxied =
        RecordSpec::new("r", "A", "a.example.com", "192.0.2.1", 300, true, None).unwrap();
    proxied.proxied = true;
    assert!(matches!(
        wire::spec_record(&proxied, DEFAULT_TTL),
        Err(ProviderError::Invalid(_))
    ));
}

#[test]
fn wildcards_make_lookups_read_the_zone() {
    let index = Index::of(vec![seen(a("*.apps.example.com", [192, 0, 2, 1]))]);
    assert!(index.wildcard_covers("x.apps.example.com"));
    assert!(index.wildcard_covers("y.x.apps.example.com"));
    assert!(!index.wildcard_covers("apps.example.com"));
    assert!(!index.wildcard_covers("www.example.com"));
    let mut index = index;
    let id = index.sets.values().next().unwrap()[0].record.id.clone();
    index.remove(&id);
    assert!(!index.wildcard_covers("x.apps.example.com"));
}

#[test]
fn servers_get_port_53_when_they_name_none() {
    assert_eq!(with_port("ns1.example.net"), "ns1.example.net:53");
    assert_eq!(with_port("ns1.example.net:5300"), "ns1.example.net:5300");
    assert_eq!(with_port("192.0.2.53"), "192.0.2.53:53");
    assert_eq!(with_port("127.0.0.1:5300"), "127.0.0.1:5300");
    assert_eq!(with_port("::1"), "[::1]:53");
    assert_eq!(with_port("[2001:db8::53]:5300"), "[2001:db8::53]:5300");
}
