//! Crash safety of the zone-file provider: a writer killed with SIGKILL at any
//! moment leaves either the old zone file or the new one, never a torn file.
//!
//! The test re-runs its own binary as a writer child that keeps flipping a
//! 5,000-record zone between two versions through `ZoneFileProvider::apply`;
//! the parent kills it at varied moments and checks what is on disk. At least
//! one kill must land mid-write, which the writer's temp file outliving it
//! shows (each write renames that file into place as its last step); after
//! such a kill the file must be the one the last complete write left. It must
//! never touch anything outside its temp directory, and never leave a child
//! running (each one is killed and reaped before the next round).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cache_service::provider::zonefile::{ZoneFileConfig, ZoneFileProvider};
use cache_service::provider::{DnsProvider, ProviderRecord, WriteOp};
use trafego_proto::validate::{Hostname, RecordSpec, ValidRecordInput};

/// Set in the child's environment to the zone file path: act as the writer.
const CHILD_ENV: &str = "TRAFEGO_ZONEFILE_CRASH_WRITER";
/// Records in each version of the zone.
const RECORDS: usize = 5_000;
/// What the child prints once it has listed the zone and starts writing.
const READY: &str = "TRAFEGO-WRITER-READY";
/// What the child prints after each completed apply.
const WROTE: &str = "TRAFEGO-WRITER-WROTE";
/// The name of this test, for re-running only it in the child.
const TEST_NAME: &str = "sigkill_mid_write_leaves_the_old_or_the_new_file";

fn zone() -> Hostname {
    Hostname::parse("zone", "example.com").unwrap()
}

fn open(path: &Path) -> ZoneFileProvider {
    ZoneFileProvider::open(ZoneFileConfig::new(path, zone())).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Record `i` of version `v` (0 or 1): half A records, half TXT.
fn spec(v: usize, i: usize) -> ValidRecordInput {
    let name = format!("h{i}.example.com");
    let spec = if i.is_multiple_of(2) {
        let content = format!("10.{v}.{}.{}", i / 256, i % 256);
        RecordSpec::new("", "A", &name, &content, 300, false, None)
    } else {
        let content = format!("version {v} of record {i}; \"quoted\" and spaced");
        RecordSpec::new("", "TXT", &name, &content, 300, false, None)
    };
    ValidRecordInput {
        spec: spec.unwrap(),
        comment: String::new(),
    }
}

/// What a complete version lists as (type, name, content), the NS included.
fn expected(v: usize) -> BTreeSet<(String, String, String)> {
    let mut set: BTreeSet<_> = (0..RECORDS)
        .map(|i| {
            let s = spec(v, i).spec;
            (
                s.rtype.as_str().to_string(),
                s.name.as_str().to_string(),
                s.content,
            )
        })
        .collect();
    set.insert(("NS".into(), "example.com".into(), "localhost".into()));
    set
}

fn as_set(records: &[ProviderRecord]) -> BTreeSet<(String, String, String)> {
    records
        .iter()
        .map(|r| (r.rtype.clone(), r.name.clone(), r.content.clone()))
        .collect()
}

/// The record index in `h<i>.example.com`.
fn index(name: &str) -> Option<usize> {
    name.strip_prefix('h')?
        .strip_suffix(".example.com")?
        .parse()
        .ok()
}

/// The child: flips the zone between the versions until it is killed. It
/// lists once, then takes the new ids from each apply's results.
fn writer(path: PathBuf) -> ! {
    let rt = runtime();
    let provider = open(&path);
    let mut records = rt
        .block_on(provider.list())
        .expect("the writer lists the zone")
        .records;
    println!("{READY}");
    loop {
        let current = usize::from(
            records
                .iter()
                .any(|r| r.name == "h0.example.com" && r.content == "10.1.0.0"),
        );
        let ops: Vec<WriteOp> = records
            .iter()
            .filter_map(|r| {
                index(&r.name).map(|i| WriteOp::Update {
                    id: r.id.clone(),
                    input: spec(1 - current, i),
                })
            })
            .collect();
        assert_eq!(ops.len(), RECORDS);
        let (results, _) = rt.block_on(provider.apply(ops));
        records = results
            .into_iter()
            .map(|r| r.expect("the writer's apply failed").expect("a record"))
            .collect();
        println!("{WROTE}");
    }
}

fn temp_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".trafego-tmp."))
        .count()
}

/// A running writer child and the lines it printed, as they arrive.
struct Writer {
    child: Child,
    events: mpsc::Receiver<&'static str>,
    reader: Option<std::thread::JoinHandle<()>>,
    /// Applies the child reported complete, among the events read so far.
    wrote: usize,
}

impl Writer {
    fn spawn(path: &Path) -> Writer {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                for event in [READY, WROTE] {
                    if line.contains(event) && tx.send(event).is_err() {
                        return;
                    }
                }
            }
        });
        Writer {
            child,
            events,
            reader: Some(reader),
            wrote: 0,
        }
    }

    /// Waits (bounded) for the child to print `event`.
    fn wait_for(&mut self, event: &str) {
        loop {
            match self.events.recv_timeout(Duration::from_secs(60)) {
                Ok(e) => {
                    if e == WROTE {
                        self.wrote += 1;
                    }
                    if e == event {
                        return;
                    }
                }
                Err(_) => panic!("the writer child never printed {event}"),
            }
        }
    }

    /// SIGKILLs the child, which must still be running, and returns how many
    /// applies it reported complete. Every line it printed before it died is
    /// read by then (the reader ends at the pipe's end), and it prints after
    /// each apply before starting the next one.
    fn kill(mut self) -> usize {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("the writer stopped before it was killed: {status}");
        }
        self.child.kill().unwrap(); // SIGKILL
        let status = self.child.wait().unwrap();
        assert!(!status.success(), "the writer exited on its own: {status}");
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        self.wrote + self.events.try_iter().filter(|e| *e == WROTE).count()
    }
}

impl Drop for Writer {
    /// Never leaves a child running, even when an assertion failed.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// When a round kills the writer.
#[derive(Debug)]
enum Kill {
    /// This long after the child printed that it is ready.
    AfterReady(Duration),
    /// This long after the child's temp file appeared.
    AfterTempFile(Duration),
}

#[test]
fn sigkill_mid_write_leaves_the_old_or_the_new_file() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        writer(PathBuf::from(path));
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.com.zone");
    let rt = runtime();
    {
        let provider = open(&path);
        let ops = (0..RECORDS).map(|i| WriteOp::Create(spec(0, i))).collect();
        let (results, _) = rt.block_on(provider.apply(ops));
        assert!(results.iter().all(Result::is_ok));
    }
    let versions = [expected(0), expected(1)];

    // Calibration: how long one apply of the child (5,000 updates, one
    // rewrite) takes on this machine. Its kill lands just after a completed write.
    let mut w = Writer::spawn(&path);
    w.wait_for(READY);
    let t0 = Instant::now();
    w.wait_for(WROTE);
    let cycle = t0.elapsed();
    w.kill();
    // Opens the file as the service would after the crash and returns which
    // version it holds, failing unless it is one of them, whole.
    let on_disk = |what: &dyn std::fmt::Display| -> usize {
        let provider = open(&path); // also removes a killed writer's temp file
        assert_eq!(temp_files(dir.path()), 0, "{what}: stale temp file kept");
        let records = rt
            .block_on(provider.list())
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .records;
        assert!(records.iter().all(|r| r.ttl == 300));
        let got = as_set(&records);
        versions.iter().position(|v| *v == got).unwrap_or_else(|| {
            panic!(
                "{what}: the file is neither version: {} records",
                records.len()
            )
        })
    };
    // The version on disk before the next round's writer starts.
    let mut last = on_disk(&"the calibration round");

    // Kill moments: first after the child said it is ready, as fractions of a
    // cycle (listing, computing, writing); then after its temp file appeared
    // (the new version is being written or synced), at short delays, so the
    // narrow window between creating the temp file and renaming it is hit on
    // purpose rather than by luck.
    let kills: Vec<Kill> = [0.0, 0.4, 0.8, 1.0]
        .into_iter()
        .map(|f| Kill::AfterReady(cycle.mul_f64(f)))
        .chain([0, 300, 1_000, 3_000].map(|us| Kill::AfterTempFile(Duration::from_micros(us))))
        .collect();
    // A kill landed mid-write when the writer's temp file outlived it: the
    // writer renames that file into place as the last step of each write, so
    // it is still there only if the write had begun and not finished. Should
    // none of the planned kills land so, more are made right after the temp
    // file appears, until one does (bounded).
    const EXTRA_TRIES: usize = 20;
    // The calibration's kill came after a complete write: the new version.
    let (mut flipped, mut mid_write, mut rounds) = (usize::from(last != 0), 0, 0);
    // One round: a writer killed at `kill`, then the file checked. Returns
    // whether the kill landed mid-write.
    let mut round = |kill: &Kill, n: usize| -> bool {
        let mut w = Writer::spawn(&path);
        w.wait_for(READY);
        match kill {
            Kill::AfterReady(delay) => std::thread::sleep(*delay),
            Kill::AfterTempFile(delay) => {
                let deadline = Instant::now() + (cycle * 5).max(Duration::from_secs(60));
                while temp_files(dir.path()) == 0 {
                    assert!(
                        Instant::now() < deadline,
                        "round {n}: no temp file ever appeared"
                    );
                }
                std::thread::sleep(*delay);
            }
        }
        let wrote = w.kill();
        let killed_mid_write = temp_files(dir.path()) > 0;
        let version = on_disk(&format_args!("round {n} ({kill:?})"));
        if killed_mid_write {
            // Interrupted before its rename: the file is the one the last
            // complete write left, untouched by the interrupted one.
            assert_eq!(
                version,
                (last + wrote) % 2,
                "round {n} ({kill:?}): killed mid-write after {wrote} complete writes, \
                 yet the file is not the one the last of them left"
            );
        }
        if version != last {
            flipped += 1;
            last = version;
        }
        killed_mid_write
    };
    for kill in &kills {
        mid_write += usize::from(round(kill, rounds));
        rounds += 1;
    }
    let planned = rounds;
    while mid_write == 0 && rounds < planned + EXTRA_TRIES {
        mid_write += usize::from(round(&Kill::AfterTempFile(Duration::ZERO), rounds));
        rounds += 1;
    }
    assert!(
        mid_write > 0,
        "none of {rounds} kills landed while a write was in progress (its temp file present)"
    );
    eprintln!(
        "{} kills in {:?} (one writer apply: {cycle:?}): {flipped} found the other version than \
         the kill before, {mid_write} landed mid-write (the writer's temp file outlived it, and \
         the file was the one from before that write); every file was one complete version",
        rounds + 1,
        started.elapsed()
    );
}
