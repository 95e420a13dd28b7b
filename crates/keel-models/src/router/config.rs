//! A route as config describes it (`[routes.<name>]` in keel.toml or per agent): its targets,
//! how one is chosen, and the retry, breaker and timeout policies. Plain data with serde, so the
//! binary embeds these types in its own config; `Router::new` checks them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A named list of targets and the policies for using them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: String,
    pub targets: Vec<Target>,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub breaker: BreakerPolicy,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Keep a session (`Params::affinity`) on the target that served it while that is healthy.
    #[serde(default = "yes")]
    pub sticky: bool,
}

/// One provider and model a route may use.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// A provider name the router was given a client for (`openai`, `anthropic`, …).
    pub provider: String,
    pub model: String,
    /// Relative share of calls under `Policy::Weighted`; ignored by `Fallback`.
    #[serde(default = "one")]
    pub weight: u32,
}

impl Target {
    /// `provider/model`.
    pub fn label(&self) -> String {
        format!("{}/{}", self.provider, self.model)
    }
}

/// How the first target of a call is chosen; the others follow as fallbacks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// In the listed order.
    #[default]
    Fallback,
    /// Drawn by weight; the remaining targets follow, again drawn by weight.
    Weighted,
}

/// Retries on one target before moving to the next.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts on each target (1 = no retry on the same target).
    pub attempts_per_target: u32,
    /// First backoff; each retry doubles it up to `max_backoff_ms`, with jitter down to half.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// A `Retry-After` longer than this moves on to the next target instead of waiting.
    pub max_retry_after_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts_per_target: 2,
            initial_backoff_ms: 200,
            max_backoff_ms: 5_000,
            max_retry_after_ms: 10_000,
        }
    }
}

/// A circuit breaker per target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerPolicy {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long an open breaker refuses calls before letting one probe through.
    pub cooldown_ms: u64,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failures: 5,
            cooldown_ms: 30_000,
        }
    }
}

/// Deadlines of a call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// From the start of an attempt to its first event; past it the attempt fails over.
    pub first_token_ms: u64,
    /// The longest silence between two events of a streaming reply; past it the attempt fails over.
    pub idle_ms: u64,
    /// The whole call, all attempts and backoff included.
    pub total_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            first_token_ms: 60_000,
            idle_ms: 60_000,
            total_ms: 600_000,
        }
    }
}

impl Timeouts {
    pub(super) fn first_token(&self) -> Duration {
        Duration::from_millis(self.first_token_ms)
    }

    pub(super) fn idle(&self) -> Duration {
        Duration::from_millis(self.idle_ms)
    }

    pub(super) fn total(&self) -> Duration {
        Duration::from_millis(self.total_ms)
    }
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}
