//! The request half of Anthropic Messages: system apart, content blocks, `tool_use` in the
//! assistant turn and `tool_result` blocks in the next user turn, alternating roles.

use keel_core::{Message, Part, Role};
use serde_json::{Value, json};

use super::PROVIDER;
use crate::providers::streaming::{arguments_object, config_error};
use crate::providers::transcript::{fold_system, restricted_tool_id};
use crate::{ModelError, ModelRequest, ResponseFormat, ToolChoice};

/// Anthropic accepts tool ids matching `^[a-zA-Z0-9_-]+$`; keel's neutral ids from another
/// provider may hold other characters, so both the call and its result are mapped alike.
pub(super) fn tool_id(id: &str) -> String {
    restricted_tool_id(id, usize::MAX)
}

pub(super) fn messages_body(
    request: &ModelRequest,
    default_max_tokens: u32,
) -> Result<Value, ModelError> {
    if request.model.trim().is_empty() {
        return Err(config_error(PROVIDER, "the request names no model; give the target as anthropic/<model>, e.g. anthropic/claude-sonnet-4-5".into()));
    }
    let mut system = request.system.clone().unwrap_or_default();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (index, message) in request.messages.iter().enumerate() {
        let (role, blocks) = match message.role {
            // Anthropic has no system turns: fold them into the system prompt.
            Role::System => {
                fold_system(&mut system, message);
                continue;
            }
            Role::User | Role::Tool => ("user", blocks(index, message)?),
            Role::Assistant => ("assistant", blocks(index, message)?),
        };
        if blocks.is_empty() {
            continue;
        }
        // Consecutive turns of one role become one turn (tool results, then the user's text).
        match turns.last_mut() {
            Some((last, content)) if *last == role => content.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    let params = &request.params;
    let mut body = json!({
        "model": request.model,
        "max_tokens": params.max_tokens.unwrap_or(default_max_tokens),
        "messages": messages,
        "stream": true,
    });
    if !system.is_empty() {
        body["system"] = json!(system);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
    }
    if let Some(choice) = request.tool_choice(PROVIDER)? {
        body["tool_choice"] = match choice {
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Tool { name } => json!({"type": "tool", "name": name}),
        };
    }
    // Structured outputs (`output_config.format`) take a JSON Schema only: Anthropic has no
    // schema-less JSON mode, so `json_object` is refused rather than approximated.
    match request.response_format() {
        None => {}
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            body["output_config"] = json!({"format": {"type": "json_schema", "schema": schema}});
        }
        Some(_) => return Err(config_error(
            PROVIDER,
            "Anthropic has no JSON mode without a schema: ask for response_format json_schema with the object's schema instead of json_object".into(),
        )),
    }
    if let Some(t) = params.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(p) = params.top_p {
        body["top_p"] = json!(p);
    }
    if !params.stop.is_empty() {
        body["stop_sequences"] = json!(params.stop);
    }
    Ok(body)
}

fn blocks(index: usize, message: &Message) -> Result<Vec<Value>, ModelError> {
    let mut out = Vec::new();
    for part in &message.parts {
        let misplaced = |what: &str| {
            config_error(
                PROVIDER,
                format!(
                    "message {index} ({:?}) holds {what}, which Anthropic cannot take there",
                    message.role
                ),
            )
        };
        match part {
            Part::Text { text } if text.is_empty() => {}
            Part::Text { text } => out.push(json!({"type": "text", "text": text})),
            Part::Image { url } => {
                if message.role != Role::User {
                    return Err(misplaced("an image (only user messages may)"));
                }
                out.push(image_block(url));
            }
            Part::ToolCall {
                id,
                name,
                arguments,
            } => {
                if message.role != Role::Assistant {
                    return Err(misplaced("a tool call (only assistant messages may)"));
                }
                out.push(json!({"type": "tool_use", "id": tool_id(id), "name": name, "input": arguments_object(arguments)}));
            }
            Part::ToolResult {
                call_id,
                content,
                is_error,
            } => {
                if message.role == Role::Assistant {
                    return Err(misplaced("a tool result (only tool or user messages may)"));
                }
                let mut block = json!({"type": "tool_result", "tool_use_id": tool_id(call_id), "content": content});
                if *is_error {
                    block["is_error"] = json!(true);
                }
                out.push(block);
            }
        }
    }
    // Anthropic wants tool results first in a user turn.
    out.sort_by_key(|b| b["type"] != "tool_result");
    Ok(out)
}

fn image_block(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((meta, data)) = rest.split_once(',')
        && let Some(media_type) = meta.strip_suffix(";base64")
    {
        return json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}});
    }
    json!({"type": "image", "source": {"type": "url", "url": url}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_ids_are_mapped_alike_in_calls_and_results() {
        assert_eq!(tool_id("call_abc-1"), "call_abc-1");
        assert_eq!(tool_id("functions.get:0"), "functions_get_0");
        let request = ModelRequest {
            model: "claude-haiku-4-5".into(),
            system: Some("terse".into()),
            messages: vec![
                Message::user("hi"),
                Message {
                    role: Role::Assistant,
                    parts: vec![Part::ToolCall {
                        id: "a.b".into(),
                        name: "f".into(),
                        arguments: json!({"x": 1}),
                    }],
                },
                Message {
                    role: Role::Tool,
                    parts: vec![Part::ToolResult {
                        call_id: "a.b".into(),
                        content: "ok".into(),
                        is_error: false,
                    }],
                },
                Message::user("thanks"),
            ],
            tools: vec![],
            params: Default::default(),
        };
        let body = messages_body(&request, 100).unwrap();
        assert_eq!(body["messages"][1]["content"][0]["id"], "a_b");
        assert_eq!(body["messages"][2]["content"][0]["tool_use_id"], "a_b");
        assert_eq!(
            body["messages"][2]["content"][1],
            json!({"type": "text", "text": "thanks"})
        );
        assert_eq!(body["messages"].as_array().unwrap().len(), 3);
        assert_eq!(body["max_tokens"], 100);
    }

    #[test]
    fn tool_choice_and_structured_output_take_the_documented_shapes() {
        let mut request = ModelRequest::hi_offering("claude-haiku-4-5", "f");
        let body = messages_body(&request, 100).unwrap();
        assert!(body.get("tool_choice").is_none() && body.get("output_config").is_none());
        for (choice, wire) in [
            (ToolChoice::Auto, json!({"type": "auto"})),
            (ToolChoice::None, json!({"type": "none"})),
            (ToolChoice::Required, json!({"type": "any"})),
            (
                ToolChoice::Tool { name: "f".into() },
                json!({"type": "tool", "name": "f"}),
            ),
        ] {
            request.params.tool_choice = Some(choice);
            assert_eq!(messages_body(&request, 100).unwrap()["tool_choice"], wire);
        }
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false});
        request.params.response_format = Some(ResponseFormat::JsonSchema {
            name: "out".into(),
            description: None,
            schema: schema.clone(),
            strict: true,
        });
        assert_eq!(
            messages_body(&request, 100).unwrap()["output_config"],
            json!({"format": {"type": "json_schema", "schema": schema}})
        );
        request.params.response_format = Some(ResponseFormat::JsonObject);
        let error = messages_body(&request, 100).unwrap_err();
        assert_eq!(error.kind, crate::ModelErrorKind::BadRequest);
        assert!(error.message.contains("json_schema"), "{}", error.message);
    }
}
