//! tracking-service's configuration: every setting is an environment variable
//! and a flag (`--help` lists them), with the names TrafegoDNS users know.
//!
//! Settings that describe records (defaults, MANAGED_HOSTNAMES, PRESERVED_HOSTNAMES)
//! are validated here, at start, so a typo stops the service instead of
//! producing a wrong record later. Nothing here talks to the network.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use trafego_common::db::DbUrl;
use trafego_common::duration;
use trafego_proto::validate::{Hostname, RecordType};

use crate::preserve::Preserved;

/// tracking-service: decides which DNS records should exist, tracks what the
/// app manages and cleans up orphans, through cache-service.
///
/// `Debug` is written by hand: it never prints CACHE_SERVICE_TOKEN (nor,
/// through `MeshArgs`, AUTH_TOKEN).
#[derive(Clone, Parser)]
#[command(name = "tracking-service", version, about, long_about = None)]
pub struct Config {
    /// gRPC listen address. Loopback by default; containers set 0.0.0.0:50052.
    #[arg(long, env = "TRACKING_LISTEN_ADDR", default_value = "127.0.0.1:50052")]
    pub listen_addr: SocketAddr,

    /// SQLite database file of the tracker (created with mode 0600); used when
    /// neither TRACKING_DATABASE_URL nor DATABASE_URL is set.
    #[arg(long, env = "TRACKING_DB_PATH", default_value = "./data/tracking.db")]
    pub db_path: PathBuf,

    /// The tracker's database: postgres://user:password@host:port/db (or
    /// postgresql://) for PostgreSQL; a path or sqlite://path for SQLite.
    #[arg(long, env = "TRACKING_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// As TRACKING_DATABASE_URL, shared by both services; TRACKING_DATABASE_URL wins.
    #[arg(
        long = "shared-database-url",
        env = "DATABASE_URL",
        hide_env_values = true
    )]
    pub shared_database_url: Option<String>,

    /// Where cache-service listens.
    #[arg(
        long,
        env = "CACHE_SERVICE_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub cache_service_url: String,

    /// The zone; optional. When set it must equal cache-service's zone.
    #[arg(long, env = "DNS_ZONE")]
    pub zone: Option<String>,

    /// Record type of a declared hostname that gives neither type nor an IP address.
    #[arg(long, env = "DNS_DEFAULT_TYPE", default_value = "CNAME")]
    pub default_type: String,

    /// Content of a declared hostname that gives none (default for CNAME: the zone apex).
    #[arg(long, env = "DNS_DEFAULT_CONTENT")]
    pub default_content: Option<String>,

    /// TTL of a declared hostname that gives none (1 = automatic).
    #[arg(long, env = "DNS_DEFAULT_TTL", default_value_t = 1)]
    pub default_ttl: u32,

    /// Proxied default for A, AAAA and CNAME records (applied only when
    /// cache-service's provider is Cloudflare; other providers cannot proxy).
    #[arg(long, env = "DNS_DEFAULT_PROXIED", default_value_t = true, action = clap::ArgAction::Set)]
    pub default_proxied: bool,

    /// IPv4 address for A records without content and for the zone apex.
    #[arg(long, env = "PUBLIC_IP")]
    pub public_ip: Option<Ipv4Addr>,

    /// IPv6 address for AAAA records without content and for the zone apex.
    #[arg(long, env = "PUBLIC_IPV6")]
    pub public_ipv6: Option<Ipv6Addr>,

    /// Delete orphaned app-managed records after the grace period (off by default).
    #[arg(long, env = "CLEANUP_ORPHANED", default_value_t = false, action = clap::ArgAction::Set)]
    pub cleanup_orphaned: bool,

    /// How long a record stays orphaned before cleanup may delete it (bare numbers are minutes).
    #[arg(long, env = "CLEANUP_GRACE_PERIOD", default_value = "15m", value_parser = duration::parse_minutes)]
    pub cleanup_grace_period: Duration,

    /// How often the orphan sweep runs (bare numbers are milliseconds).
    #[arg(long, env = "CLEANUP_INTERVAL", default_value = "60s", value_parser = duration::parse_millis)]
    pub cleanup_interval: Duration,

    /// Hostnames never deleted: exact names and `*.suffix` patterns, comma-separated.
    #[arg(long, env = "PRESERVED_HOSTNAMES", default_value = "")]
    pub preserved_hostnames: String,

    /// Hostnames always kept, as `host:type[:content][:ttl][:proxied]`, comma-separated.
    #[arg(long, env = "MANAGED_HOSTNAMES", default_value = "")]
    pub managed_hostnames: String,

    /// Share of a source's records one reconcile may orphan (sources of 10 or more records).
    #[arg(long, env = "MAX_ORPHAN_RATIO", default_value_t = 0.3)]
    pub max_orphan_ratio: f64,

    /// Reconcile never plans against a cache older than this (bare numbers are seconds).
    #[arg(long, env = "RECONCILE_MAX_STALENESS", default_value = "60s", value_parser = duration::parse_seconds)]
    pub reconcile_max_staleness: Duration,

    /// Time limit of each call to cache-service (bare numbers are milliseconds).
    #[arg(long, env = "CACHE_SERVICE_TIMEOUT", default_value = "30s", value_parser = duration::parse_millis)]
    pub cache_service_timeout: Duration,

    /// Bearer token sent to cache-service (its AUTH_TOKEN).
    #[arg(long, env = "CACHE_SERVICE_TOKEN", hide_env_values = true)]
    pub cache_service_token: Option<String>,

    /// File holding the bearer token sent to cache-service.
    #[arg(long, env = "CACHE_SERVICE_TOKEN_FILE")]
    pub cache_service_token_file: Option<PathBuf>,

    /// PEM CA that signed cache-service's certificate (TLS; use an https:// CACHE_SERVICE_URL).
    #[arg(long, env = "CACHE_SERVICE_CA_FILE")]
    pub cache_service_ca_file: Option<PathBuf>,

    /// PEM client certificate presented to cache-service (mTLS).
    #[arg(long, env = "CACHE_SERVICE_CLIENT_CERT_FILE")]
    pub cache_service_client_cert_file: Option<PathBuf>,

    /// PEM key of CACHE_SERVICE_CLIENT_CERT_FILE.
    #[arg(long, env = "CACHE_SERVICE_CLIENT_KEY_FILE")]
    pub cache_service_client_key_file: Option<PathBuf>,

    /// Name to verify in cache-service's certificate (default: the URL's host).
    #[arg(long, env = "CACHE_SERVICE_TLS_DOMAIN")]
    pub cache_service_tls_domain: Option<String>,

    /// Names this installation in ownership markers (letters, digits, '-', '_', '.'; at most 40).
    #[arg(long, env = "OWNER_ID")]
    pub owner_id: Option<String>,

    /// Ownership markers on the records the app creates: off, comment or txt (needs OWNER_ID).
    #[arg(long, env = "OWNERSHIP_MARKER", default_value = "off")]
    pub ownership_marker: String,

    /// Prefix of TXT marker names; may hold %{record_type} (OWNERSHIP_MARKER=txt).
    #[arg(long, env = "OWNERSHIP_TXT_PREFIX", default_value = "")]
    pub ownership_txt_prefix: String,

    /// The built-in hostname sources (SOURCES, Traefik, Docker).
    #[command(flatten)]
    pub sources: crate::source::SourceArgs,

    /// Shutdown grace, database pool, logging, and mesh settings (auth, TLS, limits, metrics).
    #[command(flatten)]
    pub service: trafego_common::service_args::ServiceArgs,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen_addr", &self.listen_addr)
            .field("db_path", &self.db_path)
            .field(
                "database_url",
                &self.database_url.as_deref().map(trafego_common::db::redact),
            )
            .field(
                "shared_database_url",
                &self
                    .shared_database_url
                    .as_deref()
                    .map(trafego_common::db::redact),
            )
            .field("cache_service_url", &self.cache_service_url)
            .field("zone", &self.zone)
            .field("default_type", &self.default_type)
            .field("default_content", &self.default_content)
            .field("default_ttl", &self.default_ttl)
            .field("default_proxied", &self.default_proxied)
            .field("public_ip", &self.public_ip)
            .field("public_ipv6", &self.public_ipv6)
            .field("cleanup_orphaned", &self.cleanup_orphaned)
            .field("cleanup_grace_period", &self.cleanup_grace_period)
            .field("cleanup_interval", &self.cleanup_interval)
            .field("preserved_hostnames", &self.preserved_hostnames)
            .field("managed_hostnames", &self.managed_hostnames)
            .field("max_orphan_ratio", &self.max_orphan_ratio)
            .field("reconcile_max_staleness", &self.reconcile_max_staleness)
            .field("cache_service_timeout", &self.cache_service_timeout)
            .field(
                "cache_service_token",
                &self.cache_service_token.as_ref().map(|_| "<redacted>"),
            )
            .field("cache_service_token_file", &self.cache_service_token_file)
            .field("cache_service_ca_file", &self.cache_service_ca_file)
            .field(
                "cache_service_client_cert_file",
                &self.cache_service_client_cert_file,
            )
            .field(
                "cache_service_client_key_file",
                &self.cache_service_client_key_file,
            )
            .field("cache_service_tls_domain", &self.cache_service_tls_domain)
            .field("owner_id", &self.owner_id)
            .field("ownership_marker", &self.ownership_marker)
            .field("ownership_txt_prefix", &self.ownership_txt_prefix)
            .field("sources", &self.sources)
            .field("service", &self.service)
            .finish()
    }
}

/// One MANAGED_HOSTNAMES entry, validated except for zone membership (the
/// zone is only known once cache-service answers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedEntry {
    /// The hostname.
    pub hostname: String,
    /// The record type.
    pub rtype: RecordType,
    /// Content, if the entry gives one.
    pub content: Option<String>,
    /// TTL, if the entry gives one.
    pub ttl: Option<u32>,
    /// Proxied, if the entry gives it.
    pub proxied: Option<bool>,
}

impl Config {
    /// The token and TLS settings for reaching cache-service.
    pub fn cache_client_security(&self) -> anyhow::Result<crate::cache_client::ClientSecurity> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let token = trafego_common::mesh::read_secret(
            "CACHE_SERVICE_TOKEN",
            self.cache_service_token.as_deref(),
            self.cache_service_token_file.as_ref(),
        )?;
        let read = |what: &str, p: &PathBuf| {
            std::fs::read(p).with_context(|| format!("reading {what} {}", p.display()))
        };
        let mut tls = None;
        if let Some(ca) = &self.cache_service_ca_file {
            let mut t = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read("CACHE_SERVICE_CA_FILE", ca)?));
            if let Some(d) = &self.cache_service_tls_domain {
                t = t.domain_name(d.clone());
            }
            tls = Some(t);
        }
        match (
            &self.cache_service_client_cert_file,
            &self.cache_service_client_key_file,
        ) {
            (Some(c), Some(k)) => {
                let identity = Identity::from_pem(
                    read("CACHE_SERVICE_CLIENT_CERT_FILE", c)?,
                    read("CACHE_SERVICE_CLIENT_KEY_FILE", k)?,
                );
                let Some(t) = tls else {
                    anyhow::bail!(
                        "a client certificate for cache-service needs CACHE_SERVICE_CA_FILE too"
                    );
                };
                tls = Some(t.identity(identity));
            }
            (None, None) => {}
            _ => anyhow::bail!(
                "CACHE_SERVICE_CLIENT_CERT_FILE and CACHE_SERVICE_CLIENT_KEY_FILE must be set together"
            ),
        }
        if tls.is_some() && !self.cache_service_url.starts_with("https://") {
            anyhow::bail!("TLS settings for cache-service need an https:// CACHE_SERVICE_URL");
        }
        Ok(crate::cache_client::ClientSecurity { token, tls })
    }

    /// The tracker's database and the setting that chose it:
    /// TRACKING_DATABASE_URL, else DATABASE_URL, else TRACKING_DB_PATH (a
    /// SQLite file, today's default).
    pub fn database(&self) -> anyhow::Result<(DbUrl, &'static str)> {
        let chosen = DbUrl::first_of(&[
            ("TRACKING_DATABASE_URL", self.database_url.as_deref()),
            ("DATABASE_URL", self.shared_database_url.as_deref()),
        ])
        .map_err(anyhow::Error::msg)?;
        Ok(chosen.unwrap_or_else(|| (DbUrl::Sqlite(self.db_path.clone()), "TRACKING_DB_PATH")))
    }

    /// The configuration from these arguments alone (environment ignored): for tests.
    pub fn for_test(args: &[&str]) -> Self {
        let mut cmd = <Self as clap::CommandFactory>::command();
        for a in cmd
            .get_arguments()
            .map(|a| a.get_id().clone())
            .collect::<Vec<_>>()
        {
            cmd = cmd.mut_arg(a, |a| a.env(None::<&str>));
        }
        let m = cmd
            .try_get_matches_from(std::iter::once("tracking-service").chain(args.iter().copied()))
            .expect("test configuration");
        <Self as clap::FromArgMatches>::from_arg_matches(&m).expect("test configuration")
    }

    /// DNS_ZONE, validated, if set.
    pub fn zone(&self) -> anyhow::Result<Option<Hostname>> {
        self.zone
            .as_deref()
            .filter(|z| !z.trim().is_empty())
            .map(|z| Hostname::parse("DNS_ZONE", z).map_err(|e| anyhow::anyhow!("{e}")))
            .transpose()
    }

    /// DNS_DEFAULT_TYPE, validated.
    pub fn default_type(&self) -> anyhow::Result<RecordType> {
        RecordType::parse("DNS_DEFAULT_TYPE", &self.default_type)
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// PRESERVED_HOSTNAMES, validated.
    pub fn preserved(&self) -> anyhow::Result<Preserved> {
        Preserved::parse(&self.preserved_hostnames)
    }

    /// MANAGED_HOSTNAMES, parsed.
    pub fn managed(&self) -> anyhow::Result<Vec<ManagedEntry>> {
        parse_managed(&self.managed_hostnames)
    }

    /// OWNER_ID, OWNERSHIP_MARKER and OWNERSHIP_TXT_PREFIX, validated:
    /// `None` when markers are off.
    pub fn ownership(&self) -> anyhow::Result<Option<crate::ownership::Ownership>> {
        crate::ownership::Ownership::from_settings(
            self.owner_id.as_deref(),
            &self.ownership_marker,
            &self.ownership_txt_prefix,
        )
    }

    /// Checks every setting that can be checked before cache-service answers.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.zone()?;
        let t = self.default_type()?;
        if let Some(c) = &self.default_content {
            trafego_proto::validate::parse_content("DNS_DEFAULT_CONTENT", t, c)
                .map_err(|e| anyhow::anyhow!("{e} (for DNS_DEFAULT_TYPE {t})"))?;
        }
        trafego_proto::validate::parse_ttl("DNS_DEFAULT_TTL", self.default_ttl)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if !(0.0..=1.0).contains(&self.max_orphan_ratio) || self.max_orphan_ratio.is_nan() {
            bail!(
                "MAX_ORPHAN_RATIO {} must be between 0 and 1",
                self.max_orphan_ratio
            );
        }
        self.preserved()?;
        self.managed()?;
        crate::cache_client::parse_url(&self.cache_service_url)?;
        self.sources.settings()?;
        self.ownership()?;
        Ok(())
    }
}

/// Parses MANAGED_HOSTNAMES: `host:type[:content][:ttl][:proxied]`, comma-separated.
///
/// Content may itself hold colons (IPv6), so the optional trailing fields are
/// read from the right: the reading that takes the most trailing fields as a
/// valid TTL and/or proxied flag while leaving valid content wins.
pub fn parse_managed(s: &str) -> anyhow::Result<Vec<ManagedEntry>> {
    let mut out = Vec::new();
    for (i, raw) in s.split(',').map(str::trim).enumerate() {
        if raw.is_empty() {
            continue;
        }
        let ctx = || format!("MANAGED_HOSTNAMES entry {} ({raw:?})", i + 1);
        let mut it = raw.splitn(3, ':');
        let host = it.next().unwrap_or_default();
        let Some(rtype) = it.next() else {
            bail!("{}: expected host:type[:content][:ttl][:proxied]", ctx());
        };
        let hostname = Hostname::parse("hostname", host)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(ctx)?;
        let rtype = RecordType::parse("type", rtype)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(ctx)?;
        let rest = it.next().unwrap_or("");
        let (content, ttl, proxied) = split_tail(rtype, rest).with_context(ctx)?;
        out.push(ManagedEntry {
            hostname: hostname.as_str().to_string(),
            rtype,
            content,
            ttl,
            proxied,
        });
    }
    Ok(out)
}

type Tail = (Option<String>, Option<u32>, Option<bool>);

fn split_tail(rtype: RecordType, rest: &str) -> anyhow::Result<Tail> {
    if rest.is_empty() {
        return Ok((None, None, None));
    }
    let parts: Vec<&str> = rest.split(':').collect();
    let content_ok = |c: &str| {
        c.is_empty() || trafego_proto::validate::parse_content("content", rtype, c).is_ok()
    };
    let ttl = |s: &str| s.parse::<u32>().ok();
    let flag = |s: &str| match s.to_ascii_lowercase().as_str() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    };
    let opt = |c: String| (!c.is_empty()).then_some(c);
    let n = parts.len();
    // Two trailing fields: ttl and proxied.
    if n >= 3 {
        let c = parts[..n - 2].join(":");
        if let (Some(t), Some(p)) = (ttl(parts[n - 2]), flag(parts[n - 1]))
            && content_ok(&c)
        {
            return Ok((opt(c), Some(t), Some(p)));
        }
    }
    // One trailing field: a ttl or a proxied flag.
    if n >= 2 {
        let c = parts[..n - 1].join(":");
        if content_ok(&c) {
            if let Some(t) = ttl(parts[n - 1]) {
                return Ok((opt(c), Some(t), None));
            }
            if let Some(p) = flag(parts[n - 1]) {
                return Ok((opt(c), None, Some(p)));
            }
        }
    }
    if content_ok(rest) {
        return Ok((opt(rest.to_string()), None, None));
    }
    bail!(
        "content {rest:?} is not valid for a {rtype} record (or its ttl/proxied fields are malformed)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_hostnames_parse() {
        let v = parse_managed(
            "api.example.com:A:192.0.2.1:3600:false, v6.example.com:AAAA:2001:db8::1, www.example.com:CNAME, \
             t.example.com:AAAA:2001:db8::1:300:true",
        )
        .unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[0].content.as_deref(), Some("192.0.2.1"));
        assert_eq!(v[0].ttl, Some(3600));
        assert_eq!(v[0].proxied, Some(false));
        assert_eq!(v[1].content.as_deref(), Some("2001:db8::1"));
        assert_eq!(v[1].ttl, None);
        assert_eq!(v[2].rtype, RecordType::Cname);
        assert_eq!(v[2].content, None);
        assert_eq!(v[3].content.as_deref(), Some("2001:db8::1"));
        assert_eq!(v[3].ttl, Some(300));
        assert_eq!(v[3].proxied, Some(true));
        assert!(parse_managed("nohost").is_err());
        assert!(parse_managed("a.example.com:PTR").is_err());
        assert!(parse_managed("a.example.com:A:not-an-ip").is_err());
        assert!(parse_managed("").unwrap().is_empty());
    }

    #[test]
    fn defaults_match_the_design() {
        let c = Config::for_test(&[]);
        assert_eq!(c.listen_addr.to_string(), "127.0.0.1:50052");
        assert_eq!(c.cleanup_grace_period, Duration::from_secs(900));
        assert_eq!(c.cleanup_interval, Duration::from_secs(60));
        assert!(!c.cleanup_orphaned);
        assert!(c.default_proxied);
        assert_eq!(c.default_ttl, 1);
        c.validate().unwrap();
        let c = Config::for_test(&["--cleanup-grace-period", "5", "--cleanup-interval", "1500"]);
        assert_eq!(c.cleanup_grace_period, Duration::from_secs(300));
        assert_eq!(c.cleanup_interval, Duration::from_millis(1500));
    }

    #[test]
    fn the_database_url_wins_over_the_shared_one_and_the_path() {
        let c = Config::for_test(&[]);
        assert_eq!(
            c.database().unwrap(),
            (
                DbUrl::Sqlite("./data/tracking.db".into()),
                "TRACKING_DB_PATH"
            )
        );
        let c = Config::for_test(&[
            "--db-path",
            "/var/t.db",
            "--shared-database-url",
            "postgres://u:pw@shared/db",
        ]);
        assert_eq!(
            c.database().unwrap(),
            (
                DbUrl::Postgres("postgres://u:pw@shared/db".into()),
                "DATABASE_URL"
            )
        );
        let c = Config::for_test(&[
            "--database-url",
            "sqlite:///var/own.db",
            "--shared-database-url",
            "postgres://u:pw@shared/db",
        ]);
        assert_eq!(
            c.database().unwrap(),
            (DbUrl::Sqlite("/var/own.db".into()), "TRACKING_DATABASE_URL")
        );
        let c = Config::for_test(&["--database-url", "mysql://u:pw@h/db"]);
        let err = c.database().unwrap_err().to_string();
        assert!(
            err.starts_with("TRACKING_DATABASE_URL:") && !err.contains("pw@"),
            "{err}"
        );
        // The password never shows in the configuration's Debug.
        let c = Config::for_test(&["--database-url", "postgres://u:hunter2@h/db"]);
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
