//! Keeping a session's context under its budget. Before each step the driver measures the
//! request it is about to send; past the budget (tokens, or messages) the older part of the
//! transcript is summarised into a `context_compacted` event and the summary stands in for it.
//! Compaction is rare and large — down to about half the budget — so between two compactions
//! every request starts with the bytes of the one before (the provider's prompt cache, the
//! local model's KV cache). The log keeps every event: compaction changes what is sent, never
//! what is stored.

use keel_core::{AgentDef, Message, Part, Role, RunOptions, SessionId, TenantId, Usage};
use keel_models::{ModelError, ModelRequest, Params};

use crate::context;
use crate::live::LiveSession;
use crate::models::{ModelRegistry, Resolved};
use crate::{Engine, EngineError};

/// The share of the budget a compaction brings the context down to.
const AFTER_COMPACTION: u64 = 2;
/// The share of the budget a summary may take (an eighth).
const SUMMARY_SHARE: u64 = 8;
/// A summary's output cap in tokens when the budget is counted in messages only.
const SUMMARY_TOKENS_WITHOUT_BUDGET: u64 = 1024;
/// The most bytes of one tool result quoted to the summariser.
const QUOTED_RESULT_BYTES: usize = 2000;

/// How much context a step may send before it is compacted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Budget {
    /// Tokens, when known: the run's `compact_threshold`, else the agent's `context_tokens`,
    /// else three quarters of the model's window (minus its output reserve) from the catalog.
    pub tokens: Option<u64>,
    /// Messages after the front (`limits.context_messages`).
    pub messages: usize,
}

impl Budget {
    pub(crate) fn of(
        models: &ModelRegistry,
        agent: &AgentDef,
        options: &RunOptions,
        resolved: &Resolved,
        request: &ModelRequest,
    ) -> Budget {
        let tokens = options
            .compact_threshold
            .or(agent.limits.context_tokens)
            .map(u64::from)
            .or_else(|| {
                let info = models.catalog().get(&resolved.provider, &request.model)?;
                let window = u64::from(info.context_window);
                let reserve = request
                    .params
                    .max_tokens
                    .map_or(u64::from(info.max_output_tokens).min(window / 4), u64::from);
                Some((window * 3 / 4).min(window.saturating_sub(reserve)))
            });
        Budget {
            tokens,
            messages: agent.limits.context_messages.max(2) as usize,
        }
    }

    /// Whether a request of `tokens` tokens and `messages` messages passes the budget.
    pub(crate) fn passed(&self, tokens: u64, messages: usize) -> bool {
        messages > self.messages || self.tokens.is_some_and(|budget| tokens > budget)
    }

    /// The most tokens a summary may take.
    fn summary_tokens(&self) -> u64 {
        self.tokens.map_or(SUMMARY_TOKENS_WITHOUT_BUDGET, |t| {
            (t / SUMMARY_SHARE).max(64)
        })
    }
}

/// The tokens `request` holds: the model's own count where keel has its tokenizer (the local
/// model), else an estimate for the provider's family.
pub(crate) fn count_tokens(resolved: &Resolved, request: &ModelRequest) -> u64 {
    resolved.client.count_tokens(request).unwrap_or_else(|| {
        context::estimate_tokens_for(
            resolved.client.provider(),
            request.system.as_deref(),
            &request.messages,
            &request.tools,
        )
    })
}

/// The tokens one message takes, counted as `count_tokens` counts a request.
pub(crate) fn message_tokens(resolved: &Resolved, model: &str, message: &Message) -> u64 {
    let request = ModelRequest {
        model: model.to_string(),
        system: None,
        messages: vec![message.clone()],
        tools: Vec::new(),
        params: Params::default(),
    };
    count_tokens(resolved, &request)
}

/// Where to cut a transcript of `messages` (each with its event's seq) so that what is kept
/// fits half the budget beside a front of `front_tokens`: the index of the first message kept.
/// A cut falls between two events (never inside one event's messages), never before a tool
/// result (a call stays with its result), and keeps at least the last message. `None` when
/// nothing can be cut.
pub(crate) fn cut(
    tokens_of: &dyn Fn(&Message) -> u64,
    messages: &[(u64, &Message)],
    budget: &Budget,
    front_tokens: u64,
) -> Option<usize> {
    let keep_tokens = budget.tokens.map(|t| {
        (t / AFTER_COMPACTION)
            .saturating_sub(front_tokens)
            .saturating_sub(budget.summary_tokens())
    });
    let keep_messages = budget.messages / AFTER_COMPACTION as usize;
    // Walk back from the end while the kept part fits; the cut is the oldest index that does.
    let mut kept_tokens = 0u64;
    let mut first_kept = messages.len();
    for (i, (_, message)) in messages.iter().enumerate().rev() {
        let tokens = tokens_of(message);
        let fits = messages.len() - i <= keep_messages
            && keep_tokens.is_none_or(|limit| kept_tokens + tokens <= limit);
        if !fits && first_kept < messages.len() {
            break;
        }
        kept_tokens += tokens;
        first_kept = i;
        if !fits {
            // The last message alone is over: it is kept whatever its size.
            break;
        }
    }
    // Move forward to a place a cut may fall.
    let allowed =
        |i: usize| i > 0 && messages[i].1.role != Role::Tool && messages[i].0 != messages[i - 1].0;
    let mut at = first_kept.max(1);
    while at < messages.len() && !allowed(at) {
        at += 1;
    }
    if at >= messages.len() {
        // Nothing after the cut would be left: step back to the last allowed place.
        at = (1..messages.len()).rev().find(|&i| allowed(i))?;
    }
    Some(at)
}

/// The request that asks `model` to fold `messages` into the running `previous` summary.
pub(crate) fn summary_request(
    model: String,
    previous: Option<&str>,
    messages: &[&Message],
    budget: &Budget,
) -> ModelRequest {
    let mut text = String::new();
    if let Some(previous) = previous {
        text.push_str("Summary so far:\n");
        text.push_str(previous);
        text.push_str("\n\n");
    }
    text.push_str("Conversation to fold into the summary:\n");
    for message in messages {
        render_for_summary(&mut text, message);
    }
    text.push_str("\nWrite the updated summary.");
    ModelRequest {
        model,
        system: Some(SUMMARISE.to_string()),
        messages: vec![Message::user(text)],
        tools: Vec::new(),
        params: Params {
            max_tokens: Some(budget.summary_tokens() as u32),
            temperature: Some(0.0),
            ..Params::default()
        },
    }
}

const SUMMARISE: &str = "You compact the earlier part of a conversation so that it can go on \
beyond the model's context window. Write a concise summary in the third person that keeps every \
fact, name, number, decision, preference and open task needed to continue, and what tools \
returned that still matters. Start with what the summary so far says, updated. Write only the \
summary.";

fn render_for_summary(out: &mut String, message: &Message) {
    let who = match message.role {
        Role::System => "System",
        Role::User => "User",
        Role::Assistant => "Assistant",
        Role::Tool => "Tool",
    };
    for part in &message.parts {
        match part {
            Part::Text { text } => out.push_str(&format!("{who}: {text}\n")),
            Part::Image { .. } => out.push_str(&format!("{who}: [an image]\n")),
            Part::ToolCall {
                name, arguments, ..
            } => out.push_str(&format!("{who} called {name} with {arguments}\n")),
            Part::ToolResult {
                content, is_error, ..
            } => {
                let mut end = content.len().min(QUOTED_RESULT_BYTES);
                while !content.is_char_boundary(end) {
                    end -= 1;
                }
                let cut = if end < content.len() { " […]" } else { "" };
                let kind = if *is_error { "error" } else { "result" };
                out.push_str(&format!("Tool {kind}: {}{cut}\n", &content[..end]));
            }
        }
    }
}

/// A summary as the model wrote it, or why it cannot stand in for the transcript.
pub(crate) fn accept_summary(
    reply: Result<keel_models::ModelReply, ModelError>,
) -> Result<(String, Usage), (String, Usage)> {
    match reply {
        Ok(reply) => {
            let text = reply.message.text_content().trim().to_string();
            if text.is_empty() {
                Err(("the summariser wrote nothing".into(), reply.usage))
            } else {
                Ok((text, reply.usage))
            }
        }
        Err(e) => Err((format!("the summariser failed: {e}"), Usage::default())),
    }
}

/// The part of the system prompt that stands in for the compacted transcript.
pub(crate) fn render_summary(through_seq: u64, summary: Option<&str>) -> String {
    match summary {
        Some(text) => format!(
            "<conversation_summary through_seq=\"{through_seq}\">\nThe conversation before \
             the messages below, summarised:\n{text}\n</conversation_summary>"
        ),
        None => format!(
            "<conversation_summary through_seq=\"{through_seq}\">\nThe earlier part of this \
             conversation was left out of the context: summarising it failed.\n\
             </conversation_summary>"
        ),
    }
}

/// A standalone compaction's result (`POST /v1/responses/compact`).
#[derive(Clone, Debug, PartialEq)]
pub struct Summarised {
    pub summary: String,
    pub usage: Usage,
    /// `provider/model` that wrote it.
    pub served_by: String,
}

impl Engine {
    /// Summarises `messages` with `model`, after the transcript of `session` (its summary and
    /// the messages after it) when one is named. Writes nothing: the caller keeps the summary.
    pub async fn summarise(
        &self,
        tenant: &TenantId,
        model: &str,
        session: Option<&SessionId>,
        messages: Vec<Message>,
    ) -> Result<Summarised, EngineError> {
        let mut previous = None;
        let mut transcript = Vec::new();
        if let Some(session) = session {
            self.require_session(tenant, session).await?;
            let live = LiveSession::load(self.inner.store.as_ref(), session).await?;
            previous = live.summary().and_then(|s| s.text.clone());
            transcript.extend(live.messages().iter().cloned());
        }
        transcript.extend(messages);
        if transcript.is_empty() && previous.is_none() {
            return Err(EngineError::Invalid(
                "there is nothing to compact: send input or a previous response".into(),
            ));
        }
        let resolved = self
            .inner
            .models
            .resolve(model)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let budget = Budget {
            tokens: None,
            messages: usize::MAX,
        };
        let covered: Vec<&Message> = transcript.iter().collect();
        let request = summary_request(
            resolved.model.clone(),
            previous.as_deref(),
            &covered,
            &budget,
        );
        let reply = resolved
            .client
            .complete(request)
            .await
            .map_err(EngineError::Model)?;
        let (summary, usage) = accept_summary(Ok(reply)).map_err(|(error, _)| {
            EngineError::Model(ModelError::new(
                keel_models::ModelErrorKind::Unavailable,
                resolved.client.provider(),
                error,
            ))
        })?;
        Ok(Summarised {
            summary,
            usage,
            served_by: format!("{}/{}", resolved.provider, resolved.model),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turns(n: usize, words: usize) -> Vec<(u64, Message)> {
        let mut seq = 1;
        let mut out = Vec::new();
        for i in 0..n {
            seq += 1;
            out.push((seq, Message::user(format!("q{i} {}", "w ".repeat(words)))));
            seq += 2;
            out.push((
                seq,
                Message {
                    role: Role::Assistant,
                    parts: vec![Part::Text {
                        text: format!("a{i}"),
                    }],
                },
            ));
        }
        out
    }

    fn words(m: &Message) -> u64 {
        m.text_content().split_whitespace().count() as u64 + 1
    }

    fn estimate(m: &Message) -> u64 {
        context::estimate_tokens_for("openai", None, std::slice::from_ref(m), &[])
    }

    fn view(messages: &[(u64, Message)]) -> Vec<(u64, &Message)> {
        messages.iter().map(|(s, m)| (*s, m)).collect()
    }

    #[test]
    fn a_cut_keeps_about_half_the_message_budget() {
        let messages = turns(10, 1);
        let budget = Budget {
            tokens: None,
            messages: 16,
        };
        let at = cut(&words, &view(&messages), &budget, 0).unwrap();
        assert_eq!(messages.len() - at, 8);
        assert_eq!(messages[at].1.role, Role::User);
    }

    #[test]
    fn a_cut_never_separates_a_call_from_its_result_nor_splits_an_event() {
        let call = Message {
            role: Role::Assistant,
            parts: vec![Part::ToolCall {
                id: "c".into(),
                name: "t".into(),
                arguments: serde_json::json!({}),
            }],
        };
        let result = Message {
            role: Role::Tool,
            parts: vec![Part::ToolResult {
                call_id: "c".into(),
                content: "r".into(),
                is_error: false,
            }],
        };
        let messages = vec![
            (2, Message::user("a")),
            (2, Message::user("b")),
            (4, call),
            (6, result),
            (8, Message::user("c")),
        ];
        let budget = Budget {
            tokens: None,
            messages: 4,
        };
        // Half the budget is two messages: [result, c] — but the result needs its call, so
        // the cut falls before the next allowed place (the user message).
        let at = cut(&words, &view(&messages), &budget, 0).unwrap();
        assert_eq!(at, 4);
        // With room for three, the cut falls before the call.
        let at = cut(
            &words,
            &view(&messages),
            &Budget {
                tokens: None,
                messages: 6,
            },
            0,
        )
        .unwrap();
        assert_eq!(at, 2);
        // Never between the two messages of seq 2.
        assert!(cut(&words, &view(&messages[..2]), &budget, 0).is_none());
    }

    #[test]
    fn a_token_budget_keeps_the_newest_turns_that_fit_half_of_it() {
        let messages = turns(20, 50);
        let budget = Budget {
            tokens: Some(2000),
            messages: 1000,
        };
        let at = cut(&estimate, &view(&messages), &budget, 100).unwrap();
        let kept: Vec<&Message> = messages[at..].iter().map(|(_, m)| m).collect();
        let kept_tokens: u64 = kept
            .iter()
            .map(|m| context::estimate_tokens_for("openai", None, std::slice::from_ref(*m), &[]))
            .sum();
        assert!(kept_tokens <= 1000 - 100 - 250, "{kept_tokens}");
        assert!(at > 0 && at < messages.len());
    }
}
