//! The database each service keeps: a pool over its own SQLite file, or over
//! its own PostgreSQL database, and the one helper that runs diesel work off
//! the async runtime.
//!
//! Which backend is a setting ([`DbUrl`]): `postgres://…` or
//! `postgresql://…` selects PostgreSQL; a path or `sqlite://path` keeps
//! SQLite. The backend is chosen once, at start, and the code path stays one:
//! [`AnyConnection`] is a `#[derive(diesel::MultiConnection)]` over
//! `SqliteConnection` and `PgConnection`, so a store's portable queries
//! (diesel's DSL) are written once, and only the SQL one dialect lacks is
//! written twice, by the store matching on the variant. That keeps both
//! backends tested by the same store tests, which a backend chosen behind
//! the store module (two stores) would not.
//!
//! SQLite: pragmas are set per connection (busy_timeout first, then
//! foreign_keys and synchronous); WAL is set once, before the pool is built,
//! and the embedded migrations run then too, so starting twice on the same
//! file is harmless. The file is created with mode 0600.
//!
//! PostgreSQL: the embedded PostgreSQL migrations (their own directory) run
//! at start under an advisory lock, so replicas starting together apply each
//! migration once. A PostgreSQL URL's password never appears in a log or an
//! error: [`DbUrl`]'s `Display` replaces it, and connection errors are
//! scrubbed of it.
//!
//! A pooled connection is never held across an `.await`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{
    ConnectionManager, CustomizeConnection, ManageConnection, Pool, R2D2Connection,
};
use diesel::{Connection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

/// One connection to either backend: the connection type of a store that
/// runs on SQLite and on PostgreSQL. Match on it for dialect-only SQL.
#[derive(diesel::MultiConnection)]
pub enum AnyConnection {
    /// A PostgreSQL connection (libpq).
    Postgres(PgConnection),
    /// A SQLite connection (bundled SQLite), with the pragmas set.
    Sqlite(SqliteConnection),
}

/// Calls the dialect function `$f` of an [`AnyConnection`]'s backend,
/// `sqlite::$f` or `postgres::$f` as the calling module names them, with the
/// inner connection first: how a store reaches the SQL only one dialect
/// understands (its `store/sqlite.rs` and `store/postgres.rs` twins).
#[macro_export]
macro_rules! dialect {
    ($conn:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match $conn {
            $crate::db::AnyConnection::Sqlite(c) => sqlite::$f(c $(, $arg)*),
            $crate::db::AnyConnection::Postgres(c) => postgres::$f(c $(, $arg)*),
        }
    };
}

/// Executes `$query` on the inner connection of an [`AnyConnection`]: for
/// statements both dialects have but diesel's multi-backend lacks (`ON
/// CONFLICT`, multi-row `INSERT`). The query is built once.
#[macro_export]
macro_rules! on_inner {
    ($conn:expr, $query:expr) => {{
        let query = $query;
        match $conn {
            $crate::db::AnyConnection::Sqlite(c) => query.execute(c),
            $crate::db::AnyConnection::Postgres(c) => query.execute(c),
        }
    }};
}

/// Runs `f` in a transaction that `begin` opens (a store's dialect words:
/// `BEGIN IMMEDIATE`, or `BEGIN` with an advisory lock and the fence check),
/// committed when `f` succeeds and rolled back when it fails.
pub fn in_transaction<T, E, F>(
    conn: &mut AnyConnection,
    begin: impl FnOnce(&mut AnyConnection) -> diesel::QueryResult<()>,
    f: F,
) -> Result<T, E>
where
    F: FnOnce(&mut AnyConnection) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    use diesel::connection::TransactionManager;
    begin(&mut *conn)?;
    match f(&mut *conn) {
        Ok(value) => {
            <AnyConnection as Connection>::TransactionManager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(e) => {
            <AnyConnection as Connection>::TransactionManager::rollback_transaction(conn)?;
            Err(e)
        }
    }
}

/// Which backend a connection speaks: what a store branches on when it
/// builds a dialect-only SQL fragment before borrowing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl AnyConnection {
    /// This connection's dialect.
    pub fn dialect(&self) -> Dialect {
        match self {
            AnyConnection::Sqlite(_) => Dialect::Sqlite,
            AnyConnection::Postgres(_) => Dialect::Postgres,
        }
    }
}

/// Where a service's database is: the value of its database URL setting.
///
/// `Display` and `Debug` never show a PostgreSQL password.
#[derive(Clone, PartialEq, Eq)]
pub enum DbUrl {
    /// A SQLite file (a plain path, or `sqlite://path`).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://` or `postgresql://`), as
    /// libpq takes it.
    Postgres(String),
}

impl DbUrl {
    /// Reads a setting's value: `postgres://…`/`postgresql://…` is
    /// PostgreSQL, `sqlite://path` and anything else a SQLite path. An empty
    /// value is refused (an unset variable is `None` before this).
    pub fn parse(value: &str) -> Result<Self, String> {
        let v = value.trim();
        if v.is_empty() {
            return Err("is empty".into());
        }
        let lower = v.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Ok(DbUrl::Postgres(v.to_string()));
        }
        if lower.starts_with("sqlite://") {
            let path = &v["sqlite://".len()..];
            if path.is_empty() {
                return Err("sqlite:// names no file".into());
            }
            return Ok(DbUrl::Sqlite(PathBuf::from(path)));
        }
        if lower.contains("://") {
            return Err(format!(
                "{}: only postgres://, postgresql:// and sqlite:// URLs (or a file path) are understood",
                redact(v)
            ));
        }
        Ok(DbUrl::Sqlite(PathBuf::from(v)))
    }

    /// The first setting of `candidates` (name, value) that is set and not
    /// blank, parsed, with its name; `None` when none is. A bad value is an
    /// error naming its setting.
    pub fn first_of(
        candidates: &[(&'static str, Option<&str>)],
    ) -> Result<Option<(DbUrl, &'static str)>, String> {
        for (name, value) in candidates {
            if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
                return DbUrl::parse(v)
                    .map(|u| Some((u, *name)))
                    .map_err(|e| format!("{name}: {e}"));
            }
        }
        Ok(None)
    }

    /// The host a PostgreSQL URL names (`host[:port]`, or the `host=`
    /// parameter), or the SQLite file, for messages.
    pub fn host(&self) -> String {
        match self {
            DbUrl::Sqlite(p) => p.display().to_string(),
            DbUrl::Postgres(u) => pg_host(u),
        }
    }
}

impl std::fmt::Display for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbUrl::Sqlite(p) => write!(f, "{}", p.display()),
            DbUrl::Postgres(u) => f.write_str(&redact(u)),
        }
    }
}

impl std::fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DbUrl::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            DbUrl::Postgres(_) => f.debug_tuple("Postgres").field(&self.to_string()).finish(),
        }
    }
}

/// What replaces a password in a logged URL.
const REDACTED: &str = "***";

/// The part of a URL after `scheme://` up to the first `/`, `?` or `#`.
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    &rest[..end]
}

/// The password a URL carries, in its user info or a `password=` parameter.
fn passwords(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some((userinfo, _)) = authority(url).rsplit_once('@')
        && let Some((_, pw)) = userinfo.split_once(':')
        && !pw.is_empty()
    {
        out.push(pw.to_string());
    }
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split('&') {
            if let Some((k, v)) = pair.split_once('=')
                && k.eq_ignore_ascii_case("password")
                && !v.is_empty()
            {
                out.push(v.to_string());
            }
        }
    }
    out
}

/// `url` with its password (user info and `password=` parameter) replaced.
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some((scheme, rest)) = url.split_once("://") {
        let auth = authority(url);
        if let Some((userinfo, host)) = auth.rsplit_once('@')
            && let Some((user, pw)) = userinfo.split_once(':')
            && !pw.is_empty()
        {
            out = format!("{scheme}://{user}:{REDACTED}@{host}{}", &rest[auth.len()..]);
        }
    }
    if let Some((base, query)) = out.clone().split_once('?') {
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) if k.eq_ignore_ascii_case("password") && !v.is_empty() => {
                    format!("{k}={REDACTED}")
                }
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{base}?{}", query.join("&"));
    }
    out
}

/// `text` with every password of `url` replaced, for error messages that
/// might echo what they were given.
fn scrub(text: &str, url: &str) -> String {
    passwords(url)
        .iter()
        .fold(text.to_string(), |t, pw| t.replace(pw.as_str(), REDACTED))
}

/// `host[:port]` of a PostgreSQL URL (the `host=` parameter if the URL has
/// no host: a Unix socket directory), for messages.
fn pg_host(url: &str) -> String {
    let auth = authority(url);
    let host = auth.rsplit_once('@').map_or(auth, |(_, h)| h);
    if !host.is_empty() {
        return host.to_string();
    }
    url.split_once('?')
        .and_then(|(_, q)| {
            q.split('&')
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.eq_ignore_ascii_case("host"))
                .map(|(_, v)| v.to_string())
        })
        .unwrap_or_else(|| "localhost (libpq's default)".into())
}

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The file or its directory could not be created.
    #[error("database file {path}: {source}")]
    Io {
        /// The database file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The database a setting names could not be reached at start.
    #[error("cannot connect to the PostgreSQL database {setting} names (at {host}): {detail}")]
    Connect {
        /// The setting that named it (`TRACKING_DATABASE_URL`, `DATABASE_URL`…).
        setting: String,
        /// `host[:port]` from the URL.
        host: String,
        /// What libpq said, with the password removed.
        detail: String,
    },
    /// No pooled connection could be had.
    #[error("database pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    /// Connecting, or a pragma, failed.
    #[error("database connection: {0}")]
    Connection(#[from] diesel::ConnectionError),
    /// A query failed.
    #[error("database query: {0}")]
    Query(#[from] diesel::result::Error),
    /// Another instance holds the database file (one SQLite file, one instance).
    #[error(transparent)]
    InUse(#[from] crate::leader::sqlite::InstanceLockError),
    /// Migrations failed.
    #[error("database migrations: {0}")]
    Migration(String),
    /// The blocking task panicked or was cancelled.
    #[error("database task: {0}")]
    Task(String),
}

impl From<DbError> for tonic::Status {
    /// `internal error (request id …)`: the detail (SQL, paths) is only logged.
    fn from(e: DbError) -> Self {
        crate::mesh::internal_status(&e)
    }
}

/// Pool settings.
#[derive(Debug, Clone, Copy)]
pub struct DbOptions {
    /// Connections in the pool; near the core count serves point reads fastest.
    pub pool_size: u32,
    /// How long a statement waits for a lock before failing with SQLITE_BUSY.
    pub busy_timeout: Duration,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            pool_size: 4,
            busy_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Pragmas {
    busy_timeout: Duration,
}

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for Pragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        self.set(conn).map_err(diesel::r2d2::Error::QueryError)
    }
}

impl Pragmas {
    fn set(&self, conn: &mut SqliteConnection) -> diesel::QueryResult<()> {
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
            self.busy_timeout.as_millis()
        ))
    }
}

/// Opens [`AnyConnection`]s of one database for the pool: the backend is the
/// URL's, decided once (diesel's own manager would try PostgreSQL, then
/// SQLite, on every URL). SQLite connections get the pragmas.
#[derive(Debug, Clone)]
pub struct AnyManager {
    url: DbUrl,
    pragmas: Pragmas,
}

impl ManageConnection for AnyManager {
    type Connection = AnyConnection;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<AnyConnection, diesel::r2d2::Error> {
        match &self.url {
            DbUrl::Sqlite(path) => {
                let mut conn = SqliteConnection::establish(&path.to_string_lossy())
                    .map_err(diesel::r2d2::Error::ConnectionError)?;
                self.pragmas
                    .set(&mut conn)
                    .map_err(diesel::r2d2::Error::QueryError)?;
                Ok(AnyConnection::Sqlite(conn))
            }
            DbUrl::Postgres(url) => PgConnection::establish(url)
                .map(AnyConnection::Postgres)
                .map_err(|e| {
                    diesel::r2d2::Error::ConnectionError(diesel::ConnectionError::BadConnection(
                        scrub(&e.to_string(), url),
                    ))
                }),
        }
    }

    fn is_valid(&self, conn: &mut AnyConnection) -> Result<(), diesel::r2d2::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut AnyConnection) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}

/// A service's embedded migrations, one directory per backend: SQLite's
/// stay as they were (existing files keep working), PostgreSQL's are their
/// twin in PostgreSQL's types.
pub struct Migrations {
    /// For a SQLite file.
    pub sqlite: EmbeddedMigrations,
    /// For a PostgreSQL database.
    pub postgres: EmbeddedMigrations,
}

/// A service's database: a pool over one SQLite file (`Db`, the default), or
/// over either backend (`Db<AnyConnection>`, [`Db::connect`]).
pub struct Db<M: ManageConnection = ConnectionManager<SqliteConnection>> {
    pool: Pool<M>,
    url: DbUrl,
    /// A SQLite file's instance lock, held while any clone lives: a second
    /// instance on the file refuses to start. `None` on PostgreSQL (replicas
    /// share it under a leader) and for a one-shot tool beside the service.
    _instance: Option<std::sync::Arc<crate::leader::sqlite::InstanceLock>>,
    /// The leadership that fences this database's writes (PostgreSQL
    /// replicas): see [`Db::fenced`].
    fence: Option<std::sync::Arc<Fence>>,
}

/// The leadership a fenced database's writes are checked against.
struct Fence {
    service: String,
    role: tokio::sync::watch::Receiver<crate::leader::Role>,
}

impl<M: ManageConnection> Clone for Db<M> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            url: self.url.clone(),
            _instance: self._instance.clone(),
            fence: self.fence.clone(),
        }
    }
}

/// A connection that can carry a fence for [`check_session_fence`]
/// (PostgreSQL); SQLite has one instance per file and needs none.
///
/// [`check_session_fence`]: crate::leader::check_session_fence
pub trait SessionFence {
    /// Sets the session's fence settings (no-op where there is no fence).
    fn set_fence(&mut self, service: &str, fence: i64) -> diesel::QueryResult<()>;
}

impl SessionFence for SqliteConnection {
    fn set_fence(&mut self, _: &str, _: i64) -> diesel::QueryResult<()> {
        Ok(())
    }
}

impl SessionFence for PgConnection {
    fn set_fence(&mut self, service: &str, fence: i64) -> diesel::QueryResult<()> {
        use diesel::RunQueryDsl;
        use diesel::sql_types::Text;
        diesel::sql_query(
            "SELECT set_config('trafego.fence_service', $1, false), \
             set_config('trafego.fence', $2, false)",
        )
        .bind::<Text, _>(service)
        .bind::<Text, _>(fence.to_string())
        .execute(self)
        .map(|_| ())
    }
}

impl SessionFence for AnyConnection {
    fn set_fence(&mut self, service: &str, fence: i64) -> diesel::QueryResult<()> {
        match self {
            AnyConnection::Postgres(c) => c.set_fence(service, fence),
            AnyConnection::Sqlite(_) => Ok(()),
        }
    }
}

impl<M: ManageConnection> std::fmt::Debug for Db<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("url", &self.url).finish()
    }
}

/// A database over either backend.
pub type AnyDb = Db<AnyManager>;

/// Creates `path` (and its directory) with mode 0600 if it does not exist, so
/// the database is never readable by other users, even for a moment.
fn create_private(path: &Path) -> Result<(), DbError> {
    let io = |source| DbError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path).map_err(io)?;
    Ok(())
}

/// Creates the SQLite file at `path` if needed, sets WAL and runs the
/// pending `migrations` on a connection of its own; returns the URL the pool
/// opens.
/// Creates the SQLite file if needed and takes its instance lock.
fn lock_sqlite(
    path: &Path,
) -> Result<std::sync::Arc<crate::leader::sqlite::InstanceLock>, DbError> {
    create_private(path)?;
    Ok(std::sync::Arc::new(
        crate::leader::sqlite::InstanceLock::acquire(path)?,
    ))
}

fn prepare_sqlite(
    path: &Path,
    migrations: EmbeddedMigrations,
    opts: DbOptions,
) -> Result<String, DbError> {
    create_private(path)?;
    let url = path.to_string_lossy().to_string();
    let mut conn = SqliteConnection::establish(&url)?;
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL;",
        opts.busy_timeout.as_millis()
    ))?;
    let applied = conn
        .run_pending_migrations(migrations)
        .map_err(|e| DbError::Migration(e.to_string()))?;
    if !applied.is_empty() {
        tracing::info!(path = %path.display(), count = applied.len(), "applied database migrations");
    }
    Ok(url)
}

/// The advisory lock key PostgreSQL migrations run under (any fixed number:
/// replicas of one service starting together take turns).
const MIGRATION_LOCK: i64 = 0x7472_6166_6567_6f00; // "trafego\0"

/// Connects to the PostgreSQL database `url` and runs the pending
/// `migrations` under [`MIGRATION_LOCK`].
fn prepare_postgres(
    url: &str,
    setting: &str,
    migrations: EmbeddedMigrations,
) -> Result<(), DbError> {
    let mut conn = PgConnection::establish(url).map_err(|e| DbError::Connect {
        setting: setting.to_string(),
        host: pg_host(url),
        detail: scrub(e.to_string().trim(), url),
    })?;
    conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
    // The table every fenced write checks; there before any write is made.
    crate::leader::ensure_table(&mut conn)?;
    let applied = conn
        .run_pending_migrations(migrations)
        .map(|v| v.len())
        .map_err(|e| DbError::Migration(scrub(&e.to_string(), url)));
    conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))?;
    let applied = applied?;
    if applied > 0 {
        tracing::info!(host = %pg_host(url), count = applied, "applied database migrations");
    }
    Ok(())
}

impl Db {
    /// Opens (creating it if needed) the database at `path`, sets WAL, runs
    /// the pending embedded migrations and builds the pool.
    pub fn open(
        path: &Path,
        migrations: EmbeddedMigrations,
        opts: DbOptions,
    ) -> Result<Self, DbError> {
        let instance = lock_sqlite(path)?;
        let url = prepare_sqlite(path, migrations, opts)?;
        let pool = Pool::builder()
            .max_size(opts.pool_size.max(1))
            .connection_customizer(Box::new(Pragmas {
                busy_timeout: opts.busy_timeout,
            }))
            .build(ConnectionManager::new(url))?;
        Ok(Self {
            pool,
            url: DbUrl::Sqlite(path.to_path_buf()),
            _instance: Some(instance),
            fence: None,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        match &self.url {
            DbUrl::Sqlite(p) => p,
            DbUrl::Postgres(_) => unreachable!("a Db<SqliteConnection> is always a file"),
        }
    }
}

impl AnyDb {
    /// Opens the database `url` (named by the setting `setting`, for
    /// errors): a SQLite file exactly as [`Db::open`] does, or a PostgreSQL
    /// database, which must exist and be reachable. Runs the backend's pending
    /// migrations and builds the pool.
    pub fn connect(
        url: &DbUrl,
        setting: &str,
        migrations: Migrations,
        opts: DbOptions,
    ) -> Result<Self, DbError> {
        Self::connect_with(url, setting, migrations, opts, true)
    }

    /// [`Db::connect`] for a one-shot tool running beside the service on the
    /// same database (the import): it takes no instance lock, so the service
    /// keeps running; its writes are single transactions, which SQLite
    /// serialises with the service's.
    pub fn connect_beside(
        url: &DbUrl,
        setting: &str,
        migrations: Migrations,
        opts: DbOptions,
    ) -> Result<Self, DbError> {
        Self::connect_with(url, setting, migrations, opts, false)
    }

    fn connect_with(
        url: &DbUrl,
        setting: &str,
        migrations: Migrations,
        opts: DbOptions,
        exclusive: bool,
    ) -> Result<Self, DbError> {
        let mut instance = None;
        match url {
            DbUrl::Sqlite(path) => {
                if exclusive {
                    instance = Some(lock_sqlite(path)?);
                }
                prepare_sqlite(path, migrations.sqlite, opts)?;
            }
            DbUrl::Postgres(u) => prepare_postgres(u, setting, migrations.postgres)?,
        }
        let pool = Pool::builder()
            .max_size(opts.pool_size.max(1))
            .build(AnyManager {
                url: url.clone(),
                pragmas: Pragmas {
                    busy_timeout: opts.busy_timeout,
                },
            })?;
        Ok(Self {
            pool,
            url: url.clone(),
            _instance: instance,
            fence: None,
        })
    }

    /// This database with its writes fenced by `service`'s leadership (on
    /// PostgreSQL; SQLite has one instance and no fence): before each use a
    /// connection is told the fence `role` holds now (`0` as a follower), and
    /// every write transaction's [`check_session_fence`] refuses a fence
    /// that is not the table's. Clones share it.
    ///
    /// [`check_session_fence`]: crate::leader::check_session_fence
    pub fn fenced(
        mut self,
        service: &str,
        role: tokio::sync::watch::Receiver<crate::leader::Role>,
    ) -> Self {
        if matches!(self.url, DbUrl::Postgres(_)) {
            self.fence = Some(std::sync::Arc::new(Fence {
                service: service.to_string(),
                role,
            }));
        }
        self
    }

    /// The backend this database speaks.
    pub fn dialect(&self) -> Dialect {
        match self.url {
            DbUrl::Sqlite(_) => Dialect::Sqlite,
            DbUrl::Postgres(_) => Dialect::Postgres,
        }
    }
}

impl<M> Db<M>
where
    M: ManageConnection,
    M::Connection: Send + SessionFence,
{
    /// Where the database is (`Display` hides a password).
    pub fn url(&self) -> &DbUrl {
        &self.url
    }

    /// Runs `f` with a pooled connection on the blocking thread pool.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut M::Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        // The fence held now: a write made with it fails once another
        // replica has taken over, whatever this one believes by then.
        let fence = self
            .fence
            .as_ref()
            .map(|f| (f.service.clone(), f.role.borrow().fence().unwrap_or(0)));
        // The call's request id follows the work, so an error made there names it.
        let request_id = crate::mesh::current_request_id();
        tokio::task::spawn_blocking(move || {
            crate::mesh::with_request_id(request_id, || {
                let mut conn = pool.get().map_err(DbError::from)?;
                if let Some((service, fence)) = &fence {
                    conn.set_fence(service, *fence).map_err(DbError::from)?;
                }
                f(&mut conn)
            })
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_select_the_backend() {
        let pg = DbUrl::parse("postgres://u:pw@db.internal:5433/tracking").unwrap();
        assert_eq!(
            pg,
            DbUrl::Postgres("postgres://u:pw@db.internal:5433/tracking".into())
        );
        assert!(matches!(
            DbUrl::parse("postgresql://db/x").unwrap(),
            DbUrl::Postgres(_)
        ));
        assert!(matches!(
            DbUrl::parse("PostgreSQL://db/x").unwrap(),
            DbUrl::Postgres(_)
        ));
        assert_eq!(
            DbUrl::parse("./data/tracking.db").unwrap(),
            DbUrl::Sqlite("./data/tracking.db".into())
        );
        assert_eq!(
            DbUrl::parse("sqlite://./data/t.db").unwrap(),
            DbUrl::Sqlite("./data/t.db".into())
        );
        assert_eq!(
            DbUrl::parse("sqlite:///var/lib/t.db").unwrap(),
            DbUrl::Sqlite("/var/lib/t.db".into())
        );
        assert!(DbUrl::parse("").is_err());
        assert!(DbUrl::parse("sqlite://").is_err());
        let err = DbUrl::parse("mysql://u:secret@h/db").unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn the_first_setting_set_wins_and_errors_name_it() {
        let (url, name) = DbUrl::first_of(&[
            ("TRACKING_DATABASE_URL", None),
            ("DATABASE_URL", Some("  ")),
            ("TRACKING_DB_PATH", Some("t.db")),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            (url, name),
            (DbUrl::Sqlite("t.db".into()), "TRACKING_DB_PATH")
        );
        let (_, name) = DbUrl::first_of(&[
            ("TRACKING_DATABASE_URL", Some("postgres://h/db")),
            ("DATABASE_URL", Some("postgres://other/db")),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(name, "TRACKING_DATABASE_URL");
        let err = DbUrl::first_of(&[("DATABASE_URL", Some("ftp://x"))]).unwrap_err();
        assert!(err.starts_with("DATABASE_URL: "), "{err}");
        assert!(DbUrl::first_of(&[("A", None)]).unwrap().is_none());
    }

    #[test]
    fn passwords_never_show() {
        let url =
            "postgres://trafego:s3cr%21t@db.internal:5432/tracking?sslmode=require&password=other";
        let shown = DbUrl::parse(url).unwrap().to_string();
        assert_eq!(
            shown,
            "postgres://trafego:***@db.internal:5432/tracking?sslmode=require&password=***"
        );
        let debug = format!("{:?}", DbUrl::parse(url).unwrap());
        assert!(
            !debug.contains("s3cr") && !debug.contains("other"),
            "{debug}"
        );
        assert_eq!(pg_host(url), "db.internal:5432");
        assert_eq!(
            pg_host("postgres:///tracking?host=/run/postgresql"),
            "/run/postgresql"
        );
        assert_eq!(
            scrub("failed for s3cr%21t and other", url),
            "failed for *** and ***"
        );
        // No password: unchanged.
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn an_unreachable_postgres_names_the_setting_and_host_not_the_password() {
        // A loopback port nothing listens on: libpq fails at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        const SQLITE: EmbeddedMigrations =
            diesel_migrations::embed_migrations!("../migrations/tracking");
        const POSTGRES: EmbeddedMigrations =
            diesel_migrations::embed_migrations!("../migrations/tracking-postgres");
        let url = DbUrl::parse(&format!("postgres://u:hunter2@127.0.0.1:{port}/db")).unwrap();
        let err = AnyDb::connect(
            &url,
            "TRACKING_DATABASE_URL",
            Migrations {
                sqlite: SQLITE,
                postgres: POSTGRES,
            },
            DbOptions::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("TRACKING_DATABASE_URL"), "{err}");
        assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
