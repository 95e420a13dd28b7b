//! The local provider against the real SmolLM2-135M-Instruct GGUF: replies, streaming,
//! limits, stop sequences, cancellation, and the decode-slot queue.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use keel_core::{FinishReason, Message, Part, Role};
use keel_local::{Kernels, LocalOptions};
use keel_models::{ModelClient, StreamEvent, ToolSpec};
use support::{greedy, load};

fn capital_question() -> Vec<Message> {
    vec![Message::user("What is the capital of France?")]
}

#[tokio::test]
async fn greedy_reply_is_deterministic_and_names_paris() {
    let client = load(LocalOptions::default());
    let request = greedy(capital_question(), 40);
    let first = client.complete(request.clone()).await.expect("reply");
    let second = client.complete(request.clone()).await.expect("reply");
    let text = first.message.text_content();
    assert!(text.contains("Paris"), "reply should name Paris: {text:?}");
    assert_eq!(
        text,
        second.message.text_content(),
        "greedy decoding is deterministic"
    );
    let prompt_len = client.prompt_tokens(&request).unwrap().len() as u64;
    assert_eq!(first.usage.input_tokens, prompt_len);
    assert!(first.usage.output_tokens > 0 && first.usage.output_tokens <= 40);
    assert!(matches!(
        first.finish,
        FinishReason::Stop | FinishReason::Length
    ));
}

#[tokio::test]
async fn streamed_deltas_concatenate_to_the_whole_reply() {
    let client = load(LocalOptions {
        prefix_cache_bytes: 0,
        ..LocalOptions::default()
    });
    let request = greedy(
        vec![Message::user(
            "Write a short French sentence about café and crème brûlée.",
        )],
        48,
    );
    let mut stream = client.stream(request.clone()).await.expect("stream");
    let (mut deltas, mut usage, mut finish) = (Vec::new(), None, None);
    while let Some(event) = stream.next().await {
        match event.expect("no stream error") {
            StreamEvent::TextDelta(t) => deltas.push(t),
            StreamEvent::Usage(u) => usage = Some(u),
            StreamEvent::Finish(f) => finish = Some(f),
            StreamEvent::Queued { .. } => assert!(deltas.is_empty(), "the queue wait comes first"),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert!(deltas.len() > 3, "the reply streams in pieces: {deltas:?}");
    assert!(deltas.iter().all(|d| !d.is_empty()));
    let whole = client.complete(request).await.expect("reply");
    assert_eq!(deltas.concat(), whole.message.text_content());
    assert_eq!(
        usage.expect("usage event").output_tokens,
        whole.usage.output_tokens
    );
    assert!(finish.is_some(), "a finish event closes the stream");
}

#[tokio::test]
async fn max_tokens_bounds_the_reply() {
    let client = load(LocalOptions::default());
    let reply = client
        .complete(greedy(
            vec![Message::user("Tell me a long story about a dragon.")],
            5,
        ))
        .await
        .unwrap();
    assert_eq!(reply.usage.output_tokens, 5);
    assert_eq!(reply.finish, FinishReason::Length);
    assert!(!reply.message.text_content().is_empty());
}

#[tokio::test]
async fn stop_sequence_ends_the_reply_without_emitting_it() {
    let client = load(LocalOptions::default());
    let request = greedy(
        vec![Message::user("Name three colours of the rainbow.")],
        40,
    );
    let full = client
        .complete(request.clone())
        .await
        .unwrap()
        .message
        .text_content();
    // A stop string from the middle of the greedy reply: the same reply must end just before it.
    let words: Vec<&str> = full.split_whitespace().collect();
    assert!(words.len() >= 4, "reply too short to test stops: {full:?}");
    let stop = words[words.len() / 2].to_string();
    let cut = &full[..full.find(&stop).unwrap()];
    let mut with_stop = request;
    with_stop.params.stop = vec![stop.clone()];
    let reply = client.complete(with_stop).await.unwrap();
    assert_eq!(reply.message.text_content(), cut, "stop {stop:?}");
    assert!(!reply.message.text_content().contains(&stop));
    assert_eq!(reply.finish, FinishReason::Stop);
}

#[tokio::test]
async fn dropping_the_stream_stops_decoding_within_a_token_or_two() {
    let client = load(LocalOptions {
        slots: 1,
        ..LocalOptions::default()
    });
    let mut stream = client
        .stream(greedy(
            vec![Message::user("Count from one to one thousand, in words.")],
            1500,
        ))
        .await
        .unwrap();
    let mut seen = 0;
    while seen < 3 {
        if let Some(Ok(StreamEvent::TextDelta(_))) = stream.next().await {
            seen += 1;
        }
    }
    drop(stream);
    let at_drop = client.stats().generated_tokens;
    // The only decode slot is freed only when the cancelled request has stopped.
    let next = client
        .complete(greedy(capital_question(), 1))
        .await
        .unwrap();
    assert_eq!(next.usage.output_tokens, 1);
    let after = client.stats().generated_tokens;
    assert!(
        after - 1 - at_drop <= 2,
        "decoded {} tokens after the drop",
        after - 1 - at_drop
    );
}

#[tokio::test]
async fn a_request_dropped_while_queued_never_runs() {
    let client = load(LocalOptions {
        slots: 1,
        ..LocalOptions::default()
    });
    let mut running = client
        .stream(greedy(capital_question(), 200))
        .await
        .unwrap();
    assert!(matches!(
        running.next().await,
        Some(Ok(StreamEvent::Queued { .. }))
    ));
    assert!(matches!(
        running.next().await,
        Some(Ok(StreamEvent::TextDelta(_)))
    ));
    let queued = client
        .stream(greedy(capital_question(), 200))
        .await
        .unwrap();
    drop(queued);
    drop(running);
    let next = client
        .complete(greedy(capital_question(), 1))
        .await
        .unwrap();
    assert_eq!(next.usage.output_tokens, 1);
    assert_eq!(
        client.stats().requests,
        2,
        "the dropped request never took the slot"
    );
}

#[tokio::test]
async fn concurrent_requests_queue_for_the_decode_slot_and_report_the_wait() {
    let waits = Arc::new(Mutex::new(Vec::new()));
    let hook_waits = waits.clone();
    let client = load(LocalOptions {
        slots: 1,
        on_queue_wait: Some(Arc::new(move |d: Duration| {
            hook_waits.lock().unwrap().push(d)
        })),
        ..LocalOptions::default()
    });
    let a = client.complete(greedy(capital_question(), 12));
    let b = client.complete(greedy(vec![Message::user("What is 2 + 2?")], 12));
    let (a, b) = tokio::join!(a, b);
    assert!(a.is_ok() && b.is_ok());
    let waits = waits.lock().unwrap().clone();
    assert_eq!(waits.len(), 2, "every request reports its queue wait");
    let stats = client.stats();
    assert_eq!(stats.requests, 2);
    assert_eq!(
        stats.queue_wait_total,
        Duration::from_micros(waits.iter().map(|d| d.as_micros() as u64).sum())
    );
    // One of the two could only start once the other had finished decoding.
    assert!(waits.iter().any(|w| !w.is_zero()), "{waits:?}");
}

#[tokio::test]
async fn bad_parameters_and_oversized_prompts_are_refused_with_a_reason() {
    let client = load(LocalOptions {
        context_len: 64,
        ..LocalOptions::default()
    });
    let mut hot = greedy(capital_question(), 5);
    hot.params.temperature = Some(-1.0);
    let err = client.complete(hot).await.unwrap_err();
    assert!(err.message.contains("temperature -1"), "{err}");

    let long = greedy(vec![Message::user("word ".repeat(200))], 5);
    let err = client.complete(long).await.unwrap_err();
    assert!(err.message.contains("context holds 64"), "{err}");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn same_seed_gives_the_same_sampled_reply() {
    let client = load(LocalOptions::default());
    let mut request = greedy(vec![Message::user("Write a haiku about the sea.")], 16);
    request.params.temperature = Some(0.9);
    request.params.seed = Some(7);
    let a = client
        .complete(request.clone())
        .await
        .unwrap()
        .message
        .text_content();
    let b = client
        .complete(request)
        .await
        .unwrap()
        .message
        .text_content();
    assert_eq!(a, b, "the same seed gives the same reply");
    assert!(!a.is_empty());
}

#[tokio::test]
async fn portable_kernels_give_the_same_reply() {
    let simd = load(LocalOptions::default());
    let portable = load(LocalOptions {
        kernels: Kernels::Portable,
        ..LocalOptions::default()
    });
    assert!(!portable.uses_simd());
    let request = greedy(capital_question(), 40);
    let a = simd
        .complete(request.clone())
        .await
        .unwrap()
        .message
        .text_content();
    let b = portable
        .complete(request)
        .await
        .unwrap()
        .message
        .text_content();
    assert!(b.contains("Paris"), "{b:?}");
    // Sums run in another order, so only near-ties could differ: the opening must agree.
    let words = |s: &str| {
        s.split_whitespace()
            .take(6)
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(words(&a), words(&b), "simd {a:?} vs portable {b:?}");
}

#[tokio::test]
async fn tools_and_tool_turns_are_rendered_as_text_the_model_can_follow() {
    let client = load(LocalOptions::default());
    let mut request = greedy(
        vec![
            Message::user("What's the weather in Paris?"),
            Message {
                role: Role::Assistant,
                parts: vec![Part::ToolCall {
                    id: "call_1".into(),
                    name: "weather".into(),
                    arguments: serde_json::json!({"city": "Paris"}),
                }],
            },
            Message {
                role: Role::Tool,
                parts: vec![Part::ToolResult {
                    call_id: "call_1".into(),
                    content: "18°C, sunny".into(),
                    is_error: false,
                }],
            },
        ],
        24,
    );
    request.tools = vec![ToolSpec {
        name: "weather".into(),
        description: "Current weather for a city".into(),
        parameters: serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        strict: None,
    }];
    let prompt = client
        .tokenizer()
        .decode(&client.prompt_tokens(&request).unwrap());
    assert!(
        prompt.contains(
            "<tools>\n{\"description\":\"Current weather for a city\",\"name\":\"weather\""
        ),
        "{prompt}"
    );
    assert!(prompt.contains("\nassistant\n<tool_call>{\"arguments\":{\"city\":\"Paris\"},\"name\":\"weather\"}</tool_call>\n"), "{prompt}");
    assert!(
        prompt.contains("\ntool\n<tool_response>18°C, sunny</tool_response>\n"),
        "{prompt}"
    );
    let reply = client.complete(request).await.unwrap();
    assert!(matches!(
        reply.finish,
        FinishReason::Stop | FinishReason::Length | FinishReason::ToolCalls
    ));
    assert!(!reply.message.parts.is_empty());
}
