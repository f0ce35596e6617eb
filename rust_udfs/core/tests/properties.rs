//! Properties of `compute` as a whole: streaming continuation, no look-ahead, edge cases.
#![allow(clippy::needless_range_loop)] // index loops read like the definitions they check

use proptest::prelude::*;
use sparktrends_core::{
    compute, AnomalyKinds, Bars, CarryState, Metrics, MetricsConfig, MetricsError, Severity,
    MICROS_PER_MINUTE,
};

/// Owned bars, so strategies can generate them.
#[derive(Debug, Clone)]
struct OwnedBars {
    ts: Vec<i64>,
    open: Vec<f64>,
    high: Vec<f64>,
    low: Vec<f64>,
    close: Vec<f64>,
    volume: Vec<f64>,
    vwap: Option<Vec<f64>>,
}

impl OwnedBars {
    fn view(&self) -> Bars<'_> {
        self.slice(0, self.ts.len())
    }

    fn slice(&self, from: usize, to: usize) -> Bars<'_> {
        Bars {
            ts: &self.ts[from..to],
            open: &self.open[from..to],
            high: &self.high[from..to],
            low: &self.low[from..to],
            close: &self.close[from..to],
            volume: &self.volume[from..to],
            vwap: self.vwap.as_ref().map(|v| &v[from..to]),
        }
    }

    fn len(&self) -> usize {
        self.ts.len()
    }

    /// Regular 1-minute bars from closes and volumes (open = previous close).
    fn from_closes(closes: &[f64], volumes: &[f64]) -> Self {
        let ts = (0..closes.len() as i64)
            .map(|i| i * MICROS_PER_MINUTE)
            .collect();
        let open: Vec<f64> = closes
            .iter()
            .enumerate()
            .map(|(i, &c)| if i == 0 { c } else { closes[i - 1] })
            .collect();
        let high = open
            .iter()
            .zip(closes)
            .map(|(o, c)| o.max(*c) * 1.0005)
            .collect();
        let low = open
            .iter()
            .zip(closes)
            .map(|(o, c)| o.min(*c) * 0.9995)
            .collect();
        OwnedBars {
            ts,
            open,
            high,
            low,
            close: closes.to_vec(),
            volume: volumes.to_vec(),
            vwap: None,
        }
    }
}

/// A price: mostly a valid level, sometimes a value the kernels must treat as null.
fn price_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        20 => 50.0f64..150.0,
        1 => Just(f64::NAN),
        1 => Just(0.0),
        1 => Just(-1.0),
        1 => Just(f64::INFINITY),
    ]
}

/// Bars with gaps (> 15 min), flat runs, nulls, zero and invalid volumes, sometimes a vwap column.
fn bars_strategy(max_len: usize) -> impl Strategy<Value = OwnedBars> {
    let row = (
        prop_oneof![8 => Just(1i64), 1 => 2i64..15, 1 => Just(15), 1 => 16i64..2000],
        prop_oneof![6 => -0.01f64..0.01, 3 => Just(0.0), 1 => -0.2f64..0.2],
        price_value(),
        (0.0f64..0.01, 0.0f64..0.01),
        prop_oneof![10 => 0.0f64..1e6, 2 => Just(0.0), 1 => Just(f64::NAN), 1 => Just(-5.0)],
        prop_oneof![3 => Just(None), 1 => Just(Some(f64::NAN)), 2 => (50.0f64..150.0).prop_map(Some)],
        0u8..40,
    );
    (prop::collection::vec(row, 0..max_len), any::<bool>()).prop_map(|(rows, with_vwap)| {
        let mut bars = OwnedBars {
            ts: vec![],
            open: vec![],
            high: vec![],
            low: vec![],
            close: vec![],
            volume: vec![],
            vwap: with_vwap.then(Vec::new),
        };
        let (mut ts, mut level) = (1_700_000_000_000_000i64, 100.0f64);
        for (step, ret, odd_price, (up, down), volume, vwap, corrupt) in rows {
            ts += step * MICROS_PER_MINUTE;
            let open = level;
            level *= 1.0 + ret;
            let close = level;
            let mut row = [
                open,
                open.max(close) * (1.0 + up),
                open.min(close) * (1.0 - down),
                close,
            ];
            // Occasionally one of O, H, L, C is replaced by a null or invalid price.
            if (corrupt as usize) < row.len() {
                row[corrupt as usize] = odd_price;
            }
            bars.ts.push(ts);
            bars.open.push(row[0]);
            bars.high.push(row[1]);
            bars.low.push(row[2]);
            bars.close.push(row[3]);
            bars.volume.push(volume);
            if let Some(v) = bars.vwap.as_mut() {
                v.push(vwap.unwrap_or(f64::NAN));
            }
        }
        bars
    })
}

fn small_config() -> impl Strategy<Value = MetricsConfig> {
    (
        (1usize..12, 1usize..12, 1usize..8, 0.5f64..0.99),
        (0usize..3, 0usize..20, 0i64..10),
    )
        .prop_map(
            |((n, m, s, lambda), (trim, extra_floor, episode_minutes))| MetricsConfig {
                window: n,
                min_periods: m.min(n),
                regime_window: s,
                regime_trim: trim.min(s - 1),
                // Short floor windows, so the detector's ring buffers wrap and refresh.
                scale_floor_window: n + extra_floor,
                episode_us: episode_minutes * MICROS_PER_MINUTE,
                ewma_lambda: lambda,
                ..MetricsConfig::default()
            },
        )
}

/// Bitwise equality of two metric sets row range (NaN == NaN).
fn assert_rows_identical(
    a: &Metrics,
    a_rows: std::ops::Range<usize>,
    b: &Metrics,
    b_from: usize,
) -> Result<(), TestCaseError> {
    for (name, (ca, cb)) in Metrics::FLOAT_COLUMNS
        .iter()
        .zip(a.float_columns().iter().zip(b.float_columns()))
    {
        for (k, i) in a_rows.clone().enumerate() {
            prop_assert_eq!(
                ca[i].to_bits(),
                cb[b_from + k].to_bits(),
                "{} row {}: {} vs {}",
                name,
                i,
                ca[i],
                cb[b_from + k]
            );
        }
    }
    for (k, i) in a_rows.enumerate() {
        prop_assert_eq!(a.is_anomaly[i], b.is_anomaly[b_from + k]);
        prop_assert_eq!(a.anomaly_kinds[i], b.anomaly_kinds[b_from + k]);
        prop_assert_eq!(a.severity[i], b.severity[b_from + k]);
    }
    Ok(())
}

fn assert_no_infinity(m: &Metrics) -> Result<(), TestCaseError> {
    for (name, column) in Metrics::FLOAT_COLUMNS.iter().zip(m.float_columns()) {
        prop_assert!(
            column.iter().all(|v| !v.is_infinite()),
            "{} has an infinity",
            name
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// With `through_bytes`, each carry is stored as bytes and restored, as a job does between
    /// micro-batches and across restarts: the series still continues bit for bit, EWMA and detector
    /// included.
    #[test]
    fn chunks_with_carry_equal_one_call(
        bars in bars_strategy(120),
        cfg in small_config(),
        cuts in prop::collection::vec(0usize..=120, 0..4),
        through_bytes in any::<bool>(),
    ) {
        let (whole, whole_carry) = compute(&bars.view(), &cfg, None).unwrap();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bars.len())).collect();
        cuts.push(bars.len());
        cuts.sort_unstable();
        let restore = |c: CarryState| {
            if through_bytes {
                CarryState::from_bytes(&c.to_bytes(), &cfg).unwrap()
            } else {
                c
            }
        };
        let (mut from, mut carry) = (0, None::<CarryState>);
        for to in cuts {
            let (part, next) = compute(&bars.slice(from, to), &cfg, carry.as_ref()).unwrap();
            prop_assert_eq!(part.len(), to - from);
            assert_rows_identical(&whole, from..to, &part, 0)?;
            carry = Some(restore(next));
            from = to;
        }
        prop_assert_eq!(carry.unwrap(), whole_carry);
    }

    #[test]
    fn changing_the_next_bar_never_changes_earlier_outputs(
        bars in bars_strategy(80),
        cfg in small_config(),
        at in 0usize..80,
        replacement in (price_value(), price_value(), 0.0f64..1e7, -3i64..3),
    ) {
        prop_assume!(at + 1 < bars.len());
        let (before, _) = compute(&bars.view(), &cfg, None).unwrap();
        let mut changed = bars.clone();
        let next = at + 1;
        changed.close[next] = replacement.0;
        changed.high[next] = replacement.1;
        changed.volume[next] = replacement.2;
        // Moving the next bar in time may open or close a gap, but must not reorder the bars.
        let shifted = changed.ts[next] + replacement.3 * 10 * MICROS_PER_MINUTE;
        if shifted > changed.ts[at] && changed.ts.get(next + 1).is_none_or(|&after| shifted < after) {
            changed.ts[next] = shifted;
        }
        let (after, _) = compute(&changed.view(), &cfg, None).unwrap();
        assert_rows_identical(&before, 0..next, &after, 0)?;
    }

    #[test]
    fn adversarial_inputs_give_nulls_never_infinities(bars in bars_strategy(150), cfg in small_config()) {
        let (m, _) = compute(&bars.view(), &cfg, None).unwrap();
        prop_assert_eq!(m.len(), bars.len());
        assert_no_infinity(&m)?;
        for t in 0..m.len() {
            prop_assert_eq!(m.is_anomaly[t], !m.anomaly_kinds[t].is_empty());
            prop_assert_eq!(m.severity[t].is_some(), m.is_anomaly[t]);
            if m.is_anomaly[t] {
                prop_assert!(m.anomaly_score[t] >= 1.0);
            }
        }
    }
}

fn default_cfg() -> MetricsConfig {
    MetricsConfig::default()
}

#[test]
fn empty_input_gives_empty_output() {
    let bars = OwnedBars::from_closes(&[], &[]);
    let (m, carry) = compute(&bars.view(), &default_cfg(), None).unwrap();
    assert!(m.is_empty());
    assert_eq!(carry.tail_len(), 0);
}

#[test]
fn single_row_gives_nulls_and_no_anomaly() {
    let bars = OwnedBars::from_closes(&[100.0], &[10.0]);
    let (m, _) = compute(&bars.view(), &default_cfg(), None).unwrap();
    assert_eq!(m.len(), 1);
    for (name, column) in Metrics::FLOAT_COLUMNS.iter().zip(m.float_columns()) {
        if *name != "vwap_dev"
            && *name != "vwap_roll"
            && *name != "vol_parkinson"
            && *name != "vol_gk"
            && *name != "vol_rs"
        {
            assert!(column[0].is_nan(), "{name} should be null on a single row");
        }
    }
    // Range windows count bars and need m = 10 of them.
    assert!(m.vol_parkinson[0].is_nan() && m.vwap_roll[0].is_nan());
    assert!(!m.is_anomaly[0]);
}

#[test]
fn window_longer_than_series_uses_what_there_is() {
    let closes: Vec<f64> = (0..12).map(|i| 100.0 + (i % 3) as f64).collect();
    let bars = OwnedBars::from_closes(&closes, &[5.0; 12]);
    let cfg = MetricsConfig {
        window: 1000,
        min_periods: 3,
        scale_floor_window: 1000,
        ..default_cfg()
    };
    let (m, _) = compute(&bars.view(), &cfg, None).unwrap();
    // Returns exist from row 1; three of them first at row 3.
    assert!(m.vol_cc[2].is_nan());
    let returns: Vec<f64> = (1..=11).map(|i| (closes[i] / closes[i - 1]).ln()).collect();
    let mean = returns.iter().sum::<f64>() / 11.0;
    let var = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / 10.0;
    assert!((m.vol_cc[11] - var.sqrt()).abs() < 1e-15);
}

#[test]
fn flat_prices_give_exact_zero_vol_and_null_z_scores() {
    let bars = OwnedBars::from_closes(&[0.1 + 0.2; 60], &[100.0; 60]);
    let (m, _) = compute(&bars.view(), &default_cfg(), None).unwrap();
    for t in 10..60 {
        assert_eq!(m.vol_cc[t], 0.0, "row {t}");
        assert_eq!(m.vol_ewma[t], 0.0, "row {t}");
    }
    for t in 0..60 {
        assert!(
            m.return_z[t].is_nan() && m.robust_z[t].is_nan() && m.volume_z[t].is_nan(),
            "row {t}"
        );
        assert!(!m.is_anomaly[t]);
    }
}

#[test]
fn zero_volume_gives_null_vwap_and_defined_volume_z_of_a_jump() {
    let mut volumes = vec![0.0; 40];
    volumes[35] = 1000.0;
    let closes: Vec<f64> = (0..40).map(|i| 100.0 + (i % 2) as f64 * 0.1).collect();
    let bars = OwnedBars::from_closes(&closes, &volumes);
    let (m, _) = compute(&bars.view(), &default_cfg(), None).unwrap();
    assert!(m.vwap_roll[..35].iter().all(|v| v.is_nan()));
    assert!(m.vwap_dev[..35].iter().all(|v| v.is_nan()));
    assert!(m.vwap_roll[35] > 0.0);
    // The prior window is all zero: std 0, so no z even for the jump.
    assert!(m.volume_z[35].is_nan());
}

#[test]
fn a_gap_restarts_returns_windows_and_ewma() {
    let closes: Vec<f64> = (0..80)
        .map(|i| 100.0 * (1.0 + 0.001 * ((i * 7) % 11) as f64))
        .collect();
    let mut bars = OwnedBars::from_closes(&closes, &[10.0; 80]);
    for t in &mut bars.ts[40..] {
        *t += 16 * MICROS_PER_MINUTE;
    }
    let (m, carry) = compute(&bars.view(), &default_cfg(), None).unwrap();
    assert!(m.ret[40].is_nan() && m.log_ret[40].is_nan());
    assert!(m.ret[41].is_finite());
    // The second segment's metrics are exactly those of a series that starts at bar 40. The
    // detector's scale is not: it carries across gaps, so its score is not compared here.
    let (fresh, _) = compute(&bars.slice(40, 80), &default_cfg(), None).unwrap();
    let metric_columns = m.float_columns().len() - 1;
    assert_eq!(Metrics::FLOAT_COLUMNS[metric_columns], "anomaly_score");
    for (a, b) in m.float_columns()[..metric_columns]
        .iter()
        .zip(&fresh.float_columns()[..metric_columns])
    {
        assert!(a[40..]
            .iter()
            .zip(b.iter())
            .all(|(x, y)| x.to_bits() == y.to_bits()));
    }
    assert_eq!(carry.segment_len(), 40);
    // Exactly max_gap apart is still the same segment.
    let mut at_limit = OwnedBars::from_closes(&closes, &[10.0; 80]);
    for t in &mut at_limit.ts[40..] {
        *t += 14 * MICROS_PER_MINUTE;
    }
    let (m, _) = compute(&at_limit.view(), &default_cfg(), None).unwrap();
    assert!(m.ret[40].is_finite());
}

#[test]
fn vol_ewma_is_seeded_at_the_m_th_return() {
    let closes: Vec<f64> = (0..20).map(|i| 100.0 + ((i * 5) % 7) as f64).collect();
    let bars = OwnedBars::from_closes(&closes, &[1.0; 20]);
    let cfg = MetricsConfig {
        min_periods: 4,
        ..default_cfg()
    };
    let (m, _) = compute(&bars.view(), &cfg, None).unwrap();
    let l: Vec<f64> = (1..20).map(|i| (closes[i] / closes[i - 1]).ln()).collect();
    assert!(m.vol_ewma[..4].iter().all(|v| v.is_nan()));
    let mut var = l[..4].iter().map(|x| x * x).sum::<f64>() / 4.0;
    assert!((m.vol_ewma[4] - var.sqrt()).abs() < 1e-15);
    for t in 5..20 {
        var = 0.94 * var + 0.06 * l[t - 1] * l[t - 1];
        assert!((m.vol_ewma[t] - var.sqrt()).abs() < 1e-15);
    }
}

/// A quiet series with ±0.1% returns and unit-ish volume, for anomaly injections.
fn quiet_series(len: usize) -> (Vec<f64>, Vec<f64>) {
    let mut closes = vec![100.0];
    for i in 1..len {
        let step = [0.001, -0.0008, 0.0005, -0.0012, 0.0009, -0.0003, 0.0011][i % 7];
        closes.push(closes[i - 1] * (1.0 + step));
    }
    let volumes = (0..len)
        .map(|i| 1000.0 + [30.0, -20.0, 50.0, -40.0, 10.0][i % 5])
        .collect();
    (closes, volumes)
}

#[test]
fn injected_price_jump_and_volume_spike_are_alerted_once_each() {
    let (mut closes, mut volumes) = quiet_series(160);
    for c in &mut closes[60..] {
        *c *= 1.03;
    }
    volumes[120] *= 50.0;
    let bars = OwnedBars::from_closes(&closes, &volumes);
    let (m, _) = compute(&bars.view(), &default_cfg(), None).unwrap();
    // The jump is reported by the bar that confirms it held.
    assert_eq!(m.anomaly_kinds[61], AnomalyKinds::PRICE_JUMP);
    assert_eq!(m.severity[61], Some(Severity::Critical));
    assert_eq!(m.anomaly_kinds[120], AnomalyKinds::VOLUME_SPIKE);
    let quiet_rows = (30..160).filter(|&t| t != 61 && t != 120);
    for t in quiet_rows {
        assert!(
            !m.is_anomaly[t],
            "false alarm at {t}: {:?}",
            m.anomaly_kinds[t]
        );
    }
}

#[test]
fn injected_volatility_regime_shift_is_detected_within_the_short_window() {
    let (quiet, volumes) = quiet_series(140);
    // From bar 70 on, every return is eight times larger.
    let mut closes = vec![quiet[0]];
    for t in 1..140 {
        let r = quiet[t] / quiet[t - 1] - 1.0;
        let scale = if t >= 70 { 8.0 } else { 1.0 };
        closes.push(closes[t - 1] * (1.0 + scale * r));
    }
    let bars = OwnedBars::from_closes(&closes, &volumes);
    // Every flag alerted (no episodes), so the kinds of each flagged bar show.
    let cfg = MetricsConfig {
        episode_us: 0,
        ..default_cfg()
    };
    let (m, _) = compute(&bars.view(), &cfg, None).unwrap();
    let first = (70..140).find(|&t| m.anomaly_kinds[t].contains(AnomalyKinds::VOL_REGIME_SHIFT));
    let first = first.expect("regime shift not detected");
    assert!(first <= 70 + cfg.regime_window, "detected only at {first}");
    assert!((30..70).all(|t| !m.anomaly_kinds[t].contains(AnomalyKinds::VOL_REGIME_SHIFT)));
}

#[test]
fn no_alert_at_the_open_after_an_overnight_gap() {
    let (mut closes, volumes) = quiet_series(100);
    for c in &mut closes[50..] {
        *c *= 1.05;
    }
    let mut bars = OwnedBars::from_closes(&closes, &volumes);
    for t in &mut bars.ts[50..] {
        *t += 17 * 60 * MICROS_PER_MINUTE;
    }
    let (m, _) = compute(&bars.view(), &default_cfg(), None).unwrap();
    assert!((50..60).all(|t| !m.is_anomaly[t]));
}

#[test]
fn unsorted_or_duplicate_ts_is_an_error() {
    let mut bars = OwnedBars::from_closes(&[1.0, 2.0, 3.0], &[1.0; 3]);
    bars.ts[2] = bars.ts[1];
    let err = compute(&bars.view(), &default_cfg(), None).unwrap_err();
    assert!(matches!(err, MetricsError::NotIncreasing { index: 2, .. }));

    let bars = OwnedBars::from_closes(&[1.0, 2.0, 3.0], &[1.0; 3]);
    let (_, carry) = compute(&bars.slice(1, 3), &default_cfg(), None).unwrap();
    let err = compute(&bars.slice(0, 1), &default_cfg(), Some(&carry)).unwrap_err();
    assert!(matches!(err, MetricsError::NotIncreasing { index: 0, .. }));
}

#[test]
fn carry_from_another_window_is_rejected_but_thresholds_may_change() {
    let bars = OwnedBars::from_closes(&[1.0, 2.0, 3.0, 4.0], &[1.0; 4]);
    let (_, carry) = compute(&bars.slice(0, 2), &default_cfg(), None).unwrap();
    let other_window = MetricsConfig {
        window: 20,
        ..default_cfg()
    };
    assert_eq!(
        compute(&bars.slice(2, 4), &other_window, Some(&carry)).unwrap_err(),
        MetricsError::CarryConfigMismatch
    );
    let mut retuned = default_cfg();
    retuned.thresholds.price_z.warning = 3.0;
    assert!(compute(&bars.slice(2, 4), &retuned, Some(&carry)).is_ok());
}

#[test]
fn an_encoded_carry_is_checked_before_it_is_trusted() {
    let (closes, volumes) = quiet_series(600);
    let bars = OwnedBars::from_closes(&closes, &volumes);
    let cfg = default_cfg();
    let (_, carry) = compute(&bars.view(), &cfg, None).unwrap();
    let bytes = carry.to_bytes();
    // A day of history or ten: the carry is the windows' worth, a few kB.
    assert!(bytes.len() < 12 * 1024, "{} bytes", bytes.len());
    assert_eq!(CarryState::from_bytes(&bytes, &cfg).unwrap(), carry);

    let decode_error = |b: &[u8]| match CarryState::from_bytes(b, &cfg) {
        Err(MetricsError::CarryDecode(e)) => e.to_string(),
        other => panic!("expected a decode error, got {other:?}"),
    };
    for cut in [0, 3, 6, 40, bytes.len() / 2, bytes.len() - 1] {
        assert!(decode_error(&bytes[..cut]).starts_with("not a carry state"));
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(decode_error(&longer).contains("after the end"));
    let mut other_version = bytes.clone();
    other_version[4] = 9;
    assert!(decode_error(&other_version).contains("version 9"));

    let other_window = MetricsConfig {
        window: 20,
        ..default_cfg()
    };
    assert_eq!(
        CarryState::from_bytes(&bytes, &other_window).unwrap_err(),
        MetricsError::CarryConfigMismatch
    );
    // The floor's share shapes the carried scales, so it shapes the state too.
    let other_floor = MetricsConfig {
        scale_floor_share: 0.25,
        ..default_cfg()
    };
    assert_eq!(
        CarryState::from_bytes(&bytes, &other_floor).unwrap_err(),
        MetricsError::CarryConfigMismatch
    );
    let mut retuned = default_cfg();
    retuned.thresholds.price_z.warning = 3.0;
    retuned.volume_scale_floor = 0.5;
    assert!(CarryState::from_bytes(&bytes, &retuned).is_ok());
}

#[test]
fn mismatched_column_lengths_are_an_error() {
    let bars = OwnedBars::from_closes(&[1.0, 2.0], &[1.0; 2]);
    let mut view = bars.view();
    view.volume = &bars.volume[..1];
    assert!(matches!(
        compute(&view, &default_cfg(), None),
        Err(MetricsError::LengthMismatch {
            column: "volume",
            ..
        })
    ));
}

#[test]
fn carry_holds_at_most_window_plus_one_bars() {
    let (closes, volumes) = quiet_series(200);
    let bars = OwnedBars::from_closes(&closes, &volumes);
    let cfg = default_cfg();
    let (_, carry) = compute(&bars.view(), &cfg, None).unwrap();
    assert_eq!(carry.tail_len(), cfg.window + 1);
    assert_eq!(carry.segment_len(), 200);
    assert_eq!(carry.ewma().returns, 199);
}
