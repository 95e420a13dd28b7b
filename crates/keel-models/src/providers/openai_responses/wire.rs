//! The request half of the Responses API: `instructions` for the system prompt, `input` items
//! (messages with `input_text`/`output_text`, `function_call`, `function_call_output`), flat
//! function tools, `max_output_tokens`.

use keel_core::{Part, Role};
use serde_json::{Value, json};

use super::PROVIDER;
use crate::providers::streaming::{arguments_text, config_error};
use crate::{ModelError, ModelRequest, ResponseFormat, ToolChoice};

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
            .map(|t| {
                let mut tool = json!({"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters});
                if let Some(strict) = t.strict {
                    tool["strict"] = json!(strict);
                }
                tool
            })
            .collect();
    }
    if let Some(choice) = request.tool_choice(PROVIDER)? {
        body["tool_choice"] = match choice {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Tool { name } => json!({"type": "function", "name": name}),
        };
    }
    if let Some(format) = request.response_format() {
        body["text"] = json!({"format": text_format(format)});
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
    crate::providers::openai::wire::caller_ids(&mut body, &params.caller_ids);
    Ok(body)
}

/// `text.format`: Chat Completions' `response_format` with the schema's fields flat.
fn text_format(format: &ResponseFormat) -> Value {
    let mut format = crate::providers::openai::wire::response_format(format);
    if let Some(fields) = format.as_object_mut()
        && let Some(Value::Object(spec)) = fields.remove("json_schema")
    {
        fields.extend(spec);
    }
    format
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
        assert!(body.get("tool_choice").is_none() && body.get("text").is_none());
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

    #[test]
    fn tool_choice_and_text_format_take_the_documented_shapes() {
        let mut request = ModelRequest::hi_offering("gpt-4.1", "f");
        request.params.tool_choice = Some(ToolChoice::Tool { name: "f".into() });
        request.params.response_format = Some(ResponseFormat::JsonSchema {
            name: "out".into(),
            description: None,
            schema: json!({"type": "object"}),
            strict: true,
        });
        let body = responses_body(&request).unwrap();
        assert_eq!(
            body["tool_choice"],
            json!({"type": "function", "name": "f"})
        );
        assert_eq!(
            body["text"],
            json!({"format": {"type": "json_schema", "name": "out", "schema": {"type": "object"}, "strict": true}})
        );
        request.params.tool_choice = Some(ToolChoice::Required);
        request.params.response_format = Some(ResponseFormat::JsonObject);
        let body = responses_body(&request).unwrap();
        assert_eq!(body["tool_choice"], "required");
        assert_eq!(body["text"], json!({"format": {"type": "json_object"}}));
        request.params.tool_choice = Some(ToolChoice::Tool { name: "g".into() });
        assert!(responses_body(&request).is_err());
    }

    #[test]
    fn strict_tools_and_the_callers_ids_are_forwarded_only_when_given() {
        let mut request = ModelRequest::hi_offering("gpt-4.1", "f");
        let body = responses_body(&request).unwrap();
        assert!(body["tools"][0].get("strict").is_none());
        assert!(body.get("user").is_none() && body.get("prompt_cache_key").is_none());
        request.tools[0].strict = Some(false);
        request.params.caller_ids.safety_identifier = Some("s-1".into());
        request.params.caller_ids.prompt_cache_key = Some("k-1".into());
        let body = responses_body(&request).unwrap();
        assert_eq!(body["tools"][0]["strict"], json!(false));
        assert_eq!(body["safety_identifier"], "s-1");
        assert_eq!(body["prompt_cache_key"], "k-1");
        assert!(body.get("user").is_none());
    }
}
