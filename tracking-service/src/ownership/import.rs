//! `tracking-service import`: claims the records another tool managed, so
//! its users switch without this app treating them as someone else's.
//!
//! Two origins: TrafegoDNS's own state (its `dns-records.json` or SQLite
//! database, read by [`trafegodns`]) and external-dns's TXT registry at the
//! provider (read by [`external_dns`] through [`super::registry`]). Either
//! way only what the provider holds now, in a fresh cache-service listing,
//! is claimed: a record with the same name and type, tracked under the
//! provider's current id, app-managed as the other tool said. Everything
//! else is reported, line by line, and left alone: gone at the provider,
//! another provider or zone than the one cache-service serves, a name that
//! is not a valid hostname, several records where one was meant, another
//! owner's, and anything already tracked (never rewritten, so a second run
//! claims nothing).
//!
//! Nothing is written before every input is read and checked, and with
//! `--dry-run` nothing is written at all (not even the tracker's database
//! file is created). Without it, the claim is one transaction. This module
//! never writes to the provider.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use trafego_common::num;
use trafego_proto::cache::DnsRecord;
use trafego_proto::validate::{Hostname, RecordType};

use crate::cache_client::CacheClient;
use crate::config::Config;
use crate::convert;
use crate::store::{self, DeclRow, TrackedRow};

pub mod external_dns;
pub mod trafegodns;

/// Where the records to claim are described.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Origin {
    /// TrafegoDNS's dns-records.json (v1 or api-v2) or its SQLite database, given as FILE.
    #[value(name = "trafegodns")]
    TrafegoDns,
    /// external-dns's TXT registry at the provider, for the owner id given with --owner.
    #[value(name = "external-dns")]
    ExternalDns,
}

/// The arguments of `tracking-service import`. The service's own settings
/// (TRACKING_DB_PATH, CACHE_SERVICE_URL, CACHE_SERVICE_TOKEN, …) apply as
/// they do to the service.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// What to import from.
    #[arg(long = "from", value_enum, value_name = "TOOL")]
    pub from: Origin,

    /// TrafegoDNS's state: /config/data/dns-records.json or its SQLite database (--from trafegodns).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// external-dns's owner id (its --txt-owner-id): only records its registry gives this owner are claimed.
    #[arg(long, value_name = "ID")]
    pub owner: Option<String>,

    /// external-dns's --txt-prefix (may hold %{record_type}), when it was set.
    #[arg(long, value_name = "P", default_value = "")]
    pub prefix: String,

    /// Attribute the claimed records to this source (e.g. traefik), as if it had declared them:
    /// its next reconcile then orphans those it no longer declares.
    #[arg(long = "as-source", value_name = "SOURCE")]
    pub as_source: Option<String>,

    /// Print what would be claimed, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Why a record is not claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The provider holds no record of that name and type.
    Gone,
    /// The other tool's provider is not cache-service's.
    OtherProvider(String),
    /// The other tool's domain is not the zone served, or the name is outside it.
    OtherZone(String),
    /// The name or type is not one this app can track.
    BadName(String),
    /// Several records of that name and type, none with the id the other tool knew.
    Ambiguous(usize),
    /// Already tracked here: left as it is.
    AlreadyTracked,
    /// Named twice in the input; the first stands.
    Duplicate,
    /// external-dns's registry gives it to another owner.
    OtherOwner(String),
    /// No external-dns registry entry names it.
    NoEntry,
}

impl Skip {
    /// The group the totals count it under.
    pub fn group(&self) -> &'static str {
        match self {
            Skip::Gone => "gone at the provider",
            Skip::OtherProvider(_) => "other provider",
            Skip::OtherZone(_) => "other zone",
            Skip::BadName(_) => "bad name",
            Skip::Ambiguous(_) => "ambiguous",
            Skip::AlreadyTracked => "already tracked",
            Skip::Duplicate => "duplicate",
            Skip::OtherOwner(_) => "other owner",
            Skip::NoEntry => "no registry entry",
        }
    }

    fn describe(&self) -> String {
        match self {
            Skip::Gone => "gone at the provider".into(),
            Skip::OtherProvider(p) => format!("other provider ({p})"),
            Skip::OtherZone(z) => format!("other zone ({z})"),
            Skip::BadName(m) => format!("bad name: {m}"),
            Skip::Ambiguous(n) => format!(
                "ambiguous: the provider holds {n} records of this name and type, none with the id known"
            ),
            Skip::AlreadyTracked => "already tracked: left as it is".into(),
            Skip::Duplicate => "named twice: the first entry stands".into(),
            Skip::OtherOwner(o) => format!("owned by external-dns owner {o:?}"),
            Skip::NoEntry => "no external-dns registry entry for this owner".into(),
        }
    }
}

/// One record the import weighed.
#[derive(Debug, Clone)]
pub struct Line {
    /// Record type as written (or held at the provider).
    pub rtype: String,
    /// Name, as fully qualified as it could be made.
    pub name: String,
    /// Where it came from (`entry 3`, `row 7`, `registry a-www.example.com`).
    pub from: String,
    /// Claimed or not, and why.
    pub outcome: Outcome,
}

/// What becomes of one record.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Claimed: the provider's record, tracked with these flags.
    Claim {
        /// The provider's current record.
        record: Box<DnsRecord>,
        /// App-managed, as the other tool said.
        app_managed: bool,
        /// Orphaned since (unix ms), as the other tool said.
        orphaned_at: Option<i64>,
        /// When the other tool began tracking it (unix ms).
        tracked_at: Option<i64>,
    },
    /// Not claimed.
    Skip(Skip),
}

/// The zone served and the provider's records, from one fresh listing.
#[derive(Debug, Clone)]
pub struct Served {
    /// cache-service's provider name.
    pub provider: String,
    /// The zones served (one or several); a name belongs to the longest it
    /// lies in.
    pub zones: Vec<Hostname>,
    /// Every record of the zone.
    pub records: Vec<DnsRecord>,
}

impl Served {
    /// The zones served, joined by ", ".
    pub fn zone_list(&self) -> String {
        let names: Vec<&str> = self.zones.iter().map(Hostname::as_str).collect();
        names.join(", ")
    }

    /// The records by (name, type).
    pub fn by_key(&self) -> HashMap<(&str, &str), Vec<&DnsRecord>> {
        let mut m: HashMap<(&str, &str), Vec<&DnsRecord>> = HashMap::new();
        for r in &self.records {
            m.entry((r.name.as_str(), r.r#type.as_str()))
                .or_default()
                .push(r);
        }
        m
    }
}

/// What one import did (or would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Records claimed (or, in a dry run, that would be).
    pub claimed: usize,
    /// Of those, app-managed.
    pub app_managed: usize,
    /// Of those, orphaned (their grace period running).
    pub orphaned: usize,
    /// Records not claimed, by group.
    pub skipped: BTreeMap<&'static str, usize>,
}

/// Validated arguments: which job.
enum Job {
    TrafegoDns(PathBuf),
    ExternalDns {
        owner: String,
        registry: super::registry::Registry,
    },
}

fn job_of(args: &ImportArgs) -> anyhow::Result<Job> {
    match args.from {
        Origin::TrafegoDns => {
            if args.owner.is_some() {
                bail!("--owner is for --from external-dns; TrafegoDNS's state names no owner");
            }
            if !args.prefix.is_empty() {
                bail!("--prefix is for --from external-dns");
            }
            let Some(file) = &args.file else {
                bail!(
                    "FILE is required with --from trafegodns (its dns-records.json or SQLite database)"
                );
            };
            Ok(Job::TrafegoDns(file.clone()))
        }
        Origin::ExternalDns => {
            if let Some(f) = &args.file {
                bail!(
                    "FILE ({}) is for --from trafegodns; external-dns's registry is read at the provider",
                    f.display()
                );
            }
            let owner = args.owner.as_deref().unwrap_or("").trim();
            if owner.is_empty() {
                bail!(
                    "--owner is required with --from external-dns (external-dns's --txt-owner-id)"
                );
            }
            if owner
                .chars()
                .any(|c| c.is_control() || c.is_whitespace() || c == ',' || c == '"')
            {
                bail!("--owner {owner:?} must not hold spaces, control characters, ',' or '\"'");
            }
            let registry = super::registry::Registry::new(
                super::registry::EXTERNAL_DNS_HERITAGE,
                &args.prefix,
            )
            .map_err(|e| anyhow::anyhow!("--prefix: {e}"))?;
            Ok(Job::ExternalDns {
                owner: owner.to_string(),
                registry,
            })
        }
    }
}

/// Runs the import `args` with the service's settings `config`, writing the
/// report to `out`.
pub async fn run(
    config: &Config,
    args: &ImportArgs,
    out: &mut dyn Write,
) -> anyhow::Result<Totals> {
    let job = job_of(args)?;
    let source = args
        .as_source
        .as_deref()
        .map(|s| crate::desired::source("--as-source", s).map_err(|e| anyhow::anyhow!("{e}")))
        .transpose()?;
    // Read the other tool's state before anything else: a bad FILE stops here.
    let state = match &job {
        Job::TrafegoDns(path) => Some(trafegodns::read(path)?),
        Job::ExternalDns { .. } => None,
    };
    config.validate()?;
    let served = fetch(config).await?;
    let (lines, what) = match (&job, state) {
        (Job::TrafegoDns(path), Some((shape, entries))) => (
            weigh_trafegodns(&entries, &served),
            format!("{} {}", shape.describe(), path.display()),
        ),
        (Job::ExternalDns { owner, registry }, _) => (
            external_dns::weigh(registry, owner, &served),
            format!("external-dns registry of owner {owner:?}"),
        ),
        (Job::TrafegoDns(_), None) => unreachable!("read above"),
    };
    let clock = trafego_common::clock::system();
    let now = clock.now_ms();
    let origin = match args.from {
        Origin::TrafegoDns => "trafegodns",
        Origin::ExternalDns => "external-dns",
    };
    let (rows, decls) = rows_of(&lines, origin, source.as_deref(), now);
    let keys: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| (r.record_id.clone(), r.name.clone(), r.rtype.clone()))
        .collect();
    let fresh = if args.dry_run {
        dry_tracked(config, &keys)?
            .into_iter()
            .map(|t| !t)
            .collect()
    } else {
        // Beside a running service: no instance lock, one transaction.
        let (db_url, setting) = config.database()?;
        let db = trafego_common::db::AnyDb::connect_beside(
            &db_url,
            setting,
            crate::migrations(),
            config.service.db_options(),
        )
        .with_context(|| format!("opening the database {setting} names ({db_url})"))?;
        db.run(move |c| Ok::<_, trafego_common::db::DbError>(store::claim(c, &rows, &decls)?))
            .await
            .context("claiming the records")?
    };
    let lines = settle(lines, &fresh);
    report(out, &what, &served, &lines, args.dry_run)
}

/// cache-service's zone and a fresh listing of it; refused when the
/// listing is stale or its refresh failed.
async fn fetch(config: &Config) -> anyhow::Result<Served> {
    let security = config.cache_client_security()?;
    let client = CacheClient::new(
        &config.cache_service_url,
        config.cache_service_timeout,
        config.service.mesh.max_message_bytes,
        &security,
    )?;
    let status = client.status().await?;
    // Every zone served (`zones`); an older cache-service names its one zone
    // in `zone` only.
    let names: Vec<&str> = if status.zones.is_empty() {
        vec![status.zone.as_str()]
    } else {
        status.zones.iter().map(|z| z.zone.as_str()).collect()
    };
    let zones = names
        .iter()
        .map(|z| Hostname::parse("zone", z))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("cache-service reports an invalid zone: {e}"))?;
    let zone = names.join(", ");
    if let Some(want) = config.zone()?
        && !zones.contains(&want)
    {
        bail!(
            "DNS_ZONE is {want} but cache-service at {} manages {zone}",
            client.host()
        );
    }
    // A listing of the provider made now, not what the cache held.
    let (mut raw, host) = crate::cache_client::connect(
        &config.cache_service_url,
        config.cache_service_timeout,
        config.service.mesh.max_message_bytes,
        &security,
    )?;
    tokio::time::timeout(
        config.cache_service_timeout,
        raw.refresh_cache(trafego_proto::cache::RefreshCacheRequest {
            force: true,
            ..Default::default()
        }),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!("cache-service at {host} did not refresh within CACHE_SERVICE_TIMEOUT")
    })?
    .map_err(|s| {
        anyhow::anyhow!(
            "cache-service at {host} could not list the provider ({:?}: {}); nothing was claimed",
            s.code(),
            s.message()
        )
    })?;
    let (records, _) = client.list_all(0).await?;
    let after = client.status().await?;
    if after.stale || !after.last_error.is_empty() {
        bail!(
            "cache-service's listing of {zone} is not fresh ({}); nothing was claimed: retry once its provider answers",
            if after.last_error.is_empty() {
                "stale".to_string()
            } else {
                format!("last refresh failed: {}", after.last_error)
            }
        );
    }
    Ok(Served {
        provider: status.provider,
        zones,
        records,
    })
}

/// Which `keys` are already tracked, read without writing: an absent
/// database tracks nothing, and an existing one is opened read-only.
fn dry_tracked(config: &Config, keys: &[(String, String, String)]) -> anyhow::Result<Vec<bool>> {
    use diesel::Connection;
    let (db_url, _) = config.database()?;
    let mut conn = match &db_url {
        trafego_common::db::DbUrl::Sqlite(path) => {
            if !path.exists() {
                return Ok(vec![false; keys.len()]);
            }
            store::Conn::Sqlite(
                diesel::SqliteConnection::establish(&trafegodns::read_only_uri(path))
                    .with_context(|| format!("opening {} read-only", path.display()))?,
            )
        }
        trafego_common::db::DbUrl::Postgres(url) => store::Conn::Postgres(
            diesel::PgConnection::establish(url)
                .map_err(|_| anyhow::anyhow!("connecting to {db_url}"))?,
        ),
    };
    store::already_tracked(&mut conn, keys).with_context(|| format!("reading {db_url}"))
}

/// Weighs TrafegoDNS's entries against the provider's records.
pub fn weigh_trafegodns(entries: &[trafegodns::Entry], served: &Served) -> Vec<Line> {
    let held = served.by_key();
    // An entry naming no domain is relative to the first zone served.
    let zone = served.zones.first().map_or("", Hostname::as_str);
    let mut seen: HashSet<(String, String)> = HashSet::new();
    let mut lines = Vec::with_capacity(entries.len());
    for e in entries {
        let (strict, domain) = match &e.domain {
            Some(d) => (true, d.as_str()),
            None => (false, zone),
        };
        let raw = trafegodns::fqdn(&e.name, domain, strict);
        let mut line = Line {
            rtype: e.rtype.to_ascii_uppercase(),
            name: raw.clone(),
            from: e.at.clone(),
            outcome: Outcome::Skip(Skip::Gone),
        };
        line.outcome = Outcome::Skip(match weigh_one(e, &raw, served, &held) {
            Ok((name, rtype, record)) => {
                line.name = name.clone();
                line.rtype = rtype.clone();
                if seen.insert((name, rtype)) {
                    lines.push(Line {
                        outcome: Outcome::Claim {
                            record: Box::new(record.clone()),
                            app_managed: e.app_managed,
                            orphaned_at: match e.orphan {
                                trafegodns::Orphan::No => None,
                                trafegodns::Orphan::Since(t) => Some(t),
                                // The grace period starts at the claim.
                                trafegodns::Orphan::Unknown => Some(i64::MAX),
                            },
                            tracked_at: e.tracked_at,
                        },
                        ..line
                    });
                    continue;
                }
                Skip::Duplicate
            }
            Err(s) => s,
        });
        lines.push(line);
    }
    lines
}

type Found<'a> = (String, String, &'a DnsRecord);

fn weigh_one<'a>(
    e: &trafegodns::Entry,
    raw: &str,
    served: &Served,
    held: &HashMap<(&str, &str), Vec<&'a DnsRecord>>,
) -> Result<Found<'a>, Skip> {
    if let Some(p) = &e.provider
        && !p.eq_ignore_ascii_case(&served.provider)
    {
        return Err(Skip::OtherProvider(p.clone()));
    }
    if let Some(d) = &e.domain {
        let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
        if !served.zones.iter().any(|z| z.as_str() == d) {
            return Err(Skip::OtherZone(d));
        }
    }
    let rtype =
        RecordType::parse("type", &e.rtype).map_err(|err| Skip::BadName(err.to_string()))?;
    let name = Hostname::parse("name", raw).map_err(|err| Skip::BadName(err.to_string()))?;
    if !served.zones.iter().any(|z| name.is_in_zone(z)) {
        return Err(Skip::OtherZone(format!("outside {}", served.zone_list())));
    }
    let found = held
        .get(&(name.as_str(), rtype.as_str()))
        .map(Vec::as_slice)
        .unwrap_or_default();
    let record = match found {
        [] => return Err(Skip::Gone),
        [one] => *one,
        many => *many
            .iter()
            .find(|r| Some(&r.record_id) == e.record_id.as_ref())
            .ok_or(Skip::Ambiguous(many.len()))?,
    };
    Ok((
        name.as_str().to_string(),
        rtype.as_str().to_string(),
        record,
    ))
}

/// The tracked rows (and, with a source, declarations) of the claims in `lines`.
fn rows_of(
    lines: &[Line],
    origin: &str,
    source: Option<&str>,
    now: i64,
) -> (Vec<TrackedRow>, Vec<DeclRow>) {
    let mut rows = Vec::new();
    let mut decls = Vec::new();
    for l in lines {
        let Outcome::Claim {
            record,
            app_managed,
            orphaned_at,
            tracked_at,
        } = &l.outcome
        else {
            continue;
        };
        let why = format!("imported from {origin} ({})", l.from);
        let mut row =
            convert::row_from(record, None, *app_managed, source.unwrap_or(""), &why, now);
        if let Some(at) = orphaned_at {
            row.is_orphaned = true;
            // Unknown (i64::MAX): the grace period starts now.
            row.orphaned_at = Some(if *at == i64::MAX { now } else { *at });
        }
        if let Some(t) = tracked_at {
            row.tracked_at = *t;
            row.first_seen = row.tracked_at;
        }
        if let Some(s) = source
            && *app_managed
            && orphaned_at.is_none()
        {
            decls.push(DeclRow {
                source: s.to_string(),
                name: record.name.clone(),
                rtype: record.r#type.clone(),
                content: record.content.clone(),
                ttl: num::to_db(record.ttl),
                proxied: record.proxied,
                priority: record.priority.map(num::to_db),
                declared_at: now,
                updated_at: now,
            });
        }
        rows.push(row);
    }
    (rows, decls)
}

/// Claims that the table already held become "already tracked": `fresh`
/// says, per claim in order, whether it is (or would be) new.
fn settle(lines: Vec<Line>, fresh: &[bool]) -> Vec<Line> {
    let mut fresh = fresh.iter();
    lines
        .into_iter()
        .map(|mut l| {
            if matches!(l.outcome, Outcome::Claim { .. }) && !fresh.next().copied().unwrap_or(false)
            {
                if let Outcome::Claim { record, .. } = &l.outcome {
                    l.from = format!("{}, id {}", l.from, record.record_id);
                }
                l.outcome = Outcome::Skip(Skip::AlreadyTracked);
            }
            l
        })
        .collect()
}

/// Prints one line per record and the totals.
fn report(
    out: &mut dyn Write,
    what: &str,
    served: &Served,
    lines: &[Line],
    dry_run: bool,
) -> anyhow::Result<Totals> {
    let mut t = Totals::default();
    writeln!(
        out,
        "{}importing {what} into {} zone {} ({} records at the provider)",
        if dry_run { "dry run: " } else { "" },
        served.provider,
        served.zone_list(),
        served.records.len()
    )?;
    let verb = if dry_run { "would claim" } else { "claimed" };
    for l in lines {
        match &l.outcome {
            Outcome::Claim {
                record,
                app_managed,
                orphaned_at,
                ..
            } => {
                t.claimed += 1;
                let mut flags = vec![if *app_managed {
                    "app-managed".to_string()
                } else {
                    "not app-managed".to_string()
                }];
                if *app_managed {
                    t.app_managed += 1;
                }
                if let Some(at) = orphaned_at {
                    t.orphaned += 1;
                    flags.push(if *at == i64::MAX {
                        "orphaned (time unknown: grace starts now)".to_string()
                    } else {
                        format!("orphaned since {}", fmt_ms(*at))
                    });
                }
                writeln!(
                    out,
                    "{verb:<11}  {:<5} {}  id {}  {}  ({})",
                    record.r#type,
                    record.name,
                    record.record_id,
                    flags.join(", "),
                    l.from
                )?;
            }
            Outcome::Skip(s) => {
                *t.skipped.entry(s.group()).or_default() += 1;
                writeln!(
                    out,
                    "{:<11}  {:<5} {}  {}  ({})",
                    "not claimed",
                    l.rtype,
                    l.name,
                    s.describe(),
                    l.from
                )?;
            }
        }
    }
    let skipped: usize = t.skipped.values().sum();
    let groups: Vec<String> = t.skipped.iter().map(|(g, n)| format!("{n} {g}")).collect();
    writeln!(
        out,
        "{verb} {} ({} app-managed, {} orphaned); not claimed {skipped}{}{}",
        t.claimed,
        t.app_managed,
        t.orphaned,
        if groups.is_empty() { "" } else { ": " },
        groups.join(", ")
    )?;
    if dry_run {
        writeln!(out, "dry run: nothing was written")?;
    }
    Ok(t)
}

fn fmt_ms(ms: i64) -> String {
    u64::try_from(ms).map_or_else(
        |_| ms.to_string(),
        |m| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(m),
            )
            .to_string()
        },
    )
}
