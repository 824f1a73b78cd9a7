//! Validation at the gRPC edge: wire strings become domain types that cannot
//! hold an invalid value.
//!
//! Every check returns a [`FieldError`] naming the field that was wrong, which
//! becomes `INVALID_ARGUMENT` at the edge. Nothing that carries a line break or
//! another control byte gets past this module: such values would corrupt a zone
//! file, a log line or a provider request.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
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
        RecordType::Cname | RecordType::Ns | RecordType::Mx => {
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
        Ok(RecordSpec {
            rtype,
            name,
            content,
            ttl,
            proxied,
            priority,
        })
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

/// Validates a [`RecordInput`] found at `field` (e.g. `record`, `changes[2].create`),
/// requiring its name to lie in `zone`.
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
    spec.name.require_in_zone(&format!("{field}.name"), zone)?;
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

/// Validates a provider record id: non-empty, at most 128 printable ASCII
/// characters without spaces.
pub fn record_id(field: &str, id: &str) -> Result<String, FieldError> {
    reject_control(field, id)?;
    if id.is_empty() {
        return Err(FieldError::new(field, "is required"));
    }
    if id.len() > 128 || !id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(FieldError::new(
            field,
            "must be at most 128 printable ASCII characters without spaces",
        ));
    }
    Ok(id.to_string())
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
