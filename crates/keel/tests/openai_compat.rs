//! End-to-end tests of the OpenAI-compatible API on the real `keel serve`: chat completions
//! (plain, streamed to `[DONE]` with usage, a tool call round trip) through a route and through
//! `provider/model`, `/v1/models`, and errors in OpenAI's shape.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::http::{Api, admin};
use support::{KeelHome, KeelServer};

const CONFIG: &str = r#"
[providers.scripted]
kind = "scripted"

[[routes]]
name = "fast"
targets = [{ provider = "scripted", model = "echo" }]

[[agents]]
name = "default"
model = "scripted/echo"
"#;

fn start() -> (KeelHome, KeelServer) {
    let home = KeelHome::new(CONFIG);
    let server = KeelServer::start(&home, &[]);
    (home, server)
}

fn assert_openai_error(body: &Value, kind: &str, code: &str) {
    let error = &body["error"];
    assert_eq!(error["type"], kind, "{body}");
    assert_eq!(error["code"], code, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error.as_object().unwrap().contains_key("param"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_plain_streamed_and_with_tools() {
    let (_home, server) = start();
    let api = admin(&server);

    // plain, through a route, with a system message
    let reply = api
        .ok(
            Method::POST,
            "/v1/chat/completions",
            Some(json!({"model": "fast", "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hello there"},
            ]})),
        )
        .await;
    assert_eq!(reply["object"], "chat.completion");
    assert_eq!(reply["model"], "fast");
    assert!(reply["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &reply["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "echo: hello there");
    assert_eq!(choice["finish_reason"], "stop");
    let usage = &reply["usage"];
    assert_eq!(usage["completion_tokens"], 3);
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap() + 3)
    );

    // max_tokens reaches the model
    let cut = api
        .ok(
            Method::POST,
            "/v1/chat/completions",
            Some(json!({"model": "scripted/echo", "max_tokens": 1,
                "messages": [{"role": "user", "content": "one two three"}]})),
        )
        .await;
    assert_eq!(cut["choices"][0]["finish_reason"], "length");
    assert_eq!(cut["usage"]["completion_tokens"], 1);

    // streamed, with usage, ending with [DONE]
    let mut stream = api
        .stream(api.request(Method::POST, "/v1/chat/completions").json(&json!({
            "model": "scripted/echo", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "stream me please"}],
        })))
        .await;
    let mut text = String::new();
    let mut finish = None;
    let mut usage = None;
    let mut done = false;
    while let Some(event) = stream.next().await {
        assert!(!done, "an event after [DONE]: {}", event.data);
        if event.data == "[DONE]" {
            done = true;
            continue;
        }
        let chunk: Value = serde_json::from_str(&event.data).unwrap();
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        if let Some(choice) = chunk["choices"].as_array().unwrap().first() {
            text.push_str(choice["delta"]["content"].as_str().unwrap_or(""));
            if let Some(f) = choice["finish_reason"].as_str() {
                finish = Some(f.to_string());
            }
        } else {
            usage = Some(chunk["usage"].clone());
        }
    }
    assert!(done, "the stream ended without [DONE]");
    assert_eq!(text, "echo: stream me please");
    assert_eq!(finish.as_deref(), Some("stop"));
    assert_eq!(usage.expect("a usage chunk")["completion_tokens"], 4);

    // without include_usage there is no usage chunk
    let mut stream = api
        .stream(
            api.request(Method::POST, "/v1/chat/completions")
                .json(&json!({
                    "model": "fast", "stream": true,
                    "messages": [{"role": "user", "content": "hi"}],
                })),
        )
        .await;
    let mut last = String::new();
    while let Some(event) = stream.next().await {
        if event.data != "[DONE]" {
            let chunk: Value = serde_json::from_str(&event.data).unwrap();
            assert_eq!(chunk["choices"].as_array().unwrap().len(), 1, "{chunk}");
        }
        last = event.data;
    }
    assert_eq!(last, "[DONE]");

    // a tool call, and its result sent back
    let tools = json!([{"type": "function", "function": {"name": "lookup",
        "description": "Looks a thing up.",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]);
    let asked = api
        .ok(
            Method::POST,
            "/v1/chat/completions",
            Some(
                json!({"model": "fast", "tools": tools, "tool_choice": "auto",
                "messages": [{"role": "user", "content": "/call lookup {\"q\": \"keel\"}"}]}),
            ),
        )
        .await;
    let message = &asked["choices"][0]["message"];
    assert_eq!(asked["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(message["content"], Value::Null);
    let call = &message["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "lookup");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"q": "keel"}));
    let call_id = call["id"].as_str().unwrap();
    let answered = api
        .ok(
            Method::POST,
            "/v1/chat/completions",
            Some(json!({"model": "fast", "tools": tools, "messages": [
                {"role": "user", "content": "/call lookup {\"q\": \"keel\"}"},
                message,
                {"role": "tool", "tool_call_id": call_id, "content": "a runtime"},
            ]})),
        )
        .await;
    assert_eq!(
        answered["choices"][0]["message"]["content"],
        format!("tool results: {call_id}=a runtime")
    );

    // streamed tool call deltas
    let mut stream = api
        .stream(
            api.request(Method::POST, "/v1/chat/completions")
                .json(&json!({
                    "model": "fast", "stream": true, "tools": tools,
                    "messages": [{"role": "user", "content": "/call lookup {\"q\": 1}"}],
                })),
        )
        .await;
    let mut names = Vec::new();
    let mut finish = None;
    while let Some(event) = stream.next().await {
        if event.data == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(&event.data).unwrap();
        let choice = &chunk["choices"][0];
        if let Some(calls) = choice["delta"]["tool_calls"].as_array() {
            names.extend(
                calls
                    .iter()
                    .filter_map(|c| c["function"]["name"].as_str().map(String::from)),
            );
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    assert_eq!(names, ["lookup"]);
    assert_eq!(finish.as_deref(), Some("tool_calls"));

    // no session was created by any of this
    let sessions = api.ok(Method::GET, "/v1/sessions", None).await;
    assert_eq!(sessions["data"].as_array().unwrap().len(), 0, "{sessions}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_list_and_errors_in_openai_shape() {
    let (_home, server) = start();
    let api = admin(&server);

    let models = api.ok(Method::GET, "/v1/models", None).await;
    assert_eq!(models["object"], "list");
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.first(), Some(&"fast"), "{models}");
    assert_eq!(models["data"][0]["owned_by"], "keel");
    assert!(
        ids.iter().skip(1).all(|id| id.starts_with("scripted/")),
        "{models}"
    );

    let chat = |body: Value| api.call(Method::POST, "/v1/chat/completions", Some(body));
    let user = json!([{"role": "user", "content": "hi"}]);

    let (status, body) = chat(json!({"model": "nope", "messages": user})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_openai_error(&body, "not_found_error", "model_not_found");
    assert_eq!(body["error"]["param"], "model");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("fast"),
        "{body}"
    );
    let (status, body) = chat(json!({"model": "elsewhere/gpt", "messages": user})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_openai_error(&body, "not_found_error", "model_not_found");

    let (status, body) = chat(json!({"model": "fast"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_openai_error(&body, "invalid_request_error", "invalid_body");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages"),
        "{body}"
    );
    let (status, body) =
        chat(json!({"model": "fast", "messages": [{"role": "wizard", "content": "x"}]})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_openai_error(&body, "invalid_request_error", "invalid_body");
    let (status, body) = chat(json!({"model": "fast", "n": 3, "messages": user})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["param"], "n");
    let (status, body) =
        chat(json!({"model": "fast", "tool_choice": "required", "messages": user})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["param"], "tool_choice");
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/chat/completions",
            Some(Value::String("{not json".into())),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_openai_error(&body, "invalid_request_error", "invalid_body");

    // an upstream failure is a 502 in the same shape
    let (status, body) =
        chat(json!({"model": "fast", "messages": [{"role": "user", "content": "/fail down"}]}))
            .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_openai_error(&body, "server_error", "upstream_unavailable");

    // keys: missing or wrong is a 401 in OpenAI's shape
    for key in [None, Some("kk_0000000000000000.bad")] {
        let anon = Api::new(&server, key);
        let (status, body) = anon
            .call(
                Method::POST,
                "/v1/chat/completions",
                Some(json!({"model": "fast", "messages": user})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_openai_error(&body, "authentication_error", "invalid_api_key");
        let (status, body) = anon.call(Method::GET, "/v1/models", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_openai_error(&body, "authentication_error", "invalid_api_key");
    }
}
