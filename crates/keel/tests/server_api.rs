//! End-to-end tests of `keel serve`: the real binary on a free loopback port, driven over HTTP
//! — every endpoint, the three send modes, SSE streaming and resuming with Last-Event-ID,
//! double-texting, metrics, OpenAPI, and graceful shutdown.

mod support;

use std::collections::HashSet;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::http::{Api, admin, config, finished_run, new_session, start};
use support::{KeelHome, KeelServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_sessions_and_runs_through_every_endpoint() {
    let (home, server) = start(0);
    let api = admin(&server);

    // agents: create, get, list, new version, archive
    let created = api
        .call(
            Method::POST,
            "/v1/agents",
            Some(json!({"name": "helper", "model": "scripted/echo", "instructions": "Be kind."})),
        )
        .await;
    assert_eq!(created.0, StatusCode::CREATED, "{}", created.1);
    assert_eq!(created.1["version"], 1);
    let again = api
        .call(
            Method::POST,
            "/v1/agents",
            Some(json!({"name": "helper", "model": "scripted/echo"})),
        )
        .await;
    assert_eq!(again.0, StatusCode::CONFLICT);
    let v2 = api
        .ok(
            Method::PUT,
            "/v1/agents/helper",
            Some(json!({"model": "scripted/echo", "instructions": "Be brief."})),
        )
        .await;
    assert_eq!(
        (v2["version"].as_u64(), v2["id"].clone()),
        (Some(2), created.1["id"].clone())
    );
    let got = api.ok(Method::GET, "/v1/agents/helper", None).await;
    assert_eq!(got["instructions"], "Be brief.");
    let names = |list: &Value| -> Vec<String> {
        list["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&api.ok(Method::GET, "/v1/agents", None).await),
        ["default", "helper"]
    );

    // sessions pin the version they started with
    let pinned = api
        .ok(
            Method::POST,
            "/v1/sessions",
            Some(json!({"agent": "helper", "metadata": {"team": "red"}})),
        )
        .await;
    assert_eq!(pinned["agent_version"], 2);
    let (status, _) = api
        .call(Method::POST, "/v1/agents/helper/archive", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        names(&api.ok(Method::GET, "/v1/agents", None).await),
        ["default"]
    );

    // wait mode: the finished run with its output and usage
    let session = new_session(&api).await;
    let run = api
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": "hello there"})),
        )
        .await;
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"], "echo: hello there");
    assert!(run["usage"]["output_tokens"].as_u64().unwrap() > 0, "{run}");

    // background mode: 202, then poll
    let (status, queued) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": "later", "mode": "background"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let done = finished_run(&api, queued["id"].as_str().unwrap()).await;
    assert_eq!(
        (done["status"].as_str(), done["output"].as_str()),
        (Some("completed"), Some("echo: later"))
    );

    // stream mode: created, started, deltas, tool call and result, completed with usage
    let req = api
        .request(Method::POST, &format!("/v1/sessions/{session}/messages"))
        .json(&json!({"content": "/call scratchpad_set {\"key\": \"k\", \"value\": \"v\"}", "mode": "stream"}));
    let mut stream = api.stream(req).await;
    let mut names_seen = Vec::new();
    let mut text = String::new();
    let mut last = None;
    while let Some(event) = stream.next().await {
        if event.event == "text.delta" {
            text += event.json()["text"].as_str().unwrap();
        }
        names_seen.push(event.event.clone());
        last = Some(event);
    }
    let last = last.expect("events");
    assert_eq!(
        names_seen[..2],
        ["run.created", "run.started"],
        "{names_seen:?}"
    );
    let call = names_seen
        .iter()
        .position(|n| n == "tool.call")
        .expect("a tool call");
    let result = names_seen
        .iter()
        .position(|n| n == "tool.result")
        .expect("a tool result");
    assert!(
        call < result && result < names_seen.len() - 1,
        "{names_seen:?}"
    );
    assert_eq!(last.event, "run.completed");
    let finished = last.json();
    assert!(finished["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(!text.is_empty(), "text deltas carried the reply");

    // the session's summary and its log
    let summary = api
        .ok(Method::GET, &format!("/v1/sessions/{session}"), None)
        .await;
    assert_eq!(summary["status"], "idle");
    assert_eq!(summary["runs_finished"], 3);
    assert!(summary["message_count"].as_u64().unwrap() >= 6, "{summary}");
    assert!(summary["usage"]["output_tokens"].as_u64().unwrap() > 0);
    let last_seq = summary["last_seq"].as_u64().unwrap();
    let page = api
        .ok(
            Method::GET,
            &format!("/v1/sessions/{session}/events?after=0&limit=3"),
            None,
        )
        .await;
    let seqs: Vec<u64> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!(page["data"][0]["type"], "session_started");
    let rest = api
        .ok(
            Method::GET,
            &format!("/v1/sessions/{session}/events?after=3&limit=1000"),
            None,
        )
        .await;
    assert_eq!(rest["next_after"].as_u64(), Some(last_seq));

    // listing: filters and cursor pagination
    let list = api.ok(Method::GET, "/v1/sessions?limit=1", None).await;
    assert_eq!(list["data"][0]["id"], session.as_str(), "newest first");
    let cursor = list["next_cursor"].as_str().expect("a next page");
    let next = api
        .ok(
            Method::GET,
            &format!("/v1/sessions?limit=1&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(next["data"][0]["id"], pinned["id"]);
    assert!(next["next_cursor"].is_null());
    let red = api
        .ok(Method::GET, "/v1/sessions?metadata=team%3Dred", None)
        .await;
    assert_eq!(red["data"].as_array().unwrap().len(), 1);
    let by_agent = api
        .ok(Method::GET, "/v1/sessions?agent=helper&status=idle", None)
        .await;
    assert_eq!(by_agent["data"][0]["id"], pinned["id"]);
    let busy = api.ok(Method::GET, "/v1/sessions?status=busy", None).await;
    assert_eq!(busy["data"].as_array().unwrap().len(), 0);

    // cancel: a finished run stays as it was
    let run_id = run["id"].as_str().unwrap();
    let cancelled = api
        .ok(Method::POST, &format!("/v1/runs/{run_id}/cancel"), None)
        .await;
    assert_eq!(cancelled["status"], "completed");

    // delete
    let (status, _) = api
        .call(Method::DELETE, &format!("/v1/sessions/{session}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, gone) = api
        .call(Method::GET, &format!("/v1/sessions/{session}"), None)
        .await;
    assert_eq!(
        (status, gone["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("session_not_found"))
    );
    let (status, _) = api
        .call(Method::GET, &format!("/v1/runs/{run_id}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // operations
    assert_eq!(api.ok(Method::GET, "/healthz", None).await["status"], "ok");
    assert_eq!(
        api.ok(Method::GET, "/readyz", None).await["status"],
        "ready"
    );
    let metrics = api
        .request(Method::GET, "/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains(r#"keel_http_requests_total{method="POST",route="/v1/sessions/{id}/messages",status="200"}"#), "{metrics}");
    assert!(metrics.contains("keel_http_request_duration_seconds_bucket"));
    assert!(
        metrics.contains(r#"keel_runs_finished_total{status="completed"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("keel_steps_total 4"),
        "three runs (a background one too), one with a tool call: {metrics}"
    );
    // The session with runs was deleted above (its runs with it): the queue is empty.
    assert!(metrics.contains("# TYPE keel_runs gauge"), "{metrics}");
    assert!(!metrics.contains("keel_runs{"), "{metrics}");
    drop(home);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_served_and_documented() {
    let (_home, server) = start(0);
    let api = admin(&server);
    let doc = api.ok(Method::GET, "/openapi.json", None).await;
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = 0;
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            documented += 1;
            let concrete = path
                .replace("{id}", "ses_00000000000000000000000000")
                .replace("{name}", "nobody")
                .replace("{prefix}", "kk_nobody");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, body) = api.call(method.clone(), &concrete, Some(json!({}))).await;
            assert_ne!(
                body["error"]["code"], "route_not_found",
                "{method} {path} is documented but not served"
            );
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
            assert!(
                !status.is_server_error(),
                "{method} {path}: {status} {body}"
            );
        }
    }
    assert_eq!(
        documented,
        keel_server::routes::ROUTES.len(),
        "every route is in /openapi.json"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_resumes_with_last_event_id_without_missing_or_repeating() {
    let (_home, server) = start(1);
    let api = admin(&server);
    let session = new_session(&api).await;
    for i in 0..3 {
        api.ok(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": format!("first {i}"), "mode": "background"})),
        )
        .await;
    }
    let follow = |last: Option<String>| {
        let mut req = api
            .request(
                Method::GET,
                &format!("/v1/sessions/{session}/events?follow=true"),
            )
            .header("accept", "text/event-stream");
        if let Some(last) = last {
            req = req.header("last-event-id", last);
        }
        req
    };
    let mut seen: Vec<u64> = Vec::new();
    let mut stream = api.stream(follow(None)).await;
    // Take a few events, then drop the connection mid-run.
    while seen.len() < 5 {
        let event = stream.next().await.expect("event");
        seen.push(event.id.as_deref().unwrap().parse().unwrap());
    }
    drop(stream);
    // More input while nobody listens.
    let mut last_run = String::new();
    for i in 0..3 {
        let run = api
            .ok(
                Method::POST,
                &format!("/v1/sessions/{session}/messages"),
                Some(json!({"content": format!("second {i}"), "mode": "background"})),
            )
            .await;
        last_run = run["id"].as_str().unwrap().to_string();
    }
    let mut stream = api
        .stream(follow(Some(seen.last().unwrap().to_string())))
        .await;
    let mut completed_last = false;
    while !completed_last {
        let event = stream.next().await.expect("event");
        seen.push(event.id.as_deref().unwrap().parse().unwrap());
        completed_last =
            event.event == "run_completed" && event.json()["run_id"] == last_run.as_str();
    }
    let expected: Vec<u64> = (1..=*seen.last().unwrap()).collect();
    assert_eq!(seen, expected, "every seq once, in order");
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len());
    let summary = api
        .ok(Method::GET, &format!("/v1/sessions/{session}"), None)
        .await;
    assert_eq!(
        summary["last_seq"].as_u64(),
        seen.last().copied(),
        "the stream reached the log's end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn double_texting_rejects_enqueues_or_interrupts() {
    // Slow replies keep the first run busy while the others arrive.
    let (_home, server) = start(200);
    let api = admin(&server);
    let session = new_session(&api).await;
    let path = format!("/v1/sessions/{session}/messages");
    let long = "a b c d e f g h i j k l m n o p q r s t u v w x y z";
    let first = api
        .ok(
            Method::POST,
            &path,
            Some(json!({"content": long, "mode": "background"})),
        )
        .await;
    let (status, refused) = api
        .call(
            Method::POST,
            &path,
            Some(json!({"content": "no", "on_busy": "reject"})),
        )
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("session_busy")),
        "{refused}"
    );
    let queued = api
        .ok(
            Method::POST,
            &path,
            Some(json!({"content": "queued", "mode": "background"})),
        )
        .await;
    let urgent = api
        .ok(
            Method::POST,
            &path,
            Some(json!({"content": "urgent", "on_busy": "interrupt"})),
        )
        .await;
    assert_eq!(
        (urgent["status"].as_str(), urgent["output"].as_str()),
        (Some("completed"), Some("echo: urgent")),
        "{urgent}"
    );
    for run in [&first, &queued] {
        let ended = finished_run(&api, run["id"].as_str().unwrap()).await;
        assert_eq!(ended["status"], "cancelled", "{ended}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_and_exits_zero_and_runs_resume_at_next_start() {
    let (home, mut server) = start(0);
    let api = admin(&server);
    let session = new_session(&api).await;
    api.ok(
        Method::POST,
        &format!("/v1/sessions/{session}/messages"),
        Some(json!({"content": "before"})),
    )
    .await;
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    let stopped = std::net::TcpStream::connect(server.addr());
    assert!(stopped.is_err(), "the port no longer accepts");

    let key = std::fs::read_to_string(home.data_dir().join("admin.key")).unwrap();
    assert_eq!(key.trim(), server.admin_key.as_deref().unwrap());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(home.data_dir().join("admin.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the admin key is readable by its owner only"
        );
    }
    let again = KeelServer::start(&home, &[]);
    assert_eq!(
        again.admin_key, None,
        "the key is printed on the first start only"
    );
    let api = Api::new(&again, Some(key.trim()));
    let summary = api
        .ok(Method::GET, &format!("/v1/sessions/{session}"), None)
        .await;
    assert_eq!(summary["runs_finished"], 1);
}

#[test]
fn no_auth_is_refused_on_a_non_loopback_address() {
    let home = KeelHome::new(&config(0));
    let out = home.run(&["serve", "--listen", "0.0.0.0:0", "--no-auth"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to serve 0.0.0.0:0 without auth"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_chat_and_sessions_talk_to_a_running_server() {
    let (home, server) = start(0);
    // `keel chat --server` while the server holds the data directory's lock; the key comes
    // from <data_dir>/admin.key.
    let mut chat = home
        .command(&["chat", "--server", &server.base])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = chat.stdin.take().unwrap();
        stdin.write_all(b"hello over http\n/exit\n").unwrap();
    }
    let out = support::wait_with_timeout(chat, std::time::Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("echo: hello over http"), "{stdout}");

    let list = home.json(&["sessions", "list", "--json", "--server", &server.base]);
    let session = list[0]["id"].as_str().unwrap().to_string();
    let shown = home.json(&[
        "sessions",
        "show",
        &session,
        "--json",
        "--server",
        &server.base,
    ]);
    assert_eq!(shown["runs_finished"], 1);
    let out = home.run(&["sessions", "events", &session, "--server", &server.base]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("run_completed"));

    let refused = home.run(&[
        "sessions",
        "list",
        "--server",
        &server.base,
        "--api-key",
        "kk_0.bad",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("401"));
}
