//! `keel chat` and `keel send` are one tool whether the sessions live in the local data
//! directory or on a running `keel serve` (`--server URL`, or found through the data directory
//! a local server holds): the same REPL, slash commands, recap of a resumed session and titles.

mod support;

use std::process::Stdio;
use std::time::Duration;

use keel_testkit::Fault;
use keel_testkit::openai_mock::{MockOpenAi, MockReply};
use support::{KeelHome, KeelServer, wait_with_timeout};

const SCRIPTED: &str = "[providers.scripted]\nkind = \"scripted\"\n\n[[agents]]\nname = \"default\"\nmodel = \"scripted/echo\"\n";

/// Where a test's sessions live: the home's data directory, or a server over it.
struct Place {
    home: KeelHome,
    server: Option<KeelServer>,
}

impl Place {
    fn local() -> Place {
        Place {
            home: KeelHome::new(SCRIPTED),
            server: None,
        }
    }

    fn served() -> Place {
        let home = KeelHome::new(SCRIPTED);
        let server = KeelServer::start(&home, &["--quiet"]);
        Place {
            home,
            server: Some(server),
        }
    }

    /// `args` with `--server URL` when the place is a server.
    fn args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = args.to_vec();
        if let Some(server) = &self.server {
            all.extend(["--server", server.base.as_str()]);
        }
        all
    }

    /// Runs keel with `input` on its stdin; its stdout and stderr, after checking it succeeded.
    fn run(&self, args: &[&str], input: &str) -> (String, String) {
        self.home.run_with_input(&self.args(args), input)
    }

    /// What the chat's banner says it talks to.
    fn place(&self) -> String {
        match &self.server {
            Some(server) => format!("the server at {}", server.base),
            None => "the data directory keel-data".into(),
        }
    }

    /// `out` with this place's name, session ids and times written the same everywhere.
    fn normalized(&self, out: &str) -> String {
        out.replace(&self.place(), "PLACE")
            .split('\n')
            .map(|line| {
                line.split(' ')
                    .map(|word| {
                        if word.starts_with("ses_") {
                            "ses_…"
                        } else if word.starts_with("20") && word.ends_with('Z') {
                            "TIME"
                        } else {
                            word
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

#[test]
fn chat_on_a_server_behaves_as_chat_on_the_data_directory() {
    let script = "hello keel\n/history\n/sessions\n/new\n/sessions\n/bogus\n/help\n/exit\n";
    let mut seen = Vec::new();
    for place in [Place::local(), Place::served()] {
        let (stdout, stderr) = place.run(&["chat"], script);
        assert_eq!(stdout, "echo: hello keel\n", "{stderr}");
        assert!(
            stderr.starts_with("keel chat: session ses_"),
            "the banner first: {stderr}"
        );
        assert!(stderr.contains(&place.place()), "{stderr}");
        for said in [
            "you: hello keel",
            "agent: echo: hello keel",
            "new session ses_",
            "unknown command /bogus",
            "commands: /new",
        ] {
            assert!(stderr.contains(said), "{said:?} not in {stderr}");
        }
        // The first /sessions marks the one chatted in, titled by its first message.
        let marked = stderr
            .lines()
            .find(|l| l.starts_with("* ses_"))
            .expect("a marked session");
        assert!(marked.ends_with("  hello keel"), "{marked}");
        // After /new, two sessions: the new one marked and untitled yet.
        let listed: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("* ses_") || l.starts_with("  ses_"))
            .collect();
        assert_eq!(listed.len(), 3, "{stderr}");
        assert!(
            listed[1].starts_with("* ") && listed[1].ends_with("events=1"),
            "{stderr}"
        );
        assert!(listed[2].ends_with("hello keel"), "{stderr}");
        // Nothing of it went to the model: only the one message was a turn.
        let sessions = place.home.json(&["sessions", "list", "--json"]);
        let turns: u64 = sessions
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["last_seq"].as_u64().unwrap())
            .sum();
        assert_eq!(turns, 1 + 5, "one session_started alone, one with a turn");
        seen.push((place.normalized(&stdout), place.normalized(&stderr)));
    }
    assert_eq!(seen[0], seen[1], "local and remote chat print alike");
}

#[test]
fn a_resumed_chat_recaps_its_last_turns_and_lists_show_its_title() {
    let mut seen = Vec::new();
    for place in [Place::local(), Place::served()] {
        // Through the server holding the data directory when there is one, which `send` says.
        let (_, stderr) = place.home_run(&["send", "what is a durable session, in a few words?"]);
        if let Some(server) = &place.server {
            assert!(
                stderr.contains(&format!(
                    "keel serve is running on keel-data: talking to it at {}",
                    server.base
                )),
                "{stderr}"
            );
        }
        let session = place.home.only_session();
        for turn in ["two", "three", "four"] {
            place.home_run(&["send", "--session", &session, turn]);
        }

        let (stdout, stderr) = place.run(&["chat", "--session", &session], "/exit\n");
        assert_eq!(stdout, "");
        let recap: Vec<&str> = stderr.lines().take(7).collect();
        assert_eq!(
            recap,
            [
                format!("last turns of {session} (/history shows all):").as_str(),
                "  you: two",
                "  agent: echo: two",
                "  you: three",
                "  agent: echo: three",
                "  you: four",
                "  agent: echo: four",
            ],
            "{stderr}"
        );
        assert!(
            stderr
                .lines()
                .nth(7)
                .unwrap()
                .starts_with("keel chat: session")
        );

        let title = "what is a durable session, in a few words?";
        let (list, _) = place.run(&["sessions", "list"], "");
        assert!(list.trim_end().ends_with(&format!("  {title}")), "{list}");
        let listed = place
            .home
            .json(&place.args(&["sessions", "list", "--json"]));
        assert_eq!(listed[0]["title"], title, "{listed}");
        let shown = place
            .home
            .json(&place.args(&["sessions", "show", &session, "--json"]));
        assert_eq!(shown["title"], title, "the session's summary: {shown}");
        seen.push(place.normalized(&stderr));
    }
    assert_eq!(seen[0], seen[1], "local and remote recaps print alike");
}

#[test]
fn chat_and_send_on_a_server_say_what_was_wrong() {
    let place = Place::served();
    let unknown = "ses_01M81QDHE7VVD89TYBASXB0WZ6";
    let out = place.home.run(&place.args(&["chat", "--session", unknown]));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("session {unknown} not found")),
        "{stderr}"
    );
    let out = place.home.run(&[
        "send",
        "hello",
        "--server",
        &place.server.as_ref().unwrap().base,
        "--api-key",
        "kk_wrong_key",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("401"), "{stderr}");
    assert!(stderr.contains("--api-key"), "{stderr}");
}

#[test]
fn only_the_commands_that_take_a_server_show_server_in_their_help() {
    let home = KeelHome::new("");
    let help = |args: &[&str]| {
        let out = home.run(args);
        assert!(out.status.success(), "keel {args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for args in [
        &["chat", "--help"][..],
        &["send", "--help"],
        &["sessions", "list", "--help"],
        &["sessions", "show", "--help"],
        &["sessions", "events", "--help"],
    ] {
        let said = help(args);
        assert!(said.contains("--server <SERVER>"), "keel {args:?}: {said}");
        assert!(
            said.contains("--api-key <API_KEY>"),
            "keel {args:?}: {said}"
        );
    }
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["resume", "--help"],
        &["agents", "list", "--help"],
        &["model", "list", "--help"],
        &["bench", "--help"],
        &["store", "check", "--help"],
    ] {
        let said = help(args);
        assert!(!said.contains("--server"), "keel {args:?}: {said}");
        assert!(!said.contains("--api-key"), "keel {args:?}: {said}");
    }
}

impl Place {
    /// Runs keel on the home without `--server`, with nothing on its stdin.
    fn home_run(&self, args: &[&str]) -> (String, String) {
        let out = self.home.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "keel {args:?} failed: {stderr}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    }
}

#[test]
fn chat_on_a_terminal_prompts_locally_and_on_a_server() {
    for place in [Place::local(), Place::served()] {
        let args = place.args(&["chat"]);
        let shown = place
            .home
            .run_on_a_terminal_typing(&args, "> ", &["hello there", "/exit"]);
        assert!(shown.contains("keel chat: session ses_"), "{shown:?}");
        assert!(shown.contains("> "), "a prompt: {shown:?}");
        assert!(shown.contains("echo: hello there"), "{shown:?}");
    }
}

#[test]
fn send_beside_a_chat_holding_the_data_directory_is_refused_whatever_a_stopped_server_announced() {
    use std::io::{BufRead, BufReader};
    let home = KeelHome::new(SCRIPTED);
    // A server announced its URL in the data directory's lock, then stopped.
    let mut server = KeelServer::start(&home, &["--quiet"]);
    let lock = home.data_dir().join("keel.lock");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&lock).is_ok_and(|l| l.contains(&server.base)) {
        assert!(std::time::Instant::now() < deadline, "no URL in keel.lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    server.terminate();
    let mut chat = home
        .command(&["chat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = chat.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let banner = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("chat started");
    assert!(banner.starts_with("keel chat: session"), "{banner}");

    let out = home.run(&["send", "hello"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("another keel process is using the data directory"),
        "{said}"
    );
    assert!(!said.contains("keel serve is running"), "{said}");
    drop(chat.stdin.take());
    assert!(
        wait_with_timeout(chat, Duration::from_secs(60))
            .status
            .success()
    );
}

#[test]
fn a_failed_model_call_shows_in_chat_alike_locally_and_on_a_server() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut seen = Vec::new();
    for served in [false, true] {
        let mock = rt.block_on(MockOpenAi::start()).unwrap();
        mock.push_fault(Fault::status(503));
        mock.push_reply(MockReply::text("back on my feet"));
        let config = format!(
            "[providers.upa]\nkind = \"openai\"\nbase_url = \"{}\"\n\n[[agents]]\nname = \"default\"\nmodel = \"upa/mock-model\"\n",
            mock.base_url()
        );
        let home = KeelHome::new(&config);
        let server = served.then(|| KeelServer::start(&home, &["--quiet"]));
        let place = Place { home, server };
        let (stdout, stderr) = place.run(&["chat"], "are you there?\n/exit\n");
        assert_eq!(stdout, "back on my feet\n", "{stderr}");
        assert!(stderr.contains("\n  [model call failed: "), "{stderr}");
        seen.push(place.normalized(&stderr));
    }
    assert_eq!(seen[0], seen[1], "a failed call is said alike");
}

#[test]
fn send_json_prints_the_same_run_locally_and_through_a_server() {
    let mut runs = Vec::new();
    for place in [Place::local(), Place::served()] {
        let run = place
            .home
            .json(&place.args(&["send", "--json", "hello json"]));
        assert_eq!(run["status"], "completed", "{run}");
        assert_eq!(run["output"], "echo: hello json", "{run}");
        assert_eq!(run["steps"][0]["model"], "scripted/echo", "{run}");
        assert!(run.get("lease_owner").is_none(), "{run}");
        let mut keys: Vec<String> = run.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        runs.push(keys);
    }
    assert_eq!(runs[0], runs[1], "the same fields");
}
