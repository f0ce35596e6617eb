"""The bars job's logic on a local SparkSession: trades as the topic carries them -> bars and rejects, against an
independent reading of the contract (the print rules of contracts/trade_conditions.json, trade kinds, sides,
ids). The same code runs on the cluster in tests/stack and tests/e2e."""

from __future__ import annotations

import json

import pytest

from spark_jobs.bars_job import bar_and_reject_records
from spark_jobs.contracts import admit_trade_minutes
from tests.bars_reference import bar as reference
from tests.jobs.kafka import kafka_rows

MINUTE = 60_000
T0 = 1_700_000_040_000  # a whole minute
RECEIVED = T0 + 5 * MINUTE


def trade(symbol: str, ts_ms: int, price: float, size: float, trade_id: str | None = None, **extra) -> dict:
    source = extra.pop("source", "finnhub")
    return {"source": source, "symbol": symbol, "ts_ms": ts_ms, "price": price, "size": size,
            "trade_id": trade_id, **extra}  # fmt: skip


def run(spark, messages: list[dict | bytes]) -> tuple[dict[tuple[str, int], dict], list[dict]]:
    """Bars by (symbol, minute) and rejects, as the job's foreachBatch sink receives them."""
    records = bar_and_reject_records(
        admit_trade_minutes(kafka_rows(spark, messages, RECEIVED)), "1 minute", 2
    ).collect()
    bars = [json.loads(r["value"]) for r in records if r["kind"] == "bar"]
    rejects = [r.asDict() for r in records if r["kind"] == "reject"]
    return {(b["symbol"], b["ts_ms"]): b for b in bars}, rejects


def assert_bar(got: dict, trades: list[dict]) -> None:
    want = reference(trades)
    assert want is not None
    for field, value in want.items():
        if field == "source":
            continue
        if isinstance(value, float):
            assert got.get(field) == pytest.approx(value, rel=1e-12), field
        else:
            assert got.get(field) == value, field
    assert got["origin"] == "trades"


def test_equity_prints_follow_the_condition_rule(local_spark):
    regular = [
        trade("AAPL", T0 + 1_000, 189.40, 100, "~a", conditions=["1"]),
        trade("AAPL", T0 + 2_000, 189.90, 7, "~b", conditions=["1", "12"]),  # odd lot: above the high, no price
        trade("AAPL", T0 + 3_000, 150.00, 500, "~c", conditions=["20"]),  # official open: nothing
        trade("AAPL", T0 + 4_000, 189.50, 200, "~d", conditions=["1", "8"]),  # intermarket sweep: regular
        trade("AAPL", T0 + 5_000, 189.45, 300, "~e"),  # no conditions: regular
    ]
    odd_lots_only = [
        trade("AAPL", T0 + MINUTE + 1_000, 189.60, 5, "~f", conditions=["1", "12"]),
        trade("AAPL", T0 + MINUTE + 9_000, 189.70, 3, "~g", conditions=["1", "12"]),
    ]
    official_only = [trade("AAPL", T0 + 2 * MINUTE + 1_000, 189.0, 1000, "~h", conditions=["16"])]
    extended = [
        trade("AAPL", T0 + 3 * MINUTE + 1_000, 190.10, 100, "~i", conditions=["1", "24"]),  # Form T
        trade("AAPL", T0 + 3 * MINUTE + 2_000, 190.30, 40, "~j", conditions=["1", "12", "24"]),
    ]
    bars, rejects = run(local_spark, regular + odd_lots_only + official_only + extended)
    assert not rejects
    assert_bar(bars[("AAPL", T0)], regular)
    assert bars[("AAPL", T0)]["high"] == 189.50, "the odd lot at 189.90 must not set the high"
    assert bars[("AAPL", T0)]["volume"] == 607, "the official open's 500 do not count"
    assert_bar(bars[("AAPL", T0 + MINUTE)], odd_lots_only)
    assert ("AAPL", T0 + 2 * MINUTE) not in bars, "a minute of prints that set nothing has no bar"
    assert_bar(bars[("AAPL", T0 + 3 * MINUTE)], extended)
    assert bars[("AAPL", T0 + 3 * MINUTE)]["close"] == 190.10


def test_ticks_set_price_and_volume_but_are_not_trades(local_spark):
    ticks = [
        trade("EUR/USD", T0 + i * 5_000, 1.0941 + i / 10_000, size, None, source="twelvedata", kind="tick")
        for i, size in enumerate([0, 250, 0, 125])
    ]
    # Ticks carry ingest's derived ids; without ids they would still all count (no identity, never duplicates).
    bars, _ = run(local_spark, ticks)
    bar = bars[("EUR/USD", T0)]
    assert_bar(bar, ticks)
    assert bar.get("trades") is None and bar["volume"] == 375, "a bar of ticks has no known number of executions"


def test_sides_and_trade_ids_of_exchange_trades(local_spark):
    trades = [
        trade("BTCUSDT", T0 + 100, 37000.0, 0.5, "101", source="binance", side="buy"),
        trade("BTCUSDT", T0 + 200, 37001.0, 0.25, "102", source="binance", side="sell"),
        trade("BTCUSDT", T0 + 300, 37002.0, 1.0, "103", source="binance", side="buy"),
    ]
    bars, _ = run(local_spark, trades)
    bar = bars[("BTCUSDT", T0)]
    assert_bar(bar, trades)
    assert (bar["taker_buy_volume"], bar["first_trade_id"], bar["last_trade_id"]) == (1.5, 101, 103)


def test_duplicates_by_id_go_and_trades_without_ids_all_count(local_spark):
    with_ids = [
        trade("X", T0 + 1_000, 10.0, 1, "7", source="replay"),
        trade("X", T0 + 1_000, 10.0, 1, "7", source="replay"),
    ]
    without = [trade("Y", T0 + 1_000, 10.0, 1, None, source="replay") for _ in range(3)]
    bars, _ = run(local_spark, with_ids + without)
    assert bars[("X", T0)]["trades"] == 1 and bars[("X", T0)]["volume"] == 1
    # No id, no identity: three identical prints are three trades (ingest derives ids to tell re-sends apart).
    assert bars[("Y", T0)]["trades"] == 3 and bars[("Y", T0)]["volume"] == 3
    assert "first_trade_id" not in bars[("Y", T0)], "no integer ids: no id range"


def test_rejects_leave_with_their_code_and_do_not_stop_the_bars(local_spark):
    good = [trade("Z", T0 + 1_000, 5.0, 1, "1", source="replay")]
    bad = [b"\x00\x01", {**good[0], "symbol": "Z\u0000"}, {**good[0], "ts_ms": RECEIVED + 4 * MINUTE}]
    bars, rejects = run(local_spark, good + bad)
    assert_bar(bars[("Z", T0)], good)
    assert sorted(r["reject_code"] for r in rejects) == ["invalid_symbol", "malformed_json", "ts_in_future"]
    assert all(r["offset"] >= 1 and r["topic"] == "unit" and r["reject_reason"] for r in rejects)
    assert next(r for r in rejects if r["reject_code"] == "malformed_json")["raw"] == "\\u0000\u0001"


def test_same_millisecond_trades_go_by_exchange_trade_id_not_arrival(local_spark):
    """A repaired gap's trades reach the topic after the live ones that followed them (spark_jobs/gap_repair.py);
    within one millisecond the exchange's trade ids, not the arrival order, say which came first."""
    live = [
        trade("B", T0 + 1_000, 10.0, 1, "101", source="binance"),
        trade("B", T0 + 2_000, 12.0, 1, "103", source="binance"),
    ]
    repaired = [
        trade("B", T0 + 1_000, 9.0, 1, "100", source="binance"),
        trade("B", T0 + 2_000, 11.0, 1, "102", source="binance"),
    ]
    bars, _ = run(local_spark, live + repaired)
    got = bars[("B", T0)]
    assert (got["open"], got["close"]) == (9.0, 12.0)
    assert_bar(got, live + repaired)
