//! Each provider's reply decoding, from body bytes to the reply keel logs: the SSE decoder,
//! the provider's stream-event decoder (OpenAI chunks, Anthropic messages, Gemini, Responses)
//! under the shared call loop, then `ReplyAccumulator`, as the engine folds a stream; and the
//! whole `chat.completion` of a plain OpenAI call.
//!
//! Input: a format byte (`o` chat chunks, `a` Anthropic, `g` Gemini, `r` Responses, `w` a
//! whole chat.completion; any other byte picks by its value), a byte choosing where the body
//! is cut into reads, then the body.
#![no_main]

use keel_models::providers::reply_bytes::{self, StreamFormat};
use keel_models::{ReplyAccumulator, StreamEvent};
use libfuzzer_sys::{fuzz_mutator, fuzz_target};

#[global_allocator]
static ALLOCATOR: keel_fuzz::CappedAllocator = keel_fuzz::CappedAllocator;

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
}

fuzz_target!(|data: &[u8]| {
    let [format, seed, body @ ..] = data else {
        return;
    };
    let format = match format {
        b'o' => Some(StreamFormat::ChatCompletions),
        b'a' => Some(StreamFormat::AnthropicMessages),
        b'g' => Some(StreamFormat::GeminiGenerate),
        b'r' => Some(StreamFormat::OpenAiResponses),
        b'w' => None,
        other => [
            Some(StreamFormat::ChatCompletions),
            Some(StreamFormat::AnthropicMessages),
            Some(StreamFormat::GeminiGenerate),
            Some(StreamFormat::OpenAiResponses),
            None,
        ][usize::from(*other) % 5],
    };
    let Some(format) = format else {
        if let Ok(text) = std::str::from_utf8(body) {
            let _ = reply_bytes::read_chat_completion(text);
        }
        return;
    };
    let chunks = keel_fuzz::pieces(*seed, body)
        .into_iter()
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let events = RUNTIME.with(|rt| rt.block_on(reply_bytes::read_stream(format, chunks)));

    // A stream ends at its first error or with its finish; nothing comes after either.
    let (last, rest) = events
        .split_last()
        .expect("a stream always ends with something");
    assert!(
        matches!(last, Err(_) | Ok(StreamEvent::Finish(_))),
        "the stream ended with {last:?}"
    );
    let mut reply = ReplyAccumulator::default();
    for event in rest {
        match event {
            Ok(StreamEvent::Finish(_)) | Err(_) => panic!("{event:?} before the end"),
            Ok(event) => reply.push(event.clone()),
        }
    }
    if let Ok(event) = last {
        reply.push(event.clone());
        let _ = reply.finish();
    }
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    keel_fuzz::mutate_with_edge_numbers(data, size, max_size, seed)
});
