//! Records between the DNS wire and the project's form, for the RFC 2136
//! provider: a record read from a zone transfer becomes a [`ProviderRecord`]
//! (canonical name and content, the derived id), and a validated spec becomes
//! the wire record an UPDATE adds. It must never build a wire record that
//! reads back as something other than what was asked: every one is converted
//! back and compared before it is sent.

use std::fmt::Write as _;

use hickory_proto::rr::{Name, RData, Record, RecordType as WireType};
use trafego_proto::validate::{RecordSpec, TTL_AUTO};

pub use crate::provider::rdata::absolute_name;
use crate::provider::rdata::spec_rdata;
use crate::provider::{ProviderError, ProviderRecord, derived_id};

/// Types the server maintains itself and a listing leaves out: the SOA (its
/// serial moves with every update) and the DNSSEC records a signing server
/// adds and replaces on its own.
const SERVER_MAINTAINED: [WireType; 5] = [
    WireType::SOA,
    WireType::RRSIG,
    WireType::NSEC,
    WireType::NSEC3,
    WireType::NSEC3PARAM,
];

/// Whether a listing shows this record (everything but [`SERVER_MAINTAINED`]).
pub fn listed(record: &Record) -> bool {
    !SERVER_MAINTAINED.contains(&record.record_type())
}

/// A name as the project writes names: lowercase, no trailing dot (`.` for
/// the root); bytes outside printable ASCII as `\DDD` (decimal, RFC 1035).
pub fn canonical_name(name: &Name) -> String {
    if name.is_root() {
        return ".".to_string();
    }
    let mut out = String::with_capacity(name.len());
    for (i, label) in name.iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for &b in label {
            match b {
                b'.' | b'\\' => {
                    out.push('\\');
                    out.push(char::from(b));
                }
                0x21..=0x7e => out.push(char::from(b.to_ascii_lowercase())),
                _ => {
                    let _ = write!(out, "\\{b:03}");
                }
            }
        }
    }
    out
}

/// Content as `validate::parse_content` writes it, and the priority of MX
/// and SRV. Types the project does not manage keep hickory's presentation.
fn canonical_content(rdata: &RData) -> (String, Option<u32>) {
    match rdata {
        RData::A(a) => (a.0.to_string(), None),
        RData::AAAA(a) => (a.0.to_string(), None),
        RData::CNAME(n) => (canonical_name(&n.0), None),
        RData::NS(n) => (canonical_name(&n.0), None),
        RData::PTR(n) => (canonical_name(&n.0), None),
        RData::MX(mx) => (canonical_name(&mx.exchange), Some(u32::from(mx.preference))),
        RData::SRV(srv) => (
            format!(
                "{} {} {}",
                srv.weight,
                srv.port,
                canonical_name(&srv.target)
            ),
            Some(u32::from(srv.priority)),
        ),
        RData::TXT(txt) => {
            let bytes: Vec<u8> = txt.txt_data.iter().flatten().copied().collect();
            (String::from_utf8_lossy(&bytes).into_owned(), None)
        }
        RData::CAA(caa) => (
            format!(
                "{} {} \"{}\"",
                caa.flags(),
                caa.tag.to_ascii_lowercase(),
                String::from_utf8_lossy(&caa.value)
            ),
            None,
        ),
        other => (other.to_string(), None),
    }
}

/// The record as the cache holds it, with its [`derived_id`].
pub fn to_provider(record: &Record) -> ProviderRecord {
    let rtype = record.record_type().to_string();
    let name = canonical_name(&record.name);
    let (content, priority) = canonical_content(&record.data);
    ProviderRecord {
        id: derived_id(&rtype, &name, &content),
        rtype,
        name,
        content,
        ttl: record.ttl,
        proxied: false,
        priority,
        comment: String::new(),
    }
}

/// The wire record for a validated spec, `TTL_AUTO` written as
/// `default_ttl`. Refused as [`ProviderError::Invalid`] when it would read
/// back as anything but the spec.
pub fn spec_record(spec: &RecordSpec, default_ttl: u32) -> Result<Record, ProviderError> {
    if spec.proxied {
        return Err(ProviderError::Invalid(format!(
            "{} {}: a DNS server cannot proxy records; set proxied to false",
            spec.rtype, spec.name
        )));
    }
    let ttl = if spec.ttl == TTL_AUTO {
        default_ttl
    } else {
        spec.ttl
    };
    let record = Record::from_rdata(absolute_name(spec.name.as_str())?, ttl, spec_rdata(spec)?);
    let back = to_provider(&record);
    if back.name != spec.name.as_str()
        || back.content != spec.content
        || back.priority != spec.priority.map(u32::from)
    {
        return Err(ProviderError::Invalid(format!(
            "{} {} {:?} cannot be sent as DNS data: it would read back as {:?}",
            spec.rtype, spec.name, spec.content, back.content
        )));
    }
    Ok(record)
}
