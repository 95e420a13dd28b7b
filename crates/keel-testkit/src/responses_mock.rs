//! A mock of the OpenAI Responses API (`POST /v1/responses`, streamed as typed events). It checks
//! the bearer key, the body schema and the `input` items (every `function_call` answered by a
//! `function_call_output` with its `call_id`, no output without its call) as the real API does.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::openai_mock::render::error_body;
use crate::reply::MockReply;
use crate::reply::{argument_pieces, word_pieces};
use crate::server::RecordedRequest;

use crate::upstream::{
    MockUpstream, Refusal, Wire, bad_request, named_event, refuse, require_header, unknown_key,
};

/// The running mock; `base_url()` is what `ResponsesConfig::base_url` takes.
pub type MockResponses = MockUpstream<ResponsesWire>;

pub struct ResponsesWire {
    pub api_key: String,
}

impl MockUpstream<ResponsesWire> {
    pub async fn start_responses(api_key: &str) -> std::io::Result<MockResponses> {
        MockUpstream::serve(ResponsesWire {
            api_key: api_key.into(),
        })
        .await
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.origin())
    }
}

const TOP_LEVEL: &[&str] = &[
    "model",
    "input",
    "instructions",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "stream",
    "store",
    "max_output_tokens",
    "temperature",
    "top_p",
    "previous_response_id",
    "reasoning",
    "text",
    "metadata",
    "user",
    "include",
    "truncation",
    "prompt_cache_key",
    "safety_identifier",
    "service_tier",
];

impl Wire for ResponsesWire {
    type Event = String;

    fn check(&self, request: &RecordedRequest, _query: &str) -> Result<(), Refusal> {
        if request.path != "/v1/responses" {
            return Err(refuse(404, format!("Invalid URL (POST {})", request.path)));
        }
        require_header(
            request,
            "authorization",
            &format!("Bearer {}", self.api_key),
            "send 'Authorization: Bearer KEY'",
        )?;
        let Some(body) = request.body.as_object() else {
            return Err(bad_request("The body must be a JSON object."));
        };
        if let Some(key) = unknown_key(body, TOP_LEVEL) {
            return Err(bad_request(format!("Unknown parameter: '{key}'.")));
        }
        if body
            .get("model")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(bad_request("Missing required parameter: 'model'."));
        }
        if body.get("stream") != Some(&Value::Bool(true)) {
            return Err(bad_request(
                "this mock serves only streamed requests (stream: true)",
            ));
        }
        for (i, tool) in body
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if tool["type"] != "function"
                || !tool["name"].is_string()
                || !tool["parameters"].is_object()
            {
                return Err(bad_request(format!(
                    "Invalid 'tools[{i}]': a function tool needs type, name and parameters."
                )));
            }
        }
        let Some(input) = body.get("input").and_then(Value::as_array) else {
            return Err(bad_request("Invalid 'input': expected an array of items."));
        };
        let mut calls = HashSet::new();
        let mut answered = HashSet::new();
        for (i, item) in input.iter().enumerate() {
            match item["type"].as_str().unwrap_or("message") {
                "message" => {
                    let role = item["role"].as_str().unwrap_or_default();
                    let text_type = match role {
                        "user" | "system" | "developer" => "input_text",
                        "assistant" => "output_text",
                        _ => {
                            return Err(bad_request(format!(
                                "Invalid value for 'input[{i}].role': {role:?}."
                            )));
                        }
                    };
                    let parts = match &item["content"] {
                        Value::String(_) => continue,
                        Value::Array(parts) if !parts.is_empty() => parts,
                        _ => {
                            return Err(bad_request(format!(
                                "Invalid 'input[{i}].content': a string or a non-empty array."
                            )));
                        }
                    };
                    for (j, part) in parts.iter().enumerate() {
                        let kind = part["type"].as_str().unwrap_or_default();
                        let ok = (kind == text_type && part["text"].is_string())
                            || (kind == "input_image" && role == "user");
                        if !ok {
                            return Err(bad_request(format!(
                                "Invalid value: '{kind}'. 'input[{i}].content[{j}]' of a {role} message must be {text_type}."
                            )));
                        }
                    }
                }
                "function_call" => {
                    let id = item["call_id"].as_str().unwrap_or_default();
                    let args_json = item["arguments"]
                        .as_str()
                        .is_some_and(|a| serde_json::from_str::<Value>(a).is_ok());
                    if id.is_empty() || !item["name"].is_string() || !args_json {
                        return Err(bad_request(format!(
                            "Invalid 'input[{i}]': function_call needs call_id, name and JSON arguments text."
                        )));
                    }
                    calls.insert(id.to_string());
                }
                "function_call_output" => {
                    let id = item["call_id"].as_str().unwrap_or_default();
                    if !calls.contains(id) {
                        return Err(bad_request(format!(
                            "No tool call found for function call output with call_id {id}."
                        )));
                    }
                    if !item["output"].is_string() {
                        return Err(bad_request(format!(
                            "Invalid 'input[{i}].output': expected a string."
                        )));
                    }
                    answered.insert(id.to_string());
                }
                other => {
                    return Err(bad_request(format!(
                        "Invalid value: '{other}' for 'input[{i}].type'."
                    )));
                }
            }
        }
        if let Some(open) = calls.difference(&answered).next() {
            return Err(bad_request(format!(
                "No tool output found for function call {open}."
            )));
        }
        Ok(())
    }

    fn error_body(&self, status: u16, message: &str) -> Value {
        error_body(status, message, None)
    }

    fn stream_events(
        &self,
        reply: &MockReply,
        request: &RecordedRequest,
        serial: u64,
    ) -> Vec<String> {
        let id = format!("resp_mock{serial}");
        let model = request.body["model"].clone();
        let mut sequence = 0u64;
        let mut events = Vec::new();
        let mut push = |kind: &str, mut data: Value| {
            data["type"] = json!(kind);
            data["sequence_number"] = json!(sequence);
            sequence += 1;
            events.push(named_event(kind, &data));
        };
        let response = |status: &str| json!({"id": id, "object": "response", "created_at": 1_700_000_000, "status": status, "model": model, "output": []});
        push(
            "response.created",
            json!({"response": response("in_progress")}),
        );
        push(
            "response.in_progress",
            json!({"response": response("in_progress")}),
        );
        let mut output_index = 0;
        if !reply.text.is_empty() {
            let item_id = format!("msg_mock{serial}");
            push(
                "response.output_item.added",
                json!({"output_index": 0, "item": {"id": item_id, "type": "message", "status": "in_progress", "role": "assistant", "content": []}}),
            );
            push(
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}}),
            );
            for piece in word_pieces(&reply.text) {
                push(
                    "response.output_text.delta",
                    json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": piece}),
                );
            }
            push(
                "response.output_text.done",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": reply.text}),
            );
            push(
                "response.output_item.done",
                json!({"output_index": 0, "item": {"id": item_id, "type": "message", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": reply.text, "annotations": []}]}}),
            );
            output_index = 1;
        }
        for (n, call) in reply.tool_calls.iter().enumerate() {
            let item_id = format!("fc_mock{serial}_{n}");
            push(
                "response.output_item.added",
                json!({"output_index": output_index, "item": {"id": item_id, "type": "function_call",
                "status": "in_progress", "call_id": call.id, "name": call.name, "arguments": ""}}),
            );
            for piece in argument_pieces(&call.arguments) {
                push(
                    "response.function_call_arguments.delta",
                    json!({"item_id": item_id, "output_index": output_index, "delta": piece}),
                );
            }
            push(
                "response.function_call_arguments.done",
                json!({"item_id": item_id, "output_index": output_index, "arguments": call.arguments}),
            );
            push(
                "response.output_item.done",
                json!({"output_index": output_index, "item": {"id": item_id, "type": "function_call",
                "status": "completed", "call_id": call.id, "name": call.name, "arguments": call.arguments}}),
            );
            output_index += 1;
        }
        let usage = reply.usage;
        let usage = json!({"input_tokens": usage.prompt_tokens, "input_tokens_details": {"cached_tokens": usage.cached_tokens},
            "output_tokens": usage.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.prompt_tokens + usage.completion_tokens});
        let (kind, status, details) = match reply.finish_reason() {
            "length" => (
                "response.incomplete",
                "incomplete",
                json!({"reason": "max_output_tokens"}),
            ),
            "content_filter" => (
                "response.incomplete",
                "incomplete",
                json!({"reason": "content_filter"}),
            ),
            _ => ("response.completed", "completed", Value::Null),
        };
        let mut done = response(status);
        done["usage"] = usage;
        done["incomplete_details"] = details;
        push(kind, json!({"response": done}));
        events
    }

    fn stream_error(&self, status: u16, message: &str) -> String {
        let code = if status == 429 {
            "rate_limit_exceeded"
        } else if status >= 500 {
            "server_error"
        } else {
            "invalid_request_error"
        };
        named_event(
            "error",
            &json!({"type": "error", "code": code, "message": message, "param": null, "sequence_number": 99}),
        )
    }
}
