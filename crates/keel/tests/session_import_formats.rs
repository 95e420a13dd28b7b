//! Sessions imported from another system's files (`POST /v1/sessions/import?format=…`): an
//! OpenAI conversation's items, as the official SDK's `conversations.items.list` returns them
//! (the page object of `GET /v1/conversations/{id}/items` from one `keel serve`'s
//! OpenAI-compatible API, and the items the Python SDK itself lists and dumps), become a new session on a second keel whose transcript holds the
//! same messages in order, and the conversation goes on there. A Letta agent file
//! (`tests/fixtures/letta/support_agent.af`, shaped as Letta's published schema) becomes an
//! agent whose instructions hold its system prompt and whose memory blocks are the file's (with
//! the tools to edit them), and a session of it with
//! the file's conversation, tool call and result included. Files keel cannot read are refused
//! with a 400 and no session made.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::http::{Api, admin, session_events, turn};
use support::{KeelHome, KeelServer};

async fn import(api: &Api, query: &str, body: &str) -> (StatusCode, Value) {
    let resp = api
        .request(Method::POST, &format!("/v1/sessions/import?{query}"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The text of each message item, in order.
fn texts(items: &Value) -> Vec<String> {
    items["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .map(|i| {
            i["content"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|c| c["text"].as_str())
                .collect::<String>()
        })
        .collect()
}

/// The conversation's items as the official `openai` Python SDK lists them (auto-paging,
/// newest first) and a user would save them: a JSON array of the items' dumps.
fn sdk_items(server: &KeelServer, conversation: &str) -> String {
    const EXPORT: &str = "import json, sys\n\
        from openai import OpenAI\n\
        items = OpenAI().conversations.items.list(sys.argv[1], limit=2)\n\
        print(json.dumps([item.model_dump(mode='json') for item in items]))\n";
    let out = std::process::Command::new(support::python::openai_sdk())
        .args(["-c", EXPORT, conversation])
        .env("OPENAI_BASE_URL", server.url("/v1"))
        .env("OPENAI_API_KEY", server.admin_key.as_deref().unwrap())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .output()
        .expect("run the openai SDK");
    assert!(
        out.status.success(),
        "the SDK's export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openai_conversations_items_become_a_session_that_goes_on() {
    let (_home, source) = support::http::start(0);
    let api = admin(&source);
    let conversation = api
        .ok(
            Method::POST,
            "/v1/conversations",
            Some(json!({"items": [{"type": "message", "role": "user", "content": "I am Ann."}]})),
        )
        .await;
    let conv = conversation["id"].as_str().unwrap();
    for text in ["What is my name?", "And again?"] {
        let reply = api
            .ok(
                Method::POST,
                "/v1/responses",
                Some(json!({"model": "scripted/echo", "input": text, "conversation": conv})),
            )
            .await;
        assert_eq!(reply["status"], "completed", "{reply}");
    }
    // What the SDK's `client.conversations.items.list(conv)` reads: newest first by default.
    let listed = api
        .ok(
            Method::GET,
            &format!("/v1/conversations/{conv}/items?limit=100"),
            None,
        )
        .await;
    let asc = api
        .ok(
            Method::GET,
            &format!("/v1/conversations/{conv}/items?limit=100&order=asc"),
            None,
        )
        .await;
    let expected = texts(&asc);
    assert_eq!(expected.len(), 5, "{asc}");

    let home = KeelHome::new(&support::http::config(0));
    let target = KeelServer::start(&home, &[]);
    let there = admin(&target);
    let (status, created) = import(&there, "format=openai-items", &listed.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let session = created["id"].as_str().unwrap().to_string();
    // The `data` array alone, listed oldest first, reads the same.
    let (status, again) = import(
        &there,
        "format=openai-items&order=asc",
        &asc["data"].to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    // As a user exports it with the official Python SDK: every item, newest first, dumped.
    let (status, by_sdk) = import(&there, "format=openai-items", &sdk_items(&source, conv)).await;
    assert_eq!(status, StatusCode::CREATED, "{by_sdk}");
    // And through the CLI.
    let file = home.path().join("items.json");
    std::fs::write(&file, asc.to_string()).unwrap();
    let out = home.run(&[
        "sessions",
        "import",
        file.to_str().unwrap(),
        "--format",
        "openai-items",
        "--order",
        "asc",
        "--server",
        &target.base,
        "--api-key",
        target.admin_key.as_deref().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_cli = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let made = [
        &session,
        again["id"].as_str().unwrap(),
        by_sdk["id"].as_str().unwrap(),
    ];
    for id in made.into_iter().chain([by_cli.as_str()]) {
        let items = there
            .ok(
                Method::GET,
                &format!(
                    "/v1/conversations/conv_{}/items?order=asc&limit=100",
                    &id[4..]
                ),
                None,
            )
            .await;
        assert_eq!(texts(&items), expected, "{items}");
    }
    let events = session_events(&there, &session).await;
    assert_eq!(events[1]["type"], "messages_added");
    let run = turn(&there, &session, "Still there?").await;
    assert_eq!(run["status"], "completed", "{run}");
    let report = there
        .ok(Method::GET, &format!("/v1/sessions/{session}/verify"), None)
        .await;
    assert_eq!(report["intact"], true, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_letta_agent_file_becomes_an_agent_and_a_session_that_goes_on() {
    let (home, server) = support::http::start(0);
    let api = admin(&server);
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/letta/support_agent.af");
    // Through the CLI first: a session of version 1 of the agent.
    let out = home.run(&[
        "sessions",
        "import",
        file.to_str().unwrap(),
        "--format",
        "letta-af",
        "--server",
        &server.base,
        "--api-key",
        server.admin_key.as_deref().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(file).unwrap();
    let (status, created) = import(&api, "format=letta-af", &text).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["agent"], "harbor_helper");
    let session = created["id"].as_str().unwrap().to_string();
    let agent = api.ok(Method::GET, "/v1/agents/harbor_helper", None).await;
    let instructions = agent["instructions"].as_str().unwrap();
    assert!(
        instructions.contains("You are Harbor, a helper for a small sailing club."),
        "{instructions}"
    );
    assert!(
        !instructions.contains("Ines"),
        "the blocks are blocks: {instructions}"
    );
    // The file's blocks are the agent's memory blocks, and the session holds them.
    let blocks = api
        .ok(
            Method::GET,
            &format!("/v1/sessions/{session}/memory/blocks"),
            None,
        )
        .await;
    let held: Vec<(&str, &str, u64)> = blocks["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["label"].as_str().unwrap(),
                b["value"].as_str().unwrap(),
                b["limit"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        held,
        [
            (
                "human",
                "Name: Ines. Crews on boat 7. Prefers short answers.",
                5000
            ),
            (
                "persona",
                "I am Harbor: cheerful, precise about times and tides.",
                5000
            ),
        ]
    );
    assert_eq!(
        blocks["data"][0]["description"],
        "What Harbor knows about the person it talks with."
    );
    let tools: Vec<&str> = agent["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(tools.contains(&"memory_block_replace"), "{tools:?}");
    assert_eq!(
        agent["model"], "scripted/echo",
        "served as this keel serves `default`"
    );

    let events = session_events(&api, &session).await;
    let messages = events[1]["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["user", "assistant", "tool", "assistant"],
        "{messages:?}"
    );
    assert!(messages[1].to_string().contains("club_calendar"));
    assert!(messages[2].to_string().contains("call_race_1"));
    let run = turn(&api, &session, "And the briefing?").await;
    assert_eq!(run["status"], "completed", "{run}");
    let report = api
        .ok(Method::GET, &format!("/v1/sessions/{session}/verify"), None)
        .await;
    assert_eq!(report["intact"], true, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_files_keel_cannot_read_are_refused_with_nothing_made() {
    let (_home, server) = support::http::start(0);
    let api = admin(&server);
    let cases = [
        ("format=openai-items", "not json", "JSON"),
        (
            "format=openai-items",
            r#"{"object": "thing"}"#,
            "page object",
        ),
        (
            "format=openai-items",
            r#"[{"type": "message", "role": "user", "content": [{"type": "input_audio"}]}]"#,
            "input_audio",
        ),
        (
            "format=openai-items",
            r#"[{"type": "message", "role": "system", "content": "be brief"}]"#,
            "system and developer",
        ),
        (
            "format=openai-items",
            r#"[{"type": "function_call_output", "call_id": "c1", "output": "4"}]"#,
            "not imported",
        ),
        ("format=openai-items&order=sideways", "[]", "sideways"),
        ("format=letta-af", "{}", "not a Letta agent file"),
        ("format=letta-af", r#"{"agents": []}"#, "holds 0 agents"),
        (
            "format=letta-af",
            r#"{"agents": [{"name": "a", "block_ids": ["block-9"]}]}"#,
            "block-9",
        ),
        (
            "format=letta-af",
            r#"{"agents": [{"name": "a", "messages": [{"role": "tool", "tool_call_id": "x", "content": [{"type": "text", "text": "4"}]}]}]}"#,
            "not imported",
        ),
        ("format=vcard", "{}", "letta-af"),
        ("order=asc", "", "format=openai-items"),
    ];
    for (query, body, expected) in cases {
        let (status, answer) = import(&api, query, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query} {body}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{query}: {message}");
    }
    let (status, answer) = import(&api, "format=openai-items&agent=nobody", "[]").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let listed = api.ok(Method::GET, "/v1/sessions", None).await;
    assert_eq!(listed["data"], json!([]), "no session was made");
    let (status, _) = api.call(Method::GET, "/v1/agents/a", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no agent was made");
}
