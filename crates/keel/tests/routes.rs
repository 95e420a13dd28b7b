//! Routes through the real binary: a primary provider that fails is replaced by the fallback
//! within the step (logged with the target, attempts and cost), and a route retargeted between
//! turns carries the whole session to another provider, whose mock checks the transcript; two
//! providers of one kind are told apart in the log, `keel sessions events`, `/v1/usage` and
//! `/metrics`; a provider that cannot list its models leaves `/v1/models` whole and says so.

mod support;

use keel_testkit::Fault;
use keel_testkit::anthropic_mock::MockAnthropic;
use keel_testkit::openai_mock::{MockOpenAi, MockReply};
use reqwest::Method;
use serde_json::json;
use support::{KeelHome, KeelServer};

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

/// `[providers.upa]` and `[providers.upb]`, both OpenAI-compatible, each with its own mock.
fn two_of_a_kind(upa: &str, upb: &str) -> String {
    format!(
        r#"
[providers.upa]
kind = "openai"
base_url = "{upa}"

[providers.upb]
kind = "openai"
base_url = "{upb}"

[[agents]]
name = "default"
model = "upa/mock-model"

[[agents]]
name = "b"
model = "upb/mock-model"
"#
    )
}

#[test]
fn two_providers_of_one_kind_are_named_apart_in_the_log_usage_and_metrics() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upa = rt.block_on(MockOpenAi::start()).unwrap();
    let upb = rt.block_on(MockOpenAi::start()).unwrap();
    upa.push_reply(MockReply::text("from a"));
    upb.push_reply(MockReply::text("from b"));
    let home = KeelHome::new(&two_of_a_kind(&upa.base_url(), &upb.base_url()));
    for agent in ["default", "b"] {
        let out = home.run(&["send", "--agent", agent, "hello"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sessions = home.json(&["sessions", "list", "--json"]);
    let mut served = Vec::new();
    for session in sessions.as_array().unwrap() {
        let id = session["id"].as_str().unwrap();
        let events = home.events(id);
        let replied = events
            .iter()
            .find(|e| e["type"] == "model_replied")
            .unwrap();
        assert_eq!(replied["provider_kind"], "openai", "{replied}");
        served.push(replied["model"].as_str().unwrap().to_string());
        let out = home.run(&["sessions", "events", id]);
        let printed = String::from_utf8_lossy(&out.stdout);
        let line = printed
            .lines()
            .find(|l| l.contains("model_replied"))
            .unwrap();
        assert!(
            line.ends_with(&format!("[{}, openai]", replied["model"].as_str().unwrap())),
            "{line}"
        );
    }
    served.sort();
    assert_eq!(served, ["upa/mock-model", "upb/mock-model"]);

    // Through `keel serve`: gateway calls and a session's step, each named by its provider.
    let server = KeelServer::start(&home, &[]);
    let api = support::http::admin(&server);
    rt.block_on(async {
        for (mock, model) in [(&upa, "upa/mock-model"), (&upb, "upb/mock-model")] {
            mock.push_reply(MockReply::text("gateway"));
            let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
            api.ok(Method::POST, "/v1/chat/completions", Some(body))
                .await;
        }
        upb.push_reply(MockReply::text("native"));
        let session = api
            .ok(Method::POST, "/v1/sessions", Some(json!({"agent": "b"})))
            .await;
        let path = format!("/v1/sessions/{}/messages", session["id"].as_str().unwrap());
        let run = api
            .ok(
                Method::POST,
                &path,
                Some(json!({"content": "hi", "mode": "wait"})),
            )
            .await;
        assert_eq!(run["steps"][0]["model"], "upb/mock-model", "{run}");
        assert_eq!(run["steps"][0]["provider_kind"], "openai", "{run}");

        let usage = api.ok(Method::GET, "/v1/usage", None).await;
        let mut models: Vec<&str> = usage["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["model"].as_str().unwrap())
            .collect();
        models.sort();
        assert_eq!(models, ["upa/mock-model", "upb/mock-model"], "{usage}");

        let (_, metrics) = api.call(Method::GET, "/metrics", None).await;
        let metrics = metrics.as_str().unwrap();
        for line in [
            "keel_gateway_requests_total{model=\"upa/mock-model\"} 1",
            "keel_gateway_requests_total{model=\"upb/mock-model\"} 1",
            "keel_provider_steps_total{provider=\"upb\",provider_kind=\"openai\"} 1",
        ] {
            assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
        }
    });
}

#[test]
fn a_provider_that_cannot_list_its_models_is_logged_and_the_rest_still_listed() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let upa = rt.block_on(MockOpenAi::start()).unwrap();
    let upb = rt.block_on(MockOpenAi::start()).unwrap();
    upa.set_models(&["listed-by-a"]);
    let home = KeelHome::new(&two_of_a_kind(&upa.base_url(), &upb.base_url()));
    let server = KeelServer::start(&home, &[]);
    let api = support::http::admin(&server);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let warning = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = server
            .stderr
            .recv_timeout(left)
            .expect("no warning about upb");
        if line.contains("cannot list the provider's models") {
            break line;
        }
    };
    assert!(
        warning.contains("upb") && warning.contains("404"),
        "{warning}"
    );
    // What upa listed is kept once every provider has answered: poll for it.
    let ids: Vec<String> = rt.block_on(async {
        loop {
            let listed = api.ok(Method::GET, "/v1/models", None).await;
            let ids: Vec<String> = listed["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string())
                .collect();
            if ids.iter().any(|id| id == "upa/listed-by-a") {
                break ids;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "upa's list never shown: {ids:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    for id in ["upa/listed-by-a", "upa/mock-model", "upb/mock-model"] {
        assert!(ids.iter().any(|i| i == id), "{id} not in {ids:?}");
    }
    assert_eq!((upa.listings(), upb.listings()), (1, 1));
    assert!(
        upa.requests().is_empty() && upb.requests().is_empty(),
        "no model call"
    );
}
