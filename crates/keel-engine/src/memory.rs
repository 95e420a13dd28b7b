//! Long-term memory through the engine: every write to a tenant's memory goes through here
//! (`remember`, `forget`), and so does search (`recall`), which embeds the text it is given.
//! The embedding model is the route named `embeddings` when one is configured, else the local
//! provider's all-MiniLM-L6-v2 when there is a `local` provider; with neither, memory is
//! searched by keywords only and records carry no vector.

use keel_core::TenantId;
use keel_models::EmbeddingRequest;
use keel_store::{Fusion, MemoryHit, MemoryQuery, MemoryRecord};
use serde_json::Value;

use crate::{Engine, EngineError, clock};

/// The route that embeds memory when configured.
pub const EMBEDDINGS_ROUTE: &str = "embeddings";
/// What embeds memory otherwise, when the `local` provider is configured.
pub const LOCAL_EMBEDDINGS: &str = "local/all-minilm-l6-v2";
/// The most hits one search returns.
pub const MAX_RECALL: usize = 100;

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
        let now = clock::now();
        let mut record = MemoryRecord {
            id: format!("mem_{}", clock::new_hex_id()),
            tenant: tenant.clone(),
            namespace: namespace.to_string(),
            text,
            metadata,
            embedding: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        // Refused before the embedding model is asked.
        record.check()?;
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

    /// Hybrid search of the tenant's `namespace` for `text` (keywords, and vectors when there
    /// is an embedding model), at most `limit` hits, best first.
    pub async fn recall(
        &self,
        tenant: &TenantId,
        namespace: &str,
        text: &str,
        filter: Vec<(String, Value)>,
        limit: usize,
    ) -> Result<Vec<MemoryHit>, EngineError> {
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
        let query = MemoryQuery {
            namespace: namespace.to_string(),
            text: text.to_string(),
            embedding: self.embed_for_memory(text).await?,
            filter,
            limit,
            fusion: Fusion::default(),
        };
        Ok(self.inner.store.search_memory(tenant, &query).await?)
    }

    /// `text`'s embedding by the memory embedding model, `None` when there is none.
    pub(crate) async fn embed_for_memory(
        &self,
        text: &str,
    ) -> Result<Option<Vec<f32>>, EngineError> {
        let models = self.models();
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
}

fn not_found(id: &str) -> EngineError {
    EngineError::NotFound {
        kind: "memory record",
        id: id.to_string(),
    }
}
