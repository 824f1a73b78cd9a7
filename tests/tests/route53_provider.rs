//! Integration tests of the Route53 provider client against the fake Route53 on loopback (a
//! real HTTP server that checks every request's SigV4 signature as AWS does): listings across
//! pages with the zone found by name, alias and routing-policy record sets listed but never
//! written, writes as CREATE/DELETE with the current values so a concurrent change is not
//! overwritten, `InvalidChangeBatch` problems mapped to the changes they name (both answer
//! shapes) with the rest applied, the 1,000-change cap, throttling ridden out, lost answers
//! settled through cache-service without a duplicate, and credentials refused without the
//! secret anywhere.
//!
//! These tests never reach anything but 127.0.0.1 and never wait long: backoff is 1 ms and the
//! fake throttles only where a test asks it to.

use std::time::Duration;

use cache_service::provider::route53::{Route53Config, Route53Provider};
use cache_service::provider::{DnsProvider, ProviderError, WriteOp, WriteResult};
use tonic::Code;
use trafego_proto::cache::*;
use trafego_proto::validate::{Hostname, RecordSpec, ValidRecordInput};
use trafego_tests::fake_route53::{
    AliasTarget, BatchErrorStyle, FakeRoute53, LostAnswer, RecordSet, Route53Options,
};

const AKID: &str = "AKIAROUTE53PROVIDER";
const SECRET: &str = "r53/provider+Secret-Key-5d8e1a";
const ZONE: &str = "example.com";

fn zone() -> Hostname {
    Hostname::parse("zone", ZONE).unwrap()
}

/// The fake with Route53's limits but no throttling (tests that want it say so).
fn options() -> Route53Options {
    let mut o = Route53Options::new(AKID, SECRET, ZONE);
    o.throttle = None;
    o
}

async fn start(opts: Route53Options) -> FakeRoute53 {
    FakeRoute53::start(opts).await.expect("fake starts")
}

/// A config for tests: fast backoff, no client-side budget, the zone looked up by name.
fn config(fake: &FakeRoute53) -> Route53Config {
    let mut c = Route53Config::new(AKID, SECRET, "eu-west-2", zone());
    c.api_url = fake.endpoint();
    c.backoff_base = Duration::from_millis(1);
    c.backoff_max = Duration::from_millis(5);
    c.budget_requests = 0;
    c.request_timeout = Duration::from_secs(10);
    c
}

fn provider(cfg: Route53Config) -> Route53Provider {
    Route53Provider::new(cfg).expect("provider builds")
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

fn code(r: &WriteResult) -> Option<Code> {
    r.as_ref().err().map(|e| e.code())
}

fn values(fake: &FakeRoute53, name: &str, rtype: &str) -> Vec<String> {
    let mut v = fake
        .get(name, rtype)
        .map(|rs| rs.values)
        .unwrap_or_default();
    v.sort();
    v
}

/// A zone of several pages is listed whole, in Route53's value forms made canonical, with the
/// zone's id found by name once; alias and weighted record sets are listed too.
#[tokio::test]
async fn a_zone_is_listed_whole_across_pages_with_its_id_found_by_name() {
    let fake = start(options()).await;
    fake.insert_many(
        (0..650)
            .map(|i| RecordSet::new("A", &format!("h{i:04}.{ZONE}"), 300, &["192.0.2.1"]))
            .collect(),
    );
    fake.insert(RecordSet::new(
        "A",
        &format!("*.{ZONE}"),
        60,
        &["192.0.2.9"],
    ));
    fake.insert(RecordSet::new(
        "TXT",
        &format!("dkim.{ZONE}"),
        300,
        &[
            "\"v=DKIM1; k=rsa; \" \"p=abc\"",
            "\"say \\\"hi\\\" caf\\303\\251\"",
        ],
    ));
    fake.insert(RecordSet::new(
        "MX",
        ZONE,
        3600,
        &["10 mail.example.net.", "20 mail2.example.net."],
    ));
    let mut alias = RecordSet::new("A", &format!("lb.{ZONE}"), 0, &[]);
    alias.ttl = None;
    alias.alias = Some(AliasTarget {
        hosted_zone_id: "Z2FDTNDATAQYW2".into(),
        dns_name: "dualstack.lb-1.eu-west-2.elb.amazonaws.com.".into(),
        evaluate_target_health: false,
    });
    fake.insert(alias);
    for (id, ip) in [("blue", "192.0.2.20"), ("green", "192.0.2.21")] {
        let mut w = RecordSet::new("A", &format!("canary.{ZONE}"), 60, &[ip]);
        w.set_identifier = Some(id.into());
        w.weight = Some(50);
        fake.insert(w);
    }
    let p = provider(config(&fake));
    let listing = p.list().await.expect("listing");
    let s = fake.stats();
    // 650 + 2 apex + 5 other sets + 2 weighted = 659 sets: 3 pages of 300, 1 zone lookup.
    assert_eq!((s.zones, s.list), (1, 3), "{s:?}");
    assert_eq!(listing.requests, 4);
    let get = |rtype: &str, name: &str| {
        listing
            .records
            .iter()
            .filter(|r| r.rtype == rtype && r.name == name)
            .collect::<Vec<_>>()
    };
    for i in 0..650 {
        assert_eq!(get("A", &format!("h{i:04}.{ZONE}")).len(), 1, "h{i:04}");
    }
    assert_eq!(get("A", &format!("*.{ZONE}"))[0].ttl, 60);
    let mut txt: Vec<&str> = get("TXT", &format!("dkim.{ZONE}"))
        .iter()
        .map(|r| r.content.as_str())
        .collect();
    txt.sort();
    assert_eq!(txt, ["say \"hi\" caf\u{e9}", "v=DKIM1; k=rsa; p=abc"]);
    let mx = get("MX", ZONE);
    assert_eq!(mx.len(), 2);
    assert!(
        mx.iter()
            .any(|r| r.content == "mail.example.net" && r.priority == Some(10))
    );
    let lb = get("A", &format!("lb.{ZONE}"));
    assert_eq!(lb.len(), 1);
    assert_eq!(lb[0].content, "dualstack.lb-1.eu-west-2.elb.amazonaws.com");
    let canary = get("A", &format!("canary.{ZONE}"));
    assert_eq!(canary.len(), 2);
    let mut ids: Vec<&str> = listing.records.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), listing.records.len(), "no id twice");

    // Alias and routing-policy sets are never written: refused, nothing sent.
    fake.reset_stats();
    let (results, reqs) = p
        .apply(vec![
            WriteOp::Delete {
                id: lb[0].id.clone(),
            },
            WriteOp::Update {
                id: canary[0].id.clone(),
                input: input("A", &format!("canary.{ZONE}"), "192.0.2.99", None),
            },
            create(&format!("lb.{ZONE}"), "192.0.2.30"),
        ])
        .await;
    assert_eq!(
        code(&results[0]),
        Some(Code::InvalidArgument),
        "{results:?}"
    );
    assert_eq!(
        code(&results[1]),
        Some(Code::InvalidArgument),
        "{results:?}"
    );
    assert_eq!(code(&results[2]), Some(Code::AlreadyExists), "{results:?}");
    assert_eq!((reqs, fake.stats().total), (0, 0));
    assert!(
        fake.get(&format!("lb.{ZONE}"), "A")
            .unwrap()
            .alias
            .is_some()
    );
}

/// A write to one record of a set names the set's current values (DELETE + CREATE, never an
/// UPSERT): when someone changed the set after it was read, Route53 refuses the batch, the set
/// is read again and the write applied to what is really there, keeping the other change.
#[tokio::test]
async fn a_concurrent_change_to_a_record_set_is_kept_not_overwritten() {
    let fake = start(options()).await;
    let name = format!("multi.{ZONE}");
    fake.insert(RecordSet::new("A", &name, 300, &["192.0.2.1", "192.0.2.2"]));
    let p = provider(config(&fake));
    let listing = p.list().await.unwrap();
    let one = listing
        .records
        .iter()
        .find(|r| r.name == name && r.content == "192.0.2.1")
        .unwrap()
        .clone();
    // Someone else adds a value behind our back.
    fake.insert(RecordSet::new(
        "A",
        &name,
        300,
        &["192.0.2.1", "192.0.2.2", "192.0.2.3"],
    ));
    fake.reset_stats();
    let (results, reqs) = p
        .apply(vec![WriteOp::Update {
            id: one.id.clone(),
            input: input("A", &name, "192.0.2.4", None),
        }])
        .await;
    let rec = results[0].clone().expect("applied").expect("a record");
    assert_eq!(rec.content, "192.0.2.4");
    assert_ne!(rec.id, one.id, "a new content has a new derived id");
    assert_eq!(
        values(&fake, &name, "A"),
        ["192.0.2.2", "192.0.2.3", "192.0.2.4"],
        "the concurrent addition survives"
    );
    let s = fake.stats();
    // The refused batch, the read of the set, the batch that applied.
    assert_eq!((s.change_batches, s.list, reqs), (2, 1, 3), "{s:?}");

    // Deleting one record keeps the others; deleting the last removes the set.
    let (results, _) = p.apply(vec![WriteOp::Delete { id: rec.id }]).await;
    assert_eq!(results[0], Ok(None));
    assert_eq!(values(&fake, &name, "A"), ["192.0.2.2", "192.0.2.3"]);
}

/// A refused batch lists every problem: the changes it names fail (with their own codes), the
/// others are sent again and applied. Both shapes of Route53's answer are read.
#[tokio::test]
async fn a_refused_batch_fails_only_the_changes_it_names() {
    for style in [BatchErrorStyle::Messages, BatchErrorStyle::ErrorResponse] {
        let mut o = options();
        o.batch_error_style = style;
        let fake = start(o).await;
        fake.insert(RecordSet::new(
            "A",
            &format!("taken.{ZONE}"),
            300,
            &["192.0.2.1"],
        ));
        let p = provider(config(&fake));
        p.list().await.unwrap();
        // Someone creates a record the provider has not seen.
        fake.insert(RecordSet::new(
            "A",
            &format!("raced.{ZONE}"),
            300,
            &["192.0.2.7"],
        ));
        fake.reset_stats();
        let (results, _) = p
            .apply(vec![
                create(&format!("ok-1.{ZONE}"), "192.0.2.10"),
                WriteOp::Create(input(
                    "CNAME",
                    &format!("taken.{ZONE}"),
                    "t.example.net",
                    None,
                )),
                create("outside.example.org", "192.0.2.11"),
                create(&format!("raced.{ZONE}"), "192.0.2.7"),
                create(&format!("ok-2.{ZONE}"), "192.0.2.12"),
            ])
            .await;
        assert!(results[0].is_ok(), "{style:?}: {results:?}");
        assert_eq!(
            code(&results[1]),
            Some(Code::AlreadyExists),
            "{style:?}: {results:?}"
        );
        assert_eq!(
            code(&results[2]),
            Some(Code::InvalidArgument),
            "{style:?}: {results:?}"
        );
        assert_eq!(
            code(&results[3]),
            Some(Code::AlreadyExists),
            "{style:?}: {results:?}"
        );
        assert!(results[4].is_ok(), "{style:?}: {results:?}");
        assert_eq!(values(&fake, &format!("ok-1.{ZONE}"), "A"), ["192.0.2.10"]);
        assert_eq!(values(&fake, &format!("ok-2.{ZONE}"), "A"), ["192.0.2.12"]);
        assert_eq!(values(&fake, &format!("raced.{ZONE}"), "A"), ["192.0.2.7"]);
        assert!(fake.get(&format!("taken.{ZONE}"), "CNAME").is_none());
        // The refused batch, then the rest in one (after reading the raced set).
        assert_eq!(
            fake.stats().change_batches,
            2,
            "{style:?}: {:?}",
            fake.stats()
        );
    }
}

/// 1,500 creates go out as two batches (Route53 takes 1,000 changes and 1,000 records a call).
#[tokio::test]
async fn the_change_cap_splits_batches() {
    let fake = start(options()).await;
    let p = provider(config(&fake));
    p.list().await.unwrap();
    fake.reset_stats();
    let ops: Vec<WriteOp> = (0..1500)
        .map(|i| create(&format!("n{i:04}.{ZONE}"), "192.0.2.1"))
        .collect();
    let (results, reqs) = p.apply(ops).await;
    assert!(results.iter().all(Result::is_ok));
    let s = fake.stats();
    assert_eq!((s.change_batches, s.changes, reqs), (2, 1500, 2), "{s:?}");
    assert_eq!(fake.count(), 1502);
}

/// Route53's throttling (HTTP 400 `Throttling`, `PriorRequestNotComplete`) is waited out, on
/// reads and on writes (refused unapplied), and so is Route53's own rate.
#[tokio::test]
async fn throttling_is_ridden_out() {
    let mut o = options();
    o.throttle = Some((5, Duration::from_millis(200)));
    let fake = start(o).await;
    fake.insert_many(
        (0..30)
            .map(|i| RecordSet::new("A", &format!("t{i}.{ZONE}"), 300, &["192.0.2.1"]))
            .collect(),
    );
    let mut cfg = config(&fake);
    cfg.max_items = 1;
    cfg.max_retries = 10;
    cfg.backoff_base = Duration::from_millis(20);
    cfg.backoff_max = Duration::from_millis(200);
    let p = provider(cfg);
    fake.throttle_next(3);
    let listing = p.list().await.expect("throttling waited out");
    // 30, the SOA and the four apex NS values.
    assert_eq!(listing.records.len(), 35);
    assert!(fake.stats().throttled >= 3, "{:?}", fake.stats());
    fake.fail_next_with(2, 400, "PriorRequestNotComplete", "still processing");
    let (results, _) = p
        .apply(vec![create(&format!("w.{ZONE}"), "192.0.2.2")])
        .await;
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(values(&fake, &format!("w.{ZONE}"), "A"), ["192.0.2.2"]);
}

/// A batch whose answer is lost is reported as unanswered (never re-sent by the provider) and
/// nothing after it is sent; through cache-service the write is settled by a targeted read
/// and answered without a duplicate.
#[tokio::test]
async fn a_lost_answer_is_settled_without_a_duplicate() {
    let fake = start(options()).await;
    let mut cfg = config(&fake);
    cfg.batch_size = 1;
    let p = provider(cfg);
    p.list().await.unwrap();
    fake.lose_write_answers(1, LostAnswer::Status(503));
    let (results, _) = p
        .apply(vec![
            create(&format!("lost.{ZONE}"), "192.0.2.1"),
            create(&format!("after.{ZONE}"), "192.0.2.2"),
        ])
        .await;
    assert!(
        matches!(results[0], Err(ProviderError::Unanswered(_))),
        "{results:?}"
    );
    assert!(
        matches!(results[1], Err(ProviderError::Unavailable(_))),
        "{results:?}"
    );
    assert_eq!(fake.stats().change_batches, 1, "the second was never sent");
    assert_eq!(values(&fake, &format!("lost.{ZONE}"), "A"), ["192.0.2.1"]);
    let (held, reqs) = p.lookup(&format!("lost.{ZONE}"), "A").await.unwrap();
    assert_eq!((held.len(), reqs), (1, 1));

    // Through cache-service: the lost answer is settled by looking, not by sending again.
    let endpoint = fake.endpoint();
    let svc = trafego_tests::start_cache(&[
        "--provider",
        "route53",
        "--route53-api-url",
        &endpoint,
        "--route53-access-key",
        AKID,
        "--route53-secret-key",
        SECRET,
    ])
    .await;
    let mut c = trafego_tests::cache_client(&svc).await;
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    fake.reset_stats();
    fake.lose_write_answers(1, LostAnswer::Status(503));
    let r = c
        .create_record(CreateRecordRequest {
            record: Some(RecordInput {
                r#type: "A".into(),
                name: format!("settled.{ZONE}"),
                content: "192.0.2.5".into(),
                ttl: 300,
                ..Default::default()
            }),
        })
        .await
        .expect("settled as applied")
        .into_inner()
        .record
        .unwrap();
    assert_eq!(r.content, "192.0.2.5");
    assert_eq!(
        values(&fake, &format!("settled.{ZONE}"), "A"),
        ["192.0.2.5"]
    );
    let s = fake.stats();
    assert_eq!(
        (s.change_batches, s.answers_lost),
        (1, 1),
        "never sent twice: {s:?}"
    );
    svc.shutdown().await.unwrap();
}

/// A wrong secret key makes a signature the fake refuses, a wrong access key is unknown, and a
/// partition's signing region other than Route53's is refused: each is PERMISSION_DENIED, and
/// neither secret appears in any message or log line.
#[tokio::test]
async fn bad_credentials_are_refused_without_the_secret_anywhere() {
    trafego_tests::capture_logs();
    let fake = start(options()).await;
    let wrong = "r53/WRONG+secret-0000aaaa";
    let mut cfg = config(&fake);
    cfg.secret_key = wrong.into();
    let e = provider(cfg).list().await.unwrap_err();
    assert!(
        matches!(&e, ProviderError::Unauthorized(m) if m.contains("SignatureDoesNotMatch")),
        "{e:?}"
    );
    assert_eq!(e.code(), Code::PermissionDenied);
    let mut cfg = config(&fake);
    cfg.access_key = "AKIAUNKNOWN".into();
    let e2 = provider(cfg).list().await.unwrap_err();
    assert!(
        matches!(&e2, ProviderError::Unauthorized(m) if m.contains("InvalidClientTokenId")),
        "{e2:?}"
    );
    // A China region signs in cn-northwest-1, which the global endpoint refuses.
    let mut cfg = config(&fake);
    cfg.region = "cn-north-1".into();
    let e3 = provider(cfg).list().await.unwrap_err();
    assert!(matches!(&e3, ProviderError::Unauthorized(_)), "{e3:?}");
    assert!(fake.stats().unauthorized >= 3);

    let endpoint = fake.endpoint();
    let svc = trafego_tests::start_cache(&[
        "--provider",
        "route53",
        "--route53-api-url",
        &endpoint,
        "--route53-access-key",
        AKID,
        "--route53-secret-key",
        wrong,
    ])
    .await;
    let mut c = trafego_tests::cache_client(&svc).await;
    let st = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(st.code(), Code::PermissionDenied, "{st:?}");
    let status = c
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    svc.shutdown().await.unwrap();
    let logs = trafego_tests::captured_logs();
    for text in [
        e.to_string(),
        e2.to_string(),
        e3.to_string(),
        st.message().to_string(),
        format!("{status:?}"),
        logs,
    ] {
        assert!(!text.contains(SECRET) && !text.contains(wrong), "{text}");
    }
}

/// A configured zone id is used as is (no lookup); a zone Route53 does not hold is NOT_FOUND.
#[tokio::test]
async fn the_zone_id_is_taken_as_configured_and_a_missing_zone_is_not_found() {
    let fake = start(options()).await;
    let mut cfg = config(&fake);
    cfg.zone_id = Some(format!("/hostedzone/{}", fake.zone_id()));
    provider(cfg).list().await.unwrap();
    assert_eq!((fake.stats().zones, fake.stats().list), (0, 1));
    let mut cfg = config(&fake);
    cfg.zone = Hostname::parse("zone", "example.net").unwrap();
    let e = provider(cfg).list().await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    let mut cfg = config(&fake);
    cfg.zone_id = Some("ZNOSUCHZONE".into());
    let e = provider(cfg).list().await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
}

/// Every managed type round-trips through the fake's value checks, a TXT of 600 bytes with
/// quotes and non-ASCII text included, and an automatic TTL is written as 300.
#[tokio::test]
async fn every_type_round_trips_through_route53_values() {
    let fake = start(options()).await;
    let p = provider(config(&fake));
    p.list().await.unwrap();
    let long = format!("{}\"q\" caf\u{e9} \\", "\u{e9}".repeat(300));
    let mut auto = input("A", &format!("auto.{ZONE}"), "192.0.2.8", None);
    auto.spec.ttl = 1;
    let ops = vec![
        WriteOp::Create(input("TXT", &format!("long.{ZONE}"), &long, None)),
        WriteOp::Create(input("MX", ZONE, "mail.example.net", Some(10))),
        WriteOp::Create(input(
            "SRV",
            &format!("_sip._tcp.{ZONE}"),
            "5 5060 sip.example.net",
            Some(10),
        )),
        WriteOp::Create(input("CAA", ZONE, "0 issue \"letsencrypt.org\"", None)),
        WriteOp::Create(input("AAAA", &format!("v6.{ZONE}"), "2001:db8::1", None)),
        WriteOp::Create(input("NS", &format!("sub.{ZONE}"), "ns1.example.net", None)),
        WriteOp::Create(input(
            "CNAME",
            &format!("www.{ZONE}"),
            "target.example.net",
            None,
        )),
        WriteOp::Create(auto),
    ];
    let (results, _) = p.apply(ops.clone()).await;
    let made: Vec<_> = results
        .into_iter()
        .map(|r| r.expect("accepted").expect("a record"))
        .collect();
    assert_eq!(
        fake.get(&format!("auto.{ZONE}"), "A").unwrap().ttl,
        Some(300)
    );
    let listing = p.list().await.unwrap();
    for r in &made {
        assert!(listing.records.contains(r), "{r:?} read back as written");
    }
    assert_eq!(made[0].content, long);
}
