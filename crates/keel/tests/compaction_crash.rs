//! A compaction is an intent and its result like a model call: the real binary SIGKILLed
//! after `compaction_started` is logged (before the summariser answers) resumes by summarising
//! the same range once, and the session reads on as an uninterrupted one does.

mod support;

use serde_json::Value;
use support::{KeelHome, kill_at_fault_point};

const CONFIG: &str = r#"
[providers.scripted]
kind = "scripted"

[[agents]]
name = "default"
model = "scripted/echo"
limits = { context_messages = 4 }
"#;

/// Sends three turns on one session; the third passes the budget of four messages. With
/// `kill_at`, the third turn's process is killed there and `keel resume` finishes it.
fn three_turns(kill_at: Option<&str>) -> Vec<Value> {
    let home = KeelHome::new(CONFIG);
    let out = home.run(&["send", "first turn"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let session = home.only_session();
    let out = home.run(&["send", "--session", &session, "second turn"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let third = ["send", "--session", &session, "third turn"];
    match kill_at {
        Some(point) => {
            assert!(
                kill_at_fault_point(home.command(&third), point),
                "keel never reached {point}"
            );
            let out = home.run(&["resume"]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        None => {
            let out = home.run(&third);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    home.events(&session)
}

/// The log without times and ids.
fn shape(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e["type"].as_str().unwrap() {
            "context_compacted" => format!(
                "compacted {}..={}: {}",
                e["from_seq"], e["through_seq"], e["summary"]
            ),
            "compaction_started" => format!("compacting through {}", e["through_seq"]),
            "model_replied" => format!("model: {}", e["message"]["parts"]),
            other => other.to_string(),
        })
        .collect()
}

#[test]
fn a_kill_between_a_compactions_intent_and_result_resumes_it_once() {
    let expected = shape(&three_turns(None));
    let compacted = expected
        .iter()
        .filter(|e| e.starts_with("compacted"))
        .count();
    assert_eq!(compacted, 1, "{expected:#?}");
    let events = three_turns(Some("compaction_intent_logged:1"));
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"].as_u64(), Some(i as u64 + 1), "contiguous seqs");
    }
    assert_eq!(shape(&events), expected, "the same log as without the kill");
}
