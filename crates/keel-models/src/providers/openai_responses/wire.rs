//! The request half of the Responses API: `instructions` for the system prompt, `input` items
//! (messages with `input_text`/`output_text`, `function_call`, `function_call_output`), flat
//! function tools, `max_output_tokens`.

use keel_core::{Part, Role};
use serde_json::{Value, json};

use super::PROVIDER;
use crate::providers::streaming::{arguments_text, config_error};
use crate::{ModelError, ModelRequest};

pub(super) fn responses_body(request: &ModelRequest) -> Result<Value, ModelError> {
    if request.model.trim().is_empty() {
        return Err(config_error(PROVIDER, "the request names no model; give the target as openai_responses/<model>, e.g. openai_responses/gpt-4.1".into()));
    }
    let params = &request.params;
    if !params.stop.is_empty() {
        tracing::debug!(
            "the Responses API has no stop sequences; dropping {:?}",
            params.stop
        );
    }
    let mut input = Vec::new();
    for (index, message) in request.messages.iter().enumerate() {
        let (role, text_type) = match message.role {
            Role::System => ("system", "input_text"),
            Role::User | Role::Tool => ("user", "input_text"),
            Role::Assistant => ("assistant", "output_text"),
        };
        let mut content = Vec::new();
        for part in &message.parts {
            match part {
                Part::Text { text } if text.is_empty() => {}
                Part::Text { text } => content.push(json!({"type": text_type, "text": text})),
                Part::Image { url } if message.role == Role::User => {
                    content.push(json!({"type": "input_image", "image_url": url}));
                }
                Part::Image { .. } => {
                    return Err(config_error(
                        PROVIDER,
                        format!("message {index} holds an image, but only user messages may"),
                    ));
                }
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                } => {
                    flush(&mut input, role, &mut content);
                    input.push(json!({"type": "function_call", "call_id": id, "name": name, "arguments": arguments_text(arguments)}));
                }
                Part::ToolResult {
                    call_id,
                    content: output,
                    is_error,
                } => {
                    flush(&mut input, role, &mut content);
                    let output = if *is_error {
                        format!("Error: {output}")
                    } else {
                        output.clone()
                    };
                    input.push(json!({"type": "function_call_output", "call_id": call_id, "output": output}));
                }
            }
        }
        flush(&mut input, role, &mut content);
    }
    let mut body = json!({"model": request.model, "input": input, "stream": true, "store": false});
    if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
        body["instructions"] = json!(system);
    }
    if !request.tools.is_empty() {
        body["tools"] = request
            .tools
            .iter()
            .map(|t| json!({"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters}))
            .collect();
    }
    if let Some(max) = params.max_tokens {
        body["max_output_tokens"] = json!(max);
    }
    if let Some(t) = params.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(p) = params.top_p {
        body["top_p"] = json!(p);
    }
    Ok(body)
}

/// Emits the message item gathered so far (text before or after tool items keeps its place).
fn flush(input: &mut Vec<Value>, role: &str, content: &mut Vec<Value>) {
    if !content.is_empty() {
        input.push(json!({"type": "message", "role": role, "content": std::mem::take(content)}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::Message;

    #[test]
    fn tool_round_trip_becomes_function_items() {
        let request = ModelRequest {
            model: "gpt-4.1".into(),
            system: Some("terse".into()),
            messages: vec![
                Message::user("hi"),
                Message {
                    role: Role::Assistant,
                    parts: vec![Part::ToolCall {
                        id: "c1".into(),
                        name: "f".into(),
                        arguments: json!({"a": 1}),
                    }],
                },
                Message {
                    role: Role::Tool,
                    parts: vec![Part::ToolResult {
                        call_id: "c1".into(),
                        content: "ok".into(),
                        is_error: false,
                    }],
                },
            ],
            tools: vec![],
            params: Default::default(),
        };
        let body = responses_body(&request).unwrap();
        assert_eq!(body["instructions"], "terse");
        assert_eq!(
            body["input"][1],
            json!({"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{\"a\":1}"})
        );
        assert_eq!(
            body["input"][2],
            json!({"type": "function_call_output", "call_id": "c1", "output": "ok"})
        );
    }
}
