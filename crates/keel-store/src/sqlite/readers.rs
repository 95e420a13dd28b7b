//! Parallel readers: a few threads, each with its own read-only connection, taking reads from
//! one queue. WAL lets them read committed data while the writer writes, so reads never queue
//! behind the group commit.
//!
//! Threads of their own rather than `spawn_blocking`: tokio's blocking pool starts a thread
//! whenever none is idle at the instant a read arrives, and under load kept dozens alive, each
//! holding allocator memory of its own (BENCHMARKS.md, memory). Here the threads are as many as
//! the connections, for the life of the store.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;

use rusqlite::Connection;

use super::connection;
use crate::StoreError;

type Job = Box<dyn FnOnce(&Connection) + Send>;

pub(crate) struct ReaderPool {
    /// `None` once dropped: the threads see the queue close and end.
    jobs: Option<mpsc::Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl ReaderPool {
    pub(crate) fn open(path: PathBuf, size: usize) -> Result<ReaderPool, StoreError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let mut threads = Vec::new();
        for i in 0..size.max(1) {
            let conn = connection::open_reader(&path)?;
            let queue = queue.clone();
            let thread = std::thread::Builder::new()
                .name(format!("keel-store-read-{i}"))
                .spawn(move || read_loop(&conn, &queue))
                .map_err(|e| {
                    StoreError::Unavailable(format!("cannot start a store reader thread: {e}"))
                })?;
            threads.push(thread);
        }
        Ok(ReaderPool {
            jobs: Some(jobs),
            threads,
        })
    }

    /// Runs `work` on the next free reader's connection.
    pub(crate) async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = done.send(work(conn));
        });
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.send(job).ok())
            .ok_or_else(|| StoreError::Unavailable("the store's readers are closed".into()))?;
        // The sender is dropped without a result only if the read panicked.
        result
            .await
            .map_err(|_| StoreError::Backend("a read failed: it panicked (logged)".into()))?
    }
}

/// One reader: takes the next read off the queue until the pool is dropped.
fn read_loop(conn: &Connection, queue: &Mutex<mpsc::Receiver<Job>>) {
    loop {
        let next = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = next else { return };
        // A read that panics fails alone; the reader and its connection go on.
        if std::panic::catch_unwind(AssertUnwindSafe(|| job(conn))).is_err() {
            tracing::error!("a store read panicked; the reader goes on");
        }
    }
}

impl Drop for ReaderPool {
    /// Closes the queue and waits for the readers, so their connections are closed before
    /// the writer's (which checkpoints the WAL as the last one open).
    fn drop(&mut self) {
        self.jobs = None;
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}
