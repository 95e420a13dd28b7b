//! The circuit breaker kept per route target: after N consecutive failures it opens and refuses
//! calls for a cool-down, then lets a single probe through; the probe's outcome closes or
//! reopens it. Clock values are passed in, so the logic is plain and testable.

use std::time::Duration;

use tokio::time::Instant;

/// What a breaker currently does with calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls pass; this many consecutive failures so far.
    Closed { failures: u32 },
    /// Calls are refused until `until`.
    Open { until: Instant },
    /// One probe call is in flight; others are refused until it ends.
    HalfOpen,
}

#[derive(Debug)]
pub(super) struct Breaker {
    state: BreakerState,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    pub(super) fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            state: BreakerState::Closed { failures: 0 },
            threshold: threshold.max(1),
            cooldown,
        }
    }

    pub(super) fn state(&self) -> BreakerState {
        self.state
    }

    pub(super) fn is_healthy(&self) -> bool {
        matches!(self.state, BreakerState::Closed { .. })
    }

    /// Whether a call may go to this target now. An open breaker past its cool-down lets this
    /// call through as the probe (and refuses others until it ends).
    pub(super) fn admit(&mut self, now: Instant) -> bool {
        match self.state {
            BreakerState::Closed { .. } => true,
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen;
                true
            }
            BreakerState::Open { .. } | BreakerState::HalfOpen => false,
        }
    }

    pub(super) fn succeeded(&mut self) {
        self.state = BreakerState::Closed { failures: 0 };
    }

    pub(super) fn failed(&mut self, now: Instant) {
        self.state = match self.state {
            BreakerState::Closed { failures } if failures + 1 < self.threshold => {
                BreakerState::Closed {
                    failures: failures + 1,
                }
            }
            _ => BreakerState::Open {
                until: now + self.cooldown,
            },
        };
        if let BreakerState::Open { .. } = self.state {
            tracing::warn!(cooldown = ?self.cooldown, "route target failed repeatedly; its circuit breaker is open");
        }
    }

    /// A probe that ended with neither outcome (the caller dropped the call): let another one try.
    pub(super) fn probe_abandoned(&mut self, now: Instant) {
        if self.state == BreakerState::HalfOpen {
            self.state = BreakerState::Open { until: now };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_then_probes_once_and_closes_on_success() {
        let now = Instant::now();
        let mut breaker = Breaker::new(2, Duration::from_secs(10));
        breaker.failed(now);
        assert!(breaker.admit(now));
        breaker.failed(now);
        assert!(!breaker.admit(now + Duration::from_secs(9)));
        let later = now + Duration::from_secs(10);
        assert!(
            breaker.admit(later),
            "the first call after the cool-down is the probe"
        );
        assert!(!breaker.admit(later), "only one probe at a time");
        breaker.succeeded();
        assert_eq!(breaker.state(), BreakerState::Closed { failures: 0 });
    }

    #[test]
    fn a_failed_probe_reopens_and_an_abandoned_one_frees_the_slot() {
        let now = Instant::now();
        let mut breaker = Breaker::new(1, Duration::from_secs(5));
        breaker.failed(now);
        let later = now + Duration::from_secs(5);
        assert!(breaker.admit(later));
        breaker.failed(later);
        assert_eq!(
            breaker.state(),
            BreakerState::Open {
                until: later + Duration::from_secs(5)
            }
        );
        let again = later + Duration::from_secs(5);
        assert!(breaker.admit(again));
        breaker.probe_abandoned(again);
        assert!(breaker.admit(again));
    }
}
