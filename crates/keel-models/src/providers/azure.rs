//! Azure OpenAI: Chat Completions on a deployment
//! (`{endpoint}/openai/deployments/{deployment}/chat/completions?api-version=…`), authorized by
//! an `api-key` header or an Entra ID bearer token. The route target's model is the deployment
//! name. The body and the stream are OpenAI's, so this reuses that provider's wire format.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::endpoint::{Endpoint, EndpointConfig, Target};
use super::openai::chunks::ChatChunks;
use super::openai::wire::chat_body;
use super::openai::{MaxTokensField, embeddings, error_message};
use super::streaming::{HttpTimeouts, config_error};
use crate::{
    EmbeddingRequest, EmbeddingResponse, ModelClient, ModelError, ModelRequest, ModelStream,
};

const PROVIDER: &str = "azure";

/// The GA data-plane version keel's wire format follows.
pub const DEFAULT_API_VERSION: &str = "2024-10-21";

/// How keel proves itself to Azure.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AzureAuth {
    /// The resource's key, sent as `api-key`.
    ApiKey(String),
    /// A Microsoft Entra ID access token (scope `https://cognitiveservices.azure.com/.default`),
    /// sent as `Authorization: Bearer …`. Refreshing it is the caller's job.
    EntraToken(String),
}

/// How to reach one Azure OpenAI resource.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// The resource endpoint, e.g. `https://my-resource.openai.azure.com`.
    pub endpoint: String,
    #[serde(default = "default_api_version")]
    pub api_version: String,
    pub auth: AzureAuth,
    #[serde(default)]
    pub timeouts: HttpTimeouts,
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.into()
}

impl fmt::Debug for AzureConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match self.auth {
            AzureAuth::ApiKey(_) => "api-key <redacted>",
            AzureAuth::EntraToken(_) => "entra token <redacted>",
        };
        f.debug_struct("AzureConfig")
            .field("endpoint", &self.endpoint)
            .field("api_version", &self.api_version)
            .field("auth", &auth)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

/// A `ModelClient` for the deployments of one Azure OpenAI resource.
pub struct AzureClient {
    api_version: String,
    endpoint: Endpoint,
}

impl AzureClient {
    pub fn new(config: AzureConfig) -> Result<AzureClient, ModelError> {
        let bearer;
        let credential = match &config.auth {
            AzureAuth::ApiKey(key) => ("api-key", key.as_str(), true),
            AzureAuth::EntraToken(token) => {
                bearer = format!("Bearer {token}");
                ("authorization", bearer.as_str(), true)
            }
        };
        let endpoint = Endpoint::new(EndpointConfig {
            provider: PROVIDER,
            base_url: &config.endpoint,
            example: "https://my-resource.openai.azure.com",
            headers: &[credential],
            timeouts: &config.timeouts,
            error_message,
        })?;
        if config.api_version.trim().is_empty() {
            return Err(config_error(
                PROVIDER,
                format!("api_version is empty; use e.g. {DEFAULT_API_VERSION}"),
            ));
        }
        Ok(AzureClient {
            api_version: config.api_version,
            endpoint,
        })
    }
}

#[async_trait]
impl ModelClient for AzureClient {
    fn provider(&self) -> &str {
        PROVIDER
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let deployment = deployment(&request.model)?;
        let mut body =
            chat_body(&request, MaxTokensField::MaxCompletionTokens).map_err(as_azure)?;
        // The deployment picks the model; Azure ignores `model` in the body. The GA version
        // keel follows has `user` but neither of OpenAI's newer caller ids.
        if let Some(body) = body.as_object_mut() {
            for field in ["model", "safety_identifier", "prompt_cache_key"] {
                body.remove(field);
            }
        }
        let target = self.deployment_target(deployment, "chat/completions")?;
        let decoder = ChatChunks::new(PROVIDER);
        self.endpoint.stream(&target, &body, decoder).await
    }

    /// The deployment's `embeddings`, in OpenAI's format without `model`.
    async fn embed(&self, request: EmbeddingRequest) -> Result<EmbeddingResponse, ModelError> {
        request.check(PROVIDER)?;
        let target = self.deployment_target(deployment(&request.model)?, "embeddings")?;
        let reply = self
            .endpoint
            .post_json(&target, &embeddings::body(&request, false))
            .await?;
        embeddings::parse(PROVIDER, &request, &reply)
    }
}

impl AzureClient {
    /// `{endpoint}/openai/deployments/{deployment}/{operation}?api-version=…`.
    fn deployment_target(&self, deployment: &str, operation: &str) -> Result<Target, ModelError> {
        self.endpoint.target(&format!(
            "/openai/deployments/{deployment}/{operation}?api-version={}",
            self.api_version
        ))
    }
}

/// The route target's model, checked as a deployment name.
fn deployment(model: &str) -> Result<&str, ModelError> {
    let deployment = model.trim();
    if deployment.is_empty()
        || !deployment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(config_error(
            PROVIDER,
            format!(
                "`{deployment}` is not an Azure deployment name (letters, digits, - _ .); give the target as azure/<deployment>"
            ),
        ));
    }
    Ok(deployment)
}

fn as_azure(error: ModelError) -> ModelError {
    ModelError {
        provider: PROVIDER.into(),
        ..error
    }
}
