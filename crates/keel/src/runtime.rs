//! Opens what a command needs from the configuration: the store, the model providers
//! (`providers.rs`), and (for commands that drive runs) the engine — holding the data directory's lock so two
//! processes never drive the same runs.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use keel_core::{AgentDef, Limits, TenantId};
use keel_engine::{Engine, EngineConfig};
use keel_store::{Durability, PgOptions, PgStore, SqliteOptions, SqliteStore, Store};

use crate::config::{Config, ProviderConfig, StoreConfig};

pub const DEFAULT_AGENT: &str = "default";

/// Opens (or creates) the store under the data directory.
pub async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = &config.store.url {
        return open_postgres(url, &config.store).await;
    }
    let dir = config.data_dir();
    create_data_dir(&dir)?;
    let mut options = SqliteOptions::new(dir.join("keel.db"));
    options.durability = if config.store.durability == "normal" {
        Durability::Normal
    } else {
        Durability::Full
    };
    options.group_commit = config.store.group_commit;
    let store = SqliteStore::open(options)
        .with_context(|| format!("cannot open keel's store in {}", dir.display()))?;
    Ok(Arc::new(store))
}

/// The PostgreSQL store at `url` (connected and migrated), which several nodes may share.
async fn open_postgres(url: &str, store: &StoreConfig) -> anyhow::Result<Arc<dyn Store>> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        anyhow::bail!(
            "the store URL must start with postgres:// or postgresql:// (without one, keel keeps its store in the data directory)"
        );
    }
    let store = PgStore::open(pg_options(url, store))
        .await
        .context("cannot open keel's store in PostgreSQL")?;
    tracing::info!(server = %store.server(), "the store is PostgreSQL");
    Ok(Arc::new(store))
}

/// How to reach the PostgreSQL store at `url` with the `[store]` settings.
pub fn pg_options(url: &str, store: &StoreConfig) -> PgOptions {
    PgOptions {
        schema: store.schema.clone(),
        pool_size: store.pool_size,
        connect_timeout: Duration::from_secs(store.connect_timeout_secs),
        statement_timeout: (store.statement_timeout_ms > 0)
            .then(|| Duration::from_millis(store.statement_timeout_ms)),
        ca_file: store.ca_file.clone(),
        ..PgOptions::new(url)
    }
}

/// This node's name in run leases. On SQLite one process holds the store (the data
/// directory's lock), so `local`; on a shared store each node needs its own, kept in its data
/// directory so that a restarted node takes back its own runs at once.
fn node_id(config: &Config, dir: &Path) -> anyhow::Result<String> {
    if config.store.url.is_none() {
        return Ok("local".into());
    }
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let id = format!("node-{}", &keel_engine::clock::new_hex_id()[..16]);
    keel_models::durable::write(&path, id.as_bytes(), false)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

/// Creates the data directory if it is missing, its entry fsynced into its parent (and so on
/// up), so a power cut during the first start cannot keep what was stored in it and lose it.
fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    keel_models::durable::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create the data directory {}: check its permissions or set KEEL_DATA_DIR",
            dir.display()
        )
    })
}

/// Holds the data directory's lock for as long as it lives. A `keel serve` writes its URL in
/// the lock file (`announce`), so the commands that would need the lock talk to it instead
/// (`served_at`).
pub struct DataDirLock {
    file: File,
}

impl DataDirLock {
    /// Writes `url` as where this process serves the data directory's sessions.
    pub fn announce(&self, url: &str) -> std::io::Result<()> {
        use std::io::{Seek, Write};
        let mut file = &self.file;
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(format!("{SERVING}{url}\n").as_bytes())
    }
}

/// How the lock file names the URL of the server holding it.
const SERVING: &str = "serving ";

/// The URL a `keel serve` holding `dir`'s lock wrote in it; `None` when the holder serves
/// nothing (e.g. `keel chat`). Asked after `DataDirInUse`: a holder's lock empties what an
/// earlier holder wrote, so the URL is the live holder's.
pub fn served_at(dir: &Path) -> Option<String> {
    let content = std::fs::read_to_string(dir.join("keel.lock")).ok()?;
    content
        .lines()
        .find_map(|line| line.strip_prefix(SERVING))
        .map(|url| url.trim().to_string())
}

/// The data directory's lock is held by another keel process.
#[derive(Debug)]
pub struct DataDirInUse(std::path::PathBuf);

impl std::fmt::Display for DataDirInUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "another keel process is using the data directory {}; stop it, or use another directory with --data-dir",
            self.0.display()
        )
    }
}

impl std::error::Error for DataDirInUse {}

pub fn lock_data_dir(dir: &Path) -> anyhow::Result<DataDirLock> {
    let path = dir.join("keel.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| {
            format!(
                "cannot open {}: check the data directory's permissions",
                path.display()
            )
        })?;
    match file.try_lock() {
        Ok(()) => {
            // Forget the URL an earlier `keel serve` announced: only a live holder's is true.
            file.set_len(0)
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(DataDirLock { file })
        }
        Err(std::fs::TryLockError::WouldBlock) => Err(DataDirInUse(dir.to_path_buf()).into()),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// A started engine over the configured store and providers, with the configured agents
/// stored. Unfinished runs of earlier processes resume as soon as it starts.
pub struct Runtime {
    pub engine: Engine,
    pub tenant: TenantId,
    pub lock: DataDirLock,
    /// The store, as `Store::describe` says (backend and storage, no credentials).
    pub store: String,
    /// This node's name in run leases.
    pub node_id: String,
}

impl Runtime {
    pub async fn start(config: &Config) -> anyhow::Result<Runtime> {
        let dir = config.data_dir();
        create_data_dir(&dir)?;
        let lock = lock_data_dir(&dir)?;
        let store = open_store(config).await?;
        let described = store.describe();
        let models = crate::providers::model_registry(config).await?;
        let node_id = node_id(config, &dir)?;
        let engine_config = EngineConfig {
            node_id: node_id.clone(),
            snapshot_every: config.store.snapshot_every.max(1),
            session_cache_bytes: config.engine.session_cache_mb.saturating_mul(1 << 20),
            session_idle: Duration::from_secs(config.engine.session_idle_secs),
            lease: Duration::from_secs(config.engine.lease_secs),
            poll_interval: Duration::from_millis(config.engine.poll_ms),
            quotas: config.limits.clone(),
            code_interpreter: crate::commands::model::code_interpreter(),
            ..EngineConfig::default()
        };
        let engine = Engine::new(store, models, engine_config);
        let tenant = TenantId::default_tenant();
        sync_agents(&engine, &tenant, config).await?;
        engine
            .start()
            .await
            .context("cannot resume unfinished runs")?;
        Ok(Runtime {
            engine,
            tenant,
            lock,
            store: described,
            node_id,
        })
    }
}

/// Stores the agents of the configuration (a new version when one changed), and a `default`
/// agent on the configured default model when the configuration defines none.
async fn sync_agents(engine: &Engine, tenant: &TenantId, config: &Config) -> anyhow::Result<()> {
    let mut wanted: Vec<AgentDef> = config
        .agents
        .iter()
        .map(|a| AgentDef {
            id: keel_engine::clock::new_agent_id(),
            name: a.name.clone(),
            version: 0,
            instructions: a.instructions.clone(),
            model: a.model.clone(),
            tools: a.tools.clone(),
            limits: a.limits.unwrap_or_default(),
            memory_blocks: a.memory_blocks.clone(),
            compaction: a.compaction.clone(),
            memory: a.memory.clone(),
        })
        .collect();
    if !wanted.iter().any(|a| a.name == DEFAULT_AGENT)
        && let Some(model) = default_model(config)
    {
        wanted.push(AgentDef {
            id: keel_engine::clock::new_agent_id(),
            name: DEFAULT_AGENT.into(),
            version: 0,
            instructions: default_instructions(config, &model),
            model,
            tools: Vec::new(),
            limits: Limits::default(),
            memory_blocks: Vec::new(),
            compaction: Default::default(),
            memory: Default::default(),
        });
    }
    for mut def in wanted {
        keel_engine::tools::complete_builtins(&mut def)
            .map_err(|e| anyhow::anyhow!("agent {:?}: {e}", def.name))?;
        let current = engine.store().get_agent(tenant, &def.name, None).await?;
        let unchanged = current.as_ref().is_some_and(|c| {
            c.instructions == def.instructions
                && c.model == def.model
                && c.tools == def.tools
                && c.limits == def.limits
                && c.memory_blocks == def.memory_blocks
                && c.compaction == def.compaction
                && c.memory == def.memory
        });
        if !unchanged {
            let stored = engine.put_agent(tenant, def).await?;
            tracing::info!(agent = %stored.name, version = stored.version, "stored agent");
        }
    }
    Ok(())
}

/// The `default` agent's instructions. On a local model none, so that the model sees the system
/// turn its own chat template puts first when there is none (SmolLM2's "You are a helpful AI
/// assistant named SmolLM, trained by Hugging Face"), the prompt it was tuned on and the one
/// llama.cpp would give it; on a hosted model a generic one.
fn default_instructions(config: &Config, model: &str) -> String {
    let provider = model.split('/').next().unwrap_or_default();
    match config.providers.get(provider) {
        Some(ProviderConfig::Local { .. }) => String::new(),
        _ => "You are a helpful assistant.".into(),
    }
}

fn default_model(config: &Config) -> Option<String> {
    if let Some(model) = &config.default_model {
        return Some(model.clone());
    }
    if config.providers.contains_key("openai") {
        return Some("openai/gpt-4o-mini".into());
    }
    if config.providers.contains_key("local") {
        let model = crate::providers::DEFAULT_LOCAL_MODEL;
        return Some(format!("local/{model}"));
    }
    config
        .providers
        .keys()
        .next()
        .map(|provider| format!("{provider}/default"))
}

/// What to tell a user who has no model configured.
pub const NO_PROVIDER_HELP: &str = "no model provider is configured. Set OPENAI_API_KEY (and OPENAI_BASE_URL for an \
OpenAI-compatible server such as vLLM, Ollama or llama.cpp), or add a [providers.NAME] table to keel.toml, \
e.g.\n\n  [providers.openai]\n  kind = \"openai\"\n  base_url = \"http://127.0.0.1:8080/v1\"\n";
