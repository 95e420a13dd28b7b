//! What the engine's tests share: an engine over a fresh SQLite file in the test's directory,
//! with agent `a` on the scripted model, and sessions of that agent.

#![allow(dead_code)] // each test binary uses its own part

use std::sync::Arc;

use keel_core::{AgentDef, AgentId, Limits, SessionId, TenantId, ToolDef};
use keel_engine::{Engine, EngineConfig, ModelRegistry};
use keel_models::providers::scripted::{ScriptedClient, ScriptedConfig};
use keel_store::{SqliteOptions, SqliteStore};

/// An engine, the store under it (for counters a test reads) and the tenant agent `a` is in.
pub struct TestEngine {
    pub engine: Engine,
    pub store: Arc<SqliteStore>,
    pub tenant: TenantId,
}

/// An engine on `dir/keel.db` with `models` and `config`, agent `a` put (`scripted/echo`, with
/// `tools`), started when `start` (an engine not started leaves queued runs queued).
pub async fn engine(
    dir: &tempfile::TempDir,
    models: ModelRegistry,
    config: EngineConfig,
    tools: Vec<ToolDef>,
    start: bool,
) -> TestEngine {
    let store =
        Arc::new(SqliteStore::open(SqliteOptions::new(dir.path().join("keel.db"))).unwrap());
    let engine = Engine::new(store.clone(), models, config);
    let tenant = TenantId::default_tenant();
    let agent = AgentDef {
        id: AgentId::generate(1, 1),
        name: "a".into(),
        version: 0,
        instructions: String::new(),
        model: "scripted/echo".into(),
        tools,
        limits: Limits::default(),
        memory_blocks: Vec::new(),
        compaction: Default::default(),
        memory: Default::default(),
    };
    engine.put_agent(&tenant, agent).await.unwrap();
    if start {
        engine.start().await.unwrap();
    }
    TestEngine {
        engine,
        store,
        tenant,
    }
}

/// Models with `scripted` answering as `config` says.
pub fn scripted(config: ScriptedConfig) -> ModelRegistry {
    ModelRegistry::new().with("scripted", Arc::new(ScriptedClient::new(config)))
}

/// A new session of agent `a`.
pub async fn session(engine: &Engine, tenant: &TenantId) -> SessionId {
    engine
        .create_session(tenant, "a", Default::default())
        .await
        .unwrap()
        .id
}
