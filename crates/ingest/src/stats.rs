//! Counters shared by the sources and the producer, and the periodic rate line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::info;

use crate::messages::RejectCode;
use crate::shutdown::Shutdown;

#[derive(Default, Debug)]
pub struct Stats {
    /// Trades sent; `trade_messages` the trades-topic messages that held them (a trade batch is one).
    pub trades: AtomicU64,
    pub trade_messages: AtomicU64,
    pub bars: AtomicU64,
    pub companies: AtomicU64,
    pub dead_letters: AtomicU64,
    pub reconnects: AtomicU64,
    /// Gaps in a feed (skipped trade ids, reconnects that missed trades) and the trades their repair sent.
    pub gaps: AtomicU64,
    pub repaired_trades: AtomicU64,
    /// Messages on the gaps topic (a reconnect that missed nothing is recorded too, but is no gap).
    pub gap_records: AtomicU64,
    /// Acknowledged by the broker (all in-sync replicas).
    pub delivered: AtomicU64,
    pub delivery_failures: AtomicU64,
    /// Serialised value bytes handed to the producer (throughput in MB/s).
    pub payload_bytes: AtomicU64,
    /// Dead letters by reject code, in the contract's code order.
    rejects: [AtomicU64; RejectCode::ALL.len()],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub trades: u64,
    pub trade_messages: u64,
    pub bars: u64,
    pub companies: u64,
    pub dead_letters: u64,
    pub reconnects: u64,
    pub gaps: u64,
    pub repaired_trades: u64,
    pub gap_records: u64,
    pub delivered: u64,
    pub delivery_failures: u64,
    pub payload_bytes: u64,
}

impl Snapshot {
    /// Every message handed to the producer: accepted messages and dead letters.
    pub fn produced(&self) -> u64 {
        self.trade_messages + self.bars + self.companies + self.dead_letters + self.gap_records
    }
}

impl Stats {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_reject(&self, code: RejectCode) {
        Self::bump(&self.rejects[code as usize]);
    }

    /// Non-zero dead-letter counts by code.
    pub fn rejects_by_code(&self) -> Vec<(RejectCode, u64)> {
        RejectCode::ALL
            .iter()
            .map(|&code| (code, self.rejects[code as usize].load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    pub fn snapshot(&self) -> Snapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            trades: load(&self.trades),
            trade_messages: load(&self.trade_messages),
            bars: load(&self.bars),
            companies: load(&self.companies),
            dead_letters: load(&self.dead_letters),
            reconnects: load(&self.reconnects),
            gaps: load(&self.gaps),
            repaired_trades: load(&self.repaired_trades),
            gap_records: load(&self.gap_records),
            delivered: load(&self.delivered),
            delivery_failures: load(&self.delivery_failures),
            payload_bytes: load(&self.payload_bytes),
        }
    }
}

/// One line per interval; silent while nothing moves so an idle feed does not flood the log.
pub fn rate_line(previous: &Snapshot, current: &Snapshot, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64().max(1e-9);
    let rate = (current.produced() - previous.produced()) as f64 / seconds;
    format!(
        "rate {rate:.0} msg/s; totals: trades {} (in {} messages) bars {} companies {} dead letters {} \
         reconnects {} gaps {} repaired trades {} delivered {} delivery failures {}",
        current.trades,
        current.trade_messages,
        current.bars,
        current.companies,
        current.dead_letters,
        current.reconnects,
        current.gaps,
        current.repaired_trades,
        current.delivered,
        current.delivery_failures
    )
}

/// The counters in Prometheus text format, for `--metrics-address`. Message kinds are the contract's message
/// names; reject codes its codes.
pub fn exposition(stats: &Stats) -> String {
    use sparktrends_service::prometheus::{Exposition, Kind};
    let s = stats.snapshot();
    let mut e = Exposition::new();
    let messages = "sparktrends_ingest_messages_total";
    e.family(
        messages,
        Kind::Counter,
        "Messages handed to Kafka, by contract message kind.",
    );
    for (kind, n) in [
        ("trade", s.trade_messages),
        ("bar", s.bars),
        ("company", s.companies),
        ("dead_letter", s.dead_letters),
        ("gap", s.gap_records),
    ] {
        e.sample(messages, &[("kind", kind)], n as f64);
    }
    let rejects = "sparktrends_ingest_rejects_total";
    e.family(
        rejects,
        Kind::Counter,
        "Dead letters by contract reject code.",
    );
    for (code, n) in stats.rejects_by_code() {
        e.sample(rejects, &[("code", code.as_str())], n as f64);
    }
    for (name, help, value) in [
        (
            "sparktrends_ingest_trades_total",
            "Trades handed to Kafka (a trade batch message holds many).",
            s.trades,
        ),
        (
            "sparktrends_ingest_reconnects_total",
            "Feed reconnects.",
            s.reconnects,
        ),
        (
            "sparktrends_ingest_gaps_total",
            "Gaps found in feeds.",
            s.gaps,
        ),
        (
            "sparktrends_ingest_repaired_trades_total",
            "Trades a gap repair sent.",
            s.repaired_trades,
        ),
        (
            "sparktrends_ingest_delivered_total",
            "Messages the broker acknowledged.",
            s.delivered,
        ),
        (
            "sparktrends_ingest_delivery_failures_total",
            "Messages the producer failed to deliver.",
            s.delivery_failures,
        ),
        (
            "sparktrends_ingest_payload_bytes_total",
            "Serialised bytes handed to the producer.",
            s.payload_bytes,
        ),
    ] {
        e.single(name, Kind::Counter, help, value as f64);
    }
    e.finish()
}

pub async fn report_rates(stats: Arc<Stats>, interval: Duration, shutdown: Shutdown) {
    let mut previous = stats.snapshot();
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait() => return,
        }
        let current = stats.snapshot();
        if current != previous {
            let mut line = rate_line(&previous, &current, last.elapsed());
            let by_code = stats.rejects_by_code();
            if !by_code.is_empty() {
                let codes: Vec<String> = by_code.iter().map(|(c, n)| format!("{c}={n}")).collect();
                line.push_str(&format!(" ({})", codes.join(" ")));
            }
            info!("{line}");
        }
        previous = current;
        last = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_counts_by_contract_kind_and_code() {
        let stats = Stats::default();
        stats.trades.fetch_add(5, Ordering::Relaxed);
        Stats::bump(&stats.trade_messages);
        Stats::bump(&stats.trade_messages);
        stats.count_reject(RejectCode::MalformedJson);
        let text = exposition(&stats);
        assert!(
            text.contains("sparktrends_ingest_messages_total{kind=\"trade\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("sparktrends_ingest_trades_total 5\n"),
            "{text}"
        );
        assert!(
            text.contains("sparktrends_ingest_rejects_total{code=\"malformed_json\"} 1\n"),
            "{text}"
        );
        for kind in ["trade", "bar", "company", "dead_letter", "gap"] {
            sparktrends_contract::spec::message(kind); // a contract message name, or this panics
        }
    }

    #[test]
    fn rate_counts_everything_produced_per_second() {
        let before = Snapshot {
            trades: 1000,
            trade_messages: 10,
            ..Default::default()
        };
        let after = Snapshot {
            trades: 5000,
            trade_messages: 30,
            bars: 5,
            dead_letters: 5,
            ..Default::default()
        };
        let line = rate_line(&before, &after, Duration::from_secs(2));
        assert!(line.starts_with("rate 15 msg/s"), "{line}");
        assert!(line.contains("dead letters 5"), "{line}");
        assert!(line.contains("trades 5000 (in 30 messages)"), "{line}");
    }
}
