"""The bars job's minute rows without Spark: random trades, split over random Kafka batches as the micro-batches
would split them, admitted and grouped per symbol-minute (`admit_minutes`), each minute's lists gathered as the
aggregation's state gathers them, then turned into bars (`bars_of_minutes`), against tests/bars_reference.py."""

from __future__ import annotations

import datetime as dt
import json
import random

import pyarrow as pa
import pytest

from spark_jobs import trade_minutes
from tests.bars_reference import bars as reference_bars

MINUTE = 60_000
T0 = 1_700_000_040_000
RECEIVED = T0 + 10 * MINUTE
KAFKA = pa.schema(
    [("topic", pa.string()), ("partition", pa.int32()), ("offset", pa.int64()),
     ("timestamp", pa.timestamp("us", "UTC")), ("value", pa.binary())]
)  # fmt: skip


def random_trades(rng: random.Random, n: int) -> list[dict]:
    trades = []
    for i in range(n):
        source = rng.choice(["finnhub", "binance", "replay"])
        trade = {"source": source, "symbol": rng.choice(["AAA", "BBB", "CCC"]),
                 "ts_ms": T0 + rng.randrange(0, 4 * MINUTE, 250), "price": round(rng.uniform(9, 11), 2),
                 "size": rng.choice([0.0, 1.0, round(rng.uniform(0, 5), 3)])}  # fmt: skip
        if rng.random() < 0.8:  # integer exchange ids, strings, or none at all (then every print counts)
            trade["trade_id"] = str(i) if rng.random() < 0.6 else f"x-{i}"
        if source == "finnhub":
            trade["conditions"] = rng.sample(["1", "3", "12", "16", "20", "99"], rng.randrange(0, 3))
        if source == "binance":
            trade["side"] = rng.choice(["buy", "sell"])
        if rng.random() < 0.1:
            trade["kind"] = "tick"
        trades.append(trade)
    duplicates = [dict(t) for t in rng.sample(trades, n // 10) if "trade_id" in t]
    arrivals = trades + duplicates
    rng.shuffle(arrivals)
    return arrivals


def packed(rng: random.Random, trades: list[dict]) -> list[dict | list[dict]]:
    """Runs of consecutive trades of one symbol as trade batches of 1 to 8 (contracts/messages.json trade.batch),
    as ingest sends them: the order on the topic, (offset, element), stays the arrival order."""
    messages: list[dict | list[dict]] = []
    run: list[dict] = []
    for trade in trades:
        if run and (trade["symbol"] != run[0]["symbol"] or len(run) == rng.randint(1, 8)):
            messages.append(run)
            run = []
        run.append(trade)
    return [*messages, run] if run else messages


def kafka_batches(rng: random.Random, messages: list[dict] | list[dict | list[dict]]) -> list[pa.RecordBatch]:
    at = dt.datetime.fromtimestamp(RECEIVED / 1000, dt.UTC)
    rows = [("unit", 0, offset, at, json.dumps(m).encode()) for offset, m in enumerate(messages)]
    cuts = sorted(rng.sample(range(1, len(rows)), 5))
    return [
        pa.RecordBatch.from_pylist([dict(zip(KAFKA.names, r, strict=True)) for r in rows[a:b]], schema=KAFKA)
        for a, b in zip([0, *cuts], [*cuts, len(rows)], strict=True)
    ]


def gathered(minute_rows: list[pa.RecordBatch]) -> pa.RecordBatch:
    """Every batch's pack of a (symbol, minute): what collect_list(struct(PACK_FIELDS)) holds."""
    packs: dict[tuple[str, int], list[dict]] = {}
    for batch in minute_rows:
        for row in batch.to_pylist():
            if row["trades"] is not None:
                key = (row["symbol"], row["ts_ms"] - row["ts_ms"] % MINUTE)
                packs.setdefault(key, []).append({name: row[name] for name in trade_minutes.PACK_FIELDS})
    keys = sorted(packs)
    return pa.RecordBatch.from_pydict(
        {"symbol": [k[0] for k in keys], "ts_ms": [k[1] for k in keys], "packs": [packs[k] for k in keys]},
        schema=pa.schema([("symbol", pa.string()), ("ts_ms", pa.int64()), ("packs", trade_minutes.PACKS)]),
    )


def packed_trades(minute_rows: list[pa.RecordBatch]) -> list[dict]:
    """The trades packed in the minute rows, unpacked: their PACKED_TRADE fields, source and id."""
    trades = []
    for batch in minute_rows:
        minutes = batch.filter(pa.compute.is_valid(batch.column("trades")))
        packs = pa.StructArray.from_arrays(
            [minutes.column(name) for name in trade_minutes.PACK_FIELDS], names=trade_minutes.PACK_FIELDS
        )
        records, pack_of, ids = trade_minutes.unpacked(packs)
        sources = minutes.column("source").to_pylist()
        for record, pack, trade_id in zip(records, pack_of, ids.to_pylist(), strict=True):
            fields = dict(zip(trade_minutes.PACKED_TRADE.names, record.tolist(), strict=True))
            trades.append({**fields, "source": sources[pack], "trade_id": trade_id})
    return trades


@pytest.mark.parametrize("trade_batches", [False, True], ids=["one-trade-per-message", "trade-batches"])
@pytest.mark.parametrize("seed", range(5))
def test_bars_from_minute_rows_equal_the_reference_whatever_the_batches(seed: int, trade_batches: bool) -> None:
    rng = random.Random(seed)
    messages = random_trades(rng, 400)
    values = packed(rng, messages) if trade_batches else messages
    rows = list(trade_minutes.admit_minutes(kafka_batches(rng, values)))
    assert all(r.schema == trade_minutes.MINUTE_ROW for r in rows)
    bars = pa.Table.from_batches(list(trade_minutes.bars_of_minutes([gathered(rows)]))).to_pylist()
    got = {(b["symbol"], b["ts_ms"]): b for b in bars}
    want = reference_bars(messages)
    assert got.keys() == want.keys()
    for key, expected in want.items():
        for field, value in expected.items():
            actual = got[key][field]
            assert actual == (pytest.approx(value, rel=1e-12) if isinstance(value, float) else value), (key, field)
        assert got[key]["origin"] == "trades"


def test_a_sliced_batch_of_packs_gives_the_bars_of_the_same_rows_copied() -> None:
    """Arrow batches can be slices (their lists' and packs' offsets do not start at 0): the packs are read at their
    offsets, not from the start of the buffers."""
    rng = random.Random(3)
    minutes = gathered(list(trade_minutes.admit_minutes(kafka_batches(rng, random_trades(rng, 400)))))
    sliced = minutes.slice(2)
    copied = pa.RecordBatch.from_pylist(sliced.to_pylist(), schema=sliced.schema)
    assert sliced.column("packs").offset == 2 and copied.column("packs").offset == 0
    assert trade_minutes.bars_of(sliced).to_pylist() == trade_minutes.bars_of(copied).to_pylist()
    assert trade_minutes.bars_of(copied).num_rows == sliced.num_rows > 0


def test_refusals_keep_their_coordinates_and_are_not_minutes() -> None:
    good = {"source": "replay", "symbol": "AAA", "ts_ms": T0, "price": 10.0, "size": 1.0, "trade_id": "1"}
    bad = [{**good, "price": -1.0}, {**good, "ts_ms": RECEIVED + 10 * MINUTE}]
    minute_rows = list(
        trade_minutes.admit_minutes(kafka_batches(random.Random(0), [good, *bad, good, good, good, good]))
    )
    rows = pa.Table.from_batches(minute_rows).to_pylist()
    refused = [r for r in rows if r["reject_code"] is not None]
    assert sorted((r["offset"], r["reject_code"]) for r in refused) == [(1, "price_not_positive"), (2, "ts_in_future")]
    assert all(r["trades"] is None and r["topic"] == "unit" and "AAA" in r["raw"] for r in refused)
    minutes = [r for r in rows if r["trades"] is not None]
    assert all(r["reject_code"] is None and r["symbol"] == "AAA" for r in minutes)
    trades = packed_trades(minute_rows)  # the duplicates are still there: dropped per minute
    assert [(t["offset"], t["trade_id"], t["price"], t["source"]) for t in trades] == [
        (offset, "1", 10.0, "replay") for offset in (0, 3, 4, 5, 6)
    ]


def test_a_refused_trade_of_a_batch_keeps_its_element_and_its_neighbours_count() -> None:
    good = {"source": "replay", "symbol": "AAA", "ts_ms": T0, "price": 10.0, "size": 1.0}
    batch = [{**good, "trade_id": "1"}, {**good, "trade_id": "2", "price": -1.0}, {**good, "trade_id": "3"}, 7]
    minute_rows = list(
        trade_minutes.admit_minutes(kafka_batches(random.Random(0), [good, batch, good, [good], good, good]))
    )
    rows = pa.Table.from_batches(minute_rows).to_pylist()
    refused = sorted((r["offset"], r["element"], r["reject_code"]) for r in rows if r["reject_code"] is not None)
    assert refused == [(1, 1, "price_not_positive"), (1, 3, "malformed_json")]
    trades = sorted((t["offset"], t["element"]) for t in packed_trades(minute_rows))
    assert trades == [(0, 0), (1, 0), (1, 2), (2, 0), (3, 0), (4, 0), (5, 0)]
    # Trades without an id have no identity: none is a duplicate of another.
    bars = pa.Table.from_batches(list(trade_minutes.bars_of_minutes([gathered(minute_rows)]))).to_pylist()
    assert [b["volume"] for b in bars] == [7.0]


def test_a_minute_of_prints_that_set_nothing_has_no_bar() -> None:
    official = {"source": "finnhub", "symbol": "AAA", "ts_ms": T0, "price": 10.0, "size": 5.0, "conditions": ["16"]}
    rows = list(trade_minutes.admit_minutes(kafka_batches(random.Random(1), [official] * 8)))
    assert pa.Table.from_batches(list(trade_minutes.bars_of_minutes([gathered(rows)]))).num_rows == 0


def test_integer_trade_ids_are_read_up_to_int64s_maximum_and_others_are_absent() -> None:
    ids = pa.array(["12", " 7 ", "-3", "x-1", None, "9223372036854775807", "9223372036854775808", "~1:2:3:0"])
    absent = trade_minutes.NO_ID
    assert trade_minutes.integer_ids(ids).tolist() == [12, 7, -3, absent, absent, 9223372036854775807, absent, absent]
