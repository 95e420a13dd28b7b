//! Bedrock ConverseStream through the AWS SDK against a mock that speaks AWS's binary
//! event-stream framing and checks SigV4 and the Converse transcript: plain and streamed reply,
//! tool round trip with parallel calls, usage, and errors mapped by AWS error code.
//! Runs with `cargo test -p keel-models --features bedrock --test providers_bedrock`.
#![cfg(feature = "bedrock")]

mod providers_support;

use keel_core::{FinishReason, Message, Part, Usage};
use keel_models::providers::bedrock::{BedrockClient, BedrockConfig};
use keel_models::{ModelClient, ModelErrorKind, ModelRequest, Params};
use keel_testkit::Fault;
use keel_testkit::bedrock_mock::MockBedrock;
use keel_testkit::openai_mock::MockReply;
use keel_testkit::upstream::MockUpstream;
use providers_support::{calls_of, results_for, run, timeouts, tools};
use serde_json::json;

const MODEL: &str = "anthropic.claude-3-5-haiku-20241022-v1:0";

async fn start() -> (MockBedrock, BedrockClient) {
    let mock = MockUpstream::start_bedrock("AKIDTEST", "us-east-1")
        .await
        .unwrap();
    let client = BedrockClient::new(BedrockConfig {
        region: "us-east-1".into(),
        endpoint_url: Some(mock.endpoint_url()),
        profile: None,
        access_key_id: Some("AKIDTEST".into()),
        secret_access_key: Some("secret".into()),
        timeouts: timeouts(2_000),
    })
    .await
    .unwrap();
    (mock, client)
}

fn request(messages: Vec<Message>) -> ModelRequest {
    ModelRequest {
        model: MODEL.into(),
        system: Some("You are terse.".into()),
        messages,
        tools: tools(),
        params: Params::default(),
    }
}

#[tokio::test]
async fn streams_a_reply_with_usage_from_event_stream_frames() {
    let (mock, client) = start().await;
    mock.push_reply(MockReply::text("one two three").with_usage(100, 7, 40));
    let reply = client
        .complete(request(vec![Message::user("count")]))
        .await
        .expect("a reply");
    assert_eq!(
        reply.message.parts,
        [Part::Text {
            text: "one two three".into()
        }]
    );
    assert_eq!(reply.finish, FinishReason::Stop);
    assert_eq!(
        reply.usage,
        Usage {
            input_tokens: 100,
            output_tokens: 7,
            cached_input_tokens: 40
        }
    );
    let sent = mock.requests().pop().unwrap();
    assert_eq!(sent.body["system"], json!([{"text": "You are terse."}]));
    assert!(sent.path.ends_with("/converse-stream"));
}

#[tokio::test]
async fn parallel_tool_calls_round_trip() {
    let (mock, client) = start().await;
    mock.push_reply(
        MockReply::tool_calls()
            .tool_call("tooluse_a", "get_weather", json!({"city": "Oslo"}))
            .tool_call("tooluse_b", "get_time", json!({"city": "Rome"})),
    );
    let mut transcript = vec![Message::user("Oslo weather, Rome time?")];
    let reply = client.complete(request(transcript.clone())).await.unwrap();
    assert_eq!(reply.finish, FinishReason::ToolCalls);
    let calls = calls_of(&reply.message);
    assert_eq!(
        calls.iter().map(|c| c.1.as_str()).collect::<Vec<_>>(),
        ["get_weather", "get_time"]
    );
    assert_eq!(calls[0].2, json!({"city": "Oslo"}));
    transcript.push(reply.message.clone());
    transcript.push(results_for(&reply.message, |n| format!("{n}: ok")));
    mock.push_reply(MockReply::text("Done."));
    client
        .complete(request(transcript))
        .await
        .expect("the mock accepts both results");
}

#[tokio::test]
async fn aws_errors_map_onto_kinds() {
    let (mock, client) = start().await;
    for (fault, kind, at_start) in [
        (Fault::status(429), ModelErrorKind::RateLimited, true),
        (Fault::status(503), ModelErrorKind::Unavailable, true),
        (Fault::status(400), ModelErrorKind::BadRequest, true),
        (Fault::status(403), ModelErrorKind::Auth, true),
        (
            Fault::ErrorInStream {
                after_chunks: 2,
                status: 429,
            },
            ModelErrorKind::RateLimited,
            false,
        ),
        (
            Fault::CutStream { after_chunks: 2 },
            ModelErrorKind::Unavailable,
            false,
        ),
    ] {
        mock.push_fault(fault.clone());
        let outcome = run(&client, request(vec![Message::user("hi")])).await;
        assert_eq!(outcome.error().kind, kind, "{fault:?}: {}", outcome.error());
        assert_eq!(outcome.at_start, at_start, "{fault:?}");
    }
}
