//! `memory_save` and `memory_search`: an agent's long-term memory, kept in its namespace
//! (`memory::agent_namespace`). A save is embedded during the call and the record handed back
//! as a write (`ToolWrites::memory`) that commits with the tool's result event, so a step
//! performed again after a crash stores it once. Bad arguments, an empty query or an oversize
//! text are an error result the model reads, never a failed run.

use keel_core::{AgentDef, SessionId, TenantId};
use keel_store::{Store, StoreError};
use serde_json::{Map, Value, json};

use super::{ToolOutcome, ToolWrites};
use crate::memory::{self, SearchMode};
use crate::{EngineError, ModelRegistry};

pub(super) const SAVE: &str = "memory_save";
pub(super) const SEARCH: &str = "memory_search";

/// Hits a search returns when the model gives no `limit`.
const DEFAULT_LIMIT: usize = 5;

/// Whether `name` is one of these tools.
pub(super) fn handles(name: &str) -> bool {
    name == SAVE || name == SEARCH
}

pub(super) async fn call(
    models: &ModelRegistry,
    store: &dyn Store,
    tenant: &TenantId,
    session: &SessionId,
    agent: &AgentDef,
    name: &str,
    arguments: &Value,
) -> ToolOutcome {
    let namespace = memory::agent_namespace(agent);
    let outcome = match name {
        SAVE => save(models, tenant, session, &namespace, arguments).await,
        _ => search(models, store, tenant, &namespace, arguments).await,
    };
    outcome.unwrap_or_else(|message| ToolOutcome::error(format!("{name}: {message}")))
}

/// The record to store: `text`, `metadata` (an object; `session` added unless given), embedded.
async fn save(
    models: &ModelRegistry,
    tenant: &TenantId,
    session: &SessionId,
    namespace: &str,
    arguments: &Value,
) -> Result<ToolOutcome, String> {
    let text = arguments
        .get("text")
        .and_then(Value::as_str)
        .ok_or("needs a string argument \"text\": what to remember")?;
    let mut metadata = object(arguments, "metadata")?;
    metadata
        .entry("session")
        .or_insert_with(|| Value::String(session.to_string()));
    let mut record = memory::new_record(tenant, namespace, text.into(), Value::Object(metadata))
        .map_err(message)?;
    record.embedding = memory::embed(models, text)
        .await
        .map_err(message)?
        .unwrap_or_default();
    Ok(ToolOutcome {
        content: json!({"saved": record.id, "namespace": namespace}).to_string(),
        is_error: false,
        writes: ToolWrites {
            memory: vec![record],
            ..ToolWrites::default()
        },
    })
}

/// The hits for `query` (`limit`, default 5; `filter`: metadata keys and values), best first.
async fn search(
    models: &ModelRegistry,
    store: &dyn Store,
    tenant: &TenantId,
    namespace: &str,
    arguments: &Value,
) -> Result<ToolOutcome, String> {
    let text = arguments
        .get("query")
        .and_then(Value::as_str)
        .ok_or("needs a string argument \"query\": what to look for")?;
    let limit = match arguments.get("limit").filter(|v| !v.is_null()) {
        None => DEFAULT_LIMIT,
        Some(limit) => limit
            .as_u64()
            .and_then(|l| usize::try_from(l).ok())
            .ok_or_else(|| format!("limit must be a whole number, not {limit}"))?,
    };
    let filter = object(arguments, "filter")?.into_iter().collect();
    memory::check_search(text, limit).map_err(message)?;
    let embedding = memory::embed(models, text).await.map_err(message)?;
    let query = memory::query(
        namespace,
        text,
        embedding,
        filter,
        limit,
        SearchMode::Hybrid,
    )
    .map_err(message)?;
    let hits = match store.search_memory(tenant, &query).await {
        Ok(hits) => hits,
        // Nothing saved yet: an empty answer, not an error.
        Err(StoreError::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(format!("memory is unavailable: {e}")),
    };
    let found: Vec<Value> = hits
        .into_iter()
        .map(|h| json!({"id": h.record.id, "text": h.record.text, "metadata": h.record.metadata}))
        .collect();
    Ok(ToolOutcome::ok(json!({"memories": found}).to_string()))
}

/// The argument `key` as a JSON object; empty when absent or null.
fn object(arguments: &Value, key: &str) -> Result<Map<String, Value>, String> {
    match arguments.get(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map.clone()),
        Some(other) => Err(format!("{key} must be a JSON object, not {other}")),
    }
}

fn message(e: EngineError) -> String {
    match e {
        EngineError::Invalid(message) | EngineError::Store(StoreError::Invalid(message)) => message,
        other => other.to_string(),
    }
}
