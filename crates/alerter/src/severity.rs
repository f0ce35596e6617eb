//! Ordering of severity labels, so the cooldown can tell whether a new anomaly is worse than the last alert.
//!
//! The metrics job writes `warning` and `critical` (rust_udfs/core/src/anomaly.rs); the common synonyms are
//! ranked too so a hand-inserted or future label still orders sensibly. An unknown label ranks lowest: it can
//! never break a cooldown by accident, and it is still shown verbatim in the message.

/// Rank of a severity label; higher is more severe.
pub fn rank(severity: &str) -> u8 {
    match severity.trim().to_ascii_lowercase().as_str() {
        "info" | "low" => 1,
        "warning" | "warn" | "medium" => 2,
        "high" | "major" => 3,
        "critical" | "crit" => 4,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn critical_outranks_warning_and_unknown_ranks_lowest() {
        assert!(rank("critical") > rank("warning"));
        assert!(rank("warning") > rank("info"));
        assert!(rank("info") > rank("something-new"));
        assert_eq!(rank(" CRITICAL "), rank("critical"));
    }
}
