//! The RFC 1035 zone-file provider, the project's default: the zone lives in
//! one text file that any authoritative server (Knot, BIND, NSD, CoreDNS) can
//! load, and that people may also edit by hand.
//!
//! The file is read with hickory-proto's zone parser on every listing, so hand
//! edits show up; writes re-read it, apply the ops, bump the SOA serial and
//! replace the file atomically (temp file, `sync_all`, rename, directory
//! fsync). This module must never leave a torn or half-written zone file, never
//! rewrite a file it could not parse completely (a half-edited file yields
//! [`ProviderError::Unavailable`] and the caller keeps its snapshot), and never
//! write a record that the parser would read back differently: every new record
//! and every rewritten file is parsed again and compared before it replaces
//! the old file.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use hickory_proto::rr::rdata::{A, AAAA, ANAME, CAA, CNAME, MX, NS, PTR, SOA, SRV, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType as WireType};
use hickory_proto::serialize::txt::{ParseError, Parser};
use trafego_proto::validate::{
    Hostname, RecordSpec, RecordType, TTL_AUTO, TTL_MAX, TTL_MIN, ValidRecordInput,
};

use super::{
    Capabilities, DERIVED_ID_FORMAT, DnsProvider, Listing, MANAGED_COMMENT, ProviderError,
    ProviderRecord, WriteOp, WriteResult, derived_id,
};

/// The TTL written for "automatic" records and as the file's `$TTL` when the
/// configuration does not choose one: five minutes, short enough for the
/// container churn TrafegoDNS follows.
pub const DEFAULT_TTL: u32 = 300;

/// The name server a new zone names when the configuration does not choose
/// one: `localhost.`, as BIND's own `db.local` and `db.empty` do. It lies
/// outside every zone the app manages, so the zone needs no glue for it and
/// loads in BIND and Knot as written; a real deployment names its server.
pub const DEFAULT_NAME_SERVER: &str = "localhost";

/// Longest TTL a zone file may carry (RFC 2181 section 8).
const MAX_TTL: u32 = i32::MAX as u32;

/// Longest character-string in a TXT or CAA record (RFC 1035 section 3.3).
const MAX_CHARACTER_STRING: usize = 255;

/// How many times `apply` re-reads a file that changed on disk while it was
/// preparing the new version (someone saving a hand edit at that moment).
const MAX_WRITE_ATTEMPTS: usize = 3;

/// Where and what the zone file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneFileConfig {
    /// The zone file. Its parent directory is created if missing.
    pub path: PathBuf,
    /// The zone the file holds; written as `$ORIGIN`, and every record written
    /// must lie in it.
    pub zone: Hostname,
    /// TTL written for records asking for "automatic" (ttl 1) and the zone's
    /// `$TTL`; [`DEFAULT_TTL`] unless configured.
    pub default_ttl: u32,
    /// The zone's name server, written into a new file as the SOA's primary
    /// and the apex NS record (an existing file is left as it is).
    /// [`DEFAULT_NAME_SERVER`] unless configured.
    pub name_server: Hostname,
    /// Addresses of `name_server`, written into a new file as its A/AAAA
    /// records (the glue BIND and Knot need when the name server lies inside
    /// the zone). Required for a name server inside the zone, refused for one
    /// outside it.
    pub name_server_addresses: Vec<IpAddr>,
}

impl ZoneFileConfig {
    /// A configuration with the default TTL and name server, for callers that
    /// only know where the file is and which zone it holds.
    pub fn new(path: impl Into<PathBuf>, zone: Hostname) -> Self {
        ZoneFileConfig {
            path: path.into(),
            zone,
            default_ttl: DEFAULT_TTL,
            name_server: Hostname::parse_target("name server", DEFAULT_NAME_SERVER)
                .expect("the default name server is a valid name"),
            name_server_addresses: Vec::new(),
        }
    }
}

/// A zone held in an RFC 1035 zone file: no account, no network, and any DNS
/// server can serve the result.
///
/// Record ids are derived from the record itself (type, name and content), so
/// they survive restarts and hand edits of other records; an update that
/// changes the content therefore returns a new id.
pub struct ZoneFileProvider {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ZoneFileConfig,
    /// The zone as a fully qualified hickory name.
    origin: Name,
    /// Serialises writers of this process: each holds it from reading the file
    /// to renaming the new one over it.
    write_lock: Mutex<()>,
}

impl ZoneFileProvider {
    /// Opens (creating it, with an SOA, the name server's NS record and, for a
    /// name server inside the zone, its glue, if it does not exist; file mode
    /// 0644, parent dir created) the zone file. A name server inside the zone
    /// without addresses, or outside it with some, is refused: BIND would
    /// refuse or ignore the file's NS data.
    ///
    /// An existing file is not parsed here: a file broken by a hand edit must
    /// not stop the service from starting, it makes `list` and `apply` return
    /// `Unavailable` until it is fixed.
    pub fn open(cfg: ZoneFileConfig) -> Result<Self, ProviderError> {
        if cfg.default_ttl == 0 || cfg.default_ttl > MAX_TTL {
            return Err(ProviderError::Invalid(format!(
                "zone file default TTL {} is out of range 1 to {MAX_TTL}",
                cfg.default_ttl
            )));
        }
        let origin = Name::from_ascii(format!("{}.", cfg.zone.as_str())).map_err(|e| {
            ProviderError::Invalid(format!("zone {} is not a valid DNS name: {e}", cfg.zone))
        })?;
        check_name_server(&cfg, &origin)?;
        let inner = Inner {
            cfg,
            origin,
            write_lock: Mutex::new(()),
        };
        let path = &inner.cfg.path;
        match fs::metadata(path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => {
                return Err(ProviderError::Unavailable(format!(
                    "zone file {}: not a regular file",
                    path.display()
                )));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => inner.create_initial()?,
            Err(e) => return Err(unavailable(path, format!("cannot read it: {e}"))),
        }
        inner.remove_stale_temp_files();
        Ok(ZoneFileProvider {
            inner: Arc::new(inner),
        })
    }

    /// The configuration the provider was opened with.
    pub fn config(&self) -> &ZoneFileConfig {
        &self.inner.cfg
    }
}

impl DnsProvider for ZoneFileProvider {
    fn name(&self) -> &'static str {
        "zonefile"
    }

    fn zone(&self) -> &Hostname {
        &self.inner.cfg.zone
    }

    /// Every type the project manages and the contract's whole TTL range; no
    /// proxying, no CNAME at the apex (the SOA and NS live there), no
    /// comments; one file write takes any number of changes. Ids are the 32
    /// hex digits [`derived_id`] makes.
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            record_types: RecordType::ALL.to_vec(),
            proxied: false,
            min_ttl: TTL_MIN,
            max_ttl: TTL_MAX,
            cname_at_apex: false,
            batch_size: 0,
            comments: false,
            id_format: DERIVED_ID_FORMAT,
        }
    }

    fn list(&self) -> BoxFuture<'_, Result<Listing, ProviderError>> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || inner.list_blocking())
                .await
                .map_err(|e| ProviderError::Other(format!("zone file listing task failed: {e}")))?
        })
    }

    fn apply(&self, ops: Vec<WriteOp>) -> BoxFuture<'_, (Vec<WriteResult>, u64)> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            if ops.is_empty() {
                return (Vec::new(), 0);
            }
            let n = ops.len();
            match tokio::task::spawn_blocking(move || inner.apply_blocking(&ops)).await {
                Ok(results) => (results, 1),
                Err(e) => {
                    let msg = format!("zone file write task failed: {e}");
                    (
                        (0..n)
                            .map(|_| Err(ProviderError::Other(msg.clone())))
                            .collect(),
                        1,
                    )
                }
            }
        })
    }
}

fn unavailable(path: &Path, msg: impl std::fmt::Display) -> ProviderError {
    ProviderError::Unavailable(format!("zone file {}: {msg}", path.display()))
}

impl Inner {
    /// The file to read and replace: the configured path with symlinks
    /// resolved, so a symlinked zone file stays a symlink.
    fn target_path(&self) -> PathBuf {
        fs::canonicalize(&self.cfg.path).unwrap_or_else(|_| self.cfg.path.clone())
    }

    fn read(&self, path: &Path) -> Result<(Vec<u8>, ZoneData), ProviderError> {
        let bytes =
            fs::read(path).map_err(|e| unavailable(path, format!("cannot read it: {e}")))?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| unavailable(path, format!("not UTF-8 text: {e}")))?;
        let zone = parse_zone(text, &self.origin).map_err(|e| unavailable(path, e))?;
        Ok((bytes, zone))
    }

    fn list_blocking(&self) -> Result<Listing, ProviderError> {
        let path = self.target_path();
        let (_, zone) = self.read(&path)?;
        let mut seen = HashSet::new();
        let records = zone
            .entries
            .iter()
            .filter(|e| e.listed(&self.origin) && seen.insert(e.id.as_str()))
            .map(Entry::to_provider)
            .collect();
        Ok(Listing {
            records,
            requests: 1,
        })
    }

    fn apply_blocking(&self, ops: &[WriteOp]) -> Vec<WriteResult> {
        let _guard = self
            .write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let path = self.target_path();
        let fail_all = |e: ProviderError| ops.iter().map(|_| Err(e.clone())).collect();
        for _ in 0..MAX_WRITE_ATTEMPTS {
            let (original, zone) = match self.read(&path) {
                Ok(read) => read,
                Err(e) => return fail_all(e),
            };
            let mut work = Working::new(zone, &self.origin);
            let results: Vec<WriteResult> = ops.iter().map(|op| work.apply(self, op)).collect();
            if !work.changed {
                return results;
            }
            let text = match work.finish(self) {
                Ok(text) => text,
                Err(msg) => return void_successes(results, &unavailable(&path, msg)),
            };
            let mode = fs::metadata(&path)
                .map(|m| m.permissions().mode() & 0o7777)
                .unwrap_or(0o644);
            let unchanged = || fs::read(&path).map(|now| now == original);
            match write_atomic(&path, text.as_bytes(), mode, Commit::Replace(&unchanged)) {
                Ok(true) => return results,
                Ok(false) => continue,
                Err(e) => {
                    let err = unavailable(&path, format!("cannot write it: {e}"));
                    return void_successes(results, &err);
                }
            }
        }
        fail_all(unavailable(
            &path,
            "it kept changing on disk while the new version was being written; try again",
        ))
    }

    /// Writes the initial zone: the SOA, the NS record of the configured name
    /// server and, when that server lies inside the zone, its addresses (glue),
    /// so BIND and Knot load the file as written. Nothing else.
    fn create_initial(&self) -> Result<(), ProviderError> {
        let path = &self.cfg.path;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir)
                .map_err(|e| unavailable(path, format!("cannot create its directory: {e}")))?;
        }
        let ttl = self.cfg.default_ttl;
        let ns = name_server(&self.cfg)?;
        let mut zone = ZoneData::default();
        zone.entries.push(Entry::new(Record::from_rdata(
            self.origin.clone(),
            ttl,
            RData::NS(NS(ns.clone())),
        )));
        for addr in &self.cfg.name_server_addresses {
            let rdata = match *addr {
                IpAddr::V4(a) => RData::A(A(a)),
                IpAddr::V6(a) => RData::AAAA(AAAA(a)),
            };
            zone.entries
                .push(Entry::new(Record::from_rdata(ns.clone(), ttl, rdata)));
        }
        let soa = default_soa(&self.origin, &ns, ttl)
            .map_err(|e| unavailable(path, format!("cannot build its SOA: {e}")))?;
        zone.soa = Some(soa);
        let text = render(&self.origin, ttl, zone.soa.as_ref(), zone.entries.iter())
            .and_then(|text| verify(&text, &self.origin, &zone).map(|()| text))
            .map_err(|e| unavailable(path, e))?;
        write_atomic(path, text.as_bytes(), 0o644, Commit::CreateNew)
            .map_err(|e| unavailable(path, format!("cannot create it: {e}")))?;
        Ok(())
    }

    /// Removes temp files left by a writer killed between creating and renaming one.
    fn remove_stale_temp_files(&self) {
        let path = self.target_path();
        let (Some(dir), Some(prefix)) = (parent_dir(&path), temp_prefix(&path)) else {
            return;
        };
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// After a failed write, every op that had succeeded in memory failed too.
fn void_successes(results: Vec<WriteResult>, err: &ProviderError) -> Vec<WriteResult> {
    results
        .into_iter()
        .map(|r| r.and_then(|_| Err(err.clone())))
        .collect()
}

/// The configured name server as a fully qualified name.
fn name_server(cfg: &ZoneFileConfig) -> Result<Name, ProviderError> {
    Name::from_ascii(format!("{}.", cfg.name_server.as_str())).map_err(|e| {
        ProviderError::Invalid(format!(
            "name server {} is not a valid DNS name: {e}",
            cfg.name_server
        ))
    })
}

/// A name server inside the zone needs its addresses in the zone (glue), or
/// BIND refuses the zone; one outside the zone must not have them (they
/// belong to its own zone, and BIND ignores them as out-of-zone data).
fn check_name_server(cfg: &ZoneFileConfig, origin: &Name) -> Result<(), ProviderError> {
    let ns = name_server(cfg)?;
    let inside = origin.zone_of(&ns);
    if inside && cfg.name_server_addresses.is_empty() {
        return Err(ProviderError::Invalid(format!(
            "name server {} lies inside the zone {}: give its address (the zone must carry its \
             glue), or name a server outside the zone",
            cfg.name_server, cfg.zone
        )));
    }
    if !inside && !cfg.name_server_addresses.is_empty() {
        return Err(ProviderError::Invalid(format!(
            "name server {} lies outside the zone {}: its addresses belong in its own zone, \
             not in this one",
            cfg.name_server, cfg.zone
        )));
    }
    Ok(())
}

/// The SOA of a new zone: serial 1, `ns` as primary, hostmaster@<zone>.
fn default_soa(origin: &Name, ns: &Name, ttl: u32) -> Result<Record, String> {
    let mname = ns.clone();
    let rname = origin
        .prepend_label("hostmaster")
        .map_err(|e| e.to_string())?;
    let soa = SOA::new(mname, rname, 1, 3600, 600, 604_800, ttl);
    Ok(Record::from_rdata(origin.clone(), ttl, RData::SOA(soa)))
}

// ---------------------------------------------------------------------------
// The zone in memory.

/// One record of the file other than the zone's SOA, with its derived fields.
#[derive(Debug, Clone)]
struct Entry {
    record: Record,
    id: String,
    rtype: String,
    /// Canonical name: lowercase, no trailing dot.
    name: String,
    /// Canonical content, as `validate::parse_content` produces it.
    content: String,
    priority: Option<u32>,
}

impl Entry {
    fn new(record: Record) -> Self {
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
    fn listed(&self, origin: &Name) -> bool {
        self.record.record_type() != WireType::SOA && origin.zone_of(&self.record.name)
    }

    fn is_cname(&self) -> bool {
        self.record.record_type() == WireType::CNAME
    }

    fn to_provider(&self) -> ProviderRecord {
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
    fn fields(&self) -> (&str, Option<u32>, u32, u16) {
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
struct ZoneData {
    /// The SOA at the zone apex, if the file has one.
    soa: Option<Record>,
    /// Every other record, in the parser's order.
    entries: Vec<Entry>,
}

/// Parses a whole zone file, refusing the constructs the parser would misread.
///
/// Names with `_` inside a label (`my_host`), which RFC 2181 allows and Knot,
/// BIND and NSD load, are refused by hickory's name parser (it applies the
/// host-name rules of UTS 46 unless a label starts with `_`). A file the
/// parser refuses for a label is therefore parsed once more with such labels
/// masked ([`Masked`]), and the names read are unmasked.
fn parse_zone(text: &str, origin: &Name) -> Result<ZoneData, String> {
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
fn parse_records(text: &str, origin: &Name) -> Result<Vec<Record>, ParseError> {
    let (_, sets) = Parser::new(text, None, Some(origin.clone())).parse()?;
    Ok(sets
        .into_values()
        .flat_map(|set| set.into_parts().records)
        .collect())
}

/// Whether hickory refused a name's label (its message then carries the
/// internal error of its IDNA library, which is never shown).
fn is_label_error(e: &ParseError) -> bool {
    e.to_string().contains("Label contains invalid characters")
}

/// A parse failure in words a person can act on.
fn parse_failure(e: &ParseError) -> String {
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
struct Masked<'a> {
    text: Cow<'a, str>,
    prefix: String,
    /// The original labels; placeholder `n` stands for `originals[n]`.
    originals: Vec<String>,
}

impl<'a> Masked<'a> {
    fn new(text: &'a str) -> Self {
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
    fn mask_word(&mut self, word: &'a str, index: &mut HashMap<&'a str, usize>) -> Option<String> {
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
    fn original(&self, label: &[u8]) -> Option<&str> {
        let n = label
            .strip_prefix(self.prefix.as_bytes())?
            .strip_suffix(b"_")?;
        let n: usize = std::str::from_utf8(n).ok()?.parse().ok()?;
        self.originals.get(n).map(String::as_str)
    }

    /// `name` with its placeholder labels replaced by the originals.
    fn name(&self, name: &Name) -> Result<Name, String> {
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
    fn bytes(&self, data: &[u8]) -> Vec<u8> {
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
    fn unmask(&self, record: Record) -> Result<Record, String> {
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
fn needs_mask(label: &str) -> bool {
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
fn prepare(text: &str) -> Result<Cow<'_, str>, String> {
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
fn canonical_name(name: &Name) -> String {
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
fn canonical_content(rdata: &RData) -> (String, Option<u32>) {
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

// ---------------------------------------------------------------------------
// Writing.

/// A zone being changed by one `apply` call.
struct Working<'a> {
    origin: &'a Name,
    soa: Option<Record>,
    /// Records in file order; `None` once deleted.
    entries: Vec<Option<Entry>>,
    /// Listed records by id (several when hand-written variants share one).
    by_id: HashMap<String, Vec<usize>>,
    /// Live records per canonical name, and how many of them are CNAMEs.
    names: HashMap<String, (usize, usize)>,
    changed: bool,
}

impl<'a> Working<'a> {
    fn new(zone: ZoneData, origin: &'a Name) -> Self {
        let mut w = Working {
            origin,
            soa: zone.soa,
            entries: Vec::with_capacity(zone.entries.len() + 16),
            by_id: HashMap::with_capacity(zone.entries.len()),
            names: HashMap::with_capacity(zone.entries.len()),
            changed: false,
        };
        // The apex always holds the SOA (one is added on write if missing).
        w.names.insert(canonical_name(origin), (1, 0));
        for entry in zone.entries {
            w.insert(entry);
        }
        w
    }

    fn insert(&mut self, entry: Entry) {
        let idx = self.entries.len();
        let use_ = self.names.entry(entry.name.clone()).or_default();
        use_.0 += 1;
        use_.1 += usize::from(entry.is_cname());
        if entry.listed(self.origin) {
            self.by_id.entry(entry.id.clone()).or_default().push(idx);
        }
        self.entries.push(Some(entry));
    }

    fn remove_id(&mut self, id: &str) {
        for idx in self.by_id.remove(id).unwrap_or_default() {
            if let Some(entry) = self.entries[idx].take()
                && let Some(use_) = self.names.get_mut(&entry.name)
            {
                use_.0 -= 1;
                use_.1 -= usize::from(entry.is_cname());
            }
        }
    }

    fn apply(&mut self, inner: &Inner, op: &WriteOp) -> WriteResult {
        match op {
            WriteOp::Create(input) => {
                let entry = build_entry(inner, input)?;
                if self.by_id.contains_key(&entry.id) {
                    return Err(ProviderError::Conflict(format!(
                        "{} {} {:?} already exists in the zone file",
                        entry.rtype, entry.name, entry.content
                    )));
                }
                self.check_cname(&entry, None)?;
                let record = entry.to_provider();
                self.insert(entry);
                self.changed = true;
                Ok(Some(record))
            }
            WriteOp::Update { id, input } => {
                let Some(old) = self.by_id.get(id.as_str()) else {
                    return Err(not_found(id));
                };
                let entry = build_entry(inner, input)?;
                if entry.id != *id && self.by_id.contains_key(&entry.id) {
                    return Err(ProviderError::Conflict(format!(
                        "{} {} {:?} already exists in the zone file",
                        entry.rtype, entry.name, entry.content
                    )));
                }
                let unchanged = entry.id == *id
                    && old.len() == 1
                    && self.entries[old[0]].as_ref().is_some_and(|e| {
                        e.record.ttl == entry.record.ttl
                            && e.record.dns_class == entry.record.dns_class
                            && e.record.data == entry.record.data
                    });
                self.check_cname(&entry, Some(id))?;
                let record = entry.to_provider();
                if !unchanged {
                    self.remove_id(id);
                    self.insert(entry);
                    self.changed = true;
                }
                Ok(Some(record))
            }
            WriteOp::Delete { id } => {
                if !self.by_id.contains_key(id.as_str()) {
                    return Err(not_found(id));
                }
                self.remove_id(id);
                self.changed = true;
                Ok(None)
            }
        }
    }

    /// A CNAME must be alone at its name (RFC 1034 section 3.6.2). `replacing`
    /// is the id an update removes, whose records do not count.
    fn check_cname(&self, entry: &Entry, replacing: Option<&str>) -> Result<(), ProviderError> {
        let (mut total, mut cnames) = self.names.get(&entry.name).copied().unwrap_or_default();
        for idx in replacing
            .and_then(|id| self.by_id.get(id))
            .into_iter()
            .flatten()
        {
            if let Some(old) = &self.entries[*idx]
                && old.name == entry.name
            {
                total -= 1;
                cnames -= usize::from(old.is_cname());
            }
        }
        if entry.is_cname() && total > 0 {
            return Err(ProviderError::Conflict(format!(
                "{} already has other records; a CNAME must be the only record at its name",
                entry.name
            )));
        }
        if !entry.is_cname() && cnames > 0 {
            return Err(ProviderError::Conflict(format!(
                "{} has a CNAME; no other record may sit beside it",
                entry.name
            )));
        }
        Ok(())
    }

    /// Bumps the SOA serial (adding an SOA if the file had none) and renders
    /// the new file, checked by parsing it again.
    fn finish(self, inner: &Inner) -> Result<String, String> {
        let ttl = inner.cfg.default_ttl;
        let soa = match self.soa {
            Some(mut soa) => {
                if let RData::SOA(s) = &mut soa.data {
                    s.serial = s.serial.wrapping_add(1);
                }
                soa
            }
            None => {
                let ns = name_server(&inner.cfg).map_err(|e| e.to_string())?;
                default_soa(self.origin, &ns, ttl)?
            }
        };
        let zone = ZoneData {
            soa: Some(soa),
            entries: self.entries.into_iter().flatten().collect(),
        };
        let text = render(self.origin, ttl, zone.soa.as_ref(), zone.entries.iter())?;
        verify(&text, self.origin, &zone)?;
        Ok(text)
    }
}

fn not_found(id: &str) -> ProviderError {
    ProviderError::NotFound(format!("no record with id {id} in the zone file"))
}

/// The record a write asks for, checked to be writable: in the zone, not
/// proxied, and read back by the parser exactly as asked.
fn build_entry(inner: &Inner, input: &ValidRecordInput) -> Result<Entry, ProviderError> {
    let spec = &input.spec;
    if !spec.name.is_in_zone(&inner.cfg.zone) {
        return Err(ProviderError::Invalid(format!(
            "{} is outside the zone {}",
            spec.name, inner.cfg.zone
        )));
    }
    if spec.proxied {
        return Err(ProviderError::Invalid(format!(
            "{} {}: a zone file cannot proxy records; set proxied to false",
            spec.rtype, spec.name
        )));
    }
    let name = absolute_name(spec.name.as_str())?;
    let ttl = if spec.ttl == TTL_AUTO {
        inner.cfg.default_ttl
    } else {
        spec.ttl
    };
    let entry = Entry::new(Record::from_rdata(name, ttl, spec_rdata(spec)?));
    let refuse = |why: String| {
        ProviderError::Invalid(format!(
            "{} {} {:?} cannot be written to a zone file: {why}",
            spec.rtype, spec.name, spec.content
        ))
    };
    if entry.name != spec.name.as_str()
        || entry.content != spec.content
        || entry.priority != spec.priority.map(u32::from)
    {
        return Err(refuse(format!("it would be stored as {:?}", entry.content)));
    }
    // Parse the line as it will be written, so a record the parser would refuse
    // or read differently is refused now, alone, rather than breaking the file.
    let line = render_line(&inner.origin, &entry.record).map_err(refuse)?;
    let text = format!(
        "$ORIGIN {}\n{line}",
        presentation_name(&inner.origin).map_err(refuse)?
    );
    let back =
        parse_zone(&text, &inner.origin).map_err(|e| refuse(format!("the parser says: {e}")))?;
    match back.entries.as_slice() {
        [again] if again.fields() == entry.fields() => Ok(entry),
        other => Err(refuse(format!(
            "the parser reads it back as {:?}",
            other
                .iter()
                .map(|e| (&e.rtype, &e.name, &e.content))
                .collect::<Vec<_>>()
        ))),
    }
}

fn absolute_name(name: &str) -> Result<Name, ProviderError> {
    if name == "." {
        return Ok(Name::root());
    }
    Name::from_ascii(format!("{name}."))
        .map_err(|e| ProviderError::Invalid(format!("{name:?} is not a valid DNS name: {e}")))
}

/// The RDATA for a validated spec. Content is in `parse_content`'s canonical
/// form, so only the structure is split out here.
fn spec_rdata(spec: &RecordSpec) -> Result<RData, ProviderError> {
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
fn split_character_strings(s: &str) -> Vec<&[u8]> {
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
fn render<'e>(
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
fn render_line(origin: &Name, record: &Record) -> Result<String, String> {
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
fn presentation_rdata(rdata: &RData) -> Result<String, String> {
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
fn quoted(bytes: &[u8]) -> String {
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
fn presentation_name(name: &Name) -> Result<String, String> {
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
fn push_label(out: &mut String, label: &[u8], name: &Name) -> Result<(), String> {
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
fn verify(text: &str, origin: &Name, zone: &ZoneData) -> Result<(), String> {
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

// ---------------------------------------------------------------------------
// Atomic replacement.

/// How the finished temp file takes the zone file's place.
enum Commit<'a> {
    /// Only if no file exists yet (never clobbers a file created meanwhile).
    CreateNew,
    /// Rename over the file, if the check still says it is the one we read.
    Replace(&'a dyn Fn() -> io::Result<bool>),
}

fn parent_dir(path: &Path) -> Option<&Path> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Some(Path::new(".")),
        other => other,
    }
}

fn temp_prefix(path: &Path) -> Option<String> {
    path.file_name()
        .map(|f| format!(".{}.trafego-tmp.", f.to_string_lossy()))
}

/// Writes `data` to a temp file in the same directory, syncs it, then puts it
/// in place of `path` and syncs the directory (a failure of that last sync is
/// logged, not returned). A crash at any point leaves the old file or the new
/// one. Returns `Ok(false)` when a `Replace` check found
/// the file changed (nothing was replaced).
fn write_atomic(path: &Path, data: &[u8], mode: u32, commit: Commit<'_>) -> io::Result<bool> {
    let dir = parent_dir(path).ok_or_else(|| io::Error::other("the path has no directory"))?;
    let prefix = temp_prefix(path).ok_or_else(|| io::Error::other("the path has no file name"))?;
    let tmp = dir.join(format!(
        "{prefix}{}.{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode given to open.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(data)?;
        file.sync_all()?;
        drop(file);
        match commit {
            // A hard link never replaces an existing file; where the file
            // system has no hard links, a rename after a last check will do.
            Commit::CreateNew => match fs::hard_link(&tmp, path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(_) if fs::symlink_metadata(path).is_err() => fs::rename(&tmp, path)?,
                Err(e) => return Err(e),
            },
            Commit::Replace(unchanged) => {
                if !unchanged()? {
                    return Ok(false);
                }
                fs::rename(&tmp, path)?;
            }
        }
        // The new file is in place: a failed directory sync only means a
        // crash might still bring the old one back, so it is not a failed write.
        if let Err(e) = fs::File::open(dir).and_then(|d| d.sync_all()) {
            tracing::warn!(path = %path.display(), error = %e, "zone file written, but its directory could not be synced");
        }
        Ok(true)
    })();
    // After a rename the temp name is gone; otherwise it must not linger.
    if !matches!(result, Ok(true)) || matches!(commit, Commit::CreateNew) {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::derived_id as record_id;

    fn zone() -> Hostname {
        Hostname::parse("zone", "example.com").unwrap()
    }

    fn open_in(dir: &Path) -> ZoneFileProvider {
        ZoneFileProvider::open(ZoneFileConfig::new(
            dir.join("zones/example.com.zone"),
            zone(),
        ))
        .unwrap()
    }

    fn path_of(p: &ZoneFileProvider) -> PathBuf {
        p.config().path.clone()
    }

    fn input(
        rtype: &str,
        name: &str,
        content: &str,
        ttl: u32,
        priority: Option<u32>,
    ) -> ValidRecordInput {
        ValidRecordInput {
            spec: RecordSpec::new("", rtype, name, content, ttl, false, priority).unwrap(),
            comment: MANAGED_COMMENT.to_string(),
        }
    }

    fn serial(p: &ZoneFileProvider) -> u32 {
        let text = fs::read_to_string(path_of(p)).unwrap();
        let zone = parse_zone(&text, &p.inner.origin).unwrap();
        match zone.soa.unwrap().data {
            RData::SOA(soa) => soa.serial,
            other => panic!("not an SOA: {other:?}"),
        }
    }

    async fn list(p: &ZoneFileProvider) -> Vec<ProviderRecord> {
        let listing = p.list().await.unwrap();
        assert_eq!(listing.requests, 1);
        listing.records
    }

    async fn find(p: &ZoneFileProvider, rtype: &str, name: &str) -> Vec<ProviderRecord> {
        list(p)
            .await
            .into_iter()
            .filter(|r| r.rtype == rtype && r.name == name)
            .collect()
    }

    async fn one(p: &ZoneFileProvider, op: WriteOp) -> WriteResult {
        let (mut results, requests) = p.apply(vec![op]).await;
        assert_eq!(requests, 1);
        assert_eq!(results.len(), 1);
        results.remove(0)
    }

    #[tokio::test]
    async fn a_name_server_inside_the_zone_gets_its_glue() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ZoneFileConfig::new(dir.path().join("example.com.zone"), zone());
        cfg.name_server = Hostname::parse_target("ns", "ns1.example.com").unwrap();
        cfg.name_server_addresses = vec![
            "192.0.2.53".parse().unwrap(),
            "2001:db8::53".parse().unwrap(),
        ];
        let p = ZoneFileProvider::open(cfg.clone()).unwrap();
        let text = fs::read_to_string(path_of(&p)).unwrap();
        assert!(
            text.contains("@ 300 IN SOA ns1.example.com. hostmaster.example.com. 1 "),
            "{text}"
        );
        let mut got: Vec<(String, String, String)> = list(&p)
            .await
            .into_iter()
            .map(|r| (r.rtype, r.name, r.content))
            .collect();
        got.sort();
        let want = [
            ("A", "ns1.example.com", "192.0.2.53"),
            ("AAAA", "ns1.example.com", "2001:db8::53"),
            ("NS", "example.com", "ns1.example.com"),
        ]
        .map(|(t, n, c)| (t.to_string(), n.to_string(), c.to_string()));
        assert_eq!(got, want);

        // Inside the zone without an address, or outside it with one: refused.
        let mut bad = cfg.clone();
        bad.name_server_addresses.clear();
        let e = ZoneFileProvider::open(bad).err().expect("refused");
        assert!(e.to_string().contains("inside the zone"), "{e}");
        let mut bad = cfg;
        bad.name_server = Hostname::parse_target("ns", "ns1.example.net").unwrap();
        let e = ZoneFileProvider::open(bad).err().expect("refused");
        assert!(e.to_string().contains("outside the zone"), "{e}");
    }

    #[tokio::test]
    async fn new_file_has_soa_and_ns_with_mode_0644() {
        let dir = tempfile::tempdir().unwrap();
        let p = open_in(dir.path());
        let meta = fs::metadata(path_of(&p)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o644);
        let text = fs::read_to_string(path_of(&p)).unwrap();
        assert!(text.contains("$ORIGIN example.com.\n$TTL 300\n"), "{text}");
        assert!(
            text.contains("@ 300 IN SOA localhost. hostmaster.example.com. 1 "),
            "{text}"
        );
        let records = list(&p).await;
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].rtype, "NS");
        assert_eq!(records[0].name, "example.com");
        assert_eq!(records[0].content, "localhost");
        assert_eq!(p.name(), "zonefile");
        assert_eq!(p.zone(), &zone());
        // Opening again keeps the file as it is.
        drop(p);
        let p = open_in(dir.path());
        assert_eq!(fs::read_to_string(path_of(&p)).unwrap(), text);
    }

    #[tokio::test]
    async fn every_type_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = open_in(dir.path());
        let long_txt = format!("{} é {}", "x".repeat(300), "y".repeat(300));
        // (type, name, content, priority, updated content)
        let cases: Vec<(&str, &str, &str, Option<u32>, &str)> = vec![
            ("A", "a.example.com", "192.0.2.1", None, "192.0.2.2"),
            (
                "AAAA",
                "aaaa.example.com",
                "2001:db8::1",
                None,
                "2001:db8::2",
            ),
            (
                "CNAME",
                "www.example.com",
                "target.example.net",
                None,
                "other.example.net",
            ),
            (
                "CNAME",
                "*.wild.example.com",
                "example.com",
                None,
                "a.example.com",
            ),
            (
                "TXT",
                "txt.example.com",
                r#"say "hi"; C:\path with  spaces"#,
                None,
                "v=spf1 -all",
            ),
            ("TXT", "long.example.com", &long_txt, None, "short now"),
            (
                "MX",
                "example.com",
                "mail.example.com",
                Some(10),
                "mx2.example.com",
            ),
            (
                "SRV",
                "_sip._tcp.example.com",
                "5 5060 sip.example.com",
                Some(10),
                "0 5061 .",
            ),
            (
                "CAA",
                "example.com",
                "0 issue \"letsencrypt.org\"",
                None,
                "128 issuewild \"\"",
            ),
            (
                "NS",
                "sub.example.com",
                "ns1.example.net",
                None,
                "ns2.example.net",
            ),
            (
                "A",
                "xn--bcher-kva.example.com",
                "192.0.2.9",
                None,
                "192.0.2.10",
            ),
        ];
        for (rtype, name, content, prio, updated) in cases {
            let created = one(&p, WriteOp::Create(input(rtype, name, content, 1, prio)))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (
                    created.rtype.as_str(),
                    created.name.as_str(),
                    created.content.as_str()
                ),
                (rtype, name, content)
            );
            assert_eq!(
                created.ttl, DEFAULT_TTL,
                "automatic TTL is written as the default"
            );
            assert_eq!(created.priority, prio);
            assert_eq!(created.comment, "");
            assert!(!created.proxied);
            assert_eq!(created.id.len(), 32);
            assert_eq!(
                find(&p, rtype, name).await,
                vec![created.clone()],
                "{rtype} {name}"
            );

            let want = parse_content_for(rtype, updated);
            let new_prio = prio.map(|p| p + 1);
            let upd = one(
                &p,
                WriteOp::Update {
                    id: created.id.clone(),
                    input: input(rtype, name, &want, 600, new_prio),
                },
            )
            .await
            .unwrap()
            .unwrap();
            assert_eq!(upd.content, want);
            assert_eq!(upd.ttl, 600);
            assert_eq!(upd.priority, new_prio);
            assert_ne!(upd.id, created.id, "new content means a new id");
            assert_eq!(
                find(&p, rtype, name).await,
                vec![upd.clone()],
                "{rtype} {name}"
            );

            assert_eq!(
                one(&p, WriteOp::Delete { id: upd.id.clone() }).await,
                Ok(None)
            );
            assert!(
                find(&p, rtype, name).await.is_empty(),
                "{rtype} {name} deleted"
            );
        }
        // Only the initial NS is left.
        assert_eq!(list(&p).await.len(), 1);
    }

    fn parse_content_for(rtype: &str, content: &str) -> String {
        trafego_proto::validate::parse_content("c", RecordType::parse("t", rtype).unwrap(), content)
            .unwrap()
    }

    #[tokio::test]
    async fn ttl_change_keeps_the_id_and_ids_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = open_in(dir.path());
        let created = one(
            &p,
            WriteOp::Create(input("A", "a.example.com", "192.0.2.1", 300, None)),
        )
        .await
        .unwrap()
        .unwrap();
        let updated = one(
            &p,
            WriteOp::Update {
                id: created.id.clone(),
                input: input("A", "a.example.com", "192.0.2.1", 3600, None),
            },
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(updated.id, created.id);
        assert_eq!(updated.ttl, 3600);
        let before = list(&p).await;
        drop(p);
        let p = open_in(dir.path());
        assert_eq!(list(&p).await, before);
        assert_eq!(created.id, record_id("A", "a.example.com", "192.0.2.1"));
    }

    #[tokio::test]
    async fn serial_bumps_once_per_changing_apply() {
        let dir = tempfile::tempdir().unwrap();
        let p = open_in(dir.path());
        assert_eq!(serial(&p), 1);
        let ops = (1..=5)
            .map(|i| {
                WriteOp::Create(input(
                    "A",
                    &format!("h{i}.example.com"),
                    "192.0.2.1",
                    300,
                    None,
                ))
            })
            .collect();
        let (results, requests) = p.apply(ops).await;
        assert_eq!(requests, 1);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(serial(&p), 2, "one write for five ops");
        let id = results[0].clone().unwrap().unwrap().id;

        // An update to the same record changes nothing: no write, no bump.
        let before = fs::read(path_of(&p)).unwrap();
        let same = one(
            &p,
            WriteOp::Update {
                id,
                input: input("A", "h1.example.com", "192.0.2.1", 300, None),
            },
        )
        .await;
        assert!(same.is_ok());
        assert_eq!(fs::read(path_of(&p)).unwrap(), before);

        // A batch where every op fails changes nothing either.
        let (results, _) = p.apply(vec![WriteOp::Delete { id: "nope".into() }]).await;
        assert!(matches!(results[0], Err(ProviderError::NotFound(_))));
        assert_eq!(serial(&p), 2);

        one(
            &p,
            WriteOp::Create(input("A", "h9.example.com", "192.0.2.1", 300, None)),
        )
        .await
        .unwrap();
        assert_eq!(serial(&p), 3);
        assert_eq!(p.apply(Vec::new()).await, (Vec::new(), 0));
    }

    #[tokio::test]
    async fn hand_written_records_appear_and_survive_rewrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = open_in(dir.path());
        let mut text = fs::read_to_string(path_of(&p)).unwrap();
        text.push_str(
            "; added by hand\n\
             Hand 3600 IN A 198.51.100.7 ; a comment\n\
             \tIN AAAA 2001:DB8:0:0::7\n\
             ptr 300 IN PTR Host.Example.net.\n\
             dkim 300 IN TXT \"v=DKIM1; k=rsa; \" \"p=abc\"\n\
             word 300 IN TXT ab\"cd\n\
             caa 300 IN CAA 0 ISSUE \"letsencrypt.org\"\n\
             outside.example.org. 300 IN A 192.0.2.99\n",
        );
        fs::write(path_of(&p), &text).unwrap();
        let records = list(&p).await;
        let get = |rtype: &str, name: &str| {
            records
                .iter()
                .find(|r| r.rtype == rtype && r.name == name)
                .unwrap_or_else(|| panic!("{rtype} {name} missing from {records:?}"))
                .clone()
        };
        let a = get("A", "hand.example.com");
        assert_eq!((a.content.as_str(), a.ttl), ("198.51.100.7", 3600));
        assert_eq!(get("AAAA", "hand.example.com").content, "2001:db8::7");
        assert_eq!(get("PTR", "ptr.example.com").content, "host.example.net");
        assert_eq!(
            get("TXT", "dkim.example.com").content,
            "v=DKIM1; k=rsa; p=abc"
        );
        assert_eq!(get("TXT", "word.example.com").content, "ab\"cd");
        assert_eq!(
            get("CAA", "caa.example.com").content,
            "0 issue \"letsencrypt.org\""
        );
        assert!(
            !records.iter().any(|r| r.name.ends_with("example.org")),
            "out-of-zone records are not listed"
        );

        one(
            &p,
            WriteOp::Create(input("A", "new.example.com", "192.0.2.5", 300, None)),
        )
        .await
        .unwrap();
        let after = list(&p).await;
        for r in &records {
            assert!(after.contains(r), "{r:?} lost by the rewrite");
        }
        let text = fs::read_to_string(path_of(&p)).unwrap();
        assert!(
            text.contains("outside.example.org. 300 IN A 192.0.2.99\n"),
            "{text}"
        );
        assert!(
            text.contains("dkim 300 IN TXT \"v=DKIM1; k=rsa; \" \"p=abc\"\n"),
            "{text}"
        );
        // The hand-written PTR can still be deleted by its id.
        let ptr = get("PTR", "ptr.example.com");
        assert_eq!(one(&p, WriteOp::Delete { id: ptr.id }).await, Ok(None));
    }

    #[tokio::test]
    async fn decimal_escapes_are_read_and_written_as_rfc_1035_says() {
        let dir = tempfile::tempdir().unwrap();
        let p = open_in(dir.path());
        let mut text = fs::read_to_string(path_of(&p)).unwrap();
        text.push_str(
            "esc 300 IN TXT \"h\\195\\169llo \\034q\\034 \\092 tab\\009end\" \"\\\\065\"\n",
        );
        fs::write(path_of(&p), &text).unwrap();
        let esc = find(&p, "TXT", "esc.example.com").await;
        assert_eq!(esc.len(), 1, "{esc:?}");
        assert_eq!(esc[0].content, "h\u{e9}llo \"q\" \\ tab\tend\\065");

        let created = one(
            &p,
            WriteOp::Create(input(
                "TXT",
                "u.example.com",
                "caf\u{e9} \"x\" \\",
                300,
                None,
            )),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(created.content, "caf\u{e9} \"x\" \\");
        let text = fs::read_to_string(path_of(&p)).unwrap();
        assert!(
            text.contains("u 300 IN TXT \"caf\\195\\169 \\\"x\\\" \\\\\"\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "esc 300 IN TXT \"h\\195\\169llo \\\"q\\\" \\\\ tab\\009end\" \"\\\\065\"\n"
            ),
            "{text}"
        );
        assert_eq!(
            find(&p, "TXT", "esc.example.com").await,
            esc,
            "the rewrite kept it"
        );
    }

    #[tokio::test]
    async fn written_file_is_sorted_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let p = open_in(dir.path());
        let ops = vec![
            WriteOp::Create(input("TXT", "b.example.com", "two", 300, None)),
            WriteOp::Create(input("A", "b.example.com", "192.0.2.2", 300, None)),
            WriteOp::Create(input("A", "a.b.example.com", "192.0.2.3", 300, None)),
            WriteOp::Create(input("A", "a.example.com", "192.0.2.1", 300, None)),
            WriteOp::Create(input("TXT", "b.example.com", "one", 300, None)),
        ];
        let (results, _) = p.apply(ops).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let text = fs::read_to_string(path_of(&p)).unwrap();
        let body: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with([';', '$']))
            .collect();
        assert_eq!(
            body,
            vec![
                "@ 300 IN SOA localhost. hostmaster.example.com. 2 3600 600 604800 300",
                "@ 300 IN NS localhost.",
                "a 300 IN A 192.0.2.1",
                "b 300 IN A 192.0.2.2",
                "b 300 IN TXT \"one\"",
                "b 300 IN TXT \"two\"",
                "a.b 300 IN A 192.0.2.3",
            ]
        );
    }

    #[tokio::test]
    async fn duplicates_and_cname_rules_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let p = open_in(dir.path());
        let a = one(
            &p,
            WriteOp::Create(input("A", "a.example.com", "192.0.2.1", 300, None)),
        )
        .await
        .unwrap()
        .unwrap();
        let b = one(
            &p,
            WriteOp::Create(input("A", "a.example.com", "192.0.2.2", 300, None)),
        )
        .await
        .unwrap()
        .unwrap();
        let c = one(
            &p,
            WriteOp::Create(input("CNAME", "c.example.com", "a.example.com", 300, None)),
        )
        .await
        .unwrap()
        .unwrap();
        let serial_before = serial(&p);
        let conflict = |r: &WriteResult| matches!(r, Err(ProviderError::Conflict(_)));
        let (results, _) = p
            .apply(vec![
                // exact duplicate, even with another TTL
                WriteOp::Create(input("A", "a.example.com", "192.0.2.1", 600, None)),
                // CNAME beside an A
                WriteOp::Create(input("CNAME", "a.example.com", "x.example.net", 300, None)),
                // A beside a CNAME
                WriteOp::Create(input("A", "c.example.com", "192.0.2.3", 300, None)),
                // a second CNAME at the same name
                WriteOp::Create(input("CNAME", "c.example.com", "y.example.net", 300, None)),
                // CNAME at the apex (SOA and NS live there)
                WriteOp::Create(input("CNAME", "example.com", "y.example.net", 300, None)),
                // an update onto another existing record
                WriteOp::Update {
                    id: b.id.clone(),
                    input: input("A", "a.example.com", "192.0.2.1", 300, None),
                },
                // turning one of two A records into a CNAME
                WriteOp::Update {
                    id: b.id.clone(),
                    input: input("CNAME", "a.example.com", "x.example.net", 300, None),
                },
            ])
            .await;
        for (i, r) in results.iter().enumerate() {
            assert!(conflict(r), "op {i}: {r:?}");
        }
        assert_eq!(
            serial(&p),
            serial_before,
            "nothing changed, nothing written"
        );

        // Replacing a CNAME by another CNAME, or the only A by a CNAME, is fine.
        let (results, _) = p
            .apply(vec![
                WriteOp::Update {
                    id: c.id.clone(),
                    input: input("CNAME", "c.example.com", "z.example.net", 300, None),
                },
                WriteOp::Delete { id: a.id.clone() },
                WriteOp::Update {
                    id: b.id.clone(),
                    input: input("CNAME", "a.example.com", "x.example.net", 300, None),
                },
            ])
            .await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(find(&p, "CNAME", "a.example.com").await.len(), 1);
        assert!(find(&p, "A", "a.example.com").await.is_empty());
    }

    #[tokio::test]
    async fn unknown_ids_outside_names_and_unwritable_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = open_in(dir.path());
        let before = fs::read(path_of(&p)).unwrap();
        let (results, requests) = p
            .apply(vec![
                WriteOp::Delete {
                    id: "0123456789abcdef0123456789abcdef".into(),
                },
                WriteOp::Update {
                    id: "missing".into(),
                    input: input("A", "a.example.com", "192.0.2.1", 300, None),
                },
                WriteOp::Create(input("A", "a.example.org", "192.0.2.1", 300, None)),
                WriteOp::Create(ValidRecordInput {
                    spec: RecordSpec::new("", "A", "p.example.com", "192.0.2.1", 300, true, None)
                        .unwrap(),
                    comment: String::new(),
                }),
            ])
            .await;
        assert_eq!(requests, 1);
        assert!(
            matches!(results[0], Err(ProviderError::NotFound(_))),
            "{:?}",
            results[0]
        );
        assert!(
            matches!(results[1], Err(ProviderError::NotFound(_))),
            "{:?}",
            results[1]
        );
        assert!(
            matches!(results[2], Err(ProviderError::Invalid(_))),
            "{:?}",
            results[2]
        );
        assert!(
            matches!(results[3], Err(ProviderError::Invalid(_))),
            "{:?}",
            results[3]
        );
        assert_eq!(fs::read(path_of(&p)).unwrap(), before);
    }

    #[tokio::test]
    async fn underscores_inside_labels_are_written_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = open_in(dir.path());
        // Hand-written: owner names, targets and unquoted TXT words with an
        // inner '_', beside a label starting with '_' and one shaped like
        // the masks (which must not be taken for one).
        let mut text = fs::read_to_string(path_of(&p)).unwrap();
        text.push_str(
            "hand_made 300 IN A 192.0.2.7\n\
             alias 300 IN CNAME my_target.example.net.\n\
             word 300 IN TXT plain_word \"quoted_word\"\n\
             _trafego0x0_ 300 IN TXT \"look-alike\"\n\
             mx_host 300 IN MX 10 mail_relay\n",
        );
        fs::write(path_of(&p), &text).unwrap();
        let rs = list(&p).await;
        let got = |rtype: &str, name: &str| {
            rs.iter()
                .find(|r| r.rtype == rtype && r.name == name)
                .map(|r| r.content.clone())
                .unwrap_or_else(|| panic!("no {rtype} {name} in {rs:?}"))
        };
        assert_eq!(got("A", "hand_made.example.com"), "192.0.2.7");
        assert_eq!(got("CNAME", "alias.example.com"), "my_target.example.net");
        assert_eq!(got("TXT", "word.example.com"), "plain_wordquoted_word");
        assert_eq!(got("TXT", "_trafego0x0_.example.com"), "look-alike");
        assert_eq!(got("MX", "mx_host.example.com"), "mail_relay.example.com");

        // Written through the provider, and kept over a rewrite.
        let created = one(
            &p,
            WriteOp::Create(input("A", "my_host.example.com", "192.0.2.1", 300, None)),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(created.name, "my_host.example.com");
        let cname = one(
            &p,
            WriteOp::Create(input(
                "CNAME",
                "www_2.example.com",
                "my_host.example.com",
                300,
                None,
            )),
        )
        .await
        .unwrap()
        .unwrap();
        let text = fs::read_to_string(path_of(&p)).unwrap();
        assert!(text.contains("\nmy_host 300 IN A 192.0.2.1\n"), "{text}");
        assert!(
            text.contains("\nwww_2 300 IN CNAME my_host.example.com.\n"),
            "{text}"
        );
        assert!(
            !text.contains("_trafego1x"),
            "no mask is ever written: {text}"
        );
        let again = list(&p).await;
        assert!(
            again.contains(&created) && again.contains(&cname),
            "{again:?}"
        );
        assert_eq!(again.len(), rs.len() + 2);
        one(&p, WriteOp::Delete { id: created.id }).await.unwrap();
        assert!(find(&p, "A", "my_host.example.com").await.is_empty());
    }

    #[tokio::test]
    async fn a_name_the_parser_cannot_read_is_reported_plainly() {
        let dir = tempfile::tempdir().unwrap();
        let p = open_in(dir.path());
        let mut text = fs::read_to_string(path_of(&p)).unwrap();
        text.push_str("bad!name 300 IN A 192.0.2.1\n");
        fs::write(path_of(&p), &text).unwrap();
        let ProviderError::Unavailable(msg) = p.list().await.unwrap_err() else {
            panic!("not unavailable");
        };
        assert!(msg.contains("a name holds a character"), "{msg}");
        assert!(!msg.contains("Errors"), "no parser internals: {msg}");
    }

    #[tokio::test]
    async fn the_null_mx_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = open_in(dir.path());
        let created = one(
            &p,
            WriteOp::Create(input("MX", "nomail.example.com", ".", 300, Some(0))),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!((created.content.as_str(), created.priority), (".", Some(0)));
        let text = fs::read_to_string(path_of(&p)).unwrap();
        assert!(text.contains("\nnomail 300 IN MX 0 .\n"), "{text}");
        assert_eq!(find(&p, "MX", "nomail.example.com").await, vec![created]);
    }

    #[tokio::test]
    async fn a_broken_file_is_unavailable_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let p = open_in(dir.path());
        let good = fs::read_to_string(path_of(&p)).unwrap();
        for broken in [
            format!("{good}half 300 IN A 192.0.2.\n"),
            format!("{good}txt 300 IN TXT \"unterminated\n"),
            format!("{good}bad 300 IN NOTATYPE x\n"),
            format!("{good}dkim IN TXT ( \"v=DKIM1; k=rsa; \"\n  \"p=abc\" )\n"),
            format!("{good}esc IN TXT \"\\300\"\n"),
            format!("{good}bin IN TXT \"\\255\"\n"),
            format!("{good}na\\109e IN A 192.0.2.1\n"),
            format!("$INCLUDE /etc/passwd\n{good}"),
            good.replace("$ORIGIN example.com.", "$ORIGIN example.net."),
        ] {
            fs::write(path_of(&p), &broken).unwrap();
            let err = p.list().await.unwrap_err();
            let ProviderError::Unavailable(msg) = &err else {
                panic!("{err:?} for {broken}");
            };
            assert!(msg.contains(&path_of(&p).display().to_string()), "{msg}");
            let (results, requests) = p
                .apply(vec![WriteOp::Create(input(
                    "A",
                    "n.example.com",
                    "192.0.2.1",
                    300,
                    None,
                ))])
                .await;
            assert_eq!(requests, 1);
            assert!(
                matches!(results[0], Err(ProviderError::Unavailable(_))),
                "{results:?}"
            );
            assert_eq!(
                fs::read_to_string(path_of(&p)).unwrap(),
                broken,
                "file untouched"
            );
        }
        fs::remove_file(path_of(&p)).unwrap();
        assert!(matches!(p.list().await, Err(ProviderError::Unavailable(_))));
    }

    #[tokio::test]
    async fn a_file_without_soa_gets_one_on_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("example.com.zone");
        fs::write(
            &path,
            "$ORIGIN example.com.\n@ 600 IN NS ns.example.net.\nw IN A 192.0.2.1\n",
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let p = ZoneFileProvider::open(ZoneFileConfig::new(&path, zone())).unwrap();
        let records = list(&p).await;
        assert_eq!(records.len(), 2, "{records:?}");
        assert!(
            records.iter().all(|r| r.ttl == 600),
            "TTL carries over: {records:?}"
        );
        one(
            &p,
            WriteOp::Create(input("A", "x.example.com", "192.0.2.2", 300, None)),
        )
        .await
        .unwrap();
        assert_eq!(serial(&p), 1);
        assert_eq!(list(&p).await.len(), 3);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "a rewrite keeps the file's mode");
    }

    #[tokio::test]
    async fn concurrent_applies_do_not_lose_writes() {
        let dir = tempfile::tempdir().unwrap();
        let p = Arc::new(open_in(dir.path()));
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let p = Arc::clone(&p);
                tokio::spawn(async move {
                    let op = WriteOp::Create(input(
                        "A",
                        &format!("c{i}.example.com"),
                        "192.0.2.1",
                        300,
                        None,
                    ));
                    p.apply(vec![op]).await
                })
            })
            .collect();
        for t in tasks {
            let (results, _) = t.await.unwrap();
            assert!(results[0].is_ok(), "{results:?}");
        }
        assert_eq!(list(&p).await.len(), 9);
        assert_eq!(serial(&p), 9);
    }

    #[test]
    fn stale_temp_files_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = open_in(dir.path());
        let stale = path_of(&p).with_file_name(".example.com.zone.trafego-tmp.1.00");
        fs::write(&stale, "half").unwrap();
        drop(p);
        let _p = open_in(dir.path());
        assert!(!stale.exists());
    }

    #[test]
    fn open_refuses_a_zero_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ZoneFileConfig::new(dir.path().join("z"), zone());
        cfg.default_ttl = 0;
        assert!(matches!(
            ZoneFileProvider::open(cfg),
            Err(ProviderError::Invalid(_))
        ));
    }

    /// Timing of `list` on big zones; run with
    /// `cargo test --release -p cache-service zonefile::tests::timing -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "timing, not a check"]
    async fn timing() {
        for n in [10_000usize, 100_000] {
            let dir = tempfile::tempdir().unwrap();
            let p = open_in(dir.path());
            let start = std::time::Instant::now();
            let ops: Vec<WriteOp> = (0..n)
                .map(|i| {
                    let name = format!("host-{i}.example.com");
                    match i % 4 {
                        0 => WriteOp::Create(input(
                            "A",
                            &name,
                            &format!("10.{}.{}.{}", i >> 16 & 255, i >> 8 & 255, i & 255),
                            300,
                            None,
                        )),
                        1 => WriteOp::Create(input(
                            "AAAA",
                            &name,
                            &format!("2001:db8::{:x}:{:x}", i >> 16, i & 0xffff),
                            300,
                            None,
                        )),
                        2 => WriteOp::Create(input(
                            "TXT",
                            &name,
                            &format!("token {i} with spaces"),
                            300,
                            None,
                        )),
                        _ => WriteOp::Create(input("MX", &name, "mail.example.com", 300, Some(10))),
                    }
                })
                .collect();
            let (results, _) = p.apply(ops).await;
            assert!(results.iter().all(Result::is_ok));
            let create = start.elapsed();
            let size = fs::metadata(path_of(&p)).unwrap().len();
            let start = std::time::Instant::now();
            let records = list(&p).await;
            let listed = start.elapsed();
            assert_eq!(records.len(), n + 1);
            let start = std::time::Instant::now();
            let id = records[n / 2].id.clone();
            assert!(one(&p, WriteOp::Delete { id }).await.is_ok());
            let one_write = start.elapsed();
            println!(
                "{n} records ({size} bytes): list {listed:?}, one-op apply {one_write:?}, creating all in one apply {create:?}"
            );
        }
    }
}
