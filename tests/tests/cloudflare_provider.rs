//! Integration tests of the Cloudflare provider client against the fake Cloudflare API on
//! loopback: whole-zone listings (paging, capped and refused page sizes, failing pages),
//! batched writes and their fallback to single calls, the error-code mapping as gRPC codes,
//! retries on 429 and 5xx, the client-side budget, and that the token never leaks.
//!
//! These tests must never reach anything but 127.0.0.1 and must never wait long: backoff is
//! 1 ms and the fake's Retry-After is 0.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cache_service::provider::cloudflare::{CloudflareConfig, CloudflareProvider};
use cache_service::provider::{DnsProvider, MANAGED_COMMENT, ProviderError, WriteOp, WriteResult};
use trafego_proto::validate::{Hostname, RecordSpec, ValidRecordInput};
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions, FakeRecord, LostAnswer};

const TOKEN: &str = "cf-secret-token-7Hq2Lx9Vb";
const ZONE: &str = "example.com";

fn zone() -> Hostname {
    Hostname::parse("zone", ZONE).unwrap()
}

async fn start(opts: FakeOptions) -> FakeCloudflare {
    FakeCloudflare::start(opts).await.expect("fake starts")
}

async fn fake() -> FakeCloudflare {
    start(FakeOptions::new(TOKEN, ZONE)).await
}

/// A config for tests: fast backoff, short timeouts, the zone looked up by name.
fn config(fake: &FakeCloudflare) -> CloudflareConfig {
    let mut c = CloudflareConfig::new(&fake.base_url(), TOKEN, zone());
    c.backoff_base = Duration::from_millis(1);
    c.backoff_max = Duration::from_millis(5);
    c.request_timeout = Duration::from_secs(10);
    c
}

fn provider(cfg: CloudflareConfig) -> CloudflareProvider {
    CloudflareProvider::new(cfg).expect("provider builds")
}

fn seed(fake: &FakeCloudflare, n: usize) -> Vec<String> {
    let rs = (0..n)
        .map(|i| {
            FakeRecord::new(
                "A",
                &format!("h{i}.{ZONE}"),
                &format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
            )
        })
        .collect();
    fake.insert_many(rs)
}

fn input(rtype: &str, name: &str, content: &str, priority: Option<u32>) -> ValidRecordInput {
    ValidRecordInput {
        spec: RecordSpec::new("", rtype, name, content, 300, false, priority).unwrap(),
        comment: String::new(),
    }
}

fn create(name: &str, content: &str) -> WriteOp {
    WriteOp::Create(input("A", name, content, None))
}

fn op_code(r: &WriteResult) -> Option<tonic::Code> {
    r.as_ref().err().map(|e| e.code())
}

fn err_code(r: Result<impl std::fmt::Debug, ProviderError>) -> (tonic::Code, String) {
    let e = r.expect_err("expected an error");
    let s = tonic::Status::from(e.clone());
    (s.code(), e.to_string())
}

// ---------------------------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_12000_record_zone_is_read_whole_in_3_pages() {
    let fake = fake().await;
    let ids = seed(&fake, 12_000);
    let p = provider(config(&fake));
    let listing = p.list().await.unwrap();
    assert_eq!(listing.records.len(), 12_000);
    // The zone lookup plus 3 pages of 5000.
    assert_eq!(listing.requests, 4);
    let st = fake.stats();
    assert_eq!((st.zones, st.list), (1, 3));
    let mut got: Vec<&str> = listing.records.iter().map(|r| r.id.as_str()).collect();
    got.sort_unstable();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(got, want);
    let r = &listing.records[0];
    assert_eq!(r.rtype, "A");
    assert!(r.name.ends_with(".example.com"));
    assert_eq!(r.comment, "");

    // The zone id is remembered: the next listing is pages only.
    let again = p.list().await.unwrap();
    assert_eq!(again.requests, 3);
    assert_eq!(fake.stats().zones, 1);
    assert_eq!(p.requests_made(), 7);
}

#[tokio::test]
async fn a_100000_record_zone_is_read_whole() {
    let fake = fake().await;
    seed(&fake, 100_000);
    let mut cfg = config(&fake);
    cfg.zone_id = Some(fake.zone_id());
    let p = provider(cfg);
    let t0 = Instant::now();
    let listing = p.list().await.unwrap();
    let took = t0.elapsed();
    assert_eq!(listing.records.len(), 100_000);
    assert_eq!(listing.requests, 20);
    assert!(took < Duration::from_secs(60), "took {took:?}");
    eprintln!("100,000 records listed in {took:?}");
}

#[tokio::test]
async fn a_capped_page_size_is_followed_through_more_pages() {
    let mut opts = FakeOptions::new(TOKEN, ZONE);
    opts.max_per_page = 1000;
    let fake = start(opts).await;
    seed(&fake, 12_000);
    let p = provider(config(&fake));
    let listing = p.list().await.unwrap();
    assert_eq!(listing.records.len(), 12_000);
    assert_eq!(fake.stats().list, 12);
    assert_eq!(listing.requests, 13);
}

#[tokio::test]
async fn a_refused_page_size_is_halved() {
    let mut opts = FakeOptions::new(TOKEN, ZONE);
    opts.max_per_page = 1000;
    opts.refuse_over_max_per_page = true;
    let fake = start(opts).await;
    seed(&fake, 12_000);
    let p = provider(config(&fake));
    let listing = p.list().await.unwrap();
    assert_eq!(listing.records.len(), 12_000);
    // 5000, 2500 and 1250 refused; 625 a page: 20 pages.
    let st = fake.stats();
    assert_eq!(st.list, 3 + 20);
    assert_eq!(listing.requests, 1 + 3 + 20);
}

#[tokio::test]
async fn a_page_size_refused_down_to_100_fails_the_listing() {
    let mut opts = FakeOptions::new(TOKEN, ZONE);
    opts.max_per_page = 50;
    opts.refuse_over_max_per_page = true;
    let fake = start(opts).await;
    seed(&fake, 10);
    let p = provider(config(&fake));
    let (code, msg) = err_code(p.list().await);
    assert_eq!(code, tonic::Code::InvalidArgument, "{msg}");
    assert!(msg.contains("per_page must be at most 50"), "{msg}");
    // 5000, 2500, 1250, 625, 312, 156, 100.
    assert_eq!(fake.stats().list, 7);
}

#[tokio::test]
async fn a_page_failing_with_5xx_fails_the_whole_listing() {
    let mut opts = FakeOptions::new(TOKEN, ZONE);
    opts.max_per_page = 1000;
    let fake = start(opts).await;
    seed(&fake, 5_000);
    fake.fail_list_page(3, 503);
    let mut cfg = config(&fake);
    cfg.max_retries = 3;
    let p = provider(cfg);
    let (code, msg) = err_code(p.list().await);
    assert_eq!(code, tonic::Code::Unavailable, "{msg}");
    assert!(msg.contains("GET /client/v4/zones/"), "{msg}");
    assert!(msg.contains("503"), "{msg}");
    assert!(msg.contains("4 attempts"), "{msg}");
    assert!(p.stats().retries >= 3);

    // Once the fault clears, the same provider reads the zone whole.
    fake.clear_faults();
    assert_eq!(p.list().await.unwrap().records.len(), 5_000);
}

#[tokio::test]
async fn a_5xx_that_clears_is_ridden_out() {
    let fake = fake().await;
    seed(&fake, 7_000);
    let p = provider(config(&fake));
    fake.fail_next(3, 502);
    let listing = p.list().await.unwrap();
    assert_eq!(listing.records.len(), 7_000);
    // 3 failed attempts, the zone lookup and 2 pages.
    assert_eq!(listing.requests, 6);
    let st = p.stats();
    assert_eq!(st.retries, 3);
    assert_eq!(st.errors, 0);
    assert_eq!(fake.stats().faults, 3);
}

#[tokio::test]
async fn a_429_storm_is_ridden_out() {
    let fake = fake().await;
    seed(&fake, 6_000);
    let p = provider(config(&fake));
    fake.rate_limit_next(5, 0);
    let listing = p.list().await.unwrap();
    assert_eq!(listing.records.len(), 6_000);
    assert_eq!(listing.requests, 3 + 5);
    assert_eq!(p.stats().rate_limited, 5);
    assert_eq!(fake.stats().rate_limited, 5);
}

#[tokio::test]
async fn a_retry_after_of_one_second_is_honoured() {
    let fake = fake().await;
    seed(&fake, 3);
    let mut cfg = config(&fake);
    cfg.zone_id = Some(fake.zone_id());
    let p = provider(cfg);
    fake.rate_limit_next(1, 1);
    let t0 = Instant::now();
    assert_eq!(p.list().await.unwrap().records.len(), 3);
    assert!(
        t0.elapsed() >= Duration::from_millis(950),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn the_zone_is_found_by_name_or_reported_missing() {
    let fake = fake().await;
    seed(&fake, 3);
    let p = provider(config(&fake));
    assert_eq!(p.stats().requests, 0, "nothing is sent at construction");
    assert_eq!(p.list().await.unwrap().records.len(), 3);
    assert_eq!(fake.stats().zones, 1);

    let mut cfg = config(&fake);
    cfg.zone = Hostname::parse("zone", "other.example").unwrap();
    let p = provider(cfg);
    let (code, msg) = err_code(p.list().await);
    assert_eq!(code, tonic::Code::NotFound);
    assert!(msg.contains("zone other.example not found"), "{msg}");
    let (results, requests) = p.apply(vec![create("a.other.example", "192.0.2.1")]).await;
    assert_eq!(requests, 1, "only the failed zone lookup");
    assert_eq!(op_code(&results[0]), Some(tonic::Code::NotFound));

    // A configured zone id that the provider does not know.
    let mut cfg = config(&fake);
    cfg.zone_id = Some("0123456789abcdef0123456789abcdef".into());
    let (code, msg) = err_code(provider(cfg).list().await);
    assert_eq!(code, tonic::Code::NotFound, "{msg}");
}

#[tokio::test]
async fn an_empty_zone_lists_empty() {
    let fake = fake().await;
    let p = provider(config(&fake));
    let listing = p.list().await.unwrap();
    assert!(listing.records.is_empty());
    assert_eq!(listing.requests, 2);
}

#[tokio::test]
async fn listed_records_are_normalised() {
    let fake = fake().await;
    let mut mx = FakeRecord::new("MX", "Mail.Example.COM.", "MX1.Example.com.");
    mx.priority = Some(10);
    mx.ttl = 300;
    mx.comment = Some("hand made".into());
    let mx = fake.insert(mx);
    let v6 = fake.insert(FakeRecord::new("AAAA", "v6.example.com", "2001:DB8:0:0::1"));
    let odd = fake.insert(FakeRecord::new("A", "odd.example.com", "not an address"));
    let txt = fake.insert(FakeRecord::new("txt", "t.example.com", "Some Text"));
    let p = provider(config(&fake));
    let listing = p.list().await.unwrap();
    let get = |id: &str| listing.records.iter().find(|r| r.id == id).unwrap().clone();
    let r = get(&mx);
    assert_eq!(
        (r.rtype.as_str(), r.name.as_str()),
        ("MX", "mail.example.com")
    );
    assert_eq!(r.content, "mx1.example.com");
    assert_eq!((r.ttl, r.priority), (300, Some(10)));
    assert_eq!(r.comment, "hand made");
    let r = get(&v6);
    assert_eq!(r.content, "2001:db8::1");
    // Read back, it fingerprints like the same record asked for (TTL 1 as seeded).
    let asked =
        RecordSpec::new("", "AAAA", "v6.example.com", "2001:db8::1", 1, false, None).unwrap();
    assert_eq!(r.fingerprint(), asked.fingerprint());
    assert_eq!(
        get(&odd).content,
        "not an address",
        "unparseable content is kept as is"
    );
    let r = get(&txt);
    assert_eq!((r.rtype.as_str(), r.content.as_str()), ("TXT", "Some Text"));
}

// ---------------------------------------------------------------------------------------
// Writes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn creates_go_in_batches_of_200() {
    let fake = fake().await;
    let p = provider(config(&fake));
    let ops: Vec<WriteOp> = (0..450)
        .map(|i| {
            create(
                &format!("n{i}.example.com"),
                &format!("192.0.2.{}", i % 250),
            )
        })
        .collect();
    let (results, requests) = p.apply(ops).await;
    assert_eq!(results.len(), 450);
    assert_eq!(requests, 1 + 3);
    let st = fake.stats();
    assert_eq!((st.batch, st.batch_ops, st.create), (3, 450, 0));
    assert_eq!(fake.count(), 450);
    for (i, r) in results.iter().enumerate() {
        let rec = r.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(rec.name, format!("n{i}.example.com"));
        assert_eq!(rec.content, format!("192.0.2.{}", i % 250));
        assert_eq!(rec.comment, MANAGED_COMMENT);
        assert_eq!(rec.ttl, 300);
        assert_eq!(fake.get(&rec.id).unwrap().name, rec.name);
    }
}

#[tokio::test]
async fn ten_thousand_creates_take_51_requests() {
    let fake = fake().await;
    let p = provider(config(&fake));
    let ops: Vec<WriteOp> = (0..10_000)
        .map(|i| create(&format!("n{i}.example.com"), "192.0.2.1"))
        .collect();
    let (results, requests) = p.apply(ops).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(requests, 51);
    assert_eq!(fake.count(), 10_000);
}

#[tokio::test]
async fn mixed_writes_map_back_to_their_ops_in_order() {
    let fake = fake().await;
    let ids = seed(&fake, 4);
    let p = provider(config(&fake));
    let mut mx = input("MX", "example.com", "mail.example.com", Some(10));
    mx.comment = "mine".into();
    let ops = vec![
        create("new1.example.com", "192.0.2.1"),
        WriteOp::Delete { id: ids[0].clone() },
        WriteOp::Update {
            id: ids[1].clone(),
            input: input("A", "h1.example.com", "192.0.2.99", None),
        },
        WriteOp::Create(mx),
        WriteOp::Delete { id: ids[2].clone() },
        WriteOp::Create(input(
            "SRV",
            "_sip._tcp.example.com",
            "5 5060 sip.example.com",
            Some(20),
        )),
    ];
    let (results, requests) = p.apply(ops).await;
    assert_eq!(requests, 2);
    assert_eq!(fake.stats().batch, 1);
    let rec = |i: usize| results[i].as_ref().unwrap().clone();
    assert_eq!(rec(0).unwrap().name, "new1.example.com");
    assert_eq!(rec(1), None);
    let updated = rec(2).unwrap();
    assert_eq!(
        (updated.id.as_str(), updated.content.as_str()),
        (ids[1].as_str(), "192.0.2.99")
    );
    let mx = rec(3).unwrap();
    assert_eq!(
        (mx.rtype.as_str(), mx.priority, mx.comment.as_str()),
        ("MX", Some(10), "mine")
    );
    assert_eq!(rec(4), None);
    let srv = rec(5).unwrap();
    assert_eq!(
        (srv.content.as_str(), srv.priority),
        ("5 5060 sip.example.com", Some(20))
    );
    assert!(fake.get(&ids[0]).is_none());
    assert!(fake.get(&ids[2]).is_none());
    assert_eq!(fake.get(&ids[1]).unwrap().content, "192.0.2.99");
    assert_eq!(fake.count(), 4 - 2 + 3);
}

#[tokio::test]
async fn a_single_write_uses_the_single_endpoint() {
    let fake = fake().await;
    let ids = seed(&fake, 1);
    let mut cfg = config(&fake);
    cfg.zone_id = Some(fake.zone_id());
    let p = provider(cfg);
    let (r, n) = p.apply(vec![create("one.example.com", "192.0.2.1")]).await;
    assert_eq!(n, 1);
    assert_eq!(
        r[0].as_ref().unwrap().as_ref().unwrap().comment,
        MANAGED_COMMENT
    );
    let (r, _) = p
        .apply(vec![WriteOp::Update {
            id: ids[0].clone(),
            input: input("A", "h0.example.com", "192.0.2.7", None),
        }])
        .await;
    assert_eq!(
        r[0].as_ref().unwrap().as_ref().unwrap().content,
        "192.0.2.7"
    );
    let (r, _) = p.apply(vec![WriteOp::Delete { id: ids[0].clone() }]).await;
    assert_eq!(r[0], Ok(None));
    let st = fake.stats();
    assert_eq!((st.create, st.update, st.delete, st.batch), (1, 1, 1, 0));
    let (r, n) = p.apply(Vec::new()).await;
    assert!(r.is_empty());
    assert_eq!(n, 0);
}

#[tokio::test]
async fn a_batch_refused_as_a_whole_falls_back_to_single_calls() {
    let fake = fake().await;
    let ids = seed(&fake, 2);
    fake.fail_writes_for_name("bad.example.com", 9005, 400);
    let p = provider(config(&fake));
    let ops = vec![
        create("good1.example.com", "192.0.2.1"),
        create("bad.example.com", "192.0.2.2"),
        WriteOp::Delete { id: ids[0].clone() },
        create("good2.example.com", "192.0.2.3"),
    ];
    let (results, requests) = p.apply(ops).await;
    // Zone lookup, the refused batch, then one call per op.
    assert_eq!(requests, 1 + 1 + 4);
    let st = fake.stats();
    assert_eq!((st.batch, st.create, st.delete), (1, 3, 1));
    assert!(results[0].as_ref().unwrap().is_some());
    assert_eq!(op_code(&results[1]), Some(tonic::Code::InvalidArgument));
    assert_eq!(results[2], Ok(None));
    assert!(results[3].as_ref().unwrap().is_some());
    let msg = results[1].as_ref().unwrap_err().to_string();
    assert!(
        msg.contains("Injected failure for bad.example.com"),
        "{msg}"
    );
    assert_eq!(fake.count(), 2 - 1 + 2);

    // A batch endpoint that refuses everything: every op still gets its own result.
    fake.clear_faults();
    fake.refuse_batches(true);
    fake.reset_stats();
    let ops = vec![
        create("x1.example.com", "192.0.2.1"),
        create("x1.example.com", "192.0.2.1"),
        WriteOp::Delete {
            id: "0000000000000000000000000000dead".into(),
        },
    ];
    let (results, requests) = p.apply(ops).await;
    assert_eq!(requests, 1 + 3);
    assert!(results[0].is_ok());
    assert_eq!(op_code(&results[1]), Some(tonic::Code::AlreadyExists));
    assert_eq!(op_code(&results[2]), Some(tonic::Code::NotFound));
}

#[tokio::test]
async fn a_write_answered_with_5xx_is_reported_unanswered_and_never_resent() {
    let fake = fake().await;
    let mut cfg = config(&fake);
    cfg.zone_id = Some(fake.zone_id());
    cfg.max_retries = 2;
    cfg.batch_size = 3;
    let p = provider(cfg);
    fake.fail_next(100, 500);
    let ops: Vec<WriteOp> = (0..7)
        .map(|i| create(&format!("f{i}.example.com"), "192.0.2.1"))
        .collect();
    let (results, requests) = p.apply(ops).await;
    assert_eq!(results.len(), 7);
    assert!(
        results
            .iter()
            .all(|r| op_code(r) == Some(tonic::Code::Unavailable)),
        "{results:?}"
    );
    // A 5xx to a write may come after the write was applied: the first chunk
    // is sent once and reported unanswered (the cache settles it by looking);
    // later chunks are not sent to a provider in that state.
    assert_eq!(requests, 1);
    assert!(
        matches!(results[0], Err(ProviderError::Unanswered(_))),
        "{:?}",
        results[0]
    );
    assert!(
        results[3..]
            .iter()
            .all(|r| matches!(r, Err(ProviderError::Unavailable(_)))),
        "never sent: {results:?}"
    );
    assert_eq!(fake.count(), 0);
}

#[tokio::test]
async fn a_write_whose_answer_is_lost_is_not_sent_twice() {
    let fake = fake().await;
    let mut cfg = config(&fake);
    cfg.zone_id = Some(fake.zone_id());
    cfg.max_retries = 3;
    let p = provider(cfg);
    fake.lose_write_answers(1, LostAnswer::Status(502));
    let (results, requests) = p
        .apply(vec![
            create("l1.example.com", "192.0.2.1"),
            create("l2.example.com", "192.0.2.1"),
        ])
        .await;
    assert_eq!(requests, 1, "sent once");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(ProviderError::Unanswered(_))))
    );
    // The fake applied it: two records, not four.
    assert_eq!(fake.count(), 2);
    // A targeted read finds them.
    let (held, reqs) = p.lookup("l1.example.com", "A").await.unwrap();
    assert_eq!(reqs, 1);
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].content, "192.0.2.1");
}

// ---------------------------------------------------------------------------------------
// Error mapping
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn cloudflare_error_codes_map_to_grpc_codes() {
    let fake = fake().await;
    fake.insert(FakeRecord::new("A", "taken.example.com", "192.0.2.1"));
    fake.fail_writes_for_name("invalid.example.com", 9021, 400);
    let p = provider(config(&fake));

    // 81057: an identical record exists.
    let (r, _) = p
        .apply(vec![create("taken.example.com", "192.0.2.1")])
        .await;
    assert_eq!(op_code(&r[0]), Some(tonic::Code::AlreadyExists), "{r:?}");
    // 81053: a CNAME where an A record lives.
    let (r, _) = p
        .apply(vec![WriteOp::Create(input(
            "CNAME",
            "taken.example.com",
            "example.net",
            None,
        ))])
        .await;
    assert_eq!(op_code(&r[0]), Some(tonic::Code::AlreadyExists), "{r:?}");
    assert!(r[0].as_ref().unwrap_err().to_string().contains("81053"));
    // 81044: no such record.
    let (r, _) = p
        .apply(vec![WriteOp::Delete {
            id: "0000000000000000000000000000beef".into(),
        }])
        .await;
    assert_eq!(op_code(&r[0]), Some(tonic::Code::NotFound), "{r:?}");
    let (r, _) = p
        .apply(vec![WriteOp::Update {
            id: "0000000000000000000000000000beef".into(),
            input: input("A", "x.example.com", "192.0.2.1", None),
        }])
        .await;
    assert_eq!(op_code(&r[0]), Some(tonic::Code::NotFound), "{r:?}");
    // Validation.
    let (r, _) = p
        .apply(vec![create("invalid.example.com", "192.0.2.1")])
        .await;
    assert_eq!(op_code(&r[0]), Some(tonic::Code::InvalidArgument), "{r:?}");
    assert!(r[0].as_ref().unwrap_err().to_string().contains("9021"));
}

#[tokio::test]
async fn a_wrong_token_is_reported_as_refused_credentials() {
    let fake = fake().await;
    let mut cfg = config(&fake);
    cfg.token = "wrong-token-Pz4".into();
    let p = provider(cfg);
    let (code, msg) = err_code(p.list().await);
    assert_eq!(code, tonic::Code::PermissionDenied, "{msg}");
    assert!(
        msg.contains("the provider refused the credentials"),
        "{msg}"
    );
    assert!(!msg.contains("wrong-token-Pz4"), "{msg}");
    assert!(!msg.contains(TOKEN), "{msg}");
    assert_eq!(p.stats().retries, 0, "refused credentials are not retried");
    let (r, _) = p.apply(vec![create("a.example.com", "192.0.2.1")]).await;
    assert_eq!(
        r[0].as_ref().unwrap_err().code(),
        tonic::Code::PermissionDenied
    );

    // Also with the zone id configured (the refusal comes from the records endpoint).
    let mut cfg = config(&fake);
    cfg.token = "wrong-token-Pz4".into();
    cfg.zone_id = Some(fake.zone_id());
    let (code, _) = err_code(provider(cfg).list().await);
    assert_eq!(code, tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn an_exhausted_429_is_resource_exhausted() {
    let fake = fake().await;
    let mut cfg = config(&fake);
    cfg.max_retries = 2;
    let p = provider(cfg);
    fake.rate_limit_next(100, 0);
    let (code, msg) = err_code(p.list().await);
    assert_eq!(code, tonic::Code::ResourceExhausted, "{msg}");
    assert_eq!(fake.stats().rate_limited, 3);

    // A Retry-After longer than allowed is not waited out.
    fake.rate_limit_next(1, 120);
    let p = provider(config(&fake));
    let t0 = Instant::now();
    let e = p.list().await.unwrap_err();
    assert_eq!(
        e,
        ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(120))
        }
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(p.requests_made(), 1);
}

#[tokio::test]
async fn an_unreachable_provider_is_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg =
        CloudflareConfig::new(&format!("http://127.0.0.1:{port}/client/v4"), TOKEN, zone());
    cfg.backoff_base = Duration::from_millis(1);
    cfg.backoff_max = Duration::from_millis(2);
    cfg.max_retries = 2;
    let p = provider(cfg);
    let (code, msg) = err_code(p.list().await);
    assert_eq!(code, tonic::Code::Unavailable, "{msg}");
    assert!(msg.contains("GET /client/v4/zones"), "{msg}");
    assert!(msg.contains("3 attempts"), "{msg}");
    assert_eq!(p.requests_made(), 3);
    let (r, n) = p.apply(vec![create("a.example.com", "192.0.2.1")]).await;
    assert_eq!(r[0].as_ref().unwrap_err().code(), tonic::Code::Unavailable);
    assert_eq!(n, 3);
}

#[tokio::test]
async fn a_slow_provider_times_out_as_unavailable() {
    let fake = fake().await;
    let mut cfg = config(&fake);
    cfg.request_timeout = Duration::from_millis(100);
    cfg.max_retries = 1;
    let p = provider(cfg);
    fake.set_delay(Duration::from_millis(500));
    let (code, msg) = err_code(p.list().await);
    assert_eq!(code, tonic::Code::Unavailable, "{msg}");
    assert!(msg.contains("timed out"), "{msg}");
}

// ---------------------------------------------------------------------------------------
// The token
// ---------------------------------------------------------------------------------------

/// A tracing writer into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_token_never_shows_in_logs_errors_or_debug() {
    let buf = Buffer::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let fake = fake().await;
    let ids = seed(&fake, 300);
    fake.insert(FakeRecord::new("A", "taken.example.com", "192.0.2.1"));
    let mut cfg = config(&fake);
    cfg.max_retries = 2;
    let p = provider(cfg);
    let mut errors: Vec<String> = Vec::new();

    fake.rate_limit_next(1, 0);
    fake.fail_next(1, 503);
    p.list().await.unwrap();
    fake.fail_list_page(1, 500);
    errors.push(p.list().await.unwrap_err().to_string());
    fake.clear_faults();
    fake.rate_limit_next(10, 0);
    errors.push(p.list().await.unwrap_err().to_string());
    fake.clear_faults();
    let (results, _) = p
        .apply(vec![
            create("taken.example.com", "192.0.2.1"),
            WriteOp::Delete { id: "nope".into() },
            WriteOp::Delete { id: ids[0].clone() },
        ])
        .await;
    errors.extend(
        results
            .iter()
            .filter_map(|r| r.as_ref().err().map(|e| e.to_string())),
    );
    errors.push(format!("{p:?}"));
    errors.push(format!("{:?}", config(&fake)));

    // Wrong credentials: the wrong token is just as secret.
    let mut bad = config(&fake);
    bad.token = "another-secret-Jk3".into();
    let bad = provider(bad);
    errors.push(bad.list().await.unwrap_err().to_string());
    errors.push(format!("{bad:?}"));

    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("retrying"),
        "the subscriber captured the client's logs:\n{logs}"
    );
    assert!(!logs.contains(TOKEN), "token in logs");
    assert!(!logs.contains("another-secret-Jk3"), "token in logs");
    assert!(!logs.contains("Bearer"), "authorization header in logs");
    for e in &errors {
        assert!(
            !e.contains(TOKEN) && !e.contains("another-secret-Jk3"),
            "token in {e}"
        );
    }
    assert!(errors.len() >= 7);
}

// ---------------------------------------------------------------------------------------
// Client-side budget
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_budget_paces_requests_instead_of_collecting_429s() {
    let mut opts = FakeOptions::new(TOKEN, ZONE);
    opts.max_per_page = 1;
    let fake = start(opts).await;
    seed(&fake, 12);
    let mut cfg = config(&fake);
    cfg.zone_id = Some(fake.zone_id());
    cfg.budget_requests = 5;
    cfg.budget_window = Duration::from_millis(200);
    let p = provider(cfg);
    let t0 = Instant::now();
    let listing = p.list().await.unwrap();
    let took = t0.elapsed();
    assert_eq!(listing.records.len(), 12);
    assert_eq!(listing.requests, 12);
    // Requests 1-5 go at once, 6-10 a window later, 11-12 two windows later.
    assert!(took >= Duration::from_millis(400), "took {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert_eq!(fake.stats().rate_limited, 0);
    assert!(p.stats().budget_waits > 0, "{:?}", p.stats());
}

#[tokio::test]
async fn a_budget_wait_over_the_maximum_is_resource_exhausted() {
    let mut opts = FakeOptions::new(TOKEN, ZONE);
    opts.max_per_page = 1;
    let fake = start(opts).await;
    seed(&fake, 5);
    let mut cfg = config(&fake);
    cfg.zone_id = Some(fake.zone_id());
    cfg.budget_requests = 2;
    cfg.budget_window = Duration::from_secs(10);
    cfg.max_budget_wait = Duration::from_millis(100);
    let p = provider(cfg);
    let t0 = Instant::now();
    let (code, msg) = err_code(p.list().await);
    assert_eq!(code, tonic::Code::ResourceExhausted, "{msg}");
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert_eq!(fake.stats().total, 2);
}
