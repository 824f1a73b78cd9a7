//! cache-service standing on its own: health, reflection through grpcurl,
//! validation at the edge, persistence across a restart, and a clean stop on
//! SIGTERM of the real binary with a call in flight.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use trafego_proto::cache::*;
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions, FakeRecord};
use trafego_tests::*;

const TOKEN: &str = "test-token-0123456789";

#[tokio::test]
async fn health_answers_serving_for_the_service_and_the_server() {
    let cache = start_cache(&[]).await;
    let mut health = HealthClient::new(cache.channel().await);
    for service in ["", "trafego.cache.v1.CacheService"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            r.status,
            ServingStatus::Serving as i32,
            "service {service:?}"
        );
    }
    cache.shutdown().await.unwrap();
}

#[tokio::test]
async fn grpcurl_lists_and_describes_through_reflection() {
    let cache = start_cache(&[]).await;
    let addr = cache.addr.to_string();
    let (ok, out) = grpcurl(&["-plaintext", &addr, "list"]).await;
    assert!(ok, "{out}");
    for s in [
        "trafego.cache.v1.CacheService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(out.contains(s), "{s} missing from:\n{out}");
    }
    assert!(!out.contains("trafego.tracking"), "{out}");
    let (ok, out) = grpcurl(&[
        "-plaintext",
        &addr,
        "describe",
        "trafego.cache.v1.CacheService",
    ])
    .await;
    assert!(ok, "{out}");
    for rpc in [
        "ListRecords",
        "GetRecord",
        "RefreshCache",
        "GetCacheStatus",
        "CreateRecord",
        "UpdateRecord",
        "DeleteRecord",
        "ApplyChanges",
        "WatchCache",
    ] {
        assert!(out.contains(&format!("rpc {rpc}")), "{rpc} missing:\n{out}");
    }
    let (ok, out) = grpcurl(&[
        "-plaintext",
        &addr,
        "describe",
        "trafego.cache.v1.DnsRecord",
    ])
    .await;
    assert!(ok, "{out}");
    assert!(
        out.contains("The provider's id for the record"),
        "comments missing:\n{out}"
    );
    // A call through grpcurl, JSON in and out.
    let (ok, out) = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"record":{"type":"A","name":"www.example.com","content":"192.0.2.10","ttl":300}}"#,
        &addr,
        "trafego.cache.v1.CacheService/CreateRecord",
    ])
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("\"www.example.com\""), "{out}");
    let (ok, out) = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"record":{"type":"A","name":"www.example.org","content":"192.0.2.10"}}"#,
        &addr,
        "trafego.cache.v1.CacheService/CreateRecord",
    ])
    .await;
    assert!(!ok);
    assert!(
        out.contains("InvalidArgument") && out.contains("record.name"),
        "{out}"
    );
    cache.shutdown().await.unwrap();
}

/// Bad inputs of every kind are refused with INVALID_ARGUMENT naming the field,
/// and nothing reaches the provider (the zone file is unchanged).
#[tokio::test]
async fn bad_inputs_are_refused_at_the_edge_and_nothing_is_written() {
    let cache = start_cache(&[]).await;
    let mut c = cache_client(&cache).await;
    let zonefile = cache.dir.join("example.com.zone");
    let before = std::fs::read_to_string(&zonefile).unwrap();
    let input = |t: &str, n: &str, content: &str, ttl: u32, prio: Option<u32>| RecordInput {
        r#type: t.into(),
        name: n.into(),
        content: content.into(),
        ttl,
        priority: prio,
        ..Default::default()
    };
    let long_label = format!("{}.example.com", "x".repeat(64));
    let long_name = format!("{}example.com", "abcdefghi.".repeat(25));
    let cases = vec![
        (
            input("A", "a.example.net", "192.0.2.1", 300, None),
            "record.name",
        ),
        (
            input("A", &long_label, "192.0.2.1", 300, None),
            "record.name",
        ),
        (
            input("A", &long_name, "192.0.2.1", 300, None),
            "record.name",
        ),
        (
            input("A", "a\nb.example.com", "192.0.2.1", 300, None),
            "record.name",
        ),
        (
            input("A", "a.example.com", "192.0.2.300", 300, None),
            "record.content",
        ),
        (
            input("AAAA", "a.example.com", "192.0.2.1", 300, None),
            "record.content",
        ),
        (
            input("CNAME", "a.example.com", "bad name", 300, None),
            "record.content",
        ),
        (
            input("TXT", "a.example.com", "x\r\ny", 300, None),
            "record.content",
        ),
        (
            input("TXT", "a.example.com", "nul\u{0}", 300, None),
            "record.content",
        ),
        (
            input("A", "a.example.com", "192.0.2.1", 5, None),
            "record.ttl",
        ),
        (
            input("A", "a.example.com", "192.0.2.1", 100_000, None),
            "record.ttl",
        ),
        (
            input("MX", "example.com", "mx.example.com", 300, None),
            "record.priority",
        ),
        (input("SPF", "a.example.com", "x", 300, None), "record.type"),
    ];
    for (rec, field) in cases {
        let err = c
            .create_record(CreateRecordRequest {
                record: Some(rec.clone()),
            })
            .await
            .expect_err(&format!("accepted {rec:?}"));
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{rec:?}: {err:?}");
        assert!(
            err.message().starts_with(field),
            "{rec:?}: {}",
            err.message()
        );
    }
    // A batch with one bad change is refused whole.
    let err = c
        .apply_changes(ApplyChangesRequest {
            changes: vec![
                Change {
                    kind: Some(change::Kind::Create(input(
                        "A",
                        "ok.example.com",
                        "192.0.2.1",
                        300,
                        None,
                    ))),
                    change_id: String::new(),
                    group: String::new(),
                },
                Change {
                    kind: Some(change::Kind::Create(input(
                        "A",
                        "bad.example.com",
                        "nope",
                        300,
                        None,
                    ))),
                    change_id: String::new(),
                    group: String::new(),
                },
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(
        err.message().starts_with("changes[1].create.content"),
        "{}",
        err.message()
    );
    for (req, field) in [
        (
            GetRecordRequest {
                record_id: String::new(),
            },
            "record_id",
        ),
        (
            GetRecordRequest {
                record_id: "a b".into(),
            },
            "record_id",
        ),
    ] {
        let err = c.get_record(req).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().starts_with(field));
    }
    let err = c
        .list_records(ListRecordsRequest {
            page_token: "zz-not-a-token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().starts_with("page_token"));
    assert_eq!(std::fs::read_to_string(&zonefile).unwrap(), before);
    cache.shutdown().await.unwrap();
}

/// Rows survive a restart on the same database file: the second start cannot
/// reach its provider at all, yet still serves the rows the first start cached,
/// at the generation it stored.
#[tokio::test]
async fn a_restart_on_the_same_database_keeps_its_rows() {
    let fake = FakeCloudflare::start(FakeOptions::new(TOKEN, "example.com"))
        .await
        .unwrap();
    fake.insert_many(
        (0..25)
            .map(|i| FakeRecord::new("A", &format!("h{i}.example.com"), "192.0.2.1"))
            .collect(),
    );
    let dir = tempdir();
    let zone_id = fake.zone_id();
    let url = fake.base_url();
    let args = [
        "--provider",
        "cloudflare",
        "--cloudflare-api-url",
        url.as_str(),
        "--cloudflare-token",
        TOKEN,
        "--cloudflare-zone-id",
        zone_id.as_str(),
    ];
    let first = start_cache_in(dir.path(), &args).await;
    let mut c = cache_client(&first).await;
    let r = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.total, 25);
    let generation = r.generation;
    first.shutdown().await.unwrap();
    drop(fake);

    // The provider is gone: a closed port.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dead = format!("http://{closed}/client/v4");
    let args = [
        "--provider",
        "cloudflare",
        "--cloudflare-api-url",
        dead.as_str(),
        "--cloudflare-token",
        TOKEN,
        "--cloudflare-zone-id",
        zone_id.as_str(),
    ];
    let second = start_cache_in(dir.path(), &args).await;
    let mut c = cache_client(&second).await;
    let page = c
        .list_records(ListRecordsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.records.len(), 25);
    // A refresh fails here; the failure changes nothing in the cache, so the
    // generation stays the one stored (neither bumped nor reset).
    let err = c
        .refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    let status = c
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!status.last_error.is_empty(), "{status:?}");
    assert_eq!(status.generation, generation);
    let page = c
        .list_records(ListRecordsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.records.len(), 25);
    assert_eq!(page.generation, generation);
    second.shutdown().await.unwrap();
    let db = dir.path().join("cache.db");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&db).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "database file mode");
    }
}

/// SIGTERM to the real binary while a call is in flight: the call finishes,
/// health went NOT_SERVING, and the process exits 0.
#[tokio::test]
async fn sigterm_lets_the_in_flight_call_finish_and_exits_zero() {
    let fake = FakeCloudflare::start(FakeOptions::new(TOKEN, "example.com"))
        .await
        .unwrap();
    fake.insert(FakeRecord::new("A", "www.example.com", "192.0.2.1"));
    let dir = tempdir();
    let bin = workspace_bin("cache-service");
    assert!(
        bin.exists(),
        "{} not built (run cargo build --workspace)",
        bin.display()
    );
    let mut child = tokio::process::Command::new(&bin)
        .env_clear()
        .env("CACHE_LISTEN_ADDR", "127.0.0.1:0")
        .env("CACHE_DB_PATH", dir.path().join("cache.db"))
        .env("DNS_PROVIDER", "cloudflare")
        .env("DNS_ZONE", "example.com")
        .env("CLOUDFLARE_API_URL", fake.base_url())
        .env("CLOUDFLARE_TOKEN", TOKEN)
        .env("CLOUDFLARE_ZONE_ID", fake.zone_id())
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // The address is in the "serving gRPC" log line.
    let addr = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("service exited early");
        if line.contains("serving gRPC") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            break v["addr"].as_str().unwrap().to_string();
        }
    };
    let log = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Ok(Some(l)) = lines.next_line().await {
            all.push(l);
        }
        all
    });
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = trafego_proto::cache::cache_service_client::CacheServiceClient::new(channel);
    // Wait for the start-up refresh so the next listing is ours.
    loop {
        let s = c
            .get_cache_status(GetCacheStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if s.last_refreshed.is_some() {
            break;
        }
        tokio::task::yield_now().await;
    }
    fake.set_delay(Duration::from_millis(800));
    let before = fake.stats().list;
    let call = tokio::spawn(async move {
        c.refresh_cache(RefreshCacheRequest {
            force: true,
            ..Default::default()
        })
        .await
    });
    // The call is in flight once the provider has seen its listing request.
    while fake.stats().list == before {
        tokio::task::yield_now().await;
    }
    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let res = call.await.unwrap();
    assert!(res.is_ok(), "in-flight call failed: {res:?}");
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits within the grace period")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let log = log.await.unwrap().join("\n");
    assert!(log.contains("NOT_SERVING"), "{log}");
    assert!(!log.contains(TOKEN), "token leaked into the log");
}
