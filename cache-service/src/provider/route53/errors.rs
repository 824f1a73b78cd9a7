//! Route53's error answers turned into [`ProviderError`]s (throttling is a
//! rate limit, refused credentials are `Unauthorized`), and the problems an
//! `InvalidChangeBatch` lists, in either of its shapes, read for the record
//! set or value each one names. Pure functions only: no I/O, no credentials;
//! every text taken from an answer goes through [`sanitize`].

use serde::Deserialize;

use super::super::ProviderError;
use super::super::http::sanitize;
use super::wire::name_of;

/// Route53 error codes that mean "slow down": the request was refused unapplied.
const THROTTLING_CODES: [&str; 5] = [
    "Throttling",
    "ThrottlingException",
    "PriorRequestNotComplete",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];

/// Route53 (and AWS-wide) error codes meaning the credentials were refused.
const AUTH_CODES: [&str; 9] = [
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "AccessDenied",
    "AccessDeniedException",
    "MissingAuthenticationToken",
    "IncompleteSignature",
    "UnrecognizedClientException",
    "ExpiredToken",
    "InvalidSignatureException",
];

/// An error answer in either of Route53's shapes: `<ErrorResponse><Error>`
/// or `<InvalidChangeBatch><Messages>`.
#[derive(Debug, Deserialize)]
struct ErrorDoc {
    #[serde(rename = "Error")]
    error: Option<ErrorXml>,
    #[serde(rename = "Messages")]
    messages: Option<MessagesXml>,
}

#[derive(Debug, Deserialize)]
struct ErrorXml {
    #[serde(rename = "Code", default)]
    code: String,
    #[serde(rename = "Message", default)]
    message: String,
}

#[derive(Debug, Deserialize)]
struct MessagesXml {
    #[serde(rename = "Message", default)]
    message: Vec<String>,
}

/// Reads a refused answer (the [`super::super::http::ErrorMapper`] of Route53).
pub fn map_error(status: u16, body: &[u8], what: &str, secret: &str) -> ProviderError {
    let doc: Option<ErrorDoc> = std::str::from_utf8(body)
        .ok()
        .and_then(|t| quick_xml::de::from_str(t).ok());
    let (code, message) = match &doc {
        Some(ErrorDoc {
            error: Some(e),
            messages: _,
        }) => (e.code.as_str(), e.message.clone()),
        Some(ErrorDoc {
            error: None,
            messages: Some(m),
        }) => ("InvalidChangeBatch", format!("[{}]", m.message.join(", "))),
        _ => ("", String::new()),
    };
    let detail = if code.is_empty() {
        sanitize(&format!("{what}: HTTP {status}"), secret)
    } else {
        sanitize(&format!("{what}: {code}: {message}"), secret)
    };
    if THROTTLING_CODES.contains(&code) {
        return ProviderError::RateLimited { retry_after: None };
    }
    if AUTH_CODES.contains(&code) || status == 401 || status == 403 {
        return ProviderError::Unauthorized(detail);
    }
    match (code, status) {
        ("NoSuchHostedZone" | "NoSuchChange" | "HostedZoneNotFound", _) | (_, 404) => {
            ProviderError::NotFound(detail)
        }
        (_, 409) => ProviderError::Conflict(detail),
        (_, 400) => ProviderError::Invalid(detail),
        _ => ProviderError::Other(detail),
    }
}

/// Every problem an `InvalidChangeBatch` answer lists (either shape), or
/// `None` when the answer is another error.
pub fn batch_problems(body: &[u8]) -> Option<Vec<String>> {
    let doc: ErrorDoc = quick_xml::de::from_str(std::str::from_utf8(body).ok()?).ok()?;
    match doc {
        ErrorDoc {
            messages: Some(m), ..
        } => Some(m.message),
        ErrorDoc { error: Some(e), .. } if e.code == "InvalidChangeBatch" => {
            Some(split_list(&e.message))
        }
        _ => None,
    }
}

/// `[m1, m2]` (the `<ErrorResponse>` shape) into its messages, splitting only
/// at `, ` outside brackets and quotes.
fn split_list(text: &str) -> Vec<String> {
    let t = text.trim();
    let inner = match t.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        Some(i) => i,
        None => return vec![t.to_string()],
    };
    let mut out = Vec::new();
    let (mut depth, mut quoted) = (0i32, false);
    let mut cur = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => quoted = !quoted,
            '[' if !quoted => depth += 1,
            ']' if !quoted => depth -= 1,
            ',' if !quoted && depth <= 0 && chars.peek() == Some(&' ') => {
                chars.next();
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// What a problem of a batch says of the record set it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The record set is not as this client last saw it (a CREATE of one
    /// that exists, a DELETE of one that is gone or holds other values):
    /// someone else changed it. Read it again before deciding.
    Stale {
        /// Name, project form.
        name: String,
        /// Type.
        rtype: String,
    },
    /// The change clashes with other records (a CNAME beside other types).
    Conflict {
        /// Name, project form.
        name: String,
        /// Type.
        rtype: String,
    },
    /// The change is refused for itself (out of zone, CNAME at the apex…).
    Refused {
        /// Name, project form.
        name: String,
        /// Type, when the message gives it.
        rtype: Option<String>,
    },
    /// A value is refused (named by the value only).
    BadValue(String),
    /// Nothing in the message says which change it is about.
    Unknown,
}

/// Which change a problem is about, read from Route53's message.
pub fn problem_of(message: &str) -> Problem {
    let m = message.trim();
    if let Some(rest) = m.strip_prefix("Tried to ")
        && let Some((name, rtype)) = bracketed_set(rest)
    {
        if rest.contains("already exists")
            || rest.contains("was not found")
            || rest.contains("do not match")
        {
            return Problem::Stale { name, rtype };
        }
        return Problem::Refused {
            name,
            rtype: Some(rtype),
        };
    }
    if let Some(rest) = m.strip_prefix("RRSet of type ")
        && let Some((rtype, rest)) = rest.split_once(" with DNS name ")
    {
        let name = name_of(rest.split_whitespace().next().unwrap_or_default());
        let rtype = rtype.trim().to_string();
        if rest.contains("conflicts with other records") {
            return Problem::Conflict { name, rtype };
        }
        return Problem::Refused {
            name,
            rtype: Some(rtype),
        };
    }
    if let Some(rest) = m.strip_prefix("RRSet with DNS name ") {
        let name = name_of(rest.split([' ', ',']).next().unwrap_or_default());
        return Problem::Refused { name, rtype: None };
    }
    if let Some(v) = m
        .strip_prefix("Duplicate Resource Record: '")
        .and_then(|v| v.strip_suffix('\''))
    {
        return Problem::BadValue(v.to_string());
    }
    if m.starts_with("Invalid Resource Record:")
        && let Some(at) = m.find(" encountered with '")
    {
        let v = &m[at + " encountered with '".len()..];
        let v = v
            .strip_suffix("''")
            .or_else(|| v.strip_suffix('\''))
            .unwrap_or(v);
        return Problem::BadValue(v.to_string());
    }
    Problem::Unknown
}

/// `… [name='a.example.com.', type='A'] …` into (name, type).
fn bracketed_set(text: &str) -> Option<(String, String)> {
    let start = text.find("[name='")? + "[name='".len();
    let rest = &text[start..];
    let end = rest.find('\'')?;
    let name = name_of(&rest[..end]);
    let rest = &rest[end..];
    let t = rest.find("type='")? + "type='".len();
    let rest = &rest[t..];
    let rtype = rest[..rest.find('\'')?].to_string();
    Some((name, rtype))
}
