//! KV-cache reuse across turns: a conversation replayed with reuse gives exactly the same
//! text as without it, while computing only the new prompt tokens.

mod support;

use keel_core::Message;
use keel_local::{LocalClient, LocalOptions};
use keel_models::ModelClient;
use support::{greedy, load};

const QUESTIONS: [&str; 3] = [
    "What is the capital of France?",
    "And of Italy?",
    "Which of the two is larger?",
];

/// Plays the conversation turn by turn; returns each reply and its cached prompt tokens.
async fn converse(client: &LocalClient) -> Vec<(String, u64)> {
    let mut history = Vec::new();
    let mut out = Vec::new();
    for q in QUESTIONS {
        history.push(Message::user(q));
        let reply = client
            .complete(greedy(history.clone(), 24))
            .await
            .expect("reply");
        out.push((
            reply.message.text_content(),
            reply.usage.cached_input_tokens,
        ));
        history.push(reply.message);
    }
    out
}

#[tokio::test]
async fn reuse_gives_identical_text_and_computes_fewer_prompt_tokens() {
    let with_reuse = load(LocalOptions::default());
    let without = load(LocalOptions {
        prefix_cache_bytes: 0,
        ..LocalOptions::default()
    });
    let a = converse(&with_reuse).await;
    let b = converse(&without).await;
    let texts = |v: &[(String, u64)]| v.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>();
    assert_eq!(texts(&a), texts(&b), "reuse must not change the replies");

    assert_eq!(a[0].1, 0, "nothing to reuse on the first turn");
    for (turn, (_, cached)) in a.iter().enumerate().skip(1) {
        assert!(
            *cached > 20,
            "turn {turn} should reuse the earlier conversation, reused {cached}"
        );
    }
    assert!(
        b.iter().all(|(_, cached)| *cached == 0),
        "a zero-byte cache keeps nothing"
    );

    let (sa, sb) = (with_reuse.stats(), without.stats());
    assert_eq!(
        sa.prompt_tokens_reused + sa.prompt_tokens_computed,
        sb.prompt_tokens_computed
    );
    assert_eq!(
        sa.prompt_tokens_reused,
        a.iter().map(|(_, c)| c).sum::<u64>()
    );
    assert!(sa.prompt_tokens_computed < sb.prompt_tokens_computed);
}

#[tokio::test]
async fn a_branching_conversation_keeps_the_first_branch_cached() {
    let client = load(LocalOptions::default());
    let first = vec![Message::user("What is the capital of France?")];
    client.complete(greedy(first.clone(), 12)).await.unwrap();
    client
        .complete(greedy(vec![Message::user("What is 2 + 2?")], 12))
        .await
        .unwrap();
    let again = client.complete(greedy(first, 12)).await.unwrap();
    assert_eq!(
        again.usage.cached_input_tokens,
        again.usage.input_tokens - 1,
        "the whole prompt but its last token"
    );
}

#[tokio::test]
async fn an_evicted_conversation_is_recomputed_with_the_same_result() {
    let first = vec![Message::user("What is the capital of France?")];
    let other = vec![Message::user(
        "Please describe, in a few sentences, how bread is baked from flour, water, salt and yeast.",
    )];
    // Room for the second conversation alone: storing it evicts the first.
    let probe = load(LocalOptions::default());
    let other_len = probe
        .prompt_tokens(&greedy(other.clone(), 12))
        .unwrap()
        .len();
    let bound = probe.kv_bytes_per_token() * (other_len + 12);
    let client = load(LocalOptions {
        prefix_cache_bytes: bound,
        ..LocalOptions::default()
    });

    let one = client.complete(greedy(first.clone(), 12)).await.unwrap();
    client.complete(greedy(other, 12)).await.unwrap();
    let again = client.complete(greedy(first, 12)).await.unwrap();
    assert_eq!(one.message, again.message);
    let prompt = again.usage.input_tokens;
    assert!(
        again.usage.cached_input_tokens < prompt - 1,
        "only the shared system prefix can be reused after eviction ({} of {prompt})",
        again.usage.cached_input_tokens
    );
    assert!(
        again.usage.cached_input_tokens > 0,
        "the shared system prefix is still there"
    );
}
