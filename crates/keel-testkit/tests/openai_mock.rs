//! The mock itself speaks OpenAI's documented shapes and refuses what OpenAI refuses, checked
//! with a plain HTTP client so no keel code is involved.

use keel_testkit::openai_mock::{MockOpenAi, MockReply};
use serde_json::{Value, json};

async fn post(mock: &MockOpenAi, key: Option<&str>, body: Value) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/chat/completions", mock.base_url()))
        .json(&body);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.expect("the mock answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a whole body"))
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

#[tokio::test]
async fn non_streaming_reply_has_the_documented_shape() {
    let mock = MockOpenAi::start().await.unwrap();
    mock.push_reply(
        MockReply::tool_calls()
            .tool_call("call_1", "lookup", json!({"q": "keel"}))
            .with_usage(9, 4, 2),
    );
    let (status, body) = post(&mock, None, json!({"model": "m", "messages": [user("hi")]})).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["object"], json!("chat.completion"));
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], json!("tool_calls"));
    assert_eq!(
        choice["message"]["tool_calls"][0]["function"]["arguments"],
        json!("{\"q\":\"keel\"}")
    );
    assert_eq!(
        body["usage"]["prompt_tokens_details"]["cached_tokens"],
        json!(2)
    );
}

#[tokio::test]
async fn streaming_reply_ends_with_finish_then_usage_then_done() {
    let mock = MockOpenAi::start().await.unwrap();
    mock.push_reply(MockReply::text("one two three"));
    let body = json!({"model": "m", "messages": [user("hi")], "stream": true, "stream_options": {"include_usage": true}});
    let (status, text) = post(&mock, None, body).await;
    assert_eq!(status, 200);
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"));
    let usage: Value = serde_json::from_str(data[data.len() - 2]).unwrap();
    assert_eq!(
        (
            usage["choices"].clone(),
            usage["usage"]["completion_tokens"].clone()
        ),
        (json!([]), json!(3))
    );
    let finish: Value = serde_json::from_str(data[data.len() - 3]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], json!("stop"));
    let content: String = data[..data.len() - 3]
        .iter()
        .map(|d| {
            serde_json::from_str::<Value>(d).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_eq!(content, "one two three");
}

#[tokio::test]
async fn refuses_bodies_openai_would_refuse_with_its_error_shape() {
    let mock = MockOpenAi::start().await.unwrap();
    let call = json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]});
    let cases = [
        (
            json!({"model": "m", "messages": [user("hi")], "temprature": 1}),
            "Unrecognized request argument",
        ),
        (json!({"messages": [user("hi")]}), "model"),
        (json!({"model": "m", "messages": []}), "too short"),
        (
            json!({"model": "m", "messages": [user("hi"), call, user("next")]}),
            "did not have response messages: c1",
        ),
        (
            json!({"model": "m", "messages": [user("hi"), {"role": "tool", "tool_call_id": "c9", "content": "x"}]}),
            "c9",
        ),
        (
            json!({"model": "m", "messages": [user("hi")], "stream_options": {"include_usage": true}}),
            "stream_options",
        ),
        (
            json!({"model": "m", "messages": [user("hi"), {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}]}),
            "arguments",
        ),
        (
            json!({"model": "m", "messages": [user("hi")], "tools": [{"type": "function", "function": {"name": "bad name"}}]}),
            "bad name",
        ),
    ];
    for (body, expected) in cases {
        let (status, text) = post(&mock, None, body.clone()).await;
        assert_eq!(status, 400, "{body} was accepted: {text}");
        let error: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            error["error"]["type"],
            json!("invalid_request_error"),
            "{text}"
        );
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains(expected),
            "{body}: {text}"
        );
    }
    assert_eq!(
        mock.requests().len(),
        8,
        "refused requests are recorded too"
    );
}

#[tokio::test]
async fn requires_the_configured_bearer_key() {
    let mock = MockOpenAi::start_with_api_key("sk-right").await.unwrap();
    mock.push_reply(MockReply::text("ok"));
    let body = json!({"model": "m", "messages": [user("hi")]});
    assert_eq!(post(&mock, None, body.clone()).await.0, 401);
    assert_eq!(post(&mock, Some("sk-wrong"), body.clone()).await.0, 401);
    assert_eq!(post(&mock, Some("sk-right"), body).await.0, 200);
    assert_eq!(
        mock.requests()[2].header("Authorization"),
        Some("Bearer sk-right")
    );
}

#[tokio::test]
async fn an_empty_queue_answers_500_with_a_hint() {
    let mock = MockOpenAi::start().await.unwrap();
    let (status, text) = post(&mock, None, json!({"model": "m", "messages": [user("hi")]})).await;
    assert_eq!(status, 500);
    assert!(text.contains("push_reply"), "{text}");
}
