//! Validation at the gRPC edge: wire strings become domain types that cannot
//! hold an invalid value.
//!
//! Every check returns a [`FieldError`] naming the field that was wrong, which
//! becomes `INVALID_ARGUMENT` at the edge. Nothing that carries a line break or
//! another control byte gets past this module: such values would corrupt a zone
//! file, a log line or a provider request.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::cache::RecordInput;

/// Longest name in presentation form (RFC 1035 section 2.3.4, without the root dot).
pub const MAX_NAME_LEN: usize = 253;
/// Longest label (RFC 1035 section 2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// The TTL that means "automatic" (the provider chooses).
pub const TTL_AUTO: u32 = 1;
/// Shortest explicit TTL accepted.
pub const TTL_MIN: u32 = 30;
/// Longest TTL accepted.
pub const TTL_MAX: u32 = 86_400;
/// Longest TXT content accepted, in bytes (Cloudflare's limit is 2048 characters per record).
pub const MAX_TXT_LEN: usize = 2048;
/// Longest record comment (Cloudflare's limit on its free plans).
pub const MAX_COMMENT_LEN: usize = 100;
/// Longest record id any provider may use (the shared conservative check).
pub const MAX_RECORD_ID_LEN: usize = 128;

/// A value refused at the edge, with the path of the field that held it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field path, e.g. `record.content` or `records[3].hostname`.
    pub field: String,
    /// What was wrong with it. Never echoes a secret.
    pub message: String,
}

impl FieldError {
    /// A refusal of `field` for `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same refusal under a parent path: `record` + `content` → `record.content`.
    pub fn within(mut self, parent: &str) -> Self {
        if !parent.is_empty() {
            self.field = format!("{parent}.{}", self.field);
        }
        self
    }
}

impl From<FieldError> for tonic::Status {
    fn from(e: FieldError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

/// Refuses any control byte (C0, DEL, C1) and, in particular, line breaks.
pub fn reject_control(field: &str, value: &str) -> Result<(), FieldError> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        let what = if c == '\n' || c == '\r' {
            "a line break"
        } else {
            "a control character"
        };
        return Err(FieldError::new(
            field,
            format!("must not contain {what} (U+{:04X})", c as u32),
        ));
    }
    Ok(())
}

/// A DNS record type this project manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    /// IPv4 address.
    A,
    /// IPv6 address.
    Aaaa,
    /// Alias to another name.
    Cname,
    /// Free text.
    Txt,
    /// Mail exchanger, with a priority.
    Mx,
    /// Service location, with a priority.
    Srv,
    /// Certification authority authorisation.
    Caa,
    /// Delegation to a name server.
    Ns,
}

impl RecordType {
    /// Every supported type, in a fixed order.
    pub const ALL: [RecordType; 8] = [
        RecordType::A,
        RecordType::Aaaa,
        RecordType::Cname,
        RecordType::Txt,
        RecordType::Mx,
        RecordType::Srv,
        RecordType::Caa,
        RecordType::Ns,
    ];

    /// The uppercase name used on the wire and at providers.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
            RecordType::Cname => "CNAME",
            RecordType::Txt => "TXT",
            RecordType::Mx => "MX",
            RecordType::Srv => "SRV",
            RecordType::Caa => "CAA",
            RecordType::Ns => "NS",
        }
    }

    /// Whether records of this type carry a priority (MX, SRV).
    pub fn has_priority(self) -> bool {
        matches!(self, RecordType::Mx | RecordType::Srv)
    }

    /// Whether a provider can proxy records of this type (Cloudflare: A, AAAA, CNAME).
    pub fn proxiable(self) -> bool {
        matches!(self, RecordType::A | RecordType::Aaaa | RecordType::Cname)
    }

    /// Parses a type name (case-insensitive) for `field`.
    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        reject_control(field, s)?;
        s.parse().map_err(|()| {
            FieldError::new(
                field,
                format!(
                    "unsupported record type {s:?}; expected one of A, AAAA, CNAME, TXT, MX, SRV, CAA, NS"
                ),
            )
        })
    }
}

impl FromStr for RecordType {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        RecordType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or(())
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A fully qualified DNS name: lowercase ASCII (punycode for Unicode names),
/// no trailing dot, labels of 1 to 63 octets of letters, digits, `-` and `_`,
/// an optional leading `*` label, at most 253 octets in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hostname(String);

impl Hostname {
    /// Validates and normalises `s` for `field`.
    pub fn parse(field: &str, s: &str) -> Result<Self, FieldError> {
        Self::parse_inner(field, s, true)
    }

    /// Like [`Hostname::parse`], but refuses a wildcard label: for targets of
    /// CNAME, MX, NS and SRV records.
    pub fn parse_target(field: &str, s: &str) -> Result<Self, FieldError> {
        Self::parse_inner(field, s, false)
    }

    fn parse_inner(field: &str, s: &str, allow_wildcard: bool) -> Result<Self, FieldError> {
        reject_control(field, s)?;
        if s.chars().any(char::is_whitespace) {
            return Err(FieldError::new(field, "must not contain whitespace"));
        }
        let trimmed = s.strip_suffix('.').unwrap_or(s);
        if trimmed.is_empty() {
            return Err(FieldError::new(field, "must not be empty"));
        }
        let ascii = if trimmed.is_ascii() {
            trimmed.to_ascii_lowercase()
        } else {
            // Convert each label on its own so `_` and `*` labels survive.
            let mut labels = Vec::new();
            for label in trimmed.split('.') {
                if label.is_ascii() {
                    labels.push(label.to_ascii_lowercase());
                } else {
                    let converted = idna::domain_to_ascii(label).map_err(|_| {
                        FieldError::new(
                            field,
                            format!("{s:?} is not a valid internationalised name"),
                        )
                    })?;
                    labels.push(converted);
                }
            }
            labels.join(".")
        };
        if ascii.len() > MAX_NAME_LEN {
            return Err(FieldError::new(
                field,
                format!(
                    "name is {} octets long; at most {MAX_NAME_LEN} allowed",
                    ascii.len()
                ),
            ));
        }
        for (i, label) in ascii.split('.').enumerate() {
            if label.is_empty() {
                return Err(FieldError::new(field, format!("{s:?} has an empty label")));
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(FieldError::new(
                    field,
                    format!(
                        "label {label:?} is {} octets long; at most {MAX_LABEL_LEN} allowed",
                        label.len()
                    ),
                ));
            }
            if label == "*" {
                if i == 0 && allow_wildcard {
                    continue;
                }
                return Err(FieldError::new(
                    field,
                    if allow_wildcard {
                        "a wildcard `*` is only allowed as the first label"
                    } else {
                        "a target name must not be a wildcard"
                    },
                ));
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            {
                return Err(FieldError::new(
                    field,
                    format!(
                        "label {label:?} contains {c:?}; only letters, digits, '-' and '_' are allowed"
                    ),
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(FieldError::new(
                    field,
                    format!("label {label:?} must not start or end with '-'"),
                ));
            }
            if label.starts_with("xn--") && !is_valid_a_label(label) {
                return Err(FieldError::new(
                    field,
                    format!(
                        "label {label:?} starts with \"xn--\" but is not a valid internationalised (punycode) label"
                    ),
                ));
            }
        }
        Ok(Hostname(ascii))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this name is `zone` itself or lies below it.
    pub fn is_in_zone(&self, zone: &Hostname) -> bool {
        self.0 == zone.0
            || (self.0.len() > zone.0.len()
                && self.0.ends_with(zone.as_str())
                && self.0.as_bytes()[self.0.len() - zone.0.len() - 1] == b'.')
    }

    /// Refuses this name for `field` unless it lies in `zone`.
    pub fn require_in_zone(&self, field: &str, zone: &Hostname) -> Result<(), FieldError> {
        if self.is_in_zone(zone) {
            Ok(())
        } else {
            Err(FieldError::new(
                field,
                format!("{} is outside the zone {}", self.0, zone.0),
            ))
        }
    }
}

/// Whether an `xn--` label (lowercase) is an A-label: valid punycode that
/// decodes to a valid IDNA name and encodes back to exactly this label. A
/// provider or a DNS server would refuse the others, or show them as garbage.
fn is_valid_a_label(label: &str) -> bool {
    let (unicode, decoded) = idna::domain_to_unicode(label);
    decoded.is_ok()
        && unicode != label
        && idna::domain_to_ascii(&unicode).is_ok_and(|back| back == label)
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Validates a TTL: 0 or 1 mean automatic (1), otherwise 30 to 86400 seconds.
pub fn parse_ttl(field: &str, ttl: u32) -> Result<u32, FieldError> {
    match ttl {
        0 | TTL_AUTO => Ok(TTL_AUTO),
        TTL_MIN..=TTL_MAX => Ok(ttl),
        _ => Err(FieldError::new(
            field,
            format!("TTL {ttl} is out of range; use 1 (automatic) or {TTL_MIN} to {TTL_MAX}"),
        )),
    }
}

/// Validates `content` for a record of type `rtype` and returns its canonical
/// presentation form (addresses compressed, names lowercase without the dot).
pub fn parse_content(field: &str, rtype: RecordType, content: &str) -> Result<String, FieldError> {
    reject_control(field, content)?;
    if content.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    match rtype {
        RecordType::A => Ipv4Addr::from_str(content)
            .map(|a| a.to_string())
            .map_err(|_| FieldError::new(field, format!("{content:?} is not an IPv4 address"))),
        RecordType::Aaaa => Ipv6Addr::from_str(content)
            .map(|a| a.to_string())
            .map_err(|_| FieldError::new(field, format!("{content:?} is not an IPv6 address"))),
        // The null MX of RFC 7505: "this name accepts no mail" (priority 0,
        // checked with the priority by `check_null_mx`).
        RecordType::Mx if content == "." => Ok(".".to_string()),
        RecordType::Cname | RecordType::Ns | RecordType::Mx => {
            reject_ip_target(field, rtype, content)?;
            Hostname::parse_target(field, content).map(|h| h.0)
        }
        RecordType::Txt => {
            if content.len() > MAX_TXT_LEN {
                return Err(FieldError::new(
                    field,
                    format!(
                        "TXT content is {} bytes; at most {MAX_TXT_LEN} allowed",
                        content.len()
                    ),
                ));
            }
            Ok(content.to_string())
        }
        RecordType::Srv => parse_srv(field, content),
        RecordType::Caa => parse_caa(field, content),
    }
}

/// Refuses an IP address where a record points to a name (CNAME, MX, NS and
/// SRV targets): `192.0.2.1` parses as a name of digit labels, which no
/// resolver would take as the address it looks like.
fn reject_ip_target(field: &str, rtype: RecordType, target: &str) -> Result<(), FieldError> {
    let bare = target.strip_suffix('.').unwrap_or(target);
    if bare.parse::<IpAddr>().is_ok() {
        return Err(FieldError::new(
            field,
            format!(
                "{target:?} is an IP address; a {rtype} record points to a host name (use an A or AAAA record for an address)"
            ),
        ));
    }
    Ok(())
}

/// Refuses a null MX (content ".", RFC 7505) with a priority other than 0.
pub fn check_null_mx(
    field: &str,
    rtype: RecordType,
    content: &str,
    priority: Option<u16>,
) -> Result<(), FieldError> {
    if rtype == RecordType::Mx && content == "." && priority != Some(0) {
        return Err(FieldError::new(
            field,
            "a null MX (content \".\", RFC 7505) must have priority 0",
        ));
    }
    Ok(())
}

fn parse_u16(field: &str, what: &str, s: &str) -> Result<u16, FieldError> {
    s.parse::<u16>().map_err(|_| {
        FieldError::new(
            field,
            format!("SRV {what} {s:?} is not a number from 0 to 65535"),
        )
    })
}

/// SRV content is `weight port target` (the priority is its own field).
fn parse_srv(field: &str, content: &str) -> Result<String, FieldError> {
    let parts: Vec<&str> = content.split_ascii_whitespace().collect();
    let [weight, port, target] = parts.as_slice() else {
        return Err(FieldError::new(
            field,
            "SRV content must be \"weight port target\" (the priority goes in its own field)",
        ));
    };
    let weight = parse_u16(field, "weight", weight)?;
    let port = parse_u16(field, "port", port)?;
    let target = if *target == "." {
        ".".to_string()
    } else {
        reject_ip_target(field, RecordType::Srv, target)?;
        Hostname::parse_target(field, target)?.0
    };
    Ok(format!("{weight} {port} {target}"))
}

/// CAA content is `flags tag value`, e.g. `0 issue "letsencrypt.org"`.
fn parse_caa(field: &str, content: &str) -> Result<String, FieldError> {
    let mut it = content.splitn(3, ' ');
    let (Some(flags), Some(tag), Some(value)) = (it.next(), it.next(), it.next()) else {
        return Err(FieldError::new(
            field,
            "CAA content must be \"flags tag value\", e.g. 0 issue \"letsencrypt.org\"",
        ));
    };
    let flags: u8 = flags.parse().map_err(|_| {
        FieldError::new(
            field,
            format!("CAA flags {flags:?} is not a number from 0 to 255"),
        )
    })?;
    let tag = tag.to_ascii_lowercase();
    if tag.is_empty() || tag.len() > 15 || !tag.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(FieldError::new(
            field,
            format!(
                "CAA tag {tag:?} must be 1 to 15 letters or digits (issue, issuewild, iodef...)"
            ),
        ));
    }
    let value = value.trim();
    let inner = match value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => inner,
        None => value,
    };
    if inner.contains('"') || inner.contains('\\') {
        return Err(FieldError::new(
            field,
            "CAA value must not contain '\"' or '\\'",
        ));
    }
    if inner.is_empty() && tag != "issue" && tag != "issuewild" {
        return Err(FieldError::new(field, "CAA value must not be empty"));
    }
    Ok(format!("{flags} {tag} \"{inner}\""))
}

/// Validates the priority against the type: required for MX and SRV, refused otherwise.
pub fn parse_priority(
    field: &str,
    rtype: RecordType,
    priority: Option<u32>,
) -> Result<Option<u16>, FieldError> {
    match (rtype.has_priority(), priority) {
        (true, Some(p)) => u16::try_from(p).map(Some).map_err(|_| {
            FieldError::new(field, format!("priority {p} is out of range 0 to 65535"))
        }),
        (true, None) => Err(FieldError::new(
            field,
            format!("{rtype} records need a priority"),
        )),
        (false, Some(_)) => Err(FieldError::new(
            field,
            format!("{rtype} records have no priority"),
        )),
        (false, None) => Ok(None),
    }
}

/// A record's defining fields, all valid. What providers are asked to create
/// and what fingerprints are computed over.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordSpec {
    /// The record type.
    pub rtype: RecordType,
    /// The record's name.
    pub name: Hostname,
    /// Canonical content for the type.
    pub content: String,
    /// TTL in seconds, 1 for automatic.
    pub ttl: u32,
    /// Proxied at the provider (only ever true for A, AAAA, CNAME).
    pub proxied: bool,
    /// Priority for MX and SRV.
    pub priority: Option<u16>,
}

impl RecordSpec {
    /// Validates every field of a spec; `parent` prefixes field paths.
    pub fn new(
        parent: &str,
        rtype: &str,
        name: &str,
        content: &str,
        ttl: u32,
        proxied: bool,
        priority: Option<u32>,
    ) -> Result<Self, FieldError> {
        let path = |f: &str| {
            if parent.is_empty() {
                f.to_string()
            } else {
                format!("{parent}.{f}")
            }
        };
        let rtype = RecordType::parse(&path("type"), rtype)?;
        let name = Hostname::parse(&path("name"), name)?;
        let content = parse_content(&path("content"), rtype, content)?;
        let ttl = parse_ttl(&path("ttl"), ttl)?;
        if proxied && !rtype.proxiable() {
            return Err(FieldError::new(
                path("proxied"),
                format!("{rtype} records cannot be proxied"),
            ));
        }
        let priority = parse_priority(&path("priority"), rtype, priority)?;
        let spec = RecordSpec {
            rtype,
            name,
            content,
            ttl,
            proxied,
            priority,
        };
        spec.check_consistent(parent)?;
        Ok(spec)
    }

    /// The checks that tie fields together, whatever the zone and provider:
    /// a CNAME must not point to its own name, and a null MX must have
    /// priority 0. `parent` prefixes field paths.
    pub fn check_consistent(&self, parent: &str) -> Result<(), FieldError> {
        if self.rtype == RecordType::Cname && self.content == self.name.as_str() {
            return Err(FieldError::new(
                child(parent, "content"),
                format!("{} would be a CNAME to itself", self.name),
            ));
        }
        check_null_mx(
            &child(parent, "priority"),
            self.rtype,
            &self.content,
            self.priority,
        )
    }

    /// The checks that need the zone, for every provider: the name lies in
    /// `zone`, and it is not an NS record at the apex (the zone's own
    /// delegation, which this app never touches). `name_field` is the name's
    /// field below `parent` (`name`, or `hostname` in a declaration).
    pub fn check_in_zone(
        &self,
        parent: &str,
        name_field: &str,
        zone: &Hostname,
    ) -> Result<(), FieldError> {
        self.name
            .require_in_zone(&child(parent, name_field), zone)?;
        if self.rtype == RecordType::Ns && self.name == *zone {
            return Err(FieldError::new(
                child(parent, "type"),
                format!(
                    "NS records at the zone apex {zone} are the zone's own delegation, which this app never changes"
                ),
            ));
        }
        Ok(())
    }

    /// Every check of a write to a provider with these `rules`: those of
    /// [`RecordSpec::check_in_zone`], then the type served, a CNAME at the
    /// apex, proxying and the TTL range.
    pub fn check_for(
        &self,
        parent: &str,
        name_field: &str,
        zone: &Hostname,
        rules: &ProviderRules,
    ) -> Result<(), FieldError> {
        self.check_in_zone(parent, name_field, zone)?;
        if !rules.record_types.contains(&self.rtype) {
            return Err(FieldError::new(
                child(parent, "type"),
                format!("the provider does not serve {} records", self.rtype),
            ));
        }
        if self.rtype == RecordType::Cname && self.name == *zone && !rules.cname_at_apex {
            return Err(FieldError::new(
                child(parent, "type"),
                format!(
                    "the zone apex {zone} cannot be a CNAME with this provider (it cannot flatten one); use an A or AAAA record"
                ),
            ));
        }
        if self.proxied && !rules.proxied {
            return Err(FieldError::new(
                child(parent, "proxied"),
                "the provider cannot proxy records; set proxied to false",
            ));
        }
        rules.check_ttl(&child(parent, "ttl"), self.ttl)
    }

    /// Lowercase hex SHA-256 over a canonical encoding of the defining fields.
    pub fn fingerprint(&self) -> String {
        fingerprint(
            self.rtype.as_str(),
            self.name.as_str(),
            &self.content,
            self.ttl,
            self.proxied,
            self.priority.map(u32::from),
        )
    }
}

/// Lowercase hex SHA-256 over `type \0 name \0 content \0 ttl \0 proxied \0 priority`.
/// Both services and every provider use this one function, so equal records
/// always have equal fingerprints.
pub fn fingerprint(
    rtype: &str,
    name: &str,
    content: &str,
    ttl: u32,
    proxied: bool,
    priority: Option<u32>,
) -> String {
    let mut h = Sha256::new();
    h.update(rtype.as_bytes());
    h.update([0]);
    h.update(name.as_bytes());
    h.update([0]);
    h.update(content.as_bytes());
    h.update([0]);
    h.update(ttl.to_string().as_bytes());
    h.update([0]);
    h.update(if proxied { b"1" } else { b"0" });
    h.update([0]);
    if let Some(p) = priority {
        h.update(p.to_string().as_bytes());
    }
    hex::encode(h.finalize())
}

/// A validated write request: the spec plus the comment to store with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRecordInput {
    /// The record's defining fields.
    pub spec: RecordSpec,
    /// The comment to store at the provider (may be empty: the service's own).
    pub comment: String,
}

fn child(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_string()
    } else {
        format!("{parent}.{field}")
    }
}

/// Validates a [`RecordInput`] found at `field` (e.g. `record`, `changes[2].create`),
/// requiring its name to lie in `zone` (see [`RecordSpec::check_in_zone`]).
/// The provider's own rules are checked apart, with [`RecordSpec::check_for`].
pub fn record_input(
    field: &str,
    input: Option<&RecordInput>,
    zone: &Hostname,
) -> Result<ValidRecordInput, FieldError> {
    let input = input.ok_or_else(|| FieldError::new(field, "is required"))?;
    let spec = RecordSpec::new(
        field,
        &input.r#type,
        &input.name,
        &input.content,
        input.ttl,
        input.proxied,
        input.priority,
    )?;
    spec.check_in_zone(field, "name", zone)?;
    let comment_field = format!("{field}.comment");
    reject_control(&comment_field, &input.comment)?;
    if input.comment.chars().count() > MAX_COMMENT_LEN {
        return Err(FieldError::new(
            comment_field,
            format!("at most {MAX_COMMENT_LEN} characters"),
        ));
    }
    Ok(ValidRecordInput {
        spec,
        comment: input.comment.clone(),
    })
}

/// The shared conservative check of a record id, which every edge runs
/// whatever the provider: 1 to 128 characters of letters, digits, `.`, `_`,
/// `:` and `-`, never `..`. No id that passes can change a URL path or query
/// (`../../zones`, `abc?x=1`) or a log line. cache-service then checks the
/// provider's exact format ([`IdFormat::check`]).
pub fn record_id(field: &str, id: &str) -> Result<String, FieldError> {
    reject_control(field, id)?;
    if id.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if id.len() > MAX_RECORD_ID_LEN {
        return Err(FieldError::new(
            field,
            format!(
                "is {} characters long; at most {MAX_RECORD_ID_LEN} allowed",
                id.len()
            ),
        ));
    }
    if let Some(c) = id.chars().find(|c| !IdCharset::Safe.allows(*c)) {
        return Err(FieldError::new(
            field,
            format!(
                "contains {c:?}; a record id holds only letters, digits, '.', '_', ':' and '-'"
            ),
        ));
    }
    if id.contains("..") {
        return Err(FieldError::new(field, "must not contain \"..\""));
    }
    Ok(id.to_string())
}

/// The characters a provider's record ids are made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdCharset {
    /// `0-9a-f`: Cloudflare's ids and the zone-file provider's derived ids.
    LowerHex,
    /// Letters, digits, `.`, `_`, `:` and `-`: the shared conservative set.
    Safe,
}

impl IdCharset {
    /// Whether `c` may appear in an id of this charset.
    pub fn allows(self, c: char) -> bool {
        match self {
            IdCharset::LowerHex => matches!(c, '0'..='9' | 'a'..='f'),
            IdCharset::Safe => c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            IdCharset::LowerHex => "lowercase hexadecimal digits",
            IdCharset::Safe => "letters, digits, '.', '_', ':' or '-'",
        }
    }
}

/// The exact shape of a provider's record ids, as data (no regular
/// expression), so both services check an id the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdFormat {
    /// The characters of an id.
    pub charset: IdCharset,
    /// Fewest characters.
    pub min_len: u32,
    /// Most characters.
    pub max_len: u32,
}

impl IdFormat {
    /// What any provider's ids satisfy: the check of [`record_id`].
    pub const CONSERVATIVE: IdFormat = IdFormat {
        charset: IdCharset::Safe,
        min_len: 1,
        max_len: 128,
    };

    /// 32 lowercase hex digits (Cloudflare's ids; the zone-file provider's).
    pub const HEX32: IdFormat = IdFormat {
        charset: IdCharset::LowerHex,
        min_len: 32,
        max_len: 32,
    };

    /// Runs [`record_id`], then checks `id` against this format.
    pub fn check(&self, field: &str, id: &str) -> Result<String, FieldError> {
        let id = record_id(field, id)?;
        let len = u32::try_from(id.len()).unwrap_or(u32::MAX);
        let fits = len >= self.min_len
            && len <= self.max_len
            && id.chars().all(|c| self.charset.allows(c));
        if !fits {
            let size = if self.min_len == self.max_len {
                format!("{}", self.min_len)
            } else {
                format!("{} to {}", self.min_len, self.max_len)
            };
            return Err(FieldError::new(
                field,
                format!(
                    "{id:?} is not an id of this provider: its ids are {size} {}",
                    self.charset.describe()
                ),
            ));
        }
        Ok(id)
    }

    /// The format as `GetCacheStatus` reports it.
    pub fn to_proto(&self) -> crate::cache::RecordIdFormat {
        use crate::cache::RecordIdCharset;
        crate::cache::RecordIdFormat {
            charset: match self.charset {
                IdCharset::LowerHex => RecordIdCharset::LowerHex,
                IdCharset::Safe => RecordIdCharset::Safe,
            } as i32,
            min_length: self.min_len,
            max_length: self.max_len,
        }
    }

    /// The format `GetCacheStatus` reported; [`IdFormat::CONSERVATIVE`] when
    /// absent or of a charset this build does not know. Lengths are clamped
    /// to the conservative 1 to 128.
    pub fn from_proto(f: Option<&crate::cache::RecordIdFormat>) -> IdFormat {
        use crate::cache::RecordIdCharset;
        let Some(f) = f else {
            return IdFormat::CONSERVATIVE;
        };
        let charset = match RecordIdCharset::try_from(f.charset) {
            Ok(RecordIdCharset::LowerHex) => IdCharset::LowerHex,
            Ok(RecordIdCharset::Safe) => IdCharset::Safe,
            _ => return IdFormat::CONSERVATIVE,
        };
        let max = f.max_length.clamp(1, 128);
        IdFormat {
            charset,
            min_len: f.min_length.clamp(1, max),
            max_len: max,
        }
    }
}

/// What a provider can hold, as far as validation needs to know: the part of
/// its capabilities that decides whether a write is refused. cache-service
/// builds it from its provider's capabilities; tracking-service from what
/// `GetCacheStatus` reports. Both validate with it, never with a provider's
/// name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRules {
    /// Record types the provider serves.
    pub record_types: Vec<RecordType>,
    /// Whether it can proxy records.
    pub proxied: bool,
    /// Shortest explicit TTL (1, automatic, is always accepted).
    pub min_ttl: u32,
    /// Longest TTL.
    pub max_ttl: u32,
    /// Whether a CNAME may sit at the zone apex.
    pub cname_at_apex: bool,
    /// The shape of its record ids.
    pub id_format: IdFormat,
}

impl ProviderRules {
    /// The rules in a `GetCacheStatus` answer. Types this build does not know
    /// are left out; TTL bounds are kept within [`TTL_MIN`]..=[`TTL_MAX`], the
    /// range every edge accepts anyway.
    pub fn from_proto(c: &crate::cache::Capabilities) -> ProviderRules {
        let max_ttl = c.max_ttl.clamp(TTL_MIN, TTL_MAX);
        ProviderRules {
            record_types: c
                .record_types
                .iter()
                .filter_map(|t| t.parse().ok())
                .collect(),
            proxied: c.proxied,
            min_ttl: c.min_ttl.clamp(TTL_MIN, max_ttl),
            max_ttl,
            cname_at_apex: c.cname_at_apex,
            id_format: IdFormat::from_proto(c.record_id_format.as_ref()),
        }
    }

    /// Refuses a TTL (already through [`parse_ttl`]) outside the provider's
    /// range, naming the range; 1 (automatic) always passes.
    pub fn check_ttl(&self, field: &str, ttl: u32) -> Result<(), FieldError> {
        if ttl == TTL_AUTO || (self.min_ttl..=self.max_ttl).contains(&ttl) {
            return Ok(());
        }
        let side = if ttl < self.min_ttl {
            format!("below the provider's minimum of {}", self.min_ttl)
        } else {
            format!("above the provider's maximum of {}", self.max_ttl)
        };
        Err(FieldError::new(
            field,
            format!(
                "TTL {ttl} is {side}; use 1 (automatic) or {} to {}",
                self.min_ttl, self.max_ttl
            ),
        ))
    }
}

/// Validates a page size: 0 means `default`, otherwise 1 to `max`.
pub fn page_size(field: &str, size: u32, default: u32, max: u32) -> Result<u32, FieldError> {
    match size {
        0 => Ok(default),
        s if s <= max => Ok(s),
        s => Err(FieldError::new(
            field,
            format!("{s} is over the maximum of {max}"),
        )),
    }
}

/// Whether `content`, as a provider reports it for type `rtype`, is the
/// canonical content `canonical` (a provider may quote, case or dot a value
/// differently from the canonical form validation produces).
pub fn same_content(rtype: &str, content: &str, canonical: &str) -> bool {
    if content == canonical {
        return true;
    }
    match rtype.parse::<RecordType>() {
        Ok(t) => parse_content("content", t, content).is_ok_and(|c| c == canonical),
        Err(()) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Hostname {
        Hostname::parse("zone", "example.com").unwrap()
    }

    #[test]
    fn hostnames_are_normalised() {
        let h = Hostname::parse("n", "WWW.Example.COM.").unwrap();
        assert_eq!(h.as_str(), "www.example.com");
        let h = Hostname::parse("n", "bücher.example.com").unwrap();
        assert_eq!(h.as_str(), "xn--bcher-kva.example.com");
        let h = Hostname::parse("n", "*.example.com").unwrap();
        assert_eq!(h.as_str(), "*.example.com");
        let h = Hostname::parse("n", "_dmarc.example.com").unwrap();
        assert!(h.is_in_zone(&zone()));
        assert!(
            !Hostname::parse("n", "badexample.com")
                .unwrap()
                .is_in_zone(&zone())
        );
        assert!(zone().is_in_zone(&zone()));
    }

    #[test]
    fn content_is_canonical() {
        assert_eq!(
            parse_content("c", RecordType::Aaaa, "2001:DB8:0:0::1").unwrap(),
            "2001:db8::1"
        );
        assert_eq!(
            parse_content("c", RecordType::Cname, "Target.Example.com.").unwrap(),
            "target.example.com"
        );
        assert_eq!(
            parse_content("c", RecordType::Srv, "5  443 sip.example.com.").unwrap(),
            "5 443 sip.example.com"
        );
        assert_eq!(
            parse_content("c", RecordType::Caa, "0 ISSUE \"letsencrypt.org\"").unwrap(),
            "0 issue \"letsencrypt.org\""
        );
    }

    #[test]
    fn fingerprints_differ_by_every_field() {
        let base =
            RecordSpec::new("", "A", "a.example.com", "192.0.2.1", 300, false, None).unwrap();
        let fp = base.fingerprint();
        assert_eq!(fp.len(), 64);
        assert!(
            fp.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        let mut other = base.clone();
        other.ttl = 301;
        assert_ne!(other.fingerprint(), fp);
        let mut other = base.clone();
        other.proxied = true;
        assert_ne!(other.fingerprint(), fp);
        let mut other = base.clone();
        other.content = "192.0.2.2".into();
        assert_ne!(other.fingerprint(), fp);
    }

    /// At least 40 bad inputs, each refused with a message naming its field.
    #[test]
    fn bad_inputs_name_their_field() {
        let long_label = format!("{}.example.com", "a".repeat(64));
        let long_name = format!("{}example.com", "abcdefghi.".repeat(25));
        let long_txt = "x".repeat(MAX_TXT_LEN + 1);
        let long_comment = "c".repeat(MAX_COMMENT_LEN + 1);
        // (type, name, content, ttl, proxied, priority, comment, field named)
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a str,
            u32,
            bool,
            Option<u32>,
            &'a str,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (
                "",
                "a.example.com",
                "192.0.2.1",
                300,
                false,
                None,
                "",
                "record.type",
            ),
            (
                "PTR",
                "a.example.com",
                "x.example.com",
                300,
                false,
                None,
                "",
                "record.type",
            ),
            (
                "A\n",
                "a.example.com",
                "192.0.2.1",
                300,
                false,
                None,
                "",
                "record.type",
            ),
            ("A", "", "192.0.2.1", 300, false, None, "", "record.name"),
            ("A", ".", "192.0.2.1", 300, false, None, "", "record.name"),
            (
                "A",
                "a..example.com",
                "192.0.2.1",
                300,
                false,
                None,
                "",
                "record.name",
            ),
            (
                "A",
                &long_label,
                "192.0.2.1",
                300,
                false,
                None,
                "",
                "record.name",
            ),
            (
                "A",
                &long_name,
                "192.0.2.1",
                300,
                false,
                None,
                "",
                "record.name",
            ),
            (
                "A",
                "a b.example.com",
                "192.0.2.1",
                300,
                false,
                None,
                "",
                "record.name",
            ),
            (
                "A",
                "a\n.example.com",
                "192.0.2.1",
                300,
                false,
                None,
                "",
                "record.name",
            ),
            (
                "A",
                "a\r.example.com",
                "192.0.2.1",
                300,
                false,
                None,
                "",
                "record.name",
            ),
            (
                "A",
                "a\u{0}.example.com",
                "192.0.2.1",
                300,
                false,
                None,
                "",
                "record.name",
            ),
            (
                "A",
                "a!.example.com",
                "192.0.2.1",
                300,
                false,
                None,
                "",
                "record.name",
            ),
            (
                "A",
                "-a.example.com",
                "192.0.2.1",
                300,
                false,
                None,
                "",
                "record.name",
            ),
            (
                "A",
                "a-.example.com",
                "192.0.2.1",
                300,
                false,
                None,
                "",
                "record.name",
            ),
            (
                "A",
                "a.*.example.com",
                "192.0.2.1",
                300,
                false,
                None,
                "",
                "record.name",
            ),
            (
                "A",
                "a.example.org",
                "192.0.2.1",
                300,
                false,
                None,
                "",
                "record.name",
            ),
            (
                "A",
                "notexample.com",
                "192.0.2.1",
                300,
                false,
                None,
                "",
                "record.name",
            ),
            (
                "A",
                "a.example.com",
                "",
                300,
                false,
                None,
                "",
                "record.content",
            ),
            (
                "A",
                "a.example.com",
                "300.1.1.1",
                300,
                false,
                None,
                "",
                "record.content",
            ),
            (
                "A",
                "a.example.com",
                "2001:db8::1",
                300,
                false,
                None,
                "",
                "record.content",
            ),
            (
                "A",
                "a.example.com",
                "192.0.2.1\n",
                300,
                false,
                None,
                "",
                "record.content",
            ),
            (
                "AAAA",
                "a.example.com",
                "192.0.2.1",
                300,
                false,
                None,
                "",
                "record.content",
            ),
            (
                "AAAA",
                "a.example.com",
                "2001:db8::zz",
                300,
                false,
                None,
                "",
                "record.content",
            ),
            (
                "CNAME",
                "a.example.com",
                "not a host",
                300,
                false,
                None,
                "",
                "record.content",
            ),
            (
                "CNAME",
                "a.example.com",
                "*.example.com",
                300,
                false,
                None,
                "",
                "record.content",
            ),
            (
                "CNAME",
                "a.example.com",
                "192.0.2.1/24",
                300,
                false,
                None,
                "",
                "record.content",
            ),
            (
                "NS",
                "a.example.com",
                "ns_1!.example.com",
                300,
                false,
                None,
                "",
                "record.content",
            ),
            (
                "TXT",
                "a.example.com",
                "line1\nline2",
                300,
                false,
                None,
                "",
                "record.content",
            ),
            (
                "TXT",
                "a.example.com",
                "tab\there",
                300,
                false,
                None,
                "",
                "record.content",
            ),
            (
                "TXT",
                "a.example.com",
                "bell\u{7}",
                300,
                false,
                None,
                "",
                "record.content",
            ),
            (
                "TXT",
                "a.example.com",
                "del\u{7f}",
                300,
                false,
                None,
                "",
                "record.content",
            ),
            (
                "TXT",
                "a.example.com",
                &long_txt,
                300,
                false,
                None,
                "",
                "record.content",
            ),
            (
                "SRV",
                "_sip._tcp.example.com",
                "5 sip.example.com",
                300,
                false,
                Some(10),
                "",
                "record.content",
            ),
            (
                "SRV",
                "_sip._tcp.example.com",
                "5 70000 sip.example.com",
                300,
                false,
                Some(10),
                "",
                "record.content",
            ),
            (
                "CAA",
                "example.com",
                "0 issue",
                300,
                false,
                None,
                "",
                "record.content",
            ),
            (
                "CAA",
                "example.com",
                "256 issue \"ca.example\"",
                300,
                false,
                None,
                "",
                "record.content",
            ),
            (
                "CAA",
                "example.com",
                "0 is-sue \"ca.example\"",
                300,
                false,
                None,
                "",
                "record.content",
            ),
            (
                "A",
                "a.example.com",
                "192.0.2.1",
                2,
                false,
                None,
                "",
                "record.ttl",
            ),
            (
                "A",
                "a.example.com",
                "192.0.2.1",
                29,
                false,
                None,
                "",
                "record.ttl",
            ),
            (
                "A",
                "a.example.com",
                "192.0.2.1",
                86_401,
                false,
                None,
                "",
                "record.ttl",
            ),
            (
                "TXT",
                "a.example.com",
                "v=spf1 -all",
                300,
                true,
                None,
                "",
                "record.proxied",
            ),
            (
                "MX",
                "example.com",
                "mail.example.com",
                300,
                false,
                None,
                "",
                "record.priority",
            ),
            (
                "MX",
                "example.com",
                "mail.example.com",
                300,
                false,
                Some(70_000),
                "",
                "record.priority",
            ),
            (
                "A",
                "a.example.com",
                "192.0.2.1",
                300,
                false,
                Some(10),
                "",
                "record.priority",
            ),
            (
                "SRV",
                "_sip._tcp.example.com",
                "5 5060 sip.example.com",
                300,
                false,
                None,
                "",
                "record.priority",
            ),
            (
                "A",
                "a.example.com",
                "192.0.2.1",
                300,
                false,
                None,
                "bad\ncomment",
                "record.comment",
            ),
            (
                "A",
                "a.example.com",
                "192.0.2.1",
                300,
                false,
                None,
                &long_comment,
                "record.comment",
            ),
        ];
        assert!(cases.len() >= 40);
        for (rtype, name, content, ttl, proxied, priority, comment, field) in cases {
            let input = RecordInput {
                r#type: rtype.into(),
                name: name.into(),
                content: content.into(),
                ttl,
                proxied,
                priority,
                comment: comment.into(),
            };
            let err = record_input("record", Some(&input), &zone())
                .expect_err(&format!("accepted {rtype} {name:?} {content:?} {ttl}"));
            assert_eq!(err.field, field, "wrong field for {input:?}: {err}");
            let status = tonic::Status::from(err);
            assert_eq!(status.code(), tonic::Code::InvalidArgument);
            assert!(status.message().starts_with(field), "{}", status.message());
        }
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

    fn refused(i: &RecordInput) -> FieldError {
        record_input("record", Some(i), &zone()).expect_err(&format!("accepted {i:?}"))
    }

    #[test]
    fn a_labels_must_be_valid_punycode() {
        for bad in [
            "xn--a.example.com",
            "www.xn--a.example.com",
            "XN--A.example.com",
            "xn--abc.example.com",
            "xn--0.example.com",
        ] {
            let e = Hostname::parse("record.name", bad).expect_err(bad);
            assert_eq!(e.field, "record.name");
            assert!(e.message.contains("punycode"), "{bad}: {e}");
        }
        // Ending in '-' is refused by the hyphen rule before punycode is tried.
        assert!(Hostname::parse("n", "xn--.example.com").is_err());
        for good in [
            "xn--bcher-kva.example.com",
            "XN--BCHER-KVA.example.com",
            "xn--ls8h.example.com",
        ] {
            Hostname::parse("n", good).expect(good);
        }
        // A target name is checked the same way.
        let e = refused(&input("CNAME", "a.example.com", "xn--a.example.net", None));
        assert_eq!(e.field, "record.content");
    }

    #[test]
    fn targets_must_be_names_not_addresses() {
        for (rtype, content, prio) in [
            ("CNAME", "192.0.2.1", None),
            ("CNAME", "192.0.2.1.", None),
            ("CNAME", "2001:db8::1", None),
            ("MX", "192.0.2.1", Some(10)),
            ("MX", "2001:db8::1", Some(10)),
            ("NS", "192.0.2.53", None),
            ("SRV", "5 5060 192.0.2.1", Some(10)),
        ] {
            let e = refused(&input(rtype, "a.example.com", content, prio));
            assert_eq!(e.field, "record.content", "{rtype} {content}");
            assert!(e.message.contains("IP address"), "{e}");
        }
    }

    #[test]
    fn a_cname_never_points_to_itself() {
        for content in ["a.example.com", "A.Example.com."] {
            let e = refused(&input("CNAME", "a.example.com", content, None));
            assert_eq!(e.field, "record.content");
            assert!(e.message.contains("itself"), "{e}");
        }
    }

    #[test]
    fn the_null_mx_needs_priority_zero() {
        let ok = record_input(
            "record",
            Some(&input("MX", "example.com", ".", Some(0))),
            &zone(),
        )
        .unwrap();
        assert_eq!(ok.spec.content, ".");
        assert_eq!(ok.spec.priority, Some(0));
        for prio in [Some(10), None] {
            let e = refused(&input("MX", "example.com", ".", prio));
            assert_eq!(e.field, "record.priority", "{prio:?}");
        }
        // "." is only the null MX: a CNAME or NS to the root stays refused.
        assert_eq!(
            refused(&input("CNAME", "a.example.com", ".", None)).field,
            "record.content"
        );
        assert_eq!(
            refused(&input("NS", "sub.example.com", ".", None)).field,
            "record.content"
        );
    }

    #[test]
    fn ns_at_the_apex_is_refused_below_it_accepted() {
        let e = refused(&input("NS", "example.com", "ns1.example.net", None));
        assert_eq!(e.field, "record.type");
        assert!(e.message.contains("delegation"), "{e}");
        record_input(
            "record",
            Some(&input("NS", "sub.example.com", "ns1.example.net", None)),
            &zone(),
        )
        .unwrap();
    }

    #[test]
    fn record_ids_are_checked_conservatively_then_exactly() {
        for bad in [
            "",
            "../../zones",
            "abc?x=1",
            "a/b",
            "a..b",
            "a b",
            "a%2Fb",
            "a#b",
            "a\nb",
            "caf\u{e9}",
        ] {
            let e = record_id("record_id", bad).expect_err(bad);
            assert_eq!(e.field, "record_id");
        }
        assert!(record_id("record_id", &"a".repeat(129)).is_err());
        record_id("record_id", &"a".repeat(128)).unwrap();
        record_id("record_id", "Rec-1:2_3.x").unwrap();

        let hex = "0123456789abcdef0123456789abcdef";
        assert_eq!(IdFormat::HEX32.check("record_id", hex).unwrap(), hex);
        for bad in [
            "0123456789ABCDEF0123456789ABCDEF",
            "0123456789abcdef0123456789abcde",
            "0123456789abcdef0123456789abcdef0",
            "0123456789abcdef0123456789abcdeg",
            "missing",
            "../../zones",
        ] {
            let e = IdFormat::HEX32
                .check("changes[1].delete.record_id", bad)
                .expect_err(bad);
            assert_eq!(e.field, "changes[1].delete.record_id");
        }
        let e = IdFormat::HEX32.check("record_id", "missing").unwrap_err();
        assert!(e.message.contains("32 lowercase hexadecimal"), "{e}");
        // A format reported over the wire comes back the same; an unknown or
        // missing one is the conservative check.
        assert_eq!(
            IdFormat::from_proto(Some(&IdFormat::HEX32.to_proto())),
            IdFormat::HEX32
        );
        assert_eq!(IdFormat::from_proto(None), IdFormat::CONSERVATIVE);
        let unknown = crate::cache::RecordIdFormat {
            charset: 99,
            min_length: 5,
            max_length: 5,
        };
        assert_eq!(IdFormat::from_proto(Some(&unknown)), IdFormat::CONSERVATIVE);
    }

    fn rules() -> ProviderRules {
        ProviderRules {
            record_types: RecordType::ALL.to_vec(),
            proxied: false,
            min_ttl: 60,
            max_ttl: 86_400,
            cname_at_apex: false,
            id_format: IdFormat::HEX32,
        }
    }

    fn check(i: &RecordInput, rules: &ProviderRules) -> Result<(), FieldError> {
        let v = record_input("record", Some(i), &zone())?;
        v.spec.check_for("record", "name", &zone(), rules)
    }

    #[test]
    fn provider_rules_decide_by_data() {
        let r = rules();
        let mut i = input("A", "a.example.com", "192.0.2.1", None);
        for (ttl, ok) in [
            (1, true),
            (0, true),
            (59, false),
            (30, false),
            (60, true),
            (86_400, true),
        ] {
            i.ttl = ttl;
            let got = check(&i, &r);
            assert_eq!(got.is_ok(), ok, "ttl {ttl}: {got:?}");
            if let Err(e) = got {
                assert_eq!(e.field, "record.ttl");
                assert!(e.message.contains("minimum of 60"), "{e}");
            }
        }
        let mut short = r.clone();
        short.max_ttl = 3600;
        i.ttl = 7200;
        let e = check(&i, &short).unwrap_err();
        assert!(e.message.contains("maximum of 3600"), "{e}");

        i.ttl = 300;
        i.proxied = true;
        assert_eq!(check(&i, &r).unwrap_err().field, "record.proxied");
        let mut proxying = r.clone();
        proxying.proxied = true;
        check(&i, &proxying).unwrap();

        let apex = input("CNAME", "example.com", "target.example.net", None);
        let e = check(&apex, &r).unwrap_err();
        assert_eq!(e.field, "record.type");
        assert!(e.message.contains("apex"), "{e}");
        let mut flattening = r.clone();
        flattening.cname_at_apex = true;
        check(&apex, &flattening).unwrap();
        // NS at the apex is refused whatever the provider says.
        let ns = input("NS", "example.com", "ns1.example.net", None);
        assert_eq!(check(&ns, &flattening).unwrap_err().field, "record.type");

        let mut few = r.clone();
        few.record_types = vec![RecordType::A];
        let txt = input("TXT", "a.example.com", "hello", None);
        let e = check(&txt, &few).unwrap_err();
        assert_eq!(e.field, "record.type");
        assert!(e.message.contains("TXT"), "{e}");
    }

    #[test]
    fn provider_rules_read_from_the_wire() {
        let c = crate::cache::Capabilities {
            record_types: vec!["A".into(), "TXT".into(), "HTTPS".into()],
            proxied: true,
            min_ttl: 5,
            max_ttl: 1_000_000,
            cname_at_apex: true,
            batch_size: 200,
            comments: true,
            record_id_format: Some(IdFormat::HEX32.to_proto()),
        };
        let r = ProviderRules::from_proto(&c);
        assert_eq!(r.record_types, vec![RecordType::A, RecordType::Txt]);
        assert!(r.proxied && r.cname_at_apex);
        assert_eq!(
            (r.min_ttl, r.max_ttl),
            (TTL_MIN, TTL_MAX),
            "clamped to the contract"
        );
        assert_eq!(r.id_format, IdFormat::HEX32);
    }

    #[test]
    fn good_inputs_pass() {
        for (rtype, name, content, prio) in [
            ("a", "a.example.com", "192.0.2.1", None),
            ("AAAA", "a.example.com", "2001:db8::1", None),
            ("CNAME", "*.example.com", "example.com", None),
            (
                "TXT",
                "_acme-challenge.example.com",
                "token with spaces",
                None,
            ),
            ("MX", "example.com", "mail.example.com", Some(10)),
            (
                "SRV",
                "_sip._tcp.example.com",
                "5 5060 sip.example.com",
                Some(10),
            ),
            ("CAA", "example.com", "0 issue \"letsencrypt.org\"", None),
            ("NS", "sub.example.com", "ns1.example.net", None),
        ] {
            let input = RecordInput {
                r#type: rtype.into(),
                name: name.into(),
                content: content.into(),
                ttl: 300,
                priority: prio,
                ..Default::default()
            };
            record_input("record", Some(&input), &zone()).unwrap();
        }
    }
}
