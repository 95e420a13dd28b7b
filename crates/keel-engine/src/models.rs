//! Resolves an agent's `model` to a client: a route's name (a `Router` over several targets,
//! with fallback, retries and breakers) or `provider/model` for one provider directly. Also
//! holds the model catalog that prices each step, and what each provider is known to serve
//! (`listing.rs` lists it).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use keel_models::ModelClient;
use keel_models::catalog::Catalog;

#[derive(Clone, Default)]
pub struct ModelRegistry {
    providers: HashMap<String, Arc<dyn ModelClient>>,
    routes: HashMap<String, Arc<dyn ModelClient>>,
    catalog: Catalog,
    /// Used when the agent's model names no provider (`gpt-4o-mini` rather than `openai/gpt-4o-mini`).
    default_provider: Option<String>,
    /// Models the configuration says a provider serves (the local model's name), by provider.
    declared: BTreeMap<String, Vec<String>>,
    /// Models the providers reported (`ModelClient::list_models`), by provider; shared by
    /// clones, filled once at start by `fetch_reported`.
    pub(crate) reported: Arc<RwLock<BTreeMap<String, Vec<String>>>>,
}

/// What a `model` name resolves to.
pub struct Resolved {
    pub client: Arc<dyn ModelClient>,
    /// The provider's name as configured (`[providers.NAME]`), or the route's name: what the
    /// log and usage record, where `client.provider()` is only its kind.
    pub provider: String,
    /// The model's name at that provider (or the route's name).
    pub model: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "model {model:?} names provider {provider:?}, which is not configured; configured: {configured}"
    )]
    UnknownProvider {
        model: String,
        provider: String,
        configured: String,
    },
    #[error(
        "model {0:?} names no provider and no default provider is configured; write it as `provider/model`"
    )]
    NoProvider(String),
}

impl ModelRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, name: impl Into<String>, client: Arc<dyn ModelClient>) -> Self {
        let name = name.into();
        if self.default_provider.is_none() {
            self.default_provider = Some(name.clone());
        }
        self.providers.insert(name, client);
        self
    }

    /// Adds a route: agents naming `name` as their model are served by `router`.
    pub fn with_route(mut self, name: impl Into<String>, router: Arc<dyn ModelClient>) -> Self {
        self.routes.insert(name.into(), router);
        self
    }

    /// Declares that provider `name` serves `model` (for listings: a model it serves though
    /// neither the catalog nor the provider lists it, such as the local model).
    pub fn with_declared_model(
        mut self,
        name: impl Into<String>,
        model: impl Into<String>,
    ) -> Self {
        self.declared
            .entry(name.into())
            .or_default()
            .push(model.into());
        self
    }

    /// The models the configuration says each provider serves.
    pub fn declared(&self) -> &BTreeMap<String, Vec<String>> {
        &self.declared
    }

    pub fn with_catalog(mut self, catalog: Catalog) -> Self {
        self.catalog = catalog;
        self
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The configured providers, by name (what routes are built over).
    pub fn providers(&self) -> &HashMap<String, Arc<dyn ModelClient>> {
        &self.providers
    }

    /// The configured routes, by name.
    pub fn routes(&self) -> &HashMap<String, Arc<dyn ModelClient>> {
        &self.routes
    }

    pub fn set_default(&mut self, name: impl Into<String>) {
        self.default_provider = Some(name.into());
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// The client, the configured provider's name and the provider-side model name for `model`.
    pub fn resolve(&self, model: &str) -> Result<Resolved, ResolveError> {
        if let Some(router) = self.routes.get(model) {
            return Ok(Resolved {
                client: router.clone(),
                provider: model.to_string(),
                model: model.to_string(),
            });
        }
        let (provider, name) = match model.split_once('/') {
            Some((p, n)) if self.providers.contains_key(p) => (p.to_string(), n.to_string()),
            Some((p, _)) if self.default_provider.is_none() => {
                return Err(ResolveError::UnknownProvider {
                    model: model.into(),
                    provider: p.into(),
                    configured: self.configured(),
                });
            }
            _ => match &self.default_provider {
                Some(p) => (p.clone(), model.to_string()),
                None => return Err(ResolveError::NoProvider(model.into())),
            },
        };
        let client = self.providers.get(&provider).cloned().ok_or_else(|| {
            ResolveError::UnknownProvider {
                model: model.into(),
                provider: provider.clone(),
                configured: self.configured(),
            }
        })?;
        Ok(Resolved {
            client,
            provider,
            model: name,
        })
    }

    fn configured(&self) -> String {
        let mut names: Vec<&str> = self
            .providers
            .keys()
            .chain(self.routes.keys())
            .map(String::as_str)
            .collect();
        names.sort();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }
}
