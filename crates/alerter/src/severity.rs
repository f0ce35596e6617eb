//! Ordering of severity labels, so the cooldown can tell whether a new anomaly is worse than the last alert.
//!
//! The names and their order are the contract's (contracts/analytics.json `severities`, least severe
//! first), the same the kernels write. An unknown label ranks lowest: it can never break a cooldown by
//! accident, and it is still shown verbatim in the message.

use sparktrends_contract::Severity;

/// Rank of a severity label; higher is more severe, 0 for a label the contract does not define.
pub fn rank(severity: &str) -> u8 {
    Severity::parse(severity.trim())
        .map(|s| s as u8 + 1)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_follow_the_contract_order_and_unknown_ranks_lowest() {
        let ranks: Vec<u8> = Severity::ALL.iter().map(|s| rank(s.as_str())).collect();
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{ranks:?}");
        assert!(rank("critical") > rank("warning"));
        assert_eq!(rank("something-new"), 0);
        assert_eq!(rank(" critical "), rank("critical"));
    }
}
