//! Binance public market streams: `<symbol>@trade` and `<symbol>@kline_1m`, of which only closed klines
//! (`k.x == true`) become bars: an open kline is a bar still changing. No key is needed for market data.
//!
//! Connections. Binance serves at most 1,024 streams on one connection and accepts at most 5 incoming messages
//! a second on it (pings, pongs and requests alike; over that it disconnects, and repeated offenders' IPs are
//! banned); an IP may open 300 connections per 5 minutes. So [`plan_connections`] spreads a feed's symbols over
//! as many connections as it needs, both streams of a symbol on the same connection because that connection's
//! [`BinanceProtocol`] keeps the symbol's state. Each connection dials the combined endpoint `<ws_url>/stream`
//! and subscribes with `SUBSCRIBE` requests of at most [`STREAMS_PER_SUBSCRIBE`] streams, after every
//! (re)connect; ws.rs spaces everything it sends by [`MIN_SEND_INTERVAL`]. The connections are dialled
//! [`DIAL_STAGGER`] apart. Replies are logged; a refused request is dead-lettered (`provider_error`).

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tracing::info;

use crate::emitter::Emitter;
use crate::messages::{Bar, RejectCode, Side, Source, Trade};
use crate::sources::binance_gaps::{GapSender, GapTracker, SharedMemory};
use crate::validation::TimeCheck;
use crate::ws::WsProtocol;

pub const SOURCE: &str = Source::Binance.as_str();

/// Binance's ceiling, and the default of `--streams-per-connection`.
pub const MAX_STREAMS_PER_CONNECTION: usize = 1024;

/// Binance documents no limit on a request's `params`, but the request is one WebSocket frame: 200 stream names
/// (about 4 KB) stay far below any frame limit, a full connection still needs only 6 requests (2.4 s at
/// [`MIN_SEND_INTERVAL`]), and a refused request leaves at most 200 streams unsubscribed.
pub const STREAMS_PER_SUBSCRIBE: usize = 200;

/// 5 incoming messages a second per connection is Binance's limit, and the pong to its ping (every 20 s) cannot
/// be delayed: 400 ms apart, paced messages are at most 3 in any second, 4 with a pong.
pub const MIN_SEND_INTERVAL: Duration = Duration::from_millis(400);

/// Between the first dials of a feed's connections: one a second is the sustained rate of 300 connections per
/// 5 minutes per IP, so restarting a big feed (or several) never bursts over it.
pub const DIAL_STAGGER: Duration = Duration::from_secs(1);

/// What one frame means to us.
#[derive(Debug, Clone, PartialEq)]
pub enum BinanceEvent {
    Trade(Trade),
    ClosedKline(Bar),
    /// A kline update for the minute still in progress.
    OpenKline,
    /// The answer to one of our requests: `{"result": null, "id": 1}` confirms a `SUBSCRIBE`.
    Reply {
        id: Value,
        result: Value,
    },
    /// A refused request: `{"code": 2, "msg": "Invalid request: ...", "id": 1}` (the id only when Binance could
    /// read it).
    ErrorReply {
        code: i64,
        msg: String,
        id: Value,
    },
    /// Well-formed but not market data (other event types).
    Other,
}

#[derive(Deserialize)]
struct TradePayload {
    s: String,
    t: i64,
    p: String,
    q: String,
    #[serde(rename = "T")]
    trade_time: i64,
    /// Buyer is the maker: the taker sold.
    #[serde(default)]
    m: Option<bool>,
}

#[derive(Deserialize)]
struct KlinePayload {
    k: Kline,
}

#[derive(Deserialize)]
struct Kline {
    t: i64,
    s: String,
    i: String,
    o: String,
    h: String,
    l: String,
    c: String,
    v: String,
    n: i64,
    x: bool,
    /// First and last trade id of the minute (-1 when it had none).
    f: Option<i64>,
    #[serde(rename = "L")]
    last: Option<i64>,
    /// Quote-asset volume: Σ price·qty, so q / v is the bar's VWAP.
    q: Option<String>,
    /// Taker-buy base-asset volume.
    #[serde(rename = "V")]
    taker_buy: Option<String>,
}

fn number(field: &str, text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .map_err(|_| format!("field {field} is not a number: {text:?}"))
}

/// A frame that answers a request rather than carrying an event: it has no event type `e`.
fn reply(frame: &Value) -> Option<BinanceEvent> {
    let object = frame.as_object().filter(|o| !o.contains_key("e"))?;
    let id = object.get("id").cloned().unwrap_or(Value::Null);
    if let Some(code) = object.get("code") {
        return Some(BinanceEvent::ErrorReply {
            code: code.as_i64().unwrap_or(-1),
            msg: object
                .get("msg")
                .and_then(Value::as_str)
                .unwrap_or("no message")
                .to_string(),
            id,
        });
    }
    (object.contains_key("result") || object.contains_key("id")).then(|| BinanceEvent::Reply {
        id,
        result: object.get("result").cloned().unwrap_or(Value::Null),
    })
}

/// One trade as Binance reports it, on the `@trade` stream or from `/api/v3/historicalTrades` (binance_rest):
/// one mapping, so a trade fetched again after a gap is the same message the stream sent.
pub fn trade_from_wire(
    symbol: &str,
    id: i64,
    time_ms: i64,
    price: f64,
    quantity: f64,
    buyer_is_maker: Option<bool>,
) -> Trade {
    let mut trade = Trade::new(SOURCE, symbol, time_ms, price, quantity);
    trade.trade_id = Some(id.to_string());
    // The buyer was the maker: the taker, who sets the side, sold.
    trade.side =
        buyer_is_maker.map(|maker_bought| if maker_bought { Side::Sell } else { Side::Buy });
    trade
}

/// A closed 1-minute kline's numbers, from the stream's `k` object or a REST `/api/v3/klines` row.
pub struct KlineFields<'a> {
    pub symbol: &'a str,
    pub open_time_ms: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub trades: i64,
    /// Quote-asset volume: Σ price·qty, so quote / volume is the bar's VWAP.
    pub quote_volume: Option<f64>,
    pub taker_buy_volume: Option<f64>,
    /// -1 (a minute without trades) and absent (REST rows carry no ids) both become None.
    pub first_trade_id: Option<i64>,
    pub last_trade_id: Option<i64>,
}

/// The bar of a closed kline; shared by the stream and binance_rest so both give the same bar.
pub fn closed_kline_bar(k: &KlineFields) -> Bar {
    let trade_id = |id: Option<i64>| id.filter(|&id| id >= 0);
    Bar {
        trades: Some(k.trades),
        vwap: k
            .quote_volume
            .filter(|_| k.volume > 0.0)
            .map(|q| q / k.volume),
        taker_buy_volume: k.taker_buy_volume,
        first_trade_id: trade_id(k.first_trade_id),
        last_trade_id: trade_id(k.last_trade_id),
        ..Bar::ohlcv(
            SOURCE,
            k.symbol,
            k.open_time_ms,
            k.open,
            k.high,
            k.low,
            k.close,
            k.volume,
        )
    }
}

/// Parse a combined-stream frame (`{"stream": ..., "data": {...}}`), a raw-stream payload, or a reply.
pub fn parse_frame(text: &str) -> Result<BinanceEvent, String> {
    let mut frame: Value =
        serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
    let data = match frame.get_mut("data") {
        Some(data) => data.take(),
        None => match reply(&frame) {
            Some(reply) => return Ok(reply),
            None => frame,
        },
    };
    let event = data
        .get("e")
        .and_then(|e| e.as_str())
        .ok_or("frame without an event type \"e\"")?;
    match event {
        "trade" => {
            let t: TradePayload =
                serde_json::from_value(data).map_err(|e| format!("malformed trade: {e}"))?;
            Ok(BinanceEvent::Trade(trade_from_wire(
                &t.s,
                t.t,
                t.trade_time,
                number("p", &t.p)?,
                number("q", &t.q)?,
                t.m,
            )))
        }
        "kline" => {
            let KlinePayload { k } =
                serde_json::from_value(data).map_err(|e| format!("malformed kline: {e}"))?;
            if k.i != "1m" {
                return Err(format!("kline interval {:?}, expected 1m", k.i));
            }
            if !k.x {
                return Ok(BinanceEvent::OpenKline);
            }
            Ok(BinanceEvent::ClosedKline(closed_kline_bar(&KlineFields {
                symbol: &k.s,
                open_time_ms: k.t,
                open: number("o", &k.o)?,
                high: number("h", &k.h)?,
                low: number("l", &k.l)?,
                close: number("c", &k.c)?,
                volume: number("v", &k.v)?,
                trades: k.n,
                quote_volume: k.q.as_deref().map(|q| number("q", q)).transpose()?,
                taker_buy_volume: k.taker_buy.as_deref().map(|v| number("V", v)).transpose()?,
                first_trade_id: k.f,
                last_trade_id: k.last,
            })))
        }
        _ => Ok(BinanceEvent::Other),
    }
}

/// The combined endpoint, subscribed to by request: events arrive wrapped as `{"stream": .., "data": ..}`.
pub fn endpoint_url(base: &str) -> String {
    format!("{}/stream", base.trim_end_matches('/'))
}

/// Which of a symbol's streams a feed wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamKinds {
    pub trades: bool,
    pub klines: bool,
}

impl StreamKinds {
    pub const BOTH: StreamKinds = StreamKinds {
        trades: true,
        klines: true,
    };

    pub fn per_symbol(self) -> usize {
        usize::from(self.trades) + usize::from(self.klines)
    }

    /// Stream names of `symbols`, lower-case as Binance wants them, a symbol's streams side by side.
    pub fn streams(self, symbols: &[String]) -> Vec<String> {
        let mut streams = Vec::with_capacity(symbols.len() * self.per_symbol());
        for symbol in symbols {
            let lower = symbol.to_ascii_lowercase();
            if self.trades {
                streams.push(format!("{lower}@trade"));
            }
            if self.klines {
                streams.push(format!("{lower}@kline_1m"));
            }
        }
        streams
    }
}

/// What one connection subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionPlan {
    /// Upper-case, as messages carry them.
    pub symbols: Vec<String>,
    pub streams: Vec<String>,
}

/// Spread `symbols` (any case; repeats and blanks dropped) over the fewest connections of at most
/// `streams_per_connection` streams, as evenly as possible (each connection keeps headroom alike), in the
/// given order. A symbol's streams never straddle two connections.
pub fn plan_connections(
    symbols: &[String],
    kinds: StreamKinds,
    streams_per_connection: usize,
) -> Result<Vec<ConnectionPlan>, String> {
    let per_symbol = kinds.per_symbol();
    if per_symbol == 0 {
        return Err("binance: no stream kind left to subscribe to".into());
    }
    if streams_per_connection > MAX_STREAMS_PER_CONNECTION {
        return Err(format!(
            "binance: --streams-per-connection {streams_per_connection} is over Binance's limit of \
             {MAX_STREAMS_PER_CONNECTION}"
        ));
    }
    let symbols_per_connection = streams_per_connection / per_symbol;
    if symbols_per_connection == 0 {
        return Err(format!(
            "binance: --streams-per-connection {streams_per_connection} cannot hold one symbol's \
             {per_symbol} streams"
        ));
    }
    let mut unique: Vec<String> = Vec::with_capacity(symbols.len());
    let mut seen = std::collections::HashSet::new();
    for symbol in symbols {
        let upper = symbol.trim().to_ascii_uppercase();
        if !upper.is_empty() && seen.insert(upper.clone()) {
            unique.push(upper);
        }
    }
    if unique.is_empty() {
        return Err("binance: no symbols".into());
    }
    let connections = unique.len().div_ceil(symbols_per_connection);
    let (base, larger) = (unique.len() / connections, unique.len() % connections);
    let mut rest = unique.as_slice();
    Ok((0..connections)
        .map(|index| {
            let (taken, remaining) = rest.split_at(base + usize::from(index < larger));
            rest = remaining;
            ConnectionPlan {
                symbols: taken.to_vec(),
                streams: kinds.streams(taken),
            }
        })
        .collect())
}

/// `SUBSCRIBE` requests for `streams`, `per_request` streams each, with ids 1, 2, ...: unsigned integers, which
/// every Binance endpoint accepts.
pub fn subscribe_requests(streams: &[String], per_request: usize) -> Vec<String> {
    streams
        .chunks(per_request.max(1))
        .enumerate()
        .map(|(index, chunk)| {
            serde_json::json!({"method": "SUBSCRIBE", "params": chunk, "id": index + 1}).to_string()
        })
        .collect()
}

/// One connection's protocol: its symbols' frames, its subscription, its replies.
pub struct BinanceProtocol {
    emitter: Arc<Emitter>,
    /// Upper-case: the connection's share of the feed.
    symbols: Vec<String>,
    kinds: StreamKinds,
    /// Names the connection in log lines and dead letters, `binance[2/3]`.
    label: String,
    /// Trade-id continuity of this connection's symbols, and where its gaps go to be repaired.
    gaps: Option<(GapTracker, GapSender)>,
}

impl BinanceProtocol {
    /// The only constructor: per-symbol state is set up here. Subscribes to both streams of each symbol unless
    /// [`BinanceProtocol::with_kinds`] says otherwise.
    pub fn new(emitter: Arc<Emitter>, symbols: Vec<String>) -> Self {
        Self {
            emitter,
            symbols,
            kinds: StreamKinds::BOTH,
            label: SOURCE.to_string(),
            gaps: None,
        }
    }

    /// Track trade-id continuity and send each gap found to the repair task (binance_gaps::run_repairs).
    pub fn with_gap_tracking(mut self, repairs: Option<(GapSender, SharedMemory)>) -> Self {
        self.gaps = repairs.map(|(sender, memory)| {
            let tracker = GapTracker::remembering(self.kinds.klines, memory, &self.symbols);
            (tracker, sender)
        });
        self
    }

    pub fn with_kinds(mut self, kinds: StreamKinds) -> Self {
        self.kinds = kinds;
        self
    }

    pub fn with_label(mut self, label: String) -> Self {
        self.label = label;
        self
    }

    fn streams(&self) -> Vec<String> {
        self.kinds.streams(&self.symbols)
    }

    fn on_reply(&self, id: &Value, result: &Value) {
        let streams = self.streams().len();
        let requests = streams.div_ceil(STREAMS_PER_SUBSCRIBE);
        let ours = id
            .as_u64()
            .and_then(|id| usize::try_from(id).ok())
            .filter(|id| (1..=requests).contains(id));
        match ours {
            Some(id) if result.is_null() => {
                let covered = STREAMS_PER_SUBSCRIBE.min(streams - (id - 1) * STREAMS_PER_SUBSCRIBE);
                info!(
                    "{}: subscribed to {covered} stream(s) (SUBSCRIBE {id} of {requests})",
                    self.label
                );
            }
            _ => info!("{}: reply to request {id}: {result}", self.label),
        }
    }
}

impl WsProtocol for BinanceProtocol {
    fn subscribe_messages(&self) -> Vec<String> {
        subscribe_requests(&self.streams(), STREAMS_PER_SUBSCRIBE)
    }

    fn on_text(&mut self, text: &str) -> Vec<String> {
        match parse_frame(text) {
            Ok(BinanceEvent::Trade(trade)) => {
                let accepted = self.emitter.trade(&trade, Some(text), TimeCheck::Live);
                let id = trade
                    .trade_id
                    .as_deref()
                    .and_then(|id| id.parse::<i64>().ok());
                if let (true, Some(id), Some((tracker, repairs))) =
                    (accepted, id, self.gaps.as_mut())
                {
                    if let Some(missed) = tracker.on_trade(&trade.symbol, id, trade.ts_ms) {
                        repairs.send(missed);
                    }
                }
            }
            Ok(BinanceEvent::ClosedKline(bar)) => {
                if let Some((tracker, repairs)) = self.gaps.as_mut() {
                    if let Some(missed) =
                        tracker.on_closed_kline(&bar.symbol, bar.ts_ms, bar.first_trade_id)
                    {
                        repairs.send(missed);
                    }
                }
                self.emitter.bar(&bar, Some(text), TimeCheck::Live);
            }
            Ok(BinanceEvent::Reply { id, result }) => self.on_reply(&id, &result),
            Ok(BinanceEvent::ErrorReply { code, msg, id }) => {
                let request = match id {
                    Value::Null => "a request".to_string(),
                    id => format!("request {id}"),
                };
                // The dead letter's own warning is the one log line about it.
                let detail = format!("{}: {request} refused, code {code}: {msg}", self.label);
                self.emitter
                    .dead_letter(SOURCE, RejectCode::ProviderError, &detail, text);
            }
            Ok(BinanceEvent::OpenKline | BinanceEvent::Other) => {}
            Err(reason) => self.on_malformed(&reason, text),
        }
        Vec::new()
    }

    fn on_malformed(&mut self, reason: &str, raw: &str) {
        self.emitter
            .dead_letter(SOURCE, RejectCode::ProviderMalformed, reason, raw);
    }

    fn on_connected(&mut self) {
        if let Some((tracker, _)) = self.gaps.as_mut() {
            tracker.on_connected();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::emitter::test_support::memory_emitter;
    use crate::messages::now_ms;

    const TRADE: &str = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1700000000123,"s":"BTCUSDT","t":3140590297,"p":"37012.34000000","q":"0.00150000","T":1700000000120,"m":true,"M":true}}"#;

    fn kline(closed: bool) -> String {
        format!(
            r#"{{"stream":"btcusdt@kline_1m","data":{{"e":"kline","E":1700000060001,"s":"BTCUSDT","k":{{"t":1700000040000,"T":1700000099999,"s":"BTCUSDT","i":"1m","f":100,"L":200,"o":"37000.00","c":"37010.00","h":"37020.00","l":"36990.00","v":"2.00000000","n":101,"x":{closed},"q":"74020.00000000","V":"1.0","Q":"37010.0","B":"0"}}}}}}"#
        )
    }

    #[test]
    fn parses_a_combined_stream_trade() {
        let BinanceEvent::Trade(trade) = parse_frame(TRADE).unwrap() else {
            panic!("not a trade")
        };
        assert_eq!(trade.symbol, "BTCUSDT");
        assert_eq!(
            trade.ts_ms, 1_700_000_000_120,
            "trade time T, not event time E"
        );
        assert_eq!(trade.price, 37012.34);
        assert_eq!(trade.size, 0.0015);
        assert_eq!(trade.trade_id.as_deref(), Some("3140590297"));
        assert_eq!(trade.side, Some(Side::Sell), "m: the buyer was the maker");
    }

    #[test]
    fn closed_kline_becomes_a_bar_with_vwap_and_open_kline_is_skipped() {
        let BinanceEvent::ClosedKline(bar) = parse_frame(&kline(true)).unwrap() else {
            panic!("not a bar")
        };
        assert_eq!(bar.ts_ms, 1_700_000_040_000);
        assert_eq!(
            (bar.open, bar.high, bar.low, bar.close),
            (37000.0, 37020.0, 36990.0, 37010.0)
        );
        assert_eq!(bar.volume, 2.0);
        assert_eq!(bar.trades, Some(101));
        assert_eq!(bar.vwap, Some(37010.0));
        assert_eq!(bar.taker_buy_volume, Some(1.0));
        assert_eq!(
            (bar.first_trade_id, bar.last_trade_id),
            (Some(100), Some(200))
        );
        assert_eq!(parse_frame(&kline(false)).unwrap(), BinanceEvent::OpenKline);
    }

    #[test]
    fn raw_stream_payloads_and_subscription_replies() {
        let raw = r#"{"e":"trade","E":1,"s":"ETHUSDT","t":7,"p":"2000.5","q":"1","T":2,"m":false,"M":true}"#;
        assert!(
            matches!(parse_frame(raw).unwrap(), BinanceEvent::Trade(t) if t.symbol == "ETHUSDT")
        );
        assert_eq!(
            parse_frame(r#"{"result":null,"id":1}"#).unwrap(),
            BinanceEvent::Reply {
                id: 1.into(),
                result: Value::Null
            }
        );
        assert_eq!(
            parse_frame(r#"{"code": 2, "msg": "Invalid request: too many parameters"}"#).unwrap(),
            BinanceEvent::ErrorReply {
                code: 2,
                msg: "Invalid request: too many parameters".into(),
                id: Value::Null
            }
        );
        assert!(matches!(
            parse_frame(r#"{"code": 0, "msg": "Unknown property","id": 7}"#).unwrap(),
            BinanceEvent::ErrorReply { code: 0, id, .. } if id == 7
        ));
        assert_eq!(
            parse_frame(r#"{"stream":"x","data":{"e":"24hrTicker"}}"#).unwrap(),
            BinanceEvent::Other
        );
    }

    #[test]
    fn malformed_frames_are_errors() {
        assert!(parse_frame("not json")
            .unwrap_err()
            .contains("malformed JSON"));
        assert!(parse_frame(r#"{"stream":"x","data":{"s":"BTCUSDT"}}"#)
            .unwrap_err()
            .contains("event type"));
        let bad_price = TRADE.replace("37012.34000000", "abc");
        assert!(parse_frame(&bad_price).unwrap_err().contains("field p"));
        let missing_time = TRADE.replace(r#","T":1700000000120"#, "");
        assert!(parse_frame(&missing_time)
            .unwrap_err()
            .contains("malformed trade"));
    }

    #[test]
    fn every_control_frame_fixture_is_a_reply_or_an_event() {
        let fixture = include_str!("../../../../tests/fixtures/wire/binance/control_frames.jsonl");
        for line in fixture.lines().filter(|l| !l.trim().is_empty()) {
            let event = parse_frame(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            let is_error = line.contains("\"code\"");
            assert_eq!(
                matches!(event, BinanceEvent::ErrorReply { .. }),
                is_error,
                "{line}: {event:?}"
            );
        }
    }

    #[test]
    fn endpoint_is_the_combined_stream_path() {
        assert_eq!(
            endpoint_url("wss://stream.binance.com:9443/"),
            "wss://stream.binance.com:9443/stream"
        );
    }

    fn symbols(count: usize) -> Vec<String> {
        (0..count).map(|i| format!("sym{i:04}usdt")).collect()
    }

    /// Asserts what every plan must hold and returns the streams per connection.
    fn checked_plan(
        input: &[String],
        kinds: StreamKinds,
        limit: usize,
    ) -> (Vec<ConnectionPlan>, Vec<usize>) {
        let plan = plan_connections(input, kinds, limit).unwrap();
        let mut all_streams = std::collections::HashSet::new();
        for connection in &plan {
            assert!(
                connection.streams.len() <= limit,
                "a connection over the limit"
            );
            assert_eq!(
                connection.streams,
                kinds.streams(&connection.symbols),
                "the connection subscribes exactly its own symbols' streams"
            );
            for stream in &connection.streams {
                assert!(all_streams.insert(stream.clone()), "{stream} twice");
            }
        }
        let named: Vec<String> = input
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let expected: std::collections::HashSet<String> =
            kinds.streams(&named).into_iter().collect();
        assert_eq!(all_streams, expected, "every stream exactly once");
        let sizes = plan.iter().map(|c| c.streams.len()).collect();
        (plan, sizes)
    }

    #[test]
    fn plan_spreads_1500_symbols_over_3_connections_keeping_a_symbols_streams_together() {
        let input = symbols(1500);
        let (plan, sizes) = checked_plan(&input, StreamKinds::BOTH, MAX_STREAMS_PER_CONNECTION);
        assert_eq!(sizes, [1000, 1000, 1000]);
        assert_eq!(
            plan[0].symbols[0], "SYM0000USDT",
            "upper-case, in the given order"
        );
        assert_eq!(plan[2].symbols.last().unwrap(), "SYM1499USDT");
        for connection in &plan {
            for symbol in &connection.symbols {
                let lower = symbol.to_ascii_lowercase();
                assert!(connection.streams.contains(&format!("{lower}@trade")));
                assert!(connection.streams.contains(&format!("{lower}@kline_1m")));
            }
        }
    }

    #[test]
    fn plan_without_klines_halves_the_streams() {
        let trades_only = StreamKinds {
            trades: true,
            klines: false,
        };
        let (plan, sizes) = checked_plan(&symbols(1500), trades_only, MAX_STREAMS_PER_CONNECTION);
        assert_eq!(sizes, [750, 750]);
        assert!(plan[0].streams.iter().all(|s| s.ends_with("@trade")));
        let (_, sizes) = checked_plan(&symbols(1024), trades_only, MAX_STREAMS_PER_CONNECTION);
        assert_eq!(sizes, [1024], "exactly full is one connection");
        let (_, sizes) = checked_plan(&symbols(1025), trades_only, MAX_STREAMS_PER_CONNECTION);
        assert_eq!(sizes, [513, 512]);
    }

    #[test]
    fn plan_respects_a_smaller_limit_and_refuses_impossible_ones() {
        // An odd limit cannot hold half a symbol: 5 streams hold 2 symbols.
        let (_, sizes) = checked_plan(&symbols(5), StreamKinds::BOTH, 5);
        assert_eq!(sizes, [4, 4, 2]);
        let input = vec![
            "BTCUSDT".into(),
            "btcusdt".into(),
            " ".into(),
            "ethusdt".into(),
        ];
        let (plan, _) = checked_plan(&input, StreamKinds::BOTH, 1024);
        assert_eq!(
            plan[0].symbols,
            ["BTCUSDT", "ETHUSDT"],
            "repeats and blanks dropped"
        );
        assert!(plan_connections(&symbols(3), StreamKinds::BOTH, 1)
            .unwrap_err()
            .contains("cannot hold"));
        assert!(plan_connections(&symbols(3), StreamKinds::BOTH, 1025)
            .unwrap_err()
            .contains("1024"));
        let none = StreamKinds {
            trades: false,
            klines: false,
        };
        assert!(plan_connections(&symbols(3), none, 1024).is_err());
        assert!(plan_connections(&[], StreamKinds::BOTH, 1024).is_err());
    }

    #[test]
    fn subscribe_requests_chunk_the_streams_with_increasing_ids() {
        let streams = StreamKinds::BOTH.streams(&symbols(500));
        let requests = subscribe_requests(&streams, STREAMS_PER_SUBSCRIBE);
        assert_eq!(requests.len(), 5);
        let mut subscribed = Vec::new();
        for (index, request) in requests.iter().enumerate() {
            let value: Value = serde_json::from_str(request).unwrap();
            assert_eq!(value["method"], "SUBSCRIBE");
            assert_eq!(value["id"], index as u64 + 1);
            let params = value["params"].as_array().unwrap();
            assert!(params.len() <= STREAMS_PER_SUBSCRIBE);
            subscribed.extend(params.iter().map(|p| p.as_str().unwrap().to_string()));
        }
        assert_eq!(subscribed, streams, "every stream once, in order");
        assert_eq!(
            subscribe_requests(&["btcusdt@trade".into()], 200),
            [r#"{"id":1,"method":"SUBSCRIBE","params":["btcusdt@trade"]}"#]
        );
        assert!(subscribe_requests(&[], 200).is_empty());
    }

    #[test]
    fn protocol_subscribes_to_its_own_symbols_only() {
        let (emitter, _) = memory_emitter(&["BTCUSDT", "ETHUSDT"]);
        let protocol = BinanceProtocol::new(emitter.clone(), vec!["BTCUSDT".into()]);
        assert_eq!(
            protocol.subscribe_messages(),
            [r#"{"id":1,"method":"SUBSCRIBE","params":["btcusdt@trade","btcusdt@kline_1m"]}"#]
        );
        let klines_only =
            BinanceProtocol::new(emitter, vec!["ETHUSDT".into()]).with_kinds(StreamKinds {
                trades: false,
                klines: true,
            });
        assert_eq!(
            klines_only.subscribe_messages(),
            [r#"{"id":1,"method":"SUBSCRIBE","params":["ethusdt@kline_1m"]}"#]
        );
    }

    #[test]
    fn replies_are_not_letters_but_a_refused_request_is() {
        let (emitter, sink) = memory_emitter(&["BTCUSDT"]);
        let mut protocol =
            BinanceProtocol::new(emitter, vec!["BTCUSDT".into()]).with_label("binance[2/3]".into());
        assert!(protocol.on_text(r#"{"result":null,"id":1}"#).is_empty());
        assert!(protocol
            .on_text(r#"{"result":["btcusdt@trade"],"id":9}"#)
            .is_empty());
        let refused = r#"{"code": 2, "msg": "Invalid request: too many parameters", "id": 1}"#;
        protocol.on_text(refused);
        let letters = sink.on_topic("market.deadletter.v1");
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].payload["reason_code"], "provider_error");
        assert_eq!(letters[0].payload["raw"], refused);
        let reason = letters[0].payload["reason"].as_str().unwrap();
        assert!(
            reason.contains("binance[2/3]") && reason.contains("Invalid request"),
            "{reason}"
        );
    }

    #[test]
    fn protocol_routes_trades_and_dead_letters_garbage() {
        let (emitter, sink) = memory_emitter(&["BTCUSDT"]);
        let mut protocol = BinanceProtocol::new(emitter, vec!["BTCUSDT".into()]);
        let fresh = TRADE.replace("1700000000120", &now_ms().to_string());
        protocol.on_text(&fresh);
        protocol.on_text("{oops");
        protocol.on_text(&fresh.replace("BTCUSDT", "DOGEUSDT"));
        assert_eq!(sink.on_topic("market.trades.v1").len(), 1);
        let letters = sink.on_topic("market.deadletter.v1");
        assert_eq!(letters.len(), 2);
        assert_eq!(letters[0].payload["reason_code"], "provider_malformed");
        assert_eq!(letters[1].payload["reason_code"], "unknown_symbol");
    }
}
