//! The one configuration of every metric and anomaly rule (DESIGN §4: "defaults in one config").

use std::fmt;

use crate::session::Session;

/// Microseconds in a minute: timestamps in this crate are microseconds since the Unix epoch (UTC).
pub const MICROS_PER_MINUTE: i64 = 60_000_000;

/// Alert levels of one anomaly statistic: it fires at `warning`, and is `critical` from `critical` up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    pub warning: f64,
    pub critical: f64,
}

/// Alert levels per anomaly kind, in units of each kind's statistic (see [`crate::anomaly`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AnomalyThresholds {
    /// Confirmed price jump: the move away from the level of the bars before it, held one more bar,
    /// in σ̂ (the scale with a floor in price terms).
    pub price_z: Threshold,
    /// Volume beyond what the bar's price activity explains (one-sided: only more), in standard
    /// deviations of that excess over the window, floored at `volume_scale_floor`
    /// (see [`crate::detector`]).
    pub volume_z: Threshold,
    /// RMS of the short window's returns over σ̂ just before it (one-sided: rises only).
    pub vol_ratio: Threshold,
}

impl Default for AnomalyThresholds {
    fn default() -> Self {
        // Chosen on 184,418 real 1-minute bars of crypto, equities and futures (bench/detection_real.py,
        // docs/detection_real.md): about 0.6 Slack messages per symbol per day pooled, and more of
        // every injected kind and size found than by each simple baseline thresholded to the same
        // false-alarm rate. Critical is twice warning: a move that would alert twice over.
        Self {
            price_z: Threshold {
                warning: 5.5,
                critical: 11.0,
            },
            volume_z: Threshold {
                warning: 5.25,
                critical: 10.5,
            },
            vol_ratio: Threshold {
                warning: 4.25,
                critical: 8.5,
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
    /// Largest squared returns of the short window left out of the regime statistic, so that one
    /// jump (or a print and its reversal) cannot make a regime on its own.
    pub regime_trim: usize,
    /// L: bars whose mean squared return gives the detector's scale floor (needs `window` returns).
    pub scale_floor_window: usize,
    /// The floor is this share of the RMS return over `scale_floor_window` bars.
    pub scale_floor_share: f64,
    /// Smallest standard deviation of the volume excess the volume statistic divides by.
    pub volume_scale_floor: f64,
    /// A flagged bar less than this (µs) after the symbol's previous flagged bar continues its
    /// episode and is not alerted again, unless it is the episode's first critical one.
    pub episode_us: i64,
    /// Regular hours of the symbol's exchange; None for markets that never close (crypto).
    pub session: Option<Session>,
    /// Bars this close to a session window's open or close are not alerted (auctions, crosses).
    pub session_edge_minutes: u16,
    /// Whether bars outside the session (pre-, post-market, lunch) are not alerted (equities), or
    /// only the edges are muted (futures trade overnight).
    pub mute_outside_session: bool,
    pub thresholds: AnomalyThresholds,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            window: 30,
            min_periods: 10,
            ewma_lambda: 0.94,
            max_gap_us: 15 * MICROS_PER_MINUTE,
            regime_window: 30,
            // 480 + regime_window + 1 = 511 bars fit the jobs' 512-bar warm-up, so a live batch
            // sees the same floor as the full history (1,440 measured the same: docs/detection_real.md).
            scale_floor_window: 480,
            scale_floor_share: 0.5,
            regime_trim: 2,
            volume_scale_floor: 0.3,
            episode_us: 30 * MICROS_PER_MINUTE,
            session: None,
            session_edge_minutes: 2,
            mute_outside_session: true,
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
        if self.regime_trim >= self.regime_window {
            return fail(format!(
                "regime_trim must be below regime_window ({}), got {}",
                self.regime_window, self.regime_trim
            ));
        }
        if self.scale_floor_window < self.window || self.scale_floor_window > MAX_WINDOW {
            return fail(format!(
                "scale_floor_window must be in window ({})..={MAX_WINDOW}, got {}",
                self.window, self.scale_floor_window
            ));
        }
        for (name, value) in [
            ("scale_floor_share", self.scale_floor_share),
            ("volume_scale_floor", self.volume_scale_floor),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return fail(format!("{name} must be finite and >= 0, got {value}"));
            }
        }
        if self.episode_us < 0 {
            return fail(format!("episode must be >= 0, got {} µs", self.episode_us));
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

    /// Bars a continuation needs from the previous chunk for the window metrics: the window ending
    /// at t − 1 plus the close before its first return. The detector carries its own state.
    pub fn carry_len(&self) -> usize {
        self.window + 1
    }

    /// Bars of history before the first bar to compute that make its detector statistics what the
    /// full history gives (up to the EWMA's seed, which fades geometrically): the scale floor's
    /// window ending `regime_window` bars back (the regime baseline) or `window` bars back (the
    /// oldest volume excess, which divides by the scale and the mean volume before it), plus the
    /// close before it.
    pub fn warmup_len(&self) -> usize {
        self.carry_len()
            .max(self.scale_floor_window + self.regime_window.max(self.window) + 1)
    }

    /// Whether a carry produced under `other` can continue under `self`: everything except the
    /// alert thresholds shapes the carried state.
    pub fn state_compatible(&self, other: &MetricsConfig) -> bool {
        self.window == other.window
            && self.min_periods == other.min_periods
            && self.ewma_lambda.to_bits() == other.ewma_lambda.to_bits()
            && self.max_gap_us == other.max_gap_us
            && self.regime_window == other.regime_window
            && self.scale_floor_window == other.scale_floor_window
            && self.scale_floor_share.to_bits() == other.scale_floor_share.to_bits()
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
        assert_eq!(c.warmup_len(), 511);
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
                scale_floor_window: 29,
                ..ok
            },
            MetricsConfig {
                volume_scale_floor: -0.1,
                ..ok
            },
            MetricsConfig {
                episode_us: -1,
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
