//! Unit tests of the Route53 wire format: names, values and content both
//! ways, error answers and the attribution of a batch's problems.

use super::errors::*;
use super::wire::*;
use super::*;
use trafego_proto::validate::RecordSpec;

fn spec(rtype: &str, name: &str, content: &str, priority: Option<u32>) -> RecordSpec {
    RecordSpec::new("r", rtype, name, content, 300, false, priority).unwrap()
}

#[test]
fn names_are_read_and_written_as_route53_escapes_them() {
    assert_eq!(name_of("\\052.Example.COM."), "*.example.com");
    assert_eq!(name_of("example.com."), "example.com");
    assert_eq!(wire_name("*.example.com"), "\\052.example.com.");
    assert_eq!(wire_name("_sip._tcp.example.com"), "_sip._tcp.example.com.");
}

#[test]
fn values_become_canonical_content_and_back() {
    let cases = [
        ("A", "a.example.com", "192.0.2.1", None, "192.0.2.1"),
        ("AAAA", "a.example.com", "2001:db8::1", None, "2001:db8::1"),
        (
            "CNAME",
            "c.example.com",
            "target.example.net",
            None,
            "target.example.net.",
        ),
        (
            "NS",
            "d.example.com",
            "ns1.example.net",
            None,
            "ns1.example.net.",
        ),
        (
            "MX",
            "example.com",
            "mail.example.net",
            Some(10),
            "10 mail.example.net.",
        ),
        ("MX", "example.com", ".", Some(0), "0 ."),
        (
            "SRV",
            "_sip._tcp.example.com",
            "5 5060 sip.example.net",
            Some(10),
            "10 5 5060 sip.example.net.",
        ),
        (
            "CAA",
            "example.com",
            "0 issue \"letsencrypt.org\"",
            None,
            "0 issue \"letsencrypt.org\"",
        ),
        (
            "TXT",
            "t.example.com",
            "v=spf1 -all",
            None,
            "\"v=spf1 -all\"",
        ),
        (
            "TXT",
            "t.example.com",
            "say \"hi\" \\ caf\u{e9}",
            None,
            "\"say \\\"hi\\\" \\\\ caf\\303\\251\"",
        ),
    ];
    for (rtype, name, content, prio, value) in cases {
        let s = spec(rtype, name, content, prio);
        assert_eq!(value_of(&s), value, "{rtype} {content}");
        assert_eq!(
            content_of(rtype, value),
            (content.to_string(), prio),
            "{rtype} {value}"
        );
    }
    // Route53's own forms read canonically.
    assert_eq!(
        content_of("AAAA", "2001:DB8:0::1"),
        ("2001:db8::1".into(), None)
    );
    assert_eq!(
        content_of("CNAME", "Target.Example.NET."),
        ("target.example.net".into(), None)
    );
    assert_eq!(
        content_of("TXT", "\"v=DKIM1; k=rsa; \" \"p=abc\""),
        ("v=DKIM1; k=rsa; p=abc".into(), None)
    );
    assert_eq!(
        content_of("PTR", "host.example.net."),
        ("host.example.net.".into(), None)
    );
}

#[test]
fn long_txt_is_split_into_strings_of_255_bytes() {
    let text = "x".repeat(600);
    let v = txt_value(&text);
    let parts: Vec<&str> = v.split(' ').collect();
    assert_eq!(parts.len(), 3, "{v}");
    assert_eq!(parts[0].len(), 257);
    assert_eq!(txt_text(&v), text);
}

#[test]
fn errors_map_to_provider_errors_without_the_secret() {
    let doc = |code: &str, msg: &str| {
        format!(
            "<?xml version=\"1.0\"?><ErrorResponse xmlns=\"{NAMESPACE}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{msg}</Message></Error><RequestId>r</RequestId></ErrorResponse>"
        )
    };
    let m = |status, code: &str, msg: &str| {
        map_error(status, doc(code, msg).as_bytes(), "GET /x", "s3cret")
    };
    assert!(matches!(
        m(400, "Throttling", "Rate exceeded"),
        ProviderError::RateLimited { .. }
    ));
    assert!(matches!(
        m(400, "PriorRequestNotComplete", "wait"),
        ProviderError::RateLimited { .. }
    ));
    let e = m(403, "SignatureDoesNotMatch", "bad s3cret here");
    assert!(
        matches!(&e, ProviderError::Unauthorized(t) if t.contains("SignatureDoesNotMatch") && !t.contains("s3cret")),
        "{e:?}"
    );
    assert!(matches!(
        m(403, "InvalidClientTokenId", "no"),
        ProviderError::Unauthorized(_)
    ));
    assert!(matches!(
        m(404, "NoSuchHostedZone", "none"),
        ProviderError::NotFound(_)
    ));
    assert!(matches!(
        m(400, "InvalidInput", "bad"),
        ProviderError::Invalid(_)
    ));
    assert!(matches!(
        map_error(502, b"<html>", "GET /x", ""),
        ProviderError::Other(_)
    ));
}

#[test]
fn batch_problems_are_read_in_both_shapes_and_attributed() {
    let a = "Tried to create resource record set [name='a.example.com.', type='A'] but it already exists";
    let b = "RRSet of type CNAME with DNS name taken.example.com. is not permitted as it conflicts with other records with the same DNS name in zone example.com.";
    let c = "Invalid Resource Record: 'FATAL problem: ARRDATAIllegalIPv4Address (Value is not a valid IPv4 address) encountered with '1.2.3''";
    let messages = format!(
        "<InvalidChangeBatch xmlns=\"{NAMESPACE}\"><Messages><Message>{a}</Message><Message>{b}</Message><Message>{c}</Message></Messages><RequestId>r</RequestId></InvalidChangeBatch>"
    );
    let error = format!(
        "<ErrorResponse xmlns=\"{NAMESPACE}\"><Error><Type>Sender</Type><Code>InvalidChangeBatch</Code><Message>[{a}, {b}, {c}]</Message></Error><RequestId>r</RequestId></ErrorResponse>"
    );
    for body in [messages, error] {
        let p = batch_problems(body.as_bytes()).expect("a batch refusal");
        assert_eq!(p, [a, b, c], "{body}");
        assert!(matches!(
            map_error(400, body.as_bytes(), "POST /x", ""),
            ProviderError::Invalid(_)
        ));
    }
    assert_eq!(
        problem_of(a),
        Problem::Stale {
            name: "a.example.com".into(),
            rtype: "A".into()
        }
    );
    assert_eq!(
        problem_of(b),
        Problem::Conflict {
            name: "taken.example.com".into(),
            rtype: "CNAME".into()
        }
    );
    assert_eq!(problem_of(c), Problem::BadValue("1.2.3".into()));
    assert_eq!(
        problem_of(
            "Tried to delete resource record set [name='\\052.example.com.', type='TXT'] but the values provided do not match the current values"
        ),
        Problem::Stale {
            name: "*.example.com".into(),
            rtype: "TXT".into()
        }
    );
    assert_eq!(problem_of("Something new"), Problem::Unknown);
    assert!(
        batch_problems(b"<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>")
            .is_none()
    );
}

#[test]
fn config_debug_redacts_the_secret_and_construction_checks_inputs() {
    let zone = Hostname::parse("zone", "example.com").unwrap();
    let cfg = Route53Config::new("AKIDEXAMPLE", "very/secret+key", "eu-west-2", zone);
    assert_eq!(cfg.api_url, "https://route53.amazonaws.com");
    assert!(!format!("{cfg:?}").contains("very/secret"));
    let p = Route53Provider::new(cfg.clone()).unwrap();
    assert!(!format!("{p:?}").contains("very/secret"));
    assert_eq!(signing_region("eu-west-2"), "us-east-1");
    assert_eq!(signing_region("cn-north-1"), "cn-northwest-1");
    let mut bad = cfg.clone();
    bad.zone_id = Some("../x".into());
    assert!(Route53Provider::new(bad).is_err());
    let mut ok = cfg.clone();
    ok.zone_id = Some("/hostedzone/Z0123ABC".into());
    assert_eq!(
        Route53Provider::new(ok)
            .unwrap()
            .zone_id
            .get()
            .map(String::as_str),
        Some("Z0123ABC")
    );
    let mut bad = cfg.clone();
    bad.secret_key = String::new();
    assert!(matches!(
        Route53Provider::new(bad),
        Err(ProviderError::Unauthorized(_))
    ));
    let mut bad = cfg;
    bad.max_items = 301;
    assert!(Route53Provider::new(bad).is_err());
}
