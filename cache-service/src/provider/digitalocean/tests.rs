//! Unit tests of the DigitalOcean provider's pure parts: its wire forms (names
//! relative to the domain, data per type, MX/SRV/CAA fields), its error
//! mapping, the `ratelimit-*` reading and its configuration checks. The
//! provider against a server is tested in tests/tests/digitalocean_provider.rs.

use super::wire::{DoRecord, ListAnswer, WriteBody, map_error, relative_name};
use super::*;
use trafego_proto::validate::{RecordSpec, ValidRecordInput};

const TOKEN: &str = "do-s3cr3t-token";

fn domain() -> Hostname {
    Hostname::parse("zone", "example.com").unwrap()
}

fn input(
    rtype: &str,
    name: &str,
    content: &str,
    ttl: u32,
    priority: Option<u32>,
) -> ValidRecordInput {
    ValidRecordInput {
        spec: RecordSpec::new("", rtype, name, content, ttl, false, priority).unwrap(),
        comment: String::new(),
    }
}

fn body(rtype: &str, name: &str, content: &str, priority: Option<u32>) -> serde_json::Value {
    let w = WriteBody::new(&input(rtype, name, content, 300, priority), &domain()).unwrap();
    serde_json::to_value(w).unwrap()
}

#[test]
fn write_bodies_follow_digitaloceans_reference() {
    assert_eq!(
        body("A", "www.example.com", "192.0.2.1", None),
        serde_json::json!({"type":"A","name":"www","data":"192.0.2.1","ttl":300})
    );
    // The apex is `@`; host names are written fully qualified with the dot.
    assert_eq!(
        body("CNAME", "example.com", "target.example.net", None)["name"],
        "@"
    );
    assert_eq!(
        body("CNAME", "a.b.example.com", "target.example.net", None),
        serde_json::json!({"type":"CNAME","name":"a.b","data":"target.example.net.","ttl":300})
    );
    assert_eq!(
        body("MX", "example.com", "mail.example.com", Some(10)),
        serde_json::json!({"type":"MX","name":"@","data":"mail.example.com.","ttl":300,"priority":10})
    );
    assert_eq!(
        body("NS", "sub.example.com", "ns1.example.net", None)["data"],
        "ns1.example.net."
    );
    assert_eq!(
        body(
            "SRV",
            "_sip._tcp.example.com",
            "5 5060 sip.example.net",
            Some(20)
        ),
        serde_json::json!({"type":"SRV","name":"_sip._tcp","data":"sip.example.net.","ttl":300,
            "priority":20,"weight":5,"port":5060})
    );
    assert_eq!(
        body(
            "CAA",
            "example.com",
            "128 issuewild \"letsencrypt.org\"",
            None
        ),
        serde_json::json!({"type":"CAA","name":"@","data":"letsencrypt.org","ttl":300,
            "flags":128,"tag":"issuewild"})
    );
    assert_eq!(
        body("TXT", "t.example.com", "v=spf1 -all", None)["data"],
        "v=spf1 -all"
    );
    // The null MX keeps its root target.
    assert_eq!(body("MX", "example.com", ".", Some(0))["data"], ".");
    // DigitalOcean has no automatic TTL: 1 becomes its default.
    let w = WriteBody::new(
        &input("A", "a.example.com", "192.0.2.1", 1, None),
        &domain(),
    )
    .unwrap();
    assert_eq!(serde_json::to_value(w).unwrap()["ttl"], DEFAULT_TTL);
}

#[test]
fn names_are_relative_to_the_domain() {
    let h = |s: &str| Hostname::parse("name", s).unwrap();
    assert_eq!(relative_name(&h("example.com"), &domain()).unwrap(), "@");
    assert_eq!(relative_name(&h("*.example.com"), &domain()).unwrap(), "*");
    assert_eq!(
        relative_name(&h("a.b.example.com"), &domain()).unwrap(),
        "a.b"
    );
    assert!(relative_name(&h("example.net"), &domain()).is_err());
    assert!(relative_name(&h("badexample.com"), &domain()).is_err());
}

#[test]
fn answers_are_read_into_the_cache_form() {
    let page = r#"{"domain_records":[
        {"id":28448429,"type":"NS","name":"@","data":"ns1.digitalocean.com","priority":null,"port":null,"ttl":1800,"weight":null,"flags":null,"tag":null},
        {"id":3352896,"type":"A","name":"WWW","data":"192.0.2.1","ttl":300},
        {"id":3352897,"type":"CNAME","name":"alias","data":"@","ttl":300},
        {"id":3352898,"type":"MX","name":"@","data":"Mail.Example.com","priority":10,"ttl":300},
        {"id":3352899,"type":"SRV","name":"_sip._tcp","data":"sip.example.net","priority":20,"port":5060,"weight":5,"ttl":300},
        {"id":3352900,"type":"CAA","name":"@","data":"letsencrypt.org","flags":0,"tag":"issue","ttl":3600},
        {"id":3352901,"type":"SOA","name":"@","data":"1800","ttl":1800},
        {"id":3352902,"type":"AAAA","name":"v6","data":"2001:DB8:0:0::1","priority":3,"ttl":300},
        {"id":3352903,"type":"CNAME","name":"dotted","data":"target.example.net.","ttl":300}
      ],
      "links":{"pages":{"first":"https://api.digitalocean.com/v2/domains/example.com/records?page=1&per_page=200",
        "next":"https://api.digitalocean.com/v2/domains/example.com/records?page=3&per_page=200"}},
      "meta":{"total":9}}"#;
    let a: ListAnswer = serde_json::from_str(page).unwrap();
    assert_eq!(a.next_page(), Ok(Some(3)));
    assert_eq!(a.meta.as_ref().unwrap().total, Some(9));
    let rs: Vec<ProviderRecord> = a
        .domain_records
        .into_iter()
        .map(|r| r.into_provider("example.com"))
        .collect();
    assert_eq!(
        rs[1],
        ProviderRecord {
            id: "3352896".into(),
            rtype: "A".into(),
            name: "www.example.com".into(),
            content: "192.0.2.1".into(),
            ttl: 300,
            proxied: false,
            priority: None,
            comment: String::new(),
        }
    );
    assert_eq!(rs[0].name, "example.com");
    assert_eq!(rs[0].content, "ns1.digitalocean.com");
    assert_eq!(rs[2].content, "example.com", "@ in data is the domain");
    assert_eq!(rs[3].content, "mail.example.com");
    assert_eq!(rs[3].priority, Some(10));
    assert_eq!(rs[4].name, "_sip._tcp.example.com");
    assert_eq!(rs[4].content, "5 5060 sip.example.net");
    assert_eq!(rs[4].priority, Some(20));
    assert_eq!(rs[5].content, "0 issue \"letsencrypt.org\"");
    assert_eq!(
        (rs[6].rtype.as_str(), rs[6].content.as_str()),
        ("SOA", "1800")
    );
    assert_eq!(rs[7].content, "2001:db8::1");
    assert_eq!(rs[7].priority, None, "no priority outside MX and SRV");
    assert_eq!(rs[8].content, "target.example.net");
}

#[test]
fn what_is_written_reads_back_with_the_same_fingerprint() {
    for (rtype, name, content, priority) in [
        ("A", "a.example.com", "192.0.2.1", None),
        ("MX", "example.com", "mail.example.net", Some(5)),
        (
            "SRV",
            "_x._udp.example.com",
            "1 53 dns.example.net",
            Some(0),
        ),
        (
            "CAA",
            "example.com",
            "0 iodef \"mailto:sec@example.com\"",
            None,
        ),
        ("NS", "sub.example.com", "ns.example.net", None),
    ] {
        let i = input(rtype, name, content, 300, priority);
        let mut echoed = serde_json::to_value(WriteBody::new(&i, &domain()).unwrap()).unwrap();
        echoed["id"] = 42.into();
        // DigitalOcean answers host names without their trailing dot.
        if let Some(d) = echoed["data"].as_str().map(str::to_string) {
            echoed["data"] = d.trim_end_matches('.').to_string().into();
        }
        let r: DoRecord = serde_json::from_value(echoed).unwrap();
        let r = r.into_provider("example.com");
        assert_eq!(r.fingerprint(), i.spec.fingerprint(), "{rtype}: {r:?}");
        assert_eq!(r.id, "42");
    }
}

#[test]
fn errors_map_by_status_keeping_digitaloceans_words_but_never_the_token() {
    let m = |status, id: &str, msg: &str| {
        let b =
            serde_json::to_vec(&serde_json::json!({"id": id, "message": msg, "request_id": "r"}))
                .unwrap();
        map_error(status, &b, "POST /v2/domains/example.com/records", TOKEN)
    };
    assert!(matches!(
        m(401, "unauthorized", "Unable to authenticate you"),
        ProviderError::Unauthorized(_)
    ));
    assert!(matches!(
        m(403, "forbidden", "no"),
        ProviderError::Unauthorized(_)
    ));
    assert!(matches!(
        m(
            404,
            "not_found",
            "The resource you were accessing could not be found."
        ),
        ProviderError::NotFound(_)
    ));
    let e = m(
        422,
        "unprocessable_entity",
        "Data needs to end with a dot (.)",
    );
    assert!(matches!(e, ProviderError::Invalid(_)), "{e:?}");
    assert!(
        e.to_string().contains("Data needs to end with a dot (.)"),
        "{e}"
    );
    assert!(e.to_string().contains("unprocessable_entity"), "{e}");
    assert!(
        e.to_string()
            .contains("POST /v2/domains/example.com/records"),
        "{e}"
    );
    for clash in [
        "Record already exists",
        "CNAME records cannot share a name with other records",
    ] {
        assert!(
            matches!(
                m(422, "unprocessable_entity", clash),
                ProviderError::Conflict(_)
            ),
            "{clash}"
        );
    }
    assert!(matches!(
        m(400, "bad_request", "x"),
        ProviderError::Invalid(_)
    ));
    assert!(matches!(
        m(429, "too_many_requests", "x"),
        ProviderError::RateLimited { .. }
    ));
    assert!(matches!(
        m(503, "service_unavailable", "x"),
        ProviderError::Unavailable(_)
    ));
    assert!(matches!(
        map_error(500, b"not json", "GET /x", TOKEN),
        ProviderError::Unavailable(_)
    ));
    // The gRPC codes, through the one mapping in provider.rs.
    assert_eq!(
        m(401, "unauthorized", "x").code(),
        tonic::Code::PermissionDenied
    );
    assert_eq!(
        m(422, "unprocessable_entity", "Record already exists").code(),
        tonic::Code::AlreadyExists
    );
    assert_eq!(
        m(422, "unprocessable_entity", "bad").code(),
        tonic::Code::InvalidArgument
    );
    // The token never survives, nor a line break.
    let e = m(401, "unauthorized", &format!("token {TOKEN}\nrefused"));
    assert!(!e.to_string().contains(TOKEN), "{e}");
    assert!(!e.to_string().contains('\n'), "{e}");
}

#[test]
fn ratelimit_headers_say_when_the_hour_is_spent() {
    let h = |remaining: &str, reset: &str| {
        let mut m = HeaderMap::new();
        m.insert("ratelimit-limit", "5000".parse().unwrap());
        m.insert("ratelimit-remaining", remaining.parse().unwrap());
        m.insert("ratelimit-reset", reset.parse().unwrap());
        m
    };
    let now_ms = 1_444_931_800_000;
    assert_eq!(spent_for(&h("4816", "1444931833"), now_ms), None);
    // Spent: until the reset, and a second for its rounding.
    assert_eq!(
        spent_for(&h("0", "1444931833"), now_ms),
        Some(Duration::from_secs(34))
    );
    // A reset already past still waits the rounding second.
    assert_eq!(
        spent_for(&h("0", "1444931700"), now_ms),
        Some(Duration::from_secs(1))
    );
    assert_eq!(spent_for(&HeaderMap::new(), now_ms), None);
    assert_eq!(spent_for(&h("0", "soon"), now_ms), None);
}

#[test]
fn configuration_is_checked_and_never_shows_the_token() {
    let cfg = DigitalOceanConfig::new("http://127.0.0.1:1/v2/", TOKEN, domain());
    let d = format!("{cfg:?}");
    assert!(!d.contains(TOKEN), "{d}");
    let p = DigitalOceanProvider::new(cfg.clone()).unwrap();
    assert!(!format!("{p:?}").contains(TOKEN));
    assert_eq!(p.requests_made(), 0);
    let caps = p.capabilities();
    assert_eq!(caps.batch_size, 1);
    assert_eq!(caps.min_ttl, 30);
    assert!(!caps.proxied && !caps.cname_at_apex && !caps.comments);
    assert_eq!(caps.id_format, IdFormat::DECIMAL);
    assert_eq!(caps.record_types, RecordType::ALL.to_vec());
    for per_page in [0, MAX_PER_PAGE + 1] {
        let mut bad = cfg.clone();
        bad.per_page = per_page;
        assert!(DigitalOceanProvider::new(bad).is_err(), "{per_page}");
    }
    let mut bad = cfg.clone();
    bad.api_url = "ftp://example.com".into();
    assert!(DigitalOceanProvider::new(bad).is_err());
    let mut bad = cfg;
    bad.token = "line\nbreak".into();
    let e = DigitalOceanProvider::new(bad).unwrap_err();
    assert!(!e.to_string().contains("line"), "{e}");
}
