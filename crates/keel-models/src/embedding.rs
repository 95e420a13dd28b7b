//! Embeddings in the provider layer: one normalized request (texts in) and response (one
//! vector per text, in order, and the tokens it took), which each provider with an embeddings
//! endpoint converts to and from its own wire format, as it does for chat.

use crate::{ModelError, ModelErrorKind, Served};

/// Texts to embed with one model.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EmbeddingRequest {
    /// The provider's model (or the route's, filled in per target by a router).
    pub model: String,
    /// At least one text; providers refuse an empty list before calling out.
    pub inputs: Vec<String>,
    /// A shorter vector, for models that support it (OpenAI's `text-embedding-3-*`, Gemini,
    /// Titan v2); a provider whose model cannot refuses it.
    pub dimensions: Option<u32>,
}

/// One vector per input, in the request's order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EmbeddingResponse {
    pub vectors: Vec<Vec<f32>>,
    /// Tokens the inputs took, as the provider reports them (0 where it reports none).
    pub input_tokens: u64,
    /// Which route target served it (set by a router).
    pub served: Option<Served>,
}

impl EmbeddingRequest {
    /// Refuses a request with no texts, as every provider does, without a call.
    pub fn check(&self, provider: &str) -> Result<(), ModelError> {
        if self.inputs.is_empty() {
            return Err(ModelError::new(
                ModelErrorKind::BadRequest,
                provider,
                "no input to embed: send at least one text",
            ));
        }
        Ok(())
    }
}

impl EmbeddingResponse {
    /// Checks a provider's answer against what was asked: one vector per input, none empty.
    pub fn checked(
        provider: &str,
        request: &EmbeddingRequest,
        vectors: Vec<Vec<f32>>,
        input_tokens: u64,
    ) -> Result<Self, ModelError> {
        let protocol =
            |message: String| ModelError::new(ModelErrorKind::Protocol, provider, message);
        if vectors.len() != request.inputs.len() {
            return Err(protocol(format!(
                "asked for {} embeddings, the provider returned {}",
                request.inputs.len(),
                vectors.len()
            )));
        }
        if let Some(i) = vectors.iter().position(Vec::is_empty) {
            return Err(protocol(format!("embedding {i} has no values")));
        }
        Ok(EmbeddingResponse {
            vectors,
            input_tokens,
            served: None,
        })
    }
}

/// What a provider without an embeddings endpoint (or a model that embeds nothing) answers.
pub(crate) fn unsupported(provider: &str) -> ModelError {
    ModelError::new(
        ModelErrorKind::BadRequest,
        provider,
        format!(
            "the {provider} provider has no embeddings endpoint in keel; name an OpenAI-compatible, Azure, Gemini, Bedrock or local target"
        ),
    )
}
