//! The driver's upkeep of a session's context before a step: the memory blocks rendered at
//! its front, whether the step passes the budget (and where to cut), and the compaction
//! itself. The step loop (`driver.rs`) calls these; `compaction.rs` holds the rules.

use keel_core::{EventBody, Message, RunId, SessionState, Usage};
use keel_models::{ModelError, ModelRequest, ToolSpec};

use super::{Driver, Halt};
use crate::live::LiveSession;
use crate::{Stop, compaction, request};

impl Driver<'_> {
    /// The session's memory blocks as the front of its context shows them.
    pub(super) async fn render_blocks(&self, state: &SessionState) -> Result<String, Halt> {
        let Some(agent) = state.agent.as_ref() else {
            return Ok(String::new());
        };
        if agent.memory_blocks.is_empty() {
            return Ok(String::new());
        }
        let blocks = crate::blocks::session_blocks(
            self.inner.store.as_ref(),
            &self.run.tenant,
            &self.run.session,
            agent,
        )
        .await?;
        Ok(request::render_blocks(&blocks))
    }

    /// Whether the step about to be asked for passes the context's budget, and if so the last
    /// seq the compaction should cover. Counts the request as it would be sent, with the
    /// events not yet appended.
    pub(super) fn compaction_due(
        &self,
        live: &LiveSession,
        state: &SessionState,
        listed_tools: &[ToolSpec],
    ) -> Option<u64> {
        let agent = state.agent.as_ref()?;
        let base = live.state.last_seq;
        let pending: Vec<(u64, Message)> = self
            .pending
            .iter()
            .enumerate()
            .flat_map(|(i, e)| {
                let seq = base + 1 + i as u64;
                e.body.messages().into_iter().map(move |m| (seq, m))
            })
            .collect();
        let view: Vec<(u64, &Message)> = live
            .messages_with_seqs()
            .chain(pending.iter().map(|(s, m)| (*s, m)))
            .collect();
        let messages = view.iter().map(|(_, m)| (*m).clone()).collect();
        let options = &self.run.options;
        let models = &self.inner.models;
        let step = request::StepInput {
            front: live.front(),
            messages,
            listed_tools: listed_tools.to_vec(),
        };
        let (resolved, request) =
            request::model_request(models, &self.run.session, agent, options, step).ok()?;
        let budget = compaction::Budget::of(models, agent, options, &resolved, &request);
        let tokens = compaction::count_tokens(&resolved, &request);
        if !budget.passed(tokens, request.messages.len()) {
            return None;
        }
        let front = ModelRequest {
            messages: Vec::new(),
            ..request.clone()
        };
        let front_tokens = compaction::count_tokens(&resolved, &front);
        let tokens_of = |m: &Message| compaction::message_tokens(&resolved, &request.model, m);
        let at = compaction::cut(&tokens_of, &view, &budget, front_tokens)?;
        let through_seq = view[at].0 - 1;
        if through_seq <= state.compacted_through {
            // Nothing older than the last compaction is left to fold in (the newest turn alone
            // is over the budget): send it as it is, and let the provider decide.
            return None;
        }
        tracing::info!(
            session = %self.run.session,
            tokens,
            messages = view.len(),
            kept = view.len() - at,
            "the context passed its budget: compacting"
        );
        Some(through_seq)
    }

    /// Summarises the transcript through `through_seq` and returns the result event
    /// (`ContextCompacted`, with the summary or, when summarising failed, without it); `None`
    /// when the run was cancelled meanwhile.
    pub(super) async fn compact(
        &mut self,
        live: &LiveSession,
        state: &SessionState,
        run_id: RunId,
        through_seq: u64,
    ) -> Result<Option<EventBody>, Halt> {
        let agent = state
            .agent
            .as_ref()
            .expect("a started session has an agent");
        let options = &self.run.options;
        let from_seq = state.compacted_through + 1;
        let covered: Vec<&Message> = live
            .messages_with_seqs()
            .filter(|(seq, _)| *seq <= through_seq)
            .map(|(_, m)| m)
            .collect();
        let previous = live.summary().and_then(|s| s.text.as_deref());
        let result = |outcome: Result<(String, Usage), (String, Usage)>, model: Option<String>| {
            let (summary, error, usage) = match outcome {
                Ok((text, usage)) => (Some(text), None, usage),
                Err((error, usage)) => {
                    tracing::warn!(%error, "compaction falls back to leaving the range out");
                    (None, Some(error), usage)
                }
            };
            EventBody::ContextCompacted {
                run_id: run_id.clone(),
                from_seq,
                through_seq,
                summary,
                error,
                model,
                usage,
            }
        };
        if !agent.compaction.summarise {
            let off = "the agent's compaction.summarise is off".to_string();
            return Ok(Some(result(Err((off, Usage::default())), None)));
        }
        let models = &self.inner.models;
        let run_model = options.model.as_deref().unwrap_or(&agent.model);
        let summariser = agent.compaction.model.as_deref().unwrap_or(run_model);
        let front = request::StepInput {
            front: live.front(),
            ..Default::default()
        };
        let built = request::model_request(models, &self.run.session, agent, options, front)
            .and_then(|(run_resolved, run_request)| {
                let budget =
                    compaction::Budget::of(models, agent, options, &run_resolved, &run_request);
                let resolved = models.resolve(summariser).map_err(|e| {
                    ModelError::new(
                        keel_models::ModelErrorKind::BadRequest,
                        "keel",
                        e.to_string(),
                    )
                })?;
                let request = compaction::summary_request(
                    resolved.model.clone(),
                    previous,
                    &covered,
                    &budget,
                );
                Ok((resolved, request))
            });
        let (resolved, request) = match built {
            Ok(built) => built,
            Err(e) => {
                let error = format!("the summariser {summariser:?}: {}", e.message);
                return Ok(Some(result(Err((error, Usage::default())), None)));
            }
        };
        let served_by = format!("{}/{}", resolved.provider, resolved.model);
        let reply = tokio::select! {
            reply = resolved.client.complete(request) => reply,
            _ = self.stop.changed() => match *self.stop.borrow() {
                Stop::LeaseLost => return Err(Halt::Yield),
                _ => return Ok(None),
            },
        };
        let outcome = compaction::accept_summary(reply);
        Ok(Some(result(outcome, Some(served_by))))
    }
}
