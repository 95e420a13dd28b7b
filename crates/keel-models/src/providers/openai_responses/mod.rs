//! OpenAI Responses (`POST {base_url}/responses`, streamed as typed SSE events). Calls are
//! stateless (`store: false`, the whole transcript as `input` items), so any other provider can
//! take over the session. `wire` builds the request, `events` reads the reply.

pub(super) mod events;
mod wire;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::endpoint::{Endpoint, EndpointConfig, Target};
use super::streaming::HttpTimeouts;
use crate::{ModelClient, ModelError, ModelRequest, ModelStream};

pub(crate) const PROVIDER: &str = "openai_responses";

/// How to reach a Responses API.
#[derive(Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResponsesConfig {
    /// Up to and including the version path, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …`.
    pub api_key: Option<String>,
    pub timeouts: HttpTimeouts,
}

impl Default for ResponsesConfig {
    fn default() -> Self {
        ResponsesConfig {
            base_url: "https://api.openai.com/v1".into(),
            api_key: None,
            timeouts: HttpTimeouts::default(),
        }
    }
}

impl fmt::Debug for ResponsesConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponsesConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

/// A `ModelClient` for the OpenAI Responses API.
pub struct ResponsesClient {
    endpoint: Endpoint,
    responses: Target,
}

impl ResponsesClient {
    pub fn new(config: ResponsesConfig) -> Result<ResponsesClient, ModelError> {
        let bearer = config.api_key.as_ref().map(|key| format!("Bearer {key}"));
        let headers: Vec<_> = bearer
            .iter()
            .map(|b| ("authorization", b.as_str(), true))
            .collect();
        let endpoint = Endpoint::new(EndpointConfig {
            provider: PROVIDER,
            base_url: &config.base_url,
            example: "https://api.openai.com/v1",
            headers: &headers,
            timeouts: &config.timeouts,
            error_message: crate::providers::openai::error_message,
        })?;
        let responses = endpoint.target("/responses")?;
        Ok(ResponsesClient {
            endpoint,
            responses,
        })
    }
}

#[async_trait]
impl ModelClient for ResponsesClient {
    fn provider(&self) -> &str {
        PROVIDER
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let body = wire::responses_body(&request)?;
        let decoder = events::ResponseEvents::default();
        self.endpoint.stream(&self.responses, &body, decoder).await
    }
}
