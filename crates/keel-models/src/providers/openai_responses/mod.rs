//! OpenAI Responses (`POST {base_url}/responses`, streamed as typed SSE events). Calls are
//! stateless (`store: false`, the whole transcript as `input` items), so any other provider can
//! take over the session. `wire` builds the request, `events` reads the reply.

pub(super) mod events;
mod wire;

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::streaming::{self, HttpTimeouts, SseCall};
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
    config: ResponsesConfig,
    endpoint: String,
    url: reqwest::Url,
    headers: reqwest::header::HeaderMap,
    http: reqwest::Client,
}

impl ResponsesClient {
    pub fn new(config: ResponsesConfig) -> Result<ResponsesClient, ModelError> {
        let base = streaming::base_url(PROVIDER, &config.base_url, "https://api.openai.com/v1")?;
        let endpoint = format!("{base}/responses");
        let bearer = config.api_key.as_ref().map(|key| format!("Bearer {key}"));
        let mut pairs = vec![("accept", "text/event-stream", false)];
        if let Some(bearer) = &bearer {
            pairs.push(("authorization", bearer, true));
        }
        let headers = streaming::headers(PROVIDER, &pairs)?;
        let url = streaming::endpoint_url(PROVIDER, &endpoint)?;
        let http = streaming::http_client(PROVIDER, &config.timeouts)?;
        Ok(ResponsesClient {
            config,
            endpoint,
            url,
            headers,
            http,
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
        let send = self
            .http
            .post(self.url.clone())
            .headers(self.headers.clone())
            .json(&body);
        let call = SseCall {
            provider: PROVIDER,
            url: &self.endpoint,
            timeouts: &self.config.timeouts,
            error_message: crate::providers::openai::error_message,
        };
        call.run(send, events::ResponseEvents::default()).await
    }
}
