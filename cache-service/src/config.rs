//! cache-service's configuration: every setting is an environment variable and
//! a flag (`--help` lists them). Secrets are never shown: not in `--help`, not
//! in `Debug`, not in logs.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use trafego_common::db::DbUrl;
use trafego_common::duration;
use trafego_proto::validate::Hostname;

use crate::cache::CacheSettings;
use crate::provider::DnsProvider;
use crate::provider::cloudflare::{CloudflareConfig, CloudflareProvider};
use crate::provider::digitalocean::{DigitalOceanConfig, DigitalOceanProvider};
use crate::provider::powerdns::{PowerDnsConfig, PowerDnsProvider};
use crate::provider::rfc2136::{Rfc2136Config, Rfc2136Provider, TsigSecret, parse_algorithm};
use crate::provider::route53::{Route53Config, Route53Provider};
use crate::provider::zonefile::{ZoneFileConfig, ZoneFileProvider};

/// Which provider holds the zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// An RFC 1035 zone file: no account needed, any DNS server can serve it.
    Zonefile,
    /// Cloudflare's API v4.
    Cloudflare,
    /// Any primary DNS server taking RFC 2136 updates signed with TSIG (BIND, Knot, PowerDNS).
    Rfc2136,
    /// PowerDNS Authoritative's HTTP API.
    Powerdns,
    /// DigitalOcean's API v2 (domain records).
    Digitalocean,
    /// Amazon Route53 (REST/XML, SigV4).
    Route53,
}

/// cache-service: the provider cache of TrafegoDNS.
#[derive(Clone, Parser)]
#[command(name = "cache-service", version, about, long_about = None)]
pub struct Config {
    /// gRPC listen address. Loopback by default; containers set 0.0.0.0:50051.
    #[arg(long, env = "CACHE_LISTEN_ADDR", default_value = "127.0.0.1:50051")]
    pub listen_addr: SocketAddr,

    /// SQLite database file of the cache (created with mode 0600); used when
    /// neither CACHE_DATABASE_URL nor DATABASE_URL is set.
    #[arg(long, env = "CACHE_DB_PATH", default_value = "./data/cache.db")]
    pub db_path: PathBuf,

    /// The cache's database: postgres://user:password@host:port/db (or
    /// postgresql://) for PostgreSQL; a path or sqlite://path for SQLite.
    #[arg(long, env = "CACHE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// As CACHE_DATABASE_URL, shared by both services; CACHE_DATABASE_URL wins.
    #[arg(
        long = "shared-database-url",
        env = "DATABASE_URL",
        hide_env_values = true
    )]
    pub shared_database_url: Option<String>,

    /// The DNS provider.
    #[arg(long, env = "DNS_PROVIDER", value_enum, default_value = "zonefile")]
    pub provider: ProviderKind,

    /// The zone managed, e.g. example.com. CLOUDFLARE_ZONE, DO_DOMAIN and ROUTE53_ZONE are accepted too.
    #[arg(long, env = "DNS_ZONE")]
    pub zone: Option<String>,

    /// Several zones of one provider account, comma-separated (e.g. example.com,example.org);
    /// a name goes to the longest zone it lies in. The one-zone settings, if set, must agree.
    #[arg(long, env = "DNS_ZONES", value_delimiter = ',')]
    pub zones: Vec<String>,

    /// Zone listings run at once, at most (the zones share the provider's request budget).
    #[arg(long, env = "REFRESH_CONCURRENCY", default_value_t = 4)]
    pub refresh_concurrency: usize,

    /// The zone name as TrafegoDNS users set it for Cloudflare (same as DNS_ZONE).
    #[arg(long, env = "CLOUDFLARE_ZONE")]
    pub cloudflare_zone: Option<String>,

    /// The zone file (default ./data/<zone>.zone); with several zones it must contain
    /// {zone}, e.g. /data/{zone}.zone (one file per zone).
    #[arg(long, env = "ZONEFILE_PATH")]
    pub zonefile_path: Option<PathBuf>,

    /// TTL written to the zone file for records asking for an automatic TTL.
    #[arg(long, env = "ZONEFILE_DEFAULT_TTL", default_value_t = 300)]
    pub zonefile_default_ttl: u32,

    /// Name server a new zone file names (SOA primary and apex NS). The default,
    /// localhost, lies outside the zone, so the file needs no glue and loads in BIND and Knot.
    #[arg(long, env = "ZONEFILE_NS", default_value = "localhost")]
    pub zonefile_ns: String,

    /// Addresses (comma-separated) of ZONEFILE_NS written into a new zone file as its
    /// A/AAAA glue; required when ZONEFILE_NS lies inside the zone, refused otherwise.
    #[arg(long, env = "ZONEFILE_NS_ADDRESS", value_delimiter = ',')]
    pub zonefile_ns_address: Vec<IpAddr>,

    /// Cloudflare API token (prefer CLOUDFLARE_TOKEN_FILE).
    #[arg(long, env = "CLOUDFLARE_TOKEN", hide_env_values = true)]
    pub cloudflare_token: Option<String>,

    /// File holding the Cloudflare API token.
    #[arg(long, env = "CLOUDFLARE_TOKEN_FILE")]
    pub cloudflare_token_file: Option<PathBuf>,

    /// Cloudflare zone id; when unset the zone is found by name.
    #[arg(long, env = "CLOUDFLARE_ZONE_ID")]
    pub cloudflare_zone_id: Option<String>,

    /// Cloudflare API base URL (point it at a compatible endpoint or a test fake).
    #[arg(
        long,
        env = "CLOUDFLARE_API_URL",
        default_value = "https://api.cloudflare.com/client/v4"
    )]
    pub cloudflare_api_url: String,

    /// Records per page when listing the zone.
    #[arg(long, env = "CLOUDFLARE_PER_PAGE", default_value_t = 5000)]
    pub cloudflare_per_page: u32,

    /// Changes per batch request.
    #[arg(long, env = "CLOUDFLARE_BATCH_SIZE", default_value_t = 200)]
    pub cloudflare_batch_size: usize,

    /// Shortest explicit TTL the Cloudflare zone accepts (60; 30 on Enterprise zones).
    /// Shorter TTLs are refused with INVALID_ARGUMENT; 1 (automatic) always passes.
    #[arg(long, env = "CLOUDFLARE_MIN_TTL", default_value_t = crate::provider::cloudflare::DEFAULT_MIN_TTL)]
    pub cloudflare_min_ttl: u32,

    /// Client-side request budget per window (Cloudflare allows 1200 per 5 minutes).
    #[arg(long, env = "CLOUDFLARE_RATE_LIMIT", default_value_t = 1200)]
    pub cloudflare_rate_limit: u32,

    /// The budget's window (bare numbers are milliseconds).
    #[arg(long, env = "CLOUDFLARE_RATE_WINDOW", default_value = "300s", value_parser = duration::parse_millis)]
    pub cloudflare_rate_window: Duration,

    /// RFC 2136: the zone's primary server, host:port (port 53 when left out).
    #[arg(long, env = "RFC2136_SERVER")]
    pub rfc2136_server: Option<String>,

    /// RFC 2136: the TSIG key's name, as the server knows it.
    #[arg(long, env = "RFC2136_TSIG_KEY_NAME")]
    pub rfc2136_tsig_key_name: Option<String>,

    /// RFC 2136: the TSIG secret, base64 (prefer RFC2136_TSIG_SECRET_FILE).
    #[arg(long, env = "RFC2136_TSIG_SECRET", hide_env_values = true)]
    pub rfc2136_tsig_secret: Option<String>,

    /// RFC 2136: file holding the TSIG secret, base64.
    #[arg(long, env = "RFC2136_TSIG_SECRET_FILE")]
    pub rfc2136_tsig_secret_file: Option<PathBuf>,

    /// RFC 2136: the TSIG algorithm: hmac-sha256, hmac-sha384 or hmac-sha512.
    #[arg(long, env = "RFC2136_TSIG_ALGORITHM", default_value = "hmac-sha256")]
    pub rfc2136_tsig_algorithm: String,

    /// RFC 2136: longest wait for a connection, a write or one answer message (bare numbers are milliseconds).
    #[arg(long, env = "RFC2136_TIMEOUT", default_value = "10s", value_parser = duration::parse_millis)]
    pub rfc2136_timeout: Duration,

    /// RFC 2136: changes per UPDATE message.
    #[arg(long, env = "RFC2136_BATCH_SIZE", default_value_t = crate::provider::rfc2136::DEFAULT_BATCH_SIZE)]
    pub rfc2136_batch_size: usize,
    /// PowerDNS API webserver, e.g. http://127.0.0.1:8081 (DNS_PROVIDER=powerdns).
    #[arg(long, env = "PDNS_API_URL")]
    pub pdns_api_url: Option<String>,

    /// PowerDNS API key, sent as X-API-Key (prefer PDNS_API_KEY_FILE).
    #[arg(long, env = "PDNS_API_KEY", hide_env_values = true)]
    pub pdns_api_key: Option<String>,

    /// File holding the PowerDNS API key.
    #[arg(long, env = "PDNS_API_KEY_FILE")]
    pub pdns_api_key_file: Option<PathBuf>,

    /// PowerDNS server id in API paths.
    #[arg(long, env = "PDNS_SERVER_ID", default_value = crate::provider::powerdns::DEFAULT_SERVER_ID)]
    pub pdns_server_id: String,

    /// Changes per PowerDNS PATCH.
    #[arg(long, env = "PDNS_BATCH_SIZE", default_value_t = crate::provider::powerdns::DEFAULT_BATCH_SIZE)]
    pub pdns_batch_size: usize,

    /// TTL written to PowerDNS for records asking for an automatic TTL.
    #[arg(long, env = "PDNS_DEFAULT_TTL", default_value_t = crate::provider::powerdns::DEFAULT_TTL)]
    pub pdns_default_ttl: u32,
    /// DigitalOcean personal access token (prefer DO_TOKEN_FILE).
    #[arg(long, env = "DO_TOKEN", hide_env_values = true)]
    pub do_token: Option<String>,

    /// File holding the DigitalOcean token.
    #[arg(long, env = "DO_TOKEN_FILE")]
    pub do_token_file: Option<PathBuf>,

    /// The domain as TrafegoDNS users set it for DigitalOcean (same as DNS_ZONE).
    #[arg(long, env = "DO_DOMAIN")]
    pub do_domain: Option<String>,

    /// DigitalOcean API base URL (point it at a compatible endpoint or a test fake).
    #[arg(long, env = "DO_API_URL", default_value = crate::provider::digitalocean::DEFAULT_API_URL)]
    pub do_api_url: String,

    /// Records per page when listing the domain (DigitalOcean serves at most 200).
    #[arg(long, env = "DO_PER_PAGE", default_value_t = crate::provider::digitalocean::MAX_PER_PAGE)]
    pub do_per_page: u32,

    /// Client-side budget: requests in any hour (DigitalOcean allows 5000).
    #[arg(long, env = "DO_RATE_LIMIT", default_value_t = crate::provider::digitalocean::HOURLY_LIMIT)]
    pub do_rate_limit: u32,

    /// Client-side budget: requests in any minute (DigitalOcean allows 250).
    #[arg(long, env = "DO_BURST_LIMIT", default_value_t = crate::provider::digitalocean::MINUTE_LIMIT)]
    pub do_burst_limit: u32,
    /// AWS access key id for Route53.
    #[arg(long, env = "ROUTE53_ACCESS_KEY", hide_env_values = true)]
    pub route53_access_key: Option<String>,

    /// AWS secret access key for Route53 (prefer ROUTE53_SECRET_KEY_FILE).
    #[arg(long, env = "ROUTE53_SECRET_KEY", hide_env_values = true)]
    pub route53_secret_key: Option<String>,

    /// File holding the AWS secret access key.
    #[arg(long, env = "ROUTE53_SECRET_KEY_FILE")]
    pub route53_secret_key_file: Option<PathBuf>,

    /// The zone name as TrafegoDNS users set it for Route53 (same as DNS_ZONE).
    #[arg(long, env = "ROUTE53_ZONE")]
    pub route53_zone: Option<String>,

    /// Route53 hosted zone id (Z…); when unset the zone is found by name.
    #[arg(long, env = "ROUTE53_ZONE_ID")]
    pub route53_zone_id: Option<String>,

    /// AWS region; it picks the partition (Route53 is global and signs in us-east-1).
    #[arg(long, env = "ROUTE53_REGION", default_value = crate::provider::route53::DEFAULT_REGION)]
    pub route53_region: String,

    /// Route53 API URL (default: the partition's endpoint, https://route53.amazonaws.com).
    #[arg(long, env = "ROUTE53_API_URL")]
    pub route53_api_url: Option<String>,

    /// Record sets per Route53 listing page (1 to 300).
    #[arg(long, env = "ROUTE53_MAX_ITEMS", default_value_t = crate::provider::route53::MAX_ITEMS)]
    pub route53_max_items: u32,

    /// Changes per ChangeResourceRecordSets call (1 to 1000).
    #[arg(long, env = "ROUTE53_BATCH_SIZE", default_value_t = crate::provider::route53::MAX_BATCH)]
    pub route53_batch_size: usize,

    /// Client-side Route53 requests per second (Route53 allows 5 per account; 0 turns it off).
    #[arg(long, env = "ROUTE53_RATE_LIMIT", default_value_t = crate::provider::route53::DEFAULT_RATE_LIMIT)]
    pub route53_rate_limit: u32,

    /// Cache TTL and refresh period (bare numbers are milliseconds, as in TrafegoDNS).
    #[arg(long, env = "DNS_CACHE_REFRESH_INTERVAL", default_value = "1h", value_parser = duration::parse_millis)]
    pub refresh_interval: Duration,

    /// A provider listing taking longer than this fails the refresh (bare numbers are milliseconds).
    #[arg(long, env = "DNS_CACHE_REFRESH_TIMEOUT", default_value = "120s", value_parser = duration::parse_millis)]
    pub refresh_timeout: Duration,

    /// Recent cache events kept for watchers resuming from a past generation.
    #[arg(long, env = "WATCH_BUFFER", default_value_t = 10_000)]
    pub watch_buffer: usize,

    /// How long the outcome of a change sent with a change_id is kept for
    /// GetChangeOutcomes (durations: 7d, 24h; a bare number is milliseconds).
    #[arg(long, env = "CHANGE_JOURNAL_RETENTION", default_value = "7d", value_parser = duration::parse_millis)]
    pub change_journal_retention: Duration,

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
            .field("provider", &self.provider)
            .field("zone", &self.zone)
            .field("zones", &self.zones)
            .field(
                "cloudflare_token",
                &self.cloudflare_token.as_ref().map(|_| "<redacted>"),
            )
            .field("cloudflare_api_url", &self.cloudflare_api_url)
            .field("rfc2136_server", &self.rfc2136_server)
            .field("rfc2136_tsig_key_name", &self.rfc2136_tsig_key_name)
            .field(
                "rfc2136_tsig_secret",
                &self.rfc2136_tsig_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("do_token", &self.do_token.as_ref().map(|_| "<redacted>"))
            .field("do_api_url", &self.do_api_url)
            .field(
                "route53_secret_key",
                &self.route53_secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("route53_api_url", &self.route53_api_url)
            .field("refresh_interval", &self.refresh_interval)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The cache's database and the setting that chose it:
    /// CACHE_DATABASE_URL, else DATABASE_URL, else CACHE_DB_PATH (a SQLite
    /// file, the default).
    pub fn database(&self) -> anyhow::Result<(DbUrl, &'static str)> {
        let chosen = DbUrl::first_of(&[
            ("CACHE_DATABASE_URL", self.database_url.as_deref()),
            ("DATABASE_URL", self.shared_database_url.as_deref()),
        ])
        .map_err(anyhow::Error::msg)?;
        Ok(chosen.unwrap_or_else(|| (DbUrl::Sqlite(self.db_path.clone()), "CACHE_DB_PATH")))
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
            .try_get_matches_from(std::iter::once("cache-service").chain(args.iter().copied()))
            .expect("test configuration");
        <Self as clap::FromArgMatches>::from_arg_matches(&m).expect("test configuration")
    }

    /// The zone, when exactly one is served (see [`Config::zones`]).
    pub fn zone(&self) -> anyhow::Result<Hostname> {
        let mut zones = self.zones()?;
        match zones.len() {
            1 => Ok(zones.remove(0)),
            n => bail!("{n} zones are set (DNS_ZONES); this needs one"),
        }
    }

    /// The zones served, sorted: DNS_ZONES, or the one zone of DNS_ZONE,
    /// CLOUDFLARE_ZONE, DO_DOMAIN or ROUTE53_ZONE. Every one of these that is
    /// set must name the same zones; disagreeing ones are named.
    pub fn zones(&self) -> anyhow::Result<Vec<Hostname>> {
        let parse = |setting: &str, v: &str| {
            Hostname::parse(setting, v.trim()).map_err(|e| anyhow::anyhow!("{e}"))
        };
        let mut set: Vec<(&str, String, Vec<Hostname>)> = Vec::new();
        let listed: Vec<&String> = self.zones.iter().filter(|z| !z.trim().is_empty()).collect();
        if !listed.is_empty() {
            let mut zs = listed
                .iter()
                .map(|z| parse("DNS_ZONES", z))
                .collect::<anyhow::Result<Vec<_>>>()?;
            zs.sort();
            if let Some(w) = zs.windows(2).find(|w| w[0] == w[1]) {
                bail!("DNS_ZONES names {} twice", w[0]);
            }
            let shown = listed
                .iter()
                .map(|z| z.trim())
                .collect::<Vec<_>>()
                .join(",");
            set.push(("DNS_ZONES", shown, zs));
        }
        for (k, v) in [
            ("DNS_ZONE", &self.zone),
            ("CLOUDFLARE_ZONE", &self.cloudflare_zone),
            ("DO_DOMAIN", &self.do_domain),
            ("ROUTE53_ZONE", &self.route53_zone),
        ] {
            if let Some(v) = v {
                set.push((k, v.clone(), vec![parse(k, v)?]));
            }
        }
        match set.as_slice() {
            [] => bail!(
                "set DNS_ZONE (or --zone) to the zone to manage, e.g. example.com, or DNS_ZONES to several"
            ),
            [(k0, v0, z0), rest @ ..] => {
                if let Some((k, v, _)) = rest.iter().find(|(_, _, z)| z != z0) {
                    bail!("{k0} ({v0}) and {k} ({v}) disagree; set one")
                }
                Ok(z0.clone())
            }
        }
    }

    fn token(&self) -> anyhow::Result<String> {
        trafego_common::mesh::read_secret(
            "CLOUDFLARE_TOKEN",
            self.cloudflare_token.as_deref(),
            self.cloudflare_token_file.as_ref(),
        )?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "DNS_PROVIDER=cloudflare needs CLOUDFLARE_TOKEN or CLOUDFLARE_TOKEN_FILE"
            )
        })
    }

    fn rfc2136(&self, zone: Hostname) -> anyhow::Result<Rfc2136Config> {
        let need = |v: &Option<String>, name: &str| {
            v.clone()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| anyhow::anyhow!("DNS_PROVIDER=rfc2136 needs {name}"))
        };
        let server = need(
            &self.rfc2136_server,
            "RFC2136_SERVER (host:port of the primary server)",
        )?;
        let key_name = need(&self.rfc2136_tsig_key_name, "RFC2136_TSIG_KEY_NAME")?;
        let (secret, setting) = match trafego_common::mesh::read_secret(
            "RFC2136_TSIG_SECRET",
            self.rfc2136_tsig_secret.as_deref(),
            self.rfc2136_tsig_secret_file.as_ref(),
        )? {
            Some(s)
                if self
                    .rfc2136_tsig_secret
                    .as_deref()
                    .is_some_and(|v| !v.trim().is_empty()) =>
            {
                (s, "RFC2136_TSIG_SECRET")
            }
            Some(s) => (s, "RFC2136_TSIG_SECRET_FILE"),
            None => {
                bail!("DNS_PROVIDER=rfc2136 needs RFC2136_TSIG_SECRET or RFC2136_TSIG_SECRET_FILE")
            }
        };
        let mut cfg = Rfc2136Config::new(
            &server,
            zone,
            &key_name,
            TsigSecret::from_base64(setting, &secret).map_err(anyhow::Error::msg)?,
        );
        cfg.algorithm = parse_algorithm("RFC2136_TSIG_ALGORITHM", &self.rfc2136_tsig_algorithm)
            .map_err(anyhow::Error::msg)?;
        cfg.timeout = self.rfc2136_timeout.max(Duration::from_millis(1));
        cfg.batch_size = self.rfc2136_batch_size.max(1);
        Ok(cfg)
    }

    fn do_token(&self) -> anyhow::Result<String> {
        trafego_common::mesh::read_secret(
            "DO_TOKEN",
            self.do_token.as_deref(),
            self.do_token_file.as_ref(),
        )?
        .ok_or_else(|| anyhow::anyhow!("DNS_PROVIDER=digitalocean needs DO_TOKEN or DO_TOKEN_FILE"))
    }

    fn route53_config(&self, zone: Hostname) -> anyhow::Result<Route53Config> {
        let missing = || {
            anyhow::anyhow!(
                "DNS_PROVIDER=route53 needs ROUTE53_ACCESS_KEY and ROUTE53_SECRET_KEY (or ROUTE53_SECRET_KEY_FILE)"
            )
        };
        let access = self
            .route53_access_key
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .ok_or_else(missing)?;
        let secret = trafego_common::mesh::read_secret(
            "ROUTE53_SECRET_KEY",
            self.route53_secret_key.as_deref(),
            self.route53_secret_key_file.as_ref(),
        )?
        .ok_or_else(missing)?;
        let region = self.route53_region.trim();
        let mut cfg = Route53Config::new(access, &secret, region, zone);
        if let Some(url) = self.route53_api_url.as_deref().filter(|u| !u.is_empty()) {
            cfg.api_url = url.to_string();
        }
        cfg.zone_id = self.route53_zone_id.clone().filter(|z| !z.is_empty());
        cfg.max_items = self.route53_max_items;
        cfg.batch_size = self.route53_batch_size;
        cfg.budget_requests = self.route53_rate_limit;
        Ok(cfg)
    }

    /// Builds the provider of the one zone served, or of the first zone:
    /// for tests and tools that serve one (see [`Config::providers`]).
    pub fn provider(&self) -> anyhow::Result<Arc<dyn DnsProvider>> {
        self.providers()?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("no zone is set"))
    }

    /// Builds the configured provider, one instance per zone served; the
    /// HTTP providers' instances share one client and one request budget
    /// (the provider's rate limit is per account). Settings that name one
    /// zone (CLOUDFLARE_ZONE_ID, ROUTE53_ZONE_ID) are refused with several,
    /// and so is a ZONEFILE_PATH without `{zone}`.
    pub fn providers(&self) -> anyhow::Result<Vec<Arc<dyn DnsProvider>>> {
        let zones = self.zones()?;
        let several = zones.len() > 1;
        fn boxed<P: DnsProvider>(ps: Vec<P>) -> Vec<Arc<dyn DnsProvider>> {
            ps.into_iter()
                .map(|p| Arc::new(p) as Arc<dyn DnsProvider>)
                .collect()
        }
        let one_zone_only = |setting: &str, v: &Option<String>| -> anyhow::Result<()> {
            if several && v.as_deref().is_some_and(|v| !v.is_empty()) {
                bail!(
                    "{setting} names one zone's id, but {} zones are served (DNS_ZONES): unset it, \
                     each zone's id is looked up by its name",
                    zones.len()
                );
            }
            Ok(())
        };
        let first = zones[0].clone();
        Ok(match self.provider {
            ProviderKind::Zonefile => {
                let template = self.zonefile_path.as_ref().map(|p| p.display().to_string());
                if several && template.as_deref().is_some_and(|t| !t.contains("{zone}")) {
                    bail!(
                        "ZONEFILE_PATH must contain {{zone}} when several zones are served \
                         (one file per zone), e.g. /data/{{zone}}.zone"
                    );
                }
                let name_server = Hostname::parse_target("ZONEFILE_NS", &self.zonefile_ns)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                let inside = |zone: &Hostname| {
                    name_server == *zone
                        || name_server
                            .as_str()
                            .ends_with(&format!(".{}", zone.as_str()))
                };
                let home = zones
                    .iter()
                    .filter(|z| inside(z))
                    .max_by_key(|z| z.as_str().len());
                match (home, self.zonefile_ns_address.is_empty()) {
                    (Some(zone), true) => bail!(
                        "ZONEFILE_NS {name_server} lies inside the zone {zone}: set \
                         ZONEFILE_NS_ADDRESS to its address (the zone must carry its glue), \
                         or name a server outside the zone"
                    ),
                    (None, false) => bail!(
                        "ZONEFILE_NS_ADDRESS is only for a ZONEFILE_NS inside the zone {}; \
                         {name_server} lies outside it and its addresses belong in its own zone",
                        zones
                            .iter()
                            .map(Hostname::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    _ => {}
                }
                let mut out: Vec<Arc<dyn DnsProvider>> = Vec::with_capacity(zones.len());
                for zone in &zones {
                    let path = match &template {
                        Some(t) => PathBuf::from(t.replace("{zone}", zone.as_str())),
                        None => PathBuf::from(format!("./data/{zone}.zone")),
                    };
                    let glue = if home == Some(zone) {
                        self.zonefile_ns_address.clone()
                    } else {
                        Vec::new()
                    };
                    out.push(Arc::new(
                        ZoneFileProvider::open(ZoneFileConfig {
                            path,
                            zone: zone.clone(),
                            default_ttl: self.zonefile_default_ttl,
                            name_server: name_server.clone(),
                            name_server_addresses: glue,
                        })
                        .map_err(|e| anyhow::anyhow!("zone file of {zone}: {e}"))?,
                    ));
                }
                out
            }
            ProviderKind::Cloudflare => {
                use trafego_proto::validate::{TTL_MAX, TTL_MIN};
                if !(TTL_MIN..=TTL_MAX).contains(&self.cloudflare_min_ttl) {
                    bail!(
                        "CLOUDFLARE_MIN_TTL {} is out of range {TTL_MIN} to {TTL_MAX}",
                        self.cloudflare_min_ttl
                    );
                }
                one_zone_only("CLOUDFLARE_ZONE_ID", &self.cloudflare_zone_id)?;
                let mut cfg =
                    CloudflareConfig::new(&self.cloudflare_api_url, &self.token()?, first);
                cfg.zone_id = self.cloudflare_zone_id.clone().filter(|z| !z.is_empty());
                cfg.per_page = self.cloudflare_per_page;
                cfg.batch_size = self.cloudflare_batch_size.max(1);
                cfg.budget_requests = self.cloudflare_rate_limit.max(1);
                cfg.budget_window = self.cloudflare_rate_window;
                cfg.min_ttl = self.cloudflare_min_ttl;
                boxed(
                    CloudflareProvider::for_zones(cfg, &zones)
                        .map_err(|e| anyhow::anyhow!("cloudflare: {e}"))?,
                )
            }
            ProviderKind::Rfc2136 => {
                let mut out: Vec<Arc<dyn DnsProvider>> = Vec::with_capacity(zones.len());
                for zone in &zones {
                    out.push(Arc::new(
                        Rfc2136Provider::new(self.rfc2136(zone.clone())?)
                            .map_err(|e| anyhow::anyhow!("rfc2136: {e}"))?,
                    ));
                }
                out
            }
            ProviderKind::Powerdns => {
                use trafego_proto::validate::{TTL_MAX, TTL_MIN};
                let Some(url) = self
                    .pdns_api_url
                    .as_deref()
                    .filter(|u| !u.trim().is_empty())
                else {
                    bail!("DNS_PROVIDER=powerdns needs PDNS_API_URL, e.g. http://127.0.0.1:8081");
                };
                if !(TTL_MIN..=TTL_MAX).contains(&self.pdns_default_ttl) {
                    bail!(
                        "PDNS_DEFAULT_TTL {} is out of range {TTL_MIN} to {TTL_MAX}",
                        self.pdns_default_ttl
                    );
                }
                let mut cfg = PowerDnsConfig::new(url, &self.pdns_api_key()?, first);
                cfg.server_id = self.pdns_server_id.clone();
                cfg.batch_size = self.pdns_batch_size.max(1);
                cfg.default_ttl = self.pdns_default_ttl;
                boxed(
                    PowerDnsProvider::for_zones(cfg, &zones)
                        .map_err(|e| anyhow::anyhow!("powerdns: {e}"))?,
                )
            }
            ProviderKind::Digitalocean => {
                let mut cfg = DigitalOceanConfig::new(&self.do_api_url, &self.do_token()?, first);
                cfg.per_page = self.do_per_page;
                cfg.hourly_limit = self.do_rate_limit;
                cfg.minute_limit = self.do_burst_limit;
                boxed(
                    DigitalOceanProvider::for_zones(cfg, &zones)
                        .map_err(|e| anyhow::anyhow!("digitalocean: {e}"))?,
                )
            }
            ProviderKind::Route53 => {
                one_zone_only("ROUTE53_ZONE_ID", &self.route53_zone_id)?;
                boxed(
                    Route53Provider::for_zones(self.route53_config(first)?, &zones)
                        .map_err(|e| anyhow::anyhow!("route53: {e}"))?,
                )
            }
        })
    }

    fn pdns_api_key(&self) -> anyhow::Result<String> {
        trafego_common::mesh::read_secret(
            "PDNS_API_KEY",
            self.pdns_api_key.as_deref(),
            self.pdns_api_key_file.as_ref(),
        )?
        .ok_or_else(|| {
            anyhow::anyhow!("DNS_PROVIDER=powerdns needs PDNS_API_KEY or PDNS_API_KEY_FILE")
        })
    }

    /// Cache settings.
    pub fn cache_settings(&self) -> CacheSettings {
        CacheSettings {
            refresh_interval: self.refresh_interval.max(Duration::from_secs(1)),
            refresh_timeout: self.refresh_timeout,
            watch_buffer: self.watch_buffer.max(16),
            journal_retention: self.change_journal_retention,
            refresh_concurrency: self.refresh_concurrency.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(dir: &std::path::Path, extra: &[&str]) -> Config {
        let path = dir.join("example.com.zone").display().to_string();
        let mut args = vec!["--zone", "example.com", "--zonefile-path", path.as_str()];
        args.extend_from_slice(extra);
        Config::for_test(&args)
    }

    #[test]
    fn the_database_url_wins_over_the_shared_one_and_the_path() {
        let c = Config::for_test(&[]);
        assert_eq!(
            c.database().unwrap(),
            (DbUrl::Sqlite("./data/cache.db".into()), "CACHE_DB_PATH")
        );
        let c = Config::for_test(&[
            "--db-path",
            "/var/c.db",
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
            (DbUrl::Sqlite("/var/own.db".into()), "CACHE_DATABASE_URL")
        );
        let c = Config::for_test(&["--database-url", "mysql://u:pw@h/db"]);
        let err = c.database().unwrap_err().to_string();
        assert!(
            err.starts_with("CACHE_DATABASE_URL:") && !err.contains("pw@"),
            "{err}"
        );
        // The password never shows in the configuration's Debug.
        let c = Config::for_test(&[
            "--database-url",
            "postgres://u:hunter2@h/db",
            "--shared-database-url",
            "postgres://u:swordfish@h/db",
        ]);
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("swordfish"),
            "{shown}"
        );
    }

    #[test]
    fn several_zones_settings() {
        let c = Config::for_test(&["--zones", "example.org, example.com"]);
        let zones: Vec<String> = c.zones().unwrap().iter().map(|z| z.to_string()).collect();
        assert_eq!(zones, ["example.com", "example.org"]);
        assert!(c.zone().is_err(), "several zones are not one");
        // The one-zone forms must name the same zones.
        let c = Config::for_test(&["--zones", "example.com", "--zone", "example.com"]);
        assert_eq!(c.zones().unwrap().len(), 1);
        let c = Config::for_test(&[
            "--zones",
            "example.com,example.org",
            "--zone",
            "example.com",
        ]);
        let e = c.zones().unwrap_err().to_string();
        assert!(
            e.contains("DNS_ZONES") && e.contains("DNS_ZONE ") && e.contains("disagree"),
            "{e}"
        );
        let e = Config::for_test(&["--zones", "a.test,a.test"])
            .zones()
            .unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        // Settings naming one zone are refused with several.
        let c = Config::for_test(&[
            "--provider",
            "cloudflare",
            "--zones",
            "a.test,b.test",
            "--cloudflare-token",
            "t",
            "--cloudflare-zone-id",
            "0123456789abcdef0123456789abcdef",
        ]);
        let e = c.providers().err().expect("refused").to_string();
        assert!(e.contains("CLOUDFLARE_ZONE_ID"), "{e}");
        // One zone file per zone: the path must say where.
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("zone.db").display().to_string();
        let e = Config::for_test(&["--zones", "a.test,b.test", "--zonefile-path", &plain])
            .providers()
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains("{zone}"), "{e}");
        let templ = dir.path().join("{zone}.zone").display().to_string();
        let ps = Config::for_test(&["--zones", "a.test,b.test", "--zonefile-path", &templ])
            .providers()
            .unwrap();
        assert_eq!(ps.len(), 2);
        assert!(dir.path().join("a.test.zone").exists() && dir.path().join("b.test.zone").exists());
    }

    #[test]
    fn digitalocean_settings() {
        let c = Config::for_test(&[
            "--provider",
            "digitalocean",
            "--do-domain",
            "Example.com",
            "--do-token",
            "do-s3cr3t",
        ]);
        assert_eq!(c.zone().unwrap().as_str(), "example.com");
        assert_eq!(c.do_api_url, "https://api.digitalocean.com/v2");
        assert_eq!(
            (c.do_per_page, c.do_rate_limit, c.do_burst_limit),
            (200, 5000, 250)
        );
        assert!(!format!("{c:?}").contains("do-s3cr3t"));
        let p = c.provider().unwrap();
        assert_eq!(p.name(), "digitalocean");
        assert_eq!(p.capabilities().batch_size, 1);
        // DNS_ZONE and DO_DOMAIN must agree; the token is required.
        let c = Config::for_test(&["--zone", "example.net", "--do-domain", "example.com"]);
        let e = c.zone().unwrap_err().to_string();
        assert!(e.contains("DNS_ZONE") && e.contains("DO_DOMAIN"), "{e}");
        let c = Config::for_test(&["--provider", "digitalocean", "--zone", "example.com"]);
        let e = c.provider().err().expect("refused").to_string();
        assert!(e.contains("DO_TOKEN"), "{e}");
        let c = Config::for_test(&[
            "--provider",
            "digitalocean",
            "--zone",
            "example.com",
            "--do-token",
            "t",
            "--do-per-page",
            "500",
        ]);
        let e = c.provider().err().expect("refused").to_string();
        assert!(e.contains("per_page"), "{e}");
    }

    #[test]
    fn route53_settings_build_the_provider_without_showing_the_secret() {
        let base = [
            "--provider",
            "route53",
            "--route53-access-key",
            "AKIDEXAMPLE",
            "--route53-secret-key",
            "s3cr3t/key",
        ];
        let c = Config::for_test(&[&base[..], &["--route53-zone", "example.com"]].concat());
        assert_eq!(c.zone().unwrap().as_str(), "example.com");
        assert_eq!(c.route53_region, "eu-west-2");
        assert_eq!(c.provider().unwrap().name(), "route53");
        assert!(!format!("{c:?}").contains("s3cr3t"));
        let e = Config::for_test(
            &[
                &base[..],
                &["--zone", "example.com", "--route53-zone", "example.org"],
            ]
            .concat(),
        )
        .zone()
        .unwrap_err();
        assert!(e.to_string().contains("disagree"), "{e}");
        let e = Config::for_test(&["--provider", "route53", "--zone", "example.com"])
            .provider()
            .err()
            .expect("refused");
        assert!(e.to_string().contains("ROUTE53_ACCESS_KEY"), "{e}");
        let e = Config::for_test(
            &[
                &base[..],
                &["--zone", "example.com", "--route53-max-items", "301"],
            ]
            .concat(),
        )
        .provider()
        .err()
        .expect("refused");
        assert!(e.to_string().contains("page size"), "{e}");
    }

    #[test]
    fn zone_file_name_server_settings() {
        let dir = tempfile::tempdir().unwrap();
        let c = with(dir.path(), &[]);
        assert_eq!(c.zonefile_ns, "localhost");
        assert!(c.zonefile_ns_address.is_empty());
        c.provider().unwrap();
        let text = std::fs::read_to_string(dir.path().join("example.com.zone")).unwrap();
        assert!(text.contains("@ 300 IN NS localhost."), "{text}");

        let dir = tempfile::tempdir().unwrap();
        with(
            dir.path(),
            &[
                "--zonefile-ns",
                "ns1.example.com",
                "--zonefile-ns-address",
                "192.0.2.53,2001:db8::53",
            ],
        )
        .provider()
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join("example.com.zone")).unwrap();
        assert!(text.contains("ns1 300 IN A 192.0.2.53"), "{text}");
        assert!(text.contains("ns1 300 IN AAAA 2001:db8::53"), "{text}");

        let dir = tempfile::tempdir().unwrap();
        let e = with(dir.path(), &["--zonefile-ns", "ns1.example.com"])
            .provider()
            .err()
            .expect("refused");
        assert!(e.to_string().contains("ZONEFILE_NS_ADDRESS"), "{e}");
        let e = with(
            dir.path(),
            &[
                "--zonefile-ns",
                "ns.example.net",
                "--zonefile-ns-address",
                "192.0.2.1",
            ],
        )
        .provider()
        .err()
        .expect("refused");
        assert!(e.to_string().contains("outside"), "{e}");
        assert!(
            !dir.path().join("example.com.zone").exists(),
            "nothing written"
        );
    }
}
