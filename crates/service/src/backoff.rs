//! Delays before a retry: exponential with "equal jitter". The ceiling doubles per attempt up to a cap; half of it
//! is kept and the other half drawn, so a delay never collapses to zero, never exceeds the cap, and many clients
//! cut off together (a provider's restart, a Slack outage) do not come back in lock-step.

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Delay after the `attempt`-th failed attempt (1-based). `unit_draw` is a uniform draw from [0, 1]; passing it
/// in keeps the function pure and testable.
pub fn retry_delay(attempt: u32, base: Duration, max: Duration, unit_draw: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1u32 << doublings).min(max.max(base));
    let half = ceiling / 2;
    half + half.mul_f64(unit_draw.clamp(0.0, 1.0))
}

/// [`retry_delay`] with its own attempt count and random draws, for a reconnect loop.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: ChaCha8Rng,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self::with_seed(initial, max, rand::random())
    }

    pub fn with_seed(initial: Duration, max: Duration, seed: u64) -> Self {
        Self {
            initial,
            max: max.max(initial),
            attempt: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    pub fn next_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        let draw: f64 = self.rng.random();
        retry_delay(self.attempt, self.initial, self.max, draw)
    }

    /// After a connection that worked, the next failure starts from the initial delay again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failures since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(10);

    #[test]
    fn ceiling_doubles_per_attempt_then_caps() {
        let ceilings_ms = [500u64, 1000, 2000, 4000, 8000, 10_000, 10_000];
        for (i, ceiling) in ceilings_ms.into_iter().enumerate() {
            let attempt = i as u32 + 1;
            assert_eq!(
                retry_delay(attempt, BASE, MAX, 1.0),
                Duration::from_millis(ceiling)
            );
            assert_eq!(
                retry_delay(attempt, BASE, MAX, 0.0),
                Duration::from_millis(ceiling / 2)
            );
        }
    }

    #[test]
    fn jitter_stays_within_half_and_full_ceiling() {
        for draw in [0.0, 0.1, 0.5, 0.99, 1.0, -3.0, 7.0] {
            let delay = retry_delay(3, BASE, MAX, draw);
            assert!(
                delay >= Duration::from_millis(1000) && delay <= Duration::from_millis(2000),
                "{delay:?}"
            );
        }
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        assert_eq!(retry_delay(u32::MAX, BASE, MAX, 1.0), MAX);
        assert_eq!(retry_delay(0, BASE, MAX, 1.0), BASE);
    }

    #[test]
    fn a_backoff_grows_within_jitter_bounds_caps_and_resets() {
        let mut backoff = Backoff::with_seed(Duration::from_millis(100), Duration::from_secs(2), 7);
        for ceiling in [100u64, 200, 400, 800, 1600, 2000, 2000, 2000] {
            let delay = backoff.next_delay().as_millis() as u64;
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "delay {delay} for ceiling {ceiling}"
            );
        }
        assert_eq!(backoff.attempts(), 8);
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn jitter_differs_between_clients() {
        let draw = |seed| {
            let mut b = Backoff::with_seed(Duration::from_secs(1), Duration::from_secs(60), seed);
            (0..6).map(|_| b.next_delay()).collect::<Vec<_>>()
        };
        assert_ne!(draw(1), draw(2));
        assert_eq!(draw(3), draw(3));
    }
}
