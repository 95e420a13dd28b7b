//! What a run may carry besides its input: per-run overrides of the session's agent. The
//! OpenAI Responses API sends model, instructions and function tools with every request, and
//! a session may switch model between runs; the overrides are logged with the run's start so
//! replaying the log drives the run exactly as it was asked for.

use serde::{Deserialize, Serialize};

use crate::agent::{ToolDef, ToolKind};
use crate::controls::{CallerIds, ResponseFormat, ToolChoice};
use crate::message::Message;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    /// A route name or `provider/model` that serves this run instead of the agent's model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Replaces the agent's instructions for this run only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Tools offered for this run besides the agent's; `ToolKind::Client` ones are performed
    /// by the caller (the run ends with the call pending, the next input carries its result).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolDef>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "finite_f32"
    )]
    pub temperature: Option<f32>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "finite_f32"
    )]
    pub top_p: Option<f32>,
    /// Output tokens per model call, instead of the agent's limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// What to do when the transcript does not fit the model's context window.
    #[serde(default, skip_serializing_if = "Truncation::is_disabled")]
    pub truncation: Truncation,
    /// The context's budget in tokens for this run, instead of the agent's (OpenAI's
    /// `context_management: [{"type": "compaction", "compact_threshold": N}]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compact_threshold: Option<u32>,
    /// How the model may use tools; `None` leaves it to the provider (auto).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// The reply's required format; `None` is free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Passed to providers that take them at every step of the run.
    #[serde(default, skip_serializing_if = "CallerIds::is_empty")]
    pub caller_ids: CallerIds,
    /// Messages logged just before the run's input (a Responses request's earlier input
    /// items, such as a history the caller keeps itself).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<Message>,
    /// Opaque to the engine: what the API that queued the run keeps with it to answer about
    /// it later (the Responses API's `previous_response_id`, `metadata`, `store`, ...).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub annotations: serde_json::Map<String, serde_json::Value>,
}

/// OpenAI's `truncation`: what happens when the transcript is longer than the model's context
/// window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// The call fails (`context_length_exceeded`).
    #[default]
    Disabled,
    /// The oldest turns are left out until the transcript fits.
    Auto,
}

impl Truncation {
    pub fn is_disabled(&self) -> bool {
        *self == Truncation::Disabled
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Truncation::Disabled => "disabled",
            Truncation::Auto => "auto",
        }
    }
}

impl RunOptions {
    pub fn is_default(&self) -> bool {
        self == &RunOptions::default()
    }

    /// Names of the tools the caller performs.
    pub fn client_tools(&self) -> impl Iterator<Item = &str> {
        self.tools
            .iter()
            .filter(|t| t.kind == ToolKind::Client)
            .map(|t| t.name.as_str())
    }
}

/// A sampling number an `f32` holds. JSON such as `1e39` would read as infinity, which is
/// written back as `null`: a logged run would not replay as it was asked for.
fn finite_f32<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<f32>, D::Error> {
    match Option::<f32>::deserialize(d)? {
        Some(value) if !value.is_finite() => Err(serde::de::Error::custom(
            "a sampling parameter is out of range for a 32-bit float",
        )),
        value => Ok(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controls::{ResponseFormat, ToolChoice};

    /// Options as the keel before typed controls logged them (`tool_choice` and
    /// `response_format` as loose JSON values) read back into the typed fields.
    #[test]
    fn run_options_logged_before_typed_controls_read_back() {
        let logged = r#"{"model":"openai/gpt-4o-mini","tool_choice":{"type":"tool","name":"weather"},
            "response_format":{"type":"json_schema","name":"forecast","schema":{"type":"object"},"strict":true},
            "annotations":{"api":"responses"}}"#;
        let options: RunOptions = serde_json::from_str(logged).unwrap();
        assert_eq!(
            options.tool_choice,
            Some(ToolChoice::Tool {
                name: "weather".into()
            })
        );
        assert_eq!(
            options.response_format,
            Some(ResponseFormat::JsonSchema {
                name: "forecast".into(),
                description: None,
                schema: serde_json::json!({"type": "object"}),
                strict: true,
            })
        );
        assert!(options.caller_ids.is_empty());
        // The store's own tests wrote a bare mode.
        let bare: RunOptions = serde_json::from_str(r#"{"tool_choice":"required"}"#).unwrap();
        assert_eq!(bare.tool_choice, Some(ToolChoice::Required));
        // What is written now is what the previous keel wrote, so it can read it too.
        let written = serde_json::to_value(&options).unwrap();
        let previous: serde_json::Value = serde_json::from_str(logged).unwrap();
        assert_eq!(written["tool_choice"], previous["tool_choice"]);
        assert_eq!(written["response_format"], previous["response_format"]);
    }
}
