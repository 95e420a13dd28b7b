//! MCP tools end to end against the real `keel serve` and real servers from the registries
//! (`support/mcp.rs`): `mcp-server-time` over stdio (its tools reach the model, the allowlist
//! holds, approval rules apply, keel's stop stops it and a restarted keel starts it again on
//! first use); `server-everything` over stdio (killed mid-call: an error result and the run goes
//! on, then restarted; a slow call: an error result at the timeout) and over streamable HTTP
//! behind an auth check (the secret from keel's environment, the idempotency key in `_meta`, the
//! SSRF guard). The model is the scripted one, which calls what `/call NAME {json}` says. Then
//! the MCP conformance suite's client scenarios that apply to keel's client (`initialize`,
//! `tools_call`, `sse-retry`; not elicitation nor OAuth, which keel does not do) against
//! `keel mcp`, which runs the same client.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use support::http::{Api, finished_run, new_session, session_events};
use support::mcp::{conformance_suite, everything_server, time_server};
use support::{KeelHome, KeelServer};

/// A data directory whose `default` agent, on the scripted model, has `tools` (TOML).
fn home(tools: &str) -> KeelHome {
    KeelHome::new(&format!(
        r#"
[providers.scripted]
kind = "scripted"

[[agents]]
name = "default"
model = "scripted/echo"
tools = {tools}
"#
    ))
}

/// Sends `text` and waits for the run to end.
async fn send(api: &Api, session: &str, text: &str) -> Value {
    let run = api
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": text, "mode": "background"})),
        )
        .await;
    finished_run(api, run["id"].as_str().unwrap()).await
}

/// The tool results logged in the session, in order: (content, is_error).
async fn tool_results(api: &Api, session: &str) -> Vec<(String, bool)> {
    session_events(api, session)
        .await
        .iter()
        .filter(|e| e["type"] == "tool_returned")
        .map(|e| {
            (
                e["content"].as_str().unwrap_or_default().to_string(),
                e["is_error"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// The names of the tools the model is offered now (`GET /v1/sessions/{id}/context`).
async fn offered_tools(api: &Api, session: &str) -> Vec<String> {
    let context = api
        .ok(
            Method::GET,
            &format!("/v1/sessions/{session}/context"),
            None,
        )
        .await;
    context["request"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {context}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

/// A shell command line that records its pid in `pidfile`, then becomes `program args…`.
fn recording_pid(pidfile: &Path, program: &str, args: &[&str]) -> String {
    let mut line = format!("echo $$ > '{}'; exec {program}", pidfile.display());
    for arg in args {
        line.push_str(&format!(" '{arg}'"));
    }
    line
}

/// The pid in `pidfile` once it differs from `not`, within a bounded wait.
fn pid_in(pidfile: &Path, not: Option<i32>) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(pid) = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .filter(|pid| Some(*pid) != not)
        {
            return pid;
        }
        assert!(Instant::now() < deadline, "no new pid in {pidfile:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn alive(pid: i32) -> bool {
    // Signal 0 checks the process exists; a zombie (exited, not yet reaped) counts as gone.
    let status = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let exists = unsafe { libc::kill(pid, 0) == 0 };
    exists && !status.contains(") Z ")
}

fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(pid) {
        assert!(Instant::now() < deadline, "process {pid} still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdio_time_server_answers_the_model_and_a_restarted_keel_starts_it_again() {
    let Some(site) = time_server() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let pidfile = scratch.path().join("time.pid");
    let home = home(&format!(
        r#"[
  {{ name = "time", kind = "mcp", command = "sh", args = ["-c", "{}"], env = {{ PYTHONPATH = "{}" }}, allowed_tools = ["get_current_time"] }},
  {{ name = "clock", kind = "mcp", command = "python3", args = ["-m", "mcp_server_time"], env = {{ PYTHONPATH = "{}" }}, require_approval = true }},
]"#,
        recording_pid(&pidfile, "python3", &["-m", "mcp_server_time"]),
        site.display(),
        site.display(),
    ));
    let mut server = KeelServer::start(&home, &[]);
    let key = server.admin_key.clone().unwrap();
    let api = Api::new(&server, Some(&key));
    let session = new_session(&api).await;

    // Discovery: the allowed tool of `time`, every tool of `clock`, sorted; the server is
    // started for it.
    let offered = offered_tools(&api, &session).await;
    assert_eq!(
        offered,
        [
            "time__get_current_time",
            "clock__convert_time",
            "clock__get_current_time"
        ],
        "{offered:?}"
    );
    let first_pid = pid_in(&pidfile, None);

    // The result reaches the model; a tool left out of the allowlist is refused.
    let run = send(
        &api,
        &session,
        "/call time__get_current_time {\"timezone\": \"UTC\"}\n/call time__convert_time {\"source_timezone\": \"UTC\", \"time\": \"12:00\", \"target_timezone\": \"Asia/Tokyo\"}",
    )
    .await;
    assert_eq!(run["status"], "completed", "{run}");
    let results = tool_results(&api, &session).await;
    assert_eq!(results.len(), 2, "{results:?}");
    let (now, is_error) = &results[0];
    assert!(!is_error, "{now}");
    let now: Value = serde_json::from_str(now).unwrap_or_else(|e| panic!("{e}: {now}"));
    assert_eq!(now["timezone"], "UTC", "{now}");
    assert!(
        run["output"].as_str().unwrap().contains("UTC"),
        "the model saw the result: {run}"
    );
    let (refused, is_error) = &results[1];
    assert!(*is_error && refused.contains("allowed_tools"), "{refused}");

    // A server with `require_approval` makes the call wait for a person.
    let sent = api
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": "/call clock__get_current_time {\"timezone\": \"Europe/Paris\"}", "mode": "wait"})),
        )
        .await;
    assert_eq!(sent["status"], "waiting", "{sent}");
    let call = sent["pending_approvals"][0]["call_id"].as_str().unwrap();
    let decided = api
        .ok(
            Method::POST,
            &format!("/v1/runs/{}/resume", sent["id"].as_str().unwrap()),
            Some(json!({"decisions": [{"call_id": call, "decision": "approve"}]})),
        )
        .await;
    let done = finished_run(&api, decided["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(
        done["output"].as_str().unwrap().contains("Europe/Paris"),
        "{done}"
    );

    // keel's stop stops the servers it started.
    assert!(alive(first_pid));
    assert!(server.terminate().success());
    wait_gone(first_pid);
    drop(server);

    // A restarted keel starts the server again when a run needs it.
    let server = KeelServer::start(&home, &[]);
    let api = Api::new(&server, Some(&key));
    let run = send(
        &api,
        &session,
        "/call time__get_current_time {\"timezone\": \"Asia/Tokyo\"}",
    )
    .await;
    assert_eq!(run["status"], "completed", "{run}");
    assert!(
        run["output"].as_str().unwrap().contains("Asia/Tokyo"),
        "{run}"
    );
    let second_pid = pid_in(&pidfile, Some(first_pid));
    assert!(alive(second_pid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_server_killed_mid_call_or_too_slow_gives_an_error_result_and_the_run_goes_on() {
    let Some(index) = everything_server() else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let pidfile = scratch.path().join("everything.pid");
    let index = index.display().to_string();
    let home = home(&format!(
        r#"[{{ name = "everything", kind = "mcp", command = "sh", args = ["-c", "{}"], env = {{ KEEL_MCP_NOTE = "from keel.toml" }}, timeout_secs = 10 }}]"#,
        recording_pid(&pidfile, "node", &[&index, "stdio"]),
    ));
    let server = KeelServer::start(&home, &[]);
    let api = Api::new(&server, server.admin_key.as_deref());
    let session = new_session(&api).await;

    // The server gets its own `env` and nothing else of keel's environment but the basics.
    let run = send(&api, &session, "/call everything__get-env").await;
    assert_eq!(run["status"], "completed", "{run}");
    let (env, is_error) = tool_results(&api, &session).await.remove(0);
    assert!(!is_error, "{env}");
    let env: Value = serde_json::from_str(&env).unwrap_or_else(|e| panic!("{e}: {env}"));
    assert_eq!(env["KEEL_MCP_NOTE"], "from keel.toml", "{env}");
    assert!(
        env.get("KEEL_MODEL_CACHE").is_none(),
        "keel's own variables stay out: {env}"
    );
    let first_pid = pid_in(&pidfile, None);

    // Killed in the middle of a long call: the model gets an error result, the run completes.
    let sent = api
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": "/call everything__trigger-long-running-operation {\"duration\": 15, \"steps\": 3}", "mode": "background"})),
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !session_events(&api, &session).await.iter().any(|e| {
        e["type"] == "tool_called" && e["name"] == "everything__trigger-long-running-operation"
    }) {
        assert!(Instant::now() < deadline, "the call never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unsafe { libc::kill(first_pid, libc::SIGKILL) };
    let run = finished_run(&api, sent["id"].as_str().unwrap()).await;
    assert_eq!(run["status"], "completed", "{run}");
    let (crashed, is_error) = tool_results(&api, &session).await.remove(1);
    assert!(
        is_error && crashed.contains("failed during the call"),
        "{crashed}"
    );

    // The next call starts the server again.
    let run = send(
        &api,
        &session,
        "/call everything__echo {\"message\": \"back again\"}",
    )
    .await;
    assert_eq!(run["status"], "completed", "{run}");
    let (echoed, is_error) = tool_results(&api, &session).await.remove(2);
    assert!(!is_error && echoed.contains("back again"), "{echoed}");
    let second_pid = pid_in(&pidfile, Some(first_pid));

    // A call slower than the server's timeout: an error result, the server stays up.
    let run = send(
        &api,
        &session,
        "/call everything__trigger-long-running-operation {\"duration\": 60, \"steps\": 2}",
    )
    .await;
    assert_eq!(run["status"], "completed", "{run}");
    let (slow, is_error) = tool_results(&api, &session).await.remove(3);
    assert!(is_error && slow.contains("within 10 s"), "{slow}");
    assert!(alive(second_pid));
    let run = send(
        &api,
        &session,
        "/call everything__echo {\"message\": \"still here\"}",
    )
    .await;
    assert!(
        run["output"].as_str().unwrap().contains("still here"),
        "{run}"
    );
    assert_eq!(pid_in(&pidfile, None), second_pid);
}

/// What the auth proxy saw: each request's `Authorization` header and JSON body.
type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A reverse proxy to `upstream` that refuses requests without `Authorization: Bearer
/// <token>` (401) and records what it passes on.
async fn auth_proxy(upstream: String, token: &'static str, seen: Seen) -> String {
    use axum::body::Body;
    use axum::extract::Request;
    use axum::response::Response;
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |request: Request| {
        let (client, upstream, seen) = (client.clone(), upstream.clone(), seen.clone());
        async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let auth = parts
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string());
            seen.lock().unwrap().push((
                auth.clone(),
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            ));
            if auth.as_deref() != Some(&format!("Bearer {token}")) {
                return Response::builder().status(401).body(Body::empty()).unwrap();
            }
            let mut forwarded = client.request(parts.method, format!("{upstream}{}", parts.uri));
            for (name, value) in &parts.headers {
                if name != "host" && name != "content-length" {
                    forwarded = forwarded.header(name, value);
                }
            }
            let answer = forwarded.body(body).send().await.unwrap();
            let mut response = Response::builder().status(answer.status());
            for (name, value) in answer.headers() {
                response = response.header(name, value);
            }
            response
                .body(Body::from_stream(answer.bytes_stream()))
                .unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/mcp")
}

/// Starts `node index streamableHttp` on a free port; the child is killed when dropped.
async fn everything_over_http(index: &Path) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = tokio::process::Command::new("node")
        .arg(index)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start node");
    let deadline = Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "server-everything did not listen"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (child, format!("http://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamable_http_server_gets_the_secret_from_the_environment_and_the_key_in_meta() {
    let Some(index) = everything_server() else {
        return;
    };
    let (_upstream, upstream_url) = everything_over_http(&index).await;
    let seen: Seen = Arc::default();
    let url = auth_proxy(upstream_url, "s3cret-token", seen.clone()).await;
    let home = home(&format!(
        r#"[
  {{ name = "remote", kind = "mcp", url = "{url}", auth = {{ env = "KEEL_TEST_MCP_TOKEN" }}, allow_private = ["127.0.0.0/8"], allowed_tools = ["echo", "get-sum"] }},
  {{ name = "unguarded", kind = "mcp", url = "{url}", auth = {{ env = "KEEL_TEST_MCP_TOKEN" }} }},
]"#
    ));
    let server = KeelServer::start_with_env(&home, &[], &[("KEEL_TEST_MCP_TOKEN", "s3cret-token")]);
    let api = Api::new(&server, server.admin_key.as_deref());
    let session = new_session(&api).await;

    // Listed over HTTP, behind the auth check; the server on a loopback address is refused to
    // the definition that does not allow the range.
    let offered = offered_tools(&api, &session).await;
    assert_eq!(offered, ["remote__echo", "remote__get-sum"], "{offered:?}");

    let run = send(
        &api,
        &session,
        "/call remote__get-sum {\"a\": 2, \"b\": 40}\n/call unguarded__echo {\"message\": \"x\"}",
    )
    .await;
    assert_eq!(run["status"], "completed", "{run}");
    let results = tool_results(&api, &session).await;
    assert!(!results[0].1 && results[0].0.contains("42"), "{results:?}");
    assert!(
        results[1].1 && results[1].0.contains("allow_private"),
        "{results:?}"
    );

    // Every request carried the secret; the call carried keel's idempotency key in `_meta`.
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .all(|(auth, _)| auth.as_deref() == Some("Bearer s3cret-token")),
        "{seen:?}"
    );
    let key = session_events(&api, &session)
        .await
        .into_iter()
        .find(|e| e["type"] == "tool_called" && e["name"] == "remote__get-sum")
        .unwrap()["idempotency_key"]
        .clone();
    let call = seen
        .iter()
        .map(|(_, body)| body)
        .find(|body| body["method"] == "tools/call")
        .unwrap_or_else(|| panic!("no tools/call in {seen:?}"));
    assert_eq!(call["params"]["name"], "get-sum", "{call}");
    assert_eq!(
        call["params"]["_meta"]["io.keel/idempotency-key"], key,
        "{call}"
    );
}

#[test]
fn keel_s_mcp_client_passes_the_conformance_suite_s_client_scenarios() {
    let Some((node, suite)) = conformance_suite() else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    // The suite runs the client with the test server's URL as its last argument and the
    // scenario in MCP_CONFORMANCE_SCENARIO.
    let client = scratch.path().join("client.sh");
    let keel = env!("CARGO_BIN_EXE_keel");
    let private = "--allow-private 127.0.0.0/8 --allow-private ::1/128";
    std::fs::write(
        &client,
        format!(
            r#"#!/bin/sh
for url; do :; done
case "$MCP_CONFORMANCE_SCENARIO" in
  tools_call) exec '{keel}' mcp call {private} add_numbers '{{"a": 2, "b": 3}}' "$url" ;;
  sse-retry) exec '{keel}' mcp call {private} test_reconnection '{{}}' "$url" ;;
  *) exec '{keel}' mcp tools {private} "$url" ;;
esac
"#
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o755)).unwrap();
    for scenario in ["initialize", "tools_call", "sse-retry"] {
        let out = std::process::Command::new(&node)
            .arg(&suite)
            .args(["client", "--command"])
            .arg(&client)
            .args(["--scenario", scenario])
            .current_dir(scratch.path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run the conformance suite");
        // The suite reports on stderr.
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && report.contains("OVERALL: PASSED"),
            "{scenario}: {report}"
        );
    }
}
