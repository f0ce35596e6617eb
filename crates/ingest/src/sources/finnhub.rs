//! Finnhub: WebSocket trades (`?token=` is how Finnhub's socket authenticates; the URL is only logged
//! redacted), one subscribe message per symbol, JSON pings answered; company profiles from REST `profile2`
//! with the key in the `X-Finnhub-Token` header, into the compacted companies topic.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tracing::{info, warn};

use crate::emitter::Emitter;
use crate::http::{self, HttpOutcome, Pacer};
use crate::messages::{Company, Gap, GapCause, GapOutcome, RejectCode, Source, Trade};
use crate::shutdown::Shutdown;
use crate::validation::TimeCheck;
use crate::ws::WsProtocol;

pub const SOURCE: &str = Source::Finnhub.as_str();

#[derive(Debug, Clone, PartialEq)]
pub enum FinnhubFrame {
    /// Each trade with its own JSON, kept for the dead letter should it be refused.
    Trades(Vec<(Trade, String)>),
    Ping,
    /// `{"type":"error","msg":...}`: a provider error (bad symbol, too many subscriptions).
    Error(String),
    Other,
}

#[derive(Deserialize)]
struct WireTrade {
    s: String,
    p: f64,
    t: i64,
    v: f64,
    /// Trade condition codes (null or absent for most crypto prints).
    #[serde(default)]
    c: Option<Vec<String>>,
}

pub fn parse_frame(text: &str) -> Result<FinnhubFrame, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
    match value.get("type").and_then(Value::as_str) {
        Some("trade") => {
            let data = value
                .get("data")
                .and_then(Value::as_array)
                .ok_or("trade frame without a data array")?;
            data.iter()
                .map(|item| {
                    let wire: WireTrade = serde_json::from_value(item.clone())
                        .map_err(|e| format!("malformed trade: {e}"))?;
                    // No trade id: ingest derives one (contract: messages::derived_trade_id).
                    let mut trade = Trade::new(SOURCE, &wire.s, wire.t, wire.p, wire.v);
                    trade.conditions = wire.c.filter(|codes| !codes.is_empty());
                    Ok((trade, item.to_string()))
                })
                .collect::<Result<Vec<_>, String>>()
                .map(FinnhubFrame::Trades)
        }
        Some("ping") => Ok(FinnhubFrame::Ping),
        Some("error") => Ok(FinnhubFrame::Error(
            value
                .get("msg")
                .and_then(Value::as_str)
                .unwrap_or("unspecified error")
                .to_string(),
        )),
        Some(_) => Ok(FinnhubFrame::Other),
        None => Err("frame without a \"type\"".into()),
    }
}

pub fn subscribe_message(symbol: &str) -> String {
    serde_json::json!({"type": "subscribe", "symbol": symbol}).to_string()
}

pub const PONG: &str = r#"{"type":"pong"}"#;

pub struct FinnhubProtocol {
    pub emitter: Arc<Emitter>,
    pub symbols: Vec<String>,
    /// Finnhub trades carry no id, so a gap shows only as a reconnect; and its free REST plan serves neither
    /// trades nor candles (docs/gaps.md), so it is recorded, as unrepairable.
    pub reconnects: ReconnectGaps,
}

/// Reconnect gaps of a feed without trade ids: the last trade before a reconnect and the first after it, per
/// symbol, recorded on the gaps topic as unrepairable.
#[derive(Debug, Default)]
pub struct ReconnectGaps {
    last_ts: HashMap<String, i64>,
    reconnected: HashSet<String>,
}

impl ReconnectGaps {
    pub fn on_connected(&mut self) {
        self.reconnected = self.last_ts.keys().cloned().collect();
    }

    /// The gap a trade closes, if it is its symbol's first since a reconnect.
    pub fn on_trade(&mut self, symbol: &str, ts_ms: i64) -> Option<Gap> {
        let previous = self.last_ts.insert(symbol.to_string(), ts_ms);
        if !self.reconnected.remove(symbol) {
            return None;
        }
        Some(Gap {
            source: SOURCE.to_string(),
            symbol: symbol.to_string(),
            cause: GapCause::Reconnect,
            outcome: GapOutcome::Unrepairable,
            from_ts_ms: previous?,
            to_ts_ms: ts_ms,
            first_missing_id: None,
            last_missing_id: None,
            repaired_trades: 0,
            detected_ms: crate::messages::now_ms(),
        })
    }
}

impl WsProtocol for FinnhubProtocol {
    fn subscribe_messages(&self) -> Vec<String> {
        self.symbols.iter().map(|s| subscribe_message(s)).collect()
    }

    fn on_text(&mut self, text: &str) -> Vec<String> {
        match parse_frame(text) {
            Ok(FinnhubFrame::Trades(trades)) => {
                for (trade, raw) in trades {
                    if self.emitter.trade(&trade, Some(&raw), TimeCheck::Live) {
                        if let Some(gap) = self.reconnects.on_trade(&trade.symbol, trade.ts_ms) {
                            self.emitter.gap(&gap);
                        }
                    }
                }
            }
            Ok(FinnhubFrame::Ping) => return vec![PONG.to_string()],
            Ok(FinnhubFrame::Error(message)) => {
                self.emitter
                    .dead_letter(SOURCE, RejectCode::ProviderError, &message, text);
            }
            Ok(FinnhubFrame::Other) => {}
            Err(reason) => self.on_malformed(&reason, text),
        }
        Vec::new()
    }

    fn on_malformed(&mut self, reason: &str, raw: &str) {
        self.emitter
            .dead_letter(SOURCE, RejectCode::ProviderMalformed, reason, raw);
    }

    fn on_connected(&mut self) {
        self.reconnects.on_connected();
    }
}

#[derive(Deserialize)]
struct Profile {
    name: Option<String>,
    exchange: Option<String>,
    currency: Option<String>,
    #[serde(rename = "finnhubIndustry")]
    industry: Option<String>,
}

/// `profile2` answers `{}` for symbols it has no profile for (crypto, unknown tickers): `Ok(None)`.
/// Finnhub has a single classification, `finnhubIndustry`: it fills `industry`; `sector` stays null.
pub fn parse_profile(symbol: &str, body: &str) -> Result<Option<Company>, String> {
    let profile: Profile =
        serde_json::from_str(body).map_err(|e| format!("malformed profile: {e}"))?;
    // Finnhub answers "" for fields it does not know; the contract says absent.
    let known = |text: Option<String>| text.filter(|t| !t.trim().is_empty());
    let Some(name) = known(profile.name) else {
        return Ok(None);
    };
    Ok(Some(Company {
        symbol: symbol.to_string(),
        name,
        exchange: known(profile.exchange),
        currency: known(profile.currency),
        sector: None,
        industry: known(profile.industry),
        source: SOURCE.into(),
    }))
}

pub struct ProfileSettings {
    pub rest_url: String,
    pub api_key: String,
    pub symbols: Vec<String>,
    pub refresh: Duration,
    pub per_minute: f64,
    pub http_timeout: Duration,
}

/// Fetch every symbol's profile, then again every `refresh`; a failed symbol is retried in the next round.
pub async fn run_profiles(
    settings: ProfileSettings,
    emitter: Arc<Emitter>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let client = http::client(settings.http_timeout)?;
    let mut pacer = Pacer::per_minute(settings.per_minute);
    let base = settings.rest_url.trim_end_matches('/');
    loop {
        let mut published = 0;
        let mut index = 0;
        while index < settings.symbols.len() {
            let symbol = &settings.symbols[index];
            if !pacer.acquire(&shutdown).await {
                return Ok(());
            }
            let url = format!(
                "{base}/api/v1/stock/profile2?symbol={}",
                encode_query(symbol)
            );
            let headers = [("X-Finnhub-Token", settings.api_key.as_str())];
            match http::get(&client, &url, &headers, Duration::from_secs(60)).await {
                Ok(HttpOutcome::Body(body)) => match parse_profile(symbol, &body) {
                    Ok(Some(company)) => {
                        if emitter.company(&company, Some(&body)) {
                            published += 1;
                        }
                    }
                    Ok(None) => info!("finnhub: no company profile for {symbol}"),
                    Err(reason) => {
                        emitter.dead_letter(SOURCE, RejectCode::ProviderMalformed, &reason, &body)
                    }
                },
                Ok(HttpOutcome::RateLimited(wait)) => {
                    warn!("finnhub: HTTP 429 on profile2, waiting {wait:?} as Retry-After asks");
                    pacer.pause(wait);
                    continue; // same symbol again
                }
                Ok(HttpOutcome::Status(status, body)) => {
                    emitter.dead_letter(
                        SOURCE,
                        RejectCode::HttpStatus,
                        &format!("profile2 {symbol}: HTTP {status}"),
                        &body,
                    );
                }
                Err(err) => warn!("finnhub: profile2 {symbol}: {err:#}"),
            }
            index += 1;
        }
        info!(
            "finnhub: published {published} company profile(s); next refresh in {:?}",
            settings.refresh
        );
        if !shutdown.sleep(settings.refresh).await {
            return Ok(());
        }
    }
}

/// Percent-encode a symbol for a query string (`BRK.B` is fine, `BINANCE:BTCUSDT` and `EUR/USD` are not).
pub fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reconnect_is_recorded_as_an_unrepairable_gap_per_symbol() {
        let mut gaps = ReconnectGaps::default();
        assert_eq!(gaps.on_trade("AAPL", 1_000), None);
        gaps.on_connected();
        assert_eq!(
            gaps.on_trade("MSFT", 1_050),
            None,
            "not seen before the reconnect"
        );
        let gap = gaps.on_trade("AAPL", 9_000).unwrap();
        assert_eq!(
            (gap.cause, gap.outcome),
            (GapCause::Reconnect, GapOutcome::Unrepairable)
        );
        assert_eq!((gap.from_ts_ms, gap.to_ts_ms), (1_000, 9_000));
        assert_eq!((gap.first_missing_id, gap.repaired_trades), (None, 0));
        assert_eq!(
            gaps.on_trade("AAPL", 9_100),
            None,
            "only the first trade after it"
        );
    }
    use crate::emitter::test_support::memory_emitter;
    use crate::messages::now_ms;

    const TRADES: &str = r#"{"data":[{"c":["1","12"],"p":189.43,"s":"AAPL","t":1700000000123,"v":100},{"c":null,"p":37012.5,"s":"BINANCE:BTCUSDT","t":1700000000456,"v":0.011467}],"type":"trade"}"#;

    #[test]
    fn parses_a_trade_frame_with_several_trades() {
        let FinnhubFrame::Trades(trades) = parse_frame(TRADES).unwrap() else {
            panic!("no trades")
        };
        assert_eq!(trades.len(), 2);
        assert_eq!(trades[0].0.symbol, "AAPL");
        assert_eq!(trades[0].0.ts_ms, 1_700_000_000_123);
        assert_eq!((trades[0].0.price, trades[0].0.size), (189.43, 100.0));
        assert_eq!(trades[0].0.trade_id, None);
        assert_eq!(
            trades[0].0.conditions.as_deref(),
            Some(&["1".to_string(), "12".to_string()][..])
        );
        assert_eq!(trades[1].0.conditions, None);
        assert_eq!(trades[1].0.symbol, "BINANCE:BTCUSDT");
        assert!(
            trades[1].1.contains("0.011467"),
            "raw element kept: {}",
            trades[1].1
        );
    }

    #[test]
    fn ping_error_and_garbage() {
        assert_eq!(
            parse_frame(r#"{"type":"ping"}"#).unwrap(),
            FinnhubFrame::Ping
        );
        assert_eq!(
            parse_frame(r#"{"type":"error","msg":"Subscribing to too many symbols"}"#).unwrap(),
            FinnhubFrame::Error("Subscribing to too many symbols".into())
        );
        assert!(parse_frame(r#"{"data":[]}"#).is_err());
        assert!(
            parse_frame(r#"{"type":"trade","data":[{"s":"AAPL","p":"x","t":1,"v":1}]}"#).is_err()
        );
        assert!(parse_frame("[1,2").is_err());
    }

    #[test]
    fn protocol_answers_pings_and_subscribes_each_symbol() {
        let (emitter, sink) = memory_emitter(&["AAPL"]);
        let mut protocol = FinnhubProtocol {
            emitter,
            symbols: vec!["AAPL".into(), "MSFT".into()],
            reconnects: ReconnectGaps::default(),
        };
        assert_eq!(
            protocol.on_text(r#"{"type":"ping"}"#),
            vec![PONG.to_string()]
        );
        assert_eq!(
            protocol.subscribe_messages(),
            vec![
                r#"{"symbol":"AAPL","type":"subscribe"}"#.to_string(),
                r#"{"symbol":"MSFT","type":"subscribe"}"#.to_string()
            ]
        );
        let now = now_ms();
        let frame = format!(
            r#"{{"type":"trade","data":[{{"s":"AAPL","p":1.5,"t":{now},"v":3}},{{"s":"AAPL","p":-2,"t":{now},"v":3}}]}}"#
        );
        assert!(protocol.on_text(&frame).is_empty());
        assert_eq!(sink.on_topic("market.trades.v1").len(), 1);
        let letters = sink.on_topic("market.deadletter.v1");
        assert_eq!(letters.len(), 1);
        assert!(letters[0].payload["raw"].as_str().unwrap().contains("-2"));
        assert_eq!(letters[0].payload["reason_code"], "price_not_positive");
        let trades = sink.on_topic("market.trades.v1");
        assert_eq!(
            trades[0].payload["trade_id"],
            format!("~{now}:1.5:3:0"),
            "derived id"
        );
    }

    #[test]
    fn profile_maps_to_company_and_empty_means_none() {
        let body = r#"{"country":"US","currency":"USD","estimateCurrency":"USD","exchange":"NASDAQ NMS - GLOBAL MARKET","finnhubIndustry":"Technology","ipo":"1980-12-12","logo":"https://static2.finnhub.io/file/publicdatany/finnhubimage/stock_logo/AAPL.png","marketCapitalization":2900000,"name":"Apple Inc","phone":"14089961010","shareOutstanding":15550.06,"ticker":"AAPL","weburl":"https://www.apple.com/"}"#;
        let company = parse_profile("AAPL", body).unwrap().unwrap();
        assert_eq!(company.name, "Apple Inc");
        assert_eq!(
            company.exchange.as_deref(),
            Some("NASDAQ NMS - GLOBAL MARKET")
        );
        assert_eq!(company.currency.as_deref(), Some("USD"));
        assert_eq!(company.industry.as_deref(), Some("Technology"));
        assert_eq!(company.sector, None);
        assert_eq!(parse_profile("XYZ", "{}").unwrap(), None);
        assert!(parse_profile("XYZ", "<html>").is_err());
    }

    #[test]
    fn query_encoding() {
        assert_eq!(encode_query("BINANCE:BTCUSDT"), "BINANCE%3ABTCUSDT");
        assert_eq!(encode_query("EUR/USD"), "EUR%2FUSD");
        assert_eq!(encode_query("BRK.B"), "BRK.B");
    }
}
