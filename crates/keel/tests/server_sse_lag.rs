//! SSE followers that lag still see every update and the end. The server runs in-process over
//! real HTTP on loopback with an engine whose live broadcast keeps two updates: a turn of
//! twelve tool calls logs and broadcasts its calls back to back, and a long reply streams
//! hundreds of deltas, so every follower falls behind and must catch up from the store.

mod support;

use std::sync::Arc;

use keel_core::{AgentDef, Limits, TenantId, ToolDef, ToolKind};
use keel_engine::{Engine, EngineConfig, ModelRegistry};
use keel_models::providers::scripted::{ScriptedClient, ScriptedConfig};
use keel_store::{SqliteOptions, SqliteStore};
use reqwest::Method;
use serde_json::{Value, json};
use support::SseEvent;
use support::http::{Api, new_session};

/// Tool calls of the tool turn.
const CALLS: usize = 12;

async fn lagging_server(dir: &tempfile::TempDir) -> Api {
    let store =
        Arc::new(SqliteStore::open(SqliteOptions::new(dir.path().join("keel.db"))).unwrap());
    let models = ModelRegistry::new().with(
        "scripted",
        Arc::new(ScriptedClient::new(ScriptedConfig::default())),
    );
    let config = EngineConfig {
        updates_capacity: 2,
        ..EngineConfig::default()
    };
    let engine = Engine::new(store, models, config);
    let agent = AgentDef {
        id: keel_engine::clock::new_agent_id(),
        name: "default".into(),
        version: 0,
        instructions: String::new(),
        model: "scripted/echo".into(),
        tools: vec![ToolDef {
            name: "clock_now".into(),
            description: String::new(),
            parameters: Value::Null,
            strict: None,
            require_approval: Default::default(),
            kind: ToolKind::Builtin,
        }],
        limits: Limits::default(),
        memory_blocks: Vec::new(),
        compaction: Default::default(),
        memory: Default::default(),
    };
    engine
        .put_agent(&TenantId::default_tenant(), agent)
        .await
        .unwrap();
    engine.start().await.unwrap();
    let key = keel_server::bootstrap(&engine, dir.path())
        .await
        .unwrap()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(keel_server::serve(
        listener,
        engine,
        keel_server::ServerConfig::default(),
        std::future::pending(),
    ));
    Api {
        http: reqwest::Client::new(),
        base,
        key: Some(key),
    }
}

fn turns() -> [(String, usize); 2] {
    let long: String = (0..400).map(|i| format!("w{i} ")).collect();
    let tools = format!("use the clock{}", "\n/call clock_now {}".repeat(CALLS));
    [(long, 0), (tools, CALLS)]
}

/// The logged replies' text per step of `run`, from the session's log.
async fn replies(api: &Api, session: &str, run: &str) -> Vec<(u64, String)> {
    let page = api
        .ok(
            Method::GET,
            &format!("/v1/sessions/{session}/events?limit=1000"),
            None,
        )
        .await;
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "model_replied" && e["run_id"] == run)
        .map(|e| {
            let text = e["message"]["parts"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<String>();
            (e["step"].as_u64().unwrap(), text)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_stream_sends_every_update_in_order_and_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let api = lagging_server(&dir).await;
    let session = new_session(&api).await;
    for (content, calls) in turns() {
        let req = api
            .request(Method::POST, &format!("/v1/sessions/{session}/messages"))
            .json(&json!({"content": content, "mode": "stream"}));
        let mut stream = api.stream(req).await;
        let mut events: Vec<SseEvent> = Vec::new();
        while let Some(event) = stream.next().await {
            events.push(event);
        }
        let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(names[..2], ["run.created", "run.started"], "{names:?}");
        assert_eq!(
            names.last(),
            Some(&"run.completed"),
            "the stream ends with the run"
        );
        let run = events[0].json()["id"].as_str().unwrap().to_string();
        let called: Vec<String> = events
            .iter()
            .filter(|e| e.event == "tool.call")
            .map(|e| e.json()["call_id"].as_str().unwrap().to_string())
            .collect();
        let returned: Vec<String> = events
            .iter()
            .filter(|e| e.event == "tool.result")
            .map(|e| e.json()["call_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(called.len(), calls, "every tool call: {names:?}");
        assert_eq!(returned, called, "every tool result, in order");
        let mut text: std::collections::BTreeMap<u64, String> = Default::default();
        for e in &events {
            let data = e.json();
            match e.event.as_str() {
                "text.delta" => text
                    .entry(data["step"].as_u64().unwrap())
                    .or_default()
                    .push_str(data["text"].as_str().unwrap()),
                // Nothing fails over here: what was sent stays true.
                "text.reset" => panic!("text taken back: {data}"),
                _ => {}
            }
        }
        let logged = replies(&api, &session, &run).await;
        assert!(!logged.is_empty());
        for (step, reply) in logged {
            assert_eq!(
                text.get(&step).map(String::as_str).unwrap_or(""),
                reply,
                "the deltas of step {step} add up to its reply"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_log_follower_sends_every_event_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let api = lagging_server(&dir).await;
    let session = new_session(&api).await;
    let req = api
        .request(
            Method::GET,
            &format!("/v1/sessions/{session}/events?follow=true"),
        )
        .header("accept", "text/event-stream");
    let mut follow = api.stream(req).await;
    let mut last_run = String::new();
    for (content, _) in turns() {
        let run = api
            .ok(
                Method::POST,
                &format!("/v1/sessions/{session}/messages"),
                Some(json!({"content": content, "mode": "wait"})),
            )
            .await;
        assert_eq!(run["status"], "completed", "{run}");
        last_run = run["id"].as_str().unwrap().to_string();
    }
    let mut seq = 0;
    loop {
        let event = follow.next().await.expect("the follow stream ended");
        let data = event.json();
        assert_eq!(
            data["seq"].as_u64(),
            Some(seq + 1),
            "no event missed or repeated"
        );
        assert_eq!(event.id.as_deref(), Some((seq + 1).to_string().as_str()));
        assert_eq!(event.event, data["type"].as_str().unwrap());
        seq += 1;
        if data["type"] == "run_completed" && data["run_id"] == last_run.as_str() {
            break;
        }
    }
}
