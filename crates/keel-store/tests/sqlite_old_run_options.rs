//! Runs queued by the keel before typed model controls kept `tool_choice` and
//! `response_format` as loose JSON in the run row's options; a keel that reads them typed
//! still reads those rows back, through `get_run` and through a claim, whichever form the
//! previous keel wrote (its server wrote the tagged form, its own tests a bare mode).

mod common;

use keel_core::{Message, ResponseFormat, RunId, RunStatus, TenantId, Timestamp, ToolChoice};
use keel_store::{RunRecord, SqliteOptions, SqliteStore, Store};

#[tokio::test]
async fn run_options_written_before_typed_controls_read_back_typed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    let tenant = TenantId::default_tenant();
    let mut runs = Vec::new();
    {
        let store = SqliteStore::open(SqliteOptions::new(&path)).unwrap();
        for n in 0..2u64 {
            // One session each: a claim takes one run per session.
            let session = common::session(&store, n + 1).await;
            let run = RunRecord {
                id: RunId::generate(2_000 + n, u128::from(n)),
                tenant: tenant.clone(),
                session,
                input: Message::user("go"),
                options: keel_core::RunOptions {
                    model: Some("openai/gpt-4o-mini".into()),
                    ..Default::default()
                },
                status: RunStatus::Queued,
                created_at: Timestamp::from_millis(2_000 + n as i64),
                output: None,
                error: None,
                cancel_requested: false,
                lease_owner: None,
                lease_until: None,
            };
            store.enqueue_run(&run).await.unwrap();
            runs.push(run.id);
        }
    }
    // The rows as the previous keel wrote them.
    let old = [
        r#"{"model":"openai/gpt-4o-mini","tool_choice":{"type":"tool","name":"weather"},"response_format":{"type":"json_schema","name":"forecast","schema":{"type":"object"},"strict":true}}"#,
        r#"{"model":"openai/gpt-4o-mini","tool_choice":"required","response_format":{"type":"json_object"}}"#,
    ];
    let conn = rusqlite::Connection::open(&path).unwrap();
    for (id, options) in runs.iter().zip(old) {
        let changed = conn
            .execute(
                "UPDATE runs SET options = ?1 WHERE id = ?2",
                (options, id.to_string()),
            )
            .unwrap();
        assert_eq!(changed, 1);
    }
    drop(conn);

    let store = SqliteStore::open(SqliteOptions::new(&path)).unwrap();
    let first = store.get_run(&tenant, &runs[0]).await.unwrap().unwrap();
    assert_eq!(
        first.options.tool_choice,
        Some(ToolChoice::Tool {
            name: "weather".into()
        })
    );
    assert_eq!(
        first.options.response_format,
        Some(ResponseFormat::JsonSchema {
            name: "forecast".into(),
            description: None,
            schema: serde_json::json!({"type": "object"}),
            strict: true,
        })
    );
    let claimed = store
        .claim_runs("node", Timestamp::from_millis(10_000), 60_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2, "both old rows are claimed: {claimed:?}");
    let second = claimed.iter().find(|r| r.id == runs[1]).unwrap();
    assert_eq!(second.options.tool_choice, Some(ToolChoice::Required));
    assert_eq!(
        second.options.response_format,
        Some(ResponseFormat::JsonObject)
    );
}
