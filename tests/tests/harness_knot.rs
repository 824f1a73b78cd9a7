//! The Knot harness against the real `knotd`: the zone transfers with its
//! TSIG key and only with it, an update signed with the key shows in the next
//! transfer and query, and an update unsigned, signed with a wrong secret or
//! with an unknown key is refused, with the exact answer Knot gives (the RFC
//! 2136 provider reports these). Needs `knot` and `knot-dnsutils` (and `dig`
//! from `bind9-dnsutils` for the header check); never skips.

use std::time::Instant;

use trafego_tests::knot::{KnotServer, TsigKey, axfr, dig_short, knsupdate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_need_the_key() {
    let started = Instant::now();
    let knot = KnotServer::start("example.com", &["www 60 A 192.0.2.10"])
        .await
        .unwrap();
    eprintln!("knotd ready in {:?}", started.elapsed());

    let signed = axfr(knot.port, "example.com", Some(&knot.key)).await;
    assert!(signed.is_ok(), "{}", signed.output);
    assert_eq!(
        signed.tsig_error.as_deref(),
        Some("NOERROR"),
        "{}",
        signed.output
    );
    let mut types: Vec<&str> = signed
        .records
        .iter()
        .map(|r| r.split(' ').nth(3).unwrap())
        .collect();
    types.sort_unstable();
    assert_eq!(types, ["A", "A", "NS", "SOA"], "{:?}", signed.records);
    assert!(
        signed
            .records
            .contains(&"www.example.com. 60 IN A 192.0.2.10".to_string()),
        "{:?}",
        signed.records
    );

    // Unsigned: NOTAUTH, nothing transferred.
    let unsigned = axfr(knot.port, "example.com", None).await;
    assert_eq!(unsigned.status, "NOTAUTH", "{}", unsigned.output);
    assert!(unsigned.records.is_empty(), "{:?}", unsigned.records);

    // The right name with another secret: BADSIG; an unknown name: BADKEY.
    let wrong = TsigKey::generate(&knot.key.name);
    let reply = axfr(knot.port, "example.com", Some(&wrong)).await;
    assert_eq!(reply.status, "BADSIG", "{}", reply.output);
    assert!(reply.records.is_empty());
    let unknown = TsigKey::generate("someone-else");
    let reply = axfr(knot.port, "example.com", Some(&unknown)).await;
    assert_eq!(reply.status, "BADKEY", "{}", reply.output);
    assert!(reply.records.is_empty());

    // Plain queries need no key.
    assert_eq!(
        dig_short(knot.port, "www.example.com", "A").await,
        ["192.0.2.10"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_need_the_key() {
    let knot = KnotServer::start("example.com", &[]).await.unwrap();

    let reply = knsupdate(
        knot.port,
        "example.com.",
        Some(&knot.key),
        &[
            "add new.example.com. 60 A 192.0.2.20",
            "add new.example.com. 60 A 192.0.2.21",
            "add txt.example.com. 60 TXT \"hello\"",
        ],
    )
    .await;
    assert!(reply.is_ok(), "{}", reply.output);
    assert_eq!(reply.tsig_error.as_deref(), Some("NOERROR"));
    assert_eq!(
        dig_short(knot.port, "new.example.com", "A").await,
        ["192.0.2.20", "192.0.2.21"]
    );
    let zone = axfr(knot.port, "example.com", Some(&knot.key)).await;
    assert!(
        zone.records
            .contains(&"txt.example.com. 60 IN TXT \"hello\"".to_string()),
        "{:?}",
        zone.records
    );
    assert!(
        zone.records.iter().any(|r| r
            .starts_with("example.com. 300 IN SOA ns1.example.com. hostmaster.example.com. 2 ")),
        "the update bumped the serial: {:?}",
        zone.records
    );
    // zonefile-sync -1: the update lives in Knot's journal, not in the file.
    let file = std::fs::read_to_string(knot.dir().join("zone.db")).unwrap();
    assert!(!file.contains("192.0.2.20"), "{file}");

    // Unsigned: NOTAUTH, no TSIG in the answer.
    let unsigned = knsupdate(
        knot.port,
        "example.com.",
        None,
        &["add evil.example.com. 60 A 198.51.100.1"],
    )
    .await;
    assert_eq!(unsigned.status, "NOTAUTH", "{}", unsigned.output);
    assert_eq!(unsigned.tsig_error, None, "{}", unsigned.output);

    // A wrong secret: header NOTAUTH with TSIG error BADSIG (knsupdate prints
    // the TSIG error as the status); an unknown key name: BADKEY.
    let wrong = TsigKey::generate(&knot.key.name);
    let reply = knsupdate(
        knot.port,
        "example.com.",
        Some(&wrong),
        &["add evil.example.com. 60 A 198.51.100.1"],
    )
    .await;
    assert_eq!(reply.status, "BADSIG", "{}", reply.output);
    assert_eq!(
        reply.tsig_error.as_deref(),
        Some("BADSIG"),
        "{}",
        reply.output
    );
    let unknown = TsigKey::generate("someone-else");
    let reply = knsupdate(
        knot.port,
        "example.com.",
        Some(&unknown),
        &["add evil.example.com. 60 A 198.51.100.1"],
    )
    .await;
    assert_eq!(reply.status, "BADKEY", "{}", reply.output);
    assert_eq!(
        reply.tsig_error.as_deref(),
        Some("BADKEY"),
        "{}",
        reply.output
    );

    assert!(
        dig_short(knot.port, "evil.example.com", "A")
            .await
            .is_empty()
    );
    assert!(
        knot.log_text().contains("DDNS"),
        "knotd logged the update:\n{}",
        knot.log_text()
    );
}

/// BIND's `dig` prints the header RCODE and the TSIG error apart, which
/// shows what Knot really sends for a bad signature: NOTAUTH + BADSIG.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_signature_is_notauth_with_tsig_error_badsig() {
    let knot = KnotServer::start("example.com", &[]).await.unwrap();
    let wrong = TsigKey::generate(&knot.key.name);
    let dig = trafego_tests::knot::tool("dig", "bind9-dnsutils").unwrap();
    let out = tokio::process::Command::new(dig)
        .args([
            "@127.0.0.1",
            "-p",
            &knot.port.to_string(),
            "+tries=1",
            "+time=1",
        ])
        .args(["-y", &wrong.tool_arg(), "example.com", "SOA"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("status: NOTAUTH"), "{text}");
    let tsig = text
        .lines()
        .find(|l| l.contains("\tTSIG\t"))
        .unwrap_or_else(|| panic!("no TSIG record in the reply: {text}"));
    assert!(tsig.contains(" BADSIG "), "{tsig}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_is_gone_after_drop() {
    let knot = KnotServer::start("example.org", &[]).await.unwrap();
    let port = knot.port;
    assert_eq!(knot.server(), format!("127.0.0.1:{port}"));
    let status = knot.knotc(&["zone-status", "example.org"]).await.unwrap();
    assert!(status.contains("example.org"), "{status}");
    let dir = knot.dir().to_path_buf();
    drop(knot);
    // Killed and reaped: the port is free again and the directory is gone.
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free after drop");
    assert!(!dir.exists());
}
