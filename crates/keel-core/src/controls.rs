//! What a caller may ask of the model besides the prompt: whether it must call tools, the shape
//! of its reply, and the identifiers some providers take (end user, prompt cache). They live in
//! the core because a run logs them with its start (`RunOptions`) and the engine hands them to
//! the provider at every step; each provider encodes them in its own wire format.

use serde::{Deserialize, Deserializer, Serialize};

/// Which of the offered tools the model may call. Stored as `{"type": "auto"}`, ...,
/// `{"type": "tool", "name": …}`; a bare `"auto"`, `"none"` or `"required"` (as older records
/// may hold) reads too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolChoice {
    /// The model decides between text and tool calls.
    Auto,
    /// The model answers in text only, though tools are offered (and may appear in history).
    None,
    /// The model must call at least one tool.
    Required,
    /// The model must call this tool.
    Tool { name: String },
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        enum Tagged {
            Auto,
            None,
            Required,
            Tool { name: String },
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "snake_case")]
        enum Mode {
            Auto,
            None,
            Required,
        }
        #[derive(Deserialize)]
        #[serde(
            untagged,
            expecting = "a tool choice: \"auto\", \"none\", \"required\" or {\"type\": …}"
        )]
        enum Written {
            Mode(Mode),
            Tagged(Tagged),
        }
        Ok(match Written::deserialize(d)? {
            Written::Mode(Mode::Auto) | Written::Tagged(Tagged::Auto) => ToolChoice::Auto,
            Written::Mode(Mode::None) | Written::Tagged(Tagged::None) => ToolChoice::None,
            Written::Mode(Mode::Required) | Written::Tagged(Tagged::Required) => {
                ToolChoice::Required
            }
            Written::Tagged(Tagged::Tool { name }) => ToolChoice::Tool { name },
        })
    }
}

/// The shape of the reply's text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text (the default).
    Text,
    /// Any valid JSON object ("JSON mode").
    JsonObject,
    /// JSON valid against `schema` (structured outputs).
    JsonSchema {
        /// A name for the schema (`[a-zA-Z0-9_-]`, as OpenAI requires).
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        /// A JSON Schema.
        schema: serde_json::Value,
        /// Ask for strict adherence where the provider distinguishes it (OpenAI).
        #[serde(default)]
        strict: bool,
    },
}

/// Identifiers a caller passes through to the provider, for providers whose wire has such
/// fields (OpenAI's); the others have nowhere to put them and leave them out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerIds {
    /// The end user, as OpenAI's deprecated `user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A stable id of the end user, for the provider's abuse detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_identifier: Option<String>,
    /// Groups requests that share a prompt prefix, for the provider's prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_key: Option<String>,
}

impl CallerIds {
    pub fn is_empty(&self) -> bool {
        self == &CallerIds::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_tool_choice_reads_back_in_its_stored_form_and_as_a_bare_mode() {
        for (choice, stored) in [
            (ToolChoice::Auto, json!({"type": "auto"})),
            (ToolChoice::None, json!({"type": "none"})),
            (ToolChoice::Required, json!({"type": "required"})),
            (
                ToolChoice::Tool { name: "f".into() },
                json!({"type": "tool", "name": "f"}),
            ),
        ] {
            assert_eq!(serde_json::to_value(&choice).unwrap(), stored);
            assert_eq!(
                serde_json::from_value::<ToolChoice>(stored).unwrap(),
                choice
            );
        }
        for (mode, choice) in [
            ("auto", ToolChoice::Auto),
            ("none", ToolChoice::None),
            ("required", ToolChoice::Required),
        ] {
            assert_eq!(
                serde_json::from_value::<ToolChoice>(json!(mode)).unwrap(),
                choice
            );
        }
        for bad in [json!("sometimes"), json!({"type": "tool"}), json!(3)] {
            assert!(
                serde_json::from_value::<ToolChoice>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}
