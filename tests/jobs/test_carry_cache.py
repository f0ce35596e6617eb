"""The driver's carry cache stays within its bound, least recently used out first; an evicted symbol is simply
read from metrics_carry again (tests/stack/test_metrics_store.py covers that path)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

import sparktrends
from spark_jobs.carries import CarryCache, _Cached


def a_carry() -> sparktrends.CarryState:
    closes = 100 * np.cumprod(1 + np.random.default_rng(1).normal(0, 1e-3, 40))
    ts = pa.array((np.arange(40) * 60_000_000).tolist(), pa.timestamp("us", tz="UTC"))
    bars = pa.table({"ts": ts, "open": closes, "high": closes, "low": closes, "close": closes, "volume": closes})
    return sparktrends.compute_metrics_with_carry(bars)[1]


def test_the_cache_keeps_the_most_recently_used_within_its_bound() -> None:
    cache, carry = CarryCache(max_entries=3), a_carry()
    for symbol in ("A", "B", "C"):
        cache.put("db", symbol, _Cached(1, "{}", carry))
    assert cache.get("db", "A") is not None  # A is now the most recently used
    cache.put("db", "D", _Cached(1, "{}", carry))
    assert len(cache) == 3
    assert cache.get("db", "B") is None  # the least recently used went
    assert all(cache.get("db", s) is not None for s in ("A", "C", "D"))
    assert cache.get("other-db", "A") is None  # one database's carry is never another's
    cache.drop("db", ["A", "Z"])
    assert cache.get("db", "A") is None and len(cache) == 2
