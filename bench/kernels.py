"""Kernel throughput on one core, side by side: our Rust kernels vs numpy, pandas and polars rolling windows.

Rust numbers come from `cargo run --release --example throughput` (pure Rust, no Python in the loop); the
alternatives are timed here on series of the same length and distribution. Window n = 30, min_periods 10.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa

import sparktrends

REPO = Path(__file__).resolve().parent.parent
ROWS = int(os.environ.get("BENCH_KERNEL_ROWS", 10_000_000))
# pandas has no rolling MAD: its rolling().apply runs Python per window, so it is timed on a slice.
PANDAS_APPLY_ROWS = 200_000
N, M = 30, 10


def best_of(runs: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def rust_rows(rows: int) -> dict[str, float]:
    result = subprocess.run(
        ["cargo", "run", "--release", "--quiet", "-p", "sparktrends-core", "--example", "throughput", "--", str(rows)],
        cwd=REPO, capture_output=True, text=True, check=True, env={**os.environ, "RUSTFLAGS": ""},
    )  # fmt: skip
    return {r["kernel"]: r["values_per_s"] for r in map(json.loads, result.stdout.splitlines())}


def row(name: str, impl: str, values: int, seconds: float, notes: str = "", unit: str = "M values/s") -> dict:
    return {"section": "kernels", "name": name, "impl": impl, "value": values / seconds / 1e6, "unit": unit,
            "notes": notes}  # fmt: skip


def run(_settings: object = None) -> list[dict]:
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1e-3, ROWS)
    series, frame = pd.Series(x), pl.DataFrame({"x": x})
    rust = rust_rows(ROWS)
    rows = [
        {"section": "kernels", "name": "rolling std (vol_cc)", "impl": "rust (sparktrends-core)",
         "value": rust["rolling_std"] / 1e6, "unit": "M values/s", "notes": f"{ROWS:,} values, 1 core"},
        row("rolling std (vol_cc)", "pandas rolling().std()", ROWS,
            best_of(3, lambda: series.rolling(N, min_periods=M).std())),
        row("rolling std (vol_cc)", "polars rolling_std", ROWS,
            best_of(3, lambda: frame.select(pl.col("x").rolling_std(N, min_samples=M)))),
        row("rolling std (vol_cc)", "numpy sliding_window_view", ROWS,
            best_of(1, lambda: np.lib.stride_tricks.sliding_window_view(x, N).std(axis=1, ddof=1)),
            "full windows only"),
        {"section": "kernels", "name": "rolling median + MAD (robust_z)", "impl": "rust (sparktrends-core)",
         "value": rust["rolling_median_mad"] / 1e6, "unit": "M values/s", "notes": "sorted window"},
        row("rolling median + MAD (robust_z)", "pandas rolling median + apply(MAD)", PANDAS_APPLY_ROWS,
            best_of(1, lambda: _pandas_median_mad(series.iloc[:PANDAS_APPLY_ROWS])),
            f"timed on {PANDAS_APPLY_ROWS:,} values"),
        row("rolling median + MAD (robust_z)", "polars rolling_median + rolling_map(MAD)", PANDAS_APPLY_ROWS,
            best_of(1, lambda: _polars_median_mad(frame.head(PANDAS_APPLY_ROWS))),
            f"timed on {PANDAS_APPLY_ROWS:,} values"),
        row("rolling median (alone)", "pandas rolling().median()", ROWS,
            best_of(1, lambda: series.rolling(N, min_periods=M).median()), "median only, no MAD"),
        {"section": "kernels", "name": "all metrics (compute)", "impl": "rust (sparktrends-core)",
         "value": rust["compute_all_metrics"] / 1e6, "unit": "M bars/s", "notes": "100k-bar chunks with carry"},
        _python_binding_row(x),
    ]  # fmt: skip
    return rows


def _pandas_median_mad(s: pd.Series) -> pd.DataFrame:
    rolling = s.rolling(N, min_periods=M)
    median = rolling.median()
    mad = rolling.apply(lambda w: np.median(np.abs(w - np.median(w))), raw=True)
    return pd.DataFrame({"median": median, "mad": mad})


def _polars_median_mad(df: pl.DataFrame) -> pl.DataFrame:
    def mad(window: pl.Series) -> float:
        return float((window - window.median()).abs().median())

    return df.select(
        pl.col("x").rolling_median(N, min_samples=M).alias("median"),
        pl.col("x").rolling_map(mad, N, min_samples=M).alias("mad"),
    )


def _python_binding_row(x: np.ndarray) -> dict:
    close = 100 * np.exp(np.cumsum(x))
    table = pa.table(
        {
            "ts": pa.array(np.arange(len(x), dtype=np.int64) * 60_000_000, pa.timestamp("us", tz="UTC")),
            "open": close, "high": close * 1.001, "low": close * 0.999, "close": close,
            "volume": 1000 + np.abs(x) * 1e6,
        }
    )  # fmt: skip
    seconds = best_of(1, lambda: sparktrends.compute_metrics(table))
    return row("all metrics (compute)", "python: sparktrends.compute_metrics", len(x), seconds,
               "one call, Arrow in/out", unit="M bars/s")  # fmt: skip


if __name__ == "__main__":
    for r in run():
        print(r)
