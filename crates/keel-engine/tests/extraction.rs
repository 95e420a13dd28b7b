//! Facts kept from finished turns: with `memory = { extract = true }` a completed run's turn is
//! read by a model after the run has ended, and each fact it lists is saved into the agent's
//! memory namespace, once, naming the session and run it came from.

use std::time::Duration;

use keel_core::{Message, RunStatus};
use keel_engine::{EngineConfig, SearchMode};
use keel_models::providers::scripted::ScriptedConfig;

mod common;

#[tokio::test]
async fn a_completed_turns_facts_are_saved_in_the_background_when_the_agent_asks() {
    let dir = tempfile::tempdir().unwrap();
    let models = common::scripted(ScriptedConfig::default());
    let test = common::engine(&dir, models, EngineConfig::default(), Vec::new(), true).await;
    let (engine, tenant) = (&test.engine, &test.tenant);
    common::edit_agent(engine, tenant, |agent| agent.memory.extract = true).await;
    let session = common::session(engine, tenant).await;
    // The scripted model echoes what it is asked: the turn, whose dashed line is the fact.
    let run = engine
        .submit(
            tenant,
            &session,
            Message::user("hello there\n- Ada prefers green tea."),
        )
        .await
        .unwrap();
    let ended = engine.wait_run(tenant, &run.id).await.unwrap();
    assert_eq!(ended.status, RunStatus::Completed);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let hits = loop {
        let found = engine
            .recall(
                tenant,
                "agent:a",
                "green tea",
                Vec::new(),
                10,
                SearchMode::Keyword,
            )
            .await;
        if let Ok(hits) = found
            && !hits.is_empty()
        {
            break hits;
        }
        assert!(std::time::Instant::now() < deadline, "no fact was saved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(hits.len(), 1, "the fact is kept once: {hits:?}");
    let record = &hits[0].record;
    assert_eq!(record.text, "Ada prefers green tea.");
    assert_eq!(record.metadata["source"], "extraction");
    assert_eq!(record.metadata["session"], session.as_str());
    assert_eq!(record.metadata["run"], run.id.as_str());
}
