//! Two engines on one store, as two nodes share one database: what one logs, the other —
//! which still holds the session in memory from before — takes into account instead of failing
//! on the log having moved (SQLite gives no hints between handles, so nothing but the append's
//! conflict tells it).

mod common;

use keel_core::{EventBody, Message};
use keel_engine::{Engine, EngineConfig};
use keel_models::providers::scripted::ScriptedConfig;
use keel_store::Store;

#[tokio::test]
async fn items_added_through_a_node_with_a_stale_session_land_after_the_other_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let models = || common::scripted(ScriptedConfig::default());
    let a = common::engine(&dir, models(), EngineConfig::default(), Vec::new(), false).await;
    let b = Engine::new(a.store.clone(), models(), EngineConfig::default());
    let session = common::session(&a.engine, &a.tenant).await;

    // A holds the session in memory; B logs to it; A adds more on its stale copy.
    a.engine
        .add_messages(&a.tenant, &session, vec![Message::user("one, through a")])
        .await
        .unwrap();
    b.add_messages(&a.tenant, &session, vec![Message::user("two, through b")])
        .await
        .unwrap();
    let seq = a
        .engine
        .add_messages(&a.tenant, &session, vec![Message::user("three, through a")])
        .await
        .expect("A reads the session again and adds after B's");

    let events = a.store.read_events(&session, 0, 100).await.unwrap();
    let added: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::MessagesAdded { messages } => Some(messages[0].text_content()),
            _ => None,
        })
        .collect();
    assert_eq!(
        added,
        ["one, through a", "two, through b", "three, through a"]
    );
    assert_eq!(seq, events.last().unwrap().seq);
}
