//! The OpenAI provider against a wire-faithful mock of Chat Completions on 127.0.0.1: streaming,
//! tool round trips, request shape, usage, and every injected fault mapped to the right error.

mod providers_support;

use std::time::{Duration, SystemTime};

use keel_core::{FinishReason, Message, Part, Role, Usage};
use keel_models::providers::openai::{OpenAiClient, OpenAiConfig};
use keel_models::{ModelClient, ModelErrorKind, ModelRequest, Params, StreamEvent, ToolSpec};
use keel_testkit::Fault;
use keel_testkit::openai_mock::{MockOpenAi, MockReply};
use providers_support::{Outcome, run};
use serde_json::json;

const KEY: &str = "sk-test-key";

fn config(mock: &MockOpenAi) -> OpenAiConfig {
    OpenAiConfig {
        base_url: mock.base_url(),
        ..OpenAiConfig::openai(KEY)
    }
}

fn client(mock: &MockOpenAi) -> OpenAiClient {
    OpenAiClient::new(config(mock)).expect("valid config")
}

fn request(messages: Vec<Message>) -> ModelRequest {
    ModelRequest {
        model: "gpt-4o-mini".into(),
        system: Some("You are terse.".into()),
        messages,
        tools: vec![ToolSpec {
            name: "get_weather".into(),
            description: "Current weather for a city".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
            strict: None,
        }],
        params: Params::default(),
    }
}

#[tokio::test]
async fn streams_text_deltas_that_concatenate_with_usage_and_finish_last() {
    let mock = MockOpenAi::start_with_api_key(KEY).await.unwrap();
    mock.push_reply(MockReply::text("Hello there, wide world.").with_usage(21, 5, 16));
    let outcome = run(&client(&mock), request(vec![Message::user("hi")])).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.text(), "Hello there, wide world.");
    assert!(
        outcome
            .events
            .iter()
            .filter(|e| matches!(e, StreamEvent::TextDelta(_)))
            .count()
            > 1
    );
    let usage = Usage {
        input_tokens: 21,
        output_tokens: 5,
        cached_input_tokens: 16,
    };
    assert_eq!(
        outcome.events[outcome.events.len() - 2..],
        [
            StreamEvent::Usage(usage),
            StreamEvent::Finish(FinishReason::Stop)
        ]
    );

    let sent = &mock.requests()[0];
    assert_eq!(sent.path, "/v1/chat/completions");
    assert_eq!(sent.header("authorization"), Some("Bearer sk-test-key"));
    assert_eq!(sent.body["stream"], json!(true));
    assert_eq!(sent.body["stream_options"], json!({"include_usage": true}));
    assert_eq!(sent.body["model"], json!("gpt-4o-mini"));
}

#[tokio::test]
async fn places_the_system_prompt_first_and_sends_params_and_headers() {
    let mock = MockOpenAi::start().await.unwrap();
    mock.push_reply(MockReply::text("ok"));
    let config = OpenAiConfig {
        organization: Some("org-1".into()),
        extra_headers: vec![("x-trace".into(), "abc".into())],
        ..config(&mock)
    };
    let mut req = request(vec![
        Message::user("first"),
        Message::assistant("second"),
        Message::user("third"),
    ]);
    req.params = Params {
        max_tokens: Some(50),
        temperature: Some(0.5),
        top_p: Some(0.9),
        stop: vec!["\n\n".into()],
        seed: Some(42),
        ..Params::default()
    };
    OpenAiClient::new(config)
        .unwrap()
        .complete(req)
        .await
        .unwrap();

    let sent = &mock.requests()[0];
    let roles: Vec<&str> = sent.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(sent.body["messages"][0]["content"], json!("You are terse."));
    assert_eq!(sent.body["max_completion_tokens"], json!(50));
    assert_eq!(
        (sent.body["temperature"].clone(), sent.body["seed"].clone()),
        (json!(0.5), json!(42))
    );
    assert_eq!(sent.body["stop"], json!(["\n\n"]));
    assert_eq!(sent.body["tools"][0]["type"], json!("function"));
    assert_eq!(sent.header("openai-organization"), Some("org-1"));
    assert_eq!(sent.header("x-trace"), Some("abc"));
}

#[tokio::test]
async fn compatible_servers_get_max_tokens_and_no_key() {
    let mock = MockOpenAi::start().await.unwrap();
    mock.push_reply(MockReply::text("ok"));
    let mut req = request(vec![Message::user("hi")]);
    req.params.max_tokens = Some(8);
    OpenAiClient::new(OpenAiConfig::compatible(mock.base_url()))
        .unwrap()
        .complete(req)
        .await
        .unwrap();
    let sent = &mock.requests()[0];
    assert_eq!(sent.body["max_tokens"], json!(8));
    assert!(sent.body.get("max_completion_tokens").is_none());
    assert_eq!(sent.header("authorization"), None);
}

#[tokio::test]
async fn completes_a_tool_round_trip() {
    let mock = MockOpenAi::start_with_api_key(KEY).await.unwrap();
    mock.push_reply(MockReply::tool_calls().tool_call(
        "call_abc",
        "get_weather",
        json!({"city": "Oslo"}),
    ));
    mock.push_reply(MockReply::text("It rains in Oslo."));
    let client = client(&mock);

    let mut conversation = vec![Message::user("Weather in Oslo?")];
    let first = client
        .complete(request(conversation.clone()))
        .await
        .unwrap();
    assert_eq!(first.finish, FinishReason::ToolCalls);
    assert_eq!(
        first.message.parts,
        [Part::ToolCall {
            id: "call_abc".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Oslo"})
        }]
    );
    conversation.push(first.message);
    conversation.push(Message {
        role: Role::Tool,
        parts: vec![Part::ToolResult {
            call_id: "call_abc".into(),
            content: "rain, 9°C".into(),
            is_error: false,
        }],
    });
    let second = client.complete(request(conversation)).await.unwrap();
    assert_eq!(second.message.text_content(), "It rains in Oslo.");

    // The mock refuses unpaired tool messages, so reaching here means the pairing was right.
    let sent = &mock.requests()[1].body["messages"];
    assert_eq!(
        sent[2]["tool_calls"][0]["function"]["arguments"],
        json!("{\"city\":\"Oslo\"}")
    );
    assert_eq!(
        sent[3],
        json!({"role": "tool", "tool_call_id": "call_abc", "content": "rain, 9°C"})
    );
}

#[tokio::test]
async fn assembles_parallel_tool_calls_by_index() {
    let mock = MockOpenAi::start().await.unwrap();
    mock.push_reply(
        MockReply::tool_calls()
            .tool_call("call_1", "get_weather", json!({"city": "Oslo"}))
            .tool_call(
                "call_2",
                "get_weather",
                json!({"city": "Lima", "units": "metric"}),
            ),
    );
    let reply = client(&mock)
        .complete(request(vec![Message::user("Oslo and Lima?")]))
        .await
        .unwrap();
    assert_eq!(reply.finish, FinishReason::ToolCalls);
    assert_eq!(
        reply.message.parts,
        [
            Part::ToolCall {
                id: "call_1".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Oslo"})
            },
            Part::ToolCall {
                id: "call_2".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Lima", "units": "metric"})
            },
        ]
    );
}

#[tokio::test]
async fn images_are_sent_as_image_url_parts() {
    let mock = MockOpenAi::start().await.unwrap();
    mock.push_reply(MockReply::text("A cat."));
    let look = Message {
        role: Role::User,
        parts: vec![
            Part::Text {
                text: "What is this?".into(),
            },
            Part::Image {
                url: "data:image/png;base64,iVBORw0KGgo=".into(),
            },
        ],
    };
    client(&mock).complete(request(vec![look])).await.unwrap();
    let content = &mock.requests()[0].body["messages"][1]["content"];
    assert_eq!(
        content[1],
        json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}})
    );
}

#[tokio::test]
async fn a_refused_request_is_a_bad_request_that_is_not_retried() {
    let mock = MockOpenAi::start().await.unwrap();
    mock.push_reply(MockReply::text("never sent"));
    let orphan = Message {
        role: Role::Tool,
        parts: vec![Part::ToolResult {
            call_id: "call_nobody".into(),
            content: "x".into(),
            is_error: false,
        }],
    };
    let outcome = run(&client(&mock), request(vec![Message::user("hi"), orphan])).await;
    let error = outcome.error();
    assert_eq!(
        (error.kind, error.status, outcome.at_start),
        (ModelErrorKind::BadRequest, Some(400), true)
    );
    assert!(!error.is_retryable());
    assert!(error.message.contains("call_nobody"), "{}", error.message);
    assert_eq!(mock.pending(), 1, "a refused request consumes no reply");
}

#[tokio::test]
async fn a_wrong_key_is_an_auth_error() {
    let mock = MockOpenAi::start_with_api_key(KEY).await.unwrap();
    let config = OpenAiConfig {
        base_url: mock.base_url(),
        ..OpenAiConfig::openai("sk-wrong")
    };
    let outcome = run(
        &OpenAiClient::new(config).unwrap(),
        request(vec![Message::user("hi")]),
    )
    .await;
    assert_eq!(
        (outcome.error().kind, outcome.error().status),
        (ModelErrorKind::Auth, Some(401))
    );
}

/// Runs one request against a mock that injects `fault`.
async fn with_fault(fault: Fault, config: impl FnOnce(OpenAiConfig) -> OpenAiConfig) -> Outcome {
    let mock = MockOpenAi::start().await.unwrap();
    mock.push_fault(fault);
    let client = OpenAiClient::new(config(OpenAiConfig {
        base_url: mock.base_url(),
        ..OpenAiConfig::default()
    }))
    .unwrap();
    run(&client, request(vec![Message::user("hi")])).await
}

#[tokio::test]
async fn server_errors_are_retryable_unavailable() {
    for status in [500, 502, 503] {
        let outcome = with_fault(Fault::status(status), |c| c).await;
        let error = outcome.error();
        assert_eq!(
            (error.kind, error.status, outcome.at_start),
            (ModelErrorKind::Unavailable, Some(status), true)
        );
        assert!(error.is_retryable());
        assert!(
            error.message.contains("Injected fault"),
            "the provider's message is kept: {}",
            error.message
        );
    }
}

#[tokio::test]
async fn rate_limits_carry_retry_after_in_seconds_dates_and_milliseconds() {
    let seconds = with_fault(Fault::rate_limited("7"), |c| c).await;
    assert_eq!(seconds.error().kind, ModelErrorKind::RateLimited);
    assert!(seconds.error().is_retryable());
    assert_eq!(seconds.error().retry_after, Some(Duration::from_secs(7)));

    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    let dated = with_fault(Fault::rate_limited(date), |c| c).await;
    let wait = dated.error().retry_after.expect("an HTTP-date is honoured");
    assert!(
        wait > Duration::from_secs(100) && wait <= Duration::from_secs(120),
        "{wait:?}"
    );

    let millis = with_fault(
        Fault::Status {
            status: 429,
            retry_after: Some("9".into()),
            retry_after_ms: Some(1500),
        },
        |c| c,
    )
    .await;
    assert_eq!(
        millis.error().retry_after,
        Some(Duration::from_millis(1500))
    );
}

#[tokio::test]
async fn dropped_connections_are_unavailable() {
    for fault in [Fault::ResetConnection, Fault::CloseConnection] {
        let outcome = with_fault(fault.clone(), |c| c).await;
        assert_eq!(
            outcome.error().kind,
            ModelErrorKind::Unavailable,
            "{fault:?}: {}",
            outcome.error()
        );
        assert!(outcome.at_start, "{fault:?}");
    }
}

#[tokio::test]
async fn a_refused_connection_is_unavailable_and_says_where() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    let client = OpenAiClient::new(OpenAiConfig::compatible(base_url.clone())).unwrap();
    let outcome = run(&client, request(vec![Message::user("hi")])).await;
    assert_eq!(outcome.error().kind, ModelErrorKind::Unavailable);
    assert!(
        outcome.error().message.contains(&base_url),
        "{}",
        outcome.error().message
    );
}

#[tokio::test]
async fn no_first_byte_within_the_deadline_is_a_timeout() {
    let outcome = with_fault(Fault::StallBeforeResponse, |c| OpenAiConfig {
        first_byte_timeout: Duration::from_millis(200),
        ..c
    })
    .await;
    assert_eq!(
        (outcome.error().kind, outcome.at_start),
        (ModelErrorKind::Timeout, true)
    );
    assert!(outcome.error().is_retryable());
}

#[tokio::test]
async fn a_stream_that_stalls_past_the_total_deadline_is_a_timeout() {
    let outcome = with_fault(Fault::StallStream { after_chunks: 4 }, |c| OpenAiConfig {
        total_timeout: Duration::from_millis(500),
        ..c
    })
    .await;
    assert_eq!(
        (outcome.error().kind, outcome.at_start),
        (ModelErrorKind::Timeout, false)
    );
    assert!(
        !outcome.text().is_empty(),
        "the chunks before the stall arrived"
    );
}

#[tokio::test]
async fn a_stream_cut_mid_way_is_unavailable() {
    for fault in [
        Fault::CutStream { after_chunks: 4 },
        Fault::TruncateStream { after_chunks: 4 },
    ] {
        let outcome = with_fault(fault.clone(), |c| c).await;
        assert_eq!(
            (outcome.error().kind, outcome.at_start),
            (ModelErrorKind::Unavailable, false),
            "{fault:?}"
        );
        assert!(
            !outcome.text().is_empty(),
            "{fault:?}: the chunks before the cut arrived"
        );
        assert!(
            !outcome
                .events
                .iter()
                .any(|e| matches!(e, StreamEvent::Finish(_))),
            "{fault:?}"
        );
    }
}

#[tokio::test]
async fn malformed_chunks_and_wrong_content_types_are_protocol_errors() {
    let malformed = with_fault(Fault::MalformedChunk { after_chunks: 3 }, |c| c).await;
    assert_eq!(
        (malformed.error().kind, malformed.at_start),
        (ModelErrorKind::Protocol, false)
    );
    assert!(
        malformed.error().message.contains("malformed stream chunk"),
        "{}",
        malformed.error().message
    );

    let html = with_fault(Fault::WrongContentType, |c| c).await;
    assert_eq!(
        (html.error().kind, html.at_start),
        (ModelErrorKind::Protocol, true)
    );
    assert!(
        html.error().message.contains("text/html"),
        "{}",
        html.error().message
    );
}

#[tokio::test]
async fn errors_inside_the_stream_are_mapped_by_type() {
    let limited = with_fault(
        Fault::ErrorInStream {
            after_chunks: 3,
            status: 429,
        },
        |c| c,
    )
    .await;
    assert_eq!(
        (limited.error().kind, limited.at_start),
        (ModelErrorKind::RateLimited, false)
    );
    let broken = with_fault(
        Fault::ErrorInStream {
            after_chunks: 3,
            status: 500,
        },
        |c| c,
    )
    .await;
    assert_eq!(broken.error().kind, ModelErrorKind::Unavailable);
    assert!(
        broken.error().message.contains("Injected in-stream error"),
        "{}",
        broken.error().message
    );
}

#[test]
fn bad_configuration_is_refused_with_a_reason() {
    let bad_url = OpenAiClient::new(OpenAiConfig::compatible("localhost:8000"))
        .err()
        .unwrap();
    assert!(
        bad_url.message.contains("localhost:8000"),
        "{}",
        bad_url.message
    );
    let bad_header = OpenAiConfig {
        extra_headers: vec![("bad header".into(), "x".into())],
        ..OpenAiConfig::default()
    };
    let error = OpenAiClient::new(bad_header).err().unwrap();
    assert!(error.message.contains("bad header"), "{}", error.message);
    let shown = format!("{:?}", OpenAiConfig::openai("sk-secret"));
    assert!(!shown.contains("sk-secret"), "{shown}");
}

#[tokio::test]
async fn a_plain_call_asks_for_the_whole_completion_and_maps_its_errors() {
    let mock = MockOpenAi::start_with_api_key("sk-test-key").await.unwrap();
    mock.push_reply(MockReply::text("All of it at once.").with_usage(12, 4, 3));
    let reply = client(&mock)
        .complete(request(vec![Message::user("hi")]))
        .await
        .unwrap();
    assert_eq!(reply.message.text_content(), "All of it at once.");
    assert_eq!(
        reply.usage,
        Usage {
            input_tokens: 12,
            output_tokens: 4,
            cached_input_tokens: 3,
        }
    );
    assert_eq!(reply.finish, FinishReason::Stop);
    let sent = &mock.requests()[0];
    assert_eq!(sent.body["stream"], json!(false));
    assert!(sent.body.get("stream_options").is_none(), "{}", sent.body);
    assert_eq!(sent.header("accept"), Some("application/json"));

    // the provider's errors, as a streamed call gets them
    mock.push_fault(Fault::rate_limited("7"));
    let error = client(&mock)
        .complete(request(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::RateLimited);
    assert_eq!(error.retry_after, Some(Duration::from_secs(7)));
}
