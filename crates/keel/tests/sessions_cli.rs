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
