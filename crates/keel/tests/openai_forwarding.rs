//! What a caller gives for the model and keel itself has no use for is forwarded, never
//! accepted and dropped: a function tool's `strict`, and `user`, `safety_identifier` and
//! `prompt_cache_key` reach an OpenAI-wire upstream (Chat Completions or Responses) from both
//! of keel's OpenAI endpoints, as the recording mock upstreams show.

mod support;

use keel_testkit::openai_mock::{MockOpenAi, MockReply};
use keel_testkit::responses_mock::MockResponses;
use reqwest::Method;
use serde_json::{Value, json};
use support::http::admin;
use support::{KeelHome, KeelServer};

const IDS: [(&str, &str); 3] = [
    ("user", "end-user-7"),
    ("safety_identifier", "hashed-user-7"),
    ("prompt_cache_key", "support-bot"),
];

fn with_ids(mut body: Value) -> Value {
    for (field, id) in IDS {
        body[field] = json!(id);
    }
    body
}

fn assert_ids_sent(sent: &Value) {
    for (field, id) in IDS {
        assert_eq!(sent[field], id, "{field} upstream: {sent}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_and_the_callers_ids_reach_openai_wire_upstreams_from_both_endpoints() {
    let chat_upstream = MockOpenAi::start().await.unwrap();
    let responses_upstream = MockResponses::start_responses("sk-resp").await.unwrap();
    let home = KeelHome::new(&format!(
        r#"
[providers.openai]
kind = "openai"
base_url = "{}"

[providers.resp]
kind = "openai_responses"
base_url = "{}"
api_key = "sk-resp"

[[agents]]
name = "default"
model = "openai/gpt-4o-mini"
"#,
        chat_upstream.base_url(),
        responses_upstream.base_url()
    ));
    let server = KeelServer::start(&home, &[]);
    let api = admin(&server);
    let parameters = json!({"type": "object", "properties": {"q": {"type": "string"}},
        "required": ["q"], "additionalProperties": false});

    // Chat Completions in, Chat Completions upstream.
    chat_upstream.push_reply(MockReply::text("hi"));
    let tools = json!([{"type": "function",
        "function": {"name": "lookup", "parameters": parameters, "strict": true}}]);
    let body = with_ids(json!({"model": "openai/gpt-4o-mini", "tools": tools,
        "messages": [{"role": "user", "content": "hello"}]}));
    api.ok(Method::POST, "/v1/chat/completions", Some(body))
        .await;
    let sent = &chat_upstream.requests()[0].body;
    assert_eq!(sent["tools"][0]["function"]["strict"], true, "{sent}");
    assert_ids_sent(sent);

    // Responses in, Responses upstream: the run carries them to the model call.
    responses_upstream.push_reply(MockReply::text("hi"));
    let tools = json!([{"type": "function", "name": "lookup", "parameters": parameters,
        "strict": false}]);
    let body = with_ids(json!({"model": "resp/gpt-4.1", "tools": tools, "input": "hello"}));
    let response = api.ok(Method::POST, "/v1/responses", Some(body)).await;
    assert_eq!(response["status"], "completed", "{response}");
    let sent = &responses_upstream.requests()[0].body;
    assert_eq!(sent["tools"][0]["strict"], false, "{sent}");
    assert_ids_sent(sent);

    // Responses in, Chat Completions upstream; fields left out stay out.
    chat_upstream.push_reply(MockReply::text("hi"));
    let tools = json!([{"type": "function", "name": "lookup", "parameters": parameters}]);
    let body = json!({"model": "openai/gpt-4o-mini", "tools": tools, "input": "hello",
        "user": "end-user-7"});
    api.ok(Method::POST, "/v1/responses", Some(body)).await;
    let sent = &chat_upstream.requests()[1].body;
    assert_eq!(sent["user"], "end-user-7", "{sent}");
    assert!(
        sent["tools"][0]["function"].get("strict").is_none(),
        "{sent}"
    );
    assert!(sent.get("safety_identifier").is_none(), "{sent}");
    assert!(sent.get("prompt_cache_key").is_none(), "{sent}");
}
