//! Stored snapshots as the store reads them back (`serde_json::from_str::<SessionState>`):
//! whatever decodes must encode and decode back equal, and deciding on it, or applying the
//! event that would come next, must never panic (a damaged snapshot is refused, not obeyed
//! into a crash).
#![no_main]

use keel_core::{Event, EventBody, RunId, SessionState, Timestamp, decide};
use libfuzzer_sys::{fuzz_mutator, fuzz_target};

#[global_allocator]
static ALLOCATOR: keel_fuzz::CappedAllocator = keel_fuzz::CappedAllocator;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(state) = serde_json::from_str::<SessionState>(text) else {
        return;
    };
    let encoded = serde_json::to_string(&state).expect("a state serializes");
    let again: SessionState = serde_json::from_str(&encoded)
        .unwrap_or_else(|e| panic!("{encoded} was encoded but does not decode: {e}"));
    assert_eq!(
        again, state,
        "{text} changed in a round trip through {encoded}"
    );

    let _ = decide(&state);
    let run_id = state
        .active
        .as_ref()
        .map(|run| run.run_id.clone())
        .unwrap_or_else(|| RunId::generate(0, 0));
    let step = state.active.as_ref().map_or(1, |run| run.step);
    for body in [
        EventBody::ModelCalled {
            run_id: run_id.clone(),
            step,
            attempt: state.active.as_ref().map_or(1, |run| run.attempt),
        },
        EventBody::ToolReturned {
            run_id: run_id.clone(),
            call_id: state
                .active
                .as_ref()
                .and_then(|run| run.tools.first())
                .map(|call| call.call_id.clone())
                .unwrap_or_default(),
            content: String::new(),
            is_error: false,
        },
        EventBody::RunCancelled {
            run_id,
            reason: String::new(),
        },
    ] {
        let mut next = state.clone();
        let event = Event {
            seq: next.last_seq.wrapping_add(1),
            at: Timestamp::from_millis(0),
            body,
        };
        let _ = next.apply(&event);
        let _ = decide(&next);
    }
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    keel_fuzz::mutate_with_edge_numbers(data, size, max_size, seed)
});
