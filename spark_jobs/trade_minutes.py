"""The bars job's trades, a symbol-minute at a time: what crosses the shuffle and waits in state is one row per
(source, symbol, minute) of a Kafka batch, holding that minute's trades as a pack (two binary values: fixed-width
records and their ids), instead of one row per trade or a list of structs.

Why: Spark's cost on this 2-core machine is per row and per field, not per byte (docs/benchmarks.md, issue 16).
The same 3.9M-trade backlog, in one batch on the standalone cluster: one row per trade through the shuffle, the
deduplication and the aggregation took 34-52 s; the trades as lists per symbol-minute, 17-20 s. A list of structs
still costs the JVM a conversion, a shuffle copy and a state-store copy of every field of every trade; a pack is two
byte arrays to it, which only this module reads.

Both steps are plain functions over Arrow batches (no pyspark here), run in `mapInArrow`:
  * `admit_minutes`: admission through the contract crate (the same rules ingest applies), then the admitted
    trades of a batch grouped per (source, symbol, minute) and packed; a refused message stays a row of its own,
    with its Kafka coordinates, code, reason and raw text.
  * `bars_of_minutes`: a closed minute's packs, gathered from every batch that held some, -> its bar, by the
    print rules of contracts/trade_conditions.json. Duplicates (same source and trade id; a trade without an id
    has no identity, so it is never taken for a duplicate) count once: a re-sent trade has the event time of the
    original, so both are in the same minute. Open and close go by (price rank, event time, integer trade id,
    Kafka partition, offset, element): an exchange's ids order its same-millisecond trades even when some reached
    the topic later (a repaired gap); one symbol lives in one partition, so the offset, then the position in a
    trade batch (contracts/messages.json `trade.batch`), orders the rest.
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

# One trade inside a minute's pack: what the bar rules and the deduplication read, as a fixed-width record (numpy,
# unaligned, little-endian). The trade's id, whose length the record holds (NO_ID_LENGTH: none), is in the pack's
# `ids`, the ids of its trades concatenated in the same order. The source, symbol and minute are the row's.
PACKED_TRADE = np.dtype(
    [
        ("ts_ms", "<i8"),
        ("price", "<f8"),
        ("size", "<f8"),
        ("offset", "<i8"),
        ("partition", "<i4"),
        ("element", "<i4"),
        ("id_length", "<i4"),
        ("flags", "u1"),
    ]
)
NO_ID_LENGTH = -1
# `flags` bits: the print rules' verdicts (contracts/trade_conditions.json), the kind and the side.
UPDATES_PRICE, UPDATES_VOLUME, EXECUTION, SIDED, BOUGHT = (1 << bit for bit in range(5))
# Rows of `admit_minutes`: a minute (`trades` set: the PACKED_TRADE records of its trades, `ids` their ids; `ts_ms`
# its latest event time, which the watermark follows) or a refusal (`reject_code` set; the rest as
# rejected_messages stores it).
MINUTE_ROW = pa.schema(
    [
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("element", pa.int32()),
        ("source", pa.string()),
        ("symbol", pa.string()),
        ("ts_ms", pa.int64()),
        ("trades", pa.binary()),
        ("ids", pa.binary()),
        ("reject_code", pa.string()),
        ("reject_reason", pa.string()),
        ("raw", pa.string()),
    ]
)
# A minute's packs, one per (source, batch) that held some of its trades: what the aggregation's state gathers.
PACK_FIELDS = ["source", "trades", "ids"]
PACKS = pa.list_(pa.struct([MINUTE_ROW.field(name) for name in PACK_FIELDS]))
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
        **_nulls(n, ["source", "symbol", "ts_ms", "trades", "ids"]),
        **{name: refused.column(name) for name in ["reject_code", "reject_reason", "raw"]},
    }
    return pa.RecordBatch.from_pydict(columns, schema=MINUTE_ROW)


def _codes(column: pa.Array) -> np.ndarray:
    return pc.dictionary_encode(column).indices.to_numpy(zero_copy_only=False)


def _minutes(valid: pa.RecordBatch) -> pa.RecordBatch:
    ts = valid.column("ts_ms").to_numpy(zero_copy_only=False)
    minute = ts // MINUTE_MS - ts.min() // MINUTE_MS  # minutes since the batch's first
    source, symbol = _codes(valid.column("source")), _codes(valid.column("symbol"))
    # One integer per (source, symbol, minute); a stable sort keeps each group's trades in their order on the topic.
    group = (source.astype(np.int64) * (int(symbol.max()) + 1) + symbol) * (int(minute.max()) + 1) + minute
    order = np.argsort(group, kind="stable")
    starts = _edges(group[order])[0]
    bounds = np.r_[starts, len(order)]
    first = pa.array(order[starts])
    ids = pc.fill_null(valid.column("trade_id").take(pa.array(order)), "")
    columns = {
        **_nulls(len(starts), [*COORDINATES, "reject_code", "reject_reason", "raw"]),
        "source": valid.column("source").take(first),
        "symbol": valid.column("symbol").take(first),
        "ts_ms": pa.array(np.maximum.reduceat(ts[order], starts)),
        "trades": _binary(bounds * PACKED_TRADE.itemsize, _packed(valid)[order].tobytes()),
        "ids": pc.binary_join(pa.ListArray.from_arrays(pa.array(bounds.astype(np.int32)), ids), "").cast(pa.binary()),
    }
    return pa.RecordBatch.from_pydict(columns, schema=MINUTE_ROW)


def _packed(trades: pa.RecordBatch) -> np.ndarray:
    """Admitted trades -> their PACKED_TRADE records."""

    def flag(condition: pa.Array, bit: int) -> np.ndarray:
        return np.where(pc.fill_null(condition, False).to_numpy(zero_copy_only=False), bit, 0)

    records = np.empty(trades.num_rows, PACKED_TRADE)
    for name in ["ts_ms", "price", "size", "offset", "partition", "element"]:
        records[name] = trades.column(name).to_numpy(zero_copy_only=False)
    records["id_length"] = pc.fill_null(pc.binary_length(trades.column("trade_id")), NO_ID_LENGTH).to_numpy()
    kind, side = trades.column("kind"), trades.column("side")
    records["flags"] = (
        flag(trades.column("updates_price"), UPDATES_PRICE)
        | flag(trades.column("updates_volume"), UPDATES_VOLUME)
        | flag(pc.or_kleene(pc.is_null(kind), pc.equal(kind, TRADE_KIND)), EXECUTION)
        | flag(pc.is_valid(side), SIDED)
        | flag(pc.equal(side, BUY), BOUGHT)
    )
    return records


def _binary(bounds: np.ndarray, data: bytes) -> pa.Array:
    """A binary array whose values are the slices of `data` between consecutive `bounds` (byte positions)."""
    return pa.Array.from_buffers(
        pa.binary(), len(bounds) - 1, [None, pa.py_buffer(bounds.astype(np.int32)), pa.py_buffer(data)]
    )


def _value_bytes(values: pa.Array) -> tuple[np.ndarray, pa.Buffer]:
    """A binary array's value boundaries (byte positions in the returned buffer) and its data buffer."""
    wide = pa.types.is_large_binary(values.type)
    offsets = np.frombuffer(values.buffers()[1], np.int64 if wide else np.int32)
    return offsets[values.offset : values.offset + len(values) + 1].astype(np.int64), values.buffers()[2]


def pack_field(packs: pa.StructArray, name: str) -> pa.Array:
    """A field of packs (PACKS' values) as an array of its own. Unlike `StructArray.field`, `flatten` applies the
    struct's own offset, which a flattened list of packs can have."""
    return packs.flatten()[packs.type.get_field_index(name)]


def unpacked(packs: pa.StructArray) -> tuple[np.ndarray, np.ndarray, pa.Array]:
    """Packs (PACKS' values) -> their trades' PACKED_TRADE records, the pack each trade came in, and their ids
    (null: no id), in pack order."""
    bounds, data = _value_bytes(pack_field(packs, "trades"))
    counts = np.diff(bounds) // PACKED_TRADE.itemsize
    records = np.frombuffer(data, PACKED_TRADE, count=int(counts.sum()), offset=int(bounds[0]))
    pack_of = np.repeat(np.arange(len(packs)), counts)
    id_bounds, id_data = _value_bytes(pack_field(packs, "ids"))
    lengths = records["id_length"]
    # The ids as a string array of their own: offsets from 0 into the packs' id bytes, and a validity bitmap (a
    # boolean array's values are one) marking the trades that have one.
    id_offsets = pa.py_buffer(np.r_[0, np.cumsum(np.maximum(lengths, 0))].astype(np.int32))
    ids_bytes = id_data.slice(int(id_bounds[0]), int(id_bounds[-1] - id_bounds[0]))
    present = pa.array(lengths != NO_ID_LENGTH).buffers()[1]
    return records, pack_of, pa.Array.from_buffers(pa.string(), len(records), [present, id_offsets, ids_bytes])


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
    """`mapInArrow` function: rows of (symbol, ts_ms: the minute's start, packs: PACKS, every batch's pack of that
    minute) -> BAR rows; a minute of prints that set no price has no bar."""
    for batch in batches:
        if batch.num_rows:
            yield bars_of(batch)


def bars_of(batch: pa.RecordBatch) -> pa.RecordBatch:
    packs = batch.column("packs")
    flat = pc.list_flatten(packs)
    records, pack_of, ids = unpacked(flat)
    pack_minute = np.repeat(np.arange(len(packs)), pc.fill_null(pc.list_value_length(packs), 0).to_numpy())
    minute = pack_minute[pack_of]
    pack_sources = pack_field(flat, "source")
    source_code = _codes(pack_sources)[pack_of]

    # Duplicates: one per (minute, source, trade id), the first on the topic. A trade without an id has no
    # identity, so it is never a duplicate: its code is its own.
    id_code = _codes(pc.fill_null(ids, ""))
    absent = records["id_length"] == NO_ID_LENGTH
    id_code = np.where(absent, id_code.max(initial=-1) + np.cumsum(absent), id_code)
    partition, offset, element = records["partition"], records["offset"], records["element"]
    order = np.lexsort((element, offset, partition, id_code, source_code, minute))
    key = [k[order] for k in (minute, source_code, id_code)]
    same = np.logical_and.reduce([k[1:] == k[:-1] for k in key]) if len(order) else np.zeros(0, dtype=bool)
    keep = np.sort(order[np.r_[True, ~same]]) if len(order) else order

    kept = records[keep]
    minute, partition, offset, element = minute[keep], kept["partition"], kept["offset"], kept["element"]
    ts, price, size, flags = kept["ts_ms"], kept["price"], kept["size"], kept["flags"]
    updates_price, counted = (flags & UPDATES_PRICE) != 0, (flags & UPDATES_VOLUME) != 0
    is_trade, sided, bought = (flags & EXECUTION) != 0, (flags & SIDED) != 0, (flags & BOUGHT) != 0
    numeric_id = integer_ids(ids.take(pa.array(keep)))
    sources = pack_sources.take(pa.array(pack_of[keep]))

    # Price rank: 0 may set the price, 1 only counts in volume, 2 sets nothing (an official open or close print).
    rank = np.where(updates_price, 0, np.where(counted, 1, 2))
    n = len(packs)
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
    sided_trades = np.bincount(minute, weights=counted & sided, minlength=n)
    taker_buy = np.bincount(minute, weights=np.where(counted & bought, size, 0.0), minlength=n)
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
        "taker_buy_volume": masked(taker_buy, sided_trades > 0, pa.float64()),
        "first_trade_id": masked(first_id, any_id, pa.int64()),
        "last_trade_id": masked(last_id, any_id, pa.int64()),
        "origin": pa.array([ORIGIN] * len(rows), pa.string()),
    }
    return pa.RecordBatch.from_pydict(columns, schema=BAR)
