//! The cache itself: a snapshot per zone, each refreshed on its own (shared
//! by concurrent callers, whole or not at all), write-through to the
//! provider, freshness, and event publishing.
//!
//! Each zone has its own lock, held by a refresh from its listing to its
//! commit and by a write from its provider call to its commit, so a listing
//! never overwrites a write accepted in its zone while it ran; zones never
//! wait on each other's listings. One gate orders commits and their
//! publishing across zones, so the one generation sequence is published in
//! order. Listings take one of `REFRESH_CONCURRENCY` slots (a fair, FIFO
//! semaphore), so a zone with many pages holds one slot and never starves
//! the others. A failed refresh never touches its snapshot: only its zone's
//! status records the error.
//!
//! Opening a cache only reads. It writes, refreshes and settles only while
//! this replica leads and has taken over its term (`take_over`: claim,
//! journal id, reload, hub restart); otherwise those are `UNAVAILABLE`, and
//! a follower reloads the kept state from the database before it judges
//! freshness. The database's fence refuses what slips past that.
//!
//! Here: the cache, its zones, its errors, its kept state, status, routing
//! of names to zones and the API form of records. `cache/refresh.rs` holds
//! the refresh and its loop, `cache/writes.rs` the write-through, change
//! outcomes and settling.

mod refresh;
mod writes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tonic::Code;
use trafego_common::clock::SharedClock;
use trafego_common::db::AnyDb;
use trafego_common::duration::millis_i64;
use trafego_common::leader::Role;
use trafego_common::num;
use trafego_proto::cache::DnsRecord;
use trafego_proto::timestamp_ms;
use trafego_proto::validate::Hostname;

use crate::events::Hub;
use crate::provider::{DnsProvider, ProviderError, ProviderRecord};
use crate::store::{self, CacheState, CachedRecord, ZoneState};

use refresh::SharedRefresh;
pub use refresh::{Freshness, RefreshOutcome, refresh_loop};
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

impl CacheError {
    /// A write refused by the database's fence: another replica has taken
    /// the lead since this one's term began. `UNAVAILABLE`: the caller
    /// retries, and reaches the new leader.
    fn fenced(e: &trafego_common::leader::FenceError) -> Self {
        tracing::warn!(error = %e, "a write was refused by the leadership fence");
        Self {
            code: Code::Unavailable,
            message: format!("this replica no longer leads ({e}); retry"),
        }
    }
}

impl From<trafego_common::db::DbError> for CacheError {
    fn from(e: trafego_common::db::DbError) -> Self {
        if let trafego_common::db::DbError::Query(q) = &e
            && let Some(f) = trafego_common::leader::fence_error(q)
        {
            return Self::fenced(f);
        }
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
    /// Cache TTL and refresh period (of every zone).
    pub refresh_interval: Duration,
    /// A zone's listing taking longer than this fails its refresh.
    pub refresh_timeout: Duration,
    /// Recent events kept for watchers starting from a past generation.
    pub watch_buffer: usize,
    /// How long settled change-journal entries are kept.
    pub journal_retention: Duration,
    /// Zone listings run at once, at most (REFRESH_CONCURRENCY, at least 1).
    pub refresh_concurrency: usize,
}

/// One zone of the cache: its provider, its lock, its shared refresh and
/// its kept state.
pub struct Zone {
    name: Hostname,
    provider: Arc<dyn DnsProvider>,
    /// Held by a refresh from its listing to its commit, and by a write from
    /// its provider call to its commit (see the module's text).
    lock: tokio::sync::Mutex<()>,
    inflight: Mutex<Option<SharedRefresh>>,
    /// When the zone's last successful refresh ended, and what it did.
    last_outcome: Mutex<Option<(Instant, RefreshOutcome)>>,
    /// `zone_state` as of its last committed change, so a read checks
    /// freshness without a database round trip.
    state: Mutex<Arc<ZoneState>>,
}

impl Zone {
    /// The zone's name.
    pub fn name(&self) -> &Hostname {
        &self.name
    }

    /// The zone's kept state.
    pub fn state(&self) -> Arc<ZoneState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps `st`, read after a commit that changed this zone's state,
    /// unless the kept state has a newer generation already (a failed
    /// refresh keeps the generation and changes the error and attempt time).
    fn committed(&self, st: ZoneState) {
        let mut cur = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.generation >= cur.generation {
            *cur = Arc::new(st);
        }
    }

    /// Keeps generation `g` after a committed write-through in this zone.
    fn committed_generation(&self, g: i64) {
        let mut cur = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if g > cur.generation {
            let mut st = ZoneState::clone(&cur);
            st.generation = g;
            *cur = Arc::new(st);
        }
    }
}

/// The provider cache: one per cache-service, over one or more zones of one
/// provider account.
pub struct Cache {
    db: AnyDb,
    /// The zones served, sorted by name.
    zones: Vec<Zone>,
    provider_name: &'static str,
    capabilities: crate::provider::Capabilities,
    hub: Hub,
    clock: SharedClock,
    settings: CacheSettings,
    /// Orders commits and their publishing (see the module's text).
    gate: tokio::sync::Mutex<()>,
    /// Zone listings running at once (REFRESH_CONCURRENCY).
    refresh_slots: tokio::sync::Semaphore,
    /// `cache_state` (the generation) as of the last committed change to it.
    state: Mutex<Arc<CacheState>>,
    /// Change ids received and not recorded yet, with how many calls carry each.
    in_flight: Mutex<HashMap<String, usize>>,
    /// Bumped each time a write ends, for callers waiting on changes in flight.
    finished: tokio::sync::watch::Sender<u64>,
    /// The change journal's id (see the change-id protocol), as last read
    /// or made; empty on a follower before any leader made one.
    journal_id: Mutex<String>,
    /// This replica's role (fixed at leader for a single SQLite instance).
    role: watch::Receiver<Role>,
    /// The fence of the last term whose [`Cache::take_over`] finished: the
    /// cache writes only while the role's fence is this one.
    term: watch::Sender<Option<i64>>,
}

/// One zone's freshness, as `GetCacheStatus` shows it.
#[derive(Debug, Clone)]
pub struct ZoneStatus {
    /// The stored state.
    pub state: ZoneState,
    /// Records cached in the zone.
    pub record_count: u64,
    /// True when the zone's last refresh failed, never happened or is too old.
    pub stale: bool,
}

/// The freshness of the cache, as `GetCacheStatus` shows it.
#[derive(Debug, Clone)]
pub struct Status {
    /// The service-wide generation.
    pub generation: u64,
    /// Each zone's, in the order the zones are served (by name).
    pub zones: Vec<ZoneStatus>,
}

impl Status {
    /// Records cached in every zone.
    pub fn record_count(&self) -> u64 {
        self.zones
            .iter()
            .fold(0u64, |n, z| n.saturating_add(z.record_count))
    }

    /// Whether any zone is stale.
    pub fn stale(&self) -> bool {
        self.zones.iter().any(|z| z.stale)
    }

    /// The first failing zone's error, prefixed with its zone when several
    /// are served; empty when none failed.
    pub fn last_error(&self) -> String {
        let several = self.zones.len() > 1;
        self.zones
            .iter()
            .find(|z| !z.state.last_error.is_empty())
            .map(|z| {
                if several {
                    format!("zone {}: {}", z.state.zone, z.state.last_error)
                } else {
                    z.state.last_error.clone()
                }
            })
            .unwrap_or_default()
    }

    /// The oldest zone's last successful refresh: every zone is at least
    /// this fresh. `None` when some zone was never refreshed.
    pub fn last_refreshed(&self) -> Option<i64> {
        oldest(self.zones.iter().map(|z| z.state.last_refreshed))
    }
}

/// The oldest of these times; `None` when any is `None` (or there are none).
fn oldest(times: impl Iterator<Item = Option<i64>>) -> Option<i64> {
    let mut out: Option<i64> = None;
    for t in times {
        let t = t?;
        out = Some(out.map_or(t, |o| o.min(t)));
    }
    out
}

impl Cache {
    /// A cache over `db` for `providers`, one per zone, all of one provider
    /// (they share its HTTP client and request budget), serving as `role`
    /// says. Opening only reads: the zones' kept states, the generation and
    /// the journal's id as the database holds them. What a leader does
    /// before its first write (claiming the database for these zones,
    /// starting the journal) is [`Cache::take_over`], run at the start of
    /// each leadership term; until then the cache serves reads only.
    pub async fn open(
        db: AnyDb,
        providers: Vec<Arc<dyn DnsProvider>>,
        clock: SharedClock,
        settings: CacheSettings,
        role: watch::Receiver<Role>,
    ) -> Result<Arc<Self>, CacheError> {
        let first = providers
            .first()
            .ok_or_else(|| CacheError::internal("a cache needs at least one zone"))?;
        let name = first.name();
        let capabilities = first.capabilities();
        let mut providers = providers;
        providers.sort_by(|a, b| a.zone().cmp(b.zone()));
        let zone_names: Vec<String> = providers.iter().map(|p| p.zone().to_string()).collect();
        if zone_names.windows(2).any(|w| w[0] == w[1]) {
            return Err(CacheError::internal("a zone is served twice"));
        }
        let (st, states, journal_id) = db
            .run(move |c| {
                Ok::<_, CacheError>((
                    store::state(c)?,
                    store::zone_states(c)?,
                    store::stored_journal_id(c)?,
                ))
            })
            .await?;
        let mut states: HashMap<String, ZoneState> =
            states.into_iter().map(|s| (s.zone.clone(), s)).collect();
        let zones = providers
            .into_iter()
            .map(|provider| {
                let zname = provider.zone().clone();
                let st = states
                    .remove(zname.as_str())
                    .unwrap_or_else(|| ZoneState::new(zname.as_str()));
                Zone {
                    name: zname,
                    provider,
                    lock: tokio::sync::Mutex::new(()),
                    inflight: Mutex::new(None),
                    last_outcome: Mutex::new(None),
                    state: Mutex::new(Arc::new(st)),
                }
            })
            .collect();
        Ok(Arc::new(Cache {
            hub: Hub::new(settings.watch_buffer, num::count(st.generation)),
            db,
            zones,
            provider_name: name,
            capabilities,
            clock,
            refresh_slots: tokio::sync::Semaphore::new(settings.refresh_concurrency.max(1)),
            settings,
            gate: tokio::sync::Mutex::new(()),
            state: Mutex::new(Arc::new(st)),
            in_flight: Mutex::new(HashMap::new()),
            finished: tokio::sync::watch::channel(0).0,
            journal_id: Mutex::new(journal_id),
            role,
            term: watch::channel(None).0,
        }))
    }

    /// Starts leadership term `fence` (0 for a single SQLite instance):
    /// makes the database the cache of this provider and these zones (rows
    /// of another provider or of a zone no longer served are dropped and
    /// logged with their counts), starts the change journal if it has no id,
    /// reloads the generation and the zones' states (another replica may
    /// have committed since this one read them) and restarts the event hub
    /// at the database's generation, so a watcher resuming from before it is
    /// told to resync. Only then does the cache write and refresh. Changes
    /// left pending by a leader that died are settled as a restarted single
    /// instance settles them: by looking, after each zone's first refresh
    /// of the term, or when asked about ([`Cache::settle_stale`]).
    ///
    /// Done once per term: a second call with the same fence does nothing.
    pub async fn take_over(&self, fence: i64) -> Result<(), CacheError> {
        if *self.term.borrow() == Some(fence) {
            return Ok(());
        }
        let name = self.provider_name;
        let z: Vec<String> = self.zones.iter().map(|z| z.name.to_string()).collect();
        let _gate = self.gate.lock().await;
        let (claimed, st, states, journal_id) = self
            .db
            .run(move |c| {
                let claimed = store::claim(c, name, &z)?;
                let journal_id = store::journal_id(c)?;
                Ok::<_, CacheError>((
                    claimed,
                    store::state(c)?,
                    store::zone_states(c)?,
                    journal_id,
                ))
            })
            .await?;
        if claimed.other_provider > 0 {
            tracing::warn!(
                dropped = claimed.other_provider,
                provider = name,
                "dropped cached rows of another provider"
            );
        }
        for (zone, dropped) in &claimed.other_zones {
            tracing::warn!(dropped, zone = %zone, "dropped cached rows of a zone no longer served");
        }
        if claimed.journal_reset {
            tracing::info!(
                "the change journal starts anew (it spoke of another provider or of a zone no longer served)"
            );
        }
        self.keep_loaded(st.clone(), states);
        for zone in &self.zones {
            *zone.last_outcome.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        self.hub.restart(num::count(st.generation));
        *self.journal_id.lock().unwrap_or_else(|e| e.into_inner()) = journal_id;
        self.term.send_replace(Some(fence));
        tracing::info!(
            fence,
            generation = st.generation,
            "took over the cache: writes and refreshes run here"
        );
        Ok(())
    }

    /// Keeps the generation and zone states read from the database: the
    /// newer of each and what is kept.
    fn keep_loaded(&self, st: CacheState, states: Vec<ZoneState>) {
        {
            let mut cur = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if st.generation >= cur.generation {
                *cur = Arc::new(st);
            }
        }
        let mut states: HashMap<String, ZoneState> =
            states.into_iter().map(|s| (s.zone.clone(), s)).collect();
        for zone in &self.zones {
            if let Some(s) = states.remove(zone.name.as_str()) {
                zone.committed(s);
            }
        }
    }

    /// Reloads the generation and the zones' states from the database (two
    /// small queries), and the journal's id too when `journal` (a point
    /// read): what a follower does before judging freshness or reporting
    /// status, since the leader commits without telling it.
    pub async fn reload(&self, journal: bool) -> Result<(), CacheError> {
        let (st, states, journal_id) = self
            .db
            .run(move |c| {
                Ok::<_, CacheError>((
                    store::state(c)?,
                    store::zone_states(c)?,
                    if journal {
                        Some(store::stored_journal_id(c)?)
                    } else {
                        None
                    },
                ))
            })
            .await?;
        self.keep_loaded(st, states);
        if let Some(id) = journal_id {
            *self.journal_id.lock().unwrap_or_else(|e| e.into_inner()) = id;
        }
        Ok(())
    }

    /// The role as it stands now.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// The role, as it changes.
    pub fn role_watch(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// Waits, at most `within`, until this replica knows where it stands:
    /// it leads and has taken over, or it follows a known leader. A replica
    /// starting alone on PostgreSQL then answers its first call as the
    /// leader instead of `UNAVAILABLE`; one that finds no leader in time
    /// serves anyway (as a follower, its writes `UNAVAILABLE` until one
    /// leads).
    pub async fn settled(&self, within: Duration) {
        let mut role = self.role.clone();
        let mut terms = self.term.subscribe();
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let known = self.leading().is_some()
                || matches!(
                    &*role.borrow_and_update(),
                    Role::Follower { leader: Some(_) }
                );
            terms.borrow_and_update();
            if known {
                return;
            }
            let changed = async {
                tokio::select! {
                    r = role.changed() => r.is_ok(),
                    r = terms.changed() => r.is_ok(),
                }
            };
            match tokio::time::timeout_at(deadline, changed).await {
                Ok(true) => {}
                _ => return,
            }
        }
    }

    /// The fence of the term this replica leads and has taken over, if it
    /// does: the only state in which it writes, refreshes or settles.
    pub fn leading(&self) -> Option<i64> {
        let fence = self.role.borrow().fence()?;
        (*self.term.borrow() == Some(fence)).then_some(fence)
    }

    /// `UNAVAILABLE` unless this replica leads and has taken over: the
    /// second line of defence behind forwarding, so a call that raced a
    /// step-down never writes (the database's fence is the third).
    pub(crate) fn must_lead(&self) -> Result<i64, CacheError> {
        self.leading().ok_or_else(|| self.not_leading())
    }

    /// `UNAVAILABLE`, saying why this replica does not lead now and where
    /// the leader is, when known.
    pub(crate) fn not_leading(&self) -> CacheError {
        CacheError {
            code: Code::Unavailable,
            message: match self.role() {
                Role::Leader { .. } => {
                    "this replica has just taken the lead and is not ready to write yet; retry"
                        .to_string()
                }
                Role::Follower { leader: Some(l) } => {
                    format!("this replica does not lead; the leader is at {l}: retry there")
                }
                Role::Follower { leader: None } => {
                    "this replica does not lead and no leader is known yet; retry shortly"
                        .to_string()
                }
            },
        }
    }

    /// The cache's service-wide state (the generation) as of the last
    /// committed change. The rows a read sees afterwards are at least this
    /// new, since it is replaced only after a commit.
    pub fn state(&self) -> Arc<CacheState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Keeps generation `g` after a commit. An older generation is ignored.
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
        self.provider_name
    }

    /// What the provider can hold and do (the same in every zone: one
    /// provider account).
    pub fn capabilities(&self) -> crate::provider::Capabilities {
        self.capabilities.clone()
    }

    /// The zones served, sorted by name.
    pub fn zones(&self) -> &[Zone] {
        &self.zones
    }

    /// The zones served, joined by "," (the single zone with one).
    pub fn zone_list(&self) -> String {
        self.zones
            .iter()
            .map(|z| z.name.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The zone named exactly `name`.
    pub fn zone_index(&self, name: &str) -> Option<usize> {
        self.zones.iter().position(|z| z.name.as_str() == name)
    }

    /// The zone a name belongs to: the longest served zone it lies in.
    pub fn route(&self, name: &Hostname) -> Option<usize> {
        self.zones
            .iter()
            .enumerate()
            .filter(|(_, z)| name.is_in_zone(&z.name))
            .max_by_key(|(_, z)| z.name.as_str().len())
            .map(|(i, _)| i)
    }

    /// Why `name` cannot be written: it lies in no zone served.
    pub fn no_zone_message(&self, name: &str) -> String {
        format!(
            "{name} lies in none of the zones served ({})",
            self.zones
                .iter()
                .map(|z| z.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// The database.
    pub fn db(&self) -> &AnyDb {
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

    /// The cache's status: every zone's kept state, and the records counted
    /// now. A replica that does not lead reloads the states from the
    /// database first: it reports the shared database's state.
    pub async fn status(&self) -> Result<Status, CacheError> {
        if self.leading().is_none() {
            self.reload(true).await?;
        }
        let generation = num::count(self.state().generation);
        let counts = self
            .db
            .run(|c| Ok::<_, CacheError>(store::count_by_zone(c)?))
            .await?;
        let zones = self
            .zones
            .iter()
            .map(|z| {
                let state = ZoneState::clone(&z.state());
                let stale = self.is_stale(&state);
                ZoneStatus {
                    record_count: counts.get(z.name.as_str()).copied().unwrap_or(0),
                    state,
                    stale,
                }
            })
            .collect();
        Ok(Status { generation, zones })
    }

    /// Stale: the zone's last refresh failed, never happened, or is older
    /// than the refresh interval (the cache TTL). The periodic refresh runs a
    /// little before the TTL runs out, so a zone whose provider answers never is.
    pub fn is_stale(&self, st: &ZoneState) -> bool {
        let limit = self.settings.refresh_interval;
        match st.last_refreshed {
            None => true,
            Some(_) if !st.last_error.is_empty() => true,
            Some(at) => self.clock.now_ms().saturating_sub(at) > millis_i64(limit),
        }
    }

    /// The oldest last successful refresh of these zones (all when empty).
    pub fn last_refreshed(&self, zones: &[usize]) -> Option<i64> {
        if zones.is_empty() {
            oldest(self.zones.iter().map(|z| z.state().last_refreshed))
        } else {
            oldest(zones.iter().map(|&i| self.zones[i].state().last_refreshed))
        }
    }

    /// A provider record of zone `zone` as the API shows it.
    pub fn to_proto(
        &self,
        zone: usize,
        r: &ProviderRecord,
        last_refreshed: i64,
        updated_at: i64,
    ) -> DnsRecord {
        DnsRecord {
            record_id: r.id.clone(),
            provider: self.provider_name.to_string(),
            zone: self.zones[zone].name.to_string(),
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
    use trafego_common::db::{DbOptions, DbUrl};

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
        let db = AnyDb::connect(
            &DbUrl::Sqlite(dir.path().join("cache.db")),
            "test",
            crate::migrations(),
            DbOptions::default(),
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
            refresh_concurrency: 4,
        };
        let cache = Cache::open(
            db,
            vec![provider.clone() as Arc<dyn DnsProvider>],
            trafego_common::clock::system(),
            settings,
            trafego_common::leader::solo(),
        )
        .await
        .unwrap();
        cache.take_over(0).await.unwrap();
        let e = cache.refresh(0).await.unwrap_err();
        assert_eq!(e.code, Code::Internal);
        assert!(e.message.contains("internal error"), "{e:?}");
        let st = cache.status().await.unwrap();
        assert!(st.stale());
        assert_eq!(st.last_error(), e.message, "{st:?}");
        // Not wedged: the next refresh runs and succeeds.
        cache.refresh(0).await.unwrap();
        assert_eq!(provider.lists.load(Ordering::SeqCst), 2);
        let st = cache.status().await.unwrap();
        assert!(!st.stale() && st.last_error().is_empty(), "{st:?}");
    }

    /// A replica that does not lead never asks the provider: a write and a
    /// refresh are `UNAVAILABLE` naming the leader, a read of a zone never
    /// filled belongs to the leader, and before its takeover a leader
    /// refuses too.
    #[tokio::test]
    async fn a_follower_never_writes_or_refreshes() {
        let dir = tempfile::tempdir().unwrap();
        let db = AnyDb::connect(
            &DbUrl::Sqlite(dir.path().join("cache.db")),
            "test",
            crate::migrations(),
            DbOptions::default(),
        )
        .unwrap();
        let provider = Arc::new(PanicsOnce {
            zone: Hostname::parse("zone", "example.com").unwrap(),
            lists: AtomicU32::new(0),
        });
        let (tx, role) = watch::channel(Role::Follower {
            leader: Some("10.0.0.7:50051".into()),
        });
        let cache = Cache::open(
            db,
            vec![provider.clone() as Arc<dyn DnsProvider>],
            trafego_common::clock::system(),
            CacheSettings {
                refresh_interval: Duration::from_secs(3600),
                refresh_timeout: Duration::from_secs(10),
                watch_buffer: 16,
                journal_retention: Duration::from_secs(3600),
                refresh_concurrency: 4,
            },
            role,
        )
        .await
        .unwrap();
        let e = cache.refresh(0).await.unwrap_err();
        assert_eq!(e.code, Code::Unavailable);
        assert!(e.message.contains("10.0.0.7:50051"), "{e:?}");
        let input = trafego_proto::validate::ValidRecordInput {
            spec: trafego_proto::validate::RecordSpec::new(
                "",
                "A",
                "a.example.com",
                "192.0.2.1",
                300,
                false,
                None,
            )
            .unwrap(),
            comment: String::new(),
        };
        let change = crate::journal::ChangeReq::plain(crate::provider::WriteOp::Create(input));
        let e = cache.write(vec![change.clone()]).await.unwrap_err();
        assert_eq!(e.code, Code::Unavailable, "{e:?}");
        assert_eq!(
            cache.ensure_fresh(&[], None).await.unwrap(),
            Freshness::AtLeader("10.0.0.7:50051".into())
        );
        assert_eq!(provider.lists.load(Ordering::SeqCst), 0);
        // Leading, but not taken over yet: still refused.
        tx.send_replace(Role::Leader { fence: 4 });
        let e = cache.write(vec![change]).await.unwrap_err();
        assert_eq!(e.code, Code::Unavailable, "{e:?}");
        cache.take_over(4).await.unwrap();
        assert_eq!(cache.leading(), Some(4));
        assert!(!cache.journal_id().is_empty());
        // Stepping down ends it at once.
        tx.send_replace(Role::Follower { leader: None });
        assert_eq!(cache.leading(), None);
        assert_eq!(cache.refresh(0).await.unwrap_err().code, Code::Unavailable);
        assert_eq!(provider.lists.load(Ordering::SeqCst), 0);
    }

    /// A zone's kept state only moves forward: a state or generation older
    /// than the one kept is ignored, and a write-through's generation keeps
    /// the rest of the state.
    #[tokio::test]
    async fn the_kept_state_never_goes_back_a_generation() {
        let dir = tempfile::tempdir().unwrap();
        let db = AnyDb::connect(
            &DbUrl::Sqlite(dir.path().join("cache.db")),
            "test",
            crate::migrations(),
            DbOptions::default(),
        )
        .unwrap();
        let zone = Hostname::parse("zone", "example.com").unwrap();
        let provider =
            ZoneFileProvider::open(ZoneFileConfig::new(dir.path().join("z.zone"), zone)).unwrap();
        let cache = Cache::open(
            db,
            vec![Arc::new(provider) as Arc<dyn DnsProvider>],
            trafego_common::clock::system(),
            CacheSettings {
                refresh_interval: Duration::from_secs(3600),
                refresh_timeout: Duration::from_secs(10),
                watch_buffer: 16,
                journal_retention: Duration::from_secs(3600),
                refresh_concurrency: 4,
            },
            trafego_common::leader::solo(),
        )
        .await
        .unwrap();
        cache.take_over(0).await.unwrap();
        let z = &cache.zones()[0];
        let g0 = z.state().generation;
        let newer = ZoneState {
            generation: g0 + 2,
            last_error: "listing failed".into(),
            ..ZoneState::clone(&z.state())
        };
        z.committed(newer.clone());
        assert_eq!(*z.state(), newer);
        z.committed(ZoneState {
            generation: g0 + 1,
            last_error: String::new(),
            ..newer.clone()
        });
        assert_eq!(*z.state(), newer, "an older state is ignored");
        z.committed_generation(g0 + 1);
        assert_eq!(*z.state(), newer, "an older generation is ignored");
        z.committed_generation(g0 + 3);
        assert_eq!(
            *z.state(),
            ZoneState {
                generation: g0 + 3,
                ..newer
            }
        );
        let before = cache.state().generation;
        cache.committed_generation(u64::try_from(before).unwrap());
        assert_eq!(cache.state().generation, before);
        cache.committed_generation(u64::try_from(before + 5).unwrap());
        assert_eq!(cache.state().generation, before + 5);
    }
}
