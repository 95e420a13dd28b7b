//! Renders a normalized request as a ChatML prompt (`<|im_start|>role\n…<|im_end|>\n`), the
//! template SmolLM2 was trained on. Control tokens are inserted by id; message text is
//! tokenized as plain text, so content can never forge a turn boundary.
//!
//! This small model has no native tool format, so tools are described in the system turn,
//! earlier tool calls are shown as `<tool_call>{"name":…,"arguments":…}</tool_call>` text and
//! tool results as a `tool` turn holding `<tool_response>…</tool_response>`; the reply is text.

use keel_core::{Message, Part, Role};

use crate::tokenizer::{TokenizeError, Tokenizer};
use keel_models::ModelRequest;

/// SmolLM2's own default system turn (from its chat template), used when a request has none.
pub(crate) const DEFAULT_SYSTEM: &str =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

/// The ids that frame a turn.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TurnTokens {
    pub start: u32,
    pub end: u32,
}

/// The prompt for `request`; its tools are described only when `offer_tools` (not when the
/// caller chose `tool_choice: none`).
pub(crate) fn render_prompt(
    tok: &Tokenizer,
    turn: TurnTokens,
    request: &ModelRequest,
    offer_tools: bool,
) -> Result<Vec<u32>, TokenizeError> {
    let mut system = request
        .system
        .clone()
        .unwrap_or_else(|| DEFAULT_SYSTEM.to_string());
    if offer_tools && !request.tools.is_empty() {
        system.push_str(
            "\n\nYou can call these tools. To call one, answer with \
             <tool_call>{\"name\": \"…\", \"arguments\": {…}}</tool_call>.\n<tools>\n",
        );
        for tool in &request.tools {
            let spec = serde_json::json!({"name": tool.name, "description": tool.description, "parameters": tool.parameters});
            system.push_str(&spec.to_string());
            system.push('\n');
        }
        system.push_str("</tools>");
    }
    let newline = tok.encode("\n", false)?;
    let mut ids = Vec::new();
    let mut push_turn = |role: &str, content: &str| -> Result<(), TokenizeError> {
        ids.push(turn.start);
        ids.extend(tok.encode(&format!("{role}\n{content}"), false)?);
        ids.push(turn.end);
        ids.extend_from_slice(&newline);
        Ok(())
    };
    push_turn("system", &system)?;
    for message in &request.messages {
        push_turn(role_name(message.role), &content(message))?;
    }
    ids.push(turn.start);
    ids.extend(tok.encode("assistant\n", false)?);
    Ok(ids)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

fn content(message: &Message) -> String {
    let mut out = String::new();
    for part in &message.parts {
        if !out.is_empty() && !matches!(part, Part::Text { .. }) {
            out.push('\n');
        }
        match part {
            Part::Text { text } => out.push_str(text),
            Part::Image { .. } => out.push_str("[image]"),
            Part::ToolCall {
                name, arguments, ..
            } => {
                let call = serde_json::json!({"name": name, "arguments": arguments});
                out.push_str(&format!("<tool_call>{call}</tool_call>"));
            }
            Part::ToolResult {
                content, is_error, ..
            } => {
                let status = if *is_error { " error=\"true\"" } else { "" };
                out.push_str(&format!("<tool_response{status}>{content}</tool_response>"));
            }
        }
    }
    out
}
