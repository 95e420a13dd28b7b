//! A session moved, not copied, between two `keel serve`s (`keel sessions export --move`,
//! `POST /v1/sessions/{id}/export`): one waiting for a person's approval with a schedule
//! pending leaves a SQLite-backed keel, which from then on refuses input to it (409
//! `session_exported`, naming where it went), approvals, cancels and new schedules, and never
//! fires its schedule, while reads, a second export and verify still answer. Imported into a
//! second keel (its own data dir, its `scripted` provider an OpenAI-compatible server there),
//! it is approved there, the run finishes with that provider's answer, the call is made once,
//! the schedule fires there once, and the chain verifies. A session whose run is running is
//! not moved (409 `session_busy`) until the run has ended.

mod support;

use std::time::{Duration, Instant};

use keel_testkit::openai_mock::{MockOpenAi, MockReply};
use keel_testkit::tool_endpoint::ToolEndpoint;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::http::{Api, admin, finished_run, new_session, send_until_waiting, session_events};
use support::{KeelHome, KeelServer};

/// The agent: the `scripted/echo` model and a mail tool at `url` that needs approval;
/// `provider` is how this deployment serves `scripted`.
fn config(provider: &str, url: &str) -> String {
    format!(
        r#"
[providers.scripted]
{provider}

[[agents]]
name = "default"
model = "scripted/echo"
tools = [{{ name = "send_mail", kind = "http", url = "{url}", allow_private = ["127.0.0.0/8"], require_approval = true, description = "sends a mail" }}]
"#
    )
}

/// The source's provider: keel's scripted model.
const SCRIPTED: &str = "kind = \"scripted\"\ntoken_latency_ms = 0";

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The session's schedule once it has fired `times` (bounded wait).
async fn fired(api: &Api, session: &str, times: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = api
            .ok(
                Method::GET,
                &format!("/v1/sessions/{session}/schedules"),
                None,
            )
            .await;
        if listed["data"][0]["fired"].as_u64() >= Some(times) {
            return listed["data"][0].clone();
        }
        assert!(Instant::now() < deadline, "not fired {times}: {listed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The session's run started by a schedule, once it has ended (bounded wait).
async fn scheduled_run(api: &Api, session: &str, note: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = session_events(api, session).await;
        let started = events.iter().find(|e| {
            e["type"] == "run_started"
                && e["input"]["parts"][0]["text"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(note))
        });
        if let Some(started) = started {
            return finished_run(api, started["run_id"].as_str().unwrap()).await;
        }
        assert!(Instant::now() < deadline, "no run of {note:?}: {events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_session_with_a_schedule_moves_and_goes_on_only_there() {
    let endpoint = ToolEndpoint::start().await.unwrap();
    let url = endpoint.url("/echo");
    let home = KeelHome::new(&config(SCRIPTED, &url));
    let server = KeelServer::start(&home, &[]);
    let api = admin(&server);
    let session = new_session(&api).await;
    let (run, call) = send_until_waiting(&api, &session, "/call send_mail {\"to\": \"ann\"}").await;
    // Due in a few seconds: the move comes first (the export says it has not fired).
    let schedule = api
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/schedules"),
            Some(json!({"after_secs": 4, "note": "ping"})),
        )
        .await;
    // A session that stays, with a schedule due after the moved one's: once it has fired
    // here, this keel's timers have looked past the moved one's due time.
    let control = new_session(&api).await;
    api.ok(
        Method::POST,
        &format!("/v1/sessions/{control}/schedules"),
        Some(json!({"after_secs": 6, "note": "control"})),
    )
    .await;

    // The target: its own data dir, `scripted` served by an OpenAI-compatible server.
    let openai = MockOpenAi::start().await.unwrap();
    openai.push_reply(MockReply::text("Mail sent, from the other keel."));
    openai.push_reply(MockReply::text("Pong, from the other keel."));
    let provider = format!("kind = \"openai\"\nbase_url = \"{}\"", openai.base_url());
    let there_home = KeelHome::new(&config(&provider, &url));
    let target = KeelServer::start(&there_home, &[]);
    let there = admin(&target);

    let out = home.run(&[
        "sessions",
        "export",
        &session,
        "--move",
        "--to",
        &target.base,
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
    let text = String::from_utf8(out.stdout).unwrap();
    let exported = lines(&text);
    let carried = |kind: &str| -> Vec<Value> {
        exported
            .iter()
            .filter(|l| l["kind"] == kind)
            .cloned()
            .collect()
    };
    assert_eq!(carried("run").len(), 1, "{text}");
    assert_eq!(carried("run")[0]["status"], "waiting");
    assert_eq!(carried("timer")[0]["fired"], 0, "moved before it was due");

    // The source takes nothing more for the session and says where it went.
    let refused = [
        (
            "a message",
            Method::POST,
            format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": "still there?", "mode": "background"})),
        ),
        (
            "an approval",
            Method::POST,
            format!("/v1/runs/{run}/resume"),
            Some(json!({"decisions": [{"call_id": call, "decision": "approve"}]})),
        ),
        (
            "a cancel",
            Method::POST,
            format!("/v1/runs/{run}/cancel"),
            None,
        ),
        (
            "a schedule",
            Method::POST,
            format!("/v1/sessions/{session}/schedules"),
            Some(json!({"after_secs": 60, "note": "again"})),
        ),
    ];
    for (what, method, path, body) in refused {
        let (status, answer) = api.call(method, &path, body).await;
        assert_eq!(status, StatusCode::CONFLICT, "{what}: {answer}");
        assert_eq!(answer["error"]["code"], "session_exported", "{what}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(&target.base), "{what}: {message}");
    }
    // Reads still answer: the session (saying where it went), the log, a second export (the
    // same lines), verify.
    let shown = api
        .ok(Method::GET, &format!("/v1/sessions/{session}"), None)
        .await;
    assert_eq!(shown["moved"]["to"], target.base.as_str(), "{shown}");
    assert!(shown["moved"]["at"].is_string(), "{shown}");
    let source_events = session_events(&api, &session).await;
    let again = api
        .request(Method::GET, &format!("/v1/sessions/{session}/export"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(lines(&again)[1..], exported[1..]);
    let (status, moved_again) = {
        let resp = api
            .request(Method::POST, &format!("/v1/sessions/{session}/export"))
            .send()
            .await
            .unwrap();
        (resp.status(), resp.text().await.unwrap())
    };
    assert_eq!(status, StatusCode::OK, "moving again answers the same file");
    assert_eq!(lines(&moved_again)[1..], exported[1..]);
    let report = api
        .ok(Method::GET, &format!("/v1/sessions/{session}/verify"), None)
        .await;
    assert_eq!(report["intact"], true, "{report}");

    // The target takes it on: approved there, the run ends with its provider's answer.
    let created = there
        .request(Method::POST, "/v1/sessions/import")
        .header("content-type", "application/x-ndjson")
        .body(text.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let here_now = there
        .ok(Method::GET, &format!("/v1/sessions/{session}"), None)
        .await;
    assert!(here_now["moved"].is_null(), "{here_now}");
    there
        .ok(
            Method::POST,
            &format!("/v1/runs/{run}/resume"),
            Some(json!({"decisions": [{"call_id": call, "decision": "approve"}]})),
        )
        .await;
    let done = finished_run(&there, &run).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"], "Mail sent, from the other keel.");
    assert_eq!(endpoint.requests().len(), 1, "the mail was sent once");

    // The schedule fires there, once; here, never.
    let pinged = scheduled_run(&there, &session, "ping").await;
    assert_eq!(pinged["status"], "completed", "{pinged}");
    assert_eq!(pinged["output"], "Pong, from the other keel.");
    let there_schedule = fired(&there, &session, 1).await;
    assert_eq!(there_schedule["id"], schedule["id"]);
    assert_eq!(there_schedule["fired"], 1);
    fired(&api, &control, 1).await;
    let here = api
        .ok(
            Method::GET,
            &format!("/v1/sessions/{session}/schedules"),
            None,
        )
        .await;
    assert_eq!(
        here["data"][0]["fired"], 0,
        "never fired at the source: {here}"
    );
    assert_eq!(
        session_events(&api, &session).await,
        source_events,
        "nothing was added at the source"
    );
    assert_eq!(fired(&there, &session, 1).await["fired"], 1, "once there");
    let report = there
        .ok(Method::GET, &format!("/v1/sessions/{session}/verify"), None)
        .await;
    assert_eq!(report["intact"], true, "{report}");

    // Deleting it at the source still works.
    let (status, _) = api
        .call(Method::DELETE, &format!("/v1/sessions/{session}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_is_not_moved_while_its_run_is_running() {
    // Each word of the echo takes 50 ms: a run long enough to be caught running.
    let (_home, server) = support::http::start(50);
    let api = admin(&server);
    let session = new_session(&api).await;
    let words = vec!["word"; 400].join(" ");
    let sent = api
        .ok(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": words, "mode": "background"})),
        )
        .await;
    let run = sent["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.ok(Method::GET, &format!("/v1/runs/{run}"), None).await["status"] != "running" {
        assert!(Instant::now() < deadline, "run {run} never ran");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let path = format!("/v1/sessions/{session}/export");
    let (status, answer) = api.call(Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "session_busy");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains(&run), "{message}");
    // Nothing was marked: the session still takes input.
    let (status, _) = api
        .call(
            Method::POST,
            &format!("/v1/sessions/{session}/messages"),
            Some(json!({"content": "next", "mode": "background", "on_busy": "enqueue"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    api.ok(Method::POST, &format!("/v1/runs/{run}/cancel"), None)
        .await;
    assert_eq!(finished_run(&api, &run).await["status"], "cancelled");
    let next = loop {
        let pending = support::http::session_events(&api, &session).await;
        let last = pending.last().unwrap().clone();
        if last["type"] == "run_completed" {
            break last;
        }
        assert!(Instant::now() < deadline, "{pending:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(next["type"], "run_completed");
    let resp = api.request(Method::POST, &path).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let moved = lines(&resp.text().await.unwrap());
    assert!(moved.iter().all(|l| l["kind"] != "run"), "{moved:?}");
}
