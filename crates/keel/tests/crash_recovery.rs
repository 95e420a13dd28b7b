//! Crash safety of the real binary: a multi-step run whose model calls an external,
//! side-effecting tool is SIGKILLed at every fault point (and at random moments), then
//! resumed; the run must complete with a contiguous log, one result per tool call, each
//! tool call taking effect once, and the transcript of an uninterrupted run.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::Value;
use support::{KeelHome, ToolRecorder, kill_at_fault_point, sigkill};

const MESSAGE: &str = "/call record {\"n\":1}\n/call record {\"n\":2}";

fn home(tool_url: &str, token_latency_ms: u64) -> KeelHome {
    KeelHome::new(&support::recording_agent_config(tool_url, token_latency_ms))
}

/// The transcript without times or generated ids: what the conversation said.
fn transcript(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| {
            matches!(
                e["type"].as_str(),
                Some(
                    "run_started"
                        | "model_replied"
                        | "tool_returned"
                        | "tool_called"
                        | "run_completed"
                )
            )
        })
        .map(|e| match e["type"].as_str().unwrap() {
            "run_started" => format!("user: {}", e["input"]["parts"]),
            "model_replied" => format!("model: {}", e["message"]["parts"]),
            "tool_called" => format!("call: {} {}", e["name"], e["arguments"]),
            "tool_returned" => format!("result: {} {}", e["call_id"], e["content"]),
            _ => format!("end: {}", e["output"]),
        })
        .collect()
}

/// Checks the invariants of a recovered log and returns its transcript.
fn check_log(events: &[Value], recorder: &ToolRecorder) -> Vec<String> {
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            e["seq"].as_u64(),
            Some(i as u64 + 1),
            "seqs must be contiguous: {events:#?}"
        );
    }
    let count = |t: &str| events.iter().filter(|e| e["type"] == t).count();
    assert_eq!(count("run_completed"), 1, "the run completes exactly once");
    assert_eq!(count("run_failed") + count("run_cancelled"), 0);
    let mut results: HashMap<String, usize> = HashMap::new();
    for e in events.iter().filter(|e| e["type"] == "tool_returned") {
        *results
            .entry(e["call_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(results.len(), 2, "two tool calls");
    assert!(
        results.values().all(|&n| n == 1),
        "one result per tool call: {results:?}"
    );
    // Each logged tool call took effect exactly once, under its logged key.
    let keys: HashSet<String> = events
        .iter()
        .filter(|e| e["type"] == "tool_called")
        .map(|e| e["idempotency_key"].as_str().unwrap().to_string())
        .collect();
    let applied = recorder.applied();
    assert_eq!(
        applied.len(),
        2,
        "the tool took effect once per call: {applied:?}"
    );
    assert_eq!(
        keys,
        applied.keys().cloned().collect::<HashSet<_>>(),
        "effects happened under the logged keys"
    );
    // Repeats (if any) carried the same keys, so the tool could de-duplicate them.
    assert!(recorder.seen().iter().all(|k| keys.contains(k)));
    transcript(events)
}

fn uninterrupted_transcript() -> Vec<String> {
    let recorder = ToolRecorder::default();
    let home = home(&recorder.start(), 0);
    let out = home.run(&["send", MESSAGE]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = home.events(&home.only_session());
    assert_eq!(recorder.seen().len(), 2);
    check_log(&events, &recorder)
}

#[test]
fn resumes_after_kill_at_every_fault_point_without_repeating_effects() {
    let expected = uninterrupted_transcript();
    let points = [
        "model_intent_logged:1",
        "model_streaming:1",
        "tool_intent_logged:1",
        "tool_performed:1",
        "tool_result_logged:1",
        "tool_intent_logged:2",
        "tool_performed:2",
        "tool_result_logged:2",
        "model_intent_logged:2",
        "model_streaming:2",
    ];
    for point in points {
        let recorder = ToolRecorder::default();
        let home = home(&recorder.start(), 2);
        assert!(
            kill_at_fault_point(home.command(&["send", MESSAGE]), point),
            "keel never reached {point}"
        );
        // Kill the recovery once more at the same kind of point, then let it finish.
        let again = point.split(':').next().unwrap().to_string() + ":1";
        kill_at_fault_point(home.command(&["resume"]), &again);
        let out = home.run(&["resume"]);
        assert!(
            out.status.success(),
            "resume after {point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let events = home.events(&home.only_session());
        assert_eq!(
            check_log(&events, &recorder),
            expected,
            "transcript after a kill at {point}"
        );
    }
}

#[test]
fn resumes_after_kills_at_random_moments() {
    let expected = uninterrupted_transcript();
    // A fixed-seed sequence of delays: bounded in count and time, the same on every run.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut recovered = 0;
    for round in 0..8 {
        let recorder = ToolRecorder::default();
        let home = home(&recorder.start(), 3);
        let mut child = home
            .command(&["send", MESSAGE])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(20 + seed % 250));
        sigkill(&mut child);
        let out = home.run(&["resume"]);
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sessions = home.json(&["sessions", "list", "--json"]);
        if sessions.as_array().unwrap().is_empty() {
            continue; // killed before the session existed: nothing to recover
        }
        let events = home.events(&home.only_session());
        if !events.iter().any(|e| e["type"] == "run_started") && recorder.seen().is_empty() {
            // Killed before the run was queued: the session has no run to finish.
            let queued = events.len();
            assert_eq!(queued, 1, "round {round}: {events:#?}");
            continue;
        }
        assert_eq!(check_log(&events, &recorder), expected, "round {round}");
        recovered += 1;
    }
    // Rounds killed before the run existed check nothing: most must have had a run to recover.
    assert!(
        recovered >= 4,
        "only {recovered} of 8 rounds had a run to recover"
    );
}
