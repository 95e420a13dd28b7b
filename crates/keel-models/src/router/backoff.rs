//! How long to wait before retrying the same target: jittered exponential backoff, never less
//! than the provider's `Retry-After`. Also the router's small random source (weighted choice
//! and jitter), so the crate needs no RNG dependency for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::RetryPolicy;

/// The wait before retry number `retry` (1-based) on the same target, or `None` when the
/// provider asked for a longer wait than the policy accepts (move on to the next target).
/// `unit` is a random number in [0, 1) for the jitter. HTTP tools retry by it too.
pub fn retry_wait(
    policy: &RetryPolicy,
    retry: u32,
    retry_after: Option<Duration>,
    unit: f64,
) -> Option<Duration> {
    let exponent = retry.saturating_sub(1).min(20);
    let full = Duration::from_millis(policy.initial_backoff_ms.saturating_mul(1 << exponent))
        .min(Duration::from_millis(policy.max_backoff_ms));
    // "Equal jitter": between half and all of the backoff, so retries from many calls spread out.
    let jittered = full.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0));
    match retry_after {
        Some(asked) if asked > Duration::from_millis(policy.max_retry_after_ms) => None,
        Some(asked) => Some(jittered.max(asked)),
        None => Some(jittered),
    }
}

/// A shared SplitMix64 generator: statistically fine for spreading load, not for secrets.
#[derive(Debug)]
pub(super) struct Dice(AtomicU64);

impl Dice {
    pub(super) fn new() -> Dice {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9_7F4A_7C15);
        Dice(AtomicU64::new(seed))
    }

    /// A number in [0, 1).
    pub(super) fn unit(&self) -> f64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_and_honours_retry_after() {
        let policy = RetryPolicy {
            attempts_per_target: 5,
            initial_backoff_ms: 100,
            max_backoff_ms: 300,
            max_retry_after_ms: 2_000,
        };
        assert_eq!(
            retry_wait(&policy, 1, None, 1.0),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            retry_wait(&policy, 2, None, 0.0),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            retry_wait(&policy, 5, None, 1.0),
            Some(Duration::from_millis(300))
        );
        assert_eq!(
            retry_wait(&policy, 1, Some(Duration::from_secs(1)), 0.5),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            retry_wait(&policy, 1, Some(Duration::from_secs(3)), 0.5),
            None
        );
    }

    #[test]
    fn dice_stay_in_the_unit_interval() {
        let dice = Dice::new();
        let draws: Vec<f64> = (0..1000).map(|_| dice.unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(draws.iter().any(|u| *u < 0.5) && draws.iter().any(|u| *u >= 0.5));
    }
}
