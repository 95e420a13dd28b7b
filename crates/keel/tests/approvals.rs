//! Human approval against the real `keel serve`: two parallel calls of a tool that requires
//! approval (and a third) make the run wait; keel is SIGKILLed while it waits; after a restart
//! one call is approved, one approved with edited arguments and one rejected, each reaching its
//! own call (the tool endpoint sees exactly the approved arguments), and the run finishes;
//! another tenant's resume is a 404 (and lists no waiting run); bad decisions are 400s naming what is wrong.

mod support;

use std::time::{Duration, Instant};

use keel_testkit::tool_endpoint::ToolEndpoint;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::http::{Api, another_tenant, new_session};
use support::{KeelHome, KeelServer, sigkill};

/// A data directory whose `default` agent, on the scripted model, has `tools` (TOML).
fn home(tools: &str) -> KeelHome {
    KeelHome::new(&format!(
        r#"
[providers.scripted]
kind = "scripted"

[[agents]]
name = "default"
model = "scripted/echo"
tools = {tools}
"#
    ))
}

/// Polls a run until `done` says so (bounded).
async fn run_until(api: &Api, run: &str, done: impl Fn(&str) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let view = api.ok(Method::GET, &format!("/v1/runs/{run}"), None).await;
        if done(view["status"].as_str().unwrap_or("")) {
            return view;
        }
        assert!(Instant::now() < deadline, "run stuck: {view}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_approvals_survive_sigkill_and_each_decision_reaches_its_own_call() {
    let endpoint = ToolEndpoint::start().await.unwrap();
    let home = home(&format!(
        r#"[{{ name = "send_mail", kind = "http", url = "{}", allow_private = ["127.0.0.0/8"], require_approval = true, description = "sends a mail" }}]"#,
        endpoint.url("/echo")
    ));
    let mut server = KeelServer::start(&home, &[]);
    let key = server
        .admin_key
        .clone()
        .expect("the first start prints the admin key");
    let api = Api::new(&server, Some(&key));
    let session = new_session(&api).await;
    let input = "/call send_mail {\"to\": \"ann\"}\n/call send_mail {\"to\": \"bob\"}\n/call send_mail {\"to\": \"eve\"}";
    let (status, sent) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": input, "mode": "wait"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    assert_eq!(sent["status"], "waiting", "{sent}");
    let run = sent["id"].as_str().unwrap().to_string();
    let pending = sent["pending_approvals"].as_array().unwrap().clone();
    assert_eq!(pending.len(), 3, "{sent}");
    let call_for = |to: &str| {
        pending.iter().find(|c| c["arguments"]["to"] == to).unwrap()["call_id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (ann, bob, eve) = (call_for("ann"), call_for("bob"), call_for("eve"));

    // Killed while it waits: nothing was sent.
    sigkill(&mut server.child);
    drop(server);
    assert!(endpoint.requests().is_empty());
    let server = KeelServer::start(&home, &[]);
    let api = Api::new(&server, Some(&key));
    let waiting = api.ok(Method::GET, &format!("/v1/runs/{run}"), None).await;
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    assert_eq!(waiting["pending_approvals"].as_array().unwrap().len(), 3);

    // Another tenant cannot see or resume it.
    let stranger = another_tenant(&api, &server).await;
    let decisions = json!({"decisions": [{"call_id": ann, "decision": "approve"}]});
    let (status, body) = stranger
        .call(
            Method::POST,
            &format!("/v1/runs/{run}/resume"),
            Some(decisions),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // What waits is listed for its tenant, with the calls it waits on; for no other.
    let listed = api.ok(Method::GET, "/v1/runs?status=waiting", None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["data"][0]["id"], run.as_str());
    assert_eq!(
        listed["data"][0]["pending_approvals"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert!(listed["next_cursor"].is_null(), "{listed}");
    let theirs = stranger
        .ok(Method::GET, "/v1/runs?status=waiting", None)
        .await;
    assert_eq!(theirs["data"], json!([]), "{theirs}");
    for (query, says) in [
        ("status=completed", "status"),
        ("status=waiting&limit=0", "limit"),
        ("status=waiting&cursor=nope", "cursor"),
    ] {
        let (status, body) = api
            .call(Method::GET, &format!("/v1/runs?{query}"), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(says),
            "{body}"
        );
    }

    // Bad decisions are 400s that say what is wrong, and change nothing.
    for (bad, says) in [
        (
            json!({"decisions": [{"call_id": "call_x", "decision": "approve"}]}),
            "call_x",
        ),
        (
            json!({"decisions": [{"call_id": ann, "decision": "maybe"}]}),
            "maybe",
        ),
        (
            json!({"decisions": [{"call_id": ann, "decision": "answer", "answer": "hi"}]}),
            "not answered",
        ),
        (
            json!({"decisions": [{"call_id": ann, "decision": "approve", "arguments": [1]}]}),
            "object",
        ),
        (json!({"decisions": []}), "empty"),
        (json!({"decision": "approve"}), "decision"),
    ] {
        let (status, body) = api
            .call(
                Method::POST,
                &format!("/v1/runs/{run}/resume"),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{bad}: {body}");
    }

    // One approved as it is, one with edited arguments, one rejected: in one decision each.
    let decisions = json!({"decisions": [
        {"call_id": bob, "decision": "approve", "arguments": {"to": "bob@example.org"}},
        {"call_id": eve, "decision": "reject", "reason": "eve is not a customer"},
    ]});
    let partly = api
        .ok(
            Method::POST,
            &format!("/v1/runs/{run}/resume"),
            Some(decisions),
        )
        .await;
    assert_eq!(partly["status"], "waiting", "{partly}");
    assert_eq!(partly["pending_approvals"][0]["call_id"], ann.as_str());
    let decisions = json!({"decisions": [{"call_id": ann, "decision": "approve"}]});
    api.ok(
        Method::POST,
        &format!("/v1/runs/{run}/resume"),
        Some(decisions),
    )
    .await;
    let done = run_until(&api, &run, |s| s == "completed" || s == "failed").await;
    assert_eq!(done["status"], "completed", "{done}");

    // The endpoint saw exactly the approved arguments, once each.
    let mut bodies: Vec<Value> = endpoint.requests().into_iter().map(|r| r.body).collect();
    bodies.sort_by_key(|b| b.to_string());
    assert_eq!(
        bodies,
        [json!({"to": "ann"}), json!({"to": "bob@example.org"})]
    );
    // Each result reached its own call: the model saw the rejection as an error result.
    let events = api
        .ok(Method::GET, &format!("/v1/sessions/{session}/events"), None)
        .await;
    let results: Vec<&Value> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "tool_returned")
        .collect();
    let result = |id: &str| *results.iter().find(|e| e["call_id"] == id).unwrap();
    assert!(
        result(&ann)["content"]
            .as_str()
            .unwrap()
            .contains("\"to\":\"ann\"")
    );
    assert!(
        result(&bob)["content"]
            .as_str()
            .unwrap()
            .contains("bob@example.org")
    );
    assert_eq!(result(&eve)["is_error"], true);
    assert_eq!(
        result(&eve)["content"],
        "a person rejected this call: eve is not a customer"
    );
    let decided_by: Vec<&Value> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "approval_decided")
        .map(|e| &e["by"])
        .collect();
    assert_eq!(decided_by.len(), 3);
    assert!(
        decided_by.iter().all(|by| by.as_str().is_some()),
        "{decided_by:?}"
    );
}

#[test]
fn the_cli_lists_what_a_run_waits_on_and_answers_an_ask_human_question() {
    let home = home(r#"[{ name = "ask_human", kind = "builtin" }]"#);
    let sent = home.json(&[
        "send",
        "--json",
        "/call ask_human {\"question\": \"which colour?\"}",
    ]);
    assert_eq!(sent["status"], "waiting", "{sent}");
    let run = sent["id"].as_str().unwrap();
    let call = sent["pending_approvals"][0]["call_id"].as_str().unwrap();

    let listed = home.run(&["runs", "pending", run]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.contains(call) && listed.contains("which colour?"),
        "{listed}"
    );
    let waiting = home.run(&["runs", "waiting"]);
    let waiting = String::from_utf8_lossy(&waiting.stdout).into_owned();
    let lines: Vec<&str> = waiting.lines().collect();
    assert_eq!(lines.len(), 2, "{waiting}");
    assert!(lines[0].starts_with(run), "{waiting}");
    assert!(
        lines[1].starts_with(&format!("  {call}")) && lines[1].contains("which colour?"),
        "{waiting}"
    );

    let wrong = home.run(&["runs", "approve", run, call]);
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("answer it"),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );

    let answered = home.run(&["runs", "answer", run, call, "blue"]);
    let out = String::from_utf8_lossy(&answered.stdout).into_owned();
    assert!(
        answered.status.success(),
        "{}",
        String::from_utf8_lossy(&answered.stderr)
    );
    assert!(out.contains("completed"), "{out}");
    let events = home.events(&home.only_session());
    let result = events
        .iter()
        .find(|e| e["type"] == "tool_returned")
        .unwrap();
    assert_eq!(result["content"], "blue");
    assert_eq!(result["is_error"], false);
}

#[test]
fn keel_chat_asks_inline_and_the_run_goes_on() {
    let home = home(
        r#"[{ name = "ask_human", kind = "builtin" }, { name = "clock_now", kind = "builtin", require_approval = true }]"#,
    );
    let shown = home.run_on_a_terminal_typing(
        &["chat"],
        "> ",
        &[
            "//call ask_human {\"question\": \"which colour?\"}",
            "blue",
            "//call clock_now",
            "n not now",
            "/exit",
        ],
    );
    assert!(shown.contains("the agent asks: which colour?"), "{shown:?}");
    assert!(
        shown.contains("the agent wants to call \"clock_now\""),
        "{shown:?}"
    );
    // The model sums up the results it got: the answer, and the rejection as an error.
    assert!(shown.contains("=blue"), "{shown:?}");
    assert!(
        shown.contains("=a person rejected this call: not now"),
        "{shown:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_turn_ends_with_the_calls_it_waits_on() {
    let home = home(r#"[{ name = "ask_human", kind = "builtin" }]"#);
    let server = KeelServer::start(&home, &[]);
    let api = Api::new(&server, server.admin_key.as_deref());
    let session = new_session(&api).await;
    let request = api
        .request(Method::POST, &format!("/v1/sessions/{session}/messages"))
        .json(&json!({"content": "/call ask_human {\"question\": \"go on?\"}", "mode": "stream"}));
    let mut stream = api.stream(request).await;
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event);
    }
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    let asked = events
        .iter()
        .find(|e| e.event == "approval.requested")
        .unwrap_or_else(|| panic!("{names:?}"));
    assert_eq!(asked.json()["calls"][0]["arguments"]["question"], "go on?");
    let last = events.last().unwrap();
    assert_eq!(last.event, "run.waiting", "{names:?}");
    assert_eq!(last.json()["status"], "waiting");
}
