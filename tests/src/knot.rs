//! Knot DNS for tests: a real `knotd` serving one zone on a free loopback
//! port, with a TSIG key that alone may update the zone or transfer it, and
//! the Knot client tools (`kdig`, `knsupdate`) the tests use to query, transfer
//! and update any DNS server on loopback (the PowerDNS harness uses them too,
//! which is why they live here). The RFC 2136 provider's tests run against it.
//!
//! It needs the Debian packages `knot` and `knot-dnsutils`; without them it
//! fails with a message saying what to install, it never skips. It must never
//! leave `knotd` running (the handle kills it on drop, also when a test
//! panics), touch anything outside its temporary directory and the loopback
//! port it picked, nor write to the zone file it was given (updates live in
//! Knot's journal and in memory only).

use std::fmt;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a server may take to answer before a harness gives up on it.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause between two readiness attempts (each attempt is a fresh connect
/// that the server refuses at once until it listens).
pub(crate) const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// A TSIG key (RFC 8945): what a client signs its messages with and what a
/// server checks before it lets the client update or transfer a zone.
#[derive(Clone, PartialEq, Eq)]
pub struct TsigKey {
    /// The key's name, as both sides know it (`trafego-key`).
    pub name: String,
    /// The HMAC algorithm as Knot, PowerDNS and BIND spell it (`hmac-sha256`).
    pub algorithm: String,
    /// The shared secret, base64.
    pub secret: String,
}

impl TsigKey {
    /// A new `hmac-sha256` key named `name` with 32 random bytes of secret.
    /// Two keys generated with the same name are the "wrong key" of each other.
    pub fn generate(name: &str) -> TsigKey {
        TsigKey {
            name: name.to_string(),
            algorithm: "hmac-sha256".to_string(),
            secret: base64(&rand::random::<[u8; 32]>()),
        }
    }

    /// The key as `kdig -y` and `knsupdate -y` take it: `algorithm:name:secret`.
    pub fn tool_arg(&self) -> String {
        format!("{}:{}:{}", self.algorithm, self.name, self.secret)
    }
}

/// Shows the name and algorithm only, so a failing assertion never prints the secret.
impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// Standard base64 with padding (RFC 4648), for TSIG secrets; one function is
/// not worth a crate.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(
                    ALPHABET[usize::try_from((n >> shift) & 63).unwrap()],
                ));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Finds an executable on PATH or in the sbin directories packages use, or
/// says which Debian package to install: the server tests never skip.
pub fn tool(name: &str, package: &str) -> anyhow::Result<PathBuf> {
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

/// A loopback port free for both UDP and TCP right now, for a DNS server.
pub fn free_dns_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback UDP port");
        let port = udp.local_addr().expect("local addr").port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port was free for both UDP and TCP");
}

/// What a DNS server answered, as `kdig` or `knsupdate` printed it.
#[derive(Debug, Clone)]
pub struct DnsReply {
    /// The reply's RCODE as the Knot tools print it: `NOERROR`, `REFUSED`,
    /// `NOTAUTH`… When the reply carries a TSIG error they print that error
    /// (`BADSIG`, `BADKEY`) here instead of the header's RCODE, which is then
    /// `NOTAUTH` (RFC 8945 section 5.2). `NOREPLY` when nothing answered.
    pub status: String,
    /// The error field of the reply's TSIG record, when it has one.
    pub tsig_error: Option<String>,
    /// The records of the answer (or of the whole transfer), one per line as
    /// `name ttl class type rdata` with single spaces, sorted; the TSIG record
    /// left out.
    pub records: Vec<String>,
    /// Everything the tool printed, for assertion messages.
    pub output: String,
}

impl DnsReply {
    /// Whether the server answered NOERROR.
    pub fn is_ok(&self) -> bool {
        self.status == "NOERROR"
    }

    fn parse(out: &std::process::Output) -> DnsReply {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let between = |text: &str, start: &str, end: char| -> Option<String> {
            let rest = &text[text.find(start)? + start.len()..];
            Some(
                rest[..rest.find(end).unwrap_or(rest.len())]
                    .trim()
                    .to_string(),
            )
        };
        let status = between(&stdout, "status: ", ';')
            .or_else(|| between(&stderr, "replied with error '", '\''))
            .or_else(|| between(&stderr, "failed with error '", '\''))
            .unwrap_or_else(|| {
                if out.status.success() {
                    "NOERROR".to_string()
                } else {
                    "NOREPLY".to_string()
                }
            });
        let mut records = Vec::new();
        let mut tsig_error = None;
        for line in stdout.lines().map(str::trim) {
            if line.is_empty() || line.starts_with(';') || line == "Answer:" {
                continue;
            }
            let tokens: Vec<&str> = line.split_whitespace().collect();
            if tokens.get(3) == Some(&"TSIG") {
                tsig_error = tokens
                    .iter()
                    .skip(5)
                    .find(|t| ["NOERROR", "BADSIG", "BADKEY", "BADTIME", "BADTRUNC"].contains(t))
                    .map(|t| (*t).to_string());
            } else if tokens.len() >= 4 {
                records.push(tokens.join(" "));
            }
        }
        DnsReply {
            status,
            tsig_error,
            records,
            output: format!("{stdout}{stderr}"),
        }
    }
}

/// Runs `kdig @127.0.0.1 -p port` with `args` (signed with `key` if given):
/// one try, a one-second timeout.
pub async fn kdig(port: u16, key: Option<&TsigKey>, args: &[&str]) -> DnsReply {
    let mut cmd = tokio::process::Command::new(tool("kdig", "knot-dnsutils").unwrap());
    cmd.arg("@127.0.0.1")
        .args(["-p", &port.to_string(), "+timeout=1", "+retry=0"]);
    if let Some(key) = key {
        cmd.args(["-y", &key.tool_arg()]);
    }
    let out = cmd.args(args).output().await.expect("run kdig");
    let mut reply = DnsReply::parse(&out);
    reply.records.sort();
    reply
}

/// The RDATA of the answer to `name rtype`, one line per record, sorted (as
/// `kdig +short` prints it).
pub async fn dig_short(port: u16, name: &str, rtype: &str) -> Vec<String> {
    let reply = kdig(port, None, &["+short", name, rtype]).await;
    let mut lines: Vec<String> = reply
        .output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// A zone transfer (AXFR over TCP) of `zone`, signed with `key` if given. The
/// closing SOA is left out of `records`, so each record of the zone appears once.
pub async fn axfr(port: u16, zone: &str, key: Option<&TsigKey>) -> DnsReply {
    let mut cmd = tokio::process::Command::new(tool("kdig", "knot-dnsutils").unwrap());
    cmd.arg("@127.0.0.1")
        .args(["-p", &port.to_string(), "+timeout=2", "+retry=0"]);
    if let Some(key) = key {
        cmd.args(["-y", &key.tool_arg()]);
    }
    let out = cmd.args([zone, "AXFR"]).output().await.expect("run kdig");
    let mut reply = DnsReply::parse(&out);
    if reply.records.len() >= 2 && reply.records.first() == reply.records.last() {
        reply.records.pop();
    }
    reply.records.sort();
    reply
}

/// Sends one DNS UPDATE for `zone` with `knsupdate`, signed with `key` if
/// given. `updates` are knsupdate commands without the leading `update`
/// (`add www.example.com. 60 A 192.0.2.1`, `delete old.example.com. A`);
/// names should be absolute.
pub async fn knsupdate(port: u16, zone: &str, key: Option<&TsigKey>, updates: &[&str]) -> DnsReply {
    use tokio::io::AsyncWriteExt;
    let mut script = format!("server 127.0.0.1 {port}\nzone {zone}\n");
    for update in updates {
        script.push_str(&format!("update {update}\n"));
    }
    script.push_str("send\nanswer\n");
    let mut cmd = tokio::process::Command::new(tool("knsupdate", "knot-dnsutils").unwrap());
    cmd.args(["-t", "2", "-r", "0"]);
    if let Some(key) = key {
        cmd.args(["-y", &key.tool_arg()]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run knsupdate");
    let mut stdin = child.stdin.take().expect("knsupdate stdin");
    stdin
        .write_all(script.as_bytes())
        .await
        .expect("write to knsupdate");
    drop(stdin);
    let out = child.wait_with_output().await.expect("wait for knsupdate");
    DnsReply::parse(&out)
}

/// Reads a server's log file for an error message (empty if it is missing).
pub(crate) fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A running `knotd` serving one zone on `127.0.0.1:port`, where updates and
/// transfers need [`KnotServer::key`]; killed when dropped.
pub struct KnotServer {
    /// The DNS port (UDP and TCP) on 127.0.0.1.
    pub port: u16,
    /// The zone it serves, without the trailing dot.
    pub zone: String,
    /// The only key allowed to update and transfer the zone.
    pub key: TsigKey,
    child: Child,
    conf: PathBuf,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl KnotServer {
    /// Starts `knotd` for `zone` (`example.com`) with a SOA (serial 1), an NS
    /// `ns1.<zone>.` and its A record, plus `records` (zone-file lines, names
    /// relative to the zone or absolute), and waits until it answers the SOA.
    pub async fn start(zone: &str, records: &[&str]) -> anyhow::Result<KnotServer> {
        let knotd = tool("knotd", "knot")?;
        tool("kdig", "knot-dnsutils")?;
        let zone = zone.trim_end_matches('.').to_string();
        let dir = tempfile::Builder::new()
            .prefix("trafego-knot-")
            .tempdir()
            .context("create a temporary directory for knotd")?;
        let path = |name: &str| dir.path().join(name);
        for sub in ["run", "storage"] {
            std::fs::create_dir_all(path(sub))?;
        }
        let mut zone_text = format!(
            "$ORIGIN {zone}.\n$TTL 300\n\
             @ SOA ns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 300\n\
             @ NS ns1.{zone}.\n\
             ns1 A 192.0.2.1\n"
        );
        for record in records {
            zone_text.push_str(record);
            zone_text.push('\n');
        }
        let zone_file = path("zone.db");
        std::fs::write(&zone_file, zone_text)?;
        let key = TsigKey::generate("trafego-key");
        let port = free_dns_port();
        // zonefile-sync -1 with journal-content changes: an update is applied
        // in memory and kept in the journal, never written to the zone file,
        // and a transfer shows it at once.
        let conf_text = format!(
            r#"server:
    listen: 127.0.0.1@{port}
    rundir: "{run}"
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1

log:
  - target: stderr
    any: info

database:
    storage: "{storage}"

key:
  - id: {key_name}
    algorithm: {algorithm}
    secret: {secret}

acl:
  - id: with-key
    key: {key_name}
    action: [update, transfer]

template:
  - id: default
    storage: "{storage}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: changes

zone:
  - domain: {zone}
    file: "{zone_file}"
    acl: with-key
"#,
            run = path("run").display(),
            storage = path("storage").display(),
            key_name = key.name,
            algorithm = key.algorithm,
            secret = key.secret,
            zone_file = zone_file.display(),
        );
        let conf = path("knot.conf");
        std::fs::write(&conf, conf_text)?;
        let log = path("knotd.log");
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(knotd)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("start knotd")?;
        let mut server = KnotServer {
            port,
            zone,
            key,
            child,
            conf,
            log,
            dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// Polls with a SOA query over TCP (a refused connect fails at once) until
    /// Knot answers it, for at most [`READY_TIMEOUT`].
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "knotd exited ({status}) before it answered; its log:\n{}",
                    self.log_text()
                );
            }
            let reply = kdig(self.port, None, &["+tcp", &self.zone, "SOA"]).await;
            if reply.is_ok() && !reply.records.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "knotd did not answer the SOA of {} within {READY_TIMEOUT:?}; last reply:\n{}\nits log:\n{}",
                    self.zone,
                    reply.output,
                    self.log_text()
                );
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// `127.0.0.1:port`, the form `RFC2136_SERVER` takes.
    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The temporary directory holding its configuration, zone file and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything knotd logged so far.
    pub fn log_text(&self) -> String {
        read_log(&self.log)
    }

    /// Runs `knotc` against this server's control socket (`zone-status`,
    /// `zone-read`…) and returns what it printed.
    pub async fn knotc(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = tokio::process::Command::new(tool("knotc", "knot")?)
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .await
            .context("run knotc")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            bail!(
                "knotc {args:?} failed: {text}\nknotd log:\n{}",
                self.log_text()
            );
        }
        Ok(text)
    }
}

impl Drop for KnotServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("knotd log ({}):\n{}", self.log.display(), self.log_text());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
    }

    #[test]
    fn a_missing_tool_names_its_package() {
        let err = tool("trafego-no-such-tool", "knot")
            .unwrap_err()
            .to_string();
        assert!(err.contains("apt-get install knot"), "{err}");
    }

    #[test]
    fn the_debug_form_of_a_key_hides_its_secret() {
        let key = TsigKey::generate("k");
        assert!(!format!("{key:?}").contains(&key.secret));
    }
}
