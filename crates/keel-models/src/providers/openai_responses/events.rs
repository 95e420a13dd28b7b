//! The response half of the Responses API: typed events (`response.output_item.added`,
//! `response.output_text.delta`, `response.function_call_arguments.delta`,
//! `response.completed`/`incomplete`/`failed`, `error`) become normalized events.

use std::collections::HashMap;

use keel_core::{FinishReason, Usage};
use serde_json::Value;

use super::PROVIDER;
use crate::providers::streaming::{EventDecoder, parse_json};
use crate::sse::SseEvent;
use crate::{ModelError, ModelErrorKind, StreamEvent};

/// Decoding state for one reply.
#[derive(Default)]
pub(in crate::providers) struct ResponseEvents {
    /// `output_index` of a function_call item → tool call index.
    calls: HashMap<u64, usize>,
    usage: Usage,
    finish: Option<FinishReason>,
}

impl EventDecoder for ResponseEvents {
    fn decode(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, ModelError> {
        let value: Value = parse_json(PROVIDER, &event.data)?;
        let kind = value["type"]
            .as_str()
            .or(event.event.as_deref())
            .unwrap_or_default();
        let output_index = value["output_index"].as_u64().unwrap_or(0);
        Ok(match kind {
            "response.output_text.delta" => {
                let delta = value["delta"].as_str().unwrap_or_default();
                if delta.is_empty() {
                    Vec::new()
                } else {
                    vec![StreamEvent::TextDelta(delta.to_string())]
                }
            }
            "response.output_item.added" if value["item"]["type"] == "function_call" => {
                let item = &value["item"];
                let index = self.calls.len();
                self.calls.insert(output_index, index);
                vec![StreamEvent::ToolCallDelta {
                    index,
                    id: item["call_id"].as_str().map(str::to_string),
                    name: item["name"].as_str().map(str::to_string),
                    arguments: item["arguments"].as_str().unwrap_or_default().to_string(),
                }]
            }
            "response.function_call_arguments.delta" => match self.calls.get(&output_index) {
                Some(index) => vec![StreamEvent::ToolCallDelta {
                    index: *index,
                    id: None,
                    name: None,
                    arguments: value["delta"].as_str().unwrap_or_default().to_string(),
                }],
                None => {
                    return Err(protocol(format!(
                        "arguments for output {output_index}, which is not a function_call item"
                    )));
                }
            },
            "response.completed" => {
                self.take_usage(&value["response"]);
                self.finish = Some(if self.calls.is_empty() {
                    FinishReason::Stop
                } else {
                    FinishReason::ToolCalls
                });
                Vec::new()
            }
            "response.incomplete" => {
                self.take_usage(&value["response"]);
                let reason = value["response"]["incomplete_details"]["reason"]
                    .as_str()
                    .unwrap_or_default();
                self.finish = Some(if reason == "content_filter" {
                    FinishReason::ContentFilter
                } else {
                    FinishReason::Length
                });
                Vec::new()
            }
            "response.failed" => return Err(stream_error(&value["response"]["error"])),
            "error" => return Err(stream_error(&value)),
            _ => Vec::new(),
        })
    }

    fn is_complete(&self) -> bool {
        self.finish.is_some()
    }

    fn finish(&mut self) -> Vec<StreamEvent> {
        vec![
            StreamEvent::Usage(self.usage),
            StreamEvent::Finish(self.finish.unwrap_or(FinishReason::Stop)),
        ]
    }
}

impl ResponseEvents {
    fn take_usage(&mut self, response: &Value) {
        let usage = &response["usage"];
        self.usage = Usage {
            input_tokens: usage["input_tokens"].as_u64().unwrap_or(0),
            output_tokens: usage["output_tokens"].as_u64().unwrap_or(0),
            cached_input_tokens: usage["input_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0),
        };
    }
}

fn protocol(message: String) -> ModelError {
    ModelError::new(ModelErrorKind::Protocol, PROVIDER, message)
}

/// An `error` event or a failed response's error (`code`, `message`).
fn stream_error(error: &Value) -> ModelError {
    let code = error["code"].as_str().unwrap_or_default();
    let message = error["message"].as_str().unwrap_or_default();
    let kind = match code {
        "rate_limit_exceeded" => ModelErrorKind::RateLimited,
        "invalid_prompt"
        | "invalid_request_error"
        | "context_length_exceeded"
        | "insufficient_quota" => ModelErrorKind::BadRequest,
        "invalid_api_key" => ModelErrorKind::Auth,
        _ => ModelErrorKind::Unavailable,
    };
    let error = ModelError::new(kind, PROVIDER, format!("error in stream: {message}"));
    if code.is_empty() {
        error
    } else {
        error.with_code(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feed(d: &mut ResponseEvents, v: Value) -> Result<Vec<StreamEvent>, ModelError> {
        d.decode(&SseEvent {
            event: v["type"].as_str().map(str::to_string),
            data: v.to_string(),
            id: None,
        })
    }

    #[test]
    fn function_call_items_stream_their_arguments_and_finish_as_tool_calls() {
        let mut d = ResponseEvents::default();
        let added = feed(&mut d, json!({"type": "response.output_item.added", "output_index": 1,
            "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": ""}})).unwrap();
        assert_eq!(
            added,
            [StreamEvent::ToolCallDelta {
                index: 0,
                id: Some("call_1".into()),
                name: Some("f".into()),
                arguments: String::new()
            }]
        );
        feed(&mut d, json!({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": "{}"})).unwrap();
        feed(&mut d, json!({"type": "response.completed", "response": {"usage": {"input_tokens": 3, "output_tokens": 2, "input_tokens_details": {"cached_tokens": 1}}}})).unwrap();
        assert!(d.is_complete());
        assert_eq!(d.finish()[1], StreamEvent::Finish(FinishReason::ToolCalls));
        let limited = feed(
            &mut ResponseEvents::default(),
            json!({"type": "error", "code": "rate_limit_exceeded", "message": "slow"}),
        )
        .unwrap_err();
        assert_eq!(limited.kind, ModelErrorKind::RateLimited);
    }
}
