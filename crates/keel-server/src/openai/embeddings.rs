//! `POST /v1/embeddings`: a stateless gateway like chat completions. `input` (a text or a list
//! of texts) becomes keel's normalized `EmbeddingRequest`, is served by the route or provider
//! that `model` names (`local/all-minilm-l6-v2` on the embedded defaults), and the vectors go
//! back as OpenAI's list, floats or base64. Accounted to the caller's tenant and key.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use keel_core::Usage;
use keel_models::EmbeddingRequest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::chat::{Bill, resolve};
use super::error::{model_error, openai_error};
use super::fields::{EMBEDDINGS, FieldError, Sent, not_one_of, refused};
use super::wire::OpenAiErrorEnvelope;
use crate::auth::Caller;
use crate::error::ApiJson;
use crate::state::AppState;

/// The most texts one request may hold (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

pub const ENCODING_FORMATS: &[&str] = &["float", "base64"];

/// `POST /v1/embeddings`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsRequest {
    /// A route name from keel.toml, or `provider/model`.
    pub model: String,
    /// A text, or a list of up to 2048 texts (none empty).
    #[schema(value_type = Object)]
    pub input: Value,
    /// `float` (default) or `base64` (the little-endian f32 bytes).
    pub encoding_format: Option<String>,
    /// A shorter vector, for models that support it.
    pub dimensions: Option<u32>,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub user: Sent,
}

#[derive(Serialize, ToSchema)]
pub struct EmbeddingList {
    pub object: &'static str,
    pub data: Vec<EmbeddingItem>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

#[derive(Serialize, ToSchema)]
pub struct EmbeddingItem {
    pub object: &'static str,
    pub index: usize,
    /// A list of numbers, or a base64 string with `encoding_format: "base64"`.
    #[schema(value_type = Object)]
    pub embedding: Value,
}

#[derive(Serialize, ToSchema)]
pub struct EmbeddingUsage {
    pub prompt_tokens: u64,
    pub total_tokens: u64,
}

/// Creates embeddings (OpenAI-compatible).
#[utoipa::path(post, path = "/v1/embeddings", tag = "openai",
    request_body = EmbeddingsRequest,
    responses((status = 200, body = EmbeddingList),
        (status = 400, body = OpenAiErrorEnvelope, description = "empty or malformed input, or a value the target refuses"),
        (status = 401, body = OpenAiErrorEnvelope),
        (status = 404, body = OpenAiErrorEnvelope, description = "unknown model"),
        (status = 502, body = OpenAiErrorEnvelope, description = "the upstream provider failed")))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<EmbeddingsRequest>,
) -> Response {
    let base64 = match check(&body) {
        Ok(base64) => base64,
        Err(refused) => return openai_error(refused.into(), None),
    };
    let inputs = match inputs(&body.input) {
        Ok(inputs) => inputs,
        Err(refused) => return openai_error(refused.into(), None),
    };
    let resolved = match resolve(&state, &body.model) {
        Ok(found) => found,
        Err(e) => return openai_error(e, Some("model")),
    };
    let request = EmbeddingRequest {
        model: resolved.model,
        inputs,
        dimensions: body.dimensions,
    };
    let reply = match resolved.client.embed(request).await {
        Ok(reply) => reply,
        Err(e) => return openai_error(model_error(&e, "input"), None),
    };
    let usage = Usage {
        input_tokens: reply.input_tokens,
        ..Usage::default()
    };
    Bill::new(state, caller, body.model.clone()).record(reply.served.as_ref(), &usage);
    let data = reply
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| EmbeddingItem {
            object: "embedding",
            index,
            embedding: if base64 {
                Value::String(encode_base64(&vector))
            } else {
                Value::from(vector)
            },
        })
        .collect();
    let list = EmbeddingList {
        object: "list",
        data,
        model: body.model,
        usage: EmbeddingUsage {
            prompt_tokens: reply.input_tokens,
            total_tokens: reply.input_tokens,
        },
    };
    (StatusCode::OK, axum::Json(list)).into_response()
}

/// The fields read only to check; `true` when the vectors go back as base64.
fn check(body: &EmbeddingsRequest) -> Result<bool, FieldError> {
    if body.user.is_set() {
        return Err(refused(EMBEDDINGS, "user"));
    }
    if body.dimensions == Some(0) {
        return Err(FieldError::invalid(
            "dimensions",
            "`dimensions` must be at least 1",
        ));
    }
    match body.encoding_format.as_deref() {
        None | Some("float") => Ok(false),
        Some("base64") => Ok(true),
        Some(other) => Err(not_one_of("encoding_format", other, ENCODING_FORMATS)),
    }
}

/// `input` as texts: a string or a list of strings, none empty. Token arrays (lists of
/// numbers) are refused: keel's targets do not share one tokenizer.
fn inputs(input: &Value) -> Result<Vec<String>, FieldError> {
    let empty = || {
        FieldError::invalid(
            "input",
            "`input` holds an empty text: send non-empty text (a string or a list of strings)",
        )
    };
    match input {
        Value::String(text) if text.is_empty() => Err(empty()),
        Value::String(text) => Ok(vec![text.clone()]),
        Value::Array(items) if items.is_empty() => Err(FieldError::invalid(
            "input",
            "`input` is an empty list: send at least one text",
        )),
        Value::Array(items) if items.len() > MAX_INPUTS => Err(FieldError::invalid(
            "input",
            format!(
                "`input` holds {} texts; at most {MAX_INPUTS} go in one request",
                items.len()
            ),
        )),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(text) if text.is_empty() => Err(empty()),
                Value::String(text) => Ok(text.clone()),
                Value::Number(_) | Value::Array(_) => Err(token_arrays()),
                _ => Err(FieldError::invalid(
                    format!("input[{i}]"),
                    format!("`input[{i}]` is not a string"),
                )),
            })
            .collect(),
        Value::Null => Err(FieldError::invalid("input", "`input` is required")),
        _ => Err(FieldError::invalid(
            "input",
            "`input` must be a string or a list of strings",
        )),
    }
}

fn token_arrays() -> FieldError {
    FieldError::unsupported(
        "input",
        "keel does not support token arrays in `input`: the targets behind a route do not share one tokenizer; send the text",
    )
}

/// OpenAI's base64 encoding: the vector's little-endian f32 bytes.
fn encode_base64(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
