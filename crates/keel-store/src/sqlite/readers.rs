//! Parallel readers: a small pool of read-only connections, each lent to one blocking task at
//! a time. WAL lets them read committed data while the writer writes, so reads never queue
//! behind the group commit.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::connection;
use crate::StoreError;

pub(crate) struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl ReaderPool {
    pub(crate) fn open(path: PathBuf, size: usize) -> Result<ReaderPool, StoreError> {
        let size = size.max(1);
        let idle = (0..size)
            .map(|_| connection::open_reader(&path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ReaderPool {
            path,
            idle: Mutex::new(idle),
            permits: Semaphore::new(size),
        })
    }

    /// Runs `work` on a pooled connection in `spawn_blocking`, waiting for a free one.
    pub(crate) async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Unavailable("the store's readers are closed".into()))?;
        let pooled = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        // A connection is missing only if an earlier read was cancelled or panicked: replace it.
        let conn = match pooled {
            Some(conn) => conn,
            None => connection::open_reader(&self.path)?,
        };
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let result = work(&conn);
            (conn, result)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("a read task failed: {e}")))?;
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(conn);
        result
    }
}
