//! The SQLite pool each service keeps over its own database file, and the one
//! helper that runs diesel work off the async runtime.
//!
//! Pragmas are set per connection (busy_timeout first, then foreign_keys and
//! synchronous); WAL is set once, before the pool is built, and the embedded
//! migrations run then too, so starting twice on the same file is harmless. A
//! pooled connection is never held across an `.await`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::{Connection, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

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
        conn.batch_execute(&format!(
            "PRAGMA busy_timeout = {}; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
            self.busy_timeout.as_millis()
        ))
        .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// A service's database: a pool over one SQLite file.
#[derive(Clone)]
pub struct Db {
    pool: Pool<ConnectionManager<SqliteConnection>>,
    path: PathBuf,
    /// Held while any clone lives: a second instance on the file refuses to start.
    _instance: std::sync::Arc<crate::leader::sqlite::InstanceLock>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

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

impl Db {
    /// Opens (creating it if needed) the database at `path`, sets WAL, runs
    /// the pending embedded migrations and builds the pool.
    pub fn open(
        path: &Path,
        migrations: EmbeddedMigrations,
        opts: DbOptions,
    ) -> Result<Self, DbError> {
        create_private(path)?;
        let instance = crate::leader::sqlite::InstanceLock::acquire(path)?;
        let url = path.to_string_lossy().to_string();
        {
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
        }
        let pool = Pool::builder()
            .max_size(opts.pool_size.max(1))
            .connection_customizer(Box::new(Pragmas {
                busy_timeout: opts.busy_timeout,
            }))
            .build(ConnectionManager::new(url))?;
        Ok(Self {
            pool,
            path: path.to_path_buf(),
            _instance: std::sync::Arc::new(instance),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` with a pooled connection on the blocking thread pool.
    pub async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut SqliteConnection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let pool = self.pool.clone();
        // The call's request id follows the work, so an error made there names it.
        let request_id = crate::mesh::current_request_id();
        tokio::task::spawn_blocking(move || {
            crate::mesh::with_request_id(request_id, || {
                let mut conn = pool.get().map_err(DbError::from)?;
                f(&mut conn)
            })
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }
}
