//! End to end, both services: the inputs the contract forbids (DESIGN section
//! 6, invariant 6) are refused with INVALID_ARGUMENT naming the field, and
//! nothing is written anywhere: the provider (zone file bytes, the fake
//! Cloudflare's records and request counters) and the tracked table stay as
//! they were. Also what the rules must still let through (a CNAME at the apex
//! where the provider flattens it, the null MX, `_` inside a label), the
//! capabilities `GetCacheStatus` reports, and a request over the message size
//! limit (RESOURCE_EXHAUSTED).
//!
//! Every service runs in-process on 127.0.0.1:0; the fake Cloudflare is a
//! real HTTP server on loopback. Nothing here sleeps to wait for a server.

mod tracking_support;

use std::path::Path;
use std::process::Command;

use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::Channel;
use tracking_support::*;
use trafego_common::clock::ManualClock;
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::cache::{
    ApplyChangesRequest, Change, CreateRecordRequest, DeleteChange, DeleteRecordRequest,
    GetCacheStatusRequest, GetRecordRequest, ListRecordsRequest, RecordIdCharset, RecordInput,
    RefreshCacheRequest, UpdateChange, UpdateRecordRequest, change,
};
use trafego_proto::tracking::{
    DesiredRecord, GetTrackedRecordRequest, ReconcileRequest, TrackRecordRequest,
    UntrackRecordRequest,
};
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions};

/// A well-formed id (32 lowercase hex digits) that no record has.
const UNKNOWN_ID: &str = "0123456789abcdef0123456789abcdef";

/// cache-service with one of the two providers, a client, and what the
/// provider holds.
struct Cache {
    svc: Service,
    client: CacheServiceClient<Channel>,
    fake: Option<FakeCloudflare>,
    dir: tempfile::TempDir,
}

impl Cache {
    async fn start(cloudflare: bool, extra: &[&str]) -> Cache {
        trafego_tests::init_test_logging();
        let dir = tempfile::tempdir().unwrap();
        let (fake, mut args) = if cloudflare {
            let fake = FakeCloudflare::start(FakeOptions::new(TOKEN, ZONE))
                .await
                .unwrap();
            let args = cloudflare_args(&fake, dir.path());
            (Some(fake), args)
        } else {
            (None, zonefile_args(dir.path()))
        };
        args.extend(extra.iter().map(|s| s.to_string()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let svc = start_cache_on(listener, args).await;
        let mut client = cache_client(&svc.url).await;
        client
            .refresh_cache(RefreshCacheRequest {
                force: false,
                ..Default::default()
            })
            .await
            .expect("first refresh");
        if let Some(f) = &fake {
            f.reset_stats();
        }
        Cache {
            svc,
            client,
            fake,
            dir,
        }
    }

    fn zone_file(&self) -> std::path::PathBuf {
        self.dir.path().join("example.com.zone")
    }

    /// Everything the provider holds, as text to compare.
    fn provider_state(&self) -> String {
        match &self.fake {
            Some(f) => format!("{:?}", f.records()),
            None => std::fs::read_to_string(self.zone_file()).unwrap(),
        }
    }

    /// Requests the fake Cloudflare received since the first refresh.
    fn provider_requests(&self) -> u64 {
        self.fake.as_ref().map_or(0, |f| f.stats().total)
    }

    async fn cache_view(&mut self) -> (u64, usize) {
        let r = self
            .client
            .list_records(ListRecordsRequest::default())
            .await
            .unwrap()
            .into_inner();
        (r.generation, r.records.len())
    }
}

fn rec(rtype: &str, name: &str, content: &str, ttl: u32, priority: Option<u32>) -> RecordInput {
    RecordInput {
        r#type: rtype.into(),
        name: name.into(),
        content: content.into(),
        ttl,
        priority,
        ..Default::default()
    }
}

/// One call of the table.
enum Req {
    Create(RecordInput),
    Update(&'static str, RecordInput),
    Delete(&'static str),
    Get(&'static str),
    Apply(Vec<Change>),
}

async fn call(c: &mut CacheServiceClient<Channel>, req: &Req) -> Result<(), tonic::Status> {
    match req {
        Req::Create(r) => c
            .create_record(CreateRecordRequest {
                record: Some(r.clone()),
            })
            .await
            .map(drop),
        Req::Update(id, r) => c
            .update_record(UpdateRecordRequest {
                record_id: id.to_string(),
                record: Some(r.clone()),
            })
            .await
            .map(drop),
        Req::Delete(id) => c
            .delete_record(DeleteRecordRequest {
                record_id: id.to_string(),
            })
            .await
            .map(drop),
        Req::Get(id) => c
            .get_record(GetRecordRequest {
                record_id: id.to_string(),
            })
            .await
            .map(drop),
        Req::Apply(changes) => c
            .apply_changes(ApplyChangesRequest {
                changes: changes.clone(),
            })
            .await
            .map(drop),
    }
}

fn create(r: RecordInput) -> Change {
    Change {
        kind: Some(change::Kind::Create(r)),
        ..Default::default()
    }
}

/// The refusals every provider makes, with the field each must name.
fn common_cases() -> Vec<(Req, &'static str)> {
    let good = || rec("A", "ok.example.com", "192.0.2.1", 300, None);
    vec![
        // The zone's own delegation.
        (
            Req::Create(rec("NS", "example.com", "ns9.example.net", 300, None)),
            "record.type",
        ),
        (
            Req::Create(rec("CNAME", "a.example.com", "a.example.com", 300, None)),
            "record.content",
        ),
        (
            Req::Create(rec("CNAME", "a.example.com", "192.0.2.1", 300, None)),
            "record.content",
        ),
        (
            Req::Create(rec("MX", "example.com", "192.0.2.25", 300, Some(10))),
            "record.content",
        ),
        (
            Req::Create(rec("A", "xn--a.example.com", "192.0.2.1", 300, None)),
            "record.name",
        ),
        (
            Req::Create(rec(
                "CNAME",
                "b.example.com",
                "xn--a.example.net",
                300,
                None,
            )),
            "record.content",
        ),
        // The null MX needs priority 0.
        (
            Req::Create(rec("MX", "nomail.example.com", ".", 300, Some(10))),
            "record.priority",
        ),
        (
            Req::Create(rec("A", "a.example.com", "192.0.2.1", 29, None)),
            "record.ttl",
        ),
        // Ids that would change a provider URL, or are not the provider's shape.
        (Req::Get("../../zones"), "record_id"),
        (Req::Get("abc?x=1"), "record_id"),
        (Req::Get("0123456789ABCDEF0123456789ABCDEF"), "record_id"),
        (Req::Delete("../../zones"), "record_id"),
        (Req::Delete("abc?x=1"), "record_id"),
        (Req::Delete("nope"), "record_id"),
        (Req::Update("../../zones", good()), "record_id"),
        (Req::Update("abc%2F..", good()), "record_id"),
        (
            Req::Update(
                UNKNOWN_ID,
                rec("NS", "example.com", "ns9.example.net", 300, None),
            ),
            "record.type",
        ),
        // One bad change refuses the whole batch: the good create before it
        // is not applied either.
        (
            Req::Apply(vec![
                create(good()),
                Change {
                    kind: Some(change::Kind::Delete(DeleteChange {
                        record_id: "../../zones".into(),
                    })),
                    ..Default::default()
                },
            ]),
            "changes[1].delete.record_id",
        ),
        (
            Req::Apply(vec![
                create(good()),
                Change {
                    kind: Some(change::Kind::Update(UpdateChange {
                        record_id: "abc?x=1".into(),
                        record: Some(good()),
                    })),
                    ..Default::default()
                },
            ]),
            "changes[1].update.record_id",
        ),
        (
            Req::Apply(vec![
                create(good()),
                create(rec("CNAME", "c.example.com", "c.example.com", 300, None)),
            ]),
            "changes[1].create.content",
        ),
    ]
}

async fn assert_all_refused(cache: &mut Cache, cases: Vec<(Req, &'static str)>) {
    let before = cache.provider_state();
    let view = cache.cache_view().await;
    for (i, (req, field)) in cases.iter().enumerate() {
        let err = call(&mut cache.client, req)
            .await
            .expect_err(&format!("case {i} ({field}) was accepted"));
        assert_eq!(err.code(), Code::InvalidArgument, "case {i}: {err:?}");
        assert!(
            err.message().starts_with(&format!("{field}:")),
            "case {i}: {field} not named first in {:?}",
            err.message()
        );
        assert!(
            !err.message().contains("Errors {"),
            "case {i}: no parser internals in {:?}",
            err.message()
        );
    }
    assert_eq!(cache.provider_state(), before, "the provider is unchanged");
    assert_eq!(
        cache.provider_requests(),
        0,
        "no request reached the provider"
    );
    assert_eq!(cache.cache_view().await, view, "the cache is unchanged");
}

#[tokio::test]
async fn cache_service_refuses_forbidden_inputs_with_the_zone_file() {
    let mut cache = Cache::start(false, &[]).await;
    let mut cases = common_cases();
    cases.extend([
        // No CNAME flattening, no proxying in a zone file.
        (
            Req::Create(rec("CNAME", "example.com", "target.example.net", 300, None)),
            "record.type",
        ),
        (
            Req::Create(RecordInput {
                proxied: true,
                ..rec("A", "p.example.com", "192.0.2.1", 300, None)
            }),
            "record.proxied",
        ),
    ]);
    assert_all_refused(&mut cache, cases).await;
    cache.svc.shutdown().await;
}

#[tokio::test]
async fn cache_service_refuses_forbidden_inputs_with_cloudflare() {
    let mut cache = Cache::start(true, &[]).await;
    let mut cases = common_cases();
    cases.push((
        Req::Create(rec("A", "a.example.com", "192.0.2.1", 45, None)),
        "record.ttl",
    ));
    assert_all_refused(&mut cache, cases).await;
    // The minimum is named.
    let err = call(
        &mut cache.client,
        &Req::Create(rec("A", "a.example.com", "192.0.2.1", 59, None)),
    )
    .await
    .unwrap_err();
    assert!(err.message().contains("minimum of 60"), "{err:?}");
    cache.svc.shutdown().await;
}

#[tokio::test]
async fn what_the_rules_allow_reaches_each_provider() {
    // Cloudflare: CNAME at the apex (flattened), TTL 60 and automatic, the
    // null MX, '_' inside a label, proxying.
    let mut cf = Cache::start(true, &[]).await;
    for r in [
        rec("CNAME", "example.com", "target.example.net", 60, None),
        rec("A", "my_host.example.com", "192.0.2.1", 1, None),
        RecordInput {
            proxied: true,
            ..rec("A", "proxied.example.com", "192.0.2.2", 1, None)
        },
        rec("MX", "nomail.example.com", ".", 300, Some(0)),
    ] {
        cf.client
            .create_record(CreateRecordRequest {
                record: Some(r.clone()),
            })
            .await
            .unwrap_or_else(|e| panic!("{r:?}: {e:?}"));
    }
    let fake = cf.fake.as_ref().unwrap();
    let mx: Vec<_> = fake
        .records()
        .into_iter()
        .filter(|r| r.r#type == "MX")
        .collect();
    assert_eq!(mx.len(), 1);
    assert_eq!((mx[0].content.as_str(), mx[0].priority), (".", Some(0)));
    // Read back from the provider by a refresh, the null MX is the same.
    cf.client
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let listed = cf
        .client
        .list_records(ListRecordsRequest {
            name: "nomail.example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].content.as_str(), listed[0].priority),
        (".", Some(0))
    );
    cf.svc.shutdown().await;

    // CLOUDFLARE_MIN_TTL=30 (an Enterprise zone) lets TTL 45 through.
    let mut ent = Cache::start(true, &["--cloudflare-min-ttl", "30"]).await;
    ent.client
        .create_record(CreateRecordRequest {
            record: Some(rec("A", "short.example.com", "192.0.2.3", 45, None)),
        })
        .await
        .unwrap();
    ent.svc.shutdown().await;
}

/// Runs a zone checker on `file` and returns whether it loaded it, with its output.
fn check_zone(tool: &str, args: &[&str], file: &Path) -> (bool, String) {
    let out = Command::new(tool)
        .args(args)
        .arg(file)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "`{tool}` is needed (Debian packages knot and bind9-utils / bind9); it is not skipped on purpose: {e}"
            )
        });
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn underscores_and_the_null_mx_in_a_zone_file_load_in_knot_and_bind() {
    let mut cache = Cache::start(false, &[]).await;
    for r in [
        // Glue for the zone's own NS, which both checkers require.
        rec("A", "ns1.example.com", "192.0.2.53", 300, None),
        rec("A", "my_host.example.com", "192.0.2.1", 300, None),
        rec(
            "CNAME",
            "www_2.example.com",
            "my_host.example.com",
            300,
            None,
        ),
        rec("TXT", "under_score.example.com", "v=1", 300, None),
        rec("MX", "nomail.example.com", ".", 300, Some(0)),
    ] {
        cache
            .client
            .create_record(CreateRecordRequest {
                record: Some(r.clone()),
            })
            .await
            .unwrap_or_else(|e| panic!("{r:?}: {e:?}"));
    }
    let file = cache.zone_file();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\nmy_host 300 IN A 192.0.2.1\n"), "{text}");
    assert!(text.contains("\nnomail 300 IN MX 0 .\n"), "{text}");

    let (ok, out) = check_zone("kzonecheck", &["-o", "example.com"], &file);
    assert!(ok, "kzonecheck refused the file: {out}\n{text}");
    let (ok, out) = check_zone("named-checkzone", &["example.com"], &file);
    assert!(
        ok && out.contains("loaded serial"),
        "named-checkzone: {out}\n{text}"
    );

    // And the service reads its own file back (a refresh parses it again).
    cache
        .client
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let names: Vec<String> = cache
        .client
        .list_records(ListRecordsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .records
        .into_iter()
        .map(|r| format!("{} {} {}", r.r#type, r.name, r.content))
        .collect();
    for want in [
        "A my_host.example.com 192.0.2.1",
        "CNAME www_2.example.com my_host.example.com",
        "TXT under_score.example.com v=1",
        "MX nomail.example.com .",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    cache.svc.shutdown().await;
}

#[tokio::test]
async fn get_cache_status_reports_the_capabilities() {
    let mut zf = Cache::start(false, &[]).await;
    let st = zf
        .client
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let c = st.capabilities.expect("capabilities");
    assert_eq!(
        c.record_types,
        ["A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "NS"]
    );
    assert!(!c.proxied && !c.cname_at_apex && !c.comments);
    assert_eq!((c.min_ttl, c.max_ttl, c.batch_size), (30, 86_400, 0));
    let f = c.record_id_format.expect("id format");
    assert_eq!(f.charset, RecordIdCharset::LowerHex as i32);
    assert_eq!((f.min_length, f.max_length), (32, 32));
    zf.svc.shutdown().await;

    let mut cf = Cache::start(true, &["--cloudflare-batch-size", "50"]).await;
    let c = cf
        .client
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities
        .expect("capabilities");
    assert!(c.proxied && c.cname_at_apex && c.comments);
    assert_eq!((c.min_ttl, c.max_ttl, c.batch_size), (60, 86_400, 50));
    assert_eq!(
        c.record_id_format.unwrap().charset,
        RecordIdCharset::LowerHex as i32
    );
    cf.svc.shutdown().await;
}

fn typed(h: &str, t: &str, content: &str) -> DesiredRecord {
    DesiredRecord {
        hostname: h.into(),
        r#type: Some(t.into()),
        content: Some(content.into()),
        proxied: Some(false),
        ..Default::default()
    }
}

/// Both services over one provider, with one record already tracked.
struct Pair {
    cache: Cache,
    tracking: Service,
    client: trafego_proto::tracking::tracking_service_client::TrackingServiceClient<Channel>,
}

impl Pair {
    async fn start(cloudflare: bool) -> Pair {
        let cache = Cache::start(cloudflare, &[]).await;
        let tracking =
            start_tracking(&cache.svc.url, cache.dir.path(), &[], ManualClock::new(T0)).await;
        let mut client = tracking_client(&tracking.url).await;
        client
            .reconcile(ReconcileRequest {
                source: "seed".into(),
                records: vec![a("seed.example.com", "192.0.2.1")],
                dry_run: false,
                force: false,
            })
            .await
            .expect("seed reconcile");
        if let Some(f) = &cache.fake {
            f.reset_stats();
        }
        Pair {
            cache,
            tracking,
            client,
        }
    }

    async fn tracked(&mut self) -> Vec<trafego_proto::tracking::TrackedRecord> {
        self.client
            .list_tracked_records(trafego_proto::tracking::ListTrackedRecordsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .records
    }
}

async fn assert_tracking_refuses(cloudflare: bool) {
    let mut p = Pair::start(cloudflare).await;
    let tracked = p.tracked().await;
    assert_eq!(tracked.len(), 1);
    let before = p.cache.provider_state();

    let mut mx_null = typed("nomail.example.com", "MX", ".");
    mx_null.priority = Some(10);
    let mut mx_ip = typed("mx.example.com", "MX", "192.0.2.25");
    mx_ip.priority = Some(10);
    let mut cases: Vec<(Vec<DesiredRecord>, &str)> = vec![
        (
            vec![typed("example.com", "NS", "ns9.example.net")],
            "records[0].type",
        ),
        (
            vec![typed("a.example.com", "CNAME", "a.example.com")],
            "records[0].content",
        ),
        (
            vec![typed("a.example.com", "CNAME", "192.0.2.1")],
            "records[0].content",
        ),
        (vec![mx_ip], "records[0].content"),
        (
            vec![typed("xn--a.example.com", "A", "192.0.2.1")],
            "records[0].hostname",
        ),
        (vec![mx_null], "records[0].priority"),
        // A bad record after a good one: the good one is not applied either.
        (
            vec![
                a("fine.example.com", "192.0.2.9"),
                typed("b.example.com", "CNAME", "b.example.com."),
            ],
            "records[1].content",
        ),
    ];
    if cloudflare {
        let mut short = a("short.example.com", "192.0.2.3");
        short.ttl = Some(45);
        cases.push((vec![short], "records[0].ttl"));
    } else {
        cases.push((
            vec![typed("example.com", "CNAME", "target.example.net")],
            "records[0].type",
        ));
    }
    for (i, (records, field)) in cases.into_iter().enumerate() {
        let err = p
            .client
            .reconcile(ReconcileRequest {
                source: "seed".into(),
                records,
                dry_run: false,
                force: true,
            })
            .await
            .expect_err(&format!("case {i} ({field}) was accepted"));
        assert_eq!(err.code(), Code::InvalidArgument, "case {i}: {err:?}");
        assert!(
            err.message().starts_with(&format!("{field}:")),
            "case {i}: {field} not named first in {:?}",
            err.message()
        );
    }

    // Record ids: the shared check at every edge, the provider's exact
    // format where the id goes on to cache-service (TrackRecord).
    for id in ["../../zones", "abc?x=1", "a/b", ""] {
        let e = p
            .client
            .get_tracked_record(GetTrackedRecordRequest {
                record_id: id.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{id}: {e:?}");
        assert!(e.message().starts_with("record_id:"), "{e:?}");
        let e = p
            .client
            .untrack_record(UntrackRecordRequest {
                record_id: id.into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{id}: {e:?}");
        assert!(e.message().starts_with("record_id:"), "{e:?}");
    }
    for id in [
        "../../zones",
        "abc?x=1",
        "0123456789ABCDEF0123456789ABCDEF",
        "nope",
    ] {
        let e = p
            .client
            .track_record(TrackRecordRequest {
                record_id: id.into(),
                app_managed: true,
                source: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{id}: {e:?}");
        assert!(e.message().starts_with("record_id:"), "{e:?}");
    }
    // A well-formed id nobody holds is simply not found.
    let e = p
        .client
        .track_record(TrackRecordRequest {
            record_id: UNKNOWN_ID.into(),
            app_managed: true,
            source: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");

    assert_eq!(p.tracked().await, tracked, "the tracked table is unchanged");
    assert_eq!(
        p.cache.provider_state(),
        before,
        "the provider is unchanged"
    );
    if let Some(f) = &p.cache.fake {
        assert_eq!(writes(&f.stats()), 0, "no write reached the provider");
    }
    p.tracking.shutdown().await;
    p.cache.svc.shutdown().await;
}

#[tokio::test]
async fn tracking_service_refuses_forbidden_declarations_with_the_zone_file() {
    assert_tracking_refuses(false).await;
}

#[tokio::test]
async fn tracking_service_refuses_forbidden_declarations_with_cloudflare() {
    assert_tracking_refuses(true).await;
}

#[tokio::test]
async fn tracking_service_declares_an_apex_cname_where_the_provider_flattens_it() {
    let mut p = Pair::start(true).await;
    let r = p
        .client
        .reconcile(ReconcileRequest {
            source: "apex".into(),
            records: vec![typed("example.com", "CNAME", "target.example.net")],
            dry_run: false,
            force: false,
        })
        .await
        .expect("apex CNAME on a flattening provider")
        .into_inner();
    assert_eq!(r.summary.unwrap().created, 1);
    let fake = p.cache.fake.as_ref().unwrap();
    assert!(
        fake.records()
            .iter()
            .any(|r| r.r#type == "CNAME" && r.name == "example.com"),
        "{:?}",
        fake.records()
    );
    p.tracking.shutdown().await;
    p.cache.svc.shutdown().await;
}

#[tokio::test]
async fn a_request_over_the_message_limit_is_resource_exhausted_and_writes_nothing() {
    let mut cache = Cache::start(false, &["--max-message-bytes", "4096"]).await;
    let before = cache.provider_state();
    let changes: Vec<Change> = (0..200)
        .map(|i| {
            create(rec(
                "A",
                &format!("big-{i}.example.com"),
                "192.0.2.1",
                300,
                None,
            ))
        })
        .collect();
    let err = cache
        .client
        .apply_changes(ApplyChangesRequest { changes })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("MAX_MESSAGE_BYTES"), "{err:?}");
    assert!(err.message().contains("the limit is 4096 bytes"), "{err:?}");
    assert_eq!(cache.provider_state(), before);
    // A small request still works on the same connection.
    cache
        .client
        .create_record(CreateRecordRequest {
            record: Some(rec("A", "small.example.com", "192.0.2.1", 300, None)),
        })
        .await
        .unwrap();

    let tracking = start_tracking(
        &cache.svc.url,
        cache.dir.path(),
        &["--max-message-bytes", "4096"],
        ManualClock::new(T0),
    )
    .await;
    let mut client = tracking_client(&tracking.url).await;
    let records: Vec<DesiredRecord> = (0..200)
        .map(|i| a(&format!("big-{i}.example.com"), "192.0.2.1"))
        .collect();
    let err = client
        .reconcile(ReconcileRequest {
            source: "big".into(),
            records,
            dry_run: false,
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    let tracked = client
        .list_tracked_records(trafego_proto::tracking::ListTrackedRecordsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .records;
    assert!(tracked.is_empty(), "{tracked:?}");
    tracking.shutdown().await;
    cache.svc.shutdown().await;
}
