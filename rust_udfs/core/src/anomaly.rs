//! Anomaly kinds, severity and the rule that combines the per-kind statistics.
//!
//! Three statistics, computed by [`crate::detector`] with baselines that use only data before t:
//! - `price_jump`: the confirmed move away from the level of the bars before it, in σ̂ (a scale
//!   with a floor in price terms). Two-sided.
//! - `volume_spike`: the volume excess over what the bar's price activity explains. One-sided:
//!   unusually low volume is not alerted.
//! - `vol_regime_shift`: the trimmed RMS of the short window's returns over σ̂ just before it.
//!   One-sided (volatility rises).
//!
//! A kind fires when its statistic ≥ its warning threshold. `anomaly_score` = max over kinds of
//! statistic / warning threshold (null when no statistic is defined), so a score ≥ 1 means a
//! flagged bar; the detector's session mute and episode rule then decide whether it is alerted.
//! Severity is `critical` when any fired kind's statistic reaches its critical threshold, else
//! `warning`; none when nothing fired.

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
