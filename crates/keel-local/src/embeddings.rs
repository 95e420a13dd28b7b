//! The local provider's embeddings (`ModelClient::embed`): all-MiniLM-L6-v2, loaded on the
//! first request — fetched into the shared model cache first if it is not there — so a keel
//! that never embeds never pays for it. Each request computes on a decode slot, like a chat
//! reply, so embeddings and replies never oversubscribe the cores.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use keel_models::{EmbeddingRequest, EmbeddingResponse, ModelError, ModelErrorKind};

use crate::PROVIDER;
use crate::embed::{Embedder, EmbedderFiles};
use crate::error::LocalError;
use crate::pull::{self, EMBEDDING_MODEL};
use crate::scheduler::DecodeSlots;

fn bad(message: String) -> ModelError {
    ModelError::new(ModelErrorKind::BadRequest, PROVIDER, message)
}

/// The embedding model, loaded once on first use.
pub(crate) struct LocalEmbeddings {
    /// The weights file (companions beside it); `None`: the known model in the shared cache.
    weights: Option<PathBuf>,
    loaded: Mutex<Option<Arc<Embedder>>>,
}

impl LocalEmbeddings {
    pub(crate) fn new(weights: Option<PathBuf>) -> Self {
        LocalEmbeddings {
            weights,
            loaded: Mutex::new(None),
        }
    }

    /// The loaded model (blocking: may read 90 MB, or fetch it). Concurrent first callers
    /// wait for one load.
    fn get(&self) -> Result<Arc<Embedder>, LocalError> {
        let mut loaded = self
            .loaded
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(embedder) = loaded.as_ref() {
            return Ok(embedder.clone());
        }
        let weights = match &self.weights {
            Some(path) => path.clone(),
            None => pull::ensure_model(&pull::cache_dir()?, EMBEDDING_MODEL, |_| {})?,
        };
        let embedder = Arc::new(Embedder::load(&EmbedderFiles::beside(&weights))?);
        tracing::info!(path = %weights.display(), "local embedding model loaded");
        *loaded = Some(embedder.clone());
        Ok(embedder)
    }

    pub(crate) async fn embed(
        self: Arc<Self>,
        slots: &DecodeSlots,
        request: EmbeddingRequest,
    ) -> Result<EmbeddingResponse, ModelError> {
        request.check(PROVIDER)?;
        if !request.model.eq_ignore_ascii_case(EMBEDDING_MODEL) {
            return Err(bad(format!(
                "the local provider embeds with {EMBEDDING_MODEL}, not `{}`: name local/{EMBEDDING_MODEL}",
                request.model
            )));
        }
        let Some(_slot) = slots.acquire(std::future::pending()).await else {
            return Err(bad("no decode slot".into()));
        };
        let this = self.clone();
        let texts = request.inputs.clone();
        let asked = request.dimensions;
        let out = tokio::task::spawn_blocking(move || {
            let embedder = this.get()?;
            let dimensions = embedder.dimensions();
            if let Some(asked) = asked.filter(|&d| d as usize != dimensions) {
                return Err(bad(format!(
                    "{EMBEDDING_MODEL} gives {dimensions} dimensions and cannot shorten them; leave `dimensions` out (asked {asked})"
                )));
            }
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            Ok(embedder.embed(&refs)?)
        })
        .await
        .map_err(|e| {
            ModelError::new(
                ModelErrorKind::Unavailable,
                PROVIDER,
                format!("the embedding thread failed: {e}"),
            )
        })??;
        EmbeddingResponse::checked(PROVIDER, &request, out.vectors, out.tokens)
    }
}
