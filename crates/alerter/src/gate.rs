//! The process-wide pause after a `429`: Slack rate-limits the webhook, not one message, so every worker
//! holds its next POST until the `Retry-After` has passed.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Default)]
pub struct RateGate {
    open_at: Mutex<Option<Instant>>,
}

impl RateGate {
    /// Close the gate for `wait` (a later deadline already set is kept).
    pub fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut open_at = self
            .open_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if open_at.is_none_or(|current| current < until) {
            *open_at = Some(until);
        }
    }

    /// How long until posting may resume; None when it may now.
    pub fn remaining(&self) -> Option<Duration> {
        let open_at = *self
            .open_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        open_at
            .and_then(|at| at.checked_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn stays_closed_for_the_longest_requested_wait() {
        let gate = RateGate::default();
        assert_eq!(gate.remaining(), None);
        gate.pause_for(Duration::from_secs(5));
        gate.pause_for(Duration::from_secs(2));
        assert_eq!(gate.remaining(), Some(Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(gate.remaining(), None);
    }
}
