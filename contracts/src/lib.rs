//! The SparkTrends data contract, owned by the JSON files beside this crate (`contracts/*.json`):
//! message fields and the names they may hold, the admission rules with their stable reject codes, which
//! trade conditions update a bar, and the analytics names (metric columns, anomaly kinds, severities).
//!
//! Rust names are generated from those files (`build.rs`), the admission rules read them, and the Python
//! package exposes the same bytes ([`FILES`]), so the ingest, the Spark jobs, the kernels and the alerter
//! cannot disagree about a field, a code or a name without a test failing.

include!(concat!(env!("OUT_DIR"), "/contract.rs"));

pub mod admission;
pub mod conditions;
pub mod corpus;
pub mod messages;
pub mod spec;

pub use admission::{
    admit_bar, admit_company, admit_trade, admit_trade_message, Received, Reject, TradeElement,
};
pub use messages::{Bar, Company, DeadLetter, Gap, Trade};

/// The contract files as embedded at build time, by file name: what the Python package exposes.
pub const FILES: [(&str, &str); 5] = [
    ("messages.json", include_str!("../messages.json")),
    ("admission.json", include_str!("../admission.json")),
    ("analytics.json", include_str!("../analytics.json")),
    (
        "trade_conditions.json",
        include_str!("../trade_conditions.json"),
    ),
    ("topics.json", include_str!("../topics.json")),
];

pub const MINUTE_MS: i64 = 60_000;

/// Start of the UTC minute holding `ts_ms` (floor, also for times before 1970).
pub fn minute_floor(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(MINUTE_MS) * MINUTE_MS
}
