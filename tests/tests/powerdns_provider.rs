//! The PowerDNS provider against a real `pdns_server` (Debian's 4.7, started
//! on loopback by `tests/src/pdns.rs`), through the fault proxy of the
//! conformance backend where a fault must be staged: what it writes resolves
//! with kdig in PowerDNS's content forms; a zone is read whole in one request
//! with disabled records and the SOA left out; a change to one record keeps
//! the rest of its RRset, disabled records included; an RRset changed out of
//! band is a conflict, never overwritten; a 422 is INVALID_ARGUMENT carrying
//! PowerDNS's words; a zone not served is NOT_FOUND saying so; a wrong key is
//! PERMISSION_DENIED with no key in any message or log; rate limits are
//! waited out (a long Retry-After is not); lost answers are settled by a
//! look, never by a second PATCH of an applied change; an unreachable server
//! is UNAVAILABLE. Needs `pdns-server`, `pdns-backend-sqlite3` and
//! `knot-dnsutils`; never skips.

use std::time::{Duration, Instant};

use cache_service::provider::powerdns::{PowerDnsConfig, PowerDnsProvider};
use cache_service::provider::{DnsProvider, ProviderError, WriteOp};
use tonic::Code;
use tonic::transport::Channel;
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::cache::*;
use trafego_proto::validate::{Hostname, RecordSpec, RecordType, ValidRecordInput};
use trafego_tests::conformance::powerdns::{OutOfBand, PDNS_BAD_KEY, PowerDns, Stage};
use trafego_tests::knot::dig_short;
use trafego_tests::{ServiceHandle, cache_client, captured_logs, start_cache_in, tempdir};

struct Running {
    svc: ServiceHandle,
    c: CacheServiceClient<Channel>,
    _dir: tempfile::TempDir,
}

async fn start_with(b: &PowerDns, args: Vec<String>) -> Running {
    let dir = tempdir();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let svc = start_cache_in(dir.path(), &refs).await;
    let c = cache_client(&svc).await;
    let _ = b;
    Running { svc, c, _dir: dir }
}

async fn start(b: &PowerDns) -> Running {
    start_with(b, b.args_with_key(&b.pdns.api_key)).await
}

fn input(rtype: &str, name: &str, content: &str, priority: Option<u32>) -> RecordInput {
    RecordInput {
        r#type: rtype.into(),
        name: name.into(),
        content: content.into(),
        ttl: 300,
        priority,
        ..Default::default()
    }
}

async fn refresh(
    c: &mut CacheServiceClient<Channel>,
) -> Result<RefreshCacheResponse, tonic::Status> {
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

async fn create(
    c: &mut CacheServiceClient<Channel>,
    rec: RecordInput,
) -> Result<DnsRecord, tonic::Status> {
    c.create_record(CreateRecordRequest { record: Some(rec) })
        .await
        .map(|r| r.into_inner().record.expect("record"))
}

async fn cached(c: &mut CacheServiceClient<Channel>, name: &str) -> Vec<DnsRecord> {
    c.list_records(ListRecordsRequest {
        name: name.into(),
        page_size: 1000,
        ..Default::default()
    })
    .await
    .expect("ListRecords")
    .into_inner()
    .records
}

fn set(name: &str, rtype: &str, ttl: u32, records: &[(&str, bool)]) -> OutOfBand {
    (
        name.into(),
        rtype.into(),
        ttl,
        records.iter().map(|(c, d)| (c.to_string(), *d)).collect(),
    )
}

fn key(name: &str, rtype: &str) -> (String, String) {
    (format!("{name}."), rtype.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_provider_writes_resolves() {
    let b = PowerDns::start().await;
    let mut run = start(&b).await;
    let long = format!("{}{}", "a".repeat(250), "b".repeat(100));
    for rec in [
        input("A", "www.example.com", "192.0.2.10", None),
        input("A", "www.example.com", "192.0.2.11", None),
        input("AAAA", "www.example.com", "2001:db8::10", None),
        input("CNAME", "alias.example.com", "Target.Example.NET", None),
        input("MX", "example.com", "mail.example.net", Some(10)),
        input("MX", "nomail.example.com", ".", Some(0)),
        input(
            "SRV",
            "_sip._tcp.example.com",
            "5 5060 sip.example.net",
            Some(20),
        ),
        input("TXT", "txt.example.com", "say \"hi\" \\ there", None),
        input("TXT", "long.example.com", &long, None),
        input("CAA", "example.com", "0 issue \"letsencrypt.org\"", None),
        input("NS", "sub.example.com", "ns1.example.net", None),
    ] {
        create(&mut run.c, rec.clone())
            .await
            .unwrap_or_else(|e| panic!("create {rec:?}: {e:?}"));
    }
    let port = b.pdns.dns_port;
    assert_eq!(
        dig_short(port, "www.example.com", "A").await,
        ["192.0.2.10", "192.0.2.11"]
    );
    assert_eq!(
        dig_short(port, "www.example.com", "AAAA").await,
        ["2001:db8::10"]
    );
    assert_eq!(
        dig_short(port, "alias.example.com", "CNAME").await,
        ["target.example.net."]
    );
    assert_eq!(
        dig_short(port, "example.com", "MX").await,
        ["10 mail.example.net."]
    );
    assert_eq!(dig_short(port, "nomail.example.com", "MX").await, ["0 ."]);
    assert_eq!(
        dig_short(port, "_sip._tcp.example.com", "SRV").await,
        ["20 5 5060 sip.example.net."]
    );
    assert_eq!(
        dig_short(port, "txt.example.com", "TXT").await,
        ["\"say \\\"hi\\\" \\\\ there\""]
    );
    assert_eq!(
        dig_short(port, "long.example.com", "TXT").await,
        [format!(
            "\"{}{}\" \"{}\"",
            "a".repeat(250),
            "b".repeat(5),
            "b".repeat(95)
        )]
    );
    assert_eq!(
        dig_short(port, "example.com", "CAA").await,
        ["0 issue \"letsencrypt.org\""]
    );
    // What was written reads back unchanged: a refresh changes nothing.
    let r = refresh(&mut run.c).await.expect("refresh");
    assert_eq!((r.added, r.changed, r.removed), (0, 0, 0), "{r:?}");
    let txt = cached(&mut run.c, "long.example.com").await;
    assert_eq!(txt[0].content, long);

    // An update moving a record to another name empties the old RRset.
    let a = cached(&mut run.c, "www.example.com").await;
    let one = a.iter().find(|r| r.content == "192.0.2.11").unwrap();
    run.c
        .update_record(UpdateRecordRequest {
            record_id: one.record_id.clone(),
            record: Some(input("A", "moved.example.com", "192.0.2.11", None)),
        })
        .await
        .expect("move");
    assert_eq!(
        dig_short(port, "www.example.com", "A").await,
        ["192.0.2.10"]
    );
    assert_eq!(
        dig_short(port, "moved.example.com", "A").await,
        ["192.0.2.11"]
    );
    run.svc.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_is_read_whole_in_one_request_without_disabled_records() {
    let b = PowerDns::start().await;
    let sets: Vec<_> = (0..2000)
        .map(|i| {
            set(
                &format!("host-{i:04}.example.com"),
                "A",
                120,
                &[("192.0.2.1", false)],
            )
        })
        .chain([set(
            "half.example.com",
            "A",
            60,
            &[("192.0.2.5", false), ("192.0.2.6", true)],
        )])
        .collect();
    b.replace(sets).await;
    let mut run = start(&b).await;
    b.proxy.reset_counts();
    let r = refresh(&mut run.c).await.expect("refresh");
    // 2,000 hosts, the enabled half of `half`, the apex NS; no SOA, no disabled record.
    assert_eq!(r.total, 2002, "{r:?}");
    assert_eq!(r.provider_requests, 1, "{r:?}");
    assert_eq!(b.proxy.counts().get, 1);
    let half = cached(&mut run.c, "half.example.com").await;
    assert_eq!(half.len(), 1, "{half:?}");
    assert_eq!((half[0].content.as_str(), half[0].ttl), ("192.0.2.5", 60));
    assert!(
        cached(&mut run.c, "example.com")
            .await
            .iter()
            .all(|r| r.r#type != "SOA")
    );
    run.svc.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_change_keeps_the_rest_of_the_rrset_and_its_disabled_records() {
    let b = PowerDns::start().await;
    b.replace(vec![set(
        "multi.example.com",
        "A",
        300,
        &[
            ("192.0.2.1", false),
            ("192.0.2.2", false),
            ("192.0.2.9", true),
        ],
    )])
    .await;
    let mut run = start(&b).await;
    refresh(&mut run.c).await.expect("refresh");
    let recs = cached(&mut run.c, "multi.example.com").await;
    let one = recs.iter().find(|r| r.content == "192.0.2.1").unwrap();
    run.c
        .delete_record(DeleteRecordRequest {
            record_id: one.record_id.clone(),
        })
        .await
        .expect("delete one");
    create(
        &mut run.c,
        input("A", "multi.example.com", "192.0.2.3", None),
    )
    .await
    .expect("create one");
    let held = b.rrsets().await;
    let (_, records) = &held[&key("multi.example.com", "A")];
    let mut records = records.clone();
    records.sort();
    assert_eq!(
        records,
        [
            ("192.0.2.2".to_string(), false),
            ("192.0.2.3".to_string(), false),
            ("192.0.2.9".to_string(), true),
        ],
        "the disabled record survives both REPLACEs"
    );
    run.svc.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rrset_changed_out_of_band_is_a_conflict_and_not_overwritten() {
    let b = PowerDns::start().await;
    b.replace(vec![set(
        "shared.example.com",
        "A",
        300,
        &[("192.0.2.1", false)],
    )])
    .await;
    let mut run = start(&b).await;
    refresh(&mut run.c).await.expect("refresh");
    // Someone else adds a record to the RRset after cache-service read it.
    b.replace(vec![set(
        "shared.example.com",
        "A",
        300,
        &[("192.0.2.1", false), ("192.0.2.7", false)],
    )])
    .await;
    let e = create(
        &mut run.c,
        input("A", "shared.example.com", "192.0.2.2", None),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains("changed at PowerDNS"), "{e:?}");
    assert_eq!(
        dig_short(b.pdns.dns_port, "shared.example.com", "A").await,
        ["192.0.2.1", "192.0.2.7"],
        "their record stands, ours was not written"
    );
    // Asked again, the RRset is computed from what PowerDNS holds now.
    create(
        &mut run.c,
        input("A", "shared.example.com", "192.0.2.2", None),
    )
    .await
    .expect("second try");
    assert_eq!(
        dig_short(b.pdns.dns_port, "shared.example.com", "A").await,
        ["192.0.2.1", "192.0.2.2", "192.0.2.7"]
    );
    run.svc.shutdown().await.unwrap();
}

fn provider(b: &PowerDns, key: &str) -> PowerDnsProvider {
    let zone = Hostname::parse("zone", "example.com").unwrap();
    let mut cfg = PowerDnsConfig::new(&b.pdns.api_url, key, zone);
    cfg.http.backoff_base = Duration::from_millis(10);
    cfg.http.backoff_max = Duration::from_millis(50);
    PowerDnsProvider::new(cfg).unwrap()
}

fn valid(rtype: &str, name: &str, content: &str) -> ValidRecordInput {
    ValidRecordInput {
        spec: RecordSpec::new("", rtype, name, content, 300, false, None).unwrap(),
        comment: String::new(),
    }
}

/// Content PowerDNS refuses (validation at cache-service's edge would
/// refuse it first, so the provider is driven directly): INVALID with
/// PowerDNS's own words, and the good changes of the batch still applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_422_is_invalid_with_powerdns_words_and_fails_alone() {
    let b = PowerDns::start().await;
    let p = provider(&b, &b.pdns.api_key);
    let mut bad = valid("A", "bad.example.com", "192.0.2.1");
    bad.spec.content = "not-an-address".into();
    bad.spec.rtype = RecordType::A;
    let ops = vec![
        WriteOp::Create(valid("A", "good-1.example.com", "192.0.2.1")),
        WriteOp::Create(bad),
        WriteOp::Create(valid("TXT", "good-2.example.com", "fine")),
    ];
    let (results, _) = p.apply(ops).await;
    assert!(results[0].is_ok(), "{results:?}");
    assert!(results[2].is_ok(), "{results:?}");
    match &results[1] {
        Err(ProviderError::Invalid(m)) => {
            assert!(
                m.contains("unable to parse IP address") || m.contains("IP address"),
                "{m}"
            );
            assert!(m.contains("HTTP 422"), "{m}");
        }
        other => panic!("{other:?}"),
    }
    let held = b.rrsets().await;
    assert!(held.contains_key(&key("good-1.example.com", "A")));
    assert!(held.contains_key(&key("good-2.example.com", "TXT")));
    assert!(!held.contains_key(&key("bad.example.com", "A")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_not_served_is_not_found_saying_so() {
    let b = PowerDns::start().await;
    let mut args = b.args_with_key(&b.pdns.api_key);
    let zone = args.iter().position(|a| a == "--zone").unwrap();
    args[zone + 1] = "example.org".into();
    let mut run = start_with(&b, args).await;
    let e = refresh(&mut run.c).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("not served"), "{e:?}");
    assert!(e.message().contains("example.org."), "{e:?}");
    run.svc.shutdown().await.unwrap();

    let mut args = b.args_with_key(&b.pdns.api_key);
    args.extend(["--pdns-server-id".into(), "elsewhere".into()]);
    let mut run = start_with(&b, args).await;
    let e = refresh(&mut run.c).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("PDNS_SERVER_ID"), "{e:?}");
    run.svc.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_permission_denied_and_no_key_is_ever_shown() {
    let b = PowerDns::start().await;
    // The right key at work: listed, written, logged at debug level.
    let mut run = start(&b).await;
    refresh(&mut run.c).await.expect("refresh");
    create(&mut run.c, input("A", "ok.example.com", "192.0.2.1", None))
        .await
        .expect("create");
    run.svc.shutdown().await.unwrap();

    let mut run = start_with(&b, b.args_with_key(PDNS_BAD_KEY)).await;
    let e = refresh(&mut run.c).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("PDNS_API_KEY"), "{e:?}");
    let e = create(&mut run.c, input("A", "no.example.com", "192.0.2.1", None))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let st = run
        .c
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let logs = captured_logs();
    assert!(logs.contains("cache-service starting"), "logs are captured");
    for secret in [b.pdns.api_key.as_str(), PDNS_BAD_KEY] {
        for (what, text) in [
            ("refresh error", e.message().to_string()),
            ("status", format!("{st:?}")),
            ("logs", logs.clone()),
        ] {
            assert!(!text.contains(secret), "the key appears in the {what}");
        }
    }
    assert!(!b.rrsets().await.contains_key(&key("no.example.com", "A")));
    run.svc.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_waited_out_but_not_for_too_long() {
    let b = PowerDns::start().await;
    let mut run = start(&b).await;
    refresh(&mut run.c).await.expect("refresh");
    b.proxy.reset_counts();
    b.proxy.stage(Stage::RateLimited {
        count: 2,
        retry_after: 1,
    });
    let t = Instant::now();
    create(
        &mut run.c,
        input("A", "limited.example.com", "192.0.2.1", None),
    )
    .await
    .expect("a write waits the rate limit out");
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "Retry-After honoured: {:?}",
        t.elapsed()
    );
    assert_eq!(
        dig_short(b.pdns.dns_port, "limited.example.com", "A").await,
        ["192.0.2.1"]
    );
    // Two 429s, then the read before the PATCH and the PATCH itself.
    assert_eq!(b.proxy.counts().total, 4, "{:?}", b.proxy.counts());

    b.proxy.stage(Stage::RateLimited {
        count: 1,
        retry_after: 3600,
    });
    let t = Instant::now();
    let e = refresh(&mut run.c).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    run.svc.shutdown().await.unwrap();
}

async fn apply(c: &mut CacheServiceClient<Channel>, changes: Vec<Change>) -> ApplyChangesResponse {
    c.apply_changes(ApplyChangesRequest { changes })
        .await
        .expect("ApplyChanges")
        .into_inner()
}

fn create_change(name: &str, content: &str, id: &str) -> Change {
    Change {
        kind: Some(change::Kind::Create(input("A", name, content, None))),
        change_id: id.into(),
        group: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_answers_are_settled_by_looking_without_a_duplicate() {
    let b = PowerDns::start().await;
    b.replace(vec![set(
        "pair.example.com",
        "A",
        300,
        &[("192.0.2.1", false)],
    )])
    .await;
    let mut run = start(&b).await;
    refresh(&mut run.c).await.expect("refresh");

    // Applied, answer lost: one PATCH, a look, success.
    b.proxy.reset_counts();
    b.proxy.stage(Stage::LoseWrites { count: 1 });
    let r = apply(
        &mut run.c,
        vec![create_change("pair.example.com", "192.0.2.2", "lost-1")],
    )
    .await;
    assert_eq!(r.succeeded, 1, "{r:?}");
    assert_eq!(
        b.proxy.counts().patch,
        1,
        "never sent twice: {:?}",
        b.proxy.counts()
    );
    assert_eq!(
        dig_short(b.pdns.dns_port, "pair.example.com", "A").await,
        ["192.0.2.1", "192.0.2.2"]
    );

    // Refused before it got there: the look finds it absent, it is sent
    // again, computed from what the look read.
    b.proxy.reset_counts();
    b.proxy.stage(Stage::DropWrites { count: 1 });
    let r = apply(
        &mut run.c,
        vec![create_change("pair.example.com", "192.0.2.3", "lost-2")],
    )
    .await;
    assert_eq!(r.succeeded, 1, "{r:?}");
    assert_eq!(b.proxy.counts().patch, 2, "{:?}", b.proxy.counts());
    assert_eq!(
        dig_short(b.pdns.dns_port, "pair.example.com", "A").await,
        ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
    );

    // A lost answer settled by the look leaves the provider knowing what
    // PowerDNS holds: the next write to the RRset is no conflict.
    b.proxy.stage(Stage::LoseWrites { count: 1 });
    let _ = apply(
        &mut run.c,
        vec![create_change("pair.example.com", "192.0.2.4", "")],
    )
    .await;
    let r = apply(
        &mut run.c,
        vec![create_change("pair.example.com", "192.0.2.5", "")],
    )
    .await;
    assert_eq!(r.succeeded, 1, "{r:?}");
    let held = dig_short(b.pdns.dns_port, "pair.example.com", "A").await;
    assert!(held.contains(&"192.0.2.5".to_string()), "{held:?}");
    let r = refresh(&mut run.c).await.expect("refresh");
    assert_eq!(r.total, u64::try_from(held.len()).unwrap() + 1, "{r:?}");
    run.svc.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_unavailable_and_the_snapshot_stays() {
    let b = PowerDns::start().await;
    b.replace(vec![set(
        "kept.example.com",
        "A",
        300,
        &[("192.0.2.1", false)],
    )])
    .await;
    let mut run = start(&b).await;
    refresh(&mut run.c).await.expect("refresh");
    run.svc.shutdown().await.unwrap();
    // The same database, PowerDNS's address now a port nobody listens on.
    let dir = run._dir;
    let mut args = b.args_with_key(&b.pdns.api_key);
    let url = args.iter().position(|a| a == "--pdns-api-url").unwrap();
    args[url + 1] = format!("http://127.0.0.1:{}", trafego_tests::free_port());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let svc = start_cache_in(dir.path(), &refs).await;
    let mut c = cache_client(&svc).await;
    let e = refresh(&mut c).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("could not connect"), "{e:?}");
    assert_eq!(cached(&mut c, "kept.example.com").await.len(), 1);
    svc.shutdown().await.unwrap();
}

#[test]
fn the_settings_are_required_and_checked() {
    let need = |args: &[&str]| {
        cache_service::Config::for_test(args)
            .provider()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    };
    let base = ["--zone", "example.com", "--provider", "powerdns"];
    assert!(need(&base).contains("PDNS_API_URL"));
    let with_url = [&base[..], &["--pdns-api-url", "http://127.0.0.1:1"]].concat();
    assert!(need(&with_url).contains("PDNS_API_KEY"));
    let ttl = [
        &with_url[..],
        &["--pdns-api-key", "k", "--pdns-default-ttl", "5"],
    ]
    .concat();
    assert!(need(&ttl).contains("PDNS_DEFAULT_TTL"));
    let ok = [&with_url[..], &["--pdns-api-key", "k"]].concat();
    let p = cache_service::Config::for_test(&ok).provider().unwrap();
    assert_eq!(p.name(), "powerdns");
    let caps = p.capabilities();
    assert!(!caps.proxied && !caps.cname_at_apex && !caps.comments);
    assert_eq!(caps.batch_size, 1000);
    assert_eq!(caps.record_types.len(), RecordType::ALL.len());
}
