//! State kept for the OpenAI API is keel state: a background response interrupted by a SIGKILL
//! of `keel serve` is finished by the restarted server, exactly once, and the response chain
//! goes on from it.

mod support;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use support::http::{Api, config};
use support::{KeelHome, KeelServer, sigkill};

fn output_text(response: &Value) -> String {
    response["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["type"] == "message")
        .flat_map(|item| item["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|part| part["text"].as_str().map(str::to_string))
        .collect()
}

async fn poll_until(api: &Api, id: &str, done: impl Fn(&str) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = api
            .ok(Method::GET, &format!("/v1/responses/{id}"), None)
            .await;
        if done(response["status"].as_str().unwrap_or("")) {
            return response;
        }
        assert!(Instant::now() < deadline, "response stuck: {response}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_response_survives_sigkill_and_the_chain_goes_on() {
    // The scripted model streams one token per 25 ms: the kill lands mid-reply.
    let home = KeelHome::new(&config(25));
    let mut server = KeelServer::start(&home, &[]);
    let key = server
        .admin_key
        .clone()
        .expect("first start prints the admin key");
    let api = Api::new(&server, Some(&key));

    let first = api
        .ok(
            Method::POST,
            "/v1/responses",
            Some(json!({"model": "scripted/echo", "input": "anchor"})),
        )
        .await;
    assert_eq!(output_text(&first), "echo: anchor");
    let words: Vec<String> = (0..60).map(|i| format!("w{i}")).collect();
    let words = words.join(" ");
    let background = api
        .ok(
            Method::POST,
            "/v1/responses",
            Some(
                json!({"model": "scripted/echo", "input": words, "background": true,
                "previous_response_id": first["id"]}),
            ),
        )
        .await;
    let id = background["id"].as_str().unwrap().to_string();
    poll_until(&api, &id, |s| s == "in_progress").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = api
        .ok(Method::GET, &format!("/v1/responses/{id}"), None)
        .await;
    assert_eq!(
        before["status"], "in_progress",
        "the kill must land mid-reply"
    );
    sigkill(&mut server.child);

    let restarted = KeelServer::start(&home, &[]);
    let api = Api::new(&restarted, Some(&key));
    let done = poll_until(&api, &id, |s| !["queued", "in_progress"].contains(&s)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(output_text(&done), format!("echo: {words}"));
    assert_eq!(done["previous_response_id"], first["id"]);

    // One session, and the interrupted run started and ended once in its log.
    let run = api
        .ok(
            Method::GET,
            &format!("/v1/runs/run_{}", id.trim_start_matches("resp_")),
            None,
        )
        .await;
    let session = run["session_id"].as_str().unwrap();
    let events = api
        .ok(
            Method::GET,
            &format!("/v1/sessions/{session}/events?limit=1000"),
            None,
        )
        .await;
    let of_run = |kind: &str| {
        events["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == kind && e["run_id"] == run["id"])
            .count()
    };
    assert_eq!(of_run("run_started"), 1, "{events}");
    assert_eq!(of_run("run_completed"), 1, "{events}");

    // The chain continues from the recovered response, with its history.
    let next = api
        .ok(
            Method::POST,
            "/v1/responses",
            Some(json!({"model": "scripted/echo", "input": "after", "previous_response_id": id})),
        )
        .await;
    assert_eq!(next["status"], "completed", "{next}");
    assert_eq!(output_text(&next), "echo: after");
    let conversation = api
        .ok(
            Method::GET,
            &format!("/v1/conversations/{session}/items?order=asc&limit=100"),
            None,
        )
        .await;
    let texts: Vec<String> = conversation["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            item["content"][0]["text"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(
        texts,
        [
            "anchor".to_string(),
            "echo: anchor".into(),
            words.clone(),
            format!("echo: {words}"),
            "after".into(),
            "echo: after".into()
        ]
    );
}
