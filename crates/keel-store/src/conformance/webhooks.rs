//! Webhooks: definitions kept per tenant and found by their token's hash; a run settling in
//! a status an outbound webhook asked for writes one delivery with it, whichever way it is
//! settled; deliveries are claimed once per attempt (also by racing nodes) and settled only by
//! their current attempt; an inbound signature is accepted once within its replay window.

use std::collections::HashSet;
use std::sync::Arc;

use keel_core::{RunId, RunStatus, SessionId, TenantId, Timestamp, WebhookId};

use super::Subject;
use super::fixtures::{assert_not_found, at, new_session, note, queued_run, tenant, tick};
use crate::{
    AppendBatch, DeliveryOutcome, DeliveryRecord, RunFinish, RunOutcome, Store, StoreError,
    WebhookDirection, WebhookEvent, WebhookRecord,
};

/// Later than any delivery written now: everything due is due then.
const LATER: i64 = i64::MAX / 4;

fn outbound(tenant: &TenantId, events: &[WebhookEvent]) -> WebhookRecord {
    WebhookRecord {
        id: WebhookId::generate(tick(), 7),
        tenant: tenant.clone(),
        direction: WebhookDirection::Outbound,
        session: None,
        agent: None,
        token_hash: None,
        url: Some("http://127.0.0.1:9/hook".into()),
        events: events.to_vec(),
        secret: "whsec_test".into(),
        signed: true,
        allow_private: true,
        created_at: at(1_000),
    }
}

fn inbound(tenant: &TenantId, session: &SessionId, token: &str) -> WebhookRecord {
    WebhookRecord {
        direction: WebhookDirection::Inbound,
        session: Some(session.clone()),
        token_hash: Some(token.as_bytes().to_vec()),
        url: None,
        events: Vec::new(),
        ..outbound(tenant, &[])
    }
}

/// A run of the session, settled in `status` by `finish_run`.
async fn settle_run(
    store: &Arc<dyn Store>,
    tenant: &TenantId,
    session: &SessionId,
    status: RunStatus,
) -> RunId {
    let run = queued_run(tenant, session, 1);
    store.enqueue_run(&run).await.unwrap();
    let outcome = RunOutcome {
        output: Some(format!("{} output", status.as_str())),
        error: None,
    };
    store.finish_run(&run.id, status, outcome).await.unwrap();
    run.id
}

async fn deliveries(
    store: &Arc<dyn Store>,
    tenant: &TenantId,
    webhook: &WebhookRecord,
) -> Vec<DeliveryRecord> {
    store
        .list_deliveries(tenant, &webhook.id, 100)
        .await
        .unwrap()
}

fn payload(delivery: &DeliveryRecord) -> serde_json::Value {
    serde_json::from_str(&delivery.payload).expect("a delivery's payload is JSON")
}

pub async fn webhooks_are_kept_per_tenant_and_found_by_their_token(store: Arc<dyn Store>) {
    let (tenant, other) = (tenant(), tenant());
    let session = new_session(&store, &tenant).await;
    let trigger = inbound(&tenant, &session, "hash-of-a-token");
    let subscription = WebhookRecord {
        agent: Some("helper".into()),
        ..outbound(&tenant, &WebhookEvent::ALL)
    };
    store.put_webhook(&trigger).await.unwrap();
    store.put_webhook(&subscription).await.unwrap();
    assert!(matches!(
        store.put_webhook(&trigger).await,
        Err(StoreError::AlreadyExists(_))
    ));
    let same_token = inbound(&tenant, &session, "hash-of-a-token");
    assert!(matches!(
        store.put_webhook(&same_token).await,
        Err(StoreError::AlreadyExists(_))
    ));
    let elsewhere = inbound(&other, &session, "another-token");
    assert_not_found(
        store.put_webhook(&elsewhere).await,
        "a trigger on another tenant's session",
    );

    let listed = store.list_webhooks(&tenant).await.unwrap();
    assert_eq!(listed, vec![trigger.clone(), subscription.clone()]);
    assert!(store.list_webhooks(&other).await.unwrap().is_empty());
    let found = store.inbound_webhook(b"hash-of-a-token").await.unwrap();
    assert_eq!(found, Some(trigger.clone()));
    assert_eq!(store.inbound_webhook(b"unknown").await.unwrap(), None);

    assert!(
        !store
            .delete_webhook(&other, &subscription.id)
            .await
            .unwrap()
    );
    assert!(
        store
            .delete_webhook(&tenant, &subscription.id)
            .await
            .unwrap()
    );
    assert!(
        !store
            .delete_webhook(&tenant, &subscription.id)
            .await
            .unwrap()
    );
    // A session's trigger goes with the session.
    assert!(store.delete_session(&tenant, &session).await.unwrap());
    assert!(store.list_webhooks(&tenant).await.unwrap().is_empty());
    assert_eq!(
        store.inbound_webhook(b"hash-of-a-token").await.unwrap(),
        None
    );
}

pub async fn a_settling_run_writes_one_delivery_per_webhook_that_asked(store: Arc<dyn Store>) {
    let (tenant, other) = (tenant(), tenant());
    let session = new_session(&store, &tenant).await;
    let elsewhere = new_session(&store, &tenant).await;
    let everything = outbound(&tenant, &WebhookEvent::ALL);
    let failures = outbound(&tenant, &[WebhookEvent::RunFailed]);
    let other_session = WebhookRecord {
        session: Some(elsewhere.clone()),
        ..outbound(&tenant, &WebhookEvent::ALL)
    };
    let other_agent = WebhookRecord {
        agent: Some("someone-else".into()),
        ..outbound(&tenant, &WebhookEvent::ALL)
    };
    let other_tenant = outbound(&other, &WebhookEvent::ALL);
    for webhook in [
        &everything,
        &failures,
        &other_session,
        &other_agent,
        &other_tenant,
    ] {
        store.put_webhook(webhook).await.unwrap();
    }

    // Parked for a person by an append, queued again, then completed by `finish_run`.
    let run = queued_run(&tenant, &session, 1);
    store.enqueue_run(&run).await.unwrap();
    store.claim_runs("node-a", at(10), 1_000, 1).await.unwrap();
    let park = AppendBatch {
        events: vec![note("waiting for a person")],
        finish_run: Some(RunFinish {
            run: run.id.clone(),
            status: RunStatus::Waiting,
            outcome: RunOutcome::default(),
        }),
        ..AppendBatch::default()
    };
    store.append(&session, 1, park).await.unwrap();
    store
        .finish_run(&run.id, RunStatus::Queued, RunOutcome::default())
        .await
        .unwrap();
    let outcome = RunOutcome {
        output: Some("all done".into()),
        error: None,
    };
    store
        .finish_run(&run.id, RunStatus::Completed, outcome)
        .await
        .unwrap();

    let mut written = deliveries(&store, &tenant, &everything).await;
    written.reverse();
    let kinds: Vec<WebhookEvent> = written.iter().map(|d| d.event).collect();
    assert_eq!(
        kinds,
        vec![WebhookEvent::RunWaiting, WebhookEvent::RunCompleted],
        "one delivery per settling, in order; none for being queued again"
    );
    let completed = payload(&written[1]);
    assert_eq!(completed["id"], written[1].id.as_str());
    assert_eq!(completed["type"], "run.completed");
    assert_eq!(completed["data"]["run_id"], run.id.as_str());
    assert_eq!(completed["data"]["session_id"], session.as_str());
    assert_eq!(completed["data"]["agent"], "helper");
    assert_eq!(completed["data"]["output"], "all done");
    assert_ne!(written[0].id, written[1].id);
    for delivery in &written {
        assert_eq!(
            (delivery.attempts, delivery.delivered_at, delivery.failed_at),
            (0, None, None)
        );
        assert!(delivery.next_attempt_at.is_some(), "due at once");
    }
    for quiet in [&failures, &other_session, &other_agent] {
        assert!(deliveries(&store, &tenant, quiet).await.is_empty());
    }
    assert!(deliveries(&store, &other, &other_tenant).await.is_empty());

    settle_run(&store, &tenant, &session, RunStatus::Failed).await;
    settle_run(&store, &tenant, &session, RunStatus::Cancelled).await;
    assert_eq!(deliveries(&store, &tenant, &failures).await.len(), 1);
    assert_eq!(deliveries(&store, &tenant, &everything).await.len(), 3);
    // Another tenant does not see the webhook's deliveries.
    assert!(deliveries(&store, &other, &everything).await.is_empty());
}

pub async fn deliveries_are_claimed_once_per_attempt_and_settled_by_it(store: Arc<dyn Store>) {
    let tenant = tenant();
    let session = new_session(&store, &tenant).await;
    let webhook = outbound(&tenant, &WebhookEvent::ALL);
    store.put_webhook(&webhook).await.unwrap();
    settle_run(&store, &tenant, &session, RunStatus::Completed).await;
    settle_run(&store, &tenant, &session, RunStatus::Failed).await;

    let now = at(LATER);
    let first = store.claim_deliveries(now, 30_000, 10).await.unwrap();
    assert_eq!(first.len(), 2);
    for claimed in &first {
        assert_eq!(claimed.delivery.attempts, 1);
        assert_eq!(claimed.url, "http://127.0.0.1:9/hook");
        assert_eq!(
            (claimed.secret.as_str(), claimed.allow_private),
            ("whsec_test", true)
        );
    }
    assert!(
        store
            .claim_deliveries(now, 30_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "claimed deliveries are not handed out again while their attempt lasts"
    );

    let (retried, given_up) = (&first[0].delivery, &first[1].delivery);
    let retry_at = Timestamp::from_millis(LATER + 1_000);
    let retry = DeliveryOutcome::Retry {
        at: retry_at,
        error: "HTTP 500".into(),
    };
    assert!(
        store
            .settle_delivery(&retried.id, 1, now, &retry)
            .await
            .unwrap()
    );
    let give_up = DeliveryOutcome::GaveUp {
        error: "too many attempts".into(),
    };
    assert!(
        store
            .settle_delivery(&given_up.id, 1, now, &give_up)
            .await
            .unwrap()
    );
    assert!(
        !store
            .settle_delivery(&given_up.id, 1, now, &retry)
            .await
            .unwrap(),
        "a settled delivery stays settled"
    );
    assert!(
        store
            .claim_deliveries(now, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let second = store.claim_deliveries(retry_at, 30_000, 10).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(
        (second[0].delivery.id.as_str(), second[0].delivery.attempts),
        (retried.id.as_str(), 2)
    );
    let delivered = DeliveryOutcome::Delivered;
    assert!(
        !store
            .settle_delivery(&retried.id, 1, retry_at, &delivered)
            .await
            .unwrap(),
        "an attempt that is not the current one settles nothing"
    );
    assert!(
        store
            .settle_delivery(&retried.id, 2, retry_at, &delivered)
            .await
            .unwrap()
    );
    let much_later = at(LATER * 2);
    assert!(
        store
            .claim_deliveries(much_later, 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let listed = deliveries(&store, &tenant, &webhook).await;
    let by_id = |id: &str| listed.iter().find(|d| d.id == id).unwrap().clone();
    let done = by_id(&retried.id);
    assert_eq!(
        (
            done.attempts,
            done.delivered_at,
            done.next_attempt_at,
            done.last_error.as_deref()
        ),
        (2, Some(retry_at), None, Some("HTTP 500"))
    );
    let failed = by_id(&given_up.id);
    assert_eq!(
        (
            failed.failed_at,
            failed.next_attempt_at,
            failed.last_error.as_deref()
        ),
        (Some(now), None, Some("too many attempts"))
    );
}

pub async fn an_unsettled_claim_is_claimed_again_when_its_attempt_times_out(store: Arc<dyn Store>) {
    let tenant = tenant();
    let session = new_session(&store, &tenant).await;
    let webhook = outbound(&tenant, &WebhookEvent::ALL);
    store.put_webhook(&webhook).await.unwrap();
    settle_run(&store, &tenant, &session, RunStatus::Completed).await;
    let first = store.claim_deliveries(at(LATER), 30_000, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    // The node that claimed it died: after the lease another takes it, as its second attempt.
    let again = store
        .claim_deliveries(at(LATER + 30_000), 30_000, 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].delivery.attempts, 2);
    let late = &first[0].delivery;
    assert!(
        !store
            .settle_delivery(&late.id, 1, at(LATER + 30_001), &DeliveryOutcome::Delivered)
            .await
            .unwrap(),
        "the dead node's attempt no longer settles it"
    );
    // Deleting the webhook drops its deliveries.
    assert!(store.delete_webhook(&tenant, &webhook.id).await.unwrap());
    assert!(
        store
            .claim_deliveries(at(LATER * 2), 30_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn nodes_racing_to_claim_deliveries_claim_each_once(subject: &Subject) {
    const RUNS: usize = 12;
    let handles = [subject.store.clone(), subject.second_handle()];
    let tenant = tenant();
    let session = new_session(&handles[0], &tenant).await;
    handles[0]
        .put_webhook(&outbound(&tenant, &WebhookEvent::ALL))
        .await
        .unwrap();
    for _ in 0..RUNS {
        settle_run(&handles[0], &tenant, &session, RunStatus::Completed).await;
    }
    let claims = (0..4).map(|n| {
        let store = handles[n % 2].clone();
        tokio::spawn(async move { store.claim_deliveries(at(LATER), 30_000, 5).await })
    });
    let mut seen = HashSet::new();
    for claim in claims.collect::<Vec<_>>() {
        for claimed in claim.await.unwrap().unwrap() {
            assert!(seen.insert(claimed.delivery.id.clone()), "claimed twice");
        }
    }
    // Whatever the racers left is still there to claim, once.
    for claimed in handles[1]
        .claim_deliveries(at(LATER), 30_000, 100)
        .await
        .unwrap()
    {
        assert!(seen.insert(claimed.delivery.id.clone()), "claimed twice");
    }
    assert_eq!(seen.len(), RUNS);
}

pub async fn an_inbound_signature_is_accepted_once_within_its_window(subject: &Subject) {
    let handles = [subject.store.clone(), subject.second_handle()];
    let tenant = tenant();
    let session = new_session(&handles[0], &tenant).await;
    let trigger = inbound(&tenant, &session, "a-token");
    handles[0].put_webhook(&trigger).await.unwrap();
    let (now, expires) = (at(10_000), at(310_000));
    assert!(
        handles[0]
            .remember_signature(&trigger.id, "t=10,v1=ab", now, expires)
            .await
            .unwrap()
    );
    for handle in &handles {
        assert!(
            !handle
                .remember_signature(&trigger.id, "t=10,v1=ab", now, expires)
                .await
                .unwrap(),
            "a replay is refused on every handle"
        );
    }
    assert!(
        handles[1]
            .remember_signature(&trigger.id, "t=11,v1=cd", now, expires)
            .await
            .unwrap()
    );
    // A call that started nothing gives its signature back.
    handles[1]
        .forget_signature(&trigger.id, "t=11,v1=cd")
        .await
        .unwrap();
    assert!(
        handles[0]
            .remember_signature(&trigger.id, "t=11,v1=cd", now, expires)
            .await
            .unwrap()
    );
    // Past the window the record is forgotten (the timestamp check refuses such a call anyway).
    let after = at(310_000);
    assert!(
        handles[1]
            .remember_signature(&trigger.id, "t=10,v1=ab", after, at(610_000))
            .await
            .unwrap()
    );
}
