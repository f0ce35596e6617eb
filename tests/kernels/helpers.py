"""Builders of bar tables and hypothesis strategies shared by the kernel tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import strategies as st

MINUTE_US = 60_000_000
T0_US = 1_700_000_000 * 1_000_000
FLOAT_COLUMNS = [
    "ret",
    "log_ret",
    "vol_cc",
    "vol_ewma",
    "vol_parkinson",
    "vol_gk",
    "vol_rs",
    "vol_yz",
    "vwap_roll",
    "vwap_dev",
    "volume_z",
    "return_z",
    "robust_z",
    "anomaly_score",
]


def bars_frame(closes: np.ndarray, volumes: np.ndarray | None = None, steps: np.ndarray | None = None) -> pd.DataFrame:
    """Regular bars from closes (open = previous close, a small range around both)."""
    closes = np.asarray(closes, dtype=float)
    n = len(closes)
    steps = np.ones(n, dtype=np.int64) if steps is None else np.asarray(steps, dtype=np.int64)
    volumes = np.full(n, 1000.0) if volumes is None else np.asarray(volumes, dtype=float)
    opens = np.concatenate([closes[:1], closes[:-1]])
    return pd.DataFrame(
        {
            "ts": T0_US + np.cumsum(steps) * MINUTE_US,
            "open": opens,
            "high": np.maximum(opens, closes) * 1.0005,
            "low": np.minimum(opens, closes) * 0.9995,
            "close": closes,
            "volume": volumes,
        }
    )


def to_table(frame: pd.DataFrame, unit: str = "us", tz: str | None = "UTC", symbol: str | None = None) -> pa.Table:
    """A pyarrow Table with ``ts`` as timestamp[unit, tz] (NaN floats stay NaN, not null)."""
    factor = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1}[unit]
    ts = frame["ts"].to_numpy(np.int64)
    ts = ts * 1000 if unit == "ns" else ts // factor
    columns: dict[str, pa.Array] = {}
    if symbol is not None:
        columns["symbol"] = pa.array([symbol] * len(frame), pa.string())
    columns["ts"] = pa.array(ts, pa.timestamp(unit, tz=tz))
    for name in ("open", "high", "low", "close", "volume", "vwap"):
        if name in frame:
            columns[name] = pa.array(frame[name].to_numpy(float), pa.float64(), from_pandas=False)
    return pa.table(columns)


_price_noise = st.sampled_from([np.nan, 0.0, -1.0, np.inf])


@st.composite
def bar_frames(draw: st.DrawFn, max_len: int = 120) -> pd.DataFrame:
    """Adversarial bars: gaps (some exactly at 15 min), flat runs, jumps, null or invalid prices and
    volumes, zero volume, sometimes a partly-null vwap column. Returns are on a 1e-4 grid so that a
    window is either exactly flat or clearly dispersed."""
    n = draw(st.integers(0, max_len))
    steps = draw(st.lists(st.sampled_from([1, 1, 1, 1, 1, 1, 2, 7, 15, 16, 300]), min_size=n, max_size=n))
    ticks = draw(
        st.lists(
            st.one_of(st.just(0), st.integers(-30, 30), st.sampled_from([-500, 400, 2000])),
            min_size=n,
            max_size=n,
        )
    )
    closes = 100.0 * np.cumprod(1.0 + np.asarray(ticks, dtype=float) * 1e-4)
    volumes = np.asarray(
        draw(
            st.lists(
                st.one_of(
                    st.floats(0, 1e6, allow_nan=False),
                    st.just(0.0),
                    st.just(500.0),
                    st.sampled_from([np.nan, -3.0]),
                ),
                min_size=n,
                max_size=n,
            )
        )
    )
    frame = bars_frame(closes, volumes, np.asarray(steps))
    corrupt = draw(
        st.lists(
            st.tuples(st.integers(0, max(n - 1, 0)), st.sampled_from(["open", "high", "low", "close"]), _price_noise),
            max_size=n // 8 + 1,
        )
    )
    for row, column, value in corrupt:
        if n:
            frame.loc[row, column] = value
    if draw(st.booleans()):
        vwap = (frame["high"] + frame["low"]) / 2
        nulls = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        frame["vwap"] = vwap.where(~np.asarray(nulls, dtype=bool)) if n else vwap
    return frame


small_configs = st.builds(
    lambda n, m, s, lam, trim, floor_extra, episode: {
        "window": n,
        "min_periods": min(m, n),
        "regime_window": s,
        "lam": lam,
        "regime_trim": min(trim, s - 1),
        "scale_floor_window": n + floor_extra,
        "episode_minutes": episode,
    },
    st.integers(1, 12),
    st.integers(1, 12),
    st.integers(1, 6),
    st.floats(0.5, 0.99),
    st.integers(0, 2),
    st.integers(0, 20),
    st.sampled_from([0.0, 3.0, 30.0]),
)
