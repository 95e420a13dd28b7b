//! Bedrock ConverseStream through the AWS SDK against a mock that speaks AWS's binary
//! event-stream framing and checks SigV4 and the Converse transcript: plain and streamed reply,
//! tool round trip with parallel calls, usage, and errors mapped by AWS error code; and
//! embeddings through InvokeModel (Titan, Cohere).
//! Runs with `cargo test -p keel-models --features bedrock --test providers_bedrock`.
#![cfg(feature = "bedrock")]

mod providers_support;

use keel_core::{FinishReason, Message, Part, Usage};
use keel_models::providers::bedrock::{BedrockClient, BedrockConfig};
use keel_models::{ModelClient, ModelErrorKind, ModelRequest, Params};
use keel_testkit::Fault;
use keel_testkit::bedrock_mock::MockBedrock;
use keel_testkit::embedding::{MOCK_DIMENSIONS, mock_vector};
use keel_testkit::openai_mock::MockReply;
use keel_testkit::upstream::MockUpstream;
use providers_support::{calls_of, embedding_request, results_for, run, timeouts, tools};
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

#[tokio::test]
async fn titan_embeds_one_text_per_invoke_model_call_with_token_counts() {
    let (mock, client) = start().await;
    let texts = ["the first text", "and a second one here"];
    let out = client
        .embed(embedding_request(
            "amazon.titan-embed-text-v2:0",
            &texts,
            None,
        ))
        .await
        .expect("vectors");
    let want: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| mock_vector(t, MOCK_DIMENSIONS))
        .collect();
    assert_eq!(out.vectors, want);
    assert_eq!(out.input_tokens, 3 + 5);
    let sent = mock.requests();
    assert_eq!(sent.len(), 2);
    assert!(sent[0].path.ends_with("/invoke"), "{}", sent[0].path);
    assert_eq!(sent[1].body["inputText"], "and a second one here");

    let short = client
        .embed(embedding_request(
            "amazon.titan-embed-text-v2:0",
            &["short"],
            Some(16),
        ))
        .await
        .expect("a shorter vector");
    assert_eq!(short.vectors, vec![mock_vector("short", 16)]);
    assert_eq!(mock.requests()[2].body["dimensions"], 16);
}

#[tokio::test]
async fn cohere_embeds_up_to_96_texts_per_call() {
    let (mock, client) = start().await;
    let owned: Vec<String> = (0..100).map(|i| format!("text number {i}")).collect();
    let texts: Vec<&str> = owned.iter().map(String::as_str).collect();
    let out = client
        .embed(embedding_request("cohere.embed-english-v3", &texts, None))
        .await
        .expect("vectors");
    assert_eq!(out.vectors.len(), 100);
    assert_eq!(
        out.vectors[99],
        mock_vector("text number 99", MOCK_DIMENSIONS)
    );
    let sent = mock.requests();
    assert_eq!(sent.len(), 2, "96 then 4");
    assert_eq!(sent[0].body["texts"].as_array().unwrap().len(), 96);
    assert_eq!(sent[0].body["input_type"], "search_document");

    let err = client
        .embed(embedding_request(
            "cohere.embed-english-v3",
            &["x"],
            Some(8),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ModelErrorKind::BadRequest, "{err}");
    assert_eq!(mock.requests().len(), 2, "refused before calling");
}

#[tokio::test]
async fn bedrock_embeddings_refuse_other_models_and_map_errors() {
    let (mock, client) = start().await;
    for model in [MODEL, "amazon.nova-lite-v1:0"] {
        let err = client
            .embed(embedding_request(model, &["x"], None))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ModelErrorKind::BadRequest, "{err}");
        assert!(err.message.contains("titan-embed-text"), "{err}");
    }
    let err = client
        .embed(embedding_request("amazon.titan-embed-text-v2:0", &[], None))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ModelErrorKind::BadRequest, "{err}");
    assert!(mock.requests().is_empty());

    mock.push_fault(Fault::status(429));
    let err = client
        .embed(embedding_request(
            "amazon.titan-embed-text-v2:0",
            &["x"],
            None,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ModelErrorKind::RateLimited, "{err}");
    let err = client
        .embed(embedding_request(
            "amazon.titan-embed-text-v2:0",
            &["x"],
            Some(7),
        ))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind,
        ModelErrorKind::BadRequest,
        "the mock refuses 7 dimensions as Titan does: {err}"
    );
}
