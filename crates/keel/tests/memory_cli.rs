//! Long-term memory from the command line and from an agent's own tools, with the real binary:
//! `keel memory add | search | get | rm` on the local data directory and on a running server
//! (`--server`), bad input a usage error (exit code 2) with nothing stored; and the built-in
//! `memory_save` / `memory_search` tools, whose save survives a SIGKILL around it exactly once
//! and whose bad arguments are an error result to the model, never a failed run.

mod support;

use keel_local::pull::{self, EMBEDDING_MODEL};
use serde_json::Value;
use support::{KeelHome, KeelServer, kill_at_fault_point};

/// keel on the embedded defaults (the local chat and embedding models) from the tests' cache.
fn home_with_local_models() -> KeelHome {
    let cache = support::test_model_cache();
    pull::ensure_default_model(&cache, |_| {}).expect("the chat model can be fetched");
    pull::ensure_model(&cache, EMBEDDING_MODEL, |_| {})
        .expect("the embedding model can be fetched");
    let mut home = KeelHome::new("");
    home.model_cache = cache;
    home
}

fn stdout(home: &KeelHome, args: &[&str]) -> String {
    let out = home.run(args);
    assert!(
        out.status.success(),
        "keel {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `args`, which keel must refuse as bad input (exit code 2); its stderr.
fn refused(home: &KeelHome, args: &[&str]) -> String {
    let out = home.run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "keel {args:?}: {stderr}");
    stderr
}

/// The ids of every hit of `query` in `namespace` (up to 100).
fn found(home: &KeelHome, extra: &[&str], namespace: &str, query: &str) -> Vec<String> {
    let mut args = vec![
        "memory", "search", namespace, query, "--limit", "100", "--json",
    ];
    args.extend_from_slice(extra);
    let hits: Value = serde_json::from_str(&stdout(home, &args)).unwrap();
    hits["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["record"]["id"].as_str().unwrap().to_string())
        .collect()
}

/// Adds, searches (each mode), reads and forgets through `extra` (`--server URL` or nothing).
fn adds_searches_reads_and_forgets(home: &KeelHome, extra: &[&str], namespace: &str) {
    let with = |args: &[&str]| -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(extra.iter().map(|a| a.to_string()));
        all
    };
    let run = |args: &[&str]| {
        let args = with(args);
        stdout(home, &args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let add = |text: &str, meta: &str| {
        run(&["memory", "add", namespace, text, "--meta", meta])
            .trim()
            .to_string()
    };
    let tea = add(
        "Ada's favourite drink is green tea.",
        r#"{"kind": "preference"}"#,
    );
    let report = add(
        "The quarterly report is due on Friday.",
        r#"{"kind": "task"}"#,
    );
    assert!(
        tea.starts_with("mem_") && report.starts_with("mem_"),
        "{tea} {report}"
    );

    // A paraphrase, found by meaning; the same words, found by keywords alone.
    let lines = run(&[
        "memory",
        "search",
        namespace,
        "What does she like to drink?",
        "--limit",
        "1",
    ]);
    assert!(lines.starts_with(&format!("{tea}  ")), "{lines}");
    assert_eq!(lines.lines().count(), 1, "{lines}");
    for (mode, query, expected) in [
        (
            "vector",
            "When must the quarterly summary be handed in?",
            &report,
        ),
        ("keyword", "quarterly report", &report),
        ("hybrid", "green tea", &tea),
    ] {
        let lines = run(&["memory", "search", namespace, query, "--mode", mode]);
        assert!(
            lines.starts_with(&format!("{expected}  ")),
            "{mode}: {lines}"
        );
    }

    let record: Value = serde_json::from_str(&run(&["memory", "get", &tea])).unwrap();
    assert_eq!(record["text"], "Ada's favourite drink is green tea.");
    assert_eq!(record["namespace"], namespace);
    assert_eq!(record["metadata"]["kind"], "preference");
    assert_eq!(record["dimensions"], 384, "{record}");

    // Bad input: a usage error, and nothing stored.
    let bad_input: [(&[&str], &str); 5] = [
        (
            &["memory", "add", namespace, "x", "--meta", "[1]"],
            "JSON object",
        ),
        (
            &["memory", "add", namespace, "x", "--meta", "{oops"],
            "not JSON",
        ),
        (&["memory", "add", namespace, "   "], "text"),
        (
            &["memory", "search", namespace, "tea", "--limit", "0"],
            "limit",
        ),
        (
            &["memory", "search", namespace, "tea", "--mode", "fuzzy"],
            "fuzzy",
        ),
    ];
    for (args, says) in bad_input {
        let args = with(args);
        let stderr = refused(home, &args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let mut all = found(home, extra, namespace, "tea report");
    all.sort();
    let mut expected = vec![tea.clone(), report.clone()];
    expected.sort();
    assert_eq!(all, expected, "only the two records were stored");

    assert_eq!(run(&["memory", "rm", &tea]).trim(), format!("forgot {tea}"));
    let args = with(&["memory", "get", &tea]);
    let out = home.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not found"), "{stderr}");
    assert_eq!(found(home, extra, namespace, "tea report"), [report]);
}

#[test]
fn the_cli_adds_searches_reads_and_forgets_memory_locally_and_on_a_server() {
    let home = home_with_local_models();
    adds_searches_reads_and_forgets(&home, &[], "user:ada");

    let server = KeelServer::start(&home, &[]);
    let url = server.base.clone();
    adds_searches_reads_and_forgets(&home, &["--server", &url], "user:bob");
    // The server sees what the local commands stored, in the same data directory.
    assert_eq!(
        found(&home, &["--server", &url], "user:ada", "report").len(),
        1
    );
}

const AGENT: &str = r#"
[providers.scripted]
kind = "scripted"
token_latency_ms = 2

[[agents]]
name = "default"
model = "scripted/echo"
tools = [
    { name = "memory_save", kind = "builtin" },
    { name = "memory_search", kind = "builtin" },
]
"#;

/// The results of the tool calls in `session`'s log: `(content, is_error)`.
fn tool_results(home: &KeelHome, session: &str) -> Vec<(String, bool)> {
    home.events(session)
        .into_iter()
        .filter(|e| e["type"] == "tool_returned")
        .map(|e| {
            let content = e["content"].as_str().unwrap_or_default().to_string();
            (content, e["is_error"].as_bool().unwrap_or(false))
        })
        .collect()
}

#[test]
fn an_agent_saves_and_searches_its_memory_and_bad_arguments_are_results() {
    let home = KeelHome::new(AGENT);
    let save = r#"/call memory_save {"text": "Ada prefers green tea.", "metadata": {"kind": "preference"}}"#;
    stdout(&home, &["send", save]);
    let session = home.only_session();
    let saved = tool_results(&home, &session);
    assert!(!saved[0].1, "{saved:?}");
    let id = found(&home, &[], "agent:default", "green tea");
    assert_eq!(id.len(), 1);
    assert!(
        saved[0].0.contains(&id[0]),
        "the result names the record: {saved:?}"
    );
    let record: Value = serde_json::from_str(&stdout(&home, &["memory", "get", &id[0]])).unwrap();
    assert_eq!(record["metadata"]["kind"], "preference");
    assert_eq!(record["metadata"]["session"], session.as_str());

    let calls = [
        r#"/call memory_search {"query": "What does Ada drink? \"tea\"", "limit": 3}"#,
        r#"/call memory_save {}"#,
        r#"/call memory_save {"text": "x", "metadata": [1]}"#,
        r#"/call memory_search {"query": "  "}"#,
        r#"/call memory_search {"query": "tea", "limit": 0}"#,
    ]
    .join("\n");
    let too_long = format!(
        r#"/call memory_save {{"text": "{}"}}"#,
        "a".repeat(keel_store::memory::MAX_TEXT + 1)
    );
    stdout(&home, &["send", "--session", &session, &calls]);
    stdout(&home, &["send", "--session", &session, &too_long]);
    let results = tool_results(&home, &session);
    let [_, search, no_text, bad_meta, empty, zero, oversize] = results.as_slice() else {
        panic!("{results:?}")
    };
    assert!(
        !search.1 && search.0.contains("Ada prefers green tea."),
        "{search:?}"
    );
    for (result, says) in [
        (no_text, "\"text\""),
        (bad_meta, "JSON object"),
        (empty, "empty"),
        (zero, "limit"),
        (oversize, "bytes"),
    ] {
        assert!(result.1 && result.0.contains(says), "{says}: {result:?}");
    }
    assert_eq!(
        found(&home, &[], "agent:default", "tea x a").len(),
        1,
        "nothing else saved"
    );
}

#[test]
fn a_save_survives_a_kill_at_every_point_around_it_and_happens_once() {
    let save = r#"/call memory_save {"text": "Ada's cat is called Pixel."}"#;
    for point in [
        "tool_intent_logged:1",
        "tool_performed:1",
        "tool_result_logged:1",
    ] {
        let home = KeelHome::new(AGENT);
        assert!(
            kill_at_fault_point(home.command(&["send", save]), point),
            "keel never reached {point}"
        );
        let out = home.run(&["resume"]);
        assert!(
            out.status.success(),
            "resume after {point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ids = found(&home, &[], "agent:default", "Pixel");
        assert_eq!(ids.len(), 1, "after a kill at {point}: {ids:?}");
        let results = tool_results(&home, &home.only_session());
        assert_eq!(results.len(), 1, "{results:?}");
        assert!(
            results[0].0.contains(&ids[0]),
            "the logged result names the stored record"
        );
    }
}

#[test]
fn an_agents_memory_namespace_is_where_its_tools_keep_memory() {
    let shared = AGENT.replace(
        "model = \"scripted/echo\"\n",
        "model = \"scripted/echo\"\nmemory = { namespace = \"team:support\" }\n",
    );
    let home = KeelHome::new(&shared);
    stdout(
        &home,
        &[
            "send",
            r#"/call memory_save {"text": "Refunds over 200 euros need finance."}"#,
        ],
    );
    assert_eq!(found(&home, &[], "team:support", "refunds").len(), 1);
    let out = home.run(&["memory", "search", "agent:default", "refunds"]);
    assert!(!out.status.success(), "nothing in the default namespace");

    // A namespace no store keeps is refused when the agent is read, naming it.
    let bad = AGENT.replace(
        "model = \"scripted/echo\"\n",
        &format!(
            "model = \"scripted/echo\"\nmemory = {{ namespace = \"{}\" }}\n",
            "n".repeat(201)
        ),
    );
    let out = KeelHome::new(&bad).run(&["send", "hello"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("memory namespace"),
        "{stderr}"
    );
    let typo = AGENT.replace(
        "model = \"scripted/echo\"\n",
        "model = \"scripted/echo\"\nmemory = { namespaces = \"x\" }\n",
    );
    let out = KeelHome::new(&typo).run(&["send", "hello"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("namespaces"),
        "{stderr}"
    );
}
