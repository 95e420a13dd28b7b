//! The accept loop: HTTP/1.1 connections with a deadline for reading each request's headers
//! (so idle or trickling clients are dropped), and a graceful shutdown that stops accepting,
//! lets requests in flight finish (for a bounded time), and returns.
//!
//! It also keeps the one error envelope true below the router. hyper answers a request it
//! cannot parse itself — 400 (a malformed request line, header or `Content-Length`), 414, 431
//! (more than `MAX_HEADERS` header fields, or a head past its buffer) — with an empty body, and
//! has no hook for it; `EnvelopedSocket` rewrites exactly that bodiless answer, on its way to
//! the socket, into the same status with the envelope. Heads merely over keel's own limit
//! (`MAX_HEADER_BYTES`) reach the stack and are answered there (`layers`), like any other error.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

use crate::error::{ErrorBody, ErrorEnvelope};

/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(10);

/// The most header fields a request may have: hyper's own default, enforced by hyper. It is
/// left unset on purpose: hyper parses into an inline array of this size, and any explicit
/// value (above it: a heap allocation per request) costs the hot path.
pub const MAX_HEADERS: usize = 100;

/// The most bytes a request's header fields (names and values) may total; `layers` answers 431
/// past it. hyper's own cap on a request head (its read buffer, about 408 KiB) is far above, so
/// a head between the two reaches the stack and gets a full answer (request id, OpenAI's error
/// shape on its paths) on a connection that stays usable.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

pub async fn accept_loop(
    listener: Arc<TcpListener>,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly, keep serving.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let socket = TokioIo::new(EnvelopedSocket::new(stream));
        let connection = builder.serve_connection(socket, service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener); // stop accepting (a supervised loop's owner drops the other handle as it ends)
    tracing::info!("stopped accepting connections; draining requests in flight");
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            ?DRAIN,
            "requests still in flight after the drain time; closing them"
        );
    }
}

/// A connection's socket as hyper sees it: reads pass through untouched, and so does every
/// write except hyper's own bodiless answer to a request it could not parse, which goes out
/// with the envelope instead. A good request's answer costs one length comparison per write.
pub struct EnvelopedSocket<S> {
    inner: S,
    /// A rewritten answer (and how much of it went out) the socket has not taken whole yet.
    unsent: Option<(Vec<u8>, usize)>,
}

impl<S> EnvelopedSocket<S> {
    pub fn new(inner: S) -> Self {
        EnvelopedSocket {
            inner,
            unsent: None,
        }
    }
}

impl<S: AsyncWrite + Unpin> EnvelopedSocket<S> {
    /// Writes what is left of a rewritten answer; ready once nothing is.
    fn poll_unsent(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((answer, sent)) = &mut self.unsent {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &answer[*sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *sent += n;
            if *sent == answer.len() {
                self.unsent = None;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `head` (all of it, as far as hyper knows) and starts sending `answer` instead;
    /// what the socket does not take now goes out on the next write, flush or shutdown.
    fn replace(
        &mut self,
        cx: &mut Context<'_>,
        head: usize,
        answer: Vec<u8>,
    ) -> Poll<io::Result<usize>> {
        tracing::debug!("hyper refused a request it could not parse; answering with the envelope");
        self.unsent = Some((answer, 0));
        if let Poll::Ready(Err(e)) = self.poll_unsent(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(head))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for EnvelopedSocket<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for EnvelopedSocket<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.unsent.is_some() {
            ready!(this.poll_unsent(cx))?;
        }
        if let Some(answer) = enveloped(buf) {
            return this.replace(cx, buf.len(), answer);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.unsent.is_some() {
            ready!(this.poll_unsent(cx))?;
        }
        // hyper's error answer is a head alone: the first slice, nothing after it.
        if let [head, rest @ ..] = bufs
            && let Some(answer) = enveloped(head)
            && rest.iter().all(|b| b.is_empty())
        {
            return this.replace(cx, head.len(), answer);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.unsent.is_some() {
            ready!(this.poll_unsent(cx))?;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_unsent(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// The longest head hyper's parse-error answer can be (status line, `content-length: 0`,
/// `connection: close`, `date`); anything longer is not one, decided without reading it.
const PARSE_ERROR_HEAD_MAX: usize = 160;

/// keel's code and message for a parse error hyper answered with `status_line`: the ones
/// `Server::on_error` in hyper's `proto/h1/role.rs` writes.
fn parse_error(status_line: &str) -> Option<(&'static str, String)> {
    let error = match status_line {
        "HTTP/1.1 400 Bad Request" => (
            "malformed_request",
            "the request is not valid HTTP/1.1: its request line, a header or its Content-Length could not be parsed; fix the request (this connection is closed)".to_string(),
        ),
        "HTTP/1.1 414 URI Too Long" => (
            "uri_too_long",
            "the request's URI is too long: send a shorter path and query (this connection is closed)".to_string(),
        ),
        "HTTP/1.1 431 Request Header Fields Too Large" => (
            "headers_too_large",
            format!(
                "the request has more than {MAX_HEADERS} header fields, or a head far over the limit of {MAX_HEADER_BYTES} bytes of header fields: send fewer and smaller headers (this connection is closed)"
            ),
        ),
        _ => return None,
    };
    Some(error)
}

/// If `head` is hyper's own answer to a request it could not parse — a status line
/// `parse_error` knows, `content-length: 0`, and nothing else but `date` and `connection: close`
/// (keel's own answers always carry a body and a request id) — the same answer with the
/// envelope as its body.
fn enveloped(head: &[u8]) -> Option<Vec<u8>> {
    if head.len() > PARSE_ERROR_HEAD_MAX || !head.starts_with(b"HTTP/1.1 4") {
        return None;
    }
    let head = std::str::from_utf8(head).ok()?.strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let (code, message) = parse_error(status_line)?;
    let (mut bodiless, mut date) = (false, None);
    for line in lines {
        match line {
            "content-length: 0" => bodiless = true,
            "connection: close" => {}
            _ => date = Some(line.strip_prefix("date: ")?),
        }
    }
    if !bodiless {
        return None;
    }
    let body = serde_json::to_string(&ErrorEnvelope {
        error: ErrorBody {
            // What `ApiError` calls every 4xx it has no other class for.
            kind: "invalid_request",
            code,
            message,
        },
    })
    .ok()?;
    let mut answer = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(date) = date {
        answer += &format!("date: {date}\r\n");
    }
    answer += "\r\n";
    answer += &body;
    Some(answer.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATE: &str = "Tue, 01 Dec 2026 10:00:00 GMT";

    /// The status lines of the parse errors hyper answers itself.
    const PARSE_ERRORS: [&str; 3] = [
        "HTTP/1.1 400 Bad Request",
        "HTTP/1.1 414 URI Too Long",
        "HTTP/1.1 431 Request Header Fields Too Large",
    ];

    fn split(answer: &[u8]) -> (String, serde_json::Value) {
        let text = String::from_utf8(answer.to_vec()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        (head.to_string(), serde_json::from_str(body).unwrap())
    }

    #[test]
    fn hypers_bodiless_parse_error_answers_get_the_envelope() {
        for status_line in PARSE_ERRORS {
            let hypers = format!("{status_line}\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n");
            let answer = enveloped(hypers.as_bytes()).expect("rewritten");
            let (head, body) = split(&answer);
            assert!(head.starts_with(status_line), "{head}");
            assert!(head.contains("content-type: application/json"), "{head}");
            assert!(head.contains(&format!("date: {DATE}")), "{head}");
            assert!(head.contains("connection: close"), "{head}");
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(length, answer.len() - head.len() - 4);
            assert_eq!(body["error"]["code"], parse_error(status_line).unwrap().0);
            assert_eq!(body["error"]["type"], "invalid_request");
            assert!(body["error"]["message"].as_str().unwrap().len() > 20);
        }
        // The same with `connection: close`, and without a date.
        let hypers = "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert!(enveloped(hypers.as_bytes()).is_some());
    }

    #[test]
    fn keels_own_answers_and_bodies_pass_untouched() {
        for write in [
            // An error keel answered: it has a body and a request id.
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 80\r\nx-request-id: 1\r\n\r\n".to_string(),
            // The same status with a body of its own in the same write.
            format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\ndate: {DATE}\r\n\r\n{{}}"),
            // A status hyper never answers itself.
            format!("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\ndate: {DATE}\r\n\r\n"),
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_string(),
            "data: {\"a\":1}\n\n".to_string(),
            String::new(),
        ] {
            assert!(enveloped(write.as_bytes()).is_none(), "{write:?}");
        }
        let long = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-pad: {}\r\n\r\n",
            "a".repeat(200)
        );
        assert!(enveloped(long.as_bytes()).is_none());
    }
}
