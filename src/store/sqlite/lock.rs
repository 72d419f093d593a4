//! The exclusive process lock: one writer per store file, across processes and within one.
//! An advisory `flock` on the sibling file `<db>.lock`, held for the store's lifetime. The
//! lock file is never deleted (deleting it would let two processes lock two different
//! inodes); the OS drops the lock when the process dies, even on kill -9.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use crate::store::StoreError;

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub(super) struct ProcessLock {
    _file: File,
}

/// `<db>.lock` next to the database file.
pub(super) fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock without waiting: a running `serve` must not be joined by a second one.
/// `flock` locks belong to the open file description, so a second `open` in the same
/// process conflicts just like another process does.
pub(super) fn acquire(db: &Path) -> Result<ProcessLock, StoreError> {
    let path = lock_path(db);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    match file.try_lock() {
        Ok(()) => Ok(ProcessLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: path.display().to_string(),
        }),
        Err(TryLockError::Error(e)) => Err(StoreError::Open {
            path: path.display().to_string(),
            reason: format!("cannot lock: {e}"),
        }),
    }
}
