//! One leader per service among any number of replicas on one PostgreSQL
//! database, with a fencing number, and the SQLite single-instance guard
//! ([`sqlite`]).
//!
//! Each replica runs a [`Leadership`]: a task that keeps one dedicated
//! PostgreSQL connection (never from the pool) and tries
//! `pg_try_advisory_lock(key)` on it every `LEADER_RETRY_INTERVAL`, the key
//! derived from the service's name ([`lock_key`]). The session that gets it
//! bumps the service's fence in the `leadership` table in one statement,
//! records its advertised address there, and only then reports
//! [`Role::Leader`] with that fence. The leader checks its connection every
//! `LEADER_CHECK_INTERVAL`; when a check fails or takes longer than the
//! interval it reports [`Role::Follower`] at once, before anything else, and
//! drops the connection (the server then frees the lock). A replica that lost
//! the lead waits two retry intervals before it stands again, so a healthy
//! follower takes over first.
//!
//! The role is a belief, and a paused process can act on an old one: what
//! makes it safe is the fence. Every write transaction starts with
//! [`check_fence`], which holds the leadership row `FOR SHARE`, so a takeover
//! waits for the old leader's in-flight writes and every later one fails.
//! What is fenced is database writes; a provider write relies on the fence
//! checked in the journal transaction right before it is sent.
//!
//! The lock session also sets `idle_session_timeout` (four times the longer
//! interval): a leader whose process stalls or whose network is cut stops
//! checking, and the server ends its session and frees the lock then, instead
//! of when TCP keepalives give up (hours, by default).
//!
//! Nothing here logs the database URL: it carries the password.

pub mod forward;
pub mod sql;
pub mod sqlite;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use sql::{
    FenceError, LEADERSHIP_TABLE, check_fence, check_session_fence, ensure_table, fence_error,
    lock_key, read_leader,
};

/// What this replica is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// It leads: it holds the lock, and its writes pass [`check_fence`] with
    /// this fence until another replica takes over.
    Leader {
        /// The fence this replica bumped to when it took over.
        fence: i64,
    },
    /// Another replica leads, or none does yet; this one must not do the
    /// work that runs once, nor write.
    Follower {
        /// The leader's advertised address, as last read from the table
        /// (`None` when unknown, e.g. right after stepping down).
        leader: Option<String>,
    },
}

impl Role {
    /// `leader` or `follower`, for status RPCs and health metadata. A
    /// follower is healthy: the role never fails readiness.
    pub fn name(&self) -> &'static str {
        match self {
            Role::Leader { .. } => "leader",
            Role::Follower { .. } => "follower",
        }
    }

    /// The fence when leading.
    pub fn fence(&self) -> Option<i64> {
        match self {
            Role::Leader { fence } => Some(*fence),
            Role::Follower { .. } => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Role::Leader { fence } => write!(f, "leader (fence {fence})"),
            Role::Follower { leader: Some(l) } => write!(f, "follower (leader at {l})"),
            Role::Follower { leader: None } => write!(f, "follower (no leader known)"),
        }
    }
}

/// The role string for health and status: a service without leadership
/// (SQLite, one instance) does all the work itself, so it reports `leader`.
pub fn health_role(role: Option<&Role>) -> &'static str {
    role.map_or("leader", Role::name)
}

/// A role that never changes, for a service without replicas (SQLite: one
/// instance per file leads alone). Its fence is 0, which no fenced database
/// accepts: it is only for work gated by [`while_leading`].
pub fn solo() -> watch::Receiver<Role> {
    let (tx, rx) = watch::channel(Role::Leader { fence: 0 });
    // Dropped: the role can never change, and watchers see that.
    drop(tx);
    rx
}

/// The role of `leadership`, or [`solo`] without one (SQLite).
pub fn role_of(leadership: Option<&Leadership>) -> watch::Receiver<Role> {
    leadership.map_or_else(solo, Leadership::role)
}

/// Warns when `advertise` is a wildcard address: followers could not
/// forward to this replica when it leads.
fn warn_if_unroutable(advertise: &str) {
    let host = advertise
        .rsplit_once(':')
        .map_or(advertise, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host == "0.0.0.0" || host == "::" {
        tracing::warn!(
            advertise = %advertise,
            "the advertised address is a wildcard: followers cannot forward writes to it; set \
             ADVERTISE_ADDRESS to this replica's routable address (e.g. the pod IP)"
        );
    }
}

/// Runs `work` once for each term this replica leads: started with the
/// term's fence and a token when the role becomes [`Role::Leader`], the token
/// cancelled as soon as the role changes or `cancel` fires, and awaited to its
/// end before anything else (the next term waits for it). Work that ends by
/// itself is not restarted within its term. Returns when `cancel` fires (after
/// the work in hand ends) or when the role can no longer change and the work
/// has ended.
pub async fn while_leading<F, Fut>(
    mut role: watch::Receiver<Role>,
    cancel: CancellationToken,
    mut work: F,
) where
    F: FnMut(i64, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        let fence = loop {
            if let Some(f) = role.borrow_and_update().fence() {
                break f;
            }
            tokio::select! {
                r = role.changed() => if r.is_err() { return },
                () = cancel.cancelled() => return,
            }
        };
        let term = cancel.child_token();
        let run = work(fence, term.clone());
        tokio::pin!(run);
        // Whether the role can still change.
        let mut live = true;
        loop {
            tokio::select! {
                () = &mut run => break,
                r = role.changed(), if live => match r {
                    Err(_) => live = false,
                    Ok(()) if role.borrow().fence() != Some(fence) => {
                        term.cancel();
                        run.as_mut().await;
                        break;
                    }
                    Ok(()) => {}
                },
            }
        }
        term.cancel();
        if cancel.is_cancelled() || !live {
            return;
        }
        // Ended by itself while still leading: wait for the term to end.
        while role.borrow_and_update().fence() == Some(fence) {
            tokio::select! {
                r = role.changed() => if r.is_err() { return },
                () = cancel.cancelled() => return,
            }
        }
    }
}

/// How often leadership is tried and checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderSettings {
    /// How often a follower tries the lock: at worst the time from the lock
    /// being freed to a new leader.
    pub retry_interval: Duration,
    /// How often the leader checks its connection, and how long a check may
    /// take before the leader steps down.
    pub check_interval: Duration,
}

impl Default for LeaderSettings {
    fn default() -> Self {
        Self {
            retry_interval: Duration::from_secs(1),
            check_interval: Duration::from_secs(1),
        }
    }
}

impl LeaderSettings {
    /// The `idle_session_timeout` of the lock session: past it the server
    /// ends a session that stopped talking and frees the lock.
    fn idle_session_timeout(&self) -> Duration {
        self.retry_interval
            .max(self.check_interval)
            .saturating_mul(4)
            .max(Duration::from_secs(1))
    }
}

/// The leadership settings of a service, flattened into its flags; they take
/// effect with PostgreSQL replicas.
#[derive(Clone, Debug, clap::Args)]
pub struct LeaderArgs {
    /// How often a replica that does not lead tries to take over (with PostgreSQL replicas).
    #[arg(long, env = "LEADER_RETRY_INTERVAL", default_value = "1s", value_parser = crate::duration::parse_millis)]
    pub leader_retry_interval: Duration,

    /// How often the leader checks its lock; a check slower than this steps it down (with PostgreSQL replicas).
    #[arg(long, env = "LEADER_CHECK_INTERVAL", default_value = "1s", value_parser = crate::duration::parse_millis)]
    pub leader_check_interval: Duration,

    /// The address other replicas forward to when this one leads (default: the listen address).
    #[arg(long, env = "ADVERTISE_ADDRESS")]
    pub advertise_address: Option<String>,
}

impl LeaderArgs {
    /// The intervals (zero is read as one millisecond: a busy loop helps no one).
    pub fn settings(&self) -> LeaderSettings {
        let floor = Duration::from_millis(1);
        LeaderSettings {
            retry_interval: self.leader_retry_interval.max(floor),
            check_interval: self.leader_check_interval.max(floor),
        }
    }

    /// The advertised address: `ADVERTISE_ADDRESS`, else `listen`.
    pub fn advertise(&self, listen: &str) -> String {
        self.advertise_address
            .clone()
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| listen.to_string())
    }
}

/// Why a leadership query failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// Connecting to PostgreSQL failed.
    #[error("leadership connection: {0}")]
    Connection(#[from] diesel::ConnectionError),
    /// A query failed.
    #[error("leadership query: {0}")]
    Query(#[from] diesel::result::Error),
    /// The blocking task panicked or was cancelled.
    #[error("leadership task: {0}")]
    Task(String),
}

struct Shared {
    url: String,
    service: String,
    advertise: String,
    key: i64,
    settings: LeaderSettings,
}

/// A replica's part in its service's leadership; see the module docs. Drop
/// or [`Leadership::shutdown`] it to stand down (the lock is released, so a
/// follower takes over without waiting for a timeout).
pub struct Leadership {
    shared: Arc<Shared>,
    role: watch::Receiver<Role>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
    /// A second connection, made on first use, for [`Leadership::leader_address`].
    reader: Arc<Mutex<Option<PgConnection>>>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the URL: it carries the password.
        f.debug_struct("Leadership")
            .field("service", &self.shared.service)
            .field("advertise", &self.shared.advertise)
            .field("role", &*self.role.borrow())
            .finish()
    }
}

impl Leadership {
    /// Starts contending for `service`'s leadership on the PostgreSQL
    /// database at `url`, advertising `advertise` to followers when leading.
    /// Returns at once, as a follower; watch [`Leadership::role`]. Must be
    /// called within a tokio runtime (the contention loop is a task on it).
    pub fn start(url: &str, service: &str, advertise: &str, settings: LeaderSettings) -> Self {
        let shared = Arc::new(Shared {
            url: url.to_string(),
            service: service.to_string(),
            advertise: advertise.to_string(),
            key: lock_key(service),
            settings,
        });
        let (tx, rx) = watch::channel(Role::Follower { leader: None });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(contend(shared.clone(), tx, cancel.clone()));
        Self {
            shared,
            role: rx,
            cancel,
            task: Some(task),
            reader: Arc::new(Mutex::new(None)),
        }
    }

    /// The leadership a service's database calls for: on PostgreSQL,
    /// contention for `service`'s lead, advertising ADVERTISE_ADDRESS or else
    /// `listen` (warning when that is a wildcard other replicas cannot
    /// reach); on SQLite `None` (one instance, which leads alone: see
    /// [`role_of`]).
    pub fn for_database(
        db: &crate::db::DbUrl,
        service: &str,
        listen: &str,
        args: &LeaderArgs,
    ) -> Option<Self> {
        let crate::db::DbUrl::Postgres(url) = db else {
            return None;
        };
        let advertise = args.advertise(listen);
        warn_if_unroutable(&advertise);
        Some(Self::start(url, service, &advertise, args.settings()))
    }

    /// The address this replica advertises when it leads.
    pub fn advertise(&self) -> &str {
        &self.shared.advertise
    }

    /// The role, as it changes: work that runs once waits for
    /// [`Role::Leader`] and stops when it changes.
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// The role now.
    pub fn current(&self) -> Role {
        self.role.borrow().clone()
    }

    /// The service whose leadership this is.
    pub fn service(&self) -> &str {
        &self.shared.service
    }

    /// The leader's advertised address, read from the table now (for a
    /// follower that forwards, or answers `UNAVAILABLE` naming the leader).
    pub async fn leader_address(&self) -> Result<Option<String>, LeaderError> {
        let shared = self.shared.clone();
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let mut slot = reader.lock().unwrap_or_else(|e| e.into_inner());
            let conn = match slot.as_mut() {
                Some(c) => c,
                None => slot.insert(PgConnection::establish(&shared.url)?),
            };
            let res = read_leader(conn, &shared.service);
            if res.is_err() {
                // A broken connection is made again on the next call.
                *slot = None;
            }
            Ok(res?)
        })
        .await
        .map_err(|e| LeaderError::Task(e.to_string()))?
    }

    /// Stands down: a leader reports [`Role::Follower`] first, then releases
    /// the lock; returns when the connection is closed (or abandoned after a
    /// check interval, if the database does not answer).
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        // The task releases the lock on its own; dropping it mid-call would
        // leave that to the server.
        self.cancel.cancel();
    }
}

/// Runs `f` on the blocking pool; `None` when `cancel` fires first (the
/// work finishes on its own, and what it returns is dropped: a connection
/// closes, freeing any lock it took).
async fn blocking<T: Send + 'static>(
    cancel: &CancellationToken,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let task = tokio::task::spawn_blocking(f);
    tokio::select! {
        res = task => res.ok(),
        () = cancel.cancelled() => None,
    }
}

/// Sleeps `d`; `false` when cancelled first.
async fn pause(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = cancel.cancelled() => false,
    }
}

/// A fresh lock session: connected, named, with its idle timeout, and the
/// table in place.
fn connect(shared: &Shared) -> Result<PgConnection, LeaderError> {
    let mut conn = PgConnection::establish(&shared.url)?;
    let idle = crate::duration::millis_u64(shared.settings.idle_session_timeout());
    conn.batch_execute("SET application_name = 'trafego-leader'")?;
    // PostgreSQL 14 and later; an older server keeps the TCP timeouts.
    if let Err(e) = conn.batch_execute(&format!("SET idle_session_timeout = {idle}")) {
        tracing::warn!(service = %shared.service, error = %e, "idle_session_timeout not set on the leadership session");
    }
    ensure_table(&mut conn)?;
    Ok(conn)
}

/// What one try of the lock found.
enum Attempt {
    Leader(i64),
    Follower(Option<String>),
}

/// One try, on the blocking pool: connect if needed, try the lock, and bump
/// the fence when it is ours. Any error drops the connection (and with it a
/// lock just taken).
fn attempt(
    conn: Option<PgConnection>,
    shared: &Shared,
) -> (Option<PgConnection>, Result<Attempt, LeaderError>) {
    let mut conn = match conn {
        Some(c) => c,
        None => match connect(shared) {
            Ok(c) => c,
            Err(e) => return (None, Err(e)),
        },
    };
    let res = (|| {
        if sql::try_lock(&mut conn, shared.key)? {
            Ok(Attempt::Leader(sql::bump_fence(
                &mut conn,
                &shared.service,
                &shared.advertise,
            )?))
        } else {
            Ok(Attempt::Follower(read_leader(&mut conn, &shared.service)?))
        }
    })();
    match res {
        Ok(a) => (Some(conn), Ok(a)),
        Err(e) => (None, Err(e)),
    }
}

/// Why a leader's check stepped it down.
fn check(conn: &mut PgConnection, shared: &Shared, fence: i64) -> Result<(), String> {
    let held = sql::check_held(conn, &shared.service, shared.key).map_err(|e| e.to_string())?;
    if !held.held {
        return Err("the advisory lock is no longer held".to_string());
    }
    if held.fence != Some(fence) {
        return Err(format!("the fence moved to {:?}", held.fence));
    }
    Ok(())
}

/// The contention loop of one replica; ends on cancel, releasing the lock.
async fn contend(shared: Arc<Shared>, tx: watch::Sender<Role>, cancel: CancellationToken) {
    let mut conn: Option<PgConnection> = None;
    let service = shared.service.clone();
    loop {
        // A follower: try, and if the lock is not ours, wait and try again.
        let s = shared.clone();
        let Some((c, res)) = blocking(&cancel, move || attempt(conn, &s)).await else {
            return;
        };
        conn = c;
        let fence = match res {
            Ok(Attempt::Leader(fence)) => fence,
            Ok(Attempt::Follower(leader)) => {
                tx.send_if_modified(|r| {
                    let next = Role::Follower { leader };
                    let changed = *r != next;
                    *r = next;
                    changed
                });
                if !pause(&cancel, shared.settings.retry_interval).await {
                    return;
                }
                continue;
            }
            Err(e) => {
                tracing::warn!(service = %service, error = %e, "leadership attempt failed; retrying");
                if !pause(&cancel, shared.settings.retry_interval).await {
                    return;
                }
                continue;
            }
        };
        tx.send_replace(Role::Leader { fence });
        tracing::info!(service = %service, fence, advertise = %shared.advertise, "took the lead");

        // The leader: check every interval; step down first, then think.
        let Some(mut held) = conn.take() else {
            unreachable!("a lead is taken on a connection")
        };
        let reason = loop {
            if !pause(&cancel, shared.settings.check_interval).await {
                tx.send_replace(Role::Follower { leader: None });
                release(held, &shared).await;
                return;
            }
            let s = shared.clone();
            let task = tokio::task::spawn_blocking(move || {
                let res = check(&mut held, &s, fence);
                (held, res)
            });
            match tokio::time::timeout(shared.settings.check_interval, task).await {
                Ok(Ok((c, Ok(())))) => held = c,
                // The connection goes with the failed check: dropped here, or
                // by the abandoned task when it ends.
                Ok(Ok((_, Err(why)))) => break why,
                Ok(Err(e)) => break format!("check task: {e}"),
                Err(_) => break "the check took longer than LEADER_CHECK_INTERVAL".to_string(),
            }
        };
        tx.send_replace(Role::Follower { leader: None });
        tracing::warn!(service = %service, fence, reason = %reason, "stepped down");
        if !pause(&cancel, shared.settings.retry_interval.saturating_mul(2)).await {
            return;
        }
    }
}

/// Unlocks and closes the lock session, bounded by a check interval.
async fn release(mut conn: PgConnection, shared: &Shared) {
    let key = shared.key;
    let task = tokio::task::spawn_blocking(move || sql::unlock(&mut conn, key));
    match tokio::time::timeout(shared.settings.check_interval, task).await {
        Ok(Ok(Ok(()))) => tracing::info!(service = %shared.service, "released the lead"),
        Ok(Ok(Err(e))) => {
            tracing::warn!(service = %shared.service, error = %e, "unlock failed; closing the session frees the lock")
        }
        _ => {
            tracing::warn!(service = %shared.service, "unlock did not answer in time; the session is abandoned")
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        leader: LeaderArgs,
    }

    #[test]
    fn settings_default_to_a_second_and_the_listen_address() {
        let f = Flags::try_parse_from(["x"]).unwrap();
        assert_eq!(f.leader.settings(), LeaderSettings::default());
        assert_eq!(f.leader.advertise("10.0.0.5:50051"), "10.0.0.5:50051");
        let f = Flags::try_parse_from([
            "x",
            "--leader-retry-interval",
            "250",
            "--leader-check-interval",
            "2s",
            "--advertise-address",
            "cache-0.cache:50051",
        ])
        .unwrap();
        assert_eq!(
            f.leader.settings(),
            LeaderSettings {
                retry_interval: Duration::from_millis(250),
                check_interval: Duration::from_secs(2),
            }
        );
        assert_eq!(f.leader.advertise("0.0.0.0:50051"), "cache-0.cache:50051");
        // The server ends a silent lock session after four of the longer interval.
        assert_eq!(
            f.leader.settings().idle_session_timeout(),
            Duration::from_secs(8)
        );
    }

    /// Work runs once per term, with that term's fence, and is cancelled
    /// and awaited when the term ends; nothing runs while following.
    #[tokio::test]
    async fn work_runs_once_per_term_and_stops_with_it() {
        let (tx, rx) = watch::channel(Role::Follower { leader: None });
        let cancel = CancellationToken::new();
        let (started_tx, mut started) = tokio::sync::mpsc::unbounded_channel();
        let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
        let runner = tokio::spawn(while_leading(rx, cancel.clone(), move |fence, term| {
            let started = started_tx.clone();
            let ended = ended_tx.clone();
            async move {
                started.send(fence).unwrap();
                term.cancelled().await;
                ended.send(fence).unwrap();
            }
        }));
        tx.send_replace(Role::Leader { fence: 1 });
        assert_eq!(started.recv().await, Some(1));
        // A follower's address changing is not a new term.
        tx.send_replace(Role::Leader { fence: 1 });
        tx.send_replace(Role::Follower {
            leader: Some("a:1".into()),
        });
        assert_eq!(ended.recv().await, Some(1));
        tx.send_replace(Role::Follower {
            leader: Some("b:1".into()),
        });
        tx.send_replace(Role::Leader { fence: 3 });
        assert_eq!(started.recv().await, Some(3));
        assert!(started.try_recv().is_err(), "one start per term");
        // A takeover straight from one fence to another ends the first term.
        tx.send_replace(Role::Leader { fence: 4 });
        assert_eq!(ended.recv().await, Some(3));
        assert_eq!(started.recv().await, Some(4));
        cancel.cancel();
        assert_eq!(ended.recv().await, Some(4));
        runner.await.unwrap();
    }

    /// Alone (SQLite), work runs once; the runner returns when it ends.
    #[tokio::test]
    async fn solo_work_runs_once() {
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let r = runs.clone();
        while_leading(solo(), CancellationToken::new(), move |fence, _| {
            assert_eq!(fence, 0);
            r.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async {}
        })
        .await;
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn roles_read_as_words() {
        assert_eq!(health_role(None), "leader");
        assert_eq!(health_role(Some(&Role::Leader { fence: 3 })), "leader");
        let f = Role::Follower {
            leader: Some("10.0.0.5:50051".into()),
        };
        assert_eq!(health_role(Some(&f)), "follower");
        assert_eq!(f.to_string(), "follower (leader at 10.0.0.5:50051)");
        assert_eq!(Role::Leader { fence: 3 }.to_string(), "leader (fence 3)");
        assert_eq!(Role::Leader { fence: 3 }.fence(), Some(3));
        assert_eq!(f.fence(), None);
    }
}
