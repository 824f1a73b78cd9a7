//! The request metrics' labels are bounded: a caller sending calls to paths
//! the service does not serve, with or without a token, adds no series to
//! `/metrics` (they all count under `method="unknown"`).
//!
//! The service runs as its own process (the metrics recorder is global to a
//! process), with the zone-file provider; calls are raw HTTP/2 gRPC requests
//! to made-up paths.

use futures::StreamExt;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use trafego_tests::*;

const AUTH: &str = "metrics-labels-token-0123456789";

/// One unary call with an empty message to `path`; the status code it got.
async fn raw_call(ch: Channel, path: String, token: bool) -> Code {
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.expect("channel ready");
    let mut req = tonic::Request::new(());
    if token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {AUTH}").parse().unwrap());
    }
    let path = PathAndQuery::try_from(path).expect("path");
    match grpc
        .unary::<(), (), _>(req, path, tonic_prost::ProstCodec::default())
        .await
    {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// A random path of kind `i % 5`: under a made-up service, bare, or a
/// made-up method of a real (or exempt) service.
fn random_path(i: usize) -> String {
    let r = format!("{:012x}", rand::random::<u64>() >> 16);
    match i % 5 {
        0 => format!("/x.Y/{r}"),
        1 => format!("/{r}"),
        2 => format!("/trafego.cache.v1.CacheService/{r}"),
        3 => format!("/grpc.health.v1.Health/{r}"),
        _ => format!("/{r}.Svc{i}/M{r}"),
    }
}

/// The series of the request metrics on `/metrics`, one line each.
async fn grpc_series(port: u16) -> Vec<String> {
    let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    body.lines()
        .filter(|l| l.starts_with("trafego_grpc_"))
        .map(|l| l.rsplit_once(' ').map_or(l, |(k, _)| k).to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_calls_to_random_paths_add_no_series() {
    let dir = tempdir();
    let port = free_port();
    let env = vec![
        ("CACHE_LISTEN_ADDR", "127.0.0.1:0".to_string()),
        (
            "CACHE_DB_PATH",
            dir.path().join("cache.db").display().to_string(),
        ),
        ("DNS_ZONE", "example.com".into()),
        (
            "ZONEFILE_PATH",
            dir.path().join("example.com.zone").display().to_string(),
        ),
        ("AUTH_TOKEN", AUTH.into()),
        ("METRICS_ADDR", format!("127.0.0.1:{port}")),
        // Quiet but for the "serving gRPC" line the harness waits for: one
        // log line per call would be 10,000 lines to collect.
        ("LOG_LEVEL", "warn,trafego_common::server=info".into()),
    ];
    let mut svc = spawn_service("cache-service", &env).await;
    let ch = Channel::from_shared(format!("http://{}", svc.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    // One call of each kind, with and without the token: the `unknown`
    // series (one per code) exist from here on.
    for i in 0..10 {
        let code = raw_call(ch.clone(), random_path(i), i % 2 == 0).await;
        assert!(
            matches!(code, Code::Unimplemented | Code::Unauthenticated),
            "{code:?}"
        );
    }
    let before = grpc_series(port).await;
    assert!(
        before.iter().any(|s| s.contains("method=\"unknown\"")),
        "{before:#?}"
    );

    let paths: Vec<(String, bool)> = (0..10_000).map(|i| (random_path(i), i % 3 != 0)).collect();
    let sample: Vec<String> = paths.iter().step_by(997).map(|(p, _)| p.clone()).collect();
    let codes: Vec<Code> = futures::stream::iter(paths)
        .map(|(p, t)| raw_call(ch.clone(), p, t))
        .buffer_unordered(32)
        .collect()
        .await;
    assert_eq!(codes.len(), 10_000);
    assert!(
        codes
            .iter()
            .all(|c| matches!(c, Code::Unimplemented | Code::Unauthenticated)),
        "every call refused"
    );

    let after = grpc_series(port).await;
    assert_eq!(
        after.len(),
        before.len(),
        "new series: {:#?}",
        after
            .iter()
            .filter(|s| !before.contains(s))
            .take(10)
            .collect::<Vec<_>>()
    );
    let body = after.join("\n");
    for p in &sample {
        assert!(!body.contains(p.as_str()), "{p} became a label");
    }
    assert!(svc.terminate().await.success());
}
