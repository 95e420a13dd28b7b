//! Turns SQLite's errors into `StoreError`s that say what went wrong and what to do about it,
//! so no caller ever has to read an SQLite result code.

use std::path::Path;

use rusqlite::ErrorCode;

use crate::StoreError;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => StoreError::Unavailable(format!(
                "the database or its disk is full ({e}): free disk space (or raise the size limit) and retry; \
                 nothing of the failed request was stored"
            )),
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                StoreError::Unavailable(format!(
                    "the database stayed locked by another process past the busy timeout ({e}): \
                 make sure only keel processes use it, then retry"
                ))
            }
            Some(ErrorCode::SystemIoFailure) => StoreError::Unavailable(format!(
                "the disk failed to read or write ({e}): check the disk and retry"
            )),
            Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => {
                StoreError::Unavailable(format!(
                    "the database cannot be written ({e}): check its file permissions"
                ))
            }
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                StoreError::Corrupt(format!("{e}: restore the database from a backup"))
            }
            _ => StoreError::Backend(e.to_string()),
        }
    }
}

/// Explains why the database file at `path` could not be opened, naming the file.
pub(crate) fn open_failed(path: &Path, e: rusqlite::Error) -> StoreError {
    let path = path.display();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => StoreError::Corrupt(format!(
            "{path} is not a keel database ({e}): point keel at another data directory, \
             or move the file aside if it is yours to replace"
        )),
        Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt(format!(
            "the database {path} is damaged ({e}): restore it from a backup, or move it aside to start afresh"
        )),
        Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
            StoreError::Unavailable(format!(
                "cannot open the database {path} for writing ({e}): make the file and its directory writable \
                 by the user running keel, or choose another data directory"
            ))
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(format!(
                "the database {path} is locked by another process ({e}): stop the other process or wait, then retry"
            ))
        }
        _ => StoreError::Unavailable(format!("cannot open the database {path}: {e}")),
    }
}

/// The same error again, for every request of a group commit that failed as a whole.
pub(crate) fn retell(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        other => StoreError::Backend(other.to_string()),
    }
}

/// Whether `e` is a UNIQUE / PRIMARY KEY violation: the row is already there.
pub(crate) fn is_duplicate(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation)
}
