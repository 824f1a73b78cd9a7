//! The provider conformance suite: one set of checks, written once, that
//! every provider must pass before it ships. Each check starts a real
//! cache-service (in-process, on 127.0.0.1:0) against a [`Backend`] (a fake
//! speaking the provider's wire format, or a real server such as PowerDNS or
//! Knot) and talks gRPC to it, and looks at the provider out of band to see
//! what really landed there.
//!
//! A backend that cannot stage a condition (a zone file has no credentials,
//! a real server cannot be made to answer 429) says so, and the check prints
//! that it does not apply instead of passing silently.

pub mod backends;
pub mod digitalocean;
pub mod powerdns;
pub mod rfc2136;
pub mod route53;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use tonic::Code;
use tonic::transport::Channel;
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::cache::*;

use crate::{ServiceHandle, start_cache_in, tempdir};

/// A record seeded or seen at the provider, out of band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// Record type, uppercase.
    pub rtype: String,
    /// Fully qualified name, lowercase, no trailing dot.
    pub name: String,
    /// Content in the project's canonical presentation form.
    pub content: String,
    /// Priority of MX and SRV records.
    pub priority: Option<u32>,
}

impl Held {
    /// A record without priority.
    pub fn new(rtype: &str, name: &str, content: &str) -> Self {
        Held {
            rtype: rtype.into(),
            name: name.into(),
            content: content.into(),
            priority: None,
        }
    }
}

/// A condition a check asks the backend to stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Every request fails as the provider fails when it is down (5xx, a
    /// refused connection, a file that cannot be read), until cleared.
    Down,
    /// The next few requests are refused with the provider's rate-limit
    /// answer (429 with Retry-After, a throttling error).
    RateLimited,
    /// Back to normal.
    Clear,
}

/// A boxed future, for the object-safe parts of [`Backend`].
pub type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A provider under test, with out-of-band access to what it holds.
pub trait Backend: Send + Sync + 'static {
    /// The provider's name, for messages.
    fn name(&self) -> &'static str;

    /// cache-service flags that use this provider for zone `example.com`,
    /// with its files in `dir`, and listing pages small enough (a few dozen
    /// records) that a listing of a few hundred records spans several.
    fn cache_args(&self, dir: &Path) -> Vec<String>;

    /// The same with credentials the provider refuses; `None` when the
    /// provider has no credentials.
    fn bad_credentials_args(&self, dir: &Path) -> Option<Vec<String>>;

    /// The secrets in [`Backend::cache_args`] (and the wrong ones in
    /// [`Backend::bad_credentials_args`]), which must appear in no message.
    fn secrets(&self) -> Vec<String>;

    /// Writes records straight into the provider, as someone else would.
    fn seed(&self, records: Vec<Held>) -> Boxed<'_, ()>;

    /// Every record the provider holds now (the zone's own SOA and apex NS
    /// may be left out).
    fn held(&self) -> Boxed<'_, Vec<Held>>;

    /// Stages `fault`; returns false when this backend cannot.
    fn fault(&self, fault: Fault) -> Boxed<'_, bool>;

    /// How many records a page of its listing holds under
    /// [`Backend::cache_args`] (0: the provider does not page).
    fn page_size(&self) -> usize;
}

/// The zone every check uses.
pub const ZONE: &str = "example.com";

/// Marks a check that does not apply to a backend, visibly.
pub fn not_applicable(backend: &dyn Backend, check: &str, why: &str) {
    eprintln!(
        "conformance: {check} does not apply to {}: {why}",
        backend.name()
    );
}

struct Running {
    svc: ServiceHandle,
    client: CacheServiceClient<Channel>,
}

async fn start(dir: &Path, args: &[String]) -> Running {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let svc = start_cache_in(dir, &refs).await;
    let client = crate::cache_client(&svc).await;
    Running { svc, client }
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

async fn list_all(c: &mut CacheServiceClient<Channel>) -> Vec<DnsRecord> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_records(ListRecordsRequest {
                page_size: 10_000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("ListRecords")
            .into_inner();
        out.extend(page.records);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

async fn capabilities(c: &mut CacheServiceClient<Channel>) -> Capabilities {
    c.get_cache_status(GetCacheStatusRequest {})
        .await
        .expect("GetCacheStatus")
        .into_inner()
        .capabilities
        .expect("capabilities reported")
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

/// A sample record of each type, and the content an update gives it.
fn samples() -> Vec<(RecordInput, String)> {
    vec![
        (
            input("A", "conf-a.example.com", "192.0.2.10", None),
            "192.0.2.11".into(),
        ),
        (
            input("AAAA", "conf-aaaa.example.com", "2001:db8::10", None),
            "2001:db8::11".into(),
        ),
        (
            input(
                "CNAME",
                "conf-cname.example.com",
                "target.example.net",
                None,
            ),
            "other.example.net".into(),
        ),
        (
            input("TXT", "conf-txt.example.com", "v=conformance one", None),
            "v=conformance two".into(),
        ),
        (
            input("MX", "conf-mx.example.com", "mail.example.net", Some(10)),
            "mail2.example.net".into(),
        ),
        (
            input(
                "SRV",
                "_sip._tcp.conf-srv.example.com",
                "5 5060 sip.example.net",
                Some(10),
            ),
            "5 5061 sip.example.net".into(),
        ),
        (
            input(
                "CAA",
                "conf-caa.example.com",
                "0 issue \"letsencrypt.org\"",
                None,
            ),
            "0 issue \"pki.goog\"".into(),
        ),
        (
            input("NS", "conf-ns.example.com", "ns1.example.net", None),
            "ns2.example.net".into(),
        ),
    ]
}

fn at<'a>(held: &'a [Held], rtype: &str, name: &str) -> Vec<&'a Held> {
    held.iter()
        .filter(|h| h.rtype == rtype && h.name == name)
        .collect()
}

fn assert_no_secret(backend: &dyn Backend, text: &str, what: &str) {
    for s in backend.secrets() {
        if !s.is_empty() {
            assert!(
                !text.contains(&s),
                "{}: a secret appears in {what}: {text}",
                backend.name()
            );
        }
    }
}

/// A listing of several pages is read whole: every record the provider
/// holds is in the cache once.
pub async fn lists_a_zone_whole_across_pages(backend: &dyn Backend) {
    let per_page = backend.page_size().max(10);
    let n = per_page * 3 + per_page / 2;
    backend
        .seed(
            (0..n)
                .map(|i| Held::new("A", &format!("page-{i:04}.example.com"), "192.0.2.1"))
                .collect(),
        )
        .await;
    let dir = tempdir();
    let mut run = start(dir.path(), &backend.cache_args(dir.path())).await;
    let r = refresh(&mut run.client).await.expect("refresh");
    let held = backend.held().await;
    let cached = list_all(&mut run.client).await;
    assert_eq!(r.total, cached.len() as u64, "{}", backend.name());
    for i in 0..n {
        let name = format!("page-{i:04}.example.com");
        assert_eq!(
            cached
                .iter()
                .filter(|c| c.name == name && c.r#type == "A")
                .count(),
            1,
            "{}: {name} cached once",
            backend.name()
        );
    }
    let mut ids: Vec<&str> = cached.iter().map(|c| c.record_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), cached.len(), "{}: no id twice", backend.name());
    let seeded = held.iter().filter(|h| h.name.starts_with("page-")).count();
    assert_eq!(
        seeded,
        n,
        "{}: the provider holds what was seeded",
        backend.name()
    );
    if backend.page_size() > 0 {
        assert!(
            r.provider_requests >= 3,
            "{}: {n} records at {per_page} per page take several requests: {r:?}",
            backend.name()
        );
    }
    run.svc.shutdown().await.unwrap();
}

/// Every record type the provider declares is created, updated and deleted
/// through cache-service, and the provider holds exactly that each time.
pub async fn creates_updates_and_deletes_each_declared_type(backend: &dyn Backend) {
    let dir = tempdir();
    let mut run = start(dir.path(), &backend.cache_args(dir.path())).await;
    let caps = capabilities(&mut run.client).await;
    let mut tried = 0;
    for (rec, new_content) in samples() {
        if !caps.record_types.contains(&rec.r#type) {
            not_applicable(
                backend,
                &format!("writes of {}", rec.r#type),
                "not a declared type",
            );
            continue;
        }
        tried += 1;
        let (rtype, name) = (rec.r#type.clone(), rec.name.clone());
        let created = run
            .client
            .create_record(CreateRecordRequest {
                record: Some(rec.clone()),
            })
            .await
            .unwrap_or_else(|e| panic!("{}: create {rtype}: {e:?}", backend.name()))
            .into_inner()
            .record
            .expect("created record");
        let held = backend.held().await;
        let here = at(&held, &rtype, &name);
        assert_eq!(
            here.len(),
            1,
            "{}: {rtype} {name} created: {held:?}",
            backend.name()
        );
        let before = here[0].content.clone();
        let updated = run
            .client
            .update_record(UpdateRecordRequest {
                record_id: created.record_id.clone(),
                record: Some(RecordInput {
                    content: new_content.clone(),
                    ..rec.clone()
                }),
            })
            .await
            .unwrap_or_else(|e| panic!("{}: update {rtype}: {e:?}", backend.name()))
            .into_inner()
            .record
            .expect("updated record");
        let held = backend.held().await;
        let here = at(&held, &rtype, &name);
        assert_eq!(
            here.len(),
            1,
            "{}: {rtype} {name} updated in place: {held:?}",
            backend.name()
        );
        assert_ne!(
            here[0].content,
            before,
            "{}: {rtype} content changed",
            backend.name()
        );
        run.client
            .delete_record(DeleteRecordRequest {
                record_id: updated.record_id.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("{}: delete {rtype}: {e:?}", backend.name()));
        let held = backend.held().await;
        assert!(
            at(&held, &rtype, &name).is_empty(),
            "{}: {rtype} {name} deleted",
            backend.name()
        );
        // The cache followed each write at once.
        let cached = list_all(&mut run.client).await;
        assert!(
            !cached.iter().any(|c| c.name == name && c.r#type == rtype),
            "{}: the cache dropped the deleted {rtype}",
            backend.name()
        );
    }
    assert!(
        tried >= 4,
        "{}: declares too few types: {caps:?}",
        backend.name()
    );
    run.svc.shutdown().await.unwrap();
}

/// A batch of creates, an update and a delete is applied with one result per
/// change, in order, and the provider holds the outcome.
pub async fn applies_a_batch(backend: &dyn Backend) {
    backend
        .seed(vec![
            Held::new("A", "batch-upd.example.com", "192.0.2.20"),
            Held::new("A", "batch-del.example.com", "192.0.2.21"),
        ])
        .await;
    let dir = tempdir();
    let mut run = start(dir.path(), &backend.cache_args(dir.path())).await;
    refresh(&mut run.client).await.expect("refresh");
    let cached = list_all(&mut run.client).await;
    let id_of = |name: &str| {
        cached
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.record_id.clone())
            .unwrap_or_else(|| panic!("{name} cached"))
    };
    let mut changes: Vec<Change> = (0..10)
        .map(|i| Change {
            kind: Some(change::Kind::Create(input(
                "A",
                &format!("batch-{i}.example.com"),
                "192.0.2.30",
                None,
            ))),
            change_id: format!("conf-batch-{i}"),
            group: String::new(),
        })
        .collect();
    changes.push(Change {
        kind: Some(change::Kind::Update(UpdateChange {
            record_id: id_of("batch-upd.example.com"),
            record: Some(input("A", "batch-upd.example.com", "192.0.2.22", None)),
        })),
        change_id: "conf-batch-upd".into(),
        group: String::new(),
    });
    changes.push(Change {
        kind: Some(change::Kind::Delete(DeleteChange {
            record_id: id_of("batch-del.example.com"),
        })),
        change_id: "conf-batch-del".into(),
        group: String::new(),
    });
    let r = run
        .client
        .apply_changes(ApplyChangesRequest { changes })
        .await
        .unwrap_or_else(|e| panic!("{}: batch: {e:?}", backend.name()))
        .into_inner();
    assert_eq!(r.succeeded, 12, "{}: {r:?}", backend.name());
    for (i, res) in r.results.iter().enumerate() {
        assert_eq!(res.index as usize, i);
        assert_eq!(res.code, 0, "{}: {res:?}", backend.name());
    }
    let held = backend.held().await;
    for i in 0..10 {
        assert_eq!(at(&held, "A", &format!("batch-{i}.example.com")).len(), 1);
    }
    let upd = at(&held, "A", "batch-upd.example.com");
    assert_eq!(upd.len(), 1);
    assert_eq!(upd[0].content, "192.0.2.22", "{}", backend.name());
    assert!(at(&held, "A", "batch-del.example.com").is_empty());
    run.svc.shutdown().await.unwrap();
}

/// Of several records at one name and type (an RRset), changing or deleting
/// one keeps the others as they were.
pub async fn one_record_of_an_rrset_changes_alone(backend: &dyn Backend) {
    backend
        .seed(vec![
            Held::new("A", "rrset.example.com", "192.0.2.41"),
            Held::new("A", "rrset.example.com", "192.0.2.42"),
            Held::new("A", "rrset.example.com", "192.0.2.43"),
        ])
        .await;
    let dir = tempdir();
    let mut run = start(dir.path(), &backend.cache_args(dir.path())).await;
    refresh(&mut run.client).await.expect("refresh");
    let cached = list_all(&mut run.client).await;
    let id_of = |content: &str| {
        cached
            .iter()
            .find(|c| c.name == "rrset.example.com" && c.content == content)
            .map(|c| c.record_id.clone())
            .unwrap_or_else(|| panic!("{content} cached: {cached:?}"))
    };
    run.client
        .update_record(UpdateRecordRequest {
            record_id: id_of("192.0.2.41"),
            record: Some(input("A", "rrset.example.com", "192.0.2.44", None)),
        })
        .await
        .unwrap_or_else(|e| panic!("{}: update one of an RRset: {e:?}", backend.name()));
    let mut contents: Vec<String> = at(&backend.held().await, "A", "rrset.example.com")
        .into_iter()
        .map(|h| h.content.clone())
        .collect();
    contents.sort();
    assert_eq!(
        contents,
        ["192.0.2.42", "192.0.2.43", "192.0.2.44"],
        "{}",
        backend.name()
    );
    run.client
        .delete_record(DeleteRecordRequest {
            record_id: id_of("192.0.2.42"),
        })
        .await
        .unwrap_or_else(|e| panic!("{}: delete one of an RRset: {e:?}", backend.name()));
    let mut contents: Vec<String> = at(&backend.held().await, "A", "rrset.example.com")
        .into_iter()
        .map(|h| h.content.clone())
        .collect();
    contents.sort();
    assert_eq!(contents, ["192.0.2.43", "192.0.2.44"], "{}", backend.name());
    run.svc.shutdown().await.unwrap();
}

/// Record ids are the same after a refresh, after a restart on the same
/// database, and after a restart on a new database.
pub async fn ids_are_stable_across_refreshes_and_restarts(backend: &dyn Backend) {
    backend
        .seed(
            (0..20)
                .map(|i| Held::new("A", &format!("stable-{i}.example.com"), "192.0.2.50"))
                .collect(),
        )
        .await;
    let dir = tempdir();
    let args = backend.cache_args(dir.path());
    let ids = |records: &[DnsRecord]| -> HashMap<(String, String, String), String> {
        records
            .iter()
            .map(|r| {
                (
                    (r.name.clone(), r.r#type.clone(), r.content.clone()),
                    r.record_id.clone(),
                )
            })
            .collect()
    };
    let mut run = start(dir.path(), &args).await;
    refresh(&mut run.client).await.expect("refresh");
    let first = ids(&list_all(&mut run.client).await);
    refresh(&mut run.client).await.expect("refresh");
    assert_eq!(
        ids(&list_all(&mut run.client).await),
        first,
        "{}: refresh",
        backend.name()
    );
    run.svc.shutdown().await.unwrap();
    let mut run = start(dir.path(), &args).await;
    refresh(&mut run.client).await.expect("refresh");
    assert_eq!(
        ids(&list_all(&mut run.client).await),
        first,
        "{}: restart",
        backend.name()
    );
    run.svc.shutdown().await.unwrap();
    let other = tempdir();
    let mut run = start(other.path(), &backend.cache_args(other.path())).await;
    refresh(&mut run.client).await.expect("refresh");
    assert_eq!(
        ids(&list_all(&mut run.client).await),
        first,
        "{}: a new database",
        backend.name()
    );
    run.svc.shutdown().await.unwrap();
}

/// A write that clashes with what the provider holds is ALREADY_EXISTS; a
/// write to a record that does not exist is NOT_FOUND.
pub async fn conflicts_and_missing_records_have_their_codes(backend: &dyn Backend) {
    backend
        .seed(vec![Held::new("A", "taken.example.com", "192.0.2.60")])
        .await;
    let dir = tempdir();
    let mut run = start(dir.path(), &backend.cache_args(dir.path())).await;
    refresh(&mut run.client).await.expect("refresh");
    let e = run
        .client
        .create_record(CreateRecordRequest {
            record: Some(input(
                "CNAME",
                "taken.example.com",
                "target.example.net",
                None,
            )),
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::AlreadyExists,
        "{}: a CNAME beside an A: {e:?}",
        backend.name()
    );
    let caps = capabilities(&mut run.client).await;
    let missing = missing_id(&caps);
    let e = run
        .client
        .delete_record(DeleteRecordRequest {
            record_id: missing.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::NotFound,
        "{}: delete: {e:?}",
        backend.name()
    );
    let e = run
        .client
        .update_record(UpdateRecordRequest {
            record_id: missing,
            record: Some(input("A", "nowhere.example.com", "192.0.2.61", None)),
        })
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Code::NotFound,
        "{}: update: {e:?}",
        backend.name()
    );
    let held = backend.held().await;
    assert_eq!(
        at(&held, "A", "taken.example.com").len(),
        1,
        "{}",
        backend.name()
    );
    assert!(at(&held, "A", "nowhere.example.com").is_empty());
    assert!(at(&held, "CNAME", "taken.example.com").is_empty());
    run.svc.shutdown().await.unwrap();
}

/// A well-formed id of this provider that names no record (nines for
/// decimal ids, lowercase hex digits for every other charset).
fn missing_id(caps: &Capabilities) -> String {
    let f = caps.record_id_format.unwrap_or_default();
    let len = 32u32.clamp(f.min_length.max(1), f.max_length.max(1));
    let digit = if f.charset == RecordIdCharset::Decimal as i32 {
        "9"
    } else {
        "f"
    };
    digit.repeat(len as usize)
}

/// With credentials the provider refuses, a refresh fails with
/// UNAUTHENTICATED or PERMISSION_DENIED, and no secret appears in any
/// message or log line.
pub async fn bad_credentials_are_refused_without_leaking(backend: &dyn Backend) {
    let dir = tempdir();
    let Some(args) = backend.bad_credentials_args(dir.path()) else {
        not_applicable(
            backend,
            "bad credentials",
            "the provider has no credentials",
        );
        return;
    };
    let mut run = start(dir.path(), &args).await;
    let e = refresh(&mut run.client).await.unwrap_err();
    assert!(
        matches!(e.code(), Code::Unauthenticated | Code::PermissionDenied),
        "{}: {e:?}",
        backend.name()
    );
    assert_no_secret(backend, e.message(), "the status message");
    let st = run
        .client
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(st.stale, "{}", backend.name());
    assert!(!st.last_error.is_empty());
    assert_no_secret(backend, &st.last_error, "GetCacheStatus.last_error");
    assert_no_secret(backend, &format!("{st:?}"), "GetCacheStatus");
    let logs = crate::captured_logs();
    assert!(
        logs.contains("cache-service starting"),
        "the logs are captured (call capture_logs before the backend starts)"
    );
    assert_no_secret(backend, &logs, "the logs");
    run.svc.shutdown().await.unwrap();
}

/// A provider that is down keeps the last snapshot whole (the refresh fails,
/// reads go on); rate-limit answers are waited out and the refresh succeeds.
pub async fn faults_are_ridden_out_with_the_old_snapshot_kept(backend: &dyn Backend) {
    backend
        .seed(
            (0..30)
                .map(|i| Held::new("A", &format!("kept-{i}.example.com"), "192.0.2.70"))
                .collect(),
        )
        .await;
    let dir = tempdir();
    let mut run = start(dir.path(), &backend.cache_args(dir.path())).await;
    refresh(&mut run.client).await.expect("refresh");
    let before = list_all(&mut run.client).await;
    if backend.fault(Fault::Down).await {
        let e = refresh(&mut run.client).await.unwrap_err();
        assert_eq!(e.code(), Code::Unavailable, "{}: {e:?}", backend.name());
        assert_eq!(
            list_all(&mut run.client).await,
            before,
            "{}: snapshot kept",
            backend.name()
        );
        let st = run
            .client
            .get_cache_status(GetCacheStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert!(
            st.stale && !st.last_error.is_empty(),
            "{}: {st:?}",
            backend.name()
        );
        assert!(backend.fault(Fault::Clear).await);
        refresh(&mut run.client)
            .await
            .expect("refresh after the provider is back");
    } else {
        not_applicable(backend, "provider down", "cannot be staged");
    }
    if backend.fault(Fault::RateLimited).await {
        let r = tokio::time::timeout(Duration::from_secs(60), refresh(&mut run.client))
            .await
            .expect("rate limits are waited out, not forever");
        let r = r.unwrap_or_else(|e| panic!("{}: rate limited: {e:?}", backend.name()));
        assert_eq!(r.total, before.len() as u64, "{}", backend.name());
        assert!(backend.fault(Fault::Clear).await);
    } else {
        not_applicable(backend, "rate limits", "cannot be staged");
    }
    run.svc.shutdown().await.unwrap();
}

/// Declares one `#[tokio::test]` per check for a backend made by `$make`
/// (an async expression yielding something that implements [`Backend`]).
#[macro_export]
macro_rules! conformance_suite {
    ($module:ident, $make:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            use $crate::conformance as suite;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lists_a_zone_whole_across_pages() {
                let b = $make;
                suite::lists_a_zone_whole_across_pages(&b).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn creates_updates_and_deletes_each_declared_type() {
                let b = $make;
                suite::creates_updates_and_deletes_each_declared_type(&b).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn applies_a_batch() {
                let b = $make;
                suite::applies_a_batch(&b).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn one_record_of_an_rrset_changes_alone() {
                let b = $make;
                suite::one_record_of_an_rrset_changes_alone(&b).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn ids_are_stable_across_refreshes_and_restarts() {
                let b = $make;
                suite::ids_are_stable_across_refreshes_and_restarts(&b).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn conflicts_and_missing_records_have_their_codes() {
                let b = $make;
                suite::conflicts_and_missing_records_have_their_codes(&b).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn bad_credentials_are_refused_without_leaking() {
                let b = $make;
                suite::bad_credentials_are_refused_without_leaking(&b).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn faults_are_ridden_out_with_the_old_snapshot_kept() {
                let b = $make;
                suite::faults_are_ridden_out_with_the_old_snapshot_kept(&b).await;
            }
        }
    };
}
