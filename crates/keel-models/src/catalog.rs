//! The model catalog: what keel knows about a model it did not ask the provider for (context
//! window, largest output, prices), so a step's cost can be computed and stored with its usage.
//! Built-in entries are list prices as published in 2025; config overrides or adds entries.

use std::collections::HashMap;

use keel_core::Usage;
use serde::{Deserialize, Serialize};

/// Prices in US dollars per million tokens.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    /// Input tokens read from the provider's prompt cache; `input` when the model has no
    /// cache discount.
    #[serde(default)]
    pub cached_input: Option<f64>,
    pub output: f64,
}

/// One model's limits and prices.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    /// Input plus output tokens the model can attend to.
    pub context_window: u32,
    pub max_output_tokens: u32,
    pub price: Price,
}

impl ModelInfo {
    /// The cost of one call's usage in US dollars. Cached input tokens are part of
    /// `input_tokens` (as keel's `Usage` counts them) and are billed at the cached price.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let fresh = usage.input_tokens - cached;
        let price = &self.price;
        let cached_price = price.cached_input.unwrap_or(price.input);
        (fresh as f64 * price.input
            + cached as f64 * cached_price
            + usage.output_tokens as f64 * price.output)
            / 1e6
    }
}

/// Models by `provider/model`. A lookup that misses falls back to the model name under any
/// provider, so an Azure deployment named like an OpenAI model gets that model's entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Catalog {
    models: HashMap<String, ModelInfo>,
}

const fn info(
    context_window: u32,
    max_output_tokens: u32,
    input: f64,
    cached: f64,
    output: f64,
) -> ModelInfo {
    ModelInfo {
        context_window,
        max_output_tokens,
        price: Price {
            input,
            cached_input: Some(cached),
            output,
        },
    }
}

/// (provider/model, info) for the common models of each provider.
const BUILTIN: &[(&str, ModelInfo)] = &[
    ("openai/gpt-5", info(400_000, 128_000, 1.25, 0.125, 10.0)),
    (
        "openai/gpt-5-mini",
        info(400_000, 128_000, 0.25, 0.025, 2.0),
    ),
    (
        "openai/gpt-5-nano",
        info(400_000, 128_000, 0.05, 0.005, 0.4),
    ),
    ("openai/gpt-4.1", info(1_047_576, 32_768, 2.0, 0.5, 8.0)),
    (
        "openai/gpt-4.1-mini",
        info(1_047_576, 32_768, 0.4, 0.1, 1.6),
    ),
    (
        "openai/gpt-4.1-nano",
        info(1_047_576, 32_768, 0.1, 0.025, 0.4),
    ),
    ("openai/gpt-4o", info(128_000, 16_384, 2.5, 1.25, 10.0)),
    (
        "openai/gpt-4o-mini",
        info(128_000, 16_384, 0.15, 0.075, 0.6),
    ),
    ("openai/o3", info(200_000, 100_000, 2.0, 0.5, 8.0)),
    ("openai/o4-mini", info(200_000, 100_000, 1.1, 0.275, 4.4)),
    (
        "anthropic/claude-opus-4-1",
        info(200_000, 32_000, 15.0, 1.5, 75.0),
    ),
    (
        "anthropic/claude-sonnet-4-5",
        info(200_000, 64_000, 3.0, 0.3, 15.0),
    ),
    (
        "anthropic/claude-sonnet-4-0",
        info(200_000, 64_000, 3.0, 0.3, 15.0),
    ),
    (
        "anthropic/claude-haiku-4-5",
        info(200_000, 64_000, 1.0, 0.1, 5.0),
    ),
    (
        "anthropic/claude-3-5-haiku-latest",
        info(200_000, 8_192, 0.8, 0.08, 4.0),
    ),
    (
        "gemini/gemini-2.5-pro",
        info(1_048_576, 65_536, 1.25, 0.125, 10.0),
    ),
    (
        "gemini/gemini-2.5-flash",
        info(1_048_576, 65_536, 0.3, 0.03, 2.5),
    ),
    (
        "gemini/gemini-2.5-flash-lite",
        info(1_048_576, 65_536, 0.1, 0.01, 0.4),
    ),
    (
        "bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0",
        info(200_000, 64_000, 3.0, 0.3, 15.0),
    ),
    (
        "bedrock/anthropic.claude-3-5-haiku-20241022-v1:0",
        info(200_000, 8_192, 0.8, 0.08, 4.0),
    ),
    (
        "bedrock/amazon.nova-pro-v1:0",
        info(300_000, 5_000, 0.8, 0.2, 3.2),
    ),
    (
        "bedrock/amazon.nova-lite-v1:0",
        info(300_000, 5_000, 0.06, 0.015, 0.24),
    ),
];

impl Catalog {
    /// The built-in entries.
    pub fn builtin() -> Catalog {
        Catalog {
            models: BUILTIN
                .iter()
                .map(|(name, info)| (name.to_string(), *info))
                .collect(),
        }
    }

    /// Adds or replaces entries (keys are `provider/model`), e.g. from config.
    pub fn with_overrides(
        mut self,
        overrides: impl IntoIterator<Item = (String, ModelInfo)>,
    ) -> Catalog {
        self.models.extend(overrides);
        self
    }

    /// Every entry's key, `provider/model`.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    /// The entry for `provider/model`, else for `model` under any provider (e.g. an Azure
    /// deployment named `gpt-4o`).
    pub fn get(&self, provider: &str, model: &str) -> Option<&ModelInfo> {
        if let Some(info) = self.models.get(&format!("{provider}/{model}")) {
            return Some(info);
        }
        let mut by_name: Vec<(&String, &ModelInfo)> = self
            .models
            .iter()
            .filter(|(key, _)| key.split_once('/').is_some_and(|(_, name)| name == model))
            .collect();
        by_name.sort_by(|a, b| a.0.cmp(b.0));
        by_name.first().map(|(_, info)| *info)
    }

    /// The cost in US dollars of a call to `provider/model` with this usage; `None` for a model
    /// the catalog does not know (add it under `[models]` in config to price it).
    pub fn cost(&self, provider: &str, model: &str, usage: &Usage) -> Option<f64> {
        self.get(provider, model).map(|info| info.cost(usage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, cached: u64, output: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: cached,
        }
    }

    #[test]
    fn bills_cached_input_at_its_own_price() {
        let catalog = Catalog::builtin();
        // gpt-4o-mini: 0.15 in, 0.075 cached, 0.60 out per million.
        let cost = catalog
            .cost("openai", "gpt-4o-mini", &usage(1_000_000, 400_000, 500_000))
            .unwrap();
        let expected = 0.6 * 0.15 + 0.4 * 0.075 + 0.5 * 0.6;
        assert!((cost - expected).abs() < 1e-9, "{cost} != {expected}");
    }

    #[test]
    fn overrides_win_and_unknown_models_have_no_price() {
        let mine = ModelInfo {
            context_window: 8_192,
            max_output_tokens: 1_024,
            price: Price {
                input: 1.0,
                cached_input: None,
                output: 2.0,
            },
        };
        let catalog = Catalog::builtin().with_overrides([("openai/gpt-4o".to_string(), mine)]);
        assert_eq!(catalog.get("openai", "gpt-4o"), Some(&mine));
        assert_eq!(
            catalog.cost("openai", "gpt-4o", &usage(1_000_000, 1_000_000, 0)),
            Some(1.0)
        );
        assert_eq!(catalog.cost("acme", "mystery-1", &usage(10, 0, 10)), None);
        // An Azure deployment named like an OpenAI model is priced as that model.
        assert_eq!(
            catalog.get("azure", "gpt-4o-mini"),
            catalog.get("openai", "gpt-4o-mini")
        );
    }

    #[test]
    fn deserializes_from_config() {
        let catalog: Catalog = serde_json::from_str(
            r#"{"acme/m1": {"context_window": 32000, "max_output_tokens": 4000,
                "price": {"input": 0.5, "output": 1.5}}}"#,
        )
        .unwrap();
        assert_eq!(catalog.get("acme", "m1").unwrap().price.cached_input, None);
    }
}
