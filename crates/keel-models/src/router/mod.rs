//! Routes: one `ModelClient` over several provider targets, so an outage or a quarrel with one
//! provider never stops an agent. It picks a target (ordered fallback or weighted, sticky per
//! session), retries with backoff, keeps a circuit breaker per target, and fails over, even
//! mid-stream (announced by `StreamEvent::Restart`). `call` drives one call; this file holds state.

mod backoff;
mod breaker;
mod call;
mod config;
mod embed;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use self::backoff::Dice;
pub use self::backoff::retry_wait;
use self::breaker::Breaker;
pub use self::breaker::BreakerState;
pub use self::config::{BreakerPolicy, Policy, RetryPolicy, Route, Target, Timeouts};
use crate::{
    EmbeddingRequest, EmbeddingResponse, ModelClient, ModelError, ModelRequest, ModelStream,
};

/// The most sessions whose sticky target is remembered; past it the oldest half is forgotten.
const STICKY_CAPACITY: usize = 100_000;

/// A route that cannot be built as configured.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("route `{route}` has no targets; list at least one provider/model under it")]
    NoTargets { route: String },
    #[error(
        "route `{route}` target {index} names provider `{provider}`, which is not configured; known providers: {known}"
    )]
    UnknownProvider {
        route: String,
        index: usize,
        provider: String,
        known: String,
    },
    #[error(
        "route `{route}` target {index} (`{label}`) has weight 0; give it a weight of 1 or more, or remove it"
    )]
    ZeroWeight {
        route: String,
        index: usize,
        label: String,
    },
    #[error("route `{route}` has retry.attempts_per_target = 0; it must be at least 1")]
    NoAttempts { route: String },
}

/// A `ModelClient` that serves each call from one of a route's targets.
#[derive(Clone)]
pub struct Router {
    shared: Arc<Shared>,
}

struct Shared {
    route: Route,
    clients: Vec<Arc<dyn ModelClient>>,
    breakers: Vec<Mutex<Breaker>>,
    /// Affinity key → the target that served it last, in order of insertion.
    sticky: Mutex<Sticky>,
    dice: Dice,
}

#[derive(Default)]
struct Sticky {
    targets: HashMap<String, (usize, u64)>,
    next_serial: u64,
}

/// A poisoned lock only means another call panicked; the state is still consistent.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Router {
    /// Checks the route against the available provider clients (by provider name).
    pub fn new(
        route: Route,
        providers: &HashMap<String, Arc<dyn ModelClient>>,
    ) -> Result<Router, RouteError> {
        if route.targets.is_empty() {
            return Err(RouteError::NoTargets { route: route.name });
        }
        if route.retry.attempts_per_target == 0 {
            return Err(RouteError::NoAttempts { route: route.name });
        }
        let mut clients = Vec::with_capacity(route.targets.len());
        for (index, target) in route.targets.iter().enumerate() {
            let Some(client) = providers.get(&target.provider) else {
                let mut known: Vec<&str> = providers.keys().map(String::as_str).collect();
                known.sort_unstable();
                return Err(RouteError::UnknownProvider {
                    route: route.name.clone(),
                    index,
                    provider: target.provider.clone(),
                    known: if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(", ")
                    },
                });
            };
            if target.weight == 0 && route.policy == Policy::Weighted {
                return Err(RouteError::ZeroWeight {
                    route: route.name.clone(),
                    index,
                    label: target.label(),
                });
            }
            clients.push(client.clone());
        }
        let cooldown = Duration::from_millis(route.breaker.cooldown_ms);
        let breakers = route
            .targets
            .iter()
            .map(|_| Mutex::new(Breaker::new(route.breaker.failures, cooldown)))
            .collect();
        Ok(Router {
            shared: Arc::new(Shared {
                route,
                clients,
                breakers,
                sticky: Mutex::default(),
                dice: Dice::new(),
            }),
        })
    }

    pub fn route(&self) -> &Route {
        &self.shared.route
    }

    /// The breaker state of target `index` (for status pages and tests).
    pub fn breaker_state(&self, index: usize) -> Option<BreakerState> {
        self.shared.breakers.get(index).map(|b| lock(b).state())
    }

    /// The target a session is stuck to, if any.
    pub fn sticky_target(&self, affinity: &str) -> Option<usize> {
        lock(&self.shared.sticky)
            .targets
            .get(affinity)
            .map(|(t, _)| *t)
    }
}

impl Shared {
    /// The order in which a call tries targets: the session's sticky target first while it is
    /// healthy, then the policy's order.
    fn plan(&self, affinity: Option<&str>) -> Vec<usize> {
        let count = self.route.targets.len();
        let mut order: Vec<usize> = match self.route.policy {
            Policy::Fallback => (0..count).collect(),
            Policy::Weighted => self.weighted_order(),
        };
        let stuck = affinity
            .filter(|_| self.route.sticky)
            .and_then(|key| lock(&self.sticky).targets.get(key).map(|(t, _)| *t))
            .filter(|t| *t < count && lock(&self.breakers[*t]).is_healthy());
        if let Some(target) = stuck {
            order.retain(|t| *t != target);
            order.insert(0, target);
        }
        order
    }

    /// All targets, each next one drawn by weight from those left.
    fn weighted_order(&self) -> Vec<usize> {
        let mut left: Vec<usize> = (0..self.route.targets.len()).collect();
        let mut order = Vec::with_capacity(left.len());
        while !left.is_empty() {
            let total: u64 = left
                .iter()
                .map(|t| u64::from(self.route.targets[*t].weight))
                .sum();
            let mut point = (self.dice.unit() * total as f64) as u64;
            let mut chosen = left.len() - 1;
            for (i, t) in left.iter().enumerate() {
                let weight = u64::from(self.route.targets[*t].weight);
                if point < weight {
                    chosen = i;
                    break;
                }
                point -= weight;
            }
            order.push(left.remove(chosen));
        }
        order
    }

    fn remember(&self, affinity: &str, target: usize) {
        if !self.route.sticky {
            return;
        }
        let mut sticky = lock(&self.sticky);
        if sticky.targets.len() >= STICKY_CAPACITY && !sticky.targets.contains_key(affinity) {
            let cutoff = sticky
                .next_serial
                .saturating_sub((STICKY_CAPACITY / 2) as u64);
            sticky.targets.retain(|_, (_, serial)| *serial >= cutoff);
        }
        let serial = sticky.next_serial;
        sticky.next_serial += 1;
        sticky
            .targets
            .insert(affinity.to_string(), (target, serial));
    }
}

#[async_trait]
impl ModelClient for Router {
    fn provider(&self) -> &str {
        "router"
    }

    async fn stream(&self, request: ModelRequest) -> Result<ModelStream, ModelError> {
        let mut call = call::Call::new(self.shared.clone(), request);
        // Failures before the first event are returned here, like a provider does.
        let first = match call.next_event().await {
            Some(Ok(event)) => event,
            Some(Err(error)) => return Err(error),
            None => unreachable_end(&self.shared.route.name)?,
        };
        let rest = futures::stream::unfold(call, |mut call| async move {
            call.next_event().await.map(|e| (e, call))
        });
        Ok(futures::stream::once(async move { Ok(first) })
            .chain(rest)
            .boxed())
    }

    async fn embed(&self, request: EmbeddingRequest) -> Result<EmbeddingResponse, ModelError> {
        embed::embed(&self.shared, request).await
    }
}

/// A call always yields an event or an error first; this guards the type, not a real path.
fn unreachable_end(route: &str) -> Result<crate::StreamEvent, ModelError> {
    Err(ModelError::new(
        crate::ModelErrorKind::Protocol,
        "router",
        format!("route `{route}`: the call ended without any event"),
    ))
}
