//! The one configuration of every metric and anomaly rule (DESIGN §4: "defaults in one config").

use std::fmt;

/// Microseconds in a minute: timestamps in this crate are microseconds since the Unix epoch (UTC).
pub const MICROS_PER_MINUTE: i64 = 60_000_000;

/// Alert levels of one anomaly statistic: it fires at `warning`, and is `critical` from `critical` up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub warning: f64,
    pub critical: f64,
}

/// Alert levels per anomaly kind. Kept here, not in code, because they are tuned on labelled series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnomalyThresholds {
    /// Price-jump statistic |ℓ_t| / vol_yz(t − 1): the bar's log return in Yang–Zhang standard deviations of
    /// the window before it.
    pub price_z: Threshold,
    /// Volume z (one-sided: only unusually high volume), in standard deviations of ln(1+V).
    pub volume_z: Threshold,
    /// Ratio of short-window volatility to the long baseline that precedes it (one-sided: rises only).
    pub vol_ratio: Threshold,
}

impl Default for AnomalyThresholds {
    fn default() -> Self {
        Self {
            // Chosen from the labelled evaluation (bench/detection_eval.py, docs/detection.md).
            price_z: Threshold {
                warning: 5.25,
                critical: 10.0,
            },
            volume_z: Threshold {
                warning: 4.0,
                critical: 6.0,
            },
            vol_ratio: Threshold {
                warning: 3.0,
                critical: 4.5,
            },
        }
    }
}

/// Every parameter of the metrics and the anomaly rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricsConfig {
    /// n: bars (range windows) or returns (return windows) in a rolling window.
    pub window: usize,
    /// m: fewest non-null points a window needs to give a value; also the EWMA seed length.
    pub min_periods: usize,
    /// λ of the EWMA variance.
    pub ewma_lambda: f64,
    /// Bars further apart than this (µs) start a new segment.
    pub max_gap_us: i64,
    /// s: returns in the short window of the volatility-regime detector.
    pub regime_window: usize,
    pub thresholds: AnomalyThresholds,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            window: 30,
            min_periods: 10,
            ewma_lambda: 0.94,
            max_gap_us: 15 * MICROS_PER_MINUTE,
            regime_window: 10,
            thresholds: AnomalyThresholds::default(),
        }
    }
}

/// Upper bound on window lengths: keeps every per-window count far inside `u32`.
pub const MAX_WINDOW: usize = 1 << 20;

/// A configuration that would make some metric meaningless.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid metrics config: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

impl MetricsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |msg: String| Err(ConfigError(msg));
        if self.window == 0 || self.window > MAX_WINDOW {
            return fail(format!(
                "window must be in 1..={MAX_WINDOW}, got {}",
                self.window
            ));
        }
        if self.min_periods == 0 || self.min_periods > self.window {
            return fail(format!(
                "min_periods must be in 1..=window ({}), got {}",
                self.window, self.min_periods
            ));
        }
        if !(self.ewma_lambda > 0.0 && self.ewma_lambda < 1.0) {
            return fail(format!(
                "lambda must be in (0, 1), got {}",
                self.ewma_lambda
            ));
        }
        if self.max_gap_us <= 0 {
            return fail(format!(
                "max_gap must be positive, got {} µs",
                self.max_gap_us
            ));
        }
        if self.regime_window == 0 || self.regime_window > MAX_WINDOW {
            return fail(format!(
                "regime_window must be in 1..={MAX_WINDOW}, got {}",
                self.regime_window
            ));
        }
        let t = &self.thresholds;
        for (name, th) in [
            ("price_z", t.price_z),
            ("volume_z", t.volume_z),
            ("vol_ratio", t.vol_ratio),
        ] {
            let finite_positive =
                th.warning.is_finite() && th.warning > 0.0 && th.critical.is_finite();
            if !finite_positive || th.critical < th.warning {
                return fail(format!(
                    "{name} thresholds need 0 < warning <= critical, both finite; got warning={}, critical={}",
                    th.warning, th.critical
                ));
            }
        }
        Ok(())
    }

    /// Bars a continuation needs from the previous chunk: the long window ending s returns back,
    /// plus the close before its first return.
    pub fn carry_len(&self) -> usize {
        self.window + self.regime_window
    }

    /// Whether a carry produced under `other` can continue under `self`: everything except the
    /// alert thresholds shapes the carried state.
    pub(crate) fn state_compatible(&self, other: &MetricsConfig) -> bool {
        self.window == other.window
            && self.min_periods == other.min_periods
            && self.ewma_lambda.to_bits() == other.ewma_lambda.to_bits()
            && self.max_gap_us == other.max_gap_us
            && self.regime_window == other.regime_window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_design() {
        let c = MetricsConfig::default();
        assert_eq!((c.window, c.min_periods, c.ewma_lambda), (30, 10, 0.94));
        assert_eq!(c.max_gap_us, 15 * 60 * 1_000_000);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn rejects_meaningless_values() {
        let ok = MetricsConfig::default();
        let bad = [
            MetricsConfig { window: 0, ..ok },
            MetricsConfig {
                min_periods: 0,
                ..ok
            },
            MetricsConfig {
                min_periods: 31,
                ..ok
            },
            MetricsConfig {
                ewma_lambda: 1.0,
                ..ok
            },
            MetricsConfig {
                ewma_lambda: f64::NAN,
                ..ok
            },
            MetricsConfig {
                max_gap_us: 0,
                ..ok
            },
            MetricsConfig {
                regime_window: 0,
                ..ok
            },
            MetricsConfig {
                thresholds: AnomalyThresholds {
                    price_z: Threshold {
                        warning: 5.0,
                        critical: 4.0,
                    },
                    ..ok.thresholds
                },
                ..ok
            },
            MetricsConfig {
                thresholds: AnomalyThresholds {
                    volume_z: Threshold {
                        warning: f64::INFINITY,
                        critical: f64::INFINITY,
                    },
                    ..ok.thresholds
                },
                ..ok
            },
        ];
        for cfg in bad {
            assert!(cfg.validate().is_err(), "{cfg:?} should be rejected");
        }
    }
}
