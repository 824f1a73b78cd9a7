//! Record-level tests of validation: every bad input names its field, good
//! inputs pass, and the checks that tie fields together hold.

use super::*;

pub(super) fn zone() -> Hostname {
    Hostname::parse("zone", "example.com").unwrap()
}

#[test]
fn fingerprints_differ_by_every_field() {
    let base = RecordSpec::new("", "A", "a.example.com", "192.0.2.1", 300, false, None).unwrap();
    let fp = base.fingerprint();
    assert_eq!(fp.len(), 64);
    assert!(
        fp.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    let mut other = base.clone();
    other.ttl = 301;
    assert_ne!(other.fingerprint(), fp);
    let mut other = base.clone();
    other.proxied = true;
    assert_ne!(other.fingerprint(), fp);
    let mut other = base.clone();
    other.content = "192.0.2.2".into();
    assert_ne!(other.fingerprint(), fp);
}

/// At least 40 bad inputs, each refused with a message naming its field.
#[test]
fn bad_inputs_name_their_field() {
    let long_label = format!("{}.example.com", "a".repeat(64));
    let long_name = format!("{}example.com", "abcdefghi.".repeat(25));
    let long_txt = "x".repeat(MAX_TXT_LEN + 1);
    let long_comment = "c".repeat(MAX_COMMENT_LEN + 1);
    // (type, name, content, ttl, proxied, priority, comment, field named)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        u32,
        bool,
        Option<u32>,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "",
            "a.example.com",
            "192.0.2.1",
            300,
            false,
            None,
            "",
            "record.type",
        ),
        (
            "PTR",
            "a.example.com",
            "x.example.com",
            300,
            false,
            None,
            "",
            "record.type",
        ),
        (
            "A\n",
            "a.example.com",
            "192.0.2.1",
            300,
            false,
            None,
            "",
            "record.type",
        ),
        ("A", "", "192.0.2.1", 300, false, None, "", "record.name"),
        ("A", ".", "192.0.2.1", 300, false, None, "", "record.name"),
        (
            "A",
            "a..example.com",
            "192.0.2.1",
            300,
            false,
            None,
            "",
            "record.name",
        ),
        (
            "A",
            &long_label,
            "192.0.2.1",
            300,
            false,
            None,
            "",
            "record.name",
        ),
        (
            "A",
            &long_name,
            "192.0.2.1",
            300,
            false,
            None,
            "",
            "record.name",
        ),
        (
            "A",
            "a b.example.com",
            "192.0.2.1",
            300,
            false,
            None,
            "",
            "record.name",
        ),
        (
            "A",
            "a\n.example.com",
            "192.0.2.1",
            300,
            false,
            None,
            "",
            "record.name",
        ),
        (
            "A",
            "a\r.example.com",
            "192.0.2.1",
            300,
            false,
            None,
            "",
            "record.name",
        ),
        (
            "A",
            "a\u{0}.example.com",
            "192.0.2.1",
            300,
            false,
            None,
            "",
            "record.name",
        ),
        (
            "A",
            "a!.example.com",
            "192.0.2.1",
            300,
            false,
            None,
            "",
            "record.name",
        ),
        (
            "A",
            "-a.example.com",
            "192.0.2.1",
            300,
            false,
            None,
            "",
            "record.name",
        ),
        (
            "A",
            "a-.example.com",
            "192.0.2.1",
            300,
            false,
            None,
            "",
            "record.name",
        ),
        (
            "A",
            "a.*.example.com",
            "192.0.2.1",
            300,
            false,
            None,
            "",
            "record.name",
        ),
        (
            "A",
            "a.example.org",
            "192.0.2.1",
            300,
            false,
            None,
            "",
            "record.name",
        ),
        (
            "A",
            "notexample.com",
            "192.0.2.1",
            300,
            false,
            None,
            "",
            "record.name",
        ),
        (
            "A",
            "a.example.com",
            "",
            300,
            false,
            None,
            "",
            "record.content",
        ),
        (
            "A",
            "a.example.com",
            "300.1.1.1",
            300,
            false,
            None,
            "",
            "record.content",
        ),
        (
            "A",
            "a.example.com",
            "2001:db8::1",
            300,
            false,
            None,
            "",
            "record.content",
        ),
        (
            "A",
            "a.example.com",
            "192.0.2.1\n",
            300,
            false,
            None,
            "",
            "record.content",
        ),
        (
            "AAAA",
            "a.example.com",
            "192.0.2.1",
            300,
            false,
            None,
            "",
            "record.content",
        ),
        (
            "AAAA",
            "a.example.com",
            "2001:db8::zz",
            300,
            false,
            None,
            "",
            "record.content",
        ),
        (
            "CNAME",
            "a.example.com",
            "not a host",
            300,
            false,
            None,
            "",
            "record.content",
        ),
        (
            "CNAME",
            "a.example.com",
            "*.example.com",
            300,
            false,
            None,
            "",
            "record.content",
        ),
        (
            "CNAME",
            "a.example.com",
            "192.0.2.1/24",
            300,
            false,
            None,
            "",
            "record.content",
        ),
        (
            "NS",
            "a.example.com",
            "ns_1!.example.com",
            300,
            false,
            None,
            "",
            "record.content",
        ),
        (
            "TXT",
            "a.example.com",
            "line1\nline2",
            300,
            false,
            None,
            "",
            "record.content",
        ),
        (
            "TXT",
            "a.example.com",
            "tab\there",
            300,
            false,
            None,
            "",
            "record.content",
        ),
        (
            "TXT",
            "a.example.com",
            "bell\u{7}",
            300,
            false,
            None,
            "",
            "record.content",
        ),
        (
            "TXT",
            "a.example.com",
            "del\u{7f}",
            300,
            false,
            None,
            "",
            "record.content",
        ),
        (
            "TXT",
            "a.example.com",
            &long_txt,
            300,
            false,
            None,
            "",
            "record.content",
        ),
        (
            "SRV",
            "_sip._tcp.example.com",
            "5 sip.example.com",
            300,
            false,
            Some(10),
            "",
            "record.content",
        ),
        (
            "SRV",
            "_sip._tcp.example.com",
            "5 70000 sip.example.com",
            300,
            false,
            Some(10),
            "",
            "record.content",
        ),
        (
            "CAA",
            "example.com",
            "0 issue",
            300,
            false,
            None,
            "",
            "record.content",
        ),
        (
            "CAA",
            "example.com",
            "256 issue \"ca.example\"",
            300,
            false,
            None,
            "",
            "record.content",
        ),
        (
            "CAA",
            "example.com",
            "0 is-sue \"ca.example\"",
            300,
            false,
            None,
            "",
            "record.content",
        ),
        (
            "A",
            "a.example.com",
            "192.0.2.1",
            2,
            false,
            None,
            "",
            "record.ttl",
        ),
        (
            "A",
            "a.example.com",
            "192.0.2.1",
            29,
            false,
            None,
            "",
            "record.ttl",
        ),
        (
            "A",
            "a.example.com",
            "192.0.2.1",
            86_401,
            false,
            None,
            "",
            "record.ttl",
        ),
        (
            "TXT",
            "a.example.com",
            "v=spf1 -all",
            300,
            true,
            None,
            "",
            "record.proxied",
        ),
        (
            "MX",
            "example.com",
            "mail.example.com",
            300,
            false,
            None,
            "",
            "record.priority",
        ),
        (
            "MX",
            "example.com",
            "mail.example.com",
            300,
            false,
            Some(70_000),
            "",
            "record.priority",
        ),
        (
            "A",
            "a.example.com",
            "192.0.2.1",
            300,
            false,
            Some(10),
            "",
            "record.priority",
        ),
        (
            "SRV",
            "_sip._tcp.example.com",
            "5 5060 sip.example.com",
            300,
            false,
            None,
            "",
            "record.priority",
        ),
        (
            "A",
            "a.example.com",
            "192.0.2.1",
            300,
            false,
            None,
            "bad\ncomment",
            "record.comment",
        ),
        (
            "A",
            "a.example.com",
            "192.0.2.1",
            300,
            false,
            None,
            &long_comment,
            "record.comment",
        ),
    ];
    assert!(cases.len() >= 40);
    for (rtype, name, content, ttl, proxied, priority, comment, field) in cases {
        let input = RecordInput {
            r#type: rtype.into(),
            name: name.into(),
            content: content.into(),
            ttl,
            proxied,
            priority,
            comment: comment.into(),
        };
        let err = record_input("record", Some(&input), &zone())
            .expect_err(&format!("accepted {rtype} {name:?} {content:?} {ttl}"));
        assert_eq!(err.field, field, "wrong field for {input:?}: {err}");
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().starts_with(field), "{}", status.message());
    }
}

pub(super) fn input(rtype: &str, name: &str, content: &str, priority: Option<u32>) -> RecordInput {
    RecordInput {
        r#type: rtype.into(),
        name: name.into(),
        content: content.into(),
        ttl: 300,
        priority,
        ..Default::default()
    }
}

fn refused(i: &RecordInput) -> FieldError {
    record_input("record", Some(i), &zone()).expect_err(&format!("accepted {i:?}"))
}

#[test]
fn a_labels_must_be_valid_punycode() {
    for bad in [
        "xn--a.example.com",
        "www.xn--a.example.com",
        "XN--A.example.com",
        "xn--abc.example.com",
        "xn--0.example.com",
    ] {
        let e = Hostname::parse("record.name", bad).expect_err(bad);
        assert_eq!(e.field, "record.name");
        assert!(e.message.contains("punycode"), "{bad}: {e}");
    }
    // Ending in '-' is refused by the hyphen rule before punycode is tried.
    assert!(Hostname::parse("n", "xn--.example.com").is_err());
    for good in [
        "xn--bcher-kva.example.com",
        "XN--BCHER-KVA.example.com",
        "xn--ls8h.example.com",
    ] {
        Hostname::parse("n", good).expect(good);
    }
    // A target name is checked the same way.
    let e = refused(&input("CNAME", "a.example.com", "xn--a.example.net", None));
    assert_eq!(e.field, "record.content");
}

#[test]
fn targets_must_be_names_not_addresses() {
    for (rtype, content, prio) in [
        ("CNAME", "192.0.2.1", None),
        ("CNAME", "192.0.2.1.", None),
        ("CNAME", "2001:db8::1", None),
        ("MX", "192.0.2.1", Some(10)),
        ("MX", "2001:db8::1", Some(10)),
        ("NS", "192.0.2.53", None),
        ("SRV", "5 5060 192.0.2.1", Some(10)),
    ] {
        let e = refused(&input(rtype, "a.example.com", content, prio));
        assert_eq!(e.field, "record.content", "{rtype} {content}");
        assert!(e.message.contains("IP address"), "{e}");
    }
}

#[test]
fn a_cname_never_points_to_itself() {
    for content in ["a.example.com", "A.Example.com."] {
        let e = refused(&input("CNAME", "a.example.com", content, None));
        assert_eq!(e.field, "record.content");
        assert!(e.message.contains("itself"), "{e}");
    }
}

#[test]
fn the_null_mx_needs_priority_zero() {
    let ok = record_input(
        "record",
        Some(&input("MX", "example.com", ".", Some(0))),
        &zone(),
    )
    .unwrap();
    assert_eq!(ok.spec.content, ".");
    assert_eq!(ok.spec.priority, Some(0));
    for prio in [Some(10), None] {
        let e = refused(&input("MX", "example.com", ".", prio));
        assert_eq!(e.field, "record.priority", "{prio:?}");
    }
    // "." is only the null MX: a CNAME or NS to the root stays refused.
    assert_eq!(
        refused(&input("CNAME", "a.example.com", ".", None)).field,
        "record.content"
    );
    assert_eq!(
        refused(&input("NS", "sub.example.com", ".", None)).field,
        "record.content"
    );
}

#[test]
fn ns_at_the_apex_is_refused_below_it_accepted() {
    let e = refused(&input("NS", "example.com", "ns1.example.net", None));
    assert_eq!(e.field, "record.type");
    assert!(e.message.contains("delegation"), "{e}");
    record_input(
        "record",
        Some(&input("NS", "sub.example.com", "ns1.example.net", None)),
        &zone(),
    )
    .unwrap();
}

#[test]
fn good_inputs_pass() {
    for (rtype, name, content, prio) in [
        ("a", "a.example.com", "192.0.2.1", None),
        ("AAAA", "a.example.com", "2001:db8::1", None),
        ("CNAME", "*.example.com", "example.com", None),
        (
            "TXT",
            "_acme-challenge.example.com",
            "token with spaces",
            None,
        ),
        ("MX", "example.com", "mail.example.com", Some(10)),
        (
            "SRV",
            "_sip._tcp.example.com",
            "5 5060 sip.example.com",
            Some(10),
        ),
        ("CAA", "example.com", "0 issue \"letsencrypt.org\"", None),
        ("NS", "sub.example.com", "ns1.example.net", None),
    ] {
        let input = RecordInput {
            r#type: rtype.into(),
            name: name.into(),
            content: content.into(),
            ttl: 300,
            priority: prio,
            ..Default::default()
        };
        record_input("record", Some(&input), &zone()).unwrap();
    }
}
