//! The conformance backends: each provider under test, started for one
//! check, with out-of-band access to what it holds. The zone file and the
//! fake Cloudflare live here; every other provider adds its own.

use std::path::{Path, PathBuf};

use cache_service::provider::zonefile::{ZoneFileConfig, ZoneFileProvider};
use cache_service::provider::{DnsProvider, WriteOp};
use trafego_proto::validate::{Hostname, RecordSpec, ValidRecordInput};

use super::{Backend, Boxed, Fault, Held, ZONE};
use crate::fake_cloudflare::{FakeCloudflare, FakeOptions, FakeRecord};

fn zone() -> Hostname {
    Hostname::parse("zone", ZONE).expect("zone")
}

/// The zone-file provider: a file of its own, written out of band through a
/// second provider on the same file (as an editor would).
pub struct ZoneFile {
    _dir: tempfile::TempDir,
    path: PathBuf,
    editor: ZoneFileProvider,
}

impl ZoneFile {
    /// A new zone file in a temporary directory.
    pub async fn start() -> Self {
        crate::capture_logs();
        let dir = crate::tempdir();
        let path = dir.path().join("example.com.zone");
        let editor =
            ZoneFileProvider::open(ZoneFileConfig::new(path.clone(), zone())).expect("zone file");
        ZoneFile {
            _dir: dir,
            path,
            editor,
        }
    }

    fn backup(&self) -> PathBuf {
        self.path.with_extension("zone.saved")
    }
}

/// `h` as a write input.
pub fn input_of(h: &Held) -> ValidRecordInput {
    ValidRecordInput {
        spec: RecordSpec::new(
            "seed", &h.rtype, &h.name, &h.content, 300, false, h.priority,
        )
        .unwrap_or_else(|e| panic!("seed record {h:?}: {e}")),
        comment: String::new(),
    }
}

impl Backend for ZoneFile {
    fn name(&self) -> &'static str {
        "zonefile"
    }

    fn cache_args(&self, _dir: &Path) -> Vec<String> {
        vec![
            "--zone".into(),
            ZONE.into(),
            "--zonefile-path".into(),
            self.path.display().to_string(),
        ]
    }

    fn bad_credentials_args(&self, _dir: &Path) -> Option<Vec<String>> {
        None
    }

    fn secrets(&self) -> Vec<String> {
        Vec::new()
    }

    fn seed(&self, records: Vec<Held>) -> Boxed<'_, ()> {
        Box::pin(async move {
            let ops = records
                .iter()
                .map(|h| WriteOp::Create(input_of(h)))
                .collect();
            let (results, _) = self.editor.apply(ops).await;
            for r in results {
                r.expect("seed the zone file");
            }
        })
    }

    fn held(&self) -> Boxed<'_, Vec<Held>> {
        Box::pin(async move {
            let listing = self.editor.list().await.expect("read the zone file");
            listing
                .records
                .into_iter()
                .filter(|r| !(r.name == ZONE && matches!(r.rtype.as_str(), "SOA" | "NS")))
                .map(|r| Held {
                    rtype: r.rtype,
                    name: r.name,
                    content: r.content,
                    priority: r.priority,
                })
                .collect()
        })
    }

    fn fault(&self, fault: Fault) -> Boxed<'_, bool> {
        Box::pin(async move {
            match fault {
                // A file that no longer parses: what an editor's mistake does.
                Fault::Down => {
                    std::fs::copy(&self.path, self.backup()).expect("save the zone file");
                    std::fs::write(&self.path, "this is not a zone file (\n").expect("break it");
                    true
                }
                Fault::Clear => {
                    if self.backup().exists() {
                        std::fs::rename(self.backup(), &self.path).expect("restore");
                    }
                    true
                }
                Fault::RateLimited => false,
            }
        })
    }

    fn page_size(&self) -> usize {
        0
    }
}

/// The token the conformance fake Cloudflare accepts.
pub const CF_TOKEN: &str = "conformance-cf-token-7d41b0a9e2";
/// A token it refuses.
pub const CF_BAD_TOKEN: &str = "conformance-wrong-token-55aa01";
/// Records per listing page asked of it.
pub const CF_PER_PAGE: usize = 50;

/// The fake Cloudflare (a real HTTP server speaking Cloudflare's API).
pub struct Cloudflare {
    fake: FakeCloudflare,
}

impl Cloudflare {
    /// A fresh fake with an empty zone.
    pub async fn start() -> Self {
        crate::capture_logs();
        let fake = FakeCloudflare::start(FakeOptions::new(CF_TOKEN, ZONE))
            .await
            .expect("fake cloudflare");
        Cloudflare { fake }
    }

    fn args(&self, token: &str) -> Vec<String> {
        vec![
            "--provider".into(),
            "cloudflare".into(),
            "--zone".into(),
            ZONE.into(),
            "--cloudflare-api-url".into(),
            self.fake.base_url(),
            "--cloudflare-token".into(),
            token.into(),
            "--cloudflare-per-page".into(),
            CF_PER_PAGE.to_string(),
        ]
    }
}

impl Backend for Cloudflare {
    fn name(&self) -> &'static str {
        "cloudflare"
    }

    fn cache_args(&self, _dir: &Path) -> Vec<String> {
        self.args(CF_TOKEN)
    }

    fn bad_credentials_args(&self, _dir: &Path) -> Option<Vec<String>> {
        Some(self.args(CF_BAD_TOKEN))
    }

    fn secrets(&self) -> Vec<String> {
        vec![CF_TOKEN.into(), CF_BAD_TOKEN.into()]
    }

    fn seed(&self, records: Vec<Held>) -> Boxed<'_, ()> {
        Box::pin(async move {
            self.fake.insert_many(
                records
                    .into_iter()
                    .map(|h| {
                        let mut r = FakeRecord::new(&h.rtype, &h.name, &h.content);
                        r.priority = h.priority;
                        r
                    })
                    .collect(),
            );
        })
    }

    fn held(&self) -> Boxed<'_, Vec<Held>> {
        Box::pin(async move {
            self.fake
                .records()
                .into_iter()
                .map(|r| Held {
                    rtype: r.r#type,
                    name: r.name,
                    content: r.content,
                    priority: r.priority,
                })
                .collect()
        })
    }

    fn fault(&self, fault: Fault) -> Boxed<'_, bool> {
        Box::pin(async move {
            match fault {
                Fault::Down => self.fake.fail_next(u32::MAX, 503),
                Fault::RateLimited => self.fake.rate_limit_next(2, 0),
                Fault::Clear => self.fake.clear_faults(),
            }
            true
        })
    }

    fn page_size(&self) -> usize {
        CF_PER_PAGE
    }
}
