//! The services as a mesh deployment sees them, through the real binaries:
//! TLS and mTLS, bearer tokens, load shedding, request ids across services,
//! and the Prometheus endpoint.

use std::time::Duration;

use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use trafego_proto::cache::cache_service_client::CacheServiceClient;
use trafego_proto::cache::*;
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions, FakeRecord};
use trafego_tests::*;

const AUTH: &str = "mesh-auth-token-0123456789";
const CF: &str = "cf-token-for-mesh-tests";

fn cache_env(dir: &std::path::Path, fake: &FakeCloudflare) -> Vec<(&'static str, String)> {
    vec![
        ("CACHE_LISTEN_ADDR", "127.0.0.1:0".into()),
        ("CACHE_DB_PATH", dir.join("cache.db").display().to_string()),
        ("DNS_PROVIDER", "cloudflare".into()),
        ("DNS_ZONE", "example.com".into()),
        ("CLOUDFLARE_API_URL", fake.base_url()),
        ("CLOUDFLARE_TOKEN", CF.into()),
        ("CLOUDFLARE_ZONE_ID", fake.zone_id()),
    ]
}

async fn tls_channel(
    addr: &str,
    pki: &TestPki,
    with_client_cert: bool,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(&pki.ca).unwrap()))
        .domain_name("localhost");
    if with_client_cert {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&pki.client_cert).unwrap(),
            std::fs::read(&pki.client_key).unwrap(),
        ));
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

/// Waits until the start-up refresh has finished, so a later call cannot join it.
async fn first_refresh_done(c: &mut CacheServiceClient<Channel>) {
    while c
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .last_refreshed
        .is_none()
    {
        tokio::task::yield_now().await;
    }
}

fn bearer<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

#[tokio::test]
async fn tls_and_a_token_guard_every_call_but_health_and_reflection() {
    let pki = make_pki();
    let fake = FakeCloudflare::start(FakeOptions::new(CF, "example.com"))
        .await
        .unwrap();
    fake.insert(FakeRecord::new("A", "www.example.com", "192.0.2.1"));
    let dir = tempdir();
    let mut env = cache_env(dir.path(), &fake);
    env.push(("AUTH_TOKEN", AUTH.into()));
    env.push(("TLS_CERT_FILE", pki.server_cert.display().to_string()));
    env.push(("TLS_KEY_FILE", pki.server_key.display().to_string()));
    let mut svc = spawn_service("cache-service", &env).await;
    let addr = svc.addr.clone();
    let ca = pki.ca.display().to_string();

    // grpcurl with the CA and the token works; reflection needs no token.
    let (ok, out) = grpcurl(&["-cacert", &ca, &addr, "list"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("trafego.cache.v1.CacheService"), "{out}");
    let auth_header = format!("authorization: Bearer {AUTH}");
    let (ok, out) = grpcurl(&[
        "-cacert",
        &ca,
        "-H",
        &auth_header,
        &addr,
        "trafego.cache.v1.CacheService/GetCacheStatus",
    ])
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("\"cloudflare\""), "{out}");
    // Without the token: UNAUTHENTICATED.
    let (ok, out) = grpcurl(&[
        "-cacert",
        &ca,
        &addr,
        "trafego.cache.v1.CacheService/GetCacheStatus",
    ])
    .await;
    assert!(!ok);
    assert!(out.contains("Unauthenticated"), "{out}");
    // Health answers without a token.
    let (ok, out) = grpcurl(&["-cacert", &ca, &addr, "grpc.health.v1.Health/Check"]).await;
    assert!(ok && out.contains("SERVING"), "{out}");
    // Plaintext to the TLS port fails.
    let (ok, _) = grpcurl(&["-plaintext", &addr, "list"]).await;
    assert!(!ok, "plaintext must not work against a TLS port");

    // The same through a Rust client: a wrong token is refused, the right one works.
    let mut c = CacheServiceClient::new(tls_channel(&addr, &pki, false).await.unwrap());
    let err = c
        .get_cache_status(bearer(GetCacheStatusRequest {}, "not-the-token"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    assert!(!err.message().contains("not-the-token"));
    c.get_cache_status(bearer(GetCacheStatusRequest {}, AUTH))
        .await
        .unwrap();

    assert!(svc.terminate().await.success());
    let logs = svc.log_text();
    assert!(logs.contains("refused: invalid bearer token"), "{logs}");
    assert!(logs.contains("rpc finished"), "{logs}");
    for secret in [AUTH, CF, "not-the-token"] {
        assert!(!logs.contains(secret), "a secret reached the log");
    }
}

#[tokio::test]
async fn mtls_refuses_a_client_without_a_certificate() {
    let pki = make_pki();
    let fake = FakeCloudflare::start(FakeOptions::new(CF, "example.com"))
        .await
        .unwrap();
    let dir = tempdir();
    let mut env = cache_env(dir.path(), &fake);
    env.push(("TLS_CERT_FILE", pki.server_cert.display().to_string()));
    env.push(("TLS_KEY_FILE", pki.server_key.display().to_string()));
    env.push(("TLS_CLIENT_CA_FILE", pki.ca.display().to_string()));
    let mut svc = spawn_service("cache-service", &env).await;
    let addr = svc.addr.clone();
    // Without a client certificate the handshake or the first call fails.
    let refused = match tls_channel(&addr, &pki, false).await {
        Err(_) => true,
        Ok(ch) => CacheServiceClient::new(ch)
            .get_cache_status(GetCacheStatusRequest {})
            .await
            .is_err(),
    };
    assert!(refused, "a client without a certificate got through");
    // With one, it works; grpcurl too.
    let mut c = CacheServiceClient::new(tls_channel(&addr, &pki, true).await.unwrap());
    c.get_cache_status(GetCacheStatusRequest {}).await.unwrap();
    let (ok, out) = grpcurl(&[
        "-cacert",
        &pki.ca.display().to_string(),
        "-cert",
        &pki.client_cert.display().to_string(),
        "-key",
        &pki.client_key.display().to_string(),
        &addr,
        "list",
    ])
    .await;
    assert!(ok, "{out}");
    assert!(svc.terminate().await.success());
}

/// A TCP gate in front of the fake provider: it accepts connections at once
/// but passes none of them on until [`Gate::open`], so every provider call
/// made through it blocks for exactly as long as the test wants.
struct Gate {
    url: String,
    open: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    async fn start(to: std::net::SocketAddr) -> Gate {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/client/v4", listener.local_addr().unwrap());
        let (open, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut rx = rx.clone();
                tokio::spawn(async move {
                    if rx.wait_for(|open| *open).await.is_ok()
                        && let Ok(mut out) = tokio::net::TcpStream::connect(to).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        Gate { url, open }
    }

    /// Lets every held and later connection through to the fake.
    fn open(&self) {
        let _ = self.open.send(true);
    }
}

/// With the concurrency limit held by calls that cannot finish (their
/// provider listing waits at a closed gate), every further call is refused at
/// once with RESOURCE_EXHAUSTED (shed, not queued), while health checks keep
/// answering SERVING; once the gate opens the held calls succeed.
#[tokio::test]
async fn a_burst_over_the_concurrency_limit_is_shed_while_health_still_answers() {
    let fake = FakeCloudflare::start(FakeOptions::new(CF, "example.com"))
        .await
        .unwrap();
    fake.insert(FakeRecord::new("A", "www.example.com", "192.0.2.1"));
    let gate = Gate::start(fake.addr()).await;
    let dir = tempdir();
    let mut env = cache_env(dir.path(), &fake);
    env.retain(|(k, _)| *k != "CLOUDFLARE_API_URL");
    env.push(("CLOUDFLARE_API_URL", gate.url.clone()));
    env.push(("MAX_CONCURRENT_REQUESTS", "2".into()));
    let mut svc = spawn_service("cache-service", &env).await;
    let ch = Channel::from_shared(format!("http://{}", svc.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let c = CacheServiceClient::new(ch.clone());
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch);
    let hold = |c: &CacheServiceClient<Channel>| {
        let mut c = c.clone();
        tokio::spawn(async move {
            c.refresh_cache(RefreshCacheRequest {
                force: true,
                ..Default::default()
            })
            .await
        })
    };
    let probe = |c: &CacheServiceClient<Channel>| {
        let mut c = c.clone();
        async move { c.get_cache_status(GetCacheStatusRequest {}).await }
    };

    // Two refreshes take both slots and wait at the gate. Until a probe is
    // shed, one of them may not hold its slot yet (or was shed because a
    // probe held that slot: it is sent again).
    let mut held = vec![hold(&c), hold(&c)];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        for h in held.iter_mut() {
            if h.is_finished() {
                match (&mut *h).await.unwrap() {
                    Err(s) if s.code() == tonic::Code::ResourceExhausted => *h = hold(&c),
                    other => panic!("a held refresh ended with the gate shut: {other:?}"),
                }
            }
        }
        match probe(&c).await {
            Err(s) if s.code() == tonic::Code::ResourceExhausted => break,
            Ok(_) => {}
            Err(s) => panic!("unexpected {s:?}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the limit was never saturated"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Saturated (the held calls cannot end while the gate is shut): health
    // still answers, and every other call is refused at once, not queued.
    for _ in 0..3 {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("health is never shed");
        assert_eq!(
            r.into_inner().status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    let burst: Vec<_> = (0..10).map(|_| probe(&c)).collect();
    let answers = tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(burst))
        .await
        .expect("calls over the limit were queued, not shed");
    for a in answers {
        assert_eq!(a.unwrap_err().code(), tonic::Code::ResourceExhausted);
    }
    assert!(
        held.iter().all(|h| !h.is_finished()),
        "a held call ended while the gate was shut"
    );

    // Released: the held calls finish, and the slots are free again.
    gate.open();
    for h in held {
        h.await.unwrap().expect("held refresh");
    }
    probe(&c).await.expect("a call after the release");
    assert!(svc.terminate().await.success());
}

#[tokio::test]
async fn a_short_client_deadline_wins_over_the_server_timeout() {
    let fake = FakeCloudflare::start(FakeOptions::new(CF, "example.com"))
        .await
        .unwrap();
    let dir = tempdir();
    let mut svc = spawn_service("cache-service", &cache_env(dir.path(), &fake)).await;
    let ch = Channel::from_shared(format!("http://{}", svc.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = CacheServiceClient::new(ch);
    first_refresh_done(&mut c).await;
    fake.set_delay(Duration::from_secs(3));
    let mut req = tonic::Request::new(RefreshCacheRequest {
        force: true,
        ..Default::default()
    });
    req.set_timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let err = c.refresh_cache(req).await.unwrap_err();
    assert!(
        matches!(
            err.code(),
            tonic::Code::Cancelled | tonic::Code::DeadlineExceeded
        ),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    fake.set_delay(Duration::ZERO);
    assert!(svc.terminate().await.success());
}

#[tokio::test]
async fn the_metrics_endpoint_shows_the_named_series() {
    let fake = FakeCloudflare::start(FakeOptions::new(CF, "example.com"))
        .await
        .unwrap();
    fake.insert(FakeRecord::new("A", "www.example.com", "192.0.2.1"));
    let dir = tempdir();
    let port = free_port();
    let mut env = cache_env(dir.path(), &fake);
    env.push(("METRICS_ADDR", format!("127.0.0.1:{port}")));
    let mut svc = spawn_service("cache-service", &env).await;
    let ch = Channel::from_shared(format!("http://{}", svc.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = CacheServiceClient::new(ch);
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    fake.rate_limit_next(1, 0);
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let _ = c
        .get_record(GetRecordRequest {
            // Well-formed (32 hex digits) but unknown: NOT_FOUND.
            record_id: "0123456789abcdef0123456789abcdef".into(),
        })
        .await;
    let body = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "trafego_grpc_requests_total",
        "trafego_grpc_request_duration_seconds",
        "trafego_provider_requests_total",
        "trafego_provider_retries_total",
        "trafego_cache_records",
        "trafego_cache_generation",
        "trafego_cache_last_refresh_timestamp_seconds",
        "trafego_cache_refresh_duration_seconds",
        "outcome=\"rate_limited\"",
        "code=\"NotFound\"",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics:\n{body}");
    }
    assert!(svc.terminate().await.success());
}

/// Both real binaries with TLS and tokens: tracking-service reaches
/// cache-service over mTLS with its own token, grpcurl reaches
/// tracking-service with the CA and the token, and the request id of a call
/// into tracking-service shows up in cache-service's log.
#[tokio::test]
async fn both_services_with_tls_and_tokens_pass_the_request_id_on() {
    let pki = make_pki();
    let fake = FakeCloudflare::start(FakeOptions::new(CF, "example.com"))
        .await
        .unwrap();
    let dir = tempdir();
    let mut env = cache_env(dir.path(), &fake);
    env.push(("AUTH_TOKEN", "cache-side-token-42".into()));
    env.push(("TLS_CERT_FILE", pki.server_cert.display().to_string()));
    env.push(("TLS_KEY_FILE", pki.server_key.display().to_string()));
    env.push(("TLS_CLIENT_CA_FILE", pki.ca.display().to_string()));
    let mut cache = spawn_service("cache-service", &env).await;
    let cache_port = cache.addr.rsplit(':').next().unwrap().to_string();
    let metrics_port = free_port();
    let token_file = dir.path().join("tracking-token");
    std::fs::write(&token_file, format!("{AUTH}\n")).unwrap();
    let tracking_env = vec![
        ("TRACKING_LISTEN_ADDR", "127.0.0.1:0".to_string()),
        (
            "TRACKING_DB_PATH",
            dir.path().join("tracking.db").display().to_string(),
        ),
        (
            "CACHE_SERVICE_URL",
            format!("https://localhost:{cache_port}"),
        ),
        ("CACHE_SERVICE_TOKEN", "cache-side-token-42".into()),
        ("CACHE_SERVICE_CA_FILE", pki.ca.display().to_string()),
        (
            "CACHE_SERVICE_CLIENT_CERT_FILE",
            pki.client_cert.display().to_string(),
        ),
        (
            "CACHE_SERVICE_CLIENT_KEY_FILE",
            pki.client_key.display().to_string(),
        ),
        ("AUTH_TOKEN_FILE", token_file.display().to_string()),
        ("TLS_CERT_FILE", pki.server_cert.display().to_string()),
        ("TLS_KEY_FILE", pki.server_key.display().to_string()),
        ("METRICS_ADDR", format!("127.0.0.1:{metrics_port}")),
    ];
    let mut tracking = spawn_service("tracking-service", &tracking_env).await;
    let ca = pki.ca.display().to_string();
    let auth_header = format!("authorization: Bearer {AUTH}");
    let request_id = "req-mesh-test-0042";
    let rid_header = format!("x-request-id: {request_id}");
    let (ok, out) = grpcurl(&[
        "-cacert",
        &ca,
        "-H",
        &auth_header,
        "-H",
        &rid_header,
        "-d",
        r#"{"source":"mesh","records":[{"hostname":"svc.example.com","type":"A","content":"192.0.2.77"}]}"#,
        &tracking.addr,
        "trafego.tracking.v1.TrackingService/Reconcile",
    ])
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("CHANGE_ACTION_CREATE"), "{out}");
    assert_eq!(fake.records().len(), 1);
    // Without the token: refused.
    let (ok, out) = grpcurl(&[
        "-cacert",
        &ca,
        &tracking.addr,
        "trafego.tracking.v1.TrackingService/GetTrackerStatus",
    ])
    .await;
    assert!(!ok && out.contains("Unauthenticated"), "{out}");
    // The guard refusal and tracked counts show in the metrics.
    let (ok, out) = grpcurl(&[
        "-cacert",
        &ca,
        "-H",
        &auth_header,
        "-d",
        r#"{"source":"mesh","records":[]}"#,
        &tracking.addr,
        "trafego.tracking.v1.TrackingService/Reconcile",
    ])
    .await;
    assert!(!ok && out.contains("FailedPrecondition"), "{out}");
    let body = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "trafego_grpc_requests_total",
        "trafego_tracked_records",
        "trafego_guard_refusals_total",
        "trafego_orphans_deleted_total",
    ] {
        assert!(
            body.contains(name),
            "{name} missing from tracking /metrics:\n{body}"
        );
    }
    assert!(tracking.terminate().await.success());
    assert!(cache.terminate().await.success());
    let tracking_log = tracking.log_text();
    let cache_log = cache.log_text();
    assert!(
        tracking_log.contains(request_id),
        "tracking log lacks the request id"
    );
    assert!(
        cache_log.contains(request_id),
        "cache-service's log lacks the request id:\n{cache_log}"
    );
    for secret in [AUTH, "cache-side-token-42", CF] {
        assert!(!tracking_log.contains(secret) && !cache_log.contains(secret));
    }
}

/// The exposure warning needs both conditions: authentication off and a
/// listener off loopback. Each case changes one of them alone.
#[tokio::test]
async fn auth_off_on_a_non_loopback_address_warns_at_start() {
    const WARNING: &str = "authentication is off";
    let fake = FakeCloudflare::start(FakeOptions::new(CF, "example.com"))
        .await
        .unwrap();
    let dir = tempdir();
    let logs_with = |listen: &'static str, token: Option<&'static str>| {
        let mut env = cache_env(dir.path(), &fake);
        env.retain(|(k, _)| *k != "CACHE_LISTEN_ADDR");
        env.push(("CACHE_LISTEN_ADDR", listen.into()));
        if let Some(t) = token {
            env.push(("AUTH_TOKEN", t.into()));
        }
        async move {
            let mut svc = spawn_service("cache-service", &env).await;
            assert!(svc.terminate().await.success());
            svc.log_text()
        }
    };

    // Authentication off, every interface: the warning.
    let logs = logs_with("0.0.0.0:0", None).await;
    assert!(logs.contains(WARNING), "no warning off loopback:\n{logs}");
    // Authentication off, loopback: no warning.
    let logs = logs_with("127.0.0.1:0", None).await;
    assert!(!logs.contains(WARNING), "warned on loopback:\n{logs}");
    // A token, every interface: no warning.
    let logs = logs_with("0.0.0.0:0", Some(AUTH)).await;
    assert!(!logs.contains(WARNING), "warned with a token:\n{logs}");
    assert!(!logs.contains(AUTH), "the token reached the log");
}

#[tokio::test]
async fn a_request_over_the_size_limit_is_refused() {
    let fake = FakeCloudflare::start(FakeOptions::new(CF, "example.com"))
        .await
        .unwrap();
    let dir = tempdir();
    let mut env = cache_env(dir.path(), &fake);
    env.push(("MAX_MESSAGE_BYTES", "4096".into()));
    let mut svc = spawn_service("cache-service", &env).await;
    let ch = Channel::from_shared(format!("http://{}", svc.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut c = CacheServiceClient::new(ch);
    let changes: Vec<Change> = (0..200)
        .map(|i| Change {
            kind: Some(change::Kind::Create(RecordInput {
                r#type: "A".into(),
                name: format!("big-{i}.example.com"),
                content: "192.0.2.1".into(),
                ..Default::default()
            })),
            change_id: String::new(),
            group: String::new(),
        })
        .collect();
    let err = c
        .apply_changes(ApplyChangesRequest { changes })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert_eq!(fake.count(), 0, "nothing reached the provider");
    assert!(svc.terminate().await.success());
}
