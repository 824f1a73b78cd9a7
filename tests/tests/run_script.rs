//! `run.sh` for real: it builds the services with cargo into whatever
//! `CARGO_TARGET_DIR` says (here the tests' own target directory, not
//! `./target`), starts both, derives `CACHE_SERVICE_URL` from
//! `CACHE_LISTEN_ADDR`, stops both on Ctrl-C with status 0, and exits
//! non-zero with one line naming the variable when a listen address is taken.
//!
//! The script runs with `RUN_PROFILE=debug`, so it reuses the tests' build
//! instead of making a release one. Each run is its own process group, killed
//! as a whole if a test fails, so no service is left behind; every file it
//! writes is in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::CommandFactory;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use trafego_proto::tracking::tracking_service_client::TrackingServiceClient;
use trafego_proto::tracking::{ChangeAction, DesiredRecord, ReconcileRequest};
use trafego_tests::{free_port, tempdir};

/// The longest a run may take to build and start: the first build of the
/// services on their own (cargo unifies their features differently than for
/// the tests) takes about a minute on two cores.
const START_LIMIT: Duration = Duration::from_secs(30 * 60);

/// The target directory and profile these tests were built into:
/// `<target>/<profile>/deps/<test binary>`.
fn target_and_profile() -> (PathBuf, String) {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("profile dir");
    let profile = profile_dir
        .file_name()
        .and_then(|p| p.to_str())
        .expect("profile name")
        .to_string();
    let target = profile_dir.parent().expect("target dir").to_path_buf();
    (target, profile)
}

/// `run.sh` running in its own process group, its stderr collected.
struct RunScript {
    child: tokio::process::Child,
    pgid: u32,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl RunScript {
    /// Starts `run.sh` with the caller's environment minus every service
    /// setting (so nothing set outside leaks in) and minus what cargo sets
    /// for a test process (build scripts watching `CARGO_MANIFEST_DIR` would
    /// otherwise make the script's cargo rebuild them), then `envs`.
    fn start(envs: &[(&str, String)]) -> RunScript {
        let (target, profile) = target_and_profile();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../run.sh");
        let mut cmd = tokio::process::Command::new(script);
        for var in cache_service::Config::command()
            .get_arguments()
            .chain(tracking_service::Config::command().get_arguments())
            .filter_map(|a| a.get_env())
        {
            cmd.env_remove(var);
        }
        for (var, _) in std::env::vars_os() {
            let name = var.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_BIN_EXE_")
                || [
                    "CARGO",
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "OUT_DIR",
                ]
                .contains(&name.as_ref())
            {
                cmd.env_remove(&var);
            }
        }
        cmd.env_remove("RUST_BACKTRACE")
            .env("CARGO_TARGET_DIR", &target)
            .env("RUN_PROFILE", profile)
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("run.sh");
        let pgid = child.id().expect("pid");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::unbounded_channel();
        let mut reader = BufReader::new(child.stderr.take().unwrap()).lines();
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        RunScript {
            child,
            pgid,
            lines,
            stderr,
        }
    }

    /// Everything it printed on stderr so far.
    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Sends `signal` to the whole process group, as a terminal's Ctrl-C does.
    fn signal_group(&self, signal: &str) {
        let _ = std::process::Command::new("kill")
            .args([&format!("-{signal}"), "--", &format!("-{}", self.pgid)])
            .status();
    }

    /// Whether any process of its group is still running.
    fn group_alive(&self) -> bool {
        std::process::Command::new("kill")
            .args(["-0", "--", &format!("-{}", self.pgid)])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits (bounded) for run.sh to exit and returns its status.
    async fn exit_status(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(START_LIMIT, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("run.sh did not exit:\n{}", self.stderr()))
            .expect("wait")
    }

    /// Waits (bounded) until both services logged "serving gRPC"; returns
    /// their addresses as (cache-service, tracking-service).
    async fn serving(&mut self) -> (String, String) {
        let (mut cache, mut tracking) = (None, None);
        while cache.is_none() || tracking.is_none() {
            let line = tokio::time::timeout(START_LIMIT, self.lines.recv())
                .await
                .expect("run.sh never started both services")
                .unwrap_or_else(|| panic!("run.sh ended before serving:\n{}", self.stderr()));
            if !line.contains("serving gRPC") {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
            let addr = v["addr"].as_str().expect("addr").to_string();
            match v["service"].as_str() {
                Some("trafego.cache.v1.CacheService") => cache = Some(addr),
                Some("trafego.tracking.v1.TrackingService") => tracking = Some(addr),
                other => panic!("unexpected service {other:?}"),
            }
        }
        (cache.unwrap(), tracking.unwrap())
    }
}

impl Drop for RunScript {
    /// Never leaves a service running, even when an assertion failed.
    fn drop(&mut self) {
        if self.group_alive() {
            self.signal_group("KILL");
        }
    }
}

/// The data settings of a run, all inside `dir`.
fn files_in(dir: &Path) -> Vec<(&'static str, String)> {
    let at = |name: &str| dir.join(name).display().to_string();
    vec![
        ("CACHE_DB_PATH", at("cache.db")),
        ("TRACKING_DB_PATH", at("tracking.db")),
        ("ZONEFILE_PATH", at("example.com.zone")),
        ("SHUTDOWN_GRACE", "2s".into()),
    ]
}

#[tokio::test]
async fn run_sh_builds_where_cargo_target_dir_says_and_stops_both_on_ctrl_c() {
    let dir = tempdir();
    let cache_addr = format!("127.0.0.1:{}", free_port());
    let mut envs = files_in(dir.path());
    // Only CACHE_LISTEN_ADDR: run.sh must point tracking-service at it.
    envs.push(("CACHE_LISTEN_ADDR", cache_addr.clone()));
    envs.push(("TRACKING_LISTEN_ADDR", "127.0.0.1:0".into()));
    envs.push(("LOG_FORMAT", "json".into()));
    let mut run = RunScript::start(&envs);
    let (cache, tracking) = run.serving().await;
    assert_eq!(cache, cache_addr);

    // A declaration through tracking-service lands in this run's zone file:
    // tracking-service reached this cache-service.
    let mut client = TrackingServiceClient::connect(format!("http://{tracking}"))
        .await
        .expect("connect to tracking-service");
    let r = client
        .reconcile(ReconcileRequest {
            source: "run-sh".into(),
            records: vec![DesiredRecord {
                hostname: "app.example.com".into(),
                r#type: Some("A".into()),
                content: Some("192.0.2.10".into()),
                ..Default::default()
            }],
            dry_run: false,
            force: false,
        })
        .await
        .unwrap_or_else(|e| panic!("reconcile: {e:?}\n{}", run.stderr()))
        .into_inner();
    assert_eq!(r.changes.len(), 1, "{r:?}");
    assert_eq!(r.changes[0].action, ChangeAction::Create as i32, "{r:?}");
    let zone = std::fs::read_to_string(dir.path().join("example.com.zone")).unwrap();
    assert!(zone.contains("192.0.2.10"), "{zone}");

    run.signal_group("INT");
    let status = run.exit_status().await;
    assert!(status.success(), "{status}:\n{}", run.stderr());
    assert!(!run.group_alive(), "a service outlived run.sh");
}

/// A taken listen address of either service: run.sh exits non-zero, the
/// service's one line names the variable to change, and nothing is left running.
async fn a_taken_address_is_named(var: &'static str, other: &'static str) {
    let dir = tempdir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut envs = files_in(dir.path());
    envs.push((var, addr.to_string()));
    envs.push((other, "127.0.0.1:0".into()));
    let mut run = RunScript::start(&envs);
    let status = run.exit_status().await;
    let stderr = run.stderr();
    assert!(!status.success(), "run.sh exited {status}:\n{stderr}");
    let line = format!("{addr} is already in use: set {var} to a free address");
    assert!(
        stderr.lines().any(|l| l.ends_with(&line)),
        "no line {line:?} in:\n{stderr}"
    );
    assert!(!run.group_alive(), "a service outlived run.sh");
}

#[tokio::test]
async fn a_taken_cache_address_fails_with_one_line_naming_cache_listen_addr() {
    a_taken_address_is_named("CACHE_LISTEN_ADDR", "TRACKING_LISTEN_ADDR").await;
}

#[tokio::test]
async fn a_taken_tracking_address_fails_with_one_line_naming_tracking_listen_addr() {
    a_taken_address_is_named("TRACKING_LISTEN_ADDR", "CACHE_LISTEN_ADDR").await;
}
