//! What the engine's tests share: an engine over a fresh SQLite file in the test's directory,
//! with agent `a` on the scripted model, and sessions of that agent.

#![allow(dead_code)] // each test binary uses its own part

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use keel_core::{AgentDef, AgentId, Limits, SessionId, TenantId, ToolDef};
use keel_engine::{Engine, EngineConfig, ModelRegistry};
use keel_models::providers::scripted::{ScriptedClient, ScriptedConfig};
use keel_models::{ModelClient, ModelError, ModelRequest, ModelStream};
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

/// The scripted model (it counts words as tokens), keeping every request it receives; with
/// `fail_summaries`, refusing every request to summarise, as a provider that is down.
#[derive(Default)]
pub struct Recording {
    pub model: ScriptedClient,
    pub received: Mutex<Vec<ModelRequest>>,
    pub fail_summaries: bool,
}

impl Recording {
    /// Models with `scripted` served by this recording.
    pub fn registry(self: &Arc<Self>) -> ModelRegistry {
        ModelRegistry::new().with("scripted", self.clone())
    }

    /// The requests the model received, without those that summarised the context.
    pub fn steps(&self) -> Vec<ModelRequest> {
        let received = self.received.lock().unwrap();
        received
            .iter()
            .filter(|r| !is_summary_request(r))
            .cloned()
            .collect()
    }
}

#[async_trait]
impl ModelClient for Recording {
    fn provider(&self) -> &str {
        "scripted"
    }

    fn count_tokens(&self, request: &ModelRequest) -> Option<u64> {
        self.model.count_tokens(request)
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        self.received.lock().unwrap().push(request.clone());
        if self.fail_summaries && is_summary_request(&request) {
            return Err(ModelError::new(
                keel_models::ModelErrorKind::Unavailable,
                "scripted",
                "the summariser is down",
            ));
        }
        self.model.stream(request).await
    }
}

/// Whether `request` asks to summarise a context (a compaction), not to take a step.
pub fn is_summary_request(request: &ModelRequest) -> bool {
    request
        .system
        .as_deref()
        .is_some_and(|s| s.starts_with("You compact the earlier part of a conversation"))
}

/// Changes agent `a` (a new version) as `edit` says.
pub async fn edit_agent(engine: &Engine, tenant: &TenantId, edit: impl FnOnce(&mut AgentDef)) {
    let mut agent = engine
        .store()
        .get_agent(tenant, "a", None)
        .await
        .unwrap()
        .unwrap();
    edit(&mut agent);
    engine.put_agent(tenant, agent).await.unwrap();
}
