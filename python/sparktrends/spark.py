"""Entry points for PySpark's Arrow APIs, and the output schema as Spark DDL.

``groupBy("symbol").applyInArrow(make_apply_in_arrow(cfg), metrics_ddl())`` computes each symbol's
group in one call; ``mapInArrow(make_map_in_arrow(cfg), metrics_ddl())`` streams batches and carries
each symbol's state across batch boundaries (the input must be partitioned by symbol and sorted by
``symbol, ts`` within partitions, e.g. ``repartition("symbol").sortWithinPartitions("symbol", "ts")``).
Both return the columns of :data:`~sparktrends.metrics.METRICS_SCHEMA`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from sparktrends._config import ConfigLike, as_config
from sparktrends._native import MetricsStream
from sparktrends.metrics import METRICS_SCHEMA

_SPARK_TYPES = {
    pa.string(): "STRING",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    pa.timestamp("us", tz="UTC"): "TIMESTAMP",
}


def metrics_ddl(schema: pa.Schema = METRICS_SCHEMA) -> str:
    """The Spark DDL string of ``schema`` (default: the metrics output), e.g. ``"symbol STRING, ..."``."""
    try:
        return ", ".join(f"{field.name} {_SPARK_TYPES[field.type]}" for field in schema)
    except KeyError as missing:
        raise ValueError(f"no Spark type for Arrow type {missing}") from None


def _is_strictly_increasing(ts: pa.ChunkedArray) -> bool:
    if len(ts) < 2:
        return True
    return bool(pc.all(pc.less(ts.slice(0, len(ts) - 1), ts.slice(1))).as_py())


def apply_in_arrow_with(table: pa.Table, config: ConfigLike = None) -> pa.Table:
    """Metrics of one symbol's group (a Table with ``symbol``, ``ts``, OHLCV and optional ``vwap``).

    Spark does not order the rows of a group, so the table is sorted by ``ts`` unless it already
    is. The chunks are processed in order with the state carried across them (no concatenation).
    """
    if table.num_rows and not _is_strictly_increasing(table.column("ts")):
        table = table.sort_by("ts")
    stream = MetricsStream(as_config(config))
    batches = [stream.process(batch) for batch in table.to_batches() if batch.num_rows]
    return pa.Table.from_batches(batches, schema=METRICS_SCHEMA)


def apply_in_arrow(table: pa.Table) -> pa.Table:
    """``applyInArrow`` function with the default config (Spark passes only the table)."""
    return apply_in_arrow_with(table)


def make_apply_in_arrow(config: ConfigLike = None) -> Callable[[pa.Table], pa.Table]:
    """An ``applyInArrow`` function bound to ``config`` (one positional parameter, as Spark expects).

    The config is captured as a plain dict, so the function pickles for shipping to executors.
    """
    values: dict[str, Any] = as_config(config).to_dict()

    def apply(table: pa.Table) -> pa.Table:
        return apply_in_arrow_with(table, values)

    return apply


def map_in_arrow_with(batches: Iterable[pa.RecordBatch], config: ConfigLike = None) -> Iterator[pa.RecordBatch]:
    """Metrics for a stream of batches with ``symbol``, ``ts``, OHLCV and optional ``vwap``.

    Rows must be time-sorted within each symbol across the whole stream (a symbol may straddle
    batches, or reappear later); each symbol's state is carried across batches, so the output
    equals one call per symbol on its whole series. One output batch per non-empty input batch,
    rows in input order.
    """
    stream = MetricsStream(as_config(config))
    for batch in batches:
        if batch.num_rows:
            yield stream.process(batch)


def map_in_arrow(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` function with the default config."""
    return map_in_arrow_with(batches)


def make_map_in_arrow(
    config: ConfigLike = None,
) -> Callable[[Iterable[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """A ``mapInArrow`` function bound to ``config`` (captured as a plain dict, so it pickles)."""
    values: dict[str, Any] = as_config(config).to_dict()

    def map_batches(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return map_in_arrow_with(batches, values)

    return map_batches
