//! Validation at the gRPC edge: wire strings become domain types that cannot
//! hold an invalid value.
//!
//! Every check returns a [`FieldError`] naming the field that was wrong, which
//! becomes `INVALID_ARGUMENT` at the edge. Nothing that carries a line break or
//! another control byte gets past this module: such values would corrupt a zone
//! file, a log line or a provider request.
//!
//! This file holds the error type, the record-level checks and the limits;
//! names, contents and provider rules live in `validate/`, re-exported here so
//! `trafego_proto::validate::X` is the one path both services use.

mod content;
mod name;
mod rules;

use sha2::{Digest, Sha256};

use crate::cache::RecordInput;

pub use content::{RecordType, check_null_mx, parse_content, parse_priority, same_content};
pub use name::Hostname;
pub use rules::{IdCharset, IdFormat, ProviderRules, parse_ttl, record_id};

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

#[cfg(test)]
mod tests;
