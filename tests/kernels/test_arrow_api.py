"""The Python/Arrow surface: validation, normalisation, zero-copy, config, carry, GIL."""

from __future__ import annotations

import pickle
import threading

import numpy as np
import pyarrow as pa
import pytest
from helpers import FLOAT_COLUMNS, bars_frame, to_table

import sparktrends
from sparktrends import MetricsConfig, compute_metrics, compute_metrics_with_carry


def random_frame(n: int = 300, seed: int = 0):
    rng = np.random.default_rng(seed)
    return bars_frame(100 * np.cumprod(1 + rng.normal(0, 1e-3, n)), rng.lognormal(8, 0.5, n))


def test_output_has_the_schema_and_one_row_per_bar() -> None:
    out = compute_metrics(to_table(random_frame()))
    assert out.schema == sparktrends.SERIES_METRICS_SCHEMA
    assert out.num_rows == 300
    assert sparktrends.METRICS_SCHEMA.names == ["symbol", *out.schema.names]
    assert out.schema.names == ["ts", *FLOAT_COLUMNS, "is_anomaly", "anomaly_kinds", "severity"]


def test_missing_column_wrong_type_and_non_arrow_input_raise() -> None:
    table = to_table(random_frame(20))
    with pytest.raises(ValueError, match="no column 'volume'"):
        compute_metrics(table.drop_columns(["volume"]))
    with pytest.raises(TypeError, match="'close' must be float64"):
        compute_metrics(table.set_column(4, "close", pa.array(range(20), pa.int64())))
    with pytest.raises(TypeError, match="'ts' must be a timestamp"):
        compute_metrics(table.set_column(0, "ts", pa.array(range(20), pa.int64())))
    with pytest.raises(TypeError, match="RecordBatch or Table"):
        compute_metrics({"close": [1.0]})


def test_unsorted_duplicate_or_null_ts_raise_value_error() -> None:
    frame = random_frame(20)
    swapped = frame.iloc[[0, 2, 1, *range(3, 20)]]
    with pytest.raises(ValueError, match="strictly increasing"):
        compute_metrics(to_table(swapped))
    duplicated = frame.iloc[[0, 1, 1, *range(2, 20)]]
    with pytest.raises(ValueError, match="strictly increasing"):
        compute_metrics(to_table(duplicated))
    table = to_table(frame)
    with_null = table.set_column(
        0, "ts", pa.array([None, *table.column("ts").to_pylist()[1:]], table.schema.field("ts").type)
    )
    with pytest.raises(ValueError, match="nulls"):
        compute_metrics(with_null)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "UTC", "America/New_York"])
def test_timestamps_of_any_unit_and_zone_are_normalised_to_utc_micros(unit: str, tz: str | None) -> None:
    frame = random_frame(50)
    expected = compute_metrics(to_table(frame))
    got = compute_metrics(to_table(frame, unit=unit, tz=tz))
    assert got.equals(expected)
    assert got.schema.field("ts").type == pa.timestamp("us", tz="UTC")


def test_arrow_nulls_behave_like_nan() -> None:
    frame = random_frame(80)
    frame.loc[[5, 40, 41], "close"] = np.nan
    frame.loc[[7, 60], "volume"] = np.nan
    with_nan = to_table(frame)
    with_nulls = pa.table(
        {
            name: pa.array(col.to_numpy(zero_copy_only=False), col.type, from_pandas=True)
            for name, col in zip(with_nan.column_names, with_nan.columns)
        }
    )
    assert with_nulls.column("close").null_count == 3
    assert compute_metrics(with_nulls).equals(compute_metrics(with_nan))


def test_input_is_read_in_place_and_output_is_not_copied_into_pyarrow() -> None:
    batch = to_table(random_frame(100_000)).to_batches()[0]
    before = pa.total_allocated_bytes()
    out = compute_metrics(batch)
    # Outputs are Rust vectors handed over through the C Data Interface: pyarrow's allocator
    # is not used for them (a copy would allocate ~15 columns x 800 kB there).
    assert pa.total_allocated_bytes() - before < 100_000
    # ts (µs, no nulls) is passed through: the output shares the input's buffer.
    assert out.column("ts").buffers()[1].address == batch.column("ts").buffers()[1].address


def test_multi_chunk_table_equals_single_batch() -> None:
    table = to_table(random_frame(500))
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=77))
    assert chunked.column("close").num_chunks > 1
    assert compute_metrics(chunked).equals(compute_metrics(table.combine_chunks().to_batches()[0]))


@pytest.mark.parametrize("split", [1, 13, 31, 45, 250, 499])
def test_chunks_with_carry_equal_one_call(split: int) -> None:
    frame = random_frame(500)
    frame.loc[200:, "ts"] += 20 * 60_000_000  # a gap inside the second chunk
    whole = compute_metrics(to_table(frame))
    first, carry = compute_metrics_with_carry(to_table(frame.iloc[:split]))
    second, carry = compute_metrics_with_carry(to_table(frame.iloc[split:]), carry=carry)
    assert pa.Table.from_batches([first, second]).equals(pa.Table.from_batches([whole]))
    assert carry.last_ts_us == int(frame["ts"].iloc[-1])
    assert carry.tail_len == MetricsConfig().window + 1


def test_a_carry_stored_as_bytes_or_pickled_continues_bit_for_bit() -> None:
    """What a job does across micro-batches and restarts: store the carry, restore it, continue. The EWMA and the
    detector continue exactly, not re-seeded from a warm-up."""
    frame = random_frame(900, seed=3)
    whole = compute_metrics(to_table(frame))
    config = MetricsConfig(price_z_warning=3.0)
    first, carry = compute_metrics_with_carry(to_table(frame.iloc[:700]))
    stored = carry.to_bytes()
    assert isinstance(stored, bytes) and len(stored) < 12 * 1024  # 700 bars of history behind it, about 10 kB
    restored = sparktrends.CarryState(stored)
    assert restored == carry and pickle.loads(pickle.dumps(carry)) == carry
    second, _ = compute_metrics_with_carry(to_table(frame.iloc[700:]), carry=restored)
    assert pa.Table.from_batches([first, second]).equals(pa.Table.from_batches([whole]))
    # Thresholds may change across a restart (they do not shape the state); windows may not.
    assert sparktrends.CarryState(stored, config).config == config
    with pytest.raises(ValueError, match="carry state"):
        sparktrends.CarryState(stored, MetricsConfig(window=20))
    with pytest.raises(ValueError, match="not a carry state: truncated"):
        sparktrends.CarryState(stored[:-3])


def test_a_stream_continues_from_restored_carries() -> None:
    frame = random_frame(400, seed=5)
    table = to_table(frame).add_column(0, "symbol", pa.array(["X"] * 400))
    whole = sparktrends.MetricsStream().process(table.to_batches()[0])
    head = sparktrends.MetricsStream()
    head.process(table.slice(0, 350).to_batches()[0])
    carry = head.carry("X")
    assert carry is not None
    tail = sparktrends.MetricsStream()
    tail.set_carry("X", sparktrends.CarryState(carry.to_bytes()))
    assert tail.process(table.slice(350).to_batches()[0]).equals(whole.slice(350))
    with pytest.raises(ValueError, match="symbol X: carry state"):
        sparktrends.MetricsStream(MetricsConfig(window=20)).set_carry("X", carry)


def test_changing_a_later_bar_never_changes_earlier_rows() -> None:
    frame = random_frame(200)
    base = compute_metrics(to_table(frame))
    for t in (0, 15, 60, 150):
        changed = frame.copy()
        changed.loc[t + 1, ["close", "high", "volume"]] = [500.0, 600.0, 1e9]
        out = compute_metrics(to_table(changed))
        assert out.slice(0, t + 1).equals(base.slice(0, t + 1))
        assert not out.slice(t + 1, 1).equals(base.slice(t + 1, 1))


def test_config_from_dict_object_or_nested_thresholds() -> None:
    table = to_table(random_frame(300))
    as_object = compute_metrics(table, MetricsConfig(window=20, price_z_warning=3.0))
    as_dict = compute_metrics(table, {"window": 20, "price_z_warning": 3.0})
    nested = compute_metrics(table, {"window": 20, "thresholds": {"price_z_warning": 3.0}})
    assert as_object.equals(as_dict) and as_dict.equals(nested)
    assert not as_dict.equals(compute_metrics(table))
    with pytest.raises(TypeError):
        compute_metrics(table, {"windw": 20})
    with pytest.raises(ValueError, match="min_periods"):
        MetricsConfig(window=5, min_periods=6)
    with pytest.raises(ValueError, match="warning <= critical"):
        MetricsConfig(volume_z_warning=14.0)
    with pytest.raises(ValueError, match="time zone"):
        MetricsConfig(session="Mars/Olympus 09:30-16:00")


def test_config_round_trips_through_dict_and_pickle() -> None:
    hong_kong = "Asia/Hong_Kong 09:30-12:00,13:00-16:00"
    config = MetricsConfig(window=45, lam=0.9, max_gap_minutes=7.5, vol_ratio_critical=5.0, session=hong_kong)
    assert MetricsConfig(**config.to_dict()) == config
    assert pickle.loads(pickle.dumps(config)) == config
    assert config.session == hong_kong
    assert MetricsConfig().to_dict()["window"] == 30
    # The warm-up a job reads follows the windows: the scale floor's window ending a regime window (or, for the
    # oldest volume excess, a metrics window) back.
    assert MetricsConfig().warmup_bars == 480 + 30 + 1
    assert MetricsConfig(scale_floor_window=100, regime_window=10).warmup_bars == 100 + 30 + 1  # window 30 > 10
    assert MetricsConfig(scale_floor_window=100, regime_window=40).warmup_bars == 100 + 40 + 1


def test_carry_from_a_different_window_is_rejected() -> None:
    frame = random_frame(60)
    _, carry = compute_metrics_with_carry(to_table(frame.iloc[:30]))
    with pytest.raises(ValueError, match="carry state"):
        compute_metrics_with_carry(to_table(frame.iloc[30:]), {"window": 10}, carry)


def test_the_gil_is_released_while_computing() -> None:
    table = to_table(random_frame(1_000_000))
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    counter = threading.Thread(target=count)
    counter.start()
    try:
        start = ticks
        compute_metrics(table)
        during = ticks - start
    finally:
        done.set()
        counter.join()
    assert during > 1000
