//! The model controls of OpenAI's request bodies, `tool_choice` and the reply's format, read
//! into the core's `ToolChoice` and `ResponseFormat` by one set of rules for both endpoints.
//! Chat Completions nests what the Responses API keeps flat (`function.name`, `json_schema`);
//! `Endpoint` says which shape came, and carries the one rule OpenAI itself applies differently
//! (a JSON schema's `name`: required by Chat Completions, optional in the Responses API).

use keel_core::{ResponseFormat, ToolChoice};
use serde_json::{Map, Value};

use super::fields::{FieldError, not_one_of, unknown};

/// OpenAI's `tool_choice` modes.
pub const TOOL_CHOICE_MODES: &[&str] = &["auto", "none", "required"];
/// OpenAI's reply format types.
pub const FORMAT_TYPES: &[&str] = &["text", "json_object", "json_schema"];
/// `tool_choice` object types of the Responses API that name hosted tools keel does not run,
/// or `allowed_tools`.
const HOSTED_TOOL_CHOICES: &[&str] = &[
    "allowed_tools",
    "file_search",
    "web_search_preview",
    "web_search_preview_2025_03_11",
    "computer_use_preview",
    "code_interpreter",
    "image_generation",
    "mcp",
    "custom",
    "apply_patch",
    "shell",
    "programmatic_tool_calling",
];
/// The same for Chat Completions.
const CHAT_UNSUPPORTED_TOOL_CHOICES: &[&str] = &["allowed_tools", "custom"];
/// The name a Responses JSON schema gets when the caller gives none (providers need one).
const DEFAULT_SCHEMA_NAME: &str = "response";

/// Which OpenAI request shape the controls come in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `tool_choice: {"type": "function", "function": {"name"}}`, `response_format:
    /// {"type": "json_schema", "json_schema": {"name", "schema", …}}`.
    ChatCompletions,
    /// `tool_choice: {"type": "function", "name"}`, `text.format: {"type": "json_schema",
    /// "name", "schema", …}`.
    Responses,
}

impl Endpoint {
    /// What a refusal of a format's `field` names: Chat Completions names the whole
    /// `response_format` (as keel always has), the Responses API the field of `text.format`.
    fn format_param(self, field: &str) -> String {
        match self {
            Endpoint::ChatCompletions => "response_format".into(),
            Endpoint::Responses => format!("text.format.{field}"),
        }
    }

    fn forced_function_shape(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "{\"type\": \"function\", \"function\": {\"name\": …}}",
            Endpoint::Responses => "{\"type\": \"function\", \"name\": …}",
        }
    }
}

/// `tool_choice`, checked against the names of the tools the request offers: a choice that
/// forces a call needs tools, and a named function must be one of them (OpenAI refuses both).
/// `None` when absent or `null`.
pub fn tool_choice(
    value: Option<&Value>,
    offered: &[&str],
    endpoint: Endpoint,
) -> Result<Option<ToolChoice>, FieldError> {
    let bad = |message: String| FieldError::invalid("tool_choice", message);
    let choice = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => return Err(not_one_of("tool_choice", other, TOOL_CHOICE_MODES)),
        },
        Some(Value::Object(object)) => forced(object, endpoint)?,
        Some(other) => {
            return Err(bad(format!(
                "tool_choice {other} is not valid: send \"auto\", \"none\", \"required\" or {}",
                endpoint.forced_function_shape()
            )));
        }
    };
    match &choice {
        ToolChoice::Required | ToolChoice::Tool { .. } if offered.is_empty() => Err(bad(
            "tool_choice forces a tool call, but the request has no tools: send tools too".into(),
        )),
        ToolChoice::Tool { name } if !offered.contains(&name.as_str()) => Err(bad(format!(
            "tool_choice names the function {name:?}, which is not among the request's tools ({})",
            offered.join(", ")
        ))),
        _ => Ok(Some(choice)),
    }
}

/// A `tool_choice` object: a forced function, or a type keel refuses.
fn forced(object: &Map<String, Value>, endpoint: Endpoint) -> Result<ToolChoice, FieldError> {
    let kind = object.get("type").and_then(Value::as_str).unwrap_or("");
    let unsupported = match endpoint {
        Endpoint::ChatCompletions => CHAT_UNSUPPORTED_TOOL_CHOICES,
        Endpoint::Responses => HOSTED_TOOL_CHOICES,
    };
    if unsupported.contains(&kind) {
        return Err(FieldError::unsupported(
            "tool_choice",
            format!(
                "keel does not support tool_choice of type {kind:?}: it runs no hosted tools and offers only function tools; send \"auto\", \"none\", \"required\" or {}",
                endpoint.forced_function_shape()
            ),
        ));
    }
    let name = match endpoint {
        Endpoint::ChatCompletions => object.get("function").and_then(|f| f.get("name")),
        Endpoint::Responses => object.get("name"),
    };
    match (kind, name.and_then(Value::as_str)) {
        ("function", Some(name)) if !name.is_empty() => Ok(ToolChoice::Tool { name: name.into() }),
        _ => Err(FieldError::invalid(
            "tool_choice",
            format!(
                "tool_choice {} is not valid: send \"auto\", \"none\", \"required\" or {}",
                Value::Object(object.clone()),
                endpoint.forced_function_shape()
            ),
        )),
    }
}

/// The reply's format: Chat Completions' `response_format` or the Responses API's
/// `text.format`. `None` for free text (absent, `null` or `{"type": "text"}`).
pub fn response_format(
    value: Option<&Value>,
    endpoint: Endpoint,
) -> Result<Option<ResponseFormat>, FieldError> {
    let format = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(format)) => format,
        Some(_) => {
            return Err(FieldError::invalid(
                endpoint.format_param("type"),
                "the reply format must be an object: {\"type\": \"text\" | \"json_object\" | \"json_schema\", …}",
            ));
        }
    };
    let kind = match format.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        _ => {
            return Err(FieldError::invalid(
                endpoint.format_param("type"),
                "the reply format needs a type: text, json_object or json_schema",
            ));
        }
    };
    let allowed: &[&str] = match (kind, endpoint) {
        ("json_schema", Endpoint::ChatCompletions) => &["type", "json_schema"],
        ("json_schema", Endpoint::Responses) => {
            &["type", "name", "description", "schema", "strict"]
        }
        ("text" | "json_object", _) => &["type"],
        (other, _) => {
            return Err(not_one_of(
                &endpoint.format_param("type"),
                other,
                FORMAT_TYPES,
            ));
        }
    };
    if let Some(key) = format.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(unknown(&endpoint.format_param(key)));
    }
    match kind {
        "text" => Ok(None),
        "json_object" => Ok(Some(ResponseFormat::JsonObject)),
        _ => json_schema(format, endpoint).map(Some),
    }
}

/// A `json_schema` format. Chat Completions nests the spec (and requires its `name`; the
/// schema may be left out, which allows any JSON); the Responses API has it flat and requires
/// the schema, not the name.
fn json_schema(
    format: &Map<String, Value>,
    endpoint: Endpoint,
) -> Result<ResponseFormat, FieldError> {
    let spec = match endpoint {
        Endpoint::Responses => format,
        Endpoint::ChatCompletions => match format.get("json_schema") {
            Some(Value::Object(spec)) => {
                let known = ["name", "description", "schema", "strict"];
                if let Some(key) = spec.keys().find(|k| !known.contains(&k.as_str())) {
                    return Err(unknown(&format!("response_format.json_schema.{key}")));
                }
                spec
            }
            _ => {
                return Err(FieldError::invalid(
                    "response_format",
                    "response_format json_schema needs json_schema: {\"name\", \"schema\", \"strict\", \"description\"}",
                ));
            }
        },
    };
    let bad =
        |field: &str, message: String| FieldError::invalid(endpoint.format_param(field), message);
    let name = match (spec.get("name"), endpoint) {
        (Some(Value::String(name)), _) => name.as_str(),
        (None | Some(Value::Null), Endpoint::Responses) => DEFAULT_SCHEMA_NAME,
        (None | Some(Value::Null), Endpoint::ChatCompletions) => {
            return Err(bad(
                "name",
                "response_format json_schema needs json_schema.name (and json_schema.schema)"
                    .into(),
            ));
        }
        (Some(other), _) => {
            return Err(bad(
                "name",
                format!("the schema's name must be a string, not {other}"),
            ));
        }
    };
    let valid_name = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_name {
        return Err(bad(
            "name",
            format!("the schema's name {name:?} must match ^[a-zA-Z0-9_-]{{1,64}}$"),
        ));
    }
    let schema = match (spec.get("schema"), endpoint) {
        (Some(schema @ Value::Object(_)), _) => schema.clone(),
        (None | Some(Value::Null), Endpoint::ChatCompletions) => Value::Object(Map::new()),
        (None | Some(Value::Null), Endpoint::Responses) => {
            return Err(bad(
                "schema",
                "a json_schema format needs a schema object".into(),
            ));
        }
        (Some(_), _) => {
            return Err(bad(
                "schema",
                "the schema must be a JSON Schema object".into(),
            ));
        }
    };
    let description = match spec.get("description") {
        None | Some(Value::Null) => None,
        Some(Value::String(description)) => Some(description.clone()),
        Some(_) => {
            return Err(bad(
                "description",
                "the schema's description must be a string".into(),
            ));
        }
    };
    let strict = match spec.get("strict") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(strict)) => *strict,
        Some(_) => return Err(bad("strict", "strict must be a boolean".into())),
    };
    Ok(ResponseFormat::JsonSchema {
        name: name.into(),
        description,
        schema,
        strict,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use Endpoint::{ChatCompletions, Responses};

    #[test]
    fn a_forced_function_is_read_from_each_endpoint_shape_and_must_be_offered() {
        let chat = json!({"type": "function", "function": {"name": "f"}});
        let flat = json!({"type": "function", "name": "f"});
        let f = Some(ToolChoice::Tool { name: "f".into() });
        assert_eq!(
            tool_choice(Some(&chat), &["f"], ChatCompletions).unwrap(),
            f
        );
        assert_eq!(tool_choice(Some(&flat), &["f"], Responses).unwrap(), f);
        for endpoint in [ChatCompletions, Responses] {
            let named = if endpoint == Responses { &flat } else { &chat };
            for (value, offered) in [
                (named, &["g"][..]),
                (named, &[][..]),
                (&json!("required"), &[][..]),
                (&json!("sometimes"), &["f"][..]),
                (&json!(7), &["f"][..]),
            ] {
                let error = tool_choice(Some(value), offered, endpoint).unwrap_err();
                assert_eq!(
                    (error.param.as_str(), error.code),
                    ("tool_choice", "invalid_value"),
                    "{value}"
                );
            }
            // auto and none ask nothing of the tools
            for mode in ["auto", "none"] {
                assert!(
                    tool_choice(Some(&json!(mode)), &[], endpoint)
                        .unwrap()
                        .is_some()
                );
            }
            let allowed = json!({"type": "allowed_tools", "mode": "auto", "tools": []});
            let error = tool_choice(Some(&allowed), &["f"], endpoint).unwrap_err();
            assert_eq!(error.code, "unsupported_parameter");
        }
        // Each endpoint's shape is not the other's.
        assert!(tool_choice(Some(&flat), &["f"], ChatCompletions).is_err());
        assert!(tool_choice(Some(&chat), &["f"], Responses).is_err());
    }

    #[test]
    fn a_json_schema_needs_a_name_on_chat_and_a_schema_on_responses() {
        let schema = json!({"type": "object"});
        let chat = json!({"type": "json_schema", "json_schema": {"schema": schema}});
        let error = response_format(Some(&chat), ChatCompletions).unwrap_err();
        assert_eq!(error.param, "response_format");
        let flat = json!({"type": "json_schema", "schema": schema});
        assert_eq!(
            response_format(Some(&flat), Responses).unwrap(),
            Some(ResponseFormat::JsonSchema {
                name: "response".into(),
                description: None,
                schema: schema.clone(),
                strict: false
            })
        );
        let nameless = json!({"type": "json_schema", "json_schema": {"name": "out"}});
        assert_eq!(
            response_format(Some(&nameless), ChatCompletions).unwrap(),
            Some(ResponseFormat::JsonSchema {
                name: "out".into(),
                description: None,
                schema: json!({}),
                strict: false
            })
        );
        let schemaless = json!({"type": "json_schema", "name": "out"});
        assert_eq!(
            response_format(Some(&schemaless), Responses)
                .unwrap_err()
                .param,
            "text.format.schema"
        );
        for (value, param) in [
            (json!({"type": "xml"}), "text.format.type"),
            (
                json!({"type": "json_schema", "name": "a b", "schema": {}}),
                "text.format.name",
            ),
            (
                json!({"type": "json_schema", "schema": {}, "strict": "yes"}),
                "text.format.strict",
            ),
            (
                json!({"type": "json_object", "bogus": 1}),
                "text.format.bogus",
            ),
        ] {
            assert_eq!(
                response_format(Some(&value), Responses).unwrap_err().param,
                param,
                "{value}"
            );
        }
        for text in [json!({"type": "text"}), Value::Null] {
            assert_eq!(response_format(Some(&text), ChatCompletions).unwrap(), None);
            assert_eq!(response_format(Some(&text), Responses).unwrap(), None);
        }
    }
}
