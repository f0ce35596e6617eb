//! One outbox row as the alerter sees it, with tolerant access to the metrics the job put in `details`.

use chrono::{DateTime, Utc};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    pub id: i64,
    pub symbol: String,
    /// Bar start (UTC minute).
    pub ts: DateTime<Utc>,
    pub kind: String,
    pub score: f64,
    pub severity: String,
    pub details: Value,
    pub attempts: i32,
}

impl Anomaly {
    /// A finite number stored under `key` in `details`. Missing keys, JSON null, strings and NaN/inf (which a
    /// writer may have smuggled in as strings) are all "no value": the message then leaves that field out.
    pub fn metric(&self, key: &str) -> Option<f64> {
        let value = self.details.get(key)?;
        let number = match value {
            Value::Number(n) => n.as_f64()?,
            // Numbers written as strings by a lenient producer still count when they parse.
            Value::String(s) => s.trim().parse::<f64>().ok()?,
            _ => return None,
        };
        number.is_finite().then_some(number)
    }
}

#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use chrono::TimeZone;

    pub fn anomaly(id: i64, symbol: &str, severity: &str, score: f64) -> Anomaly {
        Anomaly {
            id,
            symbol: symbol.to_string(),
            ts: Utc.with_ymd_and_hms(2026, 3, 2, 14, 31, 0).unwrap()
                + chrono::Duration::minutes(id),
            kind: "price_jump".to_string(),
            score,
            severity: severity.to_string(),
            details: serde_json::json!({}),
            attempts: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::anomaly;
    use serde_json::json;

    #[test]
    fn metric_reads_numbers_and_ignores_everything_else() {
        let mut a = anomaly(1, "AAPL", "warning", 1.5);
        a.details = json!({"close": 101.5, "ret": "0.02", "return_z": null, "robust_z": "NaN", "volume_z": [1]});
        assert_eq!(a.metric("close"), Some(101.5));
        assert_eq!(a.metric("ret"), Some(0.02));
        assert_eq!(a.metric("return_z"), None);
        assert_eq!(a.metric("robust_z"), None);
        assert_eq!(a.metric("volume_z"), None);
        assert_eq!(a.metric("absent"), None);
    }

    #[test]
    fn details_that_are_not_an_object_give_no_metrics() {
        let mut a = anomaly(1, "AAPL", "warning", 1.5);
        a.details = json!("free text");
        assert_eq!(a.metric("close"), None);
    }
}
