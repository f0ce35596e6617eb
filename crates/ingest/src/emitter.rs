//! The one path from a source to the topics: validate, serialise, key by symbol, send; refuse into the
//! dead-letter topic with the reason and the original payload. Sources never touch the sink directly.

use std::sync::Arc;

use serde::Serialize;
use tracing::warn;

use crate::messages::{now_ms, Bar, Company, DeadLetter, Trade};
use crate::sink::Sink;
use crate::stats::Stats;
use crate::topics::Topics;
use crate::validation::{TimeCheck, Validator};

pub struct Emitter {
    sink: Arc<dyn Sink>,
    topics: Topics,
    validator: Validator,
    stats: Arc<Stats>,
}

impl Emitter {
    pub fn new(
        sink: Arc<dyn Sink>,
        topics: Topics,
        validator: Validator,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            sink,
            topics,
            validator,
            stats,
        }
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Returns whether the trade was accepted. `raw` is the provider's payload for the dead letter; without it
    /// the canonical message itself is kept.
    pub fn trade(&self, trade: &Trade, raw: Option<&str>, time: TimeCheck) -> bool {
        match self.validator.check_trade(trade, now_ms(), time) {
            Ok(()) => self.send(
                &self.topics.trades,
                &trade.symbol,
                trade,
                &self.stats.trades,
            ),
            Err(reason) => self.refuse(&trade.source, &reason, raw, trade),
        }
    }

    pub fn bar(&self, bar: &Bar, raw: Option<&str>, time: TimeCheck) -> bool {
        match self.validator.check_bar(bar, now_ms(), time) {
            Ok(()) => self.send(&self.topics.bars, &bar.symbol, bar, &self.stats.bars),
            Err(reason) => self.refuse(&bar.source, &reason, raw, bar),
        }
    }

    pub fn company(&self, company: &Company, raw: Option<&str>) -> bool {
        match self.validator.check_company(company) {
            Ok(()) => self.send(
                &self.topics.companies,
                &company.symbol,
                company,
                &self.stats.companies,
            ),
            Err(reason) => self.refuse(&company.source, &reason, raw, company),
        }
    }

    /// A payload that never became a message: malformed frame, provider error, failed subscription.
    pub fn dead_letter(&self, source: &str, reason: &str, raw: &str) {
        let letter = DeadLetter {
            source: source.to_string(),
            reason: reason.to_string(),
            raw: raw.to_string(),
            received_ms: now_ms(),
        };
        warn!(source, reason, "dead-lettered: {}", preview(raw));
        // Keyed by source: a malformed frame may have no symbol at all.
        self.send(
            &self.topics.deadletter,
            source,
            &letter,
            &self.stats.dead_letters,
        );
    }

    fn refuse<T: Serialize>(
        &self,
        source: &str,
        reason: &str,
        raw: Option<&str>,
        message: &T,
    ) -> bool {
        match raw {
            Some(raw) => self.dead_letter(source, reason, raw),
            None => {
                let canonical = serde_json::to_string(message).unwrap_or_default();
                self.dead_letter(source, reason, &canonical);
            }
        }
        false
    }

    fn send<T: Serialize>(
        &self,
        topic: &str,
        key: &str,
        message: &T,
        counter: &std::sync::atomic::AtomicU64,
    ) -> bool {
        let payload = match serde_json::to_vec(message) {
            Ok(payload) => payload,
            Err(err) => {
                // Only non-finite floats fail here, and validation refuses those first.
                warn!("cannot serialise a message for {topic}: {err}");
                return false;
            }
        };
        match self.sink.send(topic, key, &payload) {
            Ok(()) => {
                Stats::bump(counter);
                self.stats
                    .payload_bytes
                    .fetch_add(payload.len() as u64, std::sync::atomic::Ordering::Relaxed);
                true
            }
            Err(err) => {
                warn!("producer refused a message for {topic}: {err:#}");
                false
            }
        }
    }
}

/// First characters of a payload for a log line (raw payloads can be large).
fn preview(raw: &str) -> String {
    const LIMIT: usize = 200;
    if raw.len() <= LIMIT {
        raw.to_string()
    } else {
        let cut = (0..=LIMIT)
            .rev()
            .find(|&i| raw.is_char_boundary(i))
            .unwrap_or(0);
        format!("{}…", &raw[..cut])
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::sink::MemorySink;

    /// An emitter over an in-memory sink that knows `symbols` and accepts a one-day window.
    pub fn memory_emitter(symbols: &[&str]) -> (Arc<Emitter>, Arc<MemorySink>) {
        let sink = Arc::new(MemorySink::default());
        let known = symbols.iter().map(|s| s.to_string()).collect();
        let validator = Validator::new(Some(known), 86_400_000, 300_000);
        let emitter = Emitter::new(
            sink.clone(),
            crate::topics::contract_defaults(),
            validator,
            Arc::default(),
        );
        (Arc::new(emitter), sink)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::memory_emitter;
    use super::*;

    #[test]
    fn accepted_trade_goes_to_trades_keyed_by_symbol() {
        let (emitter, sink) = memory_emitter(&["AAPL"]);
        let trade = Trade {
            source: "x".into(),
            symbol: "AAPL".into(),
            ts_ms: now_ms(),
            price: 1.5,
            size: 2.0,
            trade_id: None,
        };
        assert!(emitter.trade(&trade, Some("raw"), TimeCheck::Live));
        let records = sink.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].topic, "market.trades.v1");
        assert_eq!(records[0].key, "AAPL");
        assert_eq!(records[0].payload["price"], 1.5);
    }

    #[test]
    fn refused_trade_is_dead_lettered_with_reason_and_raw_payload() {
        let (emitter, sink) = memory_emitter(&["AAPL"]);
        let trade = Trade {
            source: "x".into(),
            symbol: "AAPL".into(),
            ts_ms: now_ms(),
            price: -1.0,
            size: 2.0,
            trade_id: None,
        };
        assert!(!emitter.trade(&trade, Some("{\"p\":-1}"), TimeCheck::Live));
        let letters = sink.on_topic("market.deadletter.v1");
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].payload["raw"], "{\"p\":-1}");
        assert!(letters[0].payload["reason"]
            .as_str()
            .unwrap()
            .contains("non-positive price"));
        assert_eq!(emitter.stats().snapshot().dead_letters, 1);
        assert_eq!(emitter.stats().snapshot().trades, 0);
    }

    #[test]
    fn preview_cuts_on_a_char_boundary() {
        let long = "é".repeat(300);
        assert!(preview(&long).ends_with('…'));
    }
}
