//! The admission rules of DESIGN §2: what may enter the market topics. Anything refused goes to the dead-letter
//! topic with the reason returned here, and the source keeps running.

use std::collections::HashSet;

use crate::messages::{Bar, Company, Trade, MINUTE_MS};

/// Whether a message's event time must lie near the wall clock. Replays and backfills carry history on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeCheck {
    Live,
    Exempt,
}

#[derive(Debug, Clone)]
pub struct Validator {
    /// `None` accepts every symbol (a replay without `--symbols`).
    known_symbols: Option<HashSet<String>>,
    max_past_ms: i64,
    max_future_ms: i64,
}

impl Validator {
    pub fn new(
        known_symbols: Option<HashSet<String>>,
        max_past_ms: i64,
        max_future_ms: i64,
    ) -> Self {
        Self {
            known_symbols,
            max_past_ms,
            max_future_ms,
        }
    }

    pub fn check_trade(&self, trade: &Trade, now_ms: i64, time: TimeCheck) -> Result<(), String> {
        self.check_symbol(&trade.symbol)?;
        check_price("price", trade.price)?;
        check_size("size", trade.size)?;
        self.check_time(trade.ts_ms, now_ms, time)
    }

    pub fn check_bar(&self, bar: &Bar, now_ms: i64, time: TimeCheck) -> Result<(), String> {
        self.check_symbol(&bar.symbol)?;
        for (field, value) in [
            ("open", bar.open),
            ("high", bar.high),
            ("low", bar.low),
            ("close", bar.close),
        ] {
            check_price(field, value)?;
        }
        check_size("volume", bar.volume)?;
        if let Some(vwap) = bar.vwap {
            check_price("vwap", vwap)?;
        }
        if bar.high < bar.open.max(bar.close).max(bar.low) || bar.low > bar.open.min(bar.close) {
            return Err(format!(
                "inconsistent bar: high {} low {} must bound open {} and close {}",
                bar.high, bar.low, bar.open, bar.close
            ));
        }
        if bar.ts_ms.rem_euclid(MINUTE_MS) != 0 {
            return Err(format!(
                "bar ts_ms {} is not the start of a UTC minute",
                bar.ts_ms
            ));
        }
        self.check_time(bar.ts_ms, now_ms, time)
    }

    pub fn check_company(&self, company: &Company) -> Result<(), String> {
        self.check_symbol(&company.symbol)?;
        if company.name.trim().is_empty() {
            return Err("company profile without a name".into());
        }
        Ok(())
    }

    fn check_symbol(&self, symbol: &str) -> Result<(), String> {
        if symbol.is_empty() {
            return Err("empty symbol".into());
        }
        match &self.known_symbols {
            Some(known) if !known.contains(symbol) => Err(format!("unknown symbol {symbol:?}")),
            _ => Ok(()),
        }
    }

    fn check_time(&self, ts_ms: i64, now_ms: i64, time: TimeCheck) -> Result<(), String> {
        if time == TimeCheck::Exempt {
            return Ok(());
        }
        if ts_ms < now_ms.saturating_sub(self.max_past_ms) {
            return Err(format!(
                "timestamp {ts_ms} is more than {} ms in the past",
                self.max_past_ms
            ));
        }
        if ts_ms > now_ms.saturating_add(self.max_future_ms) {
            return Err(format!(
                "timestamp {ts_ms} is more than {} ms in the future",
                self.max_future_ms
            ));
        }
        Ok(())
    }
}

fn check_price(field: &str, value: f64) -> Result<(), String> {
    if !value.is_finite() {
        return Err(format!("non-finite {field} {value}"));
    }
    if value <= 0.0 {
        return Err(format!("non-positive {field} {value}"));
    }
    Ok(())
}

/// Sizes may be 0 (quotes carry no size) but never negative or non-finite.
fn check_size(field: &str, value: f64) -> Result<(), String> {
    if !value.is_finite() {
        return Err(format!("non-finite {field} {value}"));
    }
    if value < 0.0 {
        return Err(format!("negative {field} {value}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn validator() -> Validator {
        Validator::new(
            Some(["AAPL".to_string()].into_iter().collect()),
            3_600_000,
            60_000,
        )
    }

    fn trade(price: f64, size: f64, ts_ms: i64) -> Trade {
        Trade {
            source: "t".into(),
            symbol: "AAPL".into(),
            ts_ms,
            price,
            size,
            trade_id: None,
        }
    }

    fn bar(open: f64, high: f64, low: f64, close: f64, ts_ms: i64) -> Bar {
        Bar {
            source: "t".into(),
            symbol: "AAPL".into(),
            ts_ms,
            open,
            high,
            low,
            close,
            volume: 1.0,
            trades: None,
            vwap: None,
        }
    }

    #[test]
    fn accepts_a_normal_trade_and_a_zero_size_quote() {
        assert_eq!(
            validator().check_trade(&trade(10.0, 5.0, NOW), NOW, TimeCheck::Live),
            Ok(())
        );
        assert_eq!(
            validator().check_trade(&trade(10.0, 0.0, NOW), NOW, TimeCheck::Live),
            Ok(())
        );
    }

    #[test]
    fn rejects_bad_prices_and_sizes() {
        let v = validator();
        for price in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = v
                .check_trade(&trade(price, 1.0, NOW), NOW, TimeCheck::Live)
                .unwrap_err();
            assert!(err.contains("price"), "{err}");
        }
        for size in [-0.5, f64::NAN] {
            let err = v
                .check_trade(&trade(1.0, size, NOW), NOW, TimeCheck::Live)
                .unwrap_err();
            assert!(err.contains("size"), "{err}");
        }
    }

    #[test]
    fn rejects_unknown_symbols_unless_no_set_is_configured() {
        let mut t = trade(1.0, 1.0, NOW);
        t.symbol = "MSFT".into();
        assert!(validator()
            .check_trade(&t, NOW, TimeCheck::Live)
            .unwrap_err()
            .contains("unknown symbol"));
        let open = Validator::new(None, 1, 1);
        assert_eq!(open.check_trade(&t, NOW, TimeCheck::Live), Ok(()));
    }

    #[test]
    fn time_window_applies_to_live_data_only() {
        let v = validator();
        let old = trade(1.0, 1.0, NOW - 3_600_001);
        let future = trade(1.0, 1.0, NOW + 60_001);
        assert!(v
            .check_trade(&old, NOW, TimeCheck::Live)
            .unwrap_err()
            .contains("past"));
        assert!(v
            .check_trade(&future, NOW, TimeCheck::Live)
            .unwrap_err()
            .contains("future"));
        assert_eq!(v.check_trade(&old, NOW, TimeCheck::Exempt), Ok(()));
        assert_eq!(
            v.check_trade(&trade(1.0, 1.0, NOW - 3_600_000), NOW, TimeCheck::Live),
            Ok(())
        );
    }

    #[test]
    fn bars_must_be_consistent_and_minute_aligned() {
        let v = validator();
        let ts = NOW - NOW % MINUTE_MS;
        assert_eq!(
            v.check_bar(&bar(10.0, 11.0, 9.0, 10.5, ts), NOW, TimeCheck::Live),
            Ok(())
        );
        assert!(v
            .check_bar(&bar(10.0, 9.5, 9.0, 10.5, ts), NOW, TimeCheck::Live)
            .unwrap_err()
            .contains("inconsistent"));
        assert!(v
            .check_bar(&bar(10.0, 11.0, 10.2, 10.5, ts), NOW, TimeCheck::Live)
            .is_err());
        assert!(v
            .check_bar(&bar(10.0, 11.0, 9.0, 10.5, ts + 1), NOW, TimeCheck::Live)
            .unwrap_err()
            .contains("minute"));
        assert!(v
            .check_bar(&bar(10.0, 11.0, -9.0, 10.5, ts), NOW, TimeCheck::Live)
            .unwrap_err()
            .contains("low"));
        let mut negative_volume = bar(10.0, 11.0, 9.0, 10.5, ts);
        negative_volume.volume = -1.0;
        assert!(v
            .check_bar(&negative_volume, NOW, TimeCheck::Live)
            .unwrap_err()
            .contains("volume"));
    }

    #[test]
    fn companies_need_a_known_symbol_and_a_name() {
        let mut company = Company {
            symbol: "AAPL".into(),
            name: "Apple Inc".into(),
            exchange: None,
            currency: None,
            sector: None,
            industry: None,
            source: "finnhub".into(),
        };
        assert_eq!(validator().check_company(&company), Ok(()));
        company.name = " ".into();
        assert!(validator().check_company(&company).is_err());
    }
}
