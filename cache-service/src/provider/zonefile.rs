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
//!
//! Here: the configuration, the provider, its blocking list and apply, and
//! the zone being changed by one apply. `parse.rs` reads the file, `render.rs`
//! writes its text and checks it reads back, `write.rs` replaces it atomically.

mod parse;
mod render;
mod write;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA};
use hickory_proto::rr::{Name, RData, Record};
use trafego_proto::validate::{Hostname, RecordType, TTL_AUTO, TTL_MAX, TTL_MIN, ValidRecordInput};

use super::{
    Capabilities, DERIVED_ID_FORMAT, DnsProvider, Listing, ProviderError, WriteOp, WriteResult,
};
use crate::provider::rdata::{absolute_name, spec_rdata};
use parse::{Entry, ZoneData, canonical_name, parse_zone};
use render::{presentation_name, render, render_line, verify};
use write::{Commit, parent_dir, temp_prefix, write_atomic};

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

#[cfg(test)]
mod tests;
