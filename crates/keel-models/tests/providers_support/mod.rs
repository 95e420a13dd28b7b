//! What the provider tests share: each provider's client wired to its mock upstream behind one
//! `Upstream` type, so one case suite runs against every provider, and small helpers to run a
//! call and fold what it produced.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use keel_core::{Message, Part, Role};
use keel_models::providers::HttpTimeouts;
use keel_models::providers::anthropic::{AnthropicClient, AnthropicConfig};
use keel_models::providers::azure::{AzureAuth, AzureClient, AzureConfig};
use keel_models::providers::gemini::{GeminiClient, GeminiConfig};
use keel_models::providers::openai::{OpenAiClient, OpenAiConfig};
use keel_models::providers::openai_responses::{ResponsesClient, ResponsesConfig};
use keel_models::{
    EmbeddingRequest, ModelClient, ModelError, ModelRequest, Params, StreamEvent, ToolSpec,
};
use keel_testkit::anthropic_mock::MockAnthropic;
use keel_testkit::azure_mock::{AzureCredential, MockAzure};
use keel_testkit::gemini_mock::MockGemini;
use keel_testkit::openai_mock::{MockOpenAi, MockReply};
use keel_testkit::responses_mock::MockResponses;
use keel_testkit::upstream::MockUpstream;
use keel_testkit::{Fault, RecordedRequest};
use serde_json::{Value, json};

pub const KEY: &str = "test-key-123";
pub const AZURE_VERSION: &str = "2024-10-21";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    OpenAi,
    Responses,
    Azure,
    Anthropic,
    Gemini,
}

enum Mock {
    OpenAi(MockOpenAi),
    Responses(MockResponses),
    Azure(MockAzure),
    Anthropic(MockAnthropic),
    Gemini(MockGemini),
}

/// A provider's mock and a client pointed at it.
pub struct Upstream {
    pub kind: Kind,
    mock: Mock,
    pub client: Arc<dyn ModelClient>,
}

pub fn timeouts(first_byte_ms: u64) -> HttpTimeouts {
    HttpTimeouts {
        connect_ms: 2_000,
        first_byte_ms,
        total_ms: 20_000,
    }
}

impl Upstream {
    pub async fn start(kind: Kind) -> Upstream {
        Upstream::start_with(kind, KEY, 10_000).await
    }

    /// A mock expecting `KEY` and a client sending `key`, giving up on a first byte after `first_byte_ms`.
    pub async fn start_with(kind: Kind, key: &str, first_byte_ms: u64) -> Upstream {
        let t = timeouts(first_byte_ms);
        let (mock, client): (Mock, Arc<dyn ModelClient>) = match kind {
            Kind::OpenAi => {
                let mock = MockOpenAi::start_with_api_key(KEY).await.unwrap();
                let config = OpenAiConfig {
                    base_url: mock.base_url(),
                    first_byte_timeout: Duration::from_millis(first_byte_ms),
                    ..OpenAiConfig::openai(key)
                };
                (
                    Mock::OpenAi(mock),
                    Arc::new(OpenAiClient::new(config).unwrap()),
                )
            }
            Kind::Responses => {
                let mock = MockUpstream::start_responses(KEY).await.unwrap();
                let config = ResponsesConfig {
                    base_url: mock.base_url(),
                    api_key: Some(key.into()),
                    timeouts: t,
                };
                (
                    Mock::Responses(mock),
                    Arc::new(ResponsesClient::new(config).unwrap()),
                )
            }
            Kind::Azure => {
                let mock = MockUpstream::start_azure(
                    "gpt-4o-mini",
                    AZURE_VERSION,
                    AzureCredential::ApiKey(KEY.into()),
                )
                .await
                .unwrap();
                let config = AzureConfig {
                    endpoint: mock.endpoint(),
                    api_version: AZURE_VERSION.into(),
                    auth: AzureAuth::ApiKey(key.into()),
                    timeouts: t,
                };
                (
                    Mock::Azure(mock),
                    Arc::new(AzureClient::new(config).unwrap()),
                )
            }
            Kind::Anthropic => {
                let mock = MockUpstream::start_anthropic(KEY).await.unwrap();
                let config = AnthropicConfig {
                    base_url: mock.base_url(),
                    api_key: Some(key.into()),
                    timeouts: t,
                    ..AnthropicConfig::default()
                };
                (
                    Mock::Anthropic(mock),
                    Arc::new(AnthropicClient::new(config).unwrap()),
                )
            }
            Kind::Gemini => {
                let mock = MockUpstream::start_gemini(KEY).await.unwrap();
                let config = GeminiConfig {
                    base_url: mock.base_url(),
                    api_key: Some(key.into()),
                    timeouts: t,
                };
                (
                    Mock::Gemini(mock),
                    Arc::new(GeminiClient::new(config).unwrap()),
                )
            }
        };
        Upstream { kind, mock, client }
    }

    /// The model (or Azure deployment) this provider is called with; all are in the catalog.
    pub fn model(&self) -> &'static str {
        match self.kind {
            Kind::OpenAi | Kind::Azure => "gpt-4o-mini",
            Kind::Responses => "gpt-4.1-mini",
            Kind::Anthropic => "claude-haiku-4-5",
            Kind::Gemini => "gemini-2.5-flash",
        }
    }

    /// The catalog's provider name for this provider.
    pub fn provider(&self) -> &'static str {
        match self.kind {
            Kind::OpenAi => "openai",
            Kind::Responses => "openai_responses",
            Kind::Azure => "azure",
            Kind::Anthropic => "anthropic",
            Kind::Gemini => "gemini",
        }
    }

    pub fn push_reply(&self, reply: MockReply) {
        match &self.mock {
            Mock::OpenAi(m) => drop(m.push_reply(reply)),
            Mock::Responses(m) => drop(m.push_reply(reply)),
            Mock::Azure(m) => drop(m.push_reply(reply)),
            Mock::Anthropic(m) => drop(m.push_reply(reply)),
            Mock::Gemini(m) => drop(m.push_reply(reply)),
        }
    }

    pub fn push_fault(&self, fault: Fault) {
        match &self.mock {
            Mock::OpenAi(m) => drop(m.push_fault(fault)),
            Mock::Responses(m) => drop(m.push_fault(fault)),
            Mock::Azure(m) => drop(m.push_fault(fault)),
            Mock::Anthropic(m) => drop(m.push_fault(fault)),
            Mock::Gemini(m) => drop(m.push_fault(fault)),
        }
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        match &self.mock {
            Mock::OpenAi(m) => m.requests(),
            Mock::Responses(m) => m.requests(),
            Mock::Azure(m) => m.requests(),
            Mock::Anthropic(m) => m.requests(),
            Mock::Gemini(m) => m.requests(),
        }
    }

    pub fn pending(&self) -> usize {
        match &self.mock {
            Mock::OpenAi(m) => m.pending(),
            Mock::Responses(m) => m.pending(),
            Mock::Azure(m) => m.pending(),
            Mock::Anthropic(m) => m.pending(),
            Mock::Gemini(m) => m.pending(),
        }
    }

    pub fn last_request(&self) -> RecordedRequest {
        self.requests().pop().expect("the mock received a request")
    }

    /// The system prompt as this provider's request carried it.
    pub fn system_sent(&self, request: &RecordedRequest) -> Option<String> {
        let body = &request.body;
        let text = match self.kind {
            Kind::OpenAi | Kind::Azure => body["messages"]
                .as_array()?
                .iter()
                .find(|m| m["role"] == "system")
                .map(|m| m["content"].clone())?,
            Kind::Responses => body["instructions"].clone(),
            Kind::Anthropic => body["system"].clone(),
            Kind::Gemini => body["systemInstruction"]["parts"][0]["text"].clone(),
        };
        text.as_str().map(str::to_string)
    }

    pub fn request(&self, messages: Vec<Message>) -> ModelRequest {
        ModelRequest {
            model: self.model().into(),
            system: Some("You are terse.".into()),
            messages,
            tools: tools(),
            params: Params::default(),
        }
    }
}

/// Texts to embed with `model`.
pub fn embedding_request(
    model: &str,
    inputs: &[&str],
    dimensions: Option<u32>,
) -> EmbeddingRequest {
    EmbeddingRequest {
        model: model.into(),
        inputs: inputs.iter().map(|t| t.to_string()).collect(),
        dimensions,
    }
}

pub fn tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "get_weather".into(),
            description: "Current weather for a city".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
            strict: None,
        },
        ToolSpec {
            name: "get_time".into(),
            description: "Local time in a city".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
            strict: None,
        },
    ]
}

/// What a call produced: its events, and the error it ended with (`at_start` when `stream()` refused).
pub struct Outcome {
    pub events: Vec<StreamEvent>,
    pub error: Option<ModelError>,
    pub at_start: bool,
}

impl Outcome {
    pub fn text(&self) -> String {
        let mut acc = keel_models::ReplyAccumulator::default();
        for e in &self.events {
            acc.push(e.clone());
        }
        acc.text().to_string()
    }

    pub fn error(&self) -> &ModelError {
        self.error
            .as_ref()
            .unwrap_or_else(|| panic!("expected an error, got events {:?}", self.events))
    }
}

pub async fn run(client: &dyn ModelClient, request: ModelRequest) -> Outcome {
    let mut stream = match client.stream(request).await {
        Ok(stream) => stream,
        Err(error) => {
            return Outcome {
                events: Vec::new(),
                error: Some(error),
                at_start: true,
            };
        }
    };
    let mut events = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => events.push(event),
            Err(error) => {
                return Outcome {
                    events,
                    error: Some(error),
                    at_start: false,
                };
            }
        }
    }
    Outcome {
        events,
        error: None,
        at_start: false,
    }
}

/// The tool-result message answering every call in `reply`.
pub fn results_for(reply: &Message, content: impl Fn(&str) -> String) -> Message {
    let parts = reply
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall { id, name, .. } => Some(Part::ToolResult {
                call_id: id.clone(),
                content: content(name),
                is_error: false,
            }),
            _ => None,
        })
        .collect();
    Message {
        role: Role::Tool,
        parts,
    }
}

pub fn calls_of(message: &Message) -> Vec<(String, String, Value)> {
    message
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall {
                id,
                name,
                arguments,
            } => Some((id.clone(), name.clone(), arguments.clone())),
            _ => None,
        })
        .collect()
}
