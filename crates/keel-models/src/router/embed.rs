//! Embeddings through a route: the same plan as a chat call (sticky target aside — an
//! embedding has no session), the same per-target retries with backoff, breakers and total
//! deadline, and the same rules on which failures move on to the next target. An embedding
//! call has no stream, so there is nothing to restart: an attempt succeeds or fails whole.

use std::sync::Arc;

use tokio::time::{Instant, timeout_at};

use super::backoff::retry_wait;
use super::call::{counts_against_target, final_error};
use super::{Shared, lock};
use crate::{EmbeddingRequest, EmbeddingResponse, ModelError, ModelErrorKind, Served};

/// Serves `request` from the first target of the plan that answers.
pub(super) async fn embed(
    shared: &Arc<Shared>,
    request: EmbeddingRequest,
) -> Result<EmbeddingResponse, ModelError> {
    let route = &shared.route;
    let started = Instant::now();
    let deadline = started + route.timeouts.total();
    let mut attempts = 0u32;
    let mut last_error = None;
    'targets: for target in shared.plan(None) {
        for tries_here in 0..route.retry.attempts_per_target {
            let Some(mut probe) = Admitted::new(shared, target) else {
                continue 'targets;
            };
            attempts += 1;
            let spec = &route.targets[target];
            let mut attempt = request.clone();
            attempt.model = spec.model.clone();
            let outcome = match timeout_at(deadline, shared.clients[target].embed(attempt)).await {
                Ok(outcome) => outcome,
                Err(_) => Err(ModelError::new(
                    ModelErrorKind::Timeout,
                    "router",
                    format!(
                        "route `{}`: the embeddings call did not finish within {:?}",
                        route.name,
                        route.timeouts.total()
                    ),
                )),
            };
            let error = match outcome {
                Ok(mut response) => {
                    lock(&shared.breakers[target]).succeeded();
                    probe.resolved();
                    let latency = started.elapsed();
                    response.served = Some(Served {
                        route: route.name.clone(),
                        target,
                        provider: spec.provider.clone(),
                        provider_kind: shared.clients[target].provider().to_string(),
                        model: spec.model.clone(),
                        attempts,
                        first_event: latency,
                        latency,
                    });
                    return Ok(response);
                }
                Err(error) => error,
            };
            tracing::info!(route = %route.name, target = %spec.label(), attempt = attempts, %error, "route embeddings attempt failed");
            if counts_against_target(error.kind) {
                lock(&shared.breakers[target]).failed(Instant::now());
                probe.resolved();
            }
            drop(probe);
            let (kind, retry_after) = (error.kind, error.retry_after);
            last_error = Some(error);
            match kind {
                ModelErrorKind::BadRequest | ModelErrorKind::Cancelled => break 'targets,
                ModelErrorKind::Auth | ModelErrorKind::ContextOverflow => continue 'targets,
                _ => {}
            }
            let dice = shared.dice.unit();
            match retry_wait(&route.retry, tries_here, retry_after, dice) {
                Some(wait) if Instant::now() + wait < deadline => tokio::time::sleep(wait).await,
                Some(_) => break 'targets,
                None => continue 'targets,
            }
        }
    }
    Err(final_error(
        route,
        attempts,
        last_error,
        Instant::now() >= deadline,
    ))
}

/// An attempt its target's breaker let through. When it was the half-open probe and ends with
/// neither outcome booked (a refusal that says nothing of the target, or the caller dropping
/// the call), the probe slot is freed for another call.
struct Admitted<'a> {
    shared: &'a Shared,
    target: usize,
    probing: bool,
}

impl<'a> Admitted<'a> {
    fn new(shared: &'a Shared, target: usize) -> Option<Self> {
        let mut breaker = lock(&shared.breakers[target]);
        let probing = !breaker.is_healthy();
        breaker.admit(Instant::now()).then_some(Admitted {
            shared,
            target,
            probing,
        })
    }

    fn resolved(&mut self) {
        self.probing = false;
    }
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if self.probing {
            lock(&self.shared.breakers[self.target]).probe_abandoned(Instant::now());
        }
    }
}
