//! The request half of Bedrock Converse, in the SDK's types: system blocks, alternating
//! user/assistant messages with `toolUse` and `toolResult` blocks, tool specs with JSON schemas
//! (as smithy `Document`s) and the inference configuration.

use std::collections::HashMap;

use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, AutoToolChoice, ContentBlock, ConversationRole, InferenceConfiguration,
    JsonSchemaDefinition, Message, OutputConfig, OutputFormat, OutputFormatStructure,
    OutputFormatType, SpecificToolChoice, SystemContentBlock, Tool, ToolChoice as WireToolChoice,
    ToolConfiguration, ToolInputSchema, ToolResultBlock, ToolResultContentBlock, ToolResultStatus,
    ToolSpecification, ToolUseBlock,
};
use aws_smithy_types::{Document, Number};
use keel_core::{Part, Role};
use serde_json::Value;

use super::PROVIDER;
use crate::providers::streaming::{arguments_object, config_error};
use crate::providers::transcript::restricted_tool_id;
use crate::{ModelError, ModelRequest, ResponseFormat, ToolChoice};

pub(super) struct Converse {
    pub messages: Vec<Message>,
    pub system: Option<Vec<SystemContentBlock>>,
    pub tool_config: Option<ToolConfiguration>,
    pub inference: Option<InferenceConfiguration>,
    pub output: Option<OutputConfig>,
}

fn refuse(message: String) -> ModelError {
    config_error(PROVIDER, message)
}

/// Bedrock tool ids match `[a-zA-Z0-9_-]+` (up to 64): ids from other providers are mapped alike
/// in calls and results.
pub(super) fn tool_id(id: &str) -> String {
    restricted_tool_id(id, 64)
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
        let choice = request.tool_choice(PROVIDER)?;
        let tool_config = if request.tools.is_empty() {
            None
        } else if choice == Some(&ToolChoice::None) {
            // Converse has no "none" choice; leaving the tools out says the same, but only
            // while the transcript holds no tool blocks (which need a toolConfig).
            let has_tool_blocks = request
                .messages
                .iter()
                .flat_map(|m| &m.parts)
                .any(|p| matches!(p, Part::ToolCall { .. } | Part::ToolResult { .. }));
            if has_tool_blocks {
                return Err(refuse("tool_choice \"none\" cannot be honoured on Bedrock once the conversation holds tool calls: Converse has no \"none\" choice and needs the tools to read them; use \"auto\"".into()));
            }
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
                    .set_tool_choice(choice.map(tool_choice).transpose()?)
                    .build()
                    .map_err(|e| refuse(format!("invalid tools: {e}")))?,
            )
        };
        let output = request.response_format().map(output_config).transpose()?;
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
            output,
        })
    }
}

/// `toolConfig.toolChoice` (`none` is handled by leaving the tools out).
fn tool_choice(choice: &ToolChoice) -> Result<WireToolChoice, ModelError> {
    Ok(match choice {
        ToolChoice::Auto | ToolChoice::None => {
            WireToolChoice::Auto(AutoToolChoice::builder().build())
        }
        ToolChoice::Required => WireToolChoice::Any(AnyToolChoice::builder().build()),
        ToolChoice::Tool { name } => WireToolChoice::Tool(
            SpecificToolChoice::builder()
                .name(name)
                .build()
                .map_err(|e| refuse(format!("invalid tool_choice: {e}")))?,
        ),
    })
}

/// `outputConfig.textFormat`: Converse's structured output takes a JSON Schema (as JSON text);
/// it has no schema-less JSON mode, so `json_object` is refused rather than approximated.
fn output_config(format: &ResponseFormat) -> Result<OutputConfig, ModelError> {
    let ResponseFormat::JsonSchema {
        name,
        description,
        schema,
        ..
    } = format
    else {
        return Err(refuse("Bedrock has no JSON mode without a schema: ask for response_format json_schema with the object's schema instead of json_object".into()));
    };
    let definition = JsonSchemaDefinition::builder()
        .schema(schema.to_string())
        .name(name)
        .set_description(description.clone())
        .build()
        .map_err(|e| refuse(format!("invalid response_format: {e}")))?;
    let format = OutputFormat::builder()
        .r#type(OutputFormatType::JsonSchema)
        .structure(OutputFormatStructure::JsonSchema(definition))
        .build()
        .map_err(|e| refuse(format!("invalid response_format: {e}")))?;
    Ok(OutputConfig::builder().text_format(format).build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_core::Message as KeelMessage;
    use serde_json::json;

    fn request(choice: Option<ToolChoice>, format: Option<ResponseFormat>) -> ModelRequest {
        ModelRequest {
            model: "amazon.nova-lite-v1:0".into(),
            system: None,
            messages: vec![KeelMessage::user("hi")],
            tools: vec![crate::ToolSpec {
                name: "f".into(),
                description: "does f".into(),
                parameters: json!({"type": "object"}),
                strict: None,
            }],
            params: crate::Params {
                tool_choice: choice,
                response_format: format,
                ..Default::default()
            },
        }
    }

    #[test]
    fn tool_choice_maps_onto_converse_choices() {
        let choice_of = |choice| {
            Converse::from_request(&request(Some(choice), None))
                .unwrap()
                .tool_config
                .and_then(|c| c.tool_choice().cloned())
        };
        assert!(matches!(
            choice_of(ToolChoice::Auto),
            Some(WireToolChoice::Auto(_))
        ));
        assert!(matches!(
            choice_of(ToolChoice::Required),
            Some(WireToolChoice::Any(_))
        ));
        match choice_of(ToolChoice::Tool { name: "f".into() }) {
            Some(WireToolChoice::Tool(t)) => assert_eq!(t.name(), "f"),
            other => panic!("{other:?}"),
        }
        let none = Converse::from_request(&request(Some(ToolChoice::None), None)).unwrap();
        assert!(none.tool_config.is_none());
        let mut with_history = request(Some(ToolChoice::None), None);
        with_history.messages.push(KeelMessage {
            role: Role::Assistant,
            parts: vec![Part::ToolCall {
                id: "c1".into(),
                name: "f".into(),
                arguments: json!({}),
            }],
        });
        assert!(Converse::from_request(&with_history).is_err());
    }

    #[test]
    fn a_json_schema_becomes_the_output_config() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "string"}}});
        let converse = Converse::from_request(&request(
            None,
            Some(ResponseFormat::JsonSchema {
                name: "out".into(),
                description: None,
                schema: schema.clone(),
                strict: true,
            }),
        ))
        .unwrap();
        let format = converse.output.unwrap().text_format().cloned().unwrap();
        assert_eq!(format.r#type(), &OutputFormatType::JsonSchema);
        let definition = format
            .structure()
            .unwrap()
            .as_json_schema()
            .unwrap()
            .clone();
        assert_eq!(definition.name(), Some("out"));
        let sent: serde_json::Value = serde_json::from_str(definition.schema()).unwrap();
        assert_eq!(sent, schema);
        let error = Converse::from_request(&request(None, Some(ResponseFormat::JsonObject)))
            .err()
            .unwrap();
        assert_eq!(error.kind, crate::ModelErrorKind::BadRequest);
    }
}
