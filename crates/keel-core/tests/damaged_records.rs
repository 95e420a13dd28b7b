//! Records read back from the store are outside input too: a damaged snapshot or event may hold
//! any value its type can, and the core must refuse it or carry on, never panic or wrap around.
//! (Found by the `snapshots` and `stored_events` fuzz targets, `fuzz/`.)

use keel_core::{
    Action, Event, EventBody, Message, RunId, RunOptions, SessionState, Timestamp, Usage, decide,
};
use serde_json::json;

const RUN: &str = "run_01J0000000000000000000000R";

/// A session in the middle of a run whose last model call failed, with `changes` on top.
fn snapshot(changes: serde_json::Value) -> SessionState {
    let mut state = json!({
        "tenant": "ten_00000000000000000000000000",
        "agent": {"id": "agt_01J0000000000000000000000A", "name": "a", "version": 1, "model": "m"},
        "last_seq": 4, "status": "running",
        "active": {"run_id": RUN, "step": 1, "attempt": 1, "model_pending": false, "replied": false,
                   "reply_had_tools": false, "tools": [], "last_text": "", "failure": null,
                   "usage": {"input_tokens": 0, "output_tokens": 0}},
        "message_count": 1, "runs_finished": 0, "last_run": null,
        "usage": {"input_tokens": 0, "output_tokens": 0}
    });
    for (key, value) in changes.as_object().unwrap() {
        match value.as_object() {
            Some(fields) if key == "active" => {
                for (k, v) in fields {
                    state["active"][k] = v.clone();
                }
            }
            _ => state[key] = value.clone(),
        }
    }
    serde_json::from_value(state).expect("the snapshot decodes")
}

fn event(seq: u64, body: EventBody) -> Event {
    Event {
        seq,
        at: Timestamp(0),
        body,
    }
}

#[test]
fn a_snapshot_at_the_last_possible_seq_refuses_the_next_event() {
    let mut state = snapshot(json!({"last_seq": u64::MAX}));
    let before = state.clone();
    let cancelled = EventBody::RunCancelled {
        run_id: RunId::parse(RUN).unwrap(),
        reason: String::new(),
    };
    for seq in [0, u64::MAX] {
        let error = state.apply(&event(seq, cancelled.clone())).unwrap_err();
        assert!(error.reason.contains("last possible seq"), "{error}");
    }
    assert_eq!(state, before);
}

#[test]
fn counters_at_their_limits_saturate_when_deciding_and_applying() {
    let state = snapshot(json!({"active": {"attempt": u32::MAX}}));
    assert!(matches!(
        decide(&state),
        Action::CallModel {
            attempt: u32::MAX,
            ..
        }
    ));

    let mut state = snapshot(json!({
        "status": "idle", "active": null, "message_count": u64::MAX, "runs_finished": u64::MAX
    }));
    let added = EventBody::MessagesAdded {
        messages: vec![Message::user("a"), Message::user("b")],
    };
    state.apply(&event(5, added)).unwrap();
    assert_eq!(state.message_count, u64::MAX);
}

#[test]
fn usage_sums_saturate() {
    let mut usage = Usage {
        input_tokens: u64::MAX - 1,
        output_tokens: u64::MAX,
        cached_input_tokens: 0,
    };
    usage.add(&Usage {
        input_tokens: 5,
        output_tokens: 5,
        cached_input_tokens: 5,
    });
    assert_eq!(
        (usage.input_tokens, usage.output_tokens),
        (u64::MAX, u64::MAX)
    );
    assert_eq!(usage.total(), u64::MAX);
}

#[test]
fn a_sampling_number_no_f32_holds_is_refused_rather_than_read_as_infinity() {
    // Inside an event the number is buffered as an f64 and narrowed after: 1e39 became
    // infinity, which is written back as `null`.
    let started = |options: &str| {
        format!(
            r#"{{"type":"run_started","run_id":"{RUN}","input":{{"role":"user","parts":[]}},"options":{options}}}"#
        )
    };
    for options in [r#"{"temperature": 1e39}"#, r#"{"top_p": -1e39}"#] {
        assert!(EventBody::decode(&started(options)).is_err(), "{options}");
        assert!(
            serde_json::from_str::<RunOptions>(options).is_err(),
            "{options}"
        );
    }
    let body = EventBody::decode(&started(r#"{"temperature": 0.2, "top_p": null}"#)).unwrap();
    assert_eq!(EventBody::decode(&body.encode()).unwrap(), body);
}
