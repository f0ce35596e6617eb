//! Delay before the next delivery attempt after a retryable failure (5xx, timeout, connection error).
//!
//! Exponential with "equal jitter": the ceiling doubles per attempt up to a cap; half of it is kept and the
//! other half drawn, so a delay never collapses to zero, and several alerters that failed together (Slack
//! outage) do not come back in lock-step.

use std::time::Duration;

/// Delay after the `attempt`-th failed attempt (1-based). `unit_draw` is a uniform draw from [0, 1]; passing
/// it in keeps the function pure and testable.
pub fn retry_delay(attempt: u32, base: Duration, max: Duration, unit_draw: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(30);
    let ceiling = base.saturating_mul(1u32 << doublings).min(max.max(base));
    let half = ceiling / 2;
    half + half.mul_f64(unit_draw.clamp(0.0, 1.0))
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
                Duration::from_millis(ceiling),
                "attempt {attempt}"
            );
            assert_eq!(
                retry_delay(attempt, BASE, MAX, 0.0),
                Duration::from_millis(ceiling / 2),
                "attempt {attempt}"
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
}
