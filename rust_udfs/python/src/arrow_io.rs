//! Arrow in and out: input columns become core slices without copying where the layout allows,
//! core output vectors become Arrow buffers by move. The output schema is defined here only.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float64Type, TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType,
};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_buffer::{NullBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::PyResult;
use sparktrends_core::{Bars, Metrics};

pub const SYMBOL: &str = "symbol";
pub const TS: &str = "ts";
const OUTPUT_TZ: &str = "UTC";

/// The output schema: `[symbol,] ts`, the `metrics_1m` columns, then `anomaly_kinds` and `severity`.
pub fn metrics_schema(with_symbol: bool) -> SchemaRef {
    let mut fields = Vec::with_capacity(Metrics::FLOAT_COLUMNS.len() + 5);
    if with_symbol {
        fields.push(Field::new(SYMBOL, DataType::Utf8, false));
    }
    fields.push(Field::new(
        TS,
        DataType::Timestamp(TimeUnit::Microsecond, Some(OUTPUT_TZ.into())),
        false,
    ));
    fields.extend(
        Metrics::FLOAT_COLUMNS
            .iter()
            .map(|name| Field::new(*name, DataType::Float64, true)),
    );
    fields.push(Field::new("is_anomaly", DataType::Boolean, false));
    fields.push(Field::new("anomaly_kinds", DataType::Utf8, true));
    fields.push(Field::new("severity", DataType::Utf8, true));
    Arc::new(Schema::new(fields))
}

/// Builds the output batch; `ts` holds µs since the epoch, `symbol` (if any) is utf8.
pub fn metrics_batch(
    symbol: Option<ArrayRef>,
    ts: ScalarBuffer<i64>,
    metrics: Metrics,
) -> Result<RecordBatch, ArrowError> {
    let schema = metrics_schema(symbol.is_some());
    let (floats, is_anomaly, kinds, severity) = metrics.into_columns();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    columns.extend(symbol);
    columns.push(Arc::new(
        TimestampMicrosecondArray::new(ts, None).with_timezone(OUTPUT_TZ),
    ));
    columns.extend(
        floats
            .into_iter()
            .map(|values| Arc::new(nullable_floats(values)) as ArrayRef),
    );
    columns.push(Arc::new(BooleanArray::from(is_anomaly)));
    columns.push(Arc::new(
        kinds.iter().map(|k| k.label()).collect::<StringArray>(),
    ));
    columns.push(Arc::new(
        severity
            .iter()
            .map(|s| s.map(|s| s.as_str()))
            .collect::<StringArray>(),
    ));
    RecordBatch::try_new(schema, columns)
}

/// NaN marks null in the core; the values buffer moves into Arrow as is (no copy), and only a
/// validity bitmap is added.
fn nullable_floats(values: Vec<f64>) -> Float64Array {
    let nulls = values
        .iter()
        .any(|v| v.is_nan())
        .then(|| values.iter().map(|v| !v.is_nan()).collect::<NullBuffer>());
    Float64Array::new(ScalarBuffer::from(values), nulls)
}

/// A batch's bar columns as core slices. Borrowed from the Arrow buffers unless a column has nulls
/// (then a copy with NaN in the null slots) or a timestamp unit other than µs (then converted).
pub struct BarColumns<'a> {
    pub ts: ScalarBuffer<i64>,
    pub open: Cow<'a, [f64]>,
    pub high: Cow<'a, [f64]>,
    pub low: Cow<'a, [f64]>,
    pub close: Cow<'a, [f64]>,
    pub volume: Cow<'a, [f64]>,
    pub vwap: Option<Cow<'a, [f64]>>,
}

impl<'a> BarColumns<'a> {
    pub fn from_batch(batch: &'a RecordBatch) -> PyResult<Self> {
        let required = |name: &str| -> PyResult<Cow<'a, [f64]>> {
            float_column(batch, name)?.ok_or_else(|| missing_column(batch, name))
        };
        Ok(BarColumns {
            ts: ts_column(batch)?,
            open: required("open")?,
            high: required("high")?,
            low: required("low")?,
            close: required("close")?,
            volume: required("volume")?,
            vwap: float_column(batch, "vwap")?,
        })
    }

    pub fn bars(&self, range: std::ops::Range<usize>) -> Bars<'_> {
        Bars {
            ts: &self.ts[range.clone()],
            open: &self.open[range.clone()],
            high: &self.high[range.clone()],
            low: &self.low[range.clone()],
            close: &self.close[range.clone()],
            volume: &self.volume[range.clone()],
            vwap: self.vwap.as_ref().map(|v| &v[range]),
        }
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }
}

fn missing_column(batch: &RecordBatch, name: &str) -> pyo3::PyErr {
    let present: Vec<&str> = batch
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    PyValueError::new_err(format!(
        "bars has no column '{name}' (columns: {})",
        present.join(", ")
    ))
}

fn float_column<'a>(batch: &'a RecordBatch, name: &str) -> PyResult<Option<Cow<'a, [f64]>>> {
    let Some(array) = batch.column_by_name(name) else {
        return Ok(None);
    };
    let Some(floats) = array.as_primitive_opt::<Float64Type>() else {
        return Err(PyTypeError::new_err(format!(
            "column '{name}' must be float64, got {} (cast it first)",
            array.data_type()
        )));
    };
    Ok(Some(match floats.nulls().filter(|n| n.null_count() > 0) {
        None => Cow::Borrowed(floats.values().as_ref()),
        Some(nulls) => Cow::Owned(
            floats
                .values()
                .iter()
                .zip(nulls.iter())
                .map(|(&v, valid)| if valid { v } else { f64::NAN })
                .collect(),
        ),
    }))
}

fn ts_column(batch: &RecordBatch) -> PyResult<ScalarBuffer<i64>> {
    let array = batch
        .column_by_name(TS)
        .ok_or_else(|| missing_column(batch, TS))?;
    if array.null_count() > 0 {
        return Err(PyValueError::new_err("column 'ts' has nulls"));
    }
    let scaled = |values: &ScalarBuffer<i64>, factor: i64| -> PyResult<ScalarBuffer<i64>> {
        let micros: Option<Vec<i64>> = values.iter().map(|v| v.checked_mul(factor)).collect();
        micros
            .map(ScalarBuffer::from)
            .ok_or_else(|| PyValueError::new_err("column 'ts' overflows µs since the epoch"))
    };
    match array.data_type() {
        // The common case: share the buffer, no copy.
        DataType::Timestamp(TimeUnit::Microsecond, _) => Ok(array
            .as_primitive::<TimestampMicrosecondType>()
            .values()
            .clone()),
        DataType::Timestamp(TimeUnit::Millisecond, _) => scaled(
            array.as_primitive::<TimestampMillisecondType>().values(),
            1_000,
        ),
        DataType::Timestamp(TimeUnit::Second, _) => scaled(
            array.as_primitive::<TimestampSecondType>().values(),
            1_000_000,
        ),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            let nanos = array.as_primitive::<TimestampNanosecondType>().values();
            Ok(nanos
                .iter()
                .map(|v| v.div_euclid(1_000))
                .collect::<Vec<_>>()
                .into())
        }
        other => Err(PyTypeError::new_err(format!(
            "column 'ts' must be a timestamp, got {other}"
        ))),
    }
}

/// The symbol column as strings of any Arrow string layout.
pub enum SymbolColumn<'a> {
    Utf8(&'a StringArray),
    Other(Vec<&'a str>),
}

impl<'a> SymbolColumn<'a> {
    pub fn from_batch(batch: &'a RecordBatch) -> PyResult<Self> {
        let array = batch
            .column_by_name(SYMBOL)
            .ok_or_else(|| missing_column(batch, SYMBOL))?;
        if array.null_count() > 0 {
            return Err(PyValueError::new_err("column 'symbol' has nulls"));
        }
        let column = match array.data_type() {
            DataType::Utf8 => SymbolColumn::Utf8(array.as_string::<i32>()),
            DataType::LargeUtf8 => {
                SymbolColumn::Other(array.as_string::<i64>().iter().flatten().collect())
            }
            DataType::Utf8View => {
                SymbolColumn::Other(array.as_string_view().iter().flatten().collect())
            }
            other => {
                return Err(PyTypeError::new_err(format!(
                    "column 'symbol' must be a string, got {other}"
                )))
            }
        };
        Ok(column)
    }

    pub fn value(&self, i: usize) -> &'a str {
        match self {
            SymbolColumn::Utf8(a) => a.value(i),
            SymbolColumn::Other(v) => v[i],
        }
    }

    /// Half-open row ranges of consecutive equal symbols.
    pub fn runs(&self, len: usize) -> Vec<std::ops::Range<usize>> {
        let mut runs = Vec::new();
        let mut start = 0;
        for i in 1..=len {
            if i == len || self.value(i) != self.value(start) {
                runs.push(start..i);
                start = i;
            }
        }
        runs
    }

    /// The column as utf8 for the output: the input array itself when it already is utf8.
    pub fn to_output(&self, input: &ArrayRef) -> ArrayRef {
        match self {
            SymbolColumn::Utf8(_) => input.clone(),
            SymbolColumn::Other(v) => Arc::new(v.iter().map(Some).collect::<StringArray>()),
        }
    }
}
