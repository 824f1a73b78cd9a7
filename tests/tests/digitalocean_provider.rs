//! The DigitalOcean provider against the fake DigitalOcean (a real HTTP
//! server on loopback speaking its API v2): paging by `links.pages.next`,
//! error bodies mapped to gRPC codes, DigitalOcean's two limits and its
//! `ratelimit-*` headers ridden out, lost write answers settled by looking
//! without a duplicate, and bad credentials refused with no secret in any
//! message or log line. The provider is driven directly where its own
//! behaviour is the point, and through a real cache-service where the user's
//! outcome is.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_service::provider::digitalocean::{DigitalOceanConfig, DigitalOceanProvider};
use cache_service::provider::{DnsProvider, ProviderError, WriteOp};
use tonic::Code;
use trafego_common::clock::{Clock, ManualClock};
use trafego_proto::cache::*;
use trafego_proto::validate::{Hostname, RecordSpec, ValidRecordInput};
use trafego_tests::fake_digitalocean::{DoOptions, DoRecord, FakeDigitalOcean, LostAnswer};
use trafego_tests::{cache_client, capture_logs, captured_logs, start_cache};

const TOKEN: &str = "do-provider-test-token-5c0ffee1";
const BAD_TOKEN: &str = "do-provider-wrong-token-deadbeef";
const DOMAIN: &str = "example.com";

fn domain() -> Hostname {
    Hostname::parse("zone", DOMAIN).unwrap()
}

async fn fake_with(f: impl FnOnce(&mut DoOptions)) -> FakeDigitalOcean {
    let mut opts = DoOptions::new(TOKEN, DOMAIN);
    f(&mut opts);
    FakeDigitalOcean::start(opts)
        .await
        .expect("fake digitalocean")
}

async fn fake() -> FakeDigitalOcean {
    fake_with(|_| {}).await
}

fn config(fake: &FakeDigitalOcean) -> DigitalOceanConfig {
    let mut cfg = DigitalOceanConfig::new(&fake.base_url(), TOKEN, domain());
    cfg.backoff_base = Duration::from_millis(5);
    cfg.backoff_max = Duration::from_millis(20);
    cfg
}

fn provider(cfg: DigitalOceanConfig) -> DigitalOceanProvider {
    DigitalOceanProvider::new(cfg).expect("provider")
}

fn seed_a(fake: &FakeDigitalOcean, n: usize) {
    fake.insert_many(
        (0..n)
            .map(|i| DoRecord::new("A", &format!("host-{i:04}"), "192.0.2.1"))
            .collect(),
    );
}

fn input(rtype: &str, name: &str, content: &str, priority: Option<u32>) -> ValidRecordInput {
    ValidRecordInput {
        spec: RecordSpec::new("", rtype, name, content, 300, false, priority).unwrap(),
        comment: String::new(),
    }
}

fn record_input(rtype: &str, name: &str, content: &str) -> RecordInput {
    RecordInput {
        r#type: rtype.into(),
        name: name.into(),
        content: content.into(),
        ttl: 300,
        ..Default::default()
    }
}

fn do_args(fake: &FakeDigitalOcean, token: &str) -> Vec<String> {
    vec![
        "--provider".into(),
        "digitalocean".into(),
        "--do-domain".into(),
        DOMAIN.into(),
        "--do-api-url".into(),
        fake.base_url(),
        "--do-token".into(),
        token.into(),
    ]
}

async fn start_do(args: &[String]) -> trafego_tests::ServiceHandle {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    start_cache(&refs).await
}

// ---------------------------------------------------------------------------------------
// Paging
// ---------------------------------------------------------------------------------------

/// 450 records and the 4 of the apex at DigitalOcean's 200 a page: three
/// pages, each asked for by the page its predecessor's next link named.
#[tokio::test]
async fn a_listing_follows_next_links_to_the_last_page() {
    let fake = fake().await;
    seed_a(&fake, 450);
    let p = provider(config(&fake));
    let listing = p.list().await.expect("list");
    assert_eq!(listing.records.len(), 454);
    assert_eq!(listing.requests, 3);
    assert_eq!(fake.stats().list, 3);
    let mut ids: Vec<&str> = listing.records.iter().map(|r| r.id.as_str()).collect();
    assert!(ids.iter().all(|id| id.bytes().all(|b| b.is_ascii_digit())));
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 454, "no record twice");
    let www = listing
        .records
        .iter()
        .find(|r| r.name == "host-0449.example.com")
        .expect("the last page was read");
    assert_eq!(
        (www.rtype.as_str(), www.content.as_str()),
        ("A", "192.0.2.1")
    );
    let ns: Vec<&str> = listing
        .records
        .iter()
        .filter(|r| r.rtype == "NS")
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(ns, ["example.com"; 3], "the apex is @");
    // Smaller pages: more requests, the same records.
    let mut cfg = config(&fake);
    cfg.per_page = 20;
    let small = provider(cfg).list().await.expect("list");
    assert_eq!(small.records.len(), 454);
    assert_eq!(small.requests, 23);
}

/// A page that fails fails the listing: never a partial one.
#[tokio::test]
async fn a_failing_page_fails_the_whole_listing() {
    let fake = fake().await;
    seed_a(&fake, 450);
    fake.fail_list_page(2, 503);
    let mut cfg = config(&fake);
    cfg.max_retries = 1;
    let e = provider(cfg).list().await.unwrap_err();
    assert!(matches!(e, ProviderError::Unavailable(_)), "{e:?}");
}

/// The targeted read asks for one name and type, fully qualified.
#[tokio::test]
async fn a_lookup_reads_one_name_and_type() {
    let fake = fake().await;
    seed_a(&fake, 300);
    fake.insert(DoRecord::new("TXT", "host-0007", "hello"));
    let p = provider(config(&fake));
    let (held, reqs) = p.lookup("host-0007.example.com", "A").await.unwrap();
    assert_eq!(reqs, 1);
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].name, "host-0007.example.com");
    let (apex, _) = p.lookup("example.com", "NS").await.unwrap();
    assert_eq!(apex.len(), 3);
}

// ---------------------------------------------------------------------------------------
// Writes and error mapping
// ---------------------------------------------------------------------------------------

fn code(
    r: &Result<Option<cache_service::provider::ProviderRecord>, ProviderError>,
) -> Option<Code> {
    r.as_ref().err().map(ProviderError::code)
}

/// Each write lands at the fake in DigitalOcean's form and comes back in the
/// cache's; refusals keep DigitalOcean's words and get their gRPC codes.
#[tokio::test]
async fn writes_land_and_refusals_are_mapped() {
    let fake = fake().await;
    let taken = fake.insert(DoRecord::new("A", "taken", "192.0.2.1"));
    let p = provider(config(&fake));
    let (r, reqs) = p
        .apply(vec![
            WriteOp::Create(input("MX", "example.com", "mail.example.net", Some(10))),
            WriteOp::Create(input(
                "SRV",
                "_sip._tcp.example.com",
                "5 5060 sip.example.net",
                Some(20),
            )),
            WriteOp::Create(input(
                "CAA",
                "example.com",
                "0 issue \"letsencrypt.org\"",
                None,
            )),
        ])
        .await;
    assert_eq!(reqs, 3, "one request per write");
    let recs: Vec<_> = r.into_iter().map(|r| r.unwrap().unwrap()).collect();
    assert_eq!(recs[0].content, "mail.example.net");
    assert_eq!(recs[0].priority, Some(10));
    assert_eq!(recs[1].content, "5 5060 sip.example.net");
    assert_eq!(recs[2].content, "0 issue \"letsencrypt.org\"");
    let srv = fake.get(recs[1].id.parse().unwrap()).unwrap();
    assert_eq!(
        (
            srv.name.as_str(),
            srv.data.as_str(),
            srv.priority,
            srv.weight,
            srv.port
        ),
        (
            "_sip._tcp",
            "sip.example.net",
            Some(20),
            Some(5),
            Some(5060)
        )
    );

    // 422 "Record already exists" and a CNAME beside an A: conflicts.
    let (r, _) = p
        .apply(vec![
            WriteOp::Create(input("A", "taken.example.com", "192.0.2.1", None)),
            WriteOp::Create(input("CNAME", "taken.example.com", "example.net", None)),
        ])
        .await;
    assert_eq!(code(&r[0]), Some(Code::AlreadyExists), "{r:?}");
    assert!(
        r[0].as_ref()
            .unwrap_err()
            .to_string()
            .contains("Record already exists")
    );
    assert_eq!(code(&r[1]), Some(Code::AlreadyExists), "{r:?}");
    // 422 for content DigitalOcean refuses: INVALID_ARGUMENT with its message.
    let (r, _) = p
        .apply(vec![WriteOp::Create(input(
            "CAA",
            "example.com",
            "0 contactemail \"sec@example.com\"",
            None,
        ))])
        .await;
    assert_eq!(code(&r[0]), Some(Code::InvalidArgument), "{r:?}");
    let msg = r[0].as_ref().unwrap_err().to_string();
    assert!(
        msg.contains("Tag must be one of issue, issuewild or iodef"),
        "{msg}"
    );
    assert!(msg.contains("unprocessable_entity"), "{msg}");
    // 404: no such record.
    let (r, _) = p
        .apply(vec![
            WriteOp::Delete {
                id: "999999999".into(),
            },
            WriteOp::Update {
                id: "999999999".into(),
                input: input("A", "x.example.com", "192.0.2.2", None),
            },
        ])
        .await;
    assert_eq!(code(&r[0]), Some(Code::NotFound), "{r:?}");
    assert_eq!(code(&r[1]), Some(Code::NotFound), "{r:?}");
    // An update and a delete of what exists.
    let (r, _) = p
        .apply(vec![WriteOp::Update {
            id: taken.to_string(),
            input: input("A", "taken.example.com", "192.0.2.9", None),
        }])
        .await;
    assert_eq!(
        r[0].as_ref().unwrap().as_ref().unwrap().content,
        "192.0.2.9"
    );
    assert_eq!(fake.get(taken).unwrap().data, "192.0.2.9");
    let (r, _) = p
        .apply(vec![WriteOp::Delete {
            id: taken.to_string(),
        }])
        .await;
    assert_eq!(r[0], Ok(None));
    assert!(fake.get(taken).is_none());
}

/// A domain DigitalOcean does not hold is NOT_FOUND, through cache-service.
#[tokio::test]
async fn an_unknown_domain_is_not_found() {
    let fake = fake().await;
    let mut args = do_args(&fake, TOKEN);
    args[2] = "--zone".into();
    args[3] = "example.org".into();
    let svc = start_do(&args).await;
    let mut c = cache_client(&svc).await;
    let e = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("could not be found"), "{e:?}");
    svc.shutdown().await.unwrap();
}

/// A token DigitalOcean refuses: PERMISSION_DENIED for the refresh and for
/// a write, with DigitalOcean's words and no token in any message or log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_refused_with_no_secret_anywhere() {
    capture_logs();
    let fake = fake().await;
    let dir = trafego_tests::tempdir();
    let file = dir.path().join("do-token");
    std::fs::write(&file, format!("{BAD_TOKEN}\n")).unwrap();
    let mut args = do_args(&fake, TOKEN);
    args.truncate(6);
    args.extend(["--do-token-file".into(), file.display().to_string()]);
    let svc = start_do(&args).await;
    let mut c = cache_client(&svc).await;
    let e = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("Unable to authenticate you"), "{e:?}");
    let w = c
        .create_record(CreateRecordRequest {
            record: Some(record_input("A", "w.example.com", "192.0.2.1")),
        })
        .await
        .unwrap_err();
    assert_eq!(w.code(), Code::PermissionDenied, "{w:?}");
    let st = c
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let logs = captured_logs();
    assert!(logs.contains("cache-service starting"), "logs captured");
    for text in [
        e.message(),
        w.message(),
        &st.last_error,
        &format!("{st:?}"),
        &logs,
    ] {
        assert!(!text.contains(BAD_TOKEN), "{text}");
        assert!(!text.contains(TOKEN), "{text}");
    }
    assert!(fake.stats().unauthorized >= 2);
    assert_eq!(fake.count(), 4, "nothing written");
    svc.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Lost answers
// ---------------------------------------------------------------------------------------

/// A create applied at DigitalOcean whose answer is lost (a 500 after the
/// work was done) is settled by a look: one record, sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_settled_by_looking_without_a_duplicate() {
    let fake = fake().await;
    let svc = start_do(&do_args(&fake, TOKEN)).await;
    let mut c = cache_client(&svc).await;
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    fake.reset_stats();
    fake.lose_write_answers(1, LostAnswer::Status(500));
    let rec = c
        .create_record(CreateRecordRequest {
            record: Some(record_input("A", "lost.example.com", "192.0.2.7")),
        })
        .await
        .expect("settled as applied")
        .into_inner()
        .record
        .unwrap();
    let held: Vec<DoRecord> = fake
        .records()
        .into_iter()
        .filter(|r| r.name == "lost")
        .collect();
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(rec.record_id, held[0].id.to_string());
    let s = fake.stats();
    assert_eq!((s.create, s.answers_lost), (1, 1), "sent once: {s:?}");
    assert!(s.list >= 1, "looked: {s:?}");
    svc.shutdown().await.unwrap();
}

/// A create refused with a 500 before it was applied: the look finds
/// nothing, so it is sent again, once, and lands once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_not_applied_is_sent_again_only_after_a_look() {
    let fake = fake().await;
    let svc = start_do(&do_args(&fake, TOKEN)).await;
    let mut c = cache_client(&svc).await;
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    fake.reset_stats();
    fake.fail_next(1, 500);
    c.create_record(CreateRecordRequest {
        record: Some(record_input("A", "again.example.com", "192.0.2.8")),
    })
    .await
    .expect("applied on the second send");
    assert_eq!(
        fake.records().iter().filter(|r| r.name == "again").count(),
        1
    );
    let s = fake.stats();
    // The failed first send is counted as a fault, not as a create.
    assert_eq!((s.create, s.faults), (1, 1), "{s:?}");
    assert!(s.list >= 1, "looked before sending again: {s:?}");
    svc.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------

/// DigitalOcean says, in `ratelimit-remaining: 0` and `ratelimit-reset`,
/// that the hour is spent: the provider sends nothing more until then and
/// fails the listing as rate limited (RESOURCE_EXHAUSTED) at once, without
/// drawing a single 429.
#[tokio::test]
async fn a_spent_hour_in_the_headers_holds_every_request() {
    let fake = fake_with(|o| o.hourly_limit = 3).await;
    seed_a(&fake, 90);
    let mut cfg = config(&fake);
    cfg.per_page = 20;
    let p = provider(cfg);
    let t = Instant::now();
    let e = p.list().await.unwrap_err();
    assert!(
        matches!(e, ProviderError::RateLimited { retry_after: Some(d) } if d > Duration::from_secs(3000)),
        "{e:?}"
    );
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(t.elapsed() < Duration::from_secs(5), "failed at once");
    let s = fake.stats();
    assert_eq!((s.total, s.rate_limited), (3, 0), "{s:?}");
    // A write meets the same hold, unsent.
    let (r, reqs) = p
        .apply(vec![WriteOp::Create(input(
            "A",
            "x.example.com",
            "192.0.2.1",
            None,
        ))])
        .await;
    assert_eq!(reqs, 0);
    assert!(
        matches!(r[0], Err(ProviderError::RateLimited { .. })),
        "{r:?}"
    );
    assert_eq!(fake.stats().total, 3);
}

/// The client-side hourly budget (DO_RATE_LIMIT) holds requests before
/// DigitalOcean has to refuse them.
#[tokio::test]
async fn the_client_side_hourly_budget_is_kept() {
    let fake = fake().await;
    seed_a(&fake, 90);
    let mut cfg = config(&fake);
    cfg.per_page = 20;
    cfg.hourly_limit = 2;
    let e = provider(cfg).list().await.unwrap_err();
    assert!(matches!(e, ProviderError::RateLimited { .. }), "{e:?}");
    assert_eq!(fake.stats().total, 2);
}

/// DigitalOcean's burst limit (requests in the last minute, counted on the
/// fake's clock) answers 429 with Retry-After: the provider waits it out and
/// the listing completes whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_burst_limit_is_ridden_out_honouring_retry_after() {
    let clock = ManualClock::new(1_700_000_000_000);
    let fake = {
        let c = clock.clone();
        fake_with(move |o| {
            o.minute_limit = 4;
            o.clock = Arc::new(c);
        })
        .await
    };
    seed_a(&fake, 50);
    let mut cfg = config(&fake);
    cfg.per_page = 20;
    cfg.clock = Arc::new(clock.clone());
    let p = provider(cfg);
    assert_eq!(p.list().await.unwrap().requests, 3);
    // 59.5 s on, the three requests still count: the fifth in the minute is refused.
    clock.advance(Duration::from_millis(59_500));
    let mover = {
        let (fake, clock) = (fake.clone(), clock.clone());
        tokio::spawn(async move {
            fake.wait_stats(|s| s.rate_limited >= 1).await;
            clock.advance(Duration::from_secs(1));
        })
    };
    let t = Instant::now();
    let listing = p.list().await.expect("ridden out");
    assert_eq!(listing.records.len(), 54);
    assert_eq!(listing.requests, 4, "three pages and one retry");
    assert!(t.elapsed() >= Duration::from_secs(1), "waited Retry-After");
    assert_eq!(fake.stats().rate_limited, 1);
    mover.await.unwrap();
    assert!(clock.now_ms() > 1_700_000_060_000);
}
