//! Route53's wire format (REST/XML, API version 2013-04-01): the XML
//! documents the provider reads and writes, names in Route53's escaped form,
//! and record values turned into the project's canonical content and back
//! (its error answers are read in `errors.rs`). Pure functions only: no I/O,
//! no credentials.

use serde::{Deserialize, Serialize};
use trafego_proto::validate::{RecordSpec, RecordType, parse_content};

use super::super::ProviderError;
use super::super::http::sanitize;
use super::super::rdata::MAX_CHARACTER_STRING;

/// The XML namespace of every Route53 document.
pub const NAMESPACE: &str = "https://route53.amazonaws.com/doc/2013-04-01/";

/// The media type Route53 speaks.
pub const XML: &str = "text/xml";

// ---------------------------------------------------------------------------
// Names

/// A Route53 name (`\052.Example.com.`) in the project's form: octal escapes
/// decoded, lowercase, no trailing dot (`*.example.com`).
pub fn name_of(wire: &str) -> String {
    let bytes = unescape(wire.trim());
    let s = String::from_utf8_lossy(&bytes).to_ascii_lowercase();
    s.strip_suffix('.').unwrap_or(&s).to_string()
}

/// A name as Route53 writes it: fully qualified, with bytes other than
/// a-z, 0-9, `-`, `_` and `.` as `\ooo` (`*` is `\052`).
pub fn wire_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    for b in name.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\{b:03o}"));
        }
    }
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// Decodes `\ooo` octal escapes (Route53's form) and `\c` (the character
/// itself) into bytes.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let v = (u32::from(d[0] - b'0') << 6)
                    | (u32::from(d[1] - b'0') << 3)
                    | u32::from(d[2] - b'0');
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            None => {
                if let Some(&c) = b.get(i + 1) {
                    out.push(c);
                }
                i += 2;
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Values and content

/// The canonical content and priority of one Route53 value of type `rtype`
/// (`10 mail.example.net.` is priority 10, content `mail.example.net`; a TXT
/// value's quoted strings are joined). A value that does not parse for its
/// type, and types the project does not manage, keep the value as Route53
/// gave it.
pub fn content_of(rtype: &str, value: &str) -> (String, Option<u32>) {
    let value = value.trim();
    let Ok(t) = rtype.parse::<RecordType>() else {
        return match rtype {
            "SPF" => (txt_text(value), None),
            _ => (value.to_string(), None),
        };
    };
    let canonical = |t: RecordType, c: &str| parse_content("content", t, c).ok();
    match t {
        RecordType::Txt => (txt_text(value), None),
        RecordType::Mx => {
            let mut it = value.split_ascii_whitespace();
            if let (Some(p), Some(target), None) = (it.next(), it.next(), it.next())
                && let Ok(p) = p.parse::<u16>()
                && let Some(c) = canonical(t, target)
            {
                return (c, Some(u32::from(p)));
            }
            (value.to_string(), None)
        }
        RecordType::Srv => {
            if let Some((p, rest)) = value.split_once(' ')
                && let Ok(p) = p.trim().parse::<u16>()
                && let Some(c) = canonical(t, rest.trim())
            {
                return (c, Some(u32::from(p)));
            }
            (value.to_string(), None)
        }
        _ => (
            canonical(t, value).unwrap_or_else(|| value.to_string()),
            None,
        ),
    }
}

/// The Route53 value of a record: names fully qualified, the priority of MX
/// and SRV in front, TXT as quoted strings of at most 255 bytes.
pub fn value_of(spec: &RecordSpec) -> String {
    let c = spec.content.as_str();
    let fq = |n: &str| {
        if n.ends_with('.') {
            n.to_string()
        } else {
            format!("{n}.")
        }
    };
    let prio = spec.priority.unwrap_or(0);
    match spec.rtype {
        RecordType::A | RecordType::Aaaa | RecordType::Caa => c.to_string(),
        RecordType::Cname | RecordType::Ns => fq(c),
        RecordType::Mx => format!("{prio} {}", fq(c)),
        RecordType::Srv => match c.rsplit_once(' ') {
            Some((weight_port, target)) => format!("{prio} {weight_port} {}", fq(target)),
            None => format!("{prio} {c}"),
        },
        RecordType::Txt => txt_value(c),
    }
}

/// TXT text as Route53 takes it: `"…"` strings of at most 255 bytes each,
/// `"` and `\` escaped, bytes outside printable ASCII as `\ooo`.
pub fn txt_value(text: &str) -> String {
    let bytes = text.as_bytes();
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[][..]]
    } else {
        bytes.chunks(MAX_CHARACTER_STRING).collect()
    };
    let mut out = String::with_capacity(bytes.len() + 2 * chunks.len() + 8);
    for (i, chunk) in chunks.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push('"');
        for &b in *chunk {
            match b {
                b'"' => out.push_str("\\\""),
                b'\\' => out.push_str("\\\\"),
                0x20..=0x7e => out.push(char::from(b)),
                _ => out.push_str(&format!("\\{b:03o}")),
            }
        }
        out.push('"');
    }
    out
}

/// The text of a TXT value: its character-strings (quoted or bare words),
/// unescaped and joined.
pub fn txt_text(value: &str) -> String {
    let b = value.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' || b[i] == b'\t' {
            i += 1;
            continue;
        }
        let quoted = b[i] == b'"';
        if quoted {
            i += 1;
        }
        let start = i;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' if quoted => break,
                b' ' | b'\t' if !quoted => break,
                _ => i += 1,
            }
        }
        let end = i.min(b.len());
        out.extend(unescape(&value[start..end]));
        if quoted && i < b.len() {
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---------------------------------------------------------------------------
// Documents read

/// `ListResourceRecordSetsResponse`.
#[derive(Debug, Deserialize)]
pub struct ListResponse {
    /// This page's record sets.
    #[serde(rename = "ResourceRecordSets", default)]
    pub sets: SetsXml,
    /// Whether more pages follow.
    #[serde(rename = "IsTruncated", default)]
    pub truncated: bool,
    /// Where the next page starts: its name…
    #[serde(rename = "NextRecordName")]
    pub next_name: Option<String>,
    /// …its type…
    #[serde(rename = "NextRecordType")]
    pub next_type: Option<String>,
    /// …and its set identifier, for routing-policy record sets.
    #[serde(rename = "NextRecordIdentifier")]
    pub next_identifier: Option<String>,
}

/// `<ResourceRecordSets>`.
#[derive(Debug, Default, Deserialize)]
pub struct SetsXml {
    /// The record sets.
    #[serde(rename = "ResourceRecordSet", default)]
    pub sets: Vec<SetXml>,
}

/// One `<ResourceRecordSet>` as listed.
#[derive(Debug, Deserialize)]
pub struct SetXml {
    /// Its name, escaped, with the trailing dot.
    #[serde(rename = "Name")]
    pub name: String,
    /// Its type.
    #[serde(rename = "Type")]
    pub rtype: String,
    /// Set for weighted, latency, failover, geolocation… record sets.
    #[serde(rename = "SetIdentifier")]
    pub set_identifier: Option<String>,
    /// Absent for an alias.
    #[serde(rename = "TTL")]
    pub ttl: Option<u32>,
    /// The values (absent for an alias).
    #[serde(rename = "ResourceRecords")]
    pub records: Option<RecordsXml>,
    /// Set for an alias record set.
    #[serde(rename = "AliasTarget")]
    pub alias: Option<AliasXml>,
    /// Set for a record set a traffic policy made.
    #[serde(rename = "TrafficPolicyInstanceId")]
    pub traffic_policy: Option<String>,
}

/// `<ResourceRecords>`.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RecordsXml {
    /// The values.
    #[serde(rename = "ResourceRecord", default)]
    pub records: Vec<ValueXml>,
}

/// `<ResourceRecord><Value>`.
#[derive(Debug, Deserialize, Serialize)]
pub struct ValueXml {
    /// One value in Route53's presentation form.
    #[serde(rename = "Value")]
    pub value: String,
}

/// `<AliasTarget>`.
#[derive(Debug, Deserialize)]
pub struct AliasXml {
    /// The target's hosted zone.
    #[serde(rename = "HostedZoneId", default)]
    pub hosted_zone_id: String,
    /// The target's name.
    #[serde(rename = "DNSName", default)]
    pub dns_name: String,
}

/// `ListHostedZonesByNameResponse`.
#[derive(Debug, Deserialize)]
pub struct ZonesResponse {
    /// The zones at or after the name asked for.
    #[serde(rename = "HostedZones", default)]
    pub zones: ZonesXml,
}

/// `<HostedZones>`.
#[derive(Debug, Default, Deserialize)]
pub struct ZonesXml {
    /// The zones.
    #[serde(rename = "HostedZone", default)]
    pub zones: Vec<ZoneXml>,
}

/// `<HostedZone>`.
#[derive(Debug, Deserialize)]
pub struct ZoneXml {
    /// `/hostedzone/Z…`.
    #[serde(rename = "Id")]
    pub id: String,
    /// Its name, escaped, with the trailing dot.
    #[serde(rename = "Name")]
    pub name: String,
    /// `<Config>`: whether the zone is private (a VPC's), to tell same-named zones apart.
    #[serde(rename = "Config", default)]
    pub config: Option<ZoneConfigXml>,
}

/// `<HostedZone><Config>`.
#[derive(Debug, Default, Deserialize)]
pub struct ZoneConfigXml {
    /// `true` for a private hosted zone.
    #[serde(rename = "PrivateZone", default)]
    pub private_zone: bool,
}

/// `ChangeResourceRecordSetsResponse`: only its presence matters (the change
/// is durable once accepted; `PENDING` becomes `INSYNC` by itself).
#[derive(Debug, Deserialize)]
pub struct ChangeResponse {
    /// The change's id and status.
    #[serde(rename = "ChangeInfo")]
    pub info: ChangeInfoXml,
}

/// `<ChangeInfo>`.
#[derive(Debug, Deserialize)]
pub struct ChangeInfoXml {
    /// `/change/C…`.
    #[serde(rename = "Id")]
    pub id: String,
}

/// Parses an XML answer.
pub fn parse<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &str) -> Result<T, ProviderError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ProviderError::Other(format!("{what}: the answer is not UTF-8")))?;
    quick_xml::de::from_str(text)
        .map_err(|e| ProviderError::Other(sanitize(&format!("{what}: unreadable answer: {e}"), "")))
}

// ---------------------------------------------------------------------------
// Documents written

/// `ChangeResourceRecordSetsRequest`.
#[derive(Debug, Serialize)]
pub struct ChangeRequest {
    #[serde(rename = "@xmlns")]
    xmlns: &'static str,
    #[serde(rename = "ChangeBatch")]
    batch: BatchOut,
}

#[derive(Debug, Serialize)]
struct BatchOut {
    #[serde(rename = "Comment")]
    comment: &'static str,
    #[serde(rename = "Changes")]
    changes: ChangesOut,
}

#[derive(Debug, Serialize)]
struct ChangesOut {
    #[serde(rename = "Change")]
    change: Vec<ChangeOut>,
}

#[derive(Debug, Serialize)]
struct ChangeOut {
    #[serde(rename = "Action")]
    action: &'static str,
    #[serde(rename = "ResourceRecordSet")]
    set: SetOut,
}

#[derive(Debug, Serialize)]
struct SetOut {
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Type")]
    rtype: String,
    #[serde(rename = "TTL")]
    ttl: u32,
    #[serde(rename = "ResourceRecords")]
    records: RecordsXml,
}

/// What one change does to a record set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Creates a record set that must not exist.
    Create,
    /// Deletes a record set that must hold exactly these values and TTL.
    Delete,
}

/// One change of a batch, before it is written as XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// CREATE or DELETE (never UPSERT).
    pub action: Action,
    /// Name in the project's form.
    pub name: String,
    /// Record type.
    pub rtype: String,
    /// The record set's TTL.
    pub ttl: u32,
    /// Its values in Route53's form.
    pub values: Vec<String>,
}

impl Change {
    /// `ResourceRecord` elements it counts for toward Route53's limit of 1,000 a batch.
    pub fn records(&self) -> usize {
        self.values.len()
    }

    /// `Value` characters it counts for toward Route53's limit of 32,000 a batch.
    pub fn chars(&self) -> usize {
        self.values.iter().map(String::len).sum()
    }
}

/// The XML body of a batch.
pub fn change_body(changes: &[&Change], comment: &'static str) -> Result<Vec<u8>, ProviderError> {
    let req = ChangeRequest {
        xmlns: NAMESPACE,
        batch: BatchOut {
            comment,
            changes: ChangesOut {
                change: changes
                    .iter()
                    .map(|c| ChangeOut {
                        action: match c.action {
                            Action::Create => "CREATE",
                            Action::Delete => "DELETE",
                        },
                        set: SetOut {
                            name: wire_name(&c.name),
                            rtype: c.rtype.clone(),
                            ttl: c.ttl,
                            records: RecordsXml {
                                records: c
                                    .values
                                    .iter()
                                    .map(|v| ValueXml { value: v.clone() })
                                    .collect(),
                            },
                        },
                    })
                    .collect(),
            },
        },
    };
    let xml = quick_xml::se::to_string_with_root("ChangeResourceRecordSetsRequest", &req)
        .map_err(|e| ProviderError::Other(format!("cannot encode the change batch: {e}")))?;
    Ok(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{xml}").into_bytes())
}
