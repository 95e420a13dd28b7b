//! The request half of Gemini `generateContent`: `contents` with `user`/`model` roles,
//! `systemInstruction`, `functionDeclarations`, and `functionCall`/`functionResponse` parts.
//! A tool result names its function, found from the call it answers (by keel's call id).

use std::collections::HashMap;

use keel_core::{Message, Part, Role};
use serde_json::{Value, json};

use super::PROVIDER;
use crate::providers::streaming::{arguments_object, config_error};
use crate::providers::transcript::fold_system;
use crate::{ModelError, ModelRequest, ResponseFormat, ToolChoice};

pub(super) fn generate_body(request: &ModelRequest) -> Result<Value, ModelError> {
    if request.model.trim().is_empty() {
        return Err(config_error(PROVIDER, "the request names no model; give the target as gemini/<model>, e.g. gemini/gemini-2.5-flash".into()));
    }
    // Call id → function name, from every tool call in the transcript.
    let names: HashMap<&str, &str> = request
        .messages
        .iter()
        .flat_map(|m| &m.parts)
        .filter_map(|p| match p {
            Part::ToolCall { id, name, .. } => Some((id.as_str(), name.as_str())),
            _ => None,
        })
        .collect();
    let mut system = request.system.clone().unwrap_or_default();
    let mut contents: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (index, message) in request.messages.iter().enumerate() {
        let role = match message.role {
            Role::System => {
                fold_system(&mut system, message);
                continue;
            }
            Role::User | Role::Tool => "user",
            Role::Assistant => "model",
        };
        let parts = parts(index, message, &names)?;
        if parts.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => contents.push((role, parts)),
        }
    }
    let mut body = json!({
        "contents": contents.into_iter().map(|(role, parts)| json!({"role": role, "parts": parts})).collect::<Vec<_>>(),
    });
    if !system.is_empty() {
        body["systemInstruction"] = json!({"parts": [{"text": system}]});
    }
    if !request.tools.is_empty() {
        let declarations: Vec<Value> = request
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "parameters": schema(&t.parameters)}))
            .collect();
        body["tools"] = json!([{"functionDeclarations": declarations}]);
    }
    if let Some(choice) = request.tool_choice(PROVIDER)? {
        let config = match choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Tool { name } => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        };
        body["toolConfig"] = json!({"functionCallingConfig": config});
    }
    let params = &request.params;
    let mut config = serde_json::Map::new();
    match request.response_format() {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        Some(ResponseFormat::JsonSchema { schema: s, .. }) => {
            config.insert("responseMimeType".into(), json!("application/json"));
            config.insert("responseSchema".into(), schema(s));
        }
    }
    if let Some(max) = params.max_tokens {
        config.insert("maxOutputTokens".into(), json!(max));
    }
    if let Some(t) = params.temperature {
        config.insert("temperature".into(), json!(t));
    }
    if let Some(p) = params.top_p {
        config.insert("topP".into(), json!(p));
    }
    if !params.stop.is_empty() {
        config.insert("stopSequences".into(), json!(params.stop));
    }
    if let Some(seed) = params.seed {
        config.insert("seed".into(), json!(seed));
    }
    if !config.is_empty() {
        body["generationConfig"] = Value::Object(config);
    }
    Ok(body)
}

fn parts(
    index: usize,
    message: &Message,
    names: &HashMap<&str, &str>,
) -> Result<Vec<Value>, ModelError> {
    let mut out = Vec::new();
    for part in &message.parts {
        match part {
            Part::Text { text } if text.is_empty() => {}
            Part::Text { text } => out.push(json!({"text": text})),
            Part::Image { url } => out.push(image_part(url)),
            Part::ToolCall {
                name, arguments, ..
            } => {
                out.push(
                    json!({"functionCall": {"name": name, "args": arguments_object(arguments)}}),
                );
            }
            Part::ToolResult {
                call_id,
                content,
                is_error,
            } => {
                let Some(name) = names.get(call_id.as_str()) else {
                    return Err(config_error(
                        PROVIDER,
                        format!(
                            "message {index} holds a result for tool call `{call_id}`, but no earlier message makes that call; Gemini needs the function's name"
                        ),
                    ));
                };
                let key = if *is_error { "error" } else { "result" };
                out.push(json!({"functionResponse": {"name": name, "response": {key: content}}}));
            }
        }
    }
    Ok(out)
}

fn image_part(url: &str) -> Value {
    if let Some(rest) = url.strip_prefix("data:")
        && let Some((meta, data)) = rest.split_once(',')
        && let Some(mime) = meta.strip_suffix(";base64")
    {
        return json!({"inlineData": {"mimeType": mime, "data": data}});
    }
    json!({"fileData": {"fileUri": url}})
}

/// Gemini's `parameters` and `responseSchema` take an OpenAPI subset: drop the JSON Schema keywords it refuses.
fn schema(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "$schema" | "additionalProperties" | "$id" | "$defs"
                    )
                })
                .map(|(k, v)| (k.clone(), schema(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(schema).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_are_named_after_their_calls_and_turns_merge() {
        let request = ModelRequest {
            model: "gemini-2.5-flash".into(),
            system: Some("terse".into()),
            messages: vec![
                Message::user("weather in Oslo and Rome?"),
                Message {
                    role: Role::Assistant,
                    parts: vec![
                        Part::ToolCall {
                            id: "call_1".into(),
                            name: "weather".into(),
                            arguments: json!({"city": "Oslo"}),
                        },
                        Part::ToolCall {
                            id: "toolu_2".into(),
                            name: "time".into(),
                            arguments: json!({"city": "Rome"}),
                        },
                    ],
                },
                Message {
                    role: Role::Tool,
                    parts: vec![
                        Part::ToolResult {
                            call_id: "call_1".into(),
                            content: "rain".into(),
                            is_error: false,
                        },
                        Part::ToolResult {
                            call_id: "toolu_2".into(),
                            content: "boom".into(),
                            is_error: true,
                        },
                    ],
                },
            ],
            tools: vec![],
            params: Default::default(),
        };
        let body = generate_body(&request).unwrap();
        assert_eq!(body["systemInstruction"]["parts"][0]["text"], "terse");
        let results = &body["contents"][2]["parts"];
        assert_eq!(
            results[0],
            json!({"functionResponse": {"name": "weather", "response": {"result": "rain"}}})
        );
        assert_eq!(
            results[1],
            json!({"functionResponse": {"name": "time", "response": {"error": "boom"}}})
        );
    }

    #[test]
    fn tool_config_and_json_output_take_the_documented_shapes() {
        let mut request = ModelRequest::hi_offering("gemini-2.5-flash", "weather");
        let body = generate_body(&request).unwrap();
        assert!(body.get("toolConfig").is_none() && body.get("generationConfig").is_none());
        for (choice, wire) in [
            (ToolChoice::Auto, json!({"mode": "AUTO"})),
            (ToolChoice::None, json!({"mode": "NONE"})),
            (ToolChoice::Required, json!({"mode": "ANY"})),
            (
                ToolChoice::Tool {
                    name: "weather".into(),
                },
                json!({"mode": "ANY", "allowedFunctionNames": ["weather"]}),
            ),
        ] {
            request.params.tool_choice = Some(choice);
            assert_eq!(
                generate_body(&request).unwrap()["toolConfig"],
                json!({"functionCallingConfig": wire})
            );
        }
        request.params.response_format = Some(ResponseFormat::JsonObject);
        assert_eq!(
            generate_body(&request).unwrap()["generationConfig"],
            json!({"responseMimeType": "application/json"})
        );
        request.params.response_format = Some(ResponseFormat::JsonSchema {
            name: "out".into(),
            description: None,
            schema: json!({"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}),
            strict: true,
        });
        assert_eq!(
            generate_body(&request).unwrap()["generationConfig"],
            json!({"responseMimeType": "application/json",
                "responseSchema": {"type": "object", "properties": {"a": {"type": "string"}}}})
        );
    }
}
