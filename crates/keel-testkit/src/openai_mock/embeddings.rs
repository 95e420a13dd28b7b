//! OpenAI's `POST /v1/embeddings` as the mock speaks it (Azure's deployments too): the body
//! checked as OpenAI checks it, and a list of `crate::embedding` vectors in OpenAI's shape.

use serde_json::{Value, json};

use crate::embedding::{MOCK_DIMENSIONS, mock_tokens, mock_vector};
use crate::upstream::{Refusal, bad_request, unknown_key};

/// The answer to an embeddings body; `deployment` names the model where the URL does (Azure).
pub(crate) fn answer(body: &Value, deployment: Option<&str>) -> Result<Value, Refusal> {
    let invalid = |param: &str, message: String| Refusal {
        param: Some(param.into()),
        ..bad_request(message)
    };
    let object = body
        .as_object()
        .ok_or_else(|| bad_request("the body must be a JSON object"))?;
    let known = ["model", "input", "encoding_format", "dimensions", "user"];
    if let Some(key) = unknown_key(object, &known) {
        return Err(invalid(
            key,
            format!("Unrecognized request argument supplied: {key}"),
        ));
    }
    let model = match (deployment, body["model"].as_str()) {
        (Some(deployment), _) => deployment,
        (None, Some(model)) if !model.is_empty() => model,
        _ => {
            return Err(invalid(
                "model",
                "you must provide a model parameter".into(),
            ));
        }
    };
    let inputs: Vec<&str> = match &body["input"] {
        Value::String(text) => vec![text.as_str()],
        Value::Array(items) if !items.is_empty() && items.len() <= 2048 => items
            .iter()
            .map(Value::as_str)
            .collect::<Option<_>>()
            .ok_or_else(|| {
                invalid(
                    "input",
                    "'$.input' is invalid: this mock takes texts, not token arrays".into(),
                )
            })?,
        _ => {
            return Err(invalid(
                "input",
                "'$.input' is invalid. Please check the API reference.".into(),
            ));
        }
    };
    if inputs.iter().any(|t| t.is_empty()) {
        return Err(invalid(
            "input",
            "'$.input' is invalid: an input is empty".into(),
        ));
    }
    match body.get("encoding_format") {
        None => {}
        Some(v) if v == "float" => {}
        Some(other) => {
            return Err(invalid(
                "encoding_format",
                format!("this mock answers floats only; got {other}"),
            ));
        }
    }
    let dimensions = match body.get("dimensions") {
        None => MOCK_DIMENSIONS,
        Some(v) => match v.as_u64() {
            Some(d) if (1..=MOCK_DIMENSIONS as u64).contains(&d) => d as usize,
            _ => {
                return Err(invalid(
                    "dimensions",
                    format!("dimensions must be an integer from 1 to {MOCK_DIMENSIONS}; got {v}"),
                ));
            }
        },
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            json!({"object": "embedding", "index": index, "embedding": mock_vector(text, dimensions)})
        })
        .collect();
    let tokens: u64 = inputs.iter().map(|t| mock_tokens(t)).sum();
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}
