//! The RFC 2136 provider against a real `knotd` (and a real `pdns_server` for
//! refused keys, out-of-band changes and lost answers), through a real
//! cache-service: a key the server refuses is reported as PERMISSION_DENIED
//! naming the server's answer, with no secret anywhere; a record changed out
//! of band between a refresh and a write makes the write fail instead of
//! overwriting it (the prerequisites); changes to different names share
//! UPDATE messages; what is written resolves with `kdig`; a zone of
//! thousands of records, transferred over many messages, lists whole, and a
//! transfer message altered on the way fails its TSIG check; a lost answer
//! to an update is settled by looking, never by sending it again. Needs
//! `knot`, `knot-dnsutils`, `pdns-server` and `pdns-backend-sqlite3`; never
//! skips.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hickory_proto::op::{Message, OpCode};
use hickory_proto::rr::{RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::Code;
use trafego_proto::cache::*;
use trafego_tests::conformance::rfc2136::Rfc2136;
use trafego_tests::conformance::{Backend, Held};
use trafego_tests::knot::{TsigKey, axfr, dig_short, kdig, knsupdate};
use trafego_tests::*;

type Client = cache_service_client::CacheServiceClient<tonic::transport::Channel>;

async fn start(args: &[String]) -> (ServiceHandle, Client) {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let svc = start_cache(&refs).await;
    let client = cache_client(&svc).await;
    (svc, client)
}

async fn refresh(c: &mut Client) -> Result<RefreshCacheResponse, tonic::Status> {
    c.refresh_cache(RefreshCacheRequest {
        force: true,
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

fn input(rtype: &str, name: &str, content: &str, priority: Option<u32>) -> RecordInput {
    RecordInput {
        r#type: rtype.into(),
        name: name.into(),
        content: content.into(),
        ttl: 300,
        priority,
        ..Default::default()
    }
}

async fn create(c: &mut Client, rec: RecordInput) -> Result<DnsRecord, tonic::Status> {
    c.create_record(CreateRecordRequest { record: Some(rec) })
        .await
        .map(|r| r.into_inner().record.expect("record"))
}

async fn cached_id(c: &mut Client, name: &str, content: &str) -> String {
    c.list_records(ListRecordsRequest {
        name: name.into(),
        page_size: 1000,
        ..Default::default()
    })
    .await
    .expect("ListRecords")
    .into_inner()
    .records
    .into_iter()
    .find(|r| r.content == content)
    .unwrap_or_else(|| panic!("{name} {content} cached"))
    .record_id
}

async fn contents(backend: &Rfc2136, rtype: &str, name: &str) -> Vec<String> {
    let mut v: Vec<String> = backend
        .held()
        .await
        .into_iter()
        .filter(|h| h.rtype == rtype && h.name == name)
        .map(|h| h.content)
        .collect();
    v.sort();
    v
}

fn assert_no_secret(text: &str, keys: &[&TsigKey]) {
    for k in keys {
        assert!(!text.contains(&k.secret), "a secret leaked into: {text}");
    }
}

/// Updates and transfers signed with a secret the server does not hold, or
/// with a key it does not know, are refused by the server; cache-service
/// says PERMISSION_DENIED with the server's answer (Knot: NOTAUTH with the
/// TSIG error BADSIG or BADKEY; PowerDNS: REFUSED), writes nothing, and no
/// secret appears in any message or log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_server_refuses_is_permission_denied_without_the_secret() {
    for backend in [Rfc2136::knot().await, Rfc2136::pdns().await] {
        let wrong_secret = TsigKey::generate(&backend.key().name);
        let unknown_key = TsigKey::generate("nobody-knows-this-key");
        let knot = backend.name() == "rfc2136-knot";
        for (key, knot_says) in [(&wrong_secret, "BADSIG"), (&unknown_key, "BADKEY")] {
            let (svc, mut c) = start(&backend.args_with(key)).await;
            let e = create(&mut c, input("A", "denied.example.com", "192.0.2.7", None))
                .await
                .unwrap_err();
            assert_eq!(
                e.code(),
                Code::PermissionDenied,
                "{}: {e:?}",
                backend.name()
            );
            let says = if knot { knot_says } else { "REFUSED" };
            assert!(e.message().contains(says), "{}: {e:?}", backend.name());
            assert_no_secret(e.message(), &[backend.key(), key]);
            let e = refresh(&mut c).await.unwrap_err();
            assert_eq!(
                e.code(),
                Code::PermissionDenied,
                "{}: {e:?}",
                backend.name()
            );
            assert!(e.message().contains("zone transfer"), "{e:?}");
            assert_no_secret(e.message(), &[backend.key(), key]);
            svc.shutdown().await.unwrap();
            assert!(
                contents(&backend, "A", "denied.example.com")
                    .await
                    .is_empty()
            );
        }
        let logs = captured_logs();
        assert!(logs.contains("cache-service starting"));
        assert_no_secret(&logs, &[backend.key(), &wrong_secret, &unknown_key]);
    }
}

/// A record changed, added to or created out of band after cache-service
/// last read the zone is never overwritten: the update's prerequisites hold
/// the RRset as last seen, so the server refuses the write, and the caller
/// hears NOT_FOUND (its record is gone) or ALREADY_EXISTS (something else is
/// there now). After a refresh the same write goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_changed_out_of_band_is_not_overwritten() {
    for backend in [Rfc2136::knot().await, Rfc2136::pdns().await] {
        backend
            .seed(vec![
                Held::new("A", "moved.example.com", "192.0.2.1"),
                Held::new("A", "grown.example.com", "192.0.2.1"),
                Held::new("A", "gone.example.com", "192.0.2.1"),
            ])
            .await;
        let (svc, mut c) = start(&backend.cache_args(std::path::Path::new("."))).await;
        refresh(&mut c).await.expect("refresh");
        let moved = cached_id(&mut c, "moved.example.com", "192.0.2.1").await;
        let grown = cached_id(&mut c, "grown.example.com", "192.0.2.1").await;
        let gone = cached_id(&mut c, "gone.example.com", "192.0.2.1").await;

        // Someone else, after the refresh: changes one, adds to another, deletes
        // the third, and creates a fourth.
        let oob = knsupdate(
            backend.port(),
            "example.com.",
            Some(backend.key()),
            &[
                "delete moved.example.com. A 192.0.2.1",
                "add moved.example.com. 300 A 192.0.2.9",
                "add grown.example.com. 300 A 192.0.2.5",
                "delete gone.example.com. A",
                "add fresh.example.com. 300 A 192.0.2.5",
            ],
        )
        .await;
        assert!(oob.is_ok(), "{}", oob.output);

        let update = |id: &str, name: &str, content: &str| UpdateRecordRequest {
            record_id: id.into(),
            record: Some(input("A", name, content, None)),
        };
        let e = c
            .update_record(update(&moved, "moved.example.com", "192.0.2.2"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");
        assert_eq!(
            contents(&backend, "A", "moved.example.com").await,
            ["192.0.2.9"]
        );

        let e = c
            .update_record(update(&grown, "grown.example.com", "192.0.2.2"))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
        let e = c
            .delete_record(DeleteRecordRequest {
                record_id: grown.clone(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
        assert_eq!(
            contents(&backend, "A", "grown.example.com").await,
            ["192.0.2.1", "192.0.2.5"]
        );

        let e = c
            .delete_record(DeleteRecordRequest { record_id: gone })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");

        let e = create(&mut c, input("A", "fresh.example.com", "192.0.2.6", None))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
        assert_eq!(
            contents(&backend, "A", "fresh.example.com").await,
            ["192.0.2.5"]
        );

        // Having read the zone again, the caller may decide: the write now goes
        // through, next to what the other client added.
        refresh(&mut c).await.expect("refresh");
        c.update_record(update(&grown, "grown.example.com", "192.0.2.2"))
            .await
            .expect("update after a refresh");
        assert_eq!(
            contents(&backend, "A", "grown.example.com").await,
            ["192.0.2.2", "192.0.2.5"]
        );
        svc.shutdown().await.unwrap();
    }
}

/// What cache-service writes is what the server answers to any resolver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_is_written_resolves() {
    let backend = Rfc2136::knot().await;
    let port = backend.port();
    let (svc, mut c) = start(&backend.cache_args(std::path::Path::new("."))).await;
    refresh(&mut c).await.expect("refresh");
    let long_txt = "x".repeat(300);
    let records = [
        input("A", "www.example.com", "192.0.2.80", None),
        input("AAAA", "www.example.com", "2001:db8::80", None),
        input("MX", "example.com", "mail.example.net", Some(10)),
        input(
            "SRV",
            "_sip._tcp.example.com",
            "5 5060 sip.example.net",
            Some(20),
        ),
        input("TXT", "long.example.com", &long_txt, None),
        input("CNAME", "alias.example.com", "www.example.com", None),
    ];
    let mut ids = Vec::new();
    for r in records {
        ids.push(create(&mut c, r).await.expect("create").record_id);
    }
    assert_eq!(
        dig_short(port, "www.example.com", "A").await,
        ["192.0.2.80"]
    );
    assert_eq!(
        dig_short(port, "www.example.com", "AAAA").await,
        ["2001:db8::80"]
    );
    assert_eq!(
        dig_short(port, "example.com", "MX").await,
        ["10 mail.example.net."]
    );
    assert_eq!(
        dig_short(port, "_sip._tcp.example.com", "SRV").await,
        ["20 5 5060 sip.example.net."]
    );
    // Over 255 bytes: two character-strings, one text.
    let txt = dig_short(port, "long.example.com", "TXT").await;
    assert_eq!(
        txt,
        [format!("\"{}\" \"{}\"", "x".repeat(255), "x".repeat(45))]
    );
    assert_eq!(
        dig_short(port, "alias.example.com", "CNAME").await,
        ["www.example.com."]
    );

    let updated = c
        .update_record(UpdateRecordRequest {
            record_id: ids[0].clone(),
            record: Some(RecordInput {
                ttl: 120,
                ..input("A", "www.example.com", "192.0.2.81", None)
            }),
        })
        .await
        .expect("update")
        .into_inner()
        .record
        .expect("record");
    let answer = kdig(port, None, &["www.example.com", "A"]).await;
    assert!(
        answer
            .records
            .contains(&"www.example.com. 120 IN A 192.0.2.81".to_string()),
        "{:?}",
        answer.records
    );
    assert_eq!(answer.records.len(), 1, "{:?}", answer.records);
    c.delete_record(DeleteRecordRequest {
        record_id: updated.record_id,
    })
    .await
    .expect("delete");
    assert!(dig_short(port, "www.example.com", "A").await.is_empty());
    assert_eq!(
        dig_short(port, "www.example.com", "AAAA").await,
        ["2001:db8::80"],
        "the other type at the name is kept"
    );
    svc.shutdown().await.unwrap();
}

/// Changes to different names travel together (a hundred per UPDATE
/// message); a conflict among them fails that change alone, the message's
/// halves sent apart to find it; two changes to one name go in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_changes_share_messages_and_a_conflict_fails_alone() {
    let backend = Rfc2136::knot().await;
    backend
        .seed(vec![Held::new("A", "taken.example.com", "192.0.2.1")])
        .await;
    let (svc, mut c) = start(&backend.cache_args(std::path::Path::new("."))).await;
    refresh(&mut c).await.expect("refresh");
    let change = |rec: RecordInput| Change {
        kind: Some(change::Kind::Create(rec)),
        change_id: String::new(),
        group: String::new(),
    };
    let mut changes: Vec<Change> = (0..250)
        .map(|i| {
            change(input(
                "A",
                &format!("many-{i:03}.example.com"),
                "192.0.2.3",
                None,
            ))
        })
        .collect();
    changes.push(change(input(
        "CNAME",
        "taken.example.com",
        "else.example.net",
        None,
    )));
    changes.push(change(input("A", "twice.example.com", "192.0.2.4", None)));
    changes.push(change(input("A", "twice.example.com", "192.0.2.5", None)));
    let r = c
        .apply_changes(ApplyChangesRequest { changes })
        .await
        .expect("ApplyChanges")
        .into_inner();
    assert_eq!(
        r.succeeded,
        252,
        "{:?}",
        r.results.iter().find(|x| x.code != 0)
    );
    assert_eq!(
        r.results[250].code,
        Code::AlreadyExists as i32,
        "{:?}",
        r.results[250]
    );
    // 100 + 100 + 53 changes, the last message bisected to the conflict
    // (about a dozen messages), and the second change to `twice` alone.
    assert!(
        (5..=20).contains(&r.provider_requests),
        "{} UPDATE messages",
        r.provider_requests
    );
    let held = backend.held().await;
    assert_eq!(
        held.iter().filter(|h| h.name.starts_with("many-")).count(),
        250
    );
    assert_eq!(
        contents(&backend, "A", "twice.example.com").await,
        ["192.0.2.4", "192.0.2.5"]
    );
    assert!(
        contents(&backend, "CNAME", "taken.example.com")
            .await
            .is_empty()
    );
    svc.shutdown().await.unwrap();
}

/// A zone of thousands of records, which Knot sends as many messages, is
/// listed whole: each message's TSIG is checked, chained to the one before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zone_of_thousands_of_records_lists_whole_over_many_messages() {
    const N: u64 = 4000;
    let lines: Vec<String> = (0..N)
        .map(|i| format!("host-{i:05} 300 A 10.0.{}.{}", i / 256, i % 256))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let backend = Rfc2136::knot_with(&refs).await;
    let transfer = axfr(backend.port(), "example.com", Some(backend.key())).await;
    let messages: u64 = transfer
        .output
        .split(" messages")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("kdig's message count: {}", transfer.output));
    assert!(messages > 1, "Knot sent {messages} message(s)");

    let (svc, mut c) = start(&backend.cache_args(std::path::Path::new("."))).await;
    let r = refresh(&mut c).await.expect("refresh");
    // The records, the apex NS and ns1's address; never the SOA.
    assert_eq!(r.total, N + 2, "{r:?}");
    assert_eq!(r.provider_requests, 1, "one transfer: {r:?}");
    let logs = captured_logs();
    assert!(
        logs.contains(&format!("records={} messages={messages}", N + 2)),
        "the provider read {messages} messages"
    );
    let status = c
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.record_count, N + 2);
    assert_eq!(
        cached_id(&mut c, "host-03999.example.com", "10.0.15.159")
            .await
            .len(),
        32
    );
    svc.shutdown().await.unwrap();
}

/// What the relay below does to the exchanges it carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Meddle {
    /// Changes an address in the second message of every zone transfer,
    /// leaving its TSIG as it was.
    AlterTransfer,
    /// Swallows the answer to the next UPDATE (the client waits in vain).
    SwallowUpdateAnswer,
}

/// A loopback relay to a DNS server that reads the DNS messages it carries
/// (one request per connection, as the provider sends) and meddles with
/// them; counts the UPDATE messages it passed on.
struct Meddler {
    addr: SocketAddr,
    updates: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

async fn read_frame(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.ok()?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await.ok()?;
    Some(buf)
}

async fn write_frame(s: &mut TcpStream, buf: &[u8]) -> Option<()> {
    let len = u16::try_from(buf.len()).ok()?.to_be_bytes();
    s.write_all(&len).await.ok()?;
    s.write_all(buf).await.ok()
}

impl Meddler {
    async fn start(port: u16, meddle: Meddle) -> Meddler {
        let target = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let updates = Arc::new(AtomicUsize::new(0));
        let swallow = Arc::new(AtomicUsize::new(1));
        let counter = updates.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (counter, swallow) = (counter.clone(), swallow.clone());
                tokio::spawn(async move {
                    let mut server = TcpStream::connect(target).await.ok()?;
                    let request = read_frame(&mut client).await?;
                    let parsed = Message::from_vec(&request).ok()?;
                    let is_update = parsed.op_code == OpCode::Update;
                    let is_transfer = parsed
                        .queries
                        .first()
                        .is_some_and(|q| q.query_type() == RecordType::AXFR);
                    if is_update {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    write_frame(&mut server, &request).await?;
                    let mut n = 0;
                    while let Some(mut frame) = read_frame(&mut server).await {
                        n += 1;
                        if meddle == Meddle::SwallowUpdateAnswer
                            && is_update
                            && swallow
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |s| {
                                    s.checked_sub(1)
                                })
                                .is_ok()
                        {
                            // Keep the connection open and silent until the
                            // client gives up on it.
                            let mut rest = Vec::new();
                            let _ = client.read_to_end(&mut rest).await;
                            return Some(());
                        }
                        if meddle == Meddle::AlterTransfer && is_transfer && n == 2 {
                            let mut m = Message::from_vec(&frame).ok()?;
                            for r in m.answers.iter_mut() {
                                if let RData::A(a) = &mut r.data {
                                    a.0 = Ipv4Addr::new(203, 0, 113, 66);
                                    break;
                                }
                            }
                            frame = m.to_vec().ok()?;
                        }
                        write_frame(&mut client, &frame).await?;
                        if !is_transfer {
                            break;
                        }
                    }
                    Some(())
                });
            }
        });
        Meddler {
            addr,
            updates,
            task,
        }
    }
}

impl Drop for Meddler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `args` with the value of `flag` replaced.
fn with_flag(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    let i = args.iter().position(|a| a == flag).expect("flag present");
    args[i + 1] = value.into();
    args
}

/// One address changed in the second message of a transfer, its TSIG left
/// as it was: the refresh fails (UNAVAILABLE, naming the check) instead of
/// caching what the server never sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_message_altered_on_the_way_fails_its_check() {
    let lines: Vec<String> = (0..3000)
        .map(|i| format!("host-{i:05} 300 A 10.1.{}.{}", i / 256, i % 256))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let backend = Rfc2136::knot_with(&refs).await;
    let meddler = Meddler::start(backend.port(), Meddle::AlterTransfer).await;
    let args = backend.args_for(&meddler.addr.to_string(), backend.key());
    let (svc, mut c) = start(&args).await;
    let e = refresh(&mut c).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains("message 2") && e.message().contains("TSIG"),
        "{e:?}"
    );
    let status = c
        .get_cache_status(GetCacheStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.record_count, 0, "nothing of the transfer was kept");
    svc.shutdown().await.unwrap();
}

/// An update whose answer never comes is reported as unanswered, and
/// cache-service settles it by looking (a signed query of the RRset): the
/// record the server did apply is found, the write succeeds, and the update
/// was sent once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_is_settled_by_looking_not_by_sending_again() {
    for backend in [Rfc2136::knot().await, Rfc2136::pdns().await] {
        let meddler = Meddler::start(backend.port(), Meddle::SwallowUpdateAnswer).await;
        let args = with_flag(
            backend.args_for(&meddler.addr.to_string(), backend.key()),
            "--rfc2136-timeout",
            "1s",
        );
        let (svc, mut c) = start(&args).await;
        refresh(&mut c).await.expect("refresh");
        let created = create(&mut c, input("A", "lost.example.com", "192.0.2.44", None))
            .await
            .expect("settled as applied");
        assert_eq!(created.content, "192.0.2.44");
        assert_eq!(meddler.updates.load(Ordering::SeqCst), 1, "sent once");
        assert_eq!(
            contents(&backend, "A", "lost.example.com").await,
            ["192.0.2.44"]
        );
        // The cache holds it under the id the server's record has.
        assert_eq!(
            cached_id(&mut c, "lost.example.com", "192.0.2.44").await,
            created.record_id
        );
        svc.shutdown().await.unwrap();
    }
}
