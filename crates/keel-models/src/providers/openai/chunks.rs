//! The response half of the Chat Completions format: each SSE `data:` payload (a
//! `chat.completion.chunk`, an `{"error": …}` object or `[DONE]`) becomes normalized events.
//! Usage is passed on when it arrives; the finish reason is held back and sent last.

use keel_core::{FinishReason, Usage};
use serde::Deserialize;
use serde_json::Value;

use super::PROVIDER;
use crate::{ModelError, ModelErrorKind, StreamEvent};

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    /// A whole (non-streamed) `chat.completion` has a `message` where a chunk has a `delta`:
    /// it decodes as one chunk holding the entire reply.
    #[serde(alias = "message")]
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Default, Deserialize)]
struct Delta {
    content: Option<String>,
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    index: Option<usize>,
    id: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

/// The most tool calls one reply may carry. An index past it is a broken stream: it must not
/// size the table of calls (here and in `ReplyAccumulator`), which an index near `usize::MAX`
/// would make a multi-gigabyte allocation or an overflow.
const MAX_TOOL_CALLS: usize = 4096;

/// What a payload meant for the stream.
pub(crate) enum Decoded {
    Events(Vec<StreamEvent>),
    /// `[DONE]`: the reply is over.
    Done,
}

/// Decoding state for one reply.
#[derive(Default)]
pub(crate) struct ChunkDecoder {
    finish: Option<FinishReason>,
    saw_tool_call: bool,
    /// Per tool-call index: whether its id and its name were passed on already.
    announced: Vec<(bool, bool)>,
}

impl ChunkDecoder {
    pub(crate) fn decode(&mut self, data: &str) -> Result<Decoded, ModelError> {
        if data.trim() == "[DONE]" {
            return Ok(Decoded::Done);
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
            let start: String = data.chars().take(200).collect();
            ModelError::new(
                ModelErrorKind::Protocol,
                PROVIDER,
                format!("malformed stream chunk ({e}): {start}"),
            )
        })?;
        if let Some(error) = chunk.error {
            return Err(stream_error(&error));
        }
        let mut events = Vec::new();
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            let delta = choice.delta.unwrap_or_default();
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                events.push(StreamEvent::TextDelta(text));
            }
            for (position, call) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
                events.push(self.tool_call_delta(call, position)?);
            }
            if let Some(reason) = choice.finish_reason {
                self.finish = Some(finish_reason(&reason));
            }
        }
        if let Some(usage) = chunk.usage {
            events.push(StreamEvent::Usage(Usage {
                input_tokens: usage.prompt_tokens,
                output_tokens: usage.completion_tokens,
                cached_input_tokens: usage
                    .prompt_tokens_details
                    .and_then(|d| d.cached_tokens)
                    .unwrap_or(0),
            }));
        }
        Ok(Decoded::Events(events))
    }

    /// Some servers repeat the id and name in every piece; pass each on once.
    fn tool_call_delta(
        &mut self,
        call: ToolCallDelta,
        position: usize,
    ) -> Result<StreamEvent, ModelError> {
        self.saw_tool_call = true;
        let index = call.index.unwrap_or(position);
        if index >= MAX_TOOL_CALLS {
            return Err(ModelError::new(
                ModelErrorKind::Protocol,
                PROVIDER,
                format!(
                    "tool call index {index} in the stream is out of range (a reply carries at most {MAX_TOOL_CALLS} tool calls)"
                ),
            ));
        }
        if self.announced.len() <= index {
            self.announced.resize(index + 1, (false, false));
        }
        let (id_sent, name_sent) = &mut self.announced[index];
        let id = call.id.filter(|id| !id.is_empty() && !*id_sent);
        *id_sent |= id.is_some();
        let (name, arguments) = match call.function {
            Some(f) => (
                f.name.filter(|n| !n.is_empty() && !*name_sent),
                f.arguments.unwrap_or_default(),
            ),
            None => (None, String::new()),
        };
        *name_sent |= name.is_some();
        Ok(StreamEvent::ToolCallDelta {
            index,
            id,
            name,
            arguments,
        })
    }

    /// Whether a finish reason arrived (the reply is complete even without `[DONE]`).
    pub(crate) fn has_finished(&self) -> bool {
        self.finish.is_some()
    }

    /// The last event of the reply. Some servers say `stop` after tool calls; that is `ToolCalls`.
    pub(crate) fn finish(&self) -> StreamEvent {
        let finish = match self.finish {
            Some(FinishReason::Stop) | None if self.saw_tool_call => FinishReason::ToolCalls,
            Some(finish) => finish,
            None => FinishReason::Stop,
        };
        StreamEvent::Finish(finish)
    }
}

fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => {
            tracing::debug!(reason = other, "unknown finish_reason, taken as stop");
            FinishReason::Stop
        }
    }
}

/// A whole `chat.completion` body (a non-streamed call) as a reply, decoded as one chunk.
pub(crate) fn whole_reply(body: &str) -> Result<crate::ModelReply, ModelError> {
    let mut decoder = ChunkDecoder::default();
    let mut reply = crate::ReplyAccumulator::default();
    if let Decoded::Events(events) = decoder.decode(body)? {
        for event in events {
            reply.push(event);
        }
    }
    reply.push(decoder.finish());
    Ok(reply.finish())
}

/// An `{"error": …}` object sent inside the stream. OpenAI names a `type`/`code`; vLLM and
/// llama.cpp put the HTTP status in `code`.
pub(super) fn stream_error(error: &Value) -> ModelError {
    let message = error["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| error.to_string());
    let kind_name = error["type"].as_str().unwrap_or_default();
    let code = &error["code"];
    if let Some(status) = code
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c))
    {
        let label = error["type"].as_str();
        return ModelError::from_status(PROVIDER, status, &message, label, None);
    }
    let code = code.as_str().unwrap_or_default();
    let kind = match (kind_name, code) {
        (_, "rate_limit_exceeded") | ("requests" | "tokens" | "rate_limit_error", _) => {
            ModelErrorKind::RateLimited
        }
        (_, "invalid_api_key") | ("authentication_error" | "permission_error", _) => {
            ModelErrorKind::Auth
        }
        ("invalid_request_error", _) => ModelErrorKind::BadRequest,
        _ => ModelErrorKind::Unavailable,
    };
    let label = if code.is_empty() { kind_name } else { code };
    let error = ModelError::new(kind, PROVIDER, format!("error in stream: {message}"));
    if label.is_empty() {
        error
    } else {
        error.with_code(label)
    }
}

/// The chunk decoder under the shared SSE call's `EventDecoder` contract, for every provider
/// that speaks Chat Completions (OpenAI and compatible servers, Azure): errors carry `provider`.
pub(crate) struct ChatChunks {
    chunks: ChunkDecoder,
    done: bool,
    provider: &'static str,
}

impl ChatChunks {
    pub(crate) fn new(provider: &'static str) -> Self {
        ChatChunks {
            chunks: ChunkDecoder::default(),
            done: false,
            provider,
        }
    }
}

impl crate::providers::streaming::EventDecoder for ChatChunks {
    fn decode(&mut self, event: &crate::sse::SseEvent) -> Result<Vec<StreamEvent>, ModelError> {
        let decoded = self.chunks.decode(&event.data).map_err(|e| ModelError {
            provider: self.provider.into(),
            ..e
        })?;
        match decoded {
            Decoded::Events(events) => Ok(events),
            Decoded::Done => {
                self.done = true;
                Ok(Vec::new())
            }
        }
    }

    fn is_complete(&self) -> bool {
        self.done
    }

    fn may_end(&self) -> bool {
        self.done || self.chunks.has_finished()
    }

    fn finish(&mut self) -> Vec<StreamEvent> {
        vec![self.chunks.finish()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn events(decoder: &mut ChunkDecoder, data: Value) -> Vec<StreamEvent> {
        match decoder.decode(&data.to_string()).unwrap() {
            Decoded::Events(events) => events,
            Decoded::Done => panic!("not done"),
        }
    }

    #[test]
    fn passes_id_and_name_once_even_when_repeated() {
        let mut decoder = ChunkDecoder::default();
        let piece = |args: &str| {
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": 1, "id": "c", "function": {"name": "f", "arguments": args}}]}}]})
        };
        let first = events(&mut decoder, piece("{\"a\""));
        let second = events(&mut decoder, piece(":1}"));
        assert_eq!(
            first,
            [StreamEvent::ToolCallDelta {
                index: 1,
                id: Some("c".into()),
                name: Some("f".into()),
                arguments: "{\"a\"".into()
            }]
        );
        assert_eq!(
            second,
            [StreamEvent::ToolCallDelta {
                index: 1,
                id: None,
                name: None,
                arguments: ":1}".into()
            }]
        );
        assert_eq!(
            decoder.finish(),
            StreamEvent::Finish(FinishReason::ToolCalls)
        );
    }

    #[test]
    fn a_tool_call_index_out_of_range_is_a_protocol_error_not_an_allocation() {
        for index in [MAX_TOOL_CALLS as u64, 4_000_000_000, u64::MAX] {
            let chunk = json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": index, "function": {"arguments": "{}"}}]}}]});
            let error = match ChunkDecoder::default().decode(&chunk.to_string()) {
                Err(error) => error,
                Ok(_) => panic!("index {index} was accepted"),
            };
            assert_eq!(error.kind, ModelErrorKind::Protocol, "index {index}");
            assert!(error.message.contains("out of range"), "{}", error.message);
        }
        let last = json!({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": MAX_TOOL_CALLS - 1, "function": {"arguments": "{}"}}]}}]});
        assert!(ChunkDecoder::default().decode(&last.to_string()).is_ok());
    }

    #[test]
    fn maps_finish_reasons_and_in_stream_errors() {
        assert_eq!(finish_reason("length"), FinishReason::Length);
        assert_eq!(finish_reason("content_filter"), FinishReason::ContentFilter);
        assert_eq!(finish_reason("eos"), FinishReason::Stop);
        let vllm = stream_error(
            &json!({"object": "error", "message": "too long", "type": "BadRequestError", "code": 400}),
        );
        assert_eq!(
            (vllm.kind, vllm.status),
            (ModelErrorKind::BadRequest, Some(400))
        );
        let limited = stream_error(
            &json!({"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}),
        );
        assert_eq!(limited.kind, ModelErrorKind::RateLimited);
        assert_eq!(
            stream_error(&json!({"message": "oops", "type": "server_error"})).kind,
            ModelErrorKind::Unavailable
        );
    }
}
