//! AWS Bedrock Converse / ConverseStream through the official SDK (`aws-sdk-bedrockruntime`),
//! behind the `bedrock` feature. Credentials come from the standard AWS chain unless given; the
//! SDK's own retries are off so the router decides. `wire` builds the request, `events` reads it.

mod embeddings;
mod events;
mod wire;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_bedrockruntime::config::{Credentials, Region};
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, timeout_at};

use super::streaming::{HttpTimeouts, config_error};
use crate::http::timeout_error;
use crate::{
    EmbeddingRequest, EmbeddingResponse, ModelClient, ModelError, ModelRequest, ModelStream,
};

pub(crate) const PROVIDER: &str = "bedrock";

/// How to reach Bedrock in one region.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BedrockConfig {
    pub region: String,
    /// Overrides the regional endpoint (a VPC endpoint, or a mock in tests).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// A named profile from the shared AWS config files.
    #[serde(default)]
    pub profile: Option<String>,
    /// Static credentials instead of the default chain (tests; prefer the chain in production).
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub timeouts: HttpTimeouts,
}

impl fmt::Debug for BedrockConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BedrockConfig")
            .field("region", &self.region)
            .field("endpoint_url", &self.endpoint_url)
            .field("profile", &self.profile)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

/// A `ModelClient` for Bedrock's Converse API.
pub struct BedrockClient {
    client: aws_sdk_bedrockruntime::Client,
    timeouts: HttpTimeouts,
}

impl BedrockClient {
    /// Resolves credentials and region (async: the default chain may read files or IMDS).
    pub async fn new(config: BedrockConfig) -> Result<BedrockClient, ModelError> {
        if config.region.trim().is_empty() {
            return Err(config_error(
                PROVIDER,
                "region is empty; set it to a Bedrock region, e.g. us-east-1".into(),
            ));
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_millis(config.timeouts.connect_ms))
                    .build(),
            );
        if let Some(url) = &config.endpoint_url {
            if reqwest::Url::parse(url).is_err() {
                return Err(config_error(
                    PROVIDER,
                    format!(
                        "endpoint_url `{url}` is not a URL; use e.g. https://bedrock-runtime.us-east-1.amazonaws.com"
                    ),
                ));
            }
            loader = loader.endpoint_url(url);
        }
        if let Some(profile) = &config.profile {
            loader = loader.profile_name(profile);
        }
        match (&config.access_key_id, &config.secret_access_key) {
            (Some(id), Some(secret)) => loader = loader.credentials_provider(Credentials::new(id, secret, None, None, "keel-config")),
            (None, None) => {}
            _ => return Err(config_error(PROVIDER, "give both access_key_id and secret_access_key, or neither (to use the AWS credential chain)".into())),
        }
        let sdk = loader.load().await;
        Ok(BedrockClient {
            client: aws_sdk_bedrockruntime::Client::new(&sdk),
            timeouts: config.timeouts,
        })
    }
}

#[async_trait]
impl ModelClient for BedrockClient {
    fn provider(&self) -> &str {
        PROVIDER
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let converse = wire::Converse::from_request(&request)?;
        let started = Instant::now();
        let deadline = started + Duration::from_millis(self.timeouts.total_ms);
        let first_byte = Duration::from_millis(self.timeouts.first_byte_ms);
        let first_deadline = deadline.min(started + first_byte);
        let send = self
            .client
            .converse_stream()
            .model_id(&request.model)
            .set_messages(Some(converse.messages))
            .set_system(converse.system)
            .set_tool_config(converse.tool_config)
            .set_inference_config(converse.inference)
            .set_output_config(converse.output)
            .send();
        let output = match timeout_at(first_deadline, send).await {
            Err(_) => {
                return Err(timeout_error(
                    PROVIDER,
                    "no first byte from Bedrock",
                    first_byte,
                ));
            }
            Ok(Err(error)) => return Err(events::sdk_error(error)),
            Ok(Ok(output)) => output,
        };
        events::reply_stream(
            output.stream,
            first_deadline,
            deadline,
            first_byte,
            Duration::from_millis(self.timeouts.total_ms),
        )
        .await
    }
    /// InvokeModel with the body of the model's family (Titan: a call per text; Cohere: up to
    /// 96 texts a call), all under the total deadline.
    async fn embed(&self, request: EmbeddingRequest) -> Result<EmbeddingResponse, ModelError> {
        request.check(PROVIDER)?;
        let family = embeddings::Family::of(&request.model)?;
        let total = Duration::from_millis(self.timeouts.total_ms);
        let deadline = Instant::now() + total;
        let (mut vectors, mut tokens) = (Vec::new(), 0);
        for body in family.bodies(&request)? {
            let send = self
                .client
                .invoke_model()
                .model_id(&request.model)
                .content_type("application/json")
                .accept("application/json")
                .body(aws_smithy_types::Blob::new(body.to_string()))
                .send();
            let output = match timeout_at(deadline, send).await {
                Err(_) => return Err(timeout_error(PROVIDER, "the embeddings call", total)),
                Ok(Err(error)) => return Err(events::sdk_error(error)),
                Ok(Ok(output)) => output,
            };
            let (more, used) = family.parse(output.body.as_ref())?;
            vectors.extend(more);
            tokens += used;
        }
        EmbeddingResponse::checked(PROVIDER, &request, vectors, tokens)
    }
}
