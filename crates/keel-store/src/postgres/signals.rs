//! Hints between nodes over PostgreSQL's LISTEN/NOTIFY, on one channel per schema
//! (`keel.channel`, set on every connection at start by `PgOptions`). A rare change others
//! wait on (a cancel request, a run becoming claimable) calls `pg_notify` in its own
//! transaction, so its hint is heard once it commits. Appends, the hot path, do not: PostgreSQL
//! commits the transactions that notify one at a time (a lock on the notification queue held
//! through the commit's flush), which cost a PostgreSQL node 2.4x its turns per second
//! (BENCHMARKS.md). Their hints go through `Notifier` instead: queued once the append
//! committed, and sent, many to one statement, in a transaction that writes nothing. One
//! connection of the store's own LISTENs and turns what it hears into `StoreSignal`s; when
//! that connection is lost it reconnects with backoff and says `Missed`, since hints sent
//! meanwhile are gone.

use std::time::Duration;

use deadpool_postgres::GenericClient;
use deadpool_postgres::Pool;
use futures::StreamExt;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{AsyncMessage, Config, NoTls, Socket};

use super::options::Connect;
use super::statements;
use crate::{StoreError, StoreSignal};

/// Hints a slow receiver may fall behind by before it is told it lagged (and looks again).
const CAPACITY: usize = 4096;
/// How often the listening connection is checked: a dead one is replaced within this.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// Reconnecting waits this long at first, doubling up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The channel of the deployment in `schema` (`None`: the server's default schema). At most
/// 63 bytes, PostgreSQL's limit; two schemas alike in their first 58 bytes share one, which
/// costs only needless looks.
pub(crate) fn channel(schema: Option<&str>) -> String {
    let mut name = format!("keel_{}", schema.unwrap_or("default"));
    name.truncate(63);
    name
}

/// Tells other nodes, when the transaction `client` is in commits, that a run may be claimable.
pub(crate) async fn notify_claimable(client: &impl GenericClient) -> Result<(), StoreError> {
    statements::execute(
        client,
        "SELECT pg_notify(current_setting('keel.channel'), 'q')",
        &[],
    )
    .await?;
    Ok(())
}

/// Hints sent many to a statement, after the changes they tell of committed: the hot path's
/// (appends), which may not notify in their own transaction. A hint that cannot be sent is
/// dropped: the polls find its change.
pub(crate) struct Notifier {
    queue: mpsc::UnboundedSender<StoreSignal>,
    task: JoinHandle<()>,
}

/// The most hints one statement sends.
const HINTS_PER_STATEMENT: usize = 512;

impl Notifier {
    pub(crate) fn start(pool: Pool) -> Notifier {
        let (queue, mut queued) = mpsc::unbounded_channel::<StoreSignal>();
        let task = tokio::spawn(async move {
            while let Some(first) = queued.recv().await {
                let mut hints = vec![first.encode()];
                while hints.len() < HINTS_PER_STATEMENT
                    && let Ok(next) = queued.try_recv()
                {
                    hints.push(next.encode());
                }
                hints.dedup();
                if let Err(e) = send(&pool, &hints).await {
                    tracing::debug!(error = %e, hints = hints.len(), "hints to other nodes not sent; their polls will see the changes");
                }
            }
        });
        Notifier { queue, task }
    }

    /// Tells other nodes of a change that has committed.
    pub(crate) fn hint(&self, signal: StoreSignal) {
        let _ = self.queue.send(signal);
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn send(pool: &Pool, hints: &[String]) -> Result<(), StoreError> {
    let client = pool
        .get()
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    statements::query(
        &client,
        "SELECT pg_notify(current_setting('keel.channel'), hint) FROM unnest($1::text[]) AS hint",
        &[&hints],
    )
    .await?;
    Ok(())
}

/// The listening connection's task and the channel its hints go out on; the task ends with it.
pub(crate) struct Listener {
    channel: String,
    hints: broadcast::Sender<StoreSignal>,
    task: JoinHandle<()>,
}

impl Listener {
    /// Starts listening on `channel` with a connection made as `config` says, and returns
    /// once it listens (or failed to, within `patience`: it keeps trying in the background),
    /// so that a node that has started hears every change committed from then on.
    pub(crate) async fn start(
        mut connect: Connect,
        channel: String,
        server: String,
        patience: Duration,
    ) -> Listener {
        // Named after its channel, so an operator (or a test) can tell it apart.
        connect
            .config
            .application_name(&format!("{channel}_listener"));
        let hints = broadcast::channel(CAPACITY).0;
        let (listening, mut listens) = watch::channel(false);
        let task = tokio::spawn(listen(
            connect,
            channel.clone(),
            server,
            hints.clone(),
            listening,
        ));
        let _ = tokio::time::timeout(patience, listens.wait_for(|on| *on)).await;
        Listener {
            channel,
            hints,
            task,
        }
    }

    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<StoreSignal> {
        self.hints.subscribe()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Listens for ever, reconnecting after each loss.
async fn listen(
    connect: Connect,
    channel: String,
    server: String,
    hints: broadcast::Sender<StoreSignal>,
    listening: watch::Sender<bool>,
) {
    let mut backoff = FIRST_BACKOFF;
    let mut first = true;
    loop {
        let listened = match &connect.tls {
            Some(tls) => {
                listen_once(
                    &connect.config,
                    tls.clone(),
                    &channel,
                    &hints,
                    first,
                    &listening,
                )
                .await
            }
            None => listen_once(&connect.config, NoTls, &channel, &hints, first, &listening).await,
        };
        match listened {
            Ok(()) => {
                tracing::warn!(%server, "the connection listening for other nodes' changes closed; reconnecting");
                backoff = FIRST_BACKOFF;
            }
            Err(e) => {
                tracing::warn!(%server, error = %e, ?backoff, "cannot listen for other nodes' changes; retrying");
            }
        }
        first = false;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection's life: `LISTEN`, then forward every hint until the connection is lost.
/// After a reconnect, says `Missed` once listening again.
async fn listen_once<T>(
    config: &Config,
    tls: T,
    channel: &str,
    hints: &broadcast::Sender<StoreSignal>,
    first: bool,
    listening: &watch::Sender<bool>,
) -> Result<(), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, mut connection) = config.connect(tls).await?;
    let (heard_tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
    // The connection does its I/O only while polled: a task of its own polls it and hands
    // on what the server sends unasked.
    let mut io = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message? {
                AsyncMessage::Notification(n) => {
                    let _ = heard_tx.send(n.payload().to_string());
                }
                AsyncMessage::Notice(notice) => tracing::debug!(%notice, "PostgreSQL notice"),
                _ => {}
            }
        }
        Ok::<(), tokio_postgres::Error>(())
    });
    let listened = client.batch_execute(&format!("LISTEN \"{channel}\"")).await;
    if let Err(e) = listened {
        io.abort();
        return Err(e);
    }
    listening.send_replace(true);
    if !first {
        let _ = hints.send(StoreSignal::Missed);
    }
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.tick().await;
    loop {
        tokio::select! {
            payload = heard.recv() => match payload {
                Some(payload) => match StoreSignal::decode(&payload) {
                    Some(signal) => { let _ = hints.send(signal); }
                    None => tracing::debug!(%payload, "a hint this keel does not know; ignored"),
                },
                // The I/O task ended: the connection is gone.
                None => break,
            },
            _ = check.tick() => {
                // A connection that died silently fails this, or stalls past the deadline.
                let alive = tokio::time::timeout(CHECK_EVERY, client.simple_query("")).await;
                if !matches!(alive, Ok(Ok(_))) {
                    io.abort();
                    return Ok(());
                }
            }
        }
    }
    match (&mut io).await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}
