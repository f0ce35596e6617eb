//! Anomaly kinds, severity and the rule that combines the per-kind statistics.
//!
//! Three detectors, each with a statistic whose baseline uses only data before t:
//! - `price_jump`: |ℓ_t| / vol_yz(t − 1), the bar's log return in Yang–Zhang standard deviations of
//!   the window before it. The range-based estimator uses each bar's open, high, low and close, so
//!   its 30-bar baseline is a far less noisy scale than the 30 closes behind return_z or the
//!   median/MAD behind robust_z. Measured on labelled series over four seeds (docs/detection.md), it
//!   beats their best combination, min(|robust_z|, |return_z|), on precision and on recall at once.
//!   Two-sided.
//! - `volume_spike`: volume_z. One-sided: unusually low volume is not alerted.
//! - `vol_regime_shift`: σ_short / σ_base, where σ_short = 1.4826 · median(|ℓ|) over the last s
//!   returns ending at t (all s must be non-null; for zero-mean Gaussian returns it estimates σ),
//!   and σ_base = vol_cc at t − s, the long window that ends just before the short one starts.
//!   The windows do not overlap, so the new regime does not dilute its own baseline; the median
//!   makes a single jump (already a `price_jump`) unable to fire a regime shift on its own: more
//!   than half of the short window must be in the new regime. One-sided (vol rises). It fires on
//!   every bar while the condition holds; the alerter's per-symbol cooldown deduplicates.
//!
//! A kind fires when its statistic ≥ its warning threshold. `anomaly_score` = max over kinds of
//! statistic / warning threshold (null when no statistic is defined), so a score ≥ 1 means an
//! alert. `is_anomaly` is true iff at least one kind fired (decided on the statistics, not on the
//! rounded score). Severity is `critical` when any fired kind's statistic reaches its critical
//! threshold, else `warning`; none when nothing fired.

use crate::config::AnomalyThresholds;

use std::sync::LazyLock;

pub use sparktrends_contract::{AnomalyKind, Severity};

/// Set of anomaly kinds that fired at one bar, as a bit set. Bit i is `AnomalyKind::ALL[i]`, the
/// contract's order (contracts/analytics.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct AnomalyKinds(u8);

// Every subset's label, indexed by the bit set, built once so labelling allocates nothing.
static LABELS: LazyLock<Vec<Option<String>>> = LazyLock::new(|| {
    (0..1u16 << AnomalyKind::ALL.len())
        .map(|bits| {
            let names: Vec<&str> = AnomalyKind::ALL
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .map(|(_, kind)| kind.as_str())
                .collect();
            (!names.is_empty()).then(|| names.join(","))
        })
        .collect()
});

impl AnomalyKinds {
    pub const NONE: Self = Self(0);
    pub const PRICE_JUMP: Self = Self::of(AnomalyKind::PriceJump);
    pub const VOLUME_SPIKE: Self = Self::of(AnomalyKind::VolumeSpike);
    pub const VOL_REGIME_SHIFT: Self = Self::of(AnomalyKind::VolRegimeShift);

    const fn of(kind: AnomalyKind) -> Self {
        Self(1 << kind as u8)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn bits(self) -> u8 {
        self.0
    }

    /// Comma-separated names in the contract's kind order; None if empty.
    pub fn label(self) -> Option<&'static str> {
        LABELS[self.0 as usize].as_deref()
    }
}

impl std::ops::BitOr for AnomalyKinds {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for AnomalyKinds {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

/// The per-kind statistics at one bar; NaN where undefined.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AnomalyStats {
    pub price_z: f64,
    pub volume_z: f64,
    pub vol_ratio: f64,
}

/// The combined verdict at one bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Verdict {
    pub score: f64,
    pub kinds: AnomalyKinds,
    pub severity: Option<Severity>,
}

pub(crate) fn judge(stats: AnomalyStats, thresholds: &AnomalyThresholds) -> Verdict {
    let detectors = [
        (stats.price_z, thresholds.price_z, AnomalyKinds::PRICE_JUMP),
        (
            stats.volume_z,
            thresholds.volume_z,
            AnomalyKinds::VOLUME_SPIKE,
        ),
        (
            stats.vol_ratio,
            thresholds.vol_ratio,
            AnomalyKinds::VOL_REGIME_SHIFT,
        ),
    ];
    let mut score = f64::NAN;
    let mut kinds = AnomalyKinds::NONE;
    let mut critical = false;
    for (stat, threshold, kind) in detectors {
        if stat.is_nan() {
            continue;
        }
        let normalised = stat / threshold.warning;
        if score.is_nan() || normalised > score {
            score = normalised;
        }
        if stat >= threshold.warning {
            kinds |= kind;
            critical |= stat >= threshold.critical;
        }
    }
    let severity = match (kinds.is_empty(), critical) {
        (true, _) => None,
        (false, true) => Some(Severity::Critical),
        (false, false) => Some(Severity::Warning),
    };
    Verdict {
        score,
        kinds,
        severity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(price_z: f64, volume_z: f64, vol_ratio: f64) -> AnomalyStats {
        AnomalyStats {
            price_z,
            volume_z,
            vol_ratio,
        }
    }

    #[test]
    fn labels_follow_the_fixed_order() {
        let all =
            AnomalyKinds::VOL_REGIME_SHIFT | AnomalyKinds::PRICE_JUMP | AnomalyKinds::VOLUME_SPIKE;
        assert_eq!(
            all.label(),
            Some("price_jump,volume_spike,vol_regime_shift")
        );
        assert_eq!(
            (AnomalyKinds::VOL_REGIME_SHIFT | AnomalyKinds::VOLUME_SPIKE).label(),
            Some("volume_spike,vol_regime_shift")
        );
        assert_eq!(AnomalyKinds::NONE.label(), None);
    }

    #[test]
    fn thresholds_decide_kinds_and_severity() {
        let th = AnomalyThresholds::default();
        let quiet = judge(stats(1.0, -2.0, 1.1), &th);
        assert_eq!((quiet.kinds, quiet.severity), (AnomalyKinds::NONE, None));
        assert!(quiet.score < 1.0);

        let at_warning = judge(stats(th.price_z.warning, f64::NAN, f64::NAN), &th);
        assert_eq!(at_warning.kinds, AnomalyKinds::PRICE_JUMP);
        assert_eq!(at_warning.severity, Some(Severity::Warning));
        assert_eq!(at_warning.score, 1.0);

        let critical_volume = judge(stats(th.price_z.warning, th.volume_z.critical, 0.5), &th);
        assert_eq!(
            critical_volume.kinds,
            AnomalyKinds::PRICE_JUMP | AnomalyKinds::VOLUME_SPIKE
        );
        assert_eq!(critical_volume.severity, Some(Severity::Critical));
        assert_eq!(
            critical_volume.score,
            th.volume_z.critical / th.volume_z.warning
        );
    }

    #[test]
    fn undefined_statistics_give_no_score() {
        let v = judge(
            stats(f64::NAN, f64::NAN, f64::NAN),
            &AnomalyThresholds::default(),
        );
        assert!(v.score.is_nan());
        assert_eq!((v.kinds, v.severity), (AnomalyKinds::NONE, None));
    }
}
