//! `schedule_wakeup` and `cancel_wakeup`: an agent sets and cancels its own session's timers.
//! The timer is not stored here: it is handed back as a write (`ToolWrites::timers`) that
//! commits with the tool's result event, so a step performed again after a crash sets it once.
//! When it fires, a run starts on the session with the note as its input (`timers.rs`).

use std::time::Duration;

use keel_core::{SessionId, TenantId};
use keel_store::{Store, TimerWrite};
use serde_json::Value;

use super::{ToolOutcome, ToolWrites};
use crate::timers::{self, When};
use crate::{EngineError, clock};

pub(super) const SCHEDULE: &str = "schedule_wakeup";
pub(super) const CANCEL: &str = "cancel_wakeup";

pub(super) async fn schedule(
    store: &dyn Store,
    tenant: &TenantId,
    session: &SessionId,
    arguments: &Value,
) -> ToolOutcome {
    let Some(note) = arguments.get("note").and_then(Value::as_str) else {
        return ToolOutcome::error("schedule_wakeup needs a string argument \"note\"");
    };
    let when = match when(arguments) {
        Ok(when) => when,
        Err(message) => return ToolOutcome::error(message),
    };
    let owner = keel_store::TimerOwner::Session(session.clone());
    let timer = match timers::room_for_one(store, tenant, &owner).await {
        Ok(()) => timers::new_timer(tenant, &owner, when, note.into(), clock::now()),
        Err(e) => Err(e),
    };
    match timer {
        Ok(timer) => ToolOutcome {
            content: format!(
                "wakeup {} set for {}; cancel it with cancel_wakeup",
                timer.id,
                timer.next_at.expect("a new timer is due")
            ),
            is_error: false,
            writes: ToolWrites {
                timers: vec![TimerWrite::Put(timer)],
                ..ToolWrites::default()
            },
        },
        Err(EngineError::Invalid(message) | EngineError::LimitReached(message)) => {
            ToolOutcome::error(message)
        }
        Err(e) => ToolOutcome::error(format!("the wakeup could not be set: {e}")),
    }
}

/// Exactly one of `after_secs` and `at`.
fn when(arguments: &Value) -> Result<When, String> {
    let after = arguments.get("after_secs").filter(|v| !v.is_null());
    let at = arguments.get("at").filter(|v| !v.is_null());
    match (after, at) {
        (Some(after), None) => match after.as_f64() {
            // Beyond reach is refused by `new_timer`, saying how far is allowed.
            Some(secs) if secs >= 1.0 && secs.is_finite() => {
                let beyond = 2.0 * timers::MAX_AHEAD.as_secs_f64();
                Ok(When::After(Duration::from_secs_f64(secs.min(beyond))))
            }
            _ => Err(format!(
                "after_secs must be a number of seconds, at least 1, not {after}"
            )),
        },
        (None, Some(at)) => match at.as_str() {
            Some(text) => timers::parse_instant(text)
                .map(When::At)
                .map_err(|e| e.to_string()),
            None => Err(format!(
                "at must be an RFC 3339 instant as a string, not {at}"
            )),
        },
        _ => Err("schedule_wakeup needs exactly one of after_secs and at".into()),
    }
}

pub(super) async fn cancel(
    store: &dyn Store,
    tenant: &TenantId,
    session: &SessionId,
    arguments: &Value,
) -> ToolOutcome {
    let Some(id) = arguments.get("id").and_then(Value::as_str) else {
        return ToolOutcome::error("cancel_wakeup needs a string argument \"id\"");
    };
    let held = match store.list_timers(tenant, session).await {
        Ok(held) => held,
        Err(e) => return ToolOutcome::error(format!("the wakeups cannot be read now: {e}")),
    };
    let Some(timer) = held.into_iter().find(|t| t.id.as_str() == id) else {
        return ToolOutcome::error(format!("this session has no wakeup {id:?}"));
    };
    ToolOutcome {
        content: format!("wakeup {id} cancelled"),
        is_error: false,
        writes: ToolWrites {
            timers: vec![TimerWrite::Delete(timer.id)],
            ..ToolWrites::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_wakeup_is_after_a_delay_or_at_an_instant_never_both() {
        assert!(matches!(
            when(&json!({"after_secs": 90})),
            Ok(When::After(d)) if d == Duration::from_secs(90)
        ));
        assert!(matches!(
            when(&json!({"at": "2026-12-01T09:00:00+01:00", "after_secs": null})),
            Ok(When::At(_))
        ));
        for (bad, says) in [
            (json!({}), "exactly one"),
            (
                json!({"after_secs": 5, "at": "2026-12-01T09:00:00Z"}),
                "exactly one",
            ),
            (json!({"after_secs": 0}), "at least 1"),
            (json!({"after_secs": "soon"}), "at least 1"),
            (json!({"at": "tomorrow"}), "RFC 3339"),
            (json!({"at": 5}), "as a string"),
        ] {
            match when(&bad) {
                Err(message) => assert!(message.contains(says), "{bad}: {message}"),
                Ok(when) => panic!("{bad} was taken as {when:?}"),
            }
        }
        // Too far ahead is read, then refused with the reach allowed (never a panic).
        let far = when(&json!({"after_secs": 1e300})).unwrap();
        let session = keel_store::TimerOwner::Session(keel_core::SessionId::generate(1, 1));
        let tenant = TenantId::default_tenant();
        let now = keel_core::Timestamp::from_millis(0);
        match timers::new_timer(&tenant, &session, far, "x".into(), now) {
            Err(EngineError::Invalid(message)) => assert!(message.contains("at most"), "{message}"),
            other => panic!("{other:?}"),
        }
    }
}
