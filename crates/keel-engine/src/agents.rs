//! Agent definitions: storing a new version (checked, with its built-in tools completed and the
//! tenant's agent limit kept) and archiving. Sessions pin a version, so neither touches a
//! running session.

use keel_core::{AgentDef, TenantId};

use crate::{Engine, EngineError, Quotas, clock, tools};

impl Engine {
    /// Stores a new version of an agent (version 1 for a new name).
    pub async fn put_agent(
        &self,
        tenant: &TenantId,
        mut def: AgentDef,
    ) -> Result<AgentDef, EngineError> {
        if def.name.trim().is_empty() {
            return Err(EngineError::Invalid(
                "an agent needs a non-empty name".into(),
            ));
        }
        if def.model.trim().is_empty() {
            return Err(EngineError::Invalid(format!(
                "agent {:?} needs a model (`provider/model`)",
                def.name
            )));
        }
        tools::complete_builtins(&mut def).map_err(EngineError::Invalid)?;
        tools::check_http_tools(&def).map_err(EngineError::Invalid)?;
        def.check_memory_blocks().map_err(EngineError::Invalid)?;
        tools::mcp::check_mcp_tools(&def).map_err(EngineError::Invalid)?;
        crate::memory::check_policy(&def)?;
        let store = &self.inner.store;
        if store.get_agent(tenant, &def.name, None).await?.is_none() {
            let held = store.tenant_counts(tenant).await?.agents;
            let limit = self.inner.config.quotas.agents_per_tenant;
            Quotas::check("the tenant's agents", "agents_per_tenant", held, 1, limit)?;
        }
        Ok(store.put_agent(tenant, def).await?)
    }

    /// The latest version of the tenant's agent `name`; `NotFound` for one it does not have.
    pub(crate) async fn require_agent(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> Result<AgentDef, EngineError> {
        let agent = self.inner.store.get_agent(tenant, name, None).await?;
        agent.ok_or_else(|| EngineError::NotFound {
            kind: "agent",
            id: name.into(),
        })
    }

    /// Hides the agent (every version) from listings until a new version is stored; the
    /// sessions pinning its versions go on. `NotFound` for an unknown agent.
    pub async fn archive_agent(&self, tenant: &TenantId, name: &str) -> Result<(), EngineError> {
        let store = &self.inner.store;
        if !store.archive_agent(tenant, name, clock::now()).await? {
            return Err(EngineError::NotFound {
                kind: "agent",
                id: name.into(),
            });
        }
        Ok(())
    }
}
