//! Crash recovery without waiting: `kill -9` of cache-service or of
//! tracking-service in the middle of a 500-hostname Reconcile, the service
//! started again, and the same Reconcile sent again. It must converge at
//! once: every declared hostname exists exactly once, every record the app
//! created is tracked app-managed, nothing foreign is claimed, and no write
//! is ever sent twice (the fake counts every operation it receives).
//!
//! The killed service runs as its own process (the real binary), the other
//! in-process; the fake Cloudflare loses the answer of a write it applied,
//! or answers slowly, so the kill lands while a write is in flight. Nothing
//! here sleeps to wait: the tests wait on the fake's own counters.

mod tracking_support;

use std::collections::HashMap;

use tonic::Code;
use tracking_support::*;
use trafego_common::clock::ManualClock;
use trafego_proto::tracking::{
    ChangeAction, DesiredRecord, ListTrackedRecordsRequest, ReconcileRequest, TrackedRecord,
};
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions, FakeRecord, LostAnswer};
use trafego_tests::{free_port, spawn_service};

const HOSTS: usize = 500;
/// Of the declared hostnames, these already exist at the provider with the
/// declared content (someone else's): adopted, never claimed.
const FOREIGN_SAME: usize = 20;

fn desired() -> Vec<DesiredRecord> {
    (0..HOSTS)
        .map(|i| DesiredRecord {
            hostname: format!("h{i:03}.example.com"),
            r#type: Some("A".into()),
            content: Some(format!("192.0.2.{}", i % 250 + 1)),
            proxied: Some(false),
            ..Default::default()
        })
        .collect()
}

/// Foreign records: some at declared names with the declared content, and
/// some unrelated ones.
fn foreign() -> Vec<FakeRecord> {
    let mut v: Vec<FakeRecord> = (0..FOREIGN_SAME)
        .map(|i| {
            FakeRecord::new(
                "A",
                &format!("h{i:03}.example.com"),
                &format!("192.0.2.{}", i % 250 + 1),
            )
        })
        .collect();
    v.extend((0..100).map(|i| {
        FakeRecord::new(
            "TXT",
            &format!("other-{i}.example.com"),
            "\"someone else's\"",
        )
    }));
    v
}

fn request() -> ReconcileRequest {
    ReconcileRequest {
        source: "deploy".into(),
        records: desired(),
        dry_run: false,
        force: false,
    }
}

async fn tracked(url: &str) -> Vec<TrackedRecord> {
    let mut c = tracking_client(url).await;
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_tracked_records(ListTrackedRecordsRequest {
                page_size: 10_000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(page.records);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// What a converged state looks like, checked against the fake and the
/// tracker: one record per declared hostname, the app's own tracked
/// app-managed, the foreign ones untouched and never app-managed.
async fn assert_converged(fake: &FakeCloudflare, tracking_url: &str, foreign_ids: &[String]) {
    let mut by_name: HashMap<String, Vec<FakeRecord>> = HashMap::new();
    for r in fake.records() {
        by_name.entry(r.name.clone()).or_default().push(r);
    }
    for d in desired() {
        let at = by_name.get(&d.hostname).map(Vec::as_slice).unwrap_or(&[]);
        let a: Vec<_> = at.iter().filter(|r| r.r#type == "A").collect();
        assert_eq!(a.len(), 1, "{}: exactly one record: {a:?}", d.hostname);
        assert_eq!(Some(&a[0].content), d.content.as_ref());
    }
    assert_eq!(
        fake.count(),
        HOSTS + 100,
        "the declared hostnames and the unrelated foreign records, nothing more"
    );
    let rows = tracked(tracking_url).await;
    assert_eq!(rows.len(), HOSTS, "every declared hostname tracked once");
    for t in &rows {
        let is_foreign = foreign_ids.contains(&t.record_id);
        assert_eq!(
            t.app_managed, !is_foreign,
            "{} {}: app-managed exactly when the app created it",
            t.name, t.record_id
        );
    }
    for id in foreign_ids {
        assert!(fake.get(id).is_some(), "foreign record {id} untouched");
    }
}

fn cache_env(
    fake: &FakeCloudflare,
    dir: &std::path::Path,
    port: u16,
) -> Vec<(&'static str, String)> {
    vec![
        ("CACHE_LISTEN_ADDR", format!("127.0.0.1:{port}")),
        ("CACHE_DB_PATH", dir.join("cache.db").display().to_string()),
        ("DNS_PROVIDER", "cloudflare".into()),
        ("DNS_ZONE", ZONE.into()),
        ("CLOUDFLARE_API_URL", fake.base_url()),
        ("CLOUDFLARE_TOKEN", TOKEN.into()),
        ("CLOUDFLARE_BATCH_SIZE", "100".into()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_cache_service_mid_reconcile_then_the_same_reconcile_converges() {
    let fake = FakeCloudflare::start(FakeOptions::new(TOKEN, ZONE))
        .await
        .unwrap();
    let foreign_ids = fake.insert_many(foreign());
    let foreign_same: Vec<String> = foreign_ids[..FOREIGN_SAME].to_vec();
    let dir = trafego_tests::tempdir();
    let port = free_port();
    let envs = cache_env(&fake, dir.path(), port);
    let mut cache = spawn_service("cache-service", &envs).await;
    let cache_url = format!("http://{}", cache.addr);
    let tracking = start_tracking(
        &cache_url,
        dir.path(),
        &["--cache-service-timeout", "60s"],
        ManualClock::new(T0),
    )
    .await;
    let mut client = tracking_client(&tracking.url).await;

    // Cloudflare applies the first batch, and its answer never comes back.
    fake.lose_write_answers(1, LostAnswer::Hang);
    let call = {
        let mut c = client.clone();
        tokio::spawn(async move { c.reconcile(request()).await })
    };
    fake.wait_answers_lost(1).await;
    cache.child.kill().await.unwrap(); // SIGKILL, while the batch is in flight
    let first = call.await.unwrap();
    let e = first.expect_err("the interrupted reconcile cannot look like success");
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    let applied_before = fake.count() - 100 - FOREIGN_SAME;
    assert_eq!(applied_before, 100, "the first batch was applied");

    // cache-service again, same database, same port.
    let _cache = spawn_service("cache-service", &envs).await;
    let r = client
        .reconcile(request())
        .await
        .unwrap_or_else(|e| panic!("converges at once: {e:?}"))
        .into_inner();
    let s = r.summary.unwrap();
    assert_eq!(s.failed, 0, "{s:?}");
    // The interrupted call recorded its adoptions; the rest are the app's.
    assert_eq!(s.unchanged as usize, FOREIGN_SAME, "{s:?}");
    assert_eq!(s.created as usize, HOSTS - FOREIGN_SAME, "{s:?}");
    assert!(r.changes.iter().all(|c| c.applied && c.code == 0), "{r:?}");
    let claimed = r
        .changes
        .iter()
        .filter(|c| c.action == ChangeAction::Create as i32 && c.reason.contains("did not finish"))
        .count();
    assert_eq!(
        claimed, 100,
        "the first batch is claimed, not created again"
    );
    assert_converged(&fake, &tracking.url, &foreign_same).await;
    // Never sent twice: 480 creates reached Cloudflare in all.
    let st = fake.stats();
    assert_eq!(
        st.batch_ops + st.create,
        (HOSTS - FOREIGN_SAME) as u64,
        "each create sent exactly once: {st:?}"
    );
    // And the next identical call writes nothing.
    fake.reset_stats();
    let r = client.reconcile(request()).await.unwrap().into_inner();
    assert_eq!(r.summary.unwrap().unchanged as usize, HOSTS);
    let st = fake.stats();
    assert_eq!(st.batch + st.create + st.update + st.delete, 0, "{st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_tracking_service_mid_reconcile_then_the_same_reconcile_converges() {
    let fake = FakeCloudflare::start(FakeOptions::new(TOKEN, ZONE))
        .await
        .unwrap();
    let foreign_ids = fake.insert_many(foreign());
    let foreign_same: Vec<String> = foreign_ids[..FOREIGN_SAME].to_vec();
    let dir = trafego_tests::tempdir();
    let mut args = cloudflare_args(&fake, dir.path());
    args.extend(["--cloudflare-batch-size".into(), "100".into()]);
    let cache = start_cache_on(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        args,
    )
    .await;
    let tracking_env = |dir: &std::path::Path| {
        vec![
            ("TRACKING_LISTEN_ADDR", "127.0.0.1:0".to_string()),
            (
                "TRACKING_DB_PATH",
                dir.join("tracking.db").display().to_string(),
            ),
            ("CACHE_SERVICE_URL", cache.url.clone()),
            ("CLEANUP_INTERVAL", "1h".to_string()),
        ]
    };
    let envs = tracking_env(dir.path());
    let mut tracking = spawn_service("tracking-service", &envs).await;
    let url = format!("http://{}", tracking.addr);

    // Every answer of the fake takes a while: the batches are still being
    // written when tracking-service dies.
    fake.set_delay(std::time::Duration::from_millis(150));
    fake.reset_stats();
    let call = {
        let mut c = tracking_client(&url).await;
        tokio::spawn(async move { c.reconcile(request()).await })
    };
    fake.wait_stats(|s| s.batch >= 1).await;
    tracking.child.kill().await.unwrap(); // SIGKILL
    assert!(call.await.unwrap().is_err());
    assert!(
        fake.stats().batch < 5,
        "the kill landed while cache-service was still writing: {:?}",
        fake.stats()
    );

    let restarted = spawn_service("tracking-service", &envs).await;
    let url = format!("http://{}", restarted.addr);
    let mut client = tracking_client(&url).await;
    let r = client
        .reconcile(request())
        .await
        .unwrap_or_else(|e| panic!("converges at once: {e:?}"))
        .into_inner();
    let s = r.summary.unwrap();
    assert_eq!(s.failed, 0, "{s:?}");
    assert_eq!(s.adopted as usize, FOREIGN_SAME, "{s:?}");
    assert_converged(&fake, &url, &foreign_same).await;
    let st = fake.stats();
    assert_eq!(
        st.batch_ops + st.create,
        (HOSTS - FOREIGN_SAME) as u64,
        "each create sent exactly once: {st:?}"
    );
}
