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
