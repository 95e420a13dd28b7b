//! Letta's agent file (`.af`, github.com/letta-ai/agent-file): one agent's system prompt, its
//! memory blocks and its messages, read into what keel starts a session from — instructions
//! (the system prompt), keel's own memory blocks (each block's label, description, value and
//! limit) and the transcript. The fields read are those of Letta's published
//! `AgentFileSchema`: top-level `agents` and `blocks`; an agent's `name`, `system`, `block_ids`
//! and `messages`, each message with `role`, `content` (text parts), `tool_calls` and
//! `tool_call_id`. Other fields are left.

use keel_core::{BlockDef, Message, Part, Role};
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;

/// An agent of a `.af` file, ready for keel.
pub struct LettaAgent {
    pub name: String,
    pub instructions: String,
    /// Its core memory: the agent edits them with keel's `memory_block_*` tools.
    pub blocks: Vec<BlockDef>,
    pub messages: Vec<Message>,
}

#[derive(Deserialize)]
struct AgentFile {
    agents: Vec<AfAgent>,
    #[serde(default)]
    blocks: Vec<AfBlock>,
}

#[derive(Deserialize)]
struct AfAgent {
    name: String,
    #[serde(default)]
    system: String,
    #[serde(default)]
    block_ids: Vec<String>,
    #[serde(default)]
    messages: Vec<AfMessage>,
}

#[derive(Deserialize)]
struct AfBlock {
    id: String,
    label: String,
    #[serde(default)]
    value: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

#[derive(Deserialize)]
struct AfMessage {
    role: String,
    #[serde(default)]
    content: Option<Vec<AfContent>>,
    #[serde(default)]
    tool_calls: Option<Vec<AfToolCall>>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Deserialize)]
struct AfContent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct AfToolCall {
    id: String,
    function: AfFunction,
}

#[derive(Deserialize)]
struct AfFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

/// Reads a `.af` file holding one agent.
pub fn read(body: &[u8]) -> Result<LettaAgent, ApiError> {
    let bad = |message: String| ApiError::invalid("invalid_agent_file", message);
    let file: AgentFile = serde_json::from_slice(body)
        .map_err(|e| bad(format!("not a Letta agent file (.af): {e}")))?;
    let [agent] = <[AfAgent; 1]>::try_from(file.agents).map_err(|agents| {
        bad(format!(
            "the file holds {} agents: keel imports a file of one agent",
            agents.len()
        ))
    })?;
    let instructions = agent.system.trim().to_string();
    let blocks: Vec<BlockDef> = agent
        .block_ids
        .iter()
        .map(|id| {
            let block = file.blocks.iter().find(|b| &b.id == id).ok_or_else(|| {
                bad(format!(
                    "agent {:?} names block {id:?}, which the file lacks",
                    agent.name
                ))
            })?;
            Ok(BlockDef {
                label: block.label.clone(),
                description: block.description.clone().unwrap_or_default(),
                value: block.value.clone(),
                limit: block.limit.unwrap_or(keel_core::agent::DEFAULT_BLOCK_LIMIT),
                shared: false,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    let mut messages = Vec::new();
    for (i, message) in agent.messages.into_iter().enumerate() {
        let text: String = message
            .content
            .iter()
            .flatten()
            .filter(|c| c.kind == "text")
            .filter_map(|c| c.text.as_deref())
            .collect::<Vec<_>>()
            .join("\n");
        let message = match message.role.as_str() {
            // The system prompt as Letta compiled it: `instructions` hold it.
            "system" => continue,
            "user" => Message::user(text),
            "assistant" => {
                let mut parts = Vec::new();
                if !text.is_empty() {
                    parts.push(Part::Text { text });
                }
                for call in message.tool_calls.into_iter().flatten() {
                    let arguments = serde_json::from_str(&call.function.arguments)
                        .unwrap_or(Value::String(call.function.arguments));
                    parts.push(Part::ToolCall {
                        id: call.id,
                        name: call.function.name,
                        arguments,
                    });
                }
                Message {
                    role: Role::Assistant,
                    parts,
                }
            }
            "tool" => Message {
                role: Role::Tool,
                parts: vec![Part::ToolResult {
                    call_id: message.tool_call_id.ok_or_else(|| {
                        bad(format!(
                            "messages[{i}]: a tool message needs its tool_call_id"
                        ))
                    })?,
                    content: text,
                    is_error: false,
                }],
            },
            other => {
                return Err(bad(format!(
                    "messages[{i}]: role {other:?} is not system, user, assistant or tool"
                )));
            }
        };
        let empty = message
            .parts
            .iter()
            .all(|p| matches!(p, Part::Text { text } if text.is_empty()));
        match messages.last_mut() {
            _ if empty => {}
            // Results of one step's calls go back together, as providers expect them.
            Some(Message {
                role: Role::Tool,
                parts,
            }) if message.role == Role::Tool => parts.extend(message.parts),
            _ => messages.push(message),
        }
    }
    Ok(LettaAgent {
        name: agent.name,
        instructions,
        blocks,
        messages,
    })
}
