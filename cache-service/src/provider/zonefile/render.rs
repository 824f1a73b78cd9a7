//! Writing a zone file's text: the RDATA a validated spec asks for, the
//! presentation form of every record, the whole file sorted so diffs stay
//! small, and the check that the text reads back as the zone it came from.

use std::fmt::Write as _;

use hickory_proto::rr::{Name, RData, Record};

use super::parse::{Entry, ZoneData, canonical_name, parse_zone};
use crate::provider::MANAGED_COMMENT;
use crate::provider::rdata::character_strings;

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
                for chunk in character_strings(s) {
                    parts.push(quoted(chunk.as_bytes()));
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
