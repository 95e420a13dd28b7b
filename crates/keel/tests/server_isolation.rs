//! Tenant isolation over HTTP: for every endpoint, tenant B's key cannot read, list, write,
//! stream, cancel or delete anything of tenant A's — the answer is 404, never a hint that it
//! exists — and a revoked key fails on its very next request.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::http::{Api, admin, finished_run, new_session, start};

async fn assert_not_found(api: &Api, method: Method, path: &str, body: Option<Value>) {
    let (status, error) = api.call(method.clone(), path, body).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {error}");
    assert_eq!(
        error["error"]["type"], "not_found",
        "{method} {path}: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_sees_nothing_and_a_revoked_key_stops_at_once() {
    let (_home, server) = start(0);
    let a = admin(&server);

    let tenant_b = a
        .ok(
            Method::POST,
            "/v1/admin/tenants",
            Some(json!({"name": "b"})),
        )
        .await;
    let b_id = tenant_b["id"].as_str().unwrap();
    let key = a
        .ok(
            Method::POST,
            &format!("/v1/admin/tenants/{b_id}/keys"),
            Some(json!({"scope": "tenant"})),
        )
        .await;
    assert_eq!(key["scope"], "tenant");
    let b = Api::new(&server, key["key"].as_str());

    // Tenant A's things.
    a.ok(
        Method::POST,
        "/v1/agents",
        Some(json!({"name": "secret", "model": "scripted/echo"})),
    )
    .await;
    let session = new_session(&a).await;
    let run = a
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": "mine"})),
        )
        .await;
    let run_id = run["id"].as_str().unwrap();

    // Reads and lists.
    assert_not_found(&b, Method::GET, "/v1/agents/secret", None).await;
    let agents = b.ok(Method::GET, "/v1/agents", None).await;
    assert_eq!(agents["data"], json!([]), "B lists none of A's agents");
    assert_not_found(&b, Method::GET, &format!("/v1/sessions/{session}"), None).await;
    let sessions = b.ok(Method::GET, "/v1/sessions", None).await;
    assert_eq!(sessions["data"], json!([]));
    assert_not_found(
        &b,
        Method::GET,
        &format!("/v1/sessions/{session}/events"),
        None,
    )
    .await;
    assert_not_found(
        &b,
        Method::GET,
        &format!("/v1/sessions/{session}/events?follow=true"),
        None,
    )
    .await;
    assert_not_found(&b, Method::GET, &format!("/v1/runs/{run_id}"), None).await;

    // Writes.
    assert_not_found(&b, Method::POST, "/v1/agents/secret/archive", None).await;
    assert_not_found(
        &b,
        Method::POST,
        "/v1/sessions",
        Some(json!({"agent": "secret"})),
    )
    .await;
    assert_not_found(
        &b,
        Method::POST,
        &format!("/v1/sessions/{session}/messages"),
        Some(json!({"content": "x"})),
    )
    .await;
    assert_not_found(
        &b,
        Method::POST,
        &format!("/v1/sessions/{session}/messages"),
        Some(json!({"content": "x", "mode": "stream"})),
    )
    .await;
    assert_not_found(&b, Method::POST, &format!("/v1/runs/{run_id}/cancel"), None).await;
    assert_not_found(&b, Method::DELETE, &format!("/v1/sessions/{session}"), None).await;
    // B's own agent of the same name is B's: A's is untouched.
    let own = b
        .ok(
            Method::PUT,
            "/v1/agents/secret",
            Some(json!({"model": "scripted/echo", "instructions": "B's"})),
        )
        .await;
    assert_eq!(own["version"], 1);
    let theirs = a.ok(Method::GET, "/v1/agents/secret", None).await;
    assert_eq!(
        (theirs["version"].as_u64(), theirs["instructions"].as_str()),
        (Some(1), Some(""))
    );

    // Admin endpoints need an admin key.
    for (path, body) in [
        ("/v1/admin/tenants".to_string(), json!({"name": "c"})),
        (format!("/v1/admin/tenants/{b_id}/keys"), json!({})),
        (
            format!("/v1/admin/keys/{}/revoke", key["prefix"].as_str().unwrap()),
            json!({}),
        ),
    ] {
        let (status, error) = b.call(Method::POST, &path, Some(body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {error}");
    }

    // A's things are all still there.
    let summary = a
        .ok(Method::GET, &format!("/v1/sessions/{session}"), None)
        .await;
    assert_eq!(summary["runs_finished"], 1);
    assert_eq!(finished_run(&a, run_id).await["status"], "completed");

    // B works in its own tenant, then its key is revoked and fails on the next request.
    let b_session = b
        .ok(
            Method::POST,
            "/v1/sessions",
            Some(json!({"agent": "secret"})),
        )
        .await;
    let b_session = b_session["id"].as_str().unwrap();
    assert_not_found(&a, Method::GET, &format!("/v1/sessions/{b_session}"), None).await;
    let (status, _) = a
        .call(
            Method::POST,
            &format!("/v1/admin/keys/{}/revoke", key["prefix"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, error) = b.call(Method::GET, "/v1/sessions", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{error}");
    assert_eq!(error["error"]["code"], "invalid_api_key");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_valid_key_are_refused() {
    let (_home, server) = start(0);
    let admin_key = server.admin_key.clone().unwrap();
    let (prefix, _) = admin_key.split_once('.').unwrap();
    for key in [
        None,
        Some("nonsense".to_string()),
        Some(format!("{prefix}.wrongsecret")),
        Some(format!("{prefix}x.{}", "0".repeat(64))),
    ] {
        let api = Api::new(&server, key.as_deref());
        let (status, error) = api.call(Method::GET, "/v1/sessions", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{key:?}: {error}");
        assert_eq!(error["error"]["type"], "authentication");
    }
    // The operational endpoints need no key.
    let anonymous = Api::new(&server, None);
    assert_eq!(
        anonymous.ok(Method::GET, "/healthz", None).await["status"],
        "ok"
    );
}
