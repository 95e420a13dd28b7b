//! A mock of Anthropic Messages (`POST /v1/messages`, streamed). It checks `x-api-key`,
//! `anthropic-version`, the body schema and the transcript (alternating roles, every `tool_use`
//! answered by a `tool_result` in the next user turn, valid tool ids) as the real API does.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::reply::{MockReply, argument_pieces, word_pieces};
use crate::server::RecordedRequest;

use crate::upstream::{
    MockUpstream, Refusal, Wire, bad_request, named_event, refuse, require_header, unknown_key,
};

/// The running mock; `base_url()` is what `AnthropicConfig::base_url` takes.
pub type MockAnthropic = MockUpstream<AnthropicWire>;

/// Anthropic's format, with the API key the mock accepts.
pub struct AnthropicWire {
    pub api_key: String,
}

impl MockUpstream<AnthropicWire> {
    pub async fn start_anthropic(api_key: &str) -> std::io::Result<MockAnthropic> {
        MockUpstream::serve(AnthropicWire {
            api_key: api_key.into(),
        })
        .await
    }

    pub fn base_url(&self) -> String {
        self.origin()
    }
}

const TOP_LEVEL: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "tools",
    "tool_choice",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "metadata",
    "thinking",
    "service_tier",
];

fn valid_tool_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Wire for AnthropicWire {
    type Event = String;

    fn check(&self, request: &RecordedRequest, _query: &str) -> Result<(), Refusal> {
        if request.path != "/v1/messages" {
            return Err(refuse(404, format!("Not found: {}", request.path)));
        }
        require_header(
            request,
            "x-api-key",
            &self.api_key,
            "send your key as x-api-key",
        )?;
        match request.header("anthropic-version") {
            Some("2023-06-01") => {}
            other => {
                return Err(bad_request(format!(
                    "anthropic-version: unsupported or missing ({other:?})"
                )));
            }
        }
        let Some(body) = request.body.as_object() else {
            return Err(bad_request("body: expected a JSON object"));
        };
        if let Some(key) = unknown_key(body, TOP_LEVEL) {
            return Err(bad_request(format!(
                "{key}: Extra inputs are not permitted"
            )));
        }
        if body
            .get("model")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(bad_request("model: Field required"));
        }
        if body
            .get("max_tokens")
            .and_then(Value::as_u64)
            .is_none_or(|m| m == 0)
        {
            return Err(bad_request(
                "max_tokens: Field required (a positive integer)",
            ));
        }
        if body.get("stream") != Some(&Value::Bool(true)) {
            return Err(bad_request(
                "this mock serves only streamed requests (stream: true)",
            ));
        }
        match body.get("system") {
            None | Some(Value::String(_)) | Some(Value::Array(_)) => {}
            Some(_) => {
                return Err(bad_request(
                    "system: must be a string or a list of text blocks",
                ));
            }
        }
        for (i, tool) in body
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            if !tool["name"].is_string() || !tool["input_schema"].is_object() {
                return Err(bad_request(format!(
                    "tools.{i}: name and input_schema (an object) are required"
                )));
            }
        }
        let Some(messages) = body
            .get("messages")
            .and_then(Value::as_array)
            .filter(|m| !m.is_empty())
        else {
            return Err(bad_request("messages: at least one message is required"));
        };
        let mut open_calls: HashSet<String> = HashSet::new();
        let mut previous_role = "";
        for (i, message) in messages.iter().enumerate() {
            let role = message["role"].as_str().unwrap_or_default();
            if !matches!(role, "user" | "assistant") {
                return Err(bad_request(format!(
                    "messages.{i}.role: must be user or assistant, got {role:?}"
                )));
            }
            if i == 0 && role != "user" {
                return Err(bad_request(
                    "messages.0: the first message must use the user role",
                ));
            }
            if role == previous_role {
                return Err(bad_request(format!(
                    "messages.{i}: roles must alternate between user and assistant"
                )));
            }
            previous_role = role;
            let blocks = match &message["content"] {
                Value::String(text) if !text.is_empty() => continue,
                Value::Array(blocks) if !blocks.is_empty() => blocks,
                _ => {
                    return Err(bad_request(format!(
                        "messages.{i}.content: must be a non-empty string or list of blocks"
                    )));
                }
            };
            let mut answered = HashSet::new();
            for (j, block) in blocks.iter().enumerate() {
                let at = format!("messages.{i}.content.{j}");
                match (block["type"].as_str().unwrap_or_default(), role) {
                    ("text", _) if block["text"].as_str().is_some_and(|t| !t.is_empty()) => {}
                    ("text", _) => {
                        return Err(bad_request(format!(
                            "{at}: text content blocks must be non-empty"
                        )));
                    }
                    ("image", "user") if block["source"].is_object() => {}
                    ("tool_use", "assistant") => {
                        let id = block["id"].as_str().unwrap_or_default();
                        if !valid_tool_id(id) {
                            return Err(bad_request(format!(
                                "{at}.id: String should match pattern '^[a-zA-Z0-9_-]+$'"
                            )));
                        }
                        if !block["name"].is_string() || !block["input"].is_object() {
                            return Err(bad_request(format!(
                                "{at}: tool_use needs a name and an input object"
                            )));
                        }
                        open_calls.insert(id.to_string());
                    }
                    ("tool_result", "user") => {
                        let id = block["tool_use_id"].as_str().unwrap_or_default();
                        if !open_calls.contains(id) {
                            return Err(bad_request(format!(
                                "{at}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                            )));
                        }
                        answered.insert(id.to_string());
                    }
                    (kind, _) => {
                        return Err(bad_request(format!(
                            "{at}: block type {kind:?} is not allowed in a {role} message"
                        )));
                    }
                }
            }
            if role == "user" {
                if let Some(missing) = open_calls.iter().find(|id| !answered.contains(*id)) {
                    return Err(bad_request(format!(
                        "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {missing}"
                    )));
                }
                open_calls.clear();
            }
        }
        if !open_calls.is_empty() {
            // A transcript may end with the assistant's calls only if nothing follows; a request
            // never does (the model would answer itself), so refuse like the API.
            return Err(bad_request(
                "the final assistant message holds tool_use blocks without results",
            ));
        }
        Ok(())
    }

    fn error_body(&self, status: u16, message: &str) -> Value {
        let kind = match status {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            529 => "overloaded_error",
            _ => "api_error",
        };
        json!({"type": "error", "error": {"type": kind, "message": message}})
    }

    fn stream_events(
        &self,
        reply: &MockReply,
        request: &RecordedRequest,
        serial: u64,
    ) -> Vec<String> {
        let usage = reply.usage;
        let fresh = usage.prompt_tokens.saturating_sub(usage.cached_tokens);
        let mut events = vec![named_event(
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": format!("msg_mock{serial}"), "type": "message", "role": "assistant",
                "model": request.body["model"], "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": fresh, "cache_creation_input_tokens": 0,
                          "cache_read_input_tokens": usage.cached_tokens, "output_tokens": 1}}}),
        )];
        events.push(named_event("ping", &json!({"type": "ping"})));
        let mut index = 0;
        if !reply.text.is_empty() {
            events.push(named_event("content_block_start", &json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
            for piece in word_pieces(&reply.text) {
                events.push(named_event("content_block_delta", &json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}})));
            }
            events.push(named_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            ));
            index = 1;
        }
        for call in &reply.tool_calls {
            events.push(named_event("content_block_start", &json!({"type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}})));
            for piece in argument_pieces(&call.arguments) {
                events.push(named_event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": piece}}),
                ));
            }
            events.push(named_event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
            index += 1;
        }
        let stop = match reply.finish_reason() {
            "length" => "max_tokens",
            "tool_calls" => "tool_use",
            "content_filter" => "refusal",
            _ => "end_turn",
        };
        events.push(named_event("message_delta", &json!({"type": "message_delta",
            "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": usage.completion_tokens}})));
        events.push(named_event(
            "message_stop",
            &json!({"type": "message_stop"}),
        ));
        events
    }

    fn stream_error(&self, status: u16, message: &str) -> String {
        let status = if status == 503 { 529 } else { status };
        named_event("error", &self.error_body(status, message))
    }
}
