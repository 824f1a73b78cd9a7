//! TrafegoDNS's container labels, with its semantics, turned into declared
//! records: hostnames (`dns.hostname`, `dns.domain` + `dns.subdomain`,
//! `dns.use_apex`, `dns.host.<anything>`), record settings (`dns.type`,
//! `content`, `ttl`, `proxied`, `priority`, `weight`, `port`, `flags`,
//! `tag`), and whether to manage at all (`dns.manage` against
//! DNS_DEFAULT_MANAGE, `dns.skip` always winning). The provider-specific form
//! `dns.<provider>.<key>` wins over the generic one; the provider's name is
//! whatever cache-service reports, never compared with a list here.
//!
//! Also the [`Collector`] both sources feed: it validates one owner's records
//! (a container, a router) all at once against the zone and the defaults, and
//! takes them all or none. A label that does not parse, a record the tracker
//! would refuse, or a clash with an earlier owner's record is a [`Problem`]
//! of that owner, which is then skipped whole: never half-applied, and never
//! able to make the whole declaration invalid.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use trafego_proto::tracking::DesiredRecord;
use trafego_proto::validate::{Hostname, RecordSpec, RecordType};

use crate::desired::{self, Defaults, ZoneInfo};

/// How labels are read: the prefixes and the management default.
#[derive(Debug, Clone)]
pub struct LabelConfig {
    /// DNS_LABEL_PREFIX (`dns.`).
    pub dns_prefix: String,
    /// TRAEFIK_LABEL_PREFIX (`traefik.`), to tie routers to containers.
    pub traefik_prefix: String,
    /// DNS_DEFAULT_MANAGE: whether a container without `dns.manage` is managed.
    pub default_manage: bool,
    /// The provider cache-service reports (`cloudflare`, `zonefile`...), for
    /// `dns.<provider>.<key>`; `None` until it is known.
    pub provider: Option<String>,
}

impl LabelConfig {
    /// TrafegoDNS's defaults: `dns.`, `traefik.`, managed by default.
    pub fn trafegodns() -> Self {
        Self {
            dns_prefix: "dns.".into(),
            traefik_prefix: "traefik.".into(),
            default_manage: true,
            provider: None,
        }
    }
}

/// A label value that does not parse, naming the label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelError {
    /// The label's full key, e.g. `dns.ttl`.
    pub label: String,
    /// What is wrong with its value.
    pub message: String,
}

impl fmt::Display for LabelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "label {}: {}", self.label, self.message)
    }
}

/// One container's labels, read with a [`LabelConfig`].
#[derive(Debug, Clone, Copy)]
pub struct Labels<'a> {
    map: &'a BTreeMap<String, String>,
    cfg: &'a LabelConfig,
}

/// Reads a boolean label the way people write them.
fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Some(true),
        "false" | "no" | "0" | "off" => Some(false),
        _ => None,
    }
}

impl<'a> Labels<'a> {
    /// `map` read with `cfg`.
    pub fn new(map: &'a BTreeMap<String, String>, cfg: &'a LabelConfig) -> Self {
        Self { map, cfg }
    }

    fn generic_key(&self, key: &str) -> String {
        format!("{}{key}", self.cfg.dns_prefix)
    }

    /// The value of `key`: `dns.<provider>.<key>` first, then `dns.<key>`;
    /// with the key it was read from. Empty values count as absent.
    fn get(&self, key: &str) -> Option<(String, &'a str)> {
        if let Some(p) = &self.cfg.provider {
            let k = format!("{}{p}.{key}", self.cfg.dns_prefix);
            if let Some(v) = self.map.get(&k).map(|v| v.trim()).filter(|v| !v.is_empty()) {
                return Some((k, v));
            }
        }
        let k = self.generic_key(key);
        let v = self
            .map
            .get(&k)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())?;
        Some((k, v))
    }

    fn flag(&self, key: &str) -> Result<Option<bool>, LabelError> {
        let Some((k, v)) = self.get(key) else {
            return Ok(None);
        };
        parse_bool(v).map(Some).ok_or_else(|| LabelError {
            label: k,
            message: format!("{v:?} is not true or false"),
        })
    }

    fn number<T: std::str::FromStr>(&self, key: &str, what: &str) -> Result<Option<T>, LabelError> {
        let Some((k, v)) = self.get(key) else {
            return Ok(None);
        };
        v.parse::<T>().map(Some).map_err(|_| LabelError {
            label: k,
            message: format!("{v:?} is not {what}"),
        })
    }

    /// Whether the container's hostnames are managed: `dns.skip=true` never
    /// is; otherwise `dns.manage` when given, else DNS_DEFAULT_MANAGE.
    pub fn managed(&self) -> Result<bool, LabelError> {
        let skip = self.flag("skip")?;
        let manage = self.flag("manage")?;
        if skip == Some(true) {
            return Ok(false);
        }
        Ok(manage.unwrap_or(self.cfg.default_manage))
    }

    /// The hostnames a container declares by itself (the `docker` source):
    /// `dns.hostname` (comma list), `dns.subdomain` (comma list) under
    /// `dns.domain`, `dns.domain` itself with `dns.use_apex=true`, and every
    /// `dns.host.<anything>`. A name without a dot is taken inside `zone`,
    /// as TrafegoDNS does. In first-seen order, each once.
    pub fn hostnames(&self, zone: &Hostname) -> Result<Vec<String>, LabelError> {
        let mut out: Vec<String> = Vec::new();
        let mut push = |h: &str| {
            let h = h.trim();
            if h.is_empty() {
                return;
            }
            let h = if h.contains('.') {
                h.to_string()
            } else {
                format!("{h}.{zone}")
            };
            if !out.contains(&h) {
                out.push(h);
            }
        };
        let get = |key: &str| {
            self.map
                .get(&self.generic_key(key))
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        if let Some(v) = get("hostname") {
            v.split(',').for_each(&mut push);
        }
        if let Some(domain) = get("domain") {
            let domain = domain.trim_end_matches('.');
            if let Some(subs) = get("subdomain") {
                for s in subs.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    push(&format!("{s}.{domain}"));
                }
            }
            let apex_key = self.generic_key("use_apex");
            if let Some(v) = get("use_apex") {
                match parse_bool(v) {
                    Some(true) => push(domain),
                    Some(false) => {}
                    None => {
                        return Err(LabelError {
                            label: apex_key,
                            message: format!("{v:?} is not true or false"),
                        });
                    }
                }
            }
        } else if get("subdomain").is_some() {
            return Err(LabelError {
                label: self.generic_key("subdomain"),
                message: format!("needs {} beside it", self.generic_key("domain")),
            });
        }
        let host_prefix = self.generic_key("host.");
        for (k, v) in self.map.range(host_prefix.clone()..) {
            if !k.starts_with(&host_prefix) {
                break;
            }
            push(v);
        }
        Ok(out)
    }

    /// The declaration of `hostname` with this container's record settings.
    /// Values are parsed here; whether they make a valid record is the
    /// [`Collector`]'s to check (with the zone and the defaults).
    pub fn record(&self, hostname: &str) -> Result<DesiredRecord, LabelError> {
        let rtype = match self.get("type") {
            Some((k, v)) => Some(RecordType::parse(&k, v).map_err(|e| LabelError {
                label: k.clone(),
                message: e.message,
            })?),
            None => None,
        };
        let content = self.get("content").map(|(_, v)| v.to_string());
        let ttl = self.number::<u32>("ttl", "a TTL in seconds")?;
        let proxied = self.flag("proxied")?;
        let mut r = DesiredRecord {
            hostname: hostname.to_string(),
            r#type: rtype.map(|t| t.as_str().to_string()),
            content,
            ttl,
            proxied,
            priority: None,
        };
        match rtype {
            Some(RecordType::Mx) => {
                r.priority = Some(
                    self.number::<u16>("priority", "a priority from 0 to 65535")?
                        .unwrap_or(10)
                        .into(),
                );
            }
            Some(RecordType::Srv) => {
                r.priority = Some(
                    self.number::<u16>("priority", "a priority from 0 to 65535")?
                        .unwrap_or(1)
                        .into(),
                );
                let weight = self.number::<u16>("weight", "a weight from 0 to 65535")?;
                let port = self.number::<u16>("port", "a port from 0 to 65535")?;
                let target = r.content.take();
                r.content = match (weight, port, target) {
                    // A full "weight port target" content stands as it is.
                    (None, None, Some(t)) if t.split_ascii_whitespace().count() == 3 => Some(t),
                    (w, Some(p), Some(t)) => Some(format!("{} {p} {t}", w.unwrap_or(1))),
                    (_, None, _) => {
                        return Err(LabelError {
                            label: self.generic_key("port"),
                            message: "is required for an SRV record".into(),
                        });
                    }
                    (_, _, None) => {
                        return Err(LabelError {
                            label: self.generic_key("content"),
                            message: "is required for an SRV record (its target)".into(),
                        });
                    }
                };
            }
            Some(RecordType::Caa) => {
                let flags = self.number::<u8>("flags", "a flags value from 0 to 255")?;
                let tag = self.get("tag").map(|(_, v)| v.to_string());
                let value = r.content.take();
                let full = |v: &str| {
                    let mut it = v.split_ascii_whitespace();
                    it.next().is_some_and(|f| f.parse::<u8>().is_ok()) && it.count() >= 2
                };
                r.content = match (flags, tag, value) {
                    (None, None, Some(v)) if full(&v) => Some(v),
                    (f, t, Some(v)) => Some(format!(
                        "{} {} {v}",
                        f.unwrap_or(0),
                        t.as_deref().unwrap_or("issue")
                    )),
                    (_, _, None) => {
                        return Err(LabelError {
                            label: self.generic_key("content"),
                            message: "is required for a CAA record (its value)".into(),
                        });
                    }
                };
            }
            _ => {}
        }
        Ok(r)
    }
}

/// Something wrong with one owner (a container or a router): it was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Who: `container web`, `router api@docker`.
    pub owner: String,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.owner, self.message)
    }
}

/// Gathers a source's declaration owner by owner, each validated whole.
#[derive(Debug)]
pub struct Collector<'a> {
    defaults: &'a Defaults,
    zone: &'a ZoneInfo,
    records: Vec<DesiredRecord>,
    /// (name, type) → (the spec, its owner).
    held: HashMap<(String, RecordType), (RecordSpec, String)>,
    /// name → (a type held there, its owner), for the CNAME rule.
    types_at: HashMap<String, (RecordType, String)>,
    problems: Vec<Problem>,
}

impl<'a> Collector<'a> {
    /// An empty declaration in `zone` with `defaults`.
    pub fn new(defaults: &'a Defaults, zone: &'a ZoneInfo) -> Self {
        Self {
            defaults,
            zone,
            records: Vec::new(),
            held: HashMap::new(),
            types_at: HashMap::new(),
            problems: Vec::new(),
        }
    }

    /// The zone.
    pub fn zone(&self) -> &Hostname {
        &self.zone.zone
    }

    /// Whether `name` (as written) lies in the zone; `Err` when it is not a
    /// valid name at all.
    pub fn in_zone(&self, name: &str) -> Result<bool, String> {
        Hostname::parse("hostname", name)
            .map(|h| h.is_in_zone(&self.zone.zone))
            .map_err(|e| e.message)
    }

    /// Records a problem of `owner`.
    pub fn problem(&mut self, owner: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            owner: owner.to_string(),
            message: message.into(),
        });
    }

    /// Takes all of `owner`'s records or, when any is invalid or clashes
    /// with an earlier owner's, none (and records why). A record exactly as
    /// an earlier owner declared it is taken once.
    pub fn offer(&mut self, owner: &str, records: Vec<DesiredRecord>) -> bool {
        if records.is_empty() {
            return true;
        }
        let specs = match desired::validate_all("record", &records, self.defaults, self.zone) {
            Ok(s) => s,
            Err(e) => {
                // A field path like record[2].content names the record by its hostname.
                let which = e
                    .field
                    .strip_prefix("record[")
                    .and_then(|s| s.split_once(']'))
                    .and_then(|(i, rest)| Some((i.parse::<usize>().ok()?, rest)));
                let message = match which.and_then(|(i, f)| Some((records.get(i)?, f))) {
                    Some((r, f)) if !f.is_empty() => format!(
                        "{} ({}): {}",
                        r.hostname,
                        f.trim_start_matches('.'),
                        e.message
                    ),
                    Some((r, _)) => format!("{}: {}", r.hostname, e.message),
                    None => e.to_string(),
                };
                self.problem(owner, message);
                return false;
            }
        };
        let mut fresh = Vec::with_capacity(specs.len());
        for (spec, rec) in specs.into_iter().zip(records) {
            let name = spec.name.as_str().to_string();
            let key = (name.clone(), spec.rtype);
            if let Some((held, by)) = self.held.get(&key) {
                if *held == spec {
                    continue;
                }
                let msg = format!(
                    "{name} {} is declared differently by {by}; the first declaration stands",
                    spec.rtype
                );
                self.problem(owner, msg);
                return false;
            }
            if let Some((t, by)) = self.types_at.get(&name)
                && *t != spec.rtype
                && (*t == RecordType::Cname || spec.rtype == RecordType::Cname)
            {
                let msg = format!(
                    "{name} would be {} beside the {t} {by} declares; a CNAME cannot sit beside another record",
                    spec.rtype
                );
                self.problem(owner, msg);
                return false;
            }
            fresh.push((key, spec, rec));
        }
        for (key, spec, rec) in fresh {
            self.types_at
                .entry(key.0.clone())
                .or_insert((key.1, owner.to_string()));
            self.held.insert(key, (spec, owner.to_string()));
            self.records.push(rec);
        }
        true
    }

    /// The records taken and the problems met.
    pub fn finish(self) -> (Vec<DesiredRecord>, Vec<Problem>) {
        (self.records, self.problems)
    }
}

/// One container as the sources see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Container {
    /// Its id.
    pub id: String,
    /// Its name, without the leading `/`.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// The `docker` source's declaration: every running container's own
/// hostnames, in name order (so the first of two clashing containers is
/// always the same one).
pub fn declare_containers(
    containers: &[Container],
    cfg: &LabelConfig,
    collector: &mut Collector<'_>,
) {
    let mut sorted: Vec<&Container> = containers.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
    for c in sorted {
        let owner = format!("container {}", c.name);
        let labels = Labels::new(&c.labels, cfg);
        let zone = collector.zone().clone();
        let declared = (|| {
            let hosts = labels.hostnames(&zone)?;
            if hosts.is_empty() || !labels.managed()? {
                return Ok(Vec::new());
            }
            let mut records = Vec::with_capacity(hosts.len());
            for h in hosts {
                records.push(labels.record(&h)?);
            }
            Ok::<_, LabelError>(records)
        })();
        let records = match declared {
            Ok(r) => r,
            Err(e) => {
                collector.problem(&owner, e.to_string());
                continue;
            }
        };
        let mut kept = Vec::with_capacity(records.len());
        let mut bad = None;
        for r in records {
            match collector.in_zone(&r.hostname) {
                Ok(true) => kept.push(r),
                Ok(false) => {
                    tracing::debug!(container = %c.name, hostname = %r.hostname, zone = %zone, "hostname outside the managed zone skipped");
                }
                Err(e) => {
                    bad = Some(format!("hostname {:?}: {e}", r.hostname));
                    break;
                }
            }
        }
        match bad {
            Some(msg) => collector.problem(&owner, msg),
            None => {
                collector.offer(&owner, kept);
            }
        }
    }
}

#[cfg(test)]
mod tests;
