//! Timers of an agent: stored only for an agent of their tenant that is not archived, listed
//! per agent, found when due with the sessions' timers, deleted when the agent is archived; and
//! each firing creates one new session of the agent with its run, in the write that moves the
//! timer on — also when two handles (nodes) race to fire the same due time.

use std::sync::Arc;

use keel_core::{RunStatus, TenantId, TimerId};

use super::Subject;
use super::fixtures::{
    agent, assert_not_found, at, new_session, queued_run, session_record, session_started, tenant,
    tick,
};
use crate::{Schedule, SessionFilter, Store, StoreError, TimerOwner, TimerRecord, TimerStart};

fn agent_timer(tenant: &TenantId, agent: &str, next_at: i64) -> TimerRecord {
    TimerRecord {
        id: TimerId::generate(tick(), 7),
        tenant: tenant.clone(),
        owner: TimerOwner::Agent(agent.into()),
        schedule: Schedule::Cron {
            expr: "* * * * *".into(),
            timezone: "UTC".into(),
        },
        note: format!("report at {next_at}"),
        next_at: Some(at(next_at)),
        created_at: at(1_000),
        fired: 0,
        last_fired_at: None,
    }
}

/// What an agent's timer starts when it fires at `created_at`: a new session of the agent
/// and its first run.
fn new_session_start(tenant: &TenantId, agent: &str, created_at: i64) -> TimerStart {
    let mut session = session_record(tenant, agent, serde_json::json!({}));
    session.last_seq = 1;
    let first_events = vec![session_started(&session)];
    let run = queued_run(tenant, &session.id, created_at);
    TimerStart::Session {
        session,
        first_events,
        run,
    }
}

pub async fn an_agents_timers_are_kept_per_agent_and_go_when_it_is_archived(store: Arc<dyn Store>) {
    let (tenant, other) = (tenant(), tenant());
    store.put_agent(&tenant, agent("reporter")).await.unwrap();
    store.put_agent(&other, agent("reporter")).await.unwrap();
    let later = agent_timer(&tenant, "reporter", 9_000);
    let sooner = agent_timer(&tenant, "reporter", 5_000);
    for t in [&later, &sooner] {
        store.put_timer(t).await.unwrap();
    }
    assert!(matches!(
        store.put_timer(&sooner).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_not_found(
        store.put_timer(&agent_timer(&tenant, "nobody", 1)).await,
        "an unknown agent",
    );
    let listed = store.list_agent_timers(&tenant, "reporter").await.unwrap();
    assert_eq!(listed, vec![sooner.clone(), later.clone()]);
    assert!(
        store
            .list_agent_timers(&other, "reporter")
            .await
            .unwrap()
            .is_empty(),
        "another tenant's agent of the same name holds none of them"
    );
    // A session's timers and an agent's are listed apart.
    let session = new_session(&store, &tenant).await;
    assert!(
        store
            .list_timers(&tenant, &session)
            .await
            .unwrap()
            .is_empty()
    );
    let due: Vec<TimerId> = store
        .due_timers(at(6_000), 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.tenant == tenant)
        .map(|t| t.id)
        .collect();
    assert_eq!(due, vec![sooner.id.clone()]);

    // Another tenant cannot delete it; archiving the agent deletes them all, and an archived
    // agent takes no new one.
    assert!(!store.delete_timer(&other, &later.id).await.unwrap());
    assert!(
        store
            .archive_agent(&tenant, "reporter", at(7_000))
            .await
            .unwrap()
    );
    assert!(
        store
            .list_agent_timers(&tenant, "reporter")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !store
            .due_timers(at(i64::MAX), 100)
            .await
            .unwrap()
            .iter()
            .any(|t| t.tenant == tenant)
    );
    assert_not_found(
        store.put_timer(&agent_timer(&tenant, "reporter", 1)).await,
        "an archived agent",
    );
}

pub async fn firing_an_agents_timer_creates_one_session_and_its_run(store: Arc<dyn Store>) {
    let tenant = tenant();
    store.put_agent(&tenant, agent("reporter")).await.unwrap();
    let timer = agent_timer(&tenant, "reporter", 5_000);
    store.put_timer(&timer).await.unwrap();

    // What it starts must fit it: not a run on some session.
    let session = new_session(&store, &tenant).await;
    let wrong = TimerStart::Run(queued_run(&tenant, &session, 5_001));
    assert!(matches!(
        store.fire_timer(&timer.id, at(5_000), None, &wrong).await,
        Err(StoreError::Invalid(_))
    ));

    let start = new_session_start(&tenant, "reporter", 5_001);
    assert!(
        store
            .fire_timer(&timer.id, at(5_000), Some(at(8_000)), &start)
            .await
            .unwrap()
    );
    let TimerStart::Session {
        session: created,
        run,
        ..
    } = &start
    else {
        unreachable!()
    };
    let stored = store
        .get_session(&tenant, &created.id)
        .await
        .unwrap()
        .expect("the firing created the session");
    assert_eq!(
        (stored.agent_name.as_str(), stored.last_seq),
        ("reporter", 1)
    );
    let queued = store.get_run(&tenant, &run.id).await.unwrap().unwrap();
    assert_eq!(
        (queued.status, &queued.session),
        (RunStatus::Queued, &created.id)
    );

    // The same due time again (another node, late): no second session.
    let again = new_session_start(&tenant, "reporter", 5_002);
    assert!(
        !store
            .fire_timer(&timer.id, at(5_000), Some(at(8_000)), &again)
            .await
            .unwrap()
    );
    let TimerStart::Session { session: not, .. } = &again else {
        unreachable!()
    };
    assert!(store.get_session(&tenant, &not.id).await.unwrap().is_none());
    let fired = &store.list_agent_timers(&tenant, "reporter").await.unwrap()[0];
    assert_eq!((fired.next_at, fired.fired), (Some(at(8_000)), 1));
    assert_eq!(fired.last_fired_at, Some(run.created_at));

    // A due time passed over starts nothing and is not counted, but moves the timer on.
    assert!(
        store
            .fire_timer(&timer.id, at(8_000), Some(at(9_000)), &TimerStart::Nothing)
            .await
            .unwrap()
    );
    let passed = &store.list_agent_timers(&tenant, "reporter").await.unwrap()[0];
    assert_eq!((passed.next_at, passed.fired), (Some(at(9_000)), 1));
    assert_eq!(passed.last_fired_at, Some(run.created_at));
    let sessions = store
        .list_sessions(&tenant, &SessionFilter::default())
        .await
        .unwrap();
    assert_eq!(sessions.len(), 2, "the helper's session and the one fired");
}

pub async fn nodes_racing_to_fire_an_agents_timer_create_one_session_per_due_time(
    subject: &Subject,
) {
    const ROUNDS: i64 = 6;
    let handles = [subject.store.clone(), subject.second_handle()];
    let tenant = tenant();
    handles[0]
        .put_agent(&tenant, agent("reporter"))
        .await
        .unwrap();
    let racing = agent_timer(&tenant, "reporter", 1_000);
    handles[0].put_timer(&racing).await.unwrap();
    for round in 0..ROUNDS {
        let due = at(1_000 + round);
        let fires = (0..4).map(|n| {
            let store = handles[n % 2].clone();
            let id = racing.id.clone();
            let start = new_session_start(&tenant, "reporter", 10 * round);
            tokio::spawn(async move {
                store
                    .fire_timer(&id, due, Some(at(1_001 + round)), &start)
                    .await
            })
        });
        let mut fired = 0;
        for fire in fires.collect::<Vec<_>>() {
            fired += usize::from(fire.await.unwrap().unwrap());
        }
        assert_eq!(fired, 1, "round {round}: one of four fired");
    }
    let sessions = handles[1]
        .list_sessions(&tenant, &SessionFilter::default())
        .await
        .unwrap();
    assert_eq!(sessions.len(), ROUNDS as usize, "one session per due time");
    for session in &sessions {
        let runs = handles[1].pending_runs(&tenant, &session.id).await.unwrap();
        assert_eq!(runs.len(), 1, "each with one run");
    }
    assert_eq!(
        handles[1]
            .list_agent_timers(&tenant, "reporter")
            .await
            .unwrap()[0]
            .fired,
        ROUNDS as u64
    );
}

/// A timer put on one handle while the agent is archived on another is either refused or
/// deleted with the agent's others: never left behind on an archived agent.
pub async fn a_timer_put_while_its_agent_is_archived_is_never_left_behind(subject: &Subject) {
    const ROUNDS: usize = 20;
    let handles = [subject.store.clone(), subject.second_handle()];
    let tenant = tenant();
    for round in 0..ROUNDS {
        // A new version brings the agent back after the last round's archive.
        handles[0]
            .put_agent(&tenant, agent("reporter"))
            .await
            .unwrap();
        let timer = agent_timer(&tenant, "reporter", 1_000);
        let put = {
            let (store, timer) = (handles[round % 2].clone(), timer.clone());
            tokio::spawn(async move { store.put_timer(&timer).await })
        };
        let archive = {
            let (store, tenant) = (handles[(round + 1) % 2].clone(), tenant.clone());
            tokio::spawn(async move { store.archive_agent(&tenant, "reporter", at(2_000)).await })
        };
        assert!(archive.await.unwrap().unwrap());
        match put.await.unwrap() {
            Ok(()) | Err(StoreError::NotFound { .. }) => {}
            Err(other) => panic!("round {round}: {other:?}"),
        }
        let left = handles[0]
            .list_agent_timers(&tenant, "reporter")
            .await
            .unwrap();
        assert!(left.is_empty(), "round {round}: {left:?}");
    }
}
