//! A deterministic, in-process model for tests and benchmarks. It echoes the user, calls tools
//! when asked (`/call NAME {json}`), sums up tool results, fails when asked (`/fail TEXT`),
//! and streams word by word with a configurable latency, so everything above the model layer
//! can be exercised without a provider. `/panic TEXT` makes it panic, to test a caller's panic
//! handling end to end.
//!
//! It honours `tool_choice` (`none` makes no calls; `required` and a named tool call one with
//! `{}` when the user asked for none) and `response_format` (JSON mode wraps the reply as
//! `{"reply": …}`; a JSON Schema gets an instance of the schema with the reply in its strings).

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use keel_core::{FinishReason, Message, Part, Role, Usage};
use serde_json::{Value, json};

use crate::{
    ModelClient, ModelError, ModelErrorKind, ModelRequest, ModelStream, ResponseFormat,
    StreamEvent, ToolChoice,
};

const PROVIDER: &str = "scripted";

/// How the scripted model paces and sizes its replies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScriptedConfig {
    /// Wait before the first event.
    pub first_token_latency: Duration,
    /// Wait before each further text or tool-call piece.
    pub token_latency: Duration,
    /// Reply with exactly this many word-tokens (`tok1 tok2 …`) instead of echoing.
    pub reply_tokens: Option<usize>,
}

/// The scripted model. Same request, same reply, always.
#[derive(Clone, Debug, Default)]
pub struct ScriptedClient {
    config: ScriptedConfig,
}

/// What the model decided to say.
enum Reply {
    Text(String),
    ToolCalls(Vec<(String, Value)>),
}

impl ScriptedClient {
    pub fn new(config: ScriptedConfig) -> ScriptedClient {
        ScriptedClient { config }
    }

    /// The whole reply as events, before pacing.
    fn events(&self, request: &ModelRequest) -> Result<Vec<StreamEvent>, ModelError> {
        let input_tokens = request_words(request);
        let mut events = Vec::new();
        let (output_tokens, finish) = match self.reply(request)? {
            Reply::ToolCalls(calls) => {
                let mut output = 0;
                for (index, (name, arguments)) in calls.into_iter().enumerate() {
                    let arguments = arguments.to_string();
                    output += 1 + arguments.split_whitespace().count() as u64;
                    let id = format!("call_{}_{index}", request.messages.len());
                    events.push(StreamEvent::ToolCallDelta {
                        index,
                        id: Some(id),
                        name: Some(name),
                        arguments,
                    });
                }
                (output, FinishReason::ToolCalls)
            }
            Reply::Text(text) => {
                let text = cut_at_stop(&text, &request.params.stop);
                let mut pieces = word_pieces(text);
                let limit = request.params.max_tokens.map_or(usize::MAX, |m| m as usize);
                let finish = if pieces.len() > limit {
                    FinishReason::Length
                } else {
                    FinishReason::Stop
                };
                pieces.truncate(limit);
                let output = pieces.len() as u64;
                events.extend(
                    pieces
                        .into_iter()
                        .map(|p| StreamEvent::TextDelta(p.to_string())),
                );
                (output, finish)
            }
        };
        events.push(StreamEvent::Usage(Usage {
            input_tokens,
            output_tokens,
            cached_input_tokens: 0,
        }));
        events.push(StreamEvent::Finish(finish));
        Ok(events)
    }

    fn reply(&self, request: &ModelRequest) -> Result<Reply, ModelError> {
        let last_user = request
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User)
            .map(Message::text_content);
        if let Some(text) = &last_user
            && let Some(at) = text.find("/panic")
        {
            panic!("scripted panic: {}", text[at + "/panic".len()..].trim());
        }
        if let Some(text) = &last_user
            && let Some(at) = text.find("/fail")
        {
            let reason = text[at + "/fail".len()..]
                .lines()
                .next()
                .unwrap_or("")
                .trim();
            return Err(ModelError::new(
                ModelErrorKind::Unavailable,
                PROVIDER,
                format!("scripted failure: {reason}"),
            ));
        }
        let choice = request.tool_choice(PROVIDER)?;
        let asked = match request.messages.last() {
            Some(last) if last.role == Role::User => parse_calls(&last.text_content())?,
            _ => Vec::new(),
        };
        let calls = match choice {
            // `none` holds even with no tools offered (where `tool_choice` says nothing).
            _ if request.params.tool_choice == Some(ToolChoice::None) => Vec::new(),
            Some(ToolChoice::Tool { name }) => {
                let named: Vec<_> = asked.into_iter().filter(|(n, _)| n == name).collect();
                if named.is_empty() {
                    vec![(name.clone(), json!({}))]
                } else {
                    named
                }
            }
            Some(ToolChoice::Required) if asked.is_empty() => {
                vec![(request.tools[0].name.clone(), json!({}))]
            }
            _ => asked,
        };
        if !calls.is_empty() {
            return Ok(Reply::ToolCalls(calls));
        }
        let results = trailing_tool_results(&request.messages);
        let text = if results.is_empty() {
            self.echo(last_user.as_deref().unwrap_or(""))
        } else {
            format!("tool results: {}", results.join("; "))
        };
        Ok(Reply::Text(shaped(text, request.response_format())))
    }

    fn echo(&self, text: &str) -> String {
        match self.config.reply_tokens {
            Some(n) => (1..=n)
                .map(|i| format!("tok{i}"))
                .collect::<Vec<_>>()
                .join(" "),
            None => format!("echo: {text}"),
        }
    }
}

/// `/call NAME {json}` lines; arguments default to `{}`.
fn parse_calls(text: &str) -> Result<Vec<(String, Value)>, ModelError> {
    let mut calls = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix("/call ") else {
            continue;
        };
        let rest = rest.trim();
        let (name, arguments) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let arguments = match arguments.trim() {
            "" => Value::Object(Default::default()),
            json => serde_json::from_str(json).map_err(|e| {
                ModelError::new(
                    ModelErrorKind::BadRequest,
                    PROVIDER,
                    format!("`/call {name}` arguments are not valid JSON ({e}): {json}; write e.g. /call {name} {{\"x\": 1}}"),
                )
            })?,
        };
        if name.is_empty() {
            return Err(ModelError::new(
                ModelErrorKind::BadRequest,
                PROVIDER,
                "`/call` needs a tool name: /call NAME {json}",
            ));
        }
        calls.push((name.to_string(), arguments));
    }
    Ok(calls)
}

/// The reply text in the asked format.
fn shaped(text: String, format: Option<&ResponseFormat>) -> String {
    match format {
        None | Some(ResponseFormat::Text) => text,
        Some(ResponseFormat::JsonObject) => json!({ "reply": text }).to_string(),
        Some(ResponseFormat::JsonSchema { schema, .. }) => instance(schema, &text).to_string(),
    }
}

/// A value valid against a simple JSON Schema: `const`, the first `enum` value or `anyOf` /
/// `oneOf` / `allOf` branch, objects with every property, one item where `minItems` asks,
/// the minimum for numbers, and `text` in strings. References are not followed.
fn instance(schema: &Value, text: &str) -> Value {
    if let Some(value) = schema.get("const") {
        return value.clone();
    }
    if let Some(value) = schema.get("enum").and_then(|e| e.get(0)) {
        return value.clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(first) = schema.get(key).and_then(|b| b.get(0)) {
            return instance(first, text);
        }
    }
    let kind = match schema.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    match kind {
        "object" => Value::Object(
            schema
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(|(name, property)| (name.clone(), instance(property, text)))
                .collect(),
        ),
        "array" => {
            let wanted = schema.get("minItems").and_then(Value::as_u64).unwrap_or(0);
            let item = schema.get("items").cloned().unwrap_or(json!({}));
            Value::Array((0..wanted).map(|_| instance(&item, text)).collect())
        }
        "integer" | "number" => schema.get("minimum").cloned().unwrap_or(json!(0)),
        "boolean" => json!(false),
        "null" => Value::Null,
        _ => json!(text),
    }
}

/// `call_id=content` for the tool results at the end of the conversation, oldest first.
fn trailing_tool_results(messages: &[Message]) -> Vec<String> {
    let results = |m: &Message| -> Vec<String> {
        m.parts
            .iter()
            .filter_map(|p| match p {
                Part::ToolResult {
                    call_id, content, ..
                } => Some(format!("{call_id}={content}")),
                _ => None,
            })
            .collect()
    };
    let mut trailing: Vec<Vec<String>> = messages
        .iter()
        .rev()
        .map(results)
        .take_while(|r| !r.is_empty())
        .collect();
    trailing.reverse();
    trailing.concat()
}

/// The text before the earliest stop sequence.
fn cut_at_stop<'a>(text: &'a str, stop: &[String]) -> &'a str {
    let end = stop
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min();
    &text[..end.unwrap_or(text.len())]
}

/// Each word with the whitespace before it: the pieces concatenate to the exact text.
fn word_pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut prev_space = true;
    for (i, c) in text.char_indices() {
        let space = c.is_whitespace();
        if space && !prev_space {
            pieces.push(&text[start..i]);
            start = i;
        }
        prev_space = space;
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// A deterministic size of the request: its words (images count one each).
fn request_words(request: &ModelRequest) -> u64 {
    let words = |s: &str| s.split_whitespace().count() as u64;
    let mut count = request.system.as_deref().map_or(0, words);
    for part in request.messages.iter().flat_map(|m| &m.parts) {
        count += match part {
            Part::Text { text } => words(text),
            Part::Image { .. } => 1,
            Part::ToolCall { arguments, .. } => 1 + words(&arguments.to_string()),
            Part::ToolResult { content, .. } => words(content),
        };
    }
    count
}

#[async_trait]
impl ModelClient for ScriptedClient {
    fn provider(&self) -> &str {
        PROVIDER
    }

    fn count_tokens(&self, request: &ModelRequest) -> Option<u64> {
        Some(request_words(request))
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let events = self.events(&request)?;
        let ScriptedConfig {
            first_token_latency,
            token_latency,
            ..
        } = self.config;
        if first_token_latency.is_zero() && token_latency.is_zero() {
            return Ok(futures::stream::iter(events.into_iter().map(Ok)).boxed());
        }
        let paced = futures::stream::unfold(
            (events.into_iter(), true),
            move |(mut events, first)| async move {
                let event = events.next()?;
                let wait = match &event {
                    _ if first => first_token_latency,
                    StreamEvent::TextDelta(_) | StreamEvent::ToolCallDelta { .. } => token_latency,
                    StreamEvent::Usage(_)
                    | StreamEvent::Finish(_)
                    | StreamEvent::Restart { .. }
                    | StreamEvent::Served(_)
                    | StreamEvent::Queued { .. } => Duration::ZERO,
                };
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                Some((Ok(event), (events, false)))
            },
        );
        Ok(paced.boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_pieces_concatenate_to_the_text() {
        for text in ["echo: hello  world", "  lead", "trail ", "", "one"] {
            assert_eq!(word_pieces(text).concat(), text);
        }
        assert_eq!(word_pieces("a b  c"), ["a", " b", "  c"]);
    }

    #[test]
    fn a_schema_instance_fills_every_property() {
        let schema = json!({"type": "object", "properties": {
            "city": {"type": "string"}, "rank": {"type": "integer", "minimum": 1},
            "sunny": {"type": "boolean"}, "kind": {"enum": ["a", "b"]},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
            "note": {"type": ["string", "null"]},
            "inner": {"properties": {"x": {"type": "number"}}},
        }, "required": ["city"], "additionalProperties": false});
        assert_eq!(
            instance(&schema, "hi"),
            json!({"city": "hi", "rank": 1, "sunny": false, "kind": "a", "tags": ["hi"],
                "note": "hi", "inner": {"x": 0}})
        );
    }

    #[test]
    fn cuts_at_the_earliest_stop_sequence() {
        assert_eq!(
            cut_at_stop("one two three", &["three".into(), "two".into()]),
            "one "
        );
        assert_eq!(cut_at_stop("one", &["".into()]), "one");
    }
}
