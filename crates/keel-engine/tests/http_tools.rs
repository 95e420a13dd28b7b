//! HTTP tools through real runs, against a tool endpoint on loopback: the SSRF guard refuses
//! every private, loopback, link-local and metadata destination however it is spelt (and a
//! redirect into one) as an error result the model sees, while the run goes on; a tool that
//! allows the loopback range reaches it with its idempotency key and secret; failures worth
//! retrying are retried; a long answer is cut with a note. No traffic leaves the machine:
//! every non-loopback address here is refused before any connection.

use keel_core::{EventBody, HttpAuth, HttpMethod, HttpTool, Message, RunStatus, ToolDef, ToolKind};
use keel_engine::EngineConfig;
use keel_models::providers::scripted::ScriptedConfig;
use keel_testkit::tool_endpoint::ToolEndpoint;

mod common;

fn http(name: &str, tool: HttpTool) -> ToolDef {
    ToolDef {
        name: name.into(),
        description: format!("{name}, an HTTP tool"),
        parameters: serde_json::json!({"type": "object"}),
        strict: None,
        require_approval: Default::default(),
        kind: ToolKind::Http(tool),
    }
}

fn allowing_loopback(url: String) -> HttpTool {
    HttpTool {
        allow_private: vec!["127.0.0.0/8".into()],
        ..HttpTool::post(url)
    }
}

/// Each call's tool name, result and whether it is an error, in call order.
type Results = Vec<(String, String, bool)>;

/// Runs one turn calling `calls` (all in one step); the run must complete. Returns the calls'
/// results and the run's intents (the events keel writes before a result is back) as JSON.
async fn turn(tools: Vec<ToolDef>, calls: &[&str]) -> (Results, String) {
    let dir = tempfile::tempdir().unwrap();
    let models = common::scripted(ScriptedConfig::default());
    let test = common::engine(&dir, models, EngineConfig::default(), tools, true).await;
    let session = common::session(&test.engine, &test.tenant).await;
    let text: Vec<String> = calls.iter().map(|c| format!("/call {c}")).collect();
    let run = test
        .engine
        .submit(&test.tenant, &session, Message::user(text.join("\n")))
        .await
        .unwrap();
    let ended = test.engine.wait_run(&test.tenant, &run.id).await.unwrap();
    assert_eq!(ended.status, RunStatus::Completed, "{ended:?}");
    let events = test.engine.run_events(&ended).await.unwrap();
    let intents: Vec<_> = events
        .iter()
        .filter(|e| {
            matches!(
                e.body,
                EventBody::RunStarted { .. }
                    | EventBody::ModelCalled { .. }
                    | EventBody::ToolCalled { .. }
            )
        })
        .collect();
    let log = serde_json::to_string(&intents).unwrap();
    let mut names = std::collections::HashMap::new();
    let mut results = Vec::new();
    for event in events {
        match event.body {
            EventBody::ToolCalled { call_id, name, .. } => {
                names.insert(call_id, name);
            }
            EventBody::ToolReturned {
                call_id,
                content,
                is_error,
                ..
            } => results.push((names[&call_id].clone(), content, is_error)),
            _ => {}
        }
    }
    assert_eq!(results.len(), calls.len());
    (results, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_destinations_are_refused_as_error_results_and_the_run_goes_on() {
    let endpoint = ToolEndpoint::start().await.unwrap();
    let port = endpoint.port();
    let echo = endpoint.url("/echo");
    let cases = [
        ("loopback", format!("http://127.0.0.1:{port}/echo")),
        ("loopback_v6", format!("http://[::1]:{port}/echo")),
        (
            "mapped_v6",
            format!("http://[::ffff:127.0.0.1]:{port}/echo"),
        ),
        ("ten", "http://10.0.0.1/echo".to_string()),
        ("one_seven_two", "http://172.16.0.1/echo".to_string()),
        ("one_nine_two", "http://192.168.0.1/echo".to_string()),
        (
            "metadata",
            "http://169.254.169.254/latest/meta-data/".to_string(),
        ),
        ("hex", format!("http://0x7f.1:{port}/echo")),
        ("decimal", format!("http://2130706433:{port}/echo")),
        ("octal", format!("http://0177.0.0.1:{port}/echo")),
        ("localhost", format!("http://localhost:{port}/echo")),
    ];
    let mut tools: Vec<ToolDef> = cases
        .iter()
        .map(|(name, url)| http(name, HttpTool::post(url.clone())))
        .collect();
    // Allowed to reach loopback, then redirected into the metadata address, ::1 (outside
    // its range) or 10.x: each hop is checked again.
    for (name, to) in [
        (
            "redirect_metadata",
            "http://169.254.169.254/latest/".to_string(),
        ),
        ("redirect_v6", format!("http://[::1]:{port}/echo")),
        ("redirect_ten", "http://10.1.1.1/x".to_string()),
    ] {
        let url = endpoint.url(&format!("/redirect?to={to}&status=307"));
        tools.push(http(name, allowing_loopback(url)));
    }
    tools.push(http("allowed", allowing_loopback(echo.clone())));
    let redirect_home = endpoint.url(&format!("/redirect?to={echo}"));
    tools.push(http("redirect_home", allowing_loopback(redirect_home)));
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    let (results, _) = turn(tools.clone(), &names).await;

    for (name, content, is_error) in &results {
        let allowed = name == "allowed" || name == "redirect_home";
        if allowed {
            assert!(!is_error, "{name}: {content}");
            let echoed: serde_json::Value = serde_json::from_str(content).unwrap();
            assert_eq!(echoed["path"], "/echo", "{name}: {content}");
        } else {
            assert!(*is_error, "{name} was not refused: {content}");
            assert!(
                content.contains("keel refused to connect"),
                "{name}: {content}"
            );
            assert!(content.contains("allow_private"), "{name}: {content}");
        }
    }
    // Only the allowed calls and the first hops of the redirecting tools reached the endpoint.
    let paths: Vec<String> = endpoint.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(
        paths.iter().filter(|p| *p == "/echo").count(),
        2,
        "{paths:?}"
    );
    assert_eq!(paths.len(), 2 + 4, "{paths:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_tool_gets_its_key_its_secret_retries_and_a_cut_answer() {
    let endpoint = ToolEndpoint::start().await.unwrap();
    // SAFETY: this test binary's tests read no other variable of this name.
    unsafe { std::env::set_var("KEEL_TEST_TOOL_SECRET", "s3cret") };
    let tools = vec![
        http(
            "bearer",
            HttpTool {
                auth: Some(HttpAuth {
                    env: "KEEL_TEST_TOOL_SECRET".into(),
                    header: None,
                }),
                ..allowing_loopback(endpoint.url("/echo"))
            },
        ),
        http(
            "header_get",
            HttpTool {
                method: HttpMethod::Get,
                auth: Some(HttpAuth {
                    env: "KEEL_TEST_TOOL_SECRET".into(),
                    header: Some("X-Api-Key".into()),
                }),
                ..allowing_loopback(endpoint.url("/echo"))
            },
        ),
        http(
            "unset_secret",
            HttpTool {
                auth: Some(HttpAuth {
                    env: "KEEL_TEST_TOOL_SECRET_NOT_SET".into(),
                    header: None,
                }),
                ..allowing_loopback(endpoint.url("/echo"))
            },
        ),
        http("flaky", allowing_loopback(endpoint.url("/flaky/2"))),
        http(
            "big",
            HttpTool {
                max_response_bytes: Some(100),
                ..allowing_loopback(endpoint.url("/big/5000"))
            },
        ),
    ];
    let (results, log) = turn(
        tools,
        &[
            "bearer {\"q\": \"x\"}",
            "header_get {\"q\": \"a b\", \"n\": 2}",
            "unset_secret",
            "flaky",
            "big",
        ],
    )
    .await;
    let result = |name: &str| results.iter().find(|r| r.0 == name).unwrap().clone();

    let (_, bearer, is_error) = result("bearer");
    assert!(!is_error, "{bearer}");
    let bearer: serde_json::Value = serde_json::from_str(&bearer).unwrap();
    assert_eq!(bearer["method"], "POST");
    assert_eq!(bearer["body"], serde_json::json!({"q": "x"}));
    assert_eq!(bearer["authorization"], "Bearer s3cret");
    assert!(
        bearer["idempotency_key"]
            .as_str()
            .unwrap()
            .starts_with("ses_")
    );

    let (_, get, _) = result("header_get");
    let get: serde_json::Value = serde_json::from_str(&get).unwrap();
    assert_eq!(get["method"], "GET");
    assert_eq!(get["x_api_key"], "s3cret");
    assert_eq!(get["authorization"], serde_json::Value::Null);
    let path = get["path"].as_str().unwrap();
    assert!(path.contains("q=a+b") && path.contains("n=2"), "{path}");

    let (_, unset, is_error) = result("unset_secret");
    assert!(
        is_error && unset.contains("KEEL_TEST_TOOL_SECRET_NOT_SET"),
        "{unset}"
    );

    let (_, flaky, is_error) = result("flaky");
    assert!(!is_error, "{flaky}");
    assert_eq!(flaky, "answered after 2 failures");

    let (_, big, is_error) = result("big");
    assert!(!is_error);
    assert!(big.starts_with(&"x".repeat(100)), "{big}");
    assert!(
        big.contains("cut here") && big.contains("limit of 100 bytes"),
        "{big}"
    );

    // The secret is in no intent keel logged (the echo endpoint's answers carry it back, and
    // the model's reply repeats them): the agent's definition names only the variable.
    assert!(!log.contains("s3cret"));
    let requests = endpoint.requests();
    assert_eq!(requests.iter().filter(|r| r.path == "/flaky/2").count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_tool_allows_a_range_that_does_not_parse_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let models = common::scripted(ScriptedConfig::default());
    let test = common::engine(&dir, models, EngineConfig::default(), vec![], false).await;
    let mut agent = test
        .engine
        .store()
        .get_agent(&test.tenant, "a", None)
        .await
        .unwrap()
        .unwrap();
    agent.tools = vec![http(
        "t",
        HttpTool {
            allow_private: vec!["127.0.0.0/40".into()],
            ..HttpTool::post("http://127.0.0.1:9/")
        },
    )];
    let error = test
        .engine
        .put_agent(&test.tenant, agent.clone())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("127.0.0.0/40"), "{error}");
    agent.tools = vec![http("t", HttpTool::post("file:///etc/passwd"))];
    let error = test
        .engine
        .put_agent(&test.tenant, agent)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("http"), "{error}");
}
