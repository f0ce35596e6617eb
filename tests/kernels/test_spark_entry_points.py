"""applyInArrow / mapInArrow entry points, driven directly with pyarrow (no Spark needed)."""

from __future__ import annotations

import inspect

import numpy as np
import pyarrow as pa
import pytest
from helpers import bars_frame, to_table
from hypothesis import given, settings
from hypothesis import strategies as st

import sparktrends
from sparktrends import (
    METRICS_SCHEMA,
    apply_in_arrow,
    compute_metrics,
    make_apply_in_arrow,
    make_map_in_arrow,
    map_in_arrow,
    metrics_ddl,
)

SYMBOLS = ["AAPL", "BTCUSDT", "MSFT"]


def symbol_table(symbol: str, n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    frame = bars_frame(100 * np.cumprod(1 + rng.standard_t(4, n) * 1e-3), rng.lognormal(7, 1, n))
    return to_table(frame, symbol=symbol)


def expected_for(table: pa.Table, config: dict | None = None) -> pa.Table:
    """One compute_metrics call on the symbol's whole series, with the symbol column added."""
    out = compute_metrics(table.drop_columns(["symbol"]), config)
    symbol = table.column("symbol").combine_chunks()
    return pa.Table.from_batches([out]).add_column(0, "symbol", symbol).cast(METRICS_SCHEMA)


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 400), min_size=3, max_size=3),
    batch_rows=st.integers(1, 300),
    window=st.integers(2, 40),
)
def test_map_in_arrow_across_batch_boundaries_equals_one_call_per_symbol(
    sizes: list[int], batch_rows: int, window: int
) -> None:
    per_symbol = [symbol_table(s, n, seed) for seed, (s, n) in enumerate(zip(SYMBOLS, sizes))]
    partition = pa.concat_tables(per_symbol)
    config = {"window": window, "min_periods": max(2, window // 3)}
    out = pa.Table.from_batches(
        list(make_map_in_arrow(config)(partition.to_batches(max_chunksize=batch_rows))), schema=METRICS_SCHEMA
    )
    assert out.equals(pa.concat_tables([expected_for(t, config) for t in per_symbol]))


def test_map_in_arrow_carries_a_symbol_that_reappears_later() -> None:
    a, b = symbol_table("AAPL", 300, 1), symbol_table("MSFT", 200, 2)
    batches = [*a.slice(0, 120).to_batches(), *b.to_batches(), *a.slice(120).to_batches()]
    out = pa.Table.from_batches(list(map_in_arrow(iter(batches))))
    aapl = out.filter(pa.compute.equal(out.column("symbol"), "AAPL"))
    assert aapl.equals(expected_for(a))


def test_map_in_arrow_rejects_time_going_backwards_within_a_symbol() -> None:
    a = symbol_table("AAPL", 100, 1)
    batches = [a.slice(50).to_batches()[0], a.slice(0, 50).to_batches()[0]]
    with pytest.raises(ValueError, match="symbol AAPL: ts must be strictly increasing"):
        list(map_in_arrow(batches))


def test_map_in_arrow_passes_symbol_and_ts_through_without_copy() -> None:
    batch = symbol_table("AAPL", 1000, 3).to_batches()[0]
    out = next(map_in_arrow([batch]))
    assert out.column("symbol").buffers()[2].address == batch.column("symbol").buffers()[2].address
    assert out.column("ts").buffers()[1].address == batch.column("ts").buffers()[1].address


def test_apply_in_arrow_sorts_a_shuffled_multi_chunk_group() -> None:
    table = symbol_table("BTCUSDT", 700, 4)
    shuffled = table.take(np.random.default_rng(0).permutation(700))
    group = pa.Table.from_batches(shuffled.to_batches(max_chunksize=256))
    assert apply_in_arrow(group).equals(expected_for(table))
    config = {"window": 15, "price_z_warning": 3.0}
    assert make_apply_in_arrow(config)(group).equals(expected_for(table, config))


def test_apply_in_arrow_on_an_empty_group() -> None:
    empty = symbol_table("AAPL", 0, 0)
    out = apply_in_arrow(empty)
    assert out.num_rows == 0 and out.schema == METRICS_SCHEMA


def test_entry_points_have_the_signatures_spark_expects_and_pickle() -> None:
    from pyspark import cloudpickle

    apply_fn = make_apply_in_arrow({"window": 12})
    # Spark calls f(table) when the function has one positional parameter, f(key, table) for two.
    assert len(inspect.getfullargspec(apply_fn).args) == 1
    assert len(inspect.getfullargspec(apply_in_arrow).args) == 1
    table = symbol_table("AAPL", 100, 5)
    assert cloudpickle.loads(cloudpickle.dumps(apply_fn))(table).equals(apply_fn(table))
    map_fn = cloudpickle.loads(cloudpickle.dumps(make_map_in_arrow({"window": 12})))
    assert pa.Table.from_batches(list(map_fn(table.to_batches()))).equals(apply_fn(table))


def test_ddl_matches_what_pyspark_expects_from_the_schema() -> None:
    from pyspark.sql.pandas.types import to_arrow_type
    from pyspark.sql.types import BooleanType, DoubleType, StringType, StructField, StructType, TimestampType

    spark_types = {
        "STRING": StringType(),
        "DOUBLE": DoubleType(),
        "BOOLEAN": BooleanType(),
        "TIMESTAMP": TimestampType(),
    }
    fields = [column.split(" ") for column in metrics_ddl().split(", ")]
    struct = StructType([StructField(name, spark_types[kind]) for name, kind in fields])
    # pyspark's applyInArrow checks names and types of the returned table against these.
    assert [f.name for f in struct.fields] == METRICS_SCHEMA.names
    assert [to_arrow_type(f.dataType) for f in struct.fields] == METRICS_SCHEMA.types
    assert sparktrends.SERIES_METRICS_SCHEMA.names == METRICS_SCHEMA.names[1:]
