//! Cases on tenants, API keys, archived agents and the per-session run views the HTTP API
//! needs (pending runs, run counts, the busy filter) — each also checked from another tenant, which must
//! see nothing.

use std::sync::Arc;

use keel_core::RunStatus;

use super::fixtures::*;
use crate::{ApiKeyRecord, KeyScope, RunOutcome, SessionFilter, Store, StoreError, TenantRecord};

fn tenant_record(name: &str) -> TenantRecord {
    TenantRecord {
        id: tenant(),
        name: name.into(),
        created_at: at(1_000),
    }
}

fn key(tenant: &TenantRecord, prefix: &str, scope: KeyScope) -> ApiKeyRecord {
    ApiKeyRecord {
        prefix: prefix.into(),
        tenant: tenant.id.clone(),
        scope,
        secret_hash: vec![7; 32],
        created_at: at(2_000),
        revoked_at: None,
    }
}

pub async fn tenants_and_api_keys_round_trip_and_revoke(store: Arc<dyn Store>) {
    let acme = tenant_record("acme");
    store.create_tenant(&acme).await.unwrap();
    assert_eq!(
        store.get_tenant(&acme.id).await.unwrap(),
        Some(acme.clone())
    );
    assert!(matches!(
        store.create_tenant(&acme).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_eq!(store.get_tenant(&tenant()).await.unwrap(), None);

    let admin = key(&acme, &format!("kk_{}", tick()), KeyScope::Admin);
    store.create_api_key(&admin).await.unwrap();
    assert_eq!(
        store.get_api_key(&admin.prefix).await.unwrap(),
        Some(admin.clone())
    );
    assert!(matches!(
        store.create_api_key(&admin).await,
        Err(StoreError::AlreadyExists(_))
    ));
    let orphan = key(&tenant_record("nobody"), "kk_orphan", KeyScope::Tenant);
    assert_not_found(
        store.create_api_key(&orphan).await,
        "a key of an unknown tenant",
    );
    assert_eq!(store.get_api_key("kk_unknown").await.unwrap(), None);

    assert!(
        store
            .revoke_api_key(&admin.prefix, at(3_000))
            .await
            .unwrap()
    );
    assert!(
        store
            .revoke_api_key(&admin.prefix, at(4_000))
            .await
            .unwrap()
    );
    let revoked = store.get_api_key(&admin.prefix).await.unwrap().unwrap();
    assert_eq!(
        revoked.revoked_at,
        Some(at(3_000)),
        "the first revocation stands"
    );
    assert!(!store.revoke_api_key("kk_unknown", at(3_000)).await.unwrap());
}

pub async fn archived_agents_leave_the_list_until_a_new_version(store: Arc<dyn Store>) {
    let (tenant, other) = (tenant(), tenant());
    let helper = store.put_agent(&tenant, agent("helper")).await.unwrap();
    store.put_agent(&tenant, agent("critic")).await.unwrap();
    store.put_agent(&other, agent("helper")).await.unwrap();

    assert!(!store.archive_agent(&tenant, "nobody", at(1)).await.unwrap());
    assert!(store.archive_agent(&tenant, "helper", at(1)).await.unwrap());
    assert!(
        store.archive_agent(&tenant, "helper", at(2)).await.unwrap(),
        "idempotent"
    );
    let names = |agents: Vec<keel_core::AgentDef>| -> Vec<String> {
        agents.into_iter().map(|a| a.name).collect()
    };
    assert_eq!(names(store.list_agents(&tenant).await.unwrap()), ["critic"]);
    assert_eq!(
        names(store.list_agents(&other).await.unwrap()),
        ["helper"],
        "another tenant's agent of the same name is untouched"
    );
    assert_eq!(
        store.get_agent(&tenant, "helper", Some(1)).await.unwrap(),
        Some(helper),
        "pinned versions stay readable"
    );

    store.put_agent(&tenant, agent("helper")).await.unwrap();
    assert_eq!(
        names(store.list_agents(&tenant).await.unwrap()),
        ["critic", "helper"]
    );
}

pub async fn pending_runs_and_busy_filter_stay_in_their_tenant(store: Arc<dyn Store>) {
    let (tenant, other) = (tenant(), tenant());
    let (busy, idle) = (
        new_session(&store, &tenant).await,
        new_session(&store, &tenant).await,
    );
    let (first, second) = (
        queued_run(&tenant, &busy, 100),
        queued_run(&tenant, &busy, 101),
    );
    store.enqueue_run(&first).await.unwrap();
    store.enqueue_run(&second).await.unwrap();
    let done = queued_run(&tenant, &idle, 102);
    store.enqueue_run(&done).await.unwrap();
    store
        .claim_runs("node", at(10_000), 60_000, 10)
        .await
        .unwrap();
    store
        .finish_run(&done.id, RunStatus::Completed, RunOutcome::default())
        .await
        .unwrap();

    let pending = store.pending_runs(&tenant, &busy).await.unwrap();
    assert_eq!(ids(&pending), [&first.id, &second.id]);
    assert_eq!(
        (pending[0].status, pending[1].status),
        (RunStatus::Running, RunStatus::Queued)
    );
    assert!(store.pending_runs(&tenant, &idle).await.unwrap().is_empty());
    let mut counts = store.count_runs().await.unwrap();
    counts.sort_by_key(|(status, _)| status.as_str());
    assert_eq!(
        counts,
        [
            (RunStatus::Completed, 1),
            (RunStatus::Queued, 1),
            (RunStatus::Running, 1)
        ]
    );
    assert!(store.pending_runs(&other, &busy).await.unwrap().is_empty());

    let list = |busy: Option<bool>, tenant| {
        let store = store.clone();
        async move {
            let filter = SessionFilter {
                busy,
                ..SessionFilter::default()
            };
            let sessions = store.list_sessions(&tenant, &filter).await.unwrap();
            sessions.into_iter().map(|s| s.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(list(Some(true), tenant.clone()).await, vec![busy.clone()]);
    assert_eq!(list(Some(false), tenant.clone()).await, vec![idle.clone()]);
    assert_eq!(list(None, tenant.clone()).await, [idle, busy]);
    assert!(list(Some(true), other).await.is_empty());
}
