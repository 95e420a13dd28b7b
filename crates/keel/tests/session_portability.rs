//! A session carried between two keel deployments in the `keel.session/1` format: exported
//! from one `keel serve` (its own data dir) with turns, a scratchpad value, a pending schedule
//! and a memory record of its own namespace (not the tenant's shared one), imported into a
//! second one, where the log, scratchpad, schedule and record match, the
//! chain verifies and the conversation goes on; a run waiting for approval is approved there
//! and its call made once. Every export follows `docs/session-format.schema.json`. Damaged
//! files, an unknown version and a session that exists are refused with nothing written;
//! another tenant's session is a 404.

mod support;

use keel_testkit::tool_endpoint::ToolEndpoint;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::http::{
    Api, admin, another_tenant, new_session, send_until_waiting, session_events, turn,
};
use support::{KeelHome, KeelServer};

/// The scripted model with both scratchpad tools.
const CONFIG: &str = r#"
[providers.scripted]
kind = "scripted"
token_latency_ms = 0

[[agents]]
name = "default"
model = "scripted/echo"
tools = [{ name = "scratchpad_set", kind = "builtin" }, { name = "scratchpad_get", kind = "builtin" }]
"#;

async fn export(api: &Api, session: &str) -> (StatusCode, String, String) {
    let resp = api
        .request(Method::GET, &format!("/v1/sessions/{session}/export"))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let kind = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, resp.text().await.unwrap())
}

async fn import(api: &Api, text: &str) -> (StatusCode, Value) {
    let resp = api
        .request(Method::POST, "/v1/sessions/import")
        .header("content-type", "application/x-ndjson")
        .body(text.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Checks every line against the checked-in JSON Schema and the kinds the spec describes.
fn follows_the_schema(text: &str) {
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(docs.join("session-format.schema.json")).unwrap(),
    )
    .unwrap();
    let spec = std::fs::read_to_string(docs.join("session-format.md")).unwrap();
    for (i, line) in lines(text).iter().enumerate() {
        let problem =
            support::schema::violation(&schema, &schema, line, &format!("line {}", i + 1));
        assert_eq!(problem, None, "{line}");
        if let Some(kind) = line["kind"].as_str() {
            assert!(
                spec.contains(&format!("\"kind\": \"{kind}\"")),
                "the spec shows {kind} lines"
            );
        }
    }
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A source server holding a session with two turns (one setting the scratchpad) and a
/// schedule due in a day; returns it with its export.
async fn source() -> (KeelHome, KeelServer, String, Value, String) {
    let home = KeelHome::new(CONFIG);
    let server = KeelServer::start(&home, &[]);
    let api = admin(&server);
    let session = new_session(&api).await;
    turn(&api, &session, "hello there").await;
    let run = turn(
        &api,
        &session,
        r#"/call scratchpad_set {"key": "colour", "value": "blue"}"#,
    )
    .await;
    assert_eq!(run["status"], "completed", "{run}");
    let schedule = api
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/schedules"),
            Some(json!({"after_secs": 86_400, "note": "check in tomorrow"})),
        )
        .await;
    for (namespace, text) in [
        (format!("session:{session}"), "Ann takes her coffee black"),
        ("user:ann".to_string(), "shared by all of Ann's sessions"),
    ] {
        api.ok(
            Method::POST,
            &format!("/v1/memory/{namespace}/records"),
            Some(json!({"text": text, "metadata": {"from": "chat"}})),
        )
        .await;
    }
    let (status, kind, text) = export(&api, &session).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(kind, "application/x-ndjson");
    (home, server, session, schedule, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moves_to_another_keel_and_goes_on_there() {
    let (_home, server, session, schedule, text) = source().await;
    let api = admin(&server);
    let exported = lines(&text);
    assert_eq!(exported[0]["format"], "keel.session");
    assert_eq!(exported[0]["version"], 1);
    assert_eq!(exported[0]["session"]["id"], session.as_str());
    assert_eq!(exported[0]["session"]["agent"]["name"], "default");
    assert!(
        exported
            .iter()
            .any(|l| l == &json!({"kind": "scratchpad", "key": "colour", "value": "blue"}))
    );
    assert_eq!(exported.last().unwrap()["kind"], "end");
    let memory: Vec<&Value> = exported.iter().filter(|l| l["kind"] == "memory").collect();
    assert_eq!(memory.len(), 1, "only the session's own namespace: {text}");
    assert_eq!(memory[0]["namespace"], format!("session:{session}"));
    assert_eq!(memory[0]["text"], "Ann takes her coffee black");
    follows_the_schema(&text);
    let source_events = session_events(&api, &session).await;

    let home = KeelHome::new(CONFIG);
    let target = KeelServer::start(&home, &[]);
    let there = admin(&target);
    // Through the CLI: `keel sessions export` from the source, `import` into the target.
    let out = home.run(&[
        "sessions",
        "export",
        &session,
        "--server",
        &server.base,
        "--api-key",
        server.admin_key.as_deref().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lines(&String::from_utf8_lossy(&out.stdout))[1..],
        exported[1..]
    );
    let file = home.path().join("s.jsonl");
    std::fs::write(&file, &out.stdout).unwrap();
    let out = home.run(&["sessions", "import", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), session);

    assert_eq!(
        session_events(&there, &session).await,
        source_events,
        "the log is the same"
    );
    let report = there
        .ok(Method::GET, &format!("/v1/sessions/{session}/verify"), None)
        .await;
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["events"], source_events.len());
    let listed = there
        .ok(
            Method::GET,
            &format!("/v1/sessions/{session}/schedules"),
            None,
        )
        .await;
    assert_eq!(
        listed["data"],
        json!([schedule]),
        "the schedule came along as it was"
    );
    let record = there
        .ok(
            Method::GET,
            &format!(
                "/v1/memory/session:{session}/records/{}",
                memory[0]["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(record["text"], "Ann takes her coffee black");
    assert_eq!(record["metadata"], json!({"from": "chat"}));
    let found = there
        .ok(
            Method::POST,
            &format!("/v1/memory/session:{session}/search"),
            Some(json!({"query": "how does Ann take her coffee?"})),
        )
        .await;
    assert_eq!(found["data"].as_array().unwrap().len(), 1, "{found}");
    let (_, _, again) = export(&there, &session).await;
    assert_eq!(
        lines(&again)[1..],
        exported[1..],
        "the target exports the same lines"
    );

    // The conversation goes on there, with the scratchpad value it carried.
    let run = turn(
        &there,
        &session,
        r#"/call scratchpad_get {"key": "colour"}"#,
    )
    .await;
    assert_eq!(run["status"], "completed", "{run}");
    let after = session_events(&there, &session).await;
    assert!(
        after[source_events.len()..]
            .iter()
            .any(|e| e["type"] == "tool_returned" && e.to_string().contains("blue")),
        "{after:?}"
    );
    let report = there
        .ok(Method::GET, &format!("/v1/sessions/{session}/verify"), None)
        .await;
    assert_eq!(report["intact"], true, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_exports_and_duplicates_are_refused_with_nothing_written() {
    let (_home, server, session, _, text) = source().await;
    let api = admin(&server);
    let other = another_tenant(&api, &server).await;
    let (status, _, body) = export(&other, &session).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another tenant's session: {body}"
    );

    let home = KeelHome::new(CONFIG);
    let target = KeelServer::start(&home, &[]);
    let there = admin(&target);
    let all: Vec<&str> = text.lines().collect();
    let edited_seq = lines(&text)
        .iter()
        .find(|l| l["kind"] == "event" && l["type"] == "run_started")
        .unwrap()["seq"]
        .as_u64()
        .unwrap();
    let cases = [
        (
            "truncated",
            all[..all.len() - 1].join("\n"),
            "truncated".to_string(),
        ),
        (
            "cut mid-line",
            text[..text.len() / 2].to_string(),
            "line".to_string(),
        ),
        (
            "an edited event",
            text.replacen("hello there", "hello thera", 1),
            format!("the hash chain breaks at seq {edited_seq}"),
        ),
        (
            "an unknown version",
            text.replacen("\"version\":1", "\"version\":2", 1),
            "version 2".to_string(),
        ),
        (
            "a memory record of another namespace",
            text.replacen(
                &format!("\"namespace\":\"session:{session}\""),
                "\"namespace\":\"user:ann\"",
                1,
            ),
            "a session carries only its own".to_string(),
        ),
        (
            "a missing seq",
            all.iter()
                .filter(|l| !l.contains("\"seq\":2,"))
                .copied()
                .collect::<Vec<_>>()
                .join("\n"),
            "seq 3 where seq 2 belongs".to_string(),
        ),
    ];
    for (what, body, expected) in &cases {
        let (status, answer) = import(&there, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected.as_str()), "{what}: {message}");
    }
    let (status, _) = there
        .call(Method::GET, &format!("/v1/sessions/{session}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was imported");

    // The CLI says the same.
    let file = home.path().join("bad.jsonl");
    std::fs::write(&file, &cases[2].1).unwrap();
    let out = home.run(&["sessions", "import", file.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&cases[2].2), "{stderr}");

    let (status, created) = import(&there, &text).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, answer) = import(&there, &text).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("session {session}")), "{message}");
    let (status, answer) = import(&another_tenant(&there, &target).await, &text).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "the id is taken on this deployment: {answer}"
    );
    assert_eq!(
        session_events(&there, &session).await.len(),
        lines(&text).iter().filter(|l| l["kind"] == "event").count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_over_the_body_limit_imports_within_the_import_limit() {
    let home = KeelHome::new(CONFIG);
    let server = KeelServer::start(&home, &[]);
    let api = admin(&server);
    let session = new_session(&api).await;
    // Six turns of about 200 KB each way: a log of some 2.4 MB, over the 1 MiB body limit.
    let long = "lorem ipsum dolor sit amet ".repeat(8_000);
    for _ in 0..6 {
        let run = turn(&api, &session, &long).await;
        assert_eq!(run["status"], "completed", "{run}");
    }
    let (status, _, text) = export(&api, &session).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.len() > 2 << 20, "{} bytes", text.len());

    // Within the import limit (256 MiB by default), though over --body-limit.
    let there_home = KeelHome::new(CONFIG);
    let target = KeelServer::start(&there_home, &[]);
    let there = admin(&target);
    let (status, created) = import(&there, &text).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        session_events(&there, &session).await.len(),
        lines(&text).iter().filter(|l| l["kind"] == "event").count()
    );
    // Other requests keep the body limit.
    let big = "x".repeat(1_100_000);
    let (status, answer) = there
        .call(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": big})),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");

    // Over a lower import limit: 413 naming the setting, nothing written.
    let small = KeelHome::new(&format!("{CONFIG}\n[server]\nimport_limit_mb = 1\n"));
    let strict = KeelServer::start(&small, &[]);
    let strict_api = admin(&strict);
    let (status, answer) = import(&strict_api, &text).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("import_limit_mb"), "{message}");
    // A new connection: the server closes the one whose body it did not read.
    let (status, _) = admin(&strict)
        .call(Method::GET, &format!("/v1/sessions/{session}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was imported");
}

/// A data directory whose agent has a tool at `url` that needs a person's approval.
fn approving_home(url: &str) -> KeelHome {
    KeelHome::new(&format!(
        r#"
[providers.scripted]
kind = "scripted"

[[agents]]
name = "default"
model = "scripted/echo"
tools = [{{ name = "send_mail", kind = "http", url = "{url}", allow_private = ["127.0.0.0/8"], require_approval = true, description = "sends a mail" }}]
"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_waiting_for_approval_is_approved_on_the_other_keel() {
    let endpoint = ToolEndpoint::start().await.unwrap();
    let url = endpoint.url("/echo");
    let home = approving_home(&url);
    let server = KeelServer::start(&home, &[]);
    let api = admin(&server);
    let session = new_session(&api).await;
    let (run, call) = send_until_waiting(&api, &session, "/call send_mail {\"to\": \"ann\"}").await;
    let (status, _, text) = export(&api, &session).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    follows_the_schema(&text);
    let carried: Vec<Value> = lines(&text)
        .into_iter()
        .filter(|l| l["kind"] == "run")
        .collect();
    assert_eq!(carried.len(), 1, "{text}");
    assert_eq!(
        (carried[0]["id"].as_str(), carried[0]["status"].as_str()),
        (Some(run.as_str()), Some("waiting"))
    );

    let home = approving_home(&url);
    let target = KeelServer::start(&home, &[]);
    let there = admin(&target);
    let (status, created) = import(&there, &text).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let waiting = there
        .ok(Method::GET, &format!("/v1/runs/{run}"), None)
        .await;
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    assert_eq!(waiting["pending_approvals"][0]["call_id"], call.as_str());
    assert!(
        endpoint.requests().is_empty(),
        "nothing was sent before the approval"
    );

    there
        .ok(
            Method::POST,
            &format!("/v1/runs/{run}/resume"),
            Some(json!({"decisions": [{"call_id": call, "decision": "approve"}]})),
        )
        .await;
    let done = support::http::finished_run(&there, &run).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        endpoint.requests().len(),
        1,
        "the approved call was made once"
    );
    let report = there
        .ok(Method::GET, &format!("/v1/sessions/{session}/verify"), None)
        .await;
    assert_eq!(report["intact"], true, "{report}");
}
