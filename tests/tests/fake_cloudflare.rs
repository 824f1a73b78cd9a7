//! Integration tests of the fake Cloudflare provider itself: real HTTP over loopback
//! (a tiny HTTP/1.1 client on a tokio `TcpStream`, one connection per request) checking
//! that the fake answers like Cloudflare API v4 does: authentication, zone lookup,
//! pagination and its caps, validation errors, atomic batches, fault injection and the
//! request counters the other tests rely on.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions, FakeRecord, FakeStats};

const TOKEN: &str = "test-token";
const ZONE: &str = "example.com";

/// One parsed HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first Cloudflare error code of an error envelope.
    fn code(&self) -> u64 {
        assert_eq!(self.body["success"], json!(false), "{:?}", self.body);
        self.body["errors"][0]["code"]
            .as_u64()
            .unwrap_or_else(|| panic!("no error code in {:?}", self.body))
    }

    fn result(&self) -> &Value {
        assert_eq!(self.status, 200, "{:?}", self.body);
        assert_eq!(self.body["success"], json!(true), "{:?}", self.body);
        &self.body["result"]
    }
}

/// Minimal HTTP/1.1 client for the fake: `path` is relative to `/client/v4`.
struct Client {
    host: String,
    token: Option<String>,
}

impl Client {
    fn new(fake: &FakeCloudflare) -> Self {
        Self::with_token(fake, Some(TOKEN))
    }

    fn with_token(fake: &FakeCloudflare, token: Option<&str>) -> Self {
        let base = fake.base_url();
        let host = base
            .strip_prefix("http://")
            .and_then(|rest| rest.strip_suffix("/client/v4"))
            .expect("base url shape")
            .to_string();
        Self {
            host,
            token: token.map(str::to_string),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        self.send("GET", path, None).await
    }

    async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        parse_answer(&self.send_raw(method, path, body).await)
    }

    /// The raw bytes of the answer (status line, headers and body).
    async fn send_raw(&self, method: &str, path: &str, body: Option<&Value>) -> Vec<u8> {
        let body = body.map(|b| serde_json::to_vec(b).expect("json body"));
        let mut req = format!(
            "{method} /client/v4{path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.host
        );
        if let Some(t) = &self.token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(b) = &body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        let mut stream = TcpStream::connect(&self.host).await.expect("connect");
        stream.write_all(req.as_bytes()).await.expect("write");
        if let Some(b) = &body {
            stream.write_all(b).await.expect("write body");
        }
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read");
        raw
    }
}

fn end_of_headers(raw: &[u8]) -> usize {
    raw.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers")
}

fn parse_answer(raw: &[u8]) -> Answer {
    let split = end_of_headers(raw);
    let head = std::str::from_utf8(&raw[..split]).expect("utf8 head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!("bad json ({e}): {}", String::from_utf8_lossy(&body));
        })
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&data[..eol]).expect("chunk size");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
}

async fn start() -> FakeCloudflare {
    start_with(FakeOptions::new(TOKEN, ZONE)).await
}

async fn start_with(opts: FakeOptions) -> FakeCloudflare {
    FakeCloudflare::start(opts).await.expect("start fake")
}

fn records_path(fake: &FakeCloudflare) -> String {
    format!("/zones/{}/dns_records", fake.zone_id())
}

fn ids_of(result: &Value) -> Vec<String> {
    result
        .as_array()
        .expect("array result")
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_string())
        .collect()
}

#[tokio::test]
async fn refuses_missing_or_wrong_token() {
    let fake = start().await;
    let missing = Client::with_token(&fake, None).get("/zones").await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.code(), 6003);
    assert_eq!(
        missing.body["errors"][0]["message"],
        "Invalid request headers"
    );

    let wrong = Client::with_token(&fake, Some("nope"))
        .get(&records_path(&fake))
        .await;
    assert_eq!(wrong.status, 403);
    assert_eq!(wrong.code(), 9109);
    assert_eq!(wrong.body["errors"][0]["message"], "Invalid access token");

    // Auth comes before fault injection: refused requests do not consume a rate limit.
    fake.rate_limit_next(1, 1);
    let still_refused = Client::with_token(&fake, Some("nope")).get("/zones").await;
    assert_eq!(still_refused.status, 403);
    assert_eq!(Client::new(&fake).get("/zones").await.status, 429);

    let stats = fake.stats();
    assert_eq!(stats.unauthorized, 3);
    assert_eq!(stats.rate_limited, 1);
    assert_eq!(stats.total, 4);
    assert_eq!(stats.zones, 0);
}

#[tokio::test]
async fn looks_up_the_zone() {
    let fake = start().await;
    let c = Client::new(&fake);
    assert_eq!(fake.zone_id().len(), 32);
    assert!(fake.base_url().starts_with("http://127.0.0.1:"));
    assert!(fake.base_url().ends_with("/client/v4"));

    let found = c.get("/zones?name=example.com").await;
    let zones = found.result().as_array().expect("zones");
    assert_eq!(zones.len(), 1);
    assert_eq!(zones[0]["id"], json!(fake.zone_id()));
    assert_eq!(zones[0]["name"], "example.com");
    assert_eq!(zones[0]["status"], "active");
    assert_eq!(found.body["result_info"]["total_count"], 1);

    let none = c.get("/zones?name=other.org").await;
    assert_eq!(none.result(), &json!([]));

    let by_id = c.get(&format!("/zones/{}", fake.zone_id())).await;
    assert_eq!(by_id.result()["name"], "example.com");

    let unknown = c.get("/zones/0123456789abcdef0123456789abcdef").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.code(), 7003);
    let unknown_records = c
        .get("/zones/0123456789abcdef0123456789abcdef/dns_records")
        .await;
    assert_eq!(unknown_records.status, 404);
    assert_eq!(unknown_records.code(), 7003);
    let s = fake.stats();
    assert_eq!((s.zones, s.list), (4, 1));
}

#[tokio::test]
async fn paginates_twelve_thousand_records() {
    let fake = start().await;
    let seeded: Vec<FakeRecord> = (0..12_000)
        .map(|i| {
            FakeRecord::new(
                "A",
                &format!("rec-{i}.example.com"),
                &format!("10.0.{}.{}", i / 250, i % 250 + 1),
            )
        })
        .collect();
    let ids = fake.insert_many(seeded);
    assert_eq!(ids.len(), 12_000);
    assert_eq!(fake.count(), 12_000);
    let c = Client::new(&fake);

    let mut listed = Vec::new();
    for (page, expected) in [(1, 5000), (2, 5000), (3, 2000)] {
        let a = c
            .get(&format!(
                "{}?page={page}&per_page=5000",
                records_path(&fake)
            ))
            .await;
        let info = &a.body["result_info"];
        assert_eq!(info["page"], page);
        assert_eq!(info["per_page"], 5000);
        assert_eq!(info["count"], expected);
        assert_eq!(info["total_count"], 12_000);
        assert_eq!(info["total_pages"], 3);
        listed.extend(ids_of(a.result()));
    }
    // Stable order by id, no duplicates, nothing missing.
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
    let expected: BTreeSet<String> = ids.into_iter().collect();
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), expected);

    let beyond = c
        .get(&format!("{}?page=4&per_page=5000", records_path(&fake)))
        .await;
    assert_eq!(beyond.result(), &json!([]));
    assert_eq!(beyond.body["result_info"]["count"], 0);
    assert_eq!(beyond.body["result_info"]["total_count"], 12_000);
    assert_eq!(beyond.body["result_info"]["total_pages"], 3);

    // Default per_page is Cloudflare's 100.
    let default = c.get(&records_path(&fake)).await;
    assert_eq!(default.body["result_info"]["per_page"], 100);
    assert_eq!(default.body["result_info"]["total_pages"], 120);

    // Exact name filter, both spellings; type filter.
    for key in ["name", "name.exact"] {
        let one = c
            .get(&format!("{}?{key}=rec-42.example.com", records_path(&fake)))
            .await;
        let recs = one.result().as_array().expect("array");
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0]["name"], "rec-42.example.com");
        assert_eq!(recs[0]["content"], "10.0.0.43");
        assert_eq!(recs[0]["zone_id"], json!(fake.zone_id()));
        assert_eq!(recs[0]["type"], "A");
        assert_eq!(recs[0]["ttl"], 1);
        assert_eq!(recs[0]["proxied"], false);
        assert_eq!(recs[0]["tags"], json!([]));
        assert!(recs[0].get("priority").is_none());
    }
    let txt = c.get(&format!("{}?type=TXT", records_path(&fake))).await;
    assert_eq!(txt.body["result_info"]["total_count"], 0);
    assert_eq!(fake.stats().list, 8);
}

#[tokio::test]
async fn caps_or_refuses_large_per_page() {
    let mut opts = FakeOptions::new(TOKEN, ZONE);
    opts.max_per_page = 50;
    let fake = start_with(opts.clone()).await;
    fake.insert_many(
        (0..120)
            .map(|i| FakeRecord::new("TXT", &format!("t{i}.example.com"), "hello"))
            .collect(),
    );
    let c = Client::new(&fake);
    let capped = c
        .get(&format!("{}?per_page=5000&page=3", records_path(&fake)))
        .await;
    let info = &capped.body["result_info"];
    assert_eq!(info["per_page"], 50);
    assert_eq!(info["count"], 20);
    assert_eq!(info["total_pages"], 3);
    assert_eq!(capped.result().as_array().map(Vec::len), Some(20));

    opts.refuse_over_max_per_page = true;
    let strict = start_with(opts).await;
    let c = Client::new(&strict);
    let refused = c
        .get(&format!("{}?per_page=51", records_path(&strict)))
        .await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.code(), 1004);
    assert_eq!(
        refused.body["errors"][0]["message"],
        "per_page must be at most 50"
    );
    let fine = c
        .get(&format!("{}?per_page=50", records_path(&strict)))
        .await;
    assert_eq!(fine.body["result_info"]["per_page"], 50);
}

#[tokio::test]
async fn creates_validates_updates_and_deletes() {
    let fake = start().await;
    let c = Client::new(&fake);
    let path = records_path(&fake);

    let created = c
        .send(
            "POST",
            &path,
            Some(&json!({"type":"A","name":"www","content":"192.0.2.1","ttl":300,"proxied":true,"comment":"owned"})),
        )
        .await;
    let rec = created.result().clone();
    let id = rec["id"].as_str().expect("id").to_string();
    assert_eq!(id.len(), 32);
    assert!(
        id.chars()
            .all(|ch| ch.is_ascii_hexdigit() && !ch.is_ascii_uppercase())
    );
    assert_eq!(rec["name"], "www.example.com");
    assert_eq!(rec["ttl"], 300);
    assert_eq!(rec["proxied"], true);
    assert_eq!(rec["comment"], "owned");
    let stored = fake.get(&id).expect("stored");
    assert_eq!(stored.content, "192.0.2.1");
    assert_eq!(stored.comment.as_deref(), Some("owned"));

    let expect_err = |a: Answer, status: u16, code: u64| {
        assert_eq!(a.status, status, "{:?}", a.body);
        assert_eq!(a.code(), code);
    };
    let dup = json!({"type":"A","name":"www.example.com","content":"192.0.2.1","ttl":1});
    expect_err(c.send("POST", &path, Some(&dup)).await, 400, 81057);
    let cname = json!({"type":"CNAME","name":"www.example.com","content":"target.example.net"});
    expect_err(c.send("POST", &path, Some(&cname)).await, 400, 81053);
    let alias = json!({"type":"CNAME","name":"alias.example.com","content":"www.example.com"});
    let alias_id = c.send("POST", &path, Some(&alias)).await.result()["id"]
        .as_str()
        .expect("id")
        .to_string();
    let a_on_cname = json!({"type":"A","name":"alias.example.com","content":"192.0.2.9"});
    expect_err(c.send("POST", &path, Some(&a_on_cname)).await, 400, 81053);
    let bad_ip = json!({"type":"A","name":"x.example.com","content":"not-an-ip"});
    expect_err(c.send("POST", &path, Some(&bad_ip)).await, 400, 9005);
    let bad_ip6 = json!({"type":"AAAA","name":"x.example.com","content":"192.0.2.1"});
    expect_err(c.send("POST", &path, Some(&bad_ip6)).await, 400, 9006);
    let bad_ttl = json!({"type":"A","name":"x.example.com","content":"192.0.2.1","ttl":5});
    expect_err(c.send("POST", &path, Some(&bad_ttl)).await, 400, 9021);
    let bad_type = json!({"type":"PTR","name":"x.example.com","content":"a.example.com"});
    expect_err(c.send("POST", &path, Some(&bad_type)).await, 400, 1004);
    let mx_without_priority = json!({"type":"MX","name":"example.com","content":"mx.example.com"});
    expect_err(
        c.send("POST", &path, Some(&mx_without_priority)).await,
        400,
        1004,
    );
    let mx = json!({"type":"MX","name":"@","content":"mx.example.com","priority":10});
    assert_eq!(
        c.send("POST", &path, Some(&mx)).await.result()["priority"],
        10
    );
    assert_eq!(fake.count(), 3);

    // PUT replaces everything; PATCH merges.
    let rec_path = format!("{path}/{id}");
    let put = c
        .send(
            "PUT",
            &rec_path,
            Some(&json!({"type":"A","name":"www.example.com","content":"192.0.2.2"})),
        )
        .await;
    assert_eq!(put.result()["content"], "192.0.2.2");
    assert_eq!(put.result()["ttl"], 1);
    assert_eq!(put.result()["proxied"], false);
    assert_eq!(put.result()["comment"], Value::Null);
    let patch = c
        .send("PATCH", &rec_path, Some(&json!({"ttl":120,"comment":"x"})))
        .await;
    assert_eq!(patch.result()["content"], "192.0.2.2");
    assert_eq!(patch.result()["ttl"], 120);
    assert_eq!(patch.result()["comment"], "x");
    assert_eq!(c.get(&rec_path).await.result()["ttl"], 120);
    // Updating into a clash is refused too.
    expect_err(
        c.send(
            "PATCH",
            &format!("{path}/{alias_id}"),
            Some(&json!({"name":"www.example.com"})),
        )
        .await,
        400,
        81053,
    );

    let deleted = c.send("DELETE", &rec_path, None).await;
    assert_eq!(deleted.result(), &json!({"id": id}));
    assert!(fake.get(&id).is_none());
    expect_err(c.get(&rec_path).await, 404, 81044);
    expect_err(c.send("DELETE", &rec_path, None).await, 404, 81044);
    expect_err(
        c.send(
            "PUT",
            &rec_path,
            Some(&json!({"type":"A","name":"www","content":"192.0.2.3"})),
        )
        .await,
        404,
        81044,
    );
    expect_err(
        c.send("PATCH", &rec_path, Some(&json!({"ttl":60}))).await,
        404,
        81044,
    );
    assert_eq!(
        c.get(&rec_path).await.body["errors"][0]["message"],
        "Record does not exist."
    );
    let garbage = c.send("POST", &path, Some(&json!("just a string"))).await;
    assert_eq!(garbage.status, 400);

    let s = fake.stats();
    assert_eq!((s.create, s.update, s.delete, s.get), (12, 5, 2, 3));
}

#[tokio::test]
async fn batch_applies_everything_in_order() {
    let fake = start().await;
    let c = Client::new(&fake);
    let gone = fake.insert(FakeRecord::new("A", "gone.example.com", "192.0.2.1"));
    let patched = fake.insert(FakeRecord::new("A", "patched.example.com", "192.0.2.2"));
    let replaced = fake.insert(FakeRecord::new("TXT", "replaced.example.com", "old"));
    fake.reset_stats();

    let body = json!({
        "deletes": [{"id": gone}],
        "patches": [{"id": patched, "content": "192.0.2.20"}],
        "puts": [{"id": replaced, "type": "TXT", "name": "replaced.example.com", "content": "new", "ttl": 60}],
        // Re-creating the deleted name works because deletes run first.
        "posts": [
            {"type": "A", "name": "gone.example.com", "content": "192.0.2.1"},
            {"type": "CNAME", "name": "fresh", "content": "patched.example.com"}
        ]
    });
    let a = c
        .send(
            "POST",
            &format!("{}/batch", records_path(&fake)),
            Some(&body),
        )
        .await;
    let r = a.result();
    assert_eq!(r["deletes"][0]["id"], json!(gone));
    assert_eq!(r["patches"][0]["content"], "192.0.2.20");
    assert_eq!(r["puts"][0]["content"], "new");
    assert_eq!(r["puts"][0]["ttl"], 60);
    assert_eq!(r["posts"].as_array().map(Vec::len), Some(2));
    assert_eq!(r["posts"][1]["name"], "fresh.example.com");

    assert!(fake.get(&gone).is_none());
    assert_eq!(fake.get(&patched).expect("patched").content, "192.0.2.20");
    assert_eq!(fake.get(&replaced).expect("replaced").content, "new");
    assert_eq!(fake.count(), 4);
    let s = fake.stats();
    assert_eq!((s.total, s.batch, s.batch_ops), (1, 1, 5));
    assert_eq!((s.create, s.update, s.delete), (0, 0, 0));
}

#[tokio::test]
async fn batch_failures_change_nothing() {
    let mut opts = FakeOptions::new(TOKEN, ZONE);
    opts.max_batch = 3;
    let fake = start_with(opts).await;
    let c = Client::new(&fake);
    let batch_path = format!("{}/batch", records_path(&fake));
    let a = fake.insert(FakeRecord::new("A", "a.example.com", "192.0.2.1"));
    let b = fake.insert(FakeRecord::new("A", "b.example.com", "192.0.2.2"));
    let before = fake.records();

    // The last op fails (duplicate of b): the delete and patch before it are undone.
    let dup = json!({
        "deletes": [{"id": a}],
        "patches": [{"id": b, "ttl": 300}],
        "posts": [{"type": "A", "name": "b.example.com", "content": "192.0.2.2"}]
    });
    let failed = c.send("POST", &batch_path, Some(&dup)).await;
    assert_eq!(failed.status, 400);
    assert_eq!(failed.code(), 81057);
    assert_eq!(fake.records(), before);

    // Unknown id in the middle.
    let missing = json!({
        "posts": [{"type": "A", "name": "c.example.com", "content": "192.0.2.3"}],
        "patches": [{"id": "ffffffffffffffffffffffffffffffff", "ttl": 300}]
    });
    let failed = c.send("POST", &batch_path, Some(&missing)).await;
    assert_eq!(failed.code(), 81044);
    assert_eq!(fake.records(), before);

    // Too many operations.
    let too_many = json!({
        "posts": (0..4)
            .map(|i| json!({"type": "TXT", "name": format!("t{i}"), "content": "x"}))
            .collect::<Vec<_>>()
    });
    let failed = c.send("POST", &batch_path, Some(&too_many)).await;
    assert_eq!((failed.status, failed.code()), (400, 1004));
    assert_eq!(fake.records(), before);

    // Refused batches.
    fake.refuse_batches(true);
    let ok = json!({"posts": [{"type": "TXT", "name": "t", "content": "x"}]});
    let failed = c.send("POST", &batch_path, Some(&ok)).await;
    assert_eq!((failed.status, failed.code()), (400, 1004));
    assert_eq!(failed.body["errors"][0]["message"], "batch refused");
    fake.refuse_batches(false);

    // A write fault on one name fails the whole batch with that code and status.
    fake.fail_writes_for_name("b.example.com", 1102, 409);
    let touching_b = json!({
        "posts": [{"type": "TXT", "name": "t", "content": "x"}],
        "deletes": [{"id": b}]
    });
    let failed = c.send("POST", &batch_path, Some(&touching_b)).await;
    assert_eq!((failed.status, failed.code()), (409, 1102));
    assert_eq!(fake.records(), before);
    // ... and single writes to it too, while other names still work.
    let single = c
        .send("DELETE", &format!("{}/{b}", records_path(&fake)), None)
        .await;
    assert_eq!((single.status, single.code()), (409, 1102));
    fake.clear_faults();
    assert_eq!(
        c.send("POST", &batch_path, Some(&touching_b)).await.status,
        200
    );
    assert_eq!(fake.count(), 2);

    let s = fake.stats();
    assert_eq!(s.batch, 6);
    assert_eq!(s.batch_ops, 3 + 2 + 4 + 1 + 2 + 2);
    assert_eq!(s.faults, 3);
}

#[tokio::test]
async fn rate_limits_with_retry_after_then_recovers() {
    let fake = start().await;
    let c = Client::new(&fake);
    fake.rate_limit_next(2, 7);
    for _ in 0..2 {
        let a = c.get(&records_path(&fake)).await;
        assert_eq!(a.status, 429);
        assert_eq!(a.header("retry-after"), Some("7"));
        assert_eq!(a.code(), 971);
        assert_eq!(
            a.body["errors"][0]["message"],
            "Please wait and consider throttling your request speed"
        );
    }
    assert_eq!(c.get(&records_path(&fake)).await.status, 200);

    // Rate limit first, then injected failures, then normal service.
    fake.rate_limit_next(1, 1);
    fake.fail_next(2, 503);
    assert_eq!(c.get("/zones").await.status, 429);
    let failed = c.get("/zones").await;
    assert_eq!(failed.status, 503);
    assert!(failed.code() >= 10000);
    assert!(
        failed.body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("(injected)"))
    );
    assert_eq!(c.get("/zones").await.status, 503);
    assert_eq!(c.get("/zones").await.status, 200);

    let s = fake.stats();
    assert_eq!(s.rate_limited, 3);
    assert_eq!(s.faults, 2);
    assert_eq!(s.list, 1);
    assert_eq!(s.zones, 1);
    assert_eq!(s.total, 7);
}

#[tokio::test]
async fn fails_a_list_page_until_cleared() {
    let fake = start().await;
    fake.insert_many(
        (0..10)
            .map(|i| FakeRecord::new("A", &format!("h{i}.example.com"), "192.0.2.7"))
            .collect(),
    );
    let c = Client::new(&fake);
    let page = |p: u32| format!("{}?page={p}&per_page=5", records_path(&fake));
    fake.fail_list_page(2, 502);
    assert_eq!(c.get(&page(1)).await.status, 200);
    for _ in 0..2 {
        let a = c.get(&page(2)).await;
        assert_eq!(a.status, 502);
        assert_eq!(a.body["success"], false);
    }
    fake.clear_faults();
    assert_eq!(
        c.get(&page(2)).await.result().as_array().map(Vec::len),
        Some(5)
    );
    let s = fake.stats();
    assert_eq!((s.list, s.faults), (4, 2));
}

#[tokio::test]
async fn delays_answers() {
    let fake = start().await;
    let c = Client::new(&fake);
    fake.set_delay(Duration::from_millis(150));
    let t = Instant::now();
    assert_eq!(c.get("/zones").await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
    fake.set_delay(Duration::ZERO);
}

#[tokio::test]
async fn counts_requests_by_kind() {
    let fake = start().await;
    let c = Client::new(&fake);
    let path = records_path(&fake);
    c.get("/zones?name=example.com").await;
    c.get(&path).await;
    let id = c
        .send(
            "POST",
            &path,
            Some(&json!({"type":"TXT","name":"k","content":"v"})),
        )
        .await
        .result()["id"]
        .as_str()
        .expect("id")
        .to_string();
    c.get(&format!("{path}/{id}")).await;
    c.send(
        "PATCH",
        &format!("{path}/{id}"),
        Some(&json!({"content":"w"})),
    )
    .await;
    c.send(
        "POST",
        &format!("{path}/batch"),
        Some(&json!({"deletes":[{"id": id}]})),
    )
    .await;
    Client::with_token(&fake, Some("bad")).get("/zones").await;
    fake.fail_next(1, 500);
    c.get(&path).await;
    assert_eq!(
        fake.stats(),
        FakeStats {
            total: 8,
            zones: 1,
            list: 1,
            get: 1,
            create: 1,
            update: 1,
            delete: 0,
            batch: 1,
            batch_ops: 1,
            rate_limited: 0,
            faults: 1,
            unauthorized: 1,
            answers_lost: 0,
        }
    );
    fake.reset_stats();
    assert_eq!(fake.stats(), FakeStats::default());
}

#[tokio::test]
async fn seeds_and_lists_a_hundred_thousand_records_quickly() {
    let fake = start().await;
    let records: Vec<FakeRecord> = (0..100_000u32)
        .map(|i| {
            FakeRecord::new(
                "A",
                &format!("rec-{i}.example.com"),
                &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
            )
        })
        .collect();
    let t = Instant::now();
    let ids = fake.insert_many(records);
    let seeding = t.elapsed();
    assert_eq!(ids.len(), 100_000);
    assert_eq!(fake.count(), 100_000);
    // Optimized builds seed in a few tens of milliseconds; unoptimized test builds on a
    // busy 2-core machine get slack. Either bound catches an O(n^2) regression (minutes).
    let bound = if cfg!(debug_assertions) {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(1)
    };
    assert!(seeding < bound, "seeding took {seeding:?}");

    // Seeded records are visible, removable and editable "behind the client's back".
    assert!(fake.update_content(&ids[0], "10.255.255.255"));
    assert_eq!(fake.get(&ids[0]).expect("seeded").content, "10.255.255.255");
    assert!(fake.remove(&ids[1]));
    assert!(!fake.remove(&ids[1]));
    assert!(!fake.update_content(&ids[1], "10.0.0.1"));

    // Typed and skipping record contents: building 100k `Value`s would dominate the time.
    #[derive(serde::Deserialize)]
    struct Page {
        success: bool,
        result: Vec<serde::de::IgnoredAny>,
        result_info: Info,
    }
    #[derive(serde::Deserialize)]
    struct Info {
        count: usize,
        total_pages: usize,
    }
    let c = Client::new(&fake);
    let t = Instant::now();
    let mut total = 0;
    for page in 1..=20 {
        let path = format!("{}?page={page}&per_page=5000", records_path(&fake));
        let raw = c.send_raw("GET", &path, None).await;
        assert!(raw.starts_with(b"HTTP/1.1 200"));
        let body = &raw[end_of_headers(&raw) + 4..];
        let page: Page = serde_json::from_slice(body).expect("page");
        assert!(page.success);
        assert_eq!(page.result_info.total_pages, 20);
        assert_eq!(page.result_info.count, page.result.len());
        total += page.result.len();
    }
    assert_eq!(total, 99_999);
    eprintln!(
        "seeding 100k: {seeding:?}; listing 20 pages of 5000: {:?}",
        t.elapsed()
    );
    let all = fake.records();
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
}
