"""What metrics_1m must hold for a set of bars: the Rust kernels run on each symbol's final bars."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

import sparktrends

METRICS = [
    "ret", "log_ret", "vol_cc", "vol_ewma", "vol_parkinson", "vol_gk", "vol_rs", "vol_yz", "vwap_roll",
    "vwap_dev", "volume_z", "return_z", "robust_z", "anomaly_score",
]  # fmt: skip


def expected_metrics(bars: list[dict]) -> dict[tuple[str, dt.datetime], dict]:
    """The kernels on each symbol's final bars: what the database must hold."""
    out = {}
    for symbol in sorted({b["symbol"] for b in bars}):
        mine = sorted((b for b in bars if b["symbol"] == symbol), key=lambda b: b["ts_ms"])
        table = pa.table(
            {
                "ts": pa.array([b["ts_ms"] * 1000 for b in mine], pa.timestamp("us", tz="UTC")),
                **{c: pa.array([b[c] for b in mine], pa.float64()) for c in ("open", "high", "low", "close", "volume")},
                "vwap": pa.array([b["vwap"] for b in mine], pa.float64()),
            }
        )
        for row in sparktrends.compute_metrics(table).to_pylist():
            out[(symbol, row["ts"])] = row
    return out


def stored_metrics(pg, symbols: list[str]) -> dict[tuple[str, dt.datetime], dict]:
    rows = pg.execute(
        f"SELECT symbol, ts, {', '.join(METRICS)}, is_anomaly FROM metrics_1m WHERE symbol = ANY(%s)", (symbols,)
    ).fetchall()
    names = ["symbol", "ts", *METRICS, "is_anomaly"]
    return {(r[0], r[1]): dict(zip(names, r)) for r in rows}


def assert_same_metrics(actual: dict, expected: dict) -> None:
    missing, unexpected = expected.keys() - actual.keys(), actual.keys() - expected.keys()
    assert not missing and not unexpected, f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
    for column in METRICS:
        keys = sorted(expected)
        got = np.array([np.nan if actual[k][column] is None else actual[k][column] for k in keys], dtype=float)
        want = np.array([np.nan if expected[k][column] is None else expected[k][column] for k in keys], dtype=float)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=column)
    assert [actual[k]["is_anomaly"] for k in sorted(expected)] == [expected[k]["is_anomaly"] for k in sorted(expected)]
