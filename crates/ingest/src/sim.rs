//! A seeded synthetic market: per symbol, geometric Brownian motion whose volatility follows a mean-reverting
//! log-OU process, trade arrivals following an intraday U-shaped profile, and injected anomalies at seeded
//! random times (price jumps, volume spikes, volatility regime shifts) whose labels say exactly what was
//! injected where. Same seed, same market: the tests and the offline evaluation rely on it.
//!
//! Each symbol has its own random stream derived from (seed, symbol index), so adding symbols leaves the
//! existing symbols' series unchanged.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal, Poisson, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::messages::{minute_floor, Bar, Trade, MINUTE_MS};

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub symbols: Vec<String>,
    /// First simulated minute (floored to a whole UTC minute).
    pub start_ms: i64,
    /// Mean trades per symbol per minute at the profile's average level.
    pub trades_per_minute: f64,
    /// Per-minute log-return volatility around which the stochastic volatility reverts.
    pub base_sigma: f64,
    /// Minutes in the "session" the U-shaped volume profile spans, repeating from midnight UTC.
    pub session_minutes: u32,
    /// Expected injected events per symbol per day, by kind.
    pub jumps_per_day: f64,
    pub spikes_per_day: f64,
    pub regime_shifts_per_day: f64,
    pub source: String,
}

impl SimConfig {
    pub fn new(seed: u64, symbols: Vec<String>, start_ms: i64) -> Self {
        Self {
            seed,
            symbols,
            start_ms,
            trades_per_minute: 30.0,
            base_sigma: 0.001,
            session_minutes: 1440,
            jumps_per_day: 3.0,
            spikes_per_day: 3.0,
            regime_shifts_per_day: 1.0,
            source: "synthetic".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    PriceJump,
    VolumeSpike,
    /// Labelled with the detector's own kind name (sparktrends-core), so labels and alerts compare directly.
    #[serde(rename = "vol_regime_shift")]
    VolatilityRegimeShift,
}

/// One injected anomaly. `ts_ms` is the start of the bar it lands in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub symbol: String,
    pub kind: AnomalyKind,
    pub ts_ms: i64,
    /// Price jump: signed size in units of that minute's volatility σ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_sigma: Option<f64>,
    /// Volume spike: trade-count multiplier; regime shift: volatility multiplier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    /// Regime shift: how many minutes the raised volatility lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_minutes: Option<u32>,
}

/// Everything one simulated minute produced, across symbols.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Minute {
    pub ts_ms: i64,
    /// Sorted by time (stable across symbols), as a feed would deliver them.
    pub trades: Vec<Trade>,
    /// One bar per symbol, aggregated from that minute's trades.
    pub bars: Vec<Bar>,
    pub labels: Vec<Label>,
}

const VOL_MEAN_REVERSION: f64 = 0.05;
const VOL_OF_VOL: f64 = 0.06;

struct SymbolState {
    symbol: String,
    rng: ChaCha8Rng,
    log_price: f64,
    /// Deviation of ln σ from ln base σ (the OU state).
    log_vol_deviation: f64,
    regime_multiplier: f64,
    regime_minutes_left: u32,
    mean_size: f64,
}

pub struct Market {
    config: SimConfig,
    states: Vec<SymbolState>,
    next_minute_ms: i64,
}

impl Market {
    pub fn new(config: SimConfig) -> Self {
        let states = config
            .symbols
            .iter()
            .enumerate()
            .map(|(index, symbol)| {
                let stream = config
                    .seed
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(index as u64);
                let mut rng = ChaCha8Rng::seed_from_u64(stream);
                // Prices from 10 to 500, log-uniform; typical sizes scale inversely with price.
                let price = (10f64.ln() + rng.random::<f64>() * (500f64 / 10.0).ln()).exp();
                SymbolState {
                    symbol: symbol.clone(),
                    rng,
                    log_price: price.ln(),
                    log_vol_deviation: 0.0,
                    regime_multiplier: 1.0,
                    regime_minutes_left: 0,
                    mean_size: (5_000.0 / price).max(0.01),
                }
            })
            .collect();
        let next_minute_ms = minute_floor(config.start_ms);
        Self {
            config,
            states,
            next_minute_ms,
        }
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// U-shaped intraday activity: busy at the open and the close, quiet at midday; averages about 1.
    pub fn volume_profile(&self, minute_ms: i64) -> f64 {
        let session_ms = i64::from(self.config.session_minutes.max(1)) * MINUTE_MS;
        let x = minute_ms.rem_euclid(session_ms) as f64 / session_ms as f64;
        0.5 + 1.5 * (2.0 * x - 1.0).powi(2)
    }

    pub fn next_minute(&mut self) -> Minute {
        let ts_ms = self.next_minute_ms;
        self.next_minute_ms += MINUTE_MS;
        let profile = self.volume_profile(ts_ms);
        let config = &self.config;
        let mut minute = Minute {
            ts_ms,
            ..Default::default()
        };
        for state in &mut self.states {
            simulate_symbol_minute(config, state, ts_ms, profile, &mut minute);
        }
        minute.trades.sort_by_key(|t| t.ts_ms);
        minute
    }
}

fn simulate_symbol_minute(
    config: &SimConfig,
    s: &mut SymbolState,
    ts_ms: i64,
    profile: f64,
    out: &mut Minute,
) {
    let per_minute = |per_day: f64| per_day / 1440.0;
    let jump = s.rng.random::<f64>() < per_minute(config.jumps_per_day);
    let spike = s.rng.random::<f64>() < per_minute(config.spikes_per_day);
    let regime = s.regime_minutes_left == 0
        && s.rng.random::<f64>() < per_minute(config.regime_shifts_per_day);
    let label = |kind| Label {
        symbol: s.symbol.clone(),
        kind,
        ts_ms,
        size_sigma: None,
        multiplier: None,
        duration_minutes: None,
    };

    if regime {
        let multiplier = round2(s.rng.random_range(2.5..4.0));
        let duration = s.rng.random_range(60..=180);
        s.regime_multiplier = multiplier;
        s.regime_minutes_left = duration;
        out.labels.push(Label {
            multiplier: Some(multiplier),
            duration_minutes: Some(duration),
            ..label(AnomalyKind::VolatilityRegimeShift)
        });
    }
    let shock: f64 = s.rng.sample(StandardNormal);
    s.log_vol_deviation = s.log_vol_deviation * (1.0 - VOL_MEAN_REVERSION) + VOL_OF_VOL * shock;
    let sigma = config.base_sigma * s.log_vol_deviation.exp() * s.regime_multiplier;
    if s.regime_minutes_left > 0 {
        s.regime_minutes_left -= 1;
        if s.regime_minutes_left == 0 {
            s.regime_multiplier = 1.0;
        }
    }

    let spike_multiplier = if spike {
        round2(s.rng.random_range(6.0..12.0))
    } else {
        1.0
    };
    if spike {
        out.labels.push(Label {
            multiplier: Some(spike_multiplier),
            ..label(AnomalyKind::VolumeSpike)
        });
    }
    let rate = (config.trades_per_minute * profile * spike_multiplier).max(0.1);
    let count = (Poisson::new(rate)
        .expect("positive rate")
        .sample(&mut s.rng) as usize)
        .max(1);
    let mut offsets: Vec<i64> = (0..count)
        .map(|_| s.rng.random_range(0..MINUTE_MS))
        .collect();
    offsets.sort_unstable();

    let jump = if jump {
        let at = s.rng.random_range(0..count);
        let magnitude = round2(s.rng.random_range(5.0..9.0));
        let signed = if s.rng.random::<bool>() {
            magnitude
        } else {
            -magnitude
        };
        out.labels.push(Label {
            size_sigma: Some(signed),
            ..label(AnomalyKind::PriceJump)
        });
        Some((at, signed * sigma))
    } else {
        None
    };
    finish_minute(config, s, ts_ms, &offsets, sigma, jump, out);
}

/// Walk the price through the minute's trades (Brownian increments over each gap), apply a jump at its trade,
/// carry the path to the minute's end, and aggregate the bar.
fn finish_minute(
    config: &SimConfig,
    s: &mut SymbolState,
    ts_ms: i64,
    offsets: &[i64],
    sigma: f64,
    jump: Option<(usize, f64)>,
    out: &mut Minute,
) {
    let step = Normal::new(0.0, 1.0).expect("unit normal");
    let sizes = LogNormal::new(s.mean_size.ln() - 0.32, 0.8).expect("valid lognormal");
    let mut previous = 0i64;
    let (mut high, mut low) = (f64::MIN, f64::MAX);
    let (mut open, mut close, mut volume, mut notional) = (0.0, 0.0, 0.0, 0.0);
    for (index, &offset) in offsets.iter().enumerate() {
        let dt = (offset - previous) as f64 / MINUTE_MS as f64;
        previous = offset;
        s.log_price += sigma * dt.sqrt() * step.sample(&mut s.rng) - 0.5 * sigma * sigma * dt;
        if let Some((at, size)) = jump {
            if at == index {
                s.log_price += size;
            }
        }
        let price = round_price(s.log_price.exp());
        let size = round_size(sizes.sample(&mut s.rng));
        if index == 0 {
            open = price;
        }
        close = price;
        high = high.max(price);
        low = low.min(price);
        volume += size;
        notional += price * size;
        // No id: ingest derives one from the print itself (contract: messages::derived_trade_id), so a restarted
        // market never reuses the id of an earlier run's trade.
        out.trades.push(Trade::new(
            &config.source,
            &s.symbol,
            ts_ms + offset,
            price,
            size,
        ));
    }
    let rest = (MINUTE_MS - previous) as f64 / MINUTE_MS as f64;
    s.log_price += sigma * rest.sqrt() * step.sample(&mut s.rng) - 0.5 * sigma * sigma * rest;
    out.bars.push(Bar {
        trades: Some(offsets.len() as i64),
        vwap: (volume > 0.0).then(|| notional / volume),
        ..Bar::ohlcv(
            &config.source,
            &s.symbol,
            ts_ms,
            open,
            high,
            low,
            close,
            volume,
        )
    });
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Exchange-like tick: 4 decimals (prices never fall near zero in a day of 0.1 % minutes).
fn round_price(price: f64) -> f64 {
    ((price * 10_000.0).round() / 10_000.0).max(0.0001)
}

fn round_size(size: f64) -> f64 {
    ((size * 1_000.0).round() / 1_000.0).max(0.001)
}

/// `SYN00`, `SYN01`, ...: names that cannot be mistaken for real tickers.
pub fn default_symbols(count: usize) -> Vec<String> {
    let width = count.saturating_sub(1).to_string().len().max(2);
    (0..count).map(|i| format!("SYN{i:0width$}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z

    fn market(seed: u64, symbols: usize) -> Market {
        let mut config = SimConfig::new(seed, default_symbols(symbols), START);
        config.jumps_per_day = 40.0;
        config.spikes_per_day = 40.0;
        config.regime_shifts_per_day = 10.0;
        Market::new(config)
    }

    fn run(market: &mut Market, minutes: usize) -> Vec<Minute> {
        (0..minutes).map(|_| market.next_minute()).collect()
    }

    #[test]
    fn same_seed_same_market_other_seed_other_market() {
        let a = run(&mut market(7, 3), 120);
        let b = run(&mut market(7, 3), 120);
        let c = run(&mut market(8, 3), 120);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn adding_symbols_leaves_existing_series_unchanged() {
        let small = run(&mut market(3, 2), 30);
        let large = run(&mut market(3, 5), 30);
        for (s, l) in small.iter().zip(&large) {
            let keep = |bars: &[Bar]| {
                bars.iter()
                    .filter(|b| b.symbol == "SYN00" || b.symbol == "SYN01")
                    .cloned()
                    .collect::<Vec<_>>()
            };
            assert_eq!(keep(&s.bars), keep(&l.bars));
        }
    }

    #[test]
    fn bars_aggregate_the_trades_of_their_minute() {
        for minute in run(&mut market(1, 4), 20) {
            assert_eq!(minute.bars.len(), 4);
            assert!(minute.trades.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));
            for bar in &minute.bars {
                let trades: Vec<&Trade> = minute
                    .trades
                    .iter()
                    .filter(|t| t.symbol == bar.symbol)
                    .collect();
                assert_eq!(bar.trades, Some(trades.len() as i64));
                assert!(trades
                    .iter()
                    .all(|t| t.ts_ms >= bar.ts_ms && t.ts_ms < bar.ts_ms + MINUTE_MS));
                let volume: f64 = trades.iter().map(|t| t.size).sum();
                assert!((bar.volume - volume).abs() < 1e-9);
                assert_eq!(bar.close, trades.last().unwrap().price);
                assert!(bar.high >= bar.open.max(bar.close) && bar.low <= bar.open.min(bar.close));
                assert!(trades.iter().all(|t| t.price > 0.0 && t.size > 0.0));
            }
        }
    }

    #[test]
    fn prints_are_distinct_so_derived_ids_are_unique() {
        let minutes = run(&mut market(2, 3), 60);
        let trades: Vec<&Trade> = minutes.iter().flat_map(|m| &m.trades).collect();
        assert!(trades.iter().all(|t| t.trade_id.is_none()));
        let prints: std::collections::HashSet<_> = trades
            .iter()
            .map(|t| {
                (
                    t.symbol.clone(),
                    t.ts_ms,
                    t.price.to_bits(),
                    t.size.to_bits(),
                )
            })
            .collect();
        assert_eq!(prints.len(), trades.len());
    }

    #[test]
    fn labelled_jumps_are_visible_in_the_bar_returns() {
        let minutes = run(&mut market(11, 4), 1440);
        let jumps: Vec<&Label> = minutes
            .iter()
            .flat_map(|m| &m.labels)
            .filter(|l| l.kind == AnomalyKind::PriceJump)
            .collect();
        assert!(
            jumps.len() >= 60,
            "expected about 160 jumps at 40/day on 4 symbols, got {}",
            jumps.len()
        );
        let mut visible = 0;
        for label in &jumps {
            let close_at = |ts: i64| {
                minutes
                    .iter()
                    .find(|m| m.ts_ms == ts)
                    .and_then(|m| m.bars.iter().find(|b| b.symbol == label.symbol))
                    .map(|b| b.close)
            };
            if let (Some(before), Some(after)) =
                (close_at(label.ts_ms - MINUTE_MS), close_at(label.ts_ms))
            {
                let ret = (after / before).ln();
                // A 5–9σ jump plus ordinary noise: same sign and at least 3 base σ.
                if ret.signum() == label.size_sigma.unwrap().signum() && ret.abs() > 3.0 * 0.001 {
                    visible += 1;
                }
            }
        }
        assert!(
            visible as f64 >= 0.9 * jumps.len() as f64,
            "{visible} of {} jumps visible",
            jumps.len()
        );
    }

    #[test]
    fn volume_spikes_raise_the_trade_count() {
        let minutes = run(&mut market(5, 4), 1440);
        let spikes: Vec<&Label> = minutes
            .iter()
            .flat_map(|m| &m.labels)
            .filter(|l| l.kind == AnomalyKind::VolumeSpike)
            .collect();
        assert!(!spikes.is_empty());
        for label in spikes {
            let minute = minutes.iter().find(|m| m.ts_ms == label.ts_ms).unwrap();
            let bar = minute
                .bars
                .iter()
                .find(|b| b.symbol == label.symbol)
                .unwrap();
            // At least 6x the rate: even the quiet midday profile (0.5 * 30 trades) gives 90 expected trades.
            assert!(
                bar.trades.unwrap() >= 50,
                "spike bar with {:?} trades",
                bar.trades
            );
        }
    }

    #[test]
    fn regime_shifts_raise_realised_volatility() {
        let mut config = SimConfig::new(9, default_symbols(1), START);
        config.regime_shifts_per_day = 0.0;
        config.jumps_per_day = 0.0;
        let calm = run(&mut Market::new(config.clone()), 2000);
        config.regime_shifts_per_day = 30.0;
        let shifted = run(&mut Market::new(config), 2000);
        let realised = |minutes: &[Minute]| {
            let closes: Vec<f64> = minutes.iter().map(|m| m.bars[0].close).collect();
            let returns: Vec<f64> = closes.windows(2).map(|w| (w[1] / w[0]).ln()).collect();
            (returns.iter().map(|r| r * r).sum::<f64>() / returns.len() as f64).sqrt()
        };
        assert!(shifted.iter().any(|m| !m.labels.is_empty()));
        assert!(
            realised(&shifted) > 1.5 * realised(&calm),
            "{} vs {}",
            realised(&shifted),
            realised(&calm)
        );
        let base = realised(&calm);
        assert!(
            base > 0.0005 && base < 0.002,
            "calm per-minute vol {base} near the configured 0.001"
        );
    }

    #[test]
    fn volume_profile_is_u_shaped() {
        let m = market(1, 1);
        let open = m.volume_profile(START);
        let noon = m.volume_profile(START + 720 * MINUTE_MS);
        let close = m.volume_profile(START + 1439 * MINUTE_MS);
        assert!(open > 3.0 * noon && close > 3.0 * noon);
    }

    #[test]
    fn default_symbol_names() {
        assert_eq!(default_symbols(3), vec!["SYN00", "SYN01", "SYN02"]);
        assert_eq!(default_symbols(101)[100], "SYN100");
    }
}
