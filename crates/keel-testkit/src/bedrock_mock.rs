//! A mock of Bedrock ConverseStream (`POST /model/{modelId}/converse-stream`) that answers in
//! AWS's binary event-stream framing (each event a prelude, headers, JSON payload and CRCs,
//! written with `aws-smithy-eventstream`). It checks the SigV4 `Authorization` header, the
//! Converse body and the transcript (alternating roles, every `toolUse` answered next turn).

use std::collections::HashSet;

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use axum::body::Bytes;
use serde_json::{Value, json};

use crate::embedding::{MOCK_DIMENSIONS, mock_tokens, mock_vector};
use crate::reply::{MockReply, argument_pieces, word_pieces};
use crate::server::RecordedRequest;
use crate::upstream::{MockUpstream, Refusal, Wire, bad_request, refuse, unknown_key};

/// The running mock; `endpoint_url()` is what `BedrockConfig::endpoint_url` takes.
pub type MockBedrock = MockUpstream<BedrockWire>;

pub struct BedrockWire {
    pub access_key_id: String,
    pub region: String,
}

impl MockUpstream<BedrockWire> {
    pub async fn start_bedrock(access_key_id: &str, region: &str) -> std::io::Result<MockBedrock> {
        MockUpstream::serve(BedrockWire {
            access_key_id: access_key_id.into(),
            region: region.into(),
        })
        .await
    }

    pub fn endpoint_url(&self) -> String {
        self.origin()
    }
}

fn frame(headers: &[(&str, &str)], payload: &Value) -> Bytes {
    let mut message = Message::new(payload.to_string().into_bytes());
    for (name, value) in headers {
        message = message.add_header(Header::new(
            name.to_string(),
            HeaderValue::String(value.to_string().into()),
        ));
    }
    let mut buffer = Vec::new();
    write_message_to(&message, &mut buffer).expect("an event-stream frame encodes");
    Bytes::from(buffer)
}

fn event(kind: &str, payload: Value) -> Bytes {
    frame(
        &[
            (":message-type", "event"),
            (":event-type", kind),
            (":content-type", "application/json"),
        ],
        &payload,
    )
}

/// The AWS error code for a status, as `x-amzn-errortype` and exception frames name it.
fn error_code(status: u16) -> &'static str {
    match status {
        400 => "ValidationException",
        403 | 401 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        _ => "InternalServerException",
    }
}

fn valid_tool_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl BedrockWire {
    /// A SigV4 `Authorization` for this mock's key and region, and `x-amz-date`.
    fn check_signature(&self, request: &RecordedRequest) -> Result<(), Refusal> {
        let auth = request.header("authorization").unwrap_or_default();
        let scope = format!("/{}/bedrock/aws4_request", self.region);
        if !auth.starts_with(&format!(
            "AWS4-HMAC-SHA256 Credential={}/",
            self.access_key_id
        )) || !auth.contains(&scope)
            || !auth.contains("Signature=")
        {
            return Err(refuse(
                403,
                format!(
                    "The security token included in the request is invalid (expected a SigV4 signature for {scope})"
                ),
            ));
        }
        if request.header("x-amz-date").is_none() {
            return Err(refuse(403, "missing x-amz-date"));
        }
        Ok(())
    }

    /// InvokeModel (`POST /model/{modelId}/invoke`) of an embedding model: Titan Text
    /// Embeddings (`inputText`, `dimensions`, `normalize`) or Cohere Embed (`texts`,
    /// `input_type`, `truncate`, `embedding_types`), in their own reply shapes.
    fn invoke_embedding(&self, request: &RecordedRequest, model: &str) -> Result<Value, Refusal> {
        self.check_signature(request)?;
        let Some(body) = request.body.as_object() else {
            return Err(bad_request("body must be a JSON object"));
        };
        let malformed =
            |message: String| bad_request(format!("Malformed input request: {message}"));
        if model.starts_with("amazon.titan-embed-text") {
            if let Some(key) = unknown_key(
                body,
                &["inputText", "dimensions", "normalize", "embeddingTypes"],
            ) {
                return Err(malformed(format!(
                    "extraneous key [{key}] is not permitted"
                )));
            }
            let text = match body.get("inputText").and_then(Value::as_str) {
                Some(text) if !text.is_empty() => text,
                _ => return Err(malformed("#: required key [inputText] not found".into())),
            };
            let dimensions = match body.get("dimensions").map(Value::as_u64) {
                None => MOCK_DIMENSIONS,
                Some(Some(d)) if [8, 16, 32, 64].contains(&d) => d as usize,
                Some(_) => return Err(malformed("#/dimensions: is not a valid enum value".into())),
            };
            return Ok(json!({
                "embedding": mock_vector(text, dimensions),
                "inputTextTokenCount": mock_tokens(text),
            }));
        }
        if model.starts_with("cohere.embed") {
            if let Some(key) = unknown_key(
                body,
                &["texts", "input_type", "truncate", "embedding_types"],
            ) {
                return Err(malformed(format!(
                    "extraneous key [{key}] is not permitted"
                )));
            }
            let texts: Vec<&str> = match body.get("texts").and_then(Value::as_array) {
                Some(list) if !list.is_empty() && list.len() <= 96 => list
                    .iter()
                    .map(Value::as_str)
                    .collect::<Option<_>>()
                    .ok_or_else(|| malformed("#/texts: expected strings".into()))?,
                _ => return Err(malformed("#/texts: 1 to 96 texts are required".into())),
            };
            let input_type = body.get("input_type").and_then(Value::as_str);
            if !matches!(
                input_type,
                Some("search_document" | "search_query" | "classification" | "clustering")
            ) {
                return Err(malformed(
                    "#: required key [input_type] not found or invalid".into(),
                ));
            }
            let embeddings: Vec<Vec<f32>> = texts
                .iter()
                .map(|t| mock_vector(t, MOCK_DIMENSIONS))
                .collect();
            return Ok(json!({
                "embeddings": embeddings,
                "id": "mock-embed",
                "response_type": "embeddings_floats",
                "texts": texts,
            }));
        }
        Err(bad_request(format!(
            "The provided model identifier is invalid: {model}"
        )))
    }
}

impl Wire for BedrockWire {
    type Event = Bytes;

    fn check(&self, request: &RecordedRequest, _query: &str) -> Result<(), Refusal> {
        let Some(model) = request
            .path
            .strip_prefix("/model/")
            .and_then(|r| r.strip_suffix("/converse-stream"))
        else {
            return Err(refuse(404, format!("Unknown operation {}", request.path)));
        };
        if model.is_empty() {
            return Err(bad_request("modelId is required"));
        }
        self.check_signature(request)?;
        let Some(body) = request.body.as_object() else {
            return Err(bad_request("body must be a JSON object"));
        };
        if let Some(key) = unknown_key(
            body,
            &[
                "messages",
                "system",
                "toolConfig",
                "inferenceConfig",
                "additionalModelRequestFields",
                "guardrailConfig",
            ],
        ) {
            return Err(bad_request(format!("Unknown field {key}")));
        }
        if let Some(config) = body.get("inferenceConfig").and_then(Value::as_object)
            && let Some(key) = unknown_key(
                config,
                &["maxTokens", "temperature", "topP", "stopSequences"],
            )
        {
            return Err(bad_request(format!("Unknown field inferenceConfig.{key}")));
        }
        for system in body
            .get("system")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !system["text"].is_string() {
                return Err(bad_request("system blocks must be text"));
            }
        }
        for tool in body
            .get("toolConfig")
            .and_then(|t| t["tools"].as_array())
            .into_iter()
            .flatten()
        {
            if !tool["toolSpec"]["name"].is_string()
                || !tool["toolSpec"]["inputSchema"]["json"].is_object()
            {
                return Err(bad_request(
                    "toolConfig.tools: toolSpec needs a name and inputSchema.json",
                ));
            }
        }
        let Some(messages) = body
            .get("messages")
            .and_then(Value::as_array)
            .filter(|m| !m.is_empty())
        else {
            return Err(bad_request("messages must not be empty"));
        };
        let mut open: HashSet<String> = HashSet::new();
        let mut previous = "";
        for (i, message) in messages.iter().enumerate() {
            let role = message["role"].as_str().unwrap_or_default();
            if !matches!(role, "user" | "assistant")
                || (i == 0 && role != "user")
                || role == previous
            {
                return Err(bad_request(format!(
                    "A conversation must start with a user message and alternate user and assistant turns (message {i}: {role:?})"
                )));
            }
            previous = role;
            let Some(blocks) = message["content"].as_array().filter(|c| !c.is_empty()) else {
                return Err(bad_request(format!(
                    "messages.{i}.content must not be empty"
                )));
            };
            let mut answered = HashSet::new();
            for block in blocks {
                let keys: Vec<&String> = block
                    .as_object()
                    .map(|o| o.keys().collect())
                    .unwrap_or_default();
                match (keys.as_slice(), role) {
                    ([k], _)
                        if k.as_str() == "text"
                            && block["text"].as_str().is_some_and(|t| !t.is_empty()) => {}
                    ([k], "assistant") if k.as_str() == "toolUse" => {
                        let tool = &block["toolUse"];
                        let id = tool["toolUseId"].as_str().unwrap_or_default();
                        if !valid_tool_id(id)
                            || !tool["name"].is_string()
                            || !tool["input"].is_object()
                        {
                            return Err(bad_request(format!(
                                "messages.{i}: toolUse needs a valid toolUseId ([a-zA-Z0-9_-]{{1,64}}), a name and an input object"
                            )));
                        }
                        open.insert(id.to_string());
                    }
                    ([k], "user") if k.as_str() == "toolResult" => {
                        let id = block["toolResult"]["toolUseId"]
                            .as_str()
                            .unwrap_or_default();
                        if !open.contains(id) || !block["toolResult"]["content"].is_array() {
                            return Err(bad_request(format!(
                                "messages.{i}: toolResult {id} does not answer a toolUse of the previous turn"
                            )));
                        }
                        answered.insert(id.to_string());
                    }
                    _ => {
                        return Err(bad_request(format!(
                            "messages.{i}: content block {block} is not allowed in a {role} turn"
                        )));
                    }
                }
            }
            if role == "user" {
                if open.iter().any(|id| !answered.contains(id)) {
                    return Err(bad_request(format!(
                        "messages.{i}: the number of toolResult blocks does not match the previous turn's toolUse blocks"
                    )));
                }
                open.clear();
            }
        }
        if open.is_empty() {
            Ok(())
        } else {
            Err(bad_request(
                "the last assistant turn's toolUse blocks have no results",
            ))
        }
    }

    fn embeddings(
        &self,
        request: &RecordedRequest,
        _query: &str,
    ) -> Option<Result<Value, Refusal>> {
        let model = request
            .path
            .strip_prefix("/model/")?
            .strip_suffix("/invoke")?;
        // The SDK percent-encodes the id's `:`.
        let model = model.replace("%3A", ":").replace("%3a", ":");
        Some(self.invoke_embedding(request, &model))
    }

    fn error_body(&self, status: u16, message: &str) -> Value {
        json!({"message": message, "__type": error_code(status)})
    }

    fn error_headers(&self, status: u16) -> Vec<(&'static str, String)> {
        vec![(
            "x-amzn-errortype",
            format!(
                "{}:http://internal.amazon.com/coral/com.amazon.bedrock/",
                error_code(status)
            ),
        )]
    }

    fn stream_events(
        &self,
        reply: &MockReply,
        _request: &RecordedRequest,
        _serial: u64,
    ) -> Vec<Bytes> {
        let mut events = vec![event("messageStart", json!({"role": "assistant"}))];
        let mut index = 0;
        if !reply.text.is_empty() {
            for piece in word_pieces(&reply.text) {
                events.push(event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": 0, "delta": {"text": piece}}),
                ));
            }
            events.push(event("contentBlockStop", json!({"contentBlockIndex": 0})));
            index = 1;
        }
        for call in &reply.tool_calls {
            events.push(event("contentBlockStart", json!({"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": call.id, "name": call.name}}})));
            for piece in argument_pieces(&call.arguments) {
                events.push(event(
                    "contentBlockDelta",
                    json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": piece}}}),
                ));
            }
            events.push(event(
                "contentBlockStop",
                json!({"contentBlockIndex": index}),
            ));
            index += 1;
        }
        let stop = match reply.finish_reason() {
            "length" => "max_tokens",
            "tool_calls" => "tool_use",
            "content_filter" => "content_filtered",
            _ => "end_turn",
        };
        events.push(event("messageStop", json!({"stopReason": stop})));
        let usage = reply.usage;
        let mut tokens = json!({"inputTokens": usage.prompt_tokens - usage.cached_tokens.min(usage.prompt_tokens),
            "outputTokens": usage.completion_tokens, "totalTokens": usage.prompt_tokens + usage.completion_tokens});
        if usage.cached_tokens > 0 {
            tokens["cacheReadInputTokens"] = json!(usage.cached_tokens);
        }
        events.push(event(
            "metadata",
            json!({"usage": tokens, "metrics": {"latencyMs": 1}}),
        ));
        events
    }

    fn stream_error(&self, status: u16, message: &str) -> Bytes {
        let code = error_code(status);
        let exception = format!("{}{}", code[..1].to_ascii_lowercase(), &code[1..]);
        frame(
            &[
                (":message-type", "exception"),
                (":exception-type", &exception),
                (":content-type", "application/json"),
            ],
            &json!({"message": message}),
        )
    }

    fn malformed_event(&self) -> Bytes {
        let mut message = Message::new(b"{\"contentBlockIndex\": 0, \"delta\": {".to_vec());
        for (name, value) in [
            (":message-type", "event"),
            (":event-type", "contentBlockDelta"),
            (":content-type", "application/json"),
        ] {
            message = message.add_header(Header::new(name, HeaderValue::String(value.into())));
        }
        let mut buffer = Vec::new();
        write_message_to(&message, &mut buffer).expect("an event-stream frame encodes");
        Bytes::from(buffer)
    }

    fn stream_content_type(&self) -> &'static str {
        "application/vnd.amazon.eventstream"
    }
}
