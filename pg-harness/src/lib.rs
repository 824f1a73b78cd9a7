//! A throwaway PostgreSQL for tests: `initdb` and `pg_ctl` from Debian's
//! `postgresql` package (`/usr/lib/postgresql/<version>/bin`, newest version)
//! build a cluster in a temporary directory, start it on a free loopback port
//! with its socket in that directory, and create a role with a password and a
//! database it owns; clients get a `postgres://user:password@127.0.0.1:PORT/db`
//! URL. Run as root (CI, containers) the cluster belongs to the `postgres`
//! user: PostgreSQL refuses to run as root, so the directory is handed to
//! `postgres` and `initdb`/`pg_ctl` run through `runuser`.
//!
//! Without PostgreSQL it fails saying what to install (`apt-get install
//! postgresql libpq-dev`); the tests never skip. It must never leave a
//! postmaster running (the handle stops it, `pg_ctl stop -m immediate`, on
//! drop, also when a test panics), listen past loopback, or touch a cluster
//! or file outside its temporary directory. Durability is off (`fsync=off`):
//! the data is thrown away.
//!
//! A test binary shares one cluster ([`shared`], started on first use) and
//! takes a fresh database per test ([`fresh_database`]), so the suite pays
//! for `initdb` once. A static is never dropped, so the shared cluster has a
//! watchdog: a small shell process, in its own process group, blocked reading
//! a pipe only this process holds; when the test process exits, however it
//! exits, the pipe closes and the watchdog stops the cluster and deletes its
//! directory.
//!
//! Its own crate (not part of `trafego-tests`), so a service's unit tests can
//! use it as a dev-dependency.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Context, bail};
use rand::Rng;

/// A file's text, or nothing if it cannot be read (a log not written yet).
fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Finds the program `name` on PATH (or in the sbin directories), or says
/// which package to install.
fn tool(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "`{name}` is not installed: these tests need it, install it with \
         `apt-get install {package}` (they are not skipped on purpose)"
    )
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// Where Debian's `postgresql-<version>` packages put their programs.
pub const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";

/// What to tell someone whose machine lacks PostgreSQL.
const INSTALL_HINT: &str = "install it with `apt-get install postgresql libpq-dev` \
                            (these tests need it and are not skipped on purpose)";

/// Finds `<root>/<version>/bin` holding `initdb`, `pg_ctl` and `psql`, the
/// highest version if there are several, or says what to install.
pub fn pg_bin_dir(root: &Path) -> anyhow::Result<PathBuf> {
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir(root) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(version) = name
                .to_str()
                .and_then(|n| n.split('.').map(|p| p.parse::<u32>().ok()).collect())
            else {
                continue;
            };
            let bin = entry.path().join("bin");
            if !["initdb", "pg_ctl", "psql"]
                .iter()
                .all(|p| bin.join(p).is_file())
            {
                continue;
            }
            if best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
    }
    match best {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "PostgreSQL is not installed (no {}/<version>/bin/initdb): {INSTALL_HINT}",
            root.display()
        ),
    }
}

/// Whether this process runs as root (the owner of `/proc/self` is the
/// effective user), in which case PostgreSQL must run as `postgres`.
fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Standard output and error of a finished command, for error messages.
fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A random password or name suffix: letters and digits only, so it needs no
/// quoting in SQL or in a URL.
fn random_word(len: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A running throwaway PostgreSQL cluster; stopped (immediately) and deleted
/// when dropped.
pub struct PgCluster {
    /// The TCP port on 127.0.0.1.
    pub port: u16,
    /// `postgres://user:password@127.0.0.1:PORT/database`, for clients.
    pub url: String,
    /// The role clients log in as; it owns [`PgCluster::database`].
    pub user: String,
    /// That role's password (random per cluster).
    pub password: String,
    /// The database created for the tests.
    pub database: String,
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// `runuser` when we are root: PostgreSQL's programs then run as `postgres`.
    runuser: Option<PathBuf>,
    running: bool,
    dir: tempfile::TempDir,
}

impl PgCluster {
    /// Creates and starts a cluster, with role `trafego` (random password)
    /// owning database `trafego`; takes about a second, mostly `initdb`.
    pub async fn start() -> anyhow::Result<PgCluster> {
        let bin = pg_bin_dir(Path::new(DEBIAN_PG_ROOT))?;
        let runuser = if running_as_root() {
            Some(tool("runuser", "util-linux")?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("trafego-pg-")
            .tempdir()
            .context("create a temporary directory for PostgreSQL")?;
        if runuser.is_some() {
            let out = tokio::process::Command::new("chown")
                .arg("postgres:")
                .arg(dir.path())
                .output()
                .await
                .context("run chown")?;
            if !out.status.success() {
                bail!(
                    "cannot give {} to the `postgres` user ({}): running as root, the \
                     cluster must belong to `postgres`, which the postgresql package \
                     creates; {INSTALL_HINT}",
                    dir.path().display(),
                    output_text(&out).trim()
                );
            }
        }
        let mut cluster = PgCluster {
            port: 0,
            url: String::new(),
            user: "trafego".to_string(),
            password: random_word(24),
            database: "trafego".to_string(),
            data: dir.path().join("data"),
            log: dir.path().join("postgres.log"),
            bin,
            runuser,
            running: false,
            dir,
        };
        cluster.init().await?;
        cluster.start_server().await?;
        let create = format!(
            "CREATE ROLE {user} LOGIN PASSWORD '{password}'",
            user = cluster.user,
            password = cluster.password
        );
        cluster.superuser_sql(&create).await?;
        let database = cluster.database.clone();
        cluster.url = cluster.create_database(&database).await?;
        Ok(cluster)
    }

    /// A command for the PostgreSQL program `program`, as `postgres` when we
    /// are root, run from the cluster's directory (its cwd must be readable by
    /// `postgres`).
    fn command(&self, program: &str) -> tokio::process::Command {
        let path = self.bin.join(program);
        let mut cmd = if let Some(runuser) = &self.runuser {
            let mut cmd = tokio::process::Command::new(runuser);
            cmd.args(["-u", "postgres", "--"]).arg(path);
            cmd
        } else {
            tokio::process::Command::new(path)
        };
        cmd.current_dir(self.dir.path()).kill_on_drop(true);
        cmd
    }

    async fn init(&self) -> anyhow::Result<()> {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(&self.data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .output()
            .await
            .context("run initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", output_text(&out));
        }
        Ok(())
    }

    /// `pg_ctl start -w` (pg_ctl itself waits, bounded, until the server
    /// accepts connections) on a free port; a port taken between choosing and
    /// binding it is retried with another.
    async fn start_server(&mut self) -> anyhow::Result<()> {
        for attempt in 1..=3 {
            let port = free_port();
            let options = format!(
                "-p {port} -k '{sock}' -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off",
                sock = self.dir.path().display()
            );
            let out = self
                .command("pg_ctl")
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(&self.log)
                .args(["-w", "-t", "30", "-o", &options, "start"])
                .output()
                .await
                .context("run pg_ctl start")?;
            if out.status.success() {
                self.port = port;
                self.running = true;
                return Ok(());
            }
            let log = self.log_text();
            if attempt < 3 && log.contains("could not bind") {
                continue;
            }
            bail!(
                "pg_ctl start failed: {}\nthe server's log:\n{log}",
                output_text(&out)
            );
        }
        unreachable!("the last attempt returns")
    }

    /// Runs `sql` as the superuser over the Unix socket (trust), for setup.
    async fn superuser_sql(&self, sql: &str) -> anyhow::Result<String> {
        let out = tokio::process::Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .await
            .context("run psql")?;
        if !out.status.success() {
            bail!(
                "psql as superuser failed on {sql:?}: {}\nthe server's log:\n{}",
                output_text(&out),
                self.log_text()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Creates another database owned by [`PgCluster::user`] (one per service,
    /// as in production) and returns its URL.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            bail!("database name {name:?}: letters, digits and `_` only");
        }
        self.superuser_sql(&format!("CREATE DATABASE {name} OWNER {}", self.user))
            .await?;
        Ok(self.url_for(name))
    }

    /// The client URL of database `name` in this cluster.
    pub fn url_for(&self, name: &str) -> String {
        format!(
            "postgres://{}:{}@127.0.0.1:{}/{name}",
            self.user, self.password, self.port
        )
    }

    /// Runs `sql` with `psql` through [`PgCluster::url`] (TCP, password), as
    /// a client would; returns the rows unaligned (`|` between columns, one
    /// row a line).
    pub async fn psql(&self, sql: &str) -> anyhow::Result<String> {
        self.psql_url(&self.url, sql).await
    }

    /// As [`PgCluster::psql`], against any URL.
    pub async fn psql_url(&self, url: &str, sql: &str) -> anyhow::Result<String> {
        let out = tokio::process::Command::new(self.bin.join("psql"))
            .arg(url)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .await
            .context("run psql")?;
        if !out.status.success() {
            bail!("psql failed on {sql:?}: {}", output_text(&out).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Stops the server now (`pg_ctl stop -m immediate`), reporting a failure
    /// that a drop would swallow.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop_server()
    }

    fn stop_server(&mut self) -> anyhow::Result<()> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        let pg_ctl = self.bin.join("pg_ctl");
        let mut cmd = if let Some(runuser) = &self.runuser {
            let mut cmd = std::process::Command::new(runuser);
            cmd.args(["-u", "postgres", "--"]).arg(pg_ctl);
            cmd
        } else {
            std::process::Command::new(pg_ctl)
        };
        let out = cmd
            .current_dir(self.dir.path())
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .output()
            .context("run pg_ctl stop")?;
        if !out.status.success() {
            bail!(
                "pg_ctl stop failed: {}\nthe server's log:\n{}",
                output_text(&out),
                self.log_text()
            );
        }
        Ok(())
    }

    /// The temporary directory holding the cluster, its socket and its log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the server logged so far.
    pub fn log_text(&self) -> String {
        read_log(&self.log)
    }
}

/// The cluster of this test process, with the pipe that keeps its watchdog
/// waiting.
struct Shared {
    cluster: PgCluster,
    _watchdog: std::process::ChildStdin,
}

static SHARED: tokio::sync::OnceCell<Shared> = tokio::sync::OnceCell::const_new();

/// Databases handed out so far, for unique names.
static DATABASES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The cluster this test process shares, started on first use (about a
/// second) and stopped by its watchdog when the process exits. Without
/// PostgreSQL installed, every caller gets the error saying what to install.
pub async fn shared() -> anyhow::Result<&'static PgCluster> {
    let shared = SHARED
        .get_or_try_init(|| async {
            let cluster = PgCluster::start().await?;
            let watchdog = cluster.watchdog()?;
            Ok::<_, anyhow::Error>(Shared {
                cluster,
                _watchdog: watchdog,
            })
        })
        .await?;
    Ok(&shared.cluster)
}

/// A new, empty database in the [`shared`] cluster, owned by its role, named
/// `<prefix>_<n>`; returns its URL. One per test keeps tests apart.
pub async fn fresh_database(prefix: &str) -> anyhow::Result<String> {
    let cluster = shared().await?;
    let n = DATABASES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    cluster.create_database(&format!("{prefix}_{n}")).await
}

impl PgCluster {
    /// Starts the process that stops this cluster and deletes its directory
    /// once the returned pipe closes (when this process exits, whatever the
    /// way): for a cluster that is never dropped.
    fn watchdog(&self) -> anyhow::Result<std::process::ChildStdin> {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new("sh");
        // $1: the directory to delete; the rest: the stop command.
        cmd.arg("-c")
            .arg(
                "d=$1; shift; trap '' INT TERM HUP; cat >/dev/null; \
                 \"$@\" >/dev/null 2>&1; rm -rf \"$d\"",
            )
            .arg("pg-watchdog")
            .arg(self.dir.path());
        if let Some(runuser) = &self.runuser {
            cmd.arg(runuser).args(["-u", "postgres", "--"]);
        }
        cmd.arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            // Its own process group: a Ctrl-C at the terminal reaches the
            // tests, not the watchdog that must clean up after them.
            .process_group(0);
        let mut child = cmd.spawn().context("start the PostgreSQL watchdog (sh)")?;
        child.stdin.take().context("the watchdog's stdin is piped")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "PostgreSQL log ({}):\n{}",
                self.log.display(),
                self.log_text()
            );
        }
        if let Err(e) = self.stop_server() {
            eprintln!("{e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the child process of [`the_shared_cluster_stops_when_its_process_exits`].
    const CHILD: &str = "TRAFEGO_PG_HARNESS_CHILD";

    /// The shared cluster is never dropped: its watchdog must stop it and
    /// delete its directory when the process exits. A child run of this test
    /// binary starts it, prints where it is, and exits; then nothing listens
    /// there and the directory is gone (waited for, bounded: the watchdog is
    /// the child's, not ours to wait on).
    #[test]
    fn the_shared_cluster_stops_when_its_process_exits() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::child_starts_the_shared_cluster",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.strip_prefix("SHARED "))
            .unwrap_or_else(|| panic!("the child printed no cluster: {stdout}"));
        let (port, dir) = line.split_once(' ').unwrap();
        let port: u16 = port.parse().unwrap();
        let dir = PathBuf::from(dir);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            if !listening && !dir.exists() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "30 s after its process exited the shared cluster still runs \
                 (listening: {listening}, {} exists: {})",
                dir.display(),
                dir.exists()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// The child side of the test above: does nothing unless run as that child.
    #[tokio::test]
    async fn child_starts_the_shared_cluster() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let pg = shared().await.unwrap_or_else(|e| panic!("{e:#}"));
        let url = fresh_database("child").await.unwrap();
        assert_eq!(pg.psql_url(&url, "SELECT 1").await.unwrap(), "1");
        println!("SHARED {} {}", pg.port, pg.dir().display());
    }

    #[test]
    fn a_machine_without_postgresql_is_told_what_to_install() {
        let empty = tempfile::tempdir().unwrap();
        let err = pg_bin_dir(empty.path()).unwrap_err().to_string();
        assert!(
            err.contains("apt-get install postgresql libpq-dev"),
            "{err}"
        );
        let err = pg_bin_dir(&empty.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PostgreSQL is not installed"), "{err}");
    }

    #[test]
    fn the_newest_version_with_all_programs_wins() {
        let root = tempfile::tempdir().unwrap();
        let make = |version: &str, programs: &[&str]| {
            let bin = root.path().join(version).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            for p in programs {
                std::fs::write(bin.join(p), "").unwrap();
            }
        };
        make("9.6", &["initdb", "pg_ctl", "psql"]);
        make("15", &["initdb", "pg_ctl", "psql"]);
        make("17", &["initdb"]);
        make("common", &["initdb", "pg_ctl", "psql"]);
        assert_eq!(
            pg_bin_dir(root.path()).unwrap(),
            root.path().join("15").join("bin")
        );
    }
}
