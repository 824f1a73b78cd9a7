//! The SQLite single-instance guard: one process per database file.
//!
//! SQLite has no leader election, so two instances on one file would both
//! refresh, sweep and write to the provider. The first instance takes an
//! exclusive advisory lock (`flock`, through std's `File::try_lock`) on
//! `<db>.lock` beside the database and holds it for as long as its [`Db`]
//! lives (in a service: the process's life); the lock file records its pid.
//! A second instance finds the lock taken and refuses to start, naming the
//! file, the holder's pid and that replicas need PostgreSQL. The kernel drops
//! the lock when the holder exits, `kill -9` included, so a stale lock file
//! never blocks a restart. It never touches the database file itself: SQLite's
//! own POSIX locks on it are released by any `close` in the process, which a
//! lock of ours there would be too.
//!
//! [`Db`]: crate::db::Db

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why this instance may not open the database.
#[derive(Debug, thiserror::Error)]
pub enum InstanceLockError {
    /// Another instance holds the database's lock.
    #[error(
        "database file {db} is in use by another instance ({holder}; lock file {lock}): a SQLite \
         database serves one instance only; stop the other one, give this one its own database \
         file, or run replicas on PostgreSQL (a postgres:// database URL)"
    )]
    InUse {
        /// The database file.
        db: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// `pid N` when the lock file names one, else `pid unknown`.
        holder: String,
    },
    /// The lock file could not be opened or locked.
    #[error("database lock file {lock}: {source}")]
    Io {
        /// The lock file.
        lock: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// The held lock of one database file; released when dropped (or when the
/// process ends, however it ends).
#[derive(Debug)]
pub struct InstanceLock {
    /// Keeps the `flock` (it belongs to this open file description).
    _file: File,
    path: PathBuf,
}

/// `<db>.lock`: beside the database, so it follows the file's directory
/// (and volume) wherever the database lives.
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

impl InstanceLock {
    /// Takes the lock of database `db` without waiting, or says who holds it.
    pub fn acquire(db: &Path) -> Result<Self, InstanceLockError> {
        let path = lock_path(db);
        let io = |source| InstanceLockError::Io {
            lock: path.clone(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        // Never truncate before holding the lock: the holder's pid is in it.
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts.open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                // A holder that has not written its pid yet reads as unknown.
                let _ = file.read_to_string(&mut text);
                let holder = match text.trim().parse::<u32>() {
                    Ok(pid) => format!("pid {pid}"),
                    Err(_) => "pid unknown".to_string(),
                };
                return Err(InstanceLockError::InUse {
                    db: db.to_path_buf(),
                    lock: path,
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_file_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cache.db");
        let first = InstanceLock::acquire(&db).unwrap();
        assert_eq!(first.path(), dir.path().join("cache.db.lock"));
        let err = InstanceLock::acquire(&db).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, InstanceLockError::InUse { .. }), "{err:?}");
        assert!(text.contains(&db.display().to_string()), "{text}");
        assert!(
            text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        assert!(text.contains("PostgreSQL"), "{text}");
        // Another file is another lock.
        let _other = InstanceLock::acquire(&dir.path().join("tracking.db")).unwrap();
        drop(first);
        // Released on drop, as on exit: a stale lock file blocks nothing.
        InstanceLock::acquire(&db).unwrap();
    }
}
