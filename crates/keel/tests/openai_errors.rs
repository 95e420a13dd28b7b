//! How provider failures reach an OpenAI client, on the real `keel serve` in front of a loopback
//! OpenAI-compatible mock that answers `400 context_length_exceeded`, `429` with `Retry-After`,
//! `401` and `500`: the statuses, codes and messages of `/v1/chat/completions` (plain and
//! streamed) and `/v1/responses` (answered at once, in the background, streamed); a failed
//! turn never wedges its session (the next valid turn works, with a shorter input or with
//! `truncation: "auto"`); and every OpenAI request field keel refuses answers 400 naming it
//! (driven by the same lists the compatibility doc is generated from).

mod support;

use std::time::{Duration, Instant};

use keel_server::openai::fields::{CHAT_COMPLETIONS, EMBEDDINGS, Field, RESPONSES};
use keel_testkit::Fault;
use keel_testkit::openai_mock::{MockOpenAi, MockReply};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::http::{Api, admin};
use support::{KeelHome, KeelServer};

/// The mock's context window, in words.
const WINDOW: usize = 40;

fn config(base_url: &str) -> String {
    format!(
        r#"
[providers.openai]
kind = "openai"
base_url = "{base_url}"

[providers.scripted]
kind = "scripted"

[[agents]]
name = "default"
model = "openai/gpt-4o-mini"
limits = {{ max_model_attempts = 1 }}
"#
    )
}

/// keel in front of a mock that keeps a context window of `WINDOW` words.
async fn start() -> (MockOpenAi, KeelHome, KeelServer) {
    let mock = MockOpenAi::start().await.unwrap();
    mock.set_context_window(WINDOW);
    let home = KeelHome::new(&config(&mock.base_url()));
    let server = KeelServer::start(&home, &[]);
    (mock, home, server)
}

fn words(n: usize) -> String {
    (0..n)
        .map(|i| format!("w{i}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Asserts OpenAI's error shape with this status, type, code and param.
fn assert_error(status: StatusCode, body: &Value, expected: (StatusCode, &str, &str, Value)) {
    let (want_status, kind, code, param) = expected;
    assert_eq!(status, want_status, "{body}");
    let error = &body["error"];
    assert_eq!(error["type"], kind, "{body}");
    assert_eq!(error["code"], code, "{body}");
    assert_eq!(error["param"], param, "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

/// (status, Retry-After, body) of a POST.
async fn post(api: &Api, path: &str, body: Value) -> (StatusCode, Option<String>, Value) {
    let response = api
        .request(Method::POST, path)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    let text = response.text().await.unwrap();
    (
        status,
        retry_after,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_answer_provider_failures_as_openai_does() {
    let (mock, _home, server) = start().await;
    let api = admin(&server);
    let path = "/v1/chat/completions";
    let model = "openai/gpt-4o-mini";
    let overflow = (
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "context_length_exceeded",
        json!("messages"),
    );

    // An input longer than the context window, plain and streamed.
    let (status, _, body) = post(&api, path, chat(model, &words(WINDOW + 10))).await;
    assert_error(status, &body, overflow.clone());
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("maximum context length is 40 tokens"),
        "{message}"
    );
    let mut streamed = chat(model, &words(WINDOW + 10));
    streamed["stream"] = json!(true);
    let (status, _, body) = post(&api, path, streamed).await;
    assert_error(status, &body, overflow);

    // A rate limit keeps the provider's Retry-After.
    mock.push_fault(Fault::rate_limited("7"));
    let (status, retry_after, body) = post(&api, path, chat(model, "hi")).await;
    let limited = (
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_error",
        "rate_limit_exceeded",
        Value::Null,
    );
    assert_error(status, &body, limited.clone());
    assert_eq!(retry_after.as_deref(), Some("7"));
    mock.push_fault(Fault::rate_limited("7"));
    let mut streamed = chat(model, "hi");
    streamed["stream"] = json!(true);
    let (status, retry_after, body) = post(&api, path, streamed).await;
    assert_error(status, &body, limited);
    assert_eq!(retry_after.as_deref(), Some("7"));

    // A provider's other refusal keeps its message and is the caller's error, not keel's.
    mock.push_fault(Fault::status(400));
    let (status, _, body) = post(&api, path, chat(model, "hi")).await;
    assert_error(
        status,
        &body,
        (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_request_error",
            Value::Null,
        ),
    );
    assert_eq!(body["error"]["message"], "Injected fault: HTTP 400.");

    // keel's own credentials refused: the operator's problem, not the caller's.
    mock.push_fault(Fault::status(401));
    let (status, _, body) = post(&api, path, chat(model, "hi")).await;
    assert_error(
        status,
        &body,
        (
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "upstream_auth_failed",
            Value::Null,
        ),
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("refused keel's credentials"), "{message}");

    // The provider failing.
    mock.push_fault(Fault::status(500));
    let (status, _, body) = post(&api, path, chat(model, "hi")).await;
    assert_error(
        status,
        &body,
        (
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "upstream_unavailable",
            Value::Null,
        ),
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("openai (HTTP 500): "), "{message}");

    // And the next valid call works.
    mock.push_reply(MockReply::text("fine again"));
    let (status, _, body) = post(&api, path, chat(model, "hi")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "fine again");
}

fn response(input: &str) -> Value {
    json!({"model": "openai/gpt-4o-mini", "input": input})
}

/// Polls a response until it is no longer queued or in progress.
async fn finished_response(api: &Api, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = api
            .ok(Method::GET, &format!("/v1/responses/{id}"), None)
            .await;
        if !["queued", "in_progress"].contains(&response["status"].as_str().unwrap()) {
            return response;
        }
        assert!(Instant::now() < deadline, "still running: {response}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The events of a streamed response, up to its last.
async fn streamed_events(api: &Api, mut body: Value) -> Vec<Value> {
    body["stream"] = json!(true);
    let mut stream = api
        .stream(api.request(Method::POST, "/v1/responses").json(&body))
        .await;
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.json());
    }
    events
}

/// The session a response's run belongs to (a response `resp_X` is the run `run_X`).
async fn session_of(api: &Api, response_id: &str) -> String {
    let run = format!("run_{}", response_id.strip_prefix("resp_").unwrap());
    let run = api.ok(Method::GET, &format!("/v1/runs/{run}"), None).await;
    run["session_id"].as_str().unwrap().to_string()
}

/// A response queued faults: keel tries a response's failing call three times (the default
/// `max_model_attempts`), each fault asking for a millisecond's wait.
fn push_faults(mock: &MockOpenAi, status: u16) {
    for _ in 0..3 {
        mock.push_fault(Fault::Status {
            status,
            retry_after: None,
            retry_after_ms: Some(1),
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_answer_provider_failures_at_once_in_the_background_and_streamed() {
    let (mock, _home, server) = start().await;
    let api = admin(&server);
    let huge = words(WINDOW + 10);

    // Answered at once: the error's status and OpenAI's body.
    let (status, _, body) = post(&api, "/v1/responses", response(&huge)).await;
    assert_error(
        status,
        &body,
        (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "context_length_exceeded",
            json!("input"),
        ),
    );

    // In the background: a failed response carrying the code and the provider's words.
    let mut background = response(&huge);
    background["background"] = json!(true);
    let queued = api
        .ok(Method::POST, "/v1/responses", Some(background))
        .await;
    let failed = finished_response(&api, queued["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(
        failed["error"]["code"], "context_length_exceeded",
        "{failed}"
    );
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(message.contains("maximum context length"), "{message}");

    // Streamed: the stream ends with response.failed carrying the same.
    let events = streamed_events(&api, response(&huge)).await;
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.failed", "{last}");
    assert_eq!(
        last["response"]["error"]["code"], "context_length_exceeded",
        "{last}"
    );

    // Rate limited on every attempt: 429 with Retry-After (the provider's 1 ms, rounded up).
    push_faults(&mock, 429);
    let (status, retry_after, body) = post(&api, "/v1/responses", response("hi")).await;
    assert_error(
        status,
        &body,
        (
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "rate_limit_exceeded",
            Value::Null,
        ),
    );
    assert_eq!(retry_after.as_deref(), Some("1"));

    // keel's credentials refused (not retried: the same key will not work).
    mock.push_fault(Fault::status(401));
    let (status, _, body) = post(&api, "/v1/responses", response("hi")).await;
    assert_error(
        status,
        &body,
        (
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "upstream_auth_failed",
            Value::Null,
        ),
    );

    // The provider failing, in the background: the log keeps what the provider answered.
    push_faults(&mock, 500);
    let mut background = response("hi");
    background["background"] = json!(true);
    let queued = api
        .ok(Method::POST, "/v1/responses", Some(background))
        .await;
    let id = queued["id"].as_str().unwrap();
    let failed = finished_response(&api, id).await;
    assert_eq!(failed["error"]["code"], "upstream_unavailable", "{failed}");
    let events = api
        .ok(
            Method::GET,
            &format!("/v1/sessions/{}/events", session_of(&api, id).await),
            None,
        )
        .await;
    let failures: Vec<&Value> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "model_failed")
        .collect();
    assert_eq!(failures.len(), 3, "{events}");
    for failure in failures {
        assert_eq!(failure["status"], 500, "{failure}");
        assert_eq!(failure["kind"], "unavailable", "{failure}");
        assert_eq!(failure["code"], "server_error", "{failure}");
    }
    // A streamed one ends failed too.
    push_faults(&mock, 500);
    let events = streamed_events(&api, response("hi")).await;
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.failed", "{last}");
    assert_eq!(
        last["response"]["error"]["code"], "upstream_unavailable",
        "{last}"
    );
    assert_eq!(mock.pending(), 0);
}

/// The words of the user messages the mock's last request carried.
fn last_user_texts(mock: &MockOpenAi) -> Vec<String> {
    let requests = mock.requests();
    let last = &requests.last().expect("a request").body;
    last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_turn_never_wedges_its_session() {
    let (mock, _home, server) = start().await;
    let api = admin(&server);
    let huge = words(WINDOW + 10);

    // A conversation: a turn, an overflow, then a shorter turn that works.
    let conversation = api
        .ok(Method::POST, "/v1/conversations", Some(json!({})))
        .await;
    let conv = conversation["id"].as_str().unwrap();
    let in_conv = |input: &str| {
        let mut body = response(input);
        body["conversation"] = json!(conv);
        body
    };
    mock.push_reply(MockReply::text("first answer"));
    let first = api
        .ok(Method::POST, "/v1/responses", Some(in_conv("first turn")))
        .await;
    assert_eq!(first["status"], "completed", "{first}");
    let (status, _, body) = post(&api, "/v1/responses", in_conv(&huge)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    mock.push_reply(MockReply::text("third answer"));
    let third = api
        .ok(Method::POST, "/v1/responses", Some(in_conv("third turn")))
        .await;
    assert_eq!(third["status"], "completed", "{third}");
    assert_eq!(last_user_texts(&mock), ["first turn", "third turn"]);

    // previous_response_id on the failed response: the failed input is not sent again.
    let mut background = response(&huge);
    background["background"] = json!(true);
    background["previous_response_id"] = third["id"].clone();
    let queued = api
        .ok(Method::POST, "/v1/responses", Some(background))
        .await;
    let failed = finished_response(&api, queued["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    mock.push_reply(MockReply::text("after the failure"));
    let mut next = response("short again");
    next["previous_response_id"] = failed["id"].clone();
    let after = api.ok(Method::POST, "/v1/responses", Some(next)).await;
    assert_eq!(after["status"], "completed", "{after}");
    assert_eq!(
        last_user_texts(&mock),
        ["first turn", "third turn", "short again"]
    );

    // A long history: without truncation the next turn does not fit; with `auto` the oldest
    // turns are left out of the request (and stay in the log).
    mock.push_reply(MockReply::text("long answer"));
    let mut long = response(&words(WINDOW - 15));
    long["previous_response_id"] = after["id"].clone();
    let long = api.ok(Method::POST, "/v1/responses", Some(long)).await;
    assert_eq!(long["status"], "completed", "{long}");
    let mut next = response("does this fit");
    next["previous_response_id"] = long["id"].clone();
    let (status, _, body) = post(&api, "/v1/responses", next.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "context_length_exceeded", "{body}");
    mock.push_reply(MockReply::text("it fits now"));
    next["truncation"] = json!("auto");
    let fitted = api.ok(Method::POST, "/v1/responses", Some(next)).await;
    assert_eq!(fitted["status"], "completed", "{fitted}");
    assert_eq!(fitted["truncation"], "auto");
    let sent = last_user_texts(&mock);
    assert_eq!(sent.last().unwrap(), "does this fit");
    assert!(!sent.contains(&"first turn".to_string()), "{sent:?}");
    let items = api
        .ok(
            Method::GET,
            &format!("/v1/conversations/{conv}/items?limit=100&order=asc"),
            None,
        )
        .await;
    assert!(items.to_string().contains("first turn"), "the log keeps it");

    // The native API: a failed run, then the next message works; the run record has the
    // usage of its steps and the model that served each.
    let session = api
        .ok(
            Method::POST,
            "/v1/sessions",
            Some(json!({"agent": "default"})),
        )
        .await;
    let messages = format!("/v1/sessions/{}/messages", session["id"].as_str().unwrap());
    let run = api
        .ok(
            Method::POST,
            &messages,
            Some(json!({"content": huge, "mode": "wait"})),
        )
        .await;
    assert_eq!(run["status"], "failed", "{run}");
    mock.push_reply(MockReply::text("native answer").with_usage(12, 3, 4));
    let run = api
        .ok(
            Method::POST,
            &messages,
            Some(json!({"content": "hello", "mode": "wait"})),
        )
        .await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"], "native answer");
    let polled = api
        .ok(
            Method::GET,
            &format!("/v1/runs/{}", run["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(
        polled["usage"],
        json!({"input_tokens": 12, "output_tokens": 3}),
        "{polled}"
    );
    assert_eq!(
        polled["steps"][0]["model"], "openai/gpt-4o-mini",
        "{polled}"
    );
    assert_eq!(polled["steps"][0]["usage"]["output_tokens"], 3, "{polled}");
    assert_eq!(last_user_texts(&mock), ["hello"]);
}

/// A minimal valid body for the endpoint, with `name` set to `value`.
fn body_with(endpoint: &str, name: &str, value: Value) -> Value {
    let mut body = match endpoint {
        "/v1/chat/completions" => chat("scripted/echo", "hi"),
        "/v1/embeddings" => json!({"model": "scripted/echo", "input": ["hi"]}),
        _ => json!({"model": "scripted/echo", "input": "hi"}),
    };
    body[name] = value;
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refused_value_of_every_openai_field_answers_400_naming_it() {
    let (_mock, _home, server) = start().await;
    let api = admin(&server);
    let endpoints: [(&str, &[Field]); 3] = [
        ("/v1/chat/completions", CHAT_COMPLETIONS),
        ("/v1/responses", RESPONSES),
        ("/v1/embeddings", EMBEDDINGS),
    ];
    let mut checked = 0;
    for (path, fields) in endpoints {
        for field in fields {
            for (json, param) in field.refused {
                let value: Value = serde_json::from_str(json).unwrap();
                let (status, _, body) = post(&api, path, body_with(path, field.name, value)).await;
                let what = format!("{path} {}: {json}", field.name);
                assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
                assert_eq!(
                    body["error"]["type"], "invalid_request_error",
                    "{what}: {body}"
                );
                assert_eq!(body["error"]["param"], *param, "{what}: {body}");
                let code = body["error"]["code"].as_str().unwrap();
                if code == "unsupported_parameter" {
                    let message = body["error"]["message"].as_str().unwrap();
                    assert!(
                        message.contains("keel does not support"),
                        "{what}: {message}"
                    );
                }
                checked += 1;
            }
        }
        // A field OpenAI's request does not have.
        let (status, _, body) = post(&api, path, body_with(path, "bogus_field", json!(1))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "unknown_parameter", "{body}");
        assert_eq!(body["error"]["param"], "bogus_field", "{body}");
    }
    assert!(checked > 80, "{checked} values checked");

    // Defaults of refused fields are honoured trivially, so they are accepted.
    let mut body = chat("scripted/echo", "hi");
    for (name, value) in [
        ("logprobs", json!(false)),
        ("n", json!(1)),
        ("frequency_penalty", json!(0)),
        ("presence_penalty", json!(0.0)),
        ("logit_bias", json!({})),
        ("metadata", Value::Null),
        ("store", json!(false)),
        ("service_tier", json!("auto")),
        ("parallel_tool_calls", json!(true)),
        ("modalities", json!(["text"])),
        ("stream_options", json!({"include_obfuscation": false})),
    ] {
        body[name] = value;
    }
    let (status, _, reply) = post(&api, "/v1/chat/completions", body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let mut body = json!({"model": "scripted/echo", "input": "hi", "truncation": "disabled",
        "context_management": [], "include": [], "reasoning": {"effort": null},
        "service_tier": "default", "top_logprobs": 0, "max_tool_calls": 3,
        "prompt_cache_key": "k", "safety_identifier": "s", "user": "u"});
    body["text"] = json!({"format": {"type": "text"}, "verbosity": null});
    let (status, _, reply) = post(&api, "/v1/responses", body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["truncation"], "disabled");
    // No output cap unless asked: the response says so.
    assert_eq!(reply["max_output_tokens"], Value::Null);
}
