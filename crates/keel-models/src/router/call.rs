//! One call through a route: try targets in the planned order, retry a target with backoff,
//! fail over on errors (announcing `Restart` when output was already passed on), keep each
//! target's breaker and the session's sticky target up to date, and end with `Served`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::{Instant, timeout_at};

use super::backoff::retry_wait;
use super::{Route, Shared, lock};
use crate::{ModelError, ModelErrorKind, ModelRequest, ModelStream, Served, StreamEvent};

type Item = Result<StreamEvent, ModelError>;

pub(super) struct Call {
    shared: Arc<Shared>,
    request: ModelRequest,
    plan: Vec<usize>,
    /// Position in `plan` of the target being tried.
    position: usize,
    /// Attempts made on that target so far.
    tries_here: u32,
    /// Wait before the next attempt (a retry on the same target).
    wait: Duration,
    attempts: u32,
    started: Instant,
    deadline: Instant,
    first_event: Option<Duration>,
    /// Events were passed on in this call: a new attempt must announce `Restart` first.
    streamed: bool,
    live: Option<(usize, ModelStream)>,
    /// The target whose breaker admitted this call as its half-open probe, until it resolves.
    probing: Option<usize>,
    pending: VecDeque<Item>,
    last_error: Option<ModelError>,
    over: bool,
}

impl Call {
    pub(super) fn new(shared: Arc<Shared>, request: ModelRequest) -> Call {
        let plan = shared.plan(request.params.affinity.as_deref());
        let started = Instant::now();
        let deadline = started + shared.route.timeouts.total();
        Call {
            shared,
            request,
            plan,
            position: 0,
            tries_here: 0,
            wait: Duration::ZERO,
            attempts: 0,
            started,
            deadline,
            first_event: None,
            streamed: false,
            live: None,
            probing: None,
            pending: VecDeque::new(),
            last_error: None,
            over: false,
        }
    }

    pub(super) async fn next_event(&mut self) -> Option<Item> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                if item.is_ok() {
                    self.streamed = true;
                    self.first_event
                        .get_or_insert_with(|| self.started.elapsed());
                }
                return Some(item);
            }
            if self.over {
                return None;
            }
            match self.live.take() {
                None => self.start_attempt().await,
                Some((target, mut stream)) => {
                    match timeout_at(self.read_deadline(), stream.next()).await {
                        Ok(Some(Ok(event))) => {
                            self.live = Some((target, stream));
                            self.pending.push_back(Ok(event));
                        }
                        Ok(Some(Err(error))) => self.attempt_failed(target, error),
                        Ok(None) => self.served(target),
                        Err(_) if Instant::now() >= self.deadline => {
                            let error = self.timeout(
                                "the call did not finish",
                                self.shared.route.timeouts.total(),
                            );
                            self.attempt_failed(target, error);
                        }
                        Err(_) => {
                            let error = self.timeout(
                                "the stream stalled: no next event",
                                self.shared.route.timeouts.idle(),
                            );
                            self.attempt_failed(target, error);
                        }
                    }
                }
            }
        }
    }

    /// Starts attempts until one yields its first event (queued with the stream kept live) or
    /// the call has failed for good (its error queued).
    async fn start_attempt(&mut self) {
        while !self.over {
            let Some(target) = self.admitted_target() else {
                return self.give_up();
            };
            if !self.wait.is_zero() {
                if Instant::now() + self.wait >= self.deadline {
                    return self.give_up();
                }
                tokio::time::sleep(std::mem::take(&mut self.wait)).await;
            }
            self.attempts += 1;
            self.tries_here += 1;
            let spec = &self.shared.route.targets[target];
            let mut request = self.request.clone();
            request.model = spec.model.clone();
            let first_token = self.shared.route.timeouts.first_token();
            let first_deadline = self.deadline.min(Instant::now() + first_token);
            let client = self.shared.clients[target].clone();
            let opened = timeout_at(first_deadline, async {
                let mut stream = client.stream(request).await?;
                match stream.next().await {
                    Some(Ok(first)) => Ok((stream, first)),
                    Some(Err(error)) => Err(error),
                    None => Err(ModelError::new(
                        ModelErrorKind::Protocol,
                        client.provider(),
                        "the reply ended before any event",
                    )),
                }
            })
            .await;
            match opened {
                Ok(Ok((stream, first))) => {
                    if self.streamed {
                        self.pending.push_back(Ok(StreamEvent::Restart {
                            target: spec.label(),
                        }));
                    }
                    self.pending.push_back(Ok(first));
                    self.live = Some((target, stream));
                    return;
                }
                Ok(Err(error)) => self.attempt_failed(target, error),
                Err(_) => {
                    let error = self.timeout("no first token", first_token);
                    self.attempt_failed(target, error);
                }
            }
        }
    }

    /// The target for the next attempt: the current one while its retries last and its breaker
    /// admits, else the next one in the plan whose breaker admits.
    fn admitted_target(&mut self) -> Option<usize> {
        let attempts_per_target = self.shared.route.retry.attempts_per_target;
        while let Some(&target) = self.plan.get(self.position) {
            if self.tries_here < attempts_per_target && self.admit(target) {
                return Some(target);
            }
            self.position += 1;
            self.tries_here = 0;
            self.wait = Duration::ZERO;
        }
        None
    }

    fn admit(&mut self, target: usize) -> bool {
        if self.probing == Some(target) {
            return true;
        }
        let mut breaker = lock(&self.shared.breakers[target]);
        let was_healthy = breaker.is_healthy();
        let admitted = breaker.admit(Instant::now());
        if admitted && !was_healthy {
            self.probing = Some(target);
        }
        admitted
    }

    /// Books a failed attempt and decides what comes next: a retry here after a wait, the next
    /// target, or the end of the call.
    fn attempt_failed(&mut self, target: usize, error: ModelError) {
        let label = self.shared.route.targets[target].label();
        tracing::info!(route = %self.shared.route.name, target = %label, attempt = self.attempts, %error, "route attempt failed");
        if counts_against_target(error.kind) {
            lock(&self.shared.breakers[target]).failed(Instant::now());
            if self.probing == Some(target) {
                self.probing = None;
            }
        }
        let kind = error.kind;
        let retry_after = error.retry_after;
        self.last_error = Some(error);
        match kind {
            ModelErrorKind::BadRequest | ModelErrorKind::Cancelled => self.give_up(),
            // Other credentials (or a model with a larger context window) may work; the same
            // ones will not.
            ModelErrorKind::Auth | ModelErrorKind::ContextOverflow => self.next_target(),
            _ => {
                let dice = self.shared.dice.unit();
                match retry_wait(&self.shared.route.retry, self.tries_here, retry_after, dice) {
                    Some(wait) => self.wait = wait,
                    None => self.next_target(),
                }
            }
        }
    }

    fn next_target(&mut self) {
        self.position += 1;
        self.tries_here = 0;
        self.wait = Duration::ZERO;
    }

    fn served(&mut self, target: usize) {
        lock(&self.shared.breakers[target]).succeeded();
        self.probing = None;
        if let Some(key) = &self.request.params.affinity {
            self.shared.remember(key, target);
        }
        let spec = &self.shared.route.targets[target];
        let latency = self.started.elapsed();
        self.pending.push_back(Ok(StreamEvent::Served(Served {
            route: self.shared.route.name.clone(),
            target,
            provider: spec.provider.clone(),
            provider_kind: self.shared.clients[target].provider().to_string(),
            model: spec.model.clone(),
            attempts: self.attempts,
            first_event: self.first_event.unwrap_or(latency),
            latency,
        })));
        self.over = true;
    }

    /// Ends the call with the last attempt's error (its kind kept, so callers still know whether
    /// a later retry can help), said in terms of the route.
    fn give_up(&mut self) {
        let past_deadline = Instant::now() >= self.deadline;
        let error = final_error(
            &self.shared.route,
            self.attempts,
            self.last_error.take(),
            past_deadline,
        );
        self.pending.push_back(Err(error));
        self.over = true;
    }

    /// Until when the next event of a live stream may take: the idle limit, within the call's deadline.
    fn read_deadline(&self) -> Instant {
        self.deadline
            .min(Instant::now() + self.shared.route.timeouts.idle())
    }

    fn timeout(&self, what: &str, limit: Duration) -> ModelError {
        ModelError::new(
            ModelErrorKind::Timeout,
            "router",
            format!(
                "route `{}`: {what} within {limit:?}; raise the route's timeouts or check the target",
                self.shared.route.name
            ),
        )
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if let Some(target) = self.probing {
            lock(&self.shared.breakers[target]).probe_abandoned(Instant::now());
        }
    }
}

/// How a call through `route` fails for good: the last attempt's error (its kind kept, so callers
/// still know whether a later retry can help), said in terms of the route after several
/// attempts or the deadline; without any attempt, the breakers that refused them all.
pub(super) fn final_error(
    route: &Route,
    attempts: u32,
    last: Option<ModelError>,
    past_deadline: bool,
) -> ModelError {
    match last {
        Some(last) if attempts > 1 || past_deadline => ModelError {
            message: format!(
                "route `{}`: gave up after {attempts} attempt(s) on {} target(s); last error: {}",
                route.name,
                route.targets.len(),
                last.message
            ),
            ..last
        },
        Some(last) => last,
        None => ModelError::new(
            ModelErrorKind::Unavailable,
            "router",
            format!(
                "route `{}`: every target's circuit breaker is open after repeated failures; the next probe goes out after \
                 the cool-down ({} ms)",
                route.name, route.breaker.cooldown_ms
            ),
        ),
    }
}

/// Failures that say something about the target's health (not about the request or the caller).
pub(super) fn counts_against_target(kind: ModelErrorKind) -> bool {
    matches!(
        kind,
        ModelErrorKind::RateLimited
            | ModelErrorKind::Unavailable
            | ModelErrorKind::Timeout
            | ModelErrorKind::Protocol
            | ModelErrorKind::Auth
    )
}
