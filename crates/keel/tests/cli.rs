//! The `keel` CLI as a person uses it: chat as a REPL (standard input), sessions that
//! continue across processes, an OpenAI-compatible endpoint configured by environment
//! variables, and a plain message when no model is configured.

mod support;

use std::io::Write;
use std::time::Duration;

use keel_testkit::openai_mock::{MockOpenAi, MockReply};
use support::KeelHome;

const SCRIPTED: &str = "[providers.scripted]\nkind = \"scripted\"\n\n[[agents]]\nname = \"default\"\nmodel = \"scripted/echo\"\n";

#[test]
fn chat_streams_replies_and_the_session_continues_after_a_restart() {
    let home = KeelHome::new(SCRIPTED);
    let (stdout, stderr) = home.run_with_input(&["chat"], "hello keel\n/history\n/exit\n");
    assert!(stdout.contains("echo: hello keel"), "{stdout}");
    assert!(
        stderr.contains("you: hello keel") && stderr.contains("agent: echo: hello keel"),
        "/history: {stderr}"
    );
    let session = home.only_session();

    let (stdout, stderr) = home.run_with_input(
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

    let (_, stderr) = home.run_with_input(&["chat"], "/new\n/bogus\n/exit\n");
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

#[test]
fn send_on_a_terminal_prints_the_session_on_its_own_line_after_the_reply() {
    let home = KeelHome::new(SCRIPTED);
    let shown = home.run_on_a_terminal(&["send", "hello there"]);
    let lines: Vec<&str> = shown.lines().collect();
    let session = home.only_session();
    assert_eq!(
        lines,
        ["echo: hello there", &format!("session: {session}")],
        "{shown:?}"
    );
    // Continuing the session says so the same way.
    let shown = home.run_on_a_terminal(&["send", "--session", &session, "again"]);
    assert_eq!(
        shown.lines().collect::<Vec<_>>(),
        ["echo: again", &format!("session: {session}")],
        "{shown:?}"
    );
}

#[test]
fn send_json_shows_usage_and_the_serving_model_and_no_internal_fields() {
    let home = KeelHome::new(SCRIPTED);
    let run = home.json(&["send", "--json", "hello"]);
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["output"], "echo: hello", "{run}");
    assert_eq!(run["model"], "scripted/echo", "{run}");
    assert!(run["usage"]["output_tokens"].as_u64().unwrap() > 0, "{run}");
    assert_eq!(run["steps"][0]["model"], "scripted/echo", "{run}");
    assert_eq!(run["steps"][0]["provider_kind"], "scripted", "{run}");
    assert_eq!(run["session_id"], home.only_session().as_str(), "{run}");
    for internal in ["lease_owner", "lease_until", "tenant"] {
        assert!(run.get(internal).is_none(), "{internal} shown: {run}");
    }
}

#[test]
fn sessions_events_help_documents_every_argument() {
    let home = KeelHome::new("");
    let out = home.run(&["sessions", "events", "--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for argument in ["<ID>", "--after <AFTER>", "--limit <LIMIT>", "--json"] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(argument))
            .unwrap_or_else(|| panic!("{argument} not in:\n{help}"));
        let said = line.trim_start()[argument.len()..].trim();
        assert!(said.len() > 10, "{argument} is not explained: {line:?}");
    }
}

#[test]
fn serve_logs_a_line_per_request_unless_quiet() {
    let home = KeelHome::new(SCRIPTED);
    let mut server = support::KeelServer::start(&home, &[]);
    assert!(healthz(&server).starts_with("HTTP/1.1 200"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let line = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = server
            .stderr
            .recv_timeout(left)
            .expect("no request line logged");
        if line.contains("/healthz") {
            break line;
        }
    };
    assert!(line.contains("INFO"), "{line}");
    assert!(line.contains("GET /healthz 200 "), "{line}");
    assert!(line.trim_end().ends_with("ms"), "{line}");
    assert!(!line.contains('\u{1b}'), "no colours in a pipe: {line:?}");
    server.terminate();

    let mut quiet = support::KeelServer::start(&home, &["--quiet"]);
    assert!(healthz(&quiet).starts_with("HTTP/1.1 200"));
    quiet.terminate();
    // Everything it said: the channel ends with its stderr, closed at exit.
    let said: Vec<String> = quiet.stderr.iter().collect();
    assert!(
        !said.iter().any(|l| l.contains("/healthz")),
        "--quiet logged: {said:?}"
    );
}

/// `GET /healthz` on one connection; the whole answer.
fn healthz(server: &support::KeelServer) -> String {
    use std::io::Read;
    let mut conn = std::net::TcpStream::connect(server.addr()).unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: keel\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    answer
}
