//! Routes over real providers and their mocks: faults injected on the primary target and the
//! call still completes on the fallback without duplicated output, retries on the same target,
//! breakers that open and recover, sticky sessions, and errors that must not fail over.

mod providers_support;

use std::collections::HashMap;
use std::sync::Arc;

use keel_core::Message;
use keel_models::router::{
    BreakerPolicy, BreakerState, Policy, RetryPolicy, Route, RouteError, Router, Target, Timeouts,
};
use keel_models::{ModelClient, ModelErrorKind, ReplyAccumulator, Served, StreamEvent};
use keel_testkit::Fault;
use keel_testkit::openai_mock::MockReply;
use providers_support::{Kind, Upstream, run};

fn route(upstreams: &[&Upstream], policy: Policy) -> Route {
    Route {
        name: "main".into(),
        targets: upstreams
            .iter()
            .map(|u| Target {
                provider: u.provider().into(),
                model: u.model().into(),
                weight: 1,
            })
            .collect(),
        policy,
        retry: RetryPolicy {
            attempts_per_target: 1,
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
    }
}

fn router(route: Route, upstreams: &[&Upstream]) -> Router {
    let providers: HashMap<String, Arc<dyn ModelClient>> = upstreams
        .iter()
        .map(|u| (u.provider().to_string(), u.client.clone()))
        .collect();
    Router::new(route, &providers).expect("a valid route")
}

fn served(events: &[StreamEvent]) -> &Served {
    match events.last() {
        Some(StreamEvent::Served(served)) => served,
        other => panic!("a routed call ends with Served, got {other:?}"),
    }
}

fn request(affinity: Option<&str>) -> keel_models::ModelRequest {
    let mut request = keel_models::ModelRequest {
        model: "ignored-by-the-router".into(),
        system: Some("You are terse.".into()),
        messages: vec![Message::user("hi")],
        tools: providers_support::tools(),
        params: Default::default(),
    };
    request.params.affinity = affinity.map(str::to_string);
    request
}

#[tokio::test]
async fn every_fault_on_the_primary_completes_on_the_fallback_without_duplicates() {
    let primary = Upstream::start(Kind::Anthropic).await;
    let fallback = Upstream::start(Kind::Gemini).await;
    let router = router(
        route(&[&primary, &fallback], Policy::Fallback),
        &[&primary, &fallback],
    );
    let faults = [
        Fault::status(500),
        Fault::status(503),
        Fault::rate_limited("30"),
        Fault::ResetConnection,
        Fault::CloseConnection,
        Fault::StallBeforeResponse,
        Fault::WrongContentType,
        Fault::CutStream { after_chunks: 5 },
        Fault::TruncateStream { after_chunks: 5 },
        Fault::StallStream { after_chunks: 5 },
        Fault::MalformedChunk { after_chunks: 5 },
        Fault::ErrorInStream {
            after_chunks: 5,
            status: 529,
        },
    ];
    for fault in faults {
        primary.push_fault(fault.clone());
        fallback.push_reply(MockReply::text("served by the fallback"));
        let outcome = run(&router, request(None)).await;
        assert!(outcome.error.is_none(), "{fault:?}: {:?}", outcome.error);
        let served = served(&outcome.events);
        assert_eq!(
            (served.target, served.provider.as_str(), served.attempts),
            (1, "gemini", 2),
            "{fault:?}"
        );
        // Partial output of the failed attempt is announced as abandoned, and never kept.
        let restarts = outcome
            .events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Restart { .. }))
            .count();
        let mid_stream = matches!(
            fault,
            Fault::CutStream { .. }
                | Fault::TruncateStream { .. }
                | Fault::StallStream { .. }
                | Fault::MalformedChunk { .. }
                | Fault::ErrorInStream { .. }
        );
        assert_eq!(
            restarts,
            usize::from(mid_stream),
            "{fault:?}: {:?}",
            outcome.events
        );
        assert_eq!(outcome.text(), "served by the fallback", "{fault:?}");
        let finishes = outcome
            .events
            .iter()
            .filter(|e| matches!(e, StreamEvent::Finish(_)))
            .count();
        assert_eq!(finishes, 1, "{fault:?}");
    }
    assert_eq!(primary.requests().len(), 12);
}

#[tokio::test]
async fn a_partial_reply_is_discarded_by_the_accumulator() {
    let primary = Upstream::start(Kind::Responses).await;
    let fallback = Upstream::start(Kind::Anthropic).await;
    let router = router(
        route(&[&primary, &fallback], Policy::Fallback),
        &[&primary, &fallback],
    );
    primary.push_fault(Fault::CutStream { after_chunks: 6 });
    fallback.push_reply(MockReply::text("whole answer"));
    let outcome = run(&router, request(None)).await;
    assert!(
        matches!(outcome.events.iter().find(|e| matches!(e, StreamEvent::Restart { .. })),
        Some(StreamEvent::Restart { target }) if target == "anthropic/claude-haiku-4-5")
    );
    let mut acc = ReplyAccumulator::default();
    outcome.events.iter().cloned().for_each(|e| acc.push(e));
    assert_eq!(acc.served().map(|s| s.attempts), Some(2));
    assert_eq!(
        acc.finish().message.parts,
        [keel_core::Part::Text {
            text: "whole answer".into()
        }]
    );
}

#[tokio::test]
async fn retries_the_same_target_honouring_retry_after() {
    let primary = Upstream::start(Kind::OpenAi).await;
    let fallback = Upstream::start(Kind::Gemini).await;
    let mut route = route(&[&primary, &fallback], Policy::Fallback);
    route.retry.attempts_per_target = 3;
    let router = router(route, &[&primary, &fallback]);
    primary.push_fault(Fault::Status {
        status: 429,
        retry_after: None,
        retry_after_ms: Some(20),
    });
    primary.push_fault(Fault::status(503));
    primary.push_reply(MockReply::text("third time lucky"));
    let outcome = run(&router, request(None)).await;
    assert_eq!(outcome.text(), "third time lucky");
    assert_eq!(
        (
            served(&outcome.events).target,
            served(&outcome.events).attempts
        ),
        (0, 3)
    );
    assert!(fallback.requests().is_empty());
}

#[tokio::test]
async fn a_retry_after_longer_than_the_policy_allows_moves_on_at_once() {
    let primary = Upstream::start(Kind::Anthropic).await;
    let fallback = Upstream::start(Kind::Responses).await;
    let mut route = route(&[&primary, &fallback], Policy::Fallback);
    route.retry.attempts_per_target = 5;
    let router = router(route, &[&primary, &fallback]);
    primary.push_fault(Fault::rate_limited("120"));
    fallback.push_reply(MockReply::text("fallback"));
    let outcome = run(&router, request(None)).await;
    assert_eq!(
        (served(&outcome.events).target, primary.requests().len()),
        (1, 1)
    );
}

#[tokio::test]
async fn bad_requests_do_not_fail_over_and_keep_their_kind() {
    let primary = Upstream::start(Kind::Gemini).await;
    let fallback = Upstream::start(Kind::Anthropic).await;
    let router = router(
        route(&[&primary, &fallback], Policy::Fallback),
        &[&primary, &fallback],
    );
    primary.push_fault(Fault::status(400));
    let outcome = run(&router, request(None)).await;
    assert_eq!(outcome.error().kind, ModelErrorKind::BadRequest);
    assert!(outcome.at_start);
    assert!(fallback.requests().is_empty());
}

#[tokio::test]
async fn when_every_target_fails_the_last_error_says_so() {
    let primary = Upstream::start(Kind::Gemini).await;
    let fallback = Upstream::start(Kind::Anthropic).await;
    let router = router(
        route(&[&primary, &fallback], Policy::Fallback),
        &[&primary, &fallback],
    );
    primary.push_fault(Fault::status(500));
    fallback.push_fault(Fault::status(529));
    let outcome = run(&router, request(None)).await;
    let error = outcome.error();
    assert_eq!(error.kind, ModelErrorKind::Unavailable);
    assert!(
        error
            .message
            .contains("route `main`: gave up after 2 attempt(s)"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn the_breaker_opens_after_repeated_failures_then_recovers_through_a_probe() {
    let primary = Upstream::start(Kind::Azure).await;
    let fallback = Upstream::start(Kind::Anthropic).await;
    let mut route = route(&[&primary, &fallback], Policy::Fallback);
    route.breaker = BreakerPolicy {
        failures: 2,
        cooldown_ms: 200,
    };
    let router = router(route, &[&primary, &fallback]);
    for _ in 0..2 {
        primary.push_fault(Fault::status(503));
        fallback.push_reply(MockReply::text("fallback"));
        assert_eq!(served(&run(&router, request(None)).await.events).target, 1);
    }
    let Some(BreakerState::Open { until }) = router.breaker_state(0) else {
        panic!("open after two failures: {:?}", router.breaker_state(0))
    };
    // While open the primary is not even asked.
    fallback.push_reply(MockReply::text("fallback"));
    assert_eq!(served(&run(&router, request(None)).await.events).target, 1);
    assert_eq!(primary.requests().len(), 2);
    // After the cool-down one probe goes to the primary; its success closes the breaker.
    tokio::time::sleep_until(until).await;
    primary.push_reply(MockReply::text("primary is back"));
    let outcome = run(&router, request(None)).await;
    assert_eq!(
        (served(&outcome.events).target, outcome.text().as_str()),
        (0, "primary is back")
    );
    assert_eq!(
        router.breaker_state(0),
        Some(BreakerState::Closed { failures: 0 })
    );
}

#[tokio::test]
async fn a_session_sticks_to_the_target_that_served_it_while_healthy() {
    let a = Upstream::start(Kind::Anthropic).await;
    let b = Upstream::start(Kind::Gemini).await;
    let router = router(route(&[&a, &b], Policy::Weighted), &[&a, &b]);
    for _ in 0..12 {
        a.push_reply(MockReply::text("a"));
        b.push_reply(MockReply::text("b"));
    }
    let first = served(&run(&router, request(Some("session-1"))).await.events).target;
    for _ in 0..5 {
        assert_eq!(
            served(&run(&router, request(Some("session-1"))).await.events).target,
            first
        );
    }
    assert_eq!(router.sticky_target("session-1"), Some(first));
    // When the stuck target fails, the session moves to the other one and sticks there.
    let (stuck, other) = if first == 0 { (&a, 1) } else { (&b, 0) };
    stuck.push_fault(Fault::status(503));
    // The stuck target's queue holds unused replies before the fault: drain them first.
    while stuck.pending() > 1 {
        let _ = run(&router, request(Some("session-1"))).await;
    }
    let moved = run(&router, request(Some("session-1"))).await;
    assert_eq!(served(&moved.events).target, other);
    assert_eq!(router.sticky_target("session-1"), Some(other));
    assert_eq!(
        served(&run(&router, request(Some("session-1"))).await.events).target,
        other
    );
}

#[test]
fn invalid_routes_are_refused_with_what_to_fix() {
    let providers: HashMap<String, Arc<dyn ModelClient>> = HashMap::new();
    let route: Route = serde_json::from_value(serde_json::json!({
        "name": "main", "targets": [{"provider": "nope", "model": "m"}]
    }))
    .unwrap();
    assert!(route.sticky && route.policy == Policy::Fallback && route.targets[0].weight == 1);
    let error = Router::new(route, &providers).err().unwrap();
    assert!(matches!(error, RouteError::UnknownProvider { .. }));
    assert!(
        error
            .to_string()
            .contains("names provider `nope`, which is not configured"),
        "{error}"
    );
    let empty: Route =
        serde_json::from_value(serde_json::json!({"name": "x", "targets": []})).unwrap();
    assert!(
        Router::new(empty, &providers)
            .err()
            .unwrap()
            .to_string()
            .contains("has no targets")
    );
    assert!(
        serde_json::from_value::<Route>(
            serde_json::json!({"name": "x", "targets": [], "polcy": "weighted"})
        )
        .is_err()
    );
}
