//! Twelve Data: REST `time_series` 1-minute bars and the WebSocket price stream (`/v1/quotes/price`).
//!
//! REST: a symbol without a cursor is backfilled (`--backfill-bars`), then polled within the plan's per-minute
//! limit for the minutes since its newest bar sent, so no bar is sent twice. The newest bar Kafka acknowledged
//! per symbol is the cursor, saved in `<state dir>/twelvedata-rest-cursor.json` only after a flush confirmed the
//! bars it covers, so a restart resumes after it: no second backfill, no minute skipped (as far back as one
//! request of at most 5000 bars reaches; a longer outage is logged as a gap). A crash between a send and the
//! save re-sends at most the bars sent since the last save.
//!
//! A price event is not a trade: it is the latest price, sampled, and one event can stand for several
//! executions. It becomes a `tick` on the trades topic (contract: trade_kinds) whose size is the increase of
//! the event's `day_volume` since the symbol's previous event (0 when the provider sends no day volume, for the
//! first event, and when the day's count restarts). The key travels in the `Authorization: apikey <key>`
//! header. Errors arrive as HTTP 200 `{"status":"error","code":..}` and are treated as errors (dead-lettered
//! and retried by code), never as an empty series.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::Value;
use tracing::{error, info, warn};

use crate::emitter::Emitter;
use crate::http::{self, HttpOutcome, Pacer};
use crate::messages::{now_ms, Bar, RejectCode, Source, Trade, TradeKind, MINUTE_MS};
use crate::shutdown::Shutdown;
use crate::sources::finnhub::encode_query;
use crate::state::StateFile;
use crate::validation::TimeCheck;
use crate::ws::WsProtocol;

pub const SOURCE: &str = Source::Twelvedata.as_str();
/// The largest `outputsize` Twelve Data serves.
pub const MAX_OUTPUTSIZE: usize = 5000;

#[derive(Debug, Clone, PartialEq)]
pub enum TimeSeriesError {
    /// `{"status":"error","code":..,"message":..}`
    Provider {
        code: i64,
        message: String,
    },
    Malformed(String),
}

impl std::fmt::Display for TimeSeriesError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Provider { code, message } => write!(f, "provider error {code}: {message}"),
            Self::Malformed(reason) => write!(f, "{reason}"),
        }
    }
}

/// What to do after a provider error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPolicy {
    /// Credits for this minute are spent: wait for the next minute, then ask again for the same symbol.
    AfterPause(Duration),
    /// A server-side failure: try again at the next poll.
    NextPoll,
    /// Bad symbol, bad key, plan without access: asking again cannot help; the symbol is dropped.
    Never,
}

pub fn retry_policy(code: i64, now_ms: i64) -> RetryPolicy {
    match code {
        429 => {
            // Twelve Data's credits refill at the minute boundary.
            let to_next_minute = MINUTE_MS - now_ms.rem_euclid(MINUTE_MS) + 1_000;
            RetryPolicy::AfterPause(Duration::from_millis(to_next_minute as u64))
        }
        400 | 401 | 403 | 404 | 414 => RetryPolicy::Never,
        _ => RetryPolicy::NextPoll,
    }
}

#[derive(Deserialize)]
struct Meta {
    symbol: Option<String>,
    exchange_timezone: Option<String>,
}

#[derive(Deserialize)]
struct WireBar {
    datetime: String,
    open: String,
    high: String,
    low: String,
    close: String,
    /// Absent for forex pairs.
    volume: Option<String>,
}

/// Convert a `values[].datetime` in the exchange's zone to UTC milliseconds. A wall time that falls twice
/// (DST ends) takes its first occurrence; one that never exists (DST starts) is an error.
pub fn exchange_time_to_utc_ms(datetime: &str, zone: Tz) -> Result<i64, String> {
    let naive = NaiveDateTime::parse_from_str(datetime, "%Y-%m-%d %H:%M:%S")
        .or_else(|_| {
            NaiveDate::parse_from_str(datetime, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight"))
        })
        .map_err(|_| format!("unreadable datetime {datetime:?}"))?;
    zone.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| format!("datetime {datetime:?} does not exist in {zone}"))
}

/// Parse a `time_series` body into bars sorted oldest first.
pub fn parse_time_series(requested_symbol: &str, body: &str) -> Result<Vec<Bar>, TimeSeriesError> {
    let value: Value = serde_json::from_str(body)
        .map_err(|e| TimeSeriesError::Malformed(format!("malformed JSON: {e}")))?;
    if value.get("status").and_then(Value::as_str) == Some("error") {
        return Err(TimeSeriesError::Provider {
            code: value.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: value
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        });
    }
    let meta: Meta = serde_json::from_value(value.get("meta").cloned().unwrap_or(Value::Null))
        .map_err(|e| TimeSeriesError::Malformed(format!("malformed meta: {e}")))?;
    let zone: Tz = match meta.exchange_timezone.as_deref() {
        Some(name) => name
            .parse()
            .map_err(|_| TimeSeriesError::Malformed(format!("unknown time zone {name:?}")))?,
        None => {
            return Err(TimeSeriesError::Malformed(
                "meta.exchange_timezone missing".into(),
            ))
        }
    };
    let symbol = meta.symbol.unwrap_or_else(|| requested_symbol.to_string());
    let values: Vec<WireBar> =
        serde_json::from_value(value.get("values").cloned().unwrap_or(Value::Null))
            .map_err(|e| TimeSeriesError::Malformed(format!("malformed values: {e}")))?;
    let number = |field: &str, text: &str| {
        text.parse::<f64>()
            .map_err(|_| TimeSeriesError::Malformed(format!("{field} is not a number: {text:?}")))
    };
    let mut bars = values
        .iter()
        .map(|wire| {
            Ok(Bar::ohlcv(
                SOURCE,
                &symbol,
                exchange_time_to_utc_ms(&wire.datetime, zone)
                    .map_err(TimeSeriesError::Malformed)?,
                number("open", &wire.open)?,
                number("high", &wire.high)?,
                number("low", &wire.low)?,
                number("close", &wire.close)?,
                wire.volume
                    .as_deref()
                    .map(|v| number("volume", v))
                    .transpose()?
                    .unwrap_or(0.0),
            ))
        })
        .collect::<Result<Vec<_>, TimeSeriesError>>()?;
    // The API answers newest first; downstream wants each symbol's bars in time order.
    bars.sort_by_key(|b| b.ts_ms);
    Ok(bars)
}

/// Bars to send: closed (the newest value is the minute still forming) and newer than the last one sent.
pub fn unsent_closed_bars(bars: Vec<Bar>, last_sent: Option<i64>, now_ms: i64) -> Vec<Bar> {
    bars.into_iter()
        .filter(|b| b.ts_ms + MINUTE_MS <= now_ms && last_sent.is_none_or(|last| b.ts_ms > last))
        .collect()
}

/// How many bars to ask for: the backfill depth first, then enough to cover the time since the last bar.
pub fn outputsize(last_sent: Option<i64>, backfill: usize, now_ms: i64) -> usize {
    match last_sent {
        None => backfill.clamp(1, MAX_OUTPUTSIZE),
        Some(last) => (((now_ms - last) / MINUTE_MS) as usize + 2).clamp(2, MAX_OUTPUTSIZE),
    }
}

/// The REST cursor's file in `--state-dir`.
pub const CURSOR_FILE: &str = "twelvedata-rest-cursor.json";

/// Newest bar time (UTC ms) per symbol; sorted, so the file reads in symbol order.
pub type Cursor = BTreeMap<String, i64>;

pub fn open_cursor(path: &Path) -> anyhow::Result<StateFile<Cursor>> {
    StateFile::open(path)
}

/// The log line's part about a loaded cursor: how many symbols, and the one furthest behind.
pub fn describe_cursor(cursor: &Cursor) -> Option<String> {
    let (symbol, oldest) = cursor.iter().min_by_key(|(_, ts_ms)| **ts_ms)?;
    Some(format!(
        "{} symbol(s), the oldest {symbol} at {}",
        cursor.len(),
        utc(*oldest)
    ))
}

fn utc(ts_ms: i64) -> String {
    DateTime::from_timestamp_millis(ts_ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("{ts_ms} ms"))
}

/// A full answer (as many values as asked for) whose oldest bar is more than a minute after the symbol's last
/// one may have left bars out: they did not fit in one request. Returns (last bar sent, oldest bar received).
pub fn uncovered_gap(
    received: &[Bar],
    requested: usize,
    last_sent: Option<i64>,
) -> Option<(i64, i64)> {
    let last = last_sent?;
    let oldest = received.first()?.ts_ms;
    (received.len() >= requested && oldest > last + MINUTE_MS).then_some((last, oldest))
}

/// What a flush meant for the bars sent since the cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// No bar was waiting for Kafka.
    Idle,
    /// Kafka holds every bar sent: the cursor moved up to them and is to be saved.
    Acknowledged,
    /// The flush did not finish: the bars may still arrive, so the cursor stays where it was.
    Pending,
    /// A delivery failed, maybe one of the bars: the next polls fetch and send again from the cursor.
    Rewound,
}

/// Per symbol, the newest bar handed to the producer (where the next poll continues) and the newest one Kafka
/// acknowledged (the cursor, the only one saved), so the saved cursor never runs ahead of Kafka.
#[derive(Debug, Clone)]
pub struct Progress {
    sent: Cursor,
    delivered: Cursor,
    /// The producer's delivery failure count when the first bar not yet acknowledged was sent.
    failures_before: u64,
}

impl Progress {
    pub fn new(delivered: Cursor) -> Self {
        Self {
            sent: delivered.clone(),
            delivered,
            failures_before: 0,
        }
    }

    pub fn last_sent(&self, symbol: &str) -> Option<i64> {
        self.sent.get(symbol).copied()
    }

    pub fn delivered(&self) -> &Cursor {
        &self.delivered
    }

    pub fn unacknowledged(&self) -> bool {
        self.sent != self.delivered
    }

    /// `delivery_failures` is the producer's count read before these bars were sent: failures before them
    /// are someone else's.
    pub fn record_sent(&mut self, symbol: &str, newest_ts_ms: i64, delivery_failures: u64) {
        if !self.unacknowledged() {
            self.failures_before = delivery_failures;
        }
        self.sent.insert(symbol.to_string(), newest_ts_ms);
    }

    /// `flushed`: Kafka acknowledged or refused everything queued so far; `delivery_failures`: the producer's
    /// count now. A flush succeeds even when a message failed, so only an unchanged count proves delivery.
    pub fn settle(&mut self, flushed: bool, delivery_failures: u64) -> Settlement {
        if !self.unacknowledged() {
            return Settlement::Idle;
        }
        if delivery_failures != self.failures_before {
            // Which message failed is unknown: re-sending every unacknowledged bar duplicates some, skips none.
            self.sent = self.delivered.clone();
            return Settlement::Rewound;
        }
        if !flushed {
            return Settlement::Pending;
        }
        self.delivered = self.sent.clone();
        Settlement::Acknowledged
    }
}

/// `Progress` and its file.
struct RestCursor {
    file: StateFile<Cursor>,
    progress: Progress,
    /// A save failed: the file is behind `progress.delivered()` until the next save succeeds.
    unsaved: bool,
}

impl RestCursor {
    fn open(path: &Path) -> anyhow::Result<Self> {
        let file = open_cursor(path)?;
        if let Some(summary) = describe_cursor(file.get()) {
            info!(
                "twelvedata: resuming from the cursor in {}: {summary}",
                path.display()
            );
        }
        let progress = Progress::new(file.get().clone());
        Ok(Self {
            file,
            progress,
            unsaved: false,
        })
    }

    /// Waits until Kafka holds the bars sent since the last save, then saves the cursor that covers them.
    async fn settle(&mut self, emitter: &Emitter, flush_timeout: Duration) {
        if self.progress.unacknowledged() {
            let flushed = match emitter.flush(flush_timeout).await {
                Ok(()) => true,
                Err(err) => {
                    warn!("twelvedata: cursor kept until the bars are acknowledged: {err:#}");
                    false
                }
            };
            // librdkafka releases a message only after its delivery callback ran: a failure is counted by now.
            match self.progress.settle(flushed, delivery_failures(emitter)) {
                Settlement::Acknowledged => self.unsaved = true,
                Settlement::Rewound => warn!(
                    "twelvedata: a delivery failed; the bars since the cursor are fetched and sent again"
                ),
                Settlement::Idle | Settlement::Pending => {}
            }
        }
        if self.unsaved {
            *self.file.get_mut() = self.progress.delivered().clone();
            match self.file.save() {
                Ok(()) => self.unsaved = false,
                Err(err) => warn!(
                    "twelvedata: cursor not saved ({err:#}); a restart sends the bars since the last save again"
                ),
            }
        }
    }
}

fn delivery_failures(emitter: &Emitter) -> u64 {
    emitter.stats().delivery_failures.load(Ordering::Relaxed)
}

pub struct RestSettings {
    pub rest_url: String,
    pub api_key: String,
    pub symbols: Vec<String>,
    pub backfill_bars: usize,
    pub poll_interval: Duration,
    pub per_minute: f64,
    pub http_timeout: Duration,
    /// `<state dir>/CURSOR_FILE`
    pub cursor_path: PathBuf,
    /// How long to wait for Kafka's acknowledgement before the cursor may move.
    pub flush_timeout: Duration,
}

pub async fn run_rest(
    settings: RestSettings,
    emitter: Arc<Emitter>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut cursor = RestCursor::open(&settings.cursor_path)?;
    let outcome = poll_rest(&settings, &emitter, &shutdown, &mut cursor).await;
    // The last poll's bars are acknowledged by now or soon: saving them spares a restart sending them again.
    cursor.settle(&emitter, settings.flush_timeout).await;
    outcome
}

async fn poll_rest(
    settings: &RestSettings,
    emitter: &Emitter,
    shutdown: &Shutdown,
    cursor: &mut RestCursor,
) -> anyhow::Result<()> {
    let client = http::client(settings.http_timeout)?;
    let mut pacer = Pacer::per_minute(settings.per_minute);
    let base = settings.rest_url.trim_end_matches('/');
    let authorization = format!("apikey {}", settings.api_key);
    let mut fetched: HashSet<String> = HashSet::new();
    let mut active: Vec<String> = settings.symbols.clone();
    while !active.is_empty() {
        let round_start = tokio::time::Instant::now();
        let mut index = 0;
        while index < active.len() {
            if !pacer.acquire(shutdown).await {
                return Ok(());
            }
            let symbol = active[index].clone();
            let previous = cursor.progress.last_sent(&symbol);
            let size = outputsize(previous, settings.backfill_bars, now_ms());
            let url = format!(
                "{base}/time_series?symbol={}&interval=1min&outputsize={size}",
                encode_query(&symbol)
            );
            let outcome = http::get(
                &client,
                &url,
                &[("Authorization", authorization.as_str())],
                Duration::from_secs(60),
            )
            .await;
            let body = match outcome {
                Ok(HttpOutcome::Body(body)) => body,
                Ok(HttpOutcome::RateLimited(wait)) => {
                    warn!(
                        "twelvedata: HTTP 429 for {symbol}, waiting {wait:?} as Retry-After asks"
                    );
                    pacer.pause(wait);
                    continue;
                }
                Ok(HttpOutcome::Status(status, body)) => {
                    emitter.dead_letter(
                        SOURCE,
                        RejectCode::HttpStatus,
                        &format!("time_series {symbol}: HTTP {status}"),
                        &body,
                    );
                    index += 1;
                    continue;
                }
                Err(err) => {
                    warn!("twelvedata: time_series {symbol}: {err:#}");
                    index += 1;
                    continue;
                }
            };
            match parse_time_series(&symbol, &body) {
                Ok(bars) => {
                    if let Some((last, oldest)) = uncovered_gap(&bars, size, previous) {
                        warn!(
                            "twelvedata: {symbol}: bars after {} and before {} not fetched: more than {size} since the last one sent",
                            utc(last),
                            utc(oldest)
                        );
                    }
                    let failures = delivery_failures(emitter);
                    let fresh = unsent_closed_bars(bars, previous, now_ms());
                    let first_fetch = fetched.insert(symbol.clone());
                    // A backfill, and the catch-up after a restart, are history on purpose: exempt from the
                    // time window, or a restart after a long weekend would dead-letter Friday's bars.
                    let time = if previous.is_none() || first_fetch {
                        TimeCheck::Exempt
                    } else {
                        TimeCheck::Live
                    };
                    for bar in &fresh {
                        emitter.bar(bar, None, time);
                    }
                    if let Some(newest) = fresh.last() {
                        cursor.progress.record_sent(&symbol, newest.ts_ms, failures);
                    }
                    match (previous, first_fetch) {
                        (None, _) => {
                            info!("twelvedata: backfilled {} bar(s) for {symbol}", fresh.len())
                        }
                        (Some(_), true) => info!(
                            "twelvedata: resumed {symbol} after its cursor: {} new bar(s)",
                            fresh.len()
                        ),
                        (Some(_), false) => {}
                    }
                    cursor.settle(emitter, settings.flush_timeout).await;
                    index += 1;
                }
                Err(err) => {
                    let code = match err {
                        TimeSeriesError::Provider { .. } => RejectCode::ProviderError,
                        TimeSeriesError::Malformed(_) => RejectCode::ProviderMalformed,
                    };
                    emitter.dead_letter(
                        SOURCE,
                        code,
                        &format!("time_series {symbol}: {err}"),
                        &body,
                    );
                    match err {
                        TimeSeriesError::Provider { code, .. } => {
                            match retry_policy(code, now_ms()) {
                                RetryPolicy::AfterPause(wait) => {
                                    warn!("twelvedata: credits exhausted (code {code}), retrying {symbol} in {wait:?}");
                                    pacer.pause(wait);
                                }
                                RetryPolicy::NextPoll => index += 1,
                                RetryPolicy::Never => {
                                    error!("twelvedata: dropping {symbol}: code {code} will not change by asking again");
                                    active.remove(index);
                                }
                            }
                        }
                        TimeSeriesError::Malformed(_) => index += 1,
                    }
                }
            }
        }
        let elapsed = round_start.elapsed();
        if elapsed < settings.poll_interval
            && !shutdown.sleep(settings.poll_interval - elapsed).await
        {
            return Ok(());
        }
    }
    anyhow::bail!("twelvedata: every symbol was dropped after permanent provider errors")
}

#[derive(Debug, Clone, PartialEq)]
pub enum PriceEvent {
    /// A price tick (size 0) and the day's volume so far, when the provider sends it.
    Tick {
        tick: Trade,
        day_volume: Option<f64>,
    },
    Heartbeat,
    /// Subscription result: the symbols the provider refused.
    SubscribeStatus {
        failed: Vec<String>,
    },
    Error(String),
    Other,
}

pub fn parse_ws_frame(text: &str) -> Result<PriceEvent, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
    let event = value
        .get("event")
        .and_then(Value::as_str)
        .ok_or("frame without an \"event\"")?;
    if value.get("status").and_then(Value::as_str) == Some("error") {
        let message = value
            .get("message")
            .or_else(|| value.get("messages"))
            .map(Value::to_string)
            .unwrap_or_default();
        return Ok(PriceEvent::Error(format!("{event}: {message}")));
    }
    match event {
        "price" => {
            let symbol = value
                .get("symbol")
                .and_then(Value::as_str)
                .ok_or("price event without a symbol")?;
            let price =
                as_number(value.get("price")).ok_or("price event without a numeric price")?;
            let timestamp =
                as_number(value.get("timestamp")).ok_or("price event without a timestamp")?;
            // Documented in seconds; accept milliseconds too rather than land in 1970 or year 50000.
            let ts_ms = if timestamp < 1e11 {
                (timestamp * 1000.0).round() as i64
            } else {
                timestamp.round() as i64
            };
            let mut tick = Trade::new(SOURCE, symbol, ts_ms, price, 0.0);
            tick.kind = TradeKind::Tick;
            Ok(PriceEvent::Tick {
                tick,
                day_volume: as_number(value.get("day_volume")),
            })
        }
        "heartbeat" => Ok(PriceEvent::Heartbeat),
        "subscribe-status" => {
            let failed = value
                .get("fails")
                .and_then(Value::as_array)
                .map(|fails| {
                    fails
                        .iter()
                        .map(|f| {
                            f.get("symbol")
                                .and_then(Value::as_str)
                                .map(str::to_string)
                                .unwrap_or_else(|| f.to_string())
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(PriceEvent::SubscribeStatus { failed })
        }
        _ => Ok(PriceEvent::Other),
    }
}

fn as_number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

pub fn subscribe_message(symbols: &[String]) -> String {
    serde_json::json!({"action": "subscribe", "params": {"symbols": symbols.join(",")}}).to_string()
}

pub const HEARTBEAT: &str = r#"{"action":"heartbeat"}"#;

pub struct PriceProtocol {
    pub emitter: Arc<Emitter>,
    pub symbols: Vec<String>,
    /// Each symbol's last `day_volume`, so a tick's size is the volume since the previous one.
    pub day_volumes: HashMap<String, f64>,
}

impl PriceProtocol {
    pub fn new(emitter: Arc<Emitter>, symbols: Vec<String>) -> Self {
        Self {
            emitter,
            symbols,
            day_volumes: HashMap::new(),
        }
    }

    /// The volume traded since the symbol's previous tick: 0 for the first, and when the count restarts.
    fn volume_since_previous(&mut self, symbol: &str, day_volume: Option<f64>) -> f64 {
        let Some(day_volume) = day_volume.filter(|v| v.is_finite() && *v >= 0.0) else {
            return 0.0;
        };
        match self.day_volumes.insert(symbol.to_string(), day_volume) {
            Some(previous) if day_volume >= previous => day_volume - previous,
            _ => 0.0,
        }
    }
}

impl WsProtocol for PriceProtocol {
    fn subscribe_messages(&self) -> Vec<String> {
        vec![subscribe_message(&self.symbols)]
    }

    fn on_text(&mut self, text: &str) -> Vec<String> {
        match parse_ws_frame(text) {
            Ok(PriceEvent::Tick {
                mut tick,
                day_volume,
            }) => {
                tick.size = self.volume_since_previous(&tick.symbol, day_volume);
                self.emitter.trade(&tick, Some(text), TimeCheck::Live);
            }
            Ok(PriceEvent::SubscribeStatus { failed }) if !failed.is_empty() => {
                self.emitter.dead_letter(
                    SOURCE,
                    RejectCode::ProviderError,
                    &format!("subscription refused for {}", failed.join(",")),
                    text,
                );
            }
            Ok(PriceEvent::SubscribeStatus { .. }) => info!("twelvedata: subscription confirmed"),
            Ok(PriceEvent::Error(message)) => {
                self.emitter
                    .dead_letter(SOURCE, RejectCode::ProviderError, &message, text)
            }
            Ok(PriceEvent::Heartbeat | PriceEvent::Other) => {}
            Err(reason) => self.on_malformed(&reason, text),
        }
        Vec::new()
    }

    fn on_malformed(&mut self, reason: &str, raw: &str) {
        self.emitter
            .dead_letter(SOURCE, RejectCode::ProviderMalformed, reason, raw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emitter::test_support::memory_emitter;

    const SERIES: &str = r#"{"meta":{"symbol":"AAPL","interval":"1min","currency":"USD","exchange_timezone":"America/New_York","exchange":"NASDAQ","mic_code":"XNGS","type":"Common Stock"},"values":[{"datetime":"2024-01-02 15:59:00","open":"185.60001","high":"185.67","low":"185.53","close":"185.64","volume":"1001953"},{"datetime":"2024-01-02 15:58:00","open":"185.5","high":"185.62","low":"185.45","close":"185.6","volume":"401204"}],"status":"ok"}"#;

    #[test]
    fn time_series_in_exchange_time_becomes_sorted_utc_bars() {
        let bars = parse_time_series("AAPL", SERIES).unwrap();
        assert_eq!(bars.len(), 2);
        // 15:58 New York in January (EST, UTC-5) is 20:58 UTC.
        assert_eq!(bars[0].ts_ms, 1_704_229_080_000);
        assert_eq!(bars[1].ts_ms, bars[0].ts_ms + MINUTE_MS);
        assert_eq!(
            (bars[1].open, bars[1].close, bars[1].volume),
            (185.60001, 185.64, 1_001_953.0)
        );
    }

    #[test]
    fn timezone_conversion_follows_daylight_saving() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // July: EDT, UTC-4.
        assert_eq!(
            exchange_time_to_utc_ms("2024-07-01 09:30:00", ny).unwrap(),
            1_719_840_600_000
        );
        // Clocks jump from 02:00 to 03:00 on 2024-03-10: 02:30 never happens.
        assert!(exchange_time_to_utc_ms("2024-03-10 02:30:00", ny)
            .unwrap_err()
            .contains("does not exist"));
        // 01:30 happens twice on 2024-11-03: the first (EDT) occurrence is taken.
        assert_eq!(
            exchange_time_to_utc_ms("2024-11-03 01:30:00", ny).unwrap(),
            1_730_611_800_000
        );
        let utc: Tz = "UTC".parse().unwrap();
        assert_eq!(
            exchange_time_to_utc_ms("2024-01-02", utc).unwrap(),
            1_704_153_600_000
        );
        assert!(exchange_time_to_utc_ms("02/01/2024", utc).is_err());
    }

    #[test]
    fn http_200_error_payloads_are_errors_not_empty_results() {
        let body = r#"{"code":429,"message":"You have run out of API credits for the current minute.","status":"error"}"#;
        assert_eq!(
            parse_time_series("AAPL", body).unwrap_err(),
            TimeSeriesError::Provider {
                code: 429,
                message: "You have run out of API credits for the current minute.".into()
            }
        );
        let not_found = r#"{"code":400,"message":"**symbol** not found: XXXX.","status":"error","meta":{"symbol":"XXXX","interval":"1min","exchange":""}}"#;
        assert!(matches!(
            parse_time_series("XXXX", not_found),
            Err(TimeSeriesError::Provider { code: 400, .. })
        ));
        assert!(matches!(
            parse_time_series("A", r#"{"meta":{"symbol":"A"},"values":[]}"#),
            Err(TimeSeriesError::Malformed(_))
        ));
        assert!(matches!(
            parse_time_series("A", "<html>"),
            Err(TimeSeriesError::Malformed(_))
        ));
    }

    #[test]
    fn forex_series_without_volume() {
        let body = r#"{"meta":{"symbol":"EUR/USD","interval":"1min","currency_base":"Euro","currency_quote":"US Dollar","exchange_timezone":"UTC","type":"Physical Currency"},"values":[{"datetime":"2024-01-02 10:00:00","open":"1.0941","high":"1.0942","low":"1.0940","close":"1.0941"}],"status":"ok"}"#;
        let bars = parse_time_series("EUR/USD", body).unwrap();
        assert_eq!(bars[0].volume, 0.0);
        assert_eq!(bars[0].symbol, "EUR/USD");
    }

    #[test]
    fn retry_policy_by_code() {
        assert_eq!(
            retry_policy(429, 59_000),
            RetryPolicy::AfterPause(Duration::from_millis(2_000))
        );
        assert_eq!(retry_policy(401, 0), RetryPolicy::Never);
        assert_eq!(retry_policy(400, 0), RetryPolicy::Never);
        assert_eq!(retry_policy(500, 0), RetryPolicy::NextPoll);
    }

    #[test]
    fn only_closed_unsent_bars_are_sent() {
        let bars = parse_time_series("AAPL", SERIES).unwrap();
        let first = bars[0].ts_ms;
        // At first+90s the second bar (first+60s) is still forming.
        let now = first + 90_000;
        let sent = unsent_closed_bars(bars.clone(), None, now);
        assert_eq!(
            sent.iter().map(|b| b.ts_ms).collect::<Vec<_>>(),
            vec![first]
        );
        assert!(unsent_closed_bars(bars.clone(), Some(first), now).is_empty());
        assert_eq!(
            unsent_closed_bars(bars, Some(first), first + 120_000).len(),
            1
        );
    }

    #[test]
    fn outputsize_covers_the_gap() {
        assert_eq!(outputsize(None, 390, 0), 390);
        assert_eq!(outputsize(None, 99_999, 0), MAX_OUTPUTSIZE);
        assert_eq!(outputsize(Some(0), 390, 5 * MINUTE_MS), 7);
        assert_eq!(outputsize(Some(0), 390, 0), 2);
    }

    fn cursor(entries: &[(&str, i64)]) -> Cursor {
        entries.iter().map(|(s, ts)| (s.to_string(), *ts)).collect()
    }

    #[test]
    fn a_loaded_cursor_resumes_after_its_bar_with_an_outputsize_covering_the_gap() {
        let bars = parse_time_series("AAPL", SERIES).unwrap();
        let first = bars[0].ts_ms;
        let progress = Progress::new(cursor(&[("AAPL", first)]));
        let previous = progress.last_sent("AAPL");
        let now = first + 10 * MINUTE_MS;
        assert_eq!(outputsize(previous, 390, now), 12, "not a second backfill");
        let fresh = unsent_closed_bars(bars, previous, now);
        assert_eq!(
            fresh.iter().map(|b| b.ts_ms).collect::<Vec<_>>(),
            [first + MINUTE_MS]
        );
        assert_eq!(progress.last_sent("MSFT"), None, "no cursor: backfill");
        assert!(!progress.unacknowledged());
    }

    #[test]
    fn the_cursor_moves_only_once_kafka_acknowledged_every_bar() {
        let mut progress = Progress::new(cursor(&[("AAPL", 1_000)]));
        assert_eq!(progress.settle(true, 0), Settlement::Idle);
        progress.record_sent("AAPL", 2_000, 0);
        progress.record_sent("MSFT", 5_000, 0);
        assert!(progress.unacknowledged());
        // A flush that timed out: the bars may still arrive; the next poll continues after them.
        assert_eq!(progress.settle(false, 0), Settlement::Pending);
        assert_eq!(progress.delivered(), &cursor(&[("AAPL", 1_000)]));
        assert_eq!(progress.last_sent("AAPL"), Some(2_000));
        assert_eq!(progress.settle(true, 0), Settlement::Acknowledged);
        assert_eq!(
            progress.delivered(),
            &cursor(&[("AAPL", 2_000), ("MSFT", 5_000)])
        );
        assert!(!progress.unacknowledged());
    }

    #[test]
    fn a_failed_delivery_rewinds_to_the_cursor_and_older_failures_do_not() {
        let mut progress = Progress::new(cursor(&[("AAPL", 1_000)]));
        // Three failures before these bars were sent (a tick, say): not theirs.
        progress.record_sent("AAPL", 2_000, 3);
        assert_eq!(progress.settle(true, 3), Settlement::Acknowledged);

        progress.record_sent("AAPL", 3_000, 3);
        progress.record_sent("MSFT", 5_000, 3);
        // The flush returned, but a message failed: which one is unknown, so every unacknowledged bar is
        // fetched again (MSFT, never acknowledged, is backfilled again).
        assert_eq!(progress.settle(true, 4), Settlement::Rewound);
        assert_eq!(progress.delivered(), &cursor(&[("AAPL", 2_000)]));
        assert_eq!(progress.last_sent("AAPL"), Some(2_000));
        assert_eq!(progress.last_sent("MSFT"), None);
        assert!(!progress.unacknowledged());

        // After the rewind the count of 4 is the new baseline.
        progress.record_sent("AAPL", 3_000, 4);
        assert_eq!(progress.settle(true, 4), Settlement::Acknowledged);
        assert_eq!(progress.delivered(), &cursor(&[("AAPL", 3_000)]));
    }

    #[test]
    fn a_failure_while_the_flush_is_pending_rewinds_too() {
        let mut progress = Progress::new(Cursor::new());
        progress.record_sent("AAPL", 2_000, 0);
        assert_eq!(progress.settle(false, 0), Settlement::Pending);
        progress.record_sent("AAPL", 3_000, 0);
        assert_eq!(progress.settle(false, 1), Settlement::Rewound);
        assert_eq!(progress.last_sent("AAPL"), None);
    }

    #[test]
    fn cursor_survives_a_save_and_is_described_by_its_oldest_symbol() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CURSOR_FILE);
        let mut file = open_cursor(&path).unwrap();
        assert!(file.get().is_empty());
        assert_eq!(describe_cursor(file.get()), None);
        *file.get_mut() = cursor(&[("AAPL", 1_704_229_140_000), ("EUR/USD", 1_704_229_080_000)]);
        file.save().unwrap();
        let reopened = open_cursor(&path).unwrap();
        assert_eq!(reopened.get().get("EUR/USD"), Some(&1_704_229_080_000));
        assert_eq!(
            describe_cursor(reopened.get()).unwrap(),
            "2 symbol(s), the oldest EUR/USD at 2024-01-02T20:58:00Z"
        );
    }

    #[test]
    fn a_full_answer_that_does_not_reach_the_cursor_is_a_gap() {
        let bars = parse_time_series("AAPL", SERIES).unwrap();
        let first = bars[0].ts_ms;
        // The answer reaches back to the bar after the cursor: nothing missing.
        assert_eq!(uncovered_gap(&bars, 2, Some(first - MINUTE_MS)), None);
        assert_eq!(uncovered_gap(&bars, 2, Some(first)), None);
        assert_eq!(
            uncovered_gap(&bars, 2, Some(first - 3 * MINUTE_MS)),
            Some((first - 3 * MINUTE_MS, first))
        );
        // Fewer values than asked for: the provider has nothing older, so nothing was left out.
        assert_eq!(uncovered_gap(&bars, 5, Some(first - 3 * MINUTE_MS)), None);
        assert_eq!(
            uncovered_gap(&bars, 2, None),
            None,
            "a backfill has no cursor"
        );
    }

    #[test]
    fn websocket_frames() {
        let price = r#"{"event":"price","symbol":"AAPL","currency":"USD","exchange":"NASDAQ","mic_code":"XNAS","type":"Common Stock","timestamp":1700000000,"price":189.43,"day_volume":40123456}"#;
        let PriceEvent::Tick { tick, day_volume } = parse_ws_frame(price).unwrap() else {
            panic!("not a tick")
        };
        assert_eq!(
            (tick.ts_ms, tick.price, tick.size, tick.kind),
            (1_700_000_000_000, 189.43, 0.0, TradeKind::Tick)
        );
        assert_eq!(day_volume, Some(40_123_456.0));
        assert_eq!(
            parse_ws_frame(r#"{"event":"heartbeat","status":"ok"}"#).unwrap(),
            PriceEvent::Heartbeat
        );
        let status = r#"{"event":"subscribe-status","status":"ok","success":[{"symbol":"AAPL","exchange":"NASDAQ","mic_code":"XNAS","country":"United States","type":"Common Stock"}],"fails":[{"symbol":"NOPE"}]}"#;
        assert_eq!(
            parse_ws_frame(status).unwrap(),
            PriceEvent::SubscribeStatus {
                failed: vec!["NOPE".into()]
            }
        );
        assert!(matches!(
            parse_ws_frame(r#"{"event":"subscribe-status","status":"error","messages":["bad"]}"#)
                .unwrap(),
            PriceEvent::Error(_)
        ));
        assert!(parse_ws_frame(r#"{"symbol":"AAPL"}"#).is_err());
        assert!(parse_ws_frame(r#"{"event":"price","symbol":"AAPL","timestamp":1}"#).is_err());
    }

    #[test]
    fn protocol_subscribes_once_with_all_symbols_and_dead_letters_refusals() {
        let (emitter, sink) = memory_emitter(&["AAPL"]);
        let mut protocol = PriceProtocol::new(emitter, vec!["AAPL".into(), "EUR/USD".into()]);
        assert_eq!(
            protocol.subscribe_messages(),
            vec![r#"{"action":"subscribe","params":{"symbols":"AAPL,EUR/USD"}}"#.to_string()]
        );
        protocol.on_text(r#"{"event":"subscribe-status","status":"ok","success":[],"fails":[{"symbol":"EUR/USD"}]}"#);
        let now_s = now_ms() / 1000;
        for day_volume in [1000, 1250, 1250, 40] {
            protocol.on_text(&format!(
                r#"{{"event":"price","symbol":"AAPL","timestamp":{now_s},"price":1.5,"day_volume":{day_volume}}}"#
            ));
        }
        let ticks = sink.on_topic("market.trades.v1");
        let sizes: Vec<f64> = ticks
            .iter()
            .map(|t| t.payload["size"].as_f64().unwrap())
            .collect();
        // First tick: nothing to compare with; a smaller day volume is a new day's count.
        assert_eq!(sizes, [0.0, 250.0, 0.0, 0.0]);
        assert!(ticks.iter().all(|t| t.payload["kind"] == "tick"));
        let letters = sink.on_topic("market.deadletter.v1");
        assert_eq!(letters[0].payload["reason_code"], "provider_error");
        assert!(letters[0].payload["reason"]
            .as_str()
            .unwrap()
            .contains("EUR/USD"));
    }
}
