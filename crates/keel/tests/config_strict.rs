//! Strict configuration, end to end: an unknown key in any table of `keel.toml` stops keel at
//! start with the key's full path (and the nearest known key when one is near);
//! `keel config check` validates without starting and prints the effective configuration with
//! secrets redacted; an unknown `KEEL_*` variable is warned about once.

mod support;

use support::KeelHome;

/// A valid file with every table keel reads; each `#@name` line marks where a case adds a key.
const EVERY_TABLE: &str = r#"
#@top
default_model = "scripted/echo"

[store]
durability = "full"
#@store

[server]
metrics_tenant_labels = false
#@server

[limits]
sessions_per_tenant = 1000
#@limits

[providers.scripted]
kind = "scripted"
#@scripted

[providers.local]
kind = "local"
slots = 1
#@local

[providers.openai]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
#@openai

[providers.anthropic]
kind = "anthropic"
api_key = "sk-ant-secret-1"
#@anthropic

[providers.anthropic.timeouts]
connect_ms = 1000
#@anthropic_timeouts

[providers.az]
kind = "azure"
endpoint = "https://example.invalid"
auth = { api_key = "azure-secret-2" }
#@azure

[providers.gem]
kind = "gemini"
#@gemini

[providers.resp]
kind = "openai_responses"
#@responses

[[routes]]
name = "main"
policy = "fallback"
#@route

[[routes.targets]]
provider = "scripted"
model = "echo"
#@target

[routes.retry]
attempts_per_target = 1
#@retry

[routes.breaker]
failures = 3
#@breaker

[routes.timeouts]
idle_ms = 1000
#@route_timeouts

[catalog."scripted/echo"]
context_window = 1000
max_output_tokens = 100
#@catalog

[catalog."scripted/echo".price]
input = 0.5
output = 1.5
#@price

[[agents]]
name = "support"
model = "main"
#@agent

[agents.limits]
max_steps = 4
context_tokens = 6000
tool_result_context_bytes = 8192
#@agent_limits

[agents.compaction]
model = "main"
summarise = true

[agents.memory]
namespace = "team:support"
extract = true

[[agents.tools]]
name = "clock_now"
kind = "builtin"
#@tool

[[agents.tools]]
name = "lookup"
kind = "http"
url = "http://127.0.0.1:9/lookup"
method = "GET"
allow_private = ["127.0.0.0/8"]
auth = { env = "LOOKUP_TOKEN", header = "X-Api-Key" }
timeout_secs = 5
retries = 1
max_response_bytes = 1000
require_approval = true
#@http_tool

[agents.tools.parameters]
type = "object"
# A JSON Schema is open: keys in it are the schema's, not keel's.
properties = { q = { type = "string" } }

[[agents.memory_blocks]]
label = "user"
description = "Who the user is."
value = "unknown yet"
limit = 500
shared = false
#@block
"#;

/// `EVERY_TABLE` with `line` added at `#@marker`.
fn with_key(marker: &str, line: &str) -> String {
    let mark = format!("#@{marker}\n");
    assert!(EVERY_TABLE.contains(&mark), "no marker {marker}");
    EVERY_TABLE.replace(&mark, &format!("{line}\n"))
}

/// Runs `keel agents list` (a real start: config, then the store) and returns its stderr,
/// asserting it failed.
fn start_fails(config: &str) -> String {
    let home = KeelHome::new(config);
    let out = home.run(&["agents", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "keel started with:\n{config}");
    stderr
}

#[test]
fn the_file_with_every_table_starts() {
    let home = KeelHome::new(EVERY_TABLE);
    let out = home.run(&["agents", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unknown_key_in_any_table_stops_start_up_naming_its_path() {
    // (marker, added line, the path keel must name, the key it must suggest)
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        (
            "top",
            "default_modle = \"x\"",
            "default_modle",
            Some("default_model"),
        ),
        ("top", "colour = 1", "colour", None),
        (
            "store",
            "durabilty = \"normal\"",
            "store.durabilty",
            Some("durability"),
        ),
        (
            "server",
            "metrics_listn = \"127.0.0.1:1\"",
            "server.metrics_listn",
            Some("metrics_listen"),
        ),
        (
            "limits",
            "sessions_per_tennant = 5",
            "limits.sessions_per_tennant",
            Some("sessions_per_tenant"),
        ),
        (
            "scripted",
            "reply_token = 3",
            "providers.scripted.reply_token",
            Some("reply_tokens"),
        ),
        ("local", "slot = 2", "providers.local.slot", Some("slots")),
        (
            "openai",
            "api_key = \"k\"",
            "providers.openai.api_key",
            Some("api_key_env"),
        ),
        (
            "anthropic",
            "betas = \"b\"",
            "providers.anthropic.betas",
            Some("beta"),
        ),
        (
            "anthropic_timeouts",
            "connect_timeout_ms = 5",
            "providers.anthropic.timeouts.connect_timeout_ms",
            Some("connect_ms"),
        ),
        (
            "azure",
            "apiversion = \"2024-10-21\"",
            "providers.az.apiversion",
            Some("api_version"),
        ),
        (
            "gemini",
            "base_uri = \"http://x\"",
            "providers.gem.base_uri",
            Some("base_url"),
        ),
        (
            "responses",
            "organization = \"o\"",
            "providers.resp.organization",
            None,
        ),
        (
            "route",
            "polcy = \"weighted\"",
            "routes.main.polcy",
            Some("policy"),
        ),
        (
            "target",
            "wieght = 2",
            "routes.main.targets[0].wieght",
            Some("weight"),
        ),
        (
            "retry",
            "attempts = 2",
            "routes.main.retry.attempts",
            Some("attempts_per_target"),
        ),
        (
            "breaker",
            "cooldown = 5",
            "routes.main.breaker.cooldown",
            Some("cooldown_ms"),
        ),
        (
            "route_timeouts",
            "idle = 5",
            "routes.main.timeouts.idle",
            Some("idle_ms"),
        ),
        (
            "catalog",
            "context = 5",
            "catalog.\"scripted/echo\".context",
            Some("context_window"),
        ),
        (
            "price",
            "cached = 0.1",
            "catalog.\"scripted/echo\".price.cached",
            Some("cached_input"),
        ),
        (
            "agent",
            "instruction = \"be brief\"",
            "agents.support.instruction",
            Some("instructions"),
        ),
        (
            "agent_limits",
            "max_step = 6",
            "agents.support.limits.max_step",
            Some("max_steps"),
        ),
        (
            "tool",
            "descripton = \"d\"",
            "agents.support.tools.clock_now.descripton",
            Some("description"),
        ),
        (
            "http_tool",
            "timeout_ms = 5",
            "agents.support.tools.lookup.timeout_ms",
            Some("timeout_secs"),
        ),
        (
            "block",
            "limits = 5",
            "agents.support.memory_blocks[0].limits",
            Some("limit"),
        ),
    ];
    let mut failures = Vec::new();
    for (marker, line, path, suggestion) in cases {
        let stderr = start_fails(&with_key(marker, line));
        let named = format!("`{path}`: unknown key");
        let suggested = suggestion.map(|s| format!("did you mean `{s}`?"));
        let ok = stderr.contains(&named)
            && suggested.as_ref().is_none_or(|s| stderr.contains(s))
            && (suggestion.is_some() || !stderr.contains("did you mean"));
        if !ok {
            failures.push(format!(
                "{line} (in {marker}): expected {named} {suggested:?}, got: {stderr}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn an_unknown_variant_names_its_path_and_the_nearest_one() {
    let cases = [
        (
            EVERY_TABLE.replace("kind = \"openai\"", "kind = \"opnai\""),
            "`providers.openai.kind`: unknown value `opnai`; did you mean `openai`?",
        ),
        (
            EVERY_TABLE.replace("auth = { api_key", "auth = { api_kee"),
            "`providers.az.auth.api_kee`: unknown key; did you mean `api_key`?",
        ),
        (
            EVERY_TABLE.replace("policy = \"fallback\"", "policy = \"fastest\""),
            "`routes.main.policy`: unknown value `fastest`",
        ),
    ];
    for (config, expected) in cases {
        let stderr = start_fails(&config);
        assert!(
            stderr.contains(expected),
            "expected {expected}, got: {stderr}"
        );
    }
}

#[test]
fn a_wrong_value_names_its_path() {
    let stderr = start_fails(&EVERY_TABLE.replace("max_steps = 4", "max_steps = \"four\""));
    assert!(
        stderr.contains("`agents.support.limits.max_steps`: invalid type"),
        "{stderr}"
    );
    let stderr = start_fails(&with_key("tool", "url = \"http://x\""));
    assert!(
        stderr.contains("`agents.support.tools.clock_now`: `url` is only for tools of kind `http`"),
        "{stderr}"
    );
}

#[test]
fn config_check_prints_the_effective_configuration_with_secrets_redacted() {
    let home = KeelHome::new(EVERY_TABLE);
    let out = home
        .command(&["config", "check"])
        .env("GEMINI_API_KEY", "gem-secret-3")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in ["sk-ant-secret-1", "azure-secret-2", "gem-secret-3"] {
        assert!(!stdout.contains(secret), "{secret} printed:\n{stdout}");
    }
    let printed: toml::Table = toml::from_str(&stdout).expect("the output is TOML");
    let providers = &printed["providers"];
    assert_eq!(
        providers["anthropic"]["api_key"].as_str(),
        Some("<redacted>")
    );
    assert_eq!(
        providers["az"]["auth"]["api_key"].as_str(),
        Some("<redacted>")
    );
    // From the environment, then redacted: what keel would run with, not only the file.
    assert_eq!(providers["gem"]["api_key"].as_str(), Some("<redacted>"));
    // Defaults are shown too.
    assert_eq!(printed["store"]["group_commit"].as_bool(), Some(true));
    assert_eq!(printed["routes"][0]["sticky"].as_bool(), Some(true));
    assert_eq!(
        printed["agents"][0]["limits"]["max_steps"].as_integer(),
        Some(4)
    );

    // What it prints is itself a valid configuration.
    let again = home.path().join("printed.toml");
    std::fs::write(&again, &stdout).unwrap();
    let out = home.run(&["config", "check", "--file", again.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let json = home.json(&["config", "check", "--json"]);
    assert_eq!(json["providers"]["anthropic"]["api_key"], "<redacted>");
}

#[test]
fn config_check_refuses_a_bad_file_with_every_path() {
    let home = KeelHome::new(EVERY_TABLE);
    let bad = home.path().join("bad.toml");
    std::fs::write(&bad, with_key("agent_limits", "context_token = 6000")).unwrap();
    let out = home.run(&["config", "check", "--file", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "printed a configuration for a bad file"
    );
    assert!(
        stderr.contains(
            "bad.toml: `agents.support.limits.context_token`: unknown key; did you mean `context_tokens`"
        ),
        "{stderr}"
    );

    std::fs::write(&bad, "[store\n").unwrap();
    let out = home.run(&["config", "check", "--file", bad.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not valid TOML") && stderr.contains("line 1"),
        "{stderr}"
    );

    let missing = home.path().join("missing.toml");
    let out = home.run(&["config", "check", "--file", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn an_unknown_keel_variable_is_warned_about_once() {
    let home = KeelHome::new(EVERY_TABLE);
    let out = home
        .command(&["agents", "list"])
        .env("KEEL_DATADIR", "elsewhere")
        .env("KEEL_LOG", "warn")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let warning = "KEEL_DATADIR is set but keel does not read it; did you mean KEEL_DATA_DIR?";
    assert_eq!(stderr.matches(warning).count(), 1, "{stderr}");
    assert!(
        !stderr.contains("KEEL_LOG"),
        "a known variable was warned about: {stderr}"
    );
}
