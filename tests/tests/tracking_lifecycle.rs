//! End-to-end tests of tracking-service's life: health and reflection are
//! served under its name, it starts without cache-service (and answers
//! UNAVAILABLE until cache-service is up), and a shutdown ends its
//! background work and returns promptly.

mod tracking_support;

use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tracking_support::*;
use trafego_common::clock::ManualClock;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_health_and_shuts_down_promptly() {
    let env = Env::start(vec![], &[]).await;
    let ch = tonic::transport::Channel::from_shared(env.tracking.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(ch);
    let st = health
        .check(HealthCheckRequest {
            service: tracking_service::SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.status, ServingStatus::Serving as i32);
    let Env { tracking, .. } = env;
    let t = Instant::now();
    let res = tracking.shutdown_result().await.expect("run returned");
    res.expect("clean shutdown");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_before_cache_service_and_catches_up() {
    trafego_tests::init_test_logging();
    let dir = tempfile::tempdir().unwrap();
    // Reserve an address for cache-service, but do not serve it yet.
    let reserved = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let tracking = start_tracking(
        &format!("http://{addr}"),
        dir.path(),
        &["--managed-hostnames", "boot.example.com:TXT:hello"],
        ManualClock::new(T0),
    )
    .await;
    let mut client = tracking_client(&tracking.url).await;
    let e = client
        .reconcile(trafego_proto::tracking::ReconcileRequest {
            source: "s".into(),
            records: vec![a("x.example.com", "192.0.2.1")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    assert!(e.message().contains(&addr.to_string()), "{}", e.message());

    let cache = start_cache_on(
        TcpListener::bind(addr).await.unwrap(),
        zonefile_args(dir.path()),
    )
    .await;
    // The start-up sync retries with backoff and reconciles MANAGED_HOSTNAMES.
    let zone = dir.path().join("example.com.zone");
    eventually("MANAGED_HOSTNAMES written once cache-service is up", || {
        let zone = zone.clone();
        async move {
            std::fs::read_to_string(&zone)
                .map(|z| z.contains("boot"))
                .unwrap_or(false)
        }
    })
    .await;
    tracking.shutdown().await;
    cache.shutdown().await;
}

/// Bad input is INVALID_ARGUMENT naming the field even when cache-service
/// has never been reachable (the zone is not known yet); only a valid
/// declaration gets UNAVAILABLE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_invalid_argument_even_while_cache_service_is_down() {
    trafego_tests::init_test_logging();
    let dir = tempfile::tempdir().unwrap();
    let reserved = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let tracking = start_tracking(
        &format!("http://{addr}"),
        dir.path(),
        &[],
        ManualClock::new(T0),
    )
    .await;
    let mut client = tracking_client(&tracking.url).await;
    let reconcile = |records: Vec<trafego_proto::tracking::DesiredRecord>| {
        let mut c = client.clone();
        async move {
            c.reconcile(trafego_proto::tracking::ReconcileRequest {
                source: "s".into(),
                records,
                ..Default::default()
            })
            .await
            .unwrap_err()
        }
    };
    let mut ttl = a("t.example.com", "192.0.2.1");
    ttl.ttl = Some(10);
    let cases = vec![
        (vec![a("x.example.com", "300.0.0.1")], "records[0].content"),
        (
            vec![
                a("ok.example.com", "192.0.2.1"),
                txt("x.example.com", "line\nbreak"),
            ],
            "records[1].content",
        ),
        (vec![ttl], "records[0].ttl"),
        (
            vec![
                a("x.example.com", "192.0.2.1"),
                a("X.example.com.", "192.0.2.2"),
            ],
            "records[1].hostname",
        ),
        (
            vec![a("bad..example.com", "192.0.2.1")],
            "records[0].hostname",
        ),
    ];
    for (records, field) in cases {
        let e = reconcile(records.clone()).await;
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{records:?}: {e:?}");
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
    }
    let e = reconcile(vec![a("x.example.com", "192.0.2.1")]).await;
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    client
        .get_tracker_status(trafego_proto::tracking::GetTrackerStatusRequest {})
        .await
        .unwrap();
    tracking.shutdown().await;
}

/// A CACHE_SERVICE_TOKEN that cache-service refuses is tracking-service's
/// own misconfiguration: its caller (who authenticated fine) gets
/// UNAVAILABLE naming CACHE_SERVICE_TOKEN, not UNAUTHENTICATED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_cache_service_token_is_not_the_callers_fault() {
    trafego_tests::init_test_logging();
    let dir = tempfile::tempdir().unwrap();
    let mut args = zonefile_args(dir.path());
    args.extend(["--auth-token".into(), "the-right-cache-token".into()]);
    let cache = start_cache_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), args).await;
    let tracking = start_tracking(
        &cache.url,
        dir.path(),
        &["--cache-service-token", "a-wrong-cache-token"],
        ManualClock::new(T0),
    )
    .await;
    let mut client = tracking_client(&tracking.url).await;
    let e = client
        .reconcile(trafego_proto::tracking::ReconcileRequest {
            source: "s".into(),
            records: vec![a("x.example.com", "192.0.2.1")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains("CACHE_SERVICE_TOKEN"),
        "{}",
        e.message()
    );
    assert!(
        !e.message().contains("a-wrong-cache-token"),
        "{}",
        e.message()
    );
    assert!(
        !e.message().contains("the-right-cache-token"),
        "{}",
        e.message()
    );
    tracking.shutdown().await;
    cache.shutdown().await;
}

/// The configuration's Debug output (logged at start, shown in panics)
/// never carries CACHE_SERVICE_TOKEN or AUTH_TOKEN.
#[test]
fn config_debug_redacts_tokens() {
    let c = tracking_service::Config::for_test(&[
        "--cache-service-token",
        "cache-secret-value-1",
        "--auth-token",
        "mesh-secret-value-2",
    ]);
    let shown = format!("{c:?}");
    assert!(!shown.contains("cache-secret-value-1"), "{shown}");
    assert!(!shown.contains("mesh-secret-value-2"), "{shown}");
    assert!(shown.contains("cache_service_token"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}
