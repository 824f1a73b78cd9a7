//! The zone file the zone-file provider writes loads in BIND and Knot: the
//! file made at first start, with the default name server and with one inside
//! the zone (and its glue), and the file after writes of every record type,
//! an update and a delete. Each version is checked with `named-checkzone`
//! (Debian `bind9-utils`) and `kzonecheck` (Debian `knot-dnssecutils`); both
//! must accept it without a warning.
//!
//! Without those tools the test fails with a message saying so, rather than
//! skipping. `named-checkzone` runs with `-i local`: integrity checks of the
//! names inside the zone only, so no lookup ever leaves the machine.

use std::path::{Path, PathBuf};
use std::process::Command;

use cache_service::provider::{DnsProvider, ProviderRecord, WriteOp};
use trafego_proto::validate::{RecordSpec, ValidRecordInput};

/// Finds an executable on PATH or in the sbin directories packages use.
fn tool(name: &str, package: &str) -> PathBuf {
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
        "`{name}` is not installed: `apt-get install {package}`; this test is not skipped on purpose"
    );
}

/// Runs both checkers on `file` (zone example.com); panics with their output
/// unless both accept it and neither warns.
fn assert_loads(file: &Path, what: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    let bind = Command::new(tool("named-checkzone", "bind9-utils"))
        .args(["-i", "local", "example.com"])
        .arg(file)
        .output()
        .expect("run named-checkzone");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&bind.stdout),
        String::from_utf8_lossy(&bind.stderr)
    );
    let extra: Vec<&str> = out
        .lines()
        .filter(|l| !l.contains("loaded serial") && l.trim() != "OK")
        .collect();
    assert!(
        bind.status.success() && extra.is_empty(),
        "named-checkzone refuses or warns about {what}:\n{out}\n--- file ---\n{text}"
    );
    let knot = Command::new(tool("kzonecheck", "knot-dnssecutils"))
        .args(["-o", "example.com"])
        .arg(file)
        .output()
        .expect("run kzonecheck");
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&knot.stdout),
        String::from_utf8_lossy(&knot.stderr)
    );
    assert!(
        knot.status.success() && out.trim().is_empty(),
        "kzonecheck refuses or warns about {what}:\n{out}\n--- file ---\n{text}"
    );
}

/// The zone-file provider as cache-service builds it from these flags, its
/// file in `dir` (created now: this is the first start).
fn first_start(dir: &Path, extra: &[&str]) -> (std::sync::Arc<dyn DnsProvider>, PathBuf) {
    let file = dir.join("example.com.zone");
    let path = file.display().to_string();
    let mut args = vec!["--zone", "example.com", "--zonefile-path", path.as_str()];
    args.extend_from_slice(extra);
    let provider = cache_service::Config::for_test(&args)
        .provider()
        .expect("provider");
    assert!(file.exists());
    (provider, file)
}

fn input(rtype: &str, name: &str, content: &str, priority: Option<u32>) -> WriteOp {
    WriteOp::Create(ValidRecordInput {
        spec: RecordSpec::new("", rtype, name, content, 300, false, priority).unwrap(),
        comment: String::new(),
    })
}

#[test]
fn the_first_start_file_loads_with_the_default_name_server() {
    let dir = trafego_tests::tempdir();
    let (_p, file) = first_start(dir.path(), &[]);
    assert_loads(&file, "the first-start zone file");
}

#[test]
fn the_first_start_file_loads_with_a_name_server_inside_the_zone() {
    let dir = trafego_tests::tempdir();
    let (_p, file) = first_start(
        dir.path(),
        &[
            "--zonefile-ns",
            "ns1.example.com",
            "--zonefile-ns-address",
            "192.0.2.53,2001:db8::53",
        ],
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("@ 300 IN NS ns1.example.com."), "{text}");
    assert_loads(&file, "the first-start zone file with glue");
}

#[tokio::test]
async fn the_file_loads_after_writes_of_every_type() {
    let dir = trafego_tests::tempdir();
    let (p, file) = first_start(dir.path(), &[]);
    let ops = vec![
        input("A", "www.example.com", "192.0.2.10", None),
        input("AAAA", "www.example.com", "2001:db8::10", None),
        input("CNAME", "alias.example.com", "www.example.com", None),
        input("CNAME", "*.apps.example.com", "www.example.com", None),
        input(
            "TXT",
            "txt.example.com",
            "v=spf1 -all; \"quoted\" \\ é",
            None,
        ),
        input("TXT", "long.example.com", &"t".repeat(400), None),
        input("A", "mail.example.com", "192.0.2.25", None),
        input("MX", "example.com", "mail.example.com", Some(10)),
        input("A", "sip.example.com", "192.0.2.26", None),
        input(
            "SRV",
            "_sip._tcp.example.com",
            "5 5060 sip.example.com",
            Some(10),
        ),
        input("CAA", "example.com", "0 issue \"letsencrypt.org\"", None),
        input("NS", "example.com", "ns2.example.net", None),
        input("NS", "sub.example.com", "ns1.example.net", None),
    ];
    let n = ops.len();
    let (results, _) = p.apply(ops).await;
    let created: Vec<ProviderRecord> = results
        .into_iter()
        .map(|r| r.expect("create").expect("a record"))
        .collect();
    assert_eq!(created.len(), n);
    assert_loads(&file, "the zone file after creates");

    let www = created
        .iter()
        .find(|r| r.rtype == "A" && r.name == "www.example.com")
        .unwrap();
    let txt = created
        .iter()
        .find(|r| r.name == "txt.example.com")
        .unwrap();
    let (results, _) = p
        .apply(vec![
            WriteOp::Update {
                id: www.id.clone(),
                input: ValidRecordInput {
                    spec: RecordSpec::new(
                        "",
                        "A",
                        "www.example.com",
                        "192.0.2.20",
                        300,
                        false,
                        None,
                    )
                    .unwrap(),
                    comment: String::new(),
                },
            },
            WriteOp::Delete { id: txt.id.clone() },
        ])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_loads(&file, "the zone file after an update and a delete");
}
