//! Context compaction over a long session: the context never passes its budget, compaction
//! runs a few times in large steps rather than every turn, every request between two
//! compactions starts with the previous request (the prompt cache's prefix), and a fact told
//! early reaches the model hundreds of turns later through the running summary.

use std::sync::Arc;

use common::{Recording, edit_agent};
use keel_core::{EventBody, Message, RunStatus};
use keel_engine::EngineConfig;
use keel_models::ModelClient;
use keel_models::providers::scripted::{ScriptedClient, ScriptedConfig};

mod common;

const BUDGET: u32 = 1200;
const FACT: &str = "AZURE-7731";

#[tokio::test]
async fn a_300_turn_session_stays_in_budget_keeps_its_prefix_and_remembers_turn_3() {
    let dir = tempfile::tempdir().unwrap();
    let recording = Arc::new(Recording::default());
    let models = recording.registry();
    let test = common::engine(&dir, models, EngineConfig::default(), Vec::new(), true).await;
    let (engine, tenant) = (&test.engine, &test.tenant);
    edit_agent(engine, tenant, |agent| {
        agent.instructions = "You are a patient assistant.".into();
        agent.limits.context_tokens = Some(BUDGET);
        agent.limits.context_messages = 100_000;
    })
    .await;
    let session = common::session(engine, tenant).await;
    for turn in 1..=300 {
        let text = if turn == 3 {
            format!("remember this: the launch code is {FACT}")
        } else {
            format!(
                "turn {turn}: {}",
                "the weather stays mild and dry ".repeat(2)
            )
        };
        let run = engine
            .submit(tenant, &session, Message::user(text))
            .await
            .unwrap();
        let ended = engine.wait_run(tenant, &run.id).await.unwrap();
        assert_eq!(ended.status, RunStatus::Completed, "turn {turn}: {ended:?}");
    }
    let received = recording.received.lock().unwrap().len();
    let scripted = ScriptedClient::new(ScriptedConfig::default());
    let steps = recording.steps();
    let compactions = received - steps.len();
    assert_eq!(steps.len(), 300);
    // Rarely, in large steps: not every turn, and more than once over 300 turns.
    assert!(
        (3..=20).contains(&compactions),
        "{compactions} compactions in 300 turns"
    );
    // Never over the budget (the scripted model's tokens are words).
    for (i, step) in steps.iter().enumerate() {
        let tokens = scripted.count_tokens(step).unwrap();
        assert!(
            tokens <= u64::from(BUDGET),
            "turn {}: {tokens} tokens",
            i + 1
        );
    }
    // Between compactions, each request starts with the previous one: same system prompt,
    // same tools, and its messages begin with all of the previous request's messages.
    let mut kept_prefix = 0;
    for pair in steps.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        let prefix = after.system == before.system
            && after.tools == before.tools
            && after.messages.starts_with(&before.messages);
        if prefix {
            kept_prefix += 1;
        } else {
            // Only a compaction may change the front: the summary in the system prompt.
            assert_ne!(
                after.system, before.system,
                "a prefix broke without a compaction"
            );
        }
    }
    assert_eq!(
        kept_prefix,
        299 - compactions,
        "each break is one compaction"
    );
    // The fact of turn 3 reaches turn 300 through the summary in the system prompt, not the
    // messages (long gone from them).
    let last = steps.last().unwrap();
    assert!(last.system.as_deref().unwrap().contains(FACT), "{last:?}");
    assert!(
        last.system
            .as_deref()
            .unwrap()
            .contains("<conversation_summary")
    );
    assert!(
        !last
            .messages
            .iter()
            .any(|m| m.text_content().contains(FACT))
    );
    // The log keeps every event; each compaction is an intent and its result, naming its range.
    let events = engine
        .store()
        .read_events(&session, 0, usize::MAX)
        .await
        .unwrap();
    let started = events
        .iter()
        .filter(|e| matches!(e.body, EventBody::CompactionStarted { .. }))
        .count();
    let mut next_from = 1;
    let mut compacted = 0;
    for event in &events {
        if let EventBody::ContextCompacted {
            from_seq,
            through_seq,
            summary,
            ..
        } = &event.body
        {
            assert_eq!(*from_seq, next_from);
            assert!(through_seq < &event.seq && summary.is_some());
            next_from = through_seq + 1;
            compacted += 1;
        }
    }
    assert_eq!((started, compacted), (compactions, compactions));
    let inputs = events
        .iter()
        .filter(|e| matches!(e.body, EventBody::RunStarted { .. }))
        .count();
    assert_eq!(
        inputs, 300,
        "compaction changes what is sent, never what is stored"
    );
}

/// A summariser that fails leaves the range out with a marker, and the session goes on.
#[tokio::test]
async fn a_failed_summary_falls_back_to_leaving_the_range_out() {
    let dir = tempfile::tempdir().unwrap();
    let recording = Arc::new(Recording {
        fail_summaries: true,
        ..Recording::default()
    });
    let models = recording.registry();
    let test = common::engine(&dir, models, EngineConfig::default(), Vec::new(), true).await;
    let (engine, tenant) = (&test.engine, &test.tenant);
    edit_agent(engine, tenant, |agent| agent.limits.context_messages = 6).await;
    let session = common::session(engine, tenant).await;
    for turn in 1..=8 {
        let run = engine
            .submit(tenant, &session, Message::user(format!("turn {turn}")))
            .await
            .unwrap();
        let ended = engine.wait_run(tenant, &run.id).await.unwrap();
        assert_eq!(ended.status, RunStatus::Completed, "turn {turn}: {ended:?}");
    }
    let events = engine
        .store()
        .read_events(&session, 0, usize::MAX)
        .await
        .unwrap();
    let fallbacks: Vec<&String> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::ContextCompacted {
                summary: None,
                error: Some(error),
                ..
            } => Some(error),
            _ => None,
        })
        .collect();
    assert!(!fallbacks.is_empty());
    assert!(
        fallbacks[0].contains("the summariser is down"),
        "{fallbacks:?}"
    );
    let last = recording.steps().pop().unwrap();
    assert!(last.messages.len() <= 6, "{:?}", last.messages);
    assert!(
        last.system
            .as_deref()
            .unwrap()
            .contains("summarising it failed"),
        "{:?}",
        last.system
    );
}
