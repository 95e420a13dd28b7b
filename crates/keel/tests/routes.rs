//! Routes through the real binary: a primary provider that fails is replaced by the fallback
//! within the step (logged with the target, attempts and cost), and a route retargeted between
//! turns carries the whole session to another provider, whose mock checks the transcript.

mod support;

use keel_testkit::Fault;
use keel_testkit::anthropic_mock::MockAnthropic;
use keel_testkit::openai_mock::{MockOpenAi, MockReply};
use support::KeelHome;

fn config(openai: &str, anthropic: &str, targets: &str) -> String {
    format!(
        r#"
[providers.openai]
kind = "openai"
base_url = "{openai}"

[providers.anthropic]
kind = "anthropic"
base_url = "{anthropic}"
api_key = "sk-ant-test"

[[routes]]
name = "main"
targets = [{targets}]
retry = {{ attempts_per_target = 1 }}

[[agents]]
name = "default"
model = "main"
instructions = "Be brief."
"#
    )
}

const OPENAI: &str = r#"{ provider = "openai", model = "gpt-4o-mini" }"#;
const ANTHROPIC: &str = r#"{ provider = "anthropic", model = "claude-3-5-haiku-latest" }"#;

#[test]
fn a_failing_primary_is_replaced_by_the_fallback_and_the_step_says_so() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let openai = rt.block_on(MockOpenAi::start()).unwrap();
    let anthropic = rt
        .block_on(MockAnthropic::start_anthropic("sk-ant-test"))
        .unwrap();
    openai.push_fault(Fault::status(503));
    anthropic.push_reply(keel_testkit::openai_mock::MockReply::text(
        "served by the fallback",
    ));
    let home = KeelHome::new(&config(
        &openai.base_url(),
        &anthropic.base_url(),
        &format!("{OPENAI}, {ANTHROPIC}"),
    ));
    let out = home.run(&["send", "hello"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("served by the fallback"));
    let events = home.events(&home.only_session());
    let replied = events
        .iter()
        .find(|e| e["type"] == "model_replied")
        .unwrap();
    assert_eq!(replied["model"], "anthropic/claude-3-5-haiku-latest");
    assert_eq!(replied["target"], "main#1");
    assert_eq!(replied["attempts"], 2);
    assert!(
        replied["cost_usd"].as_f64().is_some_and(|c| c > 0.0),
        "{replied}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "model_replied")
            .count(),
        1,
        "no duplicated step"
    );
}

#[test]
fn a_route_retargeted_between_turns_carries_the_session_to_another_provider() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let openai = rt.block_on(MockOpenAi::start()).unwrap();
    let anthropic = rt
        .block_on(MockAnthropic::start_anthropic("sk-ant-test"))
        .unwrap();
    openai.push_reply(MockReply::text("First answer from OpenAI."));
    anthropic.push_reply(MockReply::text("Second answer from Anthropic."));
    let home = KeelHome::new(&config(&openai.base_url(), &anthropic.base_url(), OPENAI));
    let out = home.run(&["send", "first question"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let session = home.only_session();
    std::fs::write(
        home.path().join("keel.toml"),
        config(&openai.base_url(), &anthropic.base_url(), ANTHROPIC),
    )
    .unwrap();
    let out = home.run(&["send", "--session", &session, "second question"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Second answer from Anthropic."));
    // Anthropic received the whole conversation in its own format.
    let request = &anthropic.requests()[0].body;
    assert_eq!(request["system"], "Be brief.");
    let messages = request["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{request}");
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[1]["role"], "assistant");
    assert!(
        messages[1]
            .to_string()
            .contains("First answer from OpenAI.")
    );
    assert!(messages[2].to_string().contains("second question"));
}
