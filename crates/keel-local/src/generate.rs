//! One request's decode loop, run on a blocking thread: reuse the longest cached prefix,
//! compute the rest of the prompt in chunks, then sample token by token, streaming text until
//! an end token, a stop sequence, `max_tokens`, the context limit, or the caller hangs up.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use keel_core::{FinishReason, Usage};
use tokio::sync::mpsc::Sender;

use crate::kv_cache::PrefixCache;
use crate::model::LlamaModel;
use crate::sampler::{Sampler, SamplingParams};
use crate::stop::{Filtered, StopFilter};
use crate::tokenizer::{Tokenizer, Utf8Assembler};
use crate::tool_calls::ToolCallExtractor;
use keel_models::{ModelError, StreamEvent};

/// Prompt tokens computed per forward call: large enough to reuse each weight row across
/// tokens, small enough that a cancelled request stops soon.
const PREFILL_CHUNK: usize = 64;

/// What the decode loop needs, shared by every request.
pub(crate) struct Engine {
    pub model: LlamaModel,
    pub tokenizer: Tokenizer,
    /// Tokens that end the reply (`<|im_end|>`, `<|endoftext|>`).
    pub end_tokens: Vec<u32>,
    pub context_len: usize,
    pub cache: Mutex<PrefixCache>,
    pub counters: Counters,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub prompt_tokens_reused: AtomicU64,
    pub prompt_tokens_computed: AtomicU64,
    pub generated_tokens: AtomicU64,
    pub queue_wait_micros: AtomicU64,
    pub last_queue_wait_micros: AtomicU64,
}

/// One request, ready to run.
pub(crate) struct Job {
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub stops: Vec<String>,
    pub sampling: SamplingParams,
    /// Whether the request offered tools (so `<tool_call>` blocks become tool calls).
    pub tools: bool,
}

type Events = Sender<Result<StreamEvent, ModelError>>;

impl Engine {
    pub fn run(&self, job: Job, tx: &Events) {
        let layers = self.model.config.layers;
        let checkout = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .checkout(&job.prompt, layers);
        let mut state = checkout.state;
        let reused = checkout.reused;
        let c = &self.counters;
        c.prompt_tokens_reused
            .fetch_add(reused as u64, Ordering::Relaxed);
        c.prompt_tokens_computed
            .fetch_add((job.prompt.len() - reused) as u64, Ordering::Relaxed);
        tracing::debug!(
            prompt_tokens = job.prompt.len(),
            reused,
            "local model: prompt"
        );

        let mut logits = Vec::new();
        for chunk in job.prompt[reused..].chunks(PREFILL_CHUNK) {
            if tx.is_closed() {
                return self.keep(state);
            }
            logits = self.model.forward(&mut state, chunk);
        }

        let mut sampler = Sampler::new(job.sampling);
        let mut utf8 = Utf8Assembler::default();
        let mut filter = StopFilter::new(&job.stops);
        let mut generated = 0usize;
        let mut stop_text_seen = false;
        let mut calls = ToolCallExtractor::new(job.tools);
        let finish = loop {
            if generated >= job.max_tokens || state.len() >= self.context_len {
                break FinishReason::Length;
            }
            let token = sampler.sample(&mut logits);
            if self.end_tokens.contains(&token) {
                break FinishReason::Stop;
            }
            generated += 1;
            c.generated_tokens.fetch_add(1, Ordering::Relaxed);
            let text = utf8.push(self.tokenizer.token_bytes(token));
            let (text, stopped) = match filter.push(&text) {
                Filtered::Continue(t) => (t, false),
                Filtered::Stop(t) => (t, true),
            };
            if !send_all(tx, calls.push(&text)) {
                return self.keep(state);
            }
            if stopped {
                stop_text_seen = true;
                break FinishReason::Stop;
            }
            if generated == job.max_tokens {
                continue;
            }
            if tx.is_closed() {
                return self.keep(state);
            }
            logits = self.model.forward(&mut state, &[token]);
        };
        // Text held back (a partial character, a possible stop prefix) turned out to be reply.
        let mut rest = String::new();
        if !stop_text_seen {
            rest = match filter.push(&utf8.finish()) {
                Filtered::Continue(t) | Filtered::Stop(t) => t,
            };
            rest.push_str(&filter.finish());
        }
        let usage = Usage {
            input_tokens: job.prompt.len() as u64,
            output_tokens: generated as u64,
            cached_input_tokens: reused as u64,
        };
        let mut events = calls.push(&rest);
        events.extend(calls.finish());
        let finish = if calls.calls() > 0 && finish == FinishReason::Stop {
            FinishReason::ToolCalls
        } else {
            finish
        };
        events.extend([StreamEvent::Usage(usage), StreamEvent::Finish(finish)]);
        send_all(tx, events);
        tracing::debug!(generated, reused, ?finish, "local model: reply done");
        self.keep(state);
    }

    fn keep(&self, state: crate::kv_cache::KvState) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .checkin(state);
    }
}

/// Sends events in order; `false` once the caller has gone.
fn send_all(tx: &Events, events: Vec<StreamEvent>) -> bool {
    events
        .into_iter()
        .all(|event| tx.blocking_send(Ok(event)).is_ok())
}
