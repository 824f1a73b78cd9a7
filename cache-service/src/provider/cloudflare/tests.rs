//! Tests of the Cloudflare provider's pure parts: error mapping, record
//! parsing and write bodies, construction checks and the token's absence
//! from every error and `Debug` output.

use super::wire::*;
use super::write::refused_as_a_whole;
use super::*;
use crate::provider::MANAGED_COMMENT;
use crate::provider::http::scrub;
use trafego_proto::validate::ValidRecordInput;

fn zone() -> Hostname {
    Hostname::parse("zone", "example.com").unwrap()
}

fn body(code: u32, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "success": false,
        "errors": [{"code": code, "message": message}],
        "messages": [],
        "result": null
    }))
    .unwrap()
}

#[test]
fn error_codes_map_to_provider_errors() {
    let t = "s3cr3t-token";
    let m = |status, code, msg: &str| map_error(status, &body(code, msg), "POST /x", t);
    assert!(matches!(
        m(400, 81053, "exists"),
        ProviderError::Conflict(_)
    ));
    assert!(matches!(
        m(400, 81057, "exists"),
        ProviderError::Conflict(_)
    ));
    assert!(matches!(
        m(404, 81044, "no record"),
        ProviderError::NotFound(_)
    ));
    assert!(matches!(
        m(400, 7003, "no zone"),
        ProviderError::NotFound(_)
    ));
    for code in AUTH_CODES {
        assert!(
            matches!(m(400, code, "auth"), ProviderError::Unauthorized(_)),
            "{code}"
        );
    }
    for code in [1004, 9005, 9006, 9021, 9000, 9999] {
        assert!(
            matches!(m(400, code, "bad"), ProviderError::Invalid(_)),
            "{code}"
        );
    }
    assert!(matches!(
        map_error(401, b"", "GET /x", t),
        ProviderError::Unauthorized(_)
    ));
    assert!(matches!(
        map_error(403, b"not json", "GET /x", t),
        ProviderError::Unauthorized(_)
    ));
    assert!(matches!(
        map_error(400, b"{}", "GET /x", t),
        ProviderError::Invalid(_)
    ));
    assert!(matches!(
        map_error(422, b"{}", "GET /x", t),
        ProviderError::Invalid(_)
    ));
    assert!(matches!(
        map_error(404, b"{}", "GET /x", t),
        ProviderError::NotFound(_)
    ));
    assert!(matches!(
        map_error(409, b"{}", "GET /x", t),
        ProviderError::Conflict(_)
    ));
    assert!(matches!(
        map_error(503, b"{}", "GET /x", t),
        ProviderError::Unavailable(_)
    ));
    assert!(matches!(
        map_error(429, b"{}", "GET /x", t),
        ProviderError::RateLimited { .. }
    ));
    // gRPC codes, through the one mapping in provider.rs.
    assert_eq!(m(400, 81053, "x").code(), tonic::Code::AlreadyExists);
    assert_eq!(m(400, 9109, "x").code(), tonic::Code::PermissionDenied);
    assert_eq!(m(400, 9005, "x").code(), tonic::Code::InvalidArgument);
}

#[test]
fn chained_errors_count_and_show() {
    let b = br#"{"success":false,"errors":[{"code":1004,"message":"DNS Validation Error",
        "error_chain":[{"code":9005,"message":"Content for A record is invalid."}]}]}"#;
    let e = map_error(400, b, "POST /x", "t0k3n");
    assert!(matches!(e, ProviderError::Invalid(_)), "{e:?}");
    assert!(
        e.to_string().contains("Content for A record is invalid."),
        "{e}"
    );
    let b = br#"{"success":false,"errors":[{"code":1000,"message":"outer",
        "error_chain":[{"code":81057,"message":"Record already exists."}]}]}"#;
    assert!(matches!(
        map_error(400, b, "POST /x", "t0k3n"),
        ProviderError::Conflict(_)
    ));
    let b = br#"{"success":false,"errors":[{"code":6003,"message":"Invalid request headers",
        "error_chain":[{"code":6111,"message":"Invalid format for Authorization header"}]}]}"#;
    assert!(matches!(
        map_error(400, b, "GET /x", "t0k3n"),
        ProviderError::Unauthorized(_)
    ));
}

#[test]
fn error_messages_keep_cloudflare_words_but_never_the_token() {
    let t = "s3cr3t-token";
    let e = map_error(
        400,
        &body(9005, "Content for A record is invalid."),
        "POST /zones/z/dns_records",
        t,
    );
    let s = e.to_string();
    assert!(s.contains("Content for A record is invalid."), "{s}");
    assert!(s.contains("POST /zones/z/dns_records"), "{s}");
    assert!(s.contains("9005"), "{s}");
    let e = map_error(
        403,
        &body(10000, &format!("bad token {t}\nsecond line")),
        "GET /zones",
        t,
    );
    let s = e.to_string();
    assert!(s.starts_with("the provider refused the credentials"), "{s}");
    assert!(!s.contains(t), "{s}");
    assert!(!s.contains('\n'), "{s}");
    let long = "x".repeat(5000);
    let s = map_error(400, &body(9005, &long), "GET /zones", t).to_string();
    assert!(s.len() < 1000, "{}", s.len());
    let e = scrub(ProviderError::Unavailable(format!("oops {t}")), t);
    assert!(!e.to_string().contains(t));
}

#[test]
fn config_debug_redacts_the_token() {
    let cfg = CloudflareConfig::new(DEFAULT_API_URL, "s3cr3t-token", zone());
    let d = format!("{cfg:?}");
    assert!(!d.contains("s3cr3t-token"), "{d}");
    assert!(d.contains("<redacted>"));
    let p = CloudflareProvider::new(cfg).unwrap();
    let d = format!("{p:?}");
    assert!(!d.contains("s3cr3t-token"), "{d}");
    assert_eq!(p.requests_made(), 0);
    assert_eq!(p.stats(), CloudflareStats::default());
}

#[test]
fn construction_checks_its_inputs() {
    let ok = CloudflareConfig::new("http://127.0.0.1:1/client/v4/", "t", zone());
    let p = CloudflareProvider::new(ok.clone()).unwrap();
    assert_eq!(
        p.url(
            &["zones", "abc", "dns_records", "a/../b?c"],
            &[("page", "1")]
        )
        .as_str(),
        "http://127.0.0.1:1/client/v4/zones/abc/dns_records/a%2F..%2Fb%3Fc?page=1"
    );
    let mut bad = ok.clone();
    bad.api_url = "not a url".into();
    assert!(matches!(
        CloudflareProvider::new(bad),
        Err(ProviderError::Invalid(_))
    ));
    let mut bad = ok.clone();
    bad.api_url = "ftp://example.com".into();
    assert!(CloudflareProvider::new(bad).is_err());
    let mut bad = ok.clone();
    bad.token = "line\nbreak".into();
    let e = CloudflareProvider::new(bad).unwrap_err();
    assert!(!e.to_string().contains("line"), "{e}");
    let mut bad = ok.clone();
    bad.zone_id = Some("../zones".into());
    assert!(CloudflareProvider::new(bad).is_err());
    let mut bad = ok;
    bad.batch_size = 0;
    assert!(CloudflareProvider::new(bad).is_err());
}

#[test]
fn records_are_parsed_and_normalised() {
    let page = r#"{
        "success": true, "errors": [], "messages": [],
        "result": [
          {"id":"1","zone_id":"z","zone_name":"example.com","name":"WWW.Example.com.","type":"a","content":"192.0.2.1","proxiable":true,"proxied":true,"ttl":1,"settings":{},"meta":{},"comment":null,"tags":[],"created_on":"2024-01-01T00:00:00Z","modified_on":"2024-01-01T00:00:00Z"},
          {"id":"2","name":"example.com","type":"AAAA","content":"2001:DB8:0:0::1","proxied":false,"ttl":300,"comment":"hi"},
          {"id":"3","name":"example.com","type":"MX","content":"Mail.Example.com","priority":10,"ttl":300},
          {"id":"4","name":"_sip._tcp.example.com","type":"SRV","content":"5 5060 sip.example.com","data":{"priority":20,"weight":5,"port":5060,"target":"sip.example.com"},"ttl":300},
          {"id":"5","name":"example.com","type":"A","content":"not-an-ip","priority":3,"ttl":300},
          {"id":"6","name":"example.com","type":"HTTPS","content":"1 . alpn=h2","ttl":300},
          {"id":"7","name":"example.com","type":"CAA","content":"0 ISSUE \"letsencrypt.org\"","ttl":300}
        ],
        "result_info": {"page":1,"per_page":5000,"count":7,"total_count":7,"total_pages":1}
    }"#;
    let env: Envelope<Vec<CfRecord>> = serde_json::from_slice(page.as_bytes()).unwrap();
    assert!(env.success);
    assert_eq!(env.result_info.unwrap().total_pages, Some(1));
    let rs: Vec<ProviderRecord> = env
        .result
        .unwrap()
        .into_iter()
        .map(CfRecord::into_provider)
        .collect();
    assert_eq!(
        rs[0],
        ProviderRecord {
            id: "1".into(),
            rtype: "A".into(),
            name: "www.example.com".into(),
            content: "192.0.2.1".into(),
            ttl: 1,
            proxied: true,
            priority: None,
            comment: String::new(),
        }
    );
    assert_eq!(rs[1].content, "2001:db8::1");
    assert_eq!(rs[1].comment, "hi");
    assert_eq!(rs[2].content, "mail.example.com");
    assert_eq!(rs[2].priority, Some(10));
    assert_eq!(rs[3].priority, Some(20));
    assert_eq!(rs[3].content, "5 5060 sip.example.com");
    assert_eq!(
        rs[4].content, "not-an-ip",
        "unparseable content is kept raw"
    );
    assert_eq!(rs[4].priority, None, "no priority outside MX and SRV");
    assert_eq!(rs[5].rtype, "HTTPS");
    assert_eq!(rs[5].content, "1 . alpn=h2");
    assert_eq!(rs[6].content, "0 issue \"letsencrypt.org\"");
}

#[test]
fn a_record_read_back_fingerprints_like_the_input() {
    let spec = trafego_proto::validate::RecordSpec::new(
        "",
        "AAAA",
        "v6.example.com",
        "2001:db8::1",
        300,
        false,
        None,
    )
    .unwrap();
    let input = ValidRecordInput {
        spec: spec.clone(),
        comment: String::new(),
    };
    let sent = serde_json::to_value(WriteBody::new(None, &input)).unwrap();
    assert_eq!(sent["comment"], MANAGED_COMMENT);
    assert!(sent.get("priority").is_none());
    assert!(sent.get("id").is_none());
    let mut echoed = sent.clone();
    echoed["id"] = "abc".into();
    echoed["name"] = "V6.EXAMPLE.COM".into();
    echoed["content"] = "2001:0db8:0000::0001".into();
    let r: CfRecord = serde_json::from_value(echoed).unwrap();
    assert_eq!(r.into_provider().fingerprint(), spec.fingerprint());
}

#[test]
fn srv_and_caa_writes_carry_data() {
    let srv = trafego_proto::validate::RecordSpec::new(
        "",
        "SRV",
        "_sip._tcp.example.com",
        "5 5060 sip.example.com",
        300,
        false,
        Some(10),
    )
    .unwrap();
    let input = ValidRecordInput {
        spec: srv,
        comment: "mine".into(),
    };
    let v = serde_json::to_value(WriteBody::new(Some("id1"), &input)).unwrap();
    assert_eq!(v["id"], "id1");
    assert_eq!(v["comment"], "mine");
    assert_eq!(
        v["data"],
        serde_json::json!({"priority":10,"weight":5,"port":5060,"target":"sip.example.com"})
    );
    // Cloudflare's schema: SRV's content is read-only and its priority lives in data.
    for absent in ["content", "priority", "proxied"] {
        assert!(v.get(absent).is_none(), "{absent} sent: {v}");
    }
    let caa = trafego_proto::validate::RecordSpec::new(
        "",
        "CAA",
        "example.com",
        "0 issue \"letsencrypt.org\"",
        300,
        false,
        None,
    )
    .unwrap();
    let input = ValidRecordInput {
        spec: caa,
        comment: String::new(),
    };
    let v = serde_json::to_value(WriteBody::new(None, &input)).unwrap();
    assert_eq!(
        v["data"],
        serde_json::json!({"flags":0,"tag":"issue","value":"letsencrypt.org"})
    );
    for absent in ["content", "priority", "proxied"] {
        assert!(v.get(absent).is_none(), "{absent} sent: {v}");
    }
}

#[test]
fn batch_answers_parse() {
    let answer = r#"{"success":true,"errors":[],"messages":[],"result":{
        "deletes":[{"id":"d1","name":"gone.example.com","type":"A","content":"192.0.2.9","ttl":1}],
        "patches":[],
        "puts":[{"id":"u1","name":"u.example.com","type":"A","content":"192.0.2.2","ttl":300,"proxied":false}],
        "posts":[{"id":"n1","name":"n.example.com","type":"TXT","content":"hello","ttl":1,"proxied":false,"comment":"Managed by TrafegoDNS"}]
    }}"#;
    let env: Envelope<BatchResult> = serde_json::from_str(answer).unwrap();
    let r = env.result.unwrap();
    assert_eq!(r.deletes.unwrap().len(), 1);
    assert_eq!(r.puts.unwrap()[0].id, "u1");
    assert_eq!(
        r.posts.unwrap()[0].comment.as_deref(),
        Some(MANAGED_COMMENT)
    );
}

#[test]
fn batch_refusals_are_told_apart() {
    assert!(refused_as_a_whole(&ProviderError::Invalid("x".into())));
    assert!(refused_as_a_whole(&ProviderError::Conflict("x".into())));
    assert!(!refused_as_a_whole(&ProviderError::Unauthorized(
        "x".into()
    )));
    assert!(!refused_as_a_whole(&ProviderError::RateLimited {
        retry_after: None
    }));
    assert!(!refused_as_a_whole(&ProviderError::Unavailable("x".into())));
    assert!(!refused_as_a_whole(&ProviderError::Other("x".into())));
}
