//! Opening connections: the writer's, which creates the file, turns on WAL and the chosen
//! durability, checks integrity and migrates; and the read-only ones of the reader pool.
//! Every failure names the file and says what to do.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::{SqliteOptions, error, schema};
use crate::StoreError;

/// How long a statement waits for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Enough for every distinct statement the store prepares.
const STATEMENT_CACHE: usize = 64;

pub(crate) fn open_writer(options: &SqliteOptions) -> Result<Connection, StoreError> {
    let path = options.path.as_path();
    if path.is_dir() {
        return Err(StoreError::Unavailable(format!(
            "{} is a directory, not a database file: give keel a file path such as <data_dir>/keel.db",
            path.display()
        )));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create the directory {} for the database ({e}): create it yourself, \
                 or choose a data directory keel may write to",
                parent.display()
            ))
        })?;
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn =
        Connection::open_with_flags(path, flags).map_err(|e| error::open_failed(path, e))?;
    configure_writer(&conn, options).map_err(|e| error::open_failed(path, e))?;
    check_integrity(&conn, path)?;
    schema::migrate(&mut conn, path)?;
    Ok(conn)
}

fn configure_writer(conn: &Connection, options: &SqliteOptions) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(%mode, "SQLite refused WAL mode; writes will block readers");
    }
    conn.pragma_update(None, "synchronous", options.durability.synchronous_pragma())?;
    conn.pragma_update(None, "foreign_keys", true)?;
    if let Some(max_bytes) = options.max_size_bytes {
        let page_size: u64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        conn.pragma_update(
            None,
            "max_page_count",
            (max_bytes / page_size.max(1)).max(1),
        )?;
    }
    Ok(())
}

/// `PRAGMA quick_check`: a damaged file is reported at open, not halfway through a run.
fn check_integrity(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let problems: Vec<String> = conn
        .prepare("PRAGMA quick_check(5)")
        .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| error::open_failed(path, e))?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Corrupt(format!(
        "the database {} is damaged ({}): restore it from a backup, or move it aside to start afresh",
        path.display(),
        problems.join("; ")
    )))
}

pub(crate) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| error::open_failed(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| error::open_failed(path, e))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}
