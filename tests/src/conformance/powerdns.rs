//! The PowerDNS conformance backend: a real `pdns_server` (Debian's 4.7, see
//! `pdns.rs`) behind a fault proxy on loopback. cache-service talks to the
//! proxy, which passes every request to PowerDNS unchanged unless a test
//! stages a fault PowerDNS itself cannot produce: 429s with `Retry-After`
//! (PowerDNS has no rate limit), 503s (the server down, as a gateway in
//! front of it answers), or a write passed on and applied whose answer is
//! then lost (a 504 after PowerDNS answered), or one refused before it got
//! there (a 503 the client cannot tell from a lost answer). The proxy also counts the
//! requests it passes, for the tests and the benchmark.
//!
//! The backend seeds and reads the zone out of band through PowerDNS's API
//! directly (never through the proxy), with its own reading of PowerDNS's
//! content forms, so a mistake of the provider's cannot hide itself.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use reqwest::Method as ReqMethod;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{Backend, Boxed, Fault, Held, ZONE};
use crate::pdns::PdnsServer;

/// A key PowerDNS refuses.
pub const PDNS_BAD_KEY: &str = "conformance-wrong-pdns-key-81c3f0";

/// What the proxy does to the requests it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Passes everything on.
    Pass,
    /// Answers every request 503 without passing it on.
    Down,
    /// Answers the next `count` requests 429 with `Retry-After: retry_after`
    /// seconds, without passing them on.
    RateLimited {
        /// Requests refused.
        count: u32,
        /// Seconds asked to wait.
        retry_after: u32,
    },
    /// Passes the next `count` writes (`PATCH`) on, then answers them 504 as
    /// if the answer had been lost on the way back.
    LoseWrites {
        /// Writes whose answer is lost.
        count: u32,
    },
    /// Answers the next `count` writes (`PATCH`) 503 without passing them
    /// on: sent, not applied, and the client cannot tell.
    DropWrites {
        /// Writes refused.
        count: u32,
    },
}

/// Requests the proxy received, by method.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyCounts {
    /// `GET`s.
    pub get: u64,
    /// `PATCH`es.
    pub patch: u64,
    /// Everything.
    pub total: u64,
}

struct ProxyState {
    upstream: String,
    client: reqwest::Client,
    stage: Mutex<Stage>,
    counts: Mutex<ProxyCounts>,
}

/// A fault-staging HTTP proxy in front of one upstream; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    stop: CancellationToken,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port passing requests to `upstream`
    /// (`http://127.0.0.1:PORT`).
    pub async fn start(upstream: &str) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .map_err(std::io::Error::other)?,
            stage: Mutex::new(Stage::Pass),
            counts: Mutex::new(ProxyCounts::default()),
        });
        let app = Router::new().fallback(proxy).with_state(state.clone());
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped.cancelled().await })
                .await;
        });
        Ok(FaultProxy { addr, state, stop })
    }

    /// `http://127.0.0.1:PORT`, the form `PDNS_API_URL` takes.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stages what the proxy does from now on.
    pub fn stage(&self, stage: Stage) {
        *self.state.stage.lock().unwrap_or_else(|p| p.into_inner()) = stage;
    }

    /// Requests received so far.
    pub fn counts(&self) -> ProxyCounts {
        *self.state.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts counting from zero.
    pub fn reset_counts(&self) {
        *self.state.counts.lock().unwrap_or_else(|p| p.into_inner()) = ProxyCounts::default();
    }
}

/// What to do with one request, consuming a counted stage.
enum Act {
    Pass,
    Answer(StatusCode, Option<u32>),
    PassThenLose,
}

fn decide(state: &ProxyState, method: &Method) -> Act {
    let mut stage = state.stage.lock().unwrap_or_else(|p| p.into_inner());
    match *stage {
        Stage::Pass => Act::Pass,
        Stage::Down => Act::Answer(StatusCode::SERVICE_UNAVAILABLE, None),
        Stage::RateLimited { count, retry_after } => {
            *stage = if count > 1 {
                Stage::RateLimited {
                    count: count - 1,
                    retry_after,
                }
            } else {
                Stage::Pass
            };
            Act::Answer(StatusCode::TOO_MANY_REQUESTS, Some(retry_after))
        }
        Stage::LoseWrites { count } if method == Method::PATCH => {
            *stage = if count > 1 {
                Stage::LoseWrites { count: count - 1 }
            } else {
                Stage::Pass
            };
            Act::PassThenLose
        }
        Stage::DropWrites { count } if method == Method::PATCH => {
            *stage = if count > 1 {
                Stage::DropWrites { count: count - 1 }
            } else {
                Stage::Pass
            };
            Act::Answer(StatusCode::SERVICE_UNAVAILABLE, None)
        }
        Stage::LoseWrites { .. } | Stage::DropWrites { .. } => Act::Pass,
    }
}

async fn proxy(State(state): State<Arc<ProxyState>>, request: Request) -> Response {
    let method = request.method().clone();
    {
        let mut c = state.counts.lock().unwrap_or_else(|p| p.into_inner());
        c.total += 1;
        match method {
            Method::GET => c.get += 1,
            Method::PATCH => c.patch += 1,
            _ => {}
        }
    }
    let act = decide(&state, &method);
    if let Act::Answer(status, retry_after) = act {
        let mut r = (status, "staged by the fault proxy").into_response();
        if let Some(s) = retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        return r;
    }
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let headers = request.headers().clone();
    let body: Bytes = match axum::body::to_bytes(request.into_body(), 64 << 20).await {
        Ok(b) => b,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let Ok(m) = ReqMethod::from_bytes(method.as_str().as_bytes()) else {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    };
    let mut out = state
        .client
        .request(m, format!("{}{path}", state.upstream))
        .body(body.to_vec());
    for name in ["x-api-key", "content-type", "accept"] {
        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
            out = out.header(name, v);
        }
    }
    let answer = match out.send().await {
        Ok(a) => a,
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    if matches!(act, Act::PassThenLose) {
        let _ = answer.bytes().await;
        return (
            StatusCode::GATEWAY_TIMEOUT,
            "answer lost by the fault proxy",
        )
            .into_response();
    }
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = answer.headers().get("content-type").cloned();
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    if let Some(ct) = content_type.and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r
}

/// A name as PowerDNS writes it.
fn absolute(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// `h`'s content as PowerDNS wants it (names absolute, TXT quoted, the
/// priority of MX and SRV first).
pub fn pdns_content(h: &Held) -> String {
    let prio = h.priority.unwrap_or(0);
    match h.rtype.as_str() {
        "CNAME" | "NS" => absolute(&h.content),
        "MX" => format!("{prio} {}", absolute(&h.content)),
        "SRV" => match h.content.rsplit_once(' ') {
            Some((wp, target)) => format!("{prio} {wp} {}", absolute(target)),
            None => h.content.clone(),
        },
        "TXT" => format!(
            "\"{}\"",
            h.content.replace('\\', "\\\\").replace('"', "\\\"")
        ),
        _ => h.content.clone(),
    }
}

/// A record PowerDNS holds, in the suite's canonical form (simple TXT only:
/// one string, `\"` and `\\` escapes).
pub fn held_of(rtype: &str, name: &str, content: &str) -> Held {
    let bare = |s: &str| s.trim_end_matches('.').to_ascii_lowercase();
    let name = bare(name);
    let (content, priority) = match rtype {
        "CNAME" | "NS" => (bare(content), None),
        "MX" | "SRV" => {
            let (p, rest) = content.split_once(' ').unwrap_or(("0", content));
            let rest = match rest.rsplit_once(' ') {
                Some((wp, target)) if rtype == "SRV" => format!("{wp} {}", bare(target)),
                _ => bare(rest),
            };
            let rest = if rest.is_empty() { ".".into() } else { rest };
            (rest, p.parse().ok())
        }
        "TXT" => (
            content
                .trim()
                .trim_matches('"')
                .replace("\" \"", "")
                .replace("\\\"", "\"")
                .replace("\\\\", "\\"),
            None,
        ),
        _ => (content.to_string(), None),
    };
    Held {
        rtype: rtype.to_string(),
        name,
        content,
        priority,
    }
}

/// An RRset written out of band: name, type, TTL, and (content, disabled) per record.
pub type OutOfBand = (String, String, u32, Vec<(String, bool)>);

/// PowerDNS with its fault proxy.
pub struct PowerDns {
    /// The real server.
    pub pdns: PdnsServer,
    /// What cache-service talks to.
    pub proxy: FaultProxy,
}

impl PowerDns {
    /// A fresh `pdns_server` with an empty `example.com` and its proxy.
    pub async fn start() -> Self {
        crate::capture_logs();
        let pdns = PdnsServer::start(ZONE).await.expect("start pdns_server");
        let proxy = FaultProxy::start(&pdns.api_url).await.expect("fault proxy");
        PowerDns { pdns, proxy }
    }

    /// cache-service flags for this server through the proxy with `key`.
    pub fn args_with_key(&self, key: &str) -> Vec<String> {
        vec![
            "--provider".into(),
            "powerdns".into(),
            "--zone".into(),
            ZONE.into(),
            "--pdns-api-url".into(),
            self.proxy.url(),
            "--pdns-api-key".into(),
            key.into(),
        ]
    }

    /// Every RRset of the zone as PowerDNS holds it: (name, type) to
    /// (ttl, [(content, disabled)]).
    pub async fn rrsets(&self) -> BTreeMap<(String, String), (u64, Vec<(String, bool)>)> {
        let (status, zone) = self
            .pdns
            .api(ReqMethod::GET, &format!("zones/{ZONE}."), None)
            .await
            .expect("read the zone");
        assert_eq!(status, 200, "{zone}");
        let mut out = BTreeMap::new();
        for set in zone["rrsets"].as_array().cloned().unwrap_or_default() {
            let records: Vec<(String, bool)> = set["records"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|r| {
                    (
                        r["content"].as_str().unwrap_or_default().to_string(),
                        r["disabled"].as_bool().unwrap_or(false),
                    )
                })
                .collect();
            if records.is_empty() {
                continue;
            }
            let name = set["name"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let rtype = set["type"].as_str().unwrap_or_default().to_string();
            out.insert((name, rtype), (set["ttl"].as_u64().unwrap_or(0), records));
        }
        out
    }

    /// Replaces whole RRsets out of band: (name, type, ttl, [(content, disabled)]).
    pub async fn replace(&self, sets: Vec<OutOfBand>) {
        for chunk in sets.chunks(2000) {
            let rrsets: Vec<Value> = chunk
                .iter()
                .map(|(name, rtype, ttl, records)| {
                    let records: Vec<Value> = records
                        .iter()
                        .map(|(c, d)| json!({"content": c, "disabled": d}))
                        .collect();
                    json!({"name": absolute(name), "type": rtype, "ttl": ttl,
                           "changetype": "REPLACE", "records": records})
                })
                .collect();
            let (status, answer) = self
                .pdns
                .api(
                    ReqMethod::PATCH,
                    &format!("zones/{ZONE}."),
                    Some(json!({ "rrsets": rrsets })),
                )
                .await
                .expect("patch the zone");
            assert_eq!(status, 204, "seed: {answer}");
        }
    }
}

impl Backend for PowerDns {
    fn name(&self) -> &'static str {
        "powerdns"
    }

    fn cache_args(&self, _dir: &Path) -> Vec<String> {
        self.args_with_key(&self.pdns.api_key)
    }

    fn bad_credentials_args(&self, _dir: &Path) -> Option<Vec<String>> {
        Some(self.args_with_key(PDNS_BAD_KEY))
    }

    fn secrets(&self) -> Vec<String> {
        vec![self.pdns.api_key.clone(), PDNS_BAD_KEY.into()]
    }

    /// Adds the records to their RRsets (read first, so what is there stays).
    fn seed(&self, records: Vec<Held>) -> Boxed<'_, ()> {
        Box::pin(async move {
            let current = self.rrsets().await;
            let mut sets: HashMap<(String, String), Vec<(String, bool)>> = HashMap::new();
            for h in &records {
                let key = (absolute(&h.name), h.rtype.clone());
                let entry = sets.entry(key.clone()).or_insert_with(|| {
                    current
                        .get(&key)
                        .map(|(_, r)| r.clone())
                        .unwrap_or_default()
                });
                entry.push((pdns_content(h), false));
            }
            self.replace(
                sets.into_iter()
                    .map(|((name, rtype), records)| (name, rtype, 300, records))
                    .collect(),
            )
            .await;
        })
    }

    fn held(&self) -> Boxed<'_, Vec<Held>> {
        Box::pin(async move {
            let zone = absolute(ZONE);
            self.rrsets()
                .await
                .into_iter()
                .filter(|((name, rtype), _)| {
                    !(*name == zone && matches!(rtype.as_str(), "SOA" | "NS"))
                })
                .flat_map(|((name, rtype), (_, records))| {
                    records
                        .into_iter()
                        .filter(|(_, disabled)| !disabled)
                        .map(move |(c, _)| held_of(&rtype, &name, &c))
                })
                .collect()
        })
    }

    /// Down and rate limits are staged by the proxy (a real `pdns_server`
    /// has no rate limit to hit).
    fn fault(&self, fault: Fault) -> Boxed<'_, bool> {
        Box::pin(async move {
            self.proxy.stage(match fault {
                Fault::Down => Stage::Down,
                Fault::RateLimited => Stage::RateLimited {
                    count: 2,
                    retry_after: 0,
                },
                Fault::Clear => Stage::Pass,
            });
            true
        })
    }

    /// PowerDNS reads a zone whole in one answer.
    fn page_size(&self) -> usize {
        0
    }
}
