//! Folding a stream into a whole reply.

use keel_core::{FinishReason, Message, Part, Role, Usage};

use crate::{Served, StreamEvent};

#[derive(Clone, Debug, PartialEq)]
pub struct ModelReply {
    pub message: Message,
    pub usage: Usage,
    pub finish: FinishReason,
    /// Which route target served the call, when a router made it.
    pub served: Option<Served>,
}

#[derive(Default)]
struct ToolCallParts {
    id: String,
    name: String,
    arguments: String,
}

/// Accumulates `StreamEvent`s into a `ModelReply`.
#[derive(Default)]
pub struct ReplyAccumulator {
    text: String,
    calls: Vec<ToolCallParts>,
    usage: Usage,
    finish: Option<FinishReason>,
    served: Option<Served>,
}

impl ReplyAccumulator {
    pub fn push(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::TextDelta(t) => self.text.push_str(&t),
            StreamEvent::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => {
                if self.calls.len() <= index {
                    self.calls.resize_with(index + 1, ToolCallParts::default);
                }
                let call = &mut self.calls[index];
                if let Some(id) = id {
                    call.id = id;
                }
                if let Some(name) = name {
                    call.name.push_str(&name);
                }
                call.arguments.push_str(&arguments);
            }
            StreamEvent::Usage(u) => self.usage = u,
            StreamEvent::Finish(f) => self.finish = Some(f),
            StreamEvent::Restart { .. } => *self = ReplyAccumulator::default(),
            StreamEvent::Served(served) => self.served = Some(served),
            StreamEvent::Queued { .. } => {}
        }
    }

    /// Which route target served the call, when a router made it.
    pub fn served(&self) -> Option<&Served> {
        self.served.as_ref()
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The whole reply. Tool-call arguments that are not valid JSON (or nest deeper than keel
    /// stores) are kept as a JSON string
    /// so nothing the model said is lost; calls without an id get a positional one.
    pub fn finish(self) -> ModelReply {
        let mut parts = Vec::new();
        if !self.text.is_empty() {
            parts.push(Part::Text { text: self.text });
        }
        let has_calls = !self.calls.is_empty();
        for (i, call) in self.calls.into_iter().enumerate() {
            let arguments = if call.arguments.trim().is_empty() {
                serde_json::json!({})
            } else {
                keel_core::limits::parse_embedded(&call.arguments)
                    .unwrap_or(serde_json::Value::String(call.arguments))
            };
            let id = if call.id.is_empty() {
                format!("call_{i}")
            } else {
                call.id
            };
            parts.push(Part::ToolCall {
                id,
                name: call.name,
                arguments,
            });
        }
        let finish = match self.finish {
            Some(f) => f,
            None if has_calls => FinishReason::ToolCalls,
            None => FinishReason::Stop,
        };
        ModelReply {
            message: Message {
                role: Role::Assistant,
                parts,
            },
            usage: self.usage,
            finish,
            served: self.served,
        }
    }
}
