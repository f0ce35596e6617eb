//! The one path from a source to the topics: admit (the contract's rules), give id-less trades their
//! derived id, serialise, key by symbol, send; refuse into the dead-letter topic with the reject code, the
//! reason and the original payload. Sources never touch the sink directly.
//!
//! Trades may travel as trade batches (contracts/messages.json `trade.batch`): a symbol's trades wait in a batch
//! until it holds `max_trades`, would pass the contract's max_batch_bytes, or its first trade has waited
//! `linger`; then the batch is one Kafka message. Spark's cost is per message, not per byte (docs/benchmarks.md,
//! issue 16). A batch of one trade is sent as the trade itself.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use sparktrends_contract::{limits, Reject};
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
    batching: TradeBatching,
    open_batches: Mutex<HashMap<BatchKey, OpenBatch>>,
}

/// How trades are grouped into trade batches. `max_trades` 1: every trade is a message of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TradeBatching {
    pub max_trades: usize,
    pub linger: Duration,
}

impl TradeBatching {
    pub const OFF: Self = Self {
        max_trades: 1,
        linger: Duration::ZERO,
    };

    /// At most the contract's max_batch_trades; at least 1.
    pub fn new(max_trades: usize, linger: Duration) -> Self {
        Self {
            max_trades: max_trades.clamp(1, limits::MAX_BATCH_TRADES as usize),
            linger,
        }
    }

    fn is_on(&self) -> bool {
        self.max_trades > 1
    }
}

/// A symbol's open batch, apart from trades with another Kafka header (a repair's cause).
type BatchKey = (String, Option<(&'static str, &'static str)>);

/// A batch's JSON so far (`[` and its trades, comma-separated), how many trades, since when it is open.
struct OpenBatch {
    json: Vec<u8>,
    trades: u64,
    opened: Instant,
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
            batching: TradeBatching::OFF,
            open_batches: Mutex::new(HashMap::new()),
        }
    }

    /// Trades as trade batches (see the module doc); off unless asked for.
    pub fn with_trade_batching(mut self, batching: TradeBatching) -> Self {
        self.batching = batching;
        self
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
        self.send_open_batches();
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
            return self.send_trade(trade, None);
        }
        let mut identified = trade.clone();
        identified.trade_id = Some(self.ids.lock().expect("derived ids lock").next(trade));
        self.send_trade(&identified, None)
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
        let header = (KafkaHeader::SparktrendsRepair.as_str(), cause.as_str());
        self.send_trade(trade, Some(header))
    }

    /// A trade into its symbol's open batch; a full batch goes out (with batching off, every trade fills one).
    fn send_trade(&self, trade: &Trade, header: Option<(&'static str, &'static str)>) -> bool {
        let json = match serde_json::to_vec(trade) {
            Ok(json) => json,
            Err(err) => {
                warn!("cannot serialise a trade: {err}");
                return false;
            }
        };
        let key = (trade.symbol.clone(), header);
        let mut open = self.open_batches.lock().expect("open batches lock");
        // A batch that this trade would push past the contract's byte limit goes first.
        if let Some(batch) = open.get(&key) {
            if (batch.json.len() + json.len() + 2) as i64 > limits::MAX_BATCH_BYTES {
                let batch = open.remove(&key).expect("present");
                self.send_batch(&key, batch);
            }
        }
        let batch = open.entry(key.clone()).or_insert_with(|| OpenBatch {
            json: Vec::with_capacity(json.len() * self.batching.max_trades + 2),
            trades: 0,
            opened: Instant::now(),
        });
        batch.json.push(if batch.trades == 0 { b'[' } else { b',' });
        batch.json.extend_from_slice(&json);
        batch.trades += 1;
        if batch.trades as usize >= self.batching.max_trades {
            let batch = open.remove(&key).expect("present");
            return self.send_batch(&key, batch);
        }
        true
    }

    /// Sends every open batch now (before a final flush).
    pub fn send_open_batches(&self) {
        self.send_batches(|_| true);
    }

    /// Sends the open batches that have waited their linger; the caller's clock tick (`run_linger`).
    pub fn send_lingering_batches(&self) {
        let linger = self.batching.linger;
        self.send_batches(|batch| batch.opened.elapsed() >= linger);
    }

    fn send_batches(&self, due: impl Fn(&OpenBatch) -> bool) {
        let mut open = self.open_batches.lock().expect("open batches lock");
        let keys: Vec<BatchKey> = open
            .iter()
            .filter(|(_, batch)| due(batch))
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            let batch = open.remove(&key).expect("present");
            self.send_batch(&key, batch);
        }
    }

    /// One batch as one message (its only trade as the trade itself). Called with the open batches locked, so a
    /// symbol's messages reach the sink in the order their trades came.
    fn send_batch(&self, (symbol, header): &BatchKey, mut batch: OpenBatch) -> bool {
        let payload = if batch.trades == 1 {
            batch.json.split_off(1)
        } else {
            batch.json.push(b']');
            batch.json
        };
        let sent = self.send_payload(&self.topics.trades, symbol, &payload, *header);
        if sent {
            let relaxed = std::sync::atomic::Ordering::Relaxed;
            self.stats.trades.fetch_add(batch.trades, relaxed);
            Stats::bump(&self.stats.trade_messages);
        }
        sent
    }

    /// Sends lingering batches every quarter linger until `shutdown`, then everything still open.
    pub async fn run_linger(self: Arc<Self>, shutdown: crate::shutdown::Shutdown) {
        if self.batching.is_on() {
            let tick = (self.batching.linger / 4).max(Duration::from_millis(1));
            while shutdown.sleep(tick).await {
                self.send_lingering_batches();
            }
        }
        self.send_open_batches();
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
        // The trades a repair sent are on the topic before the gap message that asks for their minutes' bars.
        self.send_open_batches();
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
        let sent = self.send_payload(topic, key, &payload, header);
        if sent {
            Stats::bump(counter);
        }
        sent
    }

    /// One record to the sink, its bytes counted; a refusal is logged.
    fn send_payload(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        header: Option<(&str, &str)>,
    ) -> bool {
        let sent = match header {
            Some(header) => self.sink.send_with_header(topic, key, payload, header),
            None => self.sink.send(topic, key, payload),
        };
        match sent {
            Ok(()) => {
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

    /// `memory_emitter` with trades batched by `max_trades` and `linger`.
    pub fn batching_emitter(
        symbols: &[&str],
        max_trades: usize,
        linger: Duration,
    ) -> (Arc<Emitter>, Arc<MemorySink>) {
        let (emitter, sink) = memory_emitter(symbols);
        let emitter = Arc::into_inner(emitter).expect("one owner");
        let batching = TradeBatching::new(max_trades, linger);
        (Arc::new(emitter.with_trade_batching(batching)), sink)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{batching_emitter, memory_emitter};
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

    fn numbered(symbol: &str, id: u32) -> Trade {
        let mut trade = Trade::new("x", symbol, now_ms(), 1.0 + f64::from(id), 1.0);
        trade.trade_id = Some(id.to_string());
        trade
    }

    /// Trade ids of each trades-topic message, by message: a batch's in order, a single trade's alone.
    fn ids_by_message(sink: &crate::sink::MemorySink) -> Vec<(String, Vec<String>)> {
        let id = |t: &serde_json::Value| t["trade_id"].as_str().unwrap().to_string();
        sink.on_topic("market.trades.v1")
            .iter()
            .map(|r| match r.payload.as_array() {
                Some(batch) => (r.key.clone(), batch.iter().map(id).collect()),
                None => (r.key.clone(), vec![id(&r.payload)]),
            })
            .collect()
    }

    #[test]
    fn a_symbols_trades_travel_as_batches_of_at_most_max_trades_in_order() {
        let (emitter, sink) = batching_emitter(&["A", "B"], 3, Duration::from_secs(3600));
        for id in 0..7 {
            assert!(emitter.trade(&numbered("A", id), None, TimeCheck::Live));
            if id % 2 == 0 {
                assert!(emitter.trade(&numbered("B", 100 + id), None, TimeCheck::Live));
            }
        }
        let full =
            |key: &str, ids: &[u32]| (key.to_string(), ids.iter().map(u32::to_string).collect());
        assert_eq!(
            ids_by_message(&sink),
            vec![
                full("A", &[0, 1, 2]),
                full("B", &[100, 102, 104]),
                full("A", &[3, 4, 5])
            ]
        );
        assert_eq!(emitter.stats().snapshot().trades, 9, "counted when sent");
        emitter.send_open_batches();
        let mut rest = ids_by_message(&sink).split_off(3);
        rest.sort();
        assert_eq!(rest, [full("A", &[6]), full("B", &[106])]);
        // A batch of one is the trade itself, as a message without batching is.
        let records = sink.on_topic("market.trades.v1");
        assert!(records[3..].iter().all(|r| r.payload.is_object()));
        assert_eq!(emitter.stats().snapshot().trades, 11);
    }

    #[test]
    fn a_batch_is_sent_when_its_first_trade_has_waited_the_linger() {
        let (emitter, sink) = batching_emitter(&["A"], 100, Duration::from_millis(30));
        emitter.trade(&numbered("A", 1), None, TimeCheck::Live);
        emitter.trade(&numbered("A", 2), None, TimeCheck::Live);
        emitter.send_lingering_batches();
        assert!(sink.on_topic("market.trades.v1").is_empty(), "not yet");
        std::thread::sleep(Duration::from_millis(40));
        emitter.send_lingering_batches();
        assert_eq!(
            ids_by_message(&sink),
            vec![("A".to_string(), vec!["1".to_string(), "2".to_string()])]
        );
    }

    #[test]
    fn repaired_trades_batch_apart_with_their_header_and_precede_their_gap() {
        let (emitter, sink) = batching_emitter(&["A"], 100, Duration::from_secs(3600));
        emitter.trade(&numbered("A", 5), None, TimeCheck::Live);
        for id in [3, 4] {
            assert!(emitter.repaired_trade(&numbered("A", id), GapCause::Reconnect));
        }
        let gap = Gap {
            source: "x".into(),
            symbol: "A".into(),
            cause: GapCause::Reconnect,
            outcome: GapOutcome::Repaired,
            from_ts_ms: 1,
            to_ts_ms: 2,
            first_missing_id: Some(3),
            last_missing_id: Some(4),
            repaired_trades: 2,
            detected_ms: 3,
        };
        assert!(emitter.gap(&gap));
        let records = sink.records();
        let trades: Vec<_> = records
            .iter()
            .filter(|r| r.topic == "market.trades.v1")
            .collect();
        assert_eq!(trades.len(), 2, "{trades:?}");
        let repaired = trades.iter().find(|r| r.header.is_some()).unwrap();
        assert_eq!(repaired.payload.as_array().map(Vec::len), Some(2));
        assert_eq!(
            repaired.header,
            Some(("sparktrends-repair".to_string(), "reconnect".to_string()))
        );
        assert_eq!(
            records.last().unwrap().topic,
            "market.gaps.v1",
            "the gap comes after its trades"
        );
    }

    #[test]
    fn a_batch_never_passes_the_contracts_byte_limit() {
        let (emitter, sink) = batching_emitter(&["A"], 1000, Duration::from_secs(3600));
        let mut wide = numbered("A", 0);
        wide.conditions = Some(vec!["c".repeat(400); 16]);
        let each = serde_json::to_vec(&wide).unwrap().len();
        let n = 2 * limits::MAX_BATCH_BYTES as usize / each;
        for id in 0..n as u32 {
            wide.trade_id = Some(id.to_string());
            assert!(emitter.trade(&wide, None, TimeCheck::Live));
        }
        emitter.send_open_batches();
        let messages = ids_by_message(&sink);
        assert!(messages.len() >= 2, "{} messages", messages.len());
        let ids: Vec<String> = messages.into_iter().flat_map(|(_, ids)| ids).collect();
        assert_eq!(ids, (0..n).map(|i| i.to_string()).collect::<Vec<_>>());
        for record in sink.on_topic("market.trades.v1") {
            let bytes = serde_json::to_vec(&record.payload).unwrap().len();
            assert!(bytes as i64 <= limits::MAX_BATCH_BYTES, "{bytes} bytes");
        }
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
