//! Admission of raw Kafka values over Arrow, for the Spark jobs (`mapInArrow`): each value goes through
//! the contract crate's rules, the very functions ingest applies, so a message gets the same reject code
//! whichever side refuses it. Input: a batch with a binary `value` column and the Kafka `timestamp` (the
//! receive time an event time is held against); every other column passes through unchanged. Output: the
//! pass-through columns, the message's `element`, its fields (null when refused), and `reject_code`,
//! `reject_reason` and a printable `raw` (only when refused).
//!
//! A trades-topic value may be a trade batch (contracts/messages.json `trade.batch`): it becomes one row per
//! trade, its pass-through columns repeated and `element` its position in the batch. Every other row has
//! element 0.

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder, StringBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMicrosecondType, TimestampMillisecondType};
use arrow_array::{make_array, Array, ArrayRef, Int32Array, RecordBatch};
use arrow_data::transform::MutableArrayData;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use sparktrends_contract::admission::printable_payload;
use sparktrends_contract::conditions::eligibility;
use sparktrends_contract::{admit_bar, admit_company, admit_trade_message, Received, Reject};

pub const VALUE: &str = "value";
pub const TIMESTAMP: &str = "timestamp";
/// A trade's position in its message's trade batch (0 for anything else).
pub const ELEMENT: &str = "element";

/// Which topic's messages a batch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Trade,
    Bar,
    Company,
}

impl MessageKind {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "trade" => Some(Self::Trade),
            "bar" => Some(Self::Bar),
            "company" => Some(Self::Company),
            _ => None,
        }
    }
}

fn text(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true)
}

fn float(name: &str) -> Field {
    Field::new(name, DataType::Float64, true)
}

fn int(name: &str) -> Field {
    Field::new(name, DataType::Int64, true)
}

fn flag(name: &str) -> Field {
    Field::new(name, DataType::Boolean, true)
}

/// The columns admission adds, in order.
pub fn admitted_fields(kind: MessageKind) -> Vec<Field> {
    let mut fields = vec![Field::new(ELEMENT, DataType::Int32, false)];
    fields.extend(match kind {
        MessageKind::Trade => vec![
            text("source"),
            text("symbol"),
            int("ts_ms"),
            float("price"),
            float("size"),
            text("trade_id"),
            text("kind"),
            text("side"),
            Field::new(
                "conditions",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
            flag("updates_price"),
            flag("updates_volume"),
        ],
        MessageKind::Bar => vec![
            text("source"),
            text("symbol"),
            int("ts_ms"),
            float("open"),
            float("high"),
            float("low"),
            float("close"),
            float("volume"),
            int("trades"),
            float("vwap"),
            float("taker_buy_volume"),
            int("first_trade_id"),
            int("last_trade_id"),
            text("origin"),
        ],
        MessageKind::Company => vec![
            text("symbol"),
            text("name"),
            text("exchange"),
            text("currency"),
            text("sector"),
            text("industry"),
            text("source"),
        ],
    });
    fields.extend([text("reject_code"), text("reject_reason"), text("raw")]);
    fields
}

/// Receive times in milliseconds from the Kafka `timestamp` column (µs or ms); the wall clock where absent.
fn receive_times(batch: &RecordBatch) -> Result<Vec<i64>, ArrowError> {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    };
    let Some(column) = batch.column_by_name(TIMESTAMP) else {
        return Ok(vec![now(); batch.num_rows()]);
    };
    let (values, nulls): (Vec<i64>, _) = match column.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            let a = column.as_primitive::<TimestampMicrosecondType>();
            (
                a.values().iter().map(|us| us.div_euclid(1000)).collect(),
                a.nulls().cloned(),
            )
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            let a = column.as_primitive::<TimestampMillisecondType>();
            (a.values().to_vec(), a.nulls().cloned())
        }
        DataType::Int64 => {
            let a = column.as_primitive::<arrow_array::types::Int64Type>();
            (a.values().to_vec(), a.nulls().cloned())
        }
        other => {
            return Err(ArrowError::InvalidArgumentError(format!(
                "column {TIMESTAMP} must be a timestamp or int64 of milliseconds, got {other}"
            )))
        }
    };
    Ok(match nulls {
        None => values,
        Some(nulls) => {
            let wall = now();
            values
                .into_iter()
                .enumerate()
                .map(|(i, v)| if nulls.is_valid(i) { v } else { wall })
                .collect()
        }
    })
}

/// The raw values: binary or large binary (Spark's Kafka source), or text.
fn raw_values(batch: &RecordBatch) -> Result<Vec<Option<&[u8]>>, ArrowError> {
    let column = batch.column_by_name(VALUE).ok_or_else(|| {
        ArrowError::InvalidArgumentError(format!("admission needs a {VALUE:?} column"))
    })?;
    Ok(match column.data_type() {
        DataType::Binary => column.as_binary::<i32>().iter().collect(),
        DataType::LargeBinary => column.as_binary::<i64>().iter().collect(),
        DataType::Utf8 => column
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::as_bytes))
            .collect(),
        other => {
            return Err(ArrowError::InvalidArgumentError(format!(
                "column {VALUE} must be binary or text, got {other}"
            )))
        }
    })
}

/// Reject code, reason and printable payload of refused rows; nulls for admitted ones.
#[derive(Default)]
struct Refusals {
    code: StringBuilder,
    reason: StringBuilder,
    raw: StringBuilder,
}

impl Refusals {
    fn admitted(&mut self) {
        self.code.append_null();
        self.reason.append_null();
        self.raw.append_null();
    }

    fn refused(&mut self, reject: &Reject, raw: &[u8]) {
        self.code.append_value(reject.code.as_str());
        self.reason.append_value(reject.reason());
        self.raw.append_value(printable_payload(raw));
    }

    fn finish(mut self) -> [ArrayRef; 3] {
        [
            Arc::new(self.code.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.raw.finish()),
        ]
    }
}

/// What admission made of a batch's rows: the added columns (after `element`), and for a trade batch, which
/// input row each output row came from with its element (`None`: one output row per input row, element 0).
struct Admitted {
    columns: Vec<ArrayRef>,
    origins: Option<(Vec<usize>, Int32Array)>,
}

fn admit_trades(values: &[Option<&[u8]>], received: &[i64]) -> Admitted {
    let mut source = StringBuilder::new();
    let mut symbol = StringBuilder::new();
    let mut ts_ms = Int64Builder::new();
    let mut price = Float64Builder::new();
    let mut size = Float64Builder::new();
    let mut trade_id = StringBuilder::new();
    let mut kind = StringBuilder::new();
    let mut side = StringBuilder::new();
    let mut conditions = ListBuilder::new(StringBuilder::new());
    let mut updates_price = BooleanBuilder::new();
    let mut updates_volume = BooleanBuilder::new();
    let mut refusals = Refusals::default();
    let mut rows = Vec::with_capacity(values.len());
    let mut elements = Int32Builder::with_capacity(values.len());
    let messages = values.iter().zip(received).enumerate();
    for (row, (raw, &at_ms)) in messages {
        for element in admit_trade_message(raw.unwrap_or_default(), Received::history(at_ms)) {
            rows.push(row);
            elements.append_value(element.element as i32);
            let raw = element.raw;
            match element.admitted {
                Ok(t) => {
                    let rule = eligibility(&t.source, t.conditions.as_deref());
                    source.append_value(&t.source);
                    symbol.append_value(&t.symbol);
                    ts_ms.append_value(t.ts_ms);
                    price.append_value(t.price);
                    size.append_value(t.size);
                    trade_id.append_option(t.trade_id.as_deref());
                    kind.append_value(t.kind.as_str());
                    side.append_option(t.side.map(|s| s.as_str()));
                    match &t.conditions {
                        Some(codes) => {
                            for code in codes {
                                conditions.values().append_value(code);
                            }
                            conditions.append(true);
                        }
                        None => conditions.append(false),
                    }
                    updates_price.append_value(rule.updates_price);
                    updates_volume.append_value(rule.updates_volume);
                    refusals.admitted();
                }
                Err(reject) => {
                    for b in [
                        &mut source,
                        &mut symbol,
                        &mut trade_id,
                        &mut kind,
                        &mut side,
                    ] {
                        b.append_null();
                    }
                    ts_ms.append_null();
                    price.append_null();
                    size.append_null();
                    conditions.append(false);
                    updates_price.append_null();
                    updates_volume.append_null();
                    refusals.refused(&reject, raw);
                }
            }
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(source.finish()),
        Arc::new(symbol.finish()),
        Arc::new(ts_ms.finish()),
        Arc::new(price.finish()),
        Arc::new(size.finish()),
        Arc::new(trade_id.finish()),
        Arc::new(kind.finish()),
        Arc::new(side.finish()),
        Arc::new(conditions.finish()),
        Arc::new(updates_price.finish()),
        Arc::new(updates_volume.finish()),
    ];
    columns.extend(refusals.finish());
    Admitted {
        columns,
        origins: Some((rows, elements.finish())),
    }
}

fn admit_bars(values: &[Option<&[u8]>], received: &[i64]) -> Admitted {
    let mut texts: [StringBuilder; 3] = Default::default(); // source, symbol, origin
    let mut ints: [Int64Builder; 4] = Default::default(); // ts_ms, trades, first_trade_id, last_trade_id
    let mut floats: [Float64Builder; 7] = Default::default(); // open..volume, vwap, taker_buy_volume
    let mut refusals = Refusals::default();
    for (raw, &at_ms) in values.iter().zip(received) {
        let raw = raw.unwrap_or_default();
        match admit_bar(raw, Received::history(at_ms)) {
            Ok(b) => {
                texts[0].append_value(&b.source);
                texts[1].append_value(&b.symbol);
                texts[2].append_value(b.origin.as_str());
                for (builder, value) in ints.iter_mut().zip([
                    Some(b.ts_ms),
                    b.trades,
                    b.first_trade_id,
                    b.last_trade_id,
                ]) {
                    builder.append_option(value);
                }
                for (builder, value) in floats.iter_mut().zip([
                    Some(b.open),
                    Some(b.high),
                    Some(b.low),
                    Some(b.close),
                    Some(b.volume),
                    b.vwap,
                    b.taker_buy_volume,
                ]) {
                    builder.append_option(value);
                }
                refusals.admitted();
            }
            Err(reject) => {
                texts.iter_mut().for_each(StringBuilder::append_null);
                ints.iter_mut().for_each(Int64Builder::append_null);
                floats.iter_mut().for_each(Float64Builder::append_null);
                refusals.refused(&reject, raw);
            }
        }
    }
    let [source, symbol, origin] = texts.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let [ts_ms, trades, first, last] = ints.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let [open, high, low, close, volume, vwap, taker_buy] =
        floats.map(|mut b| Arc::new(b.finish()) as ArrayRef);
    let mut columns = vec![
        source, symbol, ts_ms, open, high, low, close, volume, trades, vwap, taker_buy, first,
        last, origin,
    ];
    columns.extend(refusals.finish());
    Admitted {
        columns,
        origins: None,
    }
}

fn admit_companies(values: &[Option<&[u8]>]) -> Admitted {
    let mut texts: [StringBuilder; 7] = Default::default();
    let mut refusals = Refusals::default();
    for raw in values {
        let raw = raw.unwrap_or_default();
        match admit_company(raw) {
            Ok(c) => {
                for (builder, value) in texts.iter_mut().zip([
                    Some(c.symbol.as_str()),
                    Some(c.name.as_str()),
                    c.exchange.as_deref(),
                    c.currency.as_deref(),
                    c.sector.as_deref(),
                    c.industry.as_deref(),
                    Some(c.source.as_str()),
                ]) {
                    builder.append_option(value);
                }
                refusals.admitted();
            }
            Err(reject) => {
                texts.iter_mut().for_each(StringBuilder::append_null);
                refusals.refused(&reject, raw);
            }
        }
    }
    let mut columns: Vec<ArrayRef> = texts
        .into_iter()
        .map(|mut b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    columns.extend(refusals.finish());
    Admitted {
        columns,
        origins: None,
    }
}

/// The output schema for input `schema`: its columns but `value`, then the admitted columns.
pub fn output_schema(kind: MessageKind, schema: &Schema) -> SchemaRef {
    let mut fields: Vec<Field> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != VALUE)
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(admitted_fields(kind));
    Arc::new(Schema::new(fields))
}

/// `column`'s value of input row `rows[i]` for every output row i.
fn repeat_rows(column: &ArrayRef, rows: &[usize]) -> Result<ArrayRef, ArrowError> {
    let data = column.to_data();
    let mut out = MutableArrayData::new(vec![&data], false, rows.len());
    for &row in rows {
        out.try_extend(0, row, row + 1)?;
    }
    Ok(make_array(out.freeze()))
}

/// Admit every row of `batch` (a trade batch: every trade of it).
pub fn admit_batch(kind: MessageKind, batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let values = raw_values(batch)?;
    let received = receive_times(batch)?;
    let schema = output_schema(kind, &batch.schema());
    let admitted = match kind {
        MessageKind::Trade => admit_trades(&values, &received),
        MessageKind::Bar => admit_bars(&values, &received),
        MessageKind::Company => admit_companies(&values),
    };
    let passed = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(f, _)| f.name() != VALUE)
        .map(|(_, c)| c.clone())
        .collect::<Vec<ArrayRef>>();
    let (mut columns, elements) = match admitted.origins {
        // One row per message (every single-trade message): the input columns as they are.
        Some((rows, elements)) if rows.len() != batch.num_rows() => (
            passed
                .iter()
                .map(|c| repeat_rows(c, &rows))
                .collect::<Result<_, _>>()?,
            elements,
        ),
        Some((_, elements)) => (passed, elements),
        None => (passed, Int32Array::from(vec![0; batch.num_rows()])),
    };
    columns.push(Arc::new(elements));
    columns.extend(admitted.columns);
    RecordBatch::try_new(schema, columns)
}
