//! `/metrics` on the real `keel serve` leaks nothing by default: it needs an admin key (no key
//! is 401, a tenant's key 403, both in the envelope) and names no tenant; per-tenant labels are
//! opt-in (a flag or keel.toml); and `--metrics-listen` serves it without a key on an address
//! of its own, while the API's `/metrics` still needs the admin key.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::http::{Api, admin, config};
use support::{KeelHome, KeelServer};

/// Makes a tenant with a key of its own; returns (tenant id, the tenant's client).
async fn tenant(server: &KeelServer) -> (String, Api) {
    let admin_api = admin(server);
    let tenant = admin_api
        .ok(
            Method::POST,
            "/v1/admin/tenants",
            Some(json!({"name": "acme"})),
        )
        .await;
    let id = tenant["id"].as_str().unwrap().to_string();
    let key = admin_api
        .ok(
            Method::POST,
            &format!("/v1/admin/tenants/{id}/keys"),
            Some(json!({})),
        )
        .await;
    (id, Api::new(server, key["key"].as_str()))
}

async fn gateway_call(api: &Api) {
    api.ok(
        Method::POST,
        "/v1/chat/completions",
        Some(json!({"model": "scripted/echo", "messages": [{"role": "user", "content": "hi"}]})),
    )
    .await;
}

/// The admin's scrape once the gateway call shows in it (usage is counted as the reply ends).
async fn scrape_after_the_call(api: &Api) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, text) = api.call(Method::GET, "/metrics", None).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        let text = text.as_str().unwrap().to_string();
        if text.contains("keel_gateway_requests_total{") {
            return text;
        }
        assert!(Instant::now() < deadline, "no gateway counter: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn assert_error(status: StatusCode, body: &Value, expected: StatusCode, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["type"].is_string() && body["error"]["message"].is_string(),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_an_admin_key_and_name_no_tenant_by_default() {
    let home = KeelHome::new(&config(0));
    let server = KeelServer::start(&home, &[]);
    let (tenant_id, tenant_api) = tenant(&server).await;
    gateway_call(&tenant_api).await;

    let (status, body) = Api::new(&server, None)
        .call(Method::GET, "/metrics", None)
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_api_key");
    let (status, body) = tenant_api.call(Method::GET, "/metrics", None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "admin_scope_required");

    let metrics = scrape_after_the_call(&admin(&server)).await;
    assert!(
        metrics.contains("keel_gateway_requests_total{model=\"scripted/echo\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("keel_gateway_tokens_total{model=\"scripted/echo\",kind=\"output\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("tenant="), "{metrics}");
    assert!(!metrics.contains(&tenant_id), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_labels_are_opt_in_in_keel_toml() {
    let home = KeelHome::new(&format!(
        "[server]\nmetrics_tenant_labels = true\n{}",
        config(0)
    ));
    let server = KeelServer::start(&home, &[]);
    let (tenant_id, tenant_api) = tenant(&server).await;
    gateway_call(&tenant_api).await;
    let metrics = scrape_after_the_call(&admin(&server)).await;
    let line =
        format!("keel_gateway_requests_total{{tenant=\"{tenant_id}\",model=\"scripted/echo\"}} 1");
    assert!(metrics.contains(&line), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_listener_of_its_own_answers_without_a_key() {
    let home = KeelHome::new(&config(0));
    let server = KeelServer::start(
        &home,
        &["--metrics-listen", "127.0.0.1:0", "--metrics-tenant-labels"],
    );
    // Printed right after the API's address.
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics_url = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = server
            .stderr
            .recv_timeout(left)
            .expect("keel serve printed the metrics address");
        if let Some(url) = line.strip_prefix("keel metrics without a key on ") {
            break url.trim().to_string();
        }
    };
    let (tenant_id, tenant_api) = tenant(&server).await;
    gateway_call(&tenant_api).await;

    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let response = http.get(&metrics_url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap();
        if text.contains("keel_gateway_requests_total{") {
            break text;
        }
        assert!(Instant::now() < deadline, "no gateway counter: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let line =
        format!("keel_gateway_requests_total{{tenant=\"{tenant_id}\",model=\"scripted/echo\"}} 1");
    assert!(metrics.contains(&line), "{metrics}");
    assert!(metrics.contains("# TYPE keel_runs gauge"), "{metrics}");

    // That listener serves /metrics alone.
    let other = metrics_url.replace("/metrics", "/v1/sessions");
    let response = http.get(&other).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "route_not_found");

    // The API's /metrics still needs the admin key.
    let (status, body) = Api::new(&server, None)
        .call(Method::GET, "/metrics", None)
        .await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_api_key");
    let (status, body) = tenant_api.call(Method::GET, "/metrics", None).await;
    assert_error(status, &body, StatusCode::FORBIDDEN, "admin_scope_required");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metrics_listener_on_a_non_loopback_address_is_allowed_with_a_warning() {
    let home = KeelHome::new(&config(0));
    let server = KeelServer::start(&home, &["--metrics-listen", "0.0.0.0:0"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut port = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = server
            .stderr
            .recv_timeout(left)
            .expect("keel serve warned about the open metrics address");
        if let Some(url) = line.strip_prefix("keel metrics without a key on http://0.0.0.0:") {
            port = url.split('/').next().map(str::to_string);
        }
        if line.starts_with("warning:") {
            assert!(line.contains("without a key"), "{line}");
            break;
        }
    }
    let url = format!("http://127.0.0.1:{}/metrics", port.expect("the address"));
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
