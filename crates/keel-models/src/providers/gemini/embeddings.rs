//! Gemini's embeddings wire format: `models/{model}:embedContent` for one text,
//! `models/{model}:batchEmbedContents` for several (each request naming the model again, as the
//! API requires), `outputDimensionality` for a shorter vector. Gemini reports no token counts
//! for embeddings.

use serde_json::{Value, json};

use super::PROVIDER;
use crate::providers::openai::embeddings::floats;
use crate::{EmbeddingRequest, EmbeddingResponse, ModelError, ModelErrorKind};

/// The operation's path (after the base URL) and body.
pub(super) fn call(request: &EmbeddingRequest) -> (String, Value) {
    let one = |text: &str| {
        let mut item = json!({
            "model": format!("models/{}", request.model),
            "content": {"parts": [{"text": text}]},
        });
        if let Some(dimensions) = request.dimensions {
            item["outputDimensionality"] = Value::from(dimensions);
        }
        item
    };
    match request.inputs.as_slice() {
        [text] => (format!("/models/{}:embedContent", request.model), one(text)),
        texts => (
            format!("/models/{}:batchEmbedContents", request.model),
            json!({"requests": texts.iter().map(|t| one(t)).collect::<Vec<_>>()}),
        ),
    }
}

/// Reads `{"embedding": {"values"}}` (one) or `{"embeddings": [{"values"}]}` (a batch).
pub(super) fn parse(
    request: &EmbeddingRequest,
    text: &str,
) -> Result<EmbeddingResponse, ModelError> {
    let protocol = |message: String| ModelError::new(ModelErrorKind::Protocol, PROVIDER, message);
    let body: Value = serde_json::from_str(text)
        .map_err(|e| protocol(format!("the embeddings reply is not JSON: {e}")))?;
    let items: Vec<&Value> = match body["embeddings"].as_array() {
        Some(list) => list.iter().collect(),
        None => vec![&body["embedding"]],
    };
    let vectors = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            floats(&item["values"])
                .ok_or_else(|| protocol(format!("embedding {i} has no `values` list of numbers")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    EmbeddingResponse::checked(PROVIDER, request, vectors, 0)
}
