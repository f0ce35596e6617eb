//! Market analytics kernels for SparkTrends, over plain column slices.
//!
//! No Python or Arrow types here: the binding crate (`sparktrends-py`) adapts Arrow arrays
//! to these slices, so the math is tested and benchmarked on its own.
//!
//! Entry point: [`compute`] takes one symbol's bars ([`Bars`]), a [`MetricsConfig`] and optionally
//! the [`CarryState`] of the previous chunk, and returns the [`Metrics`] columns plus the carry for
//! the next chunk. The definitions are DESIGN §4's; the rules below settle what §4 leaves open.
//!
//! # Representation
//! - `ts` is `i64` microseconds since the Unix epoch (UTC), Arrow's and Spark's native unit, and
//!   must increase strictly (also across a carry). A duplicate or a step back is an error.
//! - Nulls are NaN, on input and output. An output value is never ±∞: any non-finite result is
//!   null. Prices (O, H, L, C, bar VWAP) that are not finite and > 0 and volumes that are not
//!   finite and ≥ 0 are treated as null.
//!
//! # Segments and windows
//! - A bar more than `max_gap` after the previous one starts a segment (exactly `max_gap` does
//!   not). Every window, the EWMA and the returns restart there.
//! - Windows follow pandas' `rolling(window=n, min_periods=m)` within a segment: the last n rows
//!   (bars; for return windows the returns of those bars) ending at t, of which at least m non-null
//!   ones are needed. A window longer than the series just holds what there is; a single row gives
//!   nulls (no return, and every window is below m unless m = 1).
//! - Every variance and standard deviation is the sample one (ddof 1); a standard deviation needs
//!   at least two points. A window whose points are all identical has a dispersion of exactly 0
//!   (never rounding noise), and rounding can never make a variance negative.
//!
//! # Metrics (per bar t)
//! - `ret` = C_t/C_{t−1} − 1, `log_ret` ℓ_t = ln(C_t/C_{t−1}); null on a segment's first bar or
//!   when either close is null.
//! - `vol_cc`: std of ℓ over the window. `vol_ewma`: σ²_t = λσ²_{t−1} + (1−λ)ℓ²_t, seeded at the
//!   segment's m-th non-null return with the mean of its first m ℓ²; a null ℓ_t is skipped (state
//!   unchanged) and gives null at t. Zero returns give an EWMA of exactly 0, a valid value.
//! - `vol_parkinson`, `vol_gk`, `vol_rs`: √ of the window mean of ln(H/L)²/(4 ln 2), of
//!   ½ln(H/L)² − (2 ln 2 − 1)ln(C/O)², of ln(H/C)ln(H/O) + ln(L/C)ln(L/O), over bars whose inputs
//!   are non-null. OHLC consistency is not enforced; a negative σ² (only possible for bars with
//!   H < max(O, C) or L > min(O, C)) gives null.
//! - `vol_yz`: Yang–Zhang over the window's bars that have O, H, L, C and a previous close in the
//!   segment (w of them, w ≥ max(m, 2)); negative σ² gives null.
//! - `vwap_roll` = Σ vwap·V / Σ V over bars with a price and a volume (bar VWAP, else (H+L+C)/3);
//!   null when Σ V = 0 (all-zero volume). `vwap_dev` = (C − vwap_roll)/vwap_roll.
//! - Baselines use the window ending at t − 1 only: `return_z` = ℓ_t / vol_cc(t−1);
//!   `robust_z` = (ℓ_t − median)/(1.4826 · MAD) of the prior window's returns (m needed);
//!   `volume_z` = (ln(1+V_t) − mean)/std of ln(1+V) over the prior window's bars. A zero
//!   denominator (flat prices, constant volume, MAD of 0) gives null.
//! - `anomaly_score`, `is_anomaly`, kinds and severity: see the detector (`detector.rs`: the
//!   statistics, the session mute, the episode rule) and [`anomaly`] (scores and severity).
//!
//! # Streaming
//! [`compute`] with the previous call's [`CarryState`] continues a series bit for bit as if the
//! chunks had been one call. Windows are computed from the window's points only (see
//! [`rolling`](crate::rolling) internals: block prefix/suffix aggregates), so the carry holds just
//! the current segment's last `window + 1` bars, its length, the EWMA state and the detector's own
//! state (its scale, windows and episode continue across gaps).

pub mod anomaly;
pub mod codec;
pub mod config;
mod detector;
mod metrics;
mod rolling;
pub mod session;

pub use anomaly::{AnomalyKinds, Severity};
pub use codec::DecodeError;
pub use config::{AnomalyThresholds, ConfigError, MetricsConfig, Threshold, MICROS_PER_MINUTE};
pub use detector::DetectorState;
pub use metrics::{compute, Bars, CarryState, EwmaState, Metrics, MetricsError, MAD_SCALE};
pub use session::{Session, SessionPhase};

/// Crate version, surfaced by the Python package for diagnostics.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[doc(hidden)]
pub mod bench {
    //! Kernels exposed for the throughput example only.
    use crate::rolling::{rolling_variance, Reciprocals, Segments, SortedWindow};

    /// Rolling sample standard deviation of `x` over one segment (the `vol_cc` kernel).
    pub fn rolling_std(x: &[f64], window: usize, min_periods: usize, out: &mut [f64]) {
        let segs = Segments {
            ranges: vec![(0, x.len())],
            first_origin: 0,
        };
        let inv = Reciprocals::up_to(window);
        rolling_variance(&segs, window, min_periods as u32, &inv, x, out, f64::sqrt);
    }

    /// Rolling median and median absolute deviation of `x` over windows of `window` values ending at
    /// each t (the `robust_z` baseline kernel), null until `min_periods` values are in.
    pub fn rolling_median_mad(
        x: &[f64],
        window: usize,
        min_periods: usize,
        median_out: &mut [f64],
        mad_out: &mut [f64],
    ) {
        let mut sorted = SortedWindow::with_capacity(window + 1);
        for (t, &value) in x.iter().enumerate() {
            sorted.insert(value);
            if t >= window {
                sorted.remove(x[t - window]);
            }
            if sorted.len() >= min_periods {
                let median = sorted.median();
                median_out[t] = median;
                mad_out[t] = sorted.median_abs_deviation(median);
            } else {
                median_out[t] = f64::NAN;
                mad_out[t] = f64::NAN;
            }
        }
    }
}
