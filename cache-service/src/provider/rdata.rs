//! The RDATA of a validated record spec, shared by the providers that speak
//! DNS data themselves (the zone file, RFC 2136) and the TXT splitting every
//! provider writing presentation text needs (PowerDNS too): one conversion, so
//! the same record is the same bytes whichever provider holds it.

use hickory_proto::rr::rdata::{A, AAAA, CAA, CNAME, MX, NS, SRV, TXT};
use hickory_proto::rr::{Name, RData};
use trafego_proto::validate::{RecordSpec, RecordType};

use crate::provider::ProviderError;

/// The longest character-string DNS data holds (RFC 1035 section 3.3).
pub const MAX_CHARACTER_STRING: usize = 255;

/// `name` (canonical, no trailing dot) as a fully qualified wire name.
pub fn absolute_name(name: &str) -> Result<Name, ProviderError> {
    if name == "." {
        return Ok(Name::root());
    }
    Name::from_ascii(format!("{name}."))
        .map_err(|e| ProviderError::Invalid(format!("{name:?} is not a valid DNS name: {e}")))
}

/// The RDATA of a validated spec (content is canonical already, so only its
/// structure is split out here).
pub fn spec_rdata(spec: &RecordSpec) -> Result<RData, ProviderError> {
    let c = spec.content.as_str();
    let invalid =
        |what: &str| ProviderError::Invalid(format!("{} content {c:?}: {what}", spec.rtype));
    let priority = || {
        spec.priority
            .ok_or_else(|| invalid("a priority is required"))
    };
    Ok(match spec.rtype {
        RecordType::A => RData::A(A(c.parse().map_err(|_| invalid("not an IPv4 address"))?)),
        RecordType::Aaaa => {
            RData::AAAA(AAAA(c.parse().map_err(|_| invalid("not an IPv6 address"))?))
        }
        RecordType::Cname => RData::CNAME(CNAME(absolute_name(c)?)),
        RecordType::Ns => RData::NS(NS(absolute_name(c)?)),
        RecordType::Mx => RData::MX(MX::new(priority()?, absolute_name(c)?)),
        RecordType::Srv => {
            let parts: Vec<&str> = c.split(' ').collect();
            let [weight, port, target] = parts.as_slice() else {
                return Err(invalid("expected \"weight port target\""));
            };
            RData::SRV(SRV::new(
                priority()?,
                weight.parse().map_err(|_| invalid("bad weight"))?,
                port.parse().map_err(|_| invalid("bad port"))?,
                absolute_name(target)?,
            ))
        }
        RecordType::Txt => RData::TXT(TXT::from_bytes(
            character_strings(c)
                .into_iter()
                .map(str::as_bytes)
                .collect(),
        )),
        RecordType::Caa => {
            let mut it = c.splitn(3, ' ');
            let (Some(flags), Some(tag), Some(value)) = (it.next(), it.next(), it.next()) else {
                return Err(invalid("expected \"flags tag value\""));
            };
            let flags: u8 = flags.parse().map_err(|_| invalid("bad flags"))?;
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            let mut caa = CAA::new_issue(false, None, Vec::new());
            caa.issuer_critical = flags & 0x80 != 0;
            caa.reserved_flags = flags & 0x7f;
            caa.tag = tag.to_string();
            caa.value = value.as_bytes().to_vec();
            RData::CAA(caa)
        }
    })
}

/// Text cut into character-strings of at most 255 bytes at character
/// boundaries (one empty string for empty text).
pub fn character_strings(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while rest.len() > MAX_CHARACTER_STRING {
        let mut cut = MAX_CHARACTER_STRING;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out.push(rest);
    out
}
