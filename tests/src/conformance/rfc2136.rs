//! The RFC 2136 provider's conformance backends: a real `knotd` and a real
//! `pdns_server` with `dnsupdate=yes`, each on loopback, each taking updates
//! and transfers only with its TSIG key. What they hold is seen and changed
//! out of band with the Knot tools (`kdig` AXFR, `knsupdate`), signed with
//! the same key, as another client of the server would.
//!
//! What they cannot stage: a rate-limit answer (DNS UPDATE has none; a
//! server refusing load answers REFUSED or nothing). A server that is down is
//! staged by a loopback relay in front of it that turns every connection
//! away while the fault lasts.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};

use super::{Backend, Boxed, Fault, Held, ZONE};
use crate::knot::{KnotServer, TsigKey, axfr, knsupdate};
use crate::pdns::PdnsServer;

/// A loopback TCP relay to a DNS server that can be switched to close every
/// connection at once, as a server that is down does.
pub struct Relay {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Relays `127.0.0.1:<new port>` to `target`.
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay address");
        let down = Arc::new(AtomicBool::new(false));
        let flag = down.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if flag.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { addr, down, task }
    }

    /// `127.0.0.1:port`, for `RFC2136_SERVER`.
    pub fn server(&self) -> String {
        self.addr.to_string()
    }

    /// Turns connections away (`true`) or relays them again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

enum Server {
    Knot(KnotServer),
    Pdns(PdnsServer),
}

/// A DNS server taking RFC 2136 updates, seen through [`Relay`].
pub struct Rfc2136 {
    name: &'static str,
    server: Server,
    port: u16,
    key: TsigKey,
    /// The same key name with another secret: what the server refuses.
    wrong: TsigKey,
    relay: Relay,
}

impl Rfc2136 {
    /// A fresh `knotd` serving an empty `example.com`.
    pub async fn knot() -> Self {
        Self::knot_with(&[]).await
    }

    /// A fresh `knotd` serving `example.com` with `records` (zone-file lines).
    pub async fn knot_with(records: &[&str]) -> Self {
        crate::capture_logs();
        let knot = KnotServer::start(ZONE, records).await.expect("start knotd");
        let (port, key) = (knot.port, knot.key.clone());
        Self::with("rfc2136-knot", Server::Knot(knot), port, key).await
    }

    /// A fresh `pdns_server` (gsqlite3, `dnsupdate=yes`) serving `example.com`.
    pub async fn pdns() -> Self {
        crate::capture_logs();
        let pdns = PdnsServer::start_with_dnsupdate(ZONE)
            .await
            .expect("start pdns_server");
        let (port, key) = (pdns.dns_port, pdns.tsig.clone().expect("a TSIG key"));
        Self::with("rfc2136-pdns", Server::Pdns(pdns), port, key).await
    }

    async fn with(name: &'static str, server: Server, port: u16, key: TsigKey) -> Self {
        let relay = Relay::start(SocketAddr::from(([127, 0, 0, 1], port))).await;
        Rfc2136 {
            name,
            server,
            port,
            wrong: TsigKey::generate(&key.name),
            key,
            relay,
        }
    }

    /// Everything the server logged so far, for assertion messages.
    pub fn server_log(&self) -> String {
        match &self.server {
            Server::Knot(k) => k.log_text(),
            Server::Pdns(p) => p.log_text(),
        }
    }

    /// The server's own DNS port (not the relay's).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The key the server takes.
    pub fn key(&self) -> &TsigKey {
        &self.key
    }

    /// cache-service flags for this server (through the relay) with `key`.
    pub fn args_with(&self, key: &TsigKey) -> Vec<String> {
        self.args_for(&self.relay.server(), key)
    }

    /// cache-service flags for this zone at `server` (`host:port`) with `key`.
    pub fn args_for(&self, server: &str, key: &TsigKey) -> Vec<String> {
        vec![
            "--provider".into(),
            "rfc2136".into(),
            "--zone".into(),
            ZONE.into(),
            "--rfc2136-server".into(),
            server.into(),
            "--rfc2136-tsig-key-name".into(),
            key.name.clone(),
            "--rfc2136-tsig-secret".into(),
            key.secret.clone(),
            "--rfc2136-tsig-algorithm".into(),
            key.algorithm.clone(),
            "--rfc2136-timeout".into(),
            "3s".into(),
        ]
    }
}

/// `h` as a `knsupdate` `add` line.
pub fn add_line(h: &Held) -> String {
    let dot = |s: &str| format!("{s}.");
    let rdata = match h.rtype.as_str() {
        "CNAME" | "NS" => dot(&h.content),
        "MX" => format!("{} {}", h.priority.unwrap_or(10), dot(&h.content)),
        "SRV" => {
            let mut parts: Vec<String> = h.content.split(' ').map(str::to_string).collect();
            if let Some(target) = parts.last_mut() {
                *target = dot(target);
            }
            format!("{} {}", h.priority.unwrap_or(10), parts.join(" "))
        }
        "TXT" => format!("\"{}\"", h.content.replace('"', "\\\"")),
        _ => h.content.clone(),
    };
    format!("add {}. 300 {} {rdata}", h.name, h.rtype)
}

/// A record of a transfer as `kdig` prints it (`name ttl IN TYPE rdata`),
/// in the project's canonical form.
pub fn held_of(line: &str) -> Option<Held> {
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let (name, rtype) = (tokens.first()?, tokens.get(3)?);
    let rdata = tokens.get(4..)?;
    let undot = |s: &str| s.trim_end_matches('.').to_ascii_lowercase();
    let (content, priority) = match *rtype {
        "CNAME" | "NS" => (undot(rdata.first()?), None),
        "MX" => (undot(rdata.get(1)?), rdata.first()?.parse().ok()),
        "SRV" => (
            format!(
                "{} {} {}",
                rdata.get(1)?,
                rdata.get(2)?,
                undot(rdata.get(3)?)
            ),
            rdata.first()?.parse().ok(),
        ),
        "TXT" => (
            rdata
                .join(" ")
                .split("\" \"")
                .map(|s| s.trim_matches('"'))
                .collect::<String>()
                .replace("\\\"", "\""),
            None,
        ),
        _ => (rdata.join(" "), None),
    };
    Some(Held {
        rtype: (*rtype).to_string(),
        name: undot(name),
        content,
        priority,
    })
}

impl Backend for Rfc2136 {
    fn name(&self) -> &'static str {
        self.name
    }

    fn cache_args(&self, _dir: &Path) -> Vec<String> {
        self.args_with(&self.key)
    }

    fn bad_credentials_args(&self, _dir: &Path) -> Option<Vec<String>> {
        Some(self.args_with(&self.wrong))
    }

    fn secrets(&self) -> Vec<String> {
        vec![self.key.secret.clone(), self.wrong.secret.clone()]
    }

    fn seed(&self, records: Vec<Held>) -> Boxed<'_, ()> {
        Box::pin(async move {
            for chunk in records.chunks(200) {
                let lines: Vec<String> = chunk.iter().map(add_line).collect();
                let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
                let reply = knsupdate(self.port, &format!("{ZONE}."), Some(&self.key), &refs).await;
                assert!(reply.is_ok(), "{}: seed: {}", self.name, reply.output);
            }
        })
    }

    fn held(&self) -> Boxed<'_, Vec<Held>> {
        Box::pin(async move {
            let reply = axfr(self.port, ZONE, Some(&self.key)).await;
            assert!(reply.is_ok(), "{}: transfer: {}", self.name, reply.output);
            reply
                .records
                .iter()
                .filter_map(|l| held_of(l))
                .filter(|h| !(h.name == ZONE && matches!(h.rtype.as_str(), "SOA" | "NS")))
                .collect()
        })
    }

    fn fault(&self, fault: Fault) -> Boxed<'_, bool> {
        Box::pin(async move {
            match fault {
                Fault::Down => self.relay.set_down(true),
                Fault::Clear => self.relay.set_down(false),
                // DNS UPDATE has no rate-limit answer to stage.
                Fault::RateLimited => return false,
            }
            true
        })
    }

    fn page_size(&self) -> usize {
        // A transfer is one request whatever its size; its messages are
        // the server's choice (tests/tests/rfc2136_provider.rs reads a
        // zone of thousands of records over many).
        0
    }
}
