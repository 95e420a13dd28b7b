//! Requests broken below HTTP's semantics still get keel's error envelope from the real
//! `keel serve`, over raw TCP: too many header fields and a head past hyper's buffer (hyper's
//! own 431), a malformed `Content-Length` or header (hyper's own 400), and header fields over
//! keel's limit (answered by the stack: OpenAI's shape on its paths, the connection kept).

mod support;

use std::time::Duration;

use serde_json::Value;
use support::KeelServer;
use support::http::config;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One answer as read off the wire.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn assert_envelope(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        assert_eq!(self.body["error"]["code"], code, "{self:?}");
        assert!(self.body["error"]["type"].is_string(), "{self:?}");
        assert!(
            self.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{self:?}"
        );
    }
}

/// A raw HTTP/1.1 client on one connection.
struct Raw {
    stream: TcpStream,
    /// Bytes read past the last answer.
    buffered: Vec<u8>,
}

impl Raw {
    async fn connect(server: &KeelServer) -> Raw {
        Raw {
            stream: TcpStream::connect(server.addr()).await.unwrap(),
            buffered: Vec::new(),
        }
    }

    /// Sends `request` and reads one answer, within a bounded wait. The request is written
    /// while the answer is read: a server that refuses a head part-way answers before it takes
    /// the rest (and then closes, so that write fails; the answer is what counts).
    async fn exchange(&mut self, request: &[u8]) -> Answer {
        let (mut reader, mut writer) = self.stream.split();
        let write = async {
            let _ = writer.write_all(request).await;
        };
        let read = read_answer(&mut reader, &mut self.buffered);
        let ((), answer) =
            tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(write, read) })
                .await
                .expect("an answer within 30s");
        answer
    }
}

/// Reads one answer (with a `Content-Length` body); `buffered` keeps what was read past it.
async fn read_answer(reader: &mut (impl AsyncRead + Unpin), buffered: &mut Vec<u8>) -> Answer {
    let head_end = loop {
        if let Some(at) = buffered.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        fill(reader, buffered).await;
    };
    let head = String::from_utf8(buffered[..head_end].to_vec()).unwrap();
    buffered.drain(..head_end + 4);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (name, value) = l.split_once(':').unwrap();
            (name.to_string(), value.trim().to_string())
        })
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map_or(0, |(_, v)| v.parse().unwrap());
    while buffered.len() < length {
        fill(reader, buffered).await;
    }
    let body: Vec<u8> = buffered.drain(..length).collect();
    let body = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into()))
    };
    Answer {
        status,
        headers,
        body,
    }
}

async fn fill(reader: &mut (impl AsyncRead + Unpin), buffered: &mut Vec<u8>) {
    let mut chunk = [0u8; 16 * 1024];
    let n = reader.read(&mut chunk).await.expect("read the answer");
    assert!(n > 0, "the connection closed before a whole answer");
    buffered.extend_from_slice(&chunk[..n]);
}

fn get(path: &str, extra_headers: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: keel\r\n{extra_headers}\r\n").into_bytes()
}

fn many_headers(n: usize) -> String {
    (0..n).map(|i| format!("x-filler-{i}: {i}\r\n")).collect()
}

fn start() -> (support::KeelHome, KeelServer) {
    let home = support::KeelHome::new(&config(0));
    let server = KeelServer::start(&home, &[]);
    (home, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_header_fields_get_431_with_the_envelope() {
    let (_home, server) = start();
    // Under the limit of 100 fields (host included): served as usual.
    let mut raw = Raw::connect(&server).await;
    let answer = raw.exchange(&get("/healthz", &many_headers(90))).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body["status"], "ok");

    let answer = raw.exchange(&get("/healthz", &many_headers(150))).await;
    answer.assert_envelope(431, "headers_too_large");
    assert_eq!(answer.header("connection"), Some("close"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_fields_over_keels_limit_get_431_and_keep_the_connection() {
    let (_home, server) = start();
    let big = format!("x-big: {}\r\n", "a".repeat(100 * 1024));
    let mut raw = Raw::connect(&server).await;
    let answer = raw.exchange(&get("/healthz", &big)).await;
    answer.assert_envelope(431, "headers_too_large");
    assert!(answer.header("x-request-id").is_some(), "{answer:?}");
    // The head was read whole, so the connection serves the next request.
    let answer = raw.exchange(&get("/healthz", "")).await;
    assert_eq!(answer.status, 200, "{answer:?}");

    // On an OpenAI path, in OpenAI's shape.
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: keel\r\ncontent-length: 0\r\n{big}\r\n"
    );
    let answer = raw.exchange(request.as_bytes()).await;
    answer.assert_envelope(431, "headers_too_large");
    assert_eq!(answer.body["error"]["type"], "invalid_request_error");
    assert!(
        answer.body["error"]
            .as_object()
            .unwrap()
            .contains_key("param"),
        "{answer:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_content_length_gets_400_with_the_envelope() {
    let (_home, server) = start();
    for request in [
        "POST /v1/sessions HTTP/1.1\r\nhost: keel\r\ncontent-length: abc\r\n\r\n",
        "POST /v1/sessions HTTP/1.1\r\nhost: keel\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nhost: keel\r\nbad header\r\n\r\n",
    ] {
        let answer = Raw::connect(&server)
            .await
            .exchange(request.as_bytes())
            .await;
        answer.assert_envelope(400, "malformed_request");
        assert_eq!(answer.body["error"]["type"], "invalid_request");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_past_hypers_buffer_gets_431_with_the_envelope() {
    let (_home, server) = start();
    // hyper stops reading at its buffer's end (about 408 KiB) and answers itself.
    let huge = format!("x-huge: {}\r\n", "a".repeat(600 * 1024));
    let answer = Raw::connect(&server)
        .await
        .exchange(&get("/healthz", &huge))
        .await;
    answer.assert_envelope(431, "headers_too_large");
    assert_eq!(answer.header("connection"), Some("close"));
}
