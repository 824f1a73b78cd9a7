//! cache-service replicas on one PostgreSQL database (a fresh database of
//! the shared test cluster) in front of the fake Cloudflare: exactly one
//! leads (status role, `<service>.leader` health SERVING only there,
//! readiness SERVING everywhere); a write sent to a follower is forwarded and
//! applied once; every replica's reads see it; only the leader lists the
//! provider (each replica has its own token, and the fake counts listings by
//! token), and a read a follower finds too old goes to the leader; stopping
//! the leader makes a follower lead within a few intervals, and its refresh
//! and writes work without duplicating anything at the provider. And, on
//! the cache itself: a write under a stale fence sends nothing to the
//! provider and commits nothing.
//!
//! Nothing sleeps to wait: every wait polls a condition under a deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cache_service::cache::{Cache, CacheSettings};
use cache_service::journal::ChangeReq;
use cache_service::provider::{
    Capabilities, DnsProvider, Listing, ProviderError, WriteOp, WriteResult,
};
use futures::future::BoxFuture;
use tokio::sync::watch;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use trafego_common::clock::{ManualClock, SharedClock};
use trafego_common::db::{AnyDb, DbOptions, DbUrl};
use trafego_common::leader::Role;
use trafego_proto::cache::{
    ApplyChangesRequest, GetCacheStatusRequest, GetCacheStatusResponse, ListRecordsRequest,
    RefreshCacheRequest,
};
use trafego_proto::validate::{Hostname, RecordSpec, ValidRecordInput};
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions};
use trafego_tests::{ServiceHandle, cache_client, create_a, start_cache_with_clock, tempdir};

const ZONE: &str = "example.com";
/// Each replica's Cloudflare token: the fake tells their requests apart.
const TOKENS: [&str; 3] = [
    "cf-token-replica-0",
    "cf-token-replica-1",
    "cf-token-replica-2",
];
/// LEADER_RETRY_INTERVAL and LEADER_CHECK_INTERVAL of the replicas.
const INTERVAL_MS: u64 = 150;

/// A replica: its handle, its token, and the directory it was given.
struct Replica {
    handle: Option<ServiceHandle>,
    token: &'static str,
    _dir: tempfile::TempDir,
}

impl Replica {
    fn h(&self) -> &ServiceHandle {
        self.handle.as_ref().expect("replica running")
    }
}

async fn start_replica(
    db: &str,
    fake: &FakeCloudflare,
    token: &'static str,
    clock: SharedClock,
) -> Replica {
    let dir = tempdir();
    let api = fake.base_url();
    let interval = INTERVAL_MS.to_string();
    let args = [
        "--provider",
        "cloudflare",
        "--cloudflare-api-url",
        api.as_str(),
        "--cloudflare-token",
        token,
        "--database-url",
        db,
        "--refresh-interval",
        "1h",
        "--leader-retry-interval",
        interval.as_str(),
        "--leader-check-interval",
        interval.as_str(),
    ];
    let handle = start_cache_with_clock(dir.path(), &args, clock).await;
    Replica {
        handle: Some(handle),
        token,
        _dir: dir,
    }
}

async fn status(h: &ServiceHandle) -> Result<GetCacheStatusResponse, tonic::Status> {
    cache_client(h)
        .await
        .get_cache_status(GetCacheStatusRequest::default())
        .await
        .map(tonic::Response::into_inner)
}

/// Polls `f` until it returns `Some`, or panics naming `what` at the deadline.
async fn until<T, F, Fut>(within: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The index of the one replica of `live` whose status says it leads (the
/// others saying they follow it), once that holds.
async fn sole_leader(replicas: &[Replica], live: &[usize], within: Duration) -> usize {
    until(
        within,
        "exactly one leader, followed by the others",
        || async {
            let mut leaders = Vec::new();
            let mut followed = Vec::new();
            for &i in live {
                let s = status(replicas[i].h()).await.ok()?;
                match s.role.as_str() {
                    "leader" => leaders.push(i),
                    "follower" => followed.push(s.leader),
                    _ => return None,
                }
            }
            let [l] = leaders[..] else { return None };
            let addr = replicas[l].h().addr.to_string();
            followed.iter().all(|f| *f == addr).then_some(l)
        },
    )
    .await
}

async fn health(h: &ServiceHandle, service: &str) -> i32 {
    HealthClient::new(h.channel().await)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .map(|r| r.into_inner().status)
        .unwrap_or(-1)
}

fn role_header<T>(r: &tonic::Response<T>) -> String {
    r.metadata()
        .get(trafego_common::leader::forward::ROLE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// The names a replica's ListRecords returns (first page, all there is here).
async fn names(h: &ServiceHandle) -> Vec<String> {
    let mut out: Vec<String> = cache_client(h)
        .await
        .list_records(ListRecordsRequest::default())
        .await
        .expect("ListRecords")
        .into_inner()
        .records
        .into_iter()
        .map(|r| r.name)
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_leader_forward_writes_and_fail_over() {
    let db = trafego_tests::postgres::fresh_database("cache_replicas")
        .await
        .expect("a test database");
    let fake = FakeCloudflare::start(FakeOptions::new(TOKENS[0], ZONE))
        .await
        .expect("fake Cloudflare");
    for t in &TOKENS[1..] {
        fake.accept_token(t);
    }
    let clock = ManualClock::new(1_700_000_000_000);
    let shared: SharedClock = Arc::new(clock.clone());
    let mut replicas = Vec::new();
    for t in TOKENS {
        replicas.push(start_replica(&db, &fake, t, shared.clone()).await);
    }
    let all = [0, 1, 2];

    // Exactly one leader; health says so only there; readiness everywhere.
    let leader = sole_leader(&replicas, &all, Duration::from_secs(10)).await;
    let leader_health = format!("{}.leader", cache_service::SERVICE_NAME);
    for &i in &all {
        let want = if i == leader {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        } as i32;
        let h = replicas[i].h();
        until(Duration::from_secs(5), "leader health settles", || async {
            (health(h, &leader_health).await == want).then_some(())
        })
        .await;
        assert_eq!(health(h, "").await, ServingStatus::Serving as i32);
        assert_eq!(
            health(h, cache_service::SERVICE_NAME).await,
            ServingStatus::Serving as i32
        );
    }
    // The leader's first refresh is committed; every replica's status shows it.
    until(Duration::from_secs(10), "the first refresh", || async {
        let s = status(replicas[leader].h()).await.ok()?;
        (!s.stale).then_some(())
    })
    .await;
    let followers: Vec<usize> = all.iter().copied().filter(|&i| i != leader).collect();
    for &f in &followers {
        let s = status(replicas[f].h()).await.unwrap();
        assert!(!s.stale, "a follower reports the database's state: {s:?}");
        assert_eq!(s.role, "follower");
        assert!(!s.journal_id.is_empty(), "{s:?}");
    }

    // A write sent to a follower is forwarded and applied once.
    let mut change = create_a(&format!("app.{ZONE}"), "192.0.2.10");
    change.change_id = "replicas:1".into();
    let req = ApplyChangesRequest {
        changes: vec![change.clone()],
    };
    let resp = cache_client(replicas[followers[0]].h())
        .await
        .apply_changes(req.clone())
        .await
        .expect("ApplyChanges through a follower");
    assert_eq!(role_header(&resp), "follower");
    let resp = resp.into_inner();
    assert_eq!((resp.succeeded, resp.failed), (1, 0), "{resp:?}");
    assert_eq!(fake.count(), 1);
    assert_eq!(fake.write_log().len(), 1);
    for &i in &all {
        assert_eq!(names(replicas[i].h()).await, vec![format!("app.{ZONE}")]);
    }

    // Only the leader lists the provider.
    let leader_lists = fake.lists_by(replicas[leader].token);
    assert!(leader_lists >= 1);
    for &f in &followers {
        assert_eq!(fake.lists_by(replicas[f].token), 0, "follower {f} listed");
    }
    // A read a follower finds too old goes to the leader, which refreshes.
    clock.advance(Duration::from_secs(7200));
    let resp = cache_client(replicas[followers[1]].h())
        .await
        .list_records(ListRecordsRequest {
            max_staleness_seconds: 60,
            ..Default::default()
        })
        .await
        .expect("a stale read through a follower");
    assert_eq!(resp.into_inner().records.len(), 1);
    assert_eq!(fake.lists_by(replicas[leader].token), leader_lists + 1);
    for &f in &followers {
        assert_eq!(fake.lists_by(replicas[f].token), 0, "follower {f} listed");
    }

    // Stopping the leader: a follower leads within a few intervals.
    let stopped_at = Instant::now();
    replicas[leader]
        .handle
        .take()
        .expect("leader running")
        .shutdown()
        .await
        .expect("the leader stops cleanly");
    let new_leader = sole_leader(&replicas, &followers, Duration::from_secs(5)).await;
    let failover = stopped_at.elapsed();
    println!("failover: a new cache-service leader {failover:?} after the old one stopped");
    let other = followers
        .iter()
        .copied()
        .find(|&i| i != new_leader)
        .unwrap();
    // Its refresh works (it lists the provider now) ...
    let before = fake.lists_by(replicas[new_leader].token);
    let r = cache_client(replicas[other].h())
        .await
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .expect("RefreshCache through the remaining follower")
        .into_inner();
    assert_eq!(r.total, 1, "{r:?}");
    assert!(fake.lists_by(replicas[new_leader].token) > before);
    assert_eq!(fake.lists_by(replicas[other].token), 0);
    // ... the first change, sent again, is not applied twice ...
    let again = cache_client(replicas[other].h())
        .await
        .apply_changes(req)
        .await
        .expect("the same change again")
        .into_inner();
    assert_eq!((again.succeeded, again.failed), (1, 0), "{again:?}");
    assert_eq!(fake.count(), 1, "no duplicate at the provider");
    // ... and a new write works.
    let resp = cache_client(replicas[new_leader].h())
        .await
        .apply_changes(ApplyChangesRequest {
            changes: vec![create_a(&format!("web.{ZONE}"), "192.0.2.11")],
        })
        .await
        .expect("ApplyChanges at the new leader");
    assert_eq!(role_header(&resp), "leader");
    assert_eq!(resp.into_inner().succeeded, 1);
    assert_eq!(fake.count(), 2);
    assert_eq!(fake.write_log().len(), 2, "{:?}", fake.write_log());
    for &i in &followers {
        assert_eq!(
            names(replicas[i].h()).await,
            vec![format!("app.{ZONE}"), format!("web.{ZONE}")]
        );
    }
    for r in &mut replicas {
        if let Some(h) = r.handle.take() {
            h.shutdown().await.expect("a replica stops cleanly");
        }
    }
}

/// A provider that counts what it is asked and holds nothing.
struct Counting {
    zone: Hostname,
    lists: AtomicU32,
    applies: AtomicU32,
}

impl DnsProvider for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }

    fn zone(&self) -> &Hostname {
        &self.zone
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            record_types: trafego_proto::validate::RecordType::ALL.to_vec(),
            proxied: false,
            min_ttl: 30,
            max_ttl: 86_400,
            cname_at_apex: false,
            batch_size: 0,
            comments: false,
            id_format: trafego_proto::validate::IdFormat::HEX32,
        }
    }

    fn list(&self) -> BoxFuture<'_, Result<Listing, ProviderError>> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(Listing::default()) })
    }

    fn apply(&self, ops: Vec<WriteOp>) -> BoxFuture<'_, (Vec<WriteResult>, u64)> {
        self.applies.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { (ops.iter().map(|_| Ok(None)).collect(), 0) })
    }
}

/// The fence's part, on PostgreSQL: a leader whose term was taken over by
/// another replica (the fence in `leadership` moved on) while it still
/// believes it leads gets `UNAVAILABLE` for a write, and the provider is
/// not asked, and nothing is committed (no journal entry, no row). Without
/// the fence check in the store's write transaction this test fails: the
/// write goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_under_a_stale_fence_sends_nothing_and_commits_nothing() {
    let url = trafego_tests::postgres::fresh_database("cache_stale_fence")
        .await
        .expect("a test database");
    let db = AnyDb::connect(
        &DbUrl::parse(&url).unwrap(),
        "CACHE_DATABASE_URL",
        cache_service::migrations(),
        DbOptions::default(),
    )
    .expect("connect");
    let service = cache_service::SERVICE_NAME;
    let (_tx, role) = watch::channel(Role::Leader { fence: 1 });
    let db = db.fenced(service, role.clone());
    let pg = trafego_tests::postgres::shared().await.unwrap();
    let set_fence = |f: i64| {
        format!(
            "INSERT INTO leadership (service, fence, holder, since) \
             VALUES ('{service}', {f}, 'test', now()) \
             ON CONFLICT (service) DO UPDATE SET fence = {f}"
        )
    };
    pg.psql_url(&url, &set_fence(1)).await.unwrap();
    let provider = Arc::new(Counting {
        zone: Hostname::parse("zone", ZONE).unwrap(),
        lists: AtomicU32::new(0),
        applies: AtomicU32::new(0),
    });
    let cache = Cache::open(
        db,
        vec![provider.clone() as Arc<dyn DnsProvider>],
        trafego_common::clock::system(),
        CacheSettings {
            refresh_interval: Duration::from_secs(3600),
            refresh_timeout: Duration::from_secs(10),
            watch_buffer: 16,
            journal_retention: Duration::from_secs(3600),
            refresh_concurrency: 4,
        },
        role,
    )
    .await
    .unwrap();
    cache.take_over(1).await.expect("fence 1 is the table's");
    cache
        .refresh(0)
        .await
        .expect("a refresh under the current fence");
    assert_eq!(provider.lists.load(Ordering::SeqCst), 1);

    // Another replica takes over: the table's fence moves on.
    pg.psql_url(&url, &set_fence(2)).await.unwrap();
    let change = |id: &str| ChangeReq {
        op: WriteOp::Create(ValidRecordInput {
            spec: RecordSpec::new(
                "",
                "A",
                &format!("app.{ZONE}"),
                "192.0.2.1",
                300,
                false,
                None,
            )
            .unwrap(),
            comment: String::new(),
        }),
        change_id: Some(id.to_string()),
        group: None,
    };
    let e = cache.write(vec![change("stale:1")]).await.unwrap_err();
    assert_eq!(e.code, Code::Unavailable, "{e:?}");
    assert!(e.message.contains("no longer leads"), "{e:?}");
    // Without a change id too (no journal entry to write: still fenced).
    let mut plain = change("x");
    plain.change_id = None;
    let e = cache.write(vec![plain]).await.unwrap_err();
    assert_eq!(e.code, Code::Unavailable, "{e:?}");
    assert_eq!(provider.applies.load(Ordering::SeqCst), 0, "nothing sent");
    let committed = pg
        .psql_url(
            &url,
            "SELECT (SELECT count(*) FROM change_journal) || ',' || \
             (SELECT count(*) FROM dns_records)",
        )
        .await
        .unwrap();
    assert_eq!(committed, "0,0", "nothing committed");
    // A refresh under the stale fence commits nothing either.
    let e = cache.refresh(0).await.unwrap_err();
    assert_eq!(e.code, Code::Unavailable, "{e:?}");
}
