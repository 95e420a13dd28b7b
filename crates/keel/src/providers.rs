//! The model registry the configuration describes: one client per `[providers.NAME]`
//! (OpenAI-compatible, Azure, Anthropic, Gemini, Bedrock, the embedded local model, scripted),
//! the models each declares for `/v1/models`, the routes over them and the catalog.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use keel_engine::ModelRegistry;
use keel_models::providers::openai::{OpenAiClient, OpenAiConfig};
use keel_models::providers::scripted::{ScriptedClient, ScriptedConfig};

use crate::config::{Config, ProviderConfig};

/// The providers the configuration names.
pub async fn model_registry(config: &Config) -> anyhow::Result<ModelRegistry> {
    let mut registry = ModelRegistry::new();
    for (name, provider) in &config.providers {
        let client: Arc<dyn keel_models::ModelClient> = match provider {
            ProviderConfig::Openai {
                base_url,
                api_key_env,
            } => {
                let key_var = api_key_env.as_deref().unwrap_or("OPENAI_API_KEY");
                let api_key = std::env::var(key_var).ok().filter(|k| !k.is_empty());
                let base_url = base_url
                    .clone()
                    .or_else(|| std::env::var("OPENAI_BASE_URL").ok());
                let mut openai = match base_url {
                    Some(url) => OpenAiConfig::compatible(url),
                    None => OpenAiConfig::default(),
                };
                openai.api_key = api_key;
                Arc::new(
                    OpenAiClient::new(openai)
                        .with_context(|| format!("provider {name:?} is misconfigured"))?,
                )
            }
            ProviderConfig::Local {
                path,
                model,
                slots,
                context_len,
                prefix_cache_mb,
                temperature,
            } => {
                let tuning = LocalTuning {
                    slots: *slots,
                    context_len: *context_len,
                    prefix_cache_mb: *prefix_cache_mb,
                    temperature: *temperature,
                };
                local_client(path.as_deref(), model.as_deref(), tuning)?
            }
            ProviderConfig::Anthropic(c) => Arc::new(
                keel_models::providers::anthropic::AnthropicClient::new(c.clone())
                    .with_context(|| format!("provider {name:?} is misconfigured"))?,
            ),
            ProviderConfig::Gemini(c) => Arc::new(
                keel_models::providers::gemini::GeminiClient::new(c.clone())
                    .with_context(|| format!("provider {name:?} is misconfigured"))?,
            ),
            ProviderConfig::OpenaiResponses(c) => Arc::new(
                keel_models::providers::openai_responses::ResponsesClient::new(c.clone())
                    .with_context(|| format!("provider {name:?} is misconfigured"))?,
            ),
            ProviderConfig::Azure(c) => Arc::new(
                keel_models::providers::azure::AzureClient::new(c.clone())
                    .with_context(|| format!("provider {name:?} is misconfigured"))?,
            ),
            #[cfg(feature = "bedrock")]
            ProviderConfig::Bedrock(c) => Arc::new(
                keel_models::providers::bedrock::BedrockClient::new(c.clone())
                    .await
                    .with_context(|| format!("provider {name:?} is misconfigured"))?,
            ),
            ProviderConfig::Scripted {
                token_latency_ms,
                first_token_latency_ms,
                reply_tokens,
            } => Arc::new(ScriptedClient::new(ScriptedConfig {
                first_token_latency: Duration::from_millis(*first_token_latency_ms),
                token_latency: Duration::from_millis(*token_latency_ms),
                reply_tokens: *reply_tokens,
            })),
        };
        registry = registry.with(name.clone(), client);
        if let ProviderConfig::Local { model, .. } = provider {
            let listed = local_model_name(model.as_deref());
            registry = registry.with_declared_model(name.clone(), listed);
            // It also embeds (`POST /v1/embeddings`), with its own model, fetched on first use.
            #[cfg(feature = "local")]
            {
                let embeds = keel_local::pull::EMBEDDING_MODEL;
                registry = registry.with_declared_model(name.clone(), embeds);
            }
        }
    }
    for route in &config.routes {
        let router = keel_models::router::Router::new(route.clone(), registry.providers())
            .with_context(|| format!("route {:?} in keel.toml", route.name))?;
        registry = registry.with_route(route.name.clone(), Arc::new(router));
    }
    let catalog = keel_models::catalog::Catalog::builtin().with_overrides(config.catalog.clone());
    Ok(registry.with_catalog(catalog))
}

/// The local model's name in listings: the configured `model`, else the one keel fetches by
/// default — the name the default agent uses, whatever file `path` names (the local model
/// answers to any name). Known from the configuration alone: listing never loads or fetches.
fn local_model_name(model: Option<&str>) -> &str {
    model.unwrap_or(DEFAULT_LOCAL_MODEL)
}

/// The model the local provider fetches when none is configured.
pub(crate) const DEFAULT_LOCAL_MODEL: &str = "smollm2-135m-instruct";

/// The optional knobs of `[providers.NAME] kind = "local"` (read only with the `local` feature).
#[cfg_attr(not(feature = "local"), allow(dead_code))]
struct LocalTuning {
    slots: Option<usize>,
    context_len: Option<usize>,
    prefix_cache_mb: Option<usize>,
    temperature: Option<f32>,
}

/// Loads the local model, fetching the known model into the shared model cache first when no
/// path is given.
#[cfg(feature = "local")]
fn local_client(
    path: Option<&Path>,
    model: Option<&str>,
    tuning: LocalTuning,
) -> anyhow::Result<Arc<dyn keel_models::ModelClient>> {
    use keel_local::{LocalClient, LocalOptions, pull};
    let path = match path {
        Some(p) => p.to_path_buf(),
        None => {
            let name = model.unwrap_or(pull::DEFAULT_MODEL);
            let shown = crate::commands::model::PullProgress::on_stderr();
            pull::ensure_model(&pull::cache_dir()?, name, shown.printer())?
        }
    };
    let defaults = LocalOptions::default();
    let options = LocalOptions {
        slots: tuning.slots.unwrap_or(defaults.slots),
        context_len: tuning.context_len.unwrap_or(defaults.context_len),
        prefix_cache_bytes: tuning
            .prefix_cache_mb
            .map_or(defaults.prefix_cache_bytes, |mb| mb << 20),
        default_temperature: tuning.temperature.unwrap_or(defaults.default_temperature),
        ..defaults
    };
    let client = LocalClient::load(&path, options)?;
    Ok(Arc::new(client))
}

#[cfg(not(feature = "local"))]
fn local_client(
    _: Option<&Path>,
    _: Option<&str>,
    _: LocalTuning,
) -> anyhow::Result<Arc<dyn keel_models::ModelClient>> {
    anyhow::bail!(
        "this keel was built without the `local` feature; rebuild with it or configure another provider"
    )
}
