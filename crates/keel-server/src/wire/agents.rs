//! Agents: a new definition or version, and how one is shown.

use keel_core::agent::{Compaction, MemoryPolicy};
use keel_core::{AgentDef, BlockDef, Limits, ToolDef};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A new agent (`POST /v1/agents`) or a new version of one (`PUT /v1/agents/{name}`, where
/// the name comes from the path).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentBody {
    /// Unique in the tenant; required by `POST`, ignored by `PUT`.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub instructions: String,
    /// A route name or `provider/model`, e.g. `openai/gpt-4o-mini`.
    pub model: String,
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub tools: Vec<ToolDef>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub limits: Option<Limits>,
    /// Memory blocks in its sessions' context: `{label, description?, value?, limit?, shared?}`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub memory_blocks: Vec<BlockDef>,
    /// How the context is kept under `limits.context_tokens`: `{model?, summarise?}` (the
    /// agent's own model summarises by default).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub compaction: Compaction,
    /// Its long-term memory: `{namespace?}`, where `memory_save` and `memory_search` keep it
    /// (default `agent:<name>`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub memory: MemoryPolicy,
}

#[derive(Serialize, ToSchema)]
pub struct AgentView {
    pub id: String,
    pub name: String,
    pub version: u32,
    pub instructions: String,
    pub model: String,
    #[schema(value_type = Vec<Object>)]
    pub tools: Vec<ToolDef>,
    #[schema(value_type = Object)]
    pub limits: Limits,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub memory_blocks: Vec<BlockDef>,
    #[schema(value_type = Object)]
    pub compaction: Compaction,
    #[serde(skip_serializing_if = "MemoryPolicy::is_default")]
    #[schema(value_type = Object)]
    pub memory: MemoryPolicy,
}

impl From<AgentDef> for AgentView {
    fn from(a: AgentDef) -> Self {
        AgentView {
            id: a.id.to_string(),
            name: a.name,
            version: a.version,
            instructions: a.instructions,
            model: a.model,
            tools: a.tools,
            limits: a.limits,
            memory_blocks: a.memory_blocks,
            compaction: a.compaction,
            memory: a.memory,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AgentList {
    pub data: Vec<AgentView>,
}
