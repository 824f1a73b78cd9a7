//! Replacing the zone file atomically: a temp file beside it, `sync_all`, a
//! rename that refuses to clobber a file changed meanwhile, and a directory
//! fsync, so a reader sees the old file or the new one, never a torn one.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// How the finished temp file takes the zone file's place.
pub(super) enum Commit<'a> {
    /// Only if no file exists yet (never clobbers a file created meanwhile).
    CreateNew,
    /// Rename over the file, if the check still says it is the one we read.
    Replace(&'a dyn Fn() -> io::Result<bool>),
}

pub(super) fn parent_dir(path: &Path) -> Option<&Path> {
    match path.parent() {
        Some(p) if p.as_os_str().is_empty() => Some(Path::new(".")),
        other => other,
    }
}

pub(super) fn temp_prefix(path: &Path) -> Option<String> {
    path.file_name()
        .map(|f| format!(".{}.trafego-tmp.", f.to_string_lossy()))
}

/// Writes `data` to a temp file in the same directory, syncs it, then puts it
/// in place of `path` and syncs the directory (a failure of that last sync is
/// logged, not returned). A crash at any point leaves the old file or the new
/// one. Returns `Ok(false)` when a `Replace` check found
/// the file changed (nothing was replaced).
pub(super) fn write_atomic(
    path: &Path,
    data: &[u8],
    mode: u32,
    commit: Commit<'_>,
) -> io::Result<bool> {
    let dir = parent_dir(path).ok_or_else(|| io::Error::other("the path has no directory"))?;
    let prefix = temp_prefix(path).ok_or_else(|| io::Error::other("the path has no file name"))?;
    let tmp = dir.join(format!(
        "{prefix}{}.{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode given to open.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(data)?;
        file.sync_all()?;
        drop(file);
        match commit {
            // A hard link never replaces an existing file; where the file
            // system has no hard links, a rename after a last check will do.
            Commit::CreateNew => match fs::hard_link(&tmp, path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(_) if fs::symlink_metadata(path).is_err() => fs::rename(&tmp, path)?,
                Err(e) => return Err(e),
            },
            Commit::Replace(unchanged) => {
                if !unchanged()? {
                    return Ok(false);
                }
                fs::rename(&tmp, path)?;
            }
        }
        // The new file is in place: a failed directory sync only means a
        // crash might still bring the old one back, so it is not a failed write.
        if let Err(e) = fs::File::open(dir).and_then(|d| d.sync_all()) {
            tracing::warn!(path = %path.display(), error = %e, "zone file written, but its directory could not be synced");
        }
        Ok(true)
    })();
    // After a rename the temp name is gone; otherwise it must not linger.
    if !matches!(result, Ok(true)) || matches!(commit, Commit::CreateNew) {
        let _ = fs::remove_file(&tmp);
    }
    result
}
