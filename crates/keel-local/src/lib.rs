//! keel's embedded model, the `local` provider: a llama-family GGUF model (SmolLM2-135M-Instruct
//! by default) run in-process on the CPU, so keel answers with no provider configured and no
//! network. `LocalClient` loads the file and implements `keel_models::ModelClient`; `pull`
//! fetches the default model. A crate of its own so that `keel-models` stays the provider layer
//! and only these kernels need the optimized dev profile.
//!
//! Scheduling: each request decodes on one blocking thread once it holds one of
//! `LocalOptions::slots` decode slots; the time it queued for a slot is logged (`tracing`,
//! field `queue_wait_ms`), passed to `LocalOptions::on_queue_wait`, and summed in `stats()`.

mod chat;
pub mod embed;
mod embeddings;
mod error;
mod generate;
mod gguf;
mod kv_cache;
mod model;
pub mod pull;
mod quant;
mod sampler;
mod scheduler;
mod stop;
mod tokenizer;
mod tool_calls;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

pub use error::LocalError;
pub use quant::Kernels;
pub use tokenizer::{TokenizeError, Tokenizer};

use self::chat::TurnTokens;
use self::embeddings::LocalEmbeddings;
use self::generate::{Counters, Engine, Job};
use self::gguf::GgufFile;
use self::kv_cache::PrefixCache;
use self::model::LlamaModel;
use self::sampler::SamplingParams;
use self::scheduler::DecodeSlots;
use keel_models::{
    EmbeddingRequest, EmbeddingResponse, ModelClient, ModelError, ModelErrorKind, ModelRequest,
    ModelStream, ToolChoice,
};

/// The provider name recorded with each step.
pub const PROVIDER: &str = "local";

/// Called with how long a request waited for a decode slot.
pub type QueueWaitHook = Arc<dyn Fn(Duration) + Send + Sync>;

/// How the local model runs. `Default` suits a small shared machine.
#[derive(Clone)]
pub struct LocalOptions {
    /// Requests decoding at once, one thread each (default 1). Others queue.
    pub slots: usize,
    /// Tokens of context (prompt + reply) per request, at most the model's own (default 2048).
    /// Keys and values cost about 46 KB per token for SmolLM2-135M (`kv_bytes_per_token`).
    pub context_len: usize,
    /// Used when a request sets no `max_tokens` (default 512).
    pub default_max_tokens: u32,
    /// Used when a request sets no temperature (default 0.2, SmolLM2's recommendation).
    pub default_temperature: f32,
    /// Used when a request sets no top-p (default 0.9).
    pub default_top_p: f32,
    /// Penalty on tokens among the last 64 generated (default 1.1; 1.0 turns it off).
    pub repeat_penalty: f32,
    /// Memory bound of the cross-request KV cache (default 128 MiB; 0 disables reuse).
    pub prefix_cache_bytes: usize,
    /// Told how long each request waited for a decode slot.
    pub on_queue_wait: Option<QueueWaitHook>,
    /// Which dot-product kernels run (default: AVX2 where the CPU has it).
    pub kernels: Kernels,
    /// The embedding model's weights (`*.safetensors`, its companions beside it); `None`
    /// (default): all-MiniLM-L6-v2 from the shared model cache, fetched on first use.
    pub embedding_weights: Option<PathBuf>,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            slots: 1,
            context_len: 2048,
            default_max_tokens: 512,
            default_temperature: 0.2,
            default_top_p: 0.9,
            repeat_penalty: 1.1,
            prefix_cache_bytes: 128 << 20,
            on_queue_wait: None,
            kernels: Kernels::Auto,
            embedding_weights: None,
        }
    }
}

impl std::fmt::Debug for LocalOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalOptions")
            .field("slots", &self.slots)
            .field("context_len", &self.context_len)
            .field("default_max_tokens", &self.default_max_tokens)
            .field("default_temperature", &self.default_temperature)
            .field("default_top_p", &self.default_top_p)
            .field("repeat_penalty", &self.repeat_penalty)
            .field("prefix_cache_bytes", &self.prefix_cache_bytes)
            .field("on_queue_wait", &self.on_queue_wait.is_some())
            .field("kernels", &self.kernels)
            .field("embedding_weights", &self.embedding_weights)
            .finish()
    }
}

/// Counters since load, for metrics and for tests that prove KV reuse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalStats {
    pub requests: u64,
    /// Prompt tokens whose keys and values came from the cache.
    pub prompt_tokens_reused: u64,
    /// Prompt tokens run through the model.
    pub prompt_tokens_computed: u64,
    pub generated_tokens: u64,
    /// Total and latest time requests waited for a decode slot.
    pub queue_wait_total: Duration,
    pub last_queue_wait: Duration,
}

/// A loaded local model. Cheap to clone; clones share the model, slots and cache.
#[derive(Clone)]
pub struct LocalClient {
    engine: Arc<Engine>,
    slots: Arc<DecodeSlots>,
    turn: TurnTokens,
    options: Arc<LocalOptions>,
    name: String,
    embeddings: Arc<LocalEmbeddings>,
}

impl LocalClient {
    /// Loads a llama-family GGUF model (Q4_1 / Q8_0 weights). A missing, truncated or corrupt
    /// file is an error naming it.
    pub fn load(path: impl AsRef<Path>, options: LocalOptions) -> Result<Self, LocalError> {
        let path = path.as_ref();
        if options.slots == 0 {
            return Err(LocalError::Options("slots must be at least 1".into()));
        }
        if options.context_len < 16 {
            return Err(LocalError::Options(format!(
                "context_len {} is too small (use 16 or more)",
                options.context_len
            )));
        }
        let started = std::time::Instant::now();
        let mut gguf = GgufFile::open(path)?;
        let tokenizer = Tokenizer::from_gguf(&gguf)?;
        let mut model = LlamaModel::load(&mut gguf)?;
        model.simd = options.kernels.use_simd();
        let not_chatml = |t: &str| LocalError::Unsupported {
            path: path.to_path_buf(),
            reason: format!("its vocabulary has no {t} token, so it is not a ChatML chat model"),
        };
        let turn = TurnTokens {
            start: tokenizer
                .token_id("<|im_start|>")
                .ok_or_else(|| not_chatml("<|im_start|>"))?,
            end: tokenizer
                .token_id("<|im_end|>")
                .ok_or_else(|| not_chatml("<|im_end|>"))?,
        };
        let mut end_tokens = vec![turn.end];
        end_tokens.extend(tokenizer.token_id("<|endoftext|>"));
        let context_len = options.context_len.min(model.config.context_len);
        tracing::info!(
            path = %path.display(),
            layers = model.config.layers,
            weight_mb = model.weight_bytes() >> 20,
            simd = model.simd,
            load_ms = started.elapsed().as_millis() as u64,
            "local model loaded"
        );
        let engine = Engine {
            model,
            tokenizer,
            end_tokens,
            context_len,
            cache: Mutex::new(PrefixCache::new(options.prefix_cache_bytes)),
            counters: Counters::default(),
        };
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(LocalClient {
            engine: Arc::new(engine),
            slots: Arc::new(DecodeSlots::new(options.slots)),
            turn,
            embeddings: Arc::new(LocalEmbeddings::new(options.embedding_weights.clone())),
            options: Arc::new(options),
            name,
        })
    }

    /// The model's name: its file name without `.gguf`.
    pub fn model_name(&self) -> &str {
        &self.name
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.engine.tokenizer
    }

    /// Tokens of context a request may use (prompt and reply together).
    pub fn context_len(&self) -> usize {
        self.engine.context_len
    }

    /// Memory one token of context takes in the KV cache (for sizing `prefix_cache_bytes`).
    pub fn kv_bytes_per_token(&self) -> usize {
        self.engine.model.config.kv_bytes_per_token()
    }

    /// Whether the AVX2/FMA kernels are in use (otherwise the portable ones).
    pub fn uses_simd(&self) -> bool {
        self.engine.model.simd
    }

    /// The prompt token ids a request renders to (ChatML).
    pub fn prompt_tokens(&self, request: &ModelRequest) -> Result<Vec<u32>, ModelError> {
        let offer_tools = offers_tools(request)?;
        chat::render_prompt(&self.engine.tokenizer, self.turn, request, offer_tools).map_err(|e| {
            ModelError::new(
                ModelErrorKind::BadRequest,
                PROVIDER,
                format!("the prompt: {e}"),
            )
        })
    }

    pub fn stats(&self) -> LocalStats {
        let c = &self.engine.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        LocalStats {
            requests: get(&c.requests),
            prompt_tokens_reused: get(&c.prompt_tokens_reused),
            prompt_tokens_computed: get(&c.prompt_tokens_computed),
            generated_tokens: get(&c.generated_tokens),
            queue_wait_total: Duration::from_micros(get(&c.queue_wait_micros)),
            last_queue_wait: Duration::from_micros(get(&c.last_queue_wait_micros)),
        }
    }

    fn job(&self, request: &ModelRequest) -> Result<Job, ModelError> {
        let bad = |msg: String| ModelError::new(ModelErrorKind::BadRequest, PROVIDER, msg);
        let p = &request.params;
        let temperature = p.temperature.unwrap_or(self.options.default_temperature);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(bad(format!(
                "temperature {temperature} is out of range: use 0 (greedy) to 2"
            )));
        }
        let top_p = p.top_p.unwrap_or(self.options.default_top_p);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(bad(format!(
                "top_p {top_p} is out of range: use a value in (0, 1]"
            )));
        }
        let max_tokens = p.max_tokens.unwrap_or(self.options.default_max_tokens);
        if max_tokens == 0 {
            return Err(bad("max_tokens is 0: ask for at least 1 token".into()));
        }
        if let Some(format) = request.response_format() {
            return Err(bad(format!(
                "the local model cannot guarantee structured output ({format:?} asked): it has no constrained decoding; leave response_format out, or route the call to a provider that supports it"
            )));
        }
        let prompt = self.prompt_tokens(request)?;
        if prompt.len() >= self.engine.context_len {
            return Err(ModelError::new(ModelErrorKind::ContextOverflow, PROVIDER, format!(
                "the prompt is {} tokens but the local model's context holds {}: shorten the conversation \
                 or raise LocalOptions::context_len",
                prompt.len(),
                self.engine.context_len
            ))
            .with_code("context_length_exceeded"));
        }
        Ok(Job {
            prompt,
            max_tokens: max_tokens as usize,
            stops: p.stop.clone(),
            tools: offers_tools(request)?,
            sampling: SamplingParams {
                temperature,
                top_p,
                repeat_penalty: self.options.repeat_penalty,
                repeat_window: 64,
                seed: p.seed.unwrap_or_else(rand::random),
            },
        })
    }
}

/// Whether the model is shown the tools: `tool_choice: none` hides them; a choice that forces a
/// call cannot be honoured by a model that only follows a prompt, so it is refused.
fn offers_tools(request: &ModelRequest) -> Result<bool, ModelError> {
    match request.tool_choice(PROVIDER)? {
        None | Some(ToolChoice::Auto) => Ok(!request.tools.is_empty()),
        Some(ToolChoice::None) => Ok(false),
        Some(forced) => Err(ModelError::new(
            ModelErrorKind::BadRequest,
            PROVIDER,
            format!(
                "the local model cannot be forced to call a tool ({forced:?} asked): it has no constrained decoding; use tool_choice auto or none, or route the call to a provider that supports it"
            ),
        )),
    }
}

#[async_trait]
impl ModelClient for LocalClient {
    fn provider(&self) -> &str {
        PROVIDER
    }

    fn count_tokens(&self, request: &ModelRequest) -> Option<u64> {
        self.prompt_tokens(request).ok().map(|t| t.len() as u64)
    }

    /// all-MiniLM-L6-v2 (`local/all-minilm-l6-v2`), loaded on first use.
    async fn embed(&self, request: EmbeddingRequest) -> Result<EmbeddingResponse, ModelError> {
        self.embeddings.clone().embed(&self.slots, request).await
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let job = self.job(&request)?;
        let (tx, mut rx) = tokio::sync::mpsc::channel(32);
        let (engine, slots, hook) = (
            self.engine.clone(),
            self.slots.clone(),
            self.options.on_queue_wait.clone(),
        );
        tokio::spawn(async move {
            let Some(slot) = slots.acquire(tx.closed()).await else {
                return;
            };
            let waited = slot.waited;
            let c = &engine.counters;
            c.requests.fetch_add(1, Ordering::Relaxed);
            c.queue_wait_micros
                .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
            c.last_queue_wait_micros
                .store(waited.as_micros() as u64, Ordering::Relaxed);
            tracing::debug!(
                queue_wait_ms = waited.as_secs_f64() * 1e3,
                "local model: decode slot acquired"
            );
            if let Some(hook) = hook {
                hook(waited);
            }
            // The wait becomes part of the step's record (`model_replied.queue_ms`).
            if tx
                .send(Ok(keel_models::StreamEvent::Queued { waited }))
                .await
                .is_err()
            {
                return;
            }
            let worker_tx = tx.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                engine.run(job, &worker_tx)
            })
            .await;
            if let Err(e) = outcome {
                tracing::error!(error = %e, "local model: decode thread failed");
                let _ = tx
                    .send(Err(ModelError::new(
                        ModelErrorKind::Unavailable,
                        PROVIDER,
                        format!("the decode thread failed: {e}"),
                    )))
                    .await;
            }
        });
        Ok(Box::pin(futures::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
        })))
    }
}
