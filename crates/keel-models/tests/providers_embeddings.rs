//! Embeddings through the provider layer, one case suite run against every provider with an
//! embeddings endpoint (OpenAI-compatible, Azure, Gemini) through its wire-faithful mock: the
//! vectors come back in order with usage, `dimensions` reaches the provider in its own shape,
//! empty input and refusals map onto error kinds, providers without embeddings refuse clearly,
//! and a route fails over for embeddings as it does for chat.

mod providers_support;

use std::collections::HashMap;
use std::sync::Arc;

use keel_models::router::{BreakerPolicy, Policy, RetryPolicy, Route, Router, Target, Timeouts};
use keel_models::{EmbeddingRequest, ModelClient, ModelErrorKind};
use keel_testkit::Fault;
use keel_testkit::embedding::{MOCK_DIMENSIONS, mock_tokens, mock_vector};
use providers_support::{Kind, Upstream, embedding_request};

/// The embedding model each provider is called with.
fn model(kind: Kind) -> &'static str {
    match kind {
        Kind::Azure => "gpt-4o-mini",
        Kind::Gemini => "text-embedding-004",
        _ => "text-embedding-3-small",
    }
}

fn request(kind: Kind, inputs: &[&str]) -> EmbeddingRequest {
    embedding_request(model(kind), inputs, None)
}

async fn embeds_every_text_in_order_with_usage(kind: Kind) {
    let up = Upstream::start(kind).await;
    let texts = [
        "the cat sat",
        "on the mat today",
        "dogs bark loudly at night",
    ];
    let out = up
        .client
        .embed(request(kind, &texts))
        .await
        .expect("vectors");
    let want: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| mock_vector(t, MOCK_DIMENSIONS))
        .collect();
    assert_eq!(out.vectors, want);
    let tokens = match kind {
        Kind::Gemini => 0, // Gemini reports no token counts for embeddings.
        _ => texts.iter().map(|t| mock_tokens(t)).sum(),
    };
    assert_eq!(out.input_tokens, tokens);
    let sent = up.last_request();
    match kind {
        Kind::Gemini => {
            assert!(sent.path.ends_with(":batchEmbedContents"), "{}", sent.path);
            assert_eq!(
                sent.body["requests"][2]["model"],
                "models/text-embedding-004"
            );
        }
        Kind::Azure => {
            assert!(
                sent.path.ends_with("/gpt-4o-mini/embeddings"),
                "{}",
                sent.path
            );
            assert!(
                sent.body.get("model").is_none(),
                "the deployment names the model"
            );
        }
        _ => assert_eq!(sent.body["encoding_format"], "float"),
    }
}

async fn one_text_and_fewer_dimensions(kind: Kind) {
    let up = Upstream::start(kind).await;
    let mut one = request(kind, &["just one"]);
    one.dimensions = Some(8);
    let out = up.client.embed(one).await.expect("a vector");
    assert_eq!(out.vectors, vec![mock_vector("just one", 8)]);
    let sent = up.last_request();
    match kind {
        Kind::Gemini => {
            assert!(sent.path.ends_with(":embedContent"), "{}", sent.path);
            assert_eq!(sent.body["outputDimensionality"], 8);
        }
        _ => assert_eq!(sent.body["dimensions"], 8),
    }
}

async fn empty_input_is_refused_without_a_call(kind: Kind) {
    let up = Upstream::start(kind).await;
    let err = up.client.embed(request(kind, &[])).await.unwrap_err();
    assert_eq!(err.kind, ModelErrorKind::BadRequest, "{err}");
    assert!(err.message.contains("at least one text"), "{err}");
    assert!(up.requests().is_empty());
}

async fn refusals_map_onto_kinds(kind: Kind) {
    let up = Upstream::start(kind).await;
    up.push_fault(Fault::status(429));
    let err = up.client.embed(request(kind, &["x"])).await.unwrap_err();
    assert_eq!(err.kind, ModelErrorKind::RateLimited, "{err}");
    up.push_fault(Fault::status(503));
    let err = up.client.embed(request(kind, &["x"])).await.unwrap_err();
    assert_eq!(err.kind, ModelErrorKind::Unavailable, "{err}");
    // The mock refuses what the provider refuses: too many dimensions.
    let mut wide = request(kind, &["x"]);
    wide.dimensions = Some(MOCK_DIMENSIONS as u32 + 1);
    let err = up.client.embed(wide).await.unwrap_err();
    assert_eq!(err.kind, ModelErrorKind::BadRequest, "{err}");

    let wrong_key = Upstream::start_with(kind, "not-the-key", 10_000).await;
    let err = wrong_key
        .client
        .embed(request(kind, &["x"]))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ModelErrorKind::Auth, "{err}");
}

macro_rules! embedding_suite {
    ($($provider:ident => $kind:expr),* $(,)?) => {
        $(mod $provider {
            use super::*;
            #[tokio::test] async fn embeds_every_text_in_order_with_usage() { super::embeds_every_text_in_order_with_usage($kind).await }
            #[tokio::test] async fn one_text_and_fewer_dimensions() { super::one_text_and_fewer_dimensions($kind).await }
            #[tokio::test] async fn empty_input_is_refused_without_a_call() { super::empty_input_is_refused_without_a_call($kind).await }
            #[tokio::test] async fn refusals_map_onto_kinds() { super::refusals_map_onto_kinds($kind).await }
        })*
    };
}

embedding_suite! {
    openai => Kind::OpenAi,
    azure => Kind::Azure,
    gemini => Kind::Gemini,
}

#[tokio::test]
async fn a_provider_without_embeddings_refuses_clearly() {
    for kind in [Kind::Anthropic, Kind::Responses] {
        let up = Upstream::start(kind).await;
        let err = up.client.embed(request(kind, &["x"])).await.unwrap_err();
        assert_eq!(err.kind, ModelErrorKind::BadRequest, "{err}");
        assert!(err.message.contains("no embeddings endpoint"), "{err}");
        assert!(up.requests().is_empty());
    }
}

#[tokio::test]
async fn a_route_fails_over_for_embeddings_and_says_which_target_served() {
    let (first, second) = (
        Upstream::start(Kind::OpenAi).await,
        Upstream::start(Kind::Gemini).await,
    );
    let route = Route {
        name: "embed".into(),
        targets: [(&first, Kind::OpenAi), (&second, Kind::Gemini)]
            .iter()
            .map(|(u, kind)| Target {
                provider: u.provider().into(),
                model: model(*kind).into(),
                weight: 1,
            })
            .collect(),
        policy: Policy::Fallback,
        retry: RetryPolicy {
            attempts_per_target: 2,
            initial_backoff_ms: 1,
            max_backoff_ms: 5,
            max_retry_after_ms: 2_000,
        },
        breaker: BreakerPolicy {
            failures: 100,
            cooldown_ms: 60_000,
        },
        timeouts: Timeouts {
            first_token_ms: 1_000,
            idle_ms: 1_000,
            total_ms: 20_000,
        },
        sticky: true,
    };
    let providers: HashMap<String, Arc<dyn ModelClient>> = [&first, &second]
        .iter()
        .map(|u| (u.provider().to_string(), u.client.clone()))
        .collect();
    let router = Router::new(route, &providers).unwrap();

    first.push_fault(Fault::status(500));
    first.push_fault(Fault::status(503));
    let out = router
        .embed(request(Kind::OpenAi, &["fail over"]))
        .await
        .expect("the second target serves it");
    assert_eq!(out.vectors, vec![mock_vector("fail over", MOCK_DIMENSIONS)]);
    let served = out.served.expect("a route says who served");
    assert_eq!((served.target, served.attempts), (1, 3));
    assert_eq!(served.model, "text-embedding-004");
    assert_eq!(
        first.requests().len(),
        2,
        "retried once on the first target"
    );

    // A refusal of the request itself does not fail over.
    let err = router.embed(request(Kind::OpenAi, &[])).await.unwrap_err();
    assert_eq!(err.kind, ModelErrorKind::BadRequest);
    assert_eq!(second.requests().len(), 1);
}
