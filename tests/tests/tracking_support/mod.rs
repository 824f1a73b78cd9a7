//! Shared helpers of the tracking-service end-to-end tests: start the fake
//! Cloudflare API, cache-service and tracking-service in-process on
//! ephemeral loopback ports (each listener bound before its service is
//! spawned: no race, no sleep), and small builders for requests.
//!
//! Only tests use this; it never touches a real provider.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use trafego_common::clock::ManualClock;
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::cache::{GetCacheStatusRequest, RefreshCacheRequest};
use trafego_proto::tracking::tracking_service_client::TrackingServiceClient;
use trafego_proto::tracking::*;
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions, FakeRecord, FakeStats};

/// The token the fake accepts.
pub const TOKEN: &str = "tracking-test-token";
/// The zone of every test.
pub const ZONE: &str = "example.com";
/// A start time for the injected clock (2026-01-01).
pub const T0: i64 = 1_767_225_600_000;

/// A service running in this process.
pub struct Service {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://addr`.
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Service {
    /// Stops it (as SIGTERM would) and returns what `run` returned, or
    /// `None` if it did not return within 20 s.
    pub async fn shutdown_result(mut self) -> Option<anyhow::Result<()>> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let t = self.task.take()?;
        tokio::time::timeout(Duration::from_secs(20), t)
            .await
            .ok()
            .map(|j| j.unwrap_or_else(|e| Err(anyhow::anyhow!("task: {e}"))))
    }

    /// Stops it in place (as SIGTERM would) and waits for it to return,
    /// for tests that start a new one in its place.
    pub async fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), t).await;
        }
    }

    /// Stops it (as SIGTERM would) and waits for it to return.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), t).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn spawn<F>(
    listener: TcpListener,
    run: impl FnOnce(TcpListener, oneshot::Receiver<()>) -> F,
) -> Service
where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(run(listener, rx));
    Service {
        addr,
        url: format!("http://{addr}"),
        stop: Some(tx),
        task: Some(task),
    }
}

/// Starts cache-service with `args` on `listener`.
pub async fn start_cache_on(listener: TcpListener, args: Vec<String>) -> Service {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let config = cache_service::Config::for_test(&refs);
    spawn(listener, move |l, rx| {
        cache_service::run(l, config, async move {
            let _ = rx.await;
        })
    })
}

/// cache-service flags for the fake Cloudflare `fake`, files in `dir`.
pub fn cloudflare_args(fake: &FakeCloudflare, dir: &Path) -> Vec<String> {
    vec![
        "--provider".into(),
        "cloudflare".into(),
        "--zone".into(),
        ZONE.into(),
        "--cloudflare-api-url".into(),
        fake.base_url(),
        "--cloudflare-token".into(),
        TOKEN.into(),
        "--db-path".into(),
        dir.join("cache.db").display().to_string(),
    ]
}

/// cache-service flags for the zone-file provider, files in `dir`.
pub fn zonefile_args(dir: &Path) -> Vec<String> {
    vec![
        "--zone".into(),
        ZONE.into(),
        "--db-path".into(),
        dir.join("cache.db").display().to_string(),
        "--zonefile-path".into(),
        dir.join("example.com.zone").display().to_string(),
    ]
}

/// Starts tracking-service against `cache_url` with `extra` flags and `clock`.
/// A default flag below that `extra` also gives is left out (`extra` wins).
pub async fn start_tracking(
    cache_url: &str,
    dir: &Path,
    extra: &[&str],
    clock: ManualClock,
) -> Service {
    let db = dir.join("tracking.db").display().to_string();
    let defaults: [(&str, String); 5] = [
        ("--cache-service-url", cache_url.into()),
        ("--db-path", db),
        // The periodic sweep stays out of the way; tests sweep by hand.
        ("--cleanup-interval", "1h".into()),
        ("--cache-service-timeout", "10s".into()),
        ("--shutdown-grace", "2s".into()),
    ];
    let mut args: Vec<String> = Vec::new();
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag.to_string(), value]);
        }
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let config = tracking_service::Config::for_test(&refs);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    spawn(listener, move |l, rx| {
        tracking_service::run_with_clock(
            l,
            config,
            async move {
                let _ = rx.await;
            },
            std::sync::Arc::new(clock),
        )
    })
}

/// A tracking-service client.
pub async fn tracking_client(url: &str) -> TrackingServiceClient<Channel> {
    let ch = Channel::from_shared(url.to_string())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    TrackingServiceClient::new(ch)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20)
}

/// A cache-service client.
pub async fn cache_client(url: &str) -> CacheServiceClient<Channel> {
    let ch = Channel::from_shared(url.to_string())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    CacheServiceClient::new(ch)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20)
}

/// Fake Cloudflare + cache-service + tracking-service, with a manual clock.
pub struct Env {
    /// The fake provider.
    pub fake: FakeCloudflare,
    /// cache-service (taken out by tests that stop it).
    pub cache: Option<Service>,
    /// tracking-service.
    pub tracking: Service,
    /// tracking-service's clock.
    pub clock: ManualClock,
    /// A client of tracking-service.
    pub client: TrackingServiceClient<Channel>,
    /// A client of cache-service.
    pub cache_client: CacheServiceClient<Channel>,
    /// Files of both services.
    pub dir: tempfile::TempDir,
}

impl Env {
    /// Starts everything; `seed` is at the provider before cache-service starts.
    pub async fn start(seed: Vec<FakeRecord>, tracking_args: &[&str]) -> Env {
        trafego_tests::init_test_logging();
        let fake = FakeCloudflare::start(FakeOptions::new(TOKEN, ZONE))
            .await
            .expect("fake");
        fake.insert_many(seed);
        let dir = tempfile::tempdir().expect("tempdir");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let cache = start_cache_on(listener, cloudflare_args(&fake, dir.path())).await;
        let clock = ManualClock::new(T0);
        let tracking = start_tracking(&cache.url, dir.path(), tracking_args, clock.clone()).await;
        let client = tracking_client(&tracking.url).await;
        let mut cache_client = cache_client(&cache.url).await;
        // Wait for cache-service's first refresh so provider counters start clean.
        cache_client
            .refresh_cache(RefreshCacheRequest {
                force: false,
                ..Default::default()
            })
            .await
            .expect("first refresh");
        fake.reset_stats();
        Env {
            fake,
            cache: Some(cache),
            tracking,
            clock,
            client,
            cache_client,
            dir,
        }
    }

    /// Stops tracking-service (as SIGTERM would), waits for it to return, and
    /// starts it again with `args` on the same files and clock: a restart.
    pub async fn restart_tracking(&mut self, args: &[&str]) {
        if let Some(s) = self.tracking.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.tracking.task.take() {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("tracking-service stops within 20 s")
                .expect("tracking-service task")
                .expect("tracking-service returns Ok");
        }
        let cache_url = self.cache.as_ref().expect("cache-service runs").url.clone();
        self.tracking = start_tracking(&cache_url, self.dir.path(), args, self.clock.clone()).await;
        self.client = tracking_client(&self.tracking.url).await;
    }

    /// Refreshes cache-service's cache now.
    pub async fn refresh(&mut self) {
        self.cache_client
            .refresh_cache(RefreshCacheRequest {
                force: true,
                ..Default::default()
            })
            .await
            .expect("refresh");
    }

    /// Reconciles and panics on error.
    pub async fn reconcile(
        &mut self,
        source: &str,
        records: Vec<DesiredRecord>,
    ) -> ReconcileResponse {
        self.client
            .reconcile(ReconcileRequest {
                source: source.into(),
                records,
                dry_run: false,
                force: false,
            })
            .await
            .expect("reconcile")
            .into_inner()
    }

    /// Reconciles with every flag given, returning the status on error.
    pub async fn try_reconcile(
        &mut self,
        source: &str,
        records: Vec<DesiredRecord>,
        dry_run: bool,
        force: bool,
    ) -> Result<ReconcileResponse, tonic::Status> {
        self.client
            .reconcile(ReconcileRequest {
                source: source.into(),
                records,
                dry_run,
                force,
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Runs the sweep.
    pub async fn sweep(&mut self, dry_run: bool) -> RunOrphanSweepResponse {
        self.client
            .run_orphan_sweep(RunOrphanSweepRequest { dry_run })
            .await
            .expect("sweep")
            .into_inner()
    }

    /// Every tracked record.
    pub async fn tracked(&mut self) -> Vec<TrackedRecord> {
        self.client
            .list_tracked_records(ListTrackedRecordsRequest {
                page_size: 10_000,
                ..Default::default()
            })
            .await
            .expect("list")
            .into_inner()
            .records
    }

    /// The tracker's status.
    pub async fn status(&mut self) -> GetTrackerStatusResponse {
        self.client
            .get_tracker_status(GetTrackerStatusRequest {})
            .await
            .expect("status")
            .into_inner()
    }

    /// Whether cache-service calls its cache stale.
    pub async fn cache_stale(&mut self) -> bool {
        self.cache_client
            .get_cache_status(GetCacheStatusRequest {})
            .await
            .expect("cache status")
            .into_inner()
            .stale
    }

    /// Records cache-service's cache holds with this name.
    pub async fn in_cache(&self, name: &str) -> Vec<trafego_proto::cache::DnsRecord> {
        self.cache_client
            .clone()
            .list_records(trafego_proto::cache::ListRecordsRequest {
                name: name.into(),
                ..Default::default()
            })
            .await
            .expect("list cache")
            .into_inner()
            .records
    }

    /// The tracked record of `name`, if any.
    pub async fn tracked_named(&mut self, name: &str) -> Vec<TrackedRecord> {
        self.tracked()
            .await
            .into_iter()
            .filter(|t| t.name == name)
            .collect()
    }

    /// Renames the provider record `id` to `name` behind the app's back (same id).
    pub fn rename_at_provider(&self, id: &str, name: &str) {
        let mut r = self.fake.get(id).expect("record to rename");
        r.name = name.to_string();
        self.fake.insert(r);
    }

    /// Records at the provider with this name.
    pub fn at_provider(&self, name: &str) -> Vec<FakeRecord> {
        self.fake
            .records()
            .into_iter()
            .filter(|r| r.name == name)
            .collect()
    }
}

/// Provider writes counted by the fake (single-record calls and batches).
pub fn writes(s: &FakeStats) -> u64 {
    s.create + s.update + s.delete + s.batch
}

/// A declaration of `host` with every optional field left to the defaults.
pub fn host(h: &str) -> DesiredRecord {
    DesiredRecord {
        hostname: h.into(),
        ..Default::default()
    }
}

/// A declaration of an A record.
pub fn a(h: &str, ip: &str) -> DesiredRecord {
    DesiredRecord {
        hostname: h.into(),
        r#type: Some("A".into()),
        content: Some(ip.into()),
        proxied: Some(false),
        ..Default::default()
    }
}

/// A declaration of a TXT record.
pub fn txt(h: &str, text: &str) -> DesiredRecord {
    DesiredRecord {
        hostname: h.into(),
        r#type: Some("TXT".into()),
        content: Some(text.into()),
        ..Default::default()
    }
}

/// The actions of a response, in order.
pub fn actions(r: &ReconcileResponse) -> Vec<ChangeAction> {
    r.changes
        .iter()
        .map(|c| ChangeAction::try_from(c.action).unwrap())
        .collect()
}

/// The change of `hostname` in `r`.
pub fn change_of<'a>(r: &'a ReconcileResponse, hostname: &str) -> &'a PlannedChange {
    r.changes
        .iter()
        .find(|c| c.hostname == hostname)
        .unwrap_or_else(|| panic!("no change for {hostname} in {r:#?}"))
}

/// Waits (polling, bounded) until `f` holds; for background work only.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Fifty overlapping reconciles at once, each caller with its own content for
/// the A records it declares: every plan that runs against a cache missing a
/// name creates it, so only the tracker's lock (one reconcile at a time) keeps
/// two creates of one name apart. The fake accepts two A records of one name
/// with different contents, so a lost lock shows as a duplicate at the
/// provider and in the tracked table.
pub async fn fifty_overlapping_reconciles(env: &mut Env) {
    let mut tasks = Vec::new();
    for i in 0..50u32 {
        let mut client = env.client.clone();
        tasks.push(tokio::spawn(async move {
            // Every call declares an overlapping window of 10 of 20 hostnames,
            // all pointing at this caller's own address.
            let ip = format!("192.0.2.{}", i + 1);
            let records: Vec<DesiredRecord> = (0..10)
                .map(|k| a(&format!("h{}.example.com", (i + k) % 20), &ip))
                .collect();
            client
                .reconcile(ReconcileRequest {
                    source: format!("src-{}", i % 5),
                    records,
                    dry_run: false,
                    force: true,
                })
                .await
                .map(|r| r.into_inner())
        }));
    }
    let mut failed = Vec::new();
    for t in tasks {
        if let Err(e) = t.await.unwrap() {
            failed.push(e);
        }
    }
    let mut at_provider: HashMap<String, Vec<String>> = HashMap::new();
    for r in env.fake.records() {
        assert_eq!(r.r#type, "A", "{r:?}");
        at_provider.entry(r.name).or_default().push(r.content);
    }
    assert_eq!(at_provider.len(), 20, "{at_provider:?}");
    let dup: Vec<_> = at_provider.iter().filter(|(_, c)| c.len() != 1).collect();
    assert!(dup.is_empty(), "duplicates at the provider: {dup:?}");

    let mut tracked: HashMap<String, Vec<String>> = HashMap::new();
    for t in env.tracked().await {
        tracked.entry(t.name.clone()).or_default().push(t.record_id);
    }
    assert_eq!(tracked.len(), 20, "{tracked:?}");
    let dup: Vec<_> = tracked.iter().filter(|(_, ids)| ids.len() != 1).collect();
    assert!(dup.is_empty(), "duplicate tracked rows: {dup:?}");
    // Each tracked row is the record the provider holds at its name.
    let ids: std::collections::HashSet<String> =
        env.fake.records().into_iter().map(|r| r.id).collect();
    assert!(
        tracked.values().flatten().all(|id| ids.contains(id)),
        "a tracked row names a record the provider does not hold: {tracked:?}"
    );
    assert!(failed.is_empty(), "reconciles failed: {failed:?}");
}

/// A fresh directory path helper.
pub fn path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}
