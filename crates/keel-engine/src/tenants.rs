//! Tenants, their API keys and their gateway usage: the records around the sessions that the
//! admin API, the key bootstrap and usage accounting change. A key is minted by its caller
//! (the server holds the hashing); only its record, with the secret's hash, is stored here.

use keel_core::TenantId;
use keel_store::{ApiKeyRecord, TenantRecord, UsageTotals};

use crate::{Engine, EngineError, clock};

impl Engine {
    /// A new tenant named `name`, with a fresh id.
    pub async fn create_tenant(&self, name: &str) -> Result<TenantRecord, EngineError> {
        if name.trim().is_empty() {
            return Err(EngineError::Invalid(
                "a tenant needs a non-empty name".into(),
            ));
        }
        self.store_tenant(clock::new_tenant_id(), name).await
    }

    /// The default tenant (`TenantId::default_tenant()`, named `default`), made on first
    /// start; `AlreadyExists` when it is there.
    pub async fn create_default_tenant(&self) -> Result<TenantRecord, EngineError> {
        self.store_tenant(TenantId::default_tenant(), "default")
            .await
    }

    async fn store_tenant(&self, id: TenantId, name: &str) -> Result<TenantRecord, EngineError> {
        let tenant = TenantRecord {
            id,
            name: name.into(),
            created_at: clock::now(),
        };
        self.inner.store.create_tenant(&tenant).await?;
        Ok(tenant)
    }

    /// Stores a key of an existing tenant (`NotFound` otherwise); `AlreadyExists` for a prefix
    /// in use.
    pub async fn add_api_key(&self, key: &ApiKeyRecord) -> Result<(), EngineError> {
        Ok(self.inner.store.create_api_key(key).await?)
    }

    /// Revokes the key from now on; `NotFound` for an unknown prefix.
    pub async fn revoke_api_key(&self, prefix: &str) -> Result<(), EngineError> {
        if !self
            .inner
            .store
            .revoke_api_key(prefix, clock::now())
            .await?
        {
            return Err(EngineError::NotFound {
                kind: "API key",
                id: prefix.into(),
            });
        }
        Ok(())
    }

    /// Adds gateway usage to the stored totals of each increment's tenant, key, model and day,
    /// in one transaction.
    pub async fn add_usage(&self, increments: &[UsageTotals]) -> Result<(), EngineError> {
        Ok(self.inner.store.add_usage(increments).await?)
    }
}
