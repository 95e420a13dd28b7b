//! A long tool result is stored once, whole, in its event, and the model's context holds only
//! its start and a note naming the event, the same bytes in every later request; the
//! built-in `tool_result_read` reads on from there.

use std::sync::Arc;

use common::Recording;
use keel_core::{EventBody, Message, Part, RunStatus};
use keel_engine::EngineConfig;
use keel_models::ModelRequest;

mod common;

fn tool_results(request: &ModelRequest) -> Vec<String> {
    request
        .messages
        .iter()
        .flat_map(|m| &m.parts)
        .filter_map(|p| match p {
            Part::ToolResult { content, .. } => Some(content.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_long_result_is_logged_whole_sent_as_its_start_and_read_on_by_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let recording = Arc::new(Recording::default());
    let models = recording.registry();
    let tools = keel_engine::tools::builtin_tools()
        .into_iter()
        .filter(|t| {
            ["scratchpad_set", "scratchpad_get", "tool_result_read"].contains(&t.name.as_str())
        })
        .collect();
    let test = common::engine(&dir, models, EngineConfig::default(), tools, true).await;
    let (engine, tenant) = (&test.engine, &test.tenant);
    let session = common::session(engine, tenant).await;
    // 40,000 bytes: "0123456789" repeated, so an offset tells which bytes came back.
    let long = "0123456789".repeat(4_000);
    let turns = [
        format!("/call scratchpad_set {{\"key\": \"k\", \"value\": \"{long}\"}}"),
        "/call scratchpad_get {\"key\": \"k\"}".to_string(),
        "and then?".to_string(),
    ];
    for text in &turns {
        let run = engine
            .submit(tenant, &session, Message::user(text.as_str()))
            .await
            .unwrap();
        let ended = engine.wait_run(tenant, &run.id).await.unwrap();
        assert_eq!(ended.status, RunStatus::Completed, "{ended:?}");
    }
    let events = engine
        .store()
        .read_events(&session, 0, usize::MAX)
        .await
        .unwrap();
    let (seq, logged) = events
        .iter()
        .find_map(|e| match &e.body {
            EventBody::ToolReturned { content, .. } if content.len() > 1000 => {
                Some((e.seq, content.clone()))
            }
            _ => None,
        })
        .expect("the long result is logged");
    assert_eq!(logged, long, "logged whole, once");
    // Every request after it holds the same start and note, never the whole.
    let received = recording.received.lock().unwrap().clone();
    let previews: Vec<String> = received
        .iter()
        .flat_map(tool_results)
        .filter(|r| r.starts_with("0123456789"))
        .collect();
    assert!(previews.len() >= 2, "{} requests", received.len());
    assert!(previews.iter().all(|p| p == &previews[0]));
    let preview = &previews[0];
    assert!(preview.len() < 17_000, "{}", preview.len());
    assert!(
        preview.contains(&format!("event {seq} of this session")),
        "{preview}"
    );
    assert!(preview.contains("16384 of its 40000 bytes"), "{preview}");

    // The model reads on with the tool the note names.
    let run = engine
        .submit(
            tenant,
            &session,
            Message::user(format!(
                "/call tool_result_read {{\"seq\": {seq}, \"offset\": 16384, \"length\": 30}}"
            )),
        )
        .await
        .unwrap();
    engine.wait_run(tenant, &run.id).await.unwrap();
    let events = engine
        .store()
        .read_events(&session, 0, usize::MAX)
        .await
        .unwrap();
    let read = events
        .iter()
        .rev()
        .find_map(|e| match &e.body {
            EventBody::ToolReturned { content, .. } => Some(content.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        read,
        format!(
            "bytes 16384..16414 of 40000 (more from offset 16414):\n{}",
            &long[16384..16414]
        )
    );
    let run = engine
        .submit(
            tenant,
            &session,
            Message::user("/call tool_result_read {\"seq\": 1}"),
        )
        .await
        .unwrap();
    engine.wait_run(tenant, &run.id).await.unwrap();
    let events = engine
        .store()
        .read_events(&session, 0, usize::MAX)
        .await
        .unwrap();
    let refused = events.iter().rev().find_map(|e| match &e.body {
        EventBody::ToolReturned {
            content, is_error, ..
        } => Some((content.clone(), *is_error)),
        _ => None,
    });
    assert_eq!(
        refused,
        Some(("event 1 of this session is not a tool result".into(), true))
    );
}
