//! [`DataDirLock`]: one process per data directory.
//!
//! A second broker opening a live commit log read-write would scan its segments, sync the
//! last one and may cut a "torn tail" the first process is still appending to: it could
//! destroy acknowledged messages. So a node takes an exclusive lock (`flock`) on
//! `<data_dir>/LOCK` before it opens anything, and holds it until it exits; the kernel
//! releases it when the process dies, so a kill -9 leaves nothing to clean up.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Why a data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error("data dir {dir} is in use by pid {pid}: stop that process, or give this node its own data_dir")]
    InUse {
        /// The directory.
        dir: PathBuf,
        /// The holder's pid as it wrote it (`unknown` if unreadable).
        pid: String,
    },
    /// The lock file could not be created or locked.
    #[error("cannot lock data dir {dir}: {source}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
}

/// An exclusive lock on a data directory, held while the value lives.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Locks `dir` (creating it and its `LOCK` file if needed) and records this process's
    /// pid in the file.
    ///
    /// # Errors
    /// [`LockError::InUse`] when another process holds it; I/O errors.
    pub fn acquire(dir: &Path) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            dir: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("LOCK"))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::InUse {
                    dir: dir.to_owned(),
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.to_owned()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_a_dir_fails_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let held = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err();
        let pid = std::process::id().to_string();
        assert!(
            matches!(&err, LockError::InUse { pid: p, .. } if *p == pid),
            "{err}"
        );
        assert!(err.to_string().contains("is in use by pid"));
        drop(held);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
