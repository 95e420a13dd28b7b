//! Long-term memory through the engine: every write to a tenant's memory goes through here
//! (`remember`, `forget`), and so does search (`recall`), which embeds the text it is given.
//! The embedding model is the route named `embeddings` when one is configured, else the local
//! provider's all-MiniLM-L6-v2 when there is a `local` provider; with neither, memory is
//! searched by keywords only and records carry no vector. The built-in memory tools
//! (`tools/memory.rs`) make their records and embed with the same functions.

use std::fmt;
use std::str::FromStr;

use keel_core::{AgentDef, TenantId};
use keel_models::EmbeddingRequest;
use keel_store::{Fusion, MemoryHit, MemoryQuery, MemoryRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Engine, EngineError, ModelRegistry, clock};

/// The route that embeds memory when configured.
pub const EMBEDDINGS_ROUTE: &str = "embeddings";
/// What embeds memory otherwise, when the `local` provider is configured.
pub const LOCAL_EMBEDDINGS: &str = "local/all-minilm-l6-v2";
/// The most hits one search returns.
pub const MAX_RECALL: usize = 100;

/// Which rankings a search uses: both fused (the default), or one alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    #[default]
    Hybrid,
    Keyword,
    Vector,
}

impl FromStr for SearchMode {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hybrid" => Ok(SearchMode::Hybrid),
            "keyword" => Ok(SearchMode::Keyword),
            "vector" => Ok(SearchMode::Vector),
            other => Err(EngineError::Invalid(format!(
                "search mode {other:?} is not one of hybrid, keyword, vector"
            ))),
        }
    }
}

impl fmt::Display for SearchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SearchMode::Hybrid => "hybrid",
            SearchMode::Keyword => "keyword",
            SearchMode::Vector => "vector",
        })
    }
}

/// The namespace of an agent's long-term memory (its memory tools): its `memory.namespace`,
/// else `agent:<name>`.
pub(crate) fn agent_namespace(agent: &AgentDef) -> String {
    match &agent.memory.namespace {
        Some(namespace) => namespace.clone(),
        None => format!("agent:{}", agent.name),
    }
}

/// Refuses an agent whose memory namespace no store keeps (empty, or past `MAX_NAMESPACE`).
pub(crate) fn check_policy(agent: &AgentDef) -> Result<(), EngineError> {
    let max = keel_store::memory::MAX_NAMESPACE;
    match &agent.memory.namespace {
        Some(namespace) if namespace.is_empty() || namespace.len() > max => {
            Err(EngineError::Invalid(format!(
                "agent {:?}: memory namespace {namespace:?} must be 1 to {max} bytes",
                agent.name
            )))
        }
        _ => Ok(()),
    }
}

/// A new record of `tenant` (id and times from the clock, no embedding yet), refused as the
/// store would refuse it before any model is asked to embed it.
pub(crate) fn new_record(
    tenant: &TenantId,
    namespace: &str,
    text: String,
    metadata: Value,
) -> Result<MemoryRecord, EngineError> {
    let now = clock::now();
    let record = MemoryRecord {
        id: format!("mem_{}", clock::new_hex_id()),
        tenant: tenant.clone(),
        namespace: namespace.to_string(),
        text,
        metadata,
        embedding: Vec::new(),
        created_at: now,
        updated_at: now,
    };
    record.check()?;
    Ok(record)
}

/// Refuses a search with nothing to search for or a limit out of range, before any model is
/// asked to embed its text.
pub(crate) fn check_search(text: &str, limit: usize) -> Result<(), EngineError> {
    if text.trim().is_empty() {
        return Err(EngineError::Invalid(
            "the memory query is empty: give the text to search for".into(),
        ));
    }
    if limit == 0 || limit > MAX_RECALL {
        return Err(EngineError::Invalid(format!(
            "limit must be 1 to {MAX_RECALL}, not {limit}"
        )));
    }
    Ok(())
}

/// A search of `namespace` for `text` in `mode` (`embedding`: the text's, `None` when keel has
/// no embedding model), checked: `check_search`, and vectors asked for with no embedding model
/// are `Invalid`.
pub(crate) fn query(
    namespace: &str,
    text: &str,
    embedding: Option<Vec<f32>>,
    filter: Vec<(String, Value)>,
    limit: usize,
    mode: SearchMode,
) -> Result<MemoryQuery, EngineError> {
    check_search(text, limit)?;
    if mode == SearchMode::Vector && embedding.is_none() {
        return Err(EngineError::Invalid(
            "a vector search needs an embedding model (a route named `embeddings` or the \
             `local` provider); search by keyword instead"
                .into(),
        ));
    }
    Ok(MemoryQuery {
        namespace: namespace.to_string(),
        text: match mode {
            SearchMode::Vector => String::new(),
            _ => text.to_string(),
        },
        embedding: embedding.filter(|_| mode != SearchMode::Keyword),
        filter,
        limit,
        fusion: Fusion::default(),
    })
}

impl Engine {
    /// Stores `text` with `metadata` (a JSON object) in the tenant's `namespace`, embedded by
    /// the memory embedding model (when there is one).
    pub async fn remember(
        &self,
        tenant: &TenantId,
        namespace: &str,
        text: String,
        metadata: Value,
    ) -> Result<MemoryRecord, EngineError> {
        // Refused before the embedding model is asked.
        let mut record = new_record(tenant, namespace, text, metadata)?;
        record.embedding = self
            .embed_for_memory(&record.text)
            .await?
            .unwrap_or_default();
        self.inner.store.put_memory(&record).await?;
        Ok(record)
    }

    /// The tenant's record `id`; `NotFound` for another tenant's or an unknown one.
    pub async fn memory_record(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<MemoryRecord, EngineError> {
        self.inner
            .store
            .get_memory(tenant, id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// Deletes the tenant's record `id`; `NotFound` when it has none.
    pub async fn forget(&self, tenant: &TenantId, id: &str) -> Result<(), EngineError> {
        match self.inner.store.delete_memory(tenant, id).await? {
            true => Ok(()),
            false => Err(not_found(id)),
        }
    }

    /// Search of the tenant's `namespace` for `text` in `mode` (hybrid: keywords, and vectors
    /// when there is an embedding model), at most `limit` hits, best first.
    pub async fn recall(
        &self,
        tenant: &TenantId,
        namespace: &str,
        text: &str,
        filter: Vec<(String, Value)>,
        limit: usize,
        mode: SearchMode,
    ) -> Result<Vec<MemoryHit>, EngineError> {
        check_search(text, limit)?;
        let embedding = match mode {
            SearchMode::Keyword => None,
            _ => self.embed_for_memory(text).await?,
        };
        let query = query(namespace, text, embedding, filter, limit, mode)?;
        Ok(self.inner.store.search_memory(tenant, &query).await?)
    }

    /// `text`'s embedding by the memory embedding model, `None` when there is none.
    pub(crate) async fn embed_for_memory(
        &self,
        text: &str,
    ) -> Result<Option<Vec<f32>>, EngineError> {
        embed(self.models(), text).await
    }
}

/// `text`'s embedding by the memory embedding model of `models` (the route `embeddings`, else
/// the local provider's all-MiniLM-L6-v2), `None` when there is neither.
pub(crate) async fn embed(
    models: &ModelRegistry,
    text: &str,
) -> Result<Option<Vec<f32>>, EngineError> {
    let name = if models.routes().contains_key(EMBEDDINGS_ROUTE) {
        EMBEDDINGS_ROUTE
    } else if models.providers().contains_key("local") {
        LOCAL_EMBEDDINGS
    } else {
        return Ok(None);
    };
    let resolved = models
        .resolve(name)
        .map_err(|e| EngineError::Invalid(e.to_string()))?;
    let request = EmbeddingRequest {
        model: resolved.model,
        inputs: vec![text.to_string()],
        dimensions: None,
    };
    let mut reply = resolved.client.embed(request).await.map_err(|e| {
        EngineError::Model(keel_models::ModelError {
            message: format!("the memory embedding model ({name}): {}", e.message),
            ..e
        })
    })?;
    Ok(reply.vectors.pop())
}

fn not_found(id: &str) -> EngineError {
    EngineError::NotFound {
        kind: "memory record",
        id: id.to_string(),
    }
}
