//! Cloudflare's wire format: the envelopes, records and batch bodies the API
//! speaks, its error codes, and how a refusal maps onto [`ProviderError`]
//! (with the token scrubbed from anything the server said).

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use trafego_proto::validate::{RecordType, ValidRecordInput, parse_content};

use crate::provider::http::sanitize;
use crate::provider::{MANAGED_COMMENT, ProviderError, ProviderRecord};

/// Cloudflare error codes meaning "a conflicting or identical record exists".
pub(super) const CONFLICT_CODES: [u32; 3] = [81053, 81057, 81058];
/// Cloudflare error codes meaning "no such record" (81044) or "no such zone" (7003).
pub(super) const NOT_FOUND_CODES: [u32; 2] = [81044, 7003];
/// Cloudflare error codes meaning the credentials were refused.
pub(super) const AUTH_CODES: [u32; 6] = [9109, 10000, 6003, 6111, 9106, 9103];

/// One entry of Cloudflare's `errors` array, with the details it chains.
#[derive(Debug, Deserialize)]
pub(super) struct CfError {
    #[serde(default)]
    pub(super) code: u32,
    #[serde(default)]
    pub(super) message: String,
    #[serde(default)]
    pub(super) error_chain: Vec<CfError>,
}

impl CfError {
    /// This error's code and those of the errors it chains.
    pub(super) fn codes(&self) -> Vec<u32> {
        let mut out = vec![self.code];
        for e in &self.error_chain {
            out.extend(e.codes());
        }
        out
    }

    /// "code N: message (code M: detail)", sanitized.
    pub(super) fn describe(&self, token: &str) -> String {
        let mut s = format!("code {}: {}", self.code, sanitize(&self.message, token));
        if !self.error_chain.is_empty() {
            let chain: Vec<String> = self.error_chain.iter().map(|e| e.describe(token)).collect();
            s.push_str(&format!(" ({})", chain.join("; ")));
        }
        s
    }
}

/// Cloudflare's error envelope, read leniently: only the codes and messages.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ErrorEnvelope {
    #[serde(default)]
    pub(super) errors: Vec<CfError>,
}

/// Maps a refused request to a [`ProviderError`]: Cloudflare's error codes
/// first, then the HTTP status. `what` names the call ("GET /zones"); `token`
/// is scrubbed from anything the server said.
pub(super) fn map_error(status: u16, body: &[u8], what: &str, token: &str) -> ProviderError {
    let env: ErrorEnvelope = serde_json::from_slice(body).unwrap_or_default();
    map_cf_errors(status, &env.errors, what, token)
}

pub(super) fn map_cf_errors(
    status: u16,
    errors: &[CfError],
    what: &str,
    token: &str,
) -> ProviderError {
    let detail = if errors.is_empty() {
        format!("{what}: HTTP {status}")
    } else {
        let said: Vec<String> = errors.iter().map(|e| e.describe(token)).collect();
        sanitize(
            &format!("{what}: HTTP {status}: {}", said.join("; ")),
            token,
        )
    };
    let codes: Vec<u32> = errors.iter().flat_map(CfError::codes).collect();
    let has = |set: &[u32]| codes.iter().any(|c| set.contains(c));
    if has(&AUTH_CODES) || status == 401 || status == 403 {
        return ProviderError::Unauthorized(detail);
    }
    if has(&CONFLICT_CODES) {
        return ProviderError::Conflict(detail);
    }
    if has(&NOT_FOUND_CODES) {
        return ProviderError::NotFound(detail);
    }
    if codes
        .iter()
        .any(|&c| c == 1004 || (9000..=9999).contains(&c))
    {
        return ProviderError::Invalid(detail);
    }
    match status {
        404 => ProviderError::NotFound(detail),
        409 => ProviderError::Conflict(detail),
        429 => ProviderError::RateLimited { retry_after: None },
        400..=499 => ProviderError::Invalid(detail),
        500..=599 => ProviderError::Unavailable(detail),
        _ => ProviderError::Other(detail),
    }
}

/// Cloudflare's success envelope around a `result` of type `T`.
#[derive(Debug, Deserialize)]
pub(super) struct Envelope<T> {
    #[serde(default = "yes")]
    pub(super) success: bool,
    #[serde(default)]
    pub(super) errors: Vec<CfError>,
    pub(super) result: Option<T>,
    #[serde(default)]
    pub(super) result_info: Option<ResultInfo>,
}

pub(super) fn yes() -> bool {
    true
}

/// Paging information of a list answer.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(super) struct ResultInfo {
    #[serde(default)]
    pub(super) per_page: Option<u32>,
    #[serde(default)]
    pub(super) total_pages: Option<u32>,
    #[serde(default)]
    pub(super) total_count: Option<u64>,
}

/// A zone as `GET /zones?name=` reports it: only what the lookup needs.
#[derive(Debug, Deserialize)]
pub(super) struct CfZone {
    pub(super) id: String,
    #[serde(default)]
    pub(super) name: String,
}

/// The `data` object of SRV records, for the priority Cloudflare keeps there.
#[derive(Debug, Default, Deserialize)]
pub(super) struct CfData {
    #[serde(default)]
    pub(super) priority: Option<u32>,
}

/// A DNS record as Cloudflare reports it: only the fields the cache keeps, so
/// a 100,000-record zone deserializes into small structs.
#[derive(Debug, Deserialize)]
pub(super) struct CfRecord {
    pub(super) id: String,
    pub(super) name: String,
    #[serde(rename = "type")]
    pub(super) rtype: String,
    #[serde(default)]
    pub(super) content: String,
    #[serde(default = "ttl_auto")]
    pub(super) ttl: u32,
    #[serde(default)]
    pub(super) proxied: Option<bool>,
    #[serde(default)]
    pub(super) priority: Option<u32>,
    #[serde(default)]
    pub(super) comment: Option<String>,
    #[serde(default)]
    pub(super) data: Option<CfData>,
}

pub(super) fn ttl_auto() -> u32 {
    1
}

impl CfRecord {
    /// The record in the cache's normal form: name lowercase without the
    /// trailing dot, type uppercase, content canonical for known types (so it
    /// compares equal to what callers asked), priority only for MX and SRV.
    pub(super) fn into_provider(self) -> ProviderRecord {
        let rtype = self.rtype.to_ascii_uppercase();
        let mut name = self.name.to_ascii_lowercase();
        if name.ends_with('.') {
            name.pop();
        }
        let known = rtype.parse::<RecordType>().ok();
        let content = match known {
            Some(t) => parse_content("content", t, &self.content).unwrap_or(self.content),
            None => self.content,
        };
        let priority = if known.is_some_and(RecordType::has_priority) {
            self.priority.or_else(|| self.data.and_then(|d| d.priority))
        } else {
            None
        };
        ProviderRecord {
            id: self.id,
            rtype,
            name,
            content,
            ttl: self.ttl,
            proxied: self.proxied.unwrap_or(false),
            priority,
            comment: self.comment.unwrap_or_default(),
        }
    }
}

/// The `result` of a batch call: the new state of each put and post, in request order.
#[derive(Debug, Default, Deserialize)]
pub(super) struct BatchResult {
    #[serde(default)]
    pub(super) deletes: Option<Vec<IgnoredAny>>,
    #[serde(default)]
    pub(super) puts: Option<Vec<CfRecord>>,
    #[serde(default)]
    pub(super) posts: Option<Vec<CfRecord>>,
}

/// Structured content Cloudflare wants for SRV and CAA records.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(super) enum WriteData<'a> {
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: &'a str,
    },
    Caa {
        flags: u8,
        tag: &'a str,
        value: &'a str,
    },
}

/// A record as written in a POST, a PUT or a batch entry, following
/// Cloudflare's record schema: SRV and CAA records carry their value in
/// `data` only (their `content` is read-only there, and SRV's priority lives
/// in `data`), and neither type has `proxied`. Other types send `content`.
#[derive(Debug, Serialize)]
pub(super) struct WriteBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) id: Option<&'a str>,
    #[serde(rename = "type")]
    pub(super) rtype: &'static str,
    pub(super) name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) content: Option<&'a str>,
    pub(super) ttl: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) proxied: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) priority: Option<u16>,
    pub(super) comment: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) data: Option<WriteData<'a>>,
}

impl<'a> WriteBody<'a> {
    pub(super) fn new(id: Option<&'a str>, input: &'a ValidRecordInput) -> Self {
        let s = &input.spec;
        let comment = if input.comment.is_empty() {
            MANAGED_COMMENT
        } else {
            input.comment.as_str()
        };
        let data = write_data(s.rtype, &s.content, s.priority);
        // With `data`, the value is all there: `content` would be a read-only field.
        let structured = data.is_some();
        WriteBody {
            id,
            rtype: s.rtype.as_str(),
            name: s.name.as_str(),
            content: (!structured).then_some(s.content.as_str()),
            ttl: s.ttl,
            proxied: (!structured).then_some(s.proxied),
            priority: if structured { None } else { s.priority },
            comment,
            data,
        }
    }
}

/// Splits canonical SRV (`weight port target`) and CAA (`flags tag "value"`)
/// content into the `data` object Cloudflare's API expects for those types.
pub(super) fn write_data(
    rtype: RecordType,
    content: &str,
    priority: Option<u16>,
) -> Option<WriteData<'_>> {
    match rtype {
        RecordType::Srv => {
            let mut it = content.split_ascii_whitespace();
            let weight = it.next()?.parse().ok()?;
            let port = it.next()?.parse().ok()?;
            let target = it.next()?;
            Some(WriteData::Srv {
                priority: priority.unwrap_or(0),
                weight,
                port,
                target,
            })
        }
        RecordType::Caa => {
            let mut it = content.splitn(3, ' ');
            let flags = it.next()?.parse().ok()?;
            let tag = it.next()?;
            let value = it.next()?;
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            Some(WriteData::Caa { flags, tag, value })
        }
        _ => None,
    }
}

/// Request body of `POST /dns_records/batch`.
#[derive(Debug, Default, Serialize)]
pub(super) struct BatchBody<'a> {
    pub(super) deletes: Vec<IdOnly<'a>>,
    pub(super) puts: Vec<WriteBody<'a>>,
    pub(super) posts: Vec<WriteBody<'a>>,
}

#[derive(Debug, Serialize)]
pub(super) struct IdOnly<'a> {
    pub(super) id: &'a str,
}
