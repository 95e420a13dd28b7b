//! One session driven alternately through keel's native API (`/v1/sessions/{id}/messages`) and
//! the OpenAI API (`/v1/responses` with `conversation`) on the real `keel serve`: after every
//! turn the conversation's items, the session's summary and its event log tell the same story,
//! because a conversation is a session (`conv_<ULID>` = `ses_<ULID>`) and a response is a run
//! (`resp_<ULID>` = `run_<ULID>`).

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::http::{Api, admin, start};

/// One entry of a transcript as both APIs can show it: `(kind, text)` where kind is a role
/// (`user`, `assistant`), `function_call` (text: the function's name) or
/// `function_call_output` (text: the output).
type Entry = (String, String);

fn entry(kind: &str, text: &str) -> Entry {
    (kind.to_string(), text.to_string())
}

fn same_ulid(id: &str, from: &str, to: &str) -> String {
    let ulid = id
        .strip_prefix(from)
        .unwrap_or_else(|| panic!("{id} does not start with {from}"));
    format!("{to}{ulid}")
}

/// A keel message (`{"role", "parts": [...]}`) as entries: its text (if any) under its role,
/// then its tool calls and tool results.
fn message_entries(message: &Value) -> Vec<Entry> {
    let parts = message["parts"].as_array().cloned().unwrap_or_default();
    let text: String = parts
        .iter()
        .filter(|p| p["type"] == "text")
        .filter_map(|p| p["text"].as_str())
        .collect();
    let mut out = Vec::new();
    if !text.is_empty() {
        out.push(entry(message["role"].as_str().unwrap_or_default(), &text));
    }
    for part in &parts {
        match part["type"].as_str() {
            Some("tool_call") => out.push(entry("function_call", part["name"].as_str().unwrap())),
            Some("tool_result") => out.push(entry(
                "function_call_output",
                part["content"].as_str().unwrap_or_default(),
            )),
            _ => {}
        }
    }
    out
}

/// The transcript as the native event log tells it: run inputs (after the earlier input items
/// a run carries), messages added between runs, model replies and tool results.
fn from_events(events: &[Value]) -> Vec<Entry> {
    let mut out = Vec::new();
    for event in events {
        match event["type"].as_str().unwrap_or_default() {
            "run_started" => {
                for message in event["options"]["context"].as_array().into_iter().flatten() {
                    out.extend(message_entries(message));
                }
                out.extend(message_entries(&event["input"]));
            }
            "messages_added" => {
                for message in event["messages"].as_array().into_iter().flatten() {
                    out.extend(message_entries(message));
                }
            }
            "model_replied" => out.extend(message_entries(&event["message"])),
            "tool_returned" => out.push(entry(
                "function_call_output",
                event["content"].as_str().unwrap_or_default(),
            )),
            _ => {}
        }
    }
    out
}

/// The transcript as the conversation's items tell it.
fn from_items(items: &[Value]) -> Vec<Entry> {
    items
        .iter()
        .map(|item| match item["type"].as_str().unwrap_or_default() {
            "message" => {
                let text: String = item["content"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c["text"].as_str())
                    .collect();
                entry(item["role"].as_str().unwrap_or_default(), &text)
            }
            "function_call" => entry("function_call", item["name"].as_str().unwrap_or_default()),
            "function_call_output" => entry(
                "function_call_output",
                item["output"].as_str().unwrap_or_default(),
            ),
            other => panic!("an item of an unexpected type {other}: {item}"),
        })
        .collect()
}

async fn all_events(api: &Api, session: &str) -> Vec<Value> {
    let page = api
        .ok(
            Method::GET,
            &format!("/v1/sessions/{session}/events?limit=1000"),
            None,
        )
        .await;
    page["data"].as_array().unwrap().clone()
}

async fn conversation_items(api: &Api, conversation: &str) -> Vec<Value> {
    let page = api
        .ok(
            Method::GET,
            &format!("/v1/conversations/{conversation}/items?order=asc&limit=100"),
            None,
        )
        .await;
    assert_eq!(page["object"], "list", "{page}");
    assert_eq!(page["has_more"], false, "{page}");
    page["data"].as_array().unwrap().clone()
}

/// After a turn: items, summary and log agree with each other and with `expected`.
async fn check_agreement(
    api: &Api,
    conversation: &str,
    session: &str,
    expected: &[Entry],
    runs: u64,
) {
    let items = conversation_items(api, conversation).await;
    assert_eq!(
        from_items(&items),
        expected,
        "conversation items: {items:#?}"
    );
    let ids: std::collections::HashSet<&str> =
        items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), items.len(), "item ids are distinct: {items:#?}");

    let summary = api
        .ok(Method::GET, &format!("/v1/sessions/{session}"), None)
        .await;
    assert_eq!(summary["status"], "idle", "{summary}");
    assert_eq!(summary["runs_finished"], runs, "{summary}");
    assert_eq!(
        summary["message_count"].as_u64(),
        Some(expected.len() as u64),
        "one message per item: {summary}"
    );

    let events = all_events(api, session).await;
    assert_eq!(
        from_events(&events),
        expected,
        "the event log's transcript: {events:#?}"
    );
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "no gaps");
    assert_eq!(
        summary["last_seq"].as_u64(),
        seqs.last().copied(),
        "{summary}"
    );
    let finished = events
        .iter()
        .filter(|e| e["type"] == "run_completed")
        .count() as u64;
    assert_eq!(finished, runs, "runs completed in the log");
}

/// A native turn in wait mode; returns the run.
async fn native_turn(api: &Api, session: &str, text: &str) -> Value {
    let run = api
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": text, "mode": "wait"})),
        )
        .await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["session_id"], session, "{run}");
    run
}

/// A Responses turn bound to the conversation; returns the response.
async fn openai_turn(api: &Api, conversation: &str, text: &str) -> Value {
    let response = api
        .ok(
            Method::POST,
            "/v1/responses",
            Some(json!({"model": "scripted/echo", "conversation": conversation, "input": text})),
        )
        .await;
    assert_eq!(response["status"], "completed", "{response}");
    assert_eq!(response["conversation"]["id"], conversation, "{response}");
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_session_through_the_native_and_the_openai_api_shows_one_state() {
    let (_home, server) = start(0);
    let api = admin(&server);

    // A conversation created through the OpenAI API is a native session.
    let conversation = api
        .ok(
            Method::POST,
            "/v1/conversations",
            Some(json!({"metadata": {"origin": "openai"}})),
        )
        .await;
    let conv = conversation["id"].as_str().unwrap().to_string();
    let session = same_ulid(&conv, "conv_", "ses_");
    let summary = api
        .ok(Method::GET, &format!("/v1/sessions/{session}"), None)
        .await;
    assert_eq!(
        summary["metadata"],
        json!({"origin": "openai"}),
        "{summary}"
    );
    assert_eq!(summary["message_count"], 0, "{summary}");

    let mut expected: Vec<Entry> = Vec::new();
    let mut runs = 0;
    for turn in 1..=4 {
        let text = format!("turn {turn}");
        if turn % 2 == 1 {
            let run = native_turn(&api, &session, &text).await;
            assert_eq!(run["output"], format!("echo: {text}"), "{run}");
        } else {
            let response = openai_turn(&api, &conv, &text).await;
            // The response is a native run of the session.
            let id = same_ulid(response["id"].as_str().unwrap(), "resp_", "run_");
            let run = api.ok(Method::GET, &format!("/v1/runs/{id}"), None).await;
            assert_eq!(
                (run["session_id"].as_str(), run["status"].as_str()),
                (Some(session.as_str()), Some("completed")),
                "{run}"
            );
            assert_eq!(run["output"], format!("echo: {text}"), "{run}");
        }
        runs += 1;
        expected.push(entry("user", &text));
        expected.push(entry("assistant", &format!("echo: {text}")));
        check_agreement(&api, &conv, &session, &expected, runs).await;
    }

    // A native turn with a tool call shows as function_call and function_call_output items.
    let call = r#"/call scratchpad_set {"key": "colour", "value": "blue"}"#;
    let run = native_turn(&api, &session, call).await;
    runs += 1;
    let events = all_events(&api, &session).await;
    let output = events
        .iter()
        .rev()
        .find(|e| e["type"] == "tool_returned")
        .expect("a tool result")["content"]
        .as_str()
        .unwrap()
        .to_string();
    expected.extend([
        entry("user", call),
        entry("function_call", "scratchpad_set"),
        entry("function_call_output", &output),
        entry("assistant", run["output"].as_str().unwrap()),
    ]);
    check_agreement(&api, &conv, &session, &expected, runs).await;

    // ... and the next OpenAI turn continues after it.
    openai_turn(&api, &conv, "after the tool").await;
    runs += 1;
    expected.push(entry("user", "after the tool"));
    expected.push(entry("assistant", "echo: after the tool"));
    check_agreement(&api, &conv, &session, &expected, runs).await;

    // Items added through the OpenAI API are messages of the session.
    let added = api
        .ok(
            Method::POST,
            &format!("/v1/conversations/{conv}/items"),
            Some(json!({"items": [{"type": "message", "role": "user", "content": "a note"}]})),
        )
        .await;
    assert_eq!(added["data"].as_array().map(Vec::len), Some(1), "{added}");
    expected.push(entry("user", "a note"));
    check_agreement(&api, &conv, &session, &expected, runs).await;

    // Metadata is one: updated through OpenAI, read natively.
    let updated = api
        .ok(
            Method::POST,
            &format!("/v1/conversations/{conv}"),
            Some(json!({"metadata": {"origin": "openai", "turns": "6"}})),
        )
        .await;
    assert_eq!(updated["metadata"]["turns"], "6", "{updated}");
    let summary = api
        .ok(Method::GET, &format!("/v1/sessions/{session}"), None)
        .await;
    assert_eq!(
        summary["metadata"],
        json!({"origin": "openai", "turns": "6"}),
        "{summary}"
    );

    // Deleted through OpenAI, the session is gone natively too.
    let deleted = api
        .ok(Method::DELETE, &format!("/v1/conversations/{conv}"), None)
        .await;
    assert_eq!(deleted["deleted"], true, "{deleted}");
    let (status, body) = api
        .call(Method::GET, &format!("/v1/sessions/{session}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_session_is_a_conversation() {
    let (_home, server) = start(0);
    let api = admin(&server);
    let session = api
        .ok(
            Method::POST,
            "/v1/sessions",
            Some(json!({"agent": "default", "metadata": {"origin": "native"}})),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let conv = same_ulid(&session, "ses_", "conv_");
    let conversation = api
        .ok(Method::GET, &format!("/v1/conversations/{conv}"), None)
        .await;
    assert_eq!(conversation["object"], "conversation", "{conversation}");
    assert_eq!(conversation["metadata"], json!({"origin": "native"}));

    native_turn(&api, &session, "native first").await;
    openai_turn(&api, &conv, "openai second").await;
    let expected = vec![
        entry("user", "native first"),
        entry("assistant", "echo: native first"),
        entry("user", "openai second"),
        entry("assistant", "echo: openai second"),
    ];
    check_agreement(&api, &conv, &session, &expected, 2).await;

    // A response continued by previous_response_id stays in the same session.
    let items = conversation_items(&api, &conv).await;
    assert_eq!(items.len(), 4);
    let last = api
        .ok(
            Method::GET,
            &format!("/v1/sessions/{session}/events?limit=1000"),
            None,
        )
        .await;
    let last_run = last["data"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["type"] == "run_completed")
        .expect("a completed run")["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let previous = same_ulid(&last_run, "run_", "resp_");
    let next = api
        .ok(
            Method::POST,
            "/v1/responses",
            Some(json!({"model": "scripted/echo", "previous_response_id": previous, "input": "third"})),
        )
        .await;
    assert_eq!(next["previous_response_id"], previous.as_str(), "{next}");
    let run = same_ulid(next["id"].as_str().unwrap(), "resp_", "run_");
    let run = api.ok(Method::GET, &format!("/v1/runs/{run}"), None).await;
    assert_eq!(run["session_id"], session.as_str(), "{run}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_handed_to_the_caller_must_be_answered_through_either_api() {
    let (_home, server) = start(0);
    let api = admin(&server);
    let tools = json!([{"type": "function", "name": "lookup",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}]);
    let asked = api
        .ok(
            Method::POST,
            "/v1/responses",
            Some(json!({"model": "scripted/echo", "tools": tools,
                "input": "/call lookup {\"q\": \"keel\"}"})),
        )
        .await;
    assert_eq!(asked["status"], "completed", "{asked}");
    let call = asked["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap_or_else(|| panic!("no function call in {asked}"))
        .clone();
    let run = same_ulid(asked["id"].as_str().unwrap(), "resp_", "run_");
    let session = api.ok(Method::GET, &format!("/v1/runs/{run}"), None).await["session_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Neither API may move on without the call's output: the model could not go on.
    let (status, body) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": "never mind", "mode": "wait"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(call["call_id"].as_str().unwrap()),
        "{body}"
    );
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/responses",
            Some(
                json!({"model": "scripted/echo", "previous_response_id": asked["id"],
                "input": "never mind"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["param"], "input", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("no tool output found for function call"),
        "{body}"
    );

    // Answered, the session goes on; the refusals logged nothing.
    let answered = api
        .ok(
            Method::POST,
            "/v1/responses",
            Some(
                json!({"model": "scripted/echo", "previous_response_id": asked["id"],
                "tools": tools,
                "input": [{"type": "function_call_output", "call_id": call["call_id"],
                    "output": "a runtime"}]}),
            ),
        )
        .await;
    assert_eq!(answered["status"], "completed", "{answered}");
    let starts = all_events(&api, &session)
        .await
        .iter()
        .filter(|e| e["type"] == "run_started")
        .count();
    assert_eq!(starts, 2, "two runs: the call and its answer");
    let after = native_turn(&api, &session, "thanks").await;
    assert_eq!(after["status"], "completed", "{after}");
}
