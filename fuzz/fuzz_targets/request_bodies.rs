//! Request bodies into every handler's body type, as `ApiJson` parses them (`serde_json` from
//! the bytes), then what the handler reads out of a body that parsed: a chat request becomes a
//! `ModelRequest`, Responses and Conversations input items become keel messages. The depth
//! check (`keel_core::limits`) runs on every body and must agree with the parsed value.
//!
//! Input: a byte naming the body type (the letters below; any other byte picks by its value),
//! then the body.
#![no_main]

use keel_core::limits::{MAX_JSON_DEPTH, check_text, check_value};
use keel_server::openai::{chat, conversations, items, responses, wire as openai_wire};
use keel_server::wire;
use libfuzzer_sys::{fuzz_mutator, fuzz_target};
use serde::de::DeserializeOwned;

#[global_allocator]
static ALLOCATOR: keel_fuzz::CappedAllocator = keel_fuzz::CappedAllocator;

const KINDS: &[u8] = b"ASMTKCRVUI";

fuzz_target!(|data: &[u8]| {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let kind = match KINDS.contains(&kind) {
        true => kind,
        false => KINDS[usize::from(kind) % KINDS.len()],
    };
    depth_checks_agree(body);
    match kind {
        b'A' => drop(parse::<wire::AgentBody>(body)),
        b'S' => drop(parse::<wire::CreateSession>(body)),
        b'M' => drop(parse::<wire::SendMessage>(body)),
        b'T' => drop(parse::<wire::CreateTenant>(body)),
        b'K' => drop(parse::<wire::CreateKey>(body)),
        b'C' => {
            if let Some(request) = parse::<openai_wire::ChatRequest>(body) {
                let _ = chat::model_request(&request, request.model.clone(), None);
            }
        }
        b'R' => {
            if let Some(request) = parse::<responses::CreateResponse>(body)
                && let Some(input) = &request.input
            {
                let _ = items::parse_input(input, "input");
            }
        }
        b'V' => {
            if let Some(request) = parse::<conversations::CreateConversation>(body)
                && let Some(input) = &request.items
            {
                let _ = items::parse_input(input, "items");
            }
        }
        b'U' => drop(parse::<conversations::UpdateConversation>(body)),
        _ => {
            if let Some(request) = parse::<conversations::AddItems>(body) {
                let _ = items::parse_input(&request.items, "items");
            }
        }
    }
});

fn parse<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}

/// The text check (run on raw bodies) and the value check (run on parsed JSON) must accept
/// exactly the same JSON.
fn depth_checks_agree(body: &[u8]) {
    let by_text = check_text(body, MAX_JSON_DEPTH, "body");
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        let by_value = check_value(&value, MAX_JSON_DEPTH, "body");
        assert_eq!(
            by_text.is_ok(),
            by_value.is_ok(),
            "{by_text:?} / {by_value:?}"
        );
    }
}

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    keel_fuzz::mutate_with_edge_numbers(data, size, max_size, seed)
});
