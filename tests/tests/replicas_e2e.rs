//! Replicas end to end: three cache-service and three tracking-service
//! processes (the built binaries) on one real PostgreSQL (a database per
//! service), in front of the fake Cloudflare whose zone holds a few hundred
//! foreign records. Each tracking replica talks to a different cache
//! replica; every replica advertises its own listen address.
//!
//! - Reconciles of a few hundred hostnames, in batches of their own sources,
//!   are spread round robin over the three tracking replicas: a follower
//!   forwards them to the leader, which writes through its cache replica (a
//!   follower forwarding `ApplyChanges` to the cache leader). All succeed.
//! - The cache-service leader is killed (`SIGKILL`) while a 200-create
//!   Reconcile is being written (the fake answers slowly, has received a
//!   few of its batches, and applied one whose answer it keeps back); a
//!   survivor takes the lead, the same Reconcile sent again completes
//!   without sending any create twice, and the killed replica, started
//!   again, follows.
//! - The tracking-service leader is killed while an orphan sweep deletes 180
//!   records (slowly, again); a survivor leads and its sweep finishes.
//! - Afterwards: one record per declared hostname at the fake, every one the
//!   app created tracked app-managed (read from any replica), every foreign
//!   record as it was, no orphan left, one leader per service.
//!
//! The failover times (kill → a survivor reports `role=leader` in its status
//! RPC, and kill → the first successful write) are printed with the label
//! `failover`. The kill moments are chosen by watching the fake's counters;
//! waits poll a condition under a deadline, never a fixed sleep.
//!
//! Needs `cargo build -p cache-service -p tracking-service` first, and
//! PostgreSQL (`postgresql`, `libpq-dev`).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use tonic::Code;
use tonic::transport::Channel;
use trafego_proto::cache::GetCacheStatusRequest;
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::tracking::tracking_service_client::TrackingServiceClient;
use trafego_proto::tracking::{
    DesiredRecord, GetTrackerStatusRequest, ListTrackedRecordsRequest, ReconcileRequest,
    ReconcileResponse, RunOrphanSweepRequest, RunOrphanSweepResponse, TrackedRecord,
};
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions, FakeRecord, LostAnswer};
use trafego_tests::{RunningBinary, free_port, spawn_service};

const TOKEN: &str = "replicas-e2e-token";
const ZONE: &str = "example.com";
/// Foreign records at the provider (someone else's): never touched.
const FOREIGN: usize = 300;
/// Batches spread over the tracking replicas, each its own source.
const BATCHES: usize = 6;
const PER_BATCH: usize = 40;
/// The Reconcile in flight when the cache leader dies.
const BULK: usize = 200;
/// Of the bulk hostnames, those still declared before the sweep.
const KEPT: usize = 20;
/// Writes per provider request: small, so a Reconcile takes many requests.
const BATCH_SIZE: &str = "10";
/// How slowly the fake answers while a kill is due.
const SLOW: Duration = Duration::from_millis(60);
/// Leader election intervals of every replica.
const LEADER_INTERVAL: &str = "200ms";

/// One replica process, its port and its settings (to start it again).
struct Replica {
    name: String,
    port: u16,
    envs: Vec<(&'static str, String)>,
    proc: Option<RunningBinary>,
}

impl Replica {
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn advertised(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The last lines it logged (but the status calls this test polls
    /// with), for failure messages.
    fn tail(&self) -> String {
        let text = self.proc.as_ref().map(RunningBinary::log_text);
        let text = text.unwrap_or_default();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("Status\",\"request_id"))
            .map(|l| l.get(..400).unwrap_or(l))
            .collect();
        let from = lines.len().saturating_sub(12);
        format!("--- {}:\n{}", self.name, lines[from..].join("\n"))
    }

    /// Kills it with SIGKILL and reaps it; returns the moment of the kill.
    async fn kill_9(&mut self) -> Instant {
        let p = self.proc.as_mut().expect("running");
        p.child.start_kill().expect("SIGKILL");
        let at = Instant::now();
        p.child.wait().await.expect("reap");
        at
    }
}

async fn start(bin: &str, name: String, port: u16, envs: Vec<(&'static str, String)>) -> Replica {
    let proc = spawn_service(bin, &envs).await;
    Replica {
        name,
        port,
        envs,
        proc: Some(proc),
    }
}

async fn channel(url: &str) -> Option<Channel> {
    Channel::from_shared(url.to_string())
        .ok()?
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .ok()
}

async fn cache_client(url: &str) -> Option<CacheServiceClient<Channel>> {
    Some(CacheServiceClient::new(channel(url).await?))
}

async fn tracking_client(url: &str) -> Option<TrackingServiceClient<Channel>> {
    Some(
        TrackingServiceClient::new(channel(url).await?)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20),
    )
}

/// (role, leader) from `GetCacheStatus`, or `None` when it does not answer.
async fn cache_role(url: &str) -> Option<(String, String)> {
    let r = cache_client(url)
        .await?
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .ok()?
        .into_inner();
    Some((r.role, r.leader))
}

/// (role, leader) from `GetTrackerStatus`, or `None` when it does not answer.
async fn tracker_role(url: &str) -> Option<(String, String)> {
    let r = tracking_client(url)
        .await?
        .get_tracker_status(GetTrackerStatusRequest {})
        .await
        .ok()?
        .into_inner();
    Some((r.role, r.leader))
}

/// Polls `f` every 20 ms until it gives `Some`, or panics naming `what`
/// (and `context()`, the replicas' last log lines) at the deadline.
async fn until<T, Fut: Future<Output = Option<T>>>(
    what: &str,
    within: Duration,
    context: impl Fn() -> String,
    mut f: impl FnMut() -> Fut,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = f().await {
            return t;
        }
        if Instant::now() > deadline {
            panic!("{what}: not within {within:?}\n{}", context());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Calls `f` until it succeeds, retrying `UNAVAILABLE` (a follower that
/// knows no leader yet, a leader just gone) every 100 ms for up to 30 s.
async fn retry<T, Fut: Future<Output = Result<T, tonic::Status>>>(
    what: &str,
    mut f: impl FnMut(usize) -> Fut,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut attempt = 0;
    loop {
        match f(attempt).await {
            Ok(t) => return t,
            Err(e) if e.code() == Code::Unavailable && Instant::now() < deadline => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{what}: {e:?} (after {attempt} retries)"),
        }
    }
}

fn a(host: &str, i: usize) -> DesiredRecord {
    DesiredRecord {
        hostname: host.to_string(),
        r#type: Some("A".into()),
        content: Some(format!("198.51.100.{}", i % 250 + 1)),
        proxied: Some(false),
        ..Default::default()
    }
}

fn batch_request(k: usize) -> ReconcileRequest {
    ReconcileRequest {
        source: format!("batch-{k}"),
        records: (0..PER_BATCH)
            .map(|i| a(&format!("app-{k}-{i:02}.{ZONE}"), i))
            .collect(),
        dry_run: false,
        force: false,
    }
}

fn bulk_name(i: usize) -> String {
    format!("bulk-{i:03}.{ZONE}")
}

fn bulk_request(n: usize) -> ReconcileRequest {
    ReconcileRequest {
        source: "bulk".into(),
        records: (0..n).map(|i| a(&bulk_name(i), i)).collect(),
        dry_run: false,
        force: false,
    }
}

async fn reconcile(url: &str, req: ReconcileRequest) -> Result<ReconcileResponse, tonic::Status> {
    match tracking_client(url).await {
        Some(mut c) => c.reconcile(req).await.map(tonic::Response::into_inner),
        None => Err(tonic::Status::unavailable(format!(
            "cannot connect to {url}"
        ))),
    }
}

async fn sweep(url: &str) -> Result<RunOrphanSweepResponse, tonic::Status> {
    match tracking_client(url).await {
        Some(mut c) => c
            .run_orphan_sweep(RunOrphanSweepRequest { dry_run: false })
            .await
            .map(tonic::Response::into_inner),
        None => Err(tonic::Status::unavailable(format!(
            "cannot connect to {url}"
        ))),
    }
}

async fn tracked(url: &str) -> Vec<TrackedRecord> {
    let mut c = tracking_client(url).await.expect("connect");
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_tracked_records(ListTrackedRecordsRequest {
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .expect("ListTrackedRecords")
            .into_inner();
        out.extend(page.records);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

/// The records at the fake by (name, type).
fn at_fake(fake: &FakeCloudflare) -> BTreeMap<(String, String), Vec<FakeRecord>> {
    let mut m: BTreeMap<(String, String), Vec<FakeRecord>> = BTreeMap::new();
    for r in fake.records() {
        m.entry((r.name.clone(), r.r#type.clone()))
            .or_default()
            .push(r);
    }
    m
}

/// The only replica of `roles` that says it leads, if exactly one does.
fn sole_leader(roles: &[(usize, Option<(String, String)>)]) -> Option<usize> {
    let leaders: Vec<usize> = roles
        .iter()
        .filter(|(_, r)| r.as_ref().is_some_and(|(role, _)| role == "leader"))
        .map(|(i, _)| *i)
        .collect();
    match leaders.as_slice() {
        [one] => Some(*one),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_each_survive_kill_9_of_their_leaders_mid_write() {
    let started = Instant::now();
    let cache_db = trafego_tests::postgres::fresh_database("e2e_cache")
        .await
        .expect("PostgreSQL for cache-service");
    let tracking_db = trafego_tests::postgres::fresh_database("e2e_tracking")
        .await
        .expect("PostgreSQL for tracking-service");
    let fake = FakeCloudflare::start(FakeOptions::new(TOKEN, ZONE))
        .await
        .unwrap();
    let foreign: Vec<FakeRecord> = (0..FOREIGN)
        .map(|i| match i % 3 {
            0 => FakeRecord::new("A", &format!("foreign-{i}.{ZONE}"), "203.0.113.7"),
            1 => FakeRecord::new("TXT", &format!("foreign-{i}.{ZONE}"), "\"someone else's\""),
            _ => FakeRecord::new(
                "CNAME",
                &format!("foreign-{i}.{ZONE}"),
                "elsewhere.example.net",
            ),
        })
        .collect();
    let foreign_ids = fake.insert_many(foreign);
    let foreign_before: Vec<FakeRecord> = foreign_ids
        .iter()
        .map(|id| fake.get(id).expect("seeded"))
        .collect();
    // Only as a safety net: the database URLs win, and nothing may land in
    // the working directory if they did not.
    let dir = trafego_tests::tempdir();

    // cache-service: replica 0 first, so it leads, then the two others.
    let cache_env = |i: usize, port: u16| {
        vec![
            ("CACHE_LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("CACHE_DATABASE_URL", cache_db.clone()),
            (
                "CACHE_DB_PATH",
                dir.path()
                    .join(format!("cache-{i}.db"))
                    .display()
                    .to_string(),
            ),
            ("DNS_PROVIDER", "cloudflare".into()),
            ("DNS_ZONE", ZONE.into()),
            ("CLOUDFLARE_API_URL", fake.base_url()),
            ("CLOUDFLARE_TOKEN", TOKEN.into()),
            ("CLOUDFLARE_BATCH_SIZE", BATCH_SIZE.into()),
            ("LEADER_RETRY_INTERVAL", LEADER_INTERVAL.into()),
            ("LEADER_CHECK_INTERVAL", LEADER_INTERVAL.into()),
            ("ADVERTISE_ADDRESS", format!("127.0.0.1:{port}")),
        ]
    };
    let cache_ports = [free_port(), free_port(), free_port()];
    let mut caches = vec![
        start(
            "cache-service",
            "cache-0".into(),
            cache_ports[0],
            cache_env(0, cache_ports[0]),
        )
        .await,
    ];
    let c0 = caches[0].url();
    until(
        "cache-0 leads",
        Duration::from_secs(15),
        String::new,
        || {
            let c0 = c0.clone();
            async move { cache_role(&c0).await.filter(|(r, _)| r == "leader") }
        },
    )
    .await;
    let (c1, c2) = tokio::join!(
        start(
            "cache-service",
            "cache-1".into(),
            cache_ports[1],
            cache_env(1, cache_ports[1])
        ),
        start(
            "cache-service",
            "cache-2".into(),
            cache_ports[2],
            cache_env(2, cache_ports[2])
        ),
    );
    caches.extend([c1, c2]);

    // tracking-service: replica i talks to cache replica i+1 (spread; the
    // first leader's is a follower, so writes go through a forward).
    let tracking_env = |i: usize, port: u16| {
        vec![
            ("TRACKING_LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("TRACKING_DATABASE_URL", tracking_db.clone()),
            (
                "TRACKING_DB_PATH",
                dir.path()
                    .join(format!("tracking-{i}.db"))
                    .display()
                    .to_string(),
            ),
            ("CACHE_SERVICE_URL", caches[(i + 1) % 3].url()),
            ("CACHE_SERVICE_TIMEOUT", "20s".into()),
            ("LEADER_RETRY_INTERVAL", LEADER_INTERVAL.into()),
            ("LEADER_CHECK_INTERVAL", LEADER_INTERVAL.into()),
            ("ADVERTISE_ADDRESS", format!("127.0.0.1:{port}")),
            ("CLEANUP_ORPHANED", "true".into()),
            ("CLEANUP_GRACE_PERIOD", "0s".into()),
            ("CLEANUP_INTERVAL", "1h".into()),
            ("MAX_ORPHAN_RATIO", "1".into()),
        ]
    };
    let tracking_ports = [free_port(), free_port(), free_port()];
    let mut trackers = vec![
        start(
            "tracking-service",
            "tracking-0".into(),
            tracking_ports[0],
            tracking_env(0, tracking_ports[0]),
        )
        .await,
    ];
    let t0 = trackers[0].url();
    until(
        "tracking-0 leads",
        Duration::from_secs(15),
        String::new,
        || {
            let t0 = t0.clone();
            async move { tracker_role(&t0).await.filter(|(r, _)| r == "leader") }
        },
    )
    .await;
    let (t1, t2) = tokio::join!(
        start(
            "tracking-service",
            "tracking-1".into(),
            tracking_ports[1],
            tracking_env(1, tracking_ports[1])
        ),
        start(
            "tracking-service",
            "tracking-2".into(),
            tracking_ports[2],
            tracking_env(2, tracking_ports[2])
        ),
    );
    trackers.extend([t1, t2]);
    let logs = |rs: &[&Vec<Replica>]| {
        rs.iter()
            .flat_map(|v| v.iter().map(Replica::tail))
            .collect::<Vec<_>>()
            .join("\n")
    };
    // Every follower knows its leader.
    for (set, leader, role_of) in [(&caches, 0usize, true), (&trackers, 0usize, false)] {
        let want = set[leader].advertised();
        for r in &set[1..] {
            let url = r.url();
            let want = want.clone();
            until(
                &format!("{} follows {want}", r.name),
                Duration::from_secs(15),
                || logs(&[&caches, &trackers]),
                || {
                    let (url, want) = (url.clone(), want.clone());
                    async move {
                        let got = if role_of {
                            cache_role(&url).await
                        } else {
                            tracker_role(&url).await
                        };
                        got.filter(|(role, l)| role == "follower" && *l == want)
                    }
                },
            )
            .await;
        }
    }
    eprintln!("replicas up after {:?}", started.elapsed());
    let tracking_urls: Vec<String> = trackers.iter().map(Replica::url).collect();

    // 1. Batches spread round robin over the three tracking replicas, at once.
    let calls = (0..BATCHES).map(|k| {
        let url = tracking_urls[k % 3].clone();
        async move {
            let r = retry(&format!("batch {k} via {url}"), |_| {
                reconcile(&url, batch_request(k))
            })
            .await;
            let s = r.summary.expect("summary");
            assert_eq!(s.failed, 0, "batch {k}: {s:?}");
            assert_eq!(s.created as usize, PER_BATCH, "batch {k}: {s:?}");
        }
    });
    futures::future::join_all(calls).await;
    eprintln!(
        "{} hostnames in {BATCHES} batches over 3 replicas: done after {:?}",
        BATCHES * PER_BATCH,
        started.elapsed()
    );

    // 2. kill -9 of the cache leader while 200 creates are being written.
    fake.set_delay(SLOW);
    let base = fake.stats().batch;
    let in_flight = {
        let url = tracking_urls[1].clone();
        tokio::spawn(async move { reconcile(&url, bulk_request(BULK)).await })
    };
    let enough = tokio::time::timeout(
        Duration::from_secs(20),
        fake.wait_stats(|s| s.batch >= base + 3),
    )
    .await;
    assert!(
        enough.is_ok(),
        "the bulk reconcile reached the provider: {:?}\n{}",
        fake.stats(),
        logs(&[&caches, &trackers])
    );
    // The next batch is applied and its answer never comes: the leader
    // dies not knowing, and its successor must settle it by looking.
    fake.lose_write_answers(1, LostAnswer::Hang);
    let lost = tokio::time::timeout(Duration::from_secs(20), fake.wait_answers_lost(1)).await;
    assert!(lost.is_ok(), "a batch answer was lost: {:?}", fake.stats());
    let killed_at = caches[0].kill_9().await;
    let written_before = fake.stats().batch - base;
    fake.set_delay(Duration::ZERO);
    let survivors = [caches[1].url(), caches[2].url()];
    let new_leader = until(
        "a surviving cache replica leads",
        Duration::from_secs(10),
        || logs(&[&caches, &trackers]),
        || {
            let survivors = survivors.clone();
            async move {
                let mut roles = Vec::new();
                for (i, url) in survivors.iter().enumerate() {
                    roles.push((i + 1, cache_role(url).await));
                }
                sole_leader(&roles)
            }
        },
    )
    .await;
    let cache_to_leader = killed_at.elapsed();
    let first = in_flight.await.expect("join");
    assert!(
        first.is_err()
            || first
                .as_ref()
                .is_ok_and(|r| r.summary.is_some_and(|s| s.failed > 0)),
        "a reconcile cut by the kill does not look complete: {first:?}"
    );
    assert!(
        written_before < (BULK / 10) as u64,
        "the kill landed mid-write: {written_before} batches of {} were sent",
        BULK / 10
    );
    let again = retry("the bulk reconcile again", |attempt| {
        reconcile(&tracking_urls[attempt % 3], bulk_request(BULK))
    })
    .await;
    let cache_to_write = killed_at.elapsed();
    let s = again.summary.expect("summary");
    assert_eq!(s.failed, 0, "{s:?}");
    eprintln!(
        "the cut reconcile answered {:?}; retried: {s:?}",
        first
            .as_ref()
            .map_err(tonic::Status::code)
            .map(|r| r.summary)
    );
    println!(
        "failover cache-service: kill -9 of the leader mid-ApplyChanges ({written_before} of {} \
         batches sent) -> cache-{new_leader} role=leader after {} ms, the Reconcile retried \
         complete after {} ms",
        BULK / 10,
        cache_to_leader.as_millis(),
        cache_to_write.as_millis()
    );

    // The killed replica comes back (as its pod would) and follows.
    let envs = caches[0].envs.clone();
    caches[0].proc = Some(spawn_service("cache-service", &envs).await);
    let (c0, want) = (caches[0].url(), caches[new_leader].advertised());
    until(
        "cache-0, started again, follows",
        Duration::from_secs(15),
        || logs(&[&caches, &trackers]),
        || {
            let (c0, want) = (c0.clone(), want.clone());
            async move {
                cache_role(&c0)
                    .await
                    .filter(|(r, l)| r == "follower" && *l == want)
            }
        },
    )
    .await;

    // 3. Fewer bulk hostnames: 180 orphans, then kill -9 of the tracking
    // leader while its sweep deletes them slowly.
    let r = retry("the bulk reconcile shrunk", |attempt| {
        reconcile(&tracking_urls[attempt % 3], bulk_request(KEPT))
    })
    .await;
    let s = r.summary.expect("summary");
    assert_eq!(s.orphaned as usize, BULK - KEPT, "{s:?}");
    fake.set_delay(SLOW);
    let base = fake.stats();
    let sweeping = {
        let url = tracking_urls[2].clone();
        tokio::spawn(async move { sweep(&url).await })
    };
    let enough = tokio::time::timeout(
        Duration::from_secs(20),
        fake.wait_stats(|s| s.batch + s.delete >= base.batch + base.delete + 4),
    )
    .await;
    assert!(
        enough.is_ok(),
        "the sweep reached the provider: {:?}\n{}",
        fake.stats(),
        logs(&[&caches, &trackers])
    );
    let killed_at = trackers[0].kill_9().await;
    let now = fake.stats();
    let deletes_before = now.batch + now.delete - base.batch - base.delete;
    fake.set_delay(Duration::ZERO);
    let survivors = [trackers[1].url(), trackers[2].url()];
    let new_tracker = until(
        "a surviving tracking replica leads",
        Duration::from_secs(10),
        || logs(&[&caches, &trackers]),
        || {
            let survivors = survivors.clone();
            async move {
                let mut roles = Vec::new();
                for (i, url) in survivors.iter().enumerate() {
                    roles.push((i + 1, tracker_role(url).await));
                }
                sole_leader(&roles)
            }
        },
    )
    .await;
    let tracking_to_leader = killed_at.elapsed();
    let cut = sweeping.await.expect("join");
    assert!(
        cut.is_err(),
        "the sweep cut by the kill answered as if whole: {cut:?}"
    );
    eprintln!("the cut sweep answered {:?}", cut.map_err(|e| e.code()));
    let orphan_names: BTreeSet<String> = (KEPT..BULK).map(bulk_name).collect();
    // The sweep asked again (of either survivor) until no orphan is left.
    let mut first_sweep: Option<Duration> = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        retry("RunOrphanSweep after the kill", |attempt| {
            sweep(&survivors[attempt % 2])
        })
        .await;
        first_sweep.get_or_insert_with(|| killed_at.elapsed());
        let left = fake
            .records()
            .iter()
            .filter(|r| orphan_names.contains(&r.name))
            .count();
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new leader's sweep deletes every orphan: {left} left\n{}",
            logs(&[&caches, &trackers])
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tracking_to_write = first_sweep.expect("a sweep ran");
    let tracking_done = killed_at.elapsed();
    println!(
        "failover tracking-service: kill -9 of the leader mid-sweep ({deletes_before} delete \
         requests of {} sent) -> tracking-{new_tracker} role=leader after {} ms, first sweep \
         answered after {} ms, every orphan gone after {} ms",
        (BULK - KEPT) / 10,
        tracking_to_leader.as_millis(),
        tracking_to_write.as_millis(),
        tracking_done.as_millis()
    );

    // 4. The end state.
    let declared: BTreeSet<String> = (0..BATCHES)
        .flat_map(|k| (0..PER_BATCH).map(move |i| format!("app-{k}-{i:02}.{ZONE}")))
        .chain((0..KEPT).map(bulk_name))
        .collect();
    let fake_now = at_fake(&fake);
    for name in &declared {
        let got = fake_now.get(&(name.clone(), "A".to_string()));
        assert_eq!(
            got.map(Vec::len),
            Some(1),
            "{name}: exactly one A record: {got:?}"
        );
    }
    for name in &orphan_names {
        assert!(
            !fake_now.contains_key(&(name.clone(), "A".to_string())),
            "{name}: the orphan is gone"
        );
    }
    for before in &foreign_before {
        assert_eq!(
            fake.get(&before.id).as_ref(),
            Some(before),
            "foreign record unchanged"
        );
    }
    assert_eq!(
        fake.count(),
        FOREIGN + declared.len(),
        "the foreign records and one per declared hostname, nothing more"
    );
    // Never sent twice, never touched someone else's: the fake's log of
    // every write it applied has one create per declared or orphaned name,
    // and no write to a foreign record.
    let mut creates: BTreeMap<String, usize> = BTreeMap::new();
    let foreign_set: BTreeSet<&String> = foreign_ids.iter().collect();
    for w in fake.write_log() {
        assert!(
            !foreign_set.contains(&w.id),
            "a foreign record was written: {w:?}"
        );
        if w.op == "create" {
            *creates.entry(w.name.clone()).or_default() += 1;
        }
    }
    let expected: BTreeMap<String, usize> = declared
        .iter()
        .chain(&orphan_names)
        .map(|n| (n.clone(), 1))
        .collect();
    assert_eq!(creates, expected, "one create per hostname, never two");
    // Tracked: read from every live replica, followers included.
    let app_ids: BTreeMap<String, String> = fake
        .records()
        .into_iter()
        .filter(|r| declared.contains(&r.name))
        .map(|r| (r.id, r.name))
        .collect();
    for url in &survivors {
        let rows = tracked(url).await;
        let managed: BTreeMap<String, String> = rows
            .iter()
            .filter(|t| t.app_managed && !t.is_orphaned)
            .map(|t| (t.record_id.clone(), t.name.clone()))
            .collect();
        assert_eq!(
            managed, app_ids,
            "{url}: every app record tracked app-managed"
        );
        let others: Vec<&TrackedRecord> = rows
            .iter()
            .filter(|t| !app_ids.contains_key(&t.record_id))
            .collect();
        assert!(
            others.is_empty(),
            "{url}: nothing else tracked (no foreign record, no orphan left): {others:?}"
        );
    }
    // One leader per service among the live replicas.
    let mut roles = Vec::new();
    for (i, r) in caches.iter().enumerate() {
        roles.push((i, cache_role(&r.url()).await));
    }
    assert_eq!(
        sole_leader(&roles),
        Some(new_leader),
        "cache roles {roles:?}"
    );
    let mut roles = Vec::new();
    for (i, r) in trackers.iter().enumerate().skip(1) {
        roles.push((i, tracker_role(&r.url()).await));
    }
    assert_eq!(
        sole_leader(&roles),
        Some(new_tracker),
        "tracking roles {roles:?}"
    );
    eprintln!("replicas_e2e: wall time {:?}", started.elapsed());
}
