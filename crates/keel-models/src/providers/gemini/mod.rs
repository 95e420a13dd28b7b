//! Google Gemini (`POST {base_url}/v1beta/models/{model}:streamGenerateContent?alt=sse`, key in
//! `x-goog-api-key`). `wire` builds the request, `events` reads the reply; this file does HTTP.
//! Gemini has no tool-call ids: keel assigns them, and maps results back by name and order.

mod embeddings;
pub(super) mod events;
mod wire;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::endpoint::{Endpoint, EndpointConfig};
use super::streaming::{HttpTimeouts, config_error};
use crate::{
    EmbeddingRequest, EmbeddingResponse, ModelClient, ModelError, ModelRequest, ModelStream,
};

pub(crate) const PROVIDER: &str = "gemini";

/// How to reach the Gemini API.
#[derive(Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GeminiConfig {
    /// Up to and including the version path, e.g. `https://generativelanguage.googleapis.com/v1beta`.
    pub base_url: String,
    /// Sent as `x-goog-api-key`.
    pub api_key: Option<String>,
    pub timeouts: HttpTimeouts,
}

impl Default for GeminiConfig {
    fn default() -> Self {
        GeminiConfig {
            base_url: "https://generativelanguage.googleapis.com/v1beta".into(),
            api_key: None,
            timeouts: HttpTimeouts::default(),
        }
    }
}

impl fmt::Debug for GeminiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeminiConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

/// A `ModelClient` for the Gemini API.
pub struct GeminiClient {
    endpoint: Endpoint,
}

impl GeminiClient {
    pub fn new(config: GeminiConfig) -> Result<GeminiClient, ModelError> {
        let headers: Vec<_> = config
            .api_key
            .iter()
            .map(|key| ("x-goog-api-key", key.as_str(), true))
            .collect();
        let endpoint = Endpoint::new(EndpointConfig {
            provider: PROVIDER,
            base_url: &config.base_url,
            example: "https://generativelanguage.googleapis.com/v1beta",
            headers: &headers,
            timeouts: &config.timeouts,
            error_message: events::error_message,
        })?;
        Ok(GeminiClient { endpoint })
    }
}

#[async_trait]
impl ModelClient for GeminiClient {
    fn provider(&self) -> &str {
        PROVIDER
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let body = wire::generate_body(&request)?;
        check_model(&request.model)?;
        let path = format!("/models/{}:streamGenerateContent?alt=sse", request.model);
        let target = self.endpoint.target(&path)?;
        let decoder = events::GenerateEvents::default();
        self.endpoint.stream(&target, &body, decoder).await
    }

    async fn embed(&self, request: EmbeddingRequest) -> Result<EmbeddingResponse, ModelError> {
        request.check(PROVIDER)?;
        check_model(&request.model)?;
        let (path, body) = embeddings::call(&request);
        let target = self.endpoint.target(&path)?;
        let reply = self.endpoint.post_json(&target, &body).await?;
        embeddings::parse(&request, &reply)
    }
}

/// A model name is a path segment of the URL.
fn check_model(model: &str) -> Result<(), ModelError> {
    if model.contains(['/', '?', '#', ':']) {
        return Err(config_error(
            PROVIDER,
            format!(
                "model `{model}` holds a character not allowed in a Gemini model name (/ ? # :)"
            ),
        ));
    }
    Ok(())
}
