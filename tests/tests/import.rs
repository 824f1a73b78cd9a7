//! `tracking-service import`: the real binary claims what TrafegoDNS
//! (dns-records.json, its SQLite database built with its own DDL) or
//! external-dns (TXT registry records at the fake Cloudflare) managed,
//! against the real cache-service and tracking-service on loopback. Only
//! records the provider still holds are claimed, a dry run writes nothing,
//! a second run claims nothing, and what was claimed is then managed
//! (orphan sweep, drift) while everything else stays foreign.

mod tracking_support;

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};
use tracking_support::*;
use trafego_proto::tracking::{ChangeAction, TrackedRecord};
use trafego_tests::fake_cloudflare::FakeRecord;

/// TrafegoDNS's `dns_tracked_records`, exactly as its `src/database/sqlite-core.js`
/// (branch api-v2-release) creates it, with its indexes.
const TRAFEGODNS_DDL: &str = "
CREATE TABLE IF NOT EXISTS dns_tracked_records (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  provider TEXT NOT NULL DEFAULT 'unknown',
  record_id TEXT NOT NULL,
  type TEXT NOT NULL,
  name TEXT NOT NULL,
  content TEXT,
  ttl INTEGER DEFAULT 1,
  proxied INTEGER DEFAULT 0,
  is_orphaned INTEGER DEFAULT 0,
  orphaned_at TEXT,
  tracked_at TEXT NOT NULL,
  updated_at TEXT,
  first_seen TEXT,
  metadata TEXT,
  UNIQUE(provider, record_id)
);
CREATE INDEX IF NOT EXISTS idx_dns_tracked_provider ON dns_tracked_records(provider);
CREATE INDEX IF NOT EXISTS idx_dns_tracked_name ON dns_tracked_records(name);
CREATE INDEX IF NOT EXISTS idx_dns_tracked_type ON dns_tracked_records(type);
CREATE INDEX IF NOT EXISTS idx_dns_tracked_orphaned ON dns_tracked_records(is_orphaned);
";

/// An ISO time as JavaScript's `Date.toISOString()` writes it, `ms` after the epoch.
fn iso(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap());
    humantime::format_rfc3339_millis(t).to_string()
}

/// Runs `tracking-service import <args>` against `env`'s services and database.
async fn import(env: &Env, args: &[&str]) -> Output {
    let bin = trafego_tests::workspace_bin("tracking-service");
    assert!(
        bin.exists(),
        "{} is not built: run cargo build --workspace",
        bin.display()
    );
    let cache = env.cache.as_ref().expect("cache-service");
    let db = env.dir.path().join("tracking.db");
    tokio::process::Command::new(&bin)
        .env_clear()
        .arg("import")
        .args(args)
        .args(["--cache-service-url", &cache.url])
        .args(["--db-path", &db.display().to_string()])
        .output()
        .await
        .expect("run tracking-service import")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The report's line of `name`.
fn line_of<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().any(|w| w == name))
        .unwrap_or_else(|| panic!("no line for {name} in:\n{out}"))
}

fn by_name<'a>(tracked: &'a [TrackedRecord], name: &str) -> Option<&'a TrackedRecord> {
    tracked.iter().find(|t| t.name == name)
}

fn write_json(dir: &Path, v: &serde_json::Value) -> String {
    let p = dir.join("dns-records.json");
    std::fs::write(&p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    p.display().to_string()
}

#[tokio::test]
async fn trafegodns_v1_json_claims_only_what_the_provider_still_holds_and_then_manages_it() {
    let mut env = Env::start(
        vec![],
        &[
            "--cleanup-orphaned",
            "true",
            "--cleanup-grace-period",
            "15m",
        ],
    )
    .await;
    let www = env
        .fake
        .insert(FakeRecord::new("A", "www.example.com", "192.0.2.1"));
    let api = env
        .fake
        .insert(FakeRecord::new("CNAME", "api.example.com", "example.com"));
    let stale = env
        .fake
        .insert(FakeRecord::new("A", "stale.example.com", "192.0.2.3"));
    // TrafegoDNS tracked old.example.com; it has since been renamed at the provider.
    let renamed = env
        .fake
        .insert(FakeRecord::new("A", "new.example.com", "192.0.2.4"));
    let foreign = env
        .fake
        .insert(FakeRecord::new("A", "foreign.example.com", "192.0.2.5"));
    env.fake
        .insert(FakeRecord::new("A", "adopted.example.com", "192.0.2.6"));
    env.refresh().await;
    // Tracked already (adopted, not app-managed): the import leaves it so.
    let r = env
        .reconcile("docker", vec![a("adopted.example.com", "192.0.2.6")])
        .await;
    assert_eq!(actions(&r), [ChangeAction::Adopt]);
    // dns-records.json as TrafegoDNS v1.10.0's recordTracker.js writes it.
    let entry = |id: &str, provider: &str, domain: &str, name: &str, rtype: &str| {
        serde_json::json!({
            "id": id, "provider": provider, "domain": domain, "name": name, "type": rtype,
            "createdAt": iso(T0 - 86_400_000), "managedBy": "TráfegoDNS"
        })
    };
    let mut orphaned = entry(
        &stale,
        "cloudflare",
        "example.com",
        "stale.example.com",
        "A",
    );
    orphaned["orphanedAt"] = iso(T0 - 10 * 60_000).into();
    let file = write_json(
        env.dir.path(),
        &serde_json::json!([
            entry(&www, "cloudflare", "example.com", "www.example.com", "A"),
            // An id TrafegoDNS knew before an update: the current one is tracked.
            entry("0ld1d", "cloudflare", "example.com", "api", "CNAME"),
            orphaned,
            entry(
                &renamed,
                "cloudflare",
                "example.com",
                "old.example.com",
                "A"
            ),
            entry(
                "g0ne",
                "cloudflare",
                "example.com",
                "gone.example.com",
                "CNAME"
            ),
            entry("x1", "cloudflare", "other.org", "www.other.org", "A"),
            entry("x4", "cloudflare", "example.com", "adopted", "A"),
            entry("x2", "digitalocean", "example.com", "www.example.com", "A"),
            entry(
                "x3",
                "cloudflare",
                "example.com",
                "bad name!.example.com",
                "A"
            ),
        ]),
    );

    let before = env.tracked().await;
    // A dry run prints the claims and writes nothing.
    let dry = import(&env, &["--from", "trafegodns", &file, "--dry-run"]).await;
    assert!(dry.status.success(), "{}", stderr(&dry));
    let out = stdout(&dry);
    assert!(
        line_of(&out, "www.example.com").starts_with("would claim"),
        "{out}"
    );
    assert!(
        out.contains("would claim 3 (3 app-managed, 1 orphaned)"),
        "{out}"
    );
    assert!(out.contains("dry run: nothing was written"), "{out}");
    assert_eq!(env.tracked().await, before, "a dry run tracked something");

    let run = import(&env, &["--from", "trafegodns", &file]).await;
    assert!(run.status.success(), "{}", stderr(&run));
    let out = stdout(&run);
    assert!(
        line_of(&out, "www.example.com").starts_with("claimed"),
        "{out}"
    );
    assert!(
        line_of(&out, "api.example.com").contains(&format!("id {api}")),
        "{out}"
    );
    assert!(
        line_of(&out, "old.example.com").contains("gone at the provider"),
        "{out}"
    );
    assert!(
        line_of(&out, "gone.example.com").contains("gone at the provider"),
        "{out}"
    );
    assert!(
        line_of(&out, "www.other.org").contains("other zone"),
        "{out}"
    );
    assert!(out.contains("other provider (digitalocean)"), "{out}");
    assert!(out.contains("bad name"), "{out}");
    assert!(
        out.contains(
            "claimed 3 (3 app-managed, 1 orphaned); not claimed 6: 1 already tracked, 1 bad name, 2 gone at the provider, \
             1 other provider, 1 other zone"
        ),
        "{out}"
    );
    let tracked = env.tracked().await;
    assert_eq!(tracked.len(), 4, "{tracked:#?}");
    assert!(
        !by_name(&tracked, "adopted.example.com")
            .unwrap()
            .app_managed,
        "a record already tracked is left as it is"
    );
    let t = by_name(&tracked, "www.example.com").unwrap();
    assert!(t.app_managed && !t.is_orphaned);
    assert_eq!(t.record_id, www);
    assert_eq!(by_name(&tracked, "api.example.com").unwrap().record_id, api);
    let s = by_name(&tracked, "stale.example.com").unwrap();
    assert!(s.is_orphaned && s.app_managed);
    assert_eq!(
        s.orphaned_at,
        Some(trafego_proto::timestamp_ms(T0 - 10 * 60_000)),
        "TrafegoDNS's orphan clock carries over"
    );
    assert!(by_name(&tracked, "new.example.com").is_none());
    assert!(by_name(&tracked, "foreign.example.com").is_none());

    // A second run claims nothing and leaves what is tracked as it is.
    let again = import(&env, &["--from", "trafegodns", &file]).await;
    assert!(again.status.success(), "{}", stderr(&again));
    let out = stdout(&again);
    assert!(
        out.contains("claimed 0 (0 app-managed, 0 orphaned)"),
        "{out}"
    );
    assert!(out.contains("4 already tracked"), "{out}");
    assert_eq!(env.tracked().await, tracked);

    // Claimed records are managed: the orphan goes after the grace period...
    let sweep = env.sweep(false).await;
    assert!(sweep.deleted.iter().all(|d| !d.deleted), "{sweep:#?}");
    env.clock.advance(Duration::from_secs(6 * 60));
    let sweep = env.sweep(false).await;
    assert!(
        sweep
            .deleted
            .iter()
            .any(|d| d.deleted && d.record_id == stale),
        "{sweep:#?}"
    );
    assert!(
        env.fake.get(&stale).is_none(),
        "the orphan is deleted at the provider"
    );
    // ...and a claimed record that drifted from a declaration is put back,
    let r = env
        .reconcile(
            "traefik",
            vec![
                a("www.example.com", "192.0.2.99"),
                a("foreign.example.com", "192.0.2.98"),
            ],
        )
        .await;
    assert_eq!(
        ChangeAction::try_from(change_of(&r, "www.example.com").action),
        Ok(ChangeAction::Update),
        "{r:#?}"
    );
    assert_eq!(env.fake.get(&www).unwrap().content, "192.0.2.99");
    // while a record that was not claimed stays foreign.
    assert_ne!(
        ChangeAction::try_from(change_of(&r, "foreign.example.com").action),
        Ok(ChangeAction::Update),
        "{r:#?}"
    );
    assert_eq!(env.fake.get(&foreign).unwrap().content, "192.0.2.5");
    assert_eq!(env.fake.get(&renamed).unwrap().content, "192.0.2.4");
}

#[tokio::test]
async fn trafegodns_api_v2_json_is_read_by_its_type_and_name_keys_and_as_source_attributes_it() {
    let mut env = Env::start(vec![], &[]).await;
    let id = env
        .fake
        .insert(FakeRecord::new("A", "www.example.com", "192.0.2.1"));
    let old = env
        .fake
        .insert(FakeRecord::new("A", "old.example.com", "192.0.2.2"));
    env.refresh().await;
    // The api-v2 line's fileManager.js / keyManager.js shape.
    let file = write_json(
        env.dir.path(),
        &serde_json::json!({"providers": {"cloudflare": {"records": {
            "A:www.example.com": {"id": id, "tracked": iso(T0)},
            "A:old.example.com": {"id": old, "tracked": iso(T0)},
            "A:gone.example.com": {"id": "zz", "tracked": iso(T0)}
        }}}}),
    );
    let run = import(
        &env,
        &["--from", "trafegodns", &file, "--as-source", "traefik"],
    )
    .await;
    assert!(run.status.success(), "{}", stderr(&run));
    let out = stdout(&run);
    assert!(
        out.contains("claimed 2 (2 app-managed, 0 orphaned); not claimed 1"),
        "{out}"
    );
    let tracked = env.tracked().await;
    assert_eq!(tracked.len(), 2);
    assert!(tracked.iter().all(|t| t.app_managed));
    // Attributed to traefik: its next reconcile orphans what it no longer declares.
    let r = env
        .reconcile("traefik", vec![a("www.example.com", "192.0.2.1")])
        .await;
    assert_eq!(
        ChangeAction::try_from(change_of(&r, "old.example.com").action),
        Ok(ChangeAction::Orphan),
        "{r:#?}"
    );
    assert_eq!(
        ChangeAction::try_from(change_of(&r, "www.example.com").action),
        Ok(ChangeAction::Unchanged),
        "{r:#?}"
    );
}

#[tokio::test]
async fn trafegodns_sqlite_claims_with_its_app_managed_flag() {
    let mut env = Env::start(
        vec![],
        &[
            "--cleanup-orphaned",
            "true",
            "--cleanup-grace-period",
            "15m",
        ],
    )
    .await;
    let managed = env
        .fake
        .insert(FakeRecord::new("A", "managed.example.com", "192.0.2.1"));
    let adopted = env
        .fake
        .insert(FakeRecord::new("A", "adopted.example.com", "192.0.2.2"));
    let orphan = env.fake.insert(FakeRecord::new(
        "CNAME",
        "orphan.example.com",
        "example.com",
    ));
    let unmanaged_orphan = env
        .fake
        .insert(FakeRecord::new("A", "keep.example.com", "192.0.2.6"));
    env.fake
        .insert(FakeRecord::new("A", "elsewhere.example.com", "192.0.2.7"));
    env.refresh().await;
    let db = env.dir.path().join("trafegodns.db");
    {
        let mut c = SqliteConnection::establish(&db.display().to_string()).unwrap();
        c.batch_execute(TRAFEGODNS_DDL).unwrap();
        let now = iso(T0 - 86_400_000);
        let gone_at = iso(T0 - 20 * 60_000);
        c.batch_execute(&format!(
            "INSERT INTO dns_tracked_records (provider, record_id, type, name, content, ttl, proxied, \
             tracked_at, metadata) VALUES \
             ('cloudflare', '{managed}', 'A', 'managed.example.com', '192.0.2.1', 1, 0, '{now}', \
              '{{\"appManaged\":true,\"trackedAt\":\"{now}\"}}'), \
             ('cloudflare', '{adopted}', 'A', 'adopted.example.com', '192.0.2.2', 1, 0, '{now}', \
              '{{\"trackedAt\":\"{now}\"}}'), \
             ('cloudflare', 'gone1', 'A', 'gone.example.com', '192.0.2.9', 1, 0, '{now}', \
              '{{\"appManaged\":true}}'), \
             ('cloudflare', 'x', 'A', 'www.other.org', '192.0.2.9', 1, 0, '{now}', \
              '{{\"appManaged\":true}}');
             INSERT INTO dns_tracked_records (provider, record_id, type, name, content, is_orphaned, \
             orphaned_at, tracked_at, metadata) VALUES \
             ('cloudflare', '{orphan}', 'CNAME', 'orphan.example.com', 'example.com', 1, '{gone_at}', \
              '{now}', '{{\"appManaged\":true}}'), \
             ('cloudflare', '{unmanaged_orphan}', 'A', 'keep.example.com', '192.0.2.6', 1, '{gone_at}', \
              '{now}', '{{\"appManaged\":false}}');"
        ))
        .unwrap();
    }
    let file = db.display().to_string();
    let dry = import(&env, &["--from", "trafegodns", &file, "--dry-run"]).await;
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert!(
        env.tracked().await.is_empty(),
        "a dry run tracked something"
    );
    let run = import(&env, &["--from", "trafegodns", &file]).await;
    assert!(run.status.success(), "{}", stderr(&run));
    let out = stdout(&run);
    let words = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.contains("nothing was written"))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    };
    assert_eq!(
        words(
            &stdout(&dry)
                .replace("would claim", "claimed")
                .replace("dry run: ", "")
        ),
        words(&out),
        "a dry run prints the lines the claim prints"
    );
    assert!(
        out.contains("claimed 4 (2 app-managed, 2 orphaned); not claimed 2: 1 gone at the provider, 1 other zone"),
        "{out}"
    );
    let tracked = env.tracked().await;
    assert!(
        by_name(&tracked, "managed.example.com")
            .unwrap()
            .app_managed
    );
    assert!(
        !by_name(&tracked, "adopted.example.com")
            .unwrap()
            .app_managed,
        "metadata without appManaged is not app-managed, as TrafegoDNS reads it"
    );
    assert!(by_name(&tracked, "elsewhere.example.com").is_none());
    // After the grace period, only the app-managed orphan is deleted.
    let sweep = env.sweep(false).await;
    let deleted: Vec<&str> = sweep
        .deleted
        .iter()
        .filter(|d| d.deleted)
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(deleted, ["orphan.example.com"], "{sweep:#?}");
    assert!(env.fake.get(&orphan).is_none());
    assert!(env.fake.get(&unmanaged_orphan).is_some());
    // A declaration differing from the not-app-managed record does not change it.
    let r = env
        .reconcile("traefik", vec![a("adopted.example.com", "192.0.2.50")])
        .await;
    assert_ne!(
        ChangeAction::try_from(change_of(&r, "adopted.example.com").action),
        Ok(ChangeAction::Update)
    );
    assert_eq!(env.fake.get(&adopted).unwrap().content, "192.0.2.2");
}

#[tokio::test]
async fn external_dns_claims_only_the_named_owners_records_and_their_registry_entries() {
    let mut env = Env::start(vec![], &[]).await;
    let heritage = |owner: &str| {
        format!(
            "\"heritage=external-dns,external-dns/owner={owner},external-dns/resource=ingress/web/{owner}\""
        )
    };
    let www = env
        .fake
        .insert(FakeRecord::new("A", "www.example.com", "192.0.2.1"));
    let www_txt = env.fake.insert(FakeRecord::new(
        "TXT",
        "txt-a-www.example.com",
        &heritage("blue"),
    ));
    let legacy = env.fake.insert(FakeRecord::new(
        "CNAME",
        "legacy.example.com",
        "www.example.com",
    ));
    let legacy_txt = env.fake.insert(FakeRecord::new(
        "TXT",
        "txt-legacy.example.com",
        &heritage("blue"),
    ));
    let green = env
        .fake
        .insert(FakeRecord::new("A", "green.example.com", "192.0.2.2"));
    let green_txt = env.fake.insert(FakeRecord::new(
        "TXT",
        "txt-a-green.example.com",
        &heritage("green"),
    ));
    let plain = env
        .fake
        .insert(FakeRecord::new("A", "plain.example.com", "192.0.2.3"));
    // Without the prefix external-dns was run with, nothing is found.
    let none = import(
        &env,
        &["--from", "external-dns", "--owner", "blue", "--dry-run"],
    )
    .await;
    assert!(none.status.success(), "{}", stderr(&none));
    assert!(stdout(&none).contains("would claim 0"), "{}", stdout(&none));

    let run = import(
        &env,
        &[
            "--from",
            "external-dns",
            "--owner",
            "blue",
            "--prefix",
            "txt-",
        ],
    )
    .await;
    assert!(run.status.success(), "{}", stderr(&run));
    let out = stdout(&run);
    assert!(
        line_of(&out, "green.example.com").contains("owned by external-dns owner \"green\""),
        "{out}"
    );
    assert!(
        line_of(&out, "plain.example.com").contains("no external-dns registry entry"),
        "{out}"
    );
    assert!(
        out.contains("claimed 4 (4 app-managed, 0 orphaned)"),
        "{out}"
    );
    let tracked = env.tracked().await;
    let mut ids: Vec<&str> = tracked.iter().map(|t| t.record_id.as_str()).collect();
    ids.sort_unstable();
    let mut want = vec![
        www.as_str(),
        www_txt.as_str(),
        legacy.as_str(),
        legacy_txt.as_str(),
    ];
    want.sort_unstable();
    assert_eq!(ids, want, "{out}");
    assert!(tracked.iter().all(|t| t.app_managed));
    for other in [&green, &green_txt, &plain] {
        assert!(tracked.iter().all(|t| &t.record_id != other));
    }
    // The claimed record is managed; the other owner's is not touched.
    let r = env
        .reconcile(
            "traefik",
            vec![
                a("www.example.com", "192.0.2.99"),
                a("green.example.com", "192.0.2.98"),
            ],
        )
        .await;
    assert_eq!(
        ChangeAction::try_from(change_of(&r, "www.example.com").action),
        Ok(ChangeAction::Update)
    );
    assert_eq!(env.fake.get(&www).unwrap().content, "192.0.2.99");
    assert_eq!(env.fake.get(&green).unwrap().content, "192.0.2.2");
    // A second run claims nothing.
    let again = import(
        &env,
        &[
            "--from",
            "external-dns",
            "--owner",
            "blue",
            "--prefix",
            "txt-",
        ],
    )
    .await;
    assert!(stdout(&again).contains("claimed 0"), "{}", stdout(&again));
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_argument_and_nothing_is_written() {
    let mut env = Env::start(
        vec![FakeRecord::new("A", "www.example.com", "192.0.2.1")],
        &[],
    )
    .await;
    let garbage = env.dir.path().join("garbage.json");
    std::fs::write(&garbage, "{\"records\": 1}").unwrap();
    let garbage = garbage.display().to_string();
    let missing = env.dir.path().join("missing.json").display().to_string();
    let empty_db = env.dir.path().join("empty.db");
    SqliteConnection::establish(&empty_db.display().to_string())
        .unwrap()
        .batch_execute("CREATE TABLE other (x INTEGER)")
        .unwrap();
    let empty_db = empty_db.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--from", "trafegodns"], "FILE is required"),
        (
            vec!["--from", "trafegodns", &garbage],
            "not a TrafegoDNS tracker",
        ),
        (vec!["--from", "trafegodns", &missing], "FILE"),
        (
            vec!["--from", "trafegodns", &empty_db],
            "dns_tracked_records",
        ),
        (
            vec!["--from", "trafegodns", &garbage, "--owner", "x"],
            "--owner",
        ),
        (vec!["--from", "external-dns"], "--owner is required"),
        (vec!["--from", "external-dns", "--owner", "a b"], "--owner"),
        (
            vec!["--from", "external-dns", "--owner", "a", "--prefix", "a b"],
            "--prefix",
        ),
        (
            vec!["--from", "external-dns", "--owner", "a", &garbage],
            "FILE",
        ),
        (vec!["--from", "nobody", &garbage], "--from"),
        (
            vec!["--from", "external-dns", "--owner", "a", "--as-source", ""],
            "--as-source",
        ),
    ];
    for (args, want) in cases {
        let o = import(&env, &args).await;
        assert!(!o.status.success(), "{args:?} succeeded: {}", stdout(&o));
        let err = stderr(&o);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(env.tracked().await.is_empty());
}
