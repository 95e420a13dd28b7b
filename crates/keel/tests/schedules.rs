//! Schedules through `keel serve`: a session's one-off fires once and starts a run with its
//! note; one due while keel was SIGKILLed fires once after the restart; on PostgreSQL, three
//! nodes fire each of their sessions' schedules once though one node is killed; bad
//! schedules and other tenants' sessions are refused. An agent's schedule due while keel was
//! SIGKILLed starts one new session of the agent after the restart; on PostgreSQL, three nodes
//! (one killed) start one session per agent schedule; other tenants and unknown agents are
//! refused; the CLI manages both kinds, through a server and locally.

mod support;

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::http::{Api, admin, new_session};
use support::postgres::Schema;
use support::{KeelHome, KeelServer, sigkill};

/// The inputs of the session's runs that `note`'s schedule started, once `count` completed.
async fn fired(api: &Api, session: &str, note: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = support::http::session_events(api, session).await;
        let inputs: Vec<String> = events
            .iter()
            .filter(|e| e["type"] == "run_started")
            .map(|e| {
                e["input"]["parts"][0]["text"]
                    .as_str()
                    .unwrap_or("")
                    .to_string()
            })
            .filter(|text| text.starts_with(note))
            .collect();
        let completed = events
            .iter()
            .filter(|e| e["type"] == "run_completed")
            .count();
        if inputs.len() >= count && completed >= count {
            return inputs;
        }
        assert!(
            Instant::now() < deadline,
            "{session}: {} of {count} fired",
            inputs.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn schedule(api: &Api, session: &str, body: Value) -> (StatusCode, Value) {
    api.call(
        Method::POST,
        &format!("/v1/sessions/{session}/schedules"),
        Some(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_once_even_across_a_sigkill() {
    let (home, mut server) = support::http::start(0);
    let api = admin(&server);
    let session = new_session(&api).await;
    let (status, created) =
        schedule(&api, &session, json!({"after_secs": 1, "note": "ping"})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["schedule"]["kind"], "once");
    let inputs = fired(&api, &session, "ping", 1).await;
    assert!(
        inputs[0].contains(created["id"].as_str().unwrap()),
        "{inputs:?}"
    );
    let listed = api
        .ok(
            Method::GET,
            &format!("/v1/sessions/{session}/schedules"),
            None,
        )
        .await;
    assert_eq!(listed["data"][0]["fired"], 1, "{listed}");
    assert_eq!(listed["data"][0]["next_at"], Value::Null, "{listed}");

    // Due while keel is down: fires once after the restart.
    let (_, later) = schedule(&api, &session, json!({"after_secs": 2, "note": "pong"})).await;
    sigkill(&mut server.child);
    let due = Instant::now() + Duration::from_secs(2);
    while Instant::now() < due {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let server = KeelServer::start(&home, &[]);
    let key = std::fs::read_to_string(home.data_dir().join("admin.key")).unwrap();
    let api = Api::new(&server, Some(key.trim()));
    let inputs = fired(&api, &session, "pong", 1).await;
    assert_eq!(inputs.len(), 1, "{inputs:?}");
    let listed = api
        .ok(
            Method::GET,
            &format!("/v1/sessions/{session}/schedules"),
            None,
        )
        .await;
    let pong = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == later["id"])
        .unwrap();
    assert_eq!(pong["fired"], 1, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_schedules_and_other_tenants_sessions_are_refused() {
    let (_home, server) = support::http::start(0);
    let api = admin(&server);
    let session = new_session(&api).await;
    for body in [
        json!({"note": "x"}),
        json!({"at": "2026-12-01T09:00:00Z", "cron": "* * * * *", "note": "x"}),
        json!({"at": "tomorrow", "note": "x"}),
        json!({"cron": "0 9 * *", "note": "x"}),
        json!({"cron": "0 9 * * *", "timezone": "Mars/Olympus", "note": "x"}),
        json!({"after_secs": -1, "note": "x"}),
        json!({"after_secs": 9_223_372_036_854_775u64, "note": "x"}),
        json!({"at": "9999-12-31T23:59:59Z", "note": "x"}),
        json!({"at": "1900-01-01T00:00:00Z", "note": "x"}),
        json!({"after_secs": 1, "note": "x", "colour": "red"}),
    ] {
        let (status, answer) = schedule(&api, &session, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        assert!(answer["error"]["message"].as_str().is_some(), "{answer}");
    }
    let (_, neither) = schedule(&api, &session, json!({"note": "x"})).await;
    assert_eq!(neither["error"]["code"], "invalid_schedule", "{neither}");
    let (status, cron) = schedule(
        &api,
        &session,
        json!({"cron": "0 9 * * 1-5", "timezone": "Europe/Paris", "note": "standup"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{cron}");
    assert_eq!(
        cron["schedule"],
        json!({"kind": "cron", "expr": "0 9 * * 1-5", "timezone": "Europe/Paris"})
    );
    assert!(
        cron["next_at"].as_str().unwrap().ends_with(":00:00.000Z"),
        "{cron}"
    );

    // Another tenant sees none of it.
    let other = support::http::another_tenant(&api, &server).await;
    let path = format!("/v1/sessions/{session}/schedules");
    assert_eq!(
        other.call(Method::GET, &path, None).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, _) = schedule(&other, &session, json!({"after_secs": 1, "note": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let one = format!("{path}/{}", cron["id"].as_str().unwrap());
    assert_eq!(
        other.call(Method::DELETE, &one, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call(Method::DELETE, &one, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(Method::DELETE, &one, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.call(Method::DELETE, &format!("{path}/tmr_nope"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_postgres_fire_each_schedule_once_though_one_dies() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let config = format!(
        "{}\n[engine]\nlease_secs = 3\npoll_ms = 100\n",
        support::http::config(0)
    );
    let homes: Vec<KeelHome> = (0..3).map(|_| schema.node(&config)).collect();
    let mut a = KeelServer::start(&homes[0], &[]);
    let key = a.admin_key.clone().unwrap();
    let b = KeelServer::start(&homes[1], &[]);
    let c = KeelServer::start(&homes[2], &[]);
    let apis = [
        Api::new(&a, Some(&key)),
        Api::new(&b, Some(&key)),
        Api::new(&c, Some(&key)),
    ];
    let mut sessions = Vec::new();
    for i in 0..30 {
        let api = &apis[i % 3];
        let session = new_session(api).await;
        let (status, body) =
            schedule(api, &session, json!({"after_secs": 1, "note": "tick"})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        sessions.push(session);
    }
    sigkill(&mut a.child);
    for session in &sessions {
        let inputs = fired(&apis[1], session, "tick", 1).await;
        assert_eq!(inputs.len(), 1, "{session}: {inputs:?}");
    }
    // Nothing fires again: each one-off schedule is done.
    for session in &sessions {
        let listed = apis[2]
            .ok(
                Method::GET,
                &format!("/v1/sessions/{session}/schedules"),
                None,
            )
            .await;
        assert_eq!(listed["data"][0]["fired"], 1, "{listed}");
        assert_eq!(listed["data"][0]["next_at"], Value::Null, "{listed}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_adds_lists_and_removes_schedules_through_a_server_and_locally() {
    let (home, mut server) = support::http::start(0);
    let api = admin(&server);
    let session = new_session(&api).await;
    let keel = |args: &[&str]| {
        let out = home.run(args);
        let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };

    // The server holds the data directory: the CLI talks to it.
    let (ok, added, stderr) = keel(&[
        "schedules",
        "add",
        &session,
        "--cron",
        "0 9 * * 1-5",
        "--tz",
        "Europe/Paris",
        "--note",
        "standup",
    ]);
    assert!(ok, "{stderr}");
    assert!(added.starts_with("tmr_"), "{added}");
    assert!(
        added.contains("cron \"0 9 * * 1-5\" Europe/Paris  fired 0  standup"),
        "{added}"
    );
    let id = added.split_whitespace().next().unwrap().to_string();
    let (ok, listed, stderr) = keel(&["schedules", "list", &session]);
    assert!(ok, "{stderr}");
    let (ok, remote, stderr) = keel(&["schedules", "list", &session, "--server", &server.base]);
    assert!(ok, "{stderr}");
    assert_eq!(listed, remote);
    assert_eq!(listed.trim(), added.trim());

    // One way to say when, and only one.
    let (ok, _, stderr) = keel(&[
        "schedules",
        "add",
        &session,
        "--note",
        "x",
        "--after",
        "5",
        "--cron",
        "* * * * *",
    ]);
    assert!(!ok && stderr.contains("cannot be used with"), "{stderr}");
    let (ok, _, stderr) = keel(&[
        "schedules",
        "add",
        &session,
        "--note",
        "x",
        "--cron",
        "9 * *",
    ]);
    assert!(!ok && stderr.contains("5 fields"), "{stderr}");

    // Without a server: the embedded engine, the same schedule.
    server.terminate();
    let (ok, local, stderr) = keel(&["schedules", "list", &session]);
    assert!(ok, "{stderr}");
    assert_eq!(local.trim(), added.trim());
    let (ok, removed, stderr) = keel(&["schedules", "rm", &session, &id]);
    assert!(ok, "{stderr}");
    assert_eq!(removed.trim(), format!("deleted {id}"));
    let (ok, empty, stderr) = keel(&["schedules", "list", &session]);
    assert!(ok && empty.trim().is_empty(), "{empty} {stderr}");
    let (ok, _, stderr) = keel(&["schedules", "rm", &session, &id]);
    assert!(!ok && stderr.contains("not found"), "{stderr}");
}

/// The tenant's sessions (their ids) whose log has a run started with an input beginning with
/// `note`, once `count` of them have completed it (bounded).
async fn sessions_started_by(api: &Api, note: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = api.ok(Method::GET, "/v1/sessions?limit=200", None).await;
        let mut started = Vec::new();
        for session in listed["data"].as_array().unwrap() {
            let id = session["id"].as_str().unwrap();
            let events = support::http::session_events(api, id).await;
            let by_note = events.iter().any(|e| {
                e["type"] == "run_started"
                    && e["input"]["parts"][0]["text"]
                        .as_str()
                        .is_some_and(|t| t.starts_with(note))
            });
            let completed = events.iter().any(|e| e["type"] == "run_completed");
            if by_note && completed {
                started.push(id.to_string());
            }
        }
        if started.len() >= count {
            return started;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} sessions started by {note:?}",
            started.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn schedule_agent(api: &Api, agent: &str, body: Value) -> (StatusCode, Value) {
    api.call(
        Method::POST,
        &format!("/v1/agents/{agent}/schedules"),
        Some(body),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_schedule_due_while_keel_was_killed_starts_one_session_after_the_restart() {
    let (home, mut server) = support::http::start(0);
    let api = admin(&server);
    let (status, created) = schedule_agent(
        &api,
        "default",
        json!({"after_secs": 2, "note": "morning report"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        (&created["agent"], &created["session"]),
        (&json!("default"), &Value::Null),
        "{created}"
    );
    sigkill(&mut server.child);
    let due = Instant::now() + Duration::from_secs(3);
    while Instant::now() < due {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let server = KeelServer::start(&home, &[]);
    let key = std::fs::read_to_string(home.data_dir().join("admin.key")).unwrap();
    let api = Api::new(&server, Some(key.trim()));
    let started = sessions_started_by(&api, "morning report", 1).await;
    assert_eq!(started.len(), 1, "{started:?}");
    let session = api
        .ok(Method::GET, &format!("/v1/sessions/{}", started[0]), None)
        .await;
    assert_eq!(session["agent"], "default", "{session}");
    let inputs = fired(&api, &started[0], "morning report", 1).await;
    assert!(
        inputs[0].contains(created["id"].as_str().unwrap()),
        "{inputs:?}"
    );
    // Done: fired once, nothing more to come, and the one session only.
    let listed = api
        .ok(Method::GET, "/v1/agents/default/schedules", None)
        .await;
    assert_eq!(listed["data"][0]["fired"], 1, "{listed}");
    assert_eq!(listed["data"][0]["next_at"], Value::Null, "{listed}");
    let sessions = api.ok(Method::GET, "/v1/sessions", None).await;
    assert_eq!(sessions["data"].as_array().unwrap().len(), 1, "{sessions}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_schedules_refuse_bad_input_unknown_agents_and_other_tenants() {
    let (_home, server) = support::http::start(0);
    let api = admin(&server);
    for body in [
        json!({"note": "x"}),
        json!({"at": "tomorrow", "note": "x"}),
        json!({"cron": "0 9 * * *", "timezone": "Mars/Olympus", "note": "x"}),
        json!({"after_secs": 1, "note": "x", "session": "ses_x"}),
    ] {
        let (status, answer) = schedule_agent(&api, "default", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        assert!(answer["error"]["message"].as_str().is_some(), "{answer}");
    }
    let (status, answer) =
        schedule_agent(&api, "nobody", json!({"after_secs": 60, "note": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(
        api.call(Method::GET, "/v1/agents/nobody/schedules", None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, cron) = schedule_agent(
        &api,
        "default",
        json!({"cron": "0 9 * * 1-5", "timezone": "Europe/Paris", "note": "standup"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{cron}");
    let path = "/v1/agents/default/schedules";
    let one = format!("{path}/{}", cron["id"].as_str().unwrap());

    // Another tenant has an agent of its own named alike: it sees and touches none of these.
    let other = support::http::another_tenant(&api, &server).await;
    let (status, answer) = other.call(Method::GET, path, None).await;
    assert!(
        status == StatusCode::NOT_FOUND || answer["data"] == json!([]),
        "{status} {answer}"
    );
    assert_eq!(
        other.call(Method::DELETE, &one, None).await.0,
        StatusCode::NOT_FOUND
    );
    // A session's schedule is not the agent's, nor the agent's a session's.
    let session = new_session(&api).await;
    let (_, own) = schedule(&api, &session, json!({"after_secs": 3600, "note": "x"})).await;
    let wrong = format!("{path}/{}", own["id"].as_str().unwrap());
    assert_eq!(
        api.call(Method::DELETE, &wrong, None).await.0,
        StatusCode::NOT_FOUND
    );
    let wrong = format!(
        "/v1/sessions/{session}/schedules/{}",
        cron["id"].as_str().unwrap()
    );
    assert_eq!(
        api.call(Method::DELETE, &wrong, None).await.0,
        StatusCode::NOT_FOUND
    );
    let listed = api.ok(Method::GET, path, None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(
        api.call(Method::DELETE, &one, None).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call(Method::DELETE, &one, None).await.0,
        StatusCode::NOT_FOUND
    );

    // Archiving the agent deletes its schedules.
    let (status, _) =
        schedule_agent(&api, "default", json!({"after_secs": 3600, "note": "y"})).await;
    assert_eq!(status, StatusCode::CREATED);
    api.ok(Method::POST, "/v1/agents/default/archive", None)
        .await;
    let listed = api.ok(Method::GET, path, None).await;
    assert_eq!(listed["data"], json!([]), "{listed}");
    let (status, answer) =
        schedule_agent(&api, "default", json!({"after_secs": 60, "note": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_an_agents_schedules_through_a_server_and_locally() {
    let (home, mut server) = support::http::start(0);
    let keel = |args: &[&str]| {
        let out = home.run(args);
        let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };
    let (ok, added, stderr) = keel(&[
        "schedules",
        "add",
        "--agent",
        "default",
        "--after",
        "3600",
        "--note",
        "later",
    ]);
    assert!(ok, "{stderr}");
    assert!(
        added.starts_with("tmr_") && added.contains("later"),
        "{added}"
    );
    let id = added.split_whitespace().next().unwrap().to_string();
    let (ok, listed, stderr) = keel(&["schedules", "list", "--agent", "default"]);
    assert!(ok, "{stderr}");
    let (ok, remote, stderr) = keel(&[
        "schedules",
        "list",
        "--agent",
        "default",
        "--server",
        &server.base,
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(listed, remote);
    assert_eq!(listed.trim(), added.trim());
    let (ok, _, stderr) = keel(&["schedules", "list", "--agent", "nobody"]);
    assert!(!ok && stderr.contains("no agent \"nobody\""), "{stderr}");
    // A session and an agent at once, or rm with the wrong number of ids: refused.
    let (ok, _, stderr) = keel(&["schedules", "list", "ses_x", "--agent", "default"]);
    assert!(!ok && stderr.contains("cannot be used with"), "{stderr}");
    let (ok, _, stderr) = keel(&["schedules", "rm", "--agent", "default", "ses_x", &id]);
    assert!(
        !ok && stderr.contains("rm --agent NAME SCHEDULE"),
        "{stderr}"
    );

    // Without a server: the embedded engine, the same schedule.
    server.terminate();
    let (ok, local, stderr) = keel(&["schedules", "list", "--agent", "default"]);
    assert!(ok, "{stderr}");
    assert_eq!(local.trim(), added.trim());
    let (ok, removed, stderr) = keel(&["schedules", "rm", "--agent", "default", &id]);
    assert!(ok, "{stderr}");
    assert_eq!(removed.trim(), format!("deleted {id}"));
    let (ok, empty, stderr) = keel(&["schedules", "list", "--agent", "default"]);
    assert!(ok && empty.trim().is_empty(), "{empty} {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_postgres_start_one_session_per_agent_schedule_though_one_dies() {
    let Some(schema) = Schema::create().await else {
        return;
    };
    let config = format!(
        "{}\n[engine]\nlease_secs = 3\npoll_ms = 100\n",
        support::http::config(0)
    );
    let homes: Vec<KeelHome> = (0..3).map(|_| schema.node(&config)).collect();
    let mut a = KeelServer::start(&homes[0], &[]);
    let key = a.admin_key.clone().unwrap();
    let b = KeelServer::start(&homes[1], &[]);
    let c = KeelServer::start(&homes[2], &[]);
    let apis = [
        Api::new(&a, Some(&key)),
        Api::new(&b, Some(&key)),
        Api::new(&c, Some(&key)),
    ];
    const SCHEDULES: usize = 12;
    for i in 0..SCHEDULES {
        let (status, body) = schedule_agent(
            &apis[i % 3],
            "default",
            json!({"after_secs": 1, "note": format!("digest {i:02}")}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    sigkill(&mut a.child);
    // Each schedule started exactly one session, whichever node fired it.
    let started = sessions_started_by(&apis[1], "digest", SCHEDULES).await;
    assert_eq!(started.len(), SCHEDULES, "{started:?}");
    let listed = apis[2]
        .ok(Method::GET, "/v1/agents/default/schedules", None)
        .await;
    let schedules = listed["data"].as_array().unwrap();
    assert_eq!(schedules.len(), SCHEDULES, "{listed}");
    assert!(
        schedules
            .iter()
            .all(|s| s["fired"] == 1 && s["next_at"].is_null()),
        "{listed}"
    );
    let sessions = apis[2]
        .ok(Method::GET, "/v1/sessions?limit=200", None)
        .await;
    assert_eq!(
        sessions["data"].as_array().unwrap().len(),
        SCHEDULES,
        "{sessions}"
    );
}
