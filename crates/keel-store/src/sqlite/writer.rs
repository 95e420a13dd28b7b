//! The single writer. One thread owns the write connection; requests arrive over a channel.
//! It takes every request queued at that moment and commits them in one transaction, each
//! inside its own SAVEPOINT so a failing request rolls back only itself, then answers them all:
//! group commit, one fsync for many appends. Without group commit, one transaction per request.
//!
//! A request may ask to be synchronous (keys, revocations, deletions): under
//! `Durability::Normal` its batch commits with `synchronous=FULL`, one fsync of the WAL before
//! any of it is acknowledged. The thread survives a panic in a request or in its own work (the
//! batch fails and is rolled back, the next one runs), and records whether the last write
//! could commit, for readiness (`Writer::health`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{Durability, error};
use crate::StoreError;

/// Bounds how long the first request of a batch waits for the last one.
const MAX_BATCH: usize = 1024;
/// How long the outcome of the last write answers for the store's health; older, a probe
/// write is made to find out.
const HEALTH_FRESH: Duration = Duration::from_secs(1);

/// How durable a write must be when it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Commit {
    /// As the store's `Durability` says.
    AsConfigured,
    /// Fsynced before it is acknowledged, whatever the `Durability`: writes that must never
    /// come undone (a revoked key working again), and are rare enough to afford it.
    Synchronous,
}

/// One queued write: runs on the writer thread, answers once its transaction is settled.
trait WriteRequest: Send {
    fn run(&mut self, conn: &Connection);
    fn error(&self) -> Option<&StoreError>;
    fn commit(&self) -> Commit;
    /// Sends the request's result, or `batch_failure` if its work was lost with the batch.
    fn answer(self: Box<Self>, batch_failure: Option<&StoreError>);
}

struct Request<T, F> {
    work: Option<F>,
    commit: Commit,
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

    fn commit(&self) -> Commit {
        self.commit
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

/// Whether the last write that meant something (one that changed rows, failed, or probed)
/// could commit, and when.
#[derive(Default)]
struct CommitHealth {
    last: Option<(Instant, Result<(), String>)>,
}

impl CommitHealth {
    /// The last outcome, if recent enough to answer for the store now.
    fn fresh(&self) -> Option<Result<(), StoreError>> {
        let (at, outcome) = self.last.as_ref()?;
        (at.elapsed() < HEALTH_FRESH).then(|| {
            outcome.clone().map_err(|reason| {
                StoreError::Unavailable(format!("the last write could not be committed: {reason}"))
            })
        })
    }
}

type SharedHealth = Arc<Mutex<CommitHealth>>;

fn record(health: &SharedHealth, outcome: Result<(), String>) {
    health.lock().unwrap_or_else(PoisonError::into_inner).last = Some((Instant::now(), outcome));
}

pub(crate) struct Writer {
    requests: Option<mpsc::Sender<Box<dyn WriteRequest>>>,
    thread: Option<JoinHandle<()>>,
    health: SharedHealth,
    /// Transactions committed so far that changed rows (each one fsync under
    /// `Durability::Full`; one that changed nothing writes nothing).
    commits: Arc<AtomicU64>,
    /// One probe write at a time; callers meanwhile wait for its outcome.
    probing: tokio::sync::Mutex<()>,
}

impl Writer {
    pub(crate) fn start(
        conn: Connection,
        group_commit: bool,
        durability: Durability,
    ) -> Result<Writer, StoreError> {
        let (tx, rx) = mpsc::channel();
        let health = SharedHealth::default();
        let (loop_health, commits) = (health.clone(), Arc::new(AtomicU64::new(0)));
        let loop_commits = commits.clone();
        let thread = std::thread::Builder::new()
            .name("keel-store-writer".into())
            .spawn(move || {
                write_loop(
                    conn,
                    &rx,
                    group_commit,
                    durability,
                    &loop_health,
                    &loop_commits,
                )
            })
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the store's writer thread: {e}"))
            })?;
        Ok(Writer {
            requests: Some(tx),
            thread: Some(thread),
            health,
            commits,
            probing: tokio::sync::Mutex::new(()),
        })
    }

    /// Runs `work` in the writer's transaction and returns its result once committed.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_as(Commit::AsConfigured, work).await
    }

    /// `write`, acknowledged only once fsynced, whatever the store's `Durability`.
    pub(crate) async fn write_synchronously<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_as(Commit::Synchronous, work).await
    }

    async fn write_as<T, F>(&self, commit: Commit, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let stopped =
            || StoreError::Unavailable("the store's writer has stopped; restart keel".into());
        let (reply, answer) = oneshot::channel();
        let request = Box::new(Request {
            work: Some(work),
            commit,
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

    /// Whether a write can commit now: the outcome of the last write if it is recent, else
    /// that of a probe (rewriting the database header's `user_version` with its own value: one
    /// page through the WAL, which fails as soon as the disk or the size cap does).
    pub(crate) async fn health(&self) -> Result<(), StoreError> {
        if let Some(known) = self.fresh_health() {
            return known;
        }
        let _probing = self.probing.lock().await;
        if let Some(known) = self.fresh_health() {
            return known;
        }
        let probed = self.write(probe).await.map_err(|e| match e {
            StoreError::Unavailable(why) => why,
            other => other.to_string(),
        });
        record(&self.health, probed.clone());
        probed.map_err(|why| {
            StoreError::Unavailable(format!("a probe write could not be committed: {why}"))
        })
    }

    /// Transactions committed since the store opened.
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn fresh_health(&self) -> Option<Result<(), StoreError>> {
        self.health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fresh()
    }
}

/// The probe write: one page, changing nothing.
fn probe(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    conn.pragma_update(None, "user_version", version)?;
    Ok(())
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
    durability: Durability,
    health: &SharedHealth,
    commits: &AtomicU64,
) {
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        while group_commit && batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let changes_before = conn.total_changes();
        let outcome = catch_unwind(AssertUnwindSafe(|| settle(&conn, &mut batch, durability)))
            .unwrap_or_else(|_| {
                Err(StoreError::Backend(
                    "the store's writer panicked while committing; the batch was rolled back"
                        .into(),
                ))
            });
        if outcome.is_err() && !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        let wrote = conn.total_changes() != changes_before;
        if outcome.is_ok() && wrote {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        note_outcome(health, &outcome, &batch, wrote);
        for request in batch {
            request.answer(outcome.as_ref().err());
        }
    }
}

/// Commits `batch` (see `commit`), with `synchronous=FULL` for this once when a request of
/// it must be synchronous and the store's durability is `Normal`. SQLite refuses to change
/// the setting inside a transaction, so it is raised before `BEGIN` and lowered after `COMMIT`.
fn settle(
    conn: &Connection,
    batch: &mut [Box<dyn WriteRequest>],
    durability: Durability,
) -> Result<(), StoreError> {
    let raise =
        durability != Durability::Full && batch.iter().any(|r| r.commit() == Commit::Synchronous);
    if raise {
        conn.pragma_update(None, "synchronous", Durability::Full.synchronous_pragma())?;
    }
    let outcome = commit(conn, batch);
    if raise {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        // Failing to lower it again only makes later commits safer.
        let _ = conn.pragma_update(None, "synchronous", durability.synchronous_pragma());
    }
    outcome
}

/// Records whether the store could commit: a failed batch, or a request that failed for want
/// of room or of the disk, says no; a batch that changed rows says yes; a batch that wrote
/// nothing (a claim that found no run) says nothing. (`Writer::health` records its probes.)
fn note_outcome(
    health: &SharedHealth,
    outcome: &Result<(), StoreError>,
    batch: &[Box<dyn WriteRequest>],
    wrote: bool,
) {
    let failure = outcome.as_ref().err().or_else(|| {
        batch
            .iter()
            .filter_map(|r| r.error())
            .find(|e| matches!(e, StoreError::Unavailable(_)))
    });
    match failure {
        Some(e) => {
            let reason = match e {
                StoreError::Unavailable(why) => why.clone(),
                other => other.to_string(),
            };
            let requests = batch.len();
            // Logging must not take the writer down with it (keel's log writer cannot panic,
            // but a library's caller may install another).
            let _ = catch_unwind(|| {
                tracing::warn!(error = %reason, requests, "a write could not be committed");
            });
            record(health, Err(reason));
        }
        None if wrote => record(health, Ok(())),
        None => {}
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
                commit: Commit::AsConfigured,
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

    fn writer_on(dir: &tempfile::TempDir, durability: Durability) -> Writer {
        let conn = Connection::open(dir.path().join("t.db")).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
             CREATE TABLE t (name TEXT PRIMARY KEY)",
        )
        .unwrap();
        Writer::start(conn, true, durability).unwrap()
    }

    fn synchronous_level(conn: &Connection) -> Result<i64, StoreError> {
        Ok(conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?)
    }

    #[tokio::test]
    async fn a_synchronous_write_commits_with_synchronous_full_under_normal_durability() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer_on(&dir, Durability::Normal);
        // 1 = NORMAL, 2 = FULL, as the connection has it while the request runs.
        assert_eq!(writer.write(synchronous_level).await.unwrap(), 1);
        assert_eq!(
            writer.write_synchronously(synchronous_level).await.unwrap(),
            2
        );
        assert_eq!(writer.write(synchronous_level).await.unwrap(), 1);
    }

    /// A request whose bookkeeping panics outside its own work: in the writer's loop itself.
    struct PanicsInTheLoop(oneshot::Sender<Option<String>>);

    impl WriteRequest for PanicsInTheLoop {
        fn run(&mut self, _: &Connection) {}
        fn error(&self) -> Option<&StoreError> {
            None
        }
        fn commit(&self) -> Commit {
            panic!("a bug in the writer's loop");
        }
        fn answer(self: Box<Self>, failure: Option<&StoreError>) {
            let _ = self.0.send(failure.map(ToString::to_string));
        }
    }

    #[tokio::test]
    async fn the_writer_survives_a_panic_in_its_own_loop() {
        let dir = tempfile::tempdir().unwrap();
        let writer = writer_on(&dir, Durability::Normal);
        let (reply, answer) = oneshot::channel();
        let requests = writer.requests.as_ref().unwrap();
        requests.send(Box::new(PanicsInTheLoop(reply))).unwrap();
        let failure = answer.await.unwrap().expect("its batch fails");
        assert!(failure.contains("panicked"), "{failure}");
        writer.write(insert("after the panic")).await.unwrap();
        writer.health().await.unwrap();
        assert!(!writer.thread.as_ref().unwrap().is_finished());
    }

    #[tokio::test]
    async fn health_says_why_writes_cannot_commit_while_they_cannot() {
        let dir = tempfile::tempdir().unwrap();
        drop(writer_on(&dir, Durability::Full));
        // A connection that cannot write: every write fails, the probe too, however late.
        let conn = Connection::open_with_flags(
            dir.path().join("t.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let writer = Writer::start(conn, true, Durability::Full).unwrap();
        assert!(writer.write(insert("x")).await.is_err());
        let unhealthy = writer.health().await.unwrap_err();
        assert!(
            matches!(&unhealthy, StoreError::Unavailable(m) if m.contains("cannot be written")),
            "{unhealthy}"
        );
    }

    #[test]
    fn only_failures_of_the_store_and_writes_that_changed_rows_count_for_health() {
        let health = SharedHealth::default();
        let invalid = |_: &Connection| Err::<(), _>(StoreError::Invalid("bad input".into()));
        let (refused, _answer) = request(invalid);
        let mut refused = refused;
        let conn = Connection::open_in_memory().unwrap();
        refused.run(&conn);
        note_outcome(&health, &Ok(()), std::slice::from_ref(&refused), false);
        assert!(
            health.lock().unwrap().last.is_none(),
            "a refused request says nothing"
        );
        let full = StoreError::Unavailable("the database or its disk is full".into());
        note_outcome(&health, &Err(full), &[], false);
        assert!(
            matches!(health.lock().unwrap().fresh(), Some(Err(e)) if e.to_string().contains("full"))
        );
        note_outcome(&health, &Ok(()), &[], false);
        assert!(
            health.lock().unwrap().fresh().unwrap().is_err(),
            "writing nothing proves nothing"
        );
        note_outcome(&health, &Ok(()), &[], true);
        assert!(health.lock().unwrap().fresh().unwrap().is_ok());
        let long_ago = Instant::now().checked_sub(HEALTH_FRESH * 2).unwrap();
        health.lock().unwrap().last = Some((long_ago, Ok(())));
        assert!(
            health.lock().unwrap().fresh().is_none(),
            "an old outcome calls for a probe"
        );
    }
}
