//! The zone-file provider's output served by a real Knot DNS: every record
//! type written through `ZoneFileProvider` must load in `knotd` and resolve
//! with `kdig` to what was written, and an update must show after a reload.
//!
//! The test needs `knotd`, `knotc` and `kdig` (Debian/Ubuntu packages `knot`
//! and `knot-dnsutils`); without them it fails with a message saying so rather
//! than skipping. It must never leave `knotd` running (a guard kills it, also
//! on panic) and never touch anything outside its temp directory and the
//! loopback port it picked.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cache_service::provider::zonefile::{ZoneFileConfig, ZoneFileProvider};
use cache_service::provider::{DnsProvider, ProviderRecord, WriteOp};
use trafego_proto::validate::{Hostname, RecordSpec, ValidRecordInput};

/// Finds an executable on PATH or in the sbin directories packages use.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin", "/usr/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "`{name}` is not installed: this test needs Knot DNS (`apt-get install knot knot-dnsutils`); \
         it is not skipped on purpose"
    );
}

/// A loopback port free for both UDP and TCP right now.
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("no loopback port was free for both UDP and TCP");
}

/// The running `knotd`, killed when dropped (also when the test panics).
struct Knot {
    child: Child,
    conf: PathBuf,
    log: PathBuf,
    zone_file: PathBuf,
    port: u16,
}

impl Knot {
    fn start(dir: &Path, zone_file: &Path) -> Knot {
        let knotd = tool("knotd");
        let port = free_port();
        for sub in ["run", "storage"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        // zonefile-sync -1: knotd must never write to the provider's file.
        let conf_text = format!(
            r#"server:
    listen: 127.0.0.1@{port}
    rundir: "{run}"

log:
  - target: stderr
    any: info

database:
    storage: "{storage}"

template:
  - id: default
    storage: "{storage}"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none

zone:
  - domain: example.com
    file: "{zone}"
"#,
            run = dir.join("run").display(),
            storage = dir.join("storage").display(),
            zone = zone_file.display(),
        );
        let conf = dir.join("knot.conf");
        std::fs::write(&conf, conf_text).unwrap();
        let log = dir.join("knotd.log");
        let child = Command::new(knotd)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("knotd.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start knotd");
        let mut knot = Knot {
            child,
            conf,
            log,
            zone_file: zone_file.to_path_buf(),
            port,
        };
        knot.wait_until(
            |k| !k.dig("example.com", "SOA").is_empty(),
            "answers the SOA",
        );
        knot
    }

    /// Polls (bounded) until `ready` holds.
    fn wait_until(&mut self, ready: impl Fn(&Knot) -> bool, what: &str) {
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "knotd exited ({status}) before it {what}; its log:\n{}",
                    self.log_text()
                );
            }
            if ready(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "knotd never {what}; its log:\n{}\nthe zone file:\n{}",
            self.log_text(),
            std::fs::read_to_string(&self.zone_file).unwrap_or_default()
        );
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// kdig's answer lines for `name type`, with `extra` options.
    fn kdig(&self, extra: &[&str], name: &str, rtype: &str) -> Vec<String> {
        let out = Command::new(tool("kdig"))
            .arg("@127.0.0.1")
            .args(["-p", &self.port.to_string(), "+timeout=1", "+retry=0"])
            .args(extra)
            .args([name, rtype])
            .output()
            .expect("run kdig");
        let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with(';'))
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    }

    /// The answer section's RDATA, one line per record, sorted.
    fn dig(&self, name: &str, rtype: &str) -> Vec<String> {
        self.kdig(&["+short"], name, rtype)
    }

    fn reload(&mut self) {
        let out = Command::new(tool("knotc"))
            .arg("-c")
            .arg(&self.conf)
            .args(["zone-reload", "example.com"])
            .output()
            .expect("run knotc");
        assert!(
            out.status.success(),
            "knotc zone-reload failed: {}{}\nknotd log:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
    }
}

impl Drop for Knot {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn input(rtype: &str, name: &str, content: &str, priority: Option<u32>) -> ValidRecordInput {
    ValidRecordInput {
        spec: RecordSpec::new("", rtype, name, content, 1, false, priority).unwrap(),
        comment: String::new(),
    }
}

/// The bytes of a TXT answer as kdig prints it: quoted character-strings with
/// `\X` and decimal `\DDD` escapes, concatenated.
fn txt_bytes(line: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = line.chars();
    let mut in_quote = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => in_quote = !in_quote,
            '\\' if in_quote => {
                let next = chars.next().unwrap();
                if next.is_ascii_digit() {
                    let digits: String = std::iter::once(next)
                        .chain(chars.by_ref().take(2))
                        .collect();
                    out.push(digits.parse::<u8>().unwrap());
                } else {
                    let mut buf = [0; 4];
                    out.extend_from_slice(next.encode_utf8(&mut buf).as_bytes());
                }
            }
            c if in_quote => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn knot_serves_what_the_provider_writes() {
    // Fail early, and clearly, when Knot is not installed.
    for name in ["knotd", "knotc", "kdig"] {
        tool(name);
    }
    let dir = tempfile::tempdir().unwrap();
    let zone_file = dir.path().join("zones").join("example.com.zone");
    let zone = Hostname::parse("zone", "example.com").unwrap();
    let provider = ZoneFileProvider::open(ZoneFileConfig::new(&zone_file, zone)).unwrap();

    let long_txt = format!("{}{}", "a".repeat(250), "b".repeat(100));
    let txt = r#"v=spf1 include:_spf.example.net -all; "quoted" \ and é"#;
    let ops = vec![
        WriteOp::Create(input("A", "www.example.com", "192.0.2.10", None)),
        WriteOp::Create(input("AAAA", "www.example.com", "2001:db8::10", None)),
        WriteOp::Create(input("CNAME", "alias.example.com", "www.example.com", None)),
        WriteOp::Create(input(
            "CNAME",
            "*.apps.example.com",
            "www.example.com",
            None,
        )),
        WriteOp::Create(input("TXT", "txt.example.com", txt, None)),
        WriteOp::Create(input("TXT", "long.example.com", &long_txt, None)),
        WriteOp::Create(input("MX", "example.com", "mail.example.com", Some(10))),
        WriteOp::Create(input(
            "SRV",
            "_sip._tcp.example.com",
            "5 5060 sip.example.com",
            Some(10),
        )),
        WriteOp::Create(input(
            "CAA",
            "example.com",
            "0 issue \"letsencrypt.org\"",
            None,
        )),
        WriteOp::Create(input("NS", "example.com", "ns2.example.net", None)),
        WriteOp::Create(input("NS", "sub.example.com", "ns1.example.net", None)),
    ];
    let (results, _) = provider.apply(ops).await;
    let created: Vec<ProviderRecord> = results
        .into_iter()
        .map(|r| r.expect("create").expect("a record"))
        .collect();

    let mut knot = Knot::start(dir.path(), &zone_file);
    let q = |knot: &Knot, name: &str, rtype: &str| knot.dig(name, rtype);
    assert_eq!(q(&knot, "www.example.com", "A"), ["192.0.2.10"]);
    assert_eq!(q(&knot, "www.example.com", "AAAA"), ["2001:db8::10"]);
    assert_eq!(q(&knot, "alias.example.com", "CNAME"), ["www.example.com."]);
    assert_eq!(
        q(&knot, "x.apps.example.com", "CNAME"),
        ["www.example.com."]
    );
    let txt_answer = q(&knot, "txt.example.com", "TXT");
    assert_eq!(txt_answer.len(), 1, "{txt_answer:?}");
    assert_eq!(String::from_utf8(txt_bytes(&txt_answer[0])).unwrap(), txt);
    let long_answer = q(&knot, "long.example.com", "TXT");
    assert_eq!(long_answer.len(), 1, "{long_answer:?}");
    assert_eq!(
        long_answer[0],
        format!(
            "\"{}{}\" \"{}\"",
            "a".repeat(250),
            "b".repeat(5),
            "b".repeat(95)
        ),
        "a TXT over 255 bytes is split into character-strings"
    );
    assert_eq!(q(&knot, "example.com", "MX"), ["10 mail.example.com."]);
    assert_eq!(
        q(&knot, "_sip._tcp.example.com", "SRV"),
        ["10 5 5060 sip.example.com."]
    );
    assert_eq!(
        q(&knot, "example.com", "CAA"),
        ["0 issue \"letsencrypt.org\""]
    );
    assert_eq!(
        q(&knot, "example.com", "NS"),
        ["localhost.", "ns2.example.net."]
    );
    // A delegation answers with a referral in the authority section.
    let referral = knot.kdig(&["+noall", "+authority"], "host.sub.example.com", "A");
    assert_eq!(referral.len(), 1, "{referral:?}");
    assert!(
        referral[0].starts_with("sub.example.com.")
            && referral[0].ends_with("NS\tns1.example.net."),
        "{referral:?}"
    );
    let soa = q(&knot, "example.com", "SOA");
    assert!(
        soa[0].starts_with("localhost. hostmaster.example.com. 2 "),
        "{soa:?}"
    );

    // Update the A record and delete the TXT, then reload.
    let www_a = created.iter().find(|r| r.rtype == "A").unwrap();
    let txt_rec = created
        .iter()
        .find(|r| r.name == "txt.example.com")
        .unwrap();
    let (results, _) = provider
        .apply(vec![
            WriteOp::Update {
                id: www_a.id.clone(),
                input: input("A", "www.example.com", "192.0.2.20", None),
            },
            WriteOp::Delete {
                id: txt_rec.id.clone(),
            },
        ])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    knot.reload();
    knot.wait_until(
        |k| k.dig("www.example.com", "A") == ["192.0.2.20"],
        "served the updated A record",
    );
    assert!(q(&knot, "txt.example.com", "TXT").is_empty());
    let soa = q(&knot, "example.com", "SOA");
    assert!(
        soa[0].starts_with("localhost. hostmaster.example.com. 3 "),
        "{soa:?}"
    );
    // The other records are still served after the rewrite.
    assert_eq!(
        q(&knot, "_sip._tcp.example.com", "SRV"),
        ["10 5 5060 sip.example.com."]
    );
    assert!(
        !knot.log_text().contains("error"),
        "knotd logged an error:\n{}",
        knot.log_text()
    );
    drop(knot);
}
