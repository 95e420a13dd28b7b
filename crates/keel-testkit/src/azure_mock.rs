//! A mock of Azure OpenAI Chat Completions on a deployment
//! (`POST /openai/deployments/{deployment}/chat/completions?api-version=…`). It checks the
//! deployment, `api-version`, and `api-key` or an Entra bearer token, then validates and answers
//! exactly as the OpenAI mock does (the body and stream formats are OpenAI's).

use serde_json::{Value, json};

use crate::openai_mock::embeddings;
use crate::openai_mock::render::{error_body, sse_data, stream_events};
use crate::openai_mock::validate::check_chat_request;
use crate::reply::MockReply;
use crate::server::RecordedRequest;

use crate::upstream::{MockUpstream, Refusal, Wire, refuse, require_header};

/// The running mock; `endpoint()` is what `AzureConfig::endpoint` takes.
pub type MockAzure = MockUpstream<AzureWire>;

/// How the mock expects to be authorized.
pub enum AzureCredential {
    ApiKey(String),
    EntraToken(String),
}

pub struct AzureWire {
    pub deployment: String,
    pub api_version: String,
    pub credential: AzureCredential,
}

impl MockUpstream<AzureWire> {
    pub async fn start_azure(
        deployment: &str,
        api_version: &str,
        credential: AzureCredential,
    ) -> std::io::Result<MockAzure> {
        MockUpstream::serve(AzureWire {
            deployment: deployment.into(),
            api_version: api_version.into(),
            credential,
        })
        .await
    }

    pub fn endpoint(&self) -> String {
        self.origin()
    }
}

impl AzureWire {
    /// Checks the path (`/openai/deployments/{deployment}/{operation}`), `api-version` and the
    /// credential; returns the deployment.
    fn check_target<'a>(
        &self,
        request: &'a RecordedRequest,
        query: &str,
        operation: &str,
    ) -> Result<&'a str, Refusal> {
        let Some(deployment) = request
            .path
            .strip_prefix("/openai/deployments/")
            .and_then(|r| r.strip_suffix(operation))
            .and_then(|r| r.strip_suffix('/'))
        else {
            return Err(refuse(404, "Resource not found"));
        };
        if deployment != self.deployment {
            return Err(refuse(
                404,
                format!("The API deployment {deployment} for this resource does not exist."),
            ));
        }
        let version = query
            .split('&')
            .find_map(|p| p.strip_prefix("api-version="));
        match version {
            None => return Err(refuse(404, "Missing api-version query parameter")),
            Some(v) if v != self.api_version => {
                return Err(refuse(
                    404,
                    format!(
                        "API version {v} is not supported by this mock (expects {})",
                        self.api_version
                    ),
                ));
            }
            Some(_) => {}
        }
        match &self.credential {
            AzureCredential::ApiKey(key) => {
                require_header(request, "api-key", key, "send the resource key as api-key")?
            }
            AzureCredential::EntraToken(token) => require_header(
                request,
                "authorization",
                &format!("Bearer {token}"),
                "send an Entra ID token as a bearer",
            )?,
        }
        Ok(deployment)
    }
}

impl Wire for AzureWire {
    type Event = String;

    fn check(&self, request: &RecordedRequest, query: &str) -> Result<(), Refusal> {
        let deployment = self.check_target(request, query, "chat/completions")?;
        // Azure takes the model from the deployment; validate the rest as OpenAI does.
        let mut body = request.body.clone();
        if let Some(object) = body.as_object_mut() {
            object.entry("model").or_insert(json!(deployment));
        }
        check_chat_request(&body).map_err(|invalid| refuse(400, invalid.message))?;
        if body["stream"] != Value::Bool(true) {
            return Err(refuse(
                400,
                "this mock serves only streamed requests (stream: true)",
            ));
        }
        Ok(())
    }

    fn error_body(&self, status: u16, message: &str) -> Value {
        error_body(status, message, None)
    }

    fn embeddings(&self, request: &RecordedRequest, query: &str) -> Option<Result<Value, Refusal>> {
        if !request.path.ends_with("/embeddings") {
            return None;
        }
        Some(
            self.check_target(request, query, "embeddings")
                .and_then(|deployment| embeddings::answer(&request.body, Some(deployment))),
        )
    }

    fn stream_events(
        &self,
        reply: &MockReply,
        request: &RecordedRequest,
        serial: u64,
    ) -> Vec<String> {
        let include_usage = request.body["stream_options"]["include_usage"] == Value::Bool(true);
        stream_events(
            reply,
            &format!("chatcmpl-azure{serial}"),
            &self.deployment,
            include_usage,
        )
    }

    fn stream_error(&self, status: u16, message: &str) -> String {
        sse_data(&error_body(status, message, None))
    }
}
