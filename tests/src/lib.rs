//! Test support for TrafegoDNS: starts the real services in-process on
//! ephemeral loopback ports (the listener is bound before the service is
//! spawned, so there is no race and no sleep), and a Cloudflare-compatible fake
//! provider. Used by the end-to-end tests in `tests/` and by the benchmarks.

pub mod fake_cloudflare;

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
    let zonefile = dir.join("example.com.zone").display().to_string();
    let mut args = vec![
        "--zone",
        "example.com",
        "--db-path",
        db.as_str(),
        "--zonefile-path",
        zonefile.as_str(),
    ];
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
