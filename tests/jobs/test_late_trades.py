"""Late trades per symbol (spark_jobs/late_trades.py), the parts that need no broker: which batches are
audited against which watermark, the checkpoint fallback after a restart, the counting rule on a local
SparkSession, and the log line."""

from __future__ import annotations

import json
from types import SimpleNamespace

from pyspark.sql import Row

from spark_jobs import late_trades

MINUTE = 60_000


def progress(batch_id: int, dropped: list[int], watermark: str | None = None, sources: int = 1) -> SimpleNamespace:
    return SimpleNamespace(
        id="7d0c3c7e-0000-4000-8000-000000000001",
        name="bars",
        batchId=batch_id,
        eventTime={"watermark": watermark} if watermark else {},
        stateOperators=[SimpleNamespace(numRowsDroppedByWatermark=n) for n in dropped],
        sources=[SimpleNamespace(startOffset='{"t":{"0":5}}', endOffset='{"t":{"0":9}}')] * sources,
    )


def test_only_a_batch_that_dropped_rows_is_audited_against_the_given_watermark():
    assert late_trades.late_batch(progress(3, [0, 0]), 1_000) is None
    assert late_trades.late_batch(progress(3, [2, 1]), None) is None  # no watermark known: nothing to hold against
    batch = late_trades.late_batch(progress(3, [2, 1]), 1_000)
    assert batch == late_trades.LateBatch(
        query_id="7d0c3c7e-0000-4000-8000-000000000001",
        batch_id=3,
        watermark_ms=1_000,
        start_offsets='{"t":{"0":5}}',
        end_offsets='{"t":{"0":9}}',
        dropped=3,
    )


def test_the_listener_holds_a_batch_against_the_previous_batchs_watermark(tmp_path, monkeypatch):
    monkeypatch.setattr(late_trades.threading, "Thread", lambda **_: SimpleNamespace(start=lambda: None))
    listener = late_trades.LateTradeListener(None, "bars", "bars", "trades", str(tmp_path))
    (tmp_path / "offsets").mkdir()
    # First batch seen after a restart: the previous batch's watermark comes from the checkpoint's offset log.
    (tmp_path / "offsets" / "41").write_text("v1\n" + json.dumps({"batchWatermarkMs": 60_000}) + "\n{}\n")
    listener.onQueryProgress(SimpleNamespace(progress=progress(42, [1], "1970-01-01T00:02:00.000Z")))
    listener.onQueryProgress(SimpleNamespace(progress=progress(43, [2], "1970-01-01T00:03:00.000Z")))
    listener.onQueryProgress(SimpleNamespace(progress=SimpleNamespace(**{**vars(progress(44, [1])), "name": "x"})))
    audited = [listener.pending.get_nowait() for _ in range(listener.pending.qsize())]
    assert [(b.batch_id, b.watermark_ms, b.dropped) for b in audited] == [(42, 60_000, 1), (43, 120_000, 2)]


def test_a_missing_or_unreadable_offset_log_gives_no_watermark(tmp_path):
    assert late_trades.checkpoint_watermark_ms(str(tmp_path), 7) is None
    (tmp_path / "offsets").mkdir()
    (tmp_path / "offsets" / "7").write_text("v1\n")
    assert late_trades.checkpoint_watermark_ms(str(tmp_path), 7) is None


def test_valid_trades_whose_minute_ended_at_or_before_the_watermark_are_counted_per_symbol(local_spark):
    """The bars query holds a minute's trades until the watermark passes the minute's end: a trade behind the
    watermark whose minute is still open lands in its bar and is not late."""
    watermark = 2 * MINUTE
    trades = local_spark.createDataFrame(
        [
            Row(source="binance", symbol="BTCUSDT", ts_ms=1_000, reject_code=None),
            Row(source="binance", symbol="BTCUSDT", ts_ms=MINUTE + 59_999, reject_code=None),  # minute ends at it
            Row(source="binance", symbol="BTCUSDT", ts_ms=watermark, reject_code=None),  # its minute is open
            Row(source="binance", symbol="ETHUSDT", ts_ms=1_500, reject_code=None),
            Row(source="binance", symbol="ETHUSDT", ts_ms=500, reject_code="price_not_positive"),  # never late
            Row(source="finnhub", symbol="BTCUSDT", ts_ms=10, reject_code=None),
        ],
        "source string, symbol string, ts_ms long, reject_code string",
    )
    counts = [r.asDict() for r in late_trades.count_late(trades, watermark)]
    assert counts == [
        {"source": "binance", "symbol": "BTCUSDT", "trades": 2, "first_ms": 1_000, "last_ms": MINUTE + 59_999,
         "repaired": 0},
        {"source": "binance", "symbol": "ETHUSDT", "trades": 1, "first_ms": 1_500, "last_ms": 1_500, "repaired": 0},
        {"source": "finnhub", "symbol": "BTCUSDT", "trades": 1, "first_ms": 10, "last_ms": 10, "repaired": 0},
    ]  # fmt: skip


def test_repaired_trades_are_late_by_design_and_counted_apart(local_spark):
    """A trade with the repair header (a gap repair, a backfill) is behind the watermark on purpose: it is no late
    trade, but the log line still accounts for it against Spark's total."""
    trades = local_spark.createDataFrame(
        [
            Row(source="binance", symbol="BTCUSDT", ts_ms=1_000, reject_code=None, repaired=True),
            Row(source="binance", symbol="BTCUSDT", ts_ms=1_200, reject_code=None, repaired=False),
            Row(source="binance", symbol="ETHUSDT", ts_ms=1_500, reject_code=None, repaired=True),
        ],
        "source string, symbol string, ts_ms long, reject_code string, repaired boolean",
    )
    counts = late_trades.count_late(trades, 2 * MINUTE)
    by_symbol = {r["symbol"]: (r["trades"], r["repaired"], r["first_ms"]) for r in counts}
    assert by_symbol == {"BTCUSDT": (1, 1, 1_200), "ETHUSDT": (0, 1, None)}
    line = late_trades.describe("bars", late_trades.LateBatch("q", 3, 120_000, "{}", "{}", dropped=3), counts)
    assert "1 trade(s) of 1 symbol(s): BTCUSDT=1; 2 repaired or backfilled trade(s), late by design" in line
    assert "DISAGREES" not in line


def test_the_log_line_names_symbols_and_says_when_spark_dropped_more_rows_than_trades():
    batch = late_trades.LateBatch("q", 9, 120_000, "{}", "{}", dropped=3)
    counts = [
        Row(source="s", symbol="AAPL", trades=2, repaired=0),
        Row(source="s", symbol="MSFT", trades=1, repaired=0),
    ]
    line = late_trades.describe("bars", batch, counts)
    assert line == (
        "[bars] batch=9 late trades dropped behind watermark 1970-01-01 00:02:00: 3 trade(s) of 2 symbol(s): "
        "AAPL=2 MSFT=1"
    )
    undercounted = late_trades.LateBatch("q", 9, 120_000, "{}", "{}", dropped=4)
    # Spark drops rows of a symbol-minute each; three trades cannot have filled four of them.
    assert late_trades.describe("bars", undercounted, counts).endswith("DISAGREES with Spark's 4 dropped rows")
    two_rows = late_trades.LateBatch("q", 9, 120_000, "{}", "{}", dropped=2)
    assert "DISAGREES" not in late_trades.describe("bars", two_rows, counts)
    assert "(+1 more symbols)" in late_trades.describe("bars", batch, counts, shown=1)
