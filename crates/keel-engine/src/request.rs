//! The model request of a step, built in one place: the driver sends it, and
//! `Engine::session_context` shows what it was (or would be) at any seq of a session's log —
//! time travel, read-only — so what is shown is what the model received.

use keel_core::{AgentDef, Message, RunOptions, SessionId, Truncation};
use keel_models::{ModelError, ModelRequest, Params, ToolSpec};

use crate::live::Summary;
use crate::models::{ModelRegistry, Resolved};
use crate::{compaction, context, tools};

/// What goes before a session's messages in its context, after the instructions: its memory
/// blocks and the summary standing in for the compacted transcript. Both change only at a
/// compaction, so the prompt's prefix holds from one step to the next.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Front<'a> {
    pub blocks: Option<&'a str>,
    pub summary: Option<&'a Summary>,
}

/// The memory blocks as the front of the context shows them: each with its label, limit and
/// what it is for. Empty when the agent declares none.
pub(crate) fn render_blocks(blocks: &[crate::blocks::RenderedBlock]) -> String {
    if blocks.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<memory_blocks>\nYour memory blocks, as they stood when this context began; edits \
         since then appear in the conversation below. Keep them current with the \
         memory_block_* tools.\n",
    );
    for block in blocks {
        let chars = block.value.chars().count();
        out.push_str(&format!(
            "<block label=\"{}\" chars=\"{chars}\" limit=\"{}\"{}>\n",
            block.label,
            block.limit,
            if block.shared { " shared=\"true\"" } else { "" }
        ));
        if !block.description.is_empty() {
            out.push_str(&format!("({})\n", block.description));
        }
        out.push_str(&block.value);
        out.push_str("\n</block>\n");
    }
    out.push_str("</memory_blocks>");
    out
}

impl Front<'_> {
    /// The system prompt: the instructions, then the blocks, then the summary.
    fn system(&self, instructions: &str) -> Option<String> {
        let summary = self
            .summary
            .map(|s| compaction::render_summary(s.through_seq, s.text.as_deref()));
        let parts: Vec<&str> = [Some(instructions), self.blocks, summary.as_deref()]
            .into_iter()
            .flatten()
            .filter(|p| !p.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join("\n\n"))
    }
}

/// What a step's request is built from besides the agent and the run's options: the session's
/// front and messages, and the tools the agent's MCP servers list now.
#[derive(Default)]
pub(crate) struct StepInput<'a> {
    pub front: Front<'a>,
    pub messages: Vec<Message>,
    pub listed_tools: Vec<ToolSpec>,
}

/// The request for the next model call of a run with `options` on a session of `agent`
/// whose transcript is `step.messages`, and the client that serves it. A `truncation: auto`
/// run's request is already fitted to the model's context window by estimate. `Err` when the
/// model (the run's or the agent's) names no configured provider or route.
pub(crate) fn model_request(
    models: &ModelRegistry,
    session: &SessionId,
    agent: &AgentDef,
    options: &RunOptions,
    step: StepInput<'_>,
) -> Result<(Resolved, ModelRequest), ModelError> {
    let StepInput {
        front,
        messages,
        listed_tools,
    } = step;
    let resolved = models
        .resolve(options.model.as_deref().unwrap_or(&agent.model))
        .map_err(|e| {
            ModelError::new(
                keel_models::ModelErrorKind::BadRequest,
                "keel",
                e.to_string(),
            )
            .with_code("model_not_found")
        })?;
    let instructions = options.instructions.as_ref().unwrap_or(&agent.instructions);
    let mut request = ModelRequest {
        model: resolved.model.clone(),
        system: front.system(instructions),
        messages,
        tools: tools::specs(agent, options)
            .into_iter()
            .chain(listed_tools)
            .collect(),
        params: Params {
            // No cap unless the run or the agent asks for one: the model's own limit.
            max_tokens: options.max_output_tokens.or(agent.limits.max_output_tokens),
            temperature: options.temperature,
            top_p: options.top_p,
            tool_choice: options.tool_choice.clone(),
            response_format: options.response_format.clone(),
            caller_ids: options.caller_ids.clone(),
            // Keeps a session on the route target that served it (provider-side caches).
            affinity: Some(session.to_string()),
            ..Params::default()
        },
    };
    if options.truncation == Truncation::Auto {
        fit_context(models, &mut request, &resolved.provider);
    }
    Ok((resolved, request))
}

/// `truncation: auto` before the call: when the catalog knows the model's context window,
/// leaves out the oldest turns until the request (and its output cap) fits by estimate.
fn fit_context(models: &ModelRegistry, request: &mut ModelRequest, provider: &str) {
    let Some(info) = models.catalog().get(provider, &request.model).copied() else {
        return;
    };
    let reserve = request
        .params
        .max_tokens
        .unwrap_or(info.max_output_tokens.min(info.context_window / 4));
    let budget = u64::from(info.context_window.saturating_sub(reserve));
    let dropped = context::fit(
        request.system.as_deref(),
        &mut request.messages,
        &request.tools,
        budget,
    );
    if dropped > 0 {
        tracing::info!(
            dropped,
            context_window = info.context_window,
            "left the oldest messages out of the request to fit the model's context window"
        );
    }
}
