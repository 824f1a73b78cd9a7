//! PowerDNS Authoritative for tests: a real `pdns_server` (Debian's 4.7,
//! `launch=gsqlite3`) in a temporary directory, its HTTP API and its DNS
//! listener on free loopback ports, one Native zone created through the API,
//! and optionally RFC 2136 updates (`dnsupdate=yes`) that need a TSIG key. The
//! PowerDNS provider's tests, and the RFC 2136 provider's second server, run
//! against it.
//!
//! What Debian's 4.7 answers, for the provider: `PATCH` rrsets with
//! `changetype` `REPLACE` or `DELETE` (any case) give `204 No Content`;
//! `EXTEND` and `PRUNE` (5.0 only) give `422` with the body
//! `{"error": "Changetype not understood"}`. An update without the key, or
//! signed with a wrong or unknown key, is answered `REFUSED` (unsigned).
//!
//! It needs the Debian packages `pdns-server`, `pdns-backend-sqlite3` and
//! `knot-dnsutils` (kdig); without them it fails saying what to install, it
//! never skips. It must never leave `pdns_server` running (the handle kills it
//! on drop, also when a test panics), reach past loopback (security polling is
//! off, syslog too), or touch anything outside its temporary directory.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};
use rand::Rng;
use serde_json::{Value, json};

use crate::knot::{READY_TIMEOUT, RETRY_PAUSE, TsigKey, free_dns_port, kdig, read_log, tool};

/// The gsqlite3 schema Debian's `pdns-backend-sqlite3` ships.
const SCHEMA: &str = "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql";

/// A running `pdns_server` with one zone; killed when dropped.
pub struct PdnsServer {
    /// `http://127.0.0.1:PORT`, the form `PDNS_API_URL` takes.
    pub api_url: String,
    /// The `X-API-Key` the API wants (random per server).
    pub api_key: String,
    /// The server id in API paths (`PDNS_SERVER_ID`): always `localhost`.
    pub server_id: String,
    /// The DNS port (UDP and TCP) on 127.0.0.1.
    pub dns_port: u16,
    /// The zone it serves, without the trailing dot.
    pub zone: String,
    /// With `dnsupdate`: the only key allowed to update and transfer the zone.
    pub tsig: Option<TsigKey>,
    http: reqwest::Client,
    child: Child,
    log: PathBuf,
    dir: tempfile::TempDir,
}

impl PdnsServer {
    /// Starts PowerDNS with the API on and `zone` (`example.com`) created
    /// through it with a SOA and an NS `ns1.<zone>.`; no DNS updates, no
    /// transfers.
    pub async fn start(zone: &str) -> anyhow::Result<PdnsServer> {
        PdnsServer::launch(zone, false).await
    }

    /// As [`PdnsServer::start`], plus `dnsupdate=yes` from loopback with a
    /// fresh TSIG key ([`PdnsServer::tsig`]) required for updates
    /// (`TSIG-ALLOW-DNSUPDATE`) and transfers (`TSIG-ALLOW-AXFR`) of the zone.
    pub async fn start_with_dnsupdate(zone: &str) -> anyhow::Result<PdnsServer> {
        PdnsServer::launch(zone, true).await
    }

    async fn launch(zone: &str, dnsupdate: bool) -> anyhow::Result<PdnsServer> {
        let pdns_server = tool("pdns_server", "pdns-server")?;
        tool("kdig", "knot-dnsutils")?;
        let schema = std::fs::read_to_string(SCHEMA).with_context(|| {
            format!(
                "read {SCHEMA}: PowerDNS's SQLite backend is not installed, \
                 install it with `apt-get install pdns-backend-sqlite3`"
            )
        })?;
        let zone = zone.trim_end_matches('.').to_string();
        let dir = tempfile::Builder::new()
            .prefix("trafego-pdns-")
            .tempdir()
            .context("create a temporary directory for pdns_server")?;
        let db = dir.path().join("pdns.sqlite3");
        let db_str = db
            .to_str()
            .context("temporary directory path is not UTF-8")?;
        SqliteConnection::establish(db_str)
            .context("create PowerDNS's SQLite database")?
            .batch_execute(&schema)
            .context("load PowerDNS's SQLite schema")?;

        let api_key: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(32)
            .map(char::from)
            .collect();
        let dns_port = free_dns_port();
        let api_port = crate::free_port();
        let mut conf = format!(
            "launch=gsqlite3\n\
             gsqlite3-database={db}\n\
             local-address=127.0.0.1\n\
             local-port={dns_port}\n\
             webserver=yes\n\
             api=yes\n\
             api-key={api_key}\n\
             webserver-address=127.0.0.1\n\
             webserver-port={api_port}\n\
             webserver-allow-from=127.0.0.0/8\n\
             daemon=no\n\
             guardian=no\n\
             socket-dir={socket_dir}\n\
             disable-syslog=yes\n\
             security-poll-suffix=\n\
             loglevel=6\n\
             receiver-threads=1\n\
             distributor-threads=1\n\
             cache-ttl=0\n\
             negquery-cache-ttl=0\n\
             query-cache-ttl=0\n\
             allow-axfr-ips=\n",
            db = db.display(),
            socket_dir = dir.path().display(),
        );
        if dnsupdate {
            conf.push_str("dnsupdate=yes\nallow-dnsupdate-from=127.0.0.0/8\n");
        }
        std::fs::write(dir.path().join("pdns.conf"), conf)?;
        let log = dir.path().join("pdns.log");
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(pdns_server)
            .arg(format!("--config-dir={}", dir.path().display()))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .spawn()
            .context("start pdns_server")?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()?;
        let mut server = PdnsServer {
            api_url: format!("http://127.0.0.1:{api_port}"),
            api_key,
            server_id: "localhost".to_string(),
            dns_port,
            zone,
            tsig: dnsupdate.then(|| TsigKey::generate("trafego-key")),
            http,
            child,
            log,
            dir,
        };
        server.wait_for_api().await?;
        server.create_zone().await?;
        let zone = server.zone.clone();
        server.wait_for_dns(&zone).await?;
        Ok(server)
    }

    /// Creates one more zone (`dev.example.com` beside `example.com`, or an
    /// unrelated one) through the API, with a SOA and an NS `ns1.<zone>.`
    /// and no TSIG, and waits until it is served: for runs over several
    /// zones of one server.
    pub async fn add_zone(&mut self, zone: &str) -> anyhow::Result<()> {
        let zone = zone.trim_end_matches('.').to_string();
        let body = zone_body(&zone, Vec::new());
        self.api_expect(reqwest::Method::POST, "zones", Some(body), 201)
            .await?;
        self.wait_for_dns(&zone).await
    }

    /// Polls the API (each attempt a fresh connect, refused at once until the
    /// webserver listens) for at most [`READY_TIMEOUT`].
    async fn wait_for_api(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("{}/api/v1/servers/{}", self.api_url, self.server_id);
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "pdns_server exited ({status}) before its API answered; its log:\n{}",
                    self.log_text()
                );
            }
            let last = match self
                .http
                .get(&url)
                .header("X-API-Key", &self.api_key)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                bail!(
                    "pdns_server's API did not answer within {READY_TIMEOUT:?} ({last}); its log:\n{}",
                    self.log_text()
                );
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// Creates the zone through the API; with dnsupdate, first the key (the
    /// `tsigkeys` table), then ties it to the zone for transfers
    /// (`master_tsig_key_ids`, stored as `TSIG-ALLOW-AXFR`: 4.7's metadata
    /// endpoint refuses that kind) and for updates (`TSIG-ALLOW-DNSUPDATE`).
    async fn create_zone(&self) -> anyhow::Result<()> {
        let zone = &self.zone;
        let mut key_ids = Vec::new();
        if let Some(key) = &self.tsig {
            let body = json!({"name": key.name, "algorithm": key.algorithm, "key": key.secret});
            let created = self
                .api_expect(reqwest::Method::POST, "tsigkeys", Some(body), 201)
                .await?;
            key_ids.push(created["id"].clone());
        }
        let body = zone_body(zone, key_ids);
        self.api_expect(reqwest::Method::POST, "zones", Some(body), 201)
            .await?;
        if let Some(key) = &self.tsig {
            let body = json!({"metadata": [key.name]});
            let path = format!("zones/{zone}./metadata/TSIG-ALLOW-DNSUPDATE");
            self.api_expect(reqwest::Method::PUT, &path, Some(body), 200)
                .await?;
        }
        Ok(())
    }

    /// Polls with a SOA query over TCP until the zone is served, for at most
    /// [`READY_TIMEOUT`].
    async fn wait_for_dns(&mut self, zone: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let reply = kdig(self.dns_port, None, &["+tcp", zone, "SOA"]).await;
            if reply.is_ok() && !reply.records.is_empty() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "pdns_server exited ({status}) before it served {zone}; its log:\n{}",
                    self.log_text()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "pdns_server did not answer the SOA of {zone} within {READY_TIMEOUT:?}; last reply:\n{}\nits log:\n{}",
                    reply.output,
                    self.log_text()
                );
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// `{api_url}/api/v1/servers/localhost/zones/{zone}.`, where the zone is
    /// read (`GET`) and changed (`PATCH`).
    pub fn zone_url(&self) -> String {
        format!(
            "{}/api/v1/servers/{}/zones/{}.",
            self.api_url, self.server_id, self.zone
        )
    }

    /// `127.0.0.1:port` of the DNS listener, the form `RFC2136_SERVER` takes.
    pub fn dns_server(&self) -> String {
        format!("127.0.0.1:{}", self.dns_port)
    }

    /// Calls the API at `/api/v1/servers/localhost/{path}` with the key;
    /// returns the HTTP status and the JSON body (`Null` when empty).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let url = format!("{}/api/v1/servers/{}/{path}", self.api_url, self.server_id);
        let mut request = self
            .http
            .request(method, &url)
            .header("X-API-Key", &self.api_key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("call {url}"))?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{url} answered {status}: {text}"))?
        };
        Ok((status, value))
    }

    /// As [`PdnsServer::api`], failing (with the server's log) unless the
    /// status is `want`.
    async fn api_expect(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        want: u16,
    ) -> anyhow::Result<Value> {
        let label = format!("{method} {path}");
        let (status, value) = self.api(method, path, body).await?;
        if status != want {
            bail!(
                "PowerDNS API {label} answered {status} (wanted {want}): {value}\nits log:\n{}",
                self.log_text()
            );
        }
        Ok(value)
    }

    /// The temporary directory holding its configuration, database and log.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Everything pdns_server logged so far.
    pub fn log_text(&self) -> String {
        read_log(&self.log)
    }
}

/// The `POST zones` body of a native zone with a SOA and an NS `ns1.<zone>.`
/// (tied to the TSIG keys of `key_ids` for transfers).
fn zone_body(zone: &str, key_ids: Vec<Value>) -> Value {
    json!({
        "name": format!("{zone}."),
        "kind": "Native",
        "nameservers": [],
        "master_tsig_key_ids": key_ids,
        "rrsets": [
            {
                "name": format!("{zone}."),
                "type": "SOA",
                "ttl": 300,
                "records": [{
                    "content": format!("ns1.{zone}. hostmaster.{zone}. 1 3600 600 86400 300"),
                    "disabled": false
                }]
            },
            {
                "name": format!("{zone}."),
                "type": "NS",
                "ttl": 300,
                "records": [{"content": format!("ns1.{zone}."), "disabled": false}]
            }
        ]
    })
}

impl Drop for PdnsServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "pdns_server log ({}):\n{}",
                self.log.display(),
                self.log_text()
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
