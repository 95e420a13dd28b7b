//! keel's configuration: `keel.toml` (in the working directory, or `--config`), then `KEEL_*`
//! variables, then the providers' usual variables (`OPENAI_API_KEY`, `OPENAI_BASE_URL`).
//! Nothing is accepted that is not honoured: an unknown key anywhere in the file stops keel
//! with its path and the nearest known key (`strict`), an unknown `KEEL_*` variable is warned
//! about at start.

mod strict;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use keel_core::{Limits, ToolDef};
use serde::{Deserialize, Serialize};

/// Every `KEEL_*` variable keel reads (its flags' `env` included: a test keeps them here).
pub const KEEL_VARIABLES: &[&str] = &[
    "KEEL_API_KEY",
    "KEEL_CONFIG",
    "KEEL_DATA_DIR",
    "KEEL_FAULT_PAUSE",
    "KEEL_LISTEN",
    "KEEL_LOG",
    "KEEL_METRICS_LISTEN",
    "KEEL_MODEL",
    "KEEL_MODEL_CACHE",
    "KEEL_MODEL_PATH",
    "KEEL_PYTHON",
    "KEEL_SERVER",
];

/// Prefixes (or whole names) of the variables keel's tests, benchmarks and scripts read (not
/// keel itself), so a shell set up for them is not warned about.
const KEEL_VARIABLE_PREFIXES: &[&str] = &[
    "KEEL_BENCH_",
    "KEEL_TEST_",
    "KEEL_PROFILE_",
    "KEEL_STORE_CRASH_TEST_DB",
];

/// Warns about each `KEEL_*` variable keel does not read (a misspelt one would otherwise do
/// nothing without a word), with the nearest known name. Called once, at start.
pub fn warn_unknown_variables() {
    for name in unknown_variables(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok())) {
        tracing::warn!("{name}");
    }
}

/// One line per unknown `KEEL_*` name among `names`.
fn unknown_variables(names: impl Iterator<Item = String>) -> Vec<String> {
    let known: Vec<&str> = KEEL_VARIABLES.iter().map(|v| &v["KEEL_".len()..]).collect();
    names
        .filter(|n| n.starts_with("KEEL_") && !KEEL_VARIABLES.contains(&n.as_str()))
        .filter(|n| !KEEL_VARIABLE_PREFIXES.iter().any(|p| n.starts_with(p)))
        .map(|n| match strict::nearest(&n["KEEL_".len()..], &known) {
            Some(near) => {
                format!("{n} is set but keel does not read it; did you mean KEEL_{near}?")
            }
            None => format!("{n} is set but keel does not read it"),
        })
        .collect()
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where keel keeps its database and models (default `./keel-data`; `KEEL_DATA_DIR`).
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub store: StoreConfig,
    /// What a node keeps in memory.
    #[serde(default)]
    pub engine: EngineSection,
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

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `full` (fsync at every commit, the default) or `normal` (WAL without fsync per commit:
    /// faster; a power cut may lose the last commits but never corrupts).
    pub durability: String,
    /// Commit appends from many sessions in one transaction (default true).
    pub group_commit: bool,
    /// Snapshot a session's state every N events (default 100).
    pub snapshot_every: u64,
    /// `postgres://user[:password]@host[:port]/database`: keel's tables in PostgreSQL, shared by
    /// every node pointed at it (`--store`). Default: SQLite in the data directory.
    pub url: Option<String>,
    /// The PostgreSQL schema that holds keel's tables (created when missing; default: the
    /// server's `search_path`, usually `public`).
    pub schema: Option<String>,
    /// PostgreSQL: the most connections this node opens (default 16).
    pub pool_size: usize,
    /// PostgreSQL: how long connecting, or waiting for a free connection, may take (default 10).
    pub connect_timeout_secs: u64,
    /// PostgreSQL: the server cancels a statement running longer (default 30000; 0: no limit).
    pub statement_timeout_ms: u64,
    /// PostgreSQL: a PEM file of CA certificates to trust besides the public roots, for a
    /// server whose certificate the provider's own CA signed (with `sslmode=require` in the URL).
    pub ca_file: Option<PathBuf>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let pg = keel_store::PgOptions::new("");
        StoreConfig {
            durability: "full".into(),
            group_commit: true,
            snapshot_every: 100,
            url: None,
            schema: None,
            pool_size: pg.pool_size,
            connect_timeout_secs: pg.connect_timeout.as_secs(),
            statement_timeout_ms: pg.statement_timeout.map_or(0, |t| t.as_millis() as u64),
            ca_file: None,
        }
    }
}

/// The `[engine]` section: memory and leases. An idle session's live state is kept warm (an
/// LRU bounded in bytes) for a grace period, then reloaded from the store when used again.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSection {
    /// The estimated MiB of idle sessions kept warm (default 64; 0 keeps none).
    pub session_cache_mb: u64,
    /// Seconds an idle session stays warm, unless the bound evicts it sooner (default 60).
    pub session_idle_secs: u64,
    /// Seconds a node's lease on a run lasts unless renewed (every third of it): how soon the
    /// runs of a node that died are taken over by another (default 30).
    pub lease_secs: u64,
    /// Milliseconds between looks at the store for runs to claim and for other nodes' events,
    /// when no hint of them came sooner (default 500).
    pub poll_ms: u64,
}

impl Default for EngineSection {
    fn default() -> Self {
        let engine = keel_engine::EngineConfig::default();
        EngineSection {
            session_cache_mb: engine.session_cache_bytes >> 20,
            session_idle_secs: engine.session_idle.as_secs(),
            lease_secs: engine.lease.as_secs(),
            poll_ms: engine.poll_interval.as_millis() as u64,
        }
    }
}

/// The `[server]` section.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Also serve `/metrics`, alone and without a key, on this address (`--metrics-listen`).
    pub metrics_listen: Option<SocketAddr>,
    /// Label the gateway's counters in `/metrics` by tenant (`--metrics-tenant-labels`).
    pub metrics_tenant_labels: bool,
    /// The largest session file `POST /v1/sessions/import` takes, in MiB (default 256); other
    /// requests keep `--body-limit`.
    pub import_limit_mb: Option<usize>,
}

#[derive(Debug, Deserialize, Serialize)]
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

#[derive(Debug, Clone, Deserialize, Serialize)]
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
    /// `[[agents.memory_blocks]]`: the blocks in its sessions' context (`BlockDef`).
    #[serde(default)]
    pub memory_blocks: Vec<keel_core::BlockDef>,
    /// `[agents.compaction]`: how its context is kept under `limits.context_tokens`.
    #[serde(default)]
    pub compaction: keel_core::agent::Compaction,
    /// `[agents.memory]`: where its memory tools keep its long-term memory (`namespace`).
    #[serde(default)]
    pub memory: keel_core::agent::MemoryPolicy,
}

impl Config {
    /// Reads `path` if given (it must exist), else `./keel.toml` if present, else defaults.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from("keel.toml"), false),
        };
        let mut config = match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text).map_err(|problems| {
                let lines: Vec<String> = problems
                    .iter()
                    .map(|p| format!("{}: {p}", path.display()))
                    .collect();
                anyhow!("{}", lines.join("\n"))
            })?,
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
        if config.engine.lease_secs == 0 || config.engine.lease_secs > 86_400 {
            bail!(
                "engine.lease_secs must be between 1 and 86400 seconds, not {}",
                config.engine.lease_secs
            );
        }
        if !(10..=60_000).contains(&config.engine.poll_ms) {
            bail!(
                "engine.poll_ms must be between 10 and 60000 milliseconds, not {}",
                config.engine.poll_ms
            );
        }
        if config.store.pool_size == 0 || config.store.pool_size > 1000 {
            bail!(
                "store.pool_size must be between 1 and 1000 connections, not {}",
                config.store.pool_size
            );
        }
        Ok(config)
    }

    /// Reads a file's text strictly; `Err` has one line per problem (an unknown key with its
    /// path and the nearest known key, a wrong type, a missing field).
    fn parse(text: &str) -> Result<Config, Vec<String>> {
        let tree = toml::from_str::<toml::Table>(text)
            .map_err(|e| vec![format!("not valid TOML: {e}")])?;
        strict::from_tree(&toml::Value::Table(tree))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("keel-data"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_a_flag_reads_is_known() {
        use clap::CommandFactory;
        fn walk(command: &clap::Command, out: &mut Vec<String>) {
            for arg in command.get_arguments() {
                if let Some(env) = arg.get_env() {
                    out.push(env.to_string_lossy().into_owned());
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, out);
            }
        }
        let mut read = Vec::new();
        walk(&crate::Cli::command(), &mut read);
        assert!(read.contains(&"KEEL_CONFIG".to_string()), "{read:?}");
        for name in read {
            assert!(
                KEEL_VARIABLES.contains(&name.as_str()),
                "add {name} to KEEL_VARIABLES"
            );
        }
    }

    #[test]
    fn unknown_keel_variables_are_named_with_the_nearest_known_one() {
        let names = [
            "KEEL_DATADIR",
            "KEEL_LOG",
            "KEEL_BENCH_SECS",
            "HOME",
            "KEEL_FROBNICATE",
        ];
        let lines = unknown_variables(names.iter().map(|n| n.to_string()));
        assert_eq!(
            lines,
            [
                "KEEL_DATADIR is set but keel does not read it; did you mean KEEL_DATA_DIR?",
                "KEEL_FROBNICATE is set but keel does not read it",
            ]
        );
    }
}
