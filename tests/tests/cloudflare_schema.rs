//! Cloudflare request bodies follow Cloudflare's published record schema:
//! SRV records are written as `data` {priority, weight, port, target} and CAA
//! records as `data` {flags, tag, value}, never with `content` (read-only for
//! those types). The fake refuses a `content` for them the way Cloudflare
//! refuses a malformed SRV (400, 1004 "DNS Validation Error", 9036 in the
//! chain), so the real client is checked end to end on loopback.

use std::time::Duration;

use cache_service::provider::cloudflare::{CloudflareConfig, CloudflareProvider};
use cache_service::provider::{DnsProvider, WriteOp};
use trafego_proto::validate::{Hostname, RecordSpec, ValidRecordInput};
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions};

const TOKEN: &str = "cf-schema-token-0123456789";
const ZONE: &str = "example.com";

async fn fake() -> FakeCloudflare {
    FakeCloudflare::start(FakeOptions::new(TOKEN, ZONE))
        .await
        .expect("fake starts")
}

fn provider(fake: &FakeCloudflare) -> CloudflareProvider {
    let mut c = CloudflareConfig::new(
        &fake.base_url(),
        TOKEN,
        Hostname::parse("zone", ZONE).unwrap(),
    );
    c.zone_id = Some(fake.zone_id());
    c.backoff_base = Duration::from_millis(1);
    c.backoff_max = Duration::from_millis(5);
    CloudflareProvider::new(c).expect("provider builds")
}

fn input(rtype: &str, name: &str, content: &str, priority: Option<u32>) -> ValidRecordInput {
    ValidRecordInput {
        spec: RecordSpec::new("", rtype, name, content, 300, false, priority).unwrap(),
        comment: String::new(),
    }
}

fn srv() -> ValidRecordInput {
    input(
        "SRV",
        "_sip._tcp.example.com",
        "5 5060 sip.example.com",
        Some(20),
    )
}

fn caa() -> ValidRecordInput {
    input("CAA", "example.com", "0 issue \"letsencrypt.org\"", None)
}

/// POSTs `body` to the fake's record endpoint; the status and the JSON answer.
async fn post(fake: &FakeCloudflare, body: serde_json::Value) -> (u16, serde_json::Value) {
    let url = format!("{}/zones/{}/dns_records", fake.base_url(), fake.zone_id());
    let r = reqwest::Client::new()
        .post(url)
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn the_fake_refuses_content_for_srv_and_caa_as_cloudflare_does() {
    let fake = fake().await;
    for body in [
        serde_json::json!({"type":"SRV","name":"_sip._tcp.example.com","content":"5 5060 sip.example.com",
            "ttl":300,"data":{"priority":20,"weight":5,"port":5060,"target":"sip.example.com"}}),
        serde_json::json!({"type":"CAA","name":"example.com","content":"0 issue \"letsencrypt.org\"",
            "ttl":300,"data":{"flags":0,"tag":"issue","value":"letsencrypt.org"}}),
        serde_json::json!({"type":"SRV","name":"_sip._tcp.example.com","content":"5 5060 sip.example.com",
            "ttl":300,"priority":20}),
    ] {
        let (status, v) = post(&fake, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {v}");
        assert_eq!(v["success"], false, "{v}");
        assert_eq!(v["errors"][0]["code"], 1004, "{v}");
        assert_eq!(v["errors"][0]["message"], "DNS Validation Error", "{v}");
        assert_eq!(v["errors"][0]["error_chain"][0]["code"], 9036, "{v}");
        assert!(v["result"].is_null(), "{v}");
    }
    assert_eq!(fake.count(), 0);
    // `data` alone is what Cloudflare's schema asks for: accepted, and
    // reported back with content and data.
    let (status, v) = post(
        &fake,
        serde_json::json!({"type":"SRV","name":"_sip._tcp.example.com","ttl":300,
            "data":{"priority":20,"weight":5,"port":5060,"target":"sip.example.com"}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["result"]["content"], "5 5060 sip.example.com", "{v}");
    assert_eq!(v["result"]["data"]["priority"], 20, "{v}");
}

#[tokio::test]
async fn srv_and_caa_single_writes_send_data_only() {
    let fake = fake().await;
    let p = provider(&fake);
    for (op, content, priority) in [
        (srv(), "5 5060 sip.example.com", Some(20)),
        (caa(), "0 issue \"letsencrypt.org\"", None),
    ] {
        let (results, requests) = p.apply(vec![WriteOp::Create(op)]).await;
        assert_eq!(requests, 1);
        let rec = results[0]
            .as_ref()
            .unwrap_or_else(|e| panic!("refused: {e}"))
            .clone()
            .unwrap();
        assert_eq!(
            (rec.content.as_str(), rec.priority),
            (content, priority),
            "{rec:?}"
        );
        let stored = fake.get(&rec.id).unwrap();
        assert_eq!(
            (stored.content.as_str(), stored.priority),
            (content, priority)
        );
    }
    assert_eq!(fake.stats().create, 2);
}

#[tokio::test]
async fn srv_and_caa_batched_writes_send_data_only() {
    let fake = fake().await;
    let p = provider(&fake);
    let (results, _) = p
        .apply(vec![
            WriteOp::Create(srv()),
            WriteOp::Create(caa()),
            WriteOp::Create(input("A", "a.example.com", "192.0.2.1", None)),
        ])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(fake.stats().batch, 1);
    let srv_id = results[0].as_ref().unwrap().as_ref().unwrap().id.clone();
    let caa_id = results[1].as_ref().unwrap().as_ref().unwrap().id.clone();
    // Updates (batch puts) too.
    let (results, _) = p
        .apply(vec![
            WriteOp::Update {
                id: srv_id.clone(),
                input: input(
                    "SRV",
                    "_sip._tcp.example.com",
                    "7 5061 sip2.example.com",
                    Some(30),
                ),
            },
            WriteOp::Update {
                id: caa_id.clone(),
                input: input("CAA", "example.com", "128 issuewild \"pki.example\"", None),
            },
        ])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let s = fake.get(&srv_id).unwrap();
    assert_eq!(
        (s.content.as_str(), s.priority),
        ("7 5061 sip2.example.com", Some(30))
    );
    assert_eq!(
        fake.get(&caa_id).unwrap().content,
        "128 issuewild \"pki.example\""
    );
}
