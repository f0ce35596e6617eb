//! The `sparktrends._native` extension module: a thin layer over `sparktrends-core`.
//!
//! It only converts: Arrow (via the C Data Interface, zero-copy) to core slices and back, Python
//! config objects to `MetricsConfig`, core errors to `ValueError`/`TypeError`. Computation runs
//! with the GIL released. The typed, documented API is the `sparktrends` Python package.

mod admission;
mod arrow_io;

use std::collections::HashMap;
use std::ops::Range;

use arrow_array::RecordBatch;
use arrow_pyarrow::{FromPyArrow, PyArrowType, Table};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use sparktrends_core as core;

use crate::arrow_io::{metrics_batch, metrics_schema, BarColumns, SymbolColumn};

/// Parameters of every metric and anomaly rule; defaults come from the Rust core.
#[pyclass(module = "sparktrends._native", eq, from_py_object)]
#[derive(Clone, PartialEq)]
struct MetricsConfig {
    inner: core::MetricsConfig,
}

const MICROS_PER_MINUTE: f64 = core::MICROS_PER_MINUTE as f64;

/// `minutes` as whole µs, if positive (or zero when allowed) and in range.
fn minutes_to_micros(name: &str, minutes: f64, allow_zero: bool) -> PyResult<i64> {
    let micros = (minutes * MICROS_PER_MINUTE).round();
    let low_ok = if allow_zero {
        micros >= 0.0
    } else {
        micros > 0.0
    };
    if micros.is_finite() && low_ok && micros < i64::MAX as f64 {
        Ok(micros as i64)
    } else {
        let bound = if allow_zero { ">= 0" } else { "positive" };
        Err(PyValueError::new_err(format!(
            "{name} must be {bound}, got {minutes}"
        )))
    }
}

#[pymethods]
impl MetricsConfig {
    #[new]
    #[pyo3(signature = (
        *, window=None, min_periods=None, lam=None, max_gap_minutes=None, regime_window=None,
        price_z_warning=None, price_z_critical=None, volume_z_warning=None, volume_z_critical=None,
        vol_ratio_warning=None, vol_ratio_critical=None, scale_floor_window=None, scale_floor_share=None,
        volume_scale_floor=None, regime_trim=None, episode_minutes=None, session=None,
        session_edge_minutes=None, mute_outside_session=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        window: Option<usize>,
        min_periods: Option<usize>,
        lam: Option<f64>,
        max_gap_minutes: Option<f64>,
        regime_window: Option<usize>,
        price_z_warning: Option<f64>,
        price_z_critical: Option<f64>,
        volume_z_warning: Option<f64>,
        volume_z_critical: Option<f64>,
        vol_ratio_warning: Option<f64>,
        vol_ratio_critical: Option<f64>,
        scale_floor_window: Option<usize>,
        scale_floor_share: Option<f64>,
        volume_scale_floor: Option<f64>,
        regime_trim: Option<usize>,
        episode_minutes: Option<f64>,
        session: Option<&str>,
        session_edge_minutes: Option<u16>,
        mute_outside_session: Option<bool>,
    ) -> PyResult<Self> {
        let mut c = core::MetricsConfig::default();
        c.window = window.unwrap_or(c.window);
        c.min_periods = min_periods.unwrap_or(c.min_periods);
        c.ewma_lambda = lam.unwrap_or(c.ewma_lambda);
        if let Some(minutes) = max_gap_minutes {
            c.max_gap_us = minutes_to_micros("max_gap_minutes", minutes, false)?;
        }
        c.regime_window = regime_window.unwrap_or(c.regime_window);
        c.scale_floor_window = scale_floor_window.unwrap_or(c.scale_floor_window);
        c.scale_floor_share = scale_floor_share.unwrap_or(c.scale_floor_share);
        c.volume_scale_floor = volume_scale_floor.unwrap_or(c.volume_scale_floor);
        c.regime_trim = regime_trim.unwrap_or(c.regime_trim);
        if let Some(minutes) = episode_minutes {
            c.episode_us = minutes_to_micros("episode_minutes", minutes, true)?;
        }
        if let Some(spec) = session {
            let parsed = spec
                .parse::<core::Session>()
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            c.session = Some(parsed);
        }
        c.session_edge_minutes = session_edge_minutes.unwrap_or(c.session_edge_minutes);
        c.mute_outside_session = mute_outside_session.unwrap_or(c.mute_outside_session);
        let t = &mut c.thresholds;
        t.price_z.warning = price_z_warning.unwrap_or(t.price_z.warning);
        t.price_z.critical = price_z_critical.unwrap_or(t.price_z.critical);
        t.volume_z.warning = volume_z_warning.unwrap_or(t.volume_z.warning);
        t.volume_z.critical = volume_z_critical.unwrap_or(t.volume_z.critical);
        t.vol_ratio.warning = vol_ratio_warning.unwrap_or(t.vol_ratio.warning);
        t.vol_ratio.critical = vol_ratio_critical.unwrap_or(t.vol_ratio.critical);
        c.validate()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        Ok(MetricsConfig { inner: c })
    }

    #[getter]
    fn window(&self) -> usize {
        self.inner.window
    }
    #[getter]
    fn min_periods(&self) -> usize {
        self.inner.min_periods
    }
    #[getter]
    fn lam(&self) -> f64 {
        self.inner.ewma_lambda
    }
    #[getter]
    fn max_gap_minutes(&self) -> f64 {
        self.inner.max_gap_us as f64 / MICROS_PER_MINUTE
    }
    #[getter]
    fn regime_window(&self) -> usize {
        self.inner.regime_window
    }
    #[getter]
    fn price_z_warning(&self) -> f64 {
        self.inner.thresholds.price_z.warning
    }
    #[getter]
    fn price_z_critical(&self) -> f64 {
        self.inner.thresholds.price_z.critical
    }
    #[getter]
    fn volume_z_warning(&self) -> f64 {
        self.inner.thresholds.volume_z.warning
    }
    #[getter]
    fn volume_z_critical(&self) -> f64 {
        self.inner.thresholds.volume_z.critical
    }
    #[getter]
    fn vol_ratio_warning(&self) -> f64 {
        self.inner.thresholds.vol_ratio.warning
    }
    #[getter]
    fn vol_ratio_critical(&self) -> f64 {
        self.inner.thresholds.vol_ratio.critical
    }
    #[getter]
    fn scale_floor_window(&self) -> usize {
        self.inner.scale_floor_window
    }
    #[getter]
    fn scale_floor_share(&self) -> f64 {
        self.inner.scale_floor_share
    }
    #[getter]
    fn volume_scale_floor(&self) -> f64 {
        self.inner.volume_scale_floor
    }
    #[getter]
    fn regime_trim(&self) -> usize {
        self.inner.regime_trim
    }
    #[getter]
    fn episode_minutes(&self) -> f64 {
        self.inner.episode_us as f64 / MICROS_PER_MINUTE
    }
    #[getter]
    fn session(&self) -> Option<String> {
        self.inner.session.map(|s| s.to_string())
    }
    #[getter]
    fn session_edge_minutes(&self) -> u16 {
        self.inner.session_edge_minutes
    }
    #[getter]
    fn mute_outside_session(&self) -> bool {
        self.inner.mute_outside_session
    }
    /// Bars of stored history a job reads before the first bar it computes, so that the
    /// detector's statistics equal the full history's (read-only: follows the windows).
    #[getter]
    fn warmup_bars(&self) -> usize {
        self.inner.warmup_len()
    }

    /// Every parameter by its keyword name: `MetricsConfig(**config.to_dict()) == config`.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("window", self.window())?;
        d.set_item("min_periods", self.min_periods())?;
        d.set_item("lam", self.lam())?;
        d.set_item("max_gap_minutes", self.max_gap_minutes())?;
        d.set_item("regime_window", self.regime_window())?;
        d.set_item("price_z_warning", self.price_z_warning())?;
        d.set_item("price_z_critical", self.price_z_critical())?;
        d.set_item("volume_z_warning", self.volume_z_warning())?;
        d.set_item("volume_z_critical", self.volume_z_critical())?;
        d.set_item("vol_ratio_warning", self.vol_ratio_warning())?;
        d.set_item("vol_ratio_critical", self.vol_ratio_critical())?;
        d.set_item("scale_floor_window", self.scale_floor_window())?;
        d.set_item("scale_floor_share", self.scale_floor_share())?;
        d.set_item("volume_scale_floor", self.volume_scale_floor())?;
        d.set_item("regime_trim", self.regime_trim())?;
        d.set_item("episode_minutes", self.episode_minutes())?;
        d.set_item("session", self.session())?;
        d.set_item("session_edge_minutes", self.session_edge_minutes())?;
        d.set_item("mute_outside_session", self.mute_outside_session())?;
        Ok(d)
    }

    /// Pickle support (Spark ships UDF closures to executors with cloudpickle): rebuilt by
    /// `MetricsConfig.__new__(**to_dict())` itself, without importing any Python module.
    fn __getnewargs_ex__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyTuple>, Bound<'py, PyDict>)> {
        Ok((PyTuple::empty(py), self.to_dict(py)?))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let fields: Vec<String> = self
            .to_dict(py)?
            .iter()
            .map(|(k, v)| Ok(format!("{k}={}", v.repr()?)))
            .collect::<PyResult<_>>()?;
        Ok(format!("MetricsConfig({})", fields.join(", ")))
    }
}

/// Opaque state continuing one symbol's series in a later call.
#[pyclass(module = "sparktrends._native", frozen, eq, from_py_object)]
#[derive(Clone, PartialEq)]
struct CarryState {
    inner: core::CarryState,
}

#[pymethods]
impl CarryState {
    /// Restores a carry from `to_bytes()` under `config` (default: the package defaults), which
    /// must have the windows, λ and gap it was built with; thresholds may differ.
    #[new]
    #[pyo3(signature = (data, config=None))]
    fn new(data: &[u8], config: Option<MetricsConfig>) -> PyResult<Self> {
        let cfg = config_or_default(config.as_ref());
        core::CarryState::from_bytes(data, &cfg)
            .map(|inner| CarryState { inner })
            .map_err(|e| metrics_error(e, None))
    }

    /// The versioned byte encoding (a few kB, whatever the history behind it): what a job
    /// stores between micro-batches and across restarts.
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }

    /// The configuration the carry was last computed under.
    #[getter]
    fn config(&self) -> MetricsConfig {
        MetricsConfig {
            inner: *self.inner.config(),
        }
    }

    /// Pickle support: rebuilt by `CarryState.__new__(to_bytes(), config)` itself, without
    /// importing any Python module.
    fn __getnewargs__(&self, py: Python<'_>) -> (Py<PyBytes>, MetricsConfig) {
        (self.to_bytes(py).unbind(), self.config())
    }

    /// Timestamp of the last bar seen, µs since the epoch (None before any bar).
    #[getter]
    fn last_ts_us(&self) -> Option<i64> {
        self.inner.last_ts()
    }
    /// Bars in the current segment so far.
    #[getter]
    fn segment_len(&self) -> u64 {
        self.inner.segment_len()
    }
    /// Bars carried (at most window + 1).
    #[getter]
    fn tail_len(&self) -> usize {
        self.inner.tail_len()
    }
    fn __repr__(&self) -> String {
        format!(
            "CarryState(last_ts_us={:?}, segment_len={}, tail_len={})",
            self.inner.last_ts(),
            self.inner.segment_len(),
            self.inner.tail_len()
        )
    }
}

fn config_or_default(config: Option<&MetricsConfig>) -> core::MetricsConfig {
    config.map(|c| c.inner).unwrap_or_default()
}

fn metrics_error(e: core::MetricsError, symbol: Option<&str>) -> PyErr {
    match symbol {
        Some(s) => PyValueError::new_err(format!("symbol {s}: {e}")),
        None => PyValueError::new_err(e.to_string()),
    }
}

fn arrow_error(e: arrow_schema::ArrowError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A pyarrow RecordBatch, Table or any Arrow PyCapsule object, as record batches (no copy).
fn record_batches(obj: &Bound<'_, PyAny>) -> PyResult<Vec<RecordBatch>> {
    if obj.hasattr("__arrow_c_array__")? {
        return Ok(vec![RecordBatch::from_pyarrow_bound(obj)?]);
    }
    if obj.hasattr("__arrow_c_stream__")? {
        return Ok(Table::from_pyarrow_bound(obj)?.into_inner().0);
    }
    Err(PyTypeError::new_err(format!(
        "expected a pyarrow RecordBatch or Table, got {}",
        obj.get_type().name()?
    )))
}

/// One symbol's bars (a RecordBatch or Table sorted by ts) → (metrics RecordBatch, CarryState).
#[pyfunction]
#[pyo3(signature = (bars, config=None, carry=None))]
fn compute_metrics(
    py: Python<'_>,
    bars: &Bound<'_, PyAny>,
    config: Option<MetricsConfig>,
    carry: Option<CarryState>,
) -> PyResult<(PyArrowType<RecordBatch>, CarryState)> {
    let cfg = config_or_default(config.as_ref());
    let batches = record_batches(bars)?;
    let columns = batches
        .iter()
        .map(BarColumns::from_batch)
        .collect::<PyResult<Vec<_>>>()?;
    let start = carry.map_or_else(|| core::CarryState::empty(&cfg), |c| c.inner);
    let (metrics, carry) = py
        .detach(|| {
            let mut carry = start;
            let mut all = core::Metrics::default();
            for cols in &columns {
                let (metrics, next) = core::compute(&cols.bars(0..cols.len()), &cfg, Some(&carry))?;
                all.append(metrics);
                carry = next;
            }
            Ok((all, carry))
        })
        .map_err(|e| metrics_error(e, None))?;
    let ts = match columns.as_slice() {
        [single] => single.ts.clone(),
        _ => columns
            .iter()
            .flat_map(|c| c.ts.iter().copied())
            .collect::<Vec<_>>()
            .into(),
    };
    let batch = metrics_batch(None, ts, metrics).map_err(arrow_error)?;
    Ok((PyArrowType(batch), CarryState { inner: carry }))
}

/// Per-symbol carried state across the RecordBatches of one Spark partition (`mapInArrow`).
#[pyclass(module = "sparktrends._native")]
struct MetricsStream {
    config: core::MetricsConfig,
    carries: HashMap<String, core::CarryState>,
}

#[pymethods]
impl MetricsStream {
    #[new]
    #[pyo3(signature = (config=None))]
    fn new(config: Option<MetricsConfig>) -> Self {
        MetricsStream {
            config: config_or_default(config.as_ref()),
            carries: HashMap::new(),
        }
    }

    /// Metrics for a batch with columns symbol, ts, open, high, low, close, volume[, vwap], whose
    /// rows are time-sorted within each symbol; one output row per input row, same order.
    fn process(
        &mut self,
        py: Python<'_>,
        batch: PyArrowType<RecordBatch>,
    ) -> PyResult<PyArrowType<RecordBatch>> {
        let batch = batch.0;
        let symbols = SymbolColumn::from_batch(&batch)?;
        let columns = BarColumns::from_batch(&batch)?;
        let runs = symbols.runs(batch.num_rows());
        let config = self.config;
        let carries = &mut self.carries;
        let metrics = py.detach(|| process_runs(&config, carries, &symbols, &columns, &runs))?;
        let symbol_input = batch
            .column_by_name(arrow_io::SYMBOL)
            .expect("checked above");
        let out = metrics_batch(
            Some(symbols.to_output(symbol_input)),
            columns.ts.clone(),
            metrics,
        )
        .map_err(arrow_error)?;
        Ok(PyArrowType(out))
    }

    /// The carried state of `symbol`, if it has been seen.
    fn carry(&self, symbol: &str) -> Option<CarryState> {
        self.carries
            .get(symbol)
            .map(|c| CarryState { inner: c.clone() })
    }

    /// Continue `symbol` from `carry` (a stored one, restored with `CarryState(data, config)`):
    /// its next bars must come after `carry.last_ts_us`.
    fn set_carry(&mut self, symbol: &str, carry: CarryState) -> PyResult<()> {
        if !self.config.state_compatible(carry.inner.config()) {
            return Err(metrics_error(
                core::MetricsError::CarryConfigMismatch,
                Some(symbol),
            ));
        }
        self.carries.insert(symbol.to_owned(), carry.inner);
        Ok(())
    }

    /// Symbols seen so far.
    fn symbols(&self) -> Vec<String> {
        let mut s: Vec<String> = self.carries.keys().cloned().collect();
        s.sort();
        s
    }
}

/// Computes every symbol run of a batch; the carries change only if the whole batch succeeds.
fn process_runs(
    config: &core::MetricsConfig,
    carries: &mut HashMap<String, core::CarryState>,
    symbols: &SymbolColumn<'_>,
    columns: &BarColumns<'_>,
    runs: &[Range<usize>],
) -> PyResult<core::Metrics> {
    let mut all = core::Metrics::default();
    let mut updated: HashMap<&str, core::CarryState> = HashMap::new();
    for run in runs {
        let symbol = symbols.value(run.start);
        let carry = updated.get(symbol).or_else(|| carries.get(symbol));
        let (metrics, next) = core::compute(&columns.bars(run.clone()), config, carry)
            .map_err(|e| metrics_error(e, Some(symbol)))?;
        all.append(metrics);
        updated.insert(symbol, next);
    }
    carries.extend(updated.into_iter().map(|(k, v)| (k.to_owned(), v)));
    Ok(all)
}

fn message_kind(kind: &str) -> PyResult<admission::MessageKind> {
    admission::MessageKind::parse(kind).ok_or_else(|| {
        PyValueError::new_err(format!(
            "kind must be 'trade', 'bar' or 'company', got {kind:?}"
        ))
    })
}

/// Admit the raw Kafka values of `batch` (column `value`, and `timestamp` as the receive time) under the
/// contract's rules for `kind`; every other column passes through. See `sparktrends.admission`.
#[pyfunction]
fn admit(
    py: Python<'_>,
    kind: &str,
    batch: PyArrowType<RecordBatch>,
) -> PyResult<PyArrowType<RecordBatch>> {
    let kind = message_kind(kind)?;
    let batch = batch.0;
    let out = py
        .detach(|| admission::admit_batch(kind, &batch))
        .map_err(arrow_error)?;
    Ok(PyArrowType(out))
}

/// The schema `admit(kind, batch)` returns for a batch of `schema`.
#[pyfunction]
fn admission_schema(
    kind: &str,
    schema: PyArrowType<arrow_schema::Schema>,
) -> PyResult<PyArrowType<arrow_schema::Schema>> {
    let out = admission::output_schema(message_kind(kind)?, &schema.0);
    Ok(PyArrowType(out.as_ref().clone()))
}

/// The contract's JSON files as this module was built with them: {file name: text}.
#[pyfunction]
fn contract_files() -> HashMap<&'static str, &'static str> {
    sparktrends_contract::FILES.into_iter().collect()
}

/// The output schema as a pyarrow.Schema (with the `symbol` column unless `with_symbol=False`).
#[pyfunction]
#[pyo3(name = "metrics_schema", signature = (with_symbol=true))]
fn metrics_schema_py(with_symbol: bool) -> PyArrowType<arrow_schema::Schema> {
    PyArrowType(metrics_schema(with_symbol).as_ref().clone())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", sparktrends_core::VERSION)?;
    m.add_class::<MetricsConfig>()?;
    m.add_class::<CarryState>()?;
    m.add_class::<MetricsStream>()?;
    m.add_function(wrap_pyfunction!(compute_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(metrics_schema_py, m)?)?;
    m.add_function(wrap_pyfunction!(admit, m)?)?;
    m.add_function(wrap_pyfunction!(admission_schema, m)?)?;
    m.add_function(wrap_pyfunction!(contract_files, m)?)?;
    Ok(())
}
