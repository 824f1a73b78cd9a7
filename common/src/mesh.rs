//! What a service mesh expects of both services, in one tower layer and its
//! settings: bearer-token authentication (constant-time, health and reflection
//! exempt), a global concurrency limit that sheds load instead of queueing
//! without bound, request ids kept or made and passed on, one log line and
//! metrics per call, and TLS / mTLS settings.
//!
//! A token is never logged, echoed in an error or kept in clear: only its
//! SHA-256 digest is held for comparison. Metrics never take a label from
//! what a caller sends: the method label is one of the service's own methods
//! or `unknown`, so no caller can create new series.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame, SizeHint};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, HeaderValue, Request, Response};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::duration;
use crate::leader::forward::Forwarding;

/// The header carrying a request id across services.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The request id of the call being handled, for passing on to other services.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Runs `f` with `id` as the current request id: for work a call hands to a
/// blocking thread (`Db::run`), so errors made there still name the call.
pub fn with_request_id<R>(id: Option<String>, f: impl FnOnce() -> R) -> R {
    match id {
        Some(id) => REQUEST_ID.sync_scope(id, f),
        None => f(),
    }
}

/// Spawns `fut` as a task that keeps the current request id, so errors and
/// log lines made in work a call detaches (a reconcile's writes, a sweep)
/// still name the call.
pub fn spawn_in_request<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    match current_request_id() {
        Some(id) => tokio::spawn(REQUEST_ID.scope(id, fut)),
        None => tokio::spawn(fut),
    }
}

/// What a caller is told of an internal error (a database failure, a task
/// that died): `internal error (request id …)` and nothing else, so no SQL,
/// file path or other detail of the service's insides leaves it. The detail
/// is logged at error level with that same id, for the operator. Outside a
/// call (background work) a fresh id is made and named `error id`.
pub fn internal_error(detail: &dyn std::fmt::Display) -> String {
    match current_request_id() {
        Some(id) => {
            tracing::error!(request_id = %id, error = %detail, "internal error");
            format!("internal error (request id {id})")
        }
        None => {
            let id = new_request_id();
            tracing::error!(error_id = %id, error = %detail, "internal error");
            format!("internal error (error id {id})")
        }
    }
}

/// [`internal_error`] as an `INTERNAL` status.
pub fn internal_status(detail: &dyn std::fmt::Display) -> tonic::Status {
    tonic::Status::internal(internal_error(detail))
}

/// Mesh settings shared by both services (flattened into each service's flags).
#[derive(Clone, clap::Args)]
pub struct MeshArgs {
    /// Bearer token required on every RPC but health and reflection (prefer AUTH_TOKEN_FILE).
    #[arg(long, env = "AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,

    /// File holding the bearer token.
    #[arg(long, env = "AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// PEM certificate chain to serve TLS with (needs TLS_KEY_FILE).
    #[arg(long, env = "TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// PEM private key of TLS_CERT_FILE.
    #[arg(long, env = "TLS_KEY_FILE")]
    pub tls_key_file: Option<PathBuf>,

    /// PEM CA bundle: when set, clients must present a certificate it signed (mTLS).
    #[arg(long, env = "TLS_CLIENT_CA_FILE")]
    pub tls_client_ca_file: Option<PathBuf>,

    /// PEM CA that signed the replicas' certificates: with TLS on, a follower forwards writes to
    /// the leader over TLS checked against it (unset: a follower answers UNAVAILABLE naming the
    /// leader).
    #[arg(long, env = "FORWARD_CA_FILE")]
    pub forward_ca_file: Option<PathBuf>,

    /// Name the leader's certificate must hold when forwarding (default: the host of its
    /// advertised address).
    #[arg(long, env = "FORWARD_SERVER_NAME")]
    pub forward_server_name: Option<String>,

    /// PEM certificate a follower presents to a leader that asks for one (TLS_CLIENT_CA_FILE);
    /// default TLS_CERT_FILE.
    #[arg(long, env = "FORWARD_CLIENT_CERT_FILE")]
    pub forward_client_cert_file: Option<PathBuf>,

    /// PEM private key of FORWARD_CLIENT_CERT_FILE; default TLS_KEY_FILE.
    #[arg(long, env = "FORWARD_CLIENT_KEY_FILE")]
    pub forward_client_key_file: Option<PathBuf>,

    /// Longest a call may run; a shorter grpc-timeout sent by the client wins (bare number: ms).
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "60s", value_parser = duration::parse_millis)]
    pub request_timeout: Duration,

    /// Calls handled at once; more are refused with RESOURCE_EXHAUSTED, not queued.
    #[arg(long, env = "MAX_CONCURRENT_REQUESTS", default_value_t = 256)]
    pub max_concurrent_requests: usize,

    /// Largest request or response message, in bytes.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Address of the Prometheus metrics endpoint (e.g. 0.0.0.0:9090); off when unset.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for MeshArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshArgs")
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .field("auth_token_file", &self.auth_token_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_client_ca_file", &self.tls_client_ca_file)
            .field("forward_ca_file", &self.forward_ca_file)
            .field("forward_server_name", &self.forward_server_name)
            .field("forward_client_cert_file", &self.forward_client_cert_file)
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

/// Reads a secret from a value or a file; the value wins. Empty is refused.
pub fn read_secret(
    name: &str,
    value: Option<&str>,
    file: Option<&PathBuf>,
) -> anyhow::Result<Option<String>> {
    if let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) {
        return Ok(Some(v.to_string()));
    }
    let Some(path) = file else { return Ok(None) };
    let v = std::fs::read_to_string(path)
        .with_context(|| format!("reading {name}_FILE {}", path.display()))?;
    let v = v.trim();
    if v.is_empty() {
        bail!("{name}_FILE {} is empty", path.display());
    }
    Ok(Some(v.to_string()))
}

fn read_pem(what: &str, path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

impl MeshArgs {
    /// The token callers must present, if authentication is on.
    pub fn auth(&self) -> anyhow::Result<Option<AuthToken>> {
        Ok(read_secret(
            "AUTH_TOKEN",
            self.auth_token.as_deref(),
            self.auth_token_file.as_ref(),
        )?
        .map(|t| AuthToken::new(&t)))
    }

    /// The server TLS configuration, if TLS is on.
    pub fn tls(&self) -> anyhow::Result<Option<ServerTlsConfig>> {
        let (cert, key) = match (&self.tls_cert_file, &self.tls_key_file) {
            (None, None) => {
                if self.tls_client_ca_file.is_some() {
                    bail!("TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE");
                }
                return Ok(None);
            }
            (Some(c), Some(k)) => (c, k),
            _ => bail!("TLS_CERT_FILE and TLS_KEY_FILE must be set together"),
        };
        let identity = Identity::from_pem(
            read_pem("TLS_CERT_FILE", cert)?,
            read_pem("TLS_KEY_FILE", key)?,
        );
        let mut tls = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.tls_client_ca_file {
            tls = tls.client_ca_root(Certificate::from_pem(read_pem("TLS_CLIENT_CA_FILE", ca)?));
        }
        Ok(Some(tls))
    }

    /// How a follower reaches the leader, given whether the listener serves
    /// TLS: plain without it; with it, TLS when FORWARD_CA_FILE is set, else
    /// not at all.
    pub fn forwarding(&self, serves_tls: bool) -> anyhow::Result<Forwarding> {
        let client_cert = match (
            &self.forward_client_cert_file,
            &self.forward_client_key_file,
        ) {
            (None, None) => None,
            (Some(c), Some(k)) => {
                Some((c, k, "FORWARD_CLIENT_CERT_FILE", "FORWARD_CLIENT_KEY_FILE"))
            }
            _ => bail!("FORWARD_CLIENT_CERT_FILE and FORWARD_CLIENT_KEY_FILE must be set together"),
        };
        let Some(ca) = &self.forward_ca_file else {
            if let Some(name) = [
                client_cert.map(|c| c.2),
                self.forward_server_name
                    .as_ref()
                    .map(|_| "FORWARD_SERVER_NAME"),
            ]
            .into_iter()
            .flatten()
            .next()
            {
                bail!("{name} needs FORWARD_CA_FILE (the CA of the replicas' certificates)");
            }
            return Ok(if serves_tls {
                Forwarding::Off
            } else {
                Forwarding::Plain
            });
        };
        if !serves_tls {
            bail!(
                "FORWARD_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE: without TLS, followers \
                 forward over plain HTTP/2"
            );
        }
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read_pem("FORWARD_CA_FILE", ca)?));
        if let Some(name) = self.forward_server_name.as_deref().map(str::trim) {
            if name.is_empty() {
                bail!("FORWARD_SERVER_NAME is empty");
            }
            tls = tls.domain_name(name);
        }
        // The identity shown to a leader that asks for one (mTLS): the
        // forward's own, or the one this replica serves with.
        let (cert, key, cert_name, key_name) = match client_cert {
            Some(c) => c,
            None => match (&self.tls_cert_file, &self.tls_key_file) {
                (Some(c), Some(k)) => (c, k, "TLS_CERT_FILE", "TLS_KEY_FILE"),
                _ => bail!("TLS_CERT_FILE and TLS_KEY_FILE must be set together"),
            },
        };
        tls = tls.identity(Identity::from_pem(
            read_pem(cert_name, cert)?,
            read_pem(key_name, key)?,
        ));
        Ok(Forwarding::Tls(tls))
    }

    /// Everything `serve` needs, read and checked once at start.
    pub fn settings(&self) -> anyhow::Result<MeshSettings> {
        let tls = self.tls()?;
        Ok(MeshSettings {
            auth: self.auth()?,
            forwarding: self.forwarding(tls.is_some())?,
            tls,
            request_timeout: self.request_timeout,
            max_concurrent_requests: self.max_concurrent_requests.max(1),
        })
    }

    /// Starts the Prometheus endpoint when METRICS_ADDR is set. Only one
    /// exporter can exist per process; a second call keeps the first.
    pub fn install_metrics(&self) -> anyhow::Result<()> {
        let Some(addr) = self.metrics_addr else {
            return Ok(());
        };
        match metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
            .context("metrics buckets")?
            .install()
        {
            Ok(()) => {
                tracing::info!(addr = %addr, "serving Prometheus metrics on /metrics");
                Ok(())
            }
            Err(metrics_exporter_prometheus::BuildError::FailedToSetGlobalRecorder(_)) => {
                tracing::warn!("a metrics exporter is already installed in this process");
                Ok(())
            }
            Err(e) => Err(anyhow::anyhow!("METRICS_ADDR {addr}: {e}")),
        }
    }
}

/// Settings of the mesh layer and the server.
#[derive(Clone, Debug)]
pub struct MeshSettings {
    /// The bearer token callers must present; `None` turns authentication off.
    pub auth: Option<AuthToken>,
    /// TLS for the listener.
    pub tls: Option<ServerTlsConfig>,
    /// How a follower reaches the leader (as the listener serves).
    pub forwarding: Forwarding,
    /// Longest a call may run.
    pub request_timeout: Duration,
    /// Calls handled at once before shedding.
    pub max_concurrent_requests: usize,
}

impl Default for MeshSettings {
    /// No authentication, no TLS, the flags' default timeout and limit.
    fn default() -> Self {
        Self {
            auth: None,
            tls: None,
            forwarding: Forwarding::Plain,
            request_timeout: Duration::from_secs(60),
            max_concurrent_requests: 256,
        }
    }
}

/// The SHA-256 digest of the bearer token, compared in constant time.
#[derive(Clone)]
pub struct AuthToken([u8; 32]);

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthToken(<redacted>)")
    }
}

impl AuthToken {
    /// Keeps only the digest of `token`.
    pub fn new(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Whether an `authorization` header value carries this token. Digests are
    /// compared so neither the content nor the length leaks through timing.
    pub fn accepts(&self, header: Option<&HeaderValue>) -> bool {
        let Some(v) = header.and_then(|h| h.to_str().ok()) else {
            return false;
        };
        let Some(presented) = v
            .get(..7)
            .filter(|p| p.eq_ignore_ascii_case("bearer "))
            .map(|_| v[7..].trim())
        else {
            return false;
        };
        let d: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        d.iter()
            .zip(self.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// Calls exempt from authentication and load shedding: health and reflection,
/// which probes and grpcurl must always reach.
fn is_exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.")
}

fn new_request_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// The `method` label of calls to a path the service does not serve.
pub const UNKNOWN_METHOD: &str = "unknown";

/// The gRPC paths a server answers (`/package.Service/Method`): the only
/// values the `method` label of the request metrics takes, besides
/// [`UNKNOWN_METHOD`].
#[derive(Debug, Clone, Default)]
pub struct KnownMethods(Arc<HashSet<String>>);

impl KnownMethods {
    /// The methods of every service in these encoded `FileDescriptorSet`s.
    pub fn from_descriptor_sets(sets: &[&[u8]]) -> Result<Self, prost::DecodeError> {
        let mut all = HashSet::new();
        for set in sets {
            all.extend(trafego_proto::method_paths(set)?);
        }
        Ok(Self(Arc::new(all)))
    }

    /// The metrics label for a call to `path`: the path itself when the
    /// server serves it, else [`UNKNOWN_METHOD`].
    pub fn label(&self, path: &str) -> String {
        if self.0.contains(path) {
            path.to_string()
        } else {
            UNKNOWN_METHOD.to_string()
        }
    }
}

/// The tower layer both services put in front of their routes.
#[derive(Clone)]
pub struct MeshLayer {
    service: &'static str,
    auth: Option<Arc<AuthToken>>,
    limit: Arc<Semaphore>,
    methods: KnownMethods,
}

impl MeshLayer {
    /// A layer for `service` with these settings; `methods` are the paths
    /// the server answers (metrics label every other path `unknown`).
    pub fn new(service: &'static str, settings: &MeshSettings, methods: KnownMethods) -> Self {
        Self {
            service,
            auth: settings.auth.clone().map(Arc::new),
            limit: Arc::new(Semaphore::new(settings.max_concurrent_requests.max(1))),
            methods,
        }
    }
}

impl<S> Layer<S> for MeshLayer {
    type Service = MeshService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MeshService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service the [`MeshLayer`] wraps around the routes.
#[derive(Clone)]
pub struct MeshService<S> {
    inner: S,
    layer: MeshLayer,
}

/// What is known of a call when it ends: logged once, counted once.
struct Finish {
    service: &'static str,
    /// The path the caller sent, for the log line.
    method: String,
    /// The bounded `method` label: a known path or `unknown`.
    label: String,
    request_id: String,
    start: Instant,
    span: tracing::Span,
}

impl Finish {
    fn done(self, code: tonic::Code) {
        let elapsed = self.start.elapsed();
        let code_name = format!("{code:?}");
        tracing::info!(
            parent: &self.span,
            method = %self.method,
            request_id = %self.request_id,
            code = %code_name,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "rpc finished"
        );
        // `code` is one of tonic's 17 codes (an unknown number parses as
        // Unknown) and `service` is the server's own name: every label is bounded.
        metrics::counter!("trafego_grpc_requests_total",
            "service" => self.service, "method" => self.label.clone(), "code" => code_name.clone())
        .increment(1);
        metrics::histogram!("trafego_grpc_request_duration_seconds",
            "service" => self.service, "method" => self.label, "code" => code_name)
        .record(elapsed.as_secs_f64());
    }
}

fn code_of(v: Option<&HeaderValue>) -> Option<tonic::Code> {
    v.and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse::<i32>().ok())
        .map(tonic::Code::from)
}

/// How tonic's decoder begins the OUT_OF_RANGE message of a request message
/// over `max_decoding_message_size` (tonic 0.14, `codec/decode.rs`).
const TONIC_REQUEST_TOO_LARGE: &str = "Error, decoded message length too large: ";

/// Turns tonic's answer to a request message over MAX_MESSAGE_BYTES
/// (OUT_OF_RANGE, decided while decoding, past this layer) into the
/// contract's code for a limit, RESOURCE_EXHAUSTED, with a plain message.
/// The answer is trailers-only, so the status is in the headers. Any other
/// status is left as it is.
fn map_oversized_request(headers: &mut HeaderMap) {
    let Some(status) = tonic::Status::from_header_map(headers) else {
        return;
    };
    if status.code() != tonic::Code::OutOfRange {
        return;
    }
    let Some(detail) = status.message().strip_prefix(TONIC_REQUEST_TOO_LARGE) else {
        return;
    };
    let mapped = tonic::Status::resource_exhausted(format!(
        "the request message is larger than MAX_MESSAGE_BYTES allows ({})",
        detail.replace("the limit is: ", "the limit is ")
    ));
    for h in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        headers.remove(h);
    }
    if mapped.add_header(headers).is_err() {
        // Cannot happen for this plain ASCII message; keep a valid answer.
        headers.insert("grpc-status", HeaderValue::from_static("8"));
    }
}

fn refuse(status: tonic::Status, finish: Finish) -> Response<ObservedBody> {
    finish.done(status.code());
    status.into_http::<Body>().map(|b| ObservedBody {
        inner: b,
        finish: None,
    })
}

impl<S> Service<Request<Body>> for MeshService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<tower::BoxError> + Send,
{
    type Response = Response<ObservedBody>;
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let method = req.uri().path().to_string();
        let exempt = is_exempt(&method);
        let request_id = req
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
            .map(str::to_string)
            .unwrap_or_else(new_request_id);
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            req.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
        let span = tracing::info_span!("rpc", method = %method, request_id = %request_id);
        let finish = Finish {
            service: self.layer.service,
            label: self.layer.methods.label(&method),
            method,
            request_id: request_id.clone(),
            start: Instant::now(),
            span: span.clone(),
        };
        if !exempt
            && let Some(auth) = &self.layer.auth
            && !auth.accepts(req.headers().get("authorization"))
        {
            let why = if req.headers().contains_key("authorization") {
                "invalid bearer token"
            } else {
                "missing bearer token"
            };
            tracing::warn!(parent: &span, method = %finish.method, request_id = %request_id, "refused: {why}");
            metrics::counter!("trafego_auth_refusals_total", "service" => self.layer.service)
                .increment(1);
            let status = tonic::Status::unauthenticated(format!(
                "{why}: send `authorization: Bearer <token>`"
            ));
            return Box::pin(futures::future::ready(Ok(refuse(status, finish))));
        }
        let permit = if exempt {
            None
        } else {
            match self.layer.limit.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    tracing::warn!(parent: &span, method = %finish.method, "shed: too many calls in flight");
                    metrics::counter!("trafego_grpc_shed_total", "service" => self.layer.service)
                        .increment(1);
                    let status = tonic::Status::resource_exhausted(
                        "too many calls in flight; retry with backoff",
                    );
                    return Box::pin(futures::future::ready(Ok(refuse(status, finish))));
                }
            }
        };
        Box::pin(async move {
            let resp = REQUEST_ID
                .scope(request_id.clone(), inner.call(req).instrument(span))
                .await
                .map_err(Into::into)?;
            drop(permit);
            let (mut parts, body) = resp.into_parts();
            map_oversized_request(&mut parts.headers);
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                parts.headers.insert(REQUEST_ID_HEADER, v);
            }
            // A trailers-only answer (an error) carries its status in the headers.
            let finish = match code_of(parts.headers.get("grpc-status")) {
                Some(code) => {
                    finish.done(code);
                    None
                }
                None => Some(finish),
            };
            Ok(Response::from_parts(
                parts,
                ObservedBody {
                    inner: body,
                    finish,
                },
            ))
        })
    }
}

/// A response body that logs and counts the call when its trailers arrive,
/// or as cancelled if the client goes away first.
pub struct ObservedBody {
    inner: Body,
    finish: Option<Finish>,
}

impl HttpBody for ObservedBody {
    type Data = tonic::codegen::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(t) = frame.trailers_ref()
                    && let Some(f) = self.finish.take()
                {
                    f.done(code_of(t.get("grpc-status")).unwrap_or(tonic::Code::Unknown));
                }
            }
            Poll::Ready(Some(Err(status))) => {
                if let Some(f) = self.finish.take() {
                    f.done(status.code());
                }
            }
            Poll::Ready(None) => {
                if let Some(f) = self.finish.take() {
                    f.done(tonic::Code::Unknown);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ObservedBody {
    fn drop(&mut self) {
        if let Some(f) = self.finish.take() {
            f.done(tonic::Code::Cancelled);
        }
    }
}

/// Warns at start when authentication is off and the listener is not on loopback.
pub fn warn_if_exposed(addr: &SocketAddr, settings: &MeshSettings) {
    if settings.auth.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            addr = %addr,
            "authentication is off (AUTH_TOKEN unset) and the listener is not on loopback: anyone who can reach it can change DNS records"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh_args(args: &[&str]) -> MeshArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            mesh: MeshArgs,
        }
        <Cli as clap::Parser>::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .unwrap()
            .mesh
    }

    #[test]
    fn followers_forward_as_the_listener_serves() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, "pem").unwrap();
            p.display().to_string()
        };
        let (cert, key, ca) = (file("cert.pem"), file("key.pem"), file("ca.pem"));
        let tls = ["--tls-cert-file", &cert, "--tls-key-file", &key];
        let forwarding = |args: &[&str]| mesh_args(args).settings().map(|s| s.forwarding);
        // Plain listener: plain forwarding.
        assert!(matches!(forwarding(&[]).unwrap(), Forwarding::Plain));
        // TLS without FORWARD_CA_FILE: followers name the leader.
        assert!(matches!(forwarding(&tls).unwrap(), Forwarding::Off));
        // TLS with it: forwarded over TLS (with or without its own identity).
        let with_ca = [&tls[..], &["--forward-ca-file", &ca]].concat();
        assert!(matches!(forwarding(&with_ca).unwrap(), Forwarding::Tls(_)));
        let own = [
            &with_ca[..],
            &[
                "--forward-server-name",
                "cache.svc",
                "--forward-client-cert-file",
                &cert,
                "--forward-client-key-file",
                &key,
            ],
        ]
        .concat();
        assert!(matches!(forwarding(&own).unwrap(), Forwarding::Tls(_)));
        // Settings that cannot take effect are refused, naming them.
        let refused = |args: &[&str], names: &str| {
            let e = forwarding(args).unwrap_err().to_string();
            assert!(e.starts_with(names), "{args:?}: {e}");
        };
        refused(
            &["--forward-ca-file", &ca],
            "FORWARD_CA_FILE needs TLS_CERT_FILE",
        );
        refused(
            &[&tls[..], &["--forward-server-name", "cache.svc"]].concat(),
            "FORWARD_SERVER_NAME needs FORWARD_CA_FILE",
        );
        refused(
            &[&with_ca[..], &["--forward-client-cert-file", &cert]].concat(),
            "FORWARD_CLIENT_CERT_FILE and FORWARD_CLIENT_KEY_FILE",
        );
        refused(
            &[&with_ca[..], &["--forward-server-name", " "]].concat(),
            "FORWARD_SERVER_NAME is empty",
        );
        let missing = dir.path().join("none.pem").display().to_string();
        refused(
            &[&tls[..], &["--forward-ca-file", &missing]].concat(),
            "reading FORWARD_CA_FILE",
        );
    }

    #[test]
    fn tokens_compare_by_digest() {
        let t = AuthToken::new("s3cret");
        assert!(t.accepts(Some(&HeaderValue::from_static("Bearer s3cret"))));
        assert!(t.accepts(Some(&HeaderValue::from_static("bearer s3cret"))));
        assert!(!t.accepts(Some(&HeaderValue::from_static("Bearer s3cre"))));
        assert!(!t.accepts(Some(&HeaderValue::from_static("Basic s3cret"))));
        assert!(!t.accepts(None));
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn an_oversized_request_becomes_resource_exhausted() {
        let mut h = HeaderMap::new();
        tonic::Status::out_of_range(
            "Error, decoded message length too large: found 9000 bytes, the limit is: 4096 bytes",
        )
        .add_header(&mut h)
        .unwrap();
        map_oversized_request(&mut h);
        let s = tonic::Status::from_header_map(&h).unwrap();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            s.message(),
            "the request message is larger than MAX_MESSAGE_BYTES allows (found 9000 bytes, the limit is 4096 bytes)"
        );
        // Any other OUT_OF_RANGE (a handler's own) is left alone.
        let mut h = HeaderMap::new();
        tonic::Status::out_of_range("page 9 is past the end")
            .add_header(&mut h)
            .unwrap();
        map_oversized_request(&mut h);
        assert_eq!(
            tonic::Status::from_header_map(&h).unwrap().code(),
            tonic::Code::OutOfRange
        );
    }

    #[test]
    fn only_known_methods_label_metrics() {
        let m = KnownMethods::from_descriptor_sets(&[
            trafego_proto::CACHE_FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ])
        .unwrap();
        assert_eq!(
            m.label("/trafego.cache.v1.CacheService/ListRecords"),
            "/trafego.cache.v1.CacheService/ListRecords"
        );
        assert_eq!(
            m.label("/grpc.health.v1.Health/Check"),
            "/grpc.health.v1.Health/Check"
        );
        assert_eq!(m.label("/trafego.cache.v1.CacheService/Nope"), "unknown");
        assert_eq!(m.label("/x.Y/random-123"), "unknown");
        assert_eq!(m.label("/"), "unknown");
    }

    #[test]
    fn health_and_reflection_are_exempt() {
        assert!(is_exempt("/grpc.health.v1.Health/Check"));
        assert!(is_exempt(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        ));
        assert!(!is_exempt("/trafego.cache.v1.CacheService/ListRecords"));
    }
}
