//! contracts/messages.json read at run time: each message's fields with their JSON type, whether they are
//! required and which names they may hold. Admission checks fields from this table, so adding or retyping a
//! field is a change of the JSON file only.

use std::sync::LazyLock;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum FieldType {
    #[serde(rename = "text")]
    Text,
    #[serde(rename = "symbol")]
    Symbol,
    #[serde(rename = "int64")]
    Int64,
    #[serde(rename = "float64")]
    Float64,
    #[serde(rename = "text[]")]
    TextList,
}

#[derive(Debug, Clone, Deserialize)]
pub struct FieldSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub field_type: FieldType,
    pub required: bool,
    /// A `names` group of messages.json whose keys are the only values allowed.
    #[serde(default)]
    pub names: Option<String>,
    #[serde(default)]
    pub default: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MessageSpec {
    pub topic_prefix: String,
    pub fields: Vec<FieldSpec>,
    /// Trades only: how a message may hold many (a trade batch) and how ingest batches by default.
    #[serde(default)]
    pub batch: Option<BatchSpec>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BatchSpec {
    pub doc: String,
    pub producer_trades: usize,
    pub producer_linger_ms: u64,
}

/// The trade message's batch spec (contracts/messages.json `trade.batch`).
pub fn trade_batch() -> &'static BatchSpec {
    message("trade")
        .batch
        .as_ref()
        .expect("contracts/messages.json trade.batch")
}

#[derive(Debug, Deserialize)]
pub struct Messages {
    pub names: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
    pub messages: std::collections::BTreeMap<String, MessageSpec>,
}

pub static MESSAGES: LazyLock<Messages> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../messages.json")).expect("contracts/messages.json")
});

/// The spec of one message kind (`trade`, `bar`, `company`, `dead_letter`).
pub fn message(kind: &str) -> &'static MessageSpec {
    MESSAGES
        .messages
        .get(kind)
        .unwrap_or_else(|| panic!("contracts/messages.json has no message {kind:?}"))
}

/// Whether `value` is one of the names of `group` (reject codes are a group too).
pub fn is_name(group: &str, value: &str) -> bool {
    if group == "reject_codes" {
        return crate::RejectCode::parse(value).is_some();
    }
    MESSAGES
        .names
        .get(group)
        .unwrap_or_else(|| panic!("contracts/messages.json has no names group {group:?}"))
        .contains_key(value)
}
