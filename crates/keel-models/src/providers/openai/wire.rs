//! The request half of the Chat Completions format: one normalized `ModelRequest` becomes the
//! JSON body OpenAI documents (system first, tool results as `role: tool`, arguments as strings).

use keel_core::{CallerIds, Message, Part, Role};
use serde_json::{Value, json};

use super::MaxTokensField;
use crate::{ModelError, ModelErrorKind, ModelRequest, ResponseFormat, ToolChoice};

fn refuse(message: impl Into<String>) -> ModelError {
    ModelError::new(ModelErrorKind::BadRequest, super::PROVIDER, message)
}

/// The streaming request body for `request`.
pub(crate) fn chat_body(
    request: &ModelRequest,
    max_tokens_field: MaxTokensField,
) -> Result<Value, ModelError> {
    if request.model.trim().is_empty() {
        return Err(refuse(
            "the request names no model; give the target as openai/<model>, e.g. openai/gpt-4o-mini",
        ));
    }
    let mut messages = Vec::new();
    if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
        messages.push(json!({"role": "system", "content": system}));
    }
    for (i, message) in request.messages.iter().enumerate() {
        push_message(&mut messages, i, message)?;
    }
    let mut body = json!({
        "model": request.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if !request.tools.is_empty() {
        let tools: Vec<Value> = request
            .tools
            .iter()
            .map(|t| {
                let mut function = json!({
                    "name": t.name, "description": t.description, "parameters": t.parameters,
                });
                if let Some(strict) = t.strict {
                    function["strict"] = json!(strict);
                }
                json!({"type": "function", "function": function})
            })
            .collect();
        body["tools"] = json!(tools);
    }
    if let Some(choice) = request.tool_choice(super::PROVIDER)? {
        body["tool_choice"] = tool_choice(choice);
    }
    if let Some(format) = request.response_format() {
        body["response_format"] = response_format(format);
    }
    let params = &request.params;
    if let Some(max) = params.max_tokens {
        if matches!(
            max_tokens_field,
            MaxTokensField::MaxCompletionTokens | MaxTokensField::Both
        ) {
            body["max_completion_tokens"] = json!(max);
        }
        if matches!(
            max_tokens_field,
            MaxTokensField::MaxTokens | MaxTokensField::Both
        ) {
            body["max_tokens"] = json!(max);
        }
    }
    if let Some(t) = params.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(p) = params.top_p {
        body["top_p"] = json!(p);
    }
    if !params.stop.is_empty() {
        body["stop"] = json!(params.stop);
    }
    if let Some(seed) = params.seed {
        body["seed"] = json!(seed);
    }
    caller_ids(&mut body, &params.caller_ids);
    Ok(body)
}

/// The caller's end-user and prompt-cache ids, as OpenAI's Chat Completions and Responses
/// bodies both name them.
pub(crate) fn caller_ids(body: &mut Value, ids: &CallerIds) {
    for (field, id) in [
        ("user", &ids.user),
        ("safety_identifier", &ids.safety_identifier),
        ("prompt_cache_key", &ids.prompt_cache_key),
    ] {
        if let Some(id) = id {
            body[field] = json!(id);
        }
    }
}

/// `tool_choice` as Chat Completions documents it.
fn tool_choice(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Tool { name } => json!({"type": "function", "function": {"name": name}}),
    }
}

/// `response_format` as Chat Completions documents it (the schema nested in `json_schema`).
pub(crate) fn response_format(format: &ResponseFormat) -> Value {
    match format {
        ResponseFormat::Text => json!({"type": "text"}),
        ResponseFormat::JsonObject => json!({"type": "json_object"}),
        ResponseFormat::JsonSchema {
            name,
            description,
            schema,
            strict,
        } => {
            let mut spec = json!({"name": name, "schema": schema, "strict": strict});
            if let Some(description) = description {
                spec["description"] = json!(description);
            }
            json!({"type": "json_schema", "json_schema": spec})
        }
    }
}

/// Appends the wire messages for one normalized message (a message holding several tool
/// results becomes one `tool` message per result).
fn push_message(out: &mut Vec<Value>, index: usize, message: &Message) -> Result<(), ModelError> {
    let role = match message.role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    };
    let misplaced = |what: &str| {
        refuse(format!(
            "message {index} (role {role}) holds {what}, which OpenAI cannot take there"
        ))
    };
    let mut text = String::new();
    let mut content_parts = Vec::new();
    let mut has_image = false;
    let mut tool_calls = Vec::new();
    for part in &message.parts {
        match part {
            Part::Text { text: t } => {
                text.push_str(t);
                content_parts.push(json!({"type": "text", "text": t}));
            }
            Part::Image { url } => {
                if message.role != Role::User {
                    return Err(misplaced("an image (only user messages may)"));
                }
                has_image = true;
                content_parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            Part::ToolCall {
                id,
                name,
                arguments,
            } => {
                if message.role != Role::Assistant {
                    return Err(misplaced("a tool call (only assistant messages may)"));
                }
                // A string is arguments text the model produced that was not valid JSON: send it back as it was.
                let arguments = match arguments {
                    Value::String(raw) => raw.clone(),
                    other => other.to_string(),
                };
                tool_calls.push(json!({"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}));
            }
            Part::ToolResult {
                call_id,
                content,
                is_error,
            } => {
                if matches!(message.role, Role::Assistant | Role::System) {
                    return Err(misplaced("a tool result (only tool or user messages may)"));
                }
                let content = if *is_error {
                    format!("Error: {content}")
                } else {
                    content.clone()
                };
                out.push(json!({"role": "tool", "tool_call_id": call_id, "content": content}));
            }
        }
    }
    match message.role {
        Role::Tool if !content_parts.is_empty() => {
            Err(misplaced("text (a tool message carries only tool results)"))
        }
        Role::Tool => Ok(()),
        Role::Assistant => {
            if text.is_empty() && tool_calls.is_empty() {
                return Ok(());
            }
            let mut wire = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
            if !tool_calls.is_empty() {
                wire["tool_calls"] = json!(tool_calls);
            }
            out.push(wire);
            Ok(())
        }
        Role::User if has_image => {
            out.push(json!({"role": "user", "content": content_parts}));
            Ok(())
        }
        Role::System | Role::User => {
            if !content_parts.is_empty() {
                out.push(json!({"role": role, "content": text}));
            }
            Ok(())
        }
    }
}

/// The ids of a model list (`{"object": "list", "data": [{"id": …}, …]}`).
pub(crate) fn model_ids(body: &str) -> Result<Vec<String>, ModelError> {
    let invalid = |why: &str| {
        ModelError::new(
            ModelErrorKind::Protocol,
            super::PROVIDER,
            format!(
                "the model list is not OpenAI's shape ({why}): {}",
                body.chars().take(200).collect::<String>()
            ),
        )
    };
    let list: Value = serde_json::from_str(body).map_err(|e| invalid(&e.to_string()))?;
    let data = list["data"]
        .as_array()
        .ok_or_else(|| invalid("no `data` array"))?;
    Ok(data
        .iter()
        .filter_map(|model| model["id"].as_str())
        .map(str::to_string)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Params, ToolSpec};

    fn request(messages: Vec<Message>) -> ModelRequest {
        ModelRequest {
            model: "gpt-4o-mini".into(),
            system: Some("be brief".into()),
            messages,
            tools: vec![ToolSpec {
                name: "get_weather".into(),
                description: "weather for a city".into(),
                parameters: json!({"type": "object"}),
                strict: None,
            }],
            params: Params {
                max_tokens: Some(64),
                stop: vec!["END".into()],
                seed: Some(7),
                ..Params::default()
            },
        }
    }

    #[test]
    fn maps_a_tool_round_trip_onto_the_documented_shape() {
        let messages = vec![
            Message::user("weather?"),
            Message {
                role: Role::Assistant,
                parts: vec![Part::ToolCall {
                    id: "c1".into(),
                    name: "get_weather".into(),
                    arguments: json!({"city": "Oslo"}),
                }],
            },
            Message {
                role: Role::Tool,
                parts: vec![
                    Part::ToolResult {
                        call_id: "c1".into(),
                        content: "rain".into(),
                        is_error: false,
                    },
                    Part::ToolResult {
                        call_id: "c2".into(),
                        content: "boom".into(),
                        is_error: true,
                    },
                ],
            },
        ];
        let body = chat_body(&request(messages), MaxTokensField::MaxCompletionTokens).unwrap();
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "be brief"})
        );
        assert_eq!(
            body["messages"][1],
            json!({"role": "user", "content": "weather?"})
        );
        let call = &body["messages"][2];
        assert_eq!(call["content"], Value::Null);
        assert_eq!(
            call["tool_calls"][0]["function"]["arguments"],
            json!("{\"city\":\"Oslo\"}")
        );
        assert_eq!(
            body["messages"][3],
            json!({"role": "tool", "tool_call_id": "c1", "content": "rain"})
        );
        assert_eq!(body["messages"][4]["content"], json!("Error: boom"));
        assert_eq!(body["max_completion_tokens"], json!(64));
        assert!(body.get("max_tokens").is_none());
        assert_eq!(body["stop"], json!(["END"]));
        assert_eq!(body["tools"][0]["function"]["name"], json!("get_weather"));
    }

    #[test]
    fn tool_choice_and_response_format_take_the_documented_shapes() {
        let mut req = request(vec![Message::user("hi")]);
        let encoded = |req: &ModelRequest| chat_body(req, MaxTokensField::MaxTokens).unwrap();
        assert!(encoded(&req).get("tool_choice").is_none());
        assert!(encoded(&req).get("response_format").is_none());
        for (choice, wire) in [
            (ToolChoice::Auto, json!("auto")),
            (ToolChoice::None, json!("none")),
            (ToolChoice::Required, json!("required")),
            (
                ToolChoice::Tool {
                    name: "get_weather".into(),
                },
                json!({"type": "function", "function": {"name": "get_weather"}}),
            ),
        ] {
            req.params.tool_choice = Some(choice);
            assert_eq!(encoded(&req)["tool_choice"], wire);
        }
        req.params.response_format = Some(ResponseFormat::Text);
        assert!(encoded(&req).get("response_format").is_none());
        req.params.response_format = Some(ResponseFormat::JsonObject);
        assert_eq!(
            encoded(&req)["response_format"],
            json!({"type": "json_object"})
        );
        req.params.response_format = Some(ResponseFormat::JsonSchema {
            name: "city".into(),
            description: Some("a city".into()),
            schema: json!({"type": "object", "properties": {"name": {"type": "string"}}}),
            strict: true,
        });
        assert_eq!(
            encoded(&req)["response_format"],
            json!({"type": "json_schema", "json_schema": {"name": "city", "description": "a city",
                "schema": {"type": "object", "properties": {"name": {"type": "string"}}}, "strict": true}})
        );
    }

    #[test]
    fn strict_tools_and_the_callers_ids_are_forwarded_only_when_given() {
        let mut req = request(vec![Message::user("hi")]);
        let body = chat_body(&req, MaxTokensField::MaxTokens).unwrap();
        assert!(body["tools"][0]["function"].get("strict").is_none());
        for field in ["user", "safety_identifier", "prompt_cache_key"] {
            assert!(body.get(field).is_none(), "{field}");
        }
        req.tools[0].strict = Some(true);
        req.params.caller_ids = CallerIds {
            user: Some("u-1".into()),
            safety_identifier: Some("s-1".into()),
            prompt_cache_key: Some("k-1".into()),
        };
        let body = chat_body(&req, MaxTokensField::MaxTokens).unwrap();
        assert_eq!(body["tools"][0]["function"]["strict"], json!(true));
        assert_eq!(
            (
                &body["user"],
                &body["safety_identifier"],
                &body["prompt_cache_key"]
            ),
            (&json!("u-1"), &json!("s-1"), &json!("k-1"))
        );
    }

    #[test]
    fn a_forced_tool_must_be_offered() {
        let mut req = request(vec![Message::user("hi")]);
        req.params.tool_choice = Some(ToolChoice::Tool {
            name: "nope".into(),
        });
        let error = chat_body(&req, MaxTokensField::MaxTokens).unwrap_err();
        assert_eq!(error.kind, ModelErrorKind::BadRequest);
        assert!(error.message.contains("get_weather"), "{}", error.message);
        req.tools.clear();
        req.params.tool_choice = Some(ToolChoice::Required);
        assert_eq!(
            chat_body(&req, MaxTokensField::MaxTokens).unwrap_err().kind,
            ModelErrorKind::BadRequest
        );
        // auto or none with no tools says nothing
        req.params.tool_choice = Some(ToolChoice::None);
        let body = chat_body(&req, MaxTokensField::MaxTokens).unwrap();
        assert!(body.get("tool_choice").is_none());
    }

    #[test]
    fn images_become_content_parts_and_max_tokens_field_is_chosen() {
        let message = Message {
            role: Role::User,
            parts: vec![
                Part::Text {
                    text: "what is this?".into(),
                },
                Part::Image {
                    url: "https://x/cat.png".into(),
                },
            ],
        };
        let body = chat_body(&request(vec![message]), MaxTokensField::Both).unwrap();
        let content = &body["messages"][1]["content"];
        assert_eq!(
            content[1],
            json!({"type": "image_url", "image_url": {"url": "https://x/cat.png"}})
        );
        assert_eq!(
            (
                body["max_tokens"].clone(),
                body["max_completion_tokens"].clone()
            ),
            (json!(64), json!(64))
        );
    }

    #[test]
    fn refuses_parts_openai_cannot_carry() {
        let message = Message {
            role: Role::Assistant,
            parts: vec![Part::Image {
                url: "https://x/a.png".into(),
            }],
        };
        let error = chat_body(&request(vec![message]), MaxTokensField::MaxTokens).unwrap_err();
        assert_eq!(error.kind, ModelErrorKind::BadRequest);
        assert!(
            error.message.contains("message 0 (role assistant)"),
            "{}",
            error.message
        );
        let mut nameless = request(vec![Message::user("hi")]);
        nameless.model.clear();
        assert_eq!(
            chat_body(&nameless, MaxTokensField::MaxTokens)
                .unwrap_err()
                .kind,
            ModelErrorKind::BadRequest
        );
    }
}
