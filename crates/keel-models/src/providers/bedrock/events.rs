//! The response half of Bedrock ConverseStream: the SDK's typed events (decoded from AWS's
//! binary event-stream framing) become normalized events, and its errors become `ModelError`s
//! by AWS error code.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_bedrockruntime::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError;
use aws_sdk_bedrockruntime::types::{
    ContentBlockDelta, ContentBlockStart, ConverseStreamOutput, StopReason,
};
use aws_smithy_types::event_stream::RawMessage;
use futures::StreamExt;
use keel_core::{FinishReason, Usage};
use tokio::time::{Instant, timeout_at};

use super::PROVIDER;
use crate::http::timeout_error;
use crate::{ModelError, ModelErrorKind, ModelStream, StreamEvent};

type Receiver = aws_sdk_bedrockruntime::primitives::event_stream::EventReceiver<
    ConverseStreamOutput,
    aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError,
>;

/// An SDK failure as a `ModelError`: service errors by their AWS code, transport ones by kind.
pub(super) fn sdk_error<E, R>(error: SdkError<E, R>) -> ModelError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let kind = match &error {
        SdkError::ServiceError(context) => kind_of_code(context.err().code().unwrap_or_default()),
        SdkError::TimeoutError(_) => ModelErrorKind::Timeout,
        SdkError::DispatchFailure(_) => ModelErrorKind::Unavailable,
        SdkError::ResponseError(_) => ModelErrorKind::Protocol,
        SdkError::ConstructionFailure(_) => ModelErrorKind::BadRequest,
        _ => ModelErrorKind::Unavailable,
    };
    ModelError::new(kind, PROVIDER, format!("{}", DisplayErrorContext(&error)))
}

/// An exception frame inside the stream: the SDK leaves its code unset, so map by variant.
fn stream_error(error: SdkError<ConverseStreamOutputError, RawMessage>) -> ModelError {
    let kind = match &error {
        SdkError::ServiceError(context) => {
            let err = context.err();
            Some(if err.is_throttling_exception() {
                ModelErrorKind::RateLimited
            } else if err.is_validation_exception() {
                ModelErrorKind::BadRequest
            } else {
                ModelErrorKind::Unavailable
            })
        }
        _ => None,
    };
    let mut mapped = sdk_error(error);
    if let Some(kind) = kind {
        mapped.kind = kind;
    }
    mapped
}

fn kind_of_code(code: &str) -> ModelErrorKind {
    match code {
        "ThrottlingException" | "ServiceQuotaExceededException" | "TooManyRequestsException" => {
            ModelErrorKind::RateLimited
        }
        "ModelTimeoutException" => ModelErrorKind::Timeout,
        "AccessDeniedException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "ExpiredTokenException" => ModelErrorKind::Auth,
        "ValidationException" | "ResourceNotFoundException" => ModelErrorKind::BadRequest,
        _ => ModelErrorKind::Unavailable,
    }
}

struct Reply {
    receiver: Receiver,
    tools: HashMap<i32, usize>,
    usage: Usage,
    finish: Option<FinishReason>,
    deadline: Instant,
    total: Duration,
    over: bool,
}

/// Reads the first event before returning (so early failures can still fail over), then streams.
pub(super) async fn reply_stream(
    receiver: Receiver,
    first_deadline: Instant,
    deadline: Instant,
    first_byte: Duration,
    total: Duration,
) -> Result<ModelStream, ModelError> {
    let mut reply = Reply {
        receiver,
        tools: HashMap::new(),
        usage: Usage::default(),
        finish: None,
        deadline: first_deadline,
        total,
        over: false,
    };
    let mut first = Vec::new();
    while first.is_empty() && !reply.over {
        match reply.next_events().await {
            Ok(events) => first = events,
            Err(error) if error.kind == ModelErrorKind::Timeout => {
                return Err(timeout_error(
                    PROVIDER,
                    "no first event from Bedrock",
                    first_byte,
                ));
            }
            Err(error) => return Err(error),
        }
    }
    reply.deadline = deadline;
    let rest = futures::stream::unfold(reply, |mut reply| async move {
        if reply.over {
            return None;
        }
        let item = reply.next_events().await;
        Some((item, reply))
    })
    .flat_map(|item| {
        let items: Vec<Result<StreamEvent, ModelError>> = match item {
            Ok(events) => events.into_iter().map(Ok).collect(),
            Err(error) => vec![Err(error)],
        };
        futures::stream::iter(items)
    });
    Ok(futures::stream::iter(first.into_iter().map(Ok))
        .chain(rest)
        .boxed())
}

impl Reply {
    /// The events of the next SDK event (possibly none); the closing events when it ends.
    async fn next_events(&mut self) -> Result<Vec<StreamEvent>, ModelError> {
        let next = match timeout_at(self.deadline, self.receiver.recv()).await {
            Err(_) => {
                self.over = true;
                return Err(timeout_error(
                    PROVIDER,
                    "the reply did not finish",
                    self.total,
                ));
            }
            Ok(next) => next,
        };
        let event = match next {
            Ok(Some(event)) => event,
            Ok(None) => {
                self.over = true;
                return match self.finish {
                    Some(finish) => Ok(vec![
                        StreamEvent::Usage(self.usage),
                        StreamEvent::Finish(finish),
                    ]),
                    None => Err(ModelError::new(
                        ModelErrorKind::Unavailable,
                        PROVIDER,
                        "the stream ended before messageStop",
                    )),
                };
            }
            Err(error) => {
                self.over = true;
                return Err(stream_error(error));
            }
        };
        Ok(match event {
            ConverseStreamOutput::ContentBlockStart(start) => match start.start() {
                Some(ContentBlockStart::ToolUse(tool)) => {
                    let index = self.tools.len();
                    self.tools.insert(start.content_block_index(), index);
                    vec![StreamEvent::ToolCallDelta {
                        index,
                        id: Some(tool.tool_use_id().to_string()),
                        name: Some(tool.name().to_string()),
                        arguments: String::new(),
                    }]
                }
                _ => Vec::new(),
            },
            ConverseStreamOutput::ContentBlockDelta(delta) => match delta.delta() {
                Some(ContentBlockDelta::Text(text)) if !text.is_empty() => {
                    vec![StreamEvent::TextDelta(text.clone())]
                }
                Some(ContentBlockDelta::ToolUse(tool)) => {
                    match self.tools.get(&delta.content_block_index()) {
                        Some(index) => vec![StreamEvent::ToolCallDelta {
                            index: *index,
                            id: None,
                            name: None,
                            arguments: tool.input().to_string(),
                        }],
                        None => {
                            self.over = true;
                            return Err(ModelError::new(
                                ModelErrorKind::Protocol,
                                PROVIDER,
                                "tool input for a block that is not a toolUse block",
                            ));
                        }
                    }
                }
                _ => Vec::new(),
            },
            ConverseStreamOutput::MessageStop(stop) => {
                self.finish = Some(finish_reason(stop.stop_reason(), !self.tools.is_empty()));
                Vec::new()
            }
            ConverseStreamOutput::Metadata(metadata) => {
                if let Some(usage) = metadata.usage() {
                    let cached = usage.cache_read_input_tokens().unwrap_or(0).max(0) as u64;
                    let written = usage.cache_write_input_tokens().unwrap_or(0).max(0) as u64;
                    self.usage = Usage {
                        input_tokens: usage.input_tokens().max(0) as u64 + cached + written,
                        output_tokens: usage.output_tokens().max(0) as u64,
                        cached_input_tokens: cached,
                    };
                }
                Vec::new()
            }
            _ => Vec::new(),
        })
    }
}

fn finish_reason(reason: &StopReason, had_tools: bool) -> FinishReason {
    match reason {
        StopReason::ToolUse => FinishReason::ToolCalls,
        StopReason::MaxTokens | StopReason::ModelContextWindowExceeded => FinishReason::Length,
        StopReason::ContentFiltered | StopReason::GuardrailIntervened => {
            FinishReason::ContentFilter
        }
        StopReason::MalformedModelOutput | StopReason::MalformedToolUse => FinishReason::Error,
        _ if had_tools => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}
