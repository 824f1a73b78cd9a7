//! The cache itself: refresh (shared by concurrent callers, whole or not at
//! all), write-through to the provider, freshness, and event publishing.
//!
//! Refreshes and writes take one gate in turn, so a listing never overwrites a
//! write that was accepted while it ran, and generations are published in
//! order. A failed refresh never touches the snapshot: only the status records
//! the error.
//!
//! Here: the cache, its errors, its kept state, status and the API form of
//! records. `cache/refresh.rs` holds the refresh and its loop,
//! `cache/writes.rs` the write-through, change outcomes and settling.

mod refresh;
mod writes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::Code;
use trafego_common::clock::SharedClock;
use trafego_common::db::Db;
use trafego_common::duration::millis_i64;
use trafego_common::num;
use trafego_proto::cache::DnsRecord;
use trafego_proto::timestamp_ms;

use crate::events::Hub;
use crate::provider::{DnsProvider, ProviderError, ProviderRecord};
use crate::store::{self, CacheState, CachedRecord};

use refresh::SharedRefresh;
pub use refresh::{RefreshOutcome, refresh_loop};
pub use writes::{ChangeStateOf, WriteReport};

/// An error of the cache, already carrying its gRPC code. Cloneable, so one
/// shared refresh can hand the same failure to every caller waiting on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CacheError {
    /// The gRPC code.
    pub code: Code,
    /// What went wrong; never a secret.
    pub message: String,
}

impl CacheError {
    /// An internal error: the caller is told `internal error (request id …)`,
    /// the detail goes to the log only.
    fn internal(detail: impl std::fmt::Display) -> Self {
        Self {
            code: Code::Internal,
            message: trafego_common::mesh::internal_error(&detail),
        }
    }
}

impl From<ProviderError> for CacheError {
    fn from(e: ProviderError) -> Self {
        Self {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl From<trafego_common::db::DbError> for CacheError {
    fn from(e: trafego_common::db::DbError) -> Self {
        Self::internal(format_args!("database error: {e}"))
    }
}

impl From<diesel::result::Error> for CacheError {
    fn from(e: diesel::result::Error) -> Self {
        trafego_common::db::DbError::from(e).into()
    }
}

impl From<CacheError> for tonic::Status {
    fn from(e: CacheError) -> Self {
        tonic::Status::new(e.code, e.message)
    }
}

/// Settings of the cache.
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// Cache TTL and refresh period.
    pub refresh_interval: Duration,
    /// A listing taking longer than this fails the refresh.
    pub refresh_timeout: Duration,
    /// Recent events kept for watchers starting from a past generation.
    pub watch_buffer: usize,
    /// How long settled change-journal entries are kept.
    pub journal_retention: Duration,
}

/// The provider cache: one per cache-service.
pub struct Cache {
    db: Db,
    provider: Arc<dyn DnsProvider>,
    hub: Hub,
    clock: SharedClock,
    settings: CacheSettings,
    gate: tokio::sync::Mutex<()>,
    inflight: Mutex<Option<SharedRefresh>>,
    /// When the last successful refresh ended, and what it did.
    last_outcome: Mutex<Option<(Instant, RefreshOutcome)>>,
    /// `cache_state` as of the last committed change to it (loaded at open,
    /// replaced after each commit that changes it, never to an older
    /// generation), so a read checks freshness without a database round trip.
    state: Mutex<Arc<CacheState>>,
    zone: String,
    /// Change ids received and not recorded yet, with how many calls carry each.
    in_flight: Mutex<HashMap<String, usize>>,
    /// Bumped each time a write ends, for callers waiting on changes in flight.
    finished: tokio::sync::watch::Sender<u64>,
    /// The change journal's id (see the change-id protocol).
    journal_id: String,
}

/// The freshness of the cache, as `GetCacheStatus` shows it.
#[derive(Debug, Clone)]
pub struct Status {
    /// The stored state.
    pub state: CacheState,
    /// Records cached.
    pub record_count: u64,
    /// True when the last refresh failed, never happened or is too old.
    pub stale: bool,
}

impl Cache {
    /// A cache over `db` for `provider`. Rows cached for another provider or
    /// zone are dropped.
    pub async fn open(
        db: Db,
        provider: Arc<dyn DnsProvider>,
        clock: SharedClock,
        settings: CacheSettings,
    ) -> Result<Arc<Self>, CacheError> {
        let name = provider.name();
        let zone = provider.zone().to_string();
        let z = zone.clone();
        let (dropped, st, journal_id) = db
            .run(move |c| {
                let dropped = store::claim(c, name, &z)?;
                let journal_id = store::journal_id(c)?;
                Ok::<_, CacheError>((dropped, store::state(c)?, journal_id))
            })
            .await?;
        if dropped > 0 {
            tracing::warn!(dropped, provider = name, zone = %zone, "dropped cached rows of another provider or zone");
        }
        Ok(Arc::new(Cache {
            hub: Hub::new(settings.watch_buffer, num::count(st.generation)),
            db,
            provider,
            clock,
            settings,
            gate: tokio::sync::Mutex::new(()),
            inflight: Mutex::new(None),
            last_outcome: Mutex::new(None),
            state: Mutex::new(Arc::new(st)),
            zone,
            in_flight: Mutex::new(HashMap::new()),
            finished: tokio::sync::watch::channel(0).0,
            journal_id,
        }))
    }

    /// The cache's state as of the last committed change: what freshness
    /// checks and responses read instead of the `cache_state` row. The rows a
    /// read sees afterwards are at least this new, since it is replaced only
    /// after a commit.
    pub fn state(&self) -> Arc<CacheState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps `st`, read after a transaction that changed `cache_state`
    /// committed, unless the kept state has a newer generation already (the
    /// generation never goes backwards). Equal generations are taken: a failed
    /// refresh changes the error and attempt time but not the generation, and
    /// commits that change the state are serialised by the gate.
    fn committed(&self, st: CacheState) {
        let mut cur = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.generation >= cur.generation {
            *cur = Arc::new(st);
        }
    }

    /// Keeps generation `g` after a committed write-through, which changes
    /// nothing else in `cache_state`. An older generation is ignored.
    fn committed_generation(&self, g: u64) {
        let Ok(g) = i64::try_from(g) else { return };
        let mut cur = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if g > cur.generation {
            let mut st = CacheState::clone(&cur);
            st.generation = g;
            *cur = Arc::new(st);
        }
    }

    /// The provider's name.
    pub fn provider_name(&self) -> &'static str {
        self.provider.name()
    }

    /// What the provider can hold and do.
    pub fn capabilities(&self) -> crate::provider::Capabilities {
        self.provider.capabilities()
    }

    /// The zone.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// The zone as a validated name.
    pub fn zone_name(&self) -> &trafego_proto::validate::Hostname {
        self.provider.zone()
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The event hub.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The settings.
    pub fn settings(&self) -> &CacheSettings {
        &self.settings
    }

    /// Now, by the cache's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// The cache's status: the kept state, and the records counted now.
    pub async fn status(&self) -> Result<Status, CacheError> {
        let state = CacheState::clone(&self.state());
        let record_count = self
            .db
            .run(|c| Ok::<_, CacheError>(store::count(c)?))
            .await?;
        let stale = self.is_stale(&state);
        Ok(Status {
            state,
            record_count,
            stale,
        })
    }

    /// Stale: the last refresh failed, never happened, or is older than the
    /// refresh interval (the cache TTL). The periodic refresh runs a little
    /// before the TTL runs out, so a cache whose provider answers never is.
    pub fn is_stale(&self, st: &CacheState) -> bool {
        let limit = self.settings.refresh_interval;
        match st.last_refreshed {
            None => true,
            Some(_) if !st.last_error.is_empty() => true,
            Some(at) => self.clock.now_ms().saturating_sub(at) > millis_i64(limit),
        }
    }

    /// A provider record as the API shows it.
    pub fn to_proto(&self, r: &ProviderRecord, last_refreshed: i64, updated_at: i64) -> DnsRecord {
        DnsRecord {
            record_id: r.id.clone(),
            provider: self.provider.name().to_string(),
            zone: self.zone.clone(),
            r#type: r.rtype.clone(),
            name: r.name.clone(),
            content: r.content.clone(),
            ttl: r.ttl,
            proxied: r.proxied,
            priority: r.priority,
            fingerprint: r.fingerprint(),
            comment: r.comment.clone(),
            last_refreshed: Some(timestamp_ms(last_refreshed)),
            updated_at: Some(timestamp_ms(updated_at)),
        }
    }
}

/// A cached row as the API shows it.
pub fn row_to_proto(r: CachedRecord) -> DnsRecord {
    DnsRecord {
        record_id: r.record_id,
        provider: r.provider,
        zone: r.zone,
        r#type: r.rtype,
        name: r.name,
        content: r.content,
        ttl: num::from_db(r.ttl),
        proxied: r.proxied,
        priority: r.priority.map(num::from_db),
        fingerprint: r.fingerprint,
        comment: r.comment,
        last_refreshed: Some(timestamp_ms(r.last_refreshed)),
        updated_at: Some(timestamp_ms(r.updated_at)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use futures::future::BoxFuture;
    use trafego_proto::validate::Hostname;

    use super::*;
    use crate::provider::zonefile::{ZoneFileConfig, ZoneFileProvider};
    use crate::provider::{Listing, WriteOp, WriteResult};
    use trafego_common::db::DbOptions;

    /// A provider whose first listing panics.
    struct PanicsOnce {
        zone: Hostname,
        lists: AtomicU32,
    }

    impl DnsProvider for PanicsOnce {
        fn name(&self) -> &'static str {
            "test"
        }

        fn zone(&self) -> &Hostname {
            &self.zone
        }

        fn capabilities(&self) -> crate::provider::Capabilities {
            crate::provider::Capabilities {
                record_types: trafego_proto::validate::RecordType::ALL.to_vec(),
                proxied: false,
                min_ttl: 30,
                max_ttl: 86_400,
                cname_at_apex: false,
                batch_size: 0,
                comments: false,
                id_format: trafego_proto::validate::IdFormat::HEX32,
            }
        }

        fn list(&self) -> BoxFuture<'_, Result<Listing, ProviderError>> {
            Box::pin(async move {
                if self.lists.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("a bug in a provider");
                }
                Ok(Listing::default())
            })
        }

        fn apply(&self, ops: Vec<WriteOp>) -> BoxFuture<'_, (Vec<WriteResult>, u64)> {
            Box::pin(async move { (ops.iter().map(|_| Ok(None)).collect(), 0) })
        }
    }

    #[tokio::test]
    async fn a_panicking_refresh_is_a_failed_refresh_and_the_next_one_runs() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(
            &dir.path().join("cache.db"),
            crate::MIGRATIONS,
            Default::default(),
        )
        .unwrap();
        let provider = Arc::new(PanicsOnce {
            zone: Hostname::parse("zone", "example.com").unwrap(),
            lists: AtomicU32::new(0),
        });
        let settings = CacheSettings {
            refresh_interval: Duration::from_secs(3600),
            refresh_timeout: Duration::from_secs(10),
            watch_buffer: 100,
            journal_retention: Duration::from_secs(3600),
        };
        let cache = Cache::open(
            db,
            provider.clone(),
            trafego_common::clock::system(),
            settings,
        )
        .await
        .unwrap();
        let e = cache.refresh().await.unwrap_err();
        assert_eq!(e.code, Code::Internal);
        assert!(e.message.contains("internal error"), "{e:?}");
        let st = cache.status().await.unwrap();
        assert!(st.stale);
        assert_eq!(st.state.last_error, e.message, "{st:?}");
        // Not wedged: the next refresh runs and succeeds.
        cache.refresh().await.unwrap();
        assert_eq!(provider.lists.load(Ordering::SeqCst), 2);
        let st = cache.status().await.unwrap();
        assert!(!st.stale && st.state.last_error.is_empty(), "{st:?}");
    }

    /// The kept state only moves forward: a state or generation older than
    /// the one kept is ignored, and a write-through's generation keeps the
    /// rest of the state.
    #[tokio::test]
    async fn the_kept_state_never_goes_back_a_generation() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(
            &dir.path().join("cache.db"),
            crate::MIGRATIONS,
            DbOptions::default(),
        )
        .unwrap();
        let zone = Hostname::parse("zone", "example.com").unwrap();
        let provider =
            ZoneFileProvider::open(ZoneFileConfig::new(dir.path().join("z.zone"), zone)).unwrap();
        let cache = Cache::open(
            db,
            Arc::new(provider),
            trafego_common::clock::system(),
            CacheSettings {
                refresh_interval: Duration::from_secs(3600),
                refresh_timeout: Duration::from_secs(10),
                watch_buffer: 16,
                journal_retention: Duration::from_secs(3600),
            },
        )
        .await
        .unwrap();
        let g0 = cache.state().generation;
        let newer = CacheState {
            generation: g0 + 2,
            last_error: "listing failed".into(),
            ..CacheState::clone(&cache.state())
        };
        cache.committed(newer.clone());
        assert_eq!(*cache.state(), newer);
        cache.committed(CacheState {
            generation: g0 + 1,
            last_error: String::new(),
            ..newer.clone()
        });
        assert_eq!(*cache.state(), newer, "an older state is ignored");
        cache.committed_generation(u64::try_from(g0 + 1).unwrap());
        assert_eq!(*cache.state(), newer, "an older generation is ignored");
        cache.committed_generation(u64::try_from(g0 + 3).unwrap());
        assert_eq!(
            *cache.state(),
            CacheState {
                generation: g0 + 3,
                ..newer
            }
        );
    }
}
