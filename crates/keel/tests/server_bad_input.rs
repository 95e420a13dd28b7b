//! Bad input to `keel serve`: malformed JSON, wrong types, invalid UTF-8, a missing content
//! type, unknown ids and routes, an oversize body, a body sent byte by byte, and 10,000
//! connections opened and dropped — each answered with the right 4xx and the JSON error
//! envelope (never a 5xx), while other clients keep being served.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::KeelServer;
use support::http::{admin, config, new_session, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends raw bytes as one request and returns (status, JSON body).
async fn raw(server: &KeelServer, request: Vec<u8>) -> (u16, Value) {
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    // keel may answer an oversize body (413) and close before reading all of it: the write
    // then fails, and the answer is still there to read.
    if let Err(e) = stream.write_all(&request).await {
        assert!(cut_off(&e), "{e}");
    }
    read_response(&mut stream).await
}

/// Whether an I/O error is the peer closing the connection on us.
fn cut_off(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
    )
}

async fn read_response(stream: &mut TcpStream) -> (u16, Value) {
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut bytes))
        .await
        .expect("an answer within 60s");
    // A reset after the answer (the request's unread rest) keeps what was read.
    if let Err(e) = read {
        assert!(cut_off(&e) && !bytes.is_empty(), "{e}");
    }
    let text = String::from_utf8_lossy(&bytes);
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn post(server: &KeelServer, path: &str, content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\ncontent-length: {}\r\nconnection: close\r\n",
        server.addr(),
        server.admin_key.as_deref().unwrap(),
        body.len()
    );
    if let Some(ct) = content_type {
        head += &format!("content-type: {ct}\r\n");
    }
    head += "\r\n";
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}

fn assert_envelope(what: &str, status: u16, body: &Value, want: u16, code: &str) {
    assert_eq!(status, want, "{what}: {body}");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert!(
        body["error"]["type"].is_string() && body["error"]["message"].is_string(),
        "{what}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_a_4xx_envelope() {
    let (_home, server) = start(0);
    let api = admin(&server);
    let session = new_session(&api).await;
    let messages = format!("/v1/sessions/{session}/messages");
    let json_ct = Some("application/json");

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            post(&server, &messages, json_ct, b"{\"content\": "),
            400,
            "malformed_request",
        ),
        (
            "wrong type",
            post(&server, &messages, json_ct, br#"{"content": 42}"#),
            400,
            "invalid_body",
        ),
        (
            "unknown mode",
            post(
                &server,
                &messages,
                json_ct,
                br#"{"content": "x", "mode": "soon"}"#,
            ),
            400,
            "invalid_body",
        ),
        (
            "unknown field",
            post(
                &server,
                &messages,
                json_ct,
                br#"{"content": "x", "colour": 1}"#,
            ),
            400,
            "unknown_parameter",
        ),
        (
            "invalid UTF-8",
            post(&server, &messages, json_ct, b"{\"content\": \"\xff\xfe\"}"),
            400,
            "malformed_request",
        ),
        (
            "no content type",
            post(&server, &messages, None, br#"{"content": "x"}"#),
            415,
            "unsupported_media_type",
        ),
        (
            "empty content",
            post(&server, &messages, json_ct, br#"{"content": ""}"#),
            400,
            "empty_message",
        ),
        (
            "oversize body",
            post(&server, &messages, json_ct, &vec![b' '; 1024 * 1024 + 1]),
            413,
            "body_too_large",
        ),
        (
            "unknown session",
            post(
                &server,
                "/v1/sessions/ses_00000000000000000000000000/messages",
                json_ct,
                br#"{"content": "x"}"#,
            ),
            404,
            "session_not_found",
        ),
        (
            "malformed session id",
            post(
                &server,
                "/v1/sessions/nope/messages",
                json_ct,
                br#"{"content": "x"}"#,
            ),
            404,
            "session_not_found",
        ),
        (
            "unknown agent",
            post(&server, "/v1/sessions", json_ct, br#"{"agent": "nobody"}"#),
            404,
            "agent_not_found",
        ),
        (
            "unknown route",
            post(&server, "/v2/elsewhere", json_ct, b"{}"),
            404,
            "route_not_found",
        ),
    ];
    for (what, request, want, code) in cases {
        let (status, body) = raw(&server, request).await;
        assert_envelope(what, status, &body, want, code);
    }
    for (what, method, path, want, code) in [
        (
            "wrong method",
            Method::PATCH,
            "/v1/sessions".to_string(),
            405,
            "method_not_allowed",
        ),
        (
            "bad limit",
            Method::GET,
            "/v1/sessions?limit=abc".to_string(),
            400,
            "invalid_query",
        ),
        (
            "limit out of range",
            Method::GET,
            "/v1/sessions?limit=0".to_string(),
            400,
            "invalid_limit",
        ),
        (
            "bad cursor",
            Method::GET,
            "/v1/sessions?cursor=xyz".to_string(),
            400,
            "invalid_cursor",
        ),
        (
            "unknown run",
            Method::GET,
            "/v1/runs/run_00000000000000000000000000".to_string(),
            404,
            "run_not_found",
        ),
        (
            "bad Last-Event-ID",
            Method::GET,
            format!("/v1/sessions/{session}/events?follow=true"),
            400,
            "invalid_last_event_id",
        ),
    ] {
        let resp = api
            .request(method, &path)
            .header("last-event-id", "abc")
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap();
        assert_envelope(what, status, &body, want, code);
    }
    // Still serving.
    let run = api
        .ok(Method::POST, &messages, Some(json!({"content": "fine"})))
        .await;
    assert_eq!(run["output"], "echo: fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_byte_by_byte_is_cut_off_while_others_are_served() {
    let home = support::KeelHome::new(&config(0));
    let server = KeelServer::start(&home, &["--request-timeout-secs", "1"]);
    let api = admin(&server);
    let body = br#"{"agent": "default", "metadata": {"padding": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}}"#;
    let request = post(&server, "/v1/sessions", Some("application/json"), body);
    let head_len = request.len() - body.len();
    let mut slow = TcpStream::connect(server.addr()).await.unwrap();
    slow.write_all(&request[..head_len]).await.unwrap();
    let trickle = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        for byte in &request[head_len..] {
            tick.tick().await;
            if slow.write_all(&[*byte]).await.is_err() {
                break;
            }
        }
        read_response(&mut slow).await
    });
    // Others are answered while the slow client trickles.
    let started = Instant::now();
    let mut answered = 0;
    while !trickle.is_finished() {
        assert_eq!(api.ok(Method::GET, "/healthz", None).await["status"], "ok");
        answered += 1;
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the slow client was never cut off"
        );
    }
    let (status, body) = trickle.await.unwrap();
    assert_envelope("byte-by-byte body", status, &body, 408, "body_timeout");
    assert!(answered > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_dropped_connections_do_not_stop_others_being_served() {
    let (_home, server) = start(0);
    let api = admin(&server);
    let addr = server.addr();
    let churn = tokio::spawn(async move {
        for i in 0..10_000u32 {
            let Ok(mut stream) = TcpStream::connect(&addr).await else {
                continue;
            };
            // Some send half a request before vanishing.
            if i % 3 == 0 {
                let _ = stream
                    .write_all(b"POST /v1/sessions HTTP/1.1\r\nhost: x\r\ncontent-le")
                    .await;
            }
            drop(stream);
        }
    });
    let mut answered = 0;
    while !churn.is_finished() {
        assert_eq!(
            api.ok(Method::GET, "/v1/agents", None).await["data"][0]["name"],
            "default"
        );
        answered += 1;
    }
    churn.await.unwrap();
    assert!(answered > 0);
    let session = new_session(&api).await;
    let run = api
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": "still here"})),
        )
        .await;
    assert_eq!(run["output"], "echo: still here");
    let _ = StatusCode::OK;
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_server_answers_503_with_retry_after() {
    let home = support::KeelHome::new(&config(300));
    let server = KeelServer::start(&home, &["--max-concurrent-requests", "1"]);
    let api = admin(&server);
    let session = new_session(&api).await;
    let occupy = || {
        let req = api
            .request(Method::POST, &format!("/v1/sessions/{session}/messages"))
            .json(&json!({"content": "one two three four five six"}));
        tokio::spawn(async move { req.send().await.unwrap().status() })
    };
    let mut busy = occupy();
    // Poll until the waiting request holds the only permit.
    let deadline = Instant::now() + Duration::from_secs(30);
    let resp = loop {
        assert!(Instant::now() < deadline, "never saturated");
        if busy.is_finished() {
            // A probe held the permit when the slow request arrived, which got the 503:
            // send it again. (Probes go one at a time.)
            assert_eq!(busy.await.unwrap(), StatusCode::SERVICE_UNAVAILABLE);
            busy = occupy();
            continue;
        }
        let resp = api.request(Method::GET, "/healthz").send().await.unwrap();
        if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
            break resp;
        }
    };
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.headers()["retry-after"], "1");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded");
    assert_eq!(busy.await.unwrap(), StatusCode::OK);
}
