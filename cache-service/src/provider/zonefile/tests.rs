//! Tests of the zone-file provider against real files in a temp directory:
//! round trips of every type, ids, serials, hand edits, escapes, conflicts,
//! broken files and concurrent applies.

use super::parse::*;
use super::*;
use crate::provider::derived_id as record_id;
use crate::provider::{MANAGED_COMMENT, ProviderRecord};
use trafego_proto::validate::RecordSpec;

mod records;

fn zone() -> Hostname {
    Hostname::parse("zone", "example.com").unwrap()
}

fn open_in(dir: &Path) -> ZoneFileProvider {
    ZoneFileProvider::open(ZoneFileConfig::new(
        dir.join("zones/example.com.zone"),
        zone(),
    ))
    .unwrap()
}

fn path_of(p: &ZoneFileProvider) -> PathBuf {
    p.config().path.clone()
}

fn input(
    rtype: &str,
    name: &str,
    content: &str,
    ttl: u32,
    priority: Option<u32>,
) -> ValidRecordInput {
    ValidRecordInput {
        spec: RecordSpec::new("", rtype, name, content, ttl, false, priority).unwrap(),
        comment: MANAGED_COMMENT.to_string(),
    }
}

fn serial(p: &ZoneFileProvider) -> u32 {
    let text = fs::read_to_string(path_of(p)).unwrap();
    let zone = parse_zone(&text, &p.inner.origin).unwrap();
    match zone.soa.unwrap().data {
        RData::SOA(soa) => soa.serial,
        other => panic!("not an SOA: {other:?}"),
    }
}

async fn list(p: &ZoneFileProvider) -> Vec<ProviderRecord> {
    let listing = p.list().await.unwrap();
    assert_eq!(listing.requests, 1);
    listing.records
}

async fn find(p: &ZoneFileProvider, rtype: &str, name: &str) -> Vec<ProviderRecord> {
    list(p)
        .await
        .into_iter()
        .filter(|r| r.rtype == rtype && r.name == name)
        .collect()
}

async fn one(p: &ZoneFileProvider, op: WriteOp) -> WriteResult {
    let (mut results, requests) = p.apply(vec![op]).await;
    assert_eq!(requests, 1);
    assert_eq!(results.len(), 1);
    results.remove(0)
}

#[tokio::test]
async fn a_name_server_inside_the_zone_gets_its_glue() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ZoneFileConfig::new(dir.path().join("example.com.zone"), zone());
    cfg.name_server = Hostname::parse_target("ns", "ns1.example.com").unwrap();
    cfg.name_server_addresses = vec![
        "192.0.2.53".parse().unwrap(),
        "2001:db8::53".parse().unwrap(),
    ];
    let p = ZoneFileProvider::open(cfg.clone()).unwrap();
    let text = fs::read_to_string(path_of(&p)).unwrap();
    assert!(
        text.contains("@ 300 IN SOA ns1.example.com. hostmaster.example.com. 1 "),
        "{text}"
    );
    let mut got: Vec<(String, String, String)> = list(&p)
        .await
        .into_iter()
        .map(|r| (r.rtype, r.name, r.content))
        .collect();
    got.sort();
    let want = [
        ("A", "ns1.example.com", "192.0.2.53"),
        ("AAAA", "ns1.example.com", "2001:db8::53"),
        ("NS", "example.com", "ns1.example.com"),
    ]
    .map(|(t, n, c)| (t.to_string(), n.to_string(), c.to_string()));
    assert_eq!(got, want);

    // Inside the zone without an address, or outside it with one: refused.
    let mut bad = cfg.clone();
    bad.name_server_addresses.clear();
    let e = ZoneFileProvider::open(bad).err().expect("refused");
    assert!(e.to_string().contains("inside the zone"), "{e}");
    let mut bad = cfg;
    bad.name_server = Hostname::parse_target("ns", "ns1.example.net").unwrap();
    let e = ZoneFileProvider::open(bad).err().expect("refused");
    assert!(e.to_string().contains("outside the zone"), "{e}");
}

#[tokio::test]
async fn new_file_has_soa_and_ns_with_mode_0644() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_in(dir.path());
    let meta = fs::metadata(path_of(&p)).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    let text = fs::read_to_string(path_of(&p)).unwrap();
    assert!(text.contains("$ORIGIN example.com.\n$TTL 300\n"), "{text}");
    assert!(
        text.contains("@ 300 IN SOA localhost. hostmaster.example.com. 1 "),
        "{text}"
    );
    let records = list(&p).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].rtype, "NS");
    assert_eq!(records[0].name, "example.com");
    assert_eq!(records[0].content, "localhost");
    assert_eq!(p.name(), "zonefile");
    assert_eq!(p.zone(), &zone());
    // Opening again keeps the file as it is.
    drop(p);
    let p = open_in(dir.path());
    assert_eq!(fs::read_to_string(path_of(&p)).unwrap(), text);
}

#[tokio::test]
async fn ttl_change_keeps_the_id_and_ids_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_in(dir.path());
    let created = one(
        &p,
        WriteOp::Create(input("A", "a.example.com", "192.0.2.1", 300, None)),
    )
    .await
    .unwrap()
    .unwrap();
    let updated = one(
        &p,
        WriteOp::Update {
            id: created.id.clone(),
            input: input("A", "a.example.com", "192.0.2.1", 3600, None),
        },
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(updated.id, created.id);
    assert_eq!(updated.ttl, 3600);
    let before = list(&p).await;
    drop(p);
    let p = open_in(dir.path());
    assert_eq!(list(&p).await, before);
    assert_eq!(created.id, record_id("A", "a.example.com", "192.0.2.1"));
}

#[tokio::test]
async fn serial_bumps_once_per_changing_apply() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_in(dir.path());
    assert_eq!(serial(&p), 1);
    let ops = (1..=5)
        .map(|i| {
            WriteOp::Create(input(
                "A",
                &format!("h{i}.example.com"),
                "192.0.2.1",
                300,
                None,
            ))
        })
        .collect();
    let (results, requests) = p.apply(ops).await;
    assert_eq!(requests, 1);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(serial(&p), 2, "one write for five ops");
    let id = results[0].clone().unwrap().unwrap().id;

    // An update to the same record changes nothing: no write, no bump.
    let before = fs::read(path_of(&p)).unwrap();
    let same = one(
        &p,
        WriteOp::Update {
            id,
            input: input("A", "h1.example.com", "192.0.2.1", 300, None),
        },
    )
    .await;
    assert!(same.is_ok());
    assert_eq!(fs::read(path_of(&p)).unwrap(), before);

    // A batch where every op fails changes nothing either.
    let (results, _) = p.apply(vec![WriteOp::Delete { id: "nope".into() }]).await;
    assert!(matches!(results[0], Err(ProviderError::NotFound(_))));
    assert_eq!(serial(&p), 2);

    one(
        &p,
        WriteOp::Create(input("A", "h9.example.com", "192.0.2.1", 300, None)),
    )
    .await
    .unwrap();
    assert_eq!(serial(&p), 3);
    assert_eq!(p.apply(Vec::new()).await, (Vec::new(), 0));
}

#[tokio::test]
async fn hand_written_records_appear_and_survive_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_in(dir.path());
    let mut text = fs::read_to_string(path_of(&p)).unwrap();
    text.push_str(
        "; added by hand\n\
         Hand 3600 IN A 198.51.100.7 ; a comment\n\
         \tIN AAAA 2001:DB8:0:0::7\n\
         ptr 300 IN PTR Host.Example.net.\n\
         dkim 300 IN TXT \"v=DKIM1; k=rsa; \" \"p=abc\"\n\
         word 300 IN TXT ab\"cd\n\
         caa 300 IN CAA 0 ISSUE \"letsencrypt.org\"\n\
         outside.example.org. 300 IN A 192.0.2.99\n",
    );
    fs::write(path_of(&p), &text).unwrap();
    let records = list(&p).await;
    let get = |rtype: &str, name: &str| {
        records
            .iter()
            .find(|r| r.rtype == rtype && r.name == name)
            .unwrap_or_else(|| panic!("{rtype} {name} missing from {records:?}"))
            .clone()
    };
    let a = get("A", "hand.example.com");
    assert_eq!((a.content.as_str(), a.ttl), ("198.51.100.7", 3600));
    assert_eq!(get("AAAA", "hand.example.com").content, "2001:db8::7");
    assert_eq!(get("PTR", "ptr.example.com").content, "host.example.net");
    assert_eq!(
        get("TXT", "dkim.example.com").content,
        "v=DKIM1; k=rsa; p=abc"
    );
    assert_eq!(get("TXT", "word.example.com").content, "ab\"cd");
    assert_eq!(
        get("CAA", "caa.example.com").content,
        "0 issue \"letsencrypt.org\""
    );
    assert!(
        !records.iter().any(|r| r.name.ends_with("example.org")),
        "out-of-zone records are not listed"
    );

    one(
        &p,
        WriteOp::Create(input("A", "new.example.com", "192.0.2.5", 300, None)),
    )
    .await
    .unwrap();
    let after = list(&p).await;
    for r in &records {
        assert!(after.contains(r), "{r:?} lost by the rewrite");
    }
    let text = fs::read_to_string(path_of(&p)).unwrap();
    assert!(
        text.contains("outside.example.org. 300 IN A 192.0.2.99\n"),
        "{text}"
    );
    assert!(
        text.contains("dkim 300 IN TXT \"v=DKIM1; k=rsa; \" \"p=abc\"\n"),
        "{text}"
    );
    // The hand-written PTR can still be deleted by its id.
    let ptr = get("PTR", "ptr.example.com");
    assert_eq!(one(&p, WriteOp::Delete { id: ptr.id }).await, Ok(None));
}

#[tokio::test]
async fn written_file_is_sorted_and_stable() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_in(dir.path());
    let ops = vec![
        WriteOp::Create(input("TXT", "b.example.com", "two", 300, None)),
        WriteOp::Create(input("A", "b.example.com", "192.0.2.2", 300, None)),
        WriteOp::Create(input("A", "a.b.example.com", "192.0.2.3", 300, None)),
        WriteOp::Create(input("A", "a.example.com", "192.0.2.1", 300, None)),
        WriteOp::Create(input("TXT", "b.example.com", "one", 300, None)),
    ];
    let (results, _) = p.apply(ops).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let text = fs::read_to_string(path_of(&p)).unwrap();
    let body: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with([';', '$']))
        .collect();
    assert_eq!(
        body,
        vec![
            "@ 300 IN SOA localhost. hostmaster.example.com. 2 3600 600 604800 300",
            "@ 300 IN NS localhost.",
            "a 300 IN A 192.0.2.1",
            "b 300 IN A 192.0.2.2",
            "b 300 IN TXT \"one\"",
            "b 300 IN TXT \"two\"",
            "a.b 300 IN A 192.0.2.3",
        ]
    );
}

#[tokio::test]
async fn duplicates_and_cname_rules_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_in(dir.path());
    let a = one(
        &p,
        WriteOp::Create(input("A", "a.example.com", "192.0.2.1", 300, None)),
    )
    .await
    .unwrap()
    .unwrap();
    let b = one(
        &p,
        WriteOp::Create(input("A", "a.example.com", "192.0.2.2", 300, None)),
    )
    .await
    .unwrap()
    .unwrap();
    let c = one(
        &p,
        WriteOp::Create(input("CNAME", "c.example.com", "a.example.com", 300, None)),
    )
    .await
    .unwrap()
    .unwrap();
    let serial_before = serial(&p);
    let conflict = |r: &WriteResult| matches!(r, Err(ProviderError::Conflict(_)));
    let (results, _) = p
        .apply(vec![
            // exact duplicate, even with another TTL
            WriteOp::Create(input("A", "a.example.com", "192.0.2.1", 600, None)),
            // CNAME beside an A
            WriteOp::Create(input("CNAME", "a.example.com", "x.example.net", 300, None)),
            // A beside a CNAME
            WriteOp::Create(input("A", "c.example.com", "192.0.2.3", 300, None)),
            // a second CNAME at the same name
            WriteOp::Create(input("CNAME", "c.example.com", "y.example.net", 300, None)),
            // CNAME at the apex (SOA and NS live there)
            WriteOp::Create(input("CNAME", "example.com", "y.example.net", 300, None)),
            // an update onto another existing record
            WriteOp::Update {
                id: b.id.clone(),
                input: input("A", "a.example.com", "192.0.2.1", 300, None),
            },
            // turning one of two A records into a CNAME
            WriteOp::Update {
                id: b.id.clone(),
                input: input("CNAME", "a.example.com", "x.example.net", 300, None),
            },
        ])
        .await;
    for (i, r) in results.iter().enumerate() {
        assert!(conflict(r), "op {i}: {r:?}");
    }
    assert_eq!(
        serial(&p),
        serial_before,
        "nothing changed, nothing written"
    );

    // Replacing a CNAME by another CNAME, or the only A by a CNAME, is fine.
    let (results, _) = p
        .apply(vec![
            WriteOp::Update {
                id: c.id.clone(),
                input: input("CNAME", "c.example.com", "z.example.net", 300, None),
            },
            WriteOp::Delete { id: a.id.clone() },
            WriteOp::Update {
                id: b.id.clone(),
                input: input("CNAME", "a.example.com", "x.example.net", 300, None),
            },
        ])
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(find(&p, "CNAME", "a.example.com").await.len(), 1);
    assert!(find(&p, "A", "a.example.com").await.is_empty());
}

#[tokio::test]
async fn unknown_ids_outside_names_and_unwritable_records_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_in(dir.path());
    let before = fs::read(path_of(&p)).unwrap();
    let (results, requests) = p
        .apply(vec![
            WriteOp::Delete {
                id: "0123456789abcdef0123456789abcdef".into(),
            },
            WriteOp::Update {
                id: "missing".into(),
                input: input("A", "a.example.com", "192.0.2.1", 300, None),
            },
            WriteOp::Create(input("A", "a.example.org", "192.0.2.1", 300, None)),
            WriteOp::Create(ValidRecordInput {
                spec: RecordSpec::new("", "A", "p.example.com", "192.0.2.1", 300, true, None)
                    .unwrap(),
                comment: String::new(),
            }),
        ])
        .await;
    assert_eq!(requests, 1);
    assert!(
        matches!(results[0], Err(ProviderError::NotFound(_))),
        "{:?}",
        results[0]
    );
    assert!(
        matches!(results[1], Err(ProviderError::NotFound(_))),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2], Err(ProviderError::Invalid(_))),
        "{:?}",
        results[2]
    );
    assert!(
        matches!(results[3], Err(ProviderError::Invalid(_))),
        "{:?}",
        results[3]
    );
    assert_eq!(fs::read(path_of(&p)).unwrap(), before);
}

#[tokio::test]
async fn a_broken_file_is_unavailable_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_in(dir.path());
    let good = fs::read_to_string(path_of(&p)).unwrap();
    for broken in [
        format!("{good}half 300 IN A 192.0.2.\n"),
        format!("{good}txt 300 IN TXT \"unterminated\n"),
        format!("{good}bad 300 IN NOTATYPE x\n"),
        format!("{good}dkim IN TXT ( \"v=DKIM1; k=rsa; \"\n  \"p=abc\" )\n"),
        format!("{good}esc IN TXT \"\\300\"\n"),
        format!("{good}bin IN TXT \"\\255\"\n"),
        format!("{good}na\\109e IN A 192.0.2.1\n"),
        format!("$INCLUDE /etc/passwd\n{good}"),
        good.replace("$ORIGIN example.com.", "$ORIGIN example.net."),
    ] {
        fs::write(path_of(&p), &broken).unwrap();
        let err = p.list().await.unwrap_err();
        let ProviderError::Unavailable(msg) = &err else {
            panic!("{err:?} for {broken}");
        };
        assert!(msg.contains(&path_of(&p).display().to_string()), "{msg}");
        let (results, requests) = p
            .apply(vec![WriteOp::Create(input(
                "A",
                "n.example.com",
                "192.0.2.1",
                300,
                None,
            ))])
            .await;
        assert_eq!(requests, 1);
        assert!(
            matches!(results[0], Err(ProviderError::Unavailable(_))),
            "{results:?}"
        );
        assert_eq!(
            fs::read_to_string(path_of(&p)).unwrap(),
            broken,
            "file untouched"
        );
    }
    fs::remove_file(path_of(&p)).unwrap();
    assert!(matches!(p.list().await, Err(ProviderError::Unavailable(_))));
}

#[tokio::test]
async fn a_file_without_soa_gets_one_on_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("example.com.zone");
    fs::write(
        &path,
        "$ORIGIN example.com.\n@ 600 IN NS ns.example.net.\nw IN A 192.0.2.1\n",
    )
    .unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let p = ZoneFileProvider::open(ZoneFileConfig::new(&path, zone())).unwrap();
    let records = list(&p).await;
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(
        records.iter().all(|r| r.ttl == 600),
        "TTL carries over: {records:?}"
    );
    one(
        &p,
        WriteOp::Create(input("A", "x.example.com", "192.0.2.2", 300, None)),
    )
    .await
    .unwrap();
    assert_eq!(serial(&p), 1);
    assert_eq!(list(&p).await.len(), 3);
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "a rewrite keeps the file's mode");
}

#[tokio::test]
async fn concurrent_applies_do_not_lose_writes() {
    let dir = tempfile::tempdir().unwrap();
    let p = Arc::new(open_in(dir.path()));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let p = Arc::clone(&p);
            tokio::spawn(async move {
                let op = WriteOp::Create(input(
                    "A",
                    &format!("c{i}.example.com"),
                    "192.0.2.1",
                    300,
                    None,
                ));
                p.apply(vec![op]).await
            })
        })
        .collect();
    for t in tasks {
        let (results, _) = t.await.unwrap();
        assert!(results[0].is_ok(), "{results:?}");
    }
    assert_eq!(list(&p).await.len(), 9);
    assert_eq!(serial(&p), 9);
}

#[test]
fn stale_temp_files_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let p = open_in(dir.path());
    let stale = path_of(&p).with_file_name(".example.com.zone.trafego-tmp.1.00");
    fs::write(&stale, "half").unwrap();
    drop(p);
    let _p = open_in(dir.path());
    assert!(!stale.exists());
}

#[test]
fn open_refuses_a_zero_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ZoneFileConfig::new(dir.path().join("z"), zone());
    cfg.default_ttl = 0;
    assert!(matches!(
        ZoneFileProvider::open(cfg),
        Err(ProviderError::Invalid(_))
    ));
}

/// Timing of `list` on big zones; run with
/// `cargo test --release -p cache-service zonefile::tests::timing -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing, not a check"]
async fn timing() {
    for n in [10_000usize, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let p = open_in(dir.path());
        let start = std::time::Instant::now();
        let ops: Vec<WriteOp> = (0..n)
            .map(|i| {
                let name = format!("host-{i}.example.com");
                match i % 4 {
                    0 => WriteOp::Create(input(
                        "A",
                        &name,
                        &format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255),
                        300,
                        None,
                    )),
                    1 => WriteOp::Create(input(
                        "AAAA",
                        &name,
                        &format!("2001:db8::{:x}:{:x}", i >> 16, i & 0xffff),
                        300,
                        None,
                    )),
                    2 => WriteOp::Create(input(
                        "TXT",
                        &name,
                        &format!("token {i} with spaces"),
                        300,
                        None,
                    )),
                    _ => WriteOp::Create(input("MX", &name, "mail.example.com", 300, Some(10))),
                }
            })
            .collect();
        let (results, _) = p.apply(ops).await;
        assert!(results.iter().all(Result::is_ok));
        let create = start.elapsed();
        let size = fs::metadata(path_of(&p)).unwrap().len();
        let start = std::time::Instant::now();
        let records = list(&p).await;
        let listed = start.elapsed();
        assert_eq!(records.len(), n + 1);
        let start = std::time::Instant::now();
        let id = records[n / 2].id.clone();
        assert!(one(&p, WriteOp::Delete { id }).await.is_ok());
        let one_write = start.elapsed();
        println!(
            "{n} records ({size} bytes): list {listed:?}, one-op apply {one_write:?}, creating all in one apply {create:?}"
        );
    }
}
