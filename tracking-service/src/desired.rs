//! Turning what a source declares into valid record specs: the edge of
//! `Reconcile`. TrafegoDNS's defaults are filled here (type from an IP
//! address or DNS_DEFAULT_TYPE, content from DNS_DEFAULT_CONTENT, the apex or
//! PUBLIC_IP/PUBLIC_IPV6, TTL and proxied).
//!
//! Every refusal is a [`FieldError`] naming the field (`records[3].content`),
//! returned before anything is read or written. Nothing past this module sees
//! an invalid name, content, TTL or priority.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use trafego_proto::tracking::DesiredRecord;
use trafego_proto::validate::{
    FieldError, Hostname, ProviderRules, RecordSpec, RecordType, check_null_mx, parse_content,
    parse_priority, parse_ttl, reject_control,
};

/// Longest source name.
pub const MAX_SOURCE_LEN: usize = 128;
/// Most records one `Reconcile` may declare.
pub const MAX_RECORDS: usize = 100_000;
/// The built-in source that holds MANAGED_HOSTNAMES.
pub const MANAGED_SOURCE: &str = "managed-hostnames";

/// The defaults applied to what a declaration leaves out.
#[derive(Debug, Clone)]
pub struct Defaults {
    /// Type when neither a type nor an IP address is given.
    pub rtype: RecordType,
    /// Content when none is given (CNAME: the zone apex when unset).
    pub content: Option<String>,
    /// TTL when none is given.
    pub ttl: u32,
    /// Proxied when not given (A, AAAA, CNAME on Cloudflare only).
    pub proxied: bool,
    /// Content of A records without content, and of the apex.
    pub public_ip: Option<Ipv4Addr>,
    /// Content of AAAA records without content, and of the apex.
    pub public_ipv6: Option<Ipv6Addr>,
}

/// The zone and what its provider can hold, as cache-service reports them
/// (`GetCacheStatus`: the zone and the capabilities). Declarations are
/// validated with these data, never with the provider's name.
#[derive(Debug, Clone)]
pub struct ZoneInfo {
    /// The zone managed (the first of `zones` when several are served).
    pub zone: Hostname,
    /// Every zone cache-service serves, when it serves several (empty: just
    /// `zone`). A hostname goes to the longest zone it lies in.
    pub zones: Vec<Hostname>,
    /// The provider's capabilities that decide what a declaration may ask for.
    pub rules: ProviderRules,
}

impl ZoneInfo {
    /// Whether the provider can proxy records; elsewhere proxied is always
    /// false, or a record would look drifted forever.
    pub fn can_proxy(&self) -> bool {
        self.rules.proxied
    }

    /// The zones served.
    pub fn served(&self) -> &[Hostname] {
        if self.zones.is_empty() {
            std::slice::from_ref(&self.zone)
        } else {
            &self.zones
        }
    }

    /// The zone `name` belongs to: the longest served zone it lies in.
    pub fn route(&self, name: &Hostname) -> Option<&Hostname> {
        self.served()
            .iter()
            .filter(|z| name.is_in_zone(z))
            .max_by_key(|z| z.as_str().len())
    }

    /// [`ZoneInfo::route`], refusing at `field` a name in no served zone
    /// (naming the zones served; with one zone, as outside the zone).
    pub fn home(&self, field: &str, name: &Hostname) -> Result<&Hostname, FieldError> {
        if self.served().len() <= 1 {
            name.require_in_zone(field, &self.zone)?;
            return Ok(&self.zone);
        }
        self.route(name).ok_or_else(|| {
            FieldError::new(
                field,
                format!(
                    "{name} lies in none of the zones served ({})",
                    self.served()
                        .iter()
                        .map(Hostname::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    }
}

/// Validates a source name: non-empty, at most 128 characters, no control characters.
pub fn source(field: &str, s: &str) -> Result<String, FieldError> {
    reject_control(field, s)?;
    if s.trim().is_empty() {
        return Err(FieldError::new(field, "is required (e.g. \"traefik\")"));
    }
    if s.chars().count() > MAX_SOURCE_LEN {
        return Err(FieldError::new(
            field,
            format!("at most {MAX_SOURCE_LEN} characters"),
        ));
    }
    Ok(s.to_string())
}

/// Validates every declared record (fields named `{prefix}[i].…`), fills
/// the defaults and refuses names outside the zone, the same (name, type)
/// twice, and a CNAME declared beside another type at one name.
pub fn validate_all(
    prefix: &str,
    records: &[DesiredRecord],
    defaults: &Defaults,
    zone: &ZoneInfo,
) -> Result<Vec<RecordSpec>, FieldError> {
    if records.len() > MAX_RECORDS {
        return Err(FieldError::new(
            prefix,
            format!("{} records; at most {MAX_RECORDS} per call", records.len()),
        ));
    }
    let mut out = Vec::with_capacity(records.len());
    let mut seen: HashMap<(String, RecordType), usize> = HashMap::with_capacity(records.len());
    let mut types_at: HashMap<String, (usize, RecordType)> = HashMap::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let field = format!("{prefix}[{i}]");
        let spec = one(&field, r, defaults, zone)?;
        let name = spec.name.as_str().to_string();
        if let Some(j) = seen.insert((name.clone(), spec.rtype), i) {
            return Err(FieldError::new(
                format!("{field}.hostname"),
                format!(
                    "{name} {} is declared twice (also {prefix}[{j}])",
                    spec.rtype
                ),
            ));
        }
        match types_at.get(&name) {
            Some((j, t))
                if *t != spec.rtype
                    && (*t == RecordType::Cname || spec.rtype == RecordType::Cname) =>
            {
                return Err(FieldError::new(
                    format!("{field}.type"),
                    format!(
                        "{name} is declared as {} and as {t} (at {prefix}[{j}]); a CNAME cannot sit beside another record",
                        spec.rtype
                    ),
                ));
            }
            Some(_) => {}
            None => {
                types_at.insert(name, (i, spec.rtype));
            }
        }
        out.push(spec);
    }
    Ok(out)
}

/// The checks of [`validate_all`] that need no zone, run before
/// cache-service is asked for it, so bad input is refused with
/// INVALID_ARGUMENT even while cache-service cannot be reached: names,
/// types, given contents, TTLs, proxied flags, priorities, and a (name,
/// type) declared twice or a CNAME beside another type where the type is
/// known without the zone (given, or from the content). `validate_all`
/// then repeats them with the zone-dependent ones (zone membership, the
/// apex, default contents).
pub fn precheck(
    prefix: &str,
    records: &[DesiredRecord],
    defaults: &Defaults,
) -> Result<(), FieldError> {
    if records.len() > MAX_RECORDS {
        return Err(FieldError::new(
            prefix,
            format!("{} records; at most {MAX_RECORDS} per call", records.len()),
        ));
    }
    let mut seen: HashMap<(String, RecordType), usize> = HashMap::with_capacity(records.len());
    let mut types_at: HashMap<String, (usize, RecordType)> = HashMap::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let field = format!("{prefix}[{i}]");
        let f = |name: &str| format!("{field}.{name}");
        let name = Hostname::parse(&f("hostname"), &r.hostname)?;
        let given_type = r
            .r#type
            .as_deref()
            .map(|t| RecordType::parse(&f("type"), t))
            .transpose()?;
        if let Some(c) = &r.content {
            reject_control(&f("content"), c)?;
        }
        // Only the apex without a given type or content may change type
        // once the zone is known (a CNAME becomes an A or AAAA record, both
        // proxiable and without priority), so these checks hold either way.
        let known_type = given_type.or_else(|| {
            r.content
                .as_deref()
                .map(|c| ip_type(c).unwrap_or(defaults.rtype))
        });
        let rtype = known_type.unwrap_or(defaults.rtype);
        let content = r
            .content
            .as_deref()
            .map(|c| parse_content(&f("content"), rtype, c))
            .transpose()?;
        if let Some(t) = r.ttl {
            parse_ttl(&f("ttl"), t)?;
        }
        if r.proxied == Some(true) && !rtype.proxiable() {
            return Err(FieldError::new(
                f("proxied"),
                format!("{rtype} records cannot be proxied"),
            ));
        }
        let priority = parse_priority(&f("priority"), rtype, r.priority)?;
        if let Some(c) = &content {
            check_null_mx(&f("priority"), rtype, c, priority)?;
        }
        let Some(rtype) = known_type else { continue };
        let name = name.as_str().to_string();
        if let Some(j) = seen.insert((name.clone(), rtype), i) {
            return Err(FieldError::new(
                format!("{field}.hostname"),
                format!("{name} {rtype} is declared twice (also {prefix}[{j}])"),
            ));
        }
        match types_at.get(&name) {
            Some((j, t))
                if *t != rtype && (*t == RecordType::Cname || rtype == RecordType::Cname) =>
            {
                return Err(FieldError::new(
                    format!("{field}.type"),
                    format!(
                        "{name} is declared as {rtype} and as {t} (at {prefix}[{j}]); a CNAME cannot sit beside another record"
                    ),
                ));
            }
            Some(_) => {}
            None => {
                types_at.insert(name, (i, rtype));
            }
        }
    }
    Ok(())
}

fn ip_type(content: &str) -> Option<RecordType> {
    match content.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => Some(RecordType::A),
        Ok(IpAddr::V6(_)) => Some(RecordType::Aaaa),
        Err(_) => None,
    }
}

/// Validates one declared record found at `field`.
pub fn one(
    field: &str,
    r: &DesiredRecord,
    defaults: &Defaults,
    zone: &ZoneInfo,
) -> Result<RecordSpec, FieldError> {
    let f = |name: &str| format!("{field}.{name}");
    let name = Hostname::parse(&f("hostname"), &r.hostname)?;
    let home = zone.home(&f("hostname"), &name)?.clone();
    let is_apex = name == home;
    let given_type = r
        .r#type
        .as_deref()
        .map(|t| RecordType::parse(&f("type"), t))
        .transpose()?;
    if let Some(c) = &r.content {
        reject_control(&f("content"), c)?;
    }
    let mut rtype = given_type
        .or_else(|| r.content.as_deref().and_then(ip_type))
        .unwrap_or(defaults.rtype);
    let content = match &r.content {
        Some(c) => parse_content(&f("content"), rtype, c)?,
        None => default_content(
            &f,
            &name,
            (is_apex, &home),
            given_type,
            &mut rtype,
            defaults,
            zone,
        )?,
    };
    let ttl = match r.ttl {
        Some(t) => parse_ttl(&f("ttl"), t)?,
        None => defaults.ttl,
    };
    let proxied = match r.proxied {
        Some(true) if !rtype.proxiable() => {
            return Err(FieldError::new(
                f("proxied"),
                format!("{rtype} records cannot be proxied"),
            ));
        }
        Some(p) => p,
        None => defaults.proxied && rtype.proxiable(),
    } && zone.can_proxy();
    let priority = parse_priority(&f("priority"), rtype, r.priority)?;
    let spec = RecordSpec {
        rtype,
        name,
        content,
        ttl,
        proxied,
        priority,
    };
    spec.check_consistent(field)?;
    spec.check_for(field, "hostname", &home, &zone.rules)?;
    Ok(spec)
}

fn default_content(
    f: &dyn Fn(&str) -> String,
    name: &Hostname,
    (is_apex, home): (bool, &Hostname),
    given_type: Option<RecordType>,
    rtype: &mut RecordType,
    defaults: &Defaults,
    zone: &ZoneInfo,
) -> Result<String, FieldError> {
    // Without an explicit type the apex becomes an address record, as in
    // TrafegoDNS (its default CNAME content, the apex, would point to itself).
    // A CNAME declared at the apex needs a provider that flattens it.
    if is_apex && *rtype == RecordType::Cname && given_type.is_some() && !zone.rules.cname_at_apex {
        return Err(FieldError::new(
            f("type"),
            format!(
                "the zone apex {name} cannot be a CNAME with this provider (it cannot flatten one); declare an A or AAAA record"
            ),
        ));
    }
    if is_apex && *rtype == RecordType::Cname && given_type.is_none() {
        if let Some(ip) = defaults.public_ip {
            *rtype = RecordType::A;
            return Ok(ip.to_string());
        }
        if let Some(ip) = defaults.public_ipv6 {
            *rtype = RecordType::Aaaa;
            return Ok(ip.to_string());
        }
        return Err(FieldError::new(
            f("hostname"),
            format!(
                "{name} is the zone apex, which needs an A or AAAA record: set PUBLIC_IP or PUBLIC_IPV6, or give a type and content"
            ),
        ));
    }
    match *rtype {
        RecordType::Cname => {
            let c = match (&defaults.content, defaults.rtype) {
                (Some(c), RecordType::Cname) => c.clone(),
                _ => home.as_str().to_string(),
            };
            let c = parse_content(&f("content"), RecordType::Cname, &c)?;
            if c == name.as_str() {
                return Err(FieldError::new(
                    f("content"),
                    format!("{name} would be a CNAME to itself; give a content"),
                ));
            }
            Ok(c)
        }
        RecordType::A => match (defaults.public_ip, &defaults.content, defaults.rtype) {
            (_, Some(c), RecordType::A) => parse_content(&f("content"), RecordType::A, c),
            (Some(ip), _, _) => Ok(ip.to_string()),
            (None, _, _) => Err(FieldError::new(
                f("content"),
                "is required for an A record when PUBLIC_IP is not set",
            )),
        },
        RecordType::Aaaa => match (defaults.public_ipv6, &defaults.content, defaults.rtype) {
            (_, Some(c), RecordType::Aaaa) => parse_content(&f("content"), RecordType::Aaaa, c),
            (Some(ip), _, _) => Ok(ip.to_string()),
            (None, _, _) => Err(FieldError::new(
                f("content"),
                "is required for an AAAA record when PUBLIC_IPV6 is not set",
            )),
        },
        other => match (&defaults.content, defaults.rtype) {
            (Some(c), t) if t == other => parse_content(&f("content"), other, c),
            _ => Err(FieldError::new(
                f("content"),
                format!("is required for {other} records"),
            )),
        },
    }
}

/// Converts a MANAGED_HOSTNAMES entry into a declaration.
pub fn from_managed(e: &crate::config::ManagedEntry) -> DesiredRecord {
    DesiredRecord {
        hostname: e.hostname.clone(),
        r#type: Some(e.rtype.as_str().to_string()),
        content: e.content.clone(),
        ttl: e.ttl,
        proxied: e.proxied,
        priority: None,
    }
}

/// Whether the provider's copy of a record's content is, once made
/// canonical, the canonical content (shared with cache-service).
pub use trafego_proto::validate::same_content;

#[cfg(test)]
mod tests {
    use super::*;

    /// A zone whose provider proxies and flattens an apex CNAME, with a 60 s
    /// minimum TTL (`full`), or does neither and takes 30 s.
    fn zone(full: bool) -> ZoneInfo {
        ZoneInfo {
            zone: Hostname::parse("z", "example.com").unwrap(),
            zones: Vec::new(),
            rules: ProviderRules {
                record_types: RecordType::ALL.to_vec(),
                proxied: full,
                min_ttl: if full { 60 } else { 30 },
                max_ttl: 86_400,
                cname_at_apex: full,
                id_format: trafego_proto::validate::IdFormat::HEX32,
            },
        }
    }

    fn defaults() -> Defaults {
        Defaults {
            rtype: RecordType::Cname,
            content: None,
            ttl: 1,
            proxied: true,
            public_ip: Some("192.0.2.10".parse().unwrap()),
            public_ipv6: None,
        }
    }

    fn rec(h: &str) -> DesiredRecord {
        DesiredRecord {
            hostname: h.into(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_follow_trafegodns() {
        let z = zone(true);
        let d = defaults();
        let s = one("r", &rec("app.example.com"), &d, &z).unwrap();
        assert_eq!(
            (s.rtype, s.content.as_str(), s.proxied),
            (RecordType::Cname, "example.com", true)
        );
        let s = one("r", &rec("example.com"), &d, &z).unwrap();
        assert_eq!((s.rtype, s.content.as_str()), (RecordType::A, "192.0.2.10"));
        let mut r = rec("v6.example.com");
        r.content = Some("2001:DB8::1".into());
        let s = one("r", &r, &d, &z).unwrap();
        assert_eq!(
            (s.rtype, s.content.as_str()),
            (RecordType::Aaaa, "2001:db8::1")
        );
        let s = one("r", &rec("app.example.com"), &d, &zone(false)).unwrap();
        assert!(!s.proxied);
        let mut nd = d.clone();
        nd.public_ip = None;
        let e = one("records[0]", &rec("example.com"), &nd, &z).unwrap_err();
        assert_eq!(e.field, "records[0].hostname");
        assert!(e.message.contains("PUBLIC_IP"), "{e}");
    }

    #[test]
    fn refusals_name_the_field() {
        let z = zone(true);
        let d = defaults();
        let e = one("records[2]", &rec("a.example.org"), &d, &z).unwrap_err();
        assert_eq!(e.field, "records[2].hostname");
        assert!(e.message.contains("outside the zone"));
        let mut r = rec("a.example.com");
        r.ttl = Some(5);
        assert_eq!(
            one("records[0]", &r, &d, &z).unwrap_err().field,
            "records[0].ttl"
        );
        let mut r = rec("a.example.com");
        r.r#type = Some("TXT".into());
        r.content = Some("x".into());
        r.proxied = Some(true);
        assert_eq!(
            one("records[0]", &r, &d, &z).unwrap_err().field,
            "records[0].proxied"
        );
        let e = validate_all(
            "records",
            &[rec("a.example.com"), rec("A.example.com.")],
            &d,
            &z,
        )
        .unwrap_err();
        assert_eq!(e.field, "records[1].hostname");
        assert!(source("source", "").is_err());
        assert!(source("source", "a\nb").is_err());
        assert!(source("source", &"x".repeat(129)).is_err());
    }

    fn typed(h: &str, t: &str, content: Option<&str>) -> DesiredRecord {
        DesiredRecord {
            hostname: h.into(),
            r#type: Some(t.into()),
            content: content.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn declarations_follow_the_provider_capabilities() {
        let d = defaults();
        let (full, plain) = (zone(true), zone(false));
        let field = |r: &DesiredRecord, z: &ZoneInfo| one("records[0]", r, &d, z).unwrap_err();

        // A CNAME at the apex only where the provider flattens it.
        let apex = typed("example.com", "CNAME", Some("target.example.net"));
        let e = field(&apex, &plain);
        assert_eq!(e.field, "records[0].type");
        assert!(e.message.contains("apex"), "{e}");
        let s = one("records[0]", &apex, &d, &full).unwrap();
        assert_eq!(
            (s.rtype, s.content.as_str()),
            (RecordType::Cname, "target.example.net")
        );
        let bare = typed("example.com", "CNAME", None);
        assert_eq!(field(&bare, &plain).field, "records[0].type");
        let e = field(&bare, &full);
        assert_eq!(e.field, "records[0].content");
        assert!(e.message.contains("itself"), "{e}");

        // NS at the apex never; below it, yes.
        let ns = typed("example.com", "NS", Some("ns1.example.net"));
        assert_eq!(field(&ns, &full).field, "records[0].type");
        one(
            "r",
            &typed("sub.example.com", "NS", Some("ns1.example.net")),
            &d,
            &full,
        )
        .unwrap();

        // The provider's minimum TTL, named; automatic always passes.
        let mut r = rec("a.example.com");
        r.ttl = Some(45);
        let e = field(&r, &full);
        assert_eq!(e.field, "records[0].ttl");
        assert!(e.message.contains("minimum of 60"), "{e}");
        one("r", &r, &d, &plain).unwrap();
        r.ttl = Some(1);
        one("r", &r, &d, &full).unwrap();

        // Targets are names, not addresses, and not the record's own name.
        let e = field(&typed("a.example.com", "CNAME", Some("192.0.2.1")), &full);
        assert_eq!(e.field, "records[0].content");
        let e = field(
            &typed("a.example.com", "CNAME", Some("a.example.com.")),
            &full,
        );
        assert_eq!(e.field, "records[0].content");
        assert!(e.message.contains("itself"), "{e}");

        // The null MX, with priority 0 only; also before the zone is known.
        let mut mx = typed("nomail.example.com", "MX", Some("."));
        mx.priority = Some(0);
        let s = one("r", &mx, &d, &plain).unwrap();
        assert_eq!((s.content.as_str(), s.priority), (".", Some(0)));
        precheck("records", std::slice::from_ref(&mx), &d).unwrap();
        mx.priority = Some(10);
        assert_eq!(field(&mx, &plain).field, "records[0].priority");
        let e = precheck("records", &[mx], &d).unwrap_err();
        assert_eq!(e.field, "records[0].priority");
        let e = precheck(
            "records",
            &[typed("a.example.com", "MX", Some("192.0.2.1"))],
            &d,
        )
        .unwrap_err();
        assert_eq!(e.field, "records[0].content");
    }

    #[test]
    fn content_comparison_is_canonical() {
        assert!(same_content(
            "CNAME",
            "Target.Example.com.",
            "target.example.com"
        ));
        assert!(same_content("AAAA", "2001:DB8:0::1", "2001:db8::1"));
        assert!(!same_content("A", "192.0.2.1", "192.0.2.2"));
        assert!(!same_content("PTR", "x", "y"));
    }
}
