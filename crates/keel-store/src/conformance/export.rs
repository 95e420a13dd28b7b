//! The case on moving a whole store: one filled with every kind of record is copied into a
//! second, empty store of the same backend (`export::copy_store`), and every reader answers
//! the same on both — but for leases, which are not copied, so the target's nodes claim the
//! run that was running.

use std::sync::Arc;

use keel_core::{EventBody, Message, RunStatus, SessionState, TenantId, TimerId, WebhookId};

use super::Subject;
use super::fixtures::*;
use crate::export::{copy_store, ensure_empty};
use crate::{
    ApiKeyRecord, AppendBatch, Enqueue, Fusion, KeyScope, Lease, MemoryQuery, MemoryRecord,
    NewEvent, RunOutcome, RunRecord, Schedule, ScratchpadWrite, SessionFilter, Snapshot, Store,
    StoreError, TenantRecord, TimerRecord, UsageQuery, UsageTotals,
};
use crate::{DeliveryOutcome, WebhookDirection, WebhookEvent, WebhookRecord};

/// What `fill` stored, for the readers to be asked about.
struct Filled {
    tenants: Vec<TenantId>,
    keys: Vec<String>,
    agents: Vec<(TenantId, String, u32)>,
    /// In every status; the last one left running under a lease.
    runs: Vec<RunRecord>,
    /// An inbound webhook whose signature `SIGNATURE` was seen.
    signed_webhook: WebhookId,
}

/// The inbound signature `fill` records as seen.
const SIGNATURE: &str = "t=2,v1=00";

pub async fn a_copied_store_answers_every_reader_as_the_original(
    source: &Subject,
    target: &Subject,
) {
    let (source, target) = (&source.store, &target.store);
    let filled = fill(source).await;
    ensure_empty(target.as_ref()).await.unwrap();

    let report = copy_store(source.as_ref(), target.as_ref()).await.unwrap();
    assert_eq!(report.mismatch, None);
    assert!(report.unreadable.is_empty(), "{:?}", report.unreadable);
    assert_eq!(
        report.copied.broken_chain(),
        None,
        "every session's chain is intact"
    );
    let counts: Vec<(&str, u64)> = report.copied.counts().collect();
    assert_eq!(
        counts,
        [
            ("tenants", 2),
            ("API keys", 2),
            ("agent versions", 3),
            ("archived agents", 1),
            ("sessions", 2),
            ("events", 6),
            ("snapshots", 1),
            ("scratchpad values", 2),
            ("runs", 4),
            ("timers", 1),
            ("webhooks", 2),
            ("webhook deliveries", 2),
            ("inbound webhook signatures seen", 1),
            ("memory records", 2),
            ("memory blocks", 1),
            ("memory block edits", 1),
            ("usage totals", 2),
        ]
    );

    for tenant in &filled.tenants {
        same(source, target, |s| {
            let tenant = tenant.clone();
            async move {
                let sessions = s
                    .list_sessions(&tenant, &SessionFilter::default())
                    .await
                    .unwrap();
                let mut logs = Vec::new();
                for session in &sessions {
                    let events = s.read_events(&session.id, 0, 100).await.unwrap();
                    let recent = s.read_events_before(&session.id, 100, 2).await.unwrap();
                    let loaded = s.load(&session.id).await.unwrap();
                    let mut pad = Vec::new();
                    for key in ["plan", "nul"] {
                        pad.push(s.scratchpad_get(&session.id, key).await.unwrap());
                    }
                    let pending = s.pending_runs(&tenant, &session.id).await.unwrap();
                    let pending: Vec<_> = pending.into_iter().map(without_lease).collect();
                    let timers = s.list_timers(&tenant, &session.id).await.unwrap();
                    // The copy's full-text index is rebuilt as its rows arrive.
                    let search = MemoryQuery {
                        namespace: "user:ada".into(),
                        text: "deadline tea".into(),
                        embedding: Some(vec![1.0, 0.1]),
                        filter: Vec::new(),
                        limit: 10,
                        fusion: Fusion::default(),
                    };
                    let memories = s.search_memory(&tenant, &search).await;
                    logs.push(format!(
                        "{events:?} {recent:?} {loaded:?} {pad:?} {pending:?} {timers:?} {memories:?}"
                    ));
                }
                format!(
                    "{:?} {sessions:?} {:?} {:?} {logs:?} {:?}",
                    s.get_tenant(&tenant).await.unwrap(),
                    s.list_agents(&tenant).await.unwrap(),
                    s.tenant_counts(&tenant).await.unwrap(),
                    s.usage(&tenant, &UsageQuery::default()).await.unwrap(),
                )
            }
        })
        .await;
    }
    for tenant in &filled.tenants {
        same(source, target, |s| {
            let tenant = tenant.clone();
            async move {
                let webhooks = s.list_webhooks(&tenant).await.unwrap();
                let mut deliveries = Vec::new();
                for webhook in &webhooks {
                    deliveries.push(s.list_deliveries(&tenant, &webhook.id, 100).await.unwrap());
                }
                format!("{webhooks:?} {deliveries:?}")
            }
        })
        .await;
    }
    // The signature seen is still seen: a replay is refused on the copy too.
    let replayed = target
        .remember_signature(&filled.signed_webhook, SIGNATURE, at(2_000), at(400_000))
        .await
        .unwrap();
    assert!(!replayed, "the copy remembers the signatures seen");
    for tenant in &filled.tenants {
        same(source, target, |s| {
            let tenant = tenant.clone();
            async move {
                format!(
                    "{:?} {:?}",
                    s.shared_blocks(&tenant).await.unwrap(),
                    s.shared_block_history(&tenant, "project", 10)
                        .await
                        .unwrap()
                )
            }
        })
        .await;
    }
    for prefix in &filled.keys {
        same(source, target, |s| {
            let prefix = prefix.clone();
            async move { format!("{:?}", s.get_api_key(&prefix).await.unwrap()) }
        })
        .await;
    }
    for (tenant, name, version) in &filled.agents {
        same(source, target, |s| {
            let (tenant, name, version) = (tenant.clone(), name.clone(), *version);
            async move {
                format!(
                    "{:?}",
                    s.get_agent(&tenant, &name, Some(version)).await.unwrap()
                )
            }
        })
        .await;
    }
    for run in &filled.runs {
        same(source, target, |s| {
            let run = run.clone();
            async move {
                let read = s.get_run(&run.tenant, &run.id).await.unwrap();
                format!("{:?}", read.map(without_lease))
            }
        })
        .await;
    }
    same(source, target, |s| async move {
        format!(
            "{:?} {:?}",
            s.count_runs().await.unwrap(),
            s.unreadable_records(10).await.unwrap()
        )
    })
    .await;

    // The run that was running arrives without its lease: the target's nodes take it over.
    let running = filled.runs.last().unwrap();
    let copied = target
        .get_run(&running.tenant, &running.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (copied.status, copied.lease_owner),
        (RunStatus::Running, None)
    );
    let claimed = target
        .claim_runs("node-b", at(5_000), 60_000, 10)
        .await
        .unwrap();
    assert!(
        claimed.iter().any(|r| r.id == running.id),
        "the target's node takes over the running run: {claimed:?}"
    );

    // A target that holds anything is refused, naming what it holds, and left as it was.
    let again = copy_store(source.as_ref(), target.as_ref()).await;
    match again {
        Err(StoreError::Invalid(why)) => {
            assert!(why.contains("its tenants table holds"), "{why}")
        }
        other => panic!(
            "copying into a filled store: {:?}",
            other.map(|r| r.mismatch)
        ),
    }
}

/// Asks `read` of both stores and expects one answer.
async fn same<F, Fut>(source: &Arc<dyn Store>, target: &Arc<dyn Store>, read: F)
where
    F: Fn(Arc<dyn Store>) -> Fut,
    Fut: std::future::Future<Output = String>,
{
    let (a, b) = (read(source.clone()).await, read(target.clone()).await);
    assert_eq!(a, b, "the copy answers otherwise than the original");
}

fn without_lease(mut run: RunRecord) -> RunRecord {
    (run.lease_owner, run.lease_until) = (None, None);
    run
}

/// Two tenants with a key each (one revoked), agents in versions (one archived), two sessions
/// with events, a snapshot and scratchpad values (one holding a NUL), runs in every status
/// (one started, whose input is in the log), usage totals, a timer, and webhooks: an inbound one
/// with a signature seen, an outbound one with a delivery made and one pending.
async fn fill(store: &Arc<dyn Store>) -> Filled {
    let mut filled = Filled {
        tenants: Vec::new(),
        keys: Vec::new(),
        agents: Vec::new(),
        runs: Vec::new(),
        signed_webhook: WebhookId::generate(tick(), 7),
    };
    for (name, scope) in [("acme", KeyScope::Admin), ("other", KeyScope::Tenant)] {
        let record = TenantRecord {
            id: tenant(),
            name: name.into(),
            created_at: at(1_000),
        };
        store.create_tenant(&record).await.unwrap();
        let key = ApiKeyRecord {
            prefix: format!("kk_{}", tick()),
            tenant: record.id.clone(),
            scope,
            secret_hash: vec![tick() as u8; 32],
            created_at: at(1_100),
            revoked_at: None,
        };
        store.create_api_key(&key).await.unwrap();
        filled.tenants.push(record.id);
        filled.keys.push(key.prefix);
    }
    store
        .revoke_api_key(&filled.keys[1], at(1_200))
        .await
        .unwrap();
    let (acme, other) = (filled.tenants[0].clone(), filled.tenants[1].clone());

    for name in ["helper", "helper", "retired"] {
        let stored = store.put_agent(&acme, agent(name)).await.unwrap();
        filled
            .agents
            .push((acme.clone(), stored.name, stored.version));
    }
    assert!(
        store
            .archive_agent(&acme, "retired", at(1_300))
            .await
            .unwrap()
    );

    let first = session_record(&acme, "helper", serde_json::json!({"team": "a"}));
    store
        .create_session(&first, vec![session_started(&first)])
        .await
        .unwrap();
    let second = new_session(store, &other).await;
    let write = |key: &str, value: &str| ScratchpadWrite {
        key: key.into(),
        value: Some(value.into()),
    };
    let batch = AppendBatch {
        events: vec![note("one"), note("two")],
        scratchpad: vec![write("plan", "v1"), write("nul", "a\0b")],
        ..AppendBatch::default()
    };
    store.append(&first.id, 1, batch).await.unwrap();
    let state = SessionState {
        last_seq: 3,
        message_count: 2,
        ..SessionState::default()
    };
    let snapshot = Snapshot { seq: 3, state };
    store.put_snapshot(&first.id, snapshot).await.unwrap();

    let inbound = WebhookRecord {
        id: filled.signed_webhook.clone(),
        tenant: acme.clone(),
        direction: WebhookDirection::Inbound,
        session: Some(first.id.clone()),
        agent: None,
        token_hash: Some(vec![7; 32]),
        url: None,
        events: Vec::new(),
        secret: "whsec_in".into(),
        signed: true,
        allow_private: false,
        created_at: at(1_500),
    };
    let outbound = WebhookRecord {
        id: WebhookId::generate(tick(), 7),
        direction: WebhookDirection::Outbound,
        session: None,
        token_hash: None,
        url: Some("https://example.com/hook".into()),
        events: WebhookEvent::ALL.to_vec(),
        secret: "whsec_out".into(),
        ..inbound.clone()
    };
    store.put_webhook(&inbound).await.unwrap();
    store.put_webhook(&outbound).await.unwrap();
    let seen = store
        .remember_signature(&inbound.id, SIGNATURE, at(1_600), at(400_000))
        .await
        .unwrap();
    assert!(seen);

    // Finished runs of the first session, one after the other; the first started in the log.
    let outcomes = [
        (RunStatus::Completed, Some("the answer\0with a NUL"), None),
        (RunStatus::Failed, None, Some("boom")),
    ];
    let mut seq = 3;
    for (i, (status, output, error)) in outcomes.into_iter().enumerate() {
        let mut run = queued_run(&acme, &first.id, 10 + i as i64);
        run.input = Message::user(format!("question {i}"));
        store.enqueue_run(&run).await.unwrap();
        store
            .claim_runs("node-a", at(2_000), 60_000, 10)
            .await
            .unwrap();
        if i == 0 {
            let started = NewEvent {
                at: at(2_100),
                body: EventBody::RunStarted {
                    run_id: run.id.clone(),
                    input: run.input.clone(),
                    options: Box::default(),
                },
            };
            seq = store
                .append(&first.id, seq, AppendBatch::events(vec![started]))
                .await
                .unwrap();
        }
        let outcome = RunOutcome {
            output: output.map(String::from),
            error: error.map(String::from),
        };
        store.finish_run(&run.id, status, outcome).await.unwrap();
        filled.runs.push(run);
    }
    store
        .append(&first.id, seq, notes(["three".to_string()]))
        .await
        .unwrap();
    // The two runs' deliveries: one delivered, one waiting for its next attempt.
    let claimed = store
        .claim_deliveries(at(i64::MAX / 4), 60_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    let delivered = &claimed[0].delivery;
    let now = at(i64::MAX / 4);
    let done = store
        .settle_delivery(&delivered.id, 1, now, &DeliveryOutcome::Delivered)
        .await
        .unwrap();
    assert!(done);
    // A queued run with options and a cancel request, and one running on the second session.
    let mut queued = queued_run(&acme, &first.id, 20);
    queued.options.instructions = Some("Answer in French.".into());
    store.enqueue_run(&queued).await.unwrap();
    assert!(store.request_cancel(&acme, &queued.id).await.unwrap());
    let running = queued_run(&other, &second, 30);
    let lease = Enqueue {
        refuse_if_busy: false,
        claim_if_idle: Some(Lease {
            node: "node-a".into(),
            until: at(900_000),
        }),
    };
    store.enqueue_run_with(&running, &lease).await.unwrap();
    filled.runs.extend([queued, running]);

    let usage = |model: &str| UsageTotals {
        tenant: acme.clone(),
        key_prefix: filled.keys[0].clone(),
        model: model.into(),
        day: "2026-11-30".into(),
        requests: 3,
        input_tokens: 30,
        output_tokens: 12,
        cached_input_tokens: 4,
        cost_usd: 0.125,
    };
    store
        .add_usage(&[usage("openai/gpt-4o"), usage("scripted/echo")])
        .await
        .unwrap();
    let timer = TimerRecord {
        id: TimerId::generate(tick(), 7),
        tenant: acme.clone(),
        owner: crate::TimerOwner::Session(first.id.clone()),
        schedule: Schedule::Once { at: at(9_000) },
        note: "check the answer".into(),
        next_at: Some(at(9_000)),
        created_at: at(2_500),
        fired: 0,
        last_fired_at: None,
    };
    store.put_timer(&timer).await.unwrap();
    for (id, text, embedding) in [
        ("mem_a", "Ada's deadline is Friday.", vec![1.0, 0.0]),
        ("mem_b", "Ada drinks tea.", vec![0.0, 1.0]),
    ] {
        let memory = MemoryRecord {
            id: id.into(),
            tenant: acme.clone(),
            namespace: "user:ada".into(),
            text: text.into(),
            metadata: serde_json::json!({"from": "fill"}),
            embedding,
            created_at: at(2_600),
            updated_at: at(2_700),
        };
        store.put_memory(&memory).await.unwrap();
    }
    let block = crate::SharedBlockWrite {
        label: "project".into(),
        value: "keel".into(),
        limit: 100,
        description: None,
        expected_version: 0,
        before: None,
        by: "api".into(),
        session: None,
        run: None,
        at: at(2_800),
    };
    store.put_shared_block(&acme, &block).await.unwrap();
    filled
}
