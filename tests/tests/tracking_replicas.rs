//! Several tracking-service replicas on one PostgreSQL database, in-process
//! on 127.0.0.1:0, against one cache-service on the fake Cloudflare: exactly
//! one leads (status and the `<service>.leader` health name say so), the
//! others follow and name it; writes sent to a follower are forwarded to the
//! leader and applied, their rows visible from every replica; the followers'
//! sweep loops never run (only the leader's background work does); and when
//! the leader stops, a follower leads within a few LEADER_RETRY_INTERVALs
//! and writes work again. The failover time is printed. Nothing sleeps to
//! wait for a server: conditions are polled under a deadline.

mod tracking_support;

use std::time::{Duration, Instant};

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tracking_support::*;
use trafego_proto::tracking::*;
use trafego_tests::postgres;

/// LEADER_RETRY_INTERVAL and LEADER_CHECK_INTERVAL of these tests.
const INTERVAL_MS: u64 = 150;

/// The tracker's status as replica `url` reports it.
async fn status_of(url: &str) -> GetTrackerStatusResponse {
    tracking_client(url)
        .await
        .get_tracker_status(GetTrackerStatusRequest {})
        .await
        .expect("status")
        .into_inner()
}

/// What health reports for `<service>.leader` at `url`.
async fn leader_health(url: &str) -> i32 {
    let ch = tonic::transport::Channel::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(ch)
        .check(HealthCheckRequest {
            service: trafego_common::server::leader_health_name(tracking_service::SERVICE_NAME),
        })
        .await
        .expect("health")
        .into_inner()
        .status
}

/// Every record replica `url` lists as tracked, by name.
async fn tracked_names(url: &str) -> Vec<String> {
    let mut names: Vec<String> = tracking_client(url)
        .await
        .list_tracked_records(ListTrackedRecordsRequest {
            page_size: 10_000,
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .records
        .into_iter()
        .map(|r| r.name)
        .collect();
    names.sort();
    names
}

/// Waits until exactly one of `urls` reports `leader` and every other one
/// `follower` naming it; returns the leader's index.
async fn sole_leader(urls: &[String], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let mut st = Vec::new();
        for u in urls {
            st.push(status_of(u).await);
        }
        let leaders: Vec<usize> = (0..st.len()).filter(|&i| st[i].role == "leader").collect();
        if let [l] = leaders.as_slice() {
            let addr = urls[*l].trim_start_matches("http://");
            assert_eq!(st[*l].leader, addr, "the leader names itself");
            if st
                .iter()
                .enumerate()
                .all(|(i, s)| i == *l || (s.role == "follower" && s.leader == addr))
            {
                return *l;
            }
        }
        assert!(leaders.len() <= 1, "two leaders at once: {st:?}");
        assert!(
            Instant::now() < deadline,
            "no sole leader known to all within {within:?}: {:?}",
            st.iter().map(|s| (&s.role, &s.leader)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_one_leader_forwarded_writes_and_failover() {
    let url = postgres::fresh_database("replicas")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let interval = INTERVAL_MS.to_string();
    let common = [
        "--database-url",
        url.as_str(),
        "--leader-retry-interval",
        interval.as_str(),
        "--leader-check-interval",
        interval.as_str(),
        "--cleanup-orphaned",
        "true",
        "--cleanup-grace-period",
        "0s",
    ];
    // The first replica leads (it is alone when it starts); its own sweep
    // loop is far off. The followers would sweep every 100 ms if their loops
    // ran: that they never do is what the test checks.
    let mut first = common.to_vec();
    first.extend(["--cleanup-interval", "1h"]);
    let mut env = Env::start(vec![], &first).await;
    let cache_url = env.cache.as_ref().unwrap().url.clone();
    let leader_url = env.tracking.url.clone();
    sole_leader(std::slice::from_ref(&leader_url), Duration::from_secs(10)).await;
    let mut rest = common.to_vec();
    rest.extend(["--cleanup-interval", "100ms"]);
    let mut followers = Vec::new();
    for _ in 0..2 {
        followers.push(start_tracking(&cache_url, env.dir.path(), &rest, env.clock.clone()).await);
    }
    let mut urls = vec![leader_url.clone()];
    urls.extend(followers.iter().map(|f| f.url.clone()));
    assert_eq!(sole_leader(&urls, Duration::from_secs(10)).await, 0);
    assert_eq!(leader_health(&urls[0]).await, ServingStatus::Serving as i32);
    for u in &urls[1..] {
        assert_eq!(leader_health(u).await, ServingStatus::NotServing as i32);
    }

    // A reconcile sent to a follower is forwarded to the leader and applied.
    let mut follower = tracking_client(&urls[1]).await;
    let names: Vec<String> = (0..4).map(|i| format!("r{i}.example.com")).collect();
    let decl = |n: &[String]| ReconcileRequest {
        source: "s".into(),
        records: n.iter().map(|n| a(n, "192.0.2.1")).collect(),
        dry_run: false,
        force: false,
    };
    let r = follower
        .reconcile(decl(&names))
        .await
        .expect("forwarded reconcile")
        .into_inner();
    assert_eq!(r.summary.unwrap().created, 4);
    for n in &names {
        assert_eq!(env.in_cache(n).await.len(), 1, "{n} at the cache");
    }
    for u in &urls {
        assert_eq!(tracked_names(u).await, names, "tracked, as seen from {u}");
    }

    // One goes away (25%, under the guard): orphaned, deletable at once.
    let r = follower
        .reconcile(decl(&names[..3]))
        .await
        .expect("forwarded reconcile")
        .into_inner();
    assert_eq!(r.summary.unwrap().orphaned, 1);
    env.clock.advance(Duration::from_secs(60));
    // Ten of the followers' sweep intervals pass: had a follower's loop run,
    // the orphan would be gone and the last sweep recorded (the database is
    // shared). The leader's own loop is an hour away.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for u in &urls {
        let st = status_of(u).await;
        assert!(st.last_sweep_at.is_none(), "no sweep ran, per {u}: {st:?}");
        assert_eq!(st.orphaned, 1, "{u}");
    }
    // RunOrphanSweep on a follower runs on the leader (a follower's tracker
    // refuses sweeps itself).
    let sweep = tracking_client(&urls[2])
        .await
        .run_orphan_sweep(RunOrphanSweepRequest { dry_run: false })
        .await
        .expect("forwarded sweep")
        .into_inner();
    let deleted: Vec<&str> = sweep
        .deleted
        .iter()
        .filter(|d| d.deleted)
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(deleted, ["r3.example.com"]);
    assert!(env.in_cache("r3.example.com").await.is_empty());
    assert!(env.at_provider("r3.example.com").is_empty());
    for u in &urls {
        let st = status_of(u).await;
        assert!(st.last_sweep_at.is_some(), "{u}");
        assert_eq!((st.total, st.orphaned), (3, 0), "{u}");
    }
    // Untracking through a follower is forwarded too.
    let id = env.at_provider("r2.example.com")[0].id.clone();
    follower
        .untrack_record(UntrackRecordRequest {
            record_id: id.clone(),
        })
        .await
        .expect("forwarded untrack");
    assert_eq!(tracked_names(&urls[2]).await, names[..2]);
    // A write already forwarded once (its leader stepped down in between) is
    // never forwarded again, nor applied by a follower: UNAVAILABLE naming
    // the leader, so the caller retries.
    let mut req = tonic::Request::new(TrackRecordRequest {
        record_id: id.clone(),
        app_managed: true,
        source: String::new(),
    });
    req.metadata_mut()
        .insert("x-trafego-forwarded", "1".parse().unwrap());
    let e = tracking_client(&urls[1])
        .await
        .track_record(req)
        .await
        .expect_err("a follower does not write");
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains(urls[0].trim_start_matches("http://")),
        "names the leader: {e:?}"
    );
    assert_eq!(tracked_names(&urls[0]).await, names[..2]);

    // The leader stops (SIGTERM): a follower leads within a few intervals.
    let stopped = Instant::now();
    env.tracking.stop().await;
    let stop_took = stopped.elapsed();
    let t = Instant::now();
    let survivors = urls[1..].to_vec();
    let new = sole_leader(&survivors, Duration::from_millis(INTERVAL_MS * 20)).await;
    let failover = t.elapsed();
    println!(
        "failover: the leader stopped in {stop_took:?}; a follower led and every survivor \
         named it {failover:?} later (LEADER_RETRY_INTERVAL {INTERVAL_MS} ms)"
    );
    assert!(
        failover < Duration::from_millis(INTERVAL_MS * 10),
        "{failover:?}"
    );
    assert_eq!(
        leader_health(&survivors[new]).await,
        ServingStatus::Serving as i32
    );
    // The new leader's background work started with its term: its sweep
    // loop (every 100 ms) records a sweep, stamped by the (manual) clock.
    let before = status_of(&survivors[new]).await.last_sweep_at;
    env.clock.advance(Duration::from_secs(60));
    eventually("the new leader's sweep loop runs", || {
        let u = survivors[new].clone();
        async move { status_of(&u).await.last_sweep_at != before }
    })
    .await;
    // A reconcile through the other survivor (a follower) reaches the new leader.
    let other = &survivors[1 - new];
    let mut more = names[..2].to_vec();
    more.push("r9.example.com".into());
    let r = tracking_client(other)
        .await
        .reconcile(decl(&more))
        .await
        .expect("reconcile after failover")
        .into_inner();
    assert_eq!(r.summary.unwrap().created, 1);
    assert_eq!(env.in_cache("r9.example.com").await.len(), 1);
    for u in &survivors {
        assert_eq!(tracked_names(u).await, more, "{u}");
    }
    for f in followers {
        f.shutdown().await;
    }
}

/// The second line of defence: a tracker whose replica follows refuses every
/// write itself, `UNAVAILABLE` naming the leader, and writes nothing, even
/// when a call reaches it directly (one that raced a step-down past the
/// forwarding). Its reads still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_following_tracker_refuses_writes_itself() {
    use std::sync::Arc;
    use trafego_common::db::{AnyDb, DbOptions, DbUrl};
    use trafego_common::leader::Role;

    let env = Env::start(vec![], &[]).await;
    let url = postgres::fresh_database("replicas")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let cache_url = env.cache.as_ref().unwrap().url.clone();
    let config = tracking_service::Config::for_test(&[
        "--cache-service-url",
        cache_url.as_str(),
        "--database-url",
        url.as_str(),
    ]);
    let (_tx, role) = tokio::sync::watch::channel(Role::Follower {
        leader: Some("10.0.0.7:50052".into()),
    });
    let db = AnyDb::connect(
        &DbUrl::parse(&url).unwrap(),
        "TRACKING_DATABASE_URL",
        tracking_service::migrations(),
        DbOptions::default(),
    )
    .unwrap()
    .fenced(tracking_service::SERVICE_NAME, role.clone());
    let client = tracking_service::cache_client::CacheClient::new(
        &cache_url,
        Duration::from_secs(5),
        4 << 20,
        &config.cache_client_security().unwrap(),
    )
    .unwrap();
    let tracker = Arc::new(
        tracking_service::tracker::Tracker::new(
            db,
            client,
            Arc::new(trafego_common::clock::ManualClock::new(T0)),
            tracking_service::settings(&config).unwrap(),
        )
        .with_replica(role, "10.0.0.8:50052".into()),
    );
    let refused = |what: &str, e: tracking_service::error::TrackingError| {
        let s = tonic::Status::from(e);
        assert_eq!(s.code(), tonic::Code::Unavailable, "{what}: {s:?}");
        assert!(s.message().contains("10.0.0.7:50052"), "{what}: {s:?}");
    };
    let e = tracker
        .reconcile("s", &[a("x.example.com", "192.0.2.1")], false, false)
        .await
        .unwrap_err();
    refused("reconcile", e);
    refused("sweep", tracker.sweep(false).await.unwrap_err());
    refused("check", tracker.check().await.unwrap_err());
    refused("track", tracker.track("abc", true, "").await.unwrap_err());
    refused("untrack", tracker.untrack("abc").await.unwrap_err());
    let st = tracker.status().await.expect("reads work on a follower");
    assert_eq!(
        (st.role.as_str(), st.leader.as_str()),
        ("follower", "10.0.0.7:50052")
    );
    assert_eq!(st.total, 0);
    assert!(env.in_cache("x.example.com").await.is_empty());
}
