//! tracking-service standing on its own: health, reflection through grpcurl,
//! persistence across a restart, and a clean stop on SIGTERM of the real
//! binary with a Reconcile in flight.

use std::time::Duration;

use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use trafego_proto::tracking::tracking_service_client::TrackingServiceClient;
use trafego_proto::tracking::*;
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions};
use trafego_tests::*;

const CF: &str = "cf-token-tracking-foundation";

fn desired(host: &str, ip: &str) -> DesiredRecord {
    DesiredRecord {
        hostname: host.into(),
        r#type: Some("A".into()),
        content: Some(ip.into()),
        ..Default::default()
    }
}

fn tracking_env(dir: &std::path::Path, cache_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TRACKING_LISTEN_ADDR", "127.0.0.1:0".into()),
        (
            "TRACKING_DB_PATH",
            dir.join("tracking.db").display().to_string(),
        ),
        ("CACHE_SERVICE_URL", cache_url.into()),
    ]
}

async fn connect(addr: &str) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn health_reflection_and_a_restart_that_keeps_its_rows() {
    let cache = start_cache(&[]).await;
    let dir = tempdir();
    let mut t = spawn_service("tracking-service", &tracking_env(dir.path(), &cache.url)).await;
    let addr = t.addr.clone();

    let mut health = HealthClient::new(connect(&addr).await);
    for service in ["", "trafego.tracking.v1.TrackingService"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32, "{service:?}");
    }
    let (ok, out) = grpcurl(&["-plaintext", &addr, "list"]).await;
    assert!(ok, "{out}");
    for s in [
        "trafego.tracking.v1.TrackingService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(out.contains(s), "{s} missing:\n{out}");
    }
    let (ok, out) = grpcurl(&[
        "-plaintext",
        &addr,
        "describe",
        "trafego.tracking.v1.TrackedRecord",
    ])
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("only such records are ever modified or deleted"),
        "{out}"
    );
    let (ok, out) = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"source":"grpcurl","records":[{"hostname":"api.example.com","type":"A","content":"192.0.2.10"}]}"#,
        &addr,
        "trafego.tracking.v1.TrackingService/Reconcile",
    ])
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("CHANGE_ACTION_CREATE"), "{out}");

    // Restart on the same database: the tracked row is still there.
    assert!(t.terminate().await.success());
    let t2 = spawn_service("tracking-service", &tracking_env(dir.path(), &cache.url)).await;
    let mut c = TrackingServiceClient::new(connect(&t2.addr).await);
    let list = c
        .list_tracked_records(ListTrackedRecordsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.records.len(), 1);
    assert_eq!(list.records[0].name, "api.example.com");
    assert!(list.records[0].app_managed);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tracking.db"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    cache.shutdown().await.unwrap();
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_reconcile_finish_and_exits_zero() {
    let fake = FakeCloudflare::start(FakeOptions::new(CF, "example.com"))
        .await
        .unwrap();
    let cache = start_cache_cloudflare(&fake, CF, &[]).await;
    let dir = tempdir();
    let mut t = spawn_service("tracking-service", &tracking_env(dir.path(), &cache.url)).await;
    let mut c = TrackingServiceClient::new(connect(&t.addr).await);
    // Warm up: the first reconcile fills the cache.
    c.reconcile(ReconcileRequest {
        source: "ci".into(),
        records: vec![desired("a.example.com", "192.0.2.1")],
        ..Default::default()
    })
    .await
    .unwrap();
    fake.set_delay(Duration::from_millis(800));
    let before = fake.stats().total;
    let call = tokio::spawn(async move {
        c.reconcile(ReconcileRequest {
            source: "ci".into(),
            records: vec![
                desired("a.example.com", "192.0.2.1"),
                desired("b.example.com", "192.0.2.2"),
            ],
            ..Default::default()
        })
        .await
    });
    // In flight once the provider has seen its write.
    while fake.stats().total == before {
        tokio::task::yield_now().await;
    }
    let status = t.terminate().await;
    let res = call.await.unwrap();
    assert!(res.is_ok(), "in-flight reconcile failed: {res:?}");
    assert_eq!(res.unwrap().into_inner().summary.unwrap().created, 1);
    assert!(status.success(), "{status:?}");
    let logs = t.log_text();
    assert!(logs.contains("NOT_SERVING"), "{logs}");
    cache.shutdown().await.unwrap();
}
