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
    /// The queue at the last stats tick (None: not read yet, or the database was unreachable).
    last_queue: std::sync::Mutex<Option<Queue>>,
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

    /// Keeps the queue a stats tick read, for the metrics endpoint.
    pub fn remember(&self, queue: Option<Queue>) {
        *self.last_queue.lock().unwrap_or_else(|e| e.into_inner()) = queue;
    }

    /// The counters and the last queue seen, in Prometheus text format (`--metrics-address`).
    pub fn exposition(&self) -> String {
        let queue = *self.last_queue.lock().unwrap_or_else(|e| e.into_inner());
        use sparktrends_service::prometheus::{Exposition, Kind};
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        let mut e = Exposition::new();
        for (name, help, value) in [
            (
                "sparktrends_alerter_sent_total",
                "Messages accepted by Slack (or printed in console mode).",
                get(&self.sent),
            ),
            (
                "sparktrends_alerter_folded_total",
                "Anomalies delivered inside another one's message.",
                get(&self.folded),
            ),
            (
                "sparktrends_alerter_retried_total",
                "Messages scheduled for another attempt.",
                get(&self.retried),
            ),
            (
                "sparktrends_alerter_rate_limited_total",
                "Messages Slack rate-limited (429).",
                get(&self.rate_limited),
            ),
            (
                "sparktrends_alerter_failed_total",
                "Anomalies given up on.",
                get(&self.failed),
            ),
            (
                "sparktrends_alerter_suppressed_total",
                "Anomalies settled by the cooldown without a message.",
                get(&self.suppressed),
            ),
        ] {
            e.single(name, Kind::Counter, help, value);
        }
        let (pending, oldest) = queue.map_or((f64::NAN, f64::NAN), |q| {
            (q.pending as f64, q.oldest_pending_s)
        });
        e.single(
            "sparktrends_alerter_pending",
            Kind::Gauge,
            "Anomalies waiting in the outbox (NaN: database unreachable).",
            pending,
        );
        e.single(
            "sparktrends_alerter_oldest_pending_seconds",
            Kind::Gauge,
            "Age of the oldest pending anomaly.",
            oldest,
        );
        e.finish()
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
    fn the_exposition_has_every_counter_and_the_queue() {
        let stats = Stats::default();
        Stats::add(&stats.sent, 3);
        stats.remember(Some(Queue {
            pending: 2,
            oldest_pending_s: 4.5,
        }));
        let text = stats.exposition();
        assert!(
            text.contains("sparktrends_alerter_sent_total 3\n"),
            "{text}"
        );
        assert!(text.contains("sparktrends_alerter_pending 2\n"), "{text}");
        assert!(
            text.contains("sparktrends_alerter_oldest_pending_seconds 4.5\n"),
            "{text}"
        );
        stats.remember(None);
        assert!(stats
            .exposition()
            .contains("sparktrends_alerter_pending NaN\n"));
    }

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
