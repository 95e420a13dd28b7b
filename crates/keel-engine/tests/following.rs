//! Followers never miss and never hang: with a live broadcast of two updates, a follower that
//! is not read while a run streams hundreds of deltas and logs dozens of events lags far
//! behind, and still gets every event of the run once and in order, text that adds up to each
//! logged reply, and the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use keel_core::{Event, EventBody, Message, RunStatus, TenantId, ToolDef, ToolKind};
use keel_engine::{Engine, EngineConfig, RunProgress};
use keel_models::providers::scripted::ScriptedConfig;

/// Tool calls the turn asks for, each logged as an intent and a result.
const CALLS: usize = 12;

mod common;

async fn engine(dir: &tempfile::TempDir) -> (Engine, TenantId, keel_core::SessionId) {
    let config = EngineConfig {
        updates_capacity: 2,
        poll_interval: Duration::from_millis(50),
        ..EngineConfig::default()
    };
    let clock = ToolDef {
        name: "clock_now".into(),
        description: String::new(),
        parameters: serde_json::Value::Null,
        strict: None,
        require_approval: Default::default(),
        kind: ToolKind::Builtin,
    };
    let models = common::scripted(ScriptedConfig::default());
    let test = common::engine(dir, models, config, vec![clock], true).await;
    let session = common::session(&test.engine, &test.tenant).await;
    (test.engine, test.tenant, session)
}

/// A long message with many tool calls: a step of calls, then a reply summing them up.
fn busy_turn() -> Message {
    let words: Vec<String> = (0..300).map(|i| format!("word{i}")).collect();
    let calls = "\n/call clock_now {}".repeat(CALLS);
    Message::user(format!("{}{calls}", words.join(" ")))
}

/// Everything a follower gives, to the end: the events, the text per step, the end.
async fn drain(
    mut follower: keel_engine::RunFollower,
) -> (
    Vec<Arc<Event>>,
    BTreeMap<u32, String>,
    Option<Box<keel_store::RunRecord>>,
) {
    let mut events = Vec::new();
    let mut text: BTreeMap<u32, String> = BTreeMap::new();
    let mut ended = None;
    while let Some(item) = follower.next().await {
        assert!(ended.is_none(), "an item after the end");
        match item.unwrap() {
            RunProgress::Text { step, text: t, .. } => text.entry(step).or_default().push_str(&t),
            // Nothing fails over here: what was passed on stays true.
            RunProgress::TextReset { step } => panic!("text of step {step} taken back"),
            RunProgress::Event(e) => events.push(e),
            RunProgress::Ended(record) => ended = Some(record),
            other => panic!("unexpected {other:?}"),
        }
    }
    (events, text, ended)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_run_follower_sees_every_event_the_whole_text_and_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, tenant, session) = engine(&dir).await;
    // Plain text first (hundreds of deltas), then a turn of tool steps; each followed by a
    // reader that waits for the run's end before reading, and by one that reads as it goes.
    let plain = || Message::user((0..400).map(|i| format!("w{i} ")).collect::<String>());
    for (input, calls, read_as_it_goes) in [
        (plain(), 0, false),
        (busy_turn(), CALLS, false),
        (plain(), 0, true),
        (busy_turn(), CALLS, true),
    ] {
        let run = engine.submit(&tenant, &session, input).await.unwrap();
        let mut follower = Some(engine.follow_run(&tenant, &run.id).await.unwrap());
        // Two updates fit in the broadcast, far fewer than the run sends at once.
        let reading = match read_as_it_goes {
            true => Some(tokio::spawn(drain(follower.take().unwrap()))),
            false => None,
        };
        let finished = engine.wait_run(&tenant, &run.id).await.unwrap();
        assert_eq!(finished.status, RunStatus::Completed);
        let (events, text, ended) = match reading {
            Some(reading) => reading.await.unwrap(),
            None => drain(follower.unwrap()).await,
        };
        let ended = ended.expect("the follower reports the end");
        assert_eq!(ended.id, run.id);
        assert_eq!(ended.status, RunStatus::Completed);

        let logged = engine.run_events(&finished).await.unwrap();
        let seen: Vec<u64> = events.iter().map(|e| e.seq).collect();
        let all: Vec<u64> = logged.iter().map(|e| e.seq).collect();
        assert_eq!(seen, all, "every event of the run, once, in order");
        assert!(matches!(events[0].body, EventBody::RunStarted { .. }));
        assert!(matches!(
            events.last().unwrap().body,
            EventBody::RunCompleted { .. }
        ));
        let returned = events
            .iter()
            .filter(|e| matches!(e.body, EventBody::ToolReturned { .. }))
            .count();
        assert_eq!(returned, calls, "the turn ran its tool calls");
        for e in &logged {
            if let EventBody::ModelReplied { step, message, .. } = &e.body {
                let reply = message.text_content();
                assert_eq!(
                    text.get(step).map(String::as_str).unwrap_or(""),
                    reply,
                    "the text of step {step} adds up to its logged reply"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_log_follower_sees_every_event_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, tenant, session) = engine(&dir).await;
    let mut follower = engine.follow_log(&tenant, &session, 0).await.unwrap();
    let mut last_run = None;
    for _ in 0..3 {
        let run = engine.submit(&tenant, &session, busy_turn()).await.unwrap();
        last_run = Some(engine.wait_run(&tenant, &run.id).await.unwrap());
    }
    let last = engine.run_events(&last_run.unwrap()).await.unwrap();
    let end = last.last().unwrap().seq;
    let mut seq = 0;
    while seq < end {
        let event = tokio::time::timeout(Duration::from_secs(30), follower.next())
            .await
            .expect("the follower hangs")
            .unwrap();
        assert_eq!(event.seq, seq + 1, "no event missed or repeated");
        seq = event.seq;
    }
}
