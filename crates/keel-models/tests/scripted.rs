//! The scripted model's contract: echo, `/call`, tool-result summaries, sized replies,
//! `max_tokens`, `stop`, `/fail`, `tool_choice`, `response_format`, and the same events for the
//! same request every time.

use std::time::Duration;

use futures::StreamExt;
use keel_core::{FinishReason, Message, Part, Role, Usage};
use keel_models::providers::scripted::{ScriptedClient, ScriptedConfig};
use keel_models::{
    ModelClient, ModelErrorKind, ModelRequest, Params, ResponseFormat, StreamEvent, ToolChoice,
    ToolSpec,
};
use serde_json::json;

fn request(messages: Vec<Message>) -> ModelRequest {
    ModelRequest {
        model: "scripted".into(),
        system: None,
        messages,
        tools: Vec::new(),
        params: Params::default(),
    }
}

async fn events(client: &ScriptedClient, request: ModelRequest) -> Vec<StreamEvent> {
    let stream = client
        .stream(request)
        .await
        .expect("scripted stream starts");
    stream
        .map(|e| e.expect("scripted events do not fail"))
        .collect()
        .await
}

fn text_of(events: &[StreamEvent]) -> String {
    events
        .iter()
        .filter_map(|e| {
            if let StreamEvent::TextDelta(t) = e {
                Some(t.as_str())
            } else {
                None
            }
        })
        .collect()
}

#[tokio::test]
async fn echoes_the_last_user_message_word_by_word_then_usage_then_finish() {
    let client = ScriptedClient::default();
    let mut req = request(vec![
        Message::user("an earlier turn"),
        Message::assistant("ok"),
        Message::user("hello  world"),
    ]);
    req.system = Some("be terse".into());
    let events = events(&client, req).await;
    assert_eq!(text_of(&events), "echo: hello  world");
    let deltas = events
        .iter()
        .filter(|e| matches!(e, StreamEvent::TextDelta(_)))
        .count();
    assert_eq!(deltas, 3, "one delta per word: {events:?}");
    // system 2 + "an earlier turn" 3 + "ok" 1 + "hello world" 2
    let usage = Usage {
        input_tokens: 8,
        output_tokens: 3,
        cached_input_tokens: 0,
    };
    assert_eq!(
        events[events.len() - 2..],
        [
            StreamEvent::Usage(usage),
            StreamEvent::Finish(FinishReason::Stop)
        ]
    );
}

#[tokio::test]
async fn call_lines_become_parallel_tool_calls_with_conversation_unique_ids() {
    let client = ScriptedClient::default();
    let ask = Message::user("look these up\n/call get_weather {\"city\": \"Oslo\"}\n/call clock");
    let reply = client.complete(request(vec![ask.clone()])).await.unwrap();
    assert_eq!(reply.finish, FinishReason::ToolCalls);
    assert_eq!(
        reply.message.parts,
        [
            Part::ToolCall {
                id: "call_1_0".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Oslo"})
            },
            Part::ToolCall {
                id: "call_1_1".into(),
                name: "clock".into(),
                arguments: json!({})
            },
        ]
    );
    let later = request(vec![ask.clone(), Message::assistant("done"), ask]);
    let again = client.complete(later).await.unwrap();
    let Part::ToolCall { id, .. } = &again.message.parts[0] else {
        panic!("expected a tool call: {again:?}")
    };
    assert_eq!(id, "call_3_0");
}

#[tokio::test]
async fn call_with_invalid_json_is_a_clear_bad_request() {
    let error = ScriptedClient::default()
        .stream(request(vec![Message::user("/call f {oops")]))
        .await
        .err()
        .unwrap();
    assert_eq!(error.kind, ModelErrorKind::BadRequest);
    assert!(
        error.message.contains("/call f") && error.message.contains("not valid JSON"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn summarises_trailing_tool_results() {
    let client = ScriptedClient::default();
    let call = client
        .complete(request(vec![Message::user("/call a {}\n/call b {}")]))
        .await
        .unwrap();
    let results = |id: &str, content: &str| Message {
        role: Role::Tool,
        parts: vec![Part::ToolResult {
            call_id: id.into(),
            content: content.into(),
            is_error: false,
        }],
    };
    let conversation = vec![
        Message::user("/call a {}\n/call b {}"),
        call.message,
        results("call_1_0", "sunny"),
        results("call_1_1", "3"),
    ];
    let reply = client.complete(request(conversation)).await.unwrap();
    assert_eq!(
        reply.message.text_content(),
        "tool results: call_1_0=sunny; call_1_1=3"
    );
    assert_eq!(reply.finish, FinishReason::Stop);
}

#[tokio::test]
async fn reply_tokens_max_tokens_and_stop_shape_the_reply() {
    let client = ScriptedClient::new(ScriptedConfig {
        reply_tokens: Some(5),
        ..ScriptedConfig::default()
    });
    let full = client
        .complete(request(vec![Message::user("go")]))
        .await
        .unwrap();
    assert_eq!(full.message.text_content(), "tok1 tok2 tok3 tok4 tok5");
    assert_eq!(
        (full.usage.output_tokens, full.finish),
        (5, FinishReason::Stop)
    );

    let mut capped = request(vec![Message::user("go")]);
    capped.params.max_tokens = Some(2);
    let capped = client.complete(capped).await.unwrap();
    assert_eq!(capped.message.text_content(), "tok1 tok2");
    assert_eq!(
        (capped.usage.output_tokens, capped.finish),
        (2, FinishReason::Length)
    );

    let mut stopped = request(vec![Message::user("go")]);
    stopped.params.stop = vec!["tok4".into(), "tok3".into()];
    let stopped = client.complete(stopped).await.unwrap();
    assert_eq!(stopped.message.text_content(), "tok1 tok2 ");
    assert_eq!(stopped.finish, FinishReason::Stop);
}

#[tokio::test]
async fn fail_command_is_a_retryable_unavailable_error() {
    let conversation = vec![
        Message::user("please /fail upstream exploded"),
        Message::assistant("hm"),
    ];
    let error = ScriptedClient::default()
        .stream(request(conversation))
        .await
        .err()
        .unwrap();
    assert_eq!(error.kind, ModelErrorKind::Unavailable);
    assert!(error.is_retryable());
    assert!(
        error.message.contains("upstream exploded"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn same_request_gives_the_same_events_with_or_without_latency() {
    let req = request(vec![Message::user("determinism matters here")]);
    let instant = ScriptedClient::default();
    let paced = ScriptedClient::new(ScriptedConfig {
        first_token_latency: Duration::from_millis(2),
        token_latency: Duration::from_millis(1),
        reply_tokens: None,
    });
    let first = events(&instant, req.clone()).await;
    assert_eq!(first, events(&instant, req.clone()).await);
    assert_eq!(first, events(&paced, req).await);
}

fn calls_of(events: &[StreamEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallDelta {
                name: Some(name),
                arguments,
                ..
            } => Some((name.clone(), arguments.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn honours_tool_choice() {
    let client = ScriptedClient::default();
    let mut req = request(vec![Message::user("/call b {\"x\": 1}")]);
    req.tools = ["a", "b"]
        .map(|name| ToolSpec {
            name: name.into(),
            description: String::new(),
            parameters: json!({"type": "object"}),
            strict: None,
        })
        .to_vec();
    let with = |choice: Option<ToolChoice>| {
        let mut req = req.clone();
        req.params.tool_choice = choice;
        req
    };
    let asked = || ("b".to_string(), "{\"x\":1}".to_string());
    assert_eq!(calls_of(&events(&client, with(None)).await), [asked()]);
    assert_eq!(
        calls_of(&events(&client, with(Some(ToolChoice::Required))).await),
        [asked()]
    );
    let none = events(&client, with(Some(ToolChoice::None))).await;
    assert!(calls_of(&none).is_empty());
    assert_eq!(text_of(&none), "echo: /call b {\"x\": 1}");
    let forced = Some(ToolChoice::Tool { name: "a".into() });
    assert_eq!(
        calls_of(&events(&client, with(forced)).await),
        [("a".to_string(), "{}".to_string())]
    );

    // with no call asked for, `required` calls the first tool
    let mut plain = with(Some(ToolChoice::Required));
    plain.messages = vec![Message::user("hello")];
    let events_of_plain = events(&client, plain).await;
    assert_eq!(
        calls_of(&events_of_plain),
        [("a".to_string(), "{}".to_string())]
    );
    assert!(events_of_plain.contains(&StreamEvent::Finish(FinishReason::ToolCalls)));

    // a forced tool that is not offered is refused
    let error = client
        .stream(with(Some(ToolChoice::Tool { name: "c".into() })))
        .await
        .err()
        .unwrap();
    assert_eq!(error.kind, ModelErrorKind::BadRequest);
}

#[tokio::test]
async fn honours_response_format() {
    let client = ScriptedClient::default();
    let mut req = request(vec![Message::user("hi there")]);
    req.params.response_format = Some(ResponseFormat::JsonObject);
    let text = text_of(&events(&client, req.clone()).await);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        json!({"reply": "echo: hi there"})
    );
    req.params.response_format = Some(ResponseFormat::JsonSchema {
        name: "greeting".into(),
        description: None,
        schema: json!({"type": "object", "properties": {"text": {"type": "string"}, "n": {"type": "integer"}},
            "required": ["text", "n"], "additionalProperties": false}),
        strict: true,
    });
    let text = text_of(&events(&client, req).await);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text).unwrap(),
        json!({"text": "echo: hi there", "n": 0})
    );
}
