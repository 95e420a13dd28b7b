//! keel's configuration: `keel.toml` (in the working directory, or `--config`), then `KEEL_*`
//! variables, then the providers' usual variables (`OPENAI_API_KEY`, `OPENAI_BASE_URL`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use keel_core::{Limits, ToolDef};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where keel keeps its database and models (default `./keel-data`; `KEEL_DATA_DIR`).
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub store: StoreConfig,
    /// `keel serve`'s settings (its flags override them).
    #[serde(default)]
    pub server: ServeConfig,
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Named routes over the providers: fallback, weights, retries, breakers, timeouts.
    /// An agent whose `model` is a route's name is served through it.
    #[serde(default)]
    pub routes: Vec<keel_models::router::Route>,
    /// Model catalog entries (`"provider/model"` keys) added to or replacing the built-in ones.
    #[serde(default)]
    pub catalog: BTreeMap<String, keel_models::catalog::ModelInfo>,
    /// Agents kept in step with this file at start (a changed one gets a new version).
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
    /// The model of the `default` agent when this file defines none (`KEEL_MODEL`).
    pub default_model: Option<String>,
    /// Abuse limits: sessions and agents per tenant, events and queued runs per session, the
    /// size of a tool result or model reply.
    #[serde(default)]
    pub limits: keel_engine::Quotas,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `full` (fsync at every commit, the default) or `normal` (WAL without fsync per commit:
    /// faster; a power cut may lose the last commits but never corrupts).
    pub durability: String,
    /// Commit appends from many sessions in one transaction (default true).
    pub group_commit: bool,
    /// Snapshot a session's state every N events (default 100).
    pub snapshot_every: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            durability: "full".into(),
            group_commit: true,
            snapshot_every: 100,
        }
    }
}

/// The `[server]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Also serve `/metrics`, alone and without a key, on this address (`--metrics-listen`).
    pub metrics_listen: Option<SocketAddr>,
    /// Label the gateway's counters in `/metrics` by tenant (`--metrics-tenant-labels`).
    pub metrics_tenant_labels: bool,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderConfig {
    /// OpenAI Chat Completions, or any compatible server (vLLM, Ollama, llama.cpp) by `base_url`.
    Openai {
        base_url: Option<String>,
        /// The variable holding the key (default `OPENAI_API_KEY`).
        api_key_env: Option<String>,
    },
    /// A GGUF model run in-process on the CPU (`path`, or a known model fetched by name).
    Local {
        /// A GGUF file (default: `KEEL_MODEL_PATH`, else the known model below, fetched on first use).
        path: Option<PathBuf>,
        /// A known model's name (default `smollm2-135m-instruct`).
        model: Option<String>,
        /// Requests decoding at once, one core each (default 1).
        slots: Option<usize>,
        /// Tokens of context per request (default 2048).
        context_len: Option<usize>,
        /// Memory bound of the KV cache reused across turns, in MiB (default 128).
        prefix_cache_mb: Option<usize>,
        /// Sampling temperature when a request sets none (default 0.2; 0 is greedy).
        temperature: Option<f32>,
    },
    /// Anthropic Messages (`ANTHROPIC_API_KEY` when `api_key` is not set).
    Anthropic(keel_models::providers::anthropic::AnthropicConfig),
    /// Google Gemini (`GEMINI_API_KEY` when `api_key` is not set).
    Gemini(keel_models::providers::gemini::GeminiConfig),
    /// OpenAI Responses API (`OPENAI_API_KEY` when `api_key` is not set).
    OpenaiResponses(keel_models::providers::openai_responses::ResponsesConfig),
    /// Azure OpenAI: `endpoint`, `api_version`, `auth = { api_key = "…" }` or `{ entra_token = "…" }`.
    Azure(keel_models::providers::azure::AzureConfig),
    /// AWS Bedrock Converse (credentials from AWS's standard chain); needs the `bedrock` feature.
    #[cfg(feature = "bedrock")]
    Bedrock(keel_models::providers::bedrock::BedrockConfig),
    /// Deterministic in-process model for tests and benchmarks.
    Scripted {
        #[serde(default)]
        token_latency_ms: u64,
        #[serde(default)]
        first_token_latency_ms: u64,
        reply_tokens: Option<usize>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    pub name: String,
    pub model: String,
    #[serde(default)]
    pub instructions: String,
    #[serde(default)]
    pub tools: Vec<ToolDef>,
    #[serde(default)]
    pub limits: Option<Limits>,
}

impl Config {
    /// Reads `path` if given (it must exist), else `./keel.toml` if present, else defaults.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from("keel.toml"), false),
        };
        let mut config = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<Config>(&text)
                .with_context(|| format!("{} is not a valid keel configuration", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Config::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if let Ok(dir) = std::env::var("KEEL_DATA_DIR") {
            config.data_dir = Some(dir.into());
        }
        if let Ok(model) = std::env::var("KEEL_MODEL") {
            config.default_model = Some(model);
        }
        if !config.providers.contains_key("openai")
            && (std::env::var_os("OPENAI_API_KEY").is_some()
                || std::env::var_os("OPENAI_BASE_URL").is_some())
        {
            config.providers.insert(
                "openai".into(),
                ProviderConfig::Openai {
                    base_url: None,
                    api_key_env: None,
                },
            );
        }
        for (name, var) in [
            ("anthropic", "ANTHROPIC_API_KEY"),
            ("gemini", "GEMINI_API_KEY"),
        ] {
            if !config.providers.contains_key(name) && std::env::var_os(var).is_some() {
                let provider = match name {
                    "anthropic" => ProviderConfig::Anthropic(Default::default()),
                    _ => ProviderConfig::Gemini(Default::default()),
                };
                config.providers.insert(name.into(), provider);
            }
        }
        for provider in config.providers.values_mut() {
            let (key, var) = match provider {
                ProviderConfig::Anthropic(c) => (&mut c.api_key, "ANTHROPIC_API_KEY"),
                ProviderConfig::Gemini(c) => (&mut c.api_key, "GEMINI_API_KEY"),
                ProviderConfig::OpenaiResponses(c) => (&mut c.api_key, "OPENAI_API_KEY"),
                _ => continue,
            };
            if key.is_none() {
                *key = std::env::var(var).ok().filter(|k| !k.is_empty());
            }
        }
        if config.providers.is_empty() && cfg!(feature = "local") {
            // Nothing configured: the embedded model, so keel works offline with zero setup.
            let local = ProviderConfig::Local {
                path: std::env::var_os("KEEL_MODEL_PATH").map(PathBuf::from),
                model: None,
                slots: None,
                context_len: None,
                prefix_cache_mb: None,
                temperature: None,
            };
            config.providers.insert("local".into(), local);
        }
        match config.store.durability.as_str() {
            "full" | "normal" => {}
            other => bail!("store.durability must be \"full\" or \"normal\", not {other:?}"),
        }
        Ok(config)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("keel-data"))
    }
}
