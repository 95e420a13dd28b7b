//! A real HTTP/1.1 server on 127.0.0.1:0 for mock upstreams. Unlike `axum::serve` it keeps a
//! handle on each TCP connection, so a handler can close or reset the very connection it is
//! answering: that is how mocks inject transport faults that only a real socket can show.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::HeaderMap;
use axum::{Extension, Router};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// How long a stalled response waits before giving up on its own (the mock is normally dropped
/// long before): keeps every stall bounded.
const STALL_LIMIT: Duration = Duration::from_secs(300);

/// A running server; dropping it stops accepting and ends every open connection.
pub(crate) struct MockServer {
    addr: SocketAddr,
    accept_task: JoinHandle<()>,
}

impl MockServer {
    /// Binds 127.0.0.1 on a free port and serves `router` on the current tokio runtime.
    pub(crate) async fn start(router: Router) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accept_task = tokio::spawn(accept_loop(listener, router));
        Ok(MockServer { addr, accept_task })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        // Aborting the accept task drops its JoinSet, which aborts every connection task.
        self.accept_task.abort();
    }
}

async fn accept_loop(listener: TcpListener, router: Router) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, router.clone()));
                }
                Err(error) => tracing::warn!(%error, "mock server: accept failed"),
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, router: Router) {
    // Streamed replies are many small writes: without this, Nagle's algorithm and the client's
    // delayed ACK hold each one back for ~40 ms.
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "mock server: cannot set TCP_NODELAY");
    }
    // A second descriptor on the same socket lets us set SO_LINGER=0 after hyper owns the stream.
    let (stream, twin) = match twin_descriptors(stream) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::warn!(%error, "mock server: cannot duplicate the connection's socket");
            return;
        }
    };
    let control = ConnectionControl::default();
    let service = TowerToHyperService::new(router.layer(Extension(control.clone())));
    let serving =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = serving => {
            if let Err(error) = result {
                tracing::debug!(%error, "mock server: connection ended with an error");
            }
        }
        reset = control.ended() => {
            if reset && let Err(error) = TcpStream::from_std(twin).and_then(|twin| twin.set_zero_linger()) {
                tracing::warn!(%error, "mock server: cannot arm a reset on the connection");
            }
        }
    }
}

fn twin_descriptors(stream: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let stream = stream.into_std()?;
    let twin = stream.try_clone()?;
    Ok((TcpStream::from_std(stream)?, twin))
}

/// A handler's grip on the TCP connection its request arrived on (an axum `Extension`).
#[derive(Clone, Default)]
pub(crate) struct ConnectionControl(Arc<ConnectionEnd>);

#[derive(Default)]
struct ConnectionEnd {
    ended: Notify,
    reset: AtomicBool,
}

impl ConnectionControl {
    /// Drops the connection with a FIN, whatever hyper was doing on it.
    pub(crate) fn close(&self) {
        self.0.ended.notify_one();
    }

    /// Drops the connection with a RST.
    pub(crate) fn reset(&self) {
        self.0.reset.store(true, Ordering::SeqCst);
        self.0.ended.notify_one();
    }

    /// Resolves once a handler ended the connection; true when it asked for a reset.
    async fn ended(&self) -> bool {
        self.0.ended.notified().await;
        self.0.reset.load(Ordering::SeqCst)
    }
}

/// Waits "forever" (bounded by `STALL_LIMIT`): a server that has stopped talking.
pub(crate) async fn stall() {
    tokio::time::sleep(STALL_LIMIT).await;
}

/// How a streamed body ends after its chunks.
pub(crate) enum StreamEnd {
    /// The body ends normally.
    Complete,
    /// The connection is dropped (FIN) without finishing the body.
    Drop,
    /// Nothing more is sent.
    Stall,
}

/// A response body that sends `chunks` one by one (one write each), then ends as `end` says.
pub(crate) fn streamed_body<C: Into<axum::body::Bytes> + Send + 'static>(
    chunks: Vec<C>,
    end: StreamEnd,
    connection: ConnectionControl,
) -> Body {
    enum Step {
        Chunk(axum::body::Bytes),
        End(StreamEnd),
    }
    let mut steps: Vec<Step> = chunks.into_iter().map(|c| Step::Chunk(c.into())).collect();
    steps.push(Step::End(end));
    let stream = futures::stream::unfold(steps.into_iter(), move |mut steps| {
        let connection = connection.clone();
        async move {
            match steps.next()? {
                Step::Chunk(chunk) => {
                    // Hand control back to hyper between chunks so each is flushed on its own.
                    tokio::task::yield_now().await;
                    Some((Ok::<_, std::io::Error>(chunk), steps))
                }
                Step::End(StreamEnd::Complete) => None,
                Step::End(StreamEnd::Drop) => {
                    tokio::task::yield_now().await;
                    connection.close();
                    futures::future::pending::<()>().await;
                    None
                }
                Step::End(StreamEnd::Stall) => {
                    stall().await;
                    None
                }
            }
        }
    });
    Body::from_stream(stream)
}

/// One request as the mock received it, for assertions.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON, or `Null` when it was not JSON (see `raw_body`).
    pub body: serde_json::Value,
    pub raw_body: String,
}

impl RecordedRequest {
    pub(crate) fn new(
        method: &str,
        path: &str,
        headers: &HeaderMap,
        raw: &[u8],
    ) -> RecordedRequest {
        let raw_body = String::from_utf8_lossy(raw).into_owned();
        RecordedRequest {
            method: method.to_string(),
            path: path.to_string(),
            headers: headers
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_string(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: serde_json::from_str(&raw_body).unwrap_or(serde_json::Value::Null),
            raw_body,
        }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}
