//! What turns a symbol's bars into alerts: the three statistics, the session mute and the episode
//! rule, run bar by bar over state that is carried explicitly (never rebuilt from a tail), so the
//! scale and the episode continue across gaps and across calls exactly.
//!
//! Designed on real 1-minute bars against simple baselines (docs/detection_real.md, "candidate D").
//! σ̂_t is the scale known after bar t: max(√EWMA_λ(ℓ²) through t, share · RMS of ℓ over the last
//! `scale_floor_window` bars through t). The EWMA follows the local volatility; the long RMS is a
//! floor in price terms that a stale stretch of zero returns cannot collapse (the first detector
//! scored a 7 bp move after 30 flat minutes at z = 350). Neither resets at a gap: an equity's
//! overnight gap starts a new segment for the metrics, but yesterday's scale is the best one for
//! this morning's first bars.
//!
//! At bar t (ℓ_t its log return, c its log close):
//! - **price jump**, confirmed: with m = median(c_{t−4}, c_{t−3}, c_{t−2}), d₀ = c_{t−1} − m and
//!   d₁ = c_t − m, J_t = min(|d₀|, |d₁|) / σ̂_{t−2} when d₀ and d₁ have the same sign, else 0; null
//!   unless bars t−4 … t are in one segment. The move happened at t − 1 and is reported at t,
//!   once it has held a bar: a print that reverts at once, or one that bar t − 1 only undoes,
//!   scores about 0 (on real bars those were most of the first detector's top alerts).
//! - **volume spike**, volume beyond what the bar's price activity explains ("effort without
//!   result"): with u_t = ln(V_t / V̄_{t−1} + ε), V̄ the mean volume of the last
//!   `scale_floor_window` bars, and a_t = ln(1 + max(ln(H_t/L_t), |ℓ_t|) / σ̂_{t−1}), the excess
//!   x_t = u_t − a_t, and V_t = (x_t − mean) / max(std, `volume_scale_floor`) over the `window`
//!   excesses before t. Busy real minutes move the price; a block that trades without moving it,
//!   or a burst in a quiet market, does not. Relative to V̄, so the units of volume (0.006 BTC or
//!   100,000 shares a minute) do not change the statistic, as they did ln(1+V)'s; on real bars
//!   it found twice the injected spikes the plain `volume_z` did (docs/detection_real.md).
//! - **volatility regime**: R_t = RMS of the last `regime_window` returns through t (all present),
//!   without the `regime_trim` largest, / σ̂_{t−regime_window}, the scale known just before the
//!   short window began. The trim keeps one jump, or a print and its reversal, from making a
//!   regime on its own (a jump is the jump statistic's to report).
//!
//! The score is the largest statistic over its warning threshold (see [`crate::anomaly`]). A bar is
//! **alerted** (`is_anomaly`) when the score reaches 1, the session does not mute it, and it starts
//! an episode: a flagged bar less than `episode` after the symbol's previous flagged bar (alerted
//! or not) continues that episode and is alerted only if it is critical and the episode had no
//! critical alert yet. `anomaly_score` keeps the raw score of every bar.

use crate::anomaly::{judge, AnomalyKinds, AnomalyStats, Severity, Verdict};
use crate::codec::{invalid, DecodeError, Reader, Writer};
use crate::config::MetricsConfig;
use crate::metrics::EwmaState;
use crate::session::SessionPhase;

/// Sum and count of the last `cap` values pushed (NaN = absent), updated in O(1).
///
/// The running sum (of non-negative values: squares, volumes) is recomputed from the stored values
/// every `cap` pushes, so rounding cannot drift, and whenever the value leaving held at least half
/// of it, so a large value leaving cannot cancel the small ones' sum to nothing (500 + 1e-32 − 500
/// is 0 in floating point, and the mean of a window of tiny volumes is not). A window with no
/// positive value has a sum of exactly 0. Everything is a function of the push sequence, so a
/// carried window continues bit for bit.
#[derive(Debug, Clone)]
struct RingWindow {
    /// Values held once full (a Vec's capacity does not survive a clone, so it is kept here).
    cap: usize,
    values: Vec<f64>,
    next: usize,
    sum: f64,
    present: usize,
    positive: usize,
    pushes_since_refresh: usize,
}

impl RingWindow {
    fn new(cap: usize) -> Self {
        RingWindow {
            cap,
            values: Vec::with_capacity(cap),
            next: 0,
            sum: 0.0,
            present: 0,
            positive: 0,
            pushes_since_refresh: 0,
        }
    }

    fn push(&mut self, x: f64) {
        let cap = self.cap;
        let mut dominant_left = false;
        if self.values.len() < cap {
            self.values.push(x);
        } else {
            let old = std::mem::replace(&mut self.values[self.next], x);
            self.next = (self.next + 1) % cap;
            if !old.is_nan() {
                dominant_left = old > 0.0 && old >= 0.5 * self.sum;
                self.sum -= old;
                self.present -= 1;
                self.positive -= usize::from(old > 0.0);
            }
        }
        if !x.is_nan() {
            self.sum += x;
            self.present += 1;
            self.positive += usize::from(x > 0.0);
        }
        self.pushes_since_refresh += 1;
        if dominant_left || self.pushes_since_refresh >= cap {
            self.sum = self.values.iter().filter(|v| !v.is_nan()).sum();
            self.pushes_since_refresh = 0;
        }
        if self.positive == 0 {
            self.sum = 0.0;
        }
    }

    /// Mean of the present values, NaN below `min_present`.
    fn mean(&self, min_present: usize) -> f64 {
        if self.present >= min_present.max(1) {
            self.sum.max(0.0) / self.present as f64
        } else {
            f64::NAN
        }
    }

    /// Mean of the values without the `trim` largest, when all `cap` are present.
    fn trimmed_mean(&self, trim: usize) -> f64 {
        let cap = self.cap;
        if !self.full_and_present() || trim >= cap {
            return f64::NAN;
        }
        // The `trim` largest, ascending; summed from the values themselves so the result does
        // not depend on the running sum's history.
        let mut largest: Vec<f64> = Vec::with_capacity(trim + 1);
        let mut total = 0.0;
        for &v in &self.values {
            total += v;
            if trim > 0 && (largest.len() < trim || v > largest[0]) {
                let at = largest.partition_point(|&x| x < v);
                largest.insert(at, v);
                if largest.len() > trim {
                    largest.remove(0);
                }
            }
        }
        let kept: f64 = total - largest.iter().sum::<f64>();
        kept.max(0.0) / (cap - trim) as f64
    }

    /// Mean and sample standard deviation (two passes over the held values) of the present
    /// values, None below `min_present`; the deviation is NaN for a single value.
    fn mean_and_std(&self, min_present: usize) -> Option<(f64, f64)> {
        if self.present < min_present.max(1) {
            return None;
        }
        let present = || self.values.iter().filter(|v| !v.is_nan());
        let n = self.present as f64;
        let mean = present().sum::<f64>() / n;
        let squares: f64 = present().map(|v| (v - mean) * (v - mean)).sum();
        Some((mean, (squares / (n - 1.0)).sqrt()))
    }

    fn full_and_present(&self) -> bool {
        self.values.len() == self.cap && self.present == self.cap
    }

    /// The value pushed `k` pushes ago (1 = the newest), NaN when not held.
    fn ago(&self, k: usize) -> f64 {
        let cap = self.cap;
        let len = self.values.len();
        if k == 0 || k > len {
            return f64::NAN;
        }
        let newest = if len < cap {
            len - 1
        } else {
            (self.next + cap - 1) % cap
        };
        self.values[(newest + cap - (k - 1)) % cap]
    }
}

impl RingWindow {
    fn encode(&self, w: &mut Writer) {
        w.f64s(&self.values);
        w.usize(self.next);
        w.f64(self.sum);
        w.usize(self.pushes_since_refresh);
    }

    /// A window of `cap` values; the counts are recomputed from the values, and the position and
    /// refresh phase checked, so the decoded window continues exactly as the encoded one.
    fn decode(r: &mut Reader, cap: usize, what: &str) -> Result<Self, DecodeError> {
        let values = r.f64s(what, cap)?;
        let next = r.usize(what)?;
        let sum = r.f64(what)?;
        let pushes_since_refresh = r.usize(what)?;
        let full = values.len() == cap;
        if (full && next >= cap) || (!full && next != 0) || pushes_since_refresh >= cap.max(1) {
            return Err(invalid(format!("{what}: position out of range")));
        }
        if !sum.is_finite() || values.iter().any(|v| v.is_infinite()) {
            return Err(invalid(format!("{what}: a value is infinite")));
        }
        let present = values.iter().filter(|v| !v.is_nan()).count();
        let positive = values.iter().filter(|&&v| v > 0.0).count();
        Ok(RingWindow {
            cap,
            values,
            next,
            sum,
            present,
            positive,
            pushes_since_refresh,
        })
    }
}

fn same_bits(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

impl PartialEq for RingWindow {
    fn eq(&self, other: &Self) -> bool {
        same_bits(&self.values, &other.values)
            && self.next == other.next
            && self.sum.to_bits() == other.sum.to_bits()
            && self.present == other.present
            && self.positive == other.positive
            && self.pushes_since_refresh == other.pushes_since_refresh
    }
}

/// Bars the jump statistic looks back over (t − 4 … t − 1).
const JUMP_LOOKBACK: usize = 4;

/// ε of the relative volume ln(V / V̄ + ε): a bar with no volume is ln ε ≈ −3 below its mean
/// rather than −∞, and one with a twentieth of the mean volume counts about half as much.
const RELATIVE_VOLUME_OFFSET: f64 = 0.05;

/// The detector's state after a symbol's last bar.
#[derive(Debug, Clone)]
pub struct DetectorState {
    /// EWMA of ℓ² over every bar so far (not reset at gaps, unlike `vol_ewma`).
    ewma: EwmaState,
    /// ℓ² of the last `scale_floor_window` bars.
    long_squares: RingWindow,
    /// ℓ² of the last `regime_window` bars.
    short_squares: RingWindow,
    /// σ̂ after each of the last max(`regime_window`, 2) bars.
    scales: RingWindow,
    /// V of the last `scale_floor_window` bars.
    long_volumes: RingWindow,
    /// The volume excess x of the last `window` bars.
    volume_excess: RingWindow,
    /// (ts, ln C) of the last `JUMP_LOOKBACK` bars, oldest first.
    recent: Vec<(i64, f64)>,
    /// Timestamp of the last flagged (score ≥ 1, not muted) bar.
    last_flag_ts: Option<i64>,
    /// Whether the current episode has had a critical alert.
    episode_critical: bool,
}

/// Bitwise on floats, so that null (NaN) values compare equal: two states are equal iff they
/// continue a series identically.
impl PartialEq for DetectorState {
    fn eq(&self, other: &Self) -> bool {
        let same_recent = self.recent.len() == other.recent.len()
            && self
                .recent
                .iter()
                .zip(&other.recent)
                .all(|(a, b)| a.0 == b.0 && a.1.to_bits() == b.1.to_bits());
        self.ewma == other.ewma
            && self.long_squares == other.long_squares
            && self.short_squares == other.short_squares
            && self.scales == other.scales
            && self.long_volumes == other.long_volumes
            && self.volume_excess == other.volume_excess
            && same_recent
            && self.last_flag_ts == other.last_flag_ts
            && self.episode_critical == other.episode_critical
    }
}

/// One bar's inputs to the detector.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DetectorBar {
    pub ts: i64,
    /// ln C_t, NaN when the close is null.
    pub log_close: f64,
    /// ℓ_t, NaN on a segment's first bar.
    pub log_ret: f64,
    /// ln(H_t / L_t), NaN when either is null.
    pub log_range: f64,
    /// V_t, NaN when null.
    pub volume: f64,
}

/// What the detector says about one bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Alert {
    pub score: f64,
    pub alerted: bool,
    pub kinds: AnomalyKinds,
    pub severity: Option<Severity>,
}

fn scale_history(cfg: &MetricsConfig) -> usize {
    cfg.regime_window.max(2)
}

impl DetectorState {
    pub(crate) fn encode(&self, w: &mut Writer) {
        self.ewma.encode(w);
        self.long_squares.encode(w);
        self.short_squares.encode(w);
        self.scales.encode(w);
        self.long_volumes.encode(w);
        self.volume_excess.encode(w);
        w.usize(self.recent.len());
        for &(ts, log_close) in &self.recent {
            w.i64(ts);
            w.f64(log_close);
        }
        w.u8(u8::from(self.last_flag_ts.is_some()));
        w.i64(self.last_flag_ts.unwrap_or(0));
        w.u8(u8::from(self.episode_critical));
    }

    pub(crate) fn decode(r: &mut Reader, cfg: &MetricsConfig) -> Result<Self, DecodeError> {
        let ewma = EwmaState::decode(r, "detector ewma")?;
        let long_squares = RingWindow::decode(r, cfg.scale_floor_window, "long squares")?;
        let short_squares = RingWindow::decode(r, cfg.regime_window, "short squares")?;
        let scales = RingWindow::decode(r, scale_history(cfg), "scales")?;
        let long_volumes = RingWindow::decode(r, cfg.scale_floor_window, "long volumes")?;
        let volume_excess = RingWindow::decode(r, cfg.window, "volume excess")?;
        let recent_len = r.usize("recent bars")?;
        if recent_len > JUMP_LOOKBACK {
            return Err(invalid(format!(
                "{recent_len} recent bars, at most {JUMP_LOOKBACK}"
            )));
        }
        let mut recent = Vec::with_capacity(JUMP_LOOKBACK);
        for _ in 0..recent_len {
            recent.push((r.i64("recent bars")?, r.f64("recent bars")?));
        }
        let flagged = r.bool("last flag")?;
        let flag_ts = r.i64("last flag")?;
        Ok(DetectorState {
            ewma,
            long_squares,
            short_squares,
            scales,
            long_volumes,
            volume_excess,
            recent,
            last_flag_ts: flagged.then_some(flag_ts),
            episode_critical: r.bool("episode")?,
        })
    }

    pub(crate) fn new(cfg: &MetricsConfig) -> Self {
        DetectorState {
            ewma: EwmaState::default(),
            long_squares: RingWindow::new(cfg.scale_floor_window),
            short_squares: RingWindow::new(cfg.regime_window),
            scales: RingWindow::new(scale_history(cfg)),
            long_volumes: RingWindow::new(cfg.scale_floor_window),
            volume_excess: RingWindow::new(cfg.window),
            recent: Vec::with_capacity(JUMP_LOOKBACK),
            last_flag_ts: None,
            episode_critical: false,
        }
    }

    /// σ̂ after the bar `k` bars before the one being processed.
    fn scale_ago(&self, k: usize) -> f64 {
        self.scales.ago(k)
    }

    fn jump(&self, bar: &DetectorBar, cfg: &MetricsConfig) -> f64 {
        if self.recent.len() < JUMP_LOOKBACK {
            return f64::NAN;
        }
        let mut previous_ts = self.recent[0].0;
        for &(ts, _) in self.recent[1..].iter().chain([(bar.ts, 0.0)].iter()) {
            if ts.saturating_sub(previous_ts) > cfg.max_gap_us {
                return f64::NAN;
            }
            previous_ts = ts;
        }
        let [a, b, c] = [self.recent[0].1, self.recent[1].1, self.recent[2].1];
        if a.is_nan() || b.is_nan() || c.is_nan() {
            return f64::NAN;
        }
        let level = a.max(b).min(a.min(b).max(c)); // median of three
        let before = self.recent[3].1 - level;
        let after = bar.log_close - level;
        let scale = self.scale_ago(2);
        if before.is_nan() || after.is_nan() || scale.is_nan() || scale <= 0.0 {
            return f64::NAN;
        }
        if before * after > 0.0 {
            let q = before.abs().min(after.abs()) / scale;
            if q.is_finite() {
                q
            } else {
                f64::NAN
            }
        } else {
            0.0
        }
    }

    /// The volume statistic of `bar` against the windows through the bar before it, which it
    /// then joins.
    fn volume_spike(&mut self, bar: &DetectorBar, cfg: &MetricsConfig) -> f64 {
        let mean_volume = self.long_volumes.mean(cfg.min_periods);
        let scale = self.scale_ago(1);
        let moved = bar.log_range.max(bar.log_ret.abs()); // NaN-ignoring: either alone will do
        let excess = if mean_volume > 0.0 && scale > 0.0 {
            let x =
                (bar.volume / mean_volume + RELATIVE_VOLUME_OFFSET).ln() - (moved / scale).ln_1p();
            if x.is_finite() {
                x
            } else {
                f64::NAN
            }
        } else {
            f64::NAN
        };
        let stat = match self.volume_excess.mean_and_std(cfg.min_periods) {
            Some((mean, std)) => {
                let z = (excess - mean) / std.max(cfg.volume_scale_floor);
                if z.is_finite() {
                    z
                } else {
                    f64::NAN
                }
            }
            None => f64::NAN,
        };
        self.long_volumes.push(bar.volume);
        self.volume_excess.push(excess);
        stat
    }

    /// Feeds one bar (bars in increasing `ts`) and says whether it is alerted.
    pub(crate) fn step(&mut self, bar: DetectorBar, cfg: &MetricsConfig) -> Alert {
        let price_z = self.jump(&bar, cfg);
        let volume_z = self.volume_spike(&bar, cfg);

        let square = bar.log_ret * bar.log_ret;
        if !bar.log_ret.is_nan() {
            self.ewma
                .update(bar.log_ret, cfg.min_periods as u64, cfg.ewma_lambda);
        }
        self.long_squares.push(square);
        self.short_squares.push(square);
        let ewma_sigma = if self.ewma.returns >= cfg.min_periods as u64 {
            self.ewma.variance.sqrt()
        } else {
            f64::NAN
        };
        let floor = cfg.scale_floor_share * self.long_squares.mean(cfg.window).sqrt();
        let scale = ewma_sigma.max(floor); // NaN-ignoring: either alone will do

        let vol_ratio = if self.short_squares.full_and_present() {
            let short_rms = self.short_squares.trimmed_mean(cfg.regime_trim).sqrt();
            let base = self.scale_ago(cfg.regime_window);
            let q = short_rms / base;
            if base > 0.0 && q.is_finite() {
                q
            } else {
                f64::NAN
            }
        } else {
            f64::NAN
        };
        self.scales.push(scale);

        if self.recent.len() == JUMP_LOOKBACK {
            self.recent.remove(0);
        }
        self.recent.push((bar.ts, bar.log_close));

        let verdict = judge(
            AnomalyStats {
                price_z,
                volume_z,
                vol_ratio,
            },
            &cfg.thresholds,
        );
        self.decide(verdict, bar.ts, cfg)
    }

    /// The session mute and the episode rule.
    fn decide(&mut self, verdict: Verdict, ts: i64, cfg: &MetricsConfig) -> Alert {
        let quiet = Alert {
            score: verdict.score,
            alerted: false,
            kinds: AnomalyKinds::NONE,
            severity: None,
        };
        let Some(severity) = verdict.severity else {
            return quiet;
        };
        if let Some(session) = &cfg.session {
            match session.phase(ts, cfg.session_edge_minutes) {
                SessionPhase::Regular => {}
                SessionPhase::Edge => return quiet,
                SessionPhase::Outside if cfg.mute_outside_session => return quiet,
                SessionPhase::Outside => {}
            }
        }
        let critical = severity == Severity::Critical;
        let continues = self
            .last_flag_ts
            .is_some_and(|last| ts.saturating_sub(last) < cfg.episode_us);
        self.last_flag_ts = Some(ts);
        let alerted = if !continues {
            self.episode_critical = critical;
            true
        } else if critical && !self.episode_critical {
            self.episode_critical = true;
            true
        } else {
            false
        };
        if alerted {
            Alert {
                score: verdict.score,
                alerted,
                kinds: verdict.kinds,
                severity: Some(severity),
            }
        } else {
            quiet
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MICROS_PER_MINUTE;

    #[test]
    fn ring_window_counts_sums_and_looks_back() {
        let mut w = RingWindow::new(3);
        for x in [1.0, f64::NAN, 2.0, 4.0] {
            w.push(x);
        }
        // Holds NaN, 2, 4.
        assert_eq!((w.present, w.mean(1)), (2, 3.0));
        assert!(!w.full_and_present());
        assert_eq!(w.ago(1), 4.0);
        assert_eq!(w.ago(2), 2.0);
        assert!(w.ago(3).is_nan());
        assert!(w.ago(4).is_nan());
        for _ in 0..3 {
            w.push(0.0);
        }
        assert_eq!(w.sum.to_bits(), 0.0f64.to_bits());
        assert!(w.full_and_present());
        for x in [5.0, 1.0, 3.0] {
            w.push(x);
        }
        assert_eq!(w.trimmed_mean(0), 3.0);
        assert_eq!(w.trimmed_mean(1), 2.0);
        assert_eq!(w.trimmed_mean(2), 1.0);
    }

    #[test]
    fn a_large_value_leaving_does_not_cancel_the_small_ones() {
        let mut w = RingWindow::new(3);
        for x in [500.0, 1e-32, 0.0, 2e-32] {
            w.push(x);
        }
        // 500 + 1e-32 + 0 - 500 + 2e-32 would be 2e-32 by the running sum alone.
        assert_eq!(w.mean(1), 3e-32 / 3.0);
    }

    fn bar(minute: i64, close: f64, previous: Option<f64>) -> DetectorBar {
        DetectorBar {
            ts: minute * MICROS_PER_MINUTE,
            log_close: close.ln(),
            log_ret: previous.map_or(f64::NAN, |p| (close / p).ln()),
            log_range: f64::NAN,
            volume: 1.0,
        }
    }

    /// Feeds closes one minute apart; returns the alerts.
    fn run(closes: &[f64], cfg: &MetricsConfig) -> Vec<Alert> {
        let mut state = DetectorState::new(cfg);
        (0..closes.len())
            .map(|i| {
                let previous = (i > 0).then(|| closes[i - 1]);
                state.step(bar(i as i64, closes[i], previous), cfg)
            })
            .collect()
    }

    /// A ±1 bp zig-zag around 100.
    fn zigzag(len: usize) -> Vec<f64> {
        (0..len)
            .map(|i| if i % 2 == 0 { 100.0 } else { 100.01 })
            .collect()
    }

    #[test]
    fn a_move_that_holds_is_a_jump_reported_one_bar_later() {
        let cfg = MetricsConfig::default();
        let mut closes = zigzag(200);
        closes.extend([101.0, 101.0, 101.01]);
        let alerts = run(&closes, &cfg);
        assert!(!alerts[200].alerted, "not yet confirmed at the move");
        assert!(alerts[201].alerted, "{:?}", alerts[201]);
        assert_eq!(alerts[201].kinds, AnomalyKinds::PRICE_JUMP);
        assert!(!alerts[202].alerted, "same episode");
    }

    #[test]
    fn a_print_that_reverts_is_not_a_jump() {
        let cfg = MetricsConfig::default();
        let mut closes = zigzag(200);
        closes.extend([101.0, 100.0, 100.01, 100.0]);
        let alerts = run(&closes, &cfg);
        assert!(alerts.iter().all(|a| !a.alerted), "{:?}", &alerts[199..]);
    }

    #[test]
    fn a_stale_stretch_does_not_collapse_the_scale() {
        let cfg = MetricsConfig::default();
        // Lively for 200 bars (±10 bp), then 60 flat bars, then a 7 bp move that holds.
        let mut closes: Vec<f64> = (0..200)
            .map(|i| if i % 2 == 0 { 100.0 } else { 100.1 })
            .collect();
        closes.extend(std::iter::repeat_n(100.0, 60));
        closes.extend([100.07, 100.07, 100.07]);
        let alerts = run(&closes, &cfg);
        assert!(alerts.iter().all(|a| !a.alerted), "{:?}", &alerts[255..]);
    }

    #[test]
    fn volume_that_moves_no_price_is_a_spike_and_volume_that_moves_it_is_not() {
        let cfg = MetricsConfig::default();
        let closes = zigzag(600);
        // The same ×30 volume, once on a bar that stays inside the usual range and once on a bar
        // whose range is 40 times the usual move.
        let spike_at = |range_factor: f64| {
            let mut state = DetectorState::new(&cfg);
            let mut volume_z = f64::NAN;
            for i in 0..closes.len() {
                let mut b = bar(i as i64, closes[i], (i > 0).then(|| closes[i - 1]));
                b.log_range = b.log_ret.abs() * 1.5;
                b.volume = 1.0 + (i % 3) as f64 * 0.5;
                if i == 590 {
                    b.volume = 30.0;
                    b.log_range *= range_factor;
                }
                let alert = state.step(b, &cfg);
                if i == 590 {
                    volume_z = alert.score;
                    assert_eq!(
                        alert.kinds.contains(AnomalyKinds::VOLUME_SPIKE),
                        range_factor == 1.0
                    );
                }
            }
            volume_z
        };
        assert!(spike_at(1.0) >= 1.0, "a quiet ×30 block is a volume spike");
        assert!(
            spike_at(40.0) < 1.0,
            "a ×30 volume with a 40× range is explained by the move"
        );
    }

    #[test]
    fn an_episode_alerts_once_unless_it_escalates() {
        let cfg = MetricsConfig::default();
        let mut state = DetectorState::new(&cfg);
        let verdict = |score: f64, severity: Severity| Verdict {
            score,
            kinds: AnomalyKinds::VOLUME_SPIKE,
            severity: Some(severity),
        };
        let at = |minute: i64| minute * MICROS_PER_MINUTE;
        let warn = verdict(1.2, Severity::Warning);
        let crit = verdict(2.5, Severity::Critical);
        assert!(state.decide(warn, at(0), &cfg).alerted);
        assert!(!state.decide(warn, at(20), &cfg).alerted);
        // 45 minutes after the first flag but 25 after the previous: still the same episode.
        assert!(!state.decide(warn, at(45), &cfg).alerted);
        assert!(state.decide(crit, at(50), &cfg).alerted, "escalation");
        assert!(!state.decide(crit, at(51), &cfg).alerted);
        assert!(state.decide(warn, at(81), &cfg).alerted, "a new episode");
    }

    #[test]
    fn sessions_mute_edges_and_extended_hours() {
        let mut cfg = MetricsConfig {
            session: Some("America/New_York 09:30-16:00".parse().unwrap()),
            ..MetricsConfig::default()
        };
        let warn = Verdict {
            score: 1.2,
            kinds: AnomalyKinds::VOLUME_SPIKE,
            severity: Some(Severity::Warning),
        };
        // 2020-12-18 (EST, UTC−5): 14:30 UTC is the open, 17:00 UTC is noon, 22:00 UTC post-market.
        let day = 1_608_249_600_000_000i64; // 2020-12-18T00:00Z
        let at = |h: i64, m: i64| day + (h * 60 + m) * MICROS_PER_MINUTE;
        let mut state = DetectorState::new(&cfg);
        assert!(!state.decide(warn, at(14, 30), &cfg).alerted);
        assert!(!state.decide(warn, at(22, 0), &cfg).alerted);
        assert!(state.decide(warn, at(17, 0), &cfg).alerted);
        cfg.mute_outside_session = false;
        let mut state = DetectorState::new(&cfg);
        assert!(!state.decide(warn, at(14, 31), &cfg).alerted);
        assert!(state.decide(warn, at(22, 0), &cfg).alerted);
    }
}
