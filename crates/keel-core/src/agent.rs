//! Agent definitions: what a session runs. A definition is immutable once stored; editing an
//! agent stores a new version, and a session pins the version it started with (the whole
//! definition is copied into its first event, so the log alone can replay it).

use serde::{Deserialize, Serialize};

use crate::approval::ApprovalRule;
use crate::http_tool::{HttpAuth, HttpMethod, HttpTool};
use crate::id::AgentId;
use crate::mcp_server::{EnvValue, MCP_NAME_SEPARATOR, McpServer};

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
    /// How the context is kept under its budget (`limits.context_tokens`).
    #[serde(default, skip_serializing_if = "Compaction::is_default")]
    pub compaction: Compaction,
    /// Memory blocks kept in the context of its sessions (`BlockDef`), in the order shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory_blocks: Vec<BlockDef>,
    /// Its long-term memory (`MemoryPolicy`): where `memory_save` / `memory_search` keep it.
    #[serde(default, skip_serializing_if = "MemoryPolicy::is_default")]
    pub memory: MemoryPolicy,
}

/// An agent's long-term memory: the namespace its memory tools read and write, `agent:<name>`
/// unless `namespace` names another (`team:support`, shared by several agents; `user:ada`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// After each completed run, a model lists the durable facts of its turn and they are
    /// saved into the namespace, in the background (the user's turn never waits for it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub extract: bool,
    /// The model that extracts (a route or `provider/model`); the agent's own by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extract_model: Option<String>,
}

impl MemoryPolicy {
    pub fn is_default(&self) -> bool {
        *self == MemoryPolicy::default()
    }
}

/// Compaction: when a session's context passes its budget, the older part of the transcript
/// is summarised by a model (the agent's own unless `model` names another route or
/// `provider/model`) and the summary stands in for it. `summarise = false` leaves the older
/// part out instead, with a marker. Either way the log keeps every event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Compaction {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    pub summarise: bool,
}

impl Default for Compaction {
    fn default() -> Self {
        Compaction {
            model: None,
            summarise: true,
        }
    }
}

impl Compaction {
    pub fn is_default(&self) -> bool {
        *self == Compaction::default()
    }
}

/// A memory block an agent declares (Letta's core memory): a named, size-limited text shown
/// to the model in every step, which the agent edits with its `memory_block_*` tools. Each
/// session holds its own copy, starting from `value`, unless `shared`: then the tenant holds
/// one block of that label that every session declaring it sees and edits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockDef {
    /// `[a-z][a-z0-9_-]{0,63}` (`persona`, `user`, `project`).
    pub label: String,
    /// What the block is for, shown to the model beside it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// What a session's block holds before its first edit.
    #[serde(default)]
    pub value: String,
    /// The most characters (Unicode scalar values) the block may hold.
    #[serde(default = "default_block_limit")]
    pub limit: u32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared: bool,
}

/// A block's limit when its declaration sets none.
pub const DEFAULT_BLOCK_LIMIT: u32 = 2_000;
/// The largest limit a block may have.
pub const MAX_BLOCK_LIMIT: u32 = 100_000;
/// The most blocks one agent may declare.
pub const MAX_BLOCKS: usize = 32;

fn default_block_limit() -> u32 {
    DEFAULT_BLOCK_LIMIT
}

/// Whether `label` is a block label: `[a-z][a-z0-9_-]{0,63}`.
pub fn is_block_label(label: &str) -> bool {
    let mut chars = label.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && label.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Why `value` cannot be a block's value under `limit`, if it cannot: too long, or holding a
/// NUL (which no store keeps as text).
pub fn block_value_problem(label: &str, value: &str, limit: u32) -> Option<String> {
    let chars = value.chars().count();
    if chars > limit as usize {
        return Some(format!(
            "memory block {label:?} holds at most {limit} characters; the new value has {chars}"
        ));
    }
    value
        .contains('\0')
        .then(|| format!("memory block {label:?} cannot hold a NUL character"))
}

impl AgentDef {
    /// Refuses memory blocks that could not be kept: a bad or repeated label, a limit of 0 or
    /// past `MAX_BLOCK_LIMIT`, an initial value over its limit, more than `MAX_BLOCKS`.
    pub fn check_memory_blocks(&self) -> Result<(), String> {
        if self.memory_blocks.len() > MAX_BLOCKS {
            return Err(format!(
                "agent {:?} declares {} memory blocks; at most {MAX_BLOCKS} are allowed",
                self.name,
                self.memory_blocks.len()
            ));
        }
        for (i, block) in self.memory_blocks.iter().enumerate() {
            if !is_block_label(&block.label) {
                return Err(format!(
                    "memory block label {:?} is not valid: use a lowercase letter, then up to 63 \
                     lowercase letters, digits, `_` or `-`",
                    block.label
                ));
            }
            if self.memory_blocks[..i]
                .iter()
                .any(|b| b.label == block.label)
            {
                return Err(format!("memory block {:?} is declared twice", block.label));
            }
            if block.limit == 0 || block.limit > MAX_BLOCK_LIMIT {
                return Err(format!(
                    "memory block {:?}: limit must be 1 to {MAX_BLOCK_LIMIT} characters, not {}",
                    block.label, block.limit
                ));
            }
            if let Some(problem) = block_value_problem(&block.label, &block.value, block.limit) {
                return Err(format!("{problem} (its declared value)"));
            }
        }
        Ok(())
    }

    /// The declared block of this label.
    pub fn memory_block(&self, label: &str) -> Option<&BlockDef> {
        self.memory_blocks.iter().find(|b| b.label == label)
    }
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

impl AgentDef {
    /// The tool a call named `name` is for: the tool of that name, or the `mcp` tool whose
    /// server offers it (`<server>__<tool>`).
    pub fn tool_for_call(&self, name: &str) -> Option<&ToolDef> {
        self.tools
            .iter()
            .find(|t| t.name == name && !matches!(t.kind, ToolKind::Mcp(_)))
            .or_else(|| {
                self.tools.iter().find(|t| {
                    matches!(t.kind, ToolKind::Mcp(_))
                        && name
                            .strip_prefix(t.name.as_str())
                            .is_some_and(|rest| rest.starts_with(MCP_NAME_SEPARATOR))
                })
            })
    }
}

impl ToolDef {
    /// Whether a call of this tool with `arguments`, asked for by a run whose model steps cost
    /// `run_cost_usd` so far, waits for a person: its rule says so, or it is the built-in
    /// `ask_human`, whose result is a person's answer.
    pub fn waits_for_a_person(&self, arguments: &serde_json::Value, run_cost_usd: f64) -> bool {
        self.require_approval.applies_to(arguments, run_cost_usd)
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
    // An `mcp` tool's own fields (`McpServer`; `url`, `allow_private`, `auth` and
    // `timeout_secs` above are shared with `http`).
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    env: Option<std::collections::BTreeMap<String, EnvValue>>,
    #[serde(default)]
    cwd: Option<String>,
    #[serde(default)]
    allowed_tools: Option<Vec<String>>,
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

    /// The first field set that an `mcp` tool does not take.
    fn not_mcp_field_set(&self) -> Option<&'static str> {
        [
            ("method", self.method.is_some()),
            ("retries", self.retries.is_some()),
            ("max_response_bytes", self.max_response_bytes.is_some()),
        ]
        .into_iter()
        .find_map(|(name, set)| set.then_some(name))
    }

    /// The first `mcp`-only field set, for the error on another kind.
    fn mcp_field_set(&self) -> Option<&'static str> {
        [
            ("command", self.command.is_some()),
            ("args", self.args.is_some()),
            ("env", self.env.is_some()),
            ("cwd", self.cwd.is_some()),
            ("allowed_tools", self.allowed_tools.is_some()),
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
    Mcp,
}

impl TryFrom<ToolDefFields> for ToolDef {
    type Error = String;

    fn try_from(f: ToolDefFields) -> Result<ToolDef, Self::Error> {
        if !matches!(f.kind, ToolKindName::Mcp)
            && let Some(field) = f.mcp_field_set()
        {
            return Err(format!("`{field}` is only for tools of kind `mcp`"));
        }
        let kind = match f.kind {
            ToolKindName::Mcp => {
                if let Some(field) = f.not_mcp_field_set() {
                    return Err(format!("`{field}` is only for tools of kind `http`"));
                }
                let server = McpServer {
                    command: f.command,
                    args: f.args.unwrap_or_default(),
                    env: f.env.unwrap_or_default(),
                    cwd: f.cwd,
                    url: f.url,
                    auth: f.auth,
                    allow_private: f.allow_private.unwrap_or_default(),
                    allowed_tools: f.allowed_tools,
                    timeout_secs: f.timeout_secs,
                };
                if let Some(problem) = server.problem() {
                    return Err(problem);
                }
                ToolKind::Mcp(server)
            }
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
    /// An MCP server: its tools (those `allowed_tools` lets through) reach the model as
    /// `<name>__<tool>`, each call with the idempotency key in its `_meta`.
    Mcp(McpServer),
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
    /// The most messages sent to the model; past it the context is compacted (older ones
    /// stay in the log).
    pub context_messages: u32,
    /// The context's budget in tokens; past it the context is compacted to about half. `None`:
    /// three quarters of the model's context window when the catalog lists the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_tokens: Option<u32>,
    /// The most bytes of one tool result the model's context holds: a longer result is logged
    /// whole, once, and sent as its start and a note naming its event (which the built-in
    /// `tool_result_read` reads on from).
    pub tool_result_context_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps: 16,
            max_model_attempts: 3,
            max_output_tokens: None,
            context_messages: 64,
            context_tokens: None,
            tool_result_context_bytes: 16_384,
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
        assert!(serde_json::from_str::<Limits>(r#"{"context_budget": 6000}"#).is_err());
        assert_eq!(
            serde_json::from_str::<Limits>(r#"{"max_steps": 2}"#).unwrap(),
            Limits {
                max_steps: 2,
                ..Limits::default()
            }
        );
    }

    #[test]
    fn mcp_tools_read_back_and_refuse_settings_of_other_kinds() {
        let written = [
            r#"{"name": "time", "kind": "mcp", "command": "python3", "args": ["-m", "mcp_server_time"], "env": {"A": "1", "B": {"env": "KEEL_B"}}, "allowed_tools": ["get_current_time"], "require_approval": true}"#,
            r#"{"name": "everything", "kind": "mcp", "url": "http://127.0.0.1:1/mcp", "auth": {"env": "TOKEN"}, "allow_private": ["127.0.0.0/8"], "timeout_secs": 5}"#,
        ];
        for body in written {
            let tool: ToolDef = serde_json::from_str(body).unwrap();
            assert!(matches!(tool.kind, ToolKind::Mcp(_)), "{body}");
            let json = serde_json::to_value(&tool).unwrap();
            assert_eq!(serde_json::from_value::<ToolDef>(json).unwrap(), tool);
        }
        let refused = [
            (r#"{"name": "t", "kind": "mcp"}"#, "needs"),
            (
                r#"{"name": "t", "kind": "mcp", "command": "x", "url": "http://x"}"#,
                "not both",
            ),
            (
                r#"{"name": "t", "kind": "mcp", "command": "x", "retries": 1}"#,
                "retries",
            ),
            (
                r#"{"name": "t", "kind": "mcp", "url": "http://x", "cwd": "/"}"#,
                "cwd",
            ),
            (
                r#"{"name": "t", "kind": "http", "url": "http://x", "command": "x"}"#,
                "command",
            ),
            (
                r#"{"name": "t", "kind": "builtin", "allowed_tools": []}"#,
                "allowed_tools",
            ),
        ];
        for (body, says) in refused {
            let error = serde_json::from_str::<ToolDef>(body)
                .unwrap_err()
                .to_string();
            assert!(error.contains(says), "{body}: {error}");
        }
    }

    #[test]
    fn a_call_finds_its_tool_by_name_or_by_its_mcp_server_s_prefix() {
        let tools: Vec<ToolDef> = serde_json::from_str(
            r#"[{"name": "time", "kind": "mcp", "command": "x"}, {"name": "time__x", "kind": "client"}]"#,
        )
        .unwrap();
        let agent = AgentDef {
            tools,
            ..serde_json::from_str(r#"{"id": "agt_01J0000000000000000000000A", "name": "a", "version": 1, "model": "m"}"#).unwrap()
        };
        assert_eq!(
            agent.tool_for_call("time__x").unwrap().kind,
            ToolKind::Client
        );
        assert_eq!(
            agent.tool_for_call("time__get_current_time").unwrap().name,
            "time"
        );
        assert!(agent.tool_for_call("time").is_none());
        assert!(agent.tool_for_call("timer__x").is_none());
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
