//! Integration tests of the fake DigitalOcean provider itself: raw reqwest calls over loopback
//! checking that it answers like DigitalOcean's API v2 does: bearer authentication, the domain
//! lookup, `links.pages` paging with absolute URLs and its caps, filters, writes and their
//! validation errors, the hourly and per-minute rate budgets with their headers (on a manual
//! clock), injected faults and the request counters other tests will rely on.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use trafego_common::clock::ManualClock;
use trafego_tests::fake_digitalocean::{
    DoOptions, DoRecord, DoStats, FakeDigitalOcean, LostAnswer,
};

const TOKEN: &str = "do-test-token";
const DOMAIN: &str = "example.com";

/// One parsed HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn header_num(&self, name: &str) -> i64 {
        self.header(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .parse()
            .expect("numeric header")
    }

    /// The `id` of a DigitalOcean error body, checking its shape.
    fn error_id(&self) -> &str {
        assert!(self.body["message"].is_string(), "{:?}", self.body);
        self.body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no error id in {:?}", self.body))
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(fake: &FakeDigitalOcean) -> Self {
        Self::with_token(fake, Some(TOKEN))
    }

    fn with_token(fake: &FakeDigitalOcean, token: Option<&str>) -> Self {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        Self {
            http,
            base: fake.base_url(),
            token: token.map(str::to_string),
        }
    }

    /// `path` is relative to `/v2`, or an absolute URL (a `links.pages` link).
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Answer {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let mut req = self.http.request(method, url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("json body")
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
}

fn records_path() -> String {
    format!("/domains/{DOMAIN}/records")
}

async fn bare_fake() -> FakeDigitalOcean {
    let mut opts = DoOptions::new(TOKEN, DOMAIN);
    opts.apex_defaults = false;
    FakeDigitalOcean::start(opts).await.expect("start fake")
}

async fn fake_with_clock(hourly: u32, minute: u32) -> (FakeDigitalOcean, ManualClock) {
    let clock = ManualClock::new(1_700_000_000_000);
    let mut opts = DoOptions::new(TOKEN, DOMAIN);
    opts.apex_defaults = false;
    opts.hourly_limit = hourly;
    opts.minute_limit = minute;
    opts.clock = Arc::new(clock.clone());
    (
        FakeDigitalOcean::start(opts).await.expect("start fake"),
        clock,
    )
}

fn a_records(n: usize) -> Vec<DoRecord> {
    (0..n)
        .map(|i| {
            DoRecord::new(
                "A",
                &format!("host-{i}"),
                &format!("192.0.2.{}", i % 250 + 1),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_refused_with_digitaloceans_body() {
    let fake = bare_fake().await;
    for token in [None, Some("wrong")] {
        let a = Client::with_token(&fake, token)
            .get(&format!("/domains/{DOMAIN}"))
            .await;
        assert_eq!(a.status, 401);
        assert_eq!(a.body["id"], json!("unauthorized"));
        assert_eq!(a.body["message"], json!("Unable to authenticate you"));
        assert!(!a.body.to_string().contains(TOKEN));
    }
    let s = fake.stats();
    assert_eq!((s.total, s.unauthorized, s.domains), (2, 2, 0));
}

#[tokio::test]
async fn the_domain_is_found_and_an_unknown_one_is_not() {
    let fake = FakeDigitalOcean::start(DoOptions::new(TOKEN, DOMAIN))
        .await
        .expect("start");
    let c = Client::new(&fake);
    let a = c.get(&format!("/domains/{DOMAIN}")).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["domain"]["name"], json!(DOMAIN));
    assert!(
        a.body["domain"]["zone_file"]
            .as_str()
            .is_some_and(|z| z.contains("$ORIGIN example.com."))
    );
    let a = c.get("/domains/other.org").await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error_id(), "not_found");
    let a = c.get("/domains/other.org/records").await;
    assert_eq!(a.status, 404);
    assert_eq!(a.error_id(), "not_found");
}

#[tokio::test]
async fn a_new_domain_holds_the_apex_soa_and_ns_records() {
    let fake = FakeDigitalOcean::start(DoOptions::new(TOKEN, DOMAIN))
        .await
        .expect("start");
    let a = Client::new(&fake).get(&records_path()).await;
    assert_eq!(a.status, 200);
    let recs = a.body["domain_records"].as_array().expect("records");
    let kinds: Vec<(&str, &str, &str)> = recs
        .iter()
        .map(|r| {
            (
                r["type"].as_str().unwrap_or(""),
                r["name"].as_str().unwrap_or(""),
                r["data"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("SOA", "@", "1800"),
            ("NS", "@", "ns1.digitalocean.com"),
            ("NS", "@", "ns2.digitalocean.com"),
            ("NS", "@", "ns3.digitalocean.com"),
        ]
    );
    // Unused attributes are null, as DigitalOcean writes them.
    assert_eq!(recs[1]["priority"], Value::Null);
    assert_eq!(recs[1]["port"], Value::Null);
    assert_eq!(recs[1]["tag"], Value::Null);
    assert_eq!(a.body["meta"]["total"], json!(4));
    assert_eq!(a.body["links"], json!({}));
}

#[tokio::test]
async fn listing_pages_by_20_and_follows_absolute_next_links_to_the_end() {
    let fake = bare_fake().await;
    let seeded: BTreeSet<u64> = fake.insert_many(a_records(45)).into_iter().collect();
    let c = Client::new(&fake);

    let first = c.get(&records_path()).await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.body["domain_records"].as_array().map(Vec::len),
        Some(20)
    );
    assert_eq!(first.body["meta"]["total"], json!(45));
    let pages = &first.body["links"]["pages"];
    let base = fake.base_url();
    assert_eq!(
        pages["next"],
        json!(format!(
            "{base}/domains/{DOMAIN}/records?page=2&per_page=20"
        ))
    );
    assert_eq!(
        pages["last"],
        json!(format!(
            "{base}/domains/{DOMAIN}/records?page=3&per_page=20"
        ))
    );
    assert!(pages.get("first").is_none() && pages.get("prev").is_none());

    let mut seen = BTreeSet::new();
    let mut next = Some(first);
    let mut pages_read = 0;
    while let Some(page) = next.take() {
        pages_read += 1;
        for r in page.body["domain_records"].as_array().expect("records") {
            assert!(seen.insert(r["id"].as_u64().expect("integer id")));
        }
        if let Some(url) = page.body["links"]["pages"]["next"].as_str() {
            let p = c.get(url).await;
            assert_eq!(p.status, 200);
            next = Some(p);
        }
    }
    assert_eq!(pages_read, 3);
    assert_eq!(seen, seeded);

    // A middle page links every way; the last one only backwards.
    let mid = c.get(&format!("{}?page=2", records_path())).await;
    let p = &mid.body["links"]["pages"];
    assert!(p["first"].is_string() && p["prev"].is_string());
    assert!(p["next"].is_string() && p["last"].is_string());
    let last = c.get(&format!("{}?page=3", records_path())).await;
    assert_eq!(
        last.body["domain_records"].as_array().map(Vec::len),
        Some(5)
    );
    assert!(last.body["links"]["pages"].get("next").is_none());
}

#[tokio::test]
async fn per_page_is_capped_at_200() {
    let fake = bare_fake().await;
    fake.insert_many(a_records(250));
    let c = Client::new(&fake);
    let a = c.get(&format!("{}?per_page=500", records_path())).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["domain_records"].as_array().map(Vec::len), Some(200));
    assert_eq!(a.body["meta"]["total"], json!(250));
    let next = a.body["links"]["pages"]["next"].as_str().expect("next");
    assert!(next.ends_with("page=2&per_page=200"), "{next}");
}

#[tokio::test]
async fn type_and_fqdn_name_filters_narrow_the_listing() {
    let fake = bare_fake().await;
    fake.insert(DoRecord::new("A", "www", "192.0.2.1"));
    fake.insert(DoRecord::new("AAAA", "www", "2001:db8::1"));
    fake.insert(DoRecord::new("A", "@", "192.0.2.2"));
    fake.insert(DoRecord::new("TXT", "other", "hello"));
    let c = Client::new(&fake);

    let a = c
        .get(&format!("{}?name=www.{DOMAIN}&type=A", records_path()))
        .await;
    let recs = a.body["domain_records"].as_array().expect("records");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["data"], json!("192.0.2.1"));

    let a = c.get(&format!("{}?name={DOMAIN}", records_path())).await;
    let recs = a.body["domain_records"].as_array().expect("records");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["name"], json!("@"));

    let a = c
        .get(&format!("{}?type=A&per_page=1", records_path()))
        .await;
    assert_eq!(a.body["meta"]["total"], json!(2));
    let next = a.body["links"]["pages"]["next"].as_str().expect("next");
    assert!(next.contains("type=A"), "filters kept in links: {next}");
}

#[tokio::test]
async fn records_are_created_read_updated_and_deleted() {
    let fake = bare_fake().await;
    let c = Client::new(&fake);

    let a = c
        .post(
            &records_path(),
            json!({"type": "A", "name": "www", "data": "192.0.2.10", "ttl": 300}),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let rec = &a.body["domain_record"];
    let id = rec["id"].as_u64().expect("integer id");
    assert_eq!(rec["name"], json!("www"));
    assert_eq!(rec["ttl"], json!(300));
    assert_eq!(rec["priority"], Value::Null);

    // The apex as `@`, an absolute in-zone name made relative, the default TTL.
    let apex = c
        .post(
            &records_path(),
            json!({"type": "TXT", "name": "@", "data": "v=spf1 -all"}),
        )
        .await;
    assert_eq!(apex.status, 201);
    assert_eq!(apex.body["domain_record"]["ttl"], json!(1800));
    let abs = c
        .post(
            &records_path(),
            json!({"type": "CNAME", "name": "blog.example.com.", "data": "www.example.com."}),
        )
        .await;
    assert_eq!(abs.status, 201, "{:?}", abs.body);
    assert_eq!(abs.body["domain_record"]["name"], json!("blog"));
    // Host names are answered without their trailing dot.
    assert_eq!(abs.body["domain_record"]["data"], json!("www.example.com"));

    let path = format!("{}/{id}", records_path());
    let got = c.get(&path).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["domain_record"]["data"], json!("192.0.2.10"));

    let put = c
        .send(
            reqwest::Method::PUT,
            &path,
            Some(json!({"type": "A", "data": "192.0.2.11"})),
        )
        .await;
    assert_eq!(put.status, 200, "{:?}", put.body);
    assert_eq!(put.body["domain_record"]["data"], json!("192.0.2.11"));
    assert_eq!(put.body["domain_record"]["name"], json!("www"));
    assert_eq!(put.body["domain_record"]["ttl"], json!(300));

    let patch = c
        .send(reqwest::Method::PATCH, &path, Some(json!({"ttl": 60})))
        .await;
    assert_eq!(patch.status, 200);
    assert_eq!(fake.get(id).map(|r| r.ttl), Some(60));

    let del = c.send(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(del.status, 204);
    assert_eq!(del.body, Value::Null);
    let gone = c.get(&path).await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.error_id(), "not_found");
    let again = c.send(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(again.status, 404);

    let s = fake.stats();
    assert_eq!((s.create, s.get, s.update, s.delete), (3, 2, 2, 2), "{s:?}");
}

#[tokio::test]
async fn invalid_records_get_422_unprocessable_entity_and_nothing_changes() {
    let fake = FakeDigitalOcean::start(DoOptions::new(TOKEN, DOMAIN))
        .await
        .expect("start");
    let a_id = fake.insert(DoRecord::new("A", "www", "192.0.2.1"));
    fake.insert(DoRecord::new("CNAME", "alias", "www.example.com"));
    let before = fake.records();
    let c = Client::new(&fake);

    let cases = [
        (
            json!({"type": "CNAME", "name": "www", "data": "target.example.org."}),
            "CNAME records cannot share a name with other records",
        ),
        (
            json!({"type": "A", "name": "alias", "data": "192.0.2.9"}),
            "CNAME records cannot share a name with other records",
        ),
        (
            json!({"type": "A", "name": "www", "data": "192.0.2.1"}),
            "Record already exists",
        ),
        (
            json!({"type": "A", "name": "low", "data": "192.0.2.1", "ttl": 29}),
            "Record ttl must be greater than or equal to 30",
        ),
        (
            json!({"type": "A", "name": "bad", "data": "192.0.2"}),
            "IP address did not match IPv4 format (e.g. 127.0.0.1).",
        ),
        (
            json!({"type": "AAAA", "name": "bad", "data": "192.0.2.1"}),
            "IP address did not match IPv6 format (e.g. 2001:db8::1).",
        ),
        (
            json!({"type": "CNAME", "name": "c", "data": "target.example.org"}),
            "Data needs to end with a dot (.)",
        ),
        (
            json!({"type": "MX", "name": "@", "data": "mail.example.com."}),
            "Priority can't be blank for MX records",
        ),
        (
            json!({"type": "SOA", "name": "@", "data": "1800"}),
            "SOA records cannot be created",
        ),
        (
            json!({"type": "SPF", "name": "x", "data": "v=spf1"}),
            "Type SPF is not supported",
        ),
    ];
    for (body, message) in cases {
        let a = c.post(&records_path(), body.clone()).await;
        assert_eq!(a.status, 422, "{body}: {:?}", a.body);
        assert_eq!(a.error_id(), "unprocessable_entity");
        assert_eq!(a.body["message"], json!(message), "{body}");
    }
    // An update into a clash, and deleting the SOA, are refused the same way.
    let put = c
        .send(
            reqwest::Method::PUT,
            &format!("{}/{a_id}", records_path()),
            Some(json!({"type": "A", "name": "alias"})),
        )
        .await;
    assert_eq!(put.status, 422);
    let soa = before
        .iter()
        .find(|r| r.r#type == "SOA")
        .map(|r| r.id)
        .expect("soa");
    let del = c
        .send(
            reqwest::Method::DELETE,
            &format!("{}/{soa}", records_path()),
            None,
        )
        .await;
    assert_eq!(del.status, 422);
    assert_eq!(del.error_id(), "unprocessable_entity");
    assert_eq!(fake.records(), before);
}

#[tokio::test]
async fn every_answer_carries_the_ratelimit_headers() {
    let (fake, clock) = fake_with_clock(5000, 250).await;
    let c = Client::new(&fake);
    let ok = c.get(&records_path()).await;
    let missing = c.get(&format!("{}/1", records_path())).await;
    for (a, left) in [(&ok, 4999), (&missing, 4998)] {
        assert_eq!(a.header_num("ratelimit-limit"), 5000);
        assert_eq!(a.header_num("ratelimit-remaining"), left);
        // The oldest counted request expires an hour after it was made.
        assert_eq!(
            a.header_num("ratelimit-reset"),
            (clock_ms(&clock) + 3_600_000) / 1000
        );
    }
    assert_eq!(missing.status, 404);
}

fn clock_ms(c: &ManualClock) -> i64 {
    use trafego_common::clock::Clock;
    c.now_ms()
}

#[tokio::test]
async fn the_per_minute_burst_limit_answers_429_with_retry_after_until_the_minute_passes() {
    let (fake, clock) = fake_with_clock(100, 3).await;
    let c = Client::new(&fake);
    for left in [99, 98, 97] {
        let a = c.get(&records_path()).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.header_num("ratelimit-remaining"), left);
        clock.advance(Duration::from_secs(10));
    }
    let refused = c.get(&records_path()).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.error_id(), "too_many_requests");
    assert_eq!(refused.body["message"], json!("API Rate limit exceeded."));
    // The first request was 30 s ago: it leaves the minute in 30 s.
    assert_eq!(refused.header_num("retry-after"), 30);
    assert_eq!(refused.header_num("ratelimit-remaining"), 97);

    clock.advance(Duration::from_secs(30));
    let a = c.get(&records_path()).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(fake.stats().rate_limited, 1);
    assert_eq!(fake.stats().list, 4);
}

#[tokio::test]
async fn a_staged_burst_refusal_answers_like_the_real_one_without_spending_the_budget() {
    let (fake, _clock) = fake_with_clock(100, 250).await;
    let c = Client::new(&fake);
    fake.rate_limit_next(2, 7);
    for _ in 0..2 {
        let refused = c.get(&records_path()).await;
        assert_eq!(refused.status, 429);
        assert_eq!(refused.error_id(), "too_many_requests");
        assert_eq!(refused.header_num("retry-after"), 7);
        assert_eq!(refused.header_num("ratelimit-remaining"), 100);
    }
    let a = c.get(&records_path()).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.header_num("ratelimit-remaining"), 99);
    let s = fake.stats();
    assert_eq!((s.rate_limited, s.list), (2, 1));
}

#[tokio::test]
async fn the_hourly_budget_expires_request_by_request() {
    let (fake, clock) = fake_with_clock(3, 250).await;
    let c = Client::new(&fake);
    let start = clock_ms(&clock);
    for _ in 0..3 {
        assert_eq!(c.get(&records_path()).await.status, 200);
        clock.advance(Duration::from_secs(600));
    }
    let refused = c.get(&records_path()).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.error_id(), "too_many_requests");
    assert_eq!(refused.header_num("ratelimit-remaining"), 0);
    assert_eq!(
        refused.header_num("ratelimit-reset"),
        (start + 3_600_000) / 1000
    );
    assert_eq!(fake.rate_limit_remaining(), 0);

    // An hour after the first request, exactly one request's worth comes back.
    clock.set(start + 3_600_000);
    assert_eq!(fake.rate_limit_remaining(), 1);
    assert_eq!(c.get(&records_path()).await.status, 200);
    assert_eq!(c.get(&records_path()).await.status, 429);

    fake.reset_rate_limits();
    assert_eq!(fake.rate_limit_remaining(), 3);
    assert_eq!(c.get(&records_path()).await.status, 200);
}

#[tokio::test]
async fn injected_failures_answer_with_digitaloceans_error_bodies() {
    let fake = bare_fake().await;
    fake.insert_many(a_records(30));
    let c = Client::new(&fake);

    fake.fail_next(2, 503);
    for _ in 0..2 {
        let a = c.get(&records_path()).await;
        assert_eq!(a.status, 503);
        assert_eq!(a.error_id(), "service_unavailable");
        assert!(a.header("ratelimit-remaining").is_some());
    }
    fake.fail_next(1, 500);
    let a = c.get(&records_path()).await;
    assert_eq!((a.status, a.error_id()), (500, "server_error"));
    assert_eq!(c.get(&records_path()).await.status, 200);

    fake.fail_list_page(2, 502);
    assert_eq!(
        c.get(&format!("{}?page=1", records_path())).await.status,
        200
    );
    assert_eq!(
        c.get(&format!("{}?page=2", records_path())).await.status,
        502
    );
    fake.clear_faults();
    assert_eq!(
        c.get(&format!("{}?page=2", records_path())).await.status,
        200
    );

    fake.fail_writes_for_name("www.example.com", 500);
    let a = c
        .post(
            &records_path(),
            json!({"type": "A", "name": "www", "data": "192.0.2.1"}),
        )
        .await;
    assert_eq!(a.status, 500);
    let other = c
        .post(
            &records_path(),
            json!({"type": "A", "name": "api", "data": "192.0.2.1"}),
        )
        .await;
    assert_eq!(other.status, 201);
    assert_eq!(fake.count(), 31);
    assert_eq!(fake.stats().faults, 5);
}

#[tokio::test]
async fn a_lost_write_answer_leaves_the_write_applied() {
    let fake = bare_fake().await;
    let c = Client::new(&fake);
    fake.lose_write_answers(1, LostAnswer::Status(502));
    let a = c
        .post(
            &records_path(),
            json!({"type": "A", "name": "www", "data": "192.0.2.1"}),
        )
        .await;
    assert_eq!(a.status, 502);
    fake.wait_answers_lost(1).await;
    assert_eq!(fake.count(), 1, "applied although the answer was lost");
    // Reads are never lost.
    fake.lose_write_answers(1, LostAnswer::Status(502));
    assert_eq!(c.get(&records_path()).await.status, 200);

    // A hung answer: the client gives up, the delete was done all the same.
    let id = fake.records()[0].id;
    let impatient = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    fake.lose_write_answers(1, LostAnswer::Hang);
    let r = impatient
        .delete(format!("{}{}/{id}", fake.base_url(), records_path()))
        .bearer_auth(TOKEN)
        .send()
        .await;
    assert!(r.is_err(), "no answer expected: {r:?}");
    fake.wait_answers_lost(2).await;
    assert_eq!(fake.count(), 0);
    assert_eq!(fake.stats().answers_lost, 2);
    fake.shutdown();
}

#[tokio::test]
async fn counters_count_and_can_be_awaited_and_reset() {
    let fake = bare_fake().await;
    let c = Client::new(&fake);
    c.get(&format!("/domains/{DOMAIN}")).await;
    c.get(&records_path()).await;
    c.post(
        &records_path(),
        json!({"type": "A", "name": "x", "data": "192.0.2.1"}),
    )
    .await;
    fake.wait_stats(|s| s.create == 1).await;
    assert_eq!(
        fake.stats(),
        DoStats {
            total: 3,
            domains: 1,
            list: 1,
            create: 1,
            ..DoStats::default()
        }
    );
    fake.reset_stats();
    assert_eq!(fake.stats(), DoStats::default());
}
