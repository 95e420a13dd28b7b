//! Renders a scripted reply in OpenAI's documented Chat Completions shapes: the
//! `chat.completion` object, the `chat.completion.chunk` SSE stream, and the error object.

use serde_json::{Value, json};

use crate::reply::{MockReply, argument_pieces, word_pieces};

const CREATED: u64 = 1_700_000_000;

fn usage_json(reply: &MockReply) -> Value {
    json!({
        "prompt_tokens": reply.usage.prompt_tokens,
        "completion_tokens": reply.usage.completion_tokens,
        "total_tokens": reply.usage.prompt_tokens + reply.usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.usage.cached_tokens, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    })
}

/// A whole (non-streamed) `chat.completion`.
pub(crate) fn completion(reply: &MockReply, id: &str, model: &str) -> Value {
    let tool_calls: Vec<Value> = reply
        .tool_calls
        .iter()
        .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
        .collect();
    let mut message = json!({
        "role": "assistant",
        "content": if reply.text.is_empty() { Value::Null } else { json!(reply.text) },
        "refusal": null,
    });
    if !tool_calls.is_empty() {
        message["tool_calls"] = json!(tool_calls);
    }
    json!({
        "id": id,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": reply.finish_reason()}],
        "usage": usage_json(reply),
        "system_fingerprint": "fp_mock",
    })
}

/// The SSE events of a streamed reply, in order: a comment, the role chunk, content chunks,
/// tool-call chunks (id and name first, arguments in pieces), the finish chunk, the usage chunk
/// when asked for, and `[DONE]`.
pub(crate) fn stream_events(
    reply: &MockReply,
    id: &str,
    model: &str,
    include_usage: bool,
) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        let mut chunk = json!({
            "id": id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if include_usage {
            chunk["usage"] = Value::Null;
        }
        sse_data(&chunk)
    };
    let mut events = vec![": mock-openai keep-alive\n\n".to_string()];
    events.push(chunk(
        json!({"role": "assistant", "content": "", "refusal": null}),
        Value::Null,
    ));
    for piece in word_pieces(&reply.text) {
        events.push(chunk(json!({"content": piece}), Value::Null));
    }
    for (index, call) in reply.tool_calls.iter().enumerate() {
        let head = json!({"tool_calls": [{
            "index": index, "id": call.id, "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }]});
        events.push(chunk(head, Value::Null));
        for piece in argument_pieces(&call.arguments) {
            events.push(chunk(
                json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}),
                Value::Null,
            ));
        }
    }
    events.push(chunk(json!({}), json!(reply.finish_reason())));
    if include_usage {
        let usage = json!({
            "id": id, "object": "chat.completion.chunk", "created": CREATED, "model": model,
            "system_fingerprint": "fp_mock", "choices": [], "usage": usage_json(reply),
        });
        events.push(sse_data(&usage));
    }
    events.push("data: [DONE]\n\n".to_string());
    events
}

pub(crate) fn sse_data(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// OpenAI's error object for an HTTP status.
pub(crate) fn error_body(status: u16, message: &str, param: Option<&str>) -> Value {
    let (kind, code) = match status {
        401 => ("invalid_request_error", json!("invalid_api_key")),
        403 => (
            "invalid_request_error",
            json!("unsupported_country_region_territory"),
        ),
        404 => ("invalid_request_error", json!("model_not_found")),
        429 => ("requests", json!("rate_limit_exceeded")),
        400..=499 => ("invalid_request_error", Value::Null),
        _ => ("server_error", Value::Null),
    };
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}
