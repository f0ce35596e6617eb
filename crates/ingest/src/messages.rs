//! Canonical Kafka values of DESIGN §2. Every source maps its provider's frames to these, so downstream jobs
//! see one schema whatever the origin.

use serde::{Deserialize, Serialize};

/// `market.trades.v1`. `trade_id` is the provider's id as a string (Binance's are integers, replays may carry
/// any text); providers that have none (Finnhub, Twelve Data quotes) send `null` rather than an invented id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    pub source: String,
    pub symbol: String,
    pub ts_ms: i64,
    pub price: f64,
    pub size: f64,
    pub trade_id: Option<String>,
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
    pub trades: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vwap: Option<f64>,
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

/// `market.deadletter.v1`: what was refused, why, and the original payload untouched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub source: String,
    pub reason: String,
    pub raw: String,
    pub received_ms: i64,
}

pub const MINUTE_MS: i64 = 60_000;

/// Start of the UTC minute holding `ts_ms` (floor, also for times before 1970).
pub fn minute_floor(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn trade_serialises_exactly_the_contract_fields() {
        let trade = Trade {
            source: "binance".into(),
            symbol: "BTCUSDT".into(),
            ts_ms: 1_700_000_000_123,
            price: 37_000.5,
            size: 0.25,
            trade_id: Some("42".into()),
        };
        let value = serde_json::to_value(&trade).unwrap();
        assert_eq!(
            value,
            json!({"source": "binance", "symbol": "BTCUSDT", "ts_ms": 1_700_000_000_123_i64,
                   "price": 37_000.5, "size": 0.25, "trade_id": "42"})
        );
    }

    #[test]
    fn bar_omits_absent_optional_fields() {
        let bar = Bar {
            source: "twelvedata".into(),
            symbol: "AAPL".into(),
            ts_ms: 1_700_000_040_000,
            open: 1.0,
            high: 2.0,
            low: 0.5,
            close: 1.5,
            volume: 10.0,
            trades: None,
            vwap: None,
        };
        let value = serde_json::to_value(&bar).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 8, "{keys:?}");
        assert!(value.get("vwap").is_none() && value.get("trades").is_none());
    }

    #[test]
    fn minute_floor_handles_negative_times() {
        assert_eq!(minute_floor(61_000), 60_000);
        assert_eq!(minute_floor(-1), -60_000);
        assert_eq!(minute_floor(120_000), 120_000);
    }
}
