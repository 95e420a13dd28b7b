//! An HTTP client for tests of `keel serve`: JSON calls with a bearer key, an SSE reader
//! with bounded waits, and the usual set-up (a scripted-model config, a started server).

use std::time::{Duration, Instant};

use futures::StreamExt;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use super::{KeelHome, KeelServer, SseEvent, SseParser};

pub fn config(token_latency_ms: u64) -> String {
    format!(
        r#"
[providers.scripted]
kind = "scripted"
token_latency_ms = {token_latency_ms}

[[agents]]
name = "default"
model = "scripted/echo"
tools = [{{ name = "scratchpad_set", kind = "builtin" }}]
"#
    )
}

/// A client of one server with one key.
pub struct Api {
    pub http: Client,
    pub base: String,
    pub key: Option<String>,
}

impl Api {
    pub fn new(server: &KeelServer, key: Option<&str>) -> Api {
        Api {
            http: Client::new(),
            base: server.base.clone(),
            key: key.map(str::to_string),
        }
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(Duration::from_secs(60));
        match &self.key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    /// Sends and returns (status, JSON body; `null` for an empty body).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.request(method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        // Non-JSON bodies (metrics, SSE) come back as a string.
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {value}");
        value
    }

    /// Opens an SSE stream (GET, or POST with a body).
    pub async fn stream(&self, req: reqwest::RequestBuilder) -> SseStream {
        let resp = req.send().await.expect("stream request");
        assert_eq!(resp.status(), StatusCode::OK, "stream refused");
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        SseStream {
            body: Box::pin(resp.bytes_stream().map(|c| c.map(|b| b.to_vec()))),
            parser: SseParser::default(),
            ready: Default::default(),
        }
    }
}

pub struct SseStream {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<Vec<u8>>> + Send>>,
    parser: SseParser,
    ready: std::collections::VecDeque<SseEvent>,
}

impl SseStream {
    /// The next event, or `None` when the stream ends; fails after a bounded wait.
    pub async fn next(&mut self) -> Option<SseEvent> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(event);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.body.next()).await {
                Err(_) => panic!("no SSE event within 30s"),
                Ok(None) => return None,
                Ok(Some(chunk)) => {
                    let chunk = chunk.expect("stream chunk");
                    self.ready.extend(self.parser.feed(&chunk));
                }
            }
        }
    }
}

pub fn start(token_latency_ms: u64) -> (KeelHome, KeelServer) {
    let home = KeelHome::new(&config(token_latency_ms));
    let server = KeelServer::start(&home, &[]);
    (home, server)
}

pub fn admin(server: &KeelServer) -> Api {
    Api::new(server, server.admin_key.as_deref())
}

/// Polls a run until it ends (bounded).
pub async fn finished_run(api: &Api, run: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = api.ok(Method::GET, &format!("/v1/runs/{run}"), None).await;
        if ["completed", "failed", "cancelled"].contains(&run["status"].as_str().unwrap()) {
            return run;
        }
        assert!(Instant::now() < deadline, "run did not end: {run}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn new_session(api: &Api) -> String {
    let session = api
        .ok(
            Method::POST,
            "/v1/sessions",
            Some(json!({"agent": "default"})),
        )
        .await;
    session["id"].as_str().unwrap().to_string()
}

/// Sends `content` to `session` and waits: its run must end waiting for a person. The run's
/// id and the id of the first call it waits on.
pub async fn send_until_waiting(api: &Api, session: &str, content: &str) -> (String, String) {
    let sent = api
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": content, "mode": "wait"})),
        )
        .await;
    assert_eq!(sent["status"], "waiting", "{sent}");
    let call = sent["pending_approvals"][0]["call_id"].as_str().unwrap();
    (sent["id"].as_str().unwrap().to_string(), call.to_string())
}

/// The session's log (its first 1000 events) as `GET /v1/sessions/{id}/events` lists it.
pub async fn session_events(api: &Api, session: &str) -> Vec<Value> {
    let page = api
        .ok(
            Method::GET,
            &format!("/v1/sessions/{session}/events?limit=1000"),
            None,
        )
        .await;
    page["data"].as_array().unwrap().clone()
}

/// Sends `text` to `session` in the background and waits for its run to end; returns the run.
pub async fn turn(api: &Api, session: &str, text: &str) -> Value {
    let run = api
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": text, "mode": "background"})),
        )
        .await;
    finished_run(api, run["id"].as_str().unwrap()).await
}

/// A client of a new tenant (`b`), with a tenant key of its own, made by `admin`.
pub async fn another_tenant(admin: &Api, server: &KeelServer) -> Api {
    let tenant = admin
        .ok(
            Method::POST,
            "/v1/admin/tenants",
            Some(json!({"name": "b"})),
        )
        .await;
    let key = admin
        .ok(
            Method::POST,
            &format!("/v1/admin/tenants/{}/keys", tenant["id"].as_str().unwrap()),
            Some(json!({"scope": "tenant"})),
        )
        .await;
    Api::new(server, key["key"].as_str())
}
