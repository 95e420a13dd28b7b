//! Three `keel serve` nodes on one PostgreSQL store, as a deployment runs them: a node
//! SIGKILLed mid-run leaves no run behind (the survivors take its leases over and finish every
//! run, each tool effect once per idempotency key), a cancel sent to one node stops a run
//! another drives at once, a follower on one node sees another's events as they are logged,
//! and `reject` lets exactly one of three concurrent sends through. Against the real server;
//! skipped loudly without one (failed when `CI` is set).

mod support;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::http::Api;
use support::postgres::Schema;
use support::{KeelServer, ToolRecorder, sigkill};

/// Two parallel calls of the recording tool, then a reply: a run of three steps.
const TWO_CALLS: &str = "/call record {\"n\":1}\n/call record {\"n\":2}";

fn config(tool_url: &str, token_latency_ms: u64, engine: &str) -> String {
    format!(
        "{}\n[engine]\n{engine}\n",
        support::recording_agent_config(tool_url, token_latency_ms)
    )
}

/// Starts a session on `api`'s node and queues `input` there; returns (session, run).
async fn start_run(api: &Api, input: &str) -> (String, String) {
    let session = support::http::new_session(api).await;
    let run = api
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": input, "mode": "background"})),
        )
        .await;
    (session, run["id"].as_str().unwrap().to_string())
}

/// Waits until every run ended (asking `api`'s node), and returns how long that took.
async fn wait_all_ended(api: &Api, runs: &[(String, String)], limit: Duration) -> Duration {
    let started = Instant::now();
    let mut open: Vec<&String> = runs.iter().map(|(_, run)| run).collect();
    while !open.is_empty() {
        assert!(
            started.elapsed() < limit,
            "{} runs still open after {limit:?}, e.g. {}",
            open.len(),
            open[0]
        );
        let statuses: Vec<Value> = stream::iter(open.iter())
            .map(|run| async move { api.ok(Method::GET, &format!("/v1/runs/{run}"), None).await })
            .buffered(16)
            .collect()
            .await;
        open = open
            .into_iter()
            .zip(statuses)
            .filter(|(_, run)| matches!(run["status"].as_str(), Some("queued" | "running")))
            .map(|(id, _)| id)
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed()
}

/// Checks each session's log as any node reads it: contiguous seqs, its run completed once,
/// one result per tool call, every tool call applied once under its logged key.
async fn check_logs(api: &Api, runs: &[(String, String)], recorder: &ToolRecorder) {
    let applied = recorder.applied();
    for (session, run) in runs {
        let page = api
            .ok(
                Method::GET,
                &format!("/v1/sessions/{session}/events?limit=1000"),
                None,
            )
            .await;
        let events = page["data"].as_array().unwrap();
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["seq"].as_u64(), Some(i as u64 + 1), "{session}: {page}");
        }
        let count = |t: &str| events.iter().filter(|e| e["type"] == t).count();
        assert_eq!(count("run_completed"), 1, "{session} ({run}): {page}");
        assert_eq!(count("run_failed") + count("run_cancelled"), 0, "{page}");
        let calls: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "tool_called")
            .collect();
        assert_eq!(calls.len(), 2, "{page}");
        let mut results: HashMap<&str, usize> = HashMap::new();
        for e in events.iter().filter(|e| e["type"] == "tool_returned") {
            *results.entry(e["call_id"].as_str().unwrap()).or_default() += 1;
        }
        assert!(
            results.values().all(|&n| n == 1),
            "one result per call: {page}"
        );
        assert_eq!(results.len(), 2, "{page}");
        for call in calls {
            let key = format!("{session}:{}", call["seq"]);
            assert!(applied.contains_key(&key), "the call {key} took effect");
        }
    }
    let keys: HashSet<&String> = applied.keys().collect();
    assert_eq!(keys.len(), runs.len() * 2, "each call took effect once");
}

/// Starts `count` runs of two tool calls, spread over `apis` in turn.
async fn start_runs(apis: &[&Api], count: usize) -> Vec<(String, String)> {
    stream::iter(0..count)
        .map(|i| start_run(apis[i % apis.len()], TWO_CALLS))
        .buffered(16)
        .collect()
        .await
}

/// Waits until the tool has seen `at_least` calls in all.
async fn wait_for_calls(recorder: &ToolRecorder, at_least: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while recorder.seen().len() < at_least {
        assert!(Instant::now() < deadline, "the tool saw too few calls");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_survivors_finish_every_run_of_a_node_killed_mid_run_then_of_another() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let recorder = ToolRecorder::default();
    let url = recorder.start();
    // A short lease: a dead node's runs are taken over within seconds.
    let config = config(&url, 10, "lease_secs = 3\npoll_ms = 200");
    let homes = [
        schema.node(&config),
        schema.node(&config),
        schema.node(&config),
    ];
    let mut a = KeelServer::start(&homes[0], &[]);
    let key = a.admin_key.clone().unwrap();
    let mut b = KeelServer::start(&homes[1], &[]);
    let c = KeelServer::start(&homes[2], &[]);
    let (api_a, api_b, api_c) = (
        Api::new(&a, Some(&key)),
        Api::new(&b, Some(&key)),
        Api::new(&c, Some(&key)),
    );

    // 500 sessions, each with a run of three steps, spread over the three nodes; A is
    // killed once some runs (not all) called their tool.
    let runs = start_runs(&[&api_a, &api_b, &api_c], 500).await;
    wait_for_calls(&recorder, 150).await;
    sigkill(&mut a.child);
    let took = wait_all_ended(&api_b, &runs, Duration::from_secs(180)).await;
    eprintln!("after A was killed, every run ended within {took:?} (lease 3 s)");
    check_logs(&api_c, &runs, &recorder).await;

    // A comes back; now B dies mid-run.
    let a = KeelServer::start(&homes[0], &[]);
    let api_a = Api::new(&a, Some(&key));
    let seen = recorder.seen().len();
    let more = start_runs(&[&api_a, &api_b, &api_c], 150).await;
    wait_for_calls(&recorder, seen + 40).await;
    sigkill(&mut b.child);
    let took = wait_all_ended(&api_a, &more, Duration::from_secs(180)).await;
    eprintln!("after B was killed, every run ended within {took:?}");
    let all: Vec<_> = runs.into_iter().chain(more).collect();
    check_logs(&api_a, &all, &recorder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_sent_to_one_node_stops_the_run_another_drives_at_once() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    // A lease of ten minutes: the heartbeat (every 200 s) is not what carries the cancel.
    let config = config(
        "http://127.0.0.1:9/unused",
        100,
        "lease_secs = 600\npoll_ms = 200",
    );
    let (home_a, home_b) = (schema.node(&config), schema.node(&config));
    let a = KeelServer::start(&home_a, &[]);
    let key = a.admin_key.clone().unwrap();
    let b = KeelServer::start(&home_b, &[]);
    let (api_a, api_b) = (Api::new(&a, Some(&key)), Api::new(&b, Some(&key)));

    // A reply of 1,000 words at 100 ms each: longer than `finished_run` waits.
    let long = vec!["word"; 1000].join(" ");
    let (session, run) = start_run(&api_a, &long).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = api_b
            .ok(Method::GET, &format!("/v1/sessions/{session}/events"), None)
            .await;
        if page["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "model_called")
        {
            break;
        }
        assert!(Instant::now() < deadline, "the run never started: {page}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let asked = Instant::now();
    let (status, body) = api_b
        .call(Method::POST, &format!("/v1/runs/{run}/cancel"), None)
        .await;
    assert!(status.is_success(), "{status} {body}");
    let ended = support::http::finished_run(&api_b, &run).await;
    assert_eq!(ended["status"], "cancelled", "{ended}");
    eprintln!(
        "a cancel on B stopped the run on A after {:?}",
        asked.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_on_one_node_sees_another_nodes_events_as_they_are_logged() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    // Polls a minute apart: only the nodes' hints can bring the events sooner.
    let config = config(
        "http://127.0.0.1:9/unused",
        20,
        "lease_secs = 60\npoll_ms = 60000",
    );
    let (home_a, home_b) = (schema.node(&config), schema.node(&config));
    let a = KeelServer::start(&home_a, &[]);
    let key = a.admin_key.clone().unwrap();
    let b = KeelServer::start(&home_b, &[]);
    let (api_a, api_b) = (Api::new(&a, Some(&key)), Api::new(&b, Some(&key)));

    let session = support::http::new_session(&api_a).await;
    let mut events = api_b
        .stream(
            api_b
                .request(
                    Method::GET,
                    &format!("/v1/sessions/{session}/events?follow=true"),
                )
                .header("accept", "text/event-stream"),
        )
        .await;
    let started = Instant::now();
    api_a
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": "hello from a", "mode": "background"})),
        )
        .await;
    let mut seen = Vec::new();
    while let Some(event) = events.next().await {
        let event = event.json();
        seen.push(event["type"].as_str().unwrap_or("").to_string());
        if event["type"] == "run_completed" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "B's follower is waiting for a poll: {seen:?}"
        );
    }
    assert!(seen.contains(&"run_completed".to_string()), "{seen:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "B's follower waited for a poll: {seen:?}"
    );
    eprintln!("B followed A's run to its end in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_lets_exactly_one_of_three_concurrent_sends_through_across_nodes() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let config = config("http://127.0.0.1:9/unused", 20, "poll_ms = 200");
    let homes = [
        schema.node(&config),
        schema.node(&config),
        schema.node(&config),
    ];
    let a = KeelServer::start(&homes[0], &[]);
    let key = a.admin_key.clone().unwrap();
    let b = KeelServer::start(&homes[1], &[]);
    let c = KeelServer::start(&homes[2], &[]);
    let apis = [
        Api::new(&a, Some(&key)),
        Api::new(&b, Some(&key)),
        Api::new(&c, Some(&key)),
    ];
    for round in 0..20 {
        let session = support::http::new_session(&apis[round % 3]).await;
        let path = format!("/v1/sessions/{session}/messages");
        let sends = apis.iter().map(|api| {
            api.call(
                Method::POST,
                &path,
                Some(json!({"content": "hi", "mode": "background", "on_busy": "reject"})),
            )
        });
        let answers = futures::future::join_all(sends).await;
        let statuses: Vec<StatusCode> = answers.iter().map(|(s, _)| *s).collect();
        let accepted = statuses.iter().filter(|s| s.is_success()).count();
        let refused = statuses
            .iter()
            .filter(|s| **s == StatusCode::CONFLICT)
            .count();
        assert_eq!((accepted, refused), (1, 2), "round {round}: {answers:?}");
    }
}
