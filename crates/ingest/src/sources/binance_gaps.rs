//! Gaps in a Binance feed, and their repair from the REST API.
//!
//! Binance numbers each symbol's trades consecutively, so the feed itself says when trades went missing:
//! - a trade id that jumps ahead of the last one plus one while connected (`trade_id_jump`);
//! - after a reconnect, the first trade of each symbol against the last one before it (`reconnect`). A
//!   reconnect that missed nothing is recorded too, as an `empty` gap.
//!
//! [`GapTracker`] is the per-connection bookkeeping (every symbol lives on one connection). What it finds goes
//! to [`run_repairs`], one task per process: it fetches the missing trades with `historicalTrades` from the
//! first missing id, and after a reconnect the closed klines of the minutes the socket was down, through the
//! process's shared request-weight budget (429 and 418 waits included, [`BinanceRest`]), sends them through the
//! emitter like live data (same trade ids, so the bars job's deduplication counts a trade once however often it
//! arrives), waits until Kafka has them, and then puts one `gap` message on the gaps topic. The bars job reads
//! it, records it, and rebuilds the bars of the gap's minutes from every trade the topic holds
//! (spark_jobs/gap_repair.py): its lateness rule would drop the repaired trades otherwise.
//!
//! A restart is a reconnect too. [`FeedMemory`] (each symbol's last trade sent, and the gaps whose repair has not
//! finished) is saved in the state directory every few seconds, only once Kafka acknowledged what it covers
//! ([`keep_memory`]); the next run starts its trackers from it, so the trades missed while ingest was down are
//! found and repaired like any other gap.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::emitter::Emitter;
use crate::messages::{minute_floor, now_ms, Gap, GapCause, GapOutcome, MINUTE_MS};
use crate::shutdown::Shutdown;
use crate::sources::binance::SOURCE;
use crate::sources::binance_rest::{BinanceRest, RestError, MAX_LIMIT};
use crate::state::StateFile;
use crate::validation::TimeCheck;

/// The state file of a Binance feed, in the state directory.
pub const FEED_STATE_FILE: &str = "binance-feed.json";
/// How often the feed's memory is saved: what a kill -9 can make the next run re-detect is this much of trades.
pub const SAVE_EVERY: Duration = Duration::from_secs(5);
/// A gap of more trades than this is not fetched trade by trade (25 weight per 1,000: a million trades cost 25,000
/// weight, over 8 minutes of the default budget); it is recorded as unrepairable, and `backfill binance` loads its
/// klines.
pub const MAX_REPAIR_TRADES: i64 = 1_000_000;

/// Trades a symbol's feed skipped, found by [`GapTracker`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MissedTrades {
    pub symbol: String,
    pub cause: GapCause,
    /// Event time of the last trade before the gap and of the first one after it.
    pub from_ts_ms: i64,
    pub to_ts_ms: i64,
    /// Inclusive range of the ids the feed skipped; None for a reconnect that missed nothing.
    pub missing_ids: Option<(i64, i64)>,
    /// After a reconnect with klines subscribed: the first minute whose closed kline the socket may have missed
    /// (the minute after the last closed kline it delivered). Klines up to the first trade's minute are fetched.
    pub klines_from_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LastTrade {
    pub id: i64,
    pub ts_ms: i64,
}

/// What a restarted feed needs of the run before it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedMemory {
    pub last_trades: BTreeMap<String, LastTrade>,
    /// Gaps found whose repair has not sent its gap message yet.
    pub pending: Vec<MissedTrades>,
}

/// The feed's memory, shared by its connections' trackers and the repair task.
#[derive(Debug, Clone, Default)]
pub struct SharedMemory(Arc<Mutex<FeedMemory>>);

impl SharedMemory {
    pub fn new(memory: FeedMemory) -> Self {
        Self(Arc::new(Mutex::new(memory)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FeedMemory> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn snapshot(&self) -> FeedMemory {
        self.lock().clone()
    }

    fn saw(&self, symbol: &str, trade: LastTrade) {
        self.lock().last_trades.insert(symbol.to_string(), trade);
    }

    fn last_of(&self, symbol: &str) -> Option<LastTrade> {
        self.lock().last_trades.get(symbol).copied()
    }

    fn queued(&self, missed: &MissedTrades) {
        self.lock().pending.push(missed.clone());
    }

    fn repaired(&self, missed: &MissedTrades) {
        let mut memory = self.lock();
        if let Some(index) = memory.pending.iter().position(|p| p == missed) {
            memory.pending.remove(index);
        }
    }
}

/// Where a connection hands its gaps to the repair task; the gap is remembered until its repair is done.
#[derive(Debug, Clone)]
pub struct GapSender {
    channel: mpsc::UnboundedSender<MissedTrades>,
    memory: SharedMemory,
}

impl GapSender {
    pub fn send(&self, missed: MissedTrades) {
        self.memory.queued(&missed);
        // The receiver lives as long as the connections; a send fails only at shutdown, and the memory keeps it.
        let _ = self.channel.send(missed);
    }
}

/// The repair task's inbox and the senders' handle to it.
pub fn gap_channel(memory: SharedMemory) -> (GapSender, mpsc::UnboundedReceiver<MissedTrades>) {
    let (channel, receiver) = mpsc::unbounded_channel();
    (GapSender { channel, memory }, receiver)
}

/// One connection's view of its symbols' trade-id continuity.
#[derive(Debug, Default)]
pub struct GapTracker {
    last: HashMap<String, LastTrade>,
    /// Symbols whose first trade since the last (re)connect has not arrived yet.
    reconnected: HashSet<String>,
    last_closed_kline: HashMap<String, i64>,
    /// The first trade of a symbol this run knew nothing earlier of, until the first closed kline has been
    /// compared with it.
    first_seen: HashMap<String, LastTrade>,
    klines: bool,
    memory: Option<SharedMemory>,
}

impl GapTracker {
    /// `klines`: whether the connection subscribes to klines, so a reconnect also missed closed klines.
    pub fn new(klines: bool) -> Self {
        Self {
            klines,
            ..Self::default()
        }
    }

    /// A tracker that starts from the last run's trades of `symbols` (its first trade of each shows what the
    /// restart cost) and keeps `memory` up to date.
    pub fn remembering(klines: bool, memory: SharedMemory, symbols: &[String]) -> Self {
        let mut tracker = Self::new(klines);
        for symbol in symbols {
            if let Some(last) = memory.last_of(symbol) {
                tracker.last.insert(symbol.clone(), last);
            }
        }
        tracker.memory = Some(memory);
        tracker
    }

    fn record(&mut self, symbol: &str, trade: LastTrade) {
        self.last.insert(symbol.to_string(), trade);
        if let Some(memory) = &self.memory {
            memory.saw(symbol, trade);
        }
    }

    /// A (re)connect: every symbol seen before must show, with its next trade, what the outage cost.
    pub fn on_connected(&mut self) {
        self.reconnected = self.last.keys().cloned().collect();
    }

    /// A closed kline; returns the gap it reveals: trades of its minute (its first trade id `first_id`) from before
    /// the first trade this run received, when nothing earlier was known of the symbol (a start without saved
    /// state). Later minutes need no such check: trade-id continuity covers them.
    pub fn on_closed_kline(
        &mut self,
        symbol: &str,
        open_ms: i64,
        first_id: Option<i64>,
    ) -> Option<MissedTrades> {
        let last = self
            .last_closed_kline
            .entry(symbol.to_string())
            .or_insert(open_ms);
        *last = (*last).max(open_ms);
        // A minute without trades says nothing: wait for one that has some.
        let kline_first = first_id?;
        let first_seen = self.first_seen.remove(symbol)?;
        if kline_first >= first_seen.id {
            return None;
        }
        Some(MissedTrades {
            symbol: symbol.to_string(),
            cause: GapCause::KlineDisagreement,
            from_ts_ms: open_ms,
            to_ts_ms: first_seen.ts_ms,
            missing_ids: Some((kline_first, first_seen.id - 1)),
            klines_from_ms: None,
        })
    }

    /// A live trade; returns the gap it reveals, if any. A repeated or older id (a re-delivered frame) is no gap
    /// and does not move the bookkeeping back.
    pub fn on_trade(&mut self, symbol: &str, id: i64, ts_ms: i64) -> Option<MissedTrades> {
        let after_reconnect = self.reconnected.remove(symbol);
        let Some(previous) = self.last.get(symbol).copied() else {
            self.record(symbol, LastTrade { id, ts_ms });
            if self.klines {
                self.first_seen
                    .insert(symbol.to_string(), LastTrade { id, ts_ms });
            }
            return None;
        };
        if id <= previous.id {
            return None;
        }
        self.record(symbol, LastTrade { id, ts_ms });
        let skipped = id > previous.id + 1;
        if !skipped && !after_reconnect {
            return None;
        }
        let klines_from_ms = (after_reconnect && self.klines).then(|| {
            self.last_closed_kline
                .get(symbol)
                .map(|open| open + MINUTE_MS)
                .unwrap_or_else(|| minute_floor(previous.ts_ms))
        });
        Some(MissedTrades {
            symbol: symbol.to_string(),
            cause: if after_reconnect {
                GapCause::Reconnect
            } else {
                GapCause::TradeIdJump
            },
            from_ts_ms: previous.ts_ms,
            to_ts_ms: ts_ms,
            missing_ids: skipped.then_some((previous.id + 1, id - 1)),
            klines_from_ms,
        })
    }
}

/// Repairs gaps one after another until shutdown (see the module docs). Without a REST client (`--no-repair`)
/// each gap is only recorded, as unrepairable.
pub async fn run_repairs(
    mut gaps: mpsc::UnboundedReceiver<MissedTrades>,
    memory: SharedMemory,
    rest: Option<BinanceRest>,
    emitter: Arc<Emitter>,
    flush_timeout: Duration,
    shutdown: Shutdown,
) {
    // The last run's unfinished repairs first: their gaps are still open.
    let mut left_over = memory.snapshot().pending.into_iter();
    if left_over.len() > 0 {
        info!(
            "binance: {} gap repair(s) left unfinished by the last run, resuming",
            left_over.len()
        );
    }
    loop {
        let missed = match left_over.next() {
            Some(missed) => missed,
            None => tokio::select! {
                missed = gaps.recv() => match missed {
                    Some(missed) => missed,
                    None => return,
                },
                _ = shutdown.wait() => return,
            },
        };
        match repair(&missed, rest.as_ref(), &emitter, flush_timeout).await {
            Ok(gap) => {
                emitter.gap(&gap);
                memory.repaired(&missed);
            }
            // A repair cut short by shutdown or a failed flush sends no gap message: the bars job would rebuild
            // from a topic that may lack the trades. The next run starts with an empty tracker and cannot
            // know this gap, so this line is its only record.
            Err(reason) => warn!(
                "binance: {} gap of {} not repaired: {reason}",
                missed.cause.as_str(),
                missed.symbol
            ),
        }
    }
}

/// Fetches and sends one gap's trades (and klines), waits for Kafka, and returns its gap message.
async fn repair(
    missed: &MissedTrades,
    rest: Option<&BinanceRest>,
    emitter: &Emitter,
    flush_timeout: Duration,
) -> Result<Gap, String> {
    let started = Instant::now();
    let symbol = &missed.symbol;
    let mut repaired = 0i64;
    let mut trouble: Option<String> = None;
    let Some(rest) = rest else {
        return Ok(gap_message(
            missed,
            0,
            started,
            0,
            Some("repair is off".into()),
        ));
    };
    if let Some((first, last)) = missed.missing_ids {
        if last - first + 1 > MAX_REPAIR_TRADES {
            let why = format!(
                "over {MAX_REPAIR_TRADES} trades: not fetched one by one; `backfill binance` loads the klines"
            );
            return Ok(gap_message(missed, 0, started, 0, Some(why)));
        }
    }
    if let Some((first, last)) = missed.missing_ids {
        let mut next = first;
        while next <= last {
            match rest.historical_trades(symbol, next, MAX_LIMIT).await {
                Ok(trades) if trades.is_empty() => {
                    trouble = Some(format!("the exchange served no trade from id {next}"));
                    break;
                }
                Ok(trades) => {
                    for trade in trades {
                        let Some(id) = trade
                            .trade_id
                            .as_deref()
                            .and_then(|t| t.parse::<i64>().ok())
                        else {
                            continue;
                        };
                        if id < next {
                            continue;
                        }
                        if id > last {
                            next = id;
                            break;
                        }
                        if emitter.repaired_trade(&trade, missed.cause) {
                            repaired += 1;
                        }
                        next = id + 1;
                    }
                }
                Err(RestError::Shutdown) => return Err("stopped by shutdown".into()),
                Err(err) => {
                    trouble = Some(err.to_string());
                    break;
                }
            }
        }
    }
    let mut klines = 0usize;
    if let Some(mut start) = missed.klines_from_ms {
        let end = minute_floor(missed.to_ts_ms);
        while start < end {
            match rest.klines_1m(symbol, start, end, MAX_LIMIT).await {
                Ok(bars) if bars.is_empty() => break,
                Ok(bars) => {
                    start = bars.last().map(|b| b.ts_ms + MINUTE_MS).unwrap_or(end);
                    for bar in &bars {
                        if emitter.bar(bar, None, TimeCheck::Exempt) {
                            klines += 1;
                        }
                    }
                }
                Err(RestError::Shutdown) => return Err("stopped by shutdown".into()),
                Err(err) => {
                    warn!("binance: klines of the {symbol} gap not repaired: {err}");
                    break;
                }
            }
        }
    }
    // The bars job rebuilds from what the topic holds when the gap message arrives: the trades go first.
    emitter
        .flush(flush_timeout)
        .await
        .map_err(|err| format!("{err:#}"))?;
    Ok(gap_message(missed, repaired, started, klines, trouble))
}

/// The gap's message, after one log line about it.
fn gap_message(
    missed: &MissedTrades,
    repaired: i64,
    started: Instant,
    klines: usize,
    trouble: Option<String>,
) -> Gap {
    let symbol = &missed.symbol;
    let outcome = match missed.missing_ids {
        None => GapOutcome::Empty,
        Some(_) if repaired > 0 => GapOutcome::Repaired,
        Some(_) => GapOutcome::Unrepairable,
    };
    let missing = missed.missing_ids.map(|(a, b)| b - a + 1).unwrap_or(0);
    let line = format!(
        "binance: {symbol} gap ({}): {missing} trade(s) missing between {} and {}, {repaired} repaired, \
         {klines} kline(s) fetched in {:.1}s{}",
        missed.cause.as_str(),
        missed.from_ts_ms,
        missed.to_ts_ms,
        started.elapsed().as_secs_f64(),
        trouble.map(|t| format!(" ({t})")).unwrap_or_default()
    );
    if missing > 0 && repaired < missing {
        warn!("{line}");
    } else {
        info!("{line}");
    }
    Gap {
        source: SOURCE.to_string(),
        symbol: symbol.clone(),
        cause: missed.cause,
        outcome,
        from_ts_ms: missed.from_ts_ms,
        to_ts_ms: missed.to_ts_ms,
        first_missing_id: missed.missing_ids.map(|(first, _)| first),
        last_missing_id: missed.missing_ids.map(|(_, last)| last),
        repaired_trades: repaired,
        detected_ms: now_ms(),
    }
}

/// Saves the feed's memory every `every` (and once more at shutdown), each time only after Kafka acknowledged
/// everything sent before the snapshot was taken: the saved last trades never run ahead of the topic.
pub async fn keep_memory(
    memory: SharedMemory,
    mut state: StateFile<FeedMemory>,
    emitter: Arc<Emitter>,
    every: Duration,
    flush_timeout: Duration,
    shutdown: Shutdown,
) {
    loop {
        let stopping = !shutdown.sleep(every).await;
        let snapshot = memory.snapshot();
        if snapshot != *state.get() {
            match emitter.flush(flush_timeout).await {
                Ok(()) => {
                    *state.get_mut() = snapshot;
                    if let Err(err) = state.save() {
                        warn!("binance: cannot save {}: {err:#}", state.path().display());
                    }
                }
                Err(err) => {
                    warn!("binance: feed state not saved, Kafka has not acknowledged: {err:#}")
                }
            }
        }
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_are_no_gap_and_a_jump_is_one() {
        let mut tracker = GapTracker::new(false);
        assert_eq!(tracker.on_trade("BTCUSDT", 100, 1_000), None);
        assert_eq!(tracker.on_trade("BTCUSDT", 101, 1_100), None);
        let gap = tracker.on_trade("BTCUSDT", 105, 1_500).unwrap();
        assert_eq!(gap.cause, GapCause::TradeIdJump);
        assert_eq!(gap.missing_ids, Some((102, 104)));
        assert_eq!((gap.from_ts_ms, gap.to_ts_ms), (1_100, 1_500));
        assert_eq!(
            gap.klines_from_ms, None,
            "connected all along: no kline was missed"
        );
        // A re-delivered or older frame neither is a gap nor moves the bookkeeping back.
        assert_eq!(tracker.on_trade("BTCUSDT", 103, 1_300), None);
        assert_eq!(tracker.on_trade("BTCUSDT", 106, 1_600), None);
        // Symbols are independent.
        assert_eq!(tracker.on_trade("ETHUSDT", 7, 1_000), None);
    }

    #[test]
    fn a_reconnect_is_a_gap_from_the_last_trade_seen_even_when_nothing_was_missed() {
        let mut tracker = GapTracker::new(true);
        tracker.on_trade("BTCUSDT", 100, 60_500);
        tracker.on_trade("ETHUSDT", 9, 60_700);
        tracker.on_closed_kline("BTCUSDT", 0, Some(90));
        tracker.on_connected();
        let gap = tracker.on_trade("BTCUSDT", 180, 185_000).unwrap();
        assert_eq!(gap.cause, GapCause::Reconnect);
        assert_eq!(gap.missing_ids, Some((101, 179)));
        assert_eq!(
            gap.klines_from_ms,
            Some(60_000),
            "the minute after the last closed kline"
        );
        let clean = tracker.on_trade("ETHUSDT", 10, 190_000).unwrap();
        assert_eq!(
            (clean.cause, clean.missing_ids),
            (GapCause::Reconnect, None)
        );
        assert_eq!(
            clean.klines_from_ms,
            Some(60_000),
            "no kline seen: from the last trade's minute"
        );
        // Only the first trade after the reconnect speaks for it.
        assert_eq!(tracker.on_trade("BTCUSDT", 181, 186_000), None);
    }

    #[test]
    fn a_restart_resumes_from_the_remembered_last_trades_and_unfinished_repairs() {
        let memory = SharedMemory::default();
        let (sender, mut receiver) = gap_channel(memory.clone());
        let mut before = GapTracker::remembering(false, memory.clone(), &["BTCUSDT".into()]);
        before.on_trade("BTCUSDT", 100, 1_000);
        before.on_trade("ETHUSDT", 7, 1_000);
        let jump = before.on_trade("BTCUSDT", 110, 2_000).unwrap();
        sender.send(jump.clone());
        assert_eq!(receiver.try_recv().unwrap(), jump);
        let saved = memory.snapshot();
        assert_eq!(
            saved.last_trades["BTCUSDT"],
            LastTrade {
                id: 110,
                ts_ms: 2_000
            }
        );
        assert_eq!(
            saved.pending,
            vec![jump.clone()],
            "not repaired yet: remembered"
        );

        // The next run: its tracker starts from the saved trades, and connecting makes the restart a reconnect.
        let restarted = SharedMemory::new(saved);
        let mut after = GapTracker::remembering(false, restarted.clone(), &["BTCUSDT".into()]);
        after.on_connected();
        let gap = after.on_trade("BTCUSDT", 150, 9_000).unwrap();
        assert_eq!(gap.cause, GapCause::Reconnect);
        assert_eq!(gap.missing_ids, Some((111, 149)));
        assert_eq!(gap.from_ts_ms, 2_000);
        restarted.repaired(&jump);
        assert!(restarted.snapshot().pending.is_empty());
    }

    #[tokio::test]
    async fn the_memory_is_saved_while_running_and_once_more_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FEED_STATE_FILE);
        let (emitter, _sink) = crate::emitter::test_support::memory_emitter(&["BTCUSDT"]);
        let memory = SharedMemory::default();
        memory.saw(
            "BTCUSDT",
            LastTrade {
                id: 5,
                ts_ms: 60_000,
            },
        );
        let (trigger, shutdown) = crate::shutdown::channel();
        let state = StateFile::<FeedMemory>::open(&path).unwrap();
        let saver = tokio::spawn(keep_memory(
            memory.clone(),
            state,
            emitter,
            Duration::from_millis(20),
            Duration::from_secs(1),
            shutdown,
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        memory.saw(
            "BTCUSDT",
            LastTrade {
                id: 6,
                ts_ms: 60_500,
            },
        );
        trigger.trigger();
        saver.await.unwrap();
        let saved = StateFile::<FeedMemory>::open(&path).unwrap();
        assert_eq!(
            saved.get().last_trades["BTCUSDT"].id,
            6,
            "the shutdown saves the last word"
        );
    }

    #[test]
    fn a_start_mid_minute_is_a_gap_when_the_first_kline_counts_earlier_trades() {
        let mut tracker = GapTracker::new(true);
        tracker.on_trade("BTCUSDT", 1_050, 61_000);
        tracker.on_trade("BTCUSDT", 1_051, 62_000);
        assert_eq!(
            tracker.on_closed_kline("BTCUSDT", 0, None),
            None,
            "a minute without trades says nothing"
        );
        let gap = tracker
            .on_closed_kline("BTCUSDT", 60_000, Some(1_000))
            .unwrap();
        assert_eq!(gap.cause, GapCause::KlineDisagreement);
        assert_eq!(gap.missing_ids, Some((1_000, 1_049)));
        assert_eq!((gap.from_ts_ms, gap.to_ts_ms), (60_000, 61_000));
        assert_eq!(
            tracker.on_closed_kline("BTCUSDT", 120_000, Some(1_060)),
            None,
            "checked once"
        );
        // A kline that starts at the first trade seen (the feed was up the whole minute) is no gap.
        tracker.on_trade("ETHUSDT", 7, 61_000);
        assert_eq!(tracker.on_closed_kline("ETHUSDT", 60_000, Some(7)), None);
        // Without klines there is nothing to compare with.
        let mut trades_only = GapTracker::new(false);
        trades_only.on_trade("BTCUSDT", 1_050, 61_000);
        assert_eq!(
            trades_only.on_closed_kline("BTCUSDT", 60_000, Some(1_000)),
            None
        );
    }

    #[test]
    fn the_first_trade_of_a_symbol_is_no_gap_even_after_a_reconnect() {
        let mut tracker = GapTracker::new(false);
        tracker.on_connected();
        assert_eq!(tracker.on_trade("BTCUSDT", 5_000, 1), None);
    }
}
