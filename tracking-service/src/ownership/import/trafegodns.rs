//! TrafegoDNS's own state, read exactly as TrafegoDNS writes it, into the
//! entries the import weighs. Reads only: the file is opened read-only and
//! never changed, whatever it holds.
//!
//! Three shapes, told apart by content (a SQLite file starts with
//! `SQLite format 3\0`; JSON is an array or an object with `providers`):
//!
//! - **v1 JSON tracker**, `/config/data/dns-records.json`, as every release
//!   from 1.6.0 to v1.10.0 writes it (`src/utils/recordTracker.js`,
//!   `saveTrackedRecords`: `JSON.stringify(Array.from(trackedRecords.values()))`):
//!   an array of `{"id", "provider", "domain", "name", "type", "createdAt",
//!   "managedBy": "TráfegoDNS"}`, plus `"updatedAt"` after `updateRecordId`
//!   and `"orphanedAt"` (ISO time) after `markRecordOrphaned`. TrafegoDNS
//!   keys it by `provider:domain:name:type`, lowercase (`getRecordKey`).
//!   Every entry is a record TrafegoDNS created (`trackRecord` runs after a
//!   create, or on a record carrying its "Managed by TráfegoDNS" comment),
//!   so every entry is app-managed.
//! - **api-v2 JSON tracker** (the `dev` / `api-v2` line, commit fd46700,
//!   `src/utils/recordTracker/{fileManager,keyManager,trackingOperations,orphanManager}.js`):
//!   `{"providers": {"<provider>": {"records": {"<TYPE>:<name>": {"id",
//!   "tracked", "updated"?, "orphaned"?: {"timestamp", "timeMs"}}}}}}`. No
//!   domain is written. Its own migration to SQLite
//!   (`dnsTrackedRecordRepository.migrateFromJson`, branch api-v2-release)
//!   marks every entry `appManaged: true`, and so does this import; it also
//!   reads `type`/`name` from the entry when they are there, as that code
//!   does.
//! - **SQLite database** (branch api-v2-release, `src/database/sqlite-core.js`):
//!   the table `dns_tracked_records (id, provider, record_id, type, name,
//!   content, ttl, proxied, is_orphaned, orphaned_at TEXT, tracked_at TEXT,
//!   updated_at, first_seen, metadata TEXT)`. `metadata` is JSON; a row is
//!   app-managed only when `metadata.appManaged === true`, exactly
//!   TrafegoDNS's test (`managedRecordsRepository.isAppManaged`, and its
//!   query `json_extract(metadata, '$.appManaged') = 0 OR … IS NULL` for
//!   "not managed"): absent means not app-managed.
//!
//! Names: TrafegoDNS v1 rebuilt a record's FQDN from what the provider
//! returned (`DNSManager.cleanupOrphanedRecords`): `@` is the domain, and a
//! name not ending in the domain gets `.<domain>` appended. The same rule is
//! applied here, with the served zone standing in for the domain where the
//! shape has none (and then only to `@` and single-label names).
//!
//! Preserved hostnames are not part of any of these: TrafegoDNS reads them
//! from its PRESERVED_HOSTNAMES setting, which keeps its name here. The
//! timestamps kept are the orphan clock (`orphanedAt`, `orphaned.timeMs`,
//! `orphaned_at`) and when tracking began; `managedBy`, `updatedAt`,
//! `content`, `ttl`, `proxied` and the rest of `metadata` are dropped (the
//! provider's current record is what gets tracked).

use std::path::Path;

use anyhow::{Context, bail};
use diesel::prelude::*;
use diesel::sql_types::{Nullable, Text};
use serde_json::Value;

/// What TrafegoDNS said of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where in the file it was, for the report (`entry 3`, `row 7`, …).
    pub at: String,
    /// TrafegoDNS's provider name (`cloudflare`, `digitalocean`, `route53`), if written.
    pub provider: Option<String>,
    /// TrafegoDNS's domain (its zone), if written.
    pub domain: Option<String>,
    /// The name as written.
    pub name: String,
    /// The type as written.
    pub rtype: String,
    /// TrafegoDNS's record id, if written: preferred when several records
    /// share the name and type.
    pub record_id: Option<String>,
    /// Whether TrafegoDNS managed it.
    pub app_managed: bool,
    /// The orphan clock.
    pub orphan: Orphan,
    /// When TrafegoDNS began tracking it (unix ms), if readable.
    pub tracked_at: Option<i64>,
}

/// TrafegoDNS's orphan state of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orphan {
    /// Not orphaned.
    No,
    /// Orphaned since this time (unix ms).
    Since(i64),
    /// Marked orphaned without a readable time: the grace period starts at the import.
    Unknown,
}

/// Which shape a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// v1's `dns-records.json` (an array).
    V1Json,
    /// api-v2's `dns-records.json` (`providers`).
    ProvidersJson,
    /// The SQLite database.
    Sqlite,
}

impl Shape {
    /// How the report names it.
    pub fn describe(self) -> &'static str {
        match self {
            Shape::V1Json => "TrafegoDNS v1 dns-records.json",
            Shape::ProvidersJson => "TrafegoDNS api-v2 dns-records.json",
            Shape::Sqlite => "TrafegoDNS SQLite database (dns_tracked_records)",
        }
    }
}

const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";

/// Reads `path` (named `FILE` in errors) whatever its shape.
pub fn read(path: &Path) -> anyhow::Result<(Shape, Vec<Entry>)> {
    let bytes = std::fs::read(path).with_context(|| format!("FILE {}", path.display()))?;
    if bytes.starts_with(SQLITE_MAGIC) {
        drop(bytes);
        return Ok((Shape::Sqlite, read_sqlite(path)?));
    }
    let v: Value = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "FILE {} is neither a SQLite database nor JSON",
            path.display()
        )
    })?;
    parse_json(&v).with_context(|| format!("FILE {}", path.display()))
}

/// The entries of a `dns-records.json` of either shape.
pub fn parse_json(v: &Value) -> anyhow::Result<(Shape, Vec<Entry>)> {
    match v {
        Value::Array(items) => Ok((
            Shape::V1Json,
            items.iter().enumerate().map(v1_entry).collect(),
        )),
        Value::Object(o) if o.get("providers").is_some_and(Value::is_object) => {
            Ok((Shape::ProvidersJson, providers_entries(&o["providers"])))
        }
        _ => bail!(
            "is JSON but not a TrafegoDNS tracker: expected an array of records (v1) or an object with \"providers\" (api-v2)"
        ),
    }
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn v1_entry((i, item): (usize, &Value)) -> Entry {
    let orphan = match item.get("orphanedAt") {
        None | Some(Value::Null) => Orphan::No,
        Some(v) => text(Some(v))
            .and_then(|s| parse_time(&s))
            .map_or(Orphan::Unknown, Orphan::Since),
    };
    Entry {
        at: format!("entry {}", i + 1),
        provider: text(item.get("provider")),
        domain: text(item.get("domain")),
        name: text(item.get("name")).unwrap_or_default(),
        rtype: text(item.get("type")).unwrap_or_default(),
        record_id: text(item.get("id")),
        app_managed: true,
        orphan,
        tracked_at: text(item.get("createdAt")).and_then(|s| parse_time(&s)),
    }
}

fn providers_entries(providers: &Value) -> Vec<Entry> {
    let mut out = Vec::new();
    let Some(providers) = providers.as_object() else {
        return out;
    };
    for (provider, data) in providers {
        let Some(records) = data.get("records").and_then(Value::as_object) else {
            continue;
        };
        for (key, rec) in records {
            // keyManager.getRecordKey: `${record.type}:${record.name}`.
            let (kt, kn) = key.split_once(':').unwrap_or(("", key.as_str()));
            let orphan = match rec.get("orphaned") {
                None | Some(Value::Null) | Some(Value::Bool(false)) => Orphan::No,
                Some(o) => o
                    .get("timeMs")
                    .and_then(Value::as_i64)
                    .or_else(|| text(o.get("timestamp")).and_then(|s| parse_time(&s)))
                    .map_or(Orphan::Unknown, Orphan::Since),
            };
            out.push(Entry {
                at: format!("providers.{provider}.records[{key:?}]"),
                provider: Some(provider.clone()),
                domain: None,
                name: text(rec.get("name")).unwrap_or_else(|| kn.to_string()),
                rtype: text(rec.get("type")).unwrap_or_else(|| kt.to_string()),
                record_id: text(rec.get("id")),
                app_managed: true,
                orphan,
                tracked_at: text(rec.get("tracked")).and_then(|s| parse_time(&s)),
            });
        }
    }
    out
}

/// One row of TrafegoDNS's `dns_tracked_records`, every column nullable so
/// a row TrafegoDNS left half-filled is reported, not fatal.
#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Nullable<Text>)]
    id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    provider: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    record_id: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    rtype: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    is_orphaned: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    orphaned_at: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    tracked_at: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    metadata: Option<String>,
}

/// The rows of TrafegoDNS's SQLite database, opened read-only.
fn read_sqlite(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let mut conn = SqliteConnection::establish(&read_only_uri(path))
        .with_context(|| format!("FILE {}: cannot open the SQLite database", path.display()))?;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT CAST(id AS TEXT) AS id, provider, CAST(record_id AS TEXT) AS record_id, \
         type AS rtype, name, CAST(is_orphaned AS TEXT) AS is_orphaned, orphaned_at, \
         tracked_at, metadata FROM dns_tracked_records ORDER BY id",
    )
    .load(&mut conn)
    .with_context(|| {
        format!(
            "FILE {} is a SQLite database without TrafegoDNS's dns_tracked_records table",
            path.display()
        )
    })?;
    Ok(rows.into_iter().map(sqlite_entry).collect())
}

fn sqlite_entry(r: Row) -> Entry {
    let meta: Value = r
        .metadata
        .as_deref()
        .and_then(|m| serde_json::from_str(m).ok())
        .unwrap_or(Value::Null);
    let orphaned = r
        .is_orphaned
        .as_deref()
        .is_some_and(|v| !matches!(v.trim(), "" | "0" | "false"));
    let orphan = if orphaned {
        r.orphaned_at
            .as_deref()
            .and_then(parse_time)
            .map_or(Orphan::Unknown, Orphan::Since)
    } else {
        Orphan::No
    };
    Entry {
        at: format!("row {}", r.id.unwrap_or_default()),
        provider: r.provider.filter(|p| !p.trim().is_empty()),
        domain: None,
        name: r.name.unwrap_or_default().trim().to_string(),
        rtype: r.rtype.unwrap_or_default().trim().to_string(),
        record_id: r.record_id.filter(|p| !p.trim().is_empty()),
        app_managed: meta.get("appManaged") == Some(&Value::Bool(true)),
        orphan,
        tracked_at: r.tracked_at.as_deref().and_then(parse_time),
    }
}

/// The SQLite URI opening `path` read-only (nothing, not even a journal, is written).
pub fn read_only_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.display().to_string().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?mode=ro");
    uri
}

/// A time as TrafegoDNS writes it (`Date.toISOString()`, or SQLite's
/// `CURRENT_TIMESTAMP`), in unix milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let t = humantime::parse_rfc3339(s)
        .or_else(|_| humantime::parse_rfc3339_weak(s))
        .ok()?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    i64::try_from(ms).ok()
}

/// The FQDN TrafegoDNS meant by `name`: `@` is `domain`, a name not ending
/// in `domain` gets it appended (v1's own rule). With `strict` false (no
/// domain in the file; `domain` is the served zone), only `@` and a single
/// label are taken as relative.
pub fn fqdn(name: &str, domain: &str, strict: bool) -> String {
    let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if n == "@" || n.is_empty() {
        return d;
    }
    let inside = n == d || n.ends_with(&format!(".{d}"));
    if inside || d.is_empty() || (!strict && n.contains('.')) {
        n
    } else {
        format!("{n}.{d}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_json_as_recordtracker_writes_it() {
        let v = serde_json::json!([
            {"id": "abc", "provider": "cloudflare", "domain": "example.com", "name": "www.example.com",
             "type": "CNAME", "createdAt": "2025-03-01T10:00:00.000Z", "managedBy": "TráfegoDNS"},
            {"id": "def", "provider": "digitalocean", "domain": "example.com", "name": "api",
             "type": "A", "createdAt": "2025-03-01T10:00:00.000Z", "managedBy": "TráfegoDNS",
             "orphanedAt": "2025-03-02T10:00:00.000Z"}
        ]);
        let (shape, e) = parse_json(&v).unwrap();
        assert_eq!(shape, Shape::V1Json);
        assert_eq!(e.len(), 2);
        assert!(e.iter().all(|e| e.app_managed));
        assert_eq!(e[0].orphan, Orphan::No);
        assert_eq!(e[0].tracked_at, Some(1_740_823_200_000));
        assert_eq!(e[1].orphan, Orphan::Since(1_740_909_600_000));
        assert_eq!(fqdn(&e[1].name, "example.com", true), "api.example.com");
    }

    #[test]
    fn providers_json_as_the_api_v2_line_writes_it() {
        let v = serde_json::json!({"providers": {"cloudflare": {"records": {
            "A:www.example.com": {"id": "r1", "tracked": "2025-05-10T00:00:00.000Z"},
            "TXT:t.example.com": {"id": "r2", "tracked": "2025-05-10T00:00:00.000Z",
                "orphaned": {"timestamp": "2025-05-11T00:00:00.000Z", "timeMs": 1746921600000_i64}}
        }}}});
        let (shape, e) = parse_json(&v).unwrap();
        assert_eq!(shape, Shape::ProvidersJson);
        assert_eq!(
            (e[0].rtype.as_str(), e[0].name.as_str()),
            ("A", "www.example.com")
        );
        assert_eq!(e[1].orphan, Orphan::Since(1_746_921_600_000));
        assert_eq!(e[0].provider.as_deref(), Some("cloudflare"));
    }

    #[test]
    fn other_json_is_refused() {
        assert!(parse_json(&serde_json::json!({"records": {}})).is_err());
        assert!(parse_json(&serde_json::json!("x")).is_err());
    }

    #[test]
    fn names_are_rebuilt_as_trafegodns_did() {
        assert_eq!(fqdn("@", "example.com", true), "example.com");
        assert_eq!(
            fqdn("WWW.Example.com.", "example.com", true),
            "www.example.com"
        );
        assert_eq!(fqdn("a.b", "example.com", true), "a.b.example.com");
        assert_eq!(fqdn("a.b", "example.com", false), "a.b");
        assert_eq!(fqdn("a", "example.com", false), "a.example.com");
        assert_eq!(parse_time("2025-01-01 00:00:00"), Some(1_735_689_600_000));
        assert_eq!(parse_time("soon"), None);
    }
}
