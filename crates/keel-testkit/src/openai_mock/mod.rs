//! A mock of OpenAI's Chat Completions endpoint (`POST /v1/chat/completions`), streaming and not,
//! served by `MockUpstream`. It checks what it receives as OpenAI would (bearer key, body shape,
//! tool message pairing, optionally the context window) and refuses in OpenAI's error shape.
//! vLLM, Ollama and llama.cpp speak the same format; Azure's mock reuses its checks and shapes.

pub(crate) mod embeddings;
pub(crate) mod render;
pub(crate) mod validate;

use std::sync::Mutex;

use serde_json::Value;

pub use crate::reply::{MockReply, MockToolCall, MockUsage};
use crate::server::RecordedRequest;
use crate::upstream::{MockUpstream, Refusal, Wire, refuse};

/// The running mock; `base_url()` is what an OpenAI client's base URL takes.
pub type MockOpenAi = MockUpstream<OpenAiWire>;

/// OpenAI's Chat Completions format, with the key the mock accepts (any, when `None`).
pub struct OpenAiWire {
    api_key: Option<String>,
    /// Words a request's messages may hold in all; more is refused as OpenAI refuses an input
    /// longer than the context window (400 `context_length_exceeded`), without using a reply.
    context_window: Mutex<Option<usize>>,
    /// What `GET /v1/models` lists; `None`: no such endpoint (404), as some servers have.
    models: Mutex<Option<Vec<String>>>,
}

impl MockUpstream<OpenAiWire> {
    /// Starts a mock that accepts any (or no) API key.
    pub async fn start() -> std::io::Result<MockOpenAi> {
        MockUpstream::serve(OpenAiWire::new(None)).await
    }

    /// Starts a mock that refuses requests without `Authorization: Bearer <api_key>` (401).
    pub async fn start_with_api_key(api_key: impl Into<String>) -> std::io::Result<MockOpenAi> {
        MockUpstream::serve(OpenAiWire::new(Some(api_key.into()))).await
    }

    /// The base URL a client is configured with: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/v1", self.origin())
    }

    /// Refuses requests whose messages hold more than `words` words (a word counts as a token)
    /// with OpenAI's 400 `context_length_exceeded`, as a model with that context window does.
    pub fn set_context_window(&self, words: usize) -> &MockOpenAi {
        let mut window = self
            .wire()
            .context_window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *window = Some(words);
        self
    }

    /// Answers `GET /v1/models` with these ids, in OpenAI's list shape.
    pub fn set_models(&self, ids: &[&str]) -> &MockOpenAi {
        let mut models = self
            .wire()
            .models
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *models = Some(ids.iter().map(|id| id.to_string()).collect());
        self
    }
}

impl OpenAiWire {
    fn new(api_key: Option<String>) -> OpenAiWire {
        OpenAiWire {
            api_key,
            context_window: Mutex::new(None),
            models: Mutex::new(None),
        }
    }

    fn check_key(&self, request: &RecordedRequest) -> Result<(), Refusal> {
        let Some(expected) = &self.api_key else {
            return Ok(());
        };
        match request.header("authorization") {
            None => Err(refuse(
                401,
                "You didn't provide an API key. Send 'Authorization: Bearer KEY'.",
            )),
            Some(given) if given != format!("Bearer {expected}") => {
                Err(refuse(401, "Incorrect API key provided."))
            }
            Some(_) => Ok(()),
        }
    }

    fn check_context_window(&self, body: &Value) -> Result<(), Refusal> {
        let window = *self
            .context_window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(window) = window else {
            return Ok(());
        };
        let used = prompt_words(body);
        if used <= window {
            return Ok(());
        }
        let message = format!(
            "This model's maximum context length is {window} tokens. However, your messages resulted in {used} tokens. Please reduce the length of the messages."
        );
        Err(Refusal {
            param: Some("messages".into()),
            code: Some("context_length_exceeded"),
            ..refuse(400, message)
        })
    }
}

impl Wire for OpenAiWire {
    type Event = String;

    fn check(&self, request: &RecordedRequest, _query: &str) -> Result<(), Refusal> {
        if request.path != "/v1/chat/completions" {
            return Err(refuse(
                404,
                format!("Invalid URL ({} {})", request.method, request.path),
            ));
        }
        self.check_key(request)?;
        validate::check_chat_request(&request.body).map_err(|invalid| Refusal {
            param: invalid.param,
            ..refuse(400, invalid.message)
        })?;
        self.check_context_window(&request.body)
    }

    fn error_body(&self, status: u16, message: &str) -> Value {
        render::error_body(status, message, None)
    }

    fn embeddings(
        &self,
        request: &RecordedRequest,
        _query: &str,
    ) -> Option<Result<Value, Refusal>> {
        if request.path != "/v1/embeddings" {
            return None;
        }
        Some(
            self.check_key(request)
                .and_then(|()| embeddings::answer(&request.body, None)),
        )
    }

    fn listing(&self, path: &str) -> Option<Value> {
        if path != "/v1/models" {
            return None;
        }
        let models = self
            .models
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let data: Vec<Value> = models
            .as_ref()?
            .iter()
            .map(|id| serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": "mock"}))
            .collect();
        Some(serde_json::json!({"object": "list", "data": data}))
    }

    fn refusal_body(&self, refusal: &Refusal) -> Value {
        let mut body =
            render::error_body(refusal.status, &refusal.message, refusal.param.as_deref());
        if let Some(code) = refusal.code {
            body["error"]["code"] = Value::from(code);
        }
        body
    }

    fn stream_events(
        &self,
        reply: &MockReply,
        request: &RecordedRequest,
        serial: u64,
    ) -> Vec<String> {
        let include_usage = request.body["stream_options"]["include_usage"] == Value::Bool(true);
        let model = request.body["model"].as_str().unwrap_or_default();
        render::stream_events(reply, &completion_id(serial), model, include_usage)
    }

    fn stream_error(&self, status: u16, message: &str) -> String {
        render::sse_data(&render::error_body(status, message, None))
    }

    fn malformed_event(&self) -> String {
        "data: {\"id\": \"chatcmpl-mock\", \"object\": \"chat.completion.chunk\", \"choices\": [{\n\n"
            .into()
    }

    fn whole_reply(
        &self,
        reply: &MockReply,
        request: &RecordedRequest,
        serial: u64,
    ) -> Option<String> {
        if request.body["stream"] == Value::Bool(true) {
            return None;
        }
        let model = request.body["model"].as_str().unwrap_or_default();
        Some(render::completion(reply, &completion_id(serial), model).to_string())
    }
}

fn completion_id(serial: u64) -> String {
    format!("chatcmpl-mock{serial}")
}

/// The words of a request's messages (text content and text parts), as the mock counts tokens.
fn prompt_words(body: &Value) -> usize {
    let words = |text: &str| text.split_whitespace().count();
    body["messages"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .map(|m| match &m["content"] {
                    Value::String(text) => words(text),
                    Value::Array(parts) => parts
                        .iter()
                        .filter_map(|p| p["text"].as_str())
                        .map(words)
                        .sum(),
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
