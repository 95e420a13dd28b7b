//! OpenAI's conversation items (`message`, `function_call`, `function_call_output`) to and from
//! keel's messages and log, and the ids that tie the two APIs together: a conversation is a
//! keel session (`conv_X` is `ses_X`), a response is a run (`resp_X` is `run_X`), and an item
//! is named by the session, the seq of the event that logged it and its place in that event.

use keel_core::{Event, Message, Part, Role, RunId, SessionId};
use serde_json::{Value, json};

/// Why an input could not be read: the request field at fault and what was wrong.
pub struct InputError {
    pub param: String,
    pub message: String,
}

fn input_error(param: impl Into<String>, message: impl Into<String>) -> InputError {
    InputError {
        param: param.into(),
        message: message.into(),
    }
}

pub fn response_id(run: &RunId) -> String {
    format!("resp_{}", &run.as_str()[RunId::PREFIX.len()..])
}

pub fn conversation_id(session: &SessionId) -> String {
    format!("conv_{}", &session.as_str()[SessionId::PREFIX.len()..])
}

/// The run a `resp_…` id names (a keel `run_…` id is accepted too).
pub fn parse_response_id(id: &str) -> Option<RunId> {
    keel_id(id, "resp_", RunId::PREFIX)
}

/// The session a `conv_…` id names (a keel `ses_…` id is accepted too).
pub fn parse_conversation_id(id: &str) -> Option<SessionId> {
    keel_id(id, "conv_", SessionId::PREFIX)
}

/// The keel id behind an OpenAI-style id: the same ULID under keel's prefix.
fn keel_id<T: std::str::FromStr>(id: &str, openai: &str, keel: &str) -> Option<T> {
    let ulid = id.strip_prefix(openai).unwrap_or(id);
    let ulid = ulid.strip_prefix(keel).unwrap_or(ulid);
    format!("{keel}{ulid}").parse().ok()
}

/// Where an item sits in its session's log: the event's seq and its place among the items
/// that event contributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ItemPos {
    pub seq: u64,
    pub index: u32,
}

fn item_id(kind: &str, session: &SessionId, pos: ItemPos) -> String {
    let ulid = &session.as_str()[SessionId::PREFIX.len()..];
    format!("{kind}_{ulid}_{}_{}", pos.seq, pos.index)
}

/// The position an item id names, when it is one of `session`'s.
pub fn parse_item_id(session: &SessionId, id: &str) -> Option<ItemPos> {
    let mut parts = id.rsplitn(4, '_');
    let index = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let ulid = parts.next()?;
    (ulid == &session.as_str()[SessionId::PREFIX.len()..]).then_some(ItemPos { seq, index })
}

/// The text of a request's input (a string or a list of items) as keel messages, oldest first,
/// plus the text of its `system`/`developer` messages, which become instructions.
pub struct ParsedInput {
    pub messages: Vec<Message>,
    pub instructions: Vec<String>,
}

pub fn parse_input(input: &Value, param: &str) -> Result<ParsedInput, InputError> {
    let mut parsed = ParsedInput {
        messages: Vec::new(),
        instructions: Vec::new(),
    };
    match input {
        Value::String(text) if text.is_empty() => {
            return Err(input_error(param, format!("{param} is an empty string")));
        }
        Value::String(text) => parsed.messages.push(Message::user(text.clone())),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                parse_item(item, &format!("{param}[{i}]"), &mut parsed)?;
            }
        }
        _ => {
            return Err(input_error(
                param,
                format!("{param} must be a string or a list of input items"),
            ));
        }
    }
    Ok(parsed)
}

/// Reads one input item into `out`, merging consecutive tool calls (one assistant message) and
/// consecutive tool outputs (one tool message) as providers expect them.
fn parse_item(item: &Value, param: &str, out: &mut ParsedInput) -> Result<(), InputError> {
    let Some(fields) = item.as_object() else {
        return Err(input_error(param, format!("{param} must be an object")));
    };
    let text = |key: &str| fields.get(key).and_then(Value::as_str);
    let required = |key: &str| {
        text(key).ok_or_else(|| {
            input_error(
                format!("{param}.{key}"),
                format!("{param}.{key} is required (a string)"),
            )
        })
    };
    let kind = text("type").unwrap_or(if fields.contains_key("role") {
        "message"
    } else {
        ""
    });
    match kind {
        "message" => {
            let role = required("role")?;
            let content = fields.get("content").ok_or_else(|| {
                input_error(
                    format!("{param}.content"),
                    format!("{param}.content is required"),
                )
            })?;
            let parts = content_parts(content, &format!("{param}.content"))?;
            let role = match role {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                "system" | "developer" => {
                    let text = Message {
                        role: Role::System,
                        parts,
                    }
                    .text_content();
                    out.instructions.push(text);
                    return Ok(());
                }
                other => {
                    return Err(input_error(
                        format!("{param}.role"),
                        format!(
                            "{param}.role {other:?} is not one of user, assistant, system, developer"
                        ),
                    ));
                }
            };
            if !parts.is_empty() {
                out.messages.push(Message { role, parts });
            }
        }
        "function_call" => {
            let raw = required("arguments")?;
            let arguments = keel_core::limits::parse_embedded(raw).unwrap_or_else(|| json!(raw));
            let call = Part::ToolCall {
                id: required("call_id")?.to_string(),
                name: required("name")?.to_string(),
                arguments,
            };
            push_merged(&mut out.messages, Role::Assistant, call);
        }
        "function_call_output" => {
            let output = match fields.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(parts @ Value::Array(_)) => Message {
                    role: Role::Tool,
                    parts: content_parts(parts, &format!("{param}.output"))?,
                }
                .text_content(),
                _ => {
                    return Err(input_error(
                        format!("{param}.output"),
                        format!("{param}.output is required (a string)"),
                    ));
                }
            };
            let result = Part::ToolResult {
                call_id: required("call_id")?.to_string(),
                content: output,
                is_error: false,
            };
            push_merged(&mut out.messages, Role::Tool, result);
        }
        // A summary keel (or a client) compacted earlier turns into: it stands in for them.
        "compaction" => {
            let summary = required("encrypted_content")?;
            out.messages.push(Message::user(format!(
                "<conversation_summary>\nThe conversation before this point, summarised:\n{summary}\n</conversation_summary>"
            )));
        }
        "" => {
            return Err(input_error(
                param,
                format!(
                    "{param} needs a `type` (message, function_call, function_call_output) or a `role`"
                ),
            ));
        }
        other => {
            return Err(input_error(
                format!("{param}.type"),
                format!(
                    "input items of type {other:?} are not supported by keel: send message, function_call, function_call_output or compaction items"
                ),
            ));
        }
    }
    Ok(())
}

fn push_merged(messages: &mut Vec<Message>, role: Role, part: Part) {
    match messages.last_mut() {
        Some(last) if last.role == role => last.parts.push(part),
        _ => messages.push(Message {
            role,
            parts: vec![part],
        }),
    }
}

/// A message's `content`: a string, or a list of `input_text` / `output_text` / `input_image`
/// parts.
fn content_parts(content: &Value, param: &str) -> Result<Vec<Part>, InputError> {
    let list = match content {
        Value::String(text) if text.is_empty() => return Ok(Vec::new()),
        Value::String(text) => return Ok(vec![Part::Text { text: text.clone() }]),
        Value::Array(list) => list,
        _ => {
            return Err(input_error(
                param,
                format!("{param} must be a string or a list of content parts"),
            ));
        }
    };
    let mut parts = Vec::new();
    for (i, part) in list.iter().enumerate() {
        let at = format!("{param}[{i}]");
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "input_text" | "output_text" | "text" => {
                let text = part.get("text").and_then(Value::as_str).ok_or_else(|| {
                    input_error(
                        format!("{at}.text"),
                        format!("{at}.text is required (a string)"),
                    )
                })?;
                parts.push(Part::Text { text: text.into() });
            }
            "input_image" => {
                let url = part
                    .get("image_url")
                    .and_then(|u| u.as_str().or_else(|| u.get("url").and_then(Value::as_str)))
                    .ok_or_else(|| {
                        input_error(
                            format!("{at}.image_url"),
                            format!("{at}.image_url is required: keel takes images by URL (https: or data:), not file_id"),
                        )
                    })?;
                parts.push(Part::Image { url: url.into() });
            }
            other => {
                return Err(input_error(
                    format!("{at}.type"),
                    format!(
                        "content parts of type {other:?} are not supported by keel: send input_text, output_text or input_image"
                    ),
                ));
            }
        }
    }
    Ok(parts)
}

/// The items one logged event contributes to a conversation, in order, with their positions.
/// `keep_call` filters the tool calls of model replies (a response's output lists only the
/// calls its caller must perform). Positions do not depend on the filter, so an item has the
/// same id in a response's output and in its conversation.
pub fn event_items(
    session: &SessionId,
    event: &Event,
    keep_call: &dyn Fn(&str) -> bool,
) -> Vec<(ItemPos, Value)> {
    let mut items = Vec::new();
    for (m, message) in event.body.messages().iter().enumerate() {
        for (index, kind, mut item) in message_items(message, keep_call) {
            let pos = ItemPos {
                seq: event.seq,
                index: m as u32 * ITEMS_PER_MESSAGE + index,
            };
            item["id"] = json!(item_id(kind, session, pos));
            items.push((pos, item));
        }
    }
    items
}

/// Room for a message's items in an event's positions (its text, then one per part).
const ITEMS_PER_MESSAGE: u32 = 1 << 16;

/// The `compaction` item a `context_compacted` event shows as. OpenAI's item is opaque and
/// bound to its provider; keel's summary is readable text that any provider continues from,
/// carried in `encrypted_content` (so clients that chain items send it back unchanged) and in
/// `summary`.
pub fn compaction_item(session: &SessionId, event: &Event) -> Option<Value> {
    let keel_core::EventBody::ContextCompacted {
        through_seq,
        summary,
        error,
        ..
    } = &event.body
    else {
        return None;
    };
    let text = match (summary, error) {
        (Some(text), _) => text.clone(),
        (None, error) => format!(
            "The earlier part of this conversation was left out: {}",
            error.as_deref().unwrap_or("summarising it failed")
        ),
    };
    let pos = ItemPos {
        seq: event.seq,
        index: 0,
    };
    Some(json!({
        "id": item_id("cmp", session, pos),
        "type": "compaction",
        "encrypted_content": text,
        "summary": text,
        "through_seq": through_seq,
    }))
}

/// The id a model reply's text item gets once the reply is logged at `seq` (streams name it
/// before the reply is logged).
pub fn reply_text_item_id(session: &SessionId, seq: u64) -> String {
    item_id("msg", session, ItemPos { seq, index: 0 })
}

/// A message as items, each with its index within the message: its text (and images) as one
/// `message` item (index 0), then one item per tool call or tool result (index 1 + its part's).
fn message_items(
    message: &Message,
    keep_call: &dyn Fn(&str) -> bool,
) -> Vec<(u32, &'static str, Value)> {
    let mut items = Vec::new();
    let assistant = message.role == Role::Assistant;
    let content: Vec<Value> = message
        .parts
        .iter()
        .filter_map(|part| match part {
            Part::Text { text } if assistant => Some(
                json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []}),
            ),
            Part::Text { text } => Some(json!({"type": "input_text", "text": text})),
            Part::Image { url } => {
                Some(json!({"type": "input_image", "image_url": url, "detail": "auto"}))
            }
            _ => None,
        })
        .collect();
    if !content.is_empty() {
        let role = match message.role {
            Role::User | Role::Tool => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
        };
        items.push((
            0,
            "msg",
            json!({"type": "message", "status": "completed", "role": role, "content": content}),
        ));
    }
    for (i, part) in message.parts.iter().enumerate() {
        let index = 1 + i as u32;
        match part {
            Part::ToolCall {
                id,
                name,
                arguments,
            } if keep_call(name) => items.push((index, "fc", function_call(id, name, arguments))),
            Part::ToolResult {
                call_id, content, ..
            } => items.push((
                index,
                "fco",
                json!({"type": "function_call_output", "call_id": call_id, "output": content, "status": "completed"}),
            )),
            _ => {}
        }
    }
    items
}

fn function_call(call_id: &str, name: &str, arguments: &Value) -> Value {
    let arguments = match arguments {
        Value::String(raw) => raw.clone(),
        other => other.to_string(),
    };
    json!({"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments, "status": "completed"})
}

/// A list page in OpenAI's shape.
pub fn list_page(data: Vec<Value>, has_more: bool) -> Value {
    let first = data.first().and_then(|i| i.get("id")).cloned();
    let last = data.last().and_then(|i| i.get("id")).cloned();
    json!({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": has_more})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_between_the_two_apis() {
        let run = RunId::generate(1_750_000_000_000, 42);
        let resp = response_id(&run);
        assert!(resp.starts_with("resp_"));
        assert_eq!(parse_response_id(&resp), Some(run.clone()));
        assert_eq!(parse_response_id(run.as_str()), Some(run));
        assert_eq!(parse_response_id("resp_nope"), None);
        let session = SessionId::generate(1_750_000_000_000, 7);
        let conv = conversation_id(&session);
        assert_eq!(parse_conversation_id(&conv), Some(session.clone()));
        assert_eq!(
            parse_conversation_id(session.as_str()),
            Some(session.clone())
        );
        let pos = ItemPos { seq: 12, index: 3 };
        let id = item_id("msg", &session, pos);
        assert_eq!(parse_item_id(&session, &id), Some(pos));
        let other = SessionId::generate(1_750_000_000_001, 7);
        assert_eq!(parse_item_id(&other, &id), None);
    }

    #[test]
    fn input_items_become_messages_and_instructions() {
        let input = json!([
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{\"a\":1}"},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "not json"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": "two"},
        ]);
        let parsed = parse_input(&input, "input").ok().unwrap();
        assert_eq!(parsed.instructions, ["Be brief."]);
        assert_eq!(parsed.messages.len(), 3);
        assert_eq!(parsed.messages[1].role, Role::Assistant);
        assert_eq!(parsed.messages[1].tool_calls().count(), 2);
        assert_eq!(parsed.messages[2].role, Role::Tool);
        assert_eq!(
            parsed.messages[2].tool_results().collect::<Vec<_>>(),
            ["c1", "c2"]
        );
    }

    #[test]
    fn bad_input_names_the_field_at_fault() {
        for (input, param) in [
            (json!(""), "input"),
            (json!(3), "input"),
            (json!([{"role": "robot", "content": "x"}]), "input[0].role"),
            (json!([{"role": "user"}]), "input[0].content"),
            (
                json!([{"type": "item_reference", "id": "x"}]),
                "input[0].type",
            ),
            (
                json!([{"type": "function_call_output", "output": "x"}]),
                "input[0].call_id",
            ),
            (
                json!([{"role": "user", "content": [{"type": "input_file"}]}]),
                "input[0].content[0].type",
            ),
        ] {
            let err = parse_input(&input, "input").err().unwrap();
            assert_eq!(err.param, param, "{input}: {}", err.message);
        }
    }
}
