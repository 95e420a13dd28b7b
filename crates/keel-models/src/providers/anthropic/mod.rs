//! Anthropic Messages (`POST {base_url}/v1/messages`, streamed over SSE, `anthropic-version`
//! header). `wire` builds the request body, `events` reads the reply; this file holds config and HTTP.

pub(super) mod events;
mod wire;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::endpoint::{Endpoint, EndpointConfig, Target};
use super::streaming::HttpTimeouts;
use crate::{ModelClient, ModelError, ModelRequest, ModelStream};

pub(crate) const PROVIDER: &str = "anthropic";
/// The API version keel's wire format follows.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// How to reach Anthropic.
#[derive(Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnthropicConfig {
    /// Up to but excluding `/v1`, e.g. `https://api.anthropic.com`.
    pub base_url: String,
    /// Sent as `x-api-key`.
    pub api_key: Option<String>,
    /// Anthropic requires `max_tokens`; used when the request sets none.
    pub default_max_tokens: u32,
    /// Sent as `anthropic-beta` when set.
    pub beta: Option<String>,
    pub timeouts: HttpTimeouts,
}

impl Default for AnthropicConfig {
    fn default() -> Self {
        AnthropicConfig {
            base_url: "https://api.anthropic.com".into(),
            api_key: None,
            default_max_tokens: 4096,
            beta: None,
            timeouts: HttpTimeouts::default(),
        }
    }
}

/// Keeps the key out of logs.
impl fmt::Debug for AnthropicConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("default_max_tokens", &self.default_max_tokens)
            .field("beta", &self.beta)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

/// A `ModelClient` for the Anthropic Messages API.
pub struct AnthropicClient {
    config: AnthropicConfig,
    endpoint: Endpoint,
    messages: Target,
}

impl AnthropicClient {
    pub fn new(config: AnthropicConfig) -> Result<AnthropicClient, ModelError> {
        let mut headers = vec![("anthropic-version", ANTHROPIC_VERSION, false)];
        if let Some(key) = &config.api_key {
            headers.push(("x-api-key", key, true));
        }
        if let Some(beta) = &config.beta {
            headers.push(("anthropic-beta", beta, false));
        }
        let endpoint = Endpoint::new(EndpointConfig {
            provider: PROVIDER,
            base_url: &config.base_url,
            example: "https://api.anthropic.com",
            headers: &headers,
            timeouts: &config.timeouts,
            error_message: events::error_message,
        })?;
        let messages = endpoint.target("/v1/messages")?;
        Ok(AnthropicClient {
            config,
            endpoint,
            messages,
        })
    }
}

#[async_trait]
impl ModelClient for AnthropicClient {
    fn provider(&self) -> &str {
        PROVIDER
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let body = wire::messages_body(&request, self.config.default_max_tokens)?;
        let decoder = events::MessageEvents::default();
        self.endpoint.stream(&self.messages, &body, decoder).await
    }
}
