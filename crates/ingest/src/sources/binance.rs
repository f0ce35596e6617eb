//! Binance public combined stream: `<symbol>@trade` and `<symbol>@kline_1m`, of which only closed klines
//! (`k.x == true`) become bars: an open kline is a bar still changing. No key is needed for market data.

use std::sync::Arc;

use serde::Deserialize;

use crate::emitter::Emitter;
use crate::messages::{Bar, RejectCode, Side, Source, Trade};
use crate::validation::TimeCheck;
use crate::ws::WsProtocol;

pub const SOURCE: &str = Source::Binance.as_str();

/// What one frame means to us.
#[derive(Debug, Clone, PartialEq)]
pub enum BinanceEvent {
    Trade(Trade),
    ClosedKline(Bar),
    /// A kline update for the minute still in progress.
    OpenKline,
    /// Well-formed but not market data (subscription replies, other event types).
    Other,
}

#[derive(Deserialize)]
struct Envelope {
    data: Option<serde_json::Value>,
    // Replies to SUBSCRIBE requests: {"result": null, "id": 1}
    id: Option<serde_json::Value>,
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

/// Parse a combined-stream frame (`{"stream": ..., "data": {...}}`) or a raw-stream payload.
pub fn parse_frame(text: &str) -> Result<BinanceEvent, String> {
    let envelope: Envelope =
        serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
    let data = match envelope.data {
        Some(data) => data,
        None if envelope.id.is_some() => return Ok(BinanceEvent::Other),
        None => serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?,
    };
    let event = data
        .get("e")
        .and_then(|e| e.as_str())
        .ok_or("frame without an event type \"e\"")?;
    match event {
        "trade" => {
            let t: TradePayload =
                serde_json::from_value(data).map_err(|e| format!("malformed trade: {e}"))?;
            let mut trade = Trade::new(
                SOURCE,
                &t.s,
                t.trade_time,
                number("p", &t.p)?,
                number("q", &t.q)?,
            );
            trade.trade_id = Some(t.t.to_string());
            trade.side =
                t.m.map(|maker_bought| if maker_bought { Side::Sell } else { Side::Buy });
            Ok(BinanceEvent::Trade(trade))
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
            let volume = number("v", &k.v)?;
            let quote_volume = k.q.as_deref().map(|q| number("q", q)).transpose()?;
            let trade_id = |id: Option<i64>| id.filter(|&id| id >= 0);
            Ok(BinanceEvent::ClosedKline(Bar {
                trades: Some(k.n),
                vwap: quote_volume.filter(|_| volume > 0.0).map(|q| q / volume),
                taker_buy_volume: k.taker_buy.as_deref().map(|v| number("V", v)).transpose()?,
                first_trade_id: trade_id(k.f),
                last_trade_id: trade_id(k.last),
                ..Bar::ohlcv(
                    SOURCE,
                    &k.s,
                    k.t,
                    number("o", &k.o)?,
                    number("h", &k.h)?,
                    number("l", &k.l)?,
                    number("c", &k.c)?,
                    volume,
                )
            }))
        }
        _ => Ok(BinanceEvent::Other),
    }
}

/// `/stream?streams=btcusdt@trade/btcusdt@kline_1m/...`
pub fn stream_url(base: &str, symbols: &[String], trades: bool, klines: bool) -> String {
    let mut streams = Vec::new();
    for symbol in symbols {
        let lower = symbol.to_ascii_lowercase();
        if trades {
            streams.push(format!("{lower}@trade"));
        }
        if klines {
            streams.push(format!("{lower}@kline_1m"));
        }
    }
    format!(
        "{}/stream?streams={}",
        base.trim_end_matches('/'),
        streams.join("/")
    )
}

pub struct BinanceProtocol {
    pub emitter: Arc<Emitter>,
}

impl WsProtocol for BinanceProtocol {
    fn subscribe_messages(&self) -> Vec<String> {
        // The combined-stream URL is the subscription: a reconnect to it resubscribes.
        Vec::new()
    }

    fn on_text(&mut self, text: &str) -> Vec<String> {
        match parse_frame(text) {
            Ok(BinanceEvent::Trade(trade)) => {
                self.emitter.trade(&trade, Some(text), TimeCheck::Live);
            }
            Ok(BinanceEvent::ClosedKline(bar)) => {
                self.emitter.bar(&bar, Some(text), TimeCheck::Live);
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
            BinanceEvent::Other
        );
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
    fn stream_url_lists_lowercase_streams() {
        let url = stream_url(
            "wss://stream.binance.com:9443/",
            &["BTCUSDT".into(), "ethusdt".into()],
            true,
            true,
        );
        assert_eq!(
            url,
            "wss://stream.binance.com:9443/stream?streams=btcusdt@trade/btcusdt@kline_1m/ethusdt@trade/ethusdt@kline_1m"
        );
    }

    #[test]
    fn protocol_routes_trades_and_dead_letters_garbage() {
        let (emitter, sink) = memory_emitter(&["BTCUSDT"]);
        let mut protocol = BinanceProtocol { emitter };
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
