//! The canonical Kafka values (contracts/messages.json). Every source maps its provider's frames to these,
//! so downstream jobs see one schema whatever the origin. `tests` below hold each struct to the JSON file.

use serde::{Deserialize, Serialize};

use crate::{BarOrigin, GapCause, GapOutcome, RejectCode, Side, TradeKind};

fn is_trade(kind: &TradeKind) -> bool {
    *kind == TradeKind::Trade
}

/// `market.trades.v1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    pub source: String,
    pub symbol: String,
    pub ts_ms: i64,
    pub price: f64,
    pub size: f64,
    /// The provider's id as text; ingest derives one where the provider has none (`crate::messages::derived_trade_id`).
    pub trade_id: Option<String>,
    #[serde(default = "TradeKind::default_kind", skip_serializing_if = "is_trade")]
    pub kind: TradeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<Side>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<String>>,
}

impl TradeKind {
    fn default_kind() -> Self {
        TradeKind::Trade
    }
}

impl Trade {
    /// A plain trade: no side, no conditions.
    pub fn new(source: &str, symbol: &str, ts_ms: i64, price: f64, size: f64) -> Self {
        Self {
            source: source.to_string(),
            symbol: symbol.to_string(),
            ts_ms,
            price,
            size,
            trade_id: None,
            kind: TradeKind::Trade,
            side: None,
            conditions: None,
        }
    }
}

/// `market.bars.1m.v1`: `ts_ms` is the bar's start, a whole UTC minute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    pub source: String,
    pub symbol: String,
    pub ts_ms: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trades: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vwap: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taker_buy_volume: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_trade_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_trade_id: Option<i64>,
    #[serde(default = "BarOrigin::default_origin")]
    pub origin: BarOrigin,
}

impl BarOrigin {
    fn default_origin() -> Self {
        BarOrigin::Provider
    }
}

impl Bar {
    /// A provider's bar with only the required fields set.
    #[allow(clippy::too_many_arguments)]
    pub fn ohlcv(
        source: &str,
        symbol: &str,
        ts_ms: i64,
        open: f64,
        high: f64,
        low: f64,
        close: f64,
        volume: f64,
    ) -> Self {
        Self {
            source: source.to_string(),
            symbol: symbol.to_string(),
            ts_ms,
            open,
            high,
            low,
            close,
            volume,
            trades: None,
            vwap: None,
            taker_buy_volume: None,
            first_trade_id: None,
            last_trade_id: None,
            origin: BarOrigin::Provider,
        }
    }
}

/// `reference.companies.v1` (compacted by symbol, so the latest profile wins).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Company {
    pub symbol: String,
    pub name: String,
    pub exchange: Option<String>,
    pub currency: Option<String>,
    pub sector: Option<String>,
    pub industry: Option<String>,
    pub source: String,
}

/// `market.deadletter.v1`: what was refused, its stable code, why in words, and the original payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub source: String,
    pub reason_code: RejectCode,
    pub reason: String,
    pub raw: String,
    pub received_ms: i64,
}

/// `market.gaps.v1`: trades a feed missed, what was done about them, and which minutes to rebuild. The bars
/// job records it (PostgreSQL `gaps`) and rebuilds the bars of `from_ts_ms..=to_ts_ms` once its watermark has
/// passed them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    pub source: String,
    pub symbol: String,
    pub cause: GapCause,
    pub outcome: GapOutcome,
    pub from_ts_ms: i64,
    pub to_ts_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_missing_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_missing_id: Option<i64>,
    pub repaired_trades: i64,
    pub detected_ms: i64,
}

/// The id ingest gives a trade whose provider has none: its event time, price and size, and how many
/// earlier prints of this symbol carried exactly those three (`occurrence`). A re-sent print (a replayed
/// file, a re-delivered frame) gets the same id and is deduplicated; two genuine identical prints in one
/// millisecond stay apart. Provider ids are never of this form (`~` does not start an exchange id).
pub fn derived_trade_id(ts_ms: i64, price: f64, size: f64, occurrence: u32) -> String {
    format!("~{ts_ms}:{price}:{size}:{occurrence}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;
    use serde_json::{json, Value};

    fn keys(value: &Value) -> Vec<String> {
        value.as_object().unwrap().keys().cloned().collect()
    }

    fn contract_fields(kind: &str) -> Vec<String> {
        let mut names: Vec<String> = spec::message(kind)
            .fields
            .iter()
            .map(|f| f.name.clone())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_struct_serialises_exactly_the_contract_fields() {
        let trade = Trade {
            trade_id: Some("42".into()),
            kind: TradeKind::Tick,
            side: Some(Side::Buy),
            conditions: Some(vec!["1".into()]),
            ..Trade::new("binance", "BTCUSDT", 1_700_000_000_123, 37_000.5, 0.25)
        };
        let bar = Bar {
            trades: Some(3),
            vwap: Some(1.0),
            taker_buy_volume: Some(1.0),
            first_trade_id: Some(1),
            last_trade_id: Some(3),
            ..Bar::ohlcv("s", "A", 60_000, 1.0, 1.0, 1.0, 1.0, 2.0)
        };
        let company = Company {
            symbol: "AAPL".into(),
            name: "Apple Inc".into(),
            exchange: Some("NASDAQ".into()),
            currency: Some("USD".into()),
            sector: Some("x".into()),
            industry: Some("Technology".into()),
            source: "finnhub".into(),
        };
        let letter = DeadLetter {
            source: "binance".into(),
            reason_code: RejectCode::MalformedJson,
            reason: "r".into(),
            raw: "{".into(),
            received_ms: 1,
        };
        let gap = Gap {
            source: "binance".into(),
            symbol: "BTCUSDT".into(),
            cause: GapCause::Reconnect,
            outcome: GapOutcome::Repaired,
            from_ts_ms: 1,
            to_ts_ms: 2,
            first_missing_id: Some(10),
            last_missing_id: Some(12),
            repaired_trades: 3,
            detected_ms: 3,
        };
        for (kind, value) in [
            ("trade", serde_json::to_value(&trade).unwrap()),
            ("bar", serde_json::to_value(&bar).unwrap()),
            ("company", serde_json::to_value(&company).unwrap()),
            ("dead_letter", serde_json::to_value(&letter).unwrap()),
            ("gap", serde_json::to_value(&gap).unwrap()),
        ] {
            let mut got = keys(&value);
            got.sort();
            assert_eq!(got, contract_fields(kind), "{kind}");
        }
    }

    #[test]
    fn optional_fields_left_out_and_defaults_read_back() {
        let trade = Trade::new("finnhub", "AAPL", 1, 2.0, 3.0);
        let value = serde_json::to_value(&trade).unwrap();
        assert_eq!(
            value,
            json!({"source": "finnhub", "symbol": "AAPL", "ts_ms": 1, "price": 2.0, "size": 3.0, "trade_id": null})
        );
        let back: Trade = serde_json::from_value(value).unwrap();
        assert_eq!(back.kind, TradeKind::Trade);
        let bar: Bar =
            serde_json::from_value(json!({"source": "x", "symbol": "A", "ts_ms": 0, "open": 1,
            "high": 1, "low": 1, "close": 1, "volume": 0}))
            .unwrap();
        assert_eq!(bar.origin, BarOrigin::Provider);
    }

    #[test]
    fn defaults_are_the_contract_defaults() {
        for (kind, field, value) in [
            ("trade", "kind", TradeKind::Trade.as_str()),
            ("bar", "origin", BarOrigin::Provider.as_str()),
        ] {
            let spec = spec::message(kind)
                .fields
                .iter()
                .find(|f| f.name == field)
                .unwrap();
            assert_eq!(spec.default.as_deref(), Some(value), "{kind}.{field}");
        }
    }

    #[test]
    fn derived_ids_tell_twins_apart_and_repeat_for_the_same_print() {
        let a = derived_trade_id(1_700_000_000_123, 189.43, 100.0, 0);
        assert_eq!(a, "~1700000000123:189.43:100:0");
        assert_eq!(a, derived_trade_id(1_700_000_000_123, 189.43, 100.0, 0));
        assert_ne!(a, derived_trade_id(1_700_000_000_123, 189.43, 100.0, 1));
    }

    #[test]
    fn minute_floor_handles_negative_times() {
        assert_eq!(crate::minute_floor(61_000), 60_000);
        assert_eq!(crate::minute_floor(-1), -60_000);
    }
}
