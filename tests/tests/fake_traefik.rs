//! Integration tests of the fake Traefik API itself, over real HTTP on loopback with
//! reqwest (the client the Traefik source will use): paging with `X-Next-Page` until it
//! says `1`, the JSON shape of HTTP and TCP routers in both flavours, `/api/rawdata`,
//! `/api/version`, basic auth, runtime changes and every injected fault.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use trafego_tests::fake_traefik::{
    FakeRouter, FakeTraefik, RouterKind, RouterStatus, RouterTls, TlsDomain, TraefikOptions,
    TraefikStats, Unreachable,
};

async fn start(opts: TraefikOptions) -> FakeTraefik {
    FakeTraefik::start(opts).await.expect("start fake traefik")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// One GET: status, `X-Next-Page`, and the body as text.
async fn get(c: &reqwest::Client, url: &str) -> (u16, Option<String>, String) {
    let resp = c.get(url).send().await.expect("send");
    let status = resp.status().as_u16();
    let next = resp
        .headers()
        .get("x-next-page")
        .map(|v| v.to_str().expect("ascii").to_string());
    (status, next, resp.text().await.expect("body"))
}

/// `n` Docker routers `svc-000@docker`.. with Go-like rules (backticks, `||`, v2 lists).
fn docker_routers(n: usize) -> Vec<FakeRouter> {
    (0..n)
        .map(|i| {
            FakeRouter::new(
                &format!("svc-{i:03}"),
                "docker",
                &format!("Host(`svc-{i:03}.example.com`) || Host(`alt-{i:03}.example.com`)"),
            )
        })
        .collect()
}

/// Reads every page of `path` (`http` or `tcp`) as a client must: from page 1, following
/// `X-Next-Page` until it is `1`. Returns the routers and the page sizes seen.
async fn read_all(fake: &FakeTraefik, kind: &str) -> (Vec<Value>, Vec<usize>, Vec<String>) {
    let c = client();
    let mut page = 1;
    let (mut all, mut sizes, mut nexts) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        let url = format!("{}/{kind}/routers?page={page}", fake.base_url());
        let (status, next, body) = get(&c, &url).await;
        assert_eq!(status, 200, "{body}");
        let items: Vec<Value> = serde_json::from_str(&body).expect("json array");
        sizes.push(items.len());
        all.extend(items);
        let next = next.expect("X-Next-Page on every page");
        nexts.push(next.clone());
        if next == "1" {
            return (all, sizes, nexts);
        }
        page = next.parse().expect("page number");
        assert!(sizes.len() < 50, "paging does not end");
    }
}

#[tokio::test]
async fn pages_250_routers_over_3_pages_until_next_page_is_1() {
    let fake = start(TraefikOptions {
        internal_routers: false,
        ..TraefikOptions::v3()
    })
    .await;
    fake.upsert_routers(RouterKind::Http, docker_routers(250));

    let (all, sizes, nexts) = read_all(&fake, "http").await;
    assert_eq!(sizes, vec![100, 100, 50]);
    assert_eq!(nexts, vec!["2", "3", "1"]);
    let names: Vec<&str> = all
        .iter()
        .map(|r| r["name"].as_str().expect("name"))
        .collect();
    let unique: BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), 250, "no router twice, none missing");
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "Traefik sorts by name by default");
    assert_eq!(names[0], "svc-000@docker");
    assert_eq!(fake.stats().http_routers, 3);

    // The exact JSON Traefik v3 shows for a Docker router.
    assert_eq!(
        all[7],
        json!({
            "entryPoints": ["web"],
            "service": "svc-007",
            "rule": "Host(`svc-007.example.com`) || Host(`alt-007.example.com`)",
            "observability": {
                "accessLogs": true, "metrics": true, "tracing": true, "traceVerbosity": "minimal"
            },
            "status": "enabled",
            "using": ["web"],
            "name": "svc-007@docker",
            "provider": "docker",
            "priorityStr": "0"
        })
    );

    // A client that ignores X-Next-Page and stops at the first page misses 150 routers.
    let (_, next, body) = get(&client(), &format!("{}/http/routers", fake.base_url())).await;
    assert_eq!(next.as_deref(), Some("2"));
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&body)
            .expect("json")
            .len(),
        100
    );

    // Bigger pages; an exact fit still ends with 1.
    let (_, next, body) = get(
        &client(),
        &format!("{}/http/routers?per_page=125&page=2", fake.base_url()),
    )
    .await;
    assert_eq!(next.as_deref(), Some("1"));
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&body)
            .expect("json")
            .len(),
        125
    );
}

#[tokio::test]
async fn refuses_bad_paging_like_traefik() {
    let fake = start(TraefikOptions::v3()).await;
    fake.upsert_routers(RouterKind::Http, docker_routers(10));
    let c = client();
    let base = fake.base_url();
    for (query, message) in [
        ("page=2", "invalid request: page: 2, per_page: 100"),
        ("per_page=0", "invalid request: per_page: 0"),
        ("page=abc", "invalid request: page: 0"),
        ("page=-1", "invalid request: page: -1"),
    ] {
        let resp = c
            .get(format!("{base}/http/routers?{query}"))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 400, "{query}");
        assert_eq!(
            resp.headers()[reqwest::header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let body: Value = serde_json::from_str(&resp.text().await.expect("body")).expect("json");
        assert_eq!(body, json!({ "message": message }), "{query}");
    }
    assert_eq!(fake.stats().bad_requests, 4);

    // No routers at all: page 1 is an empty list, and the last page.
    fake.clear_routers(RouterKind::Tcp);
    let (status, next, body) = get(&c, &format!("{base}/tcp/routers")).await;
    assert_eq!(
        (status, next.as_deref(), body.as_str()),
        (200, Some("1"), "[]\n")
    );
}

#[tokio::test]
async fn shows_internal_and_tcp_routers_in_both_flavours() {
    for opts in [TraefikOptions::v3(), TraefikOptions::v2()] {
        let v3 = opts.flavor == trafego_tests::fake_traefik::TraefikFlavor::V3;
        let fake = start(opts).await;
        fake.upsert_router(
            RouterKind::Tcp,
            FakeRouter {
                entry_points: vec!["websecure".into()],
                tls: Some(RouterTls {
                    passthrough: true,
                    ..RouterTls::default()
                }),
                ..FakeRouter::new("db", "file", "HostSNI(`db.example.com`)")
            },
        );
        fake.upsert_router(
            RouterKind::Http,
            FakeRouter {
                entry_points: vec!["websecure".into()],
                priority: 42,
                tls: Some(RouterTls {
                    cert_resolver: Some("le".into()),
                    domains: vec![TlsDomain {
                        main: "example.com".into(),
                        sans: vec!["*.example.com".into()],
                    }],
                    ..RouterTls::default()
                }),
                ..FakeRouter::new("web", "docker", "Host(`www.example.com`)")
            }
            .with_status(RouterStatus::Warning),
        );

        let (http, _, _) = read_all(&fake, "http").await;
        let names: Vec<&str> = http
            .iter()
            .map(|r| r["name"].as_str().expect("name"))
            .collect();
        assert_eq!(names, ["api@internal", "dashboard@internal", "web@docker"]);
        let api = &http[0];
        assert_eq!(api["provider"], "internal");
        assert_eq!(api["rule"], "PathPrefix(`/api`)");
        assert_eq!(api["priority"], json!(9_223_372_036_854_775_806_i64));
        let web = &http[2];
        assert_eq!(web["status"], "warning");
        assert_eq!(web["error"][0], "the service \"web@docker\" does not exist");
        assert_eq!(web["priority"], 42);
        assert_eq!(
            web["tls"],
            json!({
                "options": "default",
                "certResolver": "le",
                "domains": [{ "main": "example.com", "sans": ["*.example.com"] }]
            })
        );
        if v3 {
            assert_eq!(api["ruleSyntax"], "default");
            assert_eq!(api["priorityStr"], "9223372036854775806");
            assert_eq!(web["priorityStr"], "42");
        } else {
            for key in ["ruleSyntax", "priorityStr", "observability"] {
                assert!(api.get(key).is_none(), "v2 has no {key}");
                assert!(web.get(key).is_none(), "v2 has no {key}");
            }
        }

        let (tcp, _, _) = read_all(&fake, "tcp").await;
        assert_eq!(tcp.len(), 1);
        assert_eq!(tcp[0]["name"], "db@file");
        assert_eq!(tcp[0]["rule"], "HostSNI(`db.example.com`)");
        assert_eq!(tcp[0]["tls"], json!({ "passthrough": true }));
        assert!(tcp[0].get("observability").is_none());

        // One router by name, and an unknown one.
        let c = client();
        let (status, _, body) = get(&c, &format!("{}/tcp/routers/db@file", fake.base_url())).await;
        assert_eq!(status, 200);
        assert_eq!(
            serde_json::from_str::<Value>(&body).expect("json")["name"],
            "db@file"
        );
        let (status, _, body) =
            get(&c, &format!("{}/http/routers/nope@file", fake.base_url())).await;
        assert_eq!(status, 404);
        assert_eq!(body, "{\"message\":\"router not found: nope@file\"}\n");
    }
}

#[tokio::test]
async fn rawdata_holds_every_router_unpaged() {
    let fake = start(TraefikOptions::v3()).await;
    fake.upsert_routers(RouterKind::Http, docker_routers(250));
    fake.upsert_router(
        RouterKind::Tcp,
        FakeRouter::new("db", "file", "HostSNI(`db.example.com`)"),
    );
    fake.set_service_servers("svc-001@docker", vec!["http://172.18.0.5:80".into()]);

    let (status, next, body) = get(&client(), &format!("{}/rawdata", fake.base_url())).await;
    assert_eq!(status, 200);
    assert_eq!(next, None, "rawdata is not paged");
    let raw: Value = serde_json::from_str(&body).expect("json");
    let routers = raw["routers"].as_object().expect("routers map");
    assert_eq!(
        routers.len(),
        252,
        "250 Docker routers and the two internal ones"
    );
    let r = &routers["svc-001@docker"];
    assert_eq!(
        r["rule"],
        "Host(`svc-001.example.com`) || Host(`alt-001.example.com`)"
    );
    assert_eq!(r["status"], "enabled");
    assert!(
        r.get("name").is_none() && r.get("provider").is_none(),
        "keyed, not named"
    );
    let svc = &raw["services"]["svc-001@docker"];
    assert_eq!(
        svc["loadBalancer"]["servers"],
        json!([{ "url": "http://172.18.0.5:80" }])
    );
    assert_eq!(svc["usedBy"], json!(["svc-001@docker"]));
    assert_eq!(svc["serverStatus"]["http://172.18.0.5:80"], "UP");
    assert_eq!(
        raw["services"]["api@internal"],
        json!({ "status": "enabled", "usedBy": ["api@internal"] })
    );
    assert_eq!(
        raw["middlewares"]["dashboard_stripprefix@internal"]["stripPrefix"]["prefixes"],
        json!(["/dashboard/", "/dashboard"])
    );
    assert_eq!(
        raw["tcpRouters"]["db@file"]["rule"],
        "HostSNI(`db.example.com`)"
    );
    assert_eq!(raw["tcpServices"]["db@file"]["usedBy"], json!(["db@file"]));
    assert_eq!(fake.stats().rawdata, 1);
}

#[tokio::test]
async fn reports_its_version() {
    let fake = start(TraefikOptions::v3()).await;
    let resp = client()
        .get(format!("{}/version", fake.base_url()))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["Version"], "3.3.4");
    assert_eq!(v["Codename"], "saintnectaire");
    assert!(v["startDate"].as_str().is_some());
    assert_eq!(fake.stats().version, 1);
}

#[tokio::test]
async fn basic_auth_refuses_missing_or_wrong_credentials() {
    let fake = start(TraefikOptions::v3().with_basic_auth("admin", "s3cret")).await;
    let c = client();
    let url = format!("{}/http/routers", fake.base_url());

    let none = c.get(&url).send().await.expect("send");
    assert_eq!(none.status(), 401);
    assert_eq!(
        none.headers()[reqwest::header::WWW_AUTHENTICATE],
        "Basic realm=\"traefik\""
    );
    assert_eq!(none.text().await.expect("body"), "401 Unauthorized\n");

    let wrong = c
        .get(&url)
        .basic_auth("admin", Some("nope"))
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), 401);
    // A hand-written header with the right credentials ("admin:s3cret").
    let raw = c
        .get(&url)
        .header("Authorization", "Basic YWRtaW46czNjcmV0")
        .send()
        .await
        .expect("send");
    assert_eq!(raw.status(), 200);
    let right = c
        .get(&url)
        .basic_auth("admin", Some("s3cret"))
        .send()
        .await
        .expect("send");
    assert_eq!(right.status(), 200);
    assert_eq!(right.headers()["x-next-page"], "1");

    // The forced switch refuses even the right credentials, until lifted.
    fake.set_unauthorized(true);
    let forced = c
        .get(&url)
        .basic_auth("admin", Some("s3cret"))
        .send()
        .await
        .expect("send");
    assert_eq!(forced.status(), 401);
    fake.set_unauthorized(false);
    let again = c
        .get(&url)
        .basic_auth("admin", Some("s3cret"))
        .send()
        .await
        .expect("send");
    assert_eq!(again.status(), 200);

    let s = fake.stats();
    assert_eq!((s.total, s.unauthorized, s.http_routers), (6, 3, 3));

    // Without auth configured, anything goes.
    let open = start(TraefikOptions::v3()).await;
    let resp = c
        .get(format!("{}/http/routers", open.base_url()))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn routers_change_and_disappear_at_runtime() {
    let fake = start(TraefikOptions {
        internal_routers: false,
        ..TraefikOptions::v3()
    })
    .await;
    fake.upsert_routers(RouterKind::Http, docker_routers(3));
    let rules = |all: &[Value]| -> Vec<(String, String, String)> {
        all.iter()
            .map(|r| {
                (
                    r["name"].as_str().expect("name").to_string(),
                    r["rule"].as_str().expect("rule").to_string(),
                    r["status"].as_str().expect("status").to_string(),
                )
            })
            .collect()
    };

    assert!(fake.set_rule(
        RouterKind::Http,
        "svc-001@docker",
        "Host(`moved.example.com`)"
    ));
    assert!(fake.set_status(RouterKind::Http, "svc-002@docker", RouterStatus::Disabled));
    assert!(fake.remove_router(RouterKind::Http, "svc-000@docker"));
    assert!(!fake.remove_router(RouterKind::Http, "svc-000@docker"));
    assert!(
        !fake.set_rule(RouterKind::Tcp, "svc-001@docker", "x"),
        "kinds are separate"
    );

    let (all, _, _) = read_all(&fake, "http").await;
    assert_eq!(
        rules(&all),
        vec![
            (
                "svc-001@docker".to_string(),
                "Host(`moved.example.com`)".to_string(),
                "enabled".to_string()
            ),
            (
                "svc-002@docker".to_string(),
                "Host(`svc-002.example.com`) || Host(`alt-002.example.com`)".to_string(),
                "disabled".to_string()
            ),
        ]
    );

    // Traefik's own filters and sorting work on the live state.
    let c = client();
    let (_, _, body) = get(
        &c,
        &format!("{}/http/routers?status=disabled", fake.base_url()),
    )
    .await;
    let disabled: Vec<Value> = serde_json::from_str(&body).expect("json");
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0]["name"], "svc-002@docker");
    let (_, _, body) = get(
        &c,
        &format!(
            "{}/http/routers?sortBy=name&direction=desc",
            fake.base_url()
        ),
    )
    .await;
    let desc: Vec<Value> = serde_json::from_str(&body).expect("json");
    assert_eq!(desc[0]["name"], "svc-002@docker");
    let (_, _, body) = get(
        &c,
        &format!("{}/http/routers?search=MOVED", fake.base_url()),
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&body)
            .expect("json")
            .len(),
        1
    );
}

#[tokio::test]
async fn unreachable_refused_then_back_on_the_same_port() {
    let fake = start(TraefikOptions::v3()).await;
    fake.upsert_routers(RouterKind::Http, docker_routers(5));
    let c = client();
    let url = format!("{}/http/routers", fake.base_url());

    fake.set_unreachable(Some(Unreachable::Refused))
        .await
        .expect("refuse");
    let err = c.get(&url).send().await.expect_err("refused");
    assert!(err.is_connect(), "{err:?}");
    // Idempotent while refused.
    fake.set_unreachable(Some(Unreachable::Refused))
        .await
        .expect("refuse again");

    fake.set_unreachable(None).await.expect("back");
    let (status, _, body) = get(&c, &url).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Vec<Value>>(&body)
            .expect("json")
            .len(),
        7
    );
    assert!(
        fake.base_url()
            .ends_with(&format!(":{}/api", fake.addr().port()))
    );
}

#[tokio::test]
async fn unreachable_status_garbage_and_delay() {
    let fake = start(TraefikOptions::v3()).await;
    let c = client();
    let url = format!("{}/http/routers", fake.base_url());

    fake.set_unreachable(Some(Unreachable::Status(503)))
        .await
        .expect("503");
    let (status, next, body) = get(&c, &url).await;
    assert_eq!(
        (status, next, body.as_str()),
        (503, None, "Service Unavailable")
    );

    fake.set_unreachable(None).await.expect("clear");
    fake.set_garbage(true);
    let resp = c.get(&url).send().await.expect("send");
    assert_eq!(resp.status(), 200);
    let err = resp.json::<Vec<Value>>().await.expect_err("not JSON");
    assert!(err.is_decode(), "{err:?}");
    let (status, _, body) = get(&c, &format!("{}/rawdata", fake.base_url())).await;
    assert_eq!(status, 200);
    assert!(serde_json::from_str::<Value>(&body).is_err());

    fake.set_garbage(false);
    fake.set_delay(Duration::from_secs(30));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .expect("client");
    let err = impatient.get(&url).send().await.expect_err("times out");
    assert!(err.is_timeout(), "{err:?}");

    fake.clear_faults().await.expect("clear");
    let (status, _, _) = get(&c, &url).await;
    assert_eq!(status, 200);

    let s = fake.stats();
    assert_eq!(
        s,
        TraefikStats {
            // The delayed request is still asleep: it counts as received only.
            total: 5,
            http_routers: 1,
            unavailable: 1,
            garbage: 2,
            ..TraefikStats::default()
        }
    );
    fake.reset_stats();
    assert_eq!(fake.stats(), TraefikStats::default());
    fake.shutdown();
}

#[tokio::test]
async fn wait_stats_sees_a_poll() {
    let fake = start(TraefikOptions::v3()).await;
    let url = format!("{}/http/routers", fake.base_url());
    let poller = tokio::spawn(async move {
        let c = client();
        for _ in 0..3 {
            c.get(&url).send().await.expect("send");
        }
    });
    fake.wait_stats(|s| s.http_routers >= 3).await;
    poller.await.expect("poller");
    assert_eq!(fake.stats().http_routers, 3);
}
