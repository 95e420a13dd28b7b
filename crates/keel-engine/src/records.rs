//! Edits to the records beside a session's log, which are not events in it: a session's
//! metadata, and forgetting a finished run's record (its events stay in the log).

use keel_core::{RunId, SessionId, TenantId};
use serde_json::{Map, Value};

use crate::{Engine, EngineError};

impl Engine {
    /// Replaces the session's metadata; `NotFound` for an unknown session (or another
    /// tenant's).
    pub async fn set_session_metadata(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        metadata: Map<String, Value>,
    ) -> Result<(), EngineError> {
        self.refuse_if_moved(tenant, session).await?;
        let store = &self.inner.store;
        if !store
            .update_session_metadata(tenant, session, metadata)
            .await?
        {
            return Err(EngineError::NotFound {
                kind: "session",
                id: session.to_string(),
            });
        }
        Ok(())
    }

    /// Forgets a finished run's record (its events stay in the session's log); `NotFound` when
    /// the tenant has no such run, `Invalid` (from the store) while it is queued or running.
    pub async fn delete_run(&self, tenant: &TenantId, run: &RunId) -> Result<(), EngineError> {
        if !self.inner.store.delete_run(tenant, run).await? {
            return Err(EngineError::NotFound {
                kind: "run",
                id: run.to_string(),
            });
        }
        Ok(())
    }
}
