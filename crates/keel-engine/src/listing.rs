//! What `model` may name, for `GET /v1/models`: every model this node will serve. The routes;
//! the models the configuration names (the local model, known without loading it); the
//! catalog's models of each configured provider; what providers with a list endpoint report,
//! asked once at start (`ModelRegistry::fetch_reported`); and what the tenant already uses —
//! its agents' models and the models of its stored usage of the last 30 days, two small reads
//! (no log is walked).

use std::collections::BTreeMap;
use std::time::Duration;

use keel_core::{TenantId, Timestamp};
use keel_store::UsageQuery;

use crate::{Engine, EngineError, ModelRegistry};

/// One model that may be named, and who serves it: the provider's configured name, or
/// `keel` for a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedModel {
    pub id: String,
    pub owned_by: String,
}

/// The most models kept of one provider's list: what a server reports bounds no memory.
const MAX_REPORTED: usize = 10_000;

/// How far back stored usage counts as a model in use.
const USED_WITHIN_DAYS: i64 = 30;

impl ModelRegistry {
    /// Asks every provider with a list endpoint for its models, each within `timeout`, and
    /// keeps what they say. A provider that fails or does not answer in time is logged and
    /// listed from the configuration and the catalog alone.
    pub async fn fetch_reported(&self, timeout: Duration) {
        let asks = self.providers().iter().map(|(name, client)| async move {
            match tokio::time::timeout(timeout, client.list_models()).await {
                Ok(Ok(Some(mut models))) => {
                    models.truncate(MAX_REPORTED);
                    Some((name.clone(), models))
                }
                Ok(Ok(None)) => None,
                Ok(Err(e)) => {
                    tracing::warn!(provider = %name, error = %e, "cannot list the provider's models; /v1/models shows the configured and catalog ones");
                    None
                }
                Err(_) => {
                    tracing::warn!(provider = %name, timeout_ms = timeout.as_millis() as u64, "the provider did not list its models in time; /v1/models shows the configured and catalog ones");
                    None
                }
            }
        });
        let reported = futures::future::join_all(asks).await;
        let mut cache = self.reported.write().unwrap_or_else(|p| p.into_inner());
        cache.extend(reported.into_iter().flatten());
    }

    /// What the configuration serves: routes, then each provider's declared, catalog and
    /// reported models, by id.
    fn configured_models(&self) -> BTreeMap<String, String> {
        let mut listed: BTreeMap<String, String> = self
            .routes()
            .keys()
            .map(|route| (route.clone(), "keel".to_string()))
            .collect();
        let reported = self.reported.read().unwrap_or_else(|p| p.into_inner());
        let provided = self
            .declared()
            .iter()
            .chain(reported.iter())
            .flat_map(|(provider, models)| models.iter().map(move |m| format!("{provider}/{m}")));
        let catalog = self.catalog().names().map(str::to_string);
        for id in provided.chain(catalog) {
            self.list_served(&mut listed, id);
        }
        listed
    }

    /// Adds `id` (`provider/model`) when its provider is configured here.
    fn list_served(&self, listed: &mut BTreeMap<String, String>, id: String) {
        let Some((provider, model)) = id.split_once('/') else {
            return;
        };
        if model.is_empty() || !self.providers().contains_key(provider) {
            return;
        }
        let provider = provider.to_string();
        listed.entry(id).or_insert(provider);
    }
}

impl Engine {
    /// Every model `tenant` may name on this node (`GET /v1/models`), routes first, then by id.
    pub async fn list_models(&self, tenant: &TenantId) -> Result<Vec<ListedModel>, EngineError> {
        let models = &self.inner.models;
        let mut listed = models.configured_models();
        let store = self.store();
        let agents = store.list_agents(tenant).await?;
        let since = crate::clock::now().millis() - USED_WITHIN_DAYS * 86_400_000;
        let since_day = Timestamp::from_millis(since).to_string()[..10].to_string();
        let usage = store
            .usage(
                tenant,
                &UsageQuery {
                    since_day: Some(since_day),
                    key_prefix: None,
                },
            )
            .await?;
        let used = agents
            .into_iter()
            .map(|agent| agent.model)
            .chain(usage.into_iter().map(|row| row.model));
        for id in used {
            if models.routes().contains_key(&id) {
                continue;
            }
            models.list_served(&mut listed, id);
        }
        let (mut routes, provided): (Vec<ListedModel>, Vec<ListedModel>) = listed
            .into_iter()
            .map(|(id, owned_by)| ListedModel { id, owned_by })
            .partition(|m| models.routes().contains_key(&m.id));
        routes.extend(provided);
        Ok(routes)
    }
}
