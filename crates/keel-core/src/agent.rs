//! Agent definitions: what a session runs. A definition is immutable once stored; editing an
//! agent stores a new version, and a session pins the version it started with (the whole
//! definition is copied into its first event, so the log alone can replay it).

use serde::{Deserialize, Serialize};

use crate::approval::ApprovalRule;
use crate::http_tool::{HttpAuth, HttpMethod, HttpTool};
use crate::id::AgentId;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentDef {
    pub id: AgentId,
    /// Unique per tenant; what `keel chat --agent NAME` refers to.
    pub name: String,
    pub version: u32,
    #[serde(default)]
    pub instructions: String,
    /// A route name or `provider/model` (e.g. `openai/gpt-4o-mini`, `scripted/echo`).
    pub model: String,
    #[serde(default)]
    pub tools: Vec<ToolDef>,
    #[serde(default)]
    pub limits: Limits,
}

/// Read through `ToolDefFields`, so that a key keel does not know is refused rather than
/// dropped (serde cannot deny unknown fields beside a flattened one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ToolDefFields")]
pub struct ToolDef {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: serde_json::Value,
    /// Whether the model's arguments must follow the schema exactly, sent to providers that
    /// take it (OpenAI's `strict`); `None` leaves it to the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// Which calls a person approves (or rejects, or edits) before keel performs them: the run
    /// waits (`approval_requested`) until `POST /v1/runs/{id}/resume` decides.
    #[serde(default, skip_serializing_if = "ApprovalRule::is_never")]
    pub require_approval: ApprovalRule,
    #[serde(flatten)]
    pub kind: ToolKind,
}

impl ToolDef {
    /// Whether a call of this tool with `arguments` waits for a person: its rule says so, or
    /// it is the built-in `ask_human`, whose result is a person's answer.
    pub fn waits_for_a_person(&self, arguments: &serde_json::Value) -> bool {
        self.require_approval.applies_to(arguments)
            || (self.kind == ToolKind::Builtin && self.name == crate::approval::ASK_HUMAN)
    }
}

/// `ToolDef` as written: its fields and its kind's, side by side.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolDefFields {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default = "empty_object_schema")]
    parameters: serde_json::Value,
    #[serde(default)]
    strict: Option<bool>,
    #[serde(default)]
    require_approval: ApprovalRule,
    kind: ToolKindName,
    // An `http` tool's own fields (`HttpTool`), refused on any other kind.
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    method: Option<HttpMethod>,
    #[serde(default)]
    allow_private: Option<Vec<String>>,
    #[serde(default)]
    auth: Option<HttpAuth>,
    #[serde(default)]
    timeout_secs: Option<u32>,
    #[serde(default)]
    retries: Option<u32>,
    #[serde(default)]
    max_response_bytes: Option<u32>,
}

impl ToolDefFields {
    /// The first `http`-only field set, for the error on another kind.
    fn http_field_set(&self) -> Option<&'static str> {
        [
            ("url", self.url.is_some()),
            ("method", self.method.is_some()),
            ("allow_private", self.allow_private.is_some()),
            ("auth", self.auth.is_some()),
            ("timeout_secs", self.timeout_secs.is_some()),
            ("retries", self.retries.is_some()),
            ("max_response_bytes", self.max_response_bytes.is_some()),
        ]
        .into_iter()
        .find_map(|(name, set)| set.then_some(name))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ToolKindName {
    Builtin,
    Http,
    Client,
}

impl TryFrom<ToolDefFields> for ToolDef {
    type Error = String;

    fn try_from(f: ToolDefFields) -> Result<ToolDef, Self::Error> {
        let kind = match f.kind {
            ToolKindName::Http => ToolKind::Http(HttpTool {
                url: f.url.ok_or("missing field `url`")?,
                method: f.method.unwrap_or_default(),
                allow_private: f.allow_private.unwrap_or_default(),
                auth: f.auth,
                timeout_secs: f.timeout_secs,
                retries: f.retries,
                max_response_bytes: f.max_response_bytes,
            }),
            _ if f.http_field_set().is_some() => {
                let field = f.http_field_set().unwrap_or_default();
                return Err(format!("`{field}` is only for tools of kind `http`"));
            }
            ToolKindName::Builtin => ToolKind::Builtin,
            ToolKindName::Client => ToolKind::Client,
        };
        Ok(ToolDef {
            name: f.name,
            description: f.description,
            parameters: f.parameters,
            strict: f.strict,
            require_approval: f.require_approval,
            kind,
        })
    }
}

fn empty_object_schema() -> serde_json::Value {
    serde_json::json!({"type": "object", "properties": {}})
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToolKind {
    /// Implemented inside keel (`clock_now`, `scratchpad_set`, `scratchpad_get`).
    Builtin,
    /// An HTTP endpoint: keel sends the arguments (a JSON body for POST) with an
    /// `Idempotency-Key` header and takes the response body as the result.
    Http(HttpTool),
    /// Performed by the caller, not by keel: the run ends with the call pending and the
    /// caller's next input carries its result (OpenAI's function tools).
    Client,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Model calls per run before the run fails with `max_steps`.
    pub max_steps: u32,
    /// Attempts per model call (the first included) before the run fails.
    pub max_model_attempts: u32,
    /// Output tokens per model call; `None` (the default) sends no cap, so the model's own
    /// limit applies, as with OpenAI's API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// The most recent messages sent to the model; older ones stay in the log.
    pub context_messages: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps: 16,
            max_model_attempts: 3,
            max_output_tokens: None,
            context_messages: 64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_defs_read_back_what_they_write() {
        for kind in [
            ToolKind::Builtin,
            ToolKind::Client,
            ToolKind::Http(HttpTool::post("http://127.0.0.1:9/t")),
            ToolKind::Http(HttpTool {
                method: HttpMethod::Get,
                allow_private: vec!["127.0.0.0/8".into()],
                auth: Some(HttpAuth {
                    env: "T_TOKEN".into(),
                    header: Some("X-Api-Key".into()),
                }),
                timeout_secs: Some(3),
                retries: Some(0),
                max_response_bytes: Some(100),
                ..HttpTool::post("http://127.0.0.1:9/t")
            }),
        ] {
            let tool = ToolDef {
                name: "t".into(),
                description: "d".into(),
                parameters: empty_object_schema(),
                strict: Some(true),
                require_approval: ApprovalRule::Matching(crate::approval::ArgumentPattern {
                    argument: "to".into(),
                    matches: "*@example.org".into(),
                }),
                kind,
            };
            let json = serde_json::to_value(&tool).unwrap();
            assert_eq!(serde_json::from_value::<ToolDef>(json).unwrap(), tool);
        }
    }

    #[test]
    fn tool_defs_and_limits_refuse_keys_they_do_not_honour() {
        let refused = [
            r#"{"name": "t", "kind": "builtin", "colour": 1}"#,
            r#"{"name": "t", "kind": "builtin", "url": "http://x"}"#,
            r#"{"name": "t", "kind": "http"}"#,
            r#"{"name": "t", "kind": "client", "retries": 2}"#,
            r#"{"name": "t", "kind": "http", "url": "http://x", "auth": {"env": "A", "value": "s"}}"#,
            r#"{"name": "t", "kind": "http", "url": "http://x", "method": "TRACE"}"#,
            r#"{"name": "t", "kind": "teleport"}"#,
        ];
        for body in refused {
            assert!(serde_json::from_str::<ToolDef>(body).is_err(), "{body}");
        }
        let tool: ToolDef = serde_json::from_str(r#"{"name": "t", "kind": "client"}"#).unwrap();
        assert_eq!(tool.parameters, empty_object_schema());
        assert!(serde_json::from_str::<Limits>(r#"{"context_tokens": 6000}"#).is_err());
        assert_eq!(
            serde_json::from_str::<Limits>(r#"{"max_steps": 2}"#).unwrap(),
            Limits {
                max_steps: 2,
                ..Limits::default()
            }
        );
    }

    #[test]
    fn no_output_cap_unless_one_is_set_and_stored_caps_still_read() {
        assert_eq!(Limits::default().max_output_tokens, None);
        let json = serde_json::to_string(&Limits::default()).unwrap();
        assert!(!json.contains("max_output_tokens"), "{json}");
        // An agent stored by an older keel, which always wrote a cap.
        let old: Limits = serde_json::from_str(
            r#"{"max_steps": 16, "max_model_attempts": 3, "max_output_tokens": 1024, "context_messages": 64}"#,
        )
        .unwrap();
        assert_eq!(old.max_output_tokens, Some(1024));
    }
}
