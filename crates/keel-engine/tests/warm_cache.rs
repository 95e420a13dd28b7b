//! An idle session leaves memory and comes back unchanged: the same turns played on an engine
//! that keeps sessions warm and on one that keeps none (every turn reloads the session from
//! its snapshot and log) send the model byte-identical requests — the same context window,
//! the same prefix for the provider's cache — across tool calls, failed runs, added messages,
//! snapshots and a window far shorter than the session.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use keel_core::{Limits, Message, RunStatus, TenantId, ToolDef, ToolKind};
use keel_engine::{Engine, EngineConfig, ModelRegistry};
use keel_models::providers::scripted::{ScriptedClient, ScriptedConfig};
use keel_models::{ModelClient, ModelError, ModelRequest, ModelStream};

mod common;

/// The scripted model, recording each request it gets as JSON.
struct Recording {
    scripted: ScriptedClient,
    requests: Mutex<Vec<String>>,
}

#[async_trait]
impl ModelClient for Recording {
    fn provider(&self) -> &str {
        "scripted"
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let json = serde_json::to_string(&request).unwrap();
        self.requests.lock().unwrap().push(json);
        self.scripted.stream(request).await
    }
}

/// An engine over a fresh store whose agent `a` keeps 7 messages of context; `cache_bytes` of
/// warm sessions.
async fn engine(dir: &tempfile::TempDir, cache_bytes: u64) -> (Engine, TenantId, Arc<Recording>) {
    let model = Arc::new(Recording {
        scripted: ScriptedClient::new(ScriptedConfig::default()),
        requests: Mutex::new(Vec::new()),
    });
    let config = EngineConfig {
        session_cache_bytes: cache_bytes,
        snapshot_every: 7,
        poll_interval: Duration::from_millis(50),
        ..EngineConfig::default()
    };
    let scratchpad = ToolDef {
        name: "scratchpad_set".into(),
        description: String::new(),
        parameters: serde_json::Value::Null,
        strict: None,
        require_approval: Default::default(),
        kind: ToolKind::Builtin,
    };
    let models = ModelRegistry::new().with("scripted", model.clone());
    let test = common::engine(dir, models, config, vec![scratchpad.clone()], true).await;
    let mut agent = test
        .engine
        .store()
        .get_agent(&test.tenant, "a", None)
        .await
        .unwrap()
        .unwrap();
    agent.tools = vec![scratchpad];
    agent.limits = Limits {
        context_messages: 7,
        max_model_attempts: 1,
        ..Limits::default()
    };
    test.engine.put_agent(&test.tenant, agent).await.unwrap();
    (test.engine, test.tenant, model)
}

/// Plays 40 turns of every kind on a new session of `engine`; returns the session's id.
async fn play(engine: &Engine, tenant: &TenantId) -> String {
    let session = common::session(engine, tenant).await;
    for i in 0..40 {
        if i % 9 == 4 {
            let added = vec![Message::user(format!("added {i}"))];
            engine.add_messages(tenant, &session, added).await.unwrap();
            let_go(engine).await;
        }
        let (input, ends) = match i % 5 {
            1 => (
                format!("turn {i}\n/call scratchpad_set {{\"key\": \"k{i}\", \"value\": \"v\"}}"),
                RunStatus::Completed,
            ),
            3 if i % 2 == 1 => (format!("turn {i} /fail on purpose"), RunStatus::Failed),
            _ => (
                format!("turn {i}: {}", "word ".repeat(i)),
                RunStatus::Completed,
            ),
        };
        let run = engine
            .submit(tenant, &session, Message::user(input))
            .await
            .unwrap();
        let ended = engine.wait_run(tenant, &run.id).await.unwrap();
        assert_eq!(ended.status, ends, "turn {i}: {ended:?}");
        let_go(engine).await;
    }
    session.to_string()
}

/// Waits until the engine holds no session in use (the driver lets go just after a run ends),
/// so that the next turn takes the session warm, or loads it, every time.
async fn let_go(engine: &Engine) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while engine.stats().sessions.in_use > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "a session stays in use"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reloaded_every_turn_sends_the_model_the_same_bytes_as_a_warm_one() {
    let (warm_dir, cold_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (warm, tenant, warm_model) = engine(&warm_dir, 64 << 20).await;
    let (cold, _, cold_model) = engine(&cold_dir, 0).await;
    let warm_session = play(&warm, &tenant).await;
    let cold_session = play(&cold, &tenant).await;

    // The sessions' ids (the requests' affinity keys) are the one thing that differs.
    let requests = |model: &Recording, session: &str| -> Vec<String> {
        let requests = model.requests.lock().unwrap();
        requests
            .iter()
            .map(|r| r.replace(session, "SESSION"))
            .collect()
    };
    let warm_requests = requests(&warm_model, &warm_session);
    let cold_requests = requests(&cold_model, &cold_session);
    assert!(
        warm_requests.len() >= 48,
        "{} requests",
        warm_requests.len()
    );
    assert_eq!(warm_requests.len(), cold_requests.len());
    for (i, (w, c)) in warm_requests.iter().zip(&cold_requests).enumerate() {
        assert_eq!(w, c, "request {i} differs");
    }

    let (warm_stats, cold_stats) = (warm.stats().sessions, cold.stats().sessions);
    // Each turn and added message takes the session up anew (a turn maybe twice: its submit,
    // then its driver): the warm engine loaded it once and took it warm every other time;
    // the cold one loaded it every time.
    let uses = 40 + (0..40).filter(|i| i % 9 == 4).count() as u64;
    assert_eq!(warm_stats.loads, 1, "{warm_stats:?}");
    assert!(warm_stats.hits >= uses - 1, "{warm_stats:?}");
    assert!(cold_stats.loads >= uses, "{cold_stats:?}");
    assert_eq!(
        (cold_stats.hits, cold_stats.entries),
        (0, 0),
        "{cold_stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_leave_memory_within_the_byte_bound_and_after_their_grace() {
    let dir = tempfile::tempdir().unwrap();
    let models = common::scripted(ScriptedConfig::default());
    // Room for a few sessions only, and a short grace.
    let config = EngineConfig {
        session_cache_bytes: 16 << 10,
        session_idle: Duration::from_millis(300),
        lease: Duration::from_millis(300),
        ..EngineConfig::default()
    };
    let test = common::engine(&dir, models, config, vec![], true).await;
    let (engine, tenant) = (&test.engine, &test.tenant);
    let mut sessions = Vec::new();
    for i in 0..50 {
        let session = common::session(engine, tenant).await;
        let run = engine
            .submit(tenant, &session, Message::user(format!("hello {i}")))
            .await
            .unwrap();
        engine.wait_run(tenant, &run.id).await.unwrap();
        sessions.push(session);
    }
    let stats = engine.stats().sessions;
    assert!(stats.bytes <= 16 << 10, "{stats:?}");
    assert!(stats.evictions > 0, "{stats:?}");
    assert!(stats.entries < 50, "{stats:?}");

    // Past the grace (the lease heartbeat tidies the cache), nothing is left in memory.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let stats = engine.stats().sessions;
    assert_eq!((stats.entries, stats.in_use), (0, 0), "{stats:?}");
    assert!(stats.expirations > 0, "{stats:?}");

    // An evicted session goes on where it was.
    let first = &sessions[0];
    let run = engine
        .submit(tenant, first, Message::user("again"))
        .await
        .unwrap();
    let ended = engine.wait_run(tenant, &run.id).await.unwrap();
    assert_eq!(ended.status, RunStatus::Completed);
    let history = engine.history(first, 0, 100).await.unwrap();
    let texts: Vec<String> = history.iter().map(|(_, m)| m.text_content()).collect();
    assert_eq!(
        texts,
        ["hello 0", "echo: hello 0", "again", "echo: again"],
        "the session's whole conversation"
    );
}
