//! Fork and time travel over HTTP: `POST /v1/sessions/{id}/fork` copies a log prefix that
//! ends between runs (a point inside a run is a 400 naming the seqs that work), `GET
//! /v1/sessions/{id}/context` shows the model request at a seq; bad seqs are 400s, and
//! another tenant's session is a 404.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::http::{Api, admin, another_tenant, new_session, start};

async fn turn(api: &Api, session: &str, text: &str) {
    let run = support::http::turn(api, session, text).await;
    assert_eq!(run["status"], "completed", "{run}");
}

/// The seqs of the session's events of type `kind`.
async fn seqs_of(api: &Api, session: &str, kind: &str) -> Vec<u64> {
    let page = api
        .ok(Method::GET, &format!("/v1/sessions/{session}/events"), None)
        .await;
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == kind)
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

async fn refused(api: &Api, method: Method, path: &str, body: Option<Value>) -> String {
    let (status, error) = api.call(method.clone(), path, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {error}");
    error["error"]["message"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forks_and_contexts_at_seqs_of_a_session() {
    let (_home, server) = start(0);
    let api = admin(&server);
    let session = new_session(&api).await;
    turn(&api, &session, "first").await;
    turn(&api, &session, "second").await;
    let ends = seqs_of(&api, &session, "run_completed").await;
    let calls = seqs_of(&api, &session, "model_called").await;
    let fork_path = format!("/v1/sessions/{session}/fork");

    // At the end of the first run: the branch holds that prefix and goes on by itself.
    let (status, fork) = api
        .call(
            Method::POST,
            &fork_path,
            Some(json!({"at_seq": ends[0], "metadata": {"branch": "a"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{fork}");
    assert_eq!(fork["last_seq"], ends[0]);
    assert_eq!(fork["metadata"], json!({"branch": "a"}));
    let branch = fork["id"].as_str().unwrap();
    assert_eq!(seqs_of(&api, branch, "run_completed").await, ends[..1]);
    turn(&api, branch, "elsewhere").await;
    assert_eq!(seqs_of(&api, &session, "run_completed").await, ends);
    // Without at_seq: the whole log.
    let whole = api.ok(Method::POST, &fork_path, Some(json!({}))).await;
    assert_eq!(whole["last_seq"], ends[1]);

    // Inside the second run: refused, naming the run ends around it.
    let message = refused(
        &api,
        Method::POST,
        &fork_path,
        Some(json!({"at_seq": calls[1]})),
    )
    .await;
    assert!(
        message.contains(&format!("fork at seq {} or {}", ends[0], ends[1])),
        "{message}"
    );

    // The context at the second model call: the run's input last, the agent's tools.
    let context = api
        .ok(
            Method::GET,
            &format!("/v1/sessions/{session}/context?at_seq={}", calls[1]),
            None,
        )
        .await;
    assert_eq!(context["at_seq"], calls[1]);
    assert!(context["run_id"].as_str().unwrap().starts_with("run_"));
    assert_eq!(context["served_by"], "scripted/echo");
    let messages = context["request"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{context}");
    assert_eq!(messages[2]["parts"][0]["text"], "second", "{context}");
    assert_eq!(context["request"]["tools"][0]["name"], "scratchpad_set");
    // Now: between runs, the whole transcript.
    let now = api
        .ok(
            Method::GET,
            &format!("/v1/sessions/{session}/context"),
            None,
        )
        .await;
    assert_eq!(now["at_seq"], ends[1]);
    assert_eq!(now["run_id"], Value::Null);
    assert_eq!(now["request"]["messages"].as_array().unwrap().len(), 4);

    // Bad seqs.
    for bad in [json!(0), json!(ends[1] + 1), json!("3"), json!(-1)] {
        refused(&api, Method::POST, &fork_path, Some(json!({"at_seq": bad}))).await;
    }
    for bad in ["0", &(ends[1] + 1).to_string(), "x", "-1"] {
        refused(
            &api,
            Method::GET,
            &format!("/v1/sessions/{session}/context?at_seq={bad}"),
            None,
        )
        .await;
    }
    refused(&api, Method::POST, &fork_path, Some(json!({"at": 1}))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenant_cannot_fork_or_read_the_context() {
    let (_home, server) = start(0);
    let a = admin(&server);
    let b = another_tenant(&a, &server).await;
    let session = new_session(&a).await;
    turn(&a, &session, "mine").await;
    for (method, path, body) in [
        (
            Method::POST,
            format!("/v1/sessions/{session}/fork"),
            Some(json!({})),
        ),
        (Method::GET, format!("/v1/sessions/{session}/context"), None),
        (
            Method::GET,
            format!("/v1/sessions/{session}/context?at_seq=1"),
            None,
        ),
    ] {
        let (status, error) = b.call(method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {error}");
        assert_eq!(error["error"]["type"], "not_found");
    }
}
