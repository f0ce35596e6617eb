//! Admission: what may enter the market topics and the tables behind them (contracts/admission.json).
//!
//! Ingest checks the messages its sources build ([`check_trade`], [`check_bar`], [`check_company`]); the
//! Spark jobs admit raw Kafka values through the Python package ([`admit_trade`], [`admit_bar`],
//! [`admit_company`]: the same checks after reading the bytes). Either way a refusal carries a
//! [`RejectCode`] from the contract and a detail for a person.
//!
//! Order, so that every consumer names the same first failure: the envelope (empty, oversized, not UTF-8,
//! not a JSON object), then each field in the order contracts/messages.json lists it (missing, wrong JSON
//! type, bad symbol or text, unknown name), then the value rules in the order their codes are listed.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::limits;
use crate::messages::{Bar, Company, Trade};
use crate::spec::{self, FieldType};
use crate::{RejectCode, MINUTE_MS};

/// A refusal: its stable code and what exactly was wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    pub code: RejectCode,
    pub detail: String,
}

impl Reject {
    pub fn new(code: RejectCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }

    /// The code's message and the detail, for a person.
    pub fn reason(&self) -> String {
        if self.detail.is_empty() {
            self.code.doc().to_string()
        } else {
            format!("{}: {}", self.code.doc(), self.detail)
        }
    }
}

impl std::fmt::Display for Reject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.code, self.reason())
    }
}

impl std::error::Error for Reject {}

/// When a message was received, which its event time is held against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The receiver's clock (ingest), or the Kafka record's timestamp (a Spark job).
    pub at_ms: i64,
    /// Live data older than this many milliseconds is refused; `None` for history on purpose (replays,
    /// backfills, a job reading a topic).
    pub max_past_ms: Option<i64>,
}

impl Received {
    pub fn live(at_ms: i64, max_past_ms: i64) -> Self {
        Self {
            at_ms,
            max_past_ms: Some(max_past_ms),
        }
    }

    pub fn history(at_ms: i64) -> Self {
        Self {
            at_ms,
            max_past_ms: None,
        }
    }
}

type Checked<T> = Result<T, Reject>;

fn fail<T>(code: RejectCode, detail: impl Into<String>) -> Checked<T> {
    Err(Reject::new(code, detail))
}

/// Raw bytes to text: at most `max_bytes` of valid UTF-8 (`what` names the message in a refusal).
fn bounded_text<'a>(raw: &'a [u8], max_bytes: i64, what: &str) -> Checked<&'a str> {
    if raw.len() as i64 > max_bytes {
        return fail(
            RejectCode::OversizedMessage,
            format!("{what}{} bytes, at most {max_bytes}", raw.len()),
        );
    }
    std::str::from_utf8(raw).map_err(|e| {
        Reject::new(
            RejectCode::InvalidUtf8,
            format!("{what}invalid byte at {}", e.valid_up_to()),
        )
    })
}

/// Raw bytes to a JSON object: the envelope rules.
pub fn envelope(raw: &[u8]) -> Checked<Map<String, Value>> {
    if raw.is_empty() {
        return fail(RejectCode::EmptyMessage, "");
    }
    let text = bounded_text(raw, limits::MAX_MESSAGE_BYTES, "")?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(other) => fail(
            RejectCode::MalformedJson,
            format!("a JSON {}, not an object", json_type(&other)),
        ),
        // serde_json refuses a literal beyond f64 (1e400) while parsing; it is a number, out of range.
        Err(e) if e.to_string().starts_with("number out of range") => {
            fail(RejectCode::NumberOutOfRange, e.to_string())
        }
        Err(e) => fail(RejectCode::MalformedJson, e.to_string()),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A symbol: 1 to max_symbol_bytes bytes, no whitespace or control character (it is a Kafka key, a table
/// key and a Slack line).
pub fn check_symbol(symbol: &str) -> Checked<()> {
    if symbol.is_empty() {
        return fail(RejectCode::InvalidSymbol, "empty");
    }
    if symbol.len() as i64 > limits::MAX_SYMBOL_BYTES {
        return fail(
            RejectCode::InvalidSymbol,
            format!(
                "{} bytes, at most {}",
                symbol.len(),
                limits::MAX_SYMBOL_BYTES
            ),
        );
    }
    if let Some(c) = symbol.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return fail(
            RejectCode::InvalidSymbol,
            format!("holds {:?}", c.escape_unicode().to_string()),
        );
    }
    Ok(())
}

/// Any other text: non-empty (a field that is present says something), at most max_text_bytes, no control
/// character (PostgreSQL text cannot hold NUL; the others garble logs and messages).
pub fn check_text(field: &str, text: &str) -> Checked<()> {
    if text.trim().is_empty() {
        return fail(RejectCode::InvalidText, format!("{field} is empty"));
    }
    if text.len() as i64 > limits::MAX_TEXT_BYTES {
        return fail(
            RejectCode::InvalidText,
            format!(
                "{field} has {} bytes, at most {}",
                text.len(),
                limits::MAX_TEXT_BYTES
            ),
        );
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return fail(
            RejectCode::InvalidText,
            format!("{field} holds {}", c.escape_unicode()),
        );
    }
    Ok(())
}

fn check_optional_text(field: &str, text: Option<&str>) -> Checked<()> {
    text.map_or(Ok(()), |t| check_text(field, t))
}

fn check_conditions(conditions: Option<&[String]>) -> Checked<()> {
    let Some(conditions) = conditions else {
        return Ok(());
    };
    if conditions.len() as i64 > limits::MAX_CONDITIONS {
        return fail(
            RejectCode::InvalidText,
            format!(
                "conditions has {} codes, at most {}",
                conditions.len(),
                limits::MAX_CONDITIONS
            ),
        );
    }
    conditions
        .iter()
        .try_for_each(|c| check_text("conditions", c))
}

/// The field rules of contracts/messages.json for message `kind`, in field order.
pub fn check_fields(kind: &str, object: &Map<String, Value>) -> Checked<()> {
    for field in &spec::message(kind).fields {
        let name = field.name.as_str();
        let value = match object.get(name) {
            None | Some(Value::Null) if field.required => {
                return fail(RejectCode::MissingField, name)
            }
            None | Some(Value::Null) => continue,
            Some(value) => value,
        };
        let wrong = || {
            fail(
                RejectCode::WrongType,
                format!("{name} is a JSON {}", json_type(value)),
            )
        };
        match (field.field_type, value) {
            (FieldType::Symbol | FieldType::Text, Value::String(s)) => check_field_text(field, s)?,
            (FieldType::Int64, Value::Number(n)) if n.is_i64() => {}
            (FieldType::Int64, Value::Number(n)) if n.is_u64() => {
                return fail(RejectCode::NumberOutOfRange, format!("{name} = {n}"))
            }
            (FieldType::Float64, Value::Number(_)) => {}
            (FieldType::TextList, Value::Array(items)) => {
                let texts: Option<Vec<String>> = items
                    .iter()
                    .map(|v| v.as_str().map(str::to_string))
                    .collect();
                match texts {
                    Some(texts) => check_conditions(Some(&texts))?,
                    None => return wrong(),
                }
            }
            _ => return wrong(),
        }
    }
    Ok(())
}

/// The rules of a text or symbol field's value: its type's, then its `names` group's (contracts/messages.json).
fn check_field_text(field: &spec::FieldSpec, text: &str) -> Checked<()> {
    match field.field_type {
        FieldType::Symbol => check_symbol(text)?,
        _ => check_text(&field.name, text)?,
    }
    match &field.names {
        Some(group) if !spec::is_name(group, text) => fail(
            RejectCode::UnknownName,
            format!("{} = {text:?}", field.name),
        ),
        _ => Ok(()),
    }
}

/// `check_fields` for a trade a typed parse gave: the same rules in the contract's order. The typed parse already
/// held every field to its type and every required field to its presence, so only the text rules are left.
fn check_trade_fields(trade: &Trade) -> Checked<()> {
    for field in &spec::message("trade").fields {
        let text = match field.name.as_str() {
            "source" => Some(trade.source.as_str()),
            "symbol" => Some(trade.symbol.as_str()),
            "trade_id" => trade.trade_id.as_deref(),
            // An absent kind parses as the default, which passes the same rules an absent one skips.
            "kind" => Some(trade.kind.as_str()),
            "side" => trade.side.map(|s| s.as_str()),
            "conditions" => {
                check_conditions(trade.conditions.as_deref())?;
                None
            }
            _ => None,
        };
        if let Some(text) = text {
            check_field_text(field, text)?;
        }
    }
    Ok(())
}

/// A trade parsed straight into its struct, when the message is a well-formed trade: about three times faster
/// than through a JSON map, and the common case by far. `None` (the message is not a plain valid-typed trade
/// object: empty, too large, not UTF-8, malformed, a wrong type, a missing field, a duplicate key, an unknown
/// name) sends it through the JSON map, which gives the code.
fn typed_trade(raw: &[u8]) -> Option<Trade> {
    if raw.is_empty() || raw.len() as i64 > limits::MAX_MESSAGE_BYTES {
        return None;
    }
    serde_json::from_str(std::str::from_utf8(raw).ok()?).ok()
}

fn admit<T: DeserializeOwned>(kind: &str, raw: &[u8]) -> Checked<T> {
    let object = envelope(raw)?;
    check_fields(kind, &object)?;
    // The field rules above are exactly what the struct needs, so this cannot fail on admitted input.
    serde_json::from_value(Value::Object(object))
        .map_err(|e| Reject::new(RejectCode::WrongType, e.to_string()))
}

/// A raw `market.trades` value, admitted or refused.
pub fn admit_trade(raw: &[u8], received: Received) -> Checked<Trade> {
    let Some(trade) = typed_trade(raw) else {
        return admit_trade_through_map(raw, received);
    };
    check_trade_fields(&trade)?;
    check_trade(&trade, received)?;
    Ok(trade)
}

/// `admit_trade` without its typed fast path: every message the fast path declines, and what it must agree
/// with (tests).
#[doc(hidden)]
pub fn admit_trade_through_map(raw: &[u8], received: Received) -> Checked<Trade> {
    let trade: Trade = admit("trade", raw)?;
    check_trade(&trade, received)?;
    Ok(trade)
}

/// One trade of a `market.trades` message: its element (its position in a trade batch; 0 for a single trade
/// and for a refusal of the whole message), the bytes it was admitted from, and the outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct TradeElement<'a> {
    pub element: u32,
    pub raw: &'a [u8],
    pub admitted: Checked<Trade>,
}

/// A raw `market.trades` value, one trade or a trade batch (contracts/messages.json `trade.batch`), admitted
/// trade by trade. A batch's own envelope (its size, UTF-8, a JSON array of 1 to max_batch_trades values)
/// is checked first; a refusal there is one element for the whole message. Each value is then admitted as
/// a single trade message would be, so a batch's trade gets the code it would get alone.
pub fn admit_trade_message(raw: &[u8], received: Received) -> Vec<TradeElement<'_>> {
    let whole = |admitted| {
        vec![TradeElement {
            element: 0,
            raw,
            admitted,
        }]
    };
    if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[') {
        return whole(admit_trade(raw, received));
    }
    match batch_elements(raw) {
        Ok(elements) => elements
            .into_iter()
            .enumerate()
            .map(|(i, element)| TradeElement {
                element: i as u32,
                raw: element.as_bytes(),
                admitted: admit_trade(element.as_bytes(), received),
            })
            .collect(),
        Err(reject) => whole(Err(reject)),
    }
}

/// A trade batch's envelope: the raw JSON of each of its values.
fn batch_elements(raw: &[u8]) -> Checked<Vec<&str>> {
    let text = bounded_text(raw, limits::MAX_BATCH_BYTES, "a trade batch: ")?;
    let values: Vec<&serde_json::value::RawValue> = serde_json::from_str(text)
        .map_err(|e| Reject::new(RejectCode::MalformedJson, format!("a trade batch: {e}")))?;
    if values.is_empty() {
        return fail(RejectCode::MalformedJson, "an empty trade batch");
    }
    if values.len() as i64 > limits::MAX_BATCH_TRADES {
        return fail(
            RejectCode::OversizedMessage,
            format!(
                "a trade batch of {} trades, at most {}",
                values.len(),
                limits::MAX_BATCH_TRADES
            ),
        );
    }
    Ok(values.into_iter().map(|v| v.get()).collect())
}

/// A raw `market.bars.1m` value, admitted or refused.
pub fn admit_bar(raw: &[u8], received: Received) -> Checked<Bar> {
    let bar: Bar = admit("bar", raw)?;
    check_bar(&bar, received)?;
    Ok(bar)
}

/// A raw `reference.companies` value, admitted or refused.
pub fn admit_company(raw: &[u8]) -> Checked<Company> {
    let company: Company = admit("company", raw)?;
    check_company(&company)?;
    Ok(company)
}

fn check_number(field: &str, value: f64) -> Checked<()> {
    if value.is_finite() && value.abs() <= limits::MAX_ABS_NUMBER {
        Ok(())
    } else {
        fail(RejectCode::NumberOutOfRange, format!("{field} = {value}"))
    }
}

fn check_time(ts_ms: i64, received: Received) -> Checked<()> {
    if !(limits::MIN_TS_MS..=limits::MAX_TS_MS).contains(&ts_ms) {
        return fail(RejectCode::TsOutOfRange, format!("ts_ms = {ts_ms}"));
    }
    let ahead = ts_ms.saturating_sub(received.at_ms);
    if ahead > limits::MAX_FUTURE_MS {
        return fail(
            RejectCode::TsInFuture,
            format!(
                "{ahead} ms ahead of its receive time, at most {}",
                limits::MAX_FUTURE_MS
            ),
        );
    }
    if let Some(max_past) = received.max_past_ms {
        let behind = received.at_ms.saturating_sub(ts_ms);
        if behind > max_past {
            return fail(
                RejectCode::TsTooOld,
                format!("{behind} ms old, at most {max_past}"),
            );
        }
    }
    Ok(())
}

fn check_positive(field: &str, value: f64) -> Checked<()> {
    if value > 0.0 {
        Ok(())
    } else {
        fail(RejectCode::PriceNotPositive, format!("{field} = {value}"))
    }
}

fn check_not_negative(field: &str, value: f64) -> Checked<()> {
    if value >= 0.0 {
        Ok(())
    } else {
        fail(RejectCode::SizeNegative, format!("{field} = {value}"))
    }
}

/// The rules a trade built by a source must pass (texts, then values).
pub fn check_trade(trade: &Trade, received: Received) -> Checked<()> {
    check_text("source", &trade.source)?;
    check_symbol(&trade.symbol)?;
    check_optional_text("trade_id", trade.trade_id.as_deref())?;
    check_conditions(trade.conditions.as_deref())?;
    check_number("price", trade.price)?;
    check_number("size", trade.size)?;
    check_time(trade.ts_ms, received)?;
    check_positive("price", trade.price)?;
    check_not_negative("size", trade.size)
}

/// The rules a bar must pass (texts, then values).
pub fn check_bar(bar: &Bar, received: Received) -> Checked<()> {
    check_text("source", &bar.source)?;
    check_symbol(&bar.symbol)?;
    let prices = [
        ("open", bar.open),
        ("high", bar.high),
        ("low", bar.low),
        ("close", bar.close),
    ];
    let optional = [
        ("vwap", bar.vwap),
        ("taker_buy_volume", bar.taker_buy_volume),
    ];
    for (field, value) in prices.iter().chain(&[("volume", bar.volume)]) {
        check_number(field, *value)?;
    }
    for (field, value) in optional {
        value.map_or(Ok(()), |v| check_number(field, v))?;
    }
    check_time(bar.ts_ms, received)?;
    if bar.ts_ms.rem_euclid(MINUTE_MS) != 0 {
        return fail(
            RejectCode::TsNotMinuteAligned,
            format!("ts_ms = {}", bar.ts_ms),
        );
    }
    for (field, value) in prices {
        check_positive(field, value)?;
    }
    bar.vwap.map_or(Ok(()), |v| check_positive("vwap", v))?;
    check_not_negative("volume", bar.volume)?;
    bar.taker_buy_volume
        .map_or(Ok(()), |v| check_not_negative("taker_buy_volume", v))?;
    if bar.high < bar.open.max(bar.close).max(bar.low) || bar.low > bar.open.min(bar.close) {
        return fail(
            RejectCode::OhlcInconsistent,
            format!(
                "open {} high {} low {} close {}",
                bar.open, bar.high, bar.low, bar.close
            ),
        );
    }
    if let Some(vwap) = bar.vwap {
        let slack = limits::VWAP_TOLERANCE;
        if vwap < bar.low * (1.0 - slack) || vwap > bar.high * (1.0 + slack) {
            return fail(
                RejectCode::VwapOutsideRange,
                format!("vwap {vwap} outside [{}, {}]", bar.low, bar.high),
            );
        }
    }
    check_bar_counts(bar)
}

fn check_bar_counts(bar: &Bar) -> Checked<()> {
    let inconsistent = |detail: String| fail(RejectCode::BarCountsInconsistent, detail);
    match bar.trades {
        Some(n) if n < 0 => return inconsistent(format!("trades = {n}")),
        Some(0) if bar.volume > 0.0 => {
            return inconsistent(format!("no trades but volume {}", bar.volume))
        }
        _ => {}
    }
    if let Some(buy) = bar.taker_buy_volume {
        if buy > bar.volume * (1.0 + limits::VWAP_TOLERANCE) {
            return inconsistent(format!(
                "taker_buy_volume {buy} above volume {}",
                bar.volume
            ));
        }
    }
    if let (Some(first), Some(last)) = (bar.first_trade_id, bar.last_trade_id) {
        if first > last {
            return inconsistent(format!("first_trade_id {first} after last_trade_id {last}"));
        }
    }
    Ok(())
}

/// The rules a company profile must pass.
pub fn check_company(company: &Company) -> Checked<()> {
    check_symbol(&company.symbol)?;
    check_text("name", &company.name)?;
    for (field, value) in [
        ("exchange", &company.exchange),
        ("currency", &company.currency),
        ("sector", &company.sector),
        ("industry", &company.industry),
    ] {
        check_optional_text(field, value.as_deref())?;
    }
    check_text("source", &company.source)
}

/// A payload as it may be kept in a text column and a log: invalid UTF-8 replaced, NUL written as the
/// JSON escape `\u0000` (PostgreSQL text cannot hold it), at most `max_message_bytes` kept. The exact
/// bytes stay on the topic at the Kafka coordinates stored beside it.
pub fn printable_payload(raw: &[u8]) -> String {
    let cut = raw.len().min(limits::MAX_MESSAGE_BYTES as usize);
    let text = String::from_utf8_lossy(&raw[..cut]);
    let mut out = if text.contains('\0') {
        text.replace('\0', "\\u0000")
    } else {
        text.into_owned()
    };
    if raw.len() > cut {
        out.push_str(&format!("… ({} bytes in all)", raw.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typed_trade_check_reads_every_text_field_of_the_contract() {
        // check_trade_fields' match arms: a text field added to the contract must be added there too.
        let handled = ["source", "symbol", "trade_id", "kind", "side", "conditions"];
        let texts: Vec<&str> = spec::message("trade")
            .fields
            .iter()
            .filter(|f| !matches!(f.field_type, FieldType::Int64 | FieldType::Float64))
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(texts, handled);
    }
}
