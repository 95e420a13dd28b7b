//! The `keel` CLI as a person uses it: chat as a REPL (standard input), sessions that
//! continue across processes, an OpenAI-compatible endpoint configured by environment
//! variables, and a plain message when no model is configured.

mod support;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use keel_testkit::openai_mock::{MockOpenAi, MockReply};
use support::{KeelHome, wait_with_timeout};

const SCRIPTED: &str = "[providers.scripted]\nkind = \"scripted\"\n\n[[agents]]\nname = \"default\"\nmodel = \"scripted/echo\"\n";

fn chat(home: &KeelHome, args: &[&str], input: &str) -> (String, String) {
    let mut child = home
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = wait_with_timeout(child, Duration::from_secs(60));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "keel {args:?} failed: {stderr}");
    (stdout, stderr)
}

#[test]
fn chat_streams_replies_and_the_session_continues_after_a_restart() {
    let home = KeelHome::new(SCRIPTED);
    let (stdout, stderr) = chat(&home, &["chat"], "hello keel\n/history\n/exit\n");
    assert!(stdout.contains("echo: hello keel"), "{stdout}");
    assert!(
        stderr.contains("you: hello keel") && stderr.contains("agent: echo: hello keel"),
        "/history: {stderr}"
    );
    let session = home.only_session();

    let (stdout, stderr) = chat(
        &home,
        &["chat", "--session", &session],
        "second turn\n/history\n/sessions\n/exit\n",
    );
    assert!(stdout.contains("echo: second turn"), "{stdout}");
    // The history shows both processes' turns, in order.
    let first = stderr
        .find("you: hello keel")
        .expect("first turn in history");
    let second = stderr
        .find("you: second turn")
        .expect("second turn in history");
    assert!(first < second, "{stderr}");
    assert!(
        stderr.contains(&format!("* {session}")),
        "/sessions marks the current one: {stderr}"
    );

    let (_, stderr) = chat(&home, &["chat"], "/new\n/bogus\n/exit\n");
    assert!(stderr.contains("new session ses_"), "{stderr}");
    assert!(stderr.contains("unknown command /bogus"), "{stderr}");
    let sessions = home.json(&["sessions", "list", "--json"]);
    assert_eq!(
        sessions.as_array().unwrap().len(),
        3,
        "two chats and one /new"
    );
    let show = home.json(&["sessions", "show", &session, "--json"]);
    assert_eq!(show["messages"], 4);
    assert_eq!(show["status"], "idle");
}

#[test]
fn send_talks_to_an_openai_compatible_server_from_the_environment() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mock = rt
        .block_on(MockOpenAi::start_with_api_key("sk-test"))
        .unwrap();
    mock.push_reply(MockReply::text("Paris is the capital of France."));
    let home = KeelHome::new("");
    let out = home
        .command(&["send", "--json", "What is the capital of France?"])
        .env("OPENAI_BASE_URL", mock.base_url())
        .env("OPENAI_API_KEY", "sk-test")
        .env("KEEL_MODEL", "openai/gpt-4o-mini")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["status"], "completed");
    assert_eq!(run["output"], "Paris is the capital of France.");
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let body = &requests[0].body;
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(
        body["messages"][1]["content"],
        "What is the capital of France?"
    );
    let session = home.only_session();
    let events = home.events(&session);
    let replied = events
        .iter()
        .find(|e| e["type"] == "model_replied")
        .unwrap();
    assert_eq!(replied["model"], "openai/gpt-4o-mini");
    assert!(replied["usage"]["input_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn every_command_has_help() {
    let home = KeelHome::new("");
    for args in [
        &["--help"][..],
        &["chat", "--help"],
        &["send", "--help"],
        &["resume", "--help"],
        &["sessions", "list", "--help"],
        &["sessions", "show", "--help"],
        &["sessions", "events", "--help"],
        &["agents", "list", "--help"],
        &["bench", "--help"],
    ] {
        let out = home.run(args);
        assert!(out.status.success(), "keel {args:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "keel {args:?}"
        );
    }
}

#[test]
fn an_unknown_session_is_a_clear_error() {
    let home = KeelHome::new(SCRIPTED);
    let out = home.run(&["sessions", "show", "ses_01M81QDHE7VVD89TYBASXB0WZ6"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
    let out = home.run(&["sessions", "show", "not-an-id"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid session id"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
