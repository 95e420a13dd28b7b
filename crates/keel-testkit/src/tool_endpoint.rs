//! A mock HTTP tool endpoint on 127.0.0.1: what an agent's `kind = "http"` tool calls. It
//! records every request (method, query, headers, JSON body) and answers by path: `/echo`
//! returns what it received, `/redirect?to=URL[&status=N]` redirects (`URL` as is, not
//! percent-encoded), `/flaky/N` fails with
//! 503 N times then answers, `/big/N` answers N bytes.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::server::{MockServer, RecordedRequest};

#[derive(Default)]
struct EndpointState {
    requests: Mutex<Vec<RecordedRequest>>,
    flaky_failures: Mutex<u32>,
}

/// A running tool endpoint; dropping it shuts the server down.
pub struct ToolEndpoint {
    server: MockServer,
    state: Arc<EndpointState>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ToolEndpoint {
    pub async fn start() -> std::io::Result<ToolEndpoint> {
        let state = Arc::new(EndpointState::default());
        let router = Router::new().fallback(answer).with_state(state.clone());
        Ok(ToolEndpoint {
            server: MockServer::start(router).await?,
            state,
        })
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr())
    }

    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// Every request received so far; `path` includes the query.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }
}

async fn answer(
    State(state): State<Arc<EndpointState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = RecordedRequest::new(method.as_str(), path_and_query, &headers, &body);
    lock(&state.requests).push(request.clone());
    let query = |key: &str| {
        uri.query()
            .unwrap_or("")
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    };
    let path = uri.path();
    if path == "/echo" {
        let echoed = serde_json::json!({
            "method": request.method,
            "path": request.path,
            "body": request.body,
            "idempotency_key": request.header("idempotency-key"),
            "authorization": request.header("authorization"),
            "x_api_key": request.header("x-api-key"),
        });
        return axum::Json(echoed).into_response();
    }
    if path == "/redirect" {
        let to = query("to").unwrap_or_default();
        let status = query("status")
            .and_then(|s| s.parse::<u16>().ok())
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or(StatusCode::FOUND);
        return (status, [(header::LOCATION, to)]).into_response();
    }
    if let Some(times) = path.strip_prefix("/flaky/") {
        let times: u32 = times.parse().unwrap_or(0);
        let mut failed = lock(&state.flaky_failures);
        if *failed < times {
            *failed += 1;
            return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
        }
        return format!("answered after {times} failures").into_response();
    }
    if let Some(size) = path.strip_prefix("/big/") {
        return "x".repeat(size.parse().unwrap_or(0)).into_response();
    }
    (StatusCode::NOT_FOUND, format!("no such tool: {path}")).into_response()
}
