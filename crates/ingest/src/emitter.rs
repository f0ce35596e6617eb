//! The one path from a source to the topics: admit (the contract's rules), give id-less trades their
//! derived id, serialise, key by symbol, send; refuse into the dead-letter topic with the reject code, the
//! reason and the original payload. Sources never touch the sink directly.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use sparktrends_contract::Reject;
use tracing::warn;

use crate::messages::{
    derived_trade_id, now_ms, Bar, Company, DeadLetter, Gap, GapCause, GapOutcome, KafkaHeader,
    RejectCode, Trade,
};
use crate::sink::Sink;
use crate::stats::Stats;
use crate::topics::Topics;
use crate::validation::{TimeCheck, Validator};

pub struct Emitter {
    sink: Arc<dyn Sink>,
    topics: Topics,
    validator: Validator,
    stats: Arc<Stats>,
    ids: Mutex<DerivedIds>,
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
            ids: Mutex::new(DerivedIds::default()),
        }
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Waits (off the async threads) until everything sent so far is acknowledged by Kafka; then state that
    /// covers those messages (a cursor, a backfill's progress) may be saved.
    pub async fn flush(&self, timeout: std::time::Duration) -> anyhow::Result<()> {
        let sink = self.sink.clone();
        tokio::task::spawn_blocking(move || sink.flush(timeout)).await?
    }

    /// Returns whether the trade was accepted. `raw` is the provider's payload for the dead letter; without it
    /// the canonical message itself is kept. A trade without a provider id gets its derived id here.
    pub fn trade(&self, trade: &Trade, raw: Option<&str>, time: TimeCheck) -> bool {
        if let Err(reject) = self.validator.check_trade(trade, now_ms(), time) {
            return self.refuse(&trade.source, &reject, raw, trade);
        }
        if trade.trade_id.is_some() {
            return self.send(
                &self.topics.trades,
                &trade.symbol,
                trade,
                &self.stats.trades,
            );
        }
        let mut identified = trade.clone();
        identified.trade_id = Some(self.ids.lock().expect("derived ids lock").next(trade));
        self.send(
            &self.topics.trades,
            &identified.symbol,
            &identified,
            &self.stats.trades,
        )
    }

    /// A trade fetched by a gap repair or a backfill: history on purpose (no past window), marked with the
    /// contract's repair header so the bars job's late-trade count leaves it out (it is late by design). It
    /// keeps the exchange's id, so a copy also received live is dropped as a duplicate.
    pub fn repaired_trade(&self, trade: &Trade, cause: GapCause) -> bool {
        if let Err(reject) = self
            .validator
            .check_trade(trade, now_ms(), TimeCheck::Exempt)
        {
            return self.refuse(&trade.source, &reject, None, trade);
        }
        self.send_marked(
            &self.topics.trades,
            &trade.symbol,
            trade,
            &self.stats.trades,
            Some((KafkaHeader::SparktrendsRepair.as_str(), cause.as_str())),
        )
    }

    pub fn bar(&self, bar: &Bar, raw: Option<&str>, time: TimeCheck) -> bool {
        match self.validator.check_bar(bar, now_ms(), time) {
            Ok(()) => self.send(&self.topics.bars, &bar.symbol, bar, &self.stats.bars),
            Err(reject) => self.refuse(&bar.source, &reject, raw, bar),
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
            Err(reject) => self.refuse(&company.source, &reject, raw, company),
        }
    }

    /// A gap in a feed and what its repair did: onto the gaps topic, keyed by symbol, counted in the rate line.
    pub fn gap(&self, gap: &Gap) -> bool {
        // A trades backfill asks for its minutes' bars through a gap message, but lost nothing.
        if gap.outcome != GapOutcome::Empty && gap.cause != GapCause::Backfill {
            Stats::bump(&self.stats.gaps);
        }
        self.stats.repaired_trades.fetch_add(
            gap.repaired_trades.max(0) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.send(&self.topics.gaps, &gap.symbol, gap, &self.stats.gap_records)
    }

    /// A payload that never became a message: a malformed frame, a provider error, a failed request.
    pub fn dead_letter(&self, source: &str, code: RejectCode, detail: &str, raw: &str) {
        self.letter(source, &Reject::new(code, detail), raw);
    }

    fn letter(&self, source: &str, reject: &Reject, raw: &str) {
        let letter = DeadLetter {
            source: source.to_string(),
            reason_code: reject.code,
            reason: reject.reason(),
            raw: sparktrends_contract::admission::printable_payload(raw.as_bytes()),
            received_ms: now_ms(),
        };
        warn!(
            source,
            code = reject.code.as_str(),
            "dead-lettered ({}): {}",
            reject.reason(),
            preview(raw)
        );
        self.stats.count_reject(reject.code);
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
        reject: &Reject,
        raw: Option<&str>,
        message: &T,
    ) -> bool {
        match raw {
            Some(raw) => self.letter(source, reject, raw),
            None => {
                let canonical = serde_json::to_string(message).unwrap_or_default();
                self.letter(source, reject, &canonical);
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
        self.send_marked(topic, key, message, counter, None)
    }

    fn send_marked<T: Serialize>(
        &self,
        topic: &str,
        key: &str,
        message: &T,
        counter: &std::sync::atomic::AtomicU64,
        header: Option<(&str, &str)>,
    ) -> bool {
        let payload = match serde_json::to_vec(message) {
            Ok(payload) => payload,
            Err(err) => {
                // Only non-finite floats fail here, and admission refuses those first.
                warn!("cannot serialise a message for {topic}: {err}");
                return false;
            }
        };
        let sent = match header {
            Some(header) => self.sink.send_with_header(topic, key, &payload, header),
            None => self.sink.send(topic, key, &payload),
        };
        match sent {
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

/// How many prints of a symbol carried each (event time, price, size) so far, for derived ids. Bounded: the
/// oldest entries go first, and a count forgotten after `CAPACITY` later prints can only matter for twins
/// that far apart, which cannot share a millisecond.
#[derive(Default)]
struct DerivedIds {
    seen: HashMap<(String, i64, u64, u64), u32>,
    order: VecDeque<(String, i64, u64, u64)>,
}

impl DerivedIds {
    const CAPACITY: usize = 200_000;

    fn next(&mut self, trade: &Trade) -> String {
        let key = (
            trade.symbol.clone(),
            trade.ts_ms,
            trade.price.to_bits(),
            trade.size.to_bits(),
        );
        let occurrence = match self.seen.get_mut(&key) {
            Some(count) => {
                *count += 1;
                *count
            }
            None => {
                if self.order.len() == Self::CAPACITY {
                    if let Some(oldest) = self.order.pop_front() {
                        self.seen.remove(&oldest);
                    }
                }
                self.seen.insert(key.clone(), 0);
                self.order.push_back(key);
                0
            }
        };
        derived_trade_id(trade.ts_ms, trade.price, trade.size, occurrence)
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
        let validator = Validator::new(Some(known), 86_400_000);
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
        let mut trade = Trade::new("x", "AAPL", now_ms(), 1.5, 2.0);
        trade.trade_id = Some("7".into());
        assert!(emitter.trade(&trade, Some("raw"), TimeCheck::Live));
        let records = sink.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].topic, "market.trades.v1");
        assert_eq!(records[0].key, "AAPL");
        assert_eq!(records[0].payload["price"], 1.5);
        assert_eq!(records[0].payload["trade_id"], "7");
    }

    #[test]
    fn trades_without_ids_get_derived_ids_that_keep_twins_apart() {
        let (emitter, sink) = memory_emitter(&["AAPL"]);
        let ts = now_ms();
        let print = Trade::new("finnhub", "AAPL", ts, 189.5, 100.0);
        for _ in 0..2 {
            assert!(emitter.trade(&print, None, TimeCheck::Live));
        }
        let other = Trade::new("finnhub", "AAPL", ts, 189.5, 200.0);
        assert!(emitter.trade(&other, None, TimeCheck::Live));
        let ids: Vec<String> = sink
            .on_topic("market.trades.v1")
            .iter()
            .map(|r| r.payload["trade_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            ids,
            [
                format!("~{ts}:189.5:100:0"),
                format!("~{ts}:189.5:100:1"),
                format!("~{ts}:189.5:200:0")
            ]
        );
    }

    #[test]
    fn a_repaired_trade_is_history_and_carries_the_repair_header() {
        let (emitter, sink) = memory_emitter(&["BTCUSDT"]);
        let mut trade = Trade::new("binance", "BTCUSDT", now_ms() - 3 * 86_400_000, 10.0, 1.0);
        trade.trade_id = Some("42".into());
        assert!(
            emitter.repaired_trade(&trade, GapCause::Reconnect),
            "older than the live window: still history"
        );
        let sent = sink.on_topic("market.trades.v1");
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0].header,
            Some(("sparktrends-repair".to_string(), "reconnect".to_string()))
        );
        assert!(
            !emitter.trade(&trade, None, TimeCheck::Live),
            "a live trade that old is refused"
        );
    }

    #[test]
    fn refused_trade_is_dead_lettered_with_code_reason_and_raw_payload() {
        let (emitter, sink) = memory_emitter(&["AAPL"]);
        let trade = Trade::new("x", "AAPL", now_ms(), -1.0, 2.0);
        assert!(!emitter.trade(&trade, Some("{\"p\":-1}"), TimeCheck::Live));
        let letters = sink.on_topic("market.deadletter.v1");
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].payload["raw"], "{\"p\":-1}");
        assert_eq!(letters[0].payload["reason_code"], "price_not_positive");
        assert!(letters[0].payload["reason"]
            .as_str()
            .unwrap()
            .contains("price = -1"));
        assert_eq!(emitter.stats().snapshot().dead_letters, 1);
        assert_eq!(emitter.stats().snapshot().trades, 0);
        assert_eq!(
            emitter.stats().rejects_by_code(),
            vec![(RejectCode::PriceNotPositive, 1)]
        );
    }

    #[test]
    fn a_nul_in_a_payload_is_kept_escaped() {
        let (emitter, sink) = memory_emitter(&["AAPL"]);
        emitter.dead_letter("x", RejectCode::ProviderMalformed, "", "a\0b");
        let letters = sink.on_topic("market.deadletter.v1");
        assert_eq!(letters[0].payload["raw"], "a\\u0000b");
    }

    #[test]
    fn preview_cuts_on_a_char_boundary() {
        let long = "é".repeat(300);
        assert!(preview(&long).ends_with('…'));
    }
}
