//! Checks a Chat Completions request body the way OpenAI does, so a client that sends a shape
//! the real API would refuse fails against the mock too (with OpenAI's 400 error).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// Why a request was refused: OpenAI's `message` and `param`.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub message: String,
    pub param: Option<String>,
}

fn invalid(param: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        message: message.into(),
        param: Some(param.into()),
    }
}

/// The request arguments the mock accepts; anything else is "Unrecognized request argument".
const KNOWN_ARGUMENTS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "n",
    "user",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "response_format",
    "metadata",
    "store",
    "reasoning_effort",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
];

pub(crate) fn check_chat_request(body: &Value) -> Result<(), Invalid> {
    let Some(body) = body.as_object() else {
        return Err(Invalid {
            message:
                "We could not parse the JSON body of your request. The body must be a JSON object."
                    .into(),
            param: None,
        });
    };
    if let Some(unknown) = body.keys().find(|k| !KNOWN_ARGUMENTS.contains(&k.as_str())) {
        return Err(invalid(
            unknown.clone(),
            format!("Unrecognized request argument supplied: {unknown}"),
        ));
    }
    match body.get("model") {
        Some(Value::String(model)) if !model.is_empty() => {}
        _ => return Err(invalid("model", "you must provide a model parameter")),
    }
    check_messages(body.get("messages"))?;
    if let Some(tools) = body.get("tools") {
        check_tools(tools)?;
    }
    check_parameters(body)
}

fn check_messages(messages: Option<&Value>) -> Result<(), Invalid> {
    let Some(Value::Array(messages)) = messages else {
        return Err(invalid(
            "messages",
            "Missing required parameter: 'messages'.",
        ));
    };
    if messages.is_empty() {
        return Err(invalid("messages", "[] is too short - 'messages'"));
    }
    // Tool call ids the latest assistant message asked for that no tool message answered yet.
    let mut unanswered: BTreeSet<String> = BTreeSet::new();
    for (i, message) in messages.iter().enumerate() {
        let at = format!("messages.[{i}]");
        let Some(message) = message.as_object() else {
            return Err(invalid(at, "each message must be a JSON object"));
        };
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "tool" && !unanswered.is_empty() {
            return Err(unanswered_calls(&at, &unanswered));
        }
        match role {
            "system" | "developer" => check_text_content(message, &at, true)?,
            "user" => check_user_content(message, &at)?,
            "assistant" => unanswered = check_assistant(message, &at)?,
            "tool" => {
                let Some(id) = message.get("tool_call_id").and_then(Value::as_str) else {
                    return Err(invalid(
                        format!("{at}.tool_call_id"),
                        "Missing required parameter: 'tool_call_id'.",
                    ));
                };
                if !unanswered.remove(id) {
                    return Err(invalid(
                        format!("{at}.tool_call_id"),
                        format!(
                            "Invalid parameter: messages with role 'tool' must be a response to a preceding message \
                             with 'tool_calls'; no unanswered tool call has id '{id}'."
                        ),
                    ));
                }
                check_text_content(message, &at, true)?;
            }
            other => {
                return Err(invalid(
                    format!("{at}.role"),
                    format!(
                        "Invalid value: '{other}'. Supported values are: 'system', 'developer', 'user', 'assistant' \
                         and 'tool'."
                    ),
                ));
            }
        }
    }
    if !unanswered.is_empty() {
        return Err(unanswered_calls(
            &format!("messages.[{}]", messages.len()),
            &unanswered,
        ));
    }
    Ok(())
}

fn unanswered_calls(at: &str, unanswered: &BTreeSet<String>) -> Invalid {
    let ids: Vec<&str> = unanswered.iter().map(String::as_str).collect();
    invalid(
        at,
        format!(
            "An assistant message with 'tool_calls' must be followed by tool messages responding to each \
             'tool_call_id'. The following tool_call_ids did not have response messages: {}",
            ids.join(", ")
        ),
    )
}

/// `content` as a string or an array of text parts.
fn check_text_content(
    message: &Map<String, Value>,
    at: &str,
    required: bool,
) -> Result<(), Invalid> {
    match message.get("content") {
        Some(Value::String(_)) => Ok(()),
        Some(Value::Null) | None if !required => Ok(()),
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                if part.get("type").and_then(Value::as_str) != Some("text")
                    || !part["text"].is_string()
                {
                    return Err(invalid(
                        format!("{at}.content.[{j}]"),
                        "this role accepts only text content parts: {\"type\": \"text\", \"text\": \"...\"}",
                    ));
                }
            }
            Ok(())
        }
        _ => Err(invalid(
            format!("{at}.content"),
            "content must be a string or an array of text parts",
        )),
    }
}

fn check_user_content(message: &Map<String, Value>, at: &str) -> Result<(), Invalid> {
    let Some(Value::Array(parts)) = message.get("content") else {
        return check_text_content(message, at, true);
    };
    for (j, part) in parts.iter().enumerate() {
        let ok = match part.get("type").and_then(Value::as_str) {
            Some("text") => part["text"].is_string(),
            Some("image_url") => part["image_url"]["url"].is_string(),
            Some("input_audio" | "file") => true,
            _ => false,
        };
        if !ok {
            return Err(invalid(
                format!("{at}.content.[{j}]"),
                "a user content part must be {\"type\":\"text\",\"text\":…} or \
                 {\"type\":\"image_url\",\"image_url\":{\"url\":…}}",
            ));
        }
    }
    Ok(())
}

/// Returns the ids of the tool calls the message asks for.
fn check_assistant(message: &Map<String, Value>, at: &str) -> Result<BTreeSet<String>, Invalid> {
    check_text_content(message, at, false)?;
    let mut ids = BTreeSet::new();
    match message.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(calls)) => {
            for (j, call) in calls.iter().enumerate() {
                let here = format!("{at}.tool_calls.[{j}]");
                let id = call.get("id").and_then(Value::as_str).unwrap_or("");
                if id.is_empty() {
                    return Err(invalid(
                        format!("{here}.id"),
                        "Missing required parameter: 'id'.",
                    ));
                }
                if call.get("type").and_then(Value::as_str) != Some("function") {
                    return Err(invalid(
                        format!("{here}.type"),
                        "Missing or invalid 'type': expected 'function'.",
                    ));
                }
                let name = call["function"]["name"].as_str().unwrap_or("");
                if name.is_empty() {
                    return Err(invalid(
                        format!("{here}.function.name"),
                        "Missing required parameter: 'name'.",
                    ));
                }
                if !call["function"]["arguments"].is_string() {
                    return Err(invalid(
                        format!("{here}.function.arguments"),
                        "Invalid type: 'arguments' must be a string holding a JSON object.",
                    ));
                }
                ids.insert(id.to_string());
            }
        }
        Some(_) => {
            return Err(invalid(
                format!("{at}.tool_calls"),
                "'tool_calls' must be an array",
            ));
        }
    }
    let has_content = !matches!(message.get("content"), None | Some(Value::Null));
    if !has_content && ids.is_empty() {
        return Err(invalid(
            format!("{at}.content"),
            "Invalid value: an assistant message must have 'content' or 'tool_calls'.",
        ));
    }
    Ok(ids)
}

fn check_tools(tools: &Value) -> Result<(), Invalid> {
    let Some(tools) = tools.as_array() else {
        return Err(invalid("tools", "'tools' must be an array"));
    };
    for (i, tool) in tools.iter().enumerate() {
        let at = format!("tools[{i}]");
        if tool.get("type").and_then(Value::as_str) != Some("function") {
            return Err(invalid(
                format!("{at}.type"),
                "Missing or invalid 'type': expected 'function'.",
            ));
        }
        let name = tool["function"]["name"].as_str().unwrap_or("");
        let valid_name = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid_name {
            return Err(invalid(
                format!("{at}.function.name"),
                format!(
                    "Invalid 'name': '{name}'. Expected a string that matches the pattern '^[a-zA-Z0-9_-]{{1,64}}$'."
                ),
            ));
        }
        if let Some(parameters) = tool["function"].get("parameters")
            && !parameters.is_object()
        {
            return Err(invalid(
                format!("{at}.function.parameters"),
                "'parameters' must be a JSON Schema object",
            ));
        }
    }
    Ok(())
}

fn check_parameters(body: &Map<String, Value>) -> Result<(), Invalid> {
    let streaming = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("stream", "'stream' must be a boolean")),
    };
    if body.get("stream_options").is_some_and(|v| !v.is_null()) && !streaming {
        return Err(invalid(
            "stream_options",
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
        ));
    }
    check_number(body, "temperature", 0.0, 2.0)?;
    check_number(body, "top_p", 0.0, 1.0)?;
    for name in ["max_tokens", "max_completion_tokens", "seed"] {
        if let Some(v) = body.get(name)
            && !v.is_null()
            && !(v.is_u64() || (name == "seed" && v.is_i64()))
        {
            return Err(invalid(
                name,
                format!("Invalid type for '{name}': expected an integer, got {v}."),
            ));
        }
    }
    match body.get("stop") {
        None | Some(Value::Null | Value::String(_)) => Ok(()),
        Some(Value::Array(stops)) if stops.len() <= 4 && stops.iter().all(Value::is_string) => {
            Ok(())
        }
        Some(_) => Err(invalid(
            "stop",
            "'stop' must be a string or an array of at most 4 strings",
        )),
    }
}

fn check_number(body: &Map<String, Value>, name: &str, min: f64, max: f64) -> Result<(), Invalid> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(()),
        Some(v) => match v.as_f64() {
            Some(x) if (min..=max).contains(&x) => Ok(()),
            _ => Err(invalid(
                name,
                format!("Invalid '{name}': {v}. Expected a number from {min} to {max}."),
            )),
        },
    }
}
