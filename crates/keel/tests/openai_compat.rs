//! End-to-end tests of the OpenAI-compatible API on the real `keel serve`: chat completions
//! (plain, streamed to `[DONE]` with usage, a tool call round trip) through a route and through
//! `provider/model`; `tool_choice` and `response_format` honoured, passed to an OpenAI upstream
//! or refused; `prompt_cache_key` / `user` stickiness; `/v1/models`; errors in OpenAI's shape,
//! from the handlers and from outside them (body limit, deadlines, concurrency limit, panics,
//! unknown paths and methods); usage per tenant, key and model.

mod support;

use std::time::{Duration, Instant};

use keel_testkit::anthropic_mock::MockAnthropic;
use keel_testkit::openai_mock::{MockOpenAi, MockReply};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::http::{Api, admin};
use support::{KeelHome, KeelServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    assert_openai_error(&body, "invalid_request_error", "body_not_object");

    // an upstream failure is a 502 in the same shape
    let (status, body) =
        chat(json!({"model": "fast", "messages": [{"role": "user", "content": "/fail down"}]}))
            .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_openai_error(&body, "upstream_error", "upstream_unavailable");

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

/// The chat completion's content, or a tool call's name.
fn content(reply: &Value) -> &str {
    reply["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("no content: {reply}"))
}

fn called(reply: &Value) -> Vec<&str> {
    reply["choices"][0]["message"]["tool_calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .map(|c| c["function"]["name"].as_str().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_choice_and_response_format_reach_the_target_or_are_refused() {
    let openai = MockOpenAi::start().await.unwrap();
    let anthropic = MockAnthropic::start_anthropic("sk-ant-test").await.unwrap();
    let home = KeelHome::new(&format!(
        r#"{CONFIG}
[providers.openai]
kind = "openai"
base_url = "{}"

[providers.anthropic]
kind = "anthropic"
base_url = "{}"
api_key = "sk-ant-test"
"#,
        openai.base_url(),
        anthropic.base_url()
    ));
    let server = KeelServer::start(&home, &[]);
    let api = admin(&server);
    let tools = json!([
        {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}},
        {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}},
    ]);
    let chat = |extra: Value, text: &str| {
        let mut body = json!({"model": "fast", "tools": tools,
            "messages": [{"role": "user", "content": text}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        api.call(Method::POST, "/v1/chat/completions", Some(body))
    };

    // The scripted target honours each choice.
    let (_, reply) = chat(json!({"tool_choice": "required"}), "hello").await;
    assert_eq!(called(&reply), ["lookup"], "{reply}");
    assert_eq!(reply["choices"][0]["finish_reason"], "tool_calls");
    let (_, reply) = chat(
        json!({"tool_choice": {"type": "function", "function": {"name": "weather"}}}),
        "hello",
    )
    .await;
    assert_eq!(called(&reply), ["weather"], "{reply}");
    let (_, reply) = chat(json!({"tool_choice": "none"}), "/call lookup {}").await;
    assert!(called(&reply).is_empty(), "{reply}");
    assert_eq!(content(&reply), "echo: /call lookup {}");

    // ... and each format.
    let (_, reply) = chat(json!({"response_format": {"type": "json_object"}}), "hi").await;
    let parsed: Value = serde_json::from_str(content(&reply)).unwrap();
    assert_eq!(parsed, json!({"reply": "echo: hi"}));
    let schema = json!({"type": "object", "properties": {"city": {"type": "string"},
        "days": {"type": "integer"}}, "required": ["city", "days"], "additionalProperties": false});
    let (_, reply) = chat(
        json!({"response_format": {"type": "json_schema",
            "json_schema": {"name": "forecast", "schema": schema, "strict": true}}}),
        "Oslo",
    )
    .await;
    let parsed: Value = serde_json::from_str(content(&reply)).unwrap();
    assert_eq!(parsed, json!({"city": "echo: Oslo", "days": 0}));

    // What the gateway cannot make sense of is a 400 naming the parameter.
    for (extra, param) in [
        (
            json!({"tool_choice": {"type": "function", "function": {"name": "nope"}}}),
            "tool_choice",
        ),
        (json!({"tool_choice": "sometimes"}), "tool_choice"),
        (
            json!({"response_format": {"type": "xml"}}),
            "response_format",
        ),
        (
            json!({"response_format": {"type": "json_schema", "json_schema": {}}}),
            "response_format",
        ),
    ] {
        let (status, body) = chat(extra.clone(), "hi").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{extra}: {body}");
        assert_openai_error(&body, "invalid_request_error", "invalid_value");
        assert_eq!(body["error"]["param"], param, "{body}");
    }

    // An OpenAI target gets both in OpenAI's own shape.
    openai.push_reply(MockReply::text("{\"city\": \"Oslo\", \"days\": 3}"));
    let format = json!({"type": "json_schema",
        "json_schema": {"name": "forecast", "schema": schema, "strict": true}});
    let choice = json!({"type": "function", "function": {"name": "weather"}});
    let reply = api
        .ok(
            Method::POST,
            "/v1/chat/completions",
            Some(json!({"model": "openai/gpt-4o-mini", "tools": tools,
                "tool_choice": choice, "response_format": format,
                "messages": [{"role": "user", "content": "Oslo?"}]})),
        )
        .await;
    assert_eq!(content(&reply), "{\"city\": \"Oslo\", \"days\": 3}");
    let sent = &openai.requests()[0].body;
    assert_eq!(sent["tool_choice"], choice);
    assert_eq!(sent["response_format"], format);

    // A target that cannot honour a format refuses the call, sending nothing upstream.
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/chat/completions",
            Some(json!({"model": "anthropic/claude-haiku-4-5",
                "response_format": {"type": "json_object"},
                "messages": [{"role": "user", "content": "hi"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_openai_error(&body, "invalid_request_error", "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("json_schema"),
        "{body}"
    );
    assert!(anthropic.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_cache_key_or_user_keeps_a_caller_on_one_route_target() {
    // Two targets told apart by their replies, drawn by weight for each new caller.
    let home = KeelHome::new(
        r#"
[providers.one]
kind = "scripted"
reply_tokens = 1

[providers.two]
kind = "scripted"
reply_tokens = 2

[[routes]]
name = "spread"
policy = "weighted"
targets = [{ provider = "one", model = "echo" }, { provider = "two", model = "echo" }]

[[agents]]
name = "default"
model = "one/echo"
"#,
    );
    let server = KeelServer::start(&home, &[]);
    let api = admin(&server);
    // Without stickiness, six callers each landing five times on one of two targets would
    // happen with odds of (1/16)^6.
    for caller in 0..6 {
        let field = if caller % 2 == 0 {
            "prompt_cache_key"
        } else {
            "user"
        };
        let mut replies = Vec::new();
        for _ in 0..5 {
            let reply = api
                .ok(
                    Method::POST,
                    "/v1/chat/completions",
                    Some(json!({"model": "spread", field: format!("caller-{caller}"),
                        "messages": [{"role": "user", "content": "hi"}]})),
                )
                .await;
            replies.push(content(&reply).to_string());
        }
        assert!(
            replies.iter().all(|r| *r == replies[0]),
            "{field} caller-{caller} moved between targets: {replies:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_outside_the_handlers_take_openai_shape_on_openai_paths() {
    let home = KeelHome::new(&format!(
        r#"{CONFIG}
[providers.slow]
kind = "scripted"
first_token_latency_ms = 3000
"#
    ));
    let server = KeelServer::start(
        &home,
        &["--request-timeout-secs", "1", "--body-limit", "2048"],
    );
    let api = admin(&server);
    let user = json!([{"role": "user", "content": "hi"}]);

    // unknown paths and wrong methods
    for (method, path, status, kind, code) in [
        (
            Method::POST,
            "/v1/completions",
            404,
            "not_found_error",
            "route_not_found",
        ),
        (
            Method::GET,
            "/v1/chat/nothing",
            404,
            "not_found_error",
            "route_not_found",
        ),
        (
            Method::GET,
            "/v1/chat/completions",
            405,
            "invalid_request_error",
            "method_not_allowed",
        ),
        (
            Method::DELETE,
            "/v1/models",
            405,
            "invalid_request_error",
            "method_not_allowed",
        ),
    ] {
        let resp = api.request(method.clone(), path).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{method} {path}");
        assert!(
            resp.headers().contains_key("x-request-id"),
            "{method} {path}"
        );
        let body: Value = resp.json().await.unwrap();
        assert_openai_error(&body, kind, code);
    }
    // ... while keel's own paths keep keel's envelope
    let (status, body) = api.call(Method::GET, "/v1/nothing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["type"], "not_found", "{body}");
    assert!(!body["error"].as_object().unwrap().contains_key("param"));
    let (status, body) = api.call(Method::PATCH, "/v1/sessions", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    assert!(!body["error"].as_object().unwrap().contains_key("param"));

    // a body over the limit
    let big = "x".repeat(4096);
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/chat/completions",
            Some(json!({"model": "fast", "messages": [{"role": "user", "content": big}]})),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_openai_error(&body, "invalid_request_error", "body_too_large");

    // a body that does not arrive in time
    let body = json!({"model": "fast", "messages": user}).to_string();
    let mut slow = TcpStream::connect(server.addr()).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        server.addr(),
        server.admin_key.as_deref().unwrap(),
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body.as_bytes()[..5]).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), slow.read_to_end(&mut answer))
        .await
        .expect("cut off within 30s")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let json: Value = serde_json::from_str(answer.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_openai_error(&json, "timeout_error", "body_timeout");

    // a handler past the request deadline
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/chat/completions",
            Some(json!({"model": "slow/echo", "messages": user})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_openai_error(&body, "server_error", "request_timeout");

    // a panic in the handler
    let (status, body) = api
        .call(
            Method::POST,
            "/v1/chat/completions",
            Some(
                json!({"model": "fast", "messages": [{"role": "user", "content": "/panic boom"}]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_openai_error(&body, "server_error", "internal");
    // and the server goes on
    let reply = api
        .ok(
            Method::POST,
            "/v1/chat/completions",
            Some(json!({"model": "fast", "messages": user})),
        )
        .await;
    assert_eq!(content(&reply), "echo: hi");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_concurrency_limit_answers_503_in_each_paths_shape() {
    let home = KeelHome::new(&format!(
        r#"{CONFIG}
[providers.slow]
kind = "scripted"
first_token_latency_ms = 5000
"#
    ));
    let server = KeelServer::start(&home, &["--max-concurrent-requests", "1"]);
    let api = admin(&server);
    let occupy = || {
        let req = api
            .request(Method::POST, "/v1/chat/completions")
            .json(&json!({"model": "slow/echo", "messages": [{"role": "user", "content": "hi"}]}));
        tokio::spawn(async move { req.send().await.unwrap().status() })
    };
    let mut busy = occupy();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut openai_shape, mut keel_shape) = (false, false);
    while !(openai_shape && keel_shape) {
        assert!(Instant::now() < deadline, "never saturated");
        if busy.is_finished() {
            // A probe took the only slot before the slow call arrived, which got the 503:
            // occupy the slot again. (Probes go one at a time, so a probe's 503 is the slow
            // call's doing.)
            let status = busy.await.unwrap();
            assert_eq!(
                status,
                StatusCode::SERVICE_UNAVAILABLE,
                "the slow call ended early"
            );
            busy = occupy();
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let resp = api.request(Method::GET, "/v1/models").send().await.unwrap();
        if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(resp.headers()["retry-after"], "1");
            let body: Value = resp.json().await.unwrap();
            assert_openai_error(&body, "server_error", "overloaded");
            openai_shape = true;
        }
        let resp = api.request(Method::GET, "/healthz").send().await.unwrap();
        if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
            let body: Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["type"], "unavailable", "{body}");
            keel_shape = true;
        }
    }
    assert_eq!(busy.await.unwrap(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_accounted_per_tenant_key_and_model_and_survives_a_restart() {
    let home = KeelHome::new(&format!(
        r#"{CONFIG}
[catalog."scripted/echo"]
context_window = 8192
max_output_tokens = 1024
price = {{ input = 1.0, output = 2.0 }}
"#
    ));
    // Tenant labels in /metrics are opt-in.
    let mut server = KeelServer::start(&home, &["--metrics-tenant-labels"]);
    let admin_api = admin(&server);
    let tenant = admin_api
        .ok(
            Method::POST,
            "/v1/admin/tenants",
            Some(json!({"name": "acme"})),
        )
        .await;
    let tenant_id = tenant["id"].as_str().unwrap().to_string();
    let mut keys = Vec::new();
    for _ in 0..2 {
        let key = admin_api
            .ok(
                Method::POST,
                &format!("/v1/admin/tenants/{tenant_id}/keys"),
                Some(json!({})),
            )
            .await;
        keys.push((
            key["prefix"].as_str().unwrap().to_string(),
            key["key"].as_str().unwrap().to_string(),
        ));
    }
    let (first_prefix, second_prefix) = (keys[0].0.clone(), keys[1].0.clone());
    let first = Api::new(&server, Some(&keys[0].1));
    let second = Api::new(&server, Some(&keys[1].1));
    let ask = |model: &str, text: &str| json!({"model": model, "messages": [{"role": "user", "content": text}]});

    // The first key: two plain calls and a streamed one, through the route and directly (all
    // served by scripted/echo); the second key: one call to another model.
    let mut expected = (0, 0);
    for body in [ask("fast", "one two"), ask("scripted/echo", "three")] {
        let reply = first
            .ok(Method::POST, "/v1/chat/completions", Some(body))
            .await;
        expected.0 += reply["usage"]["prompt_tokens"].as_u64().unwrap();
        expected.1 += reply["usage"]["completion_tokens"].as_u64().unwrap();
    }
    let mut body = ask("fast", "four five six");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let mut stream = first
        .stream(
            first
                .request(Method::POST, "/v1/chat/completions")
                .json(&body),
        )
        .await;
    while let Some(event) = stream.next().await {
        if event.data == "[DONE]" {
            break;
        }
        let chunk: Value = serde_json::from_str(&event.data).unwrap();
        if chunk["usage"].is_object() {
            expected.0 += chunk["usage"]["prompt_tokens"].as_u64().unwrap();
            expected.1 += chunk["usage"]["completion_tokens"].as_u64().unwrap();
        }
    }
    second
        .ok(
            Method::POST,
            "/v1/chat/completions",
            Some(ask("scripted/other", "seven")),
        )
        .await;
    admin_api
        .ok(
            Method::POST,
            "/v1/chat/completions",
            Some(ask("fast", "admin")),
        )
        .await;

    let rows = |usage: &Value| -> Vec<(String, String, u64)> {
        usage["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["key"].as_str().unwrap().to_string(),
                    r["model"].as_str().unwrap().to_string(),
                    r["requests"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let check = |usage: &Value| {
        let mut seen = rows(usage);
        seen.sort();
        let mut want = vec![
            (first_prefix.clone(), "scripted/echo".to_string(), 3),
            (second_prefix.clone(), "scripted/other".to_string(), 1),
        ];
        want.sort();
        assert_eq!(seen, want, "{usage}");
        let echo = usage["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["model"] == "scripted/echo")
            .unwrap();
        assert_eq!(
            (
                echo["input_tokens"].as_u64().unwrap(),
                echo["output_tokens"].as_u64().unwrap()
            ),
            expected,
            "{usage}"
        );
        // priced at 1 and 2 dollars per million tokens
        let cost = (expected.0 as f64 + 2.0 * expected.1 as f64) / 1e6;
        assert!(
            (echo["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-12,
            "{usage}"
        );
    };
    // A tenant key sees its tenant's keys, and only them.
    let usage = first.ok(Method::GET, "/v1/usage", None).await;
    check(&usage);
    let day = usage["data"][0]["day"].as_str().unwrap().to_string();
    assert_eq!(day.len(), 10, "{usage}");
    let only_second = first
        .ok(Method::GET, &format!("/v1/usage?key={second_prefix}"), None)
        .await;
    assert_eq!(
        rows(&only_second),
        [(second_prefix.clone(), "scripted/other".to_string(), 1)]
    );
    let since_today = first
        .ok(Method::GET, &format!("/v1/usage?since={day}"), None)
        .await;
    check(&since_today);
    let future = first
        .ok(Method::GET, "/v1/usage?since=2999-01-01", None)
        .await;
    assert!(rows(&future).is_empty(), "{future}");
    let (status, body) = first
        .call(Method::GET, "/v1/usage?since=yesterday", None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_query");
    let admins = admin_api.ok(Method::GET, "/v1/usage", None).await;
    assert_eq!(
        rows(&admins)
            .into_iter()
            .map(|(_, model, n)| (model, n))
            .collect::<Vec<_>>(),
        [("scripted/echo".to_string(), 1)],
        "{admins}"
    );

    // Prometheus counters per tenant and model (asked for above; never a key label).
    let (_, metrics) = admin_api.call(Method::GET, "/metrics", None).await;
    let metrics = metrics.as_str().unwrap();
    let line =
        format!("keel_gateway_requests_total{{tenant=\"{tenant_id}\",model=\"scripted/echo\"}} 3");
    assert!(metrics.contains(&line), "{metrics}");
    assert!(
        metrics.contains(&format!(
            "keel_gateway_tokens_total{{tenant=\"{tenant_id}\",model=\"scripted/echo\",kind=\"output\"}} {}",
            expected.1
        )),
        "{metrics}"
    );
    assert!(
        !metrics.contains(&first_prefix),
        "keys are not metric labels"
    );

    // A call just before shutdown is stored too, and everything survives a restart.
    second
        .ok(
            Method::POST,
            "/v1/chat/completions",
            Some(ask("scripted/other", "last")),
        )
        .await;
    assert!(server.terminate().success());
    let server = KeelServer::start(&home, &[]);
    let second = Api::new(&server, Some(&keys[1].1));
    let usage = second.ok(Method::GET, "/v1/usage", None).await;
    let other = rows(&usage)
        .into_iter()
        .find(|(key, _, _)| *key == second_prefix)
        .unwrap();
    assert_eq!(other.2, 2, "{usage}");
}
