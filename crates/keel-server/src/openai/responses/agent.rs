//! The tenant's `openai-responses` agent: what sessions started through `/v1/responses` (and
//! new conversations) pin. Each response names its own model and tools, so the agent only
//! supplies limits (and a model for native-API turns in those sessions).

use keel_core::{AgentDef, Limits, TenantId};

use crate::error::ApiError;
use crate::state::AppState;

/// The agent that sessions started through this API pin. Each response names its own model
/// and tools, so the agent only supplies limits (and a model for native-API turns).
pub const RESPONSES_AGENT: &str = "openai-responses";

/// The output cap older keels gave the agent below (every response without
/// `max_output_tokens` was cut there).
const LEGACY_OUTPUT_CAP: u32 = 4096;

/// The tenant's agent for sessions this API starts, created on first use.
pub async fn responses_agent(
    state: &AppState,
    tenant: &TenantId,
    model: &str,
) -> Result<AgentDef, ApiError> {
    let store = state.engine.store();
    if let Some(agent) = store.get_agent(tenant, RESPONSES_AGENT, None).await? {
        if agent.limits.max_output_tokens == Some(LEGACY_OUTPUT_CAP) {
            // Written by a keel that capped every response; OpenAI sends no cap. Sessions
            // started from here on pin the new version.
            let mut uncapped = agent;
            uncapped.limits.max_output_tokens = None;
            return Ok(state.engine.put_agent(tenant, uncapped).await?);
        }
        return Ok(agent);
    }
    let agent = AgentDef {
        id: keel_engine::clock::new_agent_id(),
        name: RESPONSES_AGENT.into(),
        version: 0,
        instructions: String::new(),
        model: model.into(),
        tools: Vec::new(),
        // No output cap: a response asks for one with `max_output_tokens`.
        limits: Limits::default(),
        memory_blocks: Vec::new(),
        compaction: Default::default(),
        memory: Default::default(),
    };
    Ok(state.engine.put_agent(tenant, agent).await?)
}
