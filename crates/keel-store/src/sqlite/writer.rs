//! The single writer. One thread owns the write connection; requests arrive over a channel.
//! It takes every request queued at that moment and commits them in one transaction, each
//! inside its own SAVEPOINT so a failing request rolls back only itself, then answers them all:
//! group commit, one fsync for many appends. Without group commit, one transaction per request.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::error;
use crate::StoreError;

/// Bounds how long the first request of a batch waits for the last one.
const MAX_BATCH: usize = 1024;

/// One queued write: runs on the writer thread, answers once its transaction is settled.
trait WriteRequest: Send {
    fn run(&mut self, conn: &Connection);
    fn error(&self) -> Option<&StoreError>;
    /// Sends the request's result, or `batch_failure` if its work was lost with the batch.
    fn answer(self: Box<Self>, batch_failure: Option<&StoreError>);
}

struct Request<T, F> {
    work: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> WriteRequest for Request<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) {
        let Some(work) = self.work.take() else { return };
        let result = catch_unwind(AssertUnwindSafe(|| work(conn))).unwrap_or_else(|_| {
            Err(StoreError::Backend(
                "a write request panicked; it was rolled back".into(),
            ))
        });
        self.result = Some(result);
    }

    fn error(&self) -> Option<&StoreError> {
        self.result.as_ref().and_then(|r| r.as_ref().err())
    }

    fn answer(self: Box<Self>, batch_failure: Option<&StoreError>) {
        let result = match (self.result, batch_failure) {
            (Some(Err(own)), _) => Err(own),
            (_, Some(failure)) => Err(error::retell(failure)),
            (Some(ok), None) => ok,
            (None, None) => Err(StoreError::Backend("a write request was never run".into())),
        };
        // The caller may have stopped waiting; its write is committed all the same.
        let _ = self.reply.send(result);
    }
}

pub(crate) struct Writer {
    requests: Option<mpsc::Sender<Box<dyn WriteRequest>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub(crate) fn start(conn: Connection, group_commit: bool) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("keel-store-writer".into())
            .spawn(move || write_loop(conn, &rx, group_commit))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the store's writer thread: {e}"))
            })?;
        Ok(Writer {
            requests: Some(tx),
            thread: Some(thread),
        })
    }

    /// Runs `work` in the writer's transaction and returns its result once committed.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let stopped =
            || StoreError::Unavailable("the store's writer has stopped; restart keel".into());
        let (reply, answer) = oneshot::channel();
        let request = Box::new(Request {
            work: Some(work),
            result: None,
            reply,
        });
        self.requests
            .as_ref()
            .ok_or_else(stopped)?
            .send(request)
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    /// Lets the writer finish what is queued, then closes the connection (which checkpoints the WAL).
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the store's writer thread panicked");
        }
    }
}

fn write_loop(
    conn: Connection,
    requests: &mpsc::Receiver<Box<dyn WriteRequest>>,
    group_commit: bool,
) {
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        while group_commit && batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let outcome = commit(&conn, &mut batch);
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, requests = batch.len(), "a write transaction failed as a whole");
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
        }
        for request in batch {
            request.answer(outcome.as_ref().err());
        }
    }
}

/// Runs every request of `batch` in one transaction, each inside its own savepoint.
fn commit(conn: &Connection, batch: &mut [Box<dyn WriteRequest>]) -> Result<(), StoreError> {
    let exec = |conn: &Connection, sql: &str| {
        conn.prepare_cached(sql)
            .and_then(|mut s| s.execute([]).map(drop))
    };
    exec(conn, "BEGIN IMMEDIATE")?;
    for request in batch.iter_mut() {
        exec(conn, "SAVEPOINT request")?;
        request.run(conn);
        if conn.is_autocommit() {
            // SQLite rolled the whole transaction back (a full disk, an I/O error): every
            // request before this one is lost too, so the batch fails with this one's error.
            let cause = request.error().map(error::retell);
            return Err(cause.unwrap_or_else(|| {
                StoreError::Backend("the write transaction was rolled back".into())
            }));
        }
        if request.error().is_some() {
            exec(conn, "ROLLBACK TO request")?;
        }
        exec(conn, "RELEASE request")?;
    }
    exec(conn, "COMMIT")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Answer = oneshot::Receiver<Result<(), StoreError>>;

    fn request(
        work: impl FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static,
    ) -> (Box<dyn WriteRequest>, Answer) {
        let (reply, answer) = oneshot::channel();
        (
            Box::new(Request {
                work: Some(work),
                result: None,
                reply,
            }),
            answer,
        )
    }

    fn insert(name: &'static str) -> impl Fn(&Connection) -> Result<(), StoreError> {
        move |conn| {
            Ok(conn
                .execute("INSERT INTO t (name) VALUES (?1)", [name])
                .map(drop)?)
        }
    }

    #[test]
    fn a_failing_request_rolls_back_only_itself_in_a_group_commit() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("t.db")).unwrap();
        conn.execute_batch("CREATE TABLE t (name TEXT PRIMARY KEY)")
            .unwrap();
        let (ok_before, a1) = request(insert("before"));
        let (fails, a2) = request(|conn| {
            insert("failed")(conn)?;
            Err(StoreError::Invalid("refused after writing".into()))
        });
        let (panics, a3) = request(|conn| {
            insert("panicked")(conn)?;
            panic!("a bug in a write request");
        });
        let (duplicate, a4) = request(insert("before"));
        let (ok_after, a5) = request(insert("after"));
        let mut batch = vec![ok_before, fails, panics, duplicate, ok_after];

        commit(&conn, &mut batch).expect("the batch commits");
        for request in batch {
            request.answer(None);
        }

        let answers: Vec<_> = [a1, a2, a3, a4, a5]
            .into_iter()
            .map(|a| a.blocking_recv().unwrap())
            .collect();
        assert!(answers[0].is_ok() && answers[4].is_ok(), "{answers:?}");
        assert!(
            matches!(answers[1], Err(StoreError::Invalid(_))),
            "{:?}",
            answers[1]
        );
        assert!(
            matches!(&answers[2], Err(StoreError::Backend(m)) if m.contains("panicked")),
            "{:?}",
            answers[2]
        );
        assert!(answers[3].is_err(), "a duplicate key must fail");
        let names: Vec<String> = conn
            .prepare("SELECT name FROM t ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(names, ["after", "before"]);
    }

    #[test]
    fn a_batch_that_fails_as_a_whole_fails_every_request_that_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("t.db")).unwrap();
        conn.execute_batch("CREATE TABLE t (name TEXT PRIMARY KEY)")
            .unwrap();
        let (wrote, answer) = request(insert("lost"));
        let (refused, own) = request(|_| Err(StoreError::Invalid("mine".into())));
        let failure = StoreError::Unavailable("the disk is full".into());
        for mut request in [wrote, refused] {
            request.run(&conn);
            request.answer(Some(&failure));
        }
        assert!(
            matches!(answer.blocking_recv().unwrap(), Err(StoreError::Unavailable(m)) if m.contains("full"))
        );
        assert!(matches!(own.blocking_recv().unwrap(), Err(StoreError::Invalid(m)) if m == "mine"));
    }
}
