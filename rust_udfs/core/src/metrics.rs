//! One symbol's metrics over its time-sorted 1-minute bars, with carried state for streaming.
//!
//! See the crate documentation for the rules every metric follows; this module wires the
//! per-bar series, the rolling windows, the EWMA and the anomaly rules together.

use std::borrow::Cow;
use std::f64::consts::LN_2;
use std::fmt;

use crate::anomaly::{AnomalyKinds, Severity};
use crate::codec::{self, invalid, DecodeError, Reader, Writer};
use crate::config::{ConfigError, MetricsConfig};
use crate::detector::{DetectorBar, DetectorState};
use crate::rolling::{
    rolling, rolling_variance, MomentAgg, MomentWindow, PairSumAgg, Reciprocals, Segments,
    SortedWindow, SumAgg,
};

/// Scale making the MAD of Gaussian data estimate its σ (DESIGN §4 uses 1.4826).
pub const MAD_SCALE: f64 = 1.4826;

/// One symbol's bars, sorted by strictly increasing `ts` (µs since the epoch, UTC).
///
/// Nulls are NaN. Prices (`open`, `high`, `low`, `close`, `vwap`) that are not finite and
/// positive, and volumes that are not finite and ≥ 0, count as null.
#[derive(Debug, Clone, Copy)]
pub struct Bars<'a> {
    pub ts: &'a [i64],
    pub open: &'a [f64],
    pub high: &'a [f64],
    pub low: &'a [f64],
    pub close: &'a [f64],
    pub volume: &'a [f64],
    /// The bar's own VWAP; where absent or null, (H + L + C) / 3 stands in.
    pub vwap: Option<&'a [f64]>,
}

impl Bars<'_> {
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    fn check_lengths(&self) -> Result<(), MetricsError> {
        let expected = self.ts.len();
        let columns = [
            ("open", Some(self.open)),
            ("high", Some(self.high)),
            ("low", Some(self.low)),
            ("close", Some(self.close)),
            ("volume", Some(self.volume)),
            ("vwap", self.vwap),
        ];
        for (column, values) in columns {
            if let Some(values) = values {
                if values.len() != expected {
                    return Err(MetricsError::LengthMismatch {
                        column,
                        expected,
                        actual: values.len(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// The metric columns, one value per input bar. NaN means null; no value is ever ±∞.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    pub ret: Vec<f64>,
    pub log_ret: Vec<f64>,
    pub vol_cc: Vec<f64>,
    pub vol_ewma: Vec<f64>,
    pub vol_parkinson: Vec<f64>,
    pub vol_gk: Vec<f64>,
    pub vol_rs: Vec<f64>,
    pub vol_yz: Vec<f64>,
    pub vwap_roll: Vec<f64>,
    pub vwap_dev: Vec<f64>,
    pub volume_z: Vec<f64>,
    pub return_z: Vec<f64>,
    pub robust_z: Vec<f64>,
    pub anomaly_score: Vec<f64>,
    pub is_anomaly: Vec<bool>,
    pub anomaly_kinds: Vec<AnomalyKinds>,
    pub severity: Vec<Option<Severity>>,
}

impl Metrics {
    /// Names of the float columns, in `metrics_1m` order (`is_anomaly` follows them).
    pub const FLOAT_COLUMNS: [&'static str; 14] = [
        "ret",
        "log_ret",
        "vol_cc",
        "vol_ewma",
        "vol_parkinson",
        "vol_gk",
        "vol_rs",
        "vol_yz",
        "vwap_roll",
        "vwap_dev",
        "volume_z",
        "return_z",
        "robust_z",
        "anomaly_score",
    ];

    fn with_len(len: usize) -> Self {
        let nulls = || vec![f64::NAN; len];
        Metrics {
            ret: nulls(),
            log_ret: nulls(),
            vol_cc: nulls(),
            vol_ewma: nulls(),
            vol_parkinson: nulls(),
            vol_gk: nulls(),
            vol_rs: nulls(),
            vol_yz: nulls(),
            vwap_roll: nulls(),
            vwap_dev: nulls(),
            volume_z: nulls(),
            return_z: nulls(),
            robust_z: nulls(),
            anomaly_score: nulls(),
            is_anomaly: vec![false; len],
            anomaly_kinds: vec![AnomalyKinds::NONE; len],
            severity: vec![None; len],
        }
    }

    pub fn len(&self) -> usize {
        self.is_anomaly.len()
    }

    pub fn is_empty(&self) -> bool {
        self.is_anomaly.is_empty()
    }

    /// The float columns in [`Metrics::FLOAT_COLUMNS`] order.
    pub fn float_columns(&self) -> [&[f64]; 14] {
        [
            &self.ret,
            &self.log_ret,
            &self.vol_cc,
            &self.vol_ewma,
            &self.vol_parkinson,
            &self.vol_gk,
            &self.vol_rs,
            &self.vol_yz,
            &self.vwap_roll,
            &self.vwap_dev,
            &self.volume_z,
            &self.return_z,
            &self.robust_z,
            &self.anomaly_score,
        ]
    }

    /// The float columns by value, in [`Metrics::FLOAT_COLUMNS`] order, and the rest.
    #[allow(clippy::type_complexity)]
    pub fn into_columns(
        self,
    ) -> (
        [Vec<f64>; 14],
        Vec<bool>,
        Vec<AnomalyKinds>,
        Vec<Option<Severity>>,
    ) {
        (
            [
                self.ret,
                self.log_ret,
                self.vol_cc,
                self.vol_ewma,
                self.vol_parkinson,
                self.vol_gk,
                self.vol_rs,
                self.vol_yz,
                self.vwap_roll,
                self.vwap_dev,
                self.volume_z,
                self.return_z,
                self.robust_z,
                self.anomaly_score,
            ],
            self.is_anomaly,
            self.anomaly_kinds,
            self.severity,
        )
    }

    fn float_columns_mut(&mut self) -> [&mut Vec<f64>; 14] {
        [
            &mut self.ret,
            &mut self.log_ret,
            &mut self.vol_cc,
            &mut self.vol_ewma,
            &mut self.vol_parkinson,
            &mut self.vol_gk,
            &mut self.vol_rs,
            &mut self.vol_yz,
            &mut self.vwap_roll,
            &mut self.vwap_dev,
            &mut self.volume_z,
            &mut self.return_z,
            &mut self.robust_z,
            &mut self.anomaly_score,
        ]
    }

    /// Appends `other`'s rows after this one's (concatenating per-symbol results of a batch).
    pub fn append(&mut self, mut other: Metrics) {
        for (mine, theirs) in self
            .float_columns_mut()
            .into_iter()
            .zip(other.float_columns_mut())
        {
            mine.append(theirs);
        }
        self.is_anomaly.append(&mut other.is_anomaly);
        self.anomaly_kinds.append(&mut other.anomaly_kinds);
        self.severity.append(&mut other.severity);
    }

    fn drop_leading(&mut self, count: usize) {
        if count == 0 {
            return;
        }
        for column in self.float_columns_mut() {
            column.drain(..count);
        }
        self.is_anomaly.drain(..count);
        self.anomaly_kinds.drain(..count);
        self.severity.drain(..count);
    }
}

/// EWMA variance state of the current segment.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct EwmaState {
    /// Non-null returns seen in the segment.
    pub returns: u64,
    /// Σℓ² of the first min(returns, m) returns: the seed under construction.
    pub seed_sum_sq: f64,
    /// σ², valid once `returns >= m`.
    pub variance: f64,
}

impl EwmaState {
    /// Feeds ℓ_t and returns σ_t (NaN while unseeded, and for a null ℓ_t, which is skipped).
    #[inline]
    pub(crate) fn update(&mut self, log_ret: f64, min_periods: u64, lambda: f64) -> f64 {
        if log_ret.is_nan() {
            return f64::NAN;
        }
        let sq = log_ret * log_ret;
        self.returns += 1;
        if self.returns <= min_periods {
            self.seed_sum_sq += sq;
            if self.returns < min_periods {
                return f64::NAN;
            }
            self.variance = self.seed_sum_sq / min_periods as f64;
        } else {
            self.variance = lambda * self.variance + (1.0 - lambda) * sq;
        }
        self.variance.sqrt()
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.returns);
        w.f64(self.seed_sum_sq);
        w.f64(self.variance);
    }

    pub(crate) fn decode(r: &mut Reader, what: &str) -> Result<Self, DecodeError> {
        Ok(EwmaState {
            returns: r.u64(what)?,
            seed_sum_sq: r.f64(what)?,
            variance: r.f64(what)?,
        })
    }
}

/// Bars kept from the end of a chunk, owned.
#[derive(Debug, Clone, Default)]
struct TailBars {
    ts: Vec<i64>,
    open: Vec<f64>,
    high: Vec<f64>,
    low: Vec<f64>,
    close: Vec<f64>,
    volume: Vec<f64>,
    /// NaN where the bar had no VWAP.
    vwap: Vec<f64>,
}

/// Everything needed to continue a symbol's series in a later call exactly as if its earlier
/// bars had been part of that call: the current segment's last `window + 1` bars (fewer if the
/// segment is shorter), the segment's length, the EWMA state and the detector's state.
#[derive(Debug, Clone, PartialEq)]
pub struct CarryState {
    config: MetricsConfig,
    tail: TailBars,
    segment_len: u64,
    ewma: EwmaState,
    detector: DetectorState,
}

impl CarryState {
    /// The state before any bar.
    pub fn empty(config: &MetricsConfig) -> Self {
        CarryState {
            config: *config,
            tail: TailBars::default(),
            segment_len: 0,
            ewma: EwmaState::default(),
            detector: DetectorState::new(config),
        }
    }

    /// Timestamp of the last bar seen, if any.
    pub fn last_ts(&self) -> Option<i64> {
        self.tail.ts.last().copied()
    }

    /// Bars in the current segment so far.
    pub fn segment_len(&self) -> u64 {
        self.segment_len
    }

    /// Bars carried over (at most `window + 1`).
    pub fn tail_len(&self) -> usize {
        self.tail.ts.len()
    }

    pub fn ewma(&self) -> EwmaState {
        self.ewma
    }

    /// The configuration of the last call that produced this carry.
    pub fn config(&self) -> &MetricsConfig {
        &self.config
    }

    /// The carry as bytes (see [`crate::codec`]): a few kB, whatever the history behind it.
    /// `CarryState::from_bytes(&c.to_bytes(), cfg)` continues a series exactly as `c` does.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.bytes.extend_from_slice(codec::MAGIC);
        w.u16(codec::VERSION);
        encode_state_shape(&self.config, &mut w);
        let t = &self.tail;
        w.i64s(&t.ts);
        for column in [&t.open, &t.high, &t.low, &t.close, &t.volume, &t.vwap] {
            w.f64s(column);
        }
        w.u64(self.segment_len);
        self.ewma.encode(&mut w);
        self.detector.encode(&mut w);
        w.bytes
    }

    /// Restores a carry under `config`, which must shape the state as the one it was encoded
    /// under did (windows, λ, gap: [`MetricsError::CarryConfigMismatch`] otherwise); alert
    /// thresholds may differ. Anything else that is off is [`MetricsError::CarryDecode`].
    pub fn from_bytes(bytes: &[u8], config: &MetricsConfig) -> Result<Self, MetricsError> {
        config.validate()?;
        if bytes.get(..codec::MAGIC.len()) != Some(&codec::MAGIC[..]) {
            return Err(invalid("no STCS header").into());
        }
        let mut r = Reader::new(&bytes[codec::MAGIC.len()..]);
        let version = r.u16("version")?;
        if version != codec::VERSION {
            return Err(invalid(format!(
                "version {version}, this build reads {}",
                codec::VERSION
            ))
            .into());
        }
        if !decode_state_shape(&mut r)?.state_compatible(config) {
            return Err(MetricsError::CarryConfigMismatch);
        }
        let max = config.carry_len();
        let ts = r.i64s("tail ts", max)?;
        if ts.windows(2).any(|pair| pair[1] <= pair[0]) {
            return Err(invalid("tail ts not strictly increasing").into());
        }
        let mut columns = Vec::with_capacity(6);
        for what in [
            "tail open",
            "tail high",
            "tail low",
            "tail close",
            "tail volume",
            "tail vwap",
        ] {
            let column = r.f64s(what, max)?;
            if column.len() != ts.len() {
                return Err(invalid(format!(
                    "{what} has {} values, ts {}",
                    column.len(),
                    ts.len()
                ))
                .into());
            }
            columns.push(column);
        }
        let [open, high, low, close, volume, vwap]: [Vec<f64>; 6] =
            columns.try_into().expect("six columns");
        let segment_len = r.u64("segment length")?;
        if segment_len < ts.len() as u64 {
            return Err(invalid("segment shorter than its tail").into());
        }
        let ewma = EwmaState::decode(&mut r, "ewma")?;
        let detector = DetectorState::decode(&mut r, config)?;
        r.finish()?;
        Ok(CarryState {
            config: *config,
            tail: TailBars {
                ts,
                open,
                high,
                low,
                close,
                volume,
                vwap,
            },
            segment_len,
            ewma,
            detector,
        })
    }
}

/// The parameters that shape a carry ([`MetricsConfig::state_compatible`]'s), so a carry cannot
/// be restored under windows it was not built with.
fn encode_state_shape(c: &MetricsConfig, w: &mut Writer) {
    w.usize(c.window);
    w.usize(c.min_periods);
    w.f64(c.ewma_lambda);
    w.i64(c.max_gap_us);
    w.usize(c.regime_window);
    w.usize(c.scale_floor_window);
    w.f64(c.scale_floor_share);
}

fn decode_state_shape(r: &mut Reader) -> Result<MetricsConfig, DecodeError> {
    Ok(MetricsConfig {
        window: r.usize("window")?,
        min_periods: r.usize("min_periods")?,
        ewma_lambda: r.f64("lambda")?,
        max_gap_us: r.i64("max gap")?,
        regime_window: r.usize("regime window")?,
        scale_floor_window: r.usize("scale floor window")?,
        scale_floor_share: r.f64("scale floor share")?,
        ..MetricsConfig::default()
    })
}

#[derive(Debug, Clone, PartialEq)]
pub enum MetricsError {
    Config(ConfigError),
    LengthMismatch {
        column: &'static str,
        expected: usize,
        actual: usize,
    },
    /// `ts` must increase strictly (within the chunk and after the carried bars).
    NotIncreasing {
        index: usize,
        previous: i64,
        current: i64,
    },
    /// The carry was produced under a configuration with different windows, λ or gap.
    CarryConfigMismatch,
    /// Bytes given as an encoded carry are not one (truncated, another version, inconsistent).
    CarryDecode(DecodeError),
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsError::Config(e) => e.fmt(f),
            MetricsError::LengthMismatch { column, expected, actual } => {
                write!(f, "column {column} has {actual} values, ts has {expected}")
            }
            MetricsError::NotIncreasing { index, previous, current } => write!(
                f,
                "ts must be strictly increasing: row {index} has ts {current} µs after {previous} µs"
            ),
            MetricsError::CarryDecode(e) => e.fmt(f),
            MetricsError::CarryConfigMismatch => {
                write!(f, "carry state was produced with a different window, min_periods, lambda, max_gap, regime_window or scale_floor_window")
            }
        }
    }
}

impl std::error::Error for MetricsError {}

impl From<DecodeError> for MetricsError {
    fn from(e: DecodeError) -> Self {
        MetricsError::CarryDecode(e)
    }
}

impl From<ConfigError> for MetricsError {
    fn from(e: ConfigError) -> Self {
        MetricsError::Config(e)
    }
}

#[inline(always)]
fn price(x: f64) -> f64 {
    if x.is_finite() && x > 0.0 {
        x
    } else {
        f64::NAN
    }
}

#[inline(always)]
fn volume(x: f64) -> f64 {
    if x.is_finite() && x >= 0.0 {
        x
    } else {
        f64::NAN
    }
}

/// `num / den` when the denominator is positive and the quotient finite, else NaN (null).
#[inline(always)]
fn ratio(num: f64, den: f64) -> f64 {
    let q = num / den;
    if den > 0.0 && q.is_finite() {
        q
    } else {
        f64::NAN
    }
}

/// √σ², or NaN for a negative or NaN σ² (possible only for inconsistent OHLC bars).
#[inline(always)]
fn sigma(variance: f64) -> f64 {
    if variance >= 0.0 {
        variance.sqrt()
    } else {
        f64::NAN
    }
}

fn joined<'a, T: Copy>(tail: &[T], new: &'a [T]) -> Cow<'a, [T]> {
    if tail.is_empty() {
        Cow::Borrowed(new)
    } else {
        Cow::Owned([tail, new].concat())
    }
}

/// The carried tail followed by the new bars.
struct Working<'a> {
    ts: Cow<'a, [i64]>,
    open: Cow<'a, [f64]>,
    high: Cow<'a, [f64]>,
    low: Cow<'a, [f64]>,
    close: Cow<'a, [f64]>,
    volume: Cow<'a, [f64]>,
    vwap: Option<Cow<'a, [f64]>>,
}

/// Bitwise, so that null (NaN) prices compare equal: two carries are equal iff they continue a
/// series identically.
impl PartialEq for TailBars {
    fn eq(&self, other: &Self) -> bool {
        let same = |a: &[f64], b: &[f64]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
        };
        self.ts == other.ts
            && same(&self.open, &other.open)
            && same(&self.high, &other.high)
            && same(&self.low, &other.low)
            && same(&self.close, &other.close)
            && same(&self.volume, &other.volume)
            && same(&self.vwap, &other.vwap)
    }
}

impl<'a> Working<'a> {
    fn new(tail: &TailBars, bars: &Bars<'a>) -> Self {
        let vwap = match (tail.vwap.is_empty(), bars.vwap) {
            (true, None) => None,
            (true, Some(v)) => Some(Cow::Borrowed(v)),
            (false, Some(v)) => Some(Cow::Owned([&tail.vwap[..], v].concat())),
            (false, None) => {
                let mut v = tail.vwap.clone();
                v.resize(tail.vwap.len() + bars.len(), f64::NAN);
                Some(Cow::Owned(v))
            }
        };
        Working {
            ts: joined(&tail.ts, bars.ts),
            open: joined(&tail.open, bars.open),
            high: joined(&tail.high, bars.high),
            low: joined(&tail.low, bars.low),
            close: joined(&tail.close, bars.close),
            volume: joined(&tail.volume, bars.volume),
            vwap,
        }
    }

    fn len(&self) -> usize {
        self.ts.len()
    }

    fn tail(&self, from: usize) -> TailBars {
        TailBars {
            ts: self.ts[from..].to_vec(),
            open: self.open[from..].to_vec(),
            high: self.high[from..].to_vec(),
            low: self.low[from..].to_vec(),
            close: self.close[from..].to_vec(),
            volume: self.volume[from..].to_vec(),
            vwap: match &self.vwap {
                Some(v) => v[from..].to_vec(),
                None => vec![f64::NAN; self.len() - from],
            },
        }
    }
}

fn segments(ts: &[i64], max_gap_us: i64, first_origin: u64) -> Segments {
    let mut ranges = Vec::new();
    let mut start = 0;
    for i in 1..ts.len() {
        // Saturating: a gap wider than i64 is still a gap, never an overflow panic.
        if ts[i].saturating_sub(ts[i - 1]) > max_gap_us {
            ranges.push((start, i));
            start = i;
        }
    }
    if !ts.is_empty() {
        ranges.push((start, ts.len()));
    }
    Segments {
        ranges,
        first_origin,
    }
}

/// Per-bar inputs of the windows, NaN where undefined.
struct BarSeries {
    log_ret: Vec<f64>,
    ret: Vec<f64>,
    parkinson: Vec<f64>,
    garman_klass: Vec<f64>,
    rogers_satchell: Vec<f64>,
    /// ln(O_t / C_{t-1}), ln(C_t / O_t) and the RS term, only on bars Yang–Zhang may use: O, H, L,
    /// C valid and a valid previous close in the segment (the three parts share their bars).
    yz_open: Vec<f64>,
    yz_close: Vec<f64>,
    yz_rs: Vec<f64>,
    log_volume: Vec<f64>,
    /// vwap·V and V, on bars where both are defined.
    price_volume: Vec<f64>,
    vwap_volume: Vec<f64>,
}

fn bar_series(w: &Working, segs: &Segments) -> BarSeries {
    let len = w.len();
    let nan = || vec![f64::NAN; len];
    let mut s = BarSeries {
        log_ret: nan(),
        ret: nan(),
        parkinson: nan(),
        garman_klass: nan(),
        rogers_satchell: nan(),
        yz_open: nan(),
        yz_close: nan(),
        yz_rs: nan(),
        log_volume: nan(),
        price_volume: nan(),
        vwap_volume: nan(),
    };
    let gk_close_weight = 2.0 * LN_2 - 1.0;
    for (start, end, _) in segs.iter() {
        for i in start..end {
            let (o, h, l, c) = (
                price(w.open[i]),
                price(w.high[i]),
                price(w.low[i]),
                price(w.close[i]),
            );
            let v = volume(w.volume[i]);
            let prev_close = if i > start {
                price(w.close[i - 1])
            } else {
                f64::NAN
            };

            s.ret[i] = c / prev_close - 1.0;
            s.log_ret[i] = (c / prev_close).ln();

            let hl = (h / l).ln();
            let co = (c / o).ln();
            s.parkinson[i] = hl * hl;
            s.garman_klass[i] = 0.5 * hl * hl - gk_close_weight * co * co;
            let rs = (h / c).ln() * (h / o).ln() + (l / c).ln() * (l / o).ln();
            s.rogers_satchell[i] = rs;
            let open_gap = (o / prev_close).ln();
            if !(open_gap.is_nan() || co.is_nan() || rs.is_nan()) {
                s.yz_open[i] = open_gap;
                s.yz_close[i] = co;
                s.yz_rs[i] = rs;
            }

            s.log_volume[i] = v.ln_1p();
            let bar_vwap = w.vwap.as_ref().map_or(f64::NAN, |vw| price(vw[i]));
            let typical = if bar_vwap.is_nan() {
                (h + l + c) / 3.0
            } else {
                bar_vwap
            };
            if !(typical.is_nan() || v.is_nan()) {
                s.price_volume[i] = typical * v;
                s.vwap_volume[i] = v;
            }
        }
    }
    s
}

/// Computes one symbol's metrics for `bars`, continuing from `carry` when given.
///
/// Returns one row per bar of `bars` (the carried bars are not repeated) and the carry for the
/// next call. `compute(a ++ b, None)` equals `compute(a, None)` then `compute(b, Some(&carry))`
/// exactly, bit for bit.
pub fn compute(
    bars: &Bars,
    cfg: &MetricsConfig,
    carry: Option<&CarryState>,
) -> Result<(Metrics, CarryState), MetricsError> {
    cfg.validate()?;
    bars.check_lengths()?;
    if let Some(c) = carry {
        if !c.config.state_compatible(cfg) {
            return Err(MetricsError::CarryConfigMismatch);
        }
    }
    let carried_last_ts = carry.and_then(CarryState::last_ts);
    if let (Some(previous), Some(&current)) = (carried_last_ts, bars.ts.first()) {
        if current <= previous {
            return Err(MetricsError::NotIncreasing {
                index: 0,
                previous,
                current,
            });
        }
    }
    for (i, pair) in bars.ts.windows(2).enumerate() {
        if pair[1] <= pair[0] {
            return Err(MetricsError::NotIncreasing {
                index: i + 1,
                previous: pair[0],
                current: pair[1],
            });
        }
    }
    if bars.is_empty() {
        let same = carry.cloned().unwrap_or_else(|| CarryState::empty(cfg));
        return Ok((
            Metrics::default(),
            CarryState {
                config: *cfg,
                ..same
            },
        ));
    }

    let empty_tail = TailBars::default();
    let continuing = match (carry, carried_last_ts) {
        (Some(c), Some(last)) if bars.ts[0].saturating_sub(last) <= cfg.max_gap_us => Some(c),
        _ => None,
    };
    let (tail, origin, ewma) = match continuing {
        Some(c) => (&c.tail, c.segment_len - c.tail.ts.len() as u64, c.ewma),
        None => (&empty_tail, 0, EwmaState::default()),
    };
    let tail_len = tail.ts.len();
    let work = Working::new(tail, bars);
    let len = work.len();
    let segs = segments(&work.ts, cfg.max_gap_us, origin);
    let series = bar_series(&work, &segs);

    let mut out = Metrics::with_len(len);
    let n = cfg.window;
    let m = cfg.min_periods as u32;

    let inv = Reciprocals::up_to(n);

    rolling_variance(
        &segs,
        n,
        m,
        &inv,
        &series.log_ret,
        &mut out.vol_cc,
        f64::sqrt,
    );
    let range_estimator = |terms: &[f64], scale: f64, out: &mut [f64]| {
        rolling::<SumAgg>(
            &segs,
            n,
            &(),
            |i| terms[i],
            |t, w| {
                if w.count >= m {
                    out[t] = sigma(w.sum / w.count as f64 / scale);
                }
            },
        );
    };
    range_estimator(&series.parkinson, 4.0 * LN_2, &mut out.vol_parkinson);
    range_estimator(&series.garman_klass, 1.0, &mut out.vol_gk);
    range_estimator(&series.rogers_satchell, 1.0, &mut out.vol_rs);
    yang_zhang(&series, &segs, cfg, &inv, &mut out.vol_yz);

    rolling::<PairSumAgg>(
        &segs,
        n,
        &(),
        |i| (series.price_volume[i], series.vwap_volume[i]),
        |t, w| {
            if w.count >= m {
                out.vwap_roll[t] = ratio(w.a, w.b);
            }
        },
    );
    for t in 0..len {
        out.vwap_dev[t] = ratio(price(work.close[t]) - out.vwap_roll[t], out.vwap_roll[t]);
    }

    let mut log_volume_windows = vec![MomentWindow::EMPTY; len];
    rolling::<MomentAgg>(
        &segs,
        n,
        &inv,
        |i| series.log_volume[i],
        |t, w| log_volume_windows[t] = w,
    );

    let mut ewma = ewma;
    for (start, end, _) in segs.iter() {
        let first = start.max(tail_len);
        if start >= tail_len {
            ewma = EwmaState::default();
        }
        for t in first..end {
            out.vol_ewma[t] =
                ewma.update(series.log_ret[t], cfg.min_periods as u64, cfg.ewma_lambda);
        }
    }

    baselines(&series, &segs, cfg, &log_volume_windows, &mut out);
    let mut detector = carry.map_or_else(|| DetectorState::new(cfg), |c| c.detector.clone());
    #[allow(clippy::needless_range_loop)] // t indexes the bars, the series and the outputs alike
    for t in tail_len..len {
        let alert = detector.step(
            DetectorBar {
                ts: work.ts[t],
                log_close: price(work.close[t]).ln(),
                log_ret: series.log_ret[t],
                log_range: (price(work.high[t]) / price(work.low[t])).ln(),
                volume: volume(work.volume[t]),
            },
            cfg,
        );
        out.anomaly_score[t] = alert.score;
        out.is_anomaly[t] = alert.alerted;
        out.anomaly_kinds[t] = alert.kinds;
        out.severity[t] = alert.severity;
    }

    out.ret = series.ret;
    out.log_ret = series.log_ret;
    out.drop_leading(tail_len);

    let (last_start, _, last_origin) = segs.iter().last().expect("bars is not empty");
    let keep = (len - last_start).min(cfg.carry_len());
    let next = CarryState {
        config: *cfg,
        tail: work.tail(len - keep),
        segment_len: last_origin + (len - last_start) as u64,
        ewma,
        detector,
    };
    Ok((out, next))
}

/// σ²_yz = σ²_open + k σ²_close + (1 − k) σ²_rs over the window's bars that have a previous close
/// in the segment (w of them, w ≥ max(m, 2)), k = 0.34 / (1.34 + (w + 1)/(w − 1)).
fn yang_zhang(
    series: &BarSeries,
    segs: &Segments,
    cfg: &MetricsConfig,
    inv: &Reciprocals,
    out: &mut [f64],
) {
    let n = cfg.window;
    let len = out.len();
    let mut open_var = vec![f64::NAN; len];
    let mut close_var = vec![f64::NAN; len];
    rolling::<MomentAgg>(
        segs,
        n,
        inv,
        |i| series.yz_open[i],
        |t, w| open_var[t] = w.variance,
    );
    rolling::<MomentAgg>(
        segs,
        n,
        inv,
        |i| series.yz_close[i],
        |t, w| close_var[t] = w.variance,
    );
    let min_bars = cfg.min_periods.max(2) as u32;
    rolling::<SumAgg>(
        segs,
        n,
        &(),
        |i| series.yz_rs[i],
        |t, w| {
            if w.count >= min_bars {
                let bars = w.count as f64;
                let k = 0.34 / (1.34 + (bars + 1.0) / (bars - 1.0));
                let rs_var = w.sum / bars;
                out[t] = sigma(open_var[t] + k * close_var[t] + (1.0 - k) * rs_var);
            }
        },
    );
}

/// return_z, robust_z and volume_z against the window ending at t − 1. Baselines never include
/// bar t.
fn baselines(
    series: &BarSeries,
    segs: &Segments,
    cfg: &MetricsConfig,
    log_volume_windows: &[MomentWindow],
    out: &mut Metrics,
) {
    let (n, m) = (cfg.window, cfg.min_periods);
    let mut prior_returns = SortedWindow::with_capacity(n + 1);
    let finite_or_nan = |x: f64| if x.is_finite() { x } else { f64::NAN };
    for (start, end, _) in segs.iter() {
        prior_returns.clear();
        for t in start..end {
            let l = series.log_ret[t];
            if t > start {
                out.return_z[t] = finite_or_nan(ratio(l, out.vol_cc[t - 1]));
                let prior_volume = log_volume_windows[t - 1];
                if prior_volume.count as usize >= m {
                    let sd = prior_volume.variance.sqrt();
                    let deviation = series.log_volume[t] - prior_volume.mean;
                    out.volume_z[t] = finite_or_nan(ratio(deviation, sd));
                }
            }
            if prior_returns.len() >= m {
                let median = prior_returns.median();
                let spread = MAD_SCALE * prior_returns.median_abs_deviation(median);
                out.robust_z[t] = finite_or_nan(ratio(l - median, spread));
            }
            prior_returns.insert(l);
            if t >= start + n {
                prior_returns.remove(series.log_ret[t - n]);
            }
        }
    }
}

#[cfg(test)]
mod contract_tests {
    use super::Metrics;
    use sparktrends_contract::analytics::METRIC_COLUMNS;

    #[test]
    fn columns_are_the_contract_metric_columns() {
        let (floats, rest) = METRIC_COLUMNS.split_at(Metrics::FLOAT_COLUMNS.len());
        assert_eq!(floats, Metrics::FLOAT_COLUMNS);
        assert_eq!(rest, ["is_anomaly"]);
    }
}
