//! Stored events as the store reads them back (`EventBody::decode`, one body per line of the
//! input): whatever decodes must encode and decode back equal, and folding the decoded events
//! into a session's state (`SessionState::apply`, then `decide`) must never panic; a state
//! reached that way must survive its snapshot's round trip.
#![no_main]

use keel_core::{Event, EventBody, SessionState, Timestamp, decide};
use libfuzzer_sys::{fuzz_mutator, fuzz_target};

#[global_allocator]
static ALLOCATOR: keel_fuzz::CappedAllocator = keel_fuzz::CappedAllocator;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut state = SessionState::default();
    for (i, line) in text.lines().enumerate() {
        let Ok(body) = EventBody::decode(line) else {
            continue;
        };
        let encoded = body.encode();
        let again = EventBody::decode(&encoded)
            .unwrap_or_else(|e| panic!("{encoded} was encoded but does not decode: {e}"));
        assert_eq!(
            again, body,
            "{line} changed in a round trip through {encoded}"
        );

        let event = Event {
            seq: state.last_seq + 1,
            at: Timestamp::from_millis(i as i64 * 1000),
            body,
        };
        let _ = state.apply(&event);
        let _ = decide(&state);
    }
    let snapshot = serde_json::to_string(&state).expect("a state serializes");
    let restored: SessionState = serde_json::from_str(&snapshot)
        .unwrap_or_else(|e| panic!("snapshot {snapshot} does not decode: {e}"));
    assert_eq!(
        restored, state,
        "the state changed in its snapshot's round trip"
    );
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    keel_fuzz::mutate_with_edge_numbers(data, size, max_size, seed)
});
