//! keel's OpenAI-compatible API driven by the official `openai` Python SDK (from PyPI), against
//! the real `keel serve` with the scripted model, a mock OpenAI upstream and a mock Anthropic
//! upstream. Each test runs one scenario of `tests/openai_sdk/scenarios.py` and fails with the
//! script's output; tests that switch provider also check here what each upstream received.
//! The SDK is installed into a virtualenv under the target directory when missing, so the tests
//! run on a fresh machine with only `python3` (and network access to PyPI) present.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use keel_testkit::Fault;
use keel_testkit::anthropic_mock::MockAnthropic;
use keel_testkit::openai_mock::{MockOpenAi, MockReply};
use serde_json::Value;
use support::{KeelHome, KeelServer, wait_with_timeout};

/// How long one scenario may run, SDK start-up included.
const SCENARIO_LIMIT: Duration = Duration::from_secs(180);

fn config(openai: &str, anthropic: &str) -> String {
    format!(
        r#"
[providers.scripted]
kind = "scripted"

[providers.slow]
kind = "scripted"
token_latency_ms = 100

[providers.openai]
kind = "openai"
base_url = "{openai}"

[providers.anthropic]
kind = "anthropic"
base_url = "{anthropic}"
api_key = "sk-ant-test"

[[routes]]
name = "fast"
targets = [{{ provider = "scripted", model = "echo" }}]

[[agents]]
name = "default"
model = "scripted/echo"
"#
    )
}

/// keel serving on loopback in front of the two mock upstreams.
/// Fields drop in order: keel first, then the mocks, its directory, and last the runtime the
/// mocks' connections run on.
struct Sdk {
    server: KeelServer,
    openai: MockOpenAi,
    anthropic: MockAnthropic,
    home: KeelHome,
    _rt: tokio::runtime::Runtime,
}

impl Sdk {
    fn start() -> Sdk {
        Sdk::start_with(|_| {})
    }

    /// `start`, with the mock OpenAI upstream set up by `prepare` before keel starts.
    fn start_with(prepare: impl FnOnce(&MockOpenAi)) -> Sdk {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let openai = rt.block_on(MockOpenAi::start()).unwrap();
        prepare(&openai);
        let anthropic = rt
            .block_on(MockAnthropic::start_anthropic("sk-ant-test"))
            .unwrap();
        let home = KeelHome::new(&config(&openai.base_url(), &anthropic.base_url()));
        let server = KeelServer::start(&home, &[]);
        Sdk {
            server,
            openai,
            anthropic,
            home,
            _rt: rt,
        }
    }

    /// Runs one scenario with the SDK pointed at keel; fails with its output unless it passes.
    fn run(&self, scenario: &str) {
        self.run_with(scenario, &[]);
    }

    /// `run`, with these variables in the scenario's environment.
    fn run_with(&self, scenario: &str, vars: &[(&str, String)]) {
        let python = support::python::openai_sdk();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_sdk/scenarios.py");
        let key = self.server.admin_key.as_deref().expect("admin key");
        let child = Command::new(python)
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .arg(script)
            .arg(scenario)
            .current_dir(self.home.path())
            .env("OPENAI_BASE_URL", self.server.url("/v1"))
            .env("OPENAI_API_KEY", key)
            .env_remove("OPENAI_ORG_ID")
            .env_remove("OPENAI_PROJECT_ID")
            // loopback only, whatever proxy the environment names; no bytecode in the checkout
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn python");
        let out = wait_with_timeout(child, SCENARIO_LIMIT);
        let stdout = String::from_utf8_lossy(&out.stdout);
        // "ok" is the script's last word: an exit 0 that skipped the scenario is no pass.
        assert!(
            out.status.success() && stdout.lines().last() == Some("ok"),
            "scenario {scenario} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// (role, text) of each message an upstream received (OpenAI's or Anthropic's `messages`,
/// content as a string or as text blocks), system messages left out.
fn transcript(body: &Value) -> Vec<(String, String)> {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    messages
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| {
            let text = match &m["content"] {
                Value::String(text) => text.clone(),
                Value::Array(blocks) => blocks
                    .iter()
                    .filter_map(|b| b["text"].as_str())
                    .collect::<String>(),
                _ => String::new(),
            };
            (m["role"].as_str().unwrap_or_default().to_string(), text)
        })
        .collect()
}

fn turns(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(role, text)| (role.to_string(), text.to_string()))
        .collect()
}

#[test]
fn models_lists_what_keel_serves_and_retrieves_ids_with_a_slash() {
    let sdk = Sdk::start_with(|openai| {
        openai.set_models(&["mock-listed"]);
    });
    sdk.openai.push_reply(MockReply::text("fine-tuned"));
    sdk.run("models");
    assert_eq!(
        sdk.openai.listings(),
        1,
        "the upstream's list is asked once, at start"
    );
}

#[test]
fn chat_completions_plain() {
    let sdk = Sdk::start();
    sdk.anthropic
        .push_reply(MockReply::text("Anthropic served this."));
    sdk.run("chat_plain");
    let sent = &sdk.anthropic.requests()[0].body;
    assert_eq!(
        transcript(sent),
        turns(&[("user", "who serves this?")]),
        "{sent}"
    );
}

#[test]
fn chat_completions_streaming() {
    Sdk::start().run("chat_stream");
}

#[test]
fn chat_completions_tool_call_round_trip() {
    Sdk::start().run("chat_tools");
}

#[test]
fn chat_completions_errors() {
    Sdk::start().run("chat_errors");
}

#[test]
fn responses_compact_server_side_and_standalone() {
    Sdk::start().run("responses_compaction");
}

#[test]
fn responses_chained_over_five_turns_across_providers() {
    let sdk = Sdk::start();
    sdk.openai
        .push_reply(MockReply::text("Third answer from OpenAI."));
    sdk.anthropic
        .push_reply(MockReply::text("Fourth answer from Anthropic."));
    sdk.anthropic
        .push_reply(MockReply::text("Fifth answer from Anthropic."));
    sdk.run("responses_chain");

    let mut history = vec![
        ("user", "first turn"),
        ("assistant", "echo: first turn"),
        ("user", "second turn"),
        ("assistant", "echo: second turn"),
        ("user", "third turn"),
    ];
    let openai = sdk.openai.requests();
    assert_eq!(openai.len(), 1, "one call to OpenAI");
    assert_eq!(openai[0].body["model"], "gpt-4o-mini");
    assert_eq!(
        transcript(&openai[0].body),
        turns(&history),
        "{}",
        openai[0].body
    );

    let anthropic = sdk.anthropic.requests();
    assert_eq!(anthropic.len(), 2, "two calls to Anthropic");
    history.extend([
        ("assistant", "Third answer from OpenAI."),
        ("user", "fourth turn"),
    ]);
    let fourth = &anthropic[0].body;
    assert_eq!(transcript(fourth), turns(&history), "{fourth}");
    assert_eq!(fourth["system"], "Answer briefly.", "turn 4's instructions");
    history.extend([
        ("assistant", "Fourth answer from Anthropic."),
        ("user", "fifth turn"),
    ]);
    let fifth = &anthropic[1].body;
    assert_eq!(transcript(fifth), turns(&history), "{fifth}");
    // As in OpenAI's API, instructions are not carried over by previous_response_id.
    assert!(
        fifth["system"].as_str().is_none_or(str::is_empty),
        "turn 5 got turn 4's instructions: {fifth}"
    );
}

#[test]
fn responses_in_a_conversation() {
    Sdk::start().run("responses_conversation");
}

#[test]
fn responses_streaming_events() {
    Sdk::start().run("responses_stream");
}

#[test]
fn responses_function_call_round_trip() {
    Sdk::start().run("responses_function_tools");
}

#[test]
fn responses_background_polled_and_cancelled() {
    Sdk::start().run("responses_background");
}

#[test]
fn responses_retrieve_input_items_delete_and_store_false() {
    Sdk::start().run("responses_lifecycle");
}

#[test]
fn responses_errors() {
    Sdk::start().run("responses_errors");
}

#[test]
fn provider_errors_as_the_sdk_raises_them_and_a_failed_turn_does_not_wedge() {
    let sdk = Sdk::start();
    sdk.openai.set_context_window(40);
    // In the order the scenario meets them (an overflow uses nothing from the queue).
    sdk.openai.push_fault(Fault::rate_limited("7"));
    sdk.openai.push_fault(Fault::status(401));
    sdk.openai.push_fault(Fault::status(500));
    for _ in 0..3 {
        sdk.openai.push_fault(Fault::Status {
            status: 429,
            retry_after: None,
            retry_after_ms: Some(1),
        });
    }
    sdk.openai.push_reply(MockReply::text("first answer"));
    sdk.openai.push_reply(MockReply::text("third answer"));
    sdk.run("provider_errors");
    assert_eq!(sdk.openai.pending(), 0, "every queued answer was used");
    let requests = sdk.openai.requests();
    let last = &requests.last().unwrap().body;
    assert_eq!(
        transcript(last),
        turns(&[
            ("user", "first turn"),
            ("assistant", "first answer"),
            ("user", "third turn"),
        ]),
        "the overflowing input is not sent again: {last}"
    );
}

#[test]
fn request_fields_the_sdk_knows_are_each_listed_and_refusals_name_them() {
    use keel_server::openai::fields::{CHAT_COMPLETIONS, RESPONSES};
    let names = |fields: &[keel_server::openai::fields::Field]| {
        fields.iter().map(|f| f.name).collect::<Vec<_>>().join(",")
    };
    Sdk::start().run_with(
        "request_fields",
        &[
            ("KEEL_CHAT_FIELDS", names(CHAT_COMPLETIONS)),
            ("KEEL_RESPONSES_FIELDS", names(RESPONSES)),
        ],
    );
}
