//! Writing a zone file's text: the RDATA a validated spec asks for, the
//! presentation form of every record, the whole file sorted so diffs stay
//! small, and the check that the text reads back as the zone it came from.

use std::fmt::Write as _;

use hickory_proto::rr::rdata::{A, AAAA, CAA, CNAME, MX, NS, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record};
use trafego_proto::validate::{RecordSpec, RecordType};

use super::parse::{Entry, ZoneData, canonical_name, parse_zone};
use super::{MAX_CHARACTER_STRING, absolute_name};
use crate::provider::{MANAGED_COMMENT, ProviderError};

/// The RDATA for a validated spec. Content is in `parse_content`'s canonical
/// form, so only the structure is split out here.
pub(super) fn spec_rdata(spec: &RecordSpec) -> Result<RData, ProviderError> {
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
        RecordType::Txt => RData::TXT(TXT::from_bytes(split_character_strings(c))),
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

/// Splits text into character-strings of at most 255 bytes, at character
/// boundaries (one empty string for empty text).
pub(super) fn split_character_strings(s: &str) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = s;
    while rest.len() > MAX_CHARACTER_STRING {
        let mut cut = MAX_CHARACTER_STRING;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push(&rest.as_bytes()[..cut]);
        rest = &rest[cut..];
    }
    out.push(rest.as_bytes());
    out
}

/// The whole file: a comment, `$ORIGIN`, `$TTL`, the SOA, then every record
/// sorted by (name in DNS order, type, content) so diffs stay small.
pub(super) fn render<'e>(
    origin: &Name,
    ttl: u32,
    soa: Option<&Record>,
    entries: impl Iterator<Item = &'e Entry>,
) -> Result<String, String> {
    let mut sorted: Vec<&Entry> = entries.collect();
    sorted.sort_by(|a, b| {
        a.record
            .name
            .cmp(&b.record.name)
            .then_with(|| a.rtype.cmp(&b.rtype))
            .then_with(|| a.content.cmp(&b.content))
    });
    let mut out = String::with_capacity(64 * (sorted.len() + 8));
    let _ = writeln!(
        out,
        "; Zone {} ({MANAGED_COMMENT}, zonefile provider).\n\
         ; Records added by hand are kept when the file is rewritten; comments and layout are not.",
        canonical_name(origin)
    );
    let _ = writeln!(out, "$ORIGIN {}", presentation_name(origin)?);
    let _ = writeln!(out, "$TTL {ttl}");
    if let Some(soa) = soa {
        out.push_str(&render_line(origin, soa)?);
    }
    for entry in sorted {
        out.push_str(&render_line(origin, &entry.record)?);
    }
    Ok(out)
}

/// One record as a line: owner relative to the origin (`@` for the apex),
/// TTL, class, type and RDATA.
pub(super) fn render_line(origin: &Name, record: &Record) -> Result<String, String> {
    let owner = if record.name == *origin {
        "@".to_string()
    } else if origin.zone_of(&record.name) {
        // Not `num_labels`: it leaves out a leading `*` (RFC 4034 label count).
        let keep = record.name.iter().count() - origin.iter().count();
        let mut s = String::new();
        for (i, label) in record.name.iter().take(keep).enumerate() {
            if i > 0 {
                s.push('.');
            }
            push_label(&mut s, label, &record.name)?;
        }
        s
    } else {
        presentation_name(&record.name)?
    };
    let rdata = presentation_rdata(&record.data).map_err(|e| {
        format!(
            "{} {}: {e}",
            canonical_name(&record.name),
            record.record_type()
        )
    })?;
    Ok(format!(
        "{owner} {} {} {} {rdata}\n",
        record.ttl,
        record.dns_class,
        record.record_type()
    ))
}

/// RDATA in presentation form. hickory's `Display` is used where it reads
/// back the same (addresses, and the types this module does not know); names,
/// TXT, CAA and HINFO are written here because hickory 0.26 prints IDN labels
/// as Unicode, escapes with octal `\DDD`, and prints character-strings
/// without quotes.
pub(super) fn presentation_rdata(rdata: &RData) -> Result<String, String> {
    Ok(match rdata {
        RData::A(a) => a.to_string(),
        RData::AAAA(a) => a.to_string(),
        RData::CNAME(n) => presentation_name(&n.0)?,
        RData::NS(n) => presentation_name(&n.0)?,
        RData::PTR(n) => presentation_name(&n.0)?,
        RData::ANAME(n) => presentation_name(&n.0)?,
        RData::MX(mx) => format!("{} {}", mx.preference, presentation_name(&mx.exchange)?),
        RData::SRV(srv) => format!(
            "{} {} {} {}",
            srv.priority,
            srv.weight,
            srv.port,
            presentation_name(&srv.target)?
        ),
        RData::TXT(txt) => {
            let mut parts = Vec::new();
            for s in txt.txt_data.iter() {
                let s =
                    std::str::from_utf8(s).map_err(|_| "TXT data is not UTF-8 text".to_string())?;
                for chunk in split_character_strings(s) {
                    parts.push(quoted(chunk));
                }
            }
            if parts.is_empty() {
                parts.push("\"\"".to_string());
            }
            parts.join(" ")
        }
        RData::CAA(caa) => format!("{} {} {}", caa.flags(), caa.tag, quoted(&caa.value)),
        RData::HINFO(h) => format!("{} {}", quoted(&h.cpu), quoted(&h.os)),
        RData::SOA(soa) => format!(
            "{} {} {} {} {} {} {}",
            presentation_name(&soa.mname)?,
            presentation_name(&soa.rname)?,
            soa.serial,
            soa.refresh,
            soa.retry,
            soa.expire,
            soa.minimum
        ),
        other => other.to_string(),
    })
}

/// A character-string in quotes as RFC 1035 writes it: `"` and `\` escaped
/// with a backslash, bytes outside printable ASCII as decimal `\DDD` (Knot
/// refuses raw non-ASCII bytes; [`prepare`] decodes the escapes on reading).
pub(super) fn quoted(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for &b in bytes {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\{b:03}");
            }
        }
    }
    out.push('"');
    out
}

/// A fully qualified name with its trailing dot, as the file holds it.
pub(super) fn presentation_name(name: &Name) -> Result<String, String> {
    if name.is_root() {
        return Ok(".".to_string());
    }
    let mut out = String::with_capacity(name.len() + 1);
    for label in name.iter() {
        push_label(&mut out, label, name)?;
        out.push('.');
    }
    Ok(out)
}

/// Appends one label. Only letters, digits, `-`, `_` and `*` are written:
/// anything else would need an escape the parser reads differently from other
/// DNS servers.
pub(super) fn push_label(out: &mut String, label: &[u8], name: &Name) -> Result<(), String> {
    for &b in label {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*') {
            out.push(char::from(b));
        } else {
            return Err(format!(
                "the name {} holds a character that cannot be written portably",
                canonical_name(name)
            ));
        }
    }
    Ok(())
}

/// Parses the rendered file again and checks it holds exactly `zone`.
pub(super) fn verify(text: &str, origin: &Name, zone: &ZoneData) -> Result<(), String> {
    let back =
        parse_zone(text, origin).map_err(|e| format!("the rewritten file would not parse: {e}"))?;
    if back.soa.as_ref().map(|r| &r.data) != zone.soa.as_ref().map(|r| &r.data) {
        return Err("the rewritten file would not read back the same SOA".to_string());
    }
    let mut want: Vec<_> = zone.entries.iter().map(Entry::fields).collect();
    let mut got: Vec<_> = back.entries.iter().map(Entry::fields).collect();
    want.sort_unstable();
    got.sort_unstable();
    if want != got {
        let describe = |entries: &[Entry], other: &[(&str, Option<u32>, u32, u16)]| {
            entries
                .iter()
                .find(|e| other.binary_search(&e.fields()).is_err())
                .map(|e| format!("{} {} {:?}", e.rtype, e.name, e.content))
        };
        return Err(format!(
            "the rewritten file would not read back the same records (lost {:?}, gained {:?}); fix that record by hand",
            describe(&zone.entries, &got),
            describe(&back.entries, &want),
        ));
    }
    Ok(())
}
