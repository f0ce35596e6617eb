"""The driver path of spark_jobs.metrics_store computes what the cluster path computes, bit for bit."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from spark_jobs.metrics_store import compute_in_driver, compute_symbol

MINUTE_US = 60_000_000


def bars(symbol: str, n: int, emit_from_index: int, rng: np.random.Generator) -> pa.Table:
    closes = 100 * np.cumprod(1 + rng.standard_t(4, n) * 1e-3)
    opens = np.concatenate([closes[:1], closes[:-1]])
    ts = 1_700_000_000_000_000 + np.cumsum(rng.choice([1, 1, 1, 2, 45], n)) * MINUTE_US
    timestamp = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "symbol": [symbol] * n,
            "ts": pa.array(ts.tolist(), timestamp),
            "open": opens,
            "high": np.maximum(opens, closes) * 1.0005,
            "low": np.minimum(opens, closes) * 0.9995,
            "close": closes,
            "volume": rng.lognormal(7, 1, n),
            "vwap": (opens + closes) / 2,
            "emit_from": pa.array([int(ts[emit_from_index])] * n, timestamp),
        }
    )


def test_driver_path_equals_per_symbol_groups() -> None:
    rng = np.random.default_rng(5)
    groups = [bars("AAA", 700, 512, rng), bars("BB", 40, 0, rng), bars("C", 300, 299, rng)]
    # Rows arrive in no particular order, as from the database.
    everything = pa.concat_tables(groups)
    shuffled = everything.take(pa.array(rng.permutation(everything.num_rows)))

    in_driver = compute_in_driver(shuffled)

    on_cluster = pa.concat_tables([compute_symbol(group) for group in groups])
    assert in_driver.num_rows == (700 - 512) + 40 + 1
    assert in_driver.sort_by([("symbol", "ascending"), ("ts", "ascending")]).equals(
        on_cluster.sort_by([("symbol", "ascending"), ("ts", "ascending")])
    )


def test_driver_path_of_nothing_is_empty() -> None:
    empty = bars("X", 1, 0, np.random.default_rng(1)).slice(0, 0)
    assert compute_in_driver(empty).num_rows == 0
