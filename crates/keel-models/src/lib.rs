//! keel's model layer. Every provider turns one normalized `ModelRequest` into its own wire
//! format and its reply back into one normalized stream of `StreamEvent`s; nothing above this
//! crate knows any provider's format. That is what lets a session switch provider mid-way.

pub mod catalog;
pub mod durable;
mod embedding;
mod error;
mod http;
pub mod providers;
mod reply;
mod request;
pub mod router;
pub mod sse;

pub use embedding::{EmbeddingRequest, EmbeddingResponse};
pub use error::{ModelError, ModelErrorKind};
pub use http::{error_chain, retry_after};
pub use reply::{ModelReply, ReplyAccumulator};
pub use request::{
    ModelRequest, Params, ResponseFormat, Served, StreamEvent, ToolChoice, ToolSpec,
};

use async_trait::async_trait;
use futures::stream::BoxStream;

/// The normalized stream a provider returns.
pub type ModelStream = BoxStream<'static, Result<StreamEvent, ModelError>>;

/// One model provider (or a router over several).
#[async_trait]
pub trait ModelClient: Send + Sync {
    /// Short provider name (`openai`, `scripted`, …), recorded with each step.
    fn provider(&self) -> &str;

    /// Starts a call and returns its stream. Errors before the first byte are returned here;
    /// errors after it arrive in the stream.
    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError>;

    /// The models the provider says it serves, for listings (`GET /v1/models`): `None` when it
    /// has no list endpoint. Callers bound the wait; a failure leaves the listing as it was.
    async fn list_models(&self) -> Result<Option<Vec<String>>, ModelError> {
        Ok(None)
    }

    /// One vector per text of `request` (`POST /v1/embeddings` and memory search). Providers
    /// without an embeddings endpoint refuse it as a bad request.
    async fn embed(&self, request: EmbeddingRequest) -> Result<EmbeddingResponse, ModelError> {
        let _ = request;
        Err(embedding::unsupported(self.provider()))
    }

    /// The tokens `request`'s prompt holds, counted by the model's own tokenizer where keel has
    /// it (the local model; the scripted one counts words); `None` elsewhere, where callers
    /// estimate.
    fn count_tokens(&self, request: &ModelRequest) -> Option<u64> {
        let _ = request;
        None
    }

    /// Runs a call to completion.
    async fn complete(&self, request: ModelRequest) -> Result<ModelReply, ModelError> {
        use futures::StreamExt;
        let mut stream = self.stream(request).await?;
        let mut acc = ReplyAccumulator::default();
        while let Some(event) = stream.next().await {
            acc.push(event?);
        }
        Ok(acc.finish())
    }
}
