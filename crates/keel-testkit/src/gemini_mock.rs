//! A mock of Gemini `streamGenerateContent` (`POST /v1beta/models/{model}:streamGenerateContent?alt=sse`).
//! It checks `x-goog-api-key`, the body schema and the transcript (roles `user`/`model`, each
//! model turn's `functionCall`s answered by as many `functionResponse`s, by name, in the next turn).

use serde_json::{Value, json};

use crate::embedding::{MOCK_DIMENSIONS, mock_vector};
use crate::reply::{MockReply, word_pieces};
use crate::server::RecordedRequest;

use crate::upstream::{MockUpstream, Refusal, Wire, refuse, require_header, unknown_key};

/// The running mock; `base_url()` is what `GeminiConfig::base_url` takes.
pub type MockGemini = MockUpstream<GeminiWire>;

pub struct GeminiWire {
    pub api_key: String,
}

impl MockUpstream<GeminiWire> {
    pub async fn start_gemini(api_key: &str) -> std::io::Result<MockGemini> {
        MockUpstream::serve(GeminiWire {
            api_key: api_key.into(),
        })
        .await
    }

    /// `http://127.0.0.1:PORT/v1beta`.
    pub fn base_url(&self) -> String {
        format!("{}/v1beta", self.origin())
    }
}

impl GeminiWire {
    fn check_key(&self, request: &RecordedRequest) -> Result<(), Refusal> {
        require_header(
            request,
            "x-goog-api-key",
            &self.api_key,
            "send your key as x-goog-api-key",
        )
    }

    /// `embedContent` (one `content`) or `batchEmbedContents` (`requests`, each naming
    /// `models/{model}` as the API requires), answered with `crate::embedding` vectors.
    fn embed(&self, request: &RecordedRequest, model: &str, batch: bool) -> Result<Value, Refusal> {
        self.check_key(request)?;
        let items: Vec<&Value> = if batch {
            let Some(object) = request.body.as_object() else {
                return Err(bad("expected a JSON object"));
            };
            if let Some(key) = unknown_key(object, &["requests"]) {
                return Err(bad(format!("Unknown name \"{key}\": Cannot find field.")));
            }
            match object.get("requests").and_then(Value::as_array) {
                Some(list) if !list.is_empty() => list.iter().collect(),
                _ => return Err(bad("requests is not specified")),
            }
        } else {
            vec![&request.body]
        };
        let mut embeddings = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let Some(object) = item.as_object() else {
                return Err(bad(format!("requests[{i}]: expected a JSON object")));
            };
            let known = [
                "model",
                "content",
                "taskType",
                "title",
                "outputDimensionality",
            ];
            if let Some(key) = unknown_key(object, &known) {
                return Err(bad(format!("Unknown name \"{key}\": Cannot find field.")));
            }
            let named = object.get("model").and_then(Value::as_str);
            if batch && named != Some(&format!("models/{model}")) {
                return Err(bad(format!(
                    "requests[{i}].model is {named:?}; it must be models/{model}, the batch's model"
                )));
            }
            let text: Option<String> = item["content"]["parts"]
                .as_array()
                .and_then(|parts| {
                    parts
                        .iter()
                        .map(|p| p["text"].as_str())
                        .collect::<Option<Vec<_>>>()
                })
                .map(|texts| texts.join(" "));
            let text = match text {
                Some(text) if !text.is_empty() => text,
                _ => {
                    return Err(bad(format!(
                        "requests[{i}].content: a text part is required"
                    )));
                }
            };
            let dimensions = match object.get("outputDimensionality") {
                None => MOCK_DIMENSIONS,
                Some(v) => match v.as_u64() {
                    Some(d) if (1..=MOCK_DIMENSIONS as u64).contains(&d) => d as usize,
                    _ => return Err(bad(format!("outputDimensionality {v} is out of range"))),
                },
            };
            embeddings.push(json!({"values": mock_vector(&text, dimensions)}));
        }
        Ok(if batch {
            json!({"embeddings": embeddings})
        } else {
            json!({"embedding": embeddings.pop()})
        })
    }
}

const TOP_LEVEL: &[&str] = &[
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
];
const CONFIG: &[&str] = &[
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "stopSequences",
    "seed",
    "candidateCount",
    "responseMimeType",
    "thinkingConfig",
];

fn bad(message: impl Into<String>) -> Refusal {
    refuse(
        400,
        format!("Invalid JSON payload received. {}", message.into()),
    )
}

fn function_names(parts: &[Value], key: &str) -> Vec<String> {
    parts
        .iter()
        .filter_map(|p| p[key]["name"].as_str().map(str::to_string))
        .collect()
}

impl Wire for GeminiWire {
    type Event = String;

    fn check(&self, request: &RecordedRequest, query: &str) -> Result<(), Refusal> {
        let Some(model) = request
            .path
            .strip_prefix("/v1beta/models/")
            .and_then(|rest| rest.strip_suffix(":streamGenerateContent"))
        else {
            return Err(refuse(404, format!("Not found: {}", request.path)));
        };
        if model.is_empty() || model.contains('/') {
            return Err(refuse(404, format!("models/{model} is not found")));
        }
        if !query.split('&').any(|p| p == "alt=sse") {
            return Err(bad("this mock streams only as SSE: add ?alt=sse"));
        }
        self.check_key(request)?;
        let Some(body) = request.body.as_object() else {
            return Err(bad("expected a JSON object"));
        };
        if let Some(key) = unknown_key(body, TOP_LEVEL) {
            return Err(bad(format!("Unknown name \"{key}\": Cannot find field.")));
        }
        if let Some(config) = body.get("generationConfig").and_then(Value::as_object)
            && let Some(key) = unknown_key(config, CONFIG)
        {
            return Err(bad(format!(
                "Unknown name \"{key}\" at 'generation_config': Cannot find field."
            )));
        }
        if let Some(system) = body.get("systemInstruction")
            && !system["parts"]
                .as_array()
                .is_some_and(|p| p.iter().all(|p| p["text"].is_string()))
        {
            return Err(bad(
                "systemInstruction.parts: a list of text parts is required",
            ));
        }
        for tool in body
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for declaration in tool["functionDeclarations"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if !declaration["name"].is_string() {
                    return Err(bad("tools.functionDeclarations: name is required"));
                }
            }
        }
        let Some(contents) = body
            .get("contents")
            .and_then(Value::as_array)
            .filter(|c| !c.is_empty())
        else {
            return Err(bad("contents is not specified"));
        };
        let mut open_calls: Vec<String> = Vec::new();
        for (i, content) in contents.iter().enumerate() {
            let role = content["role"].as_str().unwrap_or_default();
            if !matches!(role, "user" | "model") {
                return Err(bad(format!(
                    "contents[{i}].role: must be user or model, got {role:?}"
                )));
            }
            let Some(parts) = content["parts"].as_array().filter(|p| !p.is_empty()) else {
                return Err(bad(format!("contents[{i}].parts: must not be empty")));
            };
            for (j, part) in parts.iter().enumerate() {
                let fields = part.as_object().map(|o| o.len()).unwrap_or(0);
                let known = [
                    "text",
                    "functionCall",
                    "functionResponse",
                    "inlineData",
                    "fileData",
                ]
                .iter()
                .filter(|k| part.get(**k).is_some())
                .count();
                if fields != 1 || known != 1 {
                    return Err(bad(format!(
                        "contents[{i}].parts[{j}]: exactly one of text, functionCall, functionResponse, inlineData, fileData"
                    )));
                }
                if part.get("functionCall").is_some() && role != "model" {
                    return Err(bad(format!(
                        "contents[{i}].parts[{j}]: functionCall only in model turns"
                    )));
                }
                if let Some(response) = part.get("functionResponse")
                    && !(response["name"].is_string() && response["response"].is_object())
                {
                    return Err(bad(format!(
                        "contents[{i}].parts[{j}].functionResponse: name and a response object are required"
                    )));
                }
            }
            let responses = function_names(parts, "functionResponse");
            if (!open_calls.is_empty() || !responses.is_empty())
                && (role != "user" || responses != open_calls)
            {
                return Err(bad(format!(
                    "contents[{i}]: Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn (calls {open_calls:?}, responses {responses:?})"
                )));
            }
            open_calls = if role == "model" {
                function_names(parts, "functionCall")
            } else {
                Vec::new()
            };
        }
        if !open_calls.is_empty() {
            return Err(bad(
                "the last model turn's function calls have no responses",
            ));
        }
        Ok(())
    }

    fn embeddings(
        &self,
        request: &RecordedRequest,
        _query: &str,
    ) -> Option<Result<Value, Refusal>> {
        let rest = request.path.strip_prefix("/v1beta/models/")?;
        let (model, batch) = match rest.rsplit_once(':')? {
            (model, "embedContent") => (model, false),
            (model, "batchEmbedContents") => (model, true),
            _ => return None,
        };
        Some(self.embed(request, model, batch))
    }

    fn error_body(&self, status: u16, message: &str) -> Value {
        let name = match status {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            429 => "RESOURCE_EXHAUSTED",
            503 => "UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            _ => "INTERNAL",
        };
        json!({"error": {"code": status, "message": message, "status": name}})
    }

    fn stream_events(
        &self,
        reply: &MockReply,
        request: &RecordedRequest,
        _serial: u64,
    ) -> Vec<String> {
        let model = request
            .path
            .trim_start_matches("/v1beta/models/")
            .trim_end_matches(":streamGenerateContent")
            .to_string();
        let usage = reply.usage;
        let chunk = |parts: Vec<Value>, finish: Option<&str>| {
            let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
            if let Some(finish) = finish {
                candidate["finishReason"] = json!(finish);
            }
            let mut value =
                json!({"candidates": [candidate], "modelVersion": model, "responseId": "mock"});
            let mut metadata = json!({"promptTokenCount": usage.prompt_tokens, "totalTokenCount": usage.prompt_tokens + usage.completion_tokens});
            if finish.is_some() {
                metadata["candidatesTokenCount"] = json!(usage.completion_tokens);
                if usage.cached_tokens > 0 {
                    metadata["cachedContentTokenCount"] = json!(usage.cached_tokens);
                }
            }
            value["usageMetadata"] = metadata;
            format!("data: {value}\r\n\r\n")
        };
        let mut parts: Vec<Vec<Value>> = word_pieces(&reply.text)
            .into_iter()
            .map(|p| vec![json!({"text": p})])
            .collect();
        let calls: Vec<Value> = reply
            .tool_calls
            .iter()
            .map(|c| json!({"functionCall": {"name": c.name, "args": serde_json::from_str::<Value>(&c.arguments).unwrap_or(json!({}))}}))
            .collect();
        if !calls.is_empty() {
            parts.push(calls);
        }
        let finish = match reply.finish_reason() {
            "length" => "MAX_TOKENS",
            "content_filter" => "SAFETY",
            _ => "STOP",
        };
        let last = parts.pop().unwrap_or_default();
        let mut events: Vec<String> = parts.into_iter().map(|p| chunk(p, None)).collect();
        events.push(chunk(last, Some(finish)));
        events
    }

    fn stream_error(&self, status: u16, message: &str) -> String {
        format!("data: {}\r\n\r\n", self.error_body(status, message))
    }
}
