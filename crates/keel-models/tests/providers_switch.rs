//! A live session switched across three providers over five turns, one turn with a tool call
//! and one failing over inside a route: every provider's mock checks that the transcript it
//! receives is complete and well-formed for its format, whoever produced the earlier turns.

mod providers_support;

use std::collections::HashMap;
use std::sync::Arc;

use keel_core::{Message, Part, Role};
use keel_models::router::{Policy, Route, Router, Target};
use keel_models::{ModelClient, ModelRequest, StreamEvent};
use keel_testkit::Fault;
use keel_testkit::openai_mock::MockReply;
use providers_support::{Kind, Upstream, calls_of, results_for, run};
use serde_json::json;

fn request(up: &Upstream, transcript: &[Message]) -> ModelRequest {
    let mut request = up.request(transcript.to_vec());
    request.params.affinity = Some("session-42".into());
    request
}

/// Runs one turn on `client` and appends the reply (and nothing else) to the transcript.
async fn turn(
    client: &dyn ModelClient,
    request: ModelRequest,
    transcript: &mut Vec<Message>,
) -> Vec<StreamEvent> {
    let outcome = run(client, request).await;
    assert!(
        outcome.error.is_none(),
        "turn {} failed: {:?}",
        transcript.len(),
        outcome.error
    );
    let mut acc = keel_models::ReplyAccumulator::default();
    outcome.events.iter().cloned().for_each(|e| acc.push(e));
    transcript.push(acc.finish().message);
    outcome.events
}

#[tokio::test]
async fn five_turns_across_three_providers_with_a_tool_call_and_a_failover() {
    let anthropic = Upstream::start(Kind::Anthropic).await;
    let gemini = Upstream::start(Kind::Gemini).await;
    let responses = Upstream::start(Kind::Responses).await;
    let mut transcript = vec![Message::user("Hi! I am planning a trip.")];

    // Turn 1 on Anthropic.
    anthropic.push_reply(MockReply::text("Happy to help. Where to?"));
    turn(
        anthropic.client.as_ref(),
        request(&anthropic, &transcript),
        &mut transcript,
    )
    .await;

    // Turn 2 on Gemini, which calls two tools in parallel (Gemini has no call ids: keel assigns them).
    transcript.push(Message::user(
        "Oslo. What's the weather and the time there?",
    ));
    gemini.push_reply(
        MockReply::tool_calls()
            .tool_call("ignored", "get_weather", json!({"city": "Oslo"}))
            .tool_call("ignored", "get_time", json!({"city": "Oslo"})),
    );
    turn(
        gemini.client.as_ref(),
        request(&gemini, &transcript),
        &mut transcript,
    )
    .await;
    let calls = calls_of(transcript.last().unwrap());
    assert_eq!(calls.len(), 2);
    transcript.push(results_for(transcript.last().unwrap(), |name| {
        format!("{name}: rain, 14:05")
    }));

    // Turn 3 through a route whose primary (Anthropic) is overloaded: it fails over to Responses,
    // which must accept Gemini's calls as function_call items with keel's ids.
    let providers: HashMap<String, Arc<dyn ModelClient>> = [
        ("anthropic".to_string(), anthropic.client.clone()),
        ("openai_responses".to_string(), responses.client.clone()),
    ]
    .into();
    let route = Route {
        name: "travel".into(),
        targets: vec![
            Target {
                provider: "anthropic".into(),
                model: anthropic.model().into(),
                weight: 1,
            },
            Target {
                provider: "openai_responses".into(),
                model: responses.model().into(),
                weight: 1,
            },
        ],
        policy: Policy::Fallback,
        retry: keel_models::router::RetryPolicy {
            attempts_per_target: 1,
            ..Default::default()
        },
        breaker: Default::default(),
        timeouts: Default::default(),
        sticky: true,
    };
    let router = Router::new(route, &providers).unwrap();
    anthropic.push_fault(Fault::ErrorInStream {
        after_chunks: 4,
        status: 529,
    });
    responses.push_reply(MockReply::text("It rains in Oslo; it is 14:05 there."));
    let events = turn(&router, request(&responses, &transcript), &mut transcript).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, StreamEvent::Restart { .. })),
        "partial Anthropic output was abandoned"
    );
    assert!(
        matches!(events.last(), Some(StreamEvent::Served(s)) if s.provider == "openai_responses" && s.attempts == 2)
    );
    assert_eq!(
        transcript.last().unwrap().parts,
        [Part::Text {
            text: "It rains in Oslo; it is 14:05 there.".into()
        }]
    );

    // Turn 4 on Anthropic: Gemini's calls become tool_use/tool_result blocks with valid ids.
    transcript.push(Message::user("Should I pack an umbrella?"));
    anthropic.push_reply(MockReply::text("Yes, pack one."));
    turn(
        anthropic.client.as_ref(),
        request(&anthropic, &transcript),
        &mut transcript,
    )
    .await;

    // Turn 5 back on Gemini: results are matched to its calls by name and order.
    transcript.push(Message::user("Thanks!"));
    gemini.push_reply(MockReply::text("Have a good trip."));
    turn(
        gemini.client.as_ref(),
        request(&gemini, &transcript),
        &mut transcript,
    )
    .await;

    // Each provider saw the whole session so far, in its own format.
    let anthropic_last = anthropic.last_request();
    let messages = anthropic_last.body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 7, "{}", anthropic_last.raw_body);
    let tool_use_ids: Vec<&str> = messages[3]["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["id"].as_str())
        .collect();
    let result_ids: Vec<&str> = messages[4]["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["tool_use_id"].as_str())
        .collect();
    assert_eq!(tool_use_ids, result_ids);
    assert_eq!(
        tool_use_ids,
        calls.iter().map(|c| c.0.as_str()).collect::<Vec<_>>()
    );

    let responses_last = responses.last_request();
    let kinds: Vec<&str> = responses_last.body["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "message",
            "message",
            "message",
            "function_call",
            "function_call",
            "function_call_output",
            "function_call_output"
        ]
    );

    let gemini_last = gemini.last_request();
    let contents = gemini_last.body["contents"].as_array().unwrap();
    let roles: Vec<&str> = contents
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "user", "model", "user", "model", "user", "model", "user", "model", "user"
        ]
    );
    assert_eq!(
        contents[4]["parts"][1]["functionResponse"]["name"],
        "get_time"
    );
    assert_eq!(transcript.len(), 10);
    assert_eq!(
        transcript
            .iter()
            .filter(|m| m.role == Role::Assistant)
            .count(),
        5
    );
}
