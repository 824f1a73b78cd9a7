//! The PowerDNS harness against the real `pdns_server` (Debian's 4.7): the
//! API lists the zone it created, an RRset written with `PATCH` `REPLACE`
//! resolves with kdig, `EXTEND`/`PRUNE` are refused with the answer the
//! provider must expect, and with `dnsupdate` an RFC 2136 update signed with
//! the key applies while an unsigned or wrongly signed one is refused. Needs
//! `pdns-server`, `pdns-backend-sqlite3` and `knot-dnsutils`; never skips.

use std::time::Instant;

use reqwest::Method;
use serde_json::{Value, json};
use trafego_tests::knot::{TsigKey, axfr, dig_short, knsupdate};
use trafego_tests::pdns::PdnsServer;

/// A PATCH body changing one RRset of `example.com`.
fn rrset(changetype: &str, name: &str, rtype: &str, contents: &[&str]) -> Value {
    let records: Vec<Value> = contents
        .iter()
        .map(|c| json!({"content": c, "disabled": false}))
        .collect();
    json!({"rrsets": [{
        "name": name,
        "type": rtype,
        "ttl": 60,
        "changetype": changetype,
        "records": records,
    }]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_lists_the_zone() {
    let started = Instant::now();
    let pdns = PdnsServer::start("example.com").await.unwrap();
    eprintln!("pdns_server ready in {:?}", started.elapsed());
    assert!(
        pdns.api_url.starts_with("http://127.0.0.1:"),
        "{}",
        pdns.api_url
    );

    let (status, zones) = pdns.api(Method::GET, "zones", None).await.unwrap();
    assert_eq!(status, 200, "{zones}");
    let zones = zones.as_array().unwrap();
    assert_eq!(zones.len(), 1, "{zones:?}");
    assert_eq!(zones[0]["name"], "example.com.");
    assert_eq!(zones[0]["kind"], "Native");

    // The zone URL the provider reads, with the SOA and NS it was made with.
    let zone: Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(pdns.zone_url())
        .header("X-API-Key", &pdns.api_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut types: Vec<&str> = zone["rrsets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    types.sort_unstable();
    assert_eq!(types, ["NS", "SOA"], "{zone}");

    // A wrong key is refused by the API.
    let (status, _) = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(pdns.zone_url())
        .header("X-API-Key", "not-the-key")
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 401);

    // DNS answers the zone's apex; without dnsupdate no key exists, and
    // transfers are off (allow-axfr-ips is empty).
    assert_eq!(
        dig_short(pdns.dns_port, "example.com", "NS").await,
        ["ns1.example.com."]
    );
    assert!(pdns.tsig.is_none());
    let transfer = axfr(pdns.dns_port, "example.com", None).await;
    assert_eq!(transfer.status, "NOTAUTH", "{}", transfer.output);
    assert!(transfer.records.is_empty(), "{:?}", transfer.records);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_rrset_resolves() {
    let pdns = PdnsServer::start("example.com").await.unwrap();
    let zone_path = "zones/example.com.";

    let body = rrset(
        "REPLACE",
        "www.example.com.",
        "A",
        &["192.0.2.10", "192.0.2.11"],
    );
    let (status, answer) = pdns
        .api(Method::PATCH, zone_path, Some(body))
        .await
        .unwrap();
    assert_eq!(status, 204, "{answer}");
    assert_eq!(
        dig_short(pdns.dns_port, "www.example.com", "A").await,
        ["192.0.2.10", "192.0.2.11"]
    );

    // REPLACE is whole-RRset: one record left. Lower case is accepted too.
    let body = rrset("replace", "www.example.com.", "A", &["192.0.2.12"]);
    let (status, answer) = pdns
        .api(Method::PATCH, zone_path, Some(body))
        .await
        .unwrap();
    assert_eq!(status, 204, "{answer}");
    assert_eq!(
        dig_short(pdns.dns_port, "www.example.com", "A").await,
        ["192.0.2.12"]
    );

    let body = rrset("DELETE", "www.example.com.", "A", &[]);
    let (status, answer) = pdns
        .api(Method::PATCH, zone_path, Some(body))
        .await
        .unwrap();
    assert_eq!(status, 204, "{answer}");
    assert!(
        dig_short(pdns.dns_port, "www.example.com", "A")
            .await
            .is_empty()
    );
}

/// Debian's 4.7 has only REPLACE and DELETE: the PowerDNS provider must
/// write whole RRsets. This is the answer it gets otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_and_prune_are_refused() {
    let pdns = PdnsServer::start("example.com").await.unwrap();
    let zone_path = "zones/example.com.";
    let body = rrset("REPLACE", "www.example.com.", "A", &["192.0.2.10"]);
    let (status, _) = pdns
        .api(Method::PATCH, zone_path, Some(body))
        .await
        .unwrap();
    assert_eq!(status, 204);

    for changetype in ["EXTEND", "PRUNE"] {
        let body = rrset(changetype, "www.example.com.", "A", &["192.0.2.11"]);
        let (status, answer) = pdns
            .api(Method::PATCH, zone_path, Some(body))
            .await
            .unwrap();
        assert_eq!(status, 422, "{changetype}: {answer}");
        assert_eq!(
            answer,
            json!({"error": "Changetype not understood"}),
            "{changetype}"
        );
    }
    assert_eq!(
        dig_short(pdns.dns_port, "www.example.com", "A").await,
        ["192.0.2.10"],
        "a refused PATCH changes nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_updates_need_the_key() {
    let started = Instant::now();
    let pdns = PdnsServer::start_with_dnsupdate("example.com")
        .await
        .unwrap();
    eprintln!(
        "pdns_server with dnsupdate ready in {:?}",
        started.elapsed()
    );
    let key = pdns.tsig.clone().unwrap();
    assert_eq!(pdns.dns_server(), format!("127.0.0.1:{}", pdns.dns_port));

    let reply = knsupdate(
        pdns.dns_port,
        "example.com.",
        Some(&key),
        &[
            "add new.example.com. 60 A 192.0.2.20",
            "add new.example.com. 60 A 192.0.2.21",
        ],
    )
    .await;
    assert!(reply.is_ok(), "{}", reply.output);
    assert_eq!(
        reply.tsig_error.as_deref(),
        Some("NOERROR"),
        "{}",
        reply.output
    );
    assert_eq!(
        dig_short(pdns.dns_port, "new.example.com", "A").await,
        ["192.0.2.20", "192.0.2.21"]
    );
    // The API sees what the update wrote (one backend behind both).
    let (_, zone) = pdns
        .api(Method::GET, "zones/example.com.", None)
        .await
        .unwrap();
    let new = zone["rrsets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "new.example.com.")
        .unwrap_or_else(|| panic!("no new.example.com. in {zone}"));
    assert_eq!(new["records"].as_array().unwrap().len(), 2, "{new}");

    // Unsigned, a wrong secret, an unknown key: REFUSED (unsigned answer).
    let wrong = TsigKey::generate(&key.name);
    let unknown = TsigKey::generate("someone-else");
    for (what, key) in [
        ("unsigned", None),
        ("wrong secret", Some(&wrong)),
        ("unknown key", Some(&unknown)),
    ] {
        let reply = knsupdate(
            pdns.dns_port,
            "example.com.",
            key,
            &["add evil.example.com. 60 A 198.51.100.1"],
        )
        .await;
        assert_eq!(reply.status, "REFUSED", "{what}: {}", reply.output);
        assert_eq!(reply.tsig_error, None, "{what}: {}", reply.output);
    }
    assert!(
        dig_short(pdns.dns_port, "evil.example.com", "A")
            .await
            .is_empty()
    );

    // Transfers (how the RFC 2136 provider lists) need the key too.
    let transfer = axfr(pdns.dns_port, "example.com", Some(&key)).await;
    assert!(transfer.is_ok(), "{}", transfer.output);
    assert!(
        transfer
            .records
            .contains(&"new.example.com. 60 IN A 192.0.2.20".to_string()),
        "{:?}",
        transfer.records
    );
    let unsigned = axfr(pdns.dns_port, "example.com", None).await;
    assert_eq!(unsigned.status, "NOTAUTH", "{}", unsigned.output);
    assert!(unsigned.records.is_empty(), "{:?}", unsigned.records);
    let wrong = axfr(pdns.dns_port, "example.com", Some(&wrong)).await;
    assert_eq!(wrong.status, "NOTAUTH", "{}", wrong.output);
    assert!(wrong.records.is_empty(), "{:?}", wrong.records);
    assert!(
        !pdns.log_text().contains("security"),
        "no security polling (DNS past loopback):\n{}",
        pdns.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_is_gone_after_drop() {
    let pdns = PdnsServer::start("example.org").await.unwrap();
    let api = pdns.api_url.clone();
    let dir = pdns.dir().to_path_buf();
    drop(pdns);
    let err = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{api}/api/v1/servers"))
        .send()
        .await
        .expect_err("the API is gone");
    assert!(err.is_connect(), "{err}");
    assert!(!dir.exists());
}
