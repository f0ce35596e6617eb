//! Which prints update a bar (contracts/trade_conditions.json). Equity venues flag prints that must not
//! move a bar's price (odd lots, out-of-sequence and average-price prints, ...) or its volume; a print with
//! several codes needs every one of them to allow it. Sources without a table, and prints without codes,
//! update everything.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;

/// What one print may change in its bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Eligibility {
    /// May set open, high, low and close.
    pub updates_price: bool,
    /// Counts in volume (and VWAP).
    pub updates_volume: bool,
}

impl Eligibility {
    pub const ALL: Eligibility = Eligibility {
        updates_price: true,
        updates_volume: true,
    };

    fn and(self, other: Eligibility) -> Eligibility {
        Eligibility {
            updates_price: self.updates_price && other.updates_price,
            updates_volume: self.updates_volume && other.updates_volume,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Condition {
    pub name: String,
    #[serde(flatten)]
    pub eligibility: Eligibility,
}

#[derive(Debug, Deserialize)]
pub struct SourceTable {
    pub unlisted: Eligibility,
    pub codes: BTreeMap<String, Condition>,
}

#[derive(Debug, Deserialize)]
struct File {
    sources: BTreeMap<String, SourceTable>,
}

static TABLES: LazyLock<BTreeMap<String, SourceTable>> = LazyLock::new(|| {
    serde_json::from_str::<File>(include_str!("../trade_conditions.json"))
        .expect("contracts/trade_conditions.json")
        .sources
});

/// The condition table of `source`, if it has one.
pub fn table(source: &str) -> Option<&'static SourceTable> {
    TABLES.get(source)
}

/// What a print of `source` carrying `conditions` may change.
pub fn eligibility(source: &str, conditions: Option<&[String]>) -> Eligibility {
    let (Some(table), Some(codes)) = (table(source), conditions) else {
        return Eligibility::ALL;
    };
    codes.iter().fold(Eligibility::ALL, |acc, code| {
        acc.and(
            table
                .codes
                .get(code)
                .map_or(table.unlisted, |c| c.eligibility),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_without_a_table_or_codes_update_everything() {
        assert_eq!(eligibility("binance", None), Eligibility::ALL);
        assert_eq!(eligibility("finnhub", None), Eligibility::ALL);
        assert_eq!(eligibility("finnhub", Some(&[])), Eligibility::ALL);
    }

    #[test]
    fn every_code_of_a_print_must_allow_it() {
        let Some(table) = table("finnhub") else {
            return;
        };
        for (code, condition) in &table.codes {
            let alone = eligibility("finnhub", Some(std::slice::from_ref(code)));
            assert_eq!(alone, condition.eligibility, "{code}");
            let excluded = Eligibility {
                updates_price: false,
                updates_volume: false,
            };
            if let Some((other, _)) = table.codes.iter().find(|(_, c)| c.eligibility == excluded) {
                assert_eq!(
                    eligibility("finnhub", Some(&[code.clone(), other.clone()])),
                    excluded
                );
            }
        }
    }
}
