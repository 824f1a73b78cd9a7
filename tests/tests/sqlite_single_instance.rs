//! One SQLite database file, one instance: a second cache-service or
//! tracking-service started on the file another instance holds refuses to
//! start, saying which file, that another instance holds it (its pid) and
//! that replicas need PostgreSQL; the first keeps serving, and once it stops
//! the file can be opened again.

mod tracking_support;

use std::time::Duration;

use tokio::net::TcpListener;
use tracking_support::{T0, start_cache_on, start_tracking, tracking_client, zonefile_args};
use trafego_common::clock::ManualClock;
use trafego_proto::cache::GetCacheStatusRequest;
use trafego_proto::tracking::GetTrackerStatusRequest;
use trafego_tests::{cache_client, start_cache_in, tempdir};

/// What the refusal must say, about database `db`.
fn assert_refusal(err: &anyhow::Error, db: &std::path::Path) {
    let text = format!("{err:#}");
    assert!(text.contains(&db.display().to_string()), "{text}");
    assert!(text.contains("in use by another instance"), "{text}");
    // Both instances run in this process, so the holder's pid is ours.
    assert!(
        text.contains(&format!("pid {}", std::process::id())),
        "{text}"
    );
    assert!(text.contains("PostgreSQL"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_cache_service_on_the_same_file_refuses_to_start() {
    let dir = tempdir();
    let first = start_cache_in(dir.path(), &[]).await;
    let mut c = cache_client(&first).await;
    c.get_cache_status(GetCacheStatusRequest {}).await.unwrap();

    let db = dir.path().join("cache.db").display().to_string();
    let zonefile = dir.path().join("example.com.zone").display().to_string();
    let args = [
        "--zone",
        "example.com",
        "--db-path",
        db.as_str(),
        "--zonefile-path",
        zonefile.as_str(),
    ];
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let second = cache_service::run(
        listener,
        cache_service::Config::for_test(&args),
        std::future::pending(),
    );
    let err = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the second instance started instead of refusing")
        .unwrap_err();
    assert_refusal(&err, &dir.path().join("cache.db"));

    // The first is untouched and keeps serving.
    c.get_cache_status(GetCacheStatusRequest {}).await.unwrap();
    first.shutdown().await.unwrap();
    // Stopped, it no longer holds the file.
    let again = start_cache_in(dir.path(), &[]).await;
    cache_client(&again)
        .await
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap();
    again.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_tracking_service_on_the_same_file_refuses_to_start() {
    let dir = tempdir();
    let cache = start_cache_on(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        zonefile_args(dir.path()),
    )
    .await;
    let first = start_tracking(&cache.url, dir.path(), &[], ManualClock::new(T0)).await;
    let mut t = tracking_client(&first.url).await;
    t.get_tracker_status(GetTrackerStatusRequest {})
        .await
        .unwrap();

    let second = start_tracking(&cache.url, dir.path(), &[], ManualClock::new(T0)).await;
    let err = second
        .shutdown_result()
        .await
        .expect("the second instance started instead of refusing")
        .unwrap_err();
    assert_refusal(&err, &dir.path().join("tracking.db"));

    t.get_tracker_status(GetTrackerStatusRequest {})
        .await
        .unwrap();
    first.shutdown().await;
    let again = start_tracking(&cache.url, dir.path(), &[], ManualClock::new(T0)).await;
    tracking_client(&again.url)
        .await
        .get_tracker_status(GetTrackerStatusRequest {})
        .await
        .unwrap();
    again.shutdown().await;
    cache.shutdown().await;
}
