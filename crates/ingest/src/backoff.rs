//! Reconnect delays: exponential with jitter, so many clients cut at once by a provider do not come back in
//! lock-step, and capped so a long outage is retried at a steady pace.

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

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

    /// "Equal jitter": half the exponential step is kept, the other half drawn, so a delay never collapses to
    /// zero and never exceeds the ceiling.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(30));
        let ceiling = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let jitter_ms = self.rng.random_range(0..=half.as_millis() as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// After a connection that worked, the next failure starts from the initial delay again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_bounds_and_caps() {
        let mut backoff = Backoff::with_seed(Duration::from_millis(100), Duration::from_secs(2), 7);
        let ceilings = [100u64, 200, 400, 800, 1600, 2000, 2000, 2000];
        for ceiling in ceilings {
            let delay = backoff.next_delay().as_millis() as u64;
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "delay {delay} for ceiling {ceiling}"
            );
        }
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff =
            Backoff::with_seed(Duration::from_millis(100), Duration::from_secs(10), 1);
        for _ in 0..5 {
            backoff.next_delay();
        }
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
