"""The bars job's trades, a symbol-minute at a time: what crosses the shuffle and waits in state is one row per
(source, symbol, minute) of a Kafka batch, holding that minute's trades as a list, instead of one row per trade.

Why: Spark's cost on this 2-core machine is per row, not per byte (docs/benchmarks.md, issue 16). The same
3.9M-trade backlog, in one batch on the standalone cluster: one row per trade through the shuffle, the
deduplication and the aggregation took 34-52 s; the trades as lists per symbol-minute, 17-20 s.

Both steps are plain functions over Arrow batches (no pyspark here), run in `mapInArrow`:
  * `admit_minutes`: admission through the contract crate (the same rules ingest applies), then the admitted
    trades of a batch grouped per (source, symbol, minute); a refused message stays a row of its own, with its
    Kafka coordinates, code, reason and raw text.
  * `bars_of_minutes`: a closed minute's trades, gathered from every batch that held some, -> its bar, by the
    print rules of contracts/trade_conditions.json. Duplicates (same source and trade id; a trade without an id
    is identified by its Kafka coordinates, so never taken for a duplicate) count once: a re-sent trade has the
    event time of the original, so both are in the same minute's list. Open and close go by (price rank, event
    time, integer trade id, Kafka partition, offset, element): an exchange's ids order its same-millisecond
    trades even when some reached the topic later (a repaired gap); one symbol lives in one partition, so the
    offset, then the position in a trade batch (contracts/messages.json `trade.batch`), orders the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sparktrends import contract
from sparktrends.admission import admit

MINUTE_MS = 60_000
TRADE_KIND = "trade"  # contract trade_kinds: executions count in a bar's `trades`; ticks do not
BUY = "buy"  # contract sides: the taker bought
ORIGIN = "trades"  # contract bar_origins: these bars are built from trades
assert TRADE_KIND in contract.names("trade_kinds") and BUY in contract.names("sides")
assert ORIGIN in contract.names("bar_origins")

# One trade inside a minute's list: what the bar rules and the deduplication read.
TRADE = pa.struct(
    [
        ("source", pa.string()),
        ("dedup_id", pa.string()),
        ("trade_id", pa.string()),
        ("ts_ms", pa.int64()),
        ("price", pa.float64()),
        ("size", pa.float64()),
        ("kind", pa.string()),
        ("side", pa.string()),
        ("updates_price", pa.bool_()),
        ("updates_volume", pa.bool_()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("element", pa.int32()),
    ]
)
TRADES = pa.list_(TRADE)
# Rows of `admit_minutes`: a minute (`trades` set; `ts_ms` its latest event time, which the watermark follows)
# or a refusal (`reject_code` set; the rest as rejected_messages stores it).
MINUTE_ROW = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("element", pa.int32()),
        ("source", pa.string()),
        ("symbol", pa.string()),
        ("ts_ms", pa.int64()),
        ("trades", TRADES),
        ("reject_code", pa.string()),
        ("reject_reason", pa.string()),
        ("raw", pa.string()),
    ]
)
# The bar message's fields as the contract types them (contracts/messages.json).
_ARROW_TYPES = {"text": pa.string(), "symbol": pa.string(), "int64": pa.int64(), "float64": pa.float64()}
BAR = pa.schema([(f.name, _ARROW_TYPES[f.type]) for f in contract.messages()["bar"].fields])


# Where a refusal is on the topic: a Kafka message, and in a trade batch, the trade's position.
COORDINATES = ["topic", "partition", "offset", "element"]


def admit_minutes(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """`mapInArrow` function: Kafka rows (topic, partition, offset, timestamp, value) -> MINUTE_ROW rows."""
    for batch in batches:
        admitted = admit("trade", batch)
        refused = pc.is_valid(admitted.column("reject_code"))
        if pc.any(refused).as_py():
            yield _rejects(admitted.filter(refused))
        valid = admitted.filter(pc.invert(refused))
        if valid.num_rows:
            yield _minutes(valid)


def _nulls(n: int, names: Iterable[str]) -> dict[str, pa.Array]:
    return {name: pa.nulls(n, MINUTE_ROW.field(name).type) for name in names}


def _rejects(refused: pa.RecordBatch) -> pa.RecordBatch:
    n = refused.num_rows
    columns = {
        **{name: refused.column(name).cast(MINUTE_ROW.field(name).type) for name in COORDINATES},
        **_nulls(n, ["source", "symbol", "ts_ms", "trades"]),
        **{name: refused.column(name) for name in ["reject_code", "reject_reason", "raw"]},
    }
    return pa.RecordBatch.from_pydict(columns, schema=MINUTE_ROW)


def _codes(column: pa.Array) -> np.ndarray:
    return pc.dictionary_encode(column).indices.to_numpy(zero_copy_only=False)


def _minutes(valid: pa.RecordBatch) -> pa.RecordBatch:
    ts = valid.column("ts_ms").to_numpy(zero_copy_only=False)
    minute = ts - ts % MINUTE_MS
    source, symbol = _codes(valid.column("source")), _codes(valid.column("symbol"))
    order = np.lexsort((ts, minute, symbol, source))
    minute, symbol, source = minute[order], symbol[order], source[order]
    starts = np.flatnonzero(
        np.r_[True, (minute[1:] != minute[:-1]) | (symbol[1:] != symbol[:-1]) | (source[1:] != source[:-1])]
    )
    taken = valid.take(pa.array(order))
    partition = taken.column("partition").cast(pa.int32())
    offset = taken.column("offset").cast(pa.int64())
    element = taken.column("element")
    # A trade without an id has no identity: its Kafka coordinates stand in, so it is never a duplicate.
    coordinates = pc.binary_join_element_wise("@", *(c.cast(pa.string()) for c in (partition, offset, element)), ":")
    dedup_id = pc.coalesce(taken.column("trade_id"), coordinates)
    fields = {f.name: taken.column(f.name) for f in TRADE if f.name not in ("dedup_id", "partition", "offset")}
    fields |= {"dedup_id": dedup_id, "partition": partition, "offset": offset}
    trades = pa.StructArray.from_arrays([fields[f.name] for f in TRADE], fields=list(TRADE))
    offsets = pa.array(np.r_[starts, len(order)].astype(np.int32))
    first = pa.array(starts)
    sorted_ts = ts[order]
    columns = {
        **_nulls(len(starts), [*COORDINATES, "reject_code", "reject_reason", "raw"]),
        "source": taken.column("source").take(first),
        "symbol": taken.column("symbol").take(first),
        "ts_ms": pa.array(np.maximum.reduceat(sorted_ts, starts)),
        "trades": pa.ListArray.from_arrays(offsets, trades, type=TRADES),
    }
    return pa.RecordBatch.from_pydict(columns, schema=MINUTE_ROW)


NO_ID = np.iinfo(np.int64).min


def integer_ids(ids: pa.Array) -> np.ndarray:
    """Trade ids that are integers (an exchange's sequence numbers), as int64; others (derived ids, UUIDs) as
    the smallest int64, which sorts them first among same-millisecond trades and marks them absent."""
    text = pc.utf8_trim_whitespace(ids.cast(pa.string()))
    # Up to 18 digits always fit; 19 when at most int64's maximum (same-length digit strings compare as numbers).
    short = pc.match_substring_regex(text, r"^-?[0-9]{1,18}$")
    long = pc.and_(pc.match_substring_regex(text, r"^[0-9]{19}$"), pc.less_equal(text, str(np.iinfo(np.int64).max)))
    numeric = pc.fill_null(pc.or_(short, long), False)
    parsed = pc.if_else(numeric, text, pa.scalar(None, pa.string())).cast(pa.int64())
    return pc.fill_null(parsed, NO_ID).to_numpy(zero_copy_only=False)


def _edges(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the first and of the last element of each run of equal values in `groups` (sorted)."""
    if len(groups) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    change = groups[1:] != groups[:-1]
    return np.flatnonzero(np.r_[True, change]), np.flatnonzero(np.r_[change, True])


def bars_of_minutes(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """`mapInArrow` function: rows of (symbol, ts_ms: the minute's start, trades: every batch's list of that
    minute, concatenated) -> BAR rows; a minute of prints that set no price has no bar."""
    for batch in batches:
        if batch.num_rows:
            yield bars_of(batch)


def bars_of(batch: pa.RecordBatch) -> pa.RecordBatch:
    lists = batch.column("trades")
    flat = pc.list_flatten(lists)
    lengths = pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False)
    minute = np.repeat(np.arange(len(lengths)), lengths)
    col = {name: flat.field(name) for name in TRADE.names}

    # Duplicates: one per (minute, source, dedup_id), the first on the topic.
    source_code = _codes(col["source"])
    dedup_code = _codes(col["dedup_id"])
    partition = col["partition"].to_numpy(zero_copy_only=False)
    offset = col["offset"].to_numpy(zero_copy_only=False)
    element = col["element"].to_numpy(zero_copy_only=False)
    order = np.lexsort((element, offset, partition, dedup_code, source_code, minute))
    key = [k[order] for k in (minute, source_code, dedup_code)]
    same = np.logical_and.reduce([k[1:] == k[:-1] for k in key]) if len(order) else np.zeros(0, dtype=bool)
    keep = np.sort(order[np.r_[True, ~same]]) if len(order) else order
    kept = pa.array(keep)

    def values(name: str, fill: object | None = None) -> np.ndarray:
        array = col[name].take(kept)
        return (pc.fill_null(array, fill) if fill is not None else array).to_numpy(zero_copy_only=False)

    minute, partition, offset, element = minute[keep], partition[keep], offset[keep], element[keep]
    ts, price, size = values("ts_ms"), values("price"), values("size")
    updates_price, counted = values("updates_price", False), values("updates_volume", False)
    is_trade = values("kind", TRADE_KIND) == TRADE_KIND
    side = values("side", "")
    numeric_id = integer_ids(col["trade_id"].take(kept))
    sources = col["source"].take(kept)

    # Price rank: 0 may set the price, 1 only counts in volume, 2 sets nothing (an official open or close print).
    rank = np.where(updates_price, 0, np.where(counted, 1, 2))
    n = len(lengths)
    # The best rank present in each minute: its prints alone set open, high, low and close.
    best = np.full(n, 2)
    np.minimum.at(best, minute, rank)
    pricing = rank == best[minute]
    pricing &= rank < 2

    chrono = np.lexsort((element, offset, partition, numeric_id, ts, minute))
    setters = chrono[pricing[chrono]]
    first_of, last_of = _edges(minute[setters])
    open_, close = np.full(n, np.nan), np.full(n, np.nan)
    open_[minute[setters[first_of]]] = price[setters[first_of]]
    close[minute[setters[last_of]]] = price[setters[last_of]]
    high, low = np.full(n, -np.inf), np.full(n, np.inf)
    np.maximum.at(high, minute[setters], price[setters])
    np.minimum.at(low, minute[setters], price[setters])

    volume = np.bincount(minute, weights=np.where(counted, size, 0.0), minlength=n)
    notional = np.bincount(minute, weights=np.where(counted, price * size, 0.0), minlength=n)
    executions = np.bincount(minute, weights=counted & is_trade, minlength=n).astype(np.int64)
    sided = np.bincount(minute, weights=counted & (side != ""), minlength=n)
    taker_buy = np.bincount(minute, weights=np.where(counted & (side == BUY), size, 0.0), minlength=n)
    has_id = numeric_id != NO_ID
    first_id, last_id = np.full(n, np.iinfo(np.int64).max), np.full(n, NO_ID)
    np.minimum.at(first_id, minute[has_id], numeric_id[has_id])
    np.maximum.at(last_id, minute[has_id], numeric_id[has_id])
    any_id = np.bincount(minute[has_id], minlength=n) > 0
    # The bar's source: its earliest trade's.
    earliest = np.zeros(n, dtype=np.int64)
    firsts = chrono[_edges(minute[chrono])[0]]
    earliest[minute[firsts]] = firsts

    has_bar = ~np.isnan(open_)
    rows = np.flatnonzero(has_bar)
    pick = pa.array(rows)

    def masked(values: np.ndarray, valid: np.ndarray, kind: pa.DataType) -> pa.Array:
        return pa.array(values[rows], type=kind, mask=~valid[rows])

    positive = volume > 0
    columns = {
        "source": sources.take(pa.array(earliest[rows])),
        "symbol": batch.column("symbol").take(pick),
        "ts_ms": batch.column("ts_ms").take(pick).cast(pa.int64()),
        "open": pa.array(open_[rows]),
        "high": pa.array(high[rows]),
        "low": pa.array(low[rows]),
        "close": pa.array(close[rows]),
        "volume": pa.array(volume[rows]),
        # A bar of ticks only has no known number of executions: null, not 0 (0 trades with volume is a lie).
        "trades": masked(executions, executions > 0, pa.int64()),
        # A bar of zero-size ticks has no volume-weighted price: null, never a division by zero.
        "vwap": masked(np.divide(notional, volume, out=np.zeros(n), where=positive), positive, pa.float64()),
        "taker_buy_volume": masked(taker_buy, sided > 0, pa.float64()),
        "first_trade_id": masked(first_id, any_id, pa.int64()),
        "last_trade_id": masked(last_id, any_id, pa.int64()),
        "origin": pa.array([ORIGIN] * len(rows), pa.string()),
    }
    return pa.RecordBatch.from_pydict(columns, schema=BAR)
