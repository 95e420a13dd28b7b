//! keel nodes on PostgreSQL through lost connections: under a steady load of turns, keel's
//! connections are cut again and again (`pg_terminate_backend`), then the database refuses
//! them for a while (its role cannot log in: an outage, without stopping the machine's
//! server). The nodes reconnect by themselves, `/readyz` says not ready while the outage
//! lasts and ready after, every turn they acknowledged is in its session's log, and every run
//! started ends, completed, with contiguous seqs. Against the real server; skipped loudly
//! without one (failed when `CI` is set).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::KeelServer;
use support::http::Api;
use support::postgres::{self, Schema};

/// A login role of the test's own, which keel's nodes connect as, so that the test cuts only
/// their connections; dropped (after the schema, which the test drops first) when it ends.
struct Role {
    name: String,
}

impl Role {
    async fn create(name: String) -> Role {
        let client = postgres::connect().await.unwrap();
        client
            .batch_execute(&format!("CREATE ROLE {name} LOGIN"))
            .await
            .unwrap();
        Role { name }
    }

    async fn sql(&self, sql: &str) {
        let client = postgres::connect().await.unwrap();
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Closes every connection keel's nodes have open.
    async fn cut(&self) {
        self.sql(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{}'",
            self.name
        ))
        .await;
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let name = &self.name;
        postgres::execute_detached(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{name}'; \
             DROP ROLE IF EXISTS {name}"
        ));
    }
}

/// A turn a node acknowledged: its session, run and input.
struct Acknowledged {
    session: String,
    run: String,
    input: String,
}

/// Sends turns to `session` one after another until `stop`, keeping those acknowledged
/// (answered 200 with the run completed); a refusal (503 while the store is out of reach) is
/// not acknowledged, and the next turn is sent after a moment.
async fn send_turns(api: Arc<Api>, session: String, stop: Arc<AtomicBool>) -> Vec<Acknowledged> {
    let mut acknowledged = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let input = format!("turn {n} of {session}");
        let (status, body) = api
            .call(
                Method::POST,
                &format!("/v1/sessions/{session}/messages"),
                Some(json!({"content": input, "mode": "wait"})),
            )
            .await;
        if status == StatusCode::OK && body["status"] == "completed" {
            acknowledged.push(Acknowledged {
                session: session.clone(),
                run: body["id"].as_str().unwrap().to_string(),
                input,
            });
        } else {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    acknowledged
}

/// Polls `/readyz` on every node until each answers `want` (bounded).
async fn wait_ready(nodes: &[&KeelServer], want: StatusCode) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for node in nodes {
        loop {
            let status = http
                .get(node.url("/readyz"))
                .send()
                .await
                .map(|r| r.status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            if status == want {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz stayed {status}, not {want}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The session's log once no run of it is open: every `run_started` has its end (bounded).
async fn settled_log(api: &Api, session: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (status, page) = api
            .call(
                Method::GET,
                &format!("/v1/sessions/{session}/events?limit=1000"),
                None,
            )
            .await;
        if status == StatusCode::OK {
            let events = page["data"].as_array().unwrap().clone();
            let count = |types: &[&str]| {
                events
                    .iter()
                    .filter(|e| types.contains(&e["type"].as_str().unwrap_or("")))
                    .count()
            };
            let started = count(&["run_started"]);
            let ended = count(&["run_completed", "run_failed", "run_cancelled"]);
            // A run queued (its enqueue committed, its answer lost) makes the session busy.
            let busy = api
                .ok(Method::GET, "/v1/sessions?status=busy&limit=100", None)
                .await;
            let idle = !busy["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["id"] == session);
            if started == ended && idle {
                return events;
            }
        }
        assert!(Instant::now() < deadline, "{session} never settled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_ride_out_cut_connections_and_an_outage_losing_nothing_acknowledged() {
    let role = Role::create(format!(
        "keel_cut_{}",
        &keel_engine::clock::new_hex_id()[..12]
    ))
    .await;
    let Some(schema) = Schema::create().await else {
        return;
    };
    role.sql(&format!(
        "GRANT ALL ON SCHEMA {} TO {}",
        schema.name, role.name
    ))
    .await;
    let url = format!("postgres://{}@127.0.0.1:5432/test", role.name);
    let url = std::env::var("KEEL_TEST_PG_URL")
        .map(|given| given.replacen("postgres@", &format!("{}@", role.name), 1))
        .unwrap_or(url);
    let config = format!(
        "{}\n[engine]\nlease_secs = 3\npoll_ms = 200\n",
        support::http::config(2)
    );
    let store = "connect_timeout_secs = 2\npool_size = 8";
    let (home_a, home_b) = (
        schema.node_at(&url, &config, store),
        schema.node_at(&url, &config, store),
    );
    let a = KeelServer::start(&home_a, &[]);
    let key = a.admin_key.clone().unwrap();
    let b = KeelServer::start(&home_b, &[]);
    let apis = [
        Arc::new(Api::new(&a, Some(&key))),
        Arc::new(Api::new(&b, Some(&key))),
    ];

    // Ten sessions, half on each node, each sent turn after turn.
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for i in 0..10 {
        let api = apis[i % 2].clone();
        let session = support::http::new_session(&api).await;
        senders.push(tokio::spawn(send_turns(api, session, stop.clone())));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Connections cut again and again under load.
    for _ in 0..10 {
        role.cut().await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // An outage: no connection can be made; the nodes say they are not ready until it ends.
    role.sql(&format!("ALTER ROLE {} NOLOGIN", role.name)).await;
    role.cut().await;
    wait_ready(&[&a, &b], StatusCode::SERVICE_UNAVAILABLE).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    role.sql(&format!("ALTER ROLE {} LOGIN", role.name)).await;
    wait_ready(&[&a, &b], StatusCode::OK).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for sender in senders {
        acknowledged.extend(sender.await.unwrap());
    }
    assert!(
        acknowledged.len() >= 20,
        "too few turns got through: {}",
        acknowledged.len()
    );

    // Every session settles: each run started ended, completed, in contiguous seqs; and
    // every acknowledged turn is there with its reply.
    let sessions: std::collections::BTreeSet<&String> =
        acknowledged.iter().map(|t| &t.session).collect();
    for session in sessions {
        let events = settled_log(&apis[1], session).await;
        for (i, e) in events.iter().enumerate() {
            assert_eq!(
                e["seq"].as_u64(),
                Some(i as u64 + 1),
                "{session}: {events:?}"
            );
        }
        let failed = events.iter().filter(|e| e["type"] == "run_failed").count();
        assert_eq!(failed, 0, "{session}: {events:?}");
        for turn in acknowledged.iter().filter(|t| &t.session == session) {
            let of_run = |t: &str| {
                events
                    .iter()
                    .filter(|e| e["type"] == t && e["run_id"] == turn.run.as_str())
                    .count()
            };
            assert_eq!(of_run("run_started"), 1, "{}: {events:?}", turn.run);
            assert_eq!(of_run("run_completed"), 1, "{}: {events:?}", turn.run);
            let replied = events.iter().any(|e| {
                e["type"] == "model_replied"
                    && e["run_id"] == turn.run.as_str()
                    && e["message"]["parts"][0]["text"] == format!("echo: {}", turn.input)
            });
            assert!(replied, "{}: {events:?}", turn.run);
        }
    }
    eprintln!(
        "{} turns acknowledged through the cuts and the outage",
        acknowledged.len()
    );
}
