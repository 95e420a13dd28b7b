//! One end-to-end case suite, written once and run against every HTTP provider through its
//! wire-faithful mock on 127.0.0.1: plain reply, streaming, a tool round trip, parallel tool
//! calls, the system prompt, usage and cost, error mapping, a forced tool choice and JSON mode.
//! Each mock validates what it gets.

mod providers_support;

use keel_core::{FinishReason, Message, Part, Role, Usage};
use keel_models::catalog::Catalog;
use keel_models::{ModelErrorKind, ResponseFormat, StreamEvent, ToolChoice};
use keel_testkit::Fault;
use keel_testkit::openai_mock::MockReply;
use providers_support::{Kind, Upstream, calls_of, results_for, run};
use serde_json::json;

async fn plain_reply(kind: Kind) {
    let up = Upstream::start(kind).await;
    up.push_reply(MockReply::text("Hello from the mock."));
    let reply = up
        .client
        .complete(up.request(vec![Message::user("hi")]))
        .await
        .expect("a reply");
    assert_eq!(reply.message.role, Role::Assistant);
    assert_eq!(
        reply.message.parts,
        [Part::Text {
            text: "Hello from the mock.".into()
        }]
    );
    assert_eq!(reply.finish, FinishReason::Stop);
}

async fn streams_in_pieces_with_usage_and_finish_last(kind: Kind) {
    let up = Upstream::start(kind).await;
    up.push_reply(MockReply::text("one two three four five"));
    let outcome = run(up.client.as_ref(), up.request(vec![Message::user("count")])).await;
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    let deltas = outcome
        .events
        .iter()
        .filter(|e| matches!(e, StreamEvent::TextDelta(_)))
        .count();
    assert!(deltas >= 5, "streamed in pieces: {:?}", outcome.events);
    assert_eq!(outcome.text(), "one two three four five");
    assert_eq!(
        outcome.events.last(),
        Some(&StreamEvent::Finish(FinishReason::Stop))
    );
    assert!(
        outcome
            .events
            .iter()
            .any(|e| matches!(e, StreamEvent::Usage(u) if u.output_tokens > 0))
    );
}

async fn tool_round_trip(kind: Kind) {
    let up = Upstream::start(kind).await;
    up.push_reply(MockReply::tool_calls().tool_call(
        "toolu_01",
        "get_weather",
        json!({"city": "Oslo"}),
    ));
    let mut transcript = vec![Message::user("Weather in Oslo?")];
    let first = up
        .client
        .complete(up.request(transcript.clone()))
        .await
        .expect("a tool call");
    assert_eq!(first.finish, FinishReason::ToolCalls);
    let calls = calls_of(&first.message);
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].1.as_str(), &calls[0].2),
        ("get_weather", &json!({"city": "Oslo"}))
    );
    transcript.push(first.message.clone());
    transcript.push(results_for(&first.message, |_| "rain, 7°C".into()));
    up.push_reply(MockReply::text("It rains in Oslo."));
    let second = up
        .client
        .complete(up.request(transcript))
        .await
        .expect("the mock accepts the tool result");
    assert_eq!(
        second.message.parts,
        [Part::Text {
            text: "It rains in Oslo.".into()
        }]
    );
    assert_eq!(up.requests().len(), 2);
}

async fn parallel_tool_calls(kind: Kind) {
    let up = Upstream::start(kind).await;
    up.push_reply(
        MockReply::text("Checking both.")
            .tool_call("toolu_a", "get_weather", json!({"city": "Oslo"}))
            .tool_call("toolu_b", "get_time", json!({"city": "Rome"})),
    );
    let mut transcript = vec![Message::user("Oslo weather and Rome time?")];
    let reply = up
        .client
        .complete(up.request(transcript.clone()))
        .await
        .expect("two calls");
    let calls = calls_of(&reply.message);
    let names: Vec<&str> = calls.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(names, ["get_weather", "get_time"]);
    assert_ne!(calls[0].0, calls[1].0, "each call has its own id");
    assert_eq!(calls[1].2, json!({"city": "Rome"}));
    transcript.push(reply.message.clone());
    transcript.push(results_for(&reply.message, |name| format!("{name}: ok")));
    up.push_reply(MockReply::text("Done."));
    up.client
        .complete(up.request(transcript))
        .await
        .expect("the mock accepts both results");
}

async fn system_prompt_goes_where_the_provider_wants_it(kind: Kind) {
    let up = Upstream::start(kind).await;
    up.push_reply(MockReply::text("ok"));
    up.client
        .complete(up.request(vec![Message::user("hi")]))
        .await
        .unwrap();
    let sent = up.last_request();
    assert_eq!(
        up.system_sent(&sent).as_deref(),
        Some("You are terse."),
        "{}",
        sent.raw_body
    );
}

async fn usage_and_cost(kind: Kind) {
    let up = Upstream::start(kind).await;
    up.push_reply(MockReply::text("priced").with_usage(1_000, 200, 400));
    let reply = up
        .client
        .complete(up.request(vec![Message::user("hi")]))
        .await
        .unwrap();
    assert_eq!(
        reply.usage,
        Usage {
            input_tokens: 1_000,
            output_tokens: 200,
            cached_input_tokens: 400
        }
    );
    let catalog = Catalog::builtin();
    let info = catalog
        .get(up.provider(), up.model())
        .expect("the model is in the catalog");
    let expected = (600.0 * info.price.input
        + 400.0 * info.price.cached_input.unwrap()
        + 200.0 * info.price.output)
        / 1e6;
    let cost = catalog
        .cost(up.provider(), up.model(), &reply.usage)
        .unwrap();
    assert!(
        (cost - expected).abs() < 1e-12 && cost > 0.0,
        "{cost} vs {expected}"
    );
}

async fn errors_map_onto_kinds_with_retryability(kind: Kind) {
    let up = Upstream::start(kind).await;
    let request = || up.request(vec![Message::user("hi")]);

    up.push_fault(Fault::rate_limited("3"));
    let limited = run(up.client.as_ref(), request()).await;
    let error = limited.error();
    assert!(limited.at_start);
    assert_eq!(
        (error.kind, error.retry_after),
        (
            ModelErrorKind::RateLimited,
            Some(std::time::Duration::from_secs(3))
        )
    );
    assert!(error.is_retryable());

    for (fault, expected) in [
        (Fault::status(500), ModelErrorKind::Unavailable),
        (Fault::status(503), ModelErrorKind::Unavailable),
        (Fault::status(400), ModelErrorKind::BadRequest),
        (Fault::ResetConnection, ModelErrorKind::Unavailable),
        (Fault::WrongContentType, ModelErrorKind::Protocol),
    ] {
        up.push_fault(fault.clone());
        let outcome = run(up.client.as_ref(), request()).await;
        assert!(outcome.at_start, "{fault:?} fails before any event");
        assert_eq!(
            outcome.error().kind,
            expected,
            "{fault:?}: {}",
            outcome.error()
        );
    }
    assert!(!keel_models::ModelError::new(ModelErrorKind::BadRequest, "x", "y").is_retryable());

    for (fault, expected) in [
        (
            Fault::CutStream { after_chunks: 4 },
            ModelErrorKind::Unavailable,
        ),
        (
            Fault::TruncateStream { after_chunks: 4 },
            ModelErrorKind::Unavailable,
        ),
        (
            Fault::MalformedChunk { after_chunks: 4 },
            ModelErrorKind::Protocol,
        ),
        (
            Fault::ErrorInStream {
                after_chunks: 4,
                status: 429,
            },
            ModelErrorKind::RateLimited,
        ),
    ] {
        up.push_fault(fault.clone());
        let outcome = run(up.client.as_ref(), request()).await;
        assert!(!outcome.at_start, "{fault:?} fails mid-stream");
        assert_eq!(
            outcome.error().kind,
            expected,
            "{fault:?}: {}",
            outcome.error()
        );
        assert!(
            !outcome
                .events
                .iter()
                .any(|e| matches!(e, StreamEvent::Finish(_))),
            "{fault:?} never looks finished"
        );
    }
}

async fn refused_credentials_are_an_auth_error(kind: Kind) {
    let up = Upstream::start_with(kind, "wrong-key", 10_000).await;
    let outcome = run(up.client.as_ref(), up.request(vec![Message::user("hi")])).await;
    assert_eq!(
        outcome.error().kind,
        ModelErrorKind::Auth,
        "{}",
        outcome.error()
    );
    assert!(!outcome.error().is_retryable());
}

async fn a_silent_server_times_out(kind: Kind) {
    let up = Upstream::start_with(kind, providers_support::KEY, 300).await;
    up.push_fault(Fault::StallBeforeResponse);
    let outcome = run(up.client.as_ref(), up.request(vec![Message::user("hi")])).await;
    assert_eq!(
        outcome.error().kind,
        ModelErrorKind::Timeout,
        "{}",
        outcome.error()
    );
}

async fn a_forced_tool_reaches_the_provider_in_its_shape(kind: Kind) {
    let up = Upstream::start(kind).await;
    up.push_reply(MockReply::tool_calls().tool_call(
        "toolu_01",
        "get_time",
        json!({"city": "Oslo"}),
    ));
    let mut request = up.request(vec![Message::user("Time in Oslo?")]);
    request.params.tool_choice = Some(ToolChoice::Tool {
        name: "get_time".into(),
    });
    let reply = up.client.complete(request).await.expect("a tool call");
    assert_eq!(calls_of(&reply.message)[0].1, "get_time");
    let body = up.last_request().body;
    let (sent, expected) = match kind {
        Kind::OpenAi | Kind::Azure => (
            &body["tool_choice"],
            json!({"type": "function", "function": {"name": "get_time"}}),
        ),
        Kind::Responses => (
            &body["tool_choice"],
            json!({"type": "function", "name": "get_time"}),
        ),
        Kind::Anthropic => (
            &body["tool_choice"],
            json!({"type": "tool", "name": "get_time"}),
        ),
        Kind::Gemini => (
            &body["toolConfig"]["functionCallingConfig"],
            json!({"mode": "ANY", "allowedFunctionNames": ["get_time"]}),
        ),
    };
    assert_eq!(sent, &expected, "{body}");
}

async fn json_mode_is_sent_or_refused_before_sending(kind: Kind) {
    let up = Upstream::start(kind).await;
    up.push_reply(MockReply::text("{\"ok\": true}"));
    let mut request = up.request(vec![Message::user("Answer in JSON.")]);
    request.params.response_format = Some(ResponseFormat::JsonObject);
    let outcome = run(up.client.as_ref(), request).await;
    if kind == Kind::Anthropic {
        // No schema-less JSON mode there: refused with a reason, nothing sent.
        assert_eq!(outcome.error().kind, ModelErrorKind::BadRequest);
        assert!(
            outcome.error().message.contains("json_schema"),
            "{}",
            outcome.error()
        );
        assert!(up.requests().is_empty());
        return;
    }
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.text(), "{\"ok\": true}");
    let body = up.last_request().body;
    let (sent, expected) = match kind {
        Kind::OpenAi | Kind::Azure => (&body["response_format"], json!({"type": "json_object"})),
        Kind::Responses => (&body["text"], json!({"format": {"type": "json_object"}})),
        Kind::Gemini => (
            &body["generationConfig"]["responseMimeType"],
            json!("application/json"),
        ),
        Kind::Anthropic => unreachable!(),
    };
    assert_eq!(sent, &expected, "{body}");
}

macro_rules! provider_suite {
    ($($module:ident => $kind:expr),* $(,)?) => {$(
        mod $module {
            use super::*;
            #[tokio::test] async fn plain_reply() { super::plain_reply($kind).await }
            #[tokio::test] async fn streams_in_pieces_with_usage_and_finish_last() { super::streams_in_pieces_with_usage_and_finish_last($kind).await }
            #[tokio::test] async fn tool_round_trip() { super::tool_round_trip($kind).await }
            #[tokio::test] async fn parallel_tool_calls() { super::parallel_tool_calls($kind).await }
            #[tokio::test] async fn system_prompt_goes_where_the_provider_wants_it() { super::system_prompt_goes_where_the_provider_wants_it($kind).await }
            #[tokio::test] async fn usage_and_cost() { super::usage_and_cost($kind).await }
            #[tokio::test] async fn errors_map_onto_kinds_with_retryability() { super::errors_map_onto_kinds_with_retryability($kind).await }
            #[tokio::test] async fn refused_credentials_are_an_auth_error() { super::refused_credentials_are_an_auth_error($kind).await }
            #[tokio::test] async fn a_silent_server_times_out() { super::a_silent_server_times_out($kind).await }
            #[tokio::test] async fn a_forced_tool_reaches_the_provider_in_its_shape() { super::a_forced_tool_reaches_the_provider_in_its_shape($kind).await }
            #[tokio::test] async fn json_mode_is_sent_or_refused_before_sending() { super::json_mode_is_sent_or_refused_before_sending($kind).await }
        }
    )*};
}

provider_suite! {
    openai_chat => Kind::OpenAi,
    openai_responses => Kind::Responses,
    azure => Kind::Azure,
    anthropic => Kind::Anthropic,
    gemini => Kind::Gemini,
}
