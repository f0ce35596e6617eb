"""Metrics of one symbol's bars, computed by the Rust core over Arrow data without copies."""

from __future__ import annotations

import pyarrow as pa

from sparktrends import _native
from sparktrends._config import ConfigLike, as_config
from sparktrends._native import CarryState

#: Output of :func:`compute_metrics`: ``ts``, the ``metrics_1m`` columns, ``anomaly_kinds``, ``severity``.
SERIES_METRICS_SCHEMA: pa.Schema = _native.metrics_schema(with_symbol=False)

#: Output of the Spark entry points: ``symbol`` followed by :data:`SERIES_METRICS_SCHEMA`.
METRICS_SCHEMA: pa.Schema = _native.metrics_schema(with_symbol=True)


def compute_metrics(bars: pa.RecordBatch | pa.Table, config: ConfigLike = None) -> pa.RecordBatch:
    """Compute every metric for one symbol's bars.

    ``bars`` is a pyarrow RecordBatch or Table sorted by strictly increasing ``ts`` (a timestamp of
    any unit and time zone; it is normalised to µs UTC), with float64 columns ``open``, ``high``,
    ``low``, ``close``, ``volume`` and optionally ``vwap``. Other columns are ignored. Columns
    without nulls are read in place (no copy); a Table with several chunks is processed chunk by
    chunk, continuing the state across chunks.

    Returns one row per bar with the columns of :data:`SERIES_METRICS_SCHEMA`.

    Raises ``ValueError`` for a missing column, nulls in ``ts``, a ``ts`` that does not increase
    strictly, or an invalid config; ``TypeError`` for a column of the wrong type or an input that
    is not Arrow data.
    """
    batch, _ = _native.compute_metrics(bars, as_config(config), None)
    return batch


def compute_metrics_with_carry(
    bars: pa.RecordBatch | pa.Table,
    config: ConfigLike = None,
    carry: CarryState | None = None,
) -> tuple[pa.RecordBatch, CarryState]:
    """Like :func:`compute_metrics`, continuing from ``carry`` and returning the next carry.

    Calling it on consecutive chunks of a series, passing each call's carry to the next, gives
    exactly (bit for bit) the rows of one call on the whole series. A carry must be used with the
    configuration that produced it (only the alert thresholds may change), else ``ValueError``.
    """
    return _native.compute_metrics(bars, as_config(config), carry)
