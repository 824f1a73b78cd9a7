//! PowerDNS's wire format: the JSON of a zone and of a `PATCH`, the content
//! forms its API speaks, and its error answers.
//!
//! Content crosses here in both directions and must round-trip exactly: what
//! the project calls canonical (`parse_content`'s forms, as the zone file
//! provider stores them: names lowercase without the dot, TXT as its raw text,
//! the MX and SRV priority in its own field) becomes PowerDNS's presentation
//! form (absolute names with the dot, TXT quoted and split into strings of at
//! most 255 bytes, the priority first in the content), and back. This module
//! must never put the API key in an error: every text PowerDNS sends back
//! goes through [`sanitize`].

use serde::{Deserialize, Serialize};
use trafego_proto::validate::{RecordType, parse_content};

use super::super::ProviderError;
use super::super::http::sanitize;
use super::super::rdata::character_strings;

/// A zone as `GET /servers/{server}/zones/{zone}.` answers it: only its RRsets.
#[derive(Debug, Default, Deserialize)]
pub struct WireZone {
    /// Every RRset of the zone (or those the `rrset_name` filter kept).
    #[serde(default)]
    pub rrsets: Vec<WireRRset>,
}

/// One RRset as PowerDNS reports it.
#[derive(Debug, Deserialize)]
pub struct WireRRset {
    /// Absolute name with the trailing dot, in the case it was written.
    pub name: String,
    /// Record type, uppercase.
    #[serde(rename = "type")]
    pub rtype: String,
    /// The RRset's TTL (one for all its records).
    #[serde(default)]
    pub ttl: u32,
    /// Its records; empty for the comment-only entries 4.7 reports.
    #[serde(default)]
    pub records: Vec<WireRecord>,
    /// Comments, which PowerDNS keeps per RRset, not per record.
    #[serde(default)]
    pub comments: Vec<WireComment>,
}

/// One record of an RRset, as read or written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRecord {
    /// Presentation-form content.
    pub content: String,
    /// A disabled record is kept but not served.
    #[serde(default)]
    pub disabled: bool,
}

/// A comment of an RRset.
#[derive(Debug, Deserialize)]
pub struct WireComment {
    /// Its text.
    #[serde(default)]
    pub content: String,
}

/// The body of a `PATCH` of the zone.
#[derive(Debug, Serialize)]
pub struct Patch<'a> {
    /// The RRsets replaced or deleted, each at most once.
    pub rrsets: Vec<PatchRRset<'a>>,
}

/// One RRset of a `PATCH`: a whole-RRset `REPLACE` or a `DELETE` (Debian's
/// 4.7 knows no other changetype). `comments` is left out, so PowerDNS keeps
/// the RRset's comments as they are.
#[derive(Debug, Serialize)]
pub struct PatchRRset<'a> {
    /// Absolute name with the trailing dot.
    pub name: String,
    /// Record type.
    #[serde(rename = "type")]
    pub rtype: &'a str,
    /// `REPLACE` or `DELETE`.
    pub changetype: &'static str,
    /// The RRset's TTL (absent for a `DELETE`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// Every record the RRset holds afterwards (empty for a `DELETE`).
    pub records: Vec<WireRecord>,
}

/// A name as the API writes it: absolute, with the trailing dot.
pub fn wire_name(name: &str) -> String {
    if name == "." || name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

/// A name as the project writes it: lowercase, no trailing dot (`.` for the root).
pub fn canonical_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    match lower.strip_suffix('.') {
        Some("") | None => lower,
        Some(bare) => bare.to_string(),
    }
}

/// Canonical content (and the priority of MX and SRV) in PowerDNS's
/// presentation form.
pub fn to_wire(rtype: RecordType, content: &str, priority: Option<u16>) -> String {
    let prio = priority.unwrap_or(0);
    match rtype {
        RecordType::A | RecordType::Aaaa | RecordType::Caa => content.to_string(),
        RecordType::Cname | RecordType::Ns => wire_name(content),
        RecordType::Mx => format!("{prio} {}", wire_name(content)),
        RecordType::Srv => match content.rsplit_once(' ') {
            Some((weight_port, target)) => format!("{prio} {weight_port} {}", wire_name(target)),
            None => format!("{prio} {content}"),
        },
        RecordType::Txt => txt_to_wire(content),
    }
}

/// PowerDNS's content for a record of type `rtype` in canonical form, with
/// the priority of MX and SRV apart. Content of types the project does not
/// manage, or that does not parse, is kept as PowerDNS wrote it.
pub fn from_wire(rtype: &str, wire: &str) -> (String, Option<u32>) {
    let Ok(t) = rtype.parse::<RecordType>() else {
        return (wire.to_string(), None);
    };
    let canonical = |t: RecordType, c: &str| {
        parse_content("content", t, c.trim()).unwrap_or_else(|_| c.trim().to_string())
    };
    match t {
        RecordType::Mx | RecordType::Srv => {
            let (prio, rest) = wire.trim().split_once(' ').unwrap_or((wire, ""));
            match prio.parse::<u32>() {
                Ok(p) => (canonical(t, rest), Some(p)),
                Err(_) => (wire.to_string(), None),
            }
        }
        RecordType::Txt => (txt_from_wire(wire), None),
        _ => (canonical(t, wire), None),
    }
}

/// TXT text as quoted character-strings of at most 255 bytes, cut at
/// character boundaries as the zone file provider cuts them, with `"` and
/// `\` escaped.
fn txt_to_wire(text: &str) -> String {
    let quoted: Vec<String> = character_strings(text)
        .iter()
        .map(|p| {
            let mut q = String::with_capacity(p.len() + 2);
            q.push('"');
            for c in p.chars() {
                if c == '"' || c == '\\' {
                    q.push('\\');
                }
                q.push(c);
            }
            q.push('"');
            q
        })
        .collect();
    quoted.join(" ")
}

/// The text of TXT presentation content: its character-strings (quoted or
/// bare words) joined, with `\X` and `\DDD` escapes read as RFC 1035 says.
/// Bytes that are not UTF-8 are replaced, as the zone file provider does.
pub fn txt_from_wire(wire: &str) -> String {
    let bytes = wire.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let quoted = bytes[i] == b'"';
        if quoted {
            i += 1;
        }
        while i < bytes.len() {
            let b = bytes[i];
            if quoted && b == b'"' {
                i += 1;
                break;
            }
            if !quoted && b.is_ascii_whitespace() {
                break;
            }
            if b == b'\\' && i + 1 < bytes.len() {
                let digits = &bytes[i + 1..bytes.len().min(i + 4)];
                if digits.len() == 3 && digits.iter().all(u8::is_ascii_digit) {
                    let value = digits
                        .iter()
                        .fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
                    if let Ok(byte) = u8::try_from(value) {
                        out.push(byte);
                        i += 4;
                        continue;
                    }
                }
                out.push(bytes[i + 1]);
                i += 2;
                continue;
            }
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// PowerDNS's error answer: `{"error": "..."}`.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: String,
}

/// What PowerDNS said, sanitized: the `error` of a JSON answer, or the text
/// of a plain one.
fn said(body: &[u8], key: &str) -> String {
    let text = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) if !e.error.is_empty() => e.error,
        _ => String::from_utf8_lossy(body).trim().to_string(),
    };
    sanitize(&text, key)
}

/// Maps a refused request to a [`ProviderError`]. `what` names the call
/// (`PATCH /api/v1/servers/localhost/zones/example.com.`); `key` is
/// scrubbed from anything PowerDNS said.
pub fn map_error(status: u16, body: &[u8], what: &str, key: &str) -> ProviderError {
    let text = said(body, key);
    let detail = if text.is_empty() {
        format!("{what}: HTTP {status}")
    } else {
        format!("{what}: HTTP {status}: {text}")
    };
    match status {
        401 | 403 => ProviderError::Unauthorized(format!(
            "{what}: HTTP {status}: PowerDNS refused the API key (check PDNS_API_KEY)"
        )),
        404 => ProviderError::NotFound(format!(
            "{what}: HTTP 404: the zone is not served by this PowerDNS server \
             (check DNS_ZONE and PDNS_SERVER_ID)"
        )),
        409 => ProviderError::Conflict(detail),
        // A change that clashes with what the zone holds now (someone else's
        // write since it was read) is a conflict, not bad content.
        422 if text.contains("Conflicts with pre-existing RRset")
            || text.contains("Duplicate record") =>
        {
            ProviderError::Conflict(detail)
        }
        429 => ProviderError::RateLimited { retry_after: None },
        400..=499 => ProviderError::Invalid(detail),
        500..=599 => ProviderError::Unavailable(detail),
        _ => ProviderError::Other(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_take_and_lose_the_dot() {
        assert_eq!(wire_name("www.example.com"), "www.example.com.");
        assert_eq!(wire_name("."), ".");
        assert_eq!(canonical_name("WWW.Example.com."), "www.example.com");
        assert_eq!(canonical_name("."), ".");
    }

    #[test]
    fn content_forms_round_trip() {
        let cases: [(RecordType, &str, Option<u16>, &str); 11] = [
            (RecordType::A, "192.0.2.1", None, "192.0.2.1"),
            (RecordType::Aaaa, "2001:db8::1", None, "2001:db8::1"),
            (
                RecordType::Cname,
                "target.example.net",
                None,
                "target.example.net.",
            ),
            (RecordType::Ns, "ns1.example.net", None, "ns1.example.net."),
            (
                RecordType::Mx,
                "mail.example.net",
                Some(10),
                "10 mail.example.net.",
            ),
            (RecordType::Mx, ".", Some(0), "0 ."),
            (
                RecordType::Srv,
                "5 5060 sip.example.net",
                Some(10),
                "10 5 5060 sip.example.net.",
            ),
            (RecordType::Srv, "0 0 .", Some(0), "0 0 0 ."),
            (
                RecordType::Caa,
                "0 issue \"letsencrypt.org\"",
                None,
                "0 issue \"letsencrypt.org\"",
            ),
            (RecordType::Txt, "v=spf1 -all", None, "\"v=spf1 -all\""),
            (
                RecordType::Txt,
                "he said \"hi\" \\ café",
                None,
                "\"he said \\\"hi\\\" \\\\ café\"",
            ),
        ];
        for (t, content, prio, wire) in cases {
            assert_eq!(to_wire(t, content, prio), wire, "{t} {content}");
            assert_eq!(
                from_wire(t.as_str(), wire),
                (content.to_string(), prio.map(u32::from)),
                "{t} {wire}"
            );
        }
    }

    #[test]
    fn long_txt_is_split_and_joined() {
        let text = format!("{}é{}", "a".repeat(254), "b".repeat(300));
        let wire = to_wire(RecordType::Txt, &text, None);
        let parts: Vec<&str> = wire.split("\" \"").collect();
        assert_eq!(parts.len(), 3, "{wire}");
        assert_eq!(parts[0].len(), 1 + 254, "the é is not cut");
        assert_eq!(from_wire("TXT", &wire).0, text);
    }

    #[test]
    fn powerdns_spellings_read_as_canonical() {
        assert_eq!(
            from_wire("TXT", "\"caf\\195\\169 \\065\" bare"),
            ("café Abare".to_string(), None)
        );
        assert_eq!(
            from_wire("SRV", "10 5 5060 SIP.Example.NET."),
            ("5 5060 sip.example.net".to_string(), Some(10))
        );
        assert_eq!(
            from_wire("AAAA", "2001:DB8:0::10"),
            ("2001:db8::10".to_string(), None)
        );
        assert_eq!(
            from_wire("CAA", "0 ISSUE \"pki.goog\""),
            ("0 issue \"pki.goog\"".to_string(), None)
        );
        // Types the project does not manage are kept as they are.
        assert_eq!(
            from_wire("PTR", "host.example.com."),
            ("host.example.com.".to_string(), None)
        );
        assert_eq!(from_wire("MX", "x mail."), ("x mail.".to_string(), None));
    }

    #[test]
    fn errors_map_to_their_conditions_without_the_key() {
        let what = "PATCH /api/v1/servers/localhost/zones/example.com.";
        let e = map_error(401, b"Unauthorized", what, "sekrit");
        assert!(matches!(e, ProviderError::Unauthorized(_)), "{e:?}");
        let e = map_error(404, b"Not Found", what, "sekrit");
        assert!(
            matches!(&e, ProviderError::NotFound(m) if m.contains("not served")),
            "{e:?}"
        );
        let body = br#"{"error": "Record x./A 'sekrit': unable to parse IP address"}"#;
        match map_error(422, body, what, "sekrit") {
            ProviderError::Invalid(m) => {
                assert!(m.contains("unable to parse IP address"), "{m}");
                assert!(!m.contains("sekrit"), "{m}");
            }
            other => panic!("{other:?}"),
        }
        let body = br#"{"error": "RRset a. IN CNAME: Conflicts with pre-existing RRset"}"#;
        assert!(matches!(
            map_error(422, body, what, "k"),
            ProviderError::Conflict(_)
        ));
    }
}
