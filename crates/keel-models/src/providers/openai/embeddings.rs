//! OpenAI's embeddings wire format (`POST {base_url}/embeddings`), which Azure's deployments
//! and OpenAI-compatible servers speak too: the body keel sends and the list it reads back.

use serde_json::{Value, json};

use crate::{EmbeddingRequest, EmbeddingResponse, ModelError, ModelErrorKind};

/// The request body; `model` is left out where the URL names the deployment (Azure).
pub(crate) fn body(request: &EmbeddingRequest, with_model: bool) -> Value {
    let mut body = json!({
        "input": request.inputs,
        "encoding_format": "float",
    });
    if with_model {
        body["model"] = Value::from(request.model.as_str());
    }
    if let Some(dimensions) = request.dimensions {
        body["dimensions"] = Value::from(dimensions);
    }
    body
}

/// Reads `{"data": [{"index", "embedding"}], "usage": {"prompt_tokens"}}`, in index order.
pub(crate) fn parse(
    provider: &str,
    request: &EmbeddingRequest,
    text: &str,
) -> Result<EmbeddingResponse, ModelError> {
    let protocol = |message: String| ModelError::new(ModelErrorKind::Protocol, provider, message);
    let body: Value = serde_json::from_str(text)
        .map_err(|e| protocol(format!("the embeddings reply is not JSON: {e}")))?;
    let data = body["data"]
        .as_array()
        .ok_or_else(|| protocol("the embeddings reply has no `data` list".into()))?;
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; request.inputs.len()];
    for (position, item) in data.iter().enumerate() {
        let index = item["index"].as_u64().map_or(position, |i| i as usize);
        let vector = floats(&item["embedding"]).ok_or_else(|| {
            protocol(format!(
                "data[{position}].embedding is not a list of numbers"
            ))
        })?;
        match slots.get_mut(index) {
            Some(slot @ None) => *slot = Some(vector),
            _ => {
                return Err(protocol(format!(
                    "data[{position}] has index {index}, out of range or repeated for {} inputs",
                    request.inputs.len()
                )));
            }
        }
    }
    let vectors: Vec<Vec<f32>> = slots.into_iter().flatten().collect();
    let tokens = body["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
    EmbeddingResponse::checked(provider, request, vectors, tokens)
}

/// A JSON list of numbers as f32s.
pub(crate) fn floats(value: &Value) -> Option<Vec<f32>> {
    value
        .as_array()?
        .iter()
        .map(|v| v.as_f64().map(|f| f as f32))
        .collect()
}
