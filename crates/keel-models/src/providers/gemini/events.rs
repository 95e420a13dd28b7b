//! The response half of Gemini: each SSE `data:` is a `GenerateContentResponse` chunk with
//! candidate parts (text, whole `functionCall`s), a `finishReason` and `usageMetadata`.
//! Function calls get fresh keel ids, since Gemini sends none.

use std::sync::atomic::{AtomicU64, Ordering};

use keel_core::{FinishReason, Usage};
use serde::Deserialize;
use serde_json::Value;

use super::PROVIDER;
use crate::providers::streaming::{ErrorBody, EventDecoder, parse_json};
use crate::sse::SseEvent;
use crate::{ModelError, ModelErrorKind, StreamEvent};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Chunk {
    #[serde(default)]
    candidates: Vec<Candidate>,
    usage_metadata: Option<UsageMetadata>,
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<Content>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<WirePart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePart {
    text: Option<String>,
    #[serde(default)]
    thought: bool,
    function_call: Option<FunctionCall>,
}

#[derive(Deserialize)]
struct FunctionCall {
    name: String,
    #[serde(default)]
    args: Value,
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
}

/// Decoding state for one reply.
#[derive(Default)]
pub(in crate::providers) struct GenerateEvents {
    calls: usize,
    usage: Usage,
    finish: Option<FinishReason>,
}

/// Distinct call ids across the process: a transcript may hold many Gemini calls.
fn fresh_call_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("call_g{nanos:x}{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

impl EventDecoder for GenerateEvents {
    fn decode(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, ModelError> {
        let chunk: Chunk = parse_json(PROVIDER, &event.data)?;
        if let Some(error) = chunk.error {
            return Err(stream_error(&error));
        }
        let mut events = Vec::new();
        if let Some(candidate) = chunk.candidates.into_iter().next() {
            for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
                if let Some(text) = part.text.filter(|t| !t.is_empty() && !part.thought) {
                    events.push(StreamEvent::TextDelta(text));
                }
                if let Some(call) = part.function_call {
                    let index = self.calls;
                    self.calls += 1;
                    let args = if call.args.is_null() {
                        "{}".to_string()
                    } else {
                        call.args.to_string()
                    };
                    events.push(StreamEvent::ToolCallDelta {
                        index,
                        id: Some(
                            call.id
                                .filter(|id| !id.is_empty())
                                .unwrap_or_else(fresh_call_id),
                        ),
                        name: Some(call.name),
                        arguments: args,
                    });
                }
            }
            if let Some(reason) = candidate.finish_reason {
                self.finish = Some(finish_reason(&reason));
            }
        }
        if let Some(usage) = chunk.usage_metadata {
            self.usage = Usage {
                input_tokens: usage.prompt_token_count,
                output_tokens: usage
                    .candidates_token_count
                    .saturating_add(usage.thoughts_token_count),
                cached_input_tokens: usage.cached_content_token_count,
            };
        }
        Ok(events)
    }

    /// Gemini has no end marker: the body ends after the chunk with a finishReason.
    fn is_complete(&self) -> bool {
        false
    }

    fn may_end(&self) -> bool {
        self.finish.is_some()
    }

    fn finish(&mut self) -> Vec<StreamEvent> {
        let finish = match self.finish {
            Some(FinishReason::Stop) | None if self.calls > 0 => FinishReason::ToolCalls,
            Some(finish) => finish,
            None => FinishReason::Stop,
        };
        vec![StreamEvent::Usage(self.usage), StreamEvent::Finish(finish)]
    }
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "STOP" => FinishReason::Stop,
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            FinishReason::ContentFilter
        }
        "MALFORMED_FUNCTION_CALL" | "UNEXPECTED_TOOL_CALL" => FinishReason::Error,
        other => {
            tracing::debug!(reason = other, "unknown Gemini finishReason, taken as stop");
            FinishReason::Stop
        }
    }
}

/// Google's error object: `{"code": 429, "message": …, "status": "RESOURCE_EXHAUSTED"}`.
fn stream_error(error: &Value) -> ModelError {
    let message = error["message"].as_str().unwrap_or_default();
    let status = error["status"].as_str().unwrap_or_default();
    match error["code"].as_u64().and_then(|c| u16::try_from(c).ok()) {
        Some(code) => ModelError::from_status(PROVIDER, code, message, Some(status), None),
        None => {
            let error = ModelError::new(
                ModelErrorKind::Unavailable,
                PROVIDER,
                format!("error in stream: {message}"),
            );
            if status.is_empty() {
                error
            } else {
                error.with_code(status)
            }
        }
    }
}

/// The `message` of a Google error body (`{"error": {…}}` or a one-element array of it), or
/// the body, and its `status` (`INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED`, …).
pub(super) fn error_message(body: &str) -> ErrorBody {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let error = parsed.as_ref().map(|v| {
        if v.is_array() {
            &v[0]["error"]
        } else {
            &v["error"]
        }
    });
    ErrorBody {
        message: error
            .and_then(|e| e["message"].as_str())
            .map_or_else(|| body.to_string(), str::to_string),
        code: error.and_then(|e| e["status"].as_str()).map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn feed(d: &mut GenerateEvents, v: Value) -> Vec<StreamEvent> {
        d.decode(&SseEvent {
            event: None,
            data: v.to_string(),
            id: None,
        })
        .unwrap()
    }

    #[test]
    fn usage_counts_at_the_edge_of_u64_saturate_instead_of_overflowing() {
        let mut d = GenerateEvents::default();
        feed(
            &mut d,
            json!({"candidates": [], "usageMetadata": {"candidatesTokenCount": u64::MAX, "thoughtsTokenCount": 2}}),
        );
        assert!(matches!(
            d.finish()[0],
            StreamEvent::Usage(Usage {
                output_tokens: u64::MAX,
                ..
            })
        ));
    }

    #[test]
    fn parallel_calls_get_distinct_ids_and_tool_finish() {
        let mut d = GenerateEvents::default();
        let events = feed(
            &mut d,
            json!({"candidates": [{"content": {"role": "model", "parts": [
                {"functionCall": {"name": "a", "args": {"x": 1}}}, {"functionCall": {"name": "b", "args": {}}}]},
                "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3, "totalTokenCount": 10}}),
        );
        let ids: Vec<_> = events
            .iter()
            .filter_map(|e| {
                if let StreamEvent::ToolCallDelta { id, .. } = e {
                    id.clone()
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);
        assert!(d.may_end());
        assert_eq!(d.finish()[1], StreamEvent::Finish(FinishReason::ToolCalls));
    }

    #[test]
    fn google_errors_map_by_code() {
        let e =
            stream_error(&json!({"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}));
        assert_eq!(e.kind, ModelErrorKind::RateLimited);
        assert_eq!(
            error_message(
                r#"{"error": {"code": 400, "message": "bad", "status": "INVALID_ARGUMENT"}}"#
            ),
            ErrorBody {
                message: "bad".into(),
                code: Some("INVALID_ARGUMENT".into())
            }
        );
    }
}
