//! OpenAI Chat Completions (`POST {base_url}/chat/completions`, streamed over SSE). The same
//! wire format serves vLLM, Ollama, llama.cpp server and other OpenAI-compatible servers: point
//! `base_url` at them. `wire` builds the request, `chunks` reads the reply; this file does HTTP.

pub(crate) mod chunks;
pub(crate) mod embeddings;
pub(crate) mod wire;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{ACCEPT, HeaderValue};

use self::chunks::ChatChunks;
use super::endpoint::{Endpoint, EndpointConfig, Target};
use super::streaming::{ErrorBody, HttpTimeouts};
use crate::{
    EmbeddingRequest, EmbeddingResponse, ModelClient, ModelError, ModelReply, ModelRequest,
    ModelStream,
};

const PROVIDER: &str = "openai";

/// Which field carries `Params::max_tokens`. OpenAI documents `max_completion_tokens` (its
/// reasoning models refuse `max_tokens`); llama.cpp server before 2026 and Ollama read only
/// `max_tokens`; vLLM reads both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MaxTokensField {
    #[default]
    MaxCompletionTokens,
    MaxTokens,
    /// Send both (for servers that read one or the other; OpenAI's reasoning models refuse it).
    Both,
}

/// How to reach an OpenAI-compatible server.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// Up to and including the version path, e.g. `https://api.openai.com/v1` or
    /// `http://127.0.0.1:8000/v1` for vLLM.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …`; local servers need none.
    pub api_key: Option<String>,
    /// Sent as `OpenAI-Organization`.
    pub organization: Option<String>,
    pub extra_headers: Vec<(String, String)>,
    pub connect_timeout: Duration,
    /// From sending the request until the first byte of the reply body.
    pub first_byte_timeout: Duration,
    /// The whole call, including reading the stream to its end.
    pub total_timeout: Duration,
    pub max_tokens_field: MaxTokensField,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            base_url: "https://api.openai.com/v1".into(),
            api_key: None,
            organization: None,
            extra_headers: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(120),
            total_timeout: Duration::from_secs(600),
            max_tokens_field: MaxTokensField::MaxCompletionTokens,
        }
    }
}

impl OpenAiConfig {
    /// OpenAI itself with this key.
    pub fn openai(api_key: impl Into<String>) -> Self {
        OpenAiConfig {
            api_key: Some(api_key.into()),
            ..OpenAiConfig::default()
        }
    }

    /// Another OpenAI-compatible server (vLLM, Ollama, llama.cpp): no key, `max_tokens`.
    pub fn compatible(base_url: impl Into<String>) -> Self {
        OpenAiConfig {
            base_url: base_url.into(),
            max_tokens_field: MaxTokensField::MaxTokens,
            ..OpenAiConfig::default()
        }
    }
}

/// Keeps the key out of logs.
impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("organization", &self.organization)
            .field(
                "extra_headers",
                &self
                    .extra_headers
                    .iter()
                    .map(|(name, _)| name)
                    .collect::<Vec<_>>(),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("total_timeout", &self.total_timeout)
            .field("max_tokens_field", &self.max_tokens_field)
            .finish()
    }
}

/// A `ModelClient` for one OpenAI-compatible server.
pub struct OpenAiClient {
    max_tokens_field: MaxTokensField,
    endpoint: Endpoint,
    completions: Target,
    /// `{base_url}/models`, the server's list of what it serves.
    models: Target,
    /// `{base_url}/embeddings`.
    embeddings: Target,
}

impl OpenAiClient {
    /// Checks the configuration (URL, header names and values) and builds the HTTP client.
    pub fn new(config: OpenAiConfig) -> Result<OpenAiClient, ModelError> {
        let bearer = config.api_key.as_ref().map(|key| format!("Bearer {key}"));
        let mut headers: Vec<_> = bearer
            .iter()
            .map(|b| ("authorization", b.as_str(), true))
            .collect();
        if let Some(organization) = &config.organization {
            headers.push(("openai-organization", organization, false));
        }
        for (name, value) in &config.extra_headers {
            headers.push((name, value, false));
        }
        let endpoint = Endpoint::new(EndpointConfig {
            provider: PROVIDER,
            base_url: &config.base_url,
            example: "https://api.openai.com/v1 or http://127.0.0.1:8000/v1",
            headers: &headers,
            timeouts: &timeouts(&config),
            error_message,
        })?;
        let completions = endpoint.target("/chat/completions")?;
        let models = endpoint.target("/models")?;
        let embeddings = endpoint.target("/embeddings")?;
        Ok(OpenAiClient {
            max_tokens_field: config.max_tokens_field,
            endpoint,
            completions,
            models,
            embeddings,
        })
    }

    /// `{base_url}/chat/completions`.
    pub fn endpoint(&self) -> &str {
        self.completions.as_str()
    }
}

/// The configured deadlines in the shape the shared HTTP call takes.
fn timeouts(config: &OpenAiConfig) -> HttpTimeouts {
    HttpTimeouts {
        connect_ms: config.connect_timeout.as_millis() as u64,
        first_byte_ms: config.first_byte_timeout.as_millis() as u64,
        total_ms: config.total_timeout.as_millis() as u64,
    }
}

#[async_trait]
impl ModelClient for OpenAiClient {
    fn provider(&self) -> &str {
        PROVIDER
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let body = wire::chat_body(&request, self.max_tokens_field)?;
        let decoder = ChatChunks::new(PROVIDER);
        self.endpoint
            .stream(&self.completions, &body, decoder)
            .await
    }

    /// A plain call asks for the whole `chat.completion` rather than a stream.
    async fn complete(&self, request: ModelRequest) -> Result<ModelReply, ModelError> {
        let mut body = wire::chat_body(&request, self.max_tokens_field)?;
        body["stream"] = serde_json::Value::Bool(false);
        if let Some(fields) = body.as_object_mut() {
            fields.remove("stream_options");
        }
        let mut headers = self.endpoint.headers().clone();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let send = self.endpoint.post(&self.completions, headers, &body);
        let call = self.endpoint.call(&self.completions);
        chunks::whole_reply(&call.whole(send).await?)
    }

    /// `GET {base_url}/models`: OpenAI, vLLM, Ollama and llama.cpp server all answer it.
    async fn list_models(&self) -> Result<Option<Vec<String>>, ModelError> {
        let mut headers = self.endpoint.headers().clone();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let send = self.endpoint.get(&self.models, headers);
        let body = self.endpoint.call(&self.models).whole(send).await?;
        wire::model_ids(&body).map(Some)
    }

    /// `POST {base_url}/embeddings`, floats asked for.
    async fn embed(&self, request: EmbeddingRequest) -> Result<EmbeddingResponse, ModelError> {
        request.check(PROVIDER)?;
        let body = embeddings::body(&request, true);
        let reply = self.endpoint.post_json(&self.embeddings, &body).await?;
        embeddings::parse(PROVIDER, &request, &reply)
    }
}

/// The `message` of an OpenAI error body (or the body itself) and its `code`, else its `type`
/// (vLLM puts the HTTP status in `code` and a class name in `type`).
pub(crate) fn error_message(body: &str) -> ErrorBody {
    let parsed = serde_json::from_str::<serde_json::Value>(body).ok();
    let error = parsed.as_ref().map(|v| &v["error"]);
    let message = error
        .and_then(|e| e["message"].as_str())
        .map_or_else(|| body.to_string(), str::to_string);
    let code = error.and_then(|e| e["code"].as_str().or_else(|| e["type"].as_str()));
    ErrorBody {
        message,
        code: code.map(str::to_string),
    }
}
