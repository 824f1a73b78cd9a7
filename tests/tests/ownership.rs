//! Ownership markers end to end: records the app creates carry a marker
//! scoped to OWNER_ID (a comment, or an external-dns-format TXT record
//! beside them), written, updated and deleted with their records in one
//! provider request; a lost tracked table is rebuilt from markers proving
//! this owner id, and from nothing else; two installations with different
//! owner ids sharing one zone never touch each other's records.
//!
//! Real services on 127.0.0.1:0, the fake Cloudflare (whose write log says
//! which writes went in one request, and with whose token), the zone-file
//! provider for txt mode, an injected clock for the grace period.

mod tracking_support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use rand::{Rng, SeedableRng};
use tokio::net::TcpListener;
use tracking_support::*;
use trafego_common::clock::ManualClock;
use trafego_proto::tracking::{ChangeAction, ReconcileRequest};
use trafego_tests::fake_cloudflare::{FakeCloudflare, FakeOptions, FakeRecord, FakeWrite};

/// The marker text of `owner` (this project's heritage).
fn marker(owner: &str) -> String {
    format!("heritage=trafegodns,trafegodns/owner={owner}")
}

/// The comment of a record `owner` created in comment mode.
fn comment(owner: &str) -> String {
    format!("Managed by TrafegoDNS; {}", marker(owner))
}

/// tracking-service flags for markers of `owner` in `mode`, cleanup on.
fn own_args<'a>(owner: &'a str, mode: &'a str, grace: &'a str) -> Vec<&'a str> {
    vec![
        "--owner-id",
        owner,
        "--ownership-marker",
        mode,
        "--cleanup-orphaned",
        "true",
        "--cleanup-grace-period",
        grace,
    ]
}

/// Stops tracking-service, deletes its database when `lose` (a lost
/// table), and starts it again with `args`.
async fn restart_tracking(env: &mut Env, args: &[&str], lose: bool) {
    env.tracking.stop().await;
    if lose {
        remove_db(env.dir.path());
    }
    let cache_url = env.cache.as_ref().expect("cache").url.clone();
    env.tracking = start_tracking(&cache_url, env.dir.path(), args, env.clock.clone()).await;
    env.client = tracking_client(&env.tracking.url).await;
}

/// Deletes tracking-service's database files in `dir`.
fn remove_db(dir: &Path) {
    for f in ["tracking.db", "tracking.db-wal", "tracking.db-shm"] {
        let p = dir.join(f);
        if p.exists() {
            std::fs::remove_file(&p).expect("remove tracking db");
        }
    }
}

/// The TXT records at the provider named `name`.
fn txt_at(env: &Env, name: &str) -> Vec<FakeRecord> {
    env.at_provider(name)
        .into_iter()
        .filter(|r| r.r#type == "TXT")
        .collect()
}

/// The write of `op` on a record named `name` in `log`.
fn write_of<'a>(log: &'a [FakeWrite], op: &str, name: &str) -> &'a FakeWrite {
    log.iter()
        .find(|w| w.op == op && w.name == name)
        .unwrap_or_else(|| panic!("no {op} of {name} in {log:#?}"))
}

#[tokio::test]
async fn txt_markers_are_written_updated_and_deleted_with_their_records_in_one_batch() {
    let mut env = Env::start(vec![], &own_args("blue", "txt", "0s")).await;
    let r = env
        .reconcile(
            "api",
            vec![
                a("www.example.com", "192.0.2.1"),
                a("app.example.com", "192.0.2.2"),
            ],
        )
        .await;
    assert_eq!(r.summary.unwrap().created, 2, "{r:#?}");
    for (host, m) in [
        ("www.example.com", "a-www.example.com"),
        ("app.example.com", "a-app.example.com"),
    ] {
        let t = txt_at(&env, m);
        assert_eq!(t.len(), 1, "{m}: {t:?}");
        assert_eq!(t[0].content, marker("blue"));
        let log = env.fake.write_log();
        assert_eq!(
            write_of(&log, "create", host).request,
            write_of(&log, "create", m).request,
            "{host} and its marker in one batch"
        );
    }
    assert_eq!(
        env.fake.stats().batch,
        1,
        "one batch for both records and markers"
    );

    // An update keeps the marker: no marker write, the same marker.
    let before = txt_at(&env, "a-www.example.com");
    let n = env.fake.write_log().len();
    let r = env
        .reconcile(
            "api",
            vec![
                a("www.example.com", "192.0.2.9"),
                a("app.example.com", "192.0.2.2"),
            ],
        )
        .await;
    assert_eq!(r.summary.unwrap().updated, 1, "{r:#?}");
    let log = env.fake.write_log();
    assert_eq!(
        log.len(),
        n + 1,
        "only the record is written: {:#?}",
        &log[n..]
    );
    assert_eq!(txt_at(&env, "a-www.example.com"), before);

    // The sweep deletes a record and its marker in one batch.
    env.reconcile("api", vec![a("www.example.com", "192.0.2.9")])
        .await;
    env.refresh().await;
    let s = env.sweep(false).await;
    assert!(
        s.deleted
            .iter()
            .any(|d| d.deleted && d.name == "app.example.com"),
        "{s:#?}"
    );
    assert!(env.at_provider("app.example.com").is_empty());
    assert!(
        txt_at(&env, "a-app.example.com").is_empty(),
        "marker deleted"
    );
    let log = env.fake.write_log();
    assert_eq!(
        write_of(&log, "delete", "app.example.com").request,
        write_of(&log, "delete", "a-app.example.com").request,
        "record and marker deleted in one batch"
    );
    assert_eq!(
        txt_at(&env, "a-www.example.com").len(),
        1,
        "www keeps its marker"
    );
}

#[tokio::test]
async fn comment_markers_ride_on_the_record_itself() {
    let args = own_args("blue", "comment", "0s");
    let mut env = Env::start(vec![], &args).await;
    env.reconcile("api", vec![a("www.example.com", "192.0.2.1")])
        .await;
    let r = env.at_provider("www.example.com");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].comment.as_deref(), Some(comment("blue").as_str()));
    assert!(
        txt_at(&env, "a-www.example.com").is_empty(),
        "no TXT marker"
    );
    assert_eq!(
        env.fake.stats().batch + env.fake.stats().create,
        1,
        "one write"
    );
    env.reconcile("api", vec![a("www.example.com", "192.0.2.7")])
        .await;
    let r = env.at_provider("www.example.com");
    assert_eq!(r[0].content, "192.0.2.7");
    assert_eq!(
        r[0].comment.as_deref(),
        Some(comment("blue").as_str()),
        "an update keeps the marker"
    );
    let id = r[0].id.clone();
    env.reconcile("api", vec![a("app.example.com", "192.0.2.8")])
        .await;
    env.refresh().await;
    env.sweep(false).await;
    assert!(env.fake.get(&id).is_none(), "the sweep deleted it");
}

#[tokio::test]
async fn records_made_before_markers_were_on_get_them() {
    let mut env = Env::start(vec![], &[]).await;
    env.reconcile("api", vec![a("www.example.com", "192.0.2.1")])
        .await;
    assert_eq!(
        env.at_provider("www.example.com")[0].comment.as_deref(),
        Some("Managed by TrafegoDNS")
    );
    restart_tracking(&mut env, &own_args("blue", "comment", "0s"), false).await;
    env.reconcile("api", vec![a("www.example.com", "192.0.2.1")])
        .await;
    assert_eq!(
        env.at_provider("www.example.com")[0].comment.as_deref(),
        Some(comment("blue").as_str()),
        "comment mended"
    );
    restart_tracking(&mut env, &own_args("blue", "txt", "0s"), false).await;
    env.reconcile("api", vec![a("www.example.com", "192.0.2.1")])
        .await;
    assert_eq!(
        txt_at(&env, "a-www.example.com").len(),
        1,
        "TXT marker mended"
    );
    let n = env.fake.write_log().len();
    env.reconcile("api", vec![a("www.example.com", "192.0.2.1")])
        .await;
    assert_eq!(
        env.fake.write_log().len(),
        n,
        "then nothing more is written"
    );
}

#[tokio::test]
async fn comment_mode_is_refused_at_start_on_a_provider_without_comments() {
    trafego_tests::init_test_logging();
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cache = start_cache_on(listener, zonefile_args(dir.path())).await;
    let t = start_tracking(
        &cache.url,
        dir.path(),
        &own_args("blue", "comment", "0s"),
        ManualClock::new(T0),
    )
    .await;
    let res = t.shutdown_result().await.expect("run returned");
    let e = res.expect_err("refused").to_string();
    assert!(e.contains("comments=false"), "{e}");
    assert!(e.contains("OWNERSHIP_MARKER=txt"), "{e}");
    assert!(e.contains("zonefile"), "names the provider: {e}");
}

/// Foreign records seeded beside the app's: one without a marker, one whose
/// marker names another owner, one with external-dns's own marker naming
/// the same owner id, one whose comment names another owner.
fn foreign_seed() -> Vec<FakeRecord> {
    let mut commented = FakeRecord::new("A", "commented.example.com", "198.51.100.4");
    commented.comment = Some(comment("green"));
    vec![
        FakeRecord::new("A", "foreign.example.com", "198.51.100.1"),
        FakeRecord::new("A", "other.example.com", "198.51.100.2"),
        FakeRecord::new("TXT", "a-other.example.com", &marker("green")),
        FakeRecord::new("A", "extdns.example.com", "198.51.100.3"),
        FakeRecord::new(
            "TXT",
            "a-extdns.example.com",
            "heritage=external-dns,external-dns/owner=blue",
        ),
        commented,
    ]
}

/// Every record at the provider but the app's, as (type, name, content).
fn foreign_state(env: &Env) -> BTreeSet<(String, String, String)> {
    env.fake
        .records()
        .into_iter()
        .filter(|r| {
            !r.name.starts_with("www.")
                && !r.name.starts_with("app.")
                && !r.name.starts_with("a-www.")
                && !r.name.starts_with("a-app.")
        })
        .map(|r| (r.r#type, r.name, r.content))
        .collect()
}

#[tokio::test]
async fn a_lost_database_is_rebuilt_from_this_owners_markers_only() {
    for mode in ["txt", "comment"] {
        let args = own_args("blue", mode, "10m");
        let mut env = Env::start(foreign_seed(), &args).await;
        let foreign = foreign_state(&env);
        env.reconcile(
            "api",
            vec![
                a("www.example.com", "192.0.2.1"),
                a("app.example.com", "192.0.2.2"),
            ],
        )
        .await;
        restart_tracking(&mut env, &args, true).await;
        let st = env.status().await;
        let rb = st.last_rebuild.expect("a rebuild ran");
        assert_eq!(rb.claimed, 2, "{mode}: {rb:?}");
        assert_eq!(st.ownership_marker, mode);
        let tracked = env.tracked().await;
        let names: BTreeSet<&str> = tracked.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            BTreeSet::from(["app.example.com", "www.example.com"]),
            "{mode}: only the app's records: {tracked:#?}"
        );
        assert!(tracked.iter().all(|t| t.app_managed && t.is_orphaned));

        // Declared again: un-orphaned, the app's. Foreign records declared
        // alike are adopted as not app-managed, as always.
        let r = env
            .reconcile(
                "api",
                vec![
                    a("www.example.com", "192.0.2.1"),
                    a("other.example.com", "198.51.100.2"),
                    a("commented.example.com", "198.51.100.4"),
                    a("extdns.example.com", "198.51.100.3"),
                ],
            )
            .await;
        assert_eq!(
            ChangeAction::try_from(change_of(&r, "www.example.com").action).unwrap(),
            ChangeAction::Unorphan
        );
        for h in [
            "other.example.com",
            "commented.example.com",
            "extdns.example.com",
        ] {
            assert_eq!(
                ChangeAction::try_from(change_of(&r, h).action).unwrap(),
                ChangeAction::Adopt,
                "{mode}: {h} is not the app's"
            );
        }
        // Undeclared rebuilt records go after the grace period, with their
        // markers; nothing foreign is touched.
        env.refresh().await;
        let s = env.sweep(false).await;
        assert_eq!(s.within_grace, 1, "{s:#?}");
        env.clock.advance(std::time::Duration::from_secs(11 * 60));
        env.refresh().await;
        env.sweep(false).await;
        assert!(env.at_provider("app.example.com").is_empty(), "{mode}");
        assert!(txt_at(&env, "a-app.example.com").is_empty(), "{mode}");
        assert_eq!(env.at_provider("www.example.com").len(), 1);
        assert_eq!(
            foreign_state(&env),
            foreign,
            "{mode}: foreign records untouched"
        );
        let log = env.fake.write_log();
        assert!(
            log.iter()
                .all(|w| w.op == "create" || w.name.contains("app.") || w.name.contains("www.")),
            "{mode}: {log:#?}"
        );
    }
}

#[tokio::test]
async fn markers_prove_nothing_without_owner_id_or_with_another_one() {
    for later in [
        vec![],
        vec!["--owner-id", "green", "--ownership-marker", "txt"],
        vec!["--owner-id", "blue"],
    ] {
        let mut env = Env::start(vec![], &own_args("blue", "txt", "0s")).await;
        env.reconcile("api", vec![a("www.example.com", "192.0.2.1")])
            .await;
        let mut args = later.clone();
        args.extend(["--cleanup-orphaned", "true", "--cleanup-grace-period", "0s"]);
        restart_tracking(&mut env, &args, true).await;
        assert!(env.tracked().await.is_empty(), "{later:?}");
        let r = env
            .reconcile("api", vec![a("www.example.com", "192.0.2.1")])
            .await;
        assert_eq!(
            ChangeAction::try_from(change_of(&r, "www.example.com").action).unwrap(),
            ChangeAction::Adopt,
            "{later:?}: {r:#?}"
        );
        assert!(!env.tracked().await[0].app_managed);
        env.reconcile("api", vec![a("app.example.com", "192.0.2.2")])
            .await;
        env.refresh().await;
        env.sweep(false).await;
        assert_eq!(env.at_provider("www.example.com").len(), 1, "{later:?}");
        assert_eq!(txt_at(&env, "a-www.example.com").len(), 1, "{later:?}");
    }
}

#[tokio::test]
async fn a_stale_marker_of_this_owner_is_swept_and_anothers_is_left() {
    let seed = vec![
        FakeRecord::new("TXT", "a-gone.example.com", &marker("blue")),
        FakeRecord::new("TXT", "a-lost.example.com", &marker("green")),
    ];
    let mut env = Env::start(seed, &own_args("blue", "txt", "0s")).await;
    // A record created without its marker (the worst case of a provider
    // with no batch) gets it from the next reconcile.
    env.reconcile("api", vec![a("www.example.com", "192.0.2.1")])
        .await;
    let m = txt_at(&env, "a-www.example.com");
    env.fake.remove(&m[0].id);
    env.refresh().await;
    env.reconcile("api", vec![a("www.example.com", "192.0.2.1")])
        .await;
    assert_eq!(txt_at(&env, "a-www.example.com").len(), 1, "mended");
    env.refresh().await;
    let s = env.sweep(false).await;
    assert!(txt_at(&env, "a-gone.example.com").is_empty(), "{s:#?}");
    assert_eq!(txt_at(&env, "a-lost.example.com").len(), 1, "not ours");
    assert_eq!(txt_at(&env, "a-www.example.com").len(), 1);
}

#[tokio::test]
async fn txt_markers_work_with_the_zone_file_and_survive_a_lost_database() {
    trafego_tests::init_test_logging();
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cache = start_cache_on(listener, zonefile_args(dir.path())).await;
    let clock = ManualClock::new(T0);
    let args = own_args("blue", "txt", "0s");
    let t = start_tracking(&cache.url, dir.path(), &args, clock.clone()).await;
    let mut c = tracking_client(&t.url).await;
    let req = |records| ReconcileRequest {
        source: "api".into(),
        records,
        dry_run: false,
        force: true,
    };
    c.reconcile(req(vec![a("www.example.com", "192.0.2.1")]))
        .await
        .unwrap();
    let zone = std::fs::read_to_string(dir.path().join("example.com.zone")).unwrap();
    assert!(zone.contains("a-www"), "{zone}");
    assert!(zone.contains(&marker("blue")), "{zone}");
    t.shutdown().await;
    remove_db(dir.path());
    let t = start_tracking(&cache.url, dir.path(), &args, clock.clone()).await;
    let mut c = tracking_client(&t.url).await;
    let st = c
        .get_tracker_status(trafego_proto::tracking::GetTrackerStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.last_rebuild.unwrap().claimed, 1);
    c.run_orphan_sweep(trafego_proto::tracking::RunOrphanSweepRequest { dry_run: false })
        .await
        .unwrap();
    let zone = std::fs::read_to_string(dir.path().join("example.com.zone")).unwrap();
    assert!(!zone.contains("www"), "record and marker deleted: {zone}");
    t.shutdown().await;
    cache.shutdown().await;
}

/// One installation: its cache-service and tracking-service, own databases,
/// own token at the shared fake, own owner id.
struct Side {
    owner: &'static str,
    token: String,
    content: &'static str,
    dir: tempfile::TempDir,
    cache: tracking_support::Service,
    tracking: tracking_support::Service,
    cache_client:
        trafego_proto::cache::cache_service_client::CacheServiceClient<tonic::transport::Channel>,
    client: trafego_proto::tracking::tracking_service_client::TrackingServiceClient<
        tonic::transport::Channel,
    >,
    clock: ManualClock,
}

impl Side {
    async fn start(fake: &FakeCloudflare, owner: &'static str, content: &'static str) -> Side {
        let token = format!("token-{owner}");
        fake.accept_token(&token);
        let dir = tempfile::tempdir().unwrap();
        let mut args = cloudflare_args(fake, dir.path());
        let at = args.iter().position(|a| a == "--cloudflare-token").unwrap();
        args[at + 1] = token.clone();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cache = start_cache_on(listener, args).await;
        let clock = ManualClock::new(T0);
        let tracking =
            start_tracking(&cache.url, dir.path(), &Self::args(owner), clock.clone()).await;
        Side {
            owner,
            token,
            content,
            cache_client: cache_client(&cache.url).await,
            client: tracking_client(&tracking.url).await,
            dir,
            cache,
            tracking,
            clock,
        }
    }

    fn args(owner: &'static str) -> Vec<&'static str> {
        own_args(owner, "txt", "0s")
    }

    async fn refresh(&mut self) {
        self.cache_client
            .refresh_cache(trafego_proto::cache::RefreshCacheRequest {
                force: true,
                ..Default::default()
            })
            .await
            .unwrap();
    }

    async fn reconcile(&mut self, hosts: &[String]) {
        self.refresh().await;
        let records = hosts.iter().map(|h| a(h, self.content)).collect();
        // Failed changes (a name the other side holds) are results, not errors.
        let r = self
            .client
            .reconcile(ReconcileRequest {
                source: "churn".into(),
                records,
                dry_run: false,
                force: true,
            })
            .await;
        if let Err(e) = r {
            panic!("{}: reconcile: {e:?}", self.owner);
        }
    }

    async fn sweep(&mut self) {
        self.refresh().await;
        self.client
            .run_orphan_sweep(trafego_proto::tracking::RunOrphanSweepRequest { dry_run: false })
            .await
            .unwrap();
    }

    async fn lose_database(&mut self) {
        self.tracking.stop().await;
        remove_db(self.dir.path());
        self.tracking = start_tracking(
            &self.cache.url,
            self.dir.path(),
            &Self::args(self.owner),
            self.clock.clone(),
        )
        .await;
        self.client = tracking_client(&self.tracking.url).await;
    }
}

#[tokio::test]
async fn two_installations_sharing_a_zone_never_touch_each_others_records() {
    trafego_tests::init_test_logging();
    let fake = FakeCloudflare::start(FakeOptions::new(TOKEN, ZONE))
        .await
        .unwrap();
    let mut sides = [
        Side::start(&fake, "blue", "192.0.2.1").await,
        Side::start(&fake, "green", "192.0.2.2").await,
    ];
    let pool: Vec<String> = (0..8).map(|i| format!("h{i}.example.com")).collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    for round in 0..8 {
        let first = rng.random_range(0..2);
        for k in [first, 1 - first] {
            let hosts: Vec<String> = pool
                .iter()
                .filter(|_| rng.random_bool(0.5))
                .cloned()
                .collect();
            sides[k].reconcile(&hosts).await;
            sides[k].sweep().await;
        }
        if round == 4 {
            sides[1].lose_database().await;
        }
    }
    // Settle on disjoint sets: each side's final declaration, exactly.
    let finals: [Vec<String>; 2] = [pool[..4].to_vec(), pool[4..].to_vec()];
    for _ in 0..3 {
        for k in 0..2 {
            sides[k].reconcile(&finals[k]).await;
            sides[k].sweep().await;
        }
    }

    // Every update or delete names a record its own side created.
    let log = fake.write_log();
    let mut created: HashMap<&str, HashSet<&str>> = HashMap::new();
    for w in &log {
        if w.op == "create" {
            created
                .entry(w.token.as_str())
                .or_default()
                .insert(w.id.as_str());
        } else {
            assert!(
                created
                    .get(w.token.as_str())
                    .is_some_and(|ids| ids.contains(w.id.as_str())),
                "{} {} {} {} by {} was not created by it",
                w.op,
                w.rtype,
                w.name,
                w.id,
                w.token
            );
        }
    }
    assert!(
        log.iter().any(|w| w.op == "delete"),
        "the churn deleted something"
    );
    for s in &sides {
        assert!(
            created.contains_key(s.token.as_str()),
            "{} wrote nothing",
            s.owner
        );
    }
    let want: BTreeSet<(String, String, String)> = (0..2)
        .flat_map(|k| {
            let s = &sides[k];
            finals[k].iter().flat_map(move |h| {
                let first = h.split('.').next().unwrap();
                [
                    ("A".to_string(), h.clone(), s.content.to_string()),
                    (
                        "TXT".to_string(),
                        format!("a-{first}.example.com"),
                        marker(s.owner),
                    ),
                ]
            })
        })
        .collect();
    let have: BTreeSet<(String, String, String)> = fake
        .records()
        .into_iter()
        .map(|r| (r.r#type, r.name, r.content))
        .collect();
    assert_eq!(have, want, "final state is exactly what each declared");
    for s in sides {
        s.tracking.shutdown().await;
        s.cache.shutdown().await;
    }
}

/// Fake Cloudflare, cache-service with `cache_extra` flags, tracking-service
/// with markers of `owner` in txt mode.
async fn env_with_cache_flags(cache_extra: &[&str]) -> Env {
    trafego_tests::init_test_logging();
    let fake = FakeCloudflare::start(FakeOptions::new(TOKEN, ZONE))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut args = cloudflare_args(&fake, dir.path());
    args.extend(cache_extra.iter().map(|s| s.to_string()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cache = start_cache_on(listener, args).await;
    let clock = ManualClock::new(T0);
    let tracking = start_tracking(
        &cache.url,
        dir.path(),
        &own_args("blue", "txt", "0s"),
        clock.clone(),
    )
    .await;
    Env {
        client: tracking_client(&tracking.url).await,
        cache_client: cache_client(&cache.url).await,
        fake,
        cache: Some(cache),
        tracking,
        clock,
        dir,
    }
}

#[tokio::test]
async fn chunking_by_batch_size_never_parts_a_record_from_its_marker() {
    // Batches of 3: ungrouped, [r1 m1 r2] [m2 r3 m3] would part r2 from m2.
    let mut env = env_with_cache_flags(&["--cloudflare-batch-size", "3"]).await;
    let hosts = ["h1.example.com", "h2.example.com", "h3.example.com"];
    env.reconcile("api", hosts.iter().map(|h| a(h, "192.0.2.1")).collect())
        .await;
    let log = env.fake.write_log();
    for h in hosts {
        let m = format!("a-{}", h);
        assert_eq!(
            write_of(&log, "create", h).request,
            write_of(&log, "create", &m).request,
            "{h} and its marker in one request: {log:#?}"
        );
    }
    // Deleting them, the same.
    env.reconcile("api", vec![a("other.example.com", "192.0.2.1")])
        .await;
    env.refresh().await;
    env.sweep(false).await;
    let log = env.fake.write_log();
    for h in hosts {
        let m = format!("a-{}", h);
        assert_eq!(
            write_of(&log, "delete", h).request,
            write_of(&log, "delete", &m).request,
            "{h} and its marker deleted in one request: {log:#?}"
        );
    }
}

#[tokio::test]
async fn a_refused_batch_never_leaves_a_record_without_its_marker() {
    let mut env = env_with_cache_flags(&[]).await;
    env.fake.refuse_batches(true);
    let r = env
        .try_reconcile(
            "api",
            vec![
                a("h1.example.com", "192.0.2.1"),
                a("h2.example.com", "192.0.2.1"),
            ],
            false,
            true,
        )
        .await;
    // The fallback goes group by group: each group is a batch again, refused
    // whole (op by op, the records would have been created without markers).
    let r = r.expect("refusals are results");
    assert_eq!(r.summary.unwrap().failed, 2);
    assert!(env.fake.records().is_empty(), "{:?}", env.fake.records());
    env.fake.refuse_batches(false);
    env.reconcile(
        "api",
        vec![
            a("h1.example.com", "192.0.2.1"),
            a("h2.example.com", "192.0.2.1"),
        ],
    )
    .await;
    assert_eq!(
        env.fake.records().len(),
        4,
        "both, with markers, once batches pass"
    );
}
