//! Single-core throughput of the rolling kernels and of the full `compute`, one JSON object per line
//! (read by `bench/kernels.py`, which times numpy/pandas/polars on the same sizes beside it).
//!
//! `cargo run --release -p sparktrends-core --example throughput [-- ROWS]`

use std::hint::black_box;
use std::time::Instant;

use sparktrends_core::{bench, compute, Bars, MetricsConfig};

/// Deterministic pseudo-random log returns (xorshift), so runs are comparable.
fn log_returns(len: usize) -> Vec<f64> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 2e-3
        })
        .collect()
}

fn best_of<F: FnMut()>(runs: usize, mut f: F) -> f64 {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn report(kernel: &str, values: usize, secs: f64) {
    println!(
        "{{\"kernel\": \"{kernel}\", \"values\": {values}, \"seconds\": {secs:.6}, \"values_per_s\": {:.1}}}",
        values as f64 / secs
    );
}

fn main() {
    let len: usize = std::env::args()
        .nth(1)
        .map(|arg| arg.parse().expect("ROWS must be a number"))
        .unwrap_or(10_000_000);
    let x = log_returns(len);
    let mut out = vec![0.0; len];
    let secs = best_of(5, || bench::rolling_std(black_box(&x), 30, 10, &mut out));
    report("rolling_std", len, secs);

    let mut mad = vec![0.0; len];
    let secs = best_of(3, || {
        bench::rolling_median_mad(black_box(&x), 30, 10, &mut out, &mut mad)
    });
    report("rolling_median_mad", len, secs);

    let close: Vec<f64> = x
        .iter()
        .scan(100.0, |p, r| {
            *p *= r.exp();
            Some(*p)
        })
        .collect();
    let ts: Vec<i64> = (0..len as i64).map(|i| i * 60_000_000).collect();
    let high: Vec<f64> = close.iter().map(|c| c * 1.001).collect();
    let low: Vec<f64> = close.iter().map(|c| c * 0.999).collect();
    let volume: Vec<f64> = x.iter().map(|r| 1000.0 + r.abs() * 1e6).collect();
    // Chunks of a realistic batch size, continued with the carry: arrays stay in cache.
    let chunk = 100_000;
    let cfg = MetricsConfig::default();
    let secs = best_of(2, || {
        let mut carry = None;
        for start in (0..len).step_by(chunk) {
            let r = start..(start + chunk).min(len);
            let bars = Bars {
                ts: &ts[r.clone()],
                open: &close[r.clone()],
                high: &high[r.clone()],
                low: &low[r.clone()],
                close: &close[r.clone()],
                volume: &volume[r],
                vwap: None,
            };
            let (metrics, next) = compute(black_box(&bars), &cfg, carry.as_ref()).unwrap();
            black_box(metrics);
            carry = Some(next);
        }
    });
    report("compute_all_metrics", len, secs);
}
