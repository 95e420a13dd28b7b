//! The response half of Anthropic Messages: its SSE events (`message_start`,
//! `content_block_start/delta/stop`, `message_delta`, `message_stop`, `ping`, `error`) become
//! normalized events. Tool-use blocks are numbered among themselves, skipping text blocks.

use std::collections::HashMap;

use keel_core::{FinishReason, Usage};
use serde::Deserialize;
use serde_json::Value;

use super::PROVIDER;
use crate::providers::streaming::{ErrorBody, EventDecoder, parse_json};
use crate::sse::SseEvent;
use crate::{ModelError, ModelErrorKind, StreamEvent};

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: usize,
        content_block: Block,
    },
    ContentBlockDelta {
        index: usize,
        delta: Delta,
    },
    ContentBlockStop {},
    MessageDelta {
        delta: MessageDelta,
        usage: Option<WireUsage>,
    },
    MessageStop {},
    Ping {},
    Error {
        error: Value,
    },
}

#[derive(Deserialize)]
struct StartMessage {
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::enum_variant_names)] // Anthropic's own type names.
enum Delta {
    TextDelta {
        text: String,
    },
    InputJsonDelta {
        partial_json: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct MessageDelta {
    stop_reason: Option<String>,
}

#[derive(Default, Deserialize)]
struct WireUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

/// Decoding state for one reply.
#[derive(Default)]
pub(in crate::providers) struct MessageEvents {
    /// Content block index → tool call index.
    tools: HashMap<usize, usize>,
    usage: Usage,
    finish: Option<FinishReason>,
    stopped: bool,
}

impl EventDecoder for MessageEvents {
    fn decode(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, ModelError> {
        let parsed: Event = parse_json(PROVIDER, &event.data)?;
        Ok(match parsed {
            Event::MessageStart { message } => {
                self.add_usage(message.usage.unwrap_or_default());
                Vec::new()
            }
            Event::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                Block::Text { text } if !text.is_empty() => vec![StreamEvent::TextDelta(text)],
                Block::ToolUse { id, name } => {
                    let call = self.tools.len();
                    self.tools.insert(index, call);
                    vec![StreamEvent::ToolCallDelta {
                        index: call,
                        id: Some(id),
                        name: Some(name),
                        arguments: String::new(),
                    }]
                }
                Block::Text { .. } | Block::Other => Vec::new(),
            },
            Event::ContentBlockDelta { index, delta } => match delta {
                Delta::TextDelta { text } => vec![StreamEvent::TextDelta(text)],
                Delta::InputJsonDelta { partial_json } => match self.tools.get(&index) {
                    Some(call) => vec![StreamEvent::ToolCallDelta {
                        index: *call,
                        id: None,
                        name: None,
                        arguments: partial_json,
                    }],
                    None => {
                        return Err(protocol(format!(
                            "input_json_delta for block {index}, which is not a tool_use block"
                        )));
                    }
                },
                Delta::Other => Vec::new(),
            },
            Event::MessageDelta { delta, usage } => {
                if let Some(reason) = delta.stop_reason {
                    self.finish = Some(finish_reason(&reason));
                }
                self.add_usage(usage.unwrap_or_default());
                Vec::new()
            }
            Event::MessageStop {} => {
                self.stopped = true;
                Vec::new()
            }
            Event::ContentBlockStop {} | Event::Ping {} => Vec::new(),
            Event::Error { error } => return Err(stream_error(&error)),
        })
    }

    fn is_complete(&self) -> bool {
        self.stopped
    }

    fn finish(&mut self) -> Vec<StreamEvent> {
        let finish = match self.finish {
            Some(finish) => finish,
            None if !self.tools.is_empty() => FinishReason::ToolCalls,
            None => FinishReason::Stop,
        };
        vec![StreamEvent::Usage(self.usage), StreamEvent::Finish(finish)]
    }
}

impl MessageEvents {
    /// Anthropic's `input_tokens` excludes cache reads and writes; keel counts all input.
    fn add_usage(&mut self, usage: WireUsage) {
        let cached = usage.cache_read_input_tokens.unwrap_or(0);
        if let Some(input) = usage.input_tokens {
            self.usage.input_tokens = input
                .saturating_add(cached)
                .saturating_add(usage.cache_creation_input_tokens.unwrap_or(0));
            self.usage.cached_input_tokens = cached;
        }
        if let Some(output) = usage.output_tokens {
            self.usage.output_tokens = output;
        }
    }
}

fn protocol(message: String) -> ModelError {
    ModelError::new(ModelErrorKind::Protocol, PROVIDER, message)
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "end_turn" | "stop_sequence" | "pause_turn" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        other => {
            tracing::debug!(
                reason = other,
                "unknown Anthropic stop_reason, taken as stop"
            );
            FinishReason::Stop
        }
    }
}

/// An `error` event inside the stream, by Anthropic's documented error types.
fn stream_error(error: &Value) -> ModelError {
    let kind_name = error["type"].as_str().unwrap_or_default();
    let message = error["message"].as_str().unwrap_or_default();
    let kind = match kind_name {
        "rate_limit_error" => ModelErrorKind::RateLimited,
        "authentication_error" | "permission_error" => ModelErrorKind::Auth,
        "invalid_request_error" | "not_found_error" | "request_too_large" => {
            ModelErrorKind::BadRequest
        }
        "timeout_error" => ModelErrorKind::Timeout,
        _ => ModelErrorKind::Unavailable,
    };
    let error = ModelError::new(kind, PROVIDER, format!("error in stream: {message}"));
    if kind_name.is_empty() {
        error
    } else {
        error.with_code(kind_name)
    }
}

/// The `message` of an Anthropic error body (`{"type":"error","error":{…}}`), or the body,
/// and its error `type`.
pub(super) fn error_message(body: &str) -> ErrorBody {
    let parsed = serde_json::from_str::<Value>(body).ok();
    let error = parsed.as_ref().map(|v| &v["error"]);
    ErrorBody {
        message: error
            .and_then(|e| e["message"].as_str())
            .map_or_else(|| body.to_string(), str::to_string),
        code: error.and_then(|e| e["type"].as_str()).map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feed(decoder: &mut MessageEvents, value: Value) -> Vec<StreamEvent> {
        decoder
            .decode(&SseEvent {
                event: value["type"].as_str().map(str::to_string),
                data: value.to_string(),
                id: None,
            })
            .unwrap()
    }

    #[test]
    fn usage_counts_at_the_edge_of_u64_saturate_instead_of_overflowing() {
        let mut d = MessageEvents::default();
        feed(
            &mut d,
            json!({"type": "message_start", "message": {"usage": {"input_tokens": u64::MAX, "cache_read_input_tokens": 1, "cache_creation_input_tokens": 1}}}),
        );
        assert!(matches!(
            d.finish()[0],
            StreamEvent::Usage(Usage {
                input_tokens: u64::MAX,
                cached_input_tokens: 1,
                ..
            })
        ));
    }

    #[test]
    fn numbers_tool_blocks_apart_from_text_and_counts_cached_input() {
        let mut d = MessageEvents::default();
        feed(
            &mut d,
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 5, "cache_read_input_tokens": 20, "output_tokens": 1}}}),
        );
        feed(
            &mut d,
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        );
        assert_eq!(
            feed(
                &mut d,
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}})
            ),
            [StreamEvent::TextDelta("Hi".into())]
        );
        let start = feed(
            &mut d,
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}}),
        );
        assert_eq!(
            start,
            [StreamEvent::ToolCallDelta {
                index: 0,
                id: Some("toolu_1".into()),
                name: Some("f".into()),
                arguments: String::new()
            }]
        );
        feed(
            &mut d,
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
        );
        feed(&mut d, json!({"type": "message_stop"}));
        assert!(d.is_complete());
        assert_eq!(
            d.finish(),
            [
                StreamEvent::Usage(Usage {
                    input_tokens: 25,
                    output_tokens: 9,
                    cached_input_tokens: 20
                }),
                StreamEvent::Finish(FinishReason::ToolCalls)
            ]
        );
    }

    #[test]
    fn overloaded_in_stream_is_retryable_and_invalid_request_is_not() {
        assert!(
            stream_error(&json!({"type": "overloaded_error", "message": "busy"})).is_retryable()
        );
        assert!(
            !stream_error(&json!({"type": "invalid_request_error", "message": "bad"}))
                .is_retryable()
        );
    }
}
