//! Integration tests of the fake Docker Engine API itself: raw HTTP/1.1 over its unix socket
//! (a tiny client on a tokio `UnixStream`, one connection per request, and an incremental
//! chunked reader for `/events`), its TCP listener, and the `bollard` client the Docker
//! source will use. They check ping/version/list/inspect as the engine answers them, the
//! label and status filters, events as Docker 29 shapes them arriving as containers start
//! and stop, `since`/`until` replays, the legacy fields of older API versions, dropped
//! streams and refused sockets.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use trafego_tests::fake_docker::{
    ContainerState, DockerOptions, DockerStats, FakeContainer, FakeDocker, FakeEvent, Refusal,
    StreamDrop,
};

/// 2025-01-01T00:00:00Z, for pinned clocks.
const T0: i64 = 1_735_689_600_000_000_000;
const SEC: i64 = 1_000_000_000;

async fn start(opts: DockerOptions) -> FakeDocker {
    FakeDocker::start(opts).await.expect("start fake docker")
}

/// One parsed HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("bad json ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn message(&self) -> String {
        self.json()["message"]
            .as_str()
            .expect("message")
            .to_string()
    }
}

fn request_text(method: &str, target: &str) -> String {
    request_with(method, target, "")
}

/// A request with extra header lines (each ending in `\r\n`).
fn request_with(method: &str, target: &str, headers: &str) -> String {
    format!("{method} {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n{headers}\r\n")
}

/// Sends one request on a fresh connection and reads the whole answer.
async fn send<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, method: &str, target: &str) -> Answer {
    s.write_all(request_text(method, target).as_bytes())
        .await
        .expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let (status, headers) = parse_head(&raw[..split]);
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        let mut r = Chunks { buf: body };
        let mut out = Vec::new();
        while let Some(Some(c)) = r.next_chunk() {
            out.extend_from_slice(&c);
        }
        body = out;
    }
    Answer {
        status,
        headers,
        body,
    }
}

fn parse_head(head: &[u8]) -> (u16, Vec<(String, String)>) {
    let head = std::str::from_utf8(head).expect("utf8 head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    (status, headers)
}

async fn get(fake: &FakeDocker, target: &str) -> Answer {
    let s = UnixStream::connect(fake.socket_path())
        .await
        .expect("connect");
    send(s, "GET", target).await
}

/// `?filters=` with the JSON URL-encoded.
fn filters_query(json: &str) -> String {
    let mut out = String::from("filters=");
    for b in json.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An incremental decoder of a chunked body.
#[derive(Default)]
struct Chunks {
    buf: Vec<u8>,
}

impl Chunks {
    /// `Some(Some(payload))` for a chunk, `Some(None)` for the final chunk, `None` when the
    /// buffer does not hold a whole chunk yet.
    fn next_chunk(&mut self) -> Option<Option<Vec<u8>>> {
        let eol = self.buf.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&self.buf[..eol]).expect("chunk size");
        let size = usize::from_str_radix(size_text.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return Some(None);
        }
        if self.buf.len() < eol + 2 + size + 2 {
            return None;
        }
        let payload = self.buf[eol + 2..eol + 2 + size].to_vec();
        self.buf.drain(..eol + 2 + size + 2);
        Some(Some(payload))
    }
}

/// How an event stream ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Final chunk received.
    Clean,
    /// The connection closed without the final chunk.
    Broken,
}

/// An open `/events` response, read event by event.
struct Events {
    stream: UnixStream,
    status: u16,
    headers: Vec<(String, String)>,
    chunks: Chunks,
    partial: Vec<u8>,
    lines: std::collections::VecDeque<Value>,
}

impl Events {
    async fn open(fake: &FakeDocker, target: &str) -> Events {
        Self::open_with(fake, target, "").await
    }

    async fn open_with(fake: &FakeDocker, target: &str, headers: &str) -> Events {
        let mut stream = UnixStream::connect(fake.socket_path())
            .await
            .expect("connect");
        stream
            .write_all(request_with("GET", target, headers).as_bytes())
            .await
            .expect("write");
        let mut raw = Vec::new();
        let split = loop {
            if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break p;
            }
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await.expect("read head");
            assert!(n > 0, "closed before headers");
            raw.extend_from_slice(&buf[..n]);
        };
        let (status, headers) = parse_head(&raw[..split]);
        Events {
            stream,
            status,
            headers,
            chunks: Chunks {
                buf: raw[split + 4..].to_vec(),
            },
            partial: Vec::new(),
            lines: Default::default(),
        }
    }

    /// The next event, or how the stream ended.
    async fn next(&mut self) -> Result<Value, End> {
        loop {
            if let Some(v) = self.lines.pop_front() {
                return Ok(v);
            }
            match self.chunks.next_chunk() {
                Some(Some(payload)) => {
                    self.partial.extend_from_slice(&payload);
                    while let Some(nl) = self.partial.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = self.partial.drain(..=nl).collect();
                        self.lines
                            .push_back(serde_json::from_slice(&line).expect("event json"));
                    }
                    continue;
                }
                Some(None) => return Err(End::Clean),
                None => {}
            }
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Err(End::Broken),
                Ok(n) => self.chunks.buf.extend_from_slice(&buf[..n]),
            }
        }
    }
}

fn web() -> FakeContainer {
    FakeContainer::new("web", "nginx:1.27")
        .label("dns.hostname", "www.example.com")
        .label("traefik.enable", "true")
}

#[tokio::test]
async fn pings_and_reports_its_version_with_and_without_prefix() {
    let fake = start(DockerOptions::docker_29()).await;

    let ping = get(&fake, "/_ping").await;
    assert_eq!(ping.status, 200);
    assert_eq!(ping.body, b"OK");
    assert_eq!(ping.header("Api-Version"), Some("1.52"));
    assert_eq!(ping.header("Docker-Experimental"), Some("false"));
    assert_eq!(ping.header("Ostype"), Some("linux"));
    assert_eq!(ping.header("Server"), Some("Docker/29.1.3 (linux)"));
    assert_eq!(ping.header("Swarm"), Some("inactive"));
    assert_eq!(ping.header("Builder-Version"), Some("2"));
    assert_eq!(
        ping.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    let s = UnixStream::connect(fake.socket_path())
        .await
        .expect("connect");
    let head = send(s, "HEAD", "/_ping").await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    assert_eq!(get(&fake, "/v1.47/_ping").await.status, 200);

    for target in ["/version", "/v1.44/version", "/v1.52/version"] {
        let v = get(&fake, target).await;
        assert_eq!(v.status, 200, "{target}");
        let body = v.json();
        assert_eq!(body["Version"], "29.1.3");
        assert_eq!(body["ApiVersion"], "1.52");
        assert_eq!(body["MinAPIVersion"], "1.44");
        assert_eq!(body["Os"], "linux");
        assert_eq!(body["Components"][0]["Name"], "Engine");
    }

    let too_new = get(&fake, "/v1.53/version").await;
    assert_eq!(too_new.status, 400);
    assert_eq!(
        too_new.message(),
        "client version 1.53 is too new. Maximum supported API version is 1.52"
    );
    let too_old = get(&fake, "/v1.43/containers/json").await;
    assert_eq!(too_old.status, 400);
    assert!(
        too_old
            .message()
            .starts_with("client version 1.43 is too old.")
    );
    // Docker 29.0 to 29.2 refuse API 1.43; an engine with a lower minimum serves it.
    let lenient = start(DockerOptions {
        min_api_version: "1.40".into(),
        ..DockerOptions::docker_29()
    })
    .await;
    assert_eq!(get(&lenient, "/v1.43/_ping").await.status, 200);
    let missing = get(&fake, "/v1.52/nothing/here").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.message(), "page not found");
    assert_eq!(missing.header("Api-Version"), Some("1.52"));

    let s = fake.stats();
    assert_eq!(
        s,
        DockerStats {
            total: 9,
            ping: 3,
            version: 3,
            bad_requests: 2,
            not_found: 1,
            ..DockerStats::default()
        }
    );
    assert_eq!(fake.requests()[0], "GET /_ping");
}

#[tokio::test]
async fn lists_containers_with_label_and_status_filters() {
    let fake = start(DockerOptions::docker_29()).await;
    let web_id = fake.add_container(web().in_state(ContainerState::Running));
    fake.add_container(FakeContainer::new("db", "postgres:17").in_state(ContainerState::Running));
    fake.add_container(
        FakeContainer::new("old", "nginx:1.25")
            .label("dns.hostname", "old.example.com")
            .in_state(ContainerState::Exited),
    );
    fake.add_container(
        FakeContainer::new("api", "ghcr.io/acme/api:2")
            .label("dns.hostname", "api.example.com")
            .in_state(ContainerState::Running),
    );
    let names = |a: &Answer| -> Vec<String> {
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        a.json()
            .as_array()
            .expect("array")
            .iter()
            .map(|c| c["Names"][0].as_str().expect("name").to_string())
            .collect()
    };

    // Running containers only, newest first.
    let running = get(&fake, "/containers/json").await;
    assert_eq!(names(&running), ["/api", "/db", "/web"]);
    let label = filters_query(r#"{"label":["dns.hostname"]}"#);
    assert_eq!(
        names(&get(&fake, &format!("/v1.52/containers/json?{label}")).await),
        ["/api", "/web"]
    );
    assert_eq!(
        names(&get(&fake, &format!("/containers/json?all=1&{label}")).await),
        ["/api", "/old", "/web"]
    );
    // The brief's example, and today's encoding of filters.
    let both = filters_query(r#"{"label":["dns.hostname"],"status":["running"]}"#);
    assert_eq!(
        names(&get(&fake, &format!("/containers/json?{both}")).await),
        ["/api", "/web"]
    );
    let value = filters_query(r#"{"label":{"dns.hostname=www.example.com":true}}"#);
    assert_eq!(
        names(&get(&fake, &format!("/containers/json?{value}")).await),
        ["/web"]
    );
    // A status filter lists stopped containers without `all`.
    let exited = filters_query(r#"{"status":["exited"]}"#);
    assert_eq!(
        names(&get(&fake, &format!("/containers/json?{exited}")).await),
        ["/old"]
    );
    // `limit`: the newest containers, stopped ones included.
    assert_eq!(
        names(&get(&fake, "/containers/json?limit=2").await),
        ["/api", "/old"]
    );
    let by_name = filters_query(r#"{"name":["we"]}"#);
    assert_eq!(
        names(&get(&fake, &format!("/containers/json?{by_name}")).await),
        ["/web"]
    );

    // The shape of one entry.
    let list = get(&fake, &format!("/containers/json?{value}"))
        .await
        .json();
    let c = &list[0];
    assert_eq!(c["Id"], json!(web_id));
    assert_eq!(web_id.len(), 64);
    assert_eq!(c["Image"], "nginx:1.27");
    assert!(
        c["ImageID"]
            .as_str()
            .expect("ImageID")
            .starts_with("sha256:")
    );
    assert_eq!(
        c["Labels"],
        json!({ "dns.hostname": "www.example.com", "traefik.enable": "true" })
    );
    assert_eq!(c["State"], "running");
    assert!(c["Status"].as_str().expect("Status").starts_with("Up "));
    assert!(c["Created"].as_i64().expect("Created") > 1_600_000_000);
    assert!(
        c["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
            .as_str()
            .expect("ip")
            .starts_with("172.17.")
    );

    // Refusals.
    for (query, message) in [
        (r#"{"foo":["x"]}"#, "invalid filter 'foo'"),
        (
            r#"{"ancestor":["nginx"]}"#,
            "filter 'ancestor' is not implemented by the fake Docker engine",
        ),
        (r#"{"status":["asleep"]}"#, "invalid filter 'status=asleep'"),
        ("[1]", "invalid filter"),
    ] {
        let a = get(&fake, &format!("/containers/json?{}", filters_query(query))).await;
        assert_eq!((a.status, a.message().as_str()), (400, message), "{query}");
    }

    // Inspect by id, name, /name and id prefix.
    for key in [web_id.as_str(), "web", "%2Fweb", &web_id[..12]] {
        let a = get(&fake, &format!("/containers/{key}/json")).await;
        assert_eq!(a.status, 200, "{key}");
        let body = a.json();
        assert_eq!(body["Id"], json!(web_id));
        assert_eq!(body["Name"], "/web");
        assert_eq!(body["State"]["Status"], "running");
        assert_eq!(body["State"]["Running"], true);
        assert_eq!(body["Config"]["Labels"]["dns.hostname"], "www.example.com");
        assert_eq!(body["Config"]["Image"], "nginx:1.27");
    }
    let nope = get(&fake, "/v1.52/containers/nope/json").await;
    assert_eq!(
        (nope.status, nope.message().as_str()),
        (404, "No such container: nope")
    );
    assert_eq!(fake.stats().list, 13);
    assert_eq!(fake.stats().inspect, 5);
}

impl Events {
    /// The next `n` events.
    async fn take(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.next().await.expect("event"));
        }
        out
    }
}

/// `Type Action` of each event.
fn actions(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|ev| {
            format!(
                "{} {}",
                ev["Type"].as_str().expect("Type"),
                ev["Action"].as_str().expect("Action")
            )
        })
        .collect()
}

#[tokio::test]
async fn events_arrive_as_containers_start_and_stop() {
    let fake = start(DockerOptions::docker_29()).await;
    let mut all = Events::open(&fake, "/events").await;
    let typed = filters_query(r#"{"type":["container"]}"#);
    let mut containers = Events::open(&fake, &format!("/v1.52/events?{typed}")).await;
    assert_eq!(all.status, 200);
    let header = |name: &str| {
        all.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    assert_eq!(header("transfer-encoding").as_deref(), Some("chunked"));
    let ndjson = Events::open_with(&fake, "/events", "Accept: application/x-ndjson\r\n").await;
    assert!(
        ndjson.headers.contains(&(
            "content-type".to_string(),
            "application/x-ndjson".to_string()
        )),
        "{:?}",
        ndjson.headers
    );
    drop(ndjson);
    fake.wait_event_subscribers(2).await;

    fake.pin_clock(T0);
    let id = fake.run_container(web());
    fake.advance_clock(Duration::from_secs(90));
    assert!(fake.stop_container("web"));
    assert!(!fake.stop_container("web"), "already stopped");
    assert!(fake.start_container(&id));
    assert!(!fake.start_container(&id), "already running");
    assert!(fake.crash_container(&id, 2));
    assert!(fake.remove_container("web"));
    assert!(!fake.remove_container("web"));

    let seen = containers.take(8).await;
    assert_eq!(
        actions(&seen),
        [
            "container create",
            "container start",
            "container kill",
            "container die",
            "container stop",
            "container start",
            "container die",
            "container destroy",
        ]
    );
    // Exactly what Docker 29 writes: no legacy `status`, `id` or `from`.
    let labels_and = |extra: &[(&str, &str)]| {
        let mut attrs = json!({
            "dns.hostname": "www.example.com",
            "image": "nginx:1.27",
            "name": "web",
            "traefik.enable": "true"
        });
        for (k, v) in extra {
            attrs[*k] = json!(v);
        }
        attrs
    };
    assert_eq!(
        seen[1],
        json!({
            "Type": "container",
            "Action": "start",
            "Actor": { "ID": id, "Attributes": labels_and(&[]) },
            "scope": "local",
            "time": T0 / SEC,
            "timeNano": T0
        })
    );
    assert_eq!(
        seen[2]["Actor"]["Attributes"],
        labels_and(&[("signal", "15")])
    );
    assert_eq!(
        seen[3]["Actor"]["Attributes"],
        labels_and(&[("exitCode", "0"), ("execDuration", "90")])
    );
    assert_eq!(seen[3]["timeNano"], json!(T0 + 90 * SEC));
    assert_eq!(seen[6]["Actor"]["Attributes"]["exitCode"], "2");

    // Unfiltered, the network events that come with a start and a stop show too.
    assert_eq!(
        actions(&all.take(12).await),
        [
            "container create",
            "network connect",
            "container start",
            "container kill",
            "container die",
            "network disconnect",
            "container stop",
            "network connect",
            "container start",
            "container die",
            "network disconnect",
            "container destroy",
        ]
    );
    assert_eq!(fake.events().len(), 12);
    assert!(fake.containers().is_empty());
    let s = fake.stats();
    assert_eq!((s.events, s.events_sent), (3, 20));
}

#[tokio::test]
async fn replays_past_events_with_since_until_and_filters() {
    let fake = start(DockerOptions::docker_29()).await;
    fake.pin_clock(T0);
    fake.run_container(web());
    fake.advance_clock(Duration::from_secs(10));
    fake.run_container(FakeContainer::new("db", "postgres:17"));
    fake.advance_clock(Duration::from_secs(10));
    fake.stop_container("web");
    fake.advance_clock(Duration::from_secs(10));
    let t0 = T0 / SEC;

    // A window entirely in the past: replayed, then the stream ends.
    let q = format!(
        "since={}&until={}.5&{}",
        t0 + 5,
        t0 + 25,
        filters_query(r#"{"type":["container"],"label":["dns.hostname"]}"#)
    );
    let mut past = Events::open(&fake, &format!("/events?{q}")).await;
    assert_eq!(
        actions(&past.take(3).await),
        ["container kill", "container die", "container stop"]
    );
    assert_eq!(past.next().await, Err(End::Clean));

    // Replay from `since`, then live events, filtered by action and container name prefix.
    let q = format!(
        "since={t0}&{}",
        filters_query(r#"{"event":["start"],"container":["we"]}"#)
    );
    let mut live = Events::open(&fake, &format!("/events?{q}")).await;
    let replayed = live.take(1).await;
    assert_eq!(replayed[0]["Actor"]["Attributes"]["name"], "web");
    fake.start_container("db");
    fake.stop_container("db");
    fake.start_container("web");
    let again = live.take(1).await;
    assert_eq!(actions(&again), ["container start"]);
    assert_eq!(again[0]["Actor"]["Attributes"]["name"], "web");
    assert_eq!(again[0]["timeNano"], json!(T0 + 30 * SEC));

    // `until` in the future: live until the engine's clock passes it (a `since` after the
    // last event, or every kept event up to `until` is replayed first).
    let mut bounded = Events::open(
        &fake,
        &format!("/events?since={}&until={}", t0 + 31, t0 + 40),
    )
    .await;
    fake.wait_event_subscribers(2).await;
    fake.emit(FakeEvent::new("image", "pull", "nginx:1.27"));
    assert_eq!(actions(&bounded.take(1).await), ["image pull"]);
    fake.advance_clock(Duration::from_secs(20));
    assert_eq!(bounded.next().await, Err(End::Clean));

    // Bad timestamps.
    let bad = get(&fake, "/events?since=1h").await;
    assert_eq!(bad.status, 400);
    assert!(bad.message().starts_with("invalid value for 'since'"));
    let reversed = get(&fake, &format!("/events?since={}&until={t0}", t0 + 1)).await;
    assert_eq!(reversed.status, 400);
    assert!(reversed.message().contains("cannot be after `until` time"));
}

#[tokio::test]
async fn legacy_fields_for_older_api_versions_or_engines() {
    let fake = start(DockerOptions::docker_29()).await;
    let mut modern = Events::open(&fake, "/events").await;
    let mut old_client = Events::open(&fake, "/v1.47/events").await;
    fake.set_legacy_event_fields(true);
    let mut forced = Events::open(&fake, "/events").await;
    fake.set_legacy_event_fields(false);
    let id = fake.create_container(web());

    let m = modern.next().await.expect("event");
    for key in ["status", "id", "from"] {
        assert!(m.get(key).is_none(), "Docker 29 dropped {key}: {m}");
    }
    for ev in [
        old_client.next().await.expect("event"),
        forced.next().await.expect("event"),
    ] {
        assert_eq!(ev["status"], "create");
        assert_eq!(ev["id"], json!(id));
        assert_eq!(ev["from"], "nginx:1.27");
        assert_eq!(ev["Action"], "create");
        assert_eq!(ev["Actor"]["ID"], json!(id));
    }

    // An engine before 29 sends them to every client; network events never had them.
    let older = start(DockerOptions::docker_27()).await;
    assert_eq!(
        get(&older, "/_ping").await.header("Api-Version"),
        Some("1.47")
    );
    let mut s = Events::open(&older, "/events").await;
    older.run_container(web());
    let evs = s.take(3).await;
    assert_eq!(evs[0]["status"], "create");
    assert_eq!(evs[1]["Type"], "network");
    assert!(evs[1].get("status").is_none());
    assert_eq!(evs[2]["status"], "start");
}

#[tokio::test]
async fn dropped_streams_end_and_new_ones_work() {
    let fake = start(DockerOptions::docker_29()).await;
    let mut a = Events::open(&fake, "/events").await;
    let mut b = Events::open(&fake, "/events").await;
    fake.wait_event_subscribers(2).await;
    assert_eq!(fake.event_subscribers(), 2);

    fake.drop_event_streams(StreamDrop::Clean);
    assert_eq!(a.next().await, Err(End::Clean));
    assert_eq!(b.next().await, Err(End::Clean));
    fake.wait_event_subscribers(0).await;

    // The client reconnects; the new stream is live.
    let mut c = Events::open(&fake, "/events").await;
    fake.create_container(web());
    assert_eq!(actions(&c.take(1).await), ["container create"]);

    fake.drop_event_streams(StreamDrop::Abort);
    assert_eq!(c.next().await, Err(End::Broken));
    fake.wait_event_subscribers(0).await;

    // A client that hangs up stops counting as a subscriber.
    let d = Events::open(&fake, "/events").await;
    fake.wait_event_subscribers(1).await;
    drop(d);
    fake.wait_event_subscribers(0).await;
    assert_eq!(fake.stats().events, 4);
}

#[tokio::test]
async fn refuses_connections_then_serves_again() {
    let fake = start(DockerOptions {
        tcp: true,
        ..DockerOptions::docker_29()
    })
    .await;
    let tcp = fake.tcp_addr().expect("tcp");
    assert_eq!(fake.tcp_host(), Some(format!("tcp://{tcp}")));
    fake.add_container(web().in_state(ContainerState::Running));
    let mut stream = Events::open(&fake, "/events").await;

    fake.set_refusing(Some(Refusal::Refused))
        .await
        .expect("refuse");
    assert_eq!(
        stream.next().await,
        Err(End::Broken),
        "a dying daemon breaks streams"
    );
    let err = UnixStream::connect(fake.socket_path())
        .await
        .expect_err("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(fake.socket_path().exists(), "a stale socket file");
    let err = TcpStream::connect(tcp).await.expect_err("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);

    fake.set_refusing(Some(Refusal::NoSocket))
        .await
        .expect("no socket");
    let err = UnixStream::connect(fake.socket_path())
        .await
        .expect_err("gone");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert!(!Path::new(fake.socket_path()).exists());

    fake.set_refusing(None).await.expect("serve again");
    let list = get(&fake, "/containers/json").await.json();
    assert_eq!(list[0]["Names"][0], "/web", "state survives");
    let over_tcp = send(
        TcpStream::connect(tcp).await.expect("connect"),
        "GET",
        "/v1.52/containers/json",
    )
    .await;
    assert_eq!(over_tcp.json()[0]["Names"][0], "/web");
}

#[tokio::test]
async fn bollard_lists_and_follows_events_over_the_unix_socket() {
    use bollard::Docker;
    use bollard::query_parameters::{EventsOptionsBuilder, ListContainersOptionsBuilder};

    let fake = start(DockerOptions {
        tcp: true,
        ..DockerOptions::docker_29()
    })
    .await;
    fake.add_container(web().in_state(ContainerState::Running));
    fake.add_container(FakeContainer::new("db", "postgres:17").in_state(ContainerState::Running));

    let docker = Docker::connect_with_host(&fake.unix_host())
        .expect("client")
        .negotiate_version()
        .await
        .expect("negotiate");
    assert_eq!(docker.client_version().to_string(), "1.52");
    assert_eq!(docker.ping().await.expect("ping"), "OK");
    let version = docker.version().await.expect("version");
    assert_eq!(version.api_version.as_deref(), Some("1.52"));
    assert_eq!(version.version.as_deref(), Some("29.1.3"));

    let mut filters = HashMap::new();
    filters.insert("label", vec!["dns.hostname"]);
    filters.insert("status", vec!["running"]);
    let list = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .filters(&filters)
                .build(),
        ))
        .await
        .expect("list");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].names.as_deref(), Some(&["/web".to_string()][..]));
    assert_eq!(
        list[0]
            .labels
            .as_ref()
            .and_then(|l| l.get("dns.hostname"))
            .map(String::as_str),
        Some("www.example.com")
    );
    assert_eq!(
        list[0].state,
        Some(bollard::models::ContainerSummaryStateEnum::RUNNING)
    );
    let inspected = docker
        .inspect_container("web", None)
        .await
        .expect("inspect");
    assert_eq!(inspected.name.as_deref(), Some("/web"));
    assert_eq!(
        inspected
            .config
            .and_then(|c| c.labels)
            .and_then(|l| l.get("traefik.enable").cloned())
            .as_deref(),
        Some("true")
    );
    let missing = docker
        .inspect_container("nope", None)
        .await
        .expect_err("404");
    assert!(
        matches!(
            missing,
            bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            }
        ),
        "{missing:?}"
    );

    // Events, decoded by bollard as they come.
    let mut ev_filters = HashMap::new();
    ev_filters.insert("type", vec!["container"]);
    let events = docker.events(Some(
        EventsOptionsBuilder::new().filters(&ev_filters).build(),
    ));
    let collector = tokio::spawn(async move {
        let mut events = Box::pin(events);
        let mut got = Vec::new();
        while let Some(ev) = events.next().await {
            got.push(ev.expect("event"));
        }
        got
    });
    fake.wait_event_subscribers(1).await;
    let id = fake.run_container(
        FakeContainer::new("api", "ghcr.io/acme/api:2").label("dns.hostname", "api.example.com"),
    );
    fake.stop_container(&id);
    fake.wait_stats(|s| s.events_sent >= 5).await;
    fake.drop_event_streams(StreamDrop::Clean);
    let got = collector.await.expect("collector");
    let seen: Vec<&str> = got.iter().filter_map(|e| e.action.as_deref()).collect();
    assert_eq!(seen, ["create", "start", "kill", "die", "stop"]);
    let actor = got[1].actor.as_ref().expect("actor");
    assert_eq!(actor.id.as_deref(), Some(id.as_str()));
    let attrs = actor.attributes.as_ref().expect("attributes");
    assert_eq!(attrs["dns.hostname"], "api.example.com");
    assert_eq!(attrs["name"], "api");
    assert_eq!(
        got[1].typ,
        Some(bollard::models::EventMessageTypeEnum::CONTAINER)
    );
    assert!(got[1].time_nano.is_some());

    // A broken stream reaches bollard as an error.
    let events = docker.events(None::<bollard::query_parameters::EventsOptions>);
    let broken = tokio::spawn(async move {
        let mut events = Box::pin(events);
        events.next().await
    });
    fake.wait_event_subscribers(1).await;
    fake.drop_event_streams(StreamDrop::Abort);
    let first = broken.await.expect("task");
    assert!(matches!(first, Some(Err(_))), "{first:?}");

    // Which paths bollard sent: bollard 0.21 drops the `/vX.Y` prefix (its `Url::join`
    // with an absolute path), so the engine answers at its own default API version, the
    // negotiated one notwithstanding. The fake serves both forms.
    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET /containers/json?") && r.contains("filters=")),
        "{requests:?}"
    );
    assert!(
        requests.iter().all(|r| !r.starts_with("GET /v1.")),
        "bollard now sends a version prefix: {requests:?}"
    );

    // DOCKER_HOST=tcp:// through a socket proxy: the same engine over TCP (feature `http`).
    let over_tcp = Docker::connect_with_host(&fake.tcp_host().expect("tcp"))
        .expect("tcp client")
        .negotiate_version()
        .await
        .expect("negotiate over tcp");
    let all = over_tcp
        .list_containers(Some(ListContainersOptionsBuilder::new().all(true).build()))
        .await
        .expect("list over tcp");
    assert_eq!(all.len(), 3);
}
