//! The request half of Bedrock Converse, in the SDK's types: system blocks, alternating
//! user/assistant messages with `toolUse` and `toolResult` blocks, tool specs with JSON schemas
//! (as smithy `Document`s) and the inference configuration.

use std::collections::HashMap;

use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, InferenceConfiguration, Message, SystemContentBlock, Tool,
    ToolConfiguration, ToolInputSchema, ToolResultBlock, ToolResultContentBlock, ToolResultStatus,
    ToolSpecification, ToolUseBlock,
};
use aws_smithy_types::{Document, Number};
use keel_core::{Part, Role};
use serde_json::Value;

use super::PROVIDER;
use crate::providers::streaming::{arguments_object, config_error};
use crate::{ModelError, ModelRequest};

pub(super) struct Converse {
    pub messages: Vec<Message>,
    pub system: Option<Vec<SystemContentBlock>>,
    pub tool_config: Option<ToolConfiguration>,
    pub inference: Option<InferenceConfiguration>,
}

fn refuse(message: String) -> ModelError {
    config_error(PROVIDER, message)
}

/// Bedrock tool ids match `[a-zA-Z0-9_-]+` (up to 64): ids from other providers are mapped alike
/// in calls and results.
pub(super) fn tool_id(id: &str) -> String {
    let mapped: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if mapped.is_empty() {
        "call".into()
    } else {
        mapped
    }
}

pub(super) fn document(value: &Value) -> Document {
    match value {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => Number::PosInt(u),
            (None, Some(i)) => Number::NegInt(i),
            _ => Number::Float(n.as_f64().unwrap_or(0.0)),
        }),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(items) => Document::Array(items.iter().map(document).collect()),
        Value::Object(map) => Document::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), document(v)))
                .collect::<HashMap<_, _>>(),
        ),
    }
}

impl Converse {
    pub(super) fn from_request(request: &ModelRequest) -> Result<Converse, ModelError> {
        if request.model.trim().is_empty() {
            return Err(refuse("the request names no model; give the target as bedrock/<model id>, e.g. bedrock/amazon.nova-lite-v1:0".into()));
        }
        let mut system: Vec<SystemContentBlock> = request
            .system
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| SystemContentBlock::Text(s.clone()))
            .collect();
        let mut turns: Vec<(ConversationRole, Vec<ContentBlock>)> = Vec::new();
        for (index, message) in request.messages.iter().enumerate() {
            let role = match message.role {
                Role::System => {
                    system.extend(message.parts.iter().filter_map(|p| match p {
                        Part::Text { text } if !text.is_empty() => {
                            Some(SystemContentBlock::Text(text.clone()))
                        }
                        _ => None,
                    }));
                    continue;
                }
                Role::User | Role::Tool => ConversationRole::User,
                Role::Assistant => ConversationRole::Assistant,
            };
            let mut blocks = Vec::new();
            for part in &message.parts {
                match part {
                    Part::Text { text } if text.is_empty() => {}
                    Part::Text { text } => blocks.push(ContentBlock::Text(text.clone())),
                    Part::Image { .. } => {
                        return Err(refuse(format!(
                            "message {index} holds an image; keel's Bedrock provider sends text and tools only"
                        )));
                    }
                    Part::ToolCall {
                        id,
                        name,
                        arguments,
                    } => {
                        let block = ToolUseBlock::builder()
                            .tool_use_id(tool_id(id))
                            .name(name)
                            .input(document(&arguments_object(arguments)))
                            .build()
                            .map_err(|e| refuse(format!("message {index}: {e}")))?;
                        blocks.push(ContentBlock::ToolUse(block));
                    }
                    Part::ToolResult {
                        call_id,
                        content,
                        is_error,
                    } => {
                        let mut block = ToolResultBlock::builder()
                            .tool_use_id(tool_id(call_id))
                            .content(ToolResultContentBlock::Text(content.clone()));
                        if *is_error {
                            block = block.status(ToolResultStatus::Error);
                        }
                        blocks.push(ContentBlock::ToolResult(
                            block
                                .build()
                                .map_err(|e| refuse(format!("message {index}: {e}")))?,
                        ));
                    }
                }
            }
            if blocks.is_empty() {
                continue;
            }
            // Tool results first in a user turn, consecutive turns of one role merged.
            blocks.sort_by_key(|b| !matches!(b, ContentBlock::ToolResult(_)));
            match turns.last_mut() {
                Some((last, existing)) if *last == role => existing.extend(blocks),
                _ => turns.push((role, blocks)),
            }
        }
        let messages = turns
            .into_iter()
            .map(|(role, content)| {
                Message::builder()
                    .role(role)
                    .set_content(Some(content))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| refuse(format!("cannot build the Converse messages: {e}")))?;
        let tool_config = if request.tools.is_empty() {
            None
        } else {
            let tools = request
                .tools
                .iter()
                .map(|t| {
                    ToolSpecification::builder()
                        .name(&t.name)
                        .description(&t.description)
                        .input_schema(ToolInputSchema::Json(document(&t.parameters)))
                        .build()
                        .map(Tool::ToolSpec)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| refuse(format!("invalid tool: {e}")))?;
            Some(
                ToolConfiguration::builder()
                    .set_tools(Some(tools))
                    .build()
                    .map_err(|e| refuse(format!("invalid tools: {e}")))?,
            )
        };
        let params = &request.params;
        let inference = (params.max_tokens.is_some()
            || params.temperature.is_some()
            || params.top_p.is_some()
            || !params.stop.is_empty())
        .then(|| {
            InferenceConfiguration::builder()
                .set_max_tokens(
                    params
                        .max_tokens
                        .map(|m| i32::try_from(m).unwrap_or(i32::MAX)),
                )
                .set_temperature(params.temperature)
                .set_top_p(params.top_p)
                .set_stop_sequences((!params.stop.is_empty()).then(|| params.stop.clone()))
                .build()
        });
        Ok(Converse {
            messages,
            system: (!system.is_empty()).then_some(system),
            tool_config,
            inference,
        })
    }
}
