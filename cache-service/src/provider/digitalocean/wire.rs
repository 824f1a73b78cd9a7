//! DigitalOcean's wire format: domain records as its API v2 carries them
//! (names relative to the domain, `@` for the apex; host names in `data`
//! written fully qualified with their trailing dot, answered without it; MX
//! and SRV priority, SRV weight and port, CAA flags and tag in fields of their
//! own), the listing's `links.pages`, and its error body `{"id", "message"}`.
//! Conversions here are pure: no request, no secret.

use reqwest::Url;
use serde::{Deserialize, Serialize};
use trafego_proto::validate::{Hostname, RecordType, ValidRecordInput, parse_content};

use super::DEFAULT_TTL;
use crate::provider::http::sanitize;
use crate::provider::{ProviderError, ProviderRecord};

/// A domain record as DigitalOcean answers it: only the fields the cache keeps.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct DoRecord {
    pub id: u64,
    #[serde(rename = "type")]
    pub rtype: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub data: Option<String>,
    #[serde(default)]
    pub priority: Option<u32>,
    #[serde(default)]
    pub port: Option<u32>,
    #[serde(default)]
    pub ttl: Option<u32>,
    #[serde(default)]
    pub weight: Option<u32>,
    #[serde(default)]
    pub flags: Option<u32>,
    #[serde(default)]
    pub tag: Option<String>,
}

/// `{"domain_record": {...}}`, the answer of a create or an update.
#[derive(Debug, Deserialize)]
pub(super) struct RecordAnswer {
    pub domain_record: DoRecord,
}

/// One page of `GET /v2/domains/{domain}/records`.
#[derive(Debug, Deserialize)]
pub(super) struct ListAnswer {
    #[serde(default)]
    pub domain_records: Vec<DoRecord>,
    #[serde(default)]
    pub links: Option<Links>,
    #[serde(default)]
    pub meta: Option<Meta>,
}

/// The `links` object of a list answer.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Links {
    #[serde(default)]
    pub pages: Option<Pages>,
}

/// `links.pages`: absolute URLs of the neighbouring pages.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Pages {
    #[serde(default)]
    pub next: Option<String>,
}

/// The `meta` object of a list answer: how many records match in all.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Meta {
    #[serde(default)]
    pub total: Option<u64>,
}

impl ListAnswer {
    /// The page number `links.pages.next` names, if there is a next page.
    /// Only its `page` parameter is read: the request for it is built on the
    /// configured API root, so the token never goes where a link points.
    pub fn next_page(&self) -> Result<Option<u32>, String> {
        let Some(next) = self
            .links
            .as_ref()
            .and_then(|l| l.pages.as_ref())
            .and_then(|p| p.next.as_deref())
        else {
            return Ok(None);
        };
        let url = Url::parse(next).map_err(|_| "a next link that is not a URL".to_string())?;
        let page = url
            .query_pairs()
            .find(|(k, _)| k == "page")
            .and_then(|(_, v)| v.parse::<u32>().ok())
            .ok_or_else(|| "a next link without a page number".to_string())?;
        Ok(Some(page))
    }
}

/// DigitalOcean's error body.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    id: String,
    #[serde(default)]
    message: String,
}

/// Words of DigitalOcean's 422 messages that mean "a record there already
/// clashes with this one" ("Record already exists", "CNAME records cannot
/// share a name with other records"): a conflict, not bad input.
const CONFLICT_WORDS: [&str; 3] = ["already exists", "cannot share", "already in use"];

/// Maps a refused request to a [`ProviderError`] by status, keeping
/// DigitalOcean's `id` and `message`: 401 and 403 refuse the token, 404 is a
/// missing record or domain, 422 is the record refused (a conflict when its
/// message says so), other 4xx are bad input, 5xx the provider failing.
/// `what` names the call ("GET /v2/..."); `token` is scrubbed from anything
/// DigitalOcean said.
pub(super) fn map_error(status: u16, body: &[u8], what: &str, token: &str) -> ProviderError {
    let b: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let said = match (b.id.is_empty(), b.message.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!(": {}", b.id),
        (true, false) => format!(": {}", b.message),
        (false, false) => format!(": {}: {}", b.id, b.message),
    };
    let detail = sanitize(&format!("{what}: HTTP {status}{said}"), token);
    let message = b.message.to_ascii_lowercase();
    match status {
        401 | 403 => ProviderError::Unauthorized(detail),
        404 => ProviderError::NotFound(detail),
        409 => ProviderError::Conflict(detail),
        422 if CONFLICT_WORDS.iter().any(|w| message.contains(w)) => {
            ProviderError::Conflict(detail)
        }
        429 => ProviderError::RateLimited { retry_after: None },
        400..=499 => ProviderError::Invalid(detail),
        500..=599 => ProviderError::Unavailable(detail),
        _ => ProviderError::Other(detail),
    }
}

/// A host name in `data` as the cache holds it: `@` is the domain itself;
/// otherwise lowercase without the trailing dot.
fn host(data: &str, domain: &str) -> String {
    let d = data.trim();
    if d == "@" {
        return domain.to_string();
    }
    if d == "." {
        return ".".to_string();
    }
    d.trim_end_matches('.').to_ascii_lowercase()
}

impl DoRecord {
    /// The record in the cache's normal form: the name fully qualified,
    /// lowercase, no trailing dot; the type uppercase; the content the
    /// project's canonical presentation (SRV `weight port target`, CAA
    /// `flags tag "value"`), so it compares equal to what callers asked;
    /// priority only for MX and SRV. Unknown types (SOA) keep their data.
    pub fn into_provider(self, domain: &str) -> ProviderRecord {
        let rtype = self.rtype.trim().to_ascii_uppercase();
        let rel = self.name.trim().trim_end_matches('.').to_ascii_lowercase();
        // DigitalOcean's names are always relative: `www.example.com` in
        // example.com is www.example.com.example.com.
        let name = if rel.is_empty() || rel == "@" {
            domain.to_string()
        } else {
            format!("{rel}.{domain}")
        };
        let data = self.data.unwrap_or_default();
        let known = rtype.parse::<RecordType>().ok();
        let raw = match known {
            Some(RecordType::Cname | RecordType::Ns | RecordType::Mx) => host(&data, domain),
            Some(RecordType::Srv) => format!(
                "{} {} {}",
                self.weight.unwrap_or(0),
                self.port.unwrap_or(0),
                host(&data, domain)
            ),
            Some(RecordType::Caa) => format!(
                "{} {} \"{}\"",
                self.flags.unwrap_or(0),
                self.tag.as_deref().unwrap_or(""),
                data.trim_matches('"')
            ),
            _ => data,
        };
        let content = match known {
            Some(t) => parse_content("content", t, &raw).unwrap_or(raw),
            None => raw,
        };
        let priority = if known.is_some_and(RecordType::has_priority) {
            self.priority
        } else {
            None
        };
        ProviderRecord {
            id: self.id.to_string(),
            rtype,
            name,
            content,
            ttl: self.ttl.unwrap_or(DEFAULT_TTL),
            proxied: false,
            priority,
            comment: String::new(),
        }
    }
}

/// A record as written in a `POST` or a `PUT`: every field DigitalOcean's
/// reference gives the type, and no other.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(super) struct WriteBody {
    #[serde(rename = "type")]
    rtype: &'static str,
    name: String,
    data: String,
    ttl: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    weight: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    flags: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
}

/// A host name as DigitalOcean wants it in `data`: fully qualified with its
/// trailing dot (`.` stays the root, the null target of RFC 7505 and 2782).
fn absolute(target: &str) -> String {
    if target == "." {
        ".".to_string()
    } else {
        format!("{target}.")
    }
}

impl WriteBody {
    /// The body for `input` in `domain`. Refuses a name outside the domain
    /// and content that is not in its canonical form (validation made it so).
    pub fn new(input: &ValidRecordInput, domain: &Hostname) -> Result<Self, ProviderError> {
        let s = &input.spec;
        let name = relative_name(&s.name, domain)?;
        let bad = |what: &str| {
            ProviderError::Invalid(format!("{} {}: {what} {:?}", s.rtype, s.name, s.content))
        };
        let mut body = WriteBody {
            rtype: s.rtype.as_str(),
            name,
            data: s.content.clone(),
            ttl: if s.ttl == trafego_proto::validate::TTL_AUTO {
                DEFAULT_TTL
            } else {
                s.ttl
            },
            priority: None,
            port: None,
            weight: None,
            flags: None,
            tag: None,
        };
        match s.rtype {
            RecordType::A | RecordType::Aaaa | RecordType::Txt => {}
            RecordType::Cname | RecordType::Ns => body.data = absolute(&s.content),
            RecordType::Mx => {
                body.data = absolute(&s.content);
                body.priority = Some(s.priority.unwrap_or(0));
            }
            RecordType::Srv => {
                let mut it = s.content.split_ascii_whitespace();
                let (Some(weight), Some(port), Some(target), None) =
                    (it.next(), it.next(), it.next(), it.next())
                else {
                    return Err(bad("SRV content is not \"weight port target\""));
                };
                body.weight = Some(weight.parse().map_err(|_| bad("SRV weight"))?);
                body.port = Some(port.parse().map_err(|_| bad("SRV port"))?);
                body.data = absolute(target);
                body.priority = Some(s.priority.unwrap_or(0));
            }
            RecordType::Caa => {
                let mut it = s.content.splitn(3, ' ');
                let (Some(flags), Some(tag), Some(value)) = (it.next(), it.next(), it.next())
                else {
                    return Err(bad("CAA content is not \"flags tag value\""));
                };
                body.flags = Some(flags.parse().map_err(|_| bad("CAA flags"))?);
                body.tag = Some(tag.to_string());
                body.data = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value)
                    .to_string();
            }
        }
        Ok(body)
    }
}

/// `name` relative to `domain`, as DigitalOcean names records: `@` for the
/// apex, `www` for `www.example.com`.
pub(super) fn relative_name(name: &Hostname, domain: &Hostname) -> Result<String, ProviderError> {
    if name == domain {
        return Ok("@".to_string());
    }
    name.as_str()
        .strip_suffix(domain.as_str())
        .and_then(|rest| rest.strip_suffix('.'))
        .filter(|rel| !rel.is_empty())
        .map(str::to_string)
        .ok_or_else(|| ProviderError::Invalid(format!("{name} is outside the domain {domain}")))
}
