//! Canonical Kafka values of DESIGN §2, owned by the contract crate (contracts/messages.json); re-exported
//! here with the clock every source uses.

pub use sparktrends_contract::messages::derived_trade_id;
pub use sparktrends_contract::{
    minute_floor, Bar, BarOrigin, Company, DeadLetter, Gap, GapCause, GapOutcome, KafkaHeader,
    RejectCode, Side, Source, Trade, TradeKind, MINUTE_MS,
};

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
