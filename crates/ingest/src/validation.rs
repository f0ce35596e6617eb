//! Ingest's admission: the contract's rules (sparktrends_contract::admission, the same the Spark jobs
//! apply) held against the receive time, plus what only a source knows: the symbols it was asked for, and
//! whether its data is live (a window into the past) or history on purpose (replays, backfills).

use std::collections::HashSet;

use sparktrends_contract::admission::{check_bar, check_company, check_trade};
use sparktrends_contract::{Received, Reject, RejectCode};

use crate::messages::{Bar, Company, Trade};

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
}

impl Validator {
    pub fn new(known_symbols: Option<HashSet<String>>, max_past_ms: i64) -> Self {
        Self {
            known_symbols,
            max_past_ms,
        }
    }

    fn received(&self, now_ms: i64, time: TimeCheck) -> Received {
        match time {
            TimeCheck::Live => Received::live(now_ms, self.max_past_ms),
            TimeCheck::Exempt => Received::history(now_ms),
        }
    }

    pub fn check_trade(&self, trade: &Trade, now_ms: i64, time: TimeCheck) -> Result<(), Reject> {
        check_trade(trade, self.received(now_ms, time))?;
        self.check_known(&trade.symbol)
    }

    pub fn check_bar(&self, bar: &Bar, now_ms: i64, time: TimeCheck) -> Result<(), Reject> {
        check_bar(bar, self.received(now_ms, time))?;
        self.check_known(&bar.symbol)
    }

    pub fn check_company(&self, company: &Company) -> Result<(), Reject> {
        check_company(company)?;
        self.check_known(&company.symbol)
    }

    /// After the contract's rules, so ingest and the jobs name the same first failure of a message.
    fn check_known(&self, symbol: &str) -> Result<(), Reject> {
        match &self.known_symbols {
            Some(known) if !known.contains(symbol) => Err(Reject::new(
                RejectCode::UnknownSymbol,
                format!("{symbol:?}"),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn validator() -> Validator {
        Validator::new(Some(["AAPL".to_string()].into_iter().collect()), 3_600_000)
    }

    fn trade(price: f64, size: f64, ts_ms: i64) -> Trade {
        Trade::new("t", "AAPL", ts_ms, price, size)
    }

    fn code(result: Result<(), Reject>) -> Option<RejectCode> {
        result.err().map(|r| r.code)
    }

    #[test]
    fn accepts_a_normal_trade_and_a_zero_size_quote() {
        let v = validator();
        assert_eq!(
            code(v.check_trade(&trade(10.0, 5.0, NOW), NOW, TimeCheck::Live)),
            None
        );
        assert_eq!(
            code(v.check_trade(&trade(10.0, 0.0, NOW), NOW, TimeCheck::Live)),
            None
        );
    }

    #[test]
    fn refusals_carry_the_contract_codes() {
        let v = validator();
        let check = |t: Trade, time| code(v.check_trade(&t, NOW, time));
        assert_eq!(
            check(trade(0.0, 1.0, NOW), TimeCheck::Live),
            Some(RejectCode::PriceNotPositive)
        );
        assert_eq!(
            check(trade(f64::NAN, 1.0, NOW), TimeCheck::Live),
            Some(RejectCode::NumberOutOfRange)
        );
        assert_eq!(
            check(trade(1.0, -0.5, NOW), TimeCheck::Live),
            Some(RejectCode::SizeNegative)
        );
        assert_eq!(
            check(trade(1.0, 1.0, NOW - 3_600_001), TimeCheck::Live),
            Some(RejectCode::TsTooOld)
        );
        assert_eq!(
            check(trade(1.0, 1.0, NOW - 3_600_001), TimeCheck::Exempt),
            None
        );
        // The future is held against the receive time for history too: a skewed clock is never history.
        assert_eq!(
            check(trade(1.0, 1.0, NOW + 240_000), TimeCheck::Exempt),
            Some(RejectCode::TsInFuture)
        );
        let mut nul = trade(1.0, 1.0, NOW);
        nul.symbol = "AA\0PL".into();
        assert_eq!(check(nul, TimeCheck::Live), Some(RejectCode::InvalidSymbol));
    }

    #[test]
    fn unknown_symbols_are_refused_after_the_contract_rules() {
        let mut t = trade(1.0, 1.0, NOW);
        t.symbol = "MSFT".into();
        assert_eq!(
            code(validator().check_trade(&t, NOW, TimeCheck::Live)),
            Some(RejectCode::UnknownSymbol)
        );
        t.price = -1.0;
        assert_eq!(
            code(validator().check_trade(&t, NOW, TimeCheck::Live)),
            Some(RejectCode::PriceNotPositive)
        );
        let open = Validator::new(None, 1);
        t.price = 1.0;
        assert_eq!(code(open.check_trade(&t, NOW, TimeCheck::Exempt)), None);
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
        assert_eq!(code(validator().check_company(&company)), None);
        company.name = " ".into();
        assert_eq!(
            code(validator().check_company(&company)),
            Some(RejectCode::InvalidText)
        );
    }
}
