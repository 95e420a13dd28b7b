//! The SSE decoder every streaming provider reads through (`keel_models::sse`), fed a body cut
//! at arbitrary points. Input: one byte choosing the cuts (see `keel_fuzz::pieces`), then the
//! body. However the body is cut, the events must be the ones the whole body gives.
#![no_main]

use keel_models::sse::SseDecoder;
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOCATOR: keel_fuzz::CappedAllocator = keel_fuzz::CappedAllocator;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let mut whole = SseDecoder::new();
    let expected = whole.push(body);

    let mut cut = SseDecoder::new();
    let mut events = Vec::new();
    for piece in keel_fuzz::pieces(seed, body) {
        events.extend(cut.push(piece));
    }
    events.extend(cut.push(b""));
    assert_eq!(events, expected, "cutting the body changed its events");
    assert_eq!(cut.has_partial_event(), whole.has_partial_event());

    for event in &expected {
        // Lines end at CR or LF, so no field can hold one; `data` lines are joined by LF.
        assert!(!event.data.contains('\r'));
        assert!(
            event
                .event
                .as_deref()
                .is_none_or(|e| !e.contains(['\r', '\n']))
        );
        assert!(
            event
                .id
                .as_deref()
                .is_none_or(|id| !id.contains(['\r', '\n', '\0']))
        );
    }
});
