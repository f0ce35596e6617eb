//! Counters for the periodic metrics line (`stats sent=… retried=… failed=… suppressed=… pending=…
//! oldest_pending_s=…`); counts are since the process started, queue figures come from the database.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Stats {
    /// Messages accepted by Slack (or printed in console mode).
    pub sent: AtomicU64,
    /// Rows delivered inside another row's message.
    pub folded: AtomicU64,
    /// Messages scheduled for another attempt (5xx, timeout, connection error).
    pub retried: AtomicU64,
    /// Messages Slack rate-limited (429).
    pub rate_limited: AtomicU64,
    /// Rows given up on (permanent 4xx, or out of attempts).
    pub failed: AtomicU64,
    /// Rows settled by the cooldown without a message.
    pub suppressed: AtomicU64,
}

/// The queue as the database sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Queue {
    pub pending: i64,
    pub oldest_pending_s: f64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The periodic line: counters, then the queue (unknown while the database is unreachable).
    pub fn line(&self, queue: Option<Queue>) -> String {
        let queue = match queue {
            Some(q) => format!(
                "pending={} oldest_pending_s={:.1}",
                q.pending, q.oldest_pending_s
            ),
            None => "pending=? oldest_pending_s=? (database unreachable)".to_string(),
        };
        format!("stats {} {queue}", self.counters())
    }

    pub fn counters(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "sent={} folded={} retried={} rate_limited={} failed={} suppressed={}",
            get(&self.sent),
            get(&self.folded),
            get(&self.retried),
            get(&self.rate_limited),
            get(&self.failed),
            get(&self.suppressed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_lists_every_counter_and_the_queue() {
        let stats = Stats::default();
        Stats::add(&stats.sent, 3);
        Stats::add(&stats.suppressed, 2);
        assert_eq!(
            stats.line(Some(Queue { pending: 4, oldest_pending_s: 1.26 })),
            "stats sent=3 folded=0 retried=0 rate_limited=0 failed=0 suppressed=2 pending=4 oldest_pending_s=1.3"
        );
        assert!(stats
            .line(None)
            .ends_with("pending=? oldest_pending_s=? (database unreachable)"));
    }
}
