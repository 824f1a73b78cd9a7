//! Reading a zone file: hickory-proto's parser, with the labels it cannot
//! read (underscores inside labels, escapes) masked first and restored after,
//! and each record put in the project's canonical form with its derived id.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;

use hickory_proto::rr::rdata::{ANAME, CNAME, MX, NS, PTR, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType as WireType};
use hickory_proto::serialize::txt::{ParseError, Parser};

use crate::provider::{ProviderRecord, derived_id};

/// One record of the file other than the zone's SOA, with its derived fields.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub(super) record: Record,
    pub(super) id: String,
    pub(super) rtype: String,
    /// Canonical name: lowercase, no trailing dot.
    pub(super) name: String,
    /// Canonical content, as `validate::parse_content` produces it.
    pub(super) content: String,
    pub(super) priority: Option<u32>,
}

impl Entry {
    pub(super) fn new(record: Record) -> Self {
        let rtype = record.record_type().to_string();
        let name = canonical_name(&record.name);
        let (content, priority) = canonical_content(&record.data);
        let id = derived_id(&rtype, &name, &content);
        Entry {
            record,
            id,
            rtype,
            name,
            content,
            priority,
        }
    }

    /// Whether `list` shows it: in the zone, and not an SOA.
    pub(super) fn listed(&self, origin: &Name) -> bool {
        self.record.record_type() != WireType::SOA && origin.zone_of(&self.record.name)
    }

    pub(super) fn is_cname(&self) -> bool {
        self.record.record_type() == WireType::CNAME
    }

    pub(super) fn to_provider(&self) -> ProviderRecord {
        ProviderRecord {
            id: self.id.clone(),
            rtype: self.rtype.clone(),
            name: self.name.clone(),
            content: self.content.clone(),
            ttl: self.record.ttl,
            proxied: false,
            priority: self.priority,
            comment: String::new(),
        }
    }

    /// What must survive a write and a re-read unchanged: the id stands for
    /// type, name and content.
    pub(super) fn fields(&self) -> (&str, Option<u32>, u32, u16) {
        (
            &self.id,
            self.priority,
            self.record.ttl,
            u16::from(self.record.dns_class),
        )
    }
}

/// A parsed zone file.
#[derive(Debug, Default)]
pub(super) struct ZoneData {
    /// The SOA at the zone apex, if the file has one.
    pub(super) soa: Option<Record>,
    /// Every other record, in the parser's order.
    pub(super) entries: Vec<Entry>,
}

/// Parses a whole zone file, refusing the constructs the parser would misread.
///
/// Names with `_` inside a label (`my_host`), which RFC 2181 allows and Knot,
/// BIND and NSD load, are refused by hickory's name parser (it applies the
/// host-name rules of UTS 46 unless a label starts with `_`). A file the
/// parser refuses for a label is therefore parsed once more with such labels
/// masked ([`Masked`]), and the names read are unmasked.
pub(super) fn parse_zone(text: &str, origin: &Name) -> Result<ZoneData, String> {
    let text = prepare(text)?;
    let records = match parse_records(&text, origin) {
        Ok(records) => records,
        Err(e) if is_label_error(&e) => {
            let masked = Masked::new(&text);
            parse_records(&masked.text, origin)
                .map_err(|e| parse_failure(&e))?
                .into_iter()
                .map(|r| masked.unmask(r))
                .collect::<Result<Vec<_>, _>>()?
        }
        Err(e) => return Err(parse_failure(&e)),
    };
    let mut zone = ZoneData::default();
    for record in records {
        if record.record_type() == WireType::SOA {
            if record.name != *origin {
                return Err(format!(
                    "it holds an SOA for {}, but the configured zone is {}",
                    canonical_name(&record.name),
                    canonical_name(origin)
                ));
            }
            zone.soa = Some(record);
        } else {
            zone.entries.push(Entry::new(record));
        }
    }
    Ok(zone)
}

/// Every record of `text`, in the parser's order.
pub(super) fn parse_records(text: &str, origin: &Name) -> Result<Vec<Record>, ParseError> {
    let (_, sets) = Parser::new(text, None, Some(origin.clone())).parse()?;
    Ok(sets
        .into_values()
        .flat_map(|set| set.into_parts().records)
        .collect())
}

/// Whether hickory refused a name's label (its message then carries the
/// internal error of its IDNA library, which is never shown).
pub(super) fn is_label_error(e: &ParseError) -> bool {
    e.to_string().contains("Label contains invalid characters")
}

/// A parse failure in words a person can act on.
pub(super) fn parse_failure(e: &ParseError) -> String {
    if is_label_error(e) {
        "cannot parse it: a name holds a character other than letters, digits, '-' and '_' \
         (or a leading '*'); rename it"
            .to_string()
    } else {
        format!("cannot parse it: {e}")
    }
}

/// A zone file whose labels with an inner `_` (letters, digits, `-` and `_`,
/// not starting with `_`) are replaced by placeholders hickory accepts:
/// `{prefix}{n}_`, where the prefix starts with `_` and occurs nowhere in the
/// file, so a placeholder can only be one of ours. Quoted strings and comments
/// are left alone; an unquoted TXT word is masked like a name and unmasked
/// again in the TXT data.
pub(super) struct Masked<'a> {
    pub(super) text: Cow<'a, str>,
    pub(super) prefix: String,
    /// The original labels; placeholder `n` stands for `originals[n]`.
    pub(super) originals: Vec<String>,
}

impl<'a> Masked<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        let prefix = (0u32..)
            .map(|i| format!("_trafego{i}x"))
            .find(|p| !text.contains(p.as_str()))
            .unwrap_or_default();
        let mut m = Masked {
            text: Cow::Borrowed(text),
            prefix,
            originals: Vec::new(),
        };
        let mut index: HashMap<&'a str, usize> = HashMap::new();
        let mut out = String::new();
        let mut copied = 0;
        // Words as `prepare` and the lexer see them: ended by blanks, line
        // ends, `;` and `)`; a `"` opens a quoted string only at a word's start.
        let (mut in_quote, mut in_comment) = (false, false);
        let mut word: Option<usize> = None;
        let bytes = text.as_bytes();
        let mut i = 0;
        while i <= bytes.len() {
            let b = bytes.get(i).copied();
            if in_comment {
                in_comment = b != Some(b'\n');
            } else if in_quote {
                match b {
                    Some(b'\\') => i += 1,
                    Some(b'"') => in_quote = false,
                    _ => {}
                }
            } else {
                let ends = matches!(b, None | Some(b' ' | b'\t' | b'\r' | b'\n' | b';' | b')'));
                match word {
                    Some(from) if ends => {
                        if let Some(masked) = m.mask_word(&text[from..i], &mut index) {
                            out.push_str(&text[copied..from]);
                            out.push_str(&masked);
                            copied = i;
                        }
                        word = None;
                    }
                    None if !ends => match b {
                        Some(b'"') => in_quote = true,
                        Some(b'(') => {}
                        _ => word = Some(i),
                    },
                    _ => {}
                }
                in_comment = b == Some(b';');
            }
            i += 1;
        }
        if !m.originals.is_empty() {
            out.push_str(&text[copied..]);
            m.text = Cow::Owned(out);
        }
        m
    }

    /// The word with its labels that need it masked, or `None` if none does
    /// (or it holds an escape, which is left to the parser).
    pub(super) fn mask_word(
        &mut self,
        word: &'a str,
        index: &mut HashMap<&'a str, usize>,
    ) -> Option<String> {
        if word.contains('\\') || !word.split('.').any(needs_mask) {
            return None;
        }
        let mut out = String::with_capacity(word.len() + 16);
        for (i, label) in word.split('.').enumerate() {
            if i > 0 {
                out.push('.');
            }
            if needs_mask(label) {
                let n = *index.entry(label).or_insert_with(|| {
                    self.originals.push(label.to_string());
                    self.originals.len() - 1
                });
                let _ = write!(out, "{}{n}_", self.prefix);
            } else {
                out.push_str(label);
            }
        }
        Some(out)
    }

    /// The original label a placeholder label stands for.
    pub(super) fn original(&self, label: &[u8]) -> Option<&str> {
        let n = label
            .strip_prefix(self.prefix.as_bytes())?
            .strip_suffix(b"_")?;
        let n: usize = std::str::from_utf8(n).ok()?.parse().ok()?;
        self.originals.get(n).map(String::as_str)
    }

    /// `name` with its placeholder labels replaced by the originals.
    pub(super) fn name(&self, name: &Name) -> Result<Name, String> {
        if !name.iter().any(|l| self.original(l).is_some()) {
            return Ok(name.clone());
        }
        let labels: Vec<Vec<u8>> = name
            .iter()
            .map(|l| {
                self.original(l)
                    .map_or_else(|| l.to_vec(), |o| o.as_bytes().to_vec())
            })
            .collect();
        let mut out = Name::from_labels(labels).map_err(|e| e.to_string())?;
        out.set_fqdn(name.is_fqdn());
        Ok(out)
    }

    /// Text data with every placeholder replaced by its original.
    pub(super) fn bytes(&self, data: &[u8]) -> Vec<u8> {
        let Ok(text) = std::str::from_utf8(data) else {
            return data.to_vec();
        };
        if !text.contains(self.prefix.as_str()) {
            return data.to_vec();
        }
        let mut out = text.to_string();
        for (n, original) in self.originals.iter().enumerate() {
            out = out.replace(&format!("{}{n}_", self.prefix), original);
        }
        out.into_bytes()
    }

    /// A record read from the masked text, as the file holds it.
    pub(super) fn unmask(&self, record: Record) -> Result<Record, String> {
        let name = self.name(&record.name)?;
        let data = match record.data {
            RData::CNAME(n) => RData::CNAME(CNAME(self.name(&n.0)?)),
            RData::NS(n) => RData::NS(NS(self.name(&n.0)?)),
            RData::PTR(n) => RData::PTR(PTR(self.name(&n.0)?)),
            RData::ANAME(n) => RData::ANAME(ANAME(self.name(&n.0)?)),
            RData::MX(mx) => RData::MX(MX::new(mx.preference, self.name(&mx.exchange)?)),
            RData::SRV(srv) => RData::SRV(SRV::new(
                srv.priority,
                srv.weight,
                srv.port,
                self.name(&srv.target)?,
            )),
            RData::SOA(mut soa) => {
                soa.mname = self.name(&soa.mname)?;
                soa.rname = self.name(&soa.rname)?;
                RData::SOA(soa)
            }
            RData::TXT(txt) => {
                let parts: Vec<Vec<u8>> = txt.txt_data.iter().map(|s| self.bytes(s)).collect();
                RData::TXT(TXT::from_bytes(parts.iter().map(Vec::as_slice).collect()))
            }
            RData::CAA(mut caa) => {
                caa.value = self.bytes(&caa.value);
                RData::CAA(caa)
            }
            RData::HINFO(mut h) => {
                h.cpu = self.bytes(&h.cpu).into_boxed_slice();
                h.os = self.bytes(&h.os).into_boxed_slice();
                RData::HINFO(h)
            }
            other => {
                if other.to_string().contains(self.prefix.as_str()) {
                    return Err(format!(
                        "cannot parse it: the {} record of {} holds a word with '_' inside it that cannot be read; quote it",
                        other.record_type(),
                        canonical_name(&name)
                    ));
                }
                other
            }
        };
        let mut out = Record::from_rdata(name, record.ttl, data);
        out.dns_class = record.dns_class;
        Ok(out)
    }
}

/// Whether a label must be masked for hickory's parser: only letters,
/// digits, `-` and `_`, with an `_` but not as its first character.
pub(super) fn needs_mask(label: &str) -> bool {
    label.contains('_')
        && !label.starts_with('_')
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Prepares a zone file for hickory-proto 0.26's parser, which accepts some
/// constructs and then silently reads them wrong. So that a hand edit is never
/// "round-tripped" into corrupted data, this refuses quoted strings inside
/// parentheses (the parser splits them at spaces and takes `;` as a comment),
/// `\DDD` escapes outside quoted strings (names: the parser reads them as
/// octal), and `$INCLUDE` (it would be flattened into this file on the next
/// write). `\DDD` escapes inside quoted strings, which the parser decodes
/// wrongly but which RFC 1035 and other servers need for non-ASCII bytes, are
/// decoded here into the characters they stand for (they must form UTF-8).
pub(super) fn prepare(text: &str) -> Result<Cow<'_, str>, String> {
    let bytes = text.as_bytes();
    let (mut line, mut depth) = (1usize, 0usize);
    let (mut in_quote, mut in_comment, mut line_start) = (false, false, true);
    let mut in_word = false;
    let ddd = |i: usize| {
        (bytes.get(i) == Some(&b'\\')
            && bytes.len() > i + 3
            && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit))
        .then(|| {
            u32::from(bytes[i + 1] - b'0') * 100
                + u32::from(bytes[i + 2] - b'0') * 10
                + u32::from(bytes[i + 3] - b'0')
        })
    };
    let digit_after = |i: usize| bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
    // The rewritten text, once an escape needed decoding, and how far `text`
    // has been copied into it.
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\n' {
            line += 1;
            in_comment = false;
            in_word = false;
            line_start = true;
            i += 1;
            continue;
        }
        if in_comment {
        } else if in_quote {
            match b {
                b'"' => in_quote = false,
                b'\\' if digit_after(i) => {
                    let start = i;
                    let mut run = Vec::new();
                    while let Some(value) = ddd(i) {
                        let byte = u8::try_from(value).map_err(|_| {
                            format!("line {line}: \\{value:03} is not a byte value")
                        })?;
                        run.push(byte);
                        i += 4;
                    }
                    if run.is_empty() {
                        return Err(format!("line {line}: a \\DDD escape needs three digits"));
                    }
                    let decoded = String::from_utf8(run).map_err(|_| {
                        format!("line {line}: \\DDD escapes must spell UTF-8 text; binary strings are not supported")
                    })?;
                    let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
                    buf.push_str(&text[copied..start]);
                    for c in decoded.chars() {
                        if c == '"' || c == '\\' {
                            buf.push('\\');
                        }
                        buf.push(c);
                    }
                    copied = i;
                    line_start = false;
                    continue;
                }
                b'\\' => {
                    i += 1;
                    if bytes.get(i) == Some(&b'\n') {
                        line += 1;
                    }
                }
                _ => {}
            }
        } else {
            if line_start && depth == 0 && text[i..].starts_with("$INCLUDE") {
                return Err(format!(
                    "line {line}: $INCLUDE is not supported; keep the whole zone in this file"
                ));
            }
            // Like the parser, a `"` or `(` inside a word is just a character.
            match b {
                b';' => {
                    in_comment = true;
                    in_word = false;
                }
                b'"' if !in_word && depth > 0 => {
                    return Err(format!(
                        "line {line}: quoted strings inside parentheses are misread by the parser; put the record's strings on one line without parentheses"
                    ));
                }
                b'"' if !in_word => in_quote = true,
                b'(' if !in_word => depth += 1,
                b')' => {
                    depth = depth.saturating_sub(1);
                    in_word = false;
                }
                b'\\' if digit_after(i) => {
                    return Err(format!(
                        "line {line}: \\DDD escapes outside quoted strings are not supported (the parser reads them as octal)"
                    ));
                }
                b' ' | b'\t' | b'\r' => in_word = false,
                _ => in_word = true,
            }
        }
        line_start = false;
        i += 1;
    }
    Ok(match out {
        Some(mut buf) => {
            buf.push_str(&text[copied..]);
            Cow::Owned(buf)
        }
        None => Cow::Borrowed(text),
    })
}

/// A name as the project writes names: lowercase, no trailing dot (`.` for
/// the root). Bytes outside printable ASCII are shown as `\DDD` (decimal).
pub(super) fn canonical_name(name: &Name) -> String {
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

/// Content in the form `validate::parse_content` produces, and the priority
/// for MX and SRV.
pub(super) fn canonical_content(rdata: &RData) -> (String, Option<u32>) {
    match rdata {
        RData::A(a) => (a.0.to_string(), None),
        RData::AAAA(a) => (a.0.to_string(), None),
        RData::CNAME(n) => (canonical_name(&n.0), None),
        RData::NS(n) => (canonical_name(&n.0), None),
        RData::PTR(n) => (canonical_name(&n.0), None),
        RData::ANAME(n) => (canonical_name(&n.0), None),
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
            let bytes: Vec<u8> = txt
                .txt_data
                .iter()
                .flat_map(|s| s.iter().copied())
                .collect();
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
