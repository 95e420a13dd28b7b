//! One module per provider; each converts the normalized request and stream to and from its
//! own wire format, and nothing else.

pub mod anthropic;
pub mod azure;
#[cfg(feature = "bedrock")]
pub mod bedrock;
mod endpoint;
pub mod gemini;
pub mod openai;
pub mod openai_responses;
pub mod scripted;
mod streaming;
mod transcript;

pub use streaming::HttpTimeouts;

/// A reply body given as bytes, read exactly as a call reads it but without HTTP: how the fuzz
/// targets (`fuzz/`) reach the providers' reply decoders. Not part of keel's API.
#[doc(hidden)]
pub mod reply_bytes {
    use crate::{ModelError, ModelReply, StreamEvent};

    /// The streamed reply formats keel reads over SSE.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum StreamFormat {
        /// OpenAI Chat Completions chunks (also Azure and OpenAI-compatible servers).
        ChatCompletions,
        AnthropicMessages,
        GeminiGenerate,
        OpenAiResponses,
    }

    /// Every event a streamed body arriving in `chunks` yields, ending with the closing events
    /// or the error, as `ModelClient::stream` would yield them.
    pub async fn read_stream(
        format: StreamFormat,
        chunks: Vec<bytes::Bytes>,
    ) -> Vec<Result<StreamEvent, ModelError>> {
        use super::streaming::read_body;
        match format {
            StreamFormat::ChatCompletions => {
                read_body(
                    "openai",
                    super::openai::chunks::ChatChunks::new("openai"),
                    chunks,
                )
                .await
            }
            StreamFormat::AnthropicMessages => {
                read_body(
                    "anthropic",
                    super::anthropic::events::MessageEvents::default(),
                    chunks,
                )
                .await
            }
            StreamFormat::GeminiGenerate => {
                read_body(
                    "gemini",
                    super::gemini::events::GenerateEvents::default(),
                    chunks,
                )
                .await
            }
            StreamFormat::OpenAiResponses => {
                let decoder = super::openai_responses::events::ResponseEvents::default();
                read_body("openai_responses", decoder, chunks).await
            }
        }
    }

    /// A whole (non-streamed) `chat.completion` body, as `OpenAiClient::complete` reads it.
    pub fn read_chat_completion(body: &str) -> Result<ModelReply, ModelError> {
        super::openai::chunks::whole_reply(body)
    }
}
