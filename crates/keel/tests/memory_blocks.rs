//! Memory blocks end to end, on a real `keel serve` and the real binary: the agent edits its
//! blocks with its tools (a scripted model asks for the calls) and each edit is an event of
//! its run with what the block held before and after; an edit through the API is logged the
//! same way (and told to the model); a fork holds blocks of its own; another tenant's blocks
//! are 404s; bad input is a 4xx with nothing stored; and a SIGKILL around an edit never loses
//! it or makes it twice.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::http::{Api, admin, another_tenant, send_until_waiting, session_events, turn};
use support::{KeelHome, KeelServer, kill_at_fault_point};

const CONFIG: &str = r#"
[providers.scripted]
kind = "scripted"

[[agents]]
name = "default"
model = "scripted/echo"
tools = [
    { name = "memory_block_read", kind = "builtin" },
    { name = "memory_block_append", kind = "builtin" },
    { name = "memory_block_replace", kind = "builtin" },
    { name = "memory_block_rewrite", kind = "builtin" },
    { name = "ask_human", kind = "builtin" },
]

[[agents.memory_blocks]]
label = "persona"
value = "I am keel's helper."
limit = 200

[[agents.memory_blocks]]
label = "user"
description = "What the user said about themselves."
limit = 60

[[agents.memory_blocks]]
label = "project"
value = "keel"
shared = true
"#;

fn start() -> (KeelHome, KeelServer) {
    let home = KeelHome::new(CONFIG);
    let server = KeelServer::start(&home, &[]);
    (home, server)
}

/// `/call` lines for the scripted model.
fn calls(calls: &[(&str, Value)]) -> String {
    let lines: Vec<String> = calls
        .iter()
        .map(|(name, args)| format!("/call {name} {args}"))
        .collect();
    lines.join("\n")
}

async fn new_session(api: &Api) -> String {
    let session = api
        .ok(
            Method::POST,
            "/v1/sessions",
            Some(json!({"agent": "default"})),
        )
        .await;
    session["id"].as_str().unwrap().to_string()
}

async fn block(api: &Api, session: &str, label: &str) -> Value {
    let path = format!("/v1/sessions/{session}/memory/blocks/{label}");
    api.ok(Method::GET, &path, None).await
}

async fn edits(api: &Api, session: &str) -> Vec<Value> {
    let events = session_events(api, session).await;
    events
        .into_iter()
        .filter(|e| e["type"] == "memory_block_edited")
        .collect()
}

/// Status and error code of a call that must fail.
async fn refused(
    api: &Api,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let (status, answer) = api.call(method.clone(), path, body).await;
    assert!(
        status.is_client_error(),
        "{method} {path} must be refused: {status} {answer}"
    );
    (status, answer["error"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_edits_its_blocks_with_tools_and_each_edit_is_an_event_of_its_run() {
    let (_home, server) = start();
    let api = admin(&server);
    let session = new_session(&api).await;
    let listed = api
        .ok(
            Method::GET,
            &format!("/v1/sessions/{session}/memory/blocks"),
            None,
        )
        .await;
    let labels: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["persona", "user", "project"], "declared order");
    assert_eq!(listed["data"][0]["value"], "I am keel's helper.");
    assert_eq!(listed["data"][0]["version"], 0);
    assert_eq!(
        listed["data"][1]["description"],
        "What the user said about themselves."
    );
    assert_eq!(listed["data"][2]["shared"], true);

    // Two edits in one step: the second reads what the first wrote.
    let run = turn(
        &api,
        &session,
        &calls(&[
            (
                "memory_block_append",
                json!({"label": "user", "text": "Ada, likes tea"}),
            ),
            (
                "memory_block_replace",
                json!({"label": "user", "old": "tea", "new": "green tea"}),
            ),
        ]),
    )
    .await;
    assert_eq!(run["status"], "completed", "{run}");
    let user = block(&api, &session, "user").await;
    assert_eq!(user["value"], "Ada, likes green tea");
    assert_eq!(user["version"], 2);
    let logged = edits(&api, &session).await;
    assert_eq!(logged.len(), 2, "{logged:#?}");
    for (edit, (before, after)) in logged.iter().zip([
        ("", "Ada, likes tea"),
        ("Ada, likes tea", "Ada, likes green tea"),
    ]) {
        assert_eq!(edit["run_id"], run["id"], "{edit}");
        assert_eq!(
            (
                edit["label"].as_str(),
                edit["before"].as_str(),
                edit["after"].as_str()
            ),
            (Some("user"), Some(before), Some(after))
        );
        assert_eq!(edit["by"], "agent");
    }
    // The tool's result states the new value.
    let events = session_events(&api, &session).await;
    let results: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "tool_returned")
        .collect();
    assert!(
        results[1]["content"]
            .as_str()
            .unwrap()
            .ends_with("now reads:\nAda, likes green tea"),
        "{}",
        results[1]
    );

    // Over the limit, an unknown label, `old` not there: error results, the run goes on and
    // nothing is written.
    let run = turn(
        &api,
        &session,
        &calls(&[
            (
                "memory_block_append",
                json!({"label": "user", "text": "x".repeat(60)}),
            ),
            (
                "memory_block_rewrite",
                json!({"label": "diary", "value": "x"}),
            ),
            (
                "memory_block_replace",
                json!({"label": "user", "old": "coffee", "new": "x"}),
            ),
        ]),
    )
    .await;
    assert_eq!(run["status"], "completed", "{run}");
    let events = session_events(&api, &session).await;
    let errors: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "tool_returned" && e["is_error"] == true)
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].contains("at most 60 characters"), "{}", errors[0]);
    assert!(errors[1].contains("no memory block diary"), "{}", errors[1]);
    assert!(
        errors[2].contains("does not contain \"coffee\""),
        "{}",
        errors[2]
    );
    assert_eq!(edits(&api, &session).await.len(), 2);
    assert_eq!(block(&api, &session, "user").await["version"], 2);

    // A shared block: written for the tenant, seen by another session of the agent.
    let run = turn(
        &api,
        &session,
        &calls(&[
            (
                "memory_block_rewrite",
                json!({"label": "project", "value": "keel, a runtime"}),
            ),
            ("memory_block_read", json!({"label": "persona"})),
        ]),
    )
    .await;
    assert_eq!(run["status"], "completed", "{run}");
    let shared = api.ok(Method::GET, "/v1/memory/blocks/project", None).await;
    assert_eq!(
        (shared["value"].as_str(), shared["version"].as_u64()),
        (Some("keel, a runtime"), Some(1))
    );
    let edit = edits(&api, &session).await.pop().unwrap();
    assert_eq!(
        (edit["shared"].as_bool(), edit["before"].as_str()),
        (Some(true), Some("keel"))
    );
    let history = api
        .ok(Method::GET, "/v1/memory/blocks/project/history", None)
        .await;
    let written = &history["data"][0];
    assert_eq!(history["data"].as_array().unwrap().len(), 1, "{history}");
    assert_eq!(
        (
            written["by"].as_str(),
            written["before"].as_str(),
            written["after"].as_str()
        ),
        (Some("agent"), Some("keel"), Some("keel, a runtime"))
    );
    assert_eq!(written["session_id"].as_str(), Some(session.as_str()));
    assert_eq!(written["run_id"], run["id"]);
    let other = new_session(&api).await;
    assert_eq!(
        block(&api, &other, "project").await["value"],
        "keel, a runtime"
    );
    assert_eq!(
        block(&api, &other, "user").await["value"],
        "",
        "a session's own blocks are its own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_edit_is_logged_like_the_agents_and_the_model_is_told_in_order() {
    let (_home, server) = start();
    let api = admin(&server);
    let session = new_session(&api).await;
    let path = format!("/v1/sessions/{session}/memory/blocks/user");
    let edited = api
        .ok(
            Method::PUT,
            &path,
            Some(json!({"value": "Bob, a gardener"})),
        )
        .await;
    assert_eq!(
        (edited["value"].as_str(), edited["version"].as_u64()),
        (Some("Bob, a gardener"), Some(1))
    );
    let edit = edits(&api, &session).await.pop().unwrap();
    assert_eq!(edit["by"], "api");
    assert!(edit.get("run_id").is_none(), "{edit}");
    assert_eq!(
        (edit["before"].as_str(), edit["after"].as_str()),
        (Some(""), Some("Bob, a gardener"))
    );

    // The next run's model sees a note of the edit before the run's input.
    turn(&api, &session, "hello").await;
    let context = api
        .ok(
            Method::GET,
            &format!("/v1/sessions/{session}/context"),
            None,
        )
        .await;
    let texts: Vec<String> = context["request"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["parts"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let note = texts
        .iter()
        .position(|t| {
            t.contains("memory block \"user\" was edited") && t.contains("Bob, a gardener")
        })
        .unwrap_or_else(|| panic!("no note of the edit: {texts:?}"));
    let hello = texts.iter().position(|t| t == "hello").unwrap();
    assert!(note < hello, "{texts:?}");

    // Over the limit, an unknown label, a bad body: 4xx, nothing logged.
    let before = session_events(&api, &session).await.len();
    let (status, error) = refused(
        &api,
        Method::PUT,
        &path,
        Some(json!({"value": "y".repeat(61)})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("at most 60 characters"),
        "{error}"
    );
    let unknown = format!("/v1/sessions/{session}/memory/blocks/diary");
    let (status, error) = refused(&api, Method::PUT, &unknown, Some(json!({"value": "x"}))).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("memory_block_not_found"))
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("persona, user, project"),
        "{error}"
    );
    let (status, _) = refused(&api, Method::GET, &unknown, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = refused(
        &api,
        Method::PUT,
        &path,
        Some(json!({"value": "x", "colour": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(session_events(&api, &session).await.len(), before);

    // During a run (here one waiting for a person): 409 naming the run.
    let (run, _) =
        send_until_waiting(&api, &session, "/call ask_human {\"question\": \"ok?\"}").await;
    let (status, error) = refused(&api, Method::PUT, &path, Some(json!({"value": "x"}))).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (StatusCode::CONFLICT, Some("session_busy"))
    );
    assert!(error["message"].as_str().unwrap().contains(&run), "{error}");
    assert_eq!(
        block(&api, &session, "user").await["value"],
        "Bob, a gardener"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_has_its_own_copy_of_the_session_blocks() {
    let (_home, server) = start();
    let api = admin(&server);
    let session = new_session(&api).await;
    turn(
        &api,
        &session,
        &calls(&[(
            "memory_block_rewrite",
            json!({"label": "user", "value": "Ada"}),
        )]),
    )
    .await;
    let fork = api
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/fork"),
            Some(json!({})),
        )
        .await;
    let fork = fork["id"].as_str().unwrap().to_string();
    assert_eq!(block(&api, &fork, "user").await["value"], "Ada");

    // The fork's edits, by the agent and the API, stay the fork's.
    turn(
        &api,
        &fork,
        &calls(&[(
            "memory_block_append",
            json!({"label": "user", "text": "in the fork"}),
        )]),
    )
    .await;
    let path = format!("/v1/sessions/{fork}/memory/blocks/persona");
    api.ok(Method::PUT, &path, Some(json!({"value": "forked"})))
        .await;
    assert_eq!(
        block(&api, &fork, "user").await["value"],
        "Ada\nin the fork"
    );
    assert_eq!(block(&api, &session, "user").await["value"], "Ada");
    assert_eq!(
        block(&api, &session, "persona").await["value"],
        "I am keel's helper."
    );

    // A fork at a seq before the edit holds the block as it was there.
    assert!(edits(&api, &session).await[0]["seq"].as_u64().unwrap() > 1);
    let early = api
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/fork"),
            Some(json!({"at_seq": 1})),
        )
        .await;
    let early = early["id"].as_str().unwrap();
    assert_eq!(block(&api, early, "user").await["version"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_blocks_are_404s_and_bad_shared_blocks_are_refused() {
    let (_home, server) = start();
    let api = admin(&server);
    let session = new_session(&api).await;
    api.ok(
        Method::PUT,
        "/v1/memory/blocks/team",
        Some(json!({"value": "four people", "limit": 50, "description": "who we are"})),
    )
    .await;
    let other = another_tenant(&api, &server).await;
    for (method, path, body) in [
        (
            Method::GET,
            format!("/v1/sessions/{session}/memory/blocks"),
            None,
        ),
        (
            Method::GET,
            format!("/v1/sessions/{session}/memory/blocks/user"),
            None,
        ),
        (
            Method::PUT,
            format!("/v1/sessions/{session}/memory/blocks/user"),
            Some(json!({"value": "x"})),
        ),
        (Method::GET, "/v1/memory/blocks/team".to_string(), None),
        (Method::DELETE, "/v1/memory/blocks/team".to_string(), None),
    ] {
        let (status, _) = refused(&other, method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let theirs = other.ok(Method::GET, "/v1/memory/blocks", None).await;
    assert_eq!(theirs["data"], json!([]));
    assert_eq!(block(&api, &session, "user").await["version"], 0);

    // Shared blocks: a bad label or limit, over the limit, unknown fields: 400, nothing made.
    for (label, body, says) in [
        ("Team", json!({"value": "x"}), "label"),
        ("notes", json!({"value": "x", "limit": 0}), "limit must be"),
        (
            "notes",
            json!({"value": "x", "limit": 100_001}),
            "limit must be",
        ),
        (
            "notes",
            json!({"value": "xxx", "limit": 2}),
            "at most 2 characters",
        ),
        (
            "team",
            json!({"value": "y".repeat(51)}),
            "at most 50 characters",
        ),
        ("notes", json!({"value": "x", "colour": 1}), "colour"),
    ] {
        let path = format!("/v1/memory/blocks/{label}");
        let (status, error) = refused(&api, Method::PUT, &path, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{label}");
        assert!(
            error["message"].as_str().unwrap().contains(says),
            "{label}: {error}"
        );
    }
    let listed = api.ok(Method::GET, "/v1/memory/blocks", None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["data"][0]["value"], "four people");
    let written = api
        .ok(
            Method::PUT,
            "/v1/memory/blocks/team",
            Some(json!({"value": "five people"})),
        )
        .await;
    assert_eq!(
        (written["version"].as_u64(), written["limit"].as_u64()),
        (Some(2), Some(50))
    );
    assert_eq!(written["description"], "who we are");
    let history = api
        .ok(Method::GET, "/v1/memory/blocks/team/history?limit=1", None)
        .await;
    let newest = &history["data"][0];
    assert_eq!(history["data"].as_array().unwrap().len(), 1, "{history}");
    assert_eq!(
        (
            newest["version"].as_u64(),
            newest["by"].as_str(),
            newest["before"].as_str()
        ),
        (Some(2), Some("api"), Some("four people"))
    );
    let (status, _) = refused(&other, Method::GET, "/v1/memory/blocks/team/history", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = refused(
        &api,
        Method::GET,
        "/v1/memory/blocks/team/history?limit=0",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = refused(&api, Method::DELETE, "/v1/memory/blocks/notes", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api
        .call(Method::DELETE, "/v1/memory/blocks/team", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = refused(&api, Method::GET, "/v1/memory/blocks/team", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // An agent declaring bad blocks is refused whole.
    for (blocks, says) in [
        (
            json!([{"label": "user"}, {"label": "user"}]),
            "declared twice",
        ),
        (json!([{"label": "User"}]), "not valid"),
        (
            json!([{"label": "user", "limit": 1_000_000}]),
            "limit must be",
        ),
        (
            json!([{"label": "user", "value": "abc", "limit": 2}]),
            "at most 2 characters",
        ),
        (json!([{"label": "user", "size": 2}]), "size"),
    ] {
        let body = json!({"name": "blocky", "model": "scripted/echo", "memory_blocks": blocks});
        let (status, error) = refused(&api, Method::POST, "/v1/agents", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{says}");
        assert!(
            error["message"].as_str().unwrap().contains(says),
            "{says}: {error}"
        );
    }
    let (status, _) = refused(&api, Method::GET, "/v1/agents/blocky", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

const EDITS: &str = "/call memory_block_append {\"label\": \"user\", \"text\": \"one\"}\n/call memory_block_append {\"label\": \"user\", \"text\": \"two\"}";

#[test]
fn an_edit_survives_a_kill_at_every_point_around_it_and_happens_once() {
    for point in [
        "tool_intent_logged:1",
        "tool_performed:1",
        "tool_result_logged:1",
        "tool_performed:2",
        "tool_result_logged:2",
    ] {
        let home = KeelHome::new(&CONFIG.replace(
            "kind = \"scripted\"",
            "kind = \"scripted\"\ntoken_latency_ms = 2",
        ));
        assert!(
            kill_at_fault_point(home.command(&["send", EDITS]), point),
            "keel never reached {point}"
        );
        let out = home.run(&["resume"]);
        assert!(
            out.status.success(),
            "resume after {point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let session = home.only_session();
        let events = home.events(&session);
        let edits: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "memory_block_edited")
            .collect();
        let afters: Vec<&str> = edits.iter().map(|e| e["after"].as_str().unwrap()).collect();
        assert_eq!(afters, ["one", "one\ntwo"], "after a kill at {point}");
        // The block as the CLI reads it (the local data directory).
        let out = home.run(&["sessions", "blocks", &session, "user"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "one\ntwo\n",
            "after a kill at {point}"
        );
    }
}

#[test]
fn the_cli_lists_reads_and_sets_a_sessions_blocks() {
    let home = KeelHome::new(CONFIG);
    let out = home.run(&["send", "hello"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let session = home.only_session();
    let out = home.run(&["sessions", "blocks", &session, "user", "--set", "Ada"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = home.run(&["sessions", "blocks", &session]);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listed.contains("persona  v0  19/200  I am keel's helper."),
        "{listed}"
    );
    assert!(listed.contains("user  v1  3/60  Ada"), "{listed}");
    assert!(
        listed.contains("project (shared)  v0  4/2000  keel"),
        "{listed}"
    );
    let edits: Vec<Value> = home
        .events(&session)
        .into_iter()
        .filter(|e| e["type"] == "memory_block_edited")
        .collect();
    assert_eq!((edits.len(), edits[0]["by"].as_str()), (1, Some("api")));
    // Over the limit and an unknown label: a clear error, nothing written.
    let out = home.run(&[
        "sessions",
        "blocks",
        &session,
        "user",
        "--set",
        &"z".repeat(61),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at most 60 characters"));
    let out = home.run(&["sessions", "blocks", &session, "diary"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("diary"));
    assert_eq!(
        home.events(&session).len(),
        edits[0]["seq"].as_u64().unwrap() as usize
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_appending_to_a_shared_block_at_once_lose_no_edit() {
    let (_home, server) = start();
    let api = admin(&server);
    let appends = |who: &str| {
        let lines: Vec<(&str, Value)> = (1..=8)
            .map(|n| {
                let text = format!("{who}{n}");
                (
                    "memory_block_append",
                    json!({"label": "project", "text": text}),
                )
            })
            .collect();
        calls(&lines)
    };
    let mut runs = Vec::new();
    let mut sessions = Vec::new();
    for who in ["a", "b", "c"] {
        let session = new_session(&api).await;
        let run = api
            .ok(
                Method::POST,
                &format!("/v1/sessions/{session}/messages"),
                Some(json!({"content": appends(who), "mode": "background"})),
            )
            .await;
        runs.push(run["id"].as_str().unwrap().to_string());
        sessions.push(session);
    }
    // Bounded by a lease's expiry and more: a run that gave up retrying is taken up again
    // when its lease lapses, and must still lose nothing.
    for run in &runs {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let run = api.ok(Method::GET, &format!("/v1/runs/{run}"), None).await;
            if run["status"] != "running" && run["status"] != "queued" {
                assert_eq!(run["status"], "completed", "{run}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "run did not end: {run}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    // Every append is in the block once, whatever the interleaving: an edit made from a
    // version another session had moved past is performed again, never written over it.
    let block = api.ok(Method::GET, "/v1/memory/blocks/project", None).await;
    let mut lines: Vec<&str> = block["value"].as_str().unwrap().lines().collect();
    lines.sort_unstable();
    let mut expected: Vec<String> = ["a", "b", "c"]
        .iter()
        .flat_map(|who| (1..=8).map(move |n| format!("{who}{n}")))
        .collect();
    expected.push("keel".into());
    expected.sort_unstable();
    assert_eq!(lines, expected, "{block}");
    assert_eq!(block["version"], 24);
    let history = api
        .ok(
            Method::GET,
            "/v1/memory/blocks/project/history?limit=100",
            None,
        )
        .await;
    let versions: Vec<u64> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, (1..=24).rev().collect::<Vec<u64>>());
    let mut logged = 0;
    for session in &sessions {
        logged += edits(&api, session).await.len();
    }
    assert_eq!(logged, 24, "one event per edit that was written");
}
