//! `keel sessions` is one command over two places where sessions live: the local store, and a
//! running `keel serve` (`--server URL`). Asked about the same sessions, both print alike.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::http::{admin, finished_run, new_session, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_print_alike_from_the_store_and_from_a_server() {
    let (home, server) = start(0);
    let api = admin(&server);
    let session = new_session(&api).await;
    let (status, queued) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": "hello from both sides", "mode": "background"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{queued}");
    finished_run(&api, queued["id"].as_str().unwrap()).await;

    // The local store is read without the data directory's lock, which the server holds.
    let stdout = |args: &[&str]| {
        let out = home.run(args);
        assert!(
            out.status.success(),
            "keel {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let both = |args: &[&str]| {
        let remote: Vec<&str> = args
            .iter()
            .copied()
            .chain(["--server", &server.base])
            .collect();
        (stdout(args), stdout(&remote))
    };

    let (local, remote) = both(&["sessions", "events", &session]);
    assert_eq!(local, remote, "the events print alike");
    assert!(local.contains("you: hello from both sides"), "{local}");
    assert!(
        local.contains("agent: echo: hello from both sides"),
        "{local}"
    );
    assert!(
        local.contains("[scripted/echo, scripted]"),
        "who served: {local}"
    );
    assert!(local.contains("run_completed"), "{local}");

    let (local, remote) = both(&["sessions", "list"]);
    assert_eq!(local, remote, "the list prints alike");
    assert!(local.contains(&session), "{local}");

    let (local, remote) = both(&["sessions", "events", &session, "--json", "--after", "1"]);
    let parse = |text: &str| -> Vec<Value> {
        text.lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    };
    assert_eq!(parse(&local), parse(&remote), "the same events as JSON");
    assert_eq!(parse(&local)[0]["seq"], 2, "--after 1 starts at seq 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fork_and_context_through_a_server_and_through_the_local_engine() {
    let (home, mut server) = start(0);
    let api = admin(&server);
    let session = new_session(&api).await;
    for text in ["first", "second"] {
        let queued = api
            .ok(
                Method::POST,
                &format!("/v1/sessions/{session}/messages"),
                Some(json!({"content": text, "mode": "background"})),
            )
            .await;
        finished_run(&api, queued["id"].as_str().unwrap()).await;
    }
    let events = home.events(&session);
    let seq_of = |kind: &str| -> Vec<u64> {
        events
            .iter()
            .filter(|e| e["type"] == kind)
            .map(|e| e["seq"].as_u64().unwrap())
            .collect()
    };
    let (calls, ends) = (seq_of("model_called"), seq_of("run_completed"));
    let keel = |args: &[&str]| {
        let out = home.run(args);
        let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    };

    // The data directory is held by the server: both ways talk to it, and print alike.
    let at = calls[1].to_string();
    let (ok, local, stderr) = keel(&["sessions", "context", &session, "--at", &at]);
    assert!(ok, "{stderr}");
    let (ok, remote, stderr) = keel(&[
        "sessions",
        "context",
        &session,
        "--at",
        &at,
        "--server",
        &server.base,
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(local, remote);
    assert!(
        local.starts_with(&format!("at seq {at}  run run_")),
        "{local}"
    );
    assert!(
        local.contains("you: first\nagent: echo: first\nyou: second\n"),
        "{local}"
    );
    assert!(local.contains("tools: scratchpad_set"), "{local}");

    let (ok, fork, stderr) = keel(&["sessions", "fork", &session, "--at", &ends[0].to_string()]);
    assert!(ok, "{stderr}");
    let fork = fork.trim();
    let view = api
        .ok(Method::GET, &format!("/v1/sessions/{fork}"), None)
        .await;
    assert_eq!(view["last_seq"], ends[0], "{view}");

    let (ok, _, stderr) = keel(&["sessions", "fork", &session, "--at", &at]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("fork at seq {} or {}", ends[0], ends[1])),
        "{stderr}"
    );

    // Without a server: the local engine over the data directory.
    server.terminate();
    let (ok, fork, stderr) = keel(&["sessions", "fork", &session, "--json"]);
    assert!(ok, "{stderr}");
    let fork: Value = serde_json::from_str(&fork).unwrap();
    assert_eq!(fork["last_seq"], ends[1]);
    let (ok, now, stderr) = keel(&[
        "sessions",
        "context",
        fork["id"].as_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let now: Value = serde_json::from_str(&now).unwrap();
    assert_eq!(now["at_seq"], ends[1]);
    assert_eq!(now["run_id"], Value::Null);
    assert_eq!(now["request"]["messages"].as_array().unwrap().len(), 4);
    let (ok, _, stderr) = keel(&["sessions", "context", &session, "--at", "0"]);
    assert!(!ok);
    assert!(stderr.contains("at_seq must be between 1 and"), "{stderr}");
}
