//! Bedrock embeddings through InvokeModel, in the wire format of the model family the id
//! names: Amazon Titan Text Embeddings (`amazon.titan-embed-text-*`: one `inputText` a call,
//! `dimensions` on v2, `inputTextTokenCount` back) and Cohere Embed (`cohere.embed-*`: up to 96
//! `texts` a call with an `input_type`, no token count, no shorter vectors).

use serde_json::{Value, json};

use super::PROVIDER;
use crate::providers::openai::embeddings::floats;
use crate::{EmbeddingRequest, ModelError, ModelErrorKind};

/// Texts Cohere Embed takes in one call.
const COHERE_BATCH: usize = 96;

/// The embedding model families keel speaks on Bedrock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Family {
    Titan,
    Cohere,
}

impl Family {
    /// The family of a model id (a cross-region inference profile's prefix, e.g. `us.`, aside).
    pub(super) fn of(model: &str) -> Result<Family, ModelError> {
        let base =
            model.split_once('.').map_or(
                model,
                |(prefix, rest)| {
                    if prefix.len() == 2 { rest } else { model }
                },
            );
        if base.starts_with("amazon.titan-embed-text") {
            Ok(Family::Titan)
        } else if base.starts_with("cohere.embed") {
            Ok(Family::Cohere)
        } else {
            Err(ModelError::new(
                ModelErrorKind::BadRequest,
                PROVIDER,
                format!(
                    "`{model}` is not an embedding model keel speaks on Bedrock: use amazon.titan-embed-text-v2:0 (or v1) or cohere.embed-english-v3 / cohere.embed-multilingual-v3"
                ),
            ))
        }
    }

    /// The InvokeModel bodies for `request`, one per call.
    pub(super) fn bodies(self, request: &EmbeddingRequest) -> Result<Vec<Value>, ModelError> {
        match self {
            Family::Titan => Ok(request
                .inputs
                .iter()
                .map(|text| {
                    let mut body = json!({"inputText": text});
                    if let Some(dimensions) = request.dimensions {
                        body["dimensions"] = Value::from(dimensions);
                    }
                    body
                })
                .collect()),
            Family::Cohere if request.dimensions.is_some() => Err(ModelError::new(
                ModelErrorKind::BadRequest,
                PROVIDER,
                format!(
                    "{} gives vectors of one length and cannot shorten them; leave `dimensions` out",
                    request.model
                ),
            )),
            Family::Cohere => Ok(request
                .inputs
                .chunks(COHERE_BATCH)
                .map(|texts| json!({"texts": texts, "input_type": "search_document"}))
                .collect()),
        }
    }

    /// The vectors and tokens of one call's reply.
    pub(super) fn parse(self, reply: &[u8]) -> Result<(Vec<Vec<f32>>, u64), ModelError> {
        let protocol =
            |message: String| ModelError::new(ModelErrorKind::Protocol, PROVIDER, message);
        let body: Value = serde_json::from_slice(reply)
            .map_err(|e| protocol(format!("the InvokeModel reply is not JSON: {e}")))?;
        match self {
            Family::Titan => {
                let vector = floats(&body["embedding"])
                    .ok_or_else(|| protocol("the Titan reply has no `embedding` list".into()))?;
                let tokens = body["inputTextTokenCount"].as_u64().unwrap_or(0);
                Ok((vec![vector], tokens))
            }
            Family::Cohere => {
                let vectors = body["embeddings"]
                    .as_array()
                    .and_then(|list| list.iter().map(floats).collect::<Option<Vec<_>>>())
                    .ok_or_else(|| protocol("the Cohere reply has no `embeddings` lists".into()))?;
                Ok((vectors, 0))
            }
        }
    }
}
