"""The bars job on the real broker, cluster and database: bars equal an independent pandas computation from the
same raw trades, including duplicates and late trades, both on the bars topic and in bars_1m (with a metrics row
each); trades beyond the watermark are counted; malformed and invalid trades land in rejected_messages while
valid ones keep flowing."""

from __future__ import annotations

import json
import random
import time
import uuid

import pandas as pd
import pytest

from spark_jobs.bars_job import PLAN_FILE, STATE_PLAN
from spark_jobs.contracts import APPLIED_HEADER
from tests.conftest import connect
from tests.stack.metrics_checks import assert_same_metrics, expected_metrics, stored_metrics
from tests.stack.streaming import StreamingJob, consume_json, produce

MINUTE = 60_000


def reference_bars(trades: list[dict]) -> pd.DataFrame:
    """1-minute OHLCV bars straight from the definition, in pandas."""
    df = pd.DataFrame(trades).drop_duplicates(["source", "symbol", "trade_id"], keep="first")
    df["seq"] = range(len(df))  # production order = Kafka offset order within a symbol's partition
    df["minute"] = df["ts_ms"] // MINUTE * MINUTE
    df = df.sort_values(["symbol", "minute", "ts_ms", "seq"])
    grouped = df.groupby(["symbol", "minute"])
    bars = pd.DataFrame(
        {
            "open": grouped["price"].first(),
            "high": grouped["price"].max(),
            "low": grouped["price"].min(),
            "close": grouped["price"].last(),
            "volume": grouped["size"].sum(),
            "trades": grouped.size(),
            "vwap": grouped.apply(lambda g: (g.price * g["size"]).sum() / g["size"].sum(), include_groups=False),
        }
    ).reset_index()
    return bars.rename(columns={"minute": "ts_ms"})


def trade(symbol: str, ts_ms: int, price: float, size: float, trade_id: str) -> dict:
    return {"source": "test", "symbol": symbol, "ts_ms": ts_ms, "price": price, "size": size, "trade_id": trade_id}


def as_messages(trades: list[dict], trade_batches: bool) -> list[tuple[str, str]]:
    """Kafka (key, value) pairs: a message per trade, or each symbol's trades as trade batches of up to 40 (as
    ingest sends them, contracts/messages.json trade.batch), in their order."""
    if not trade_batches:
        return [(t["symbol"], json.dumps(t)) for t in trades]
    by_symbol: dict[str, list[dict]] = {}
    for t in trades:
        by_symbol.setdefault(t["symbol"], []).append(t)
    return [(s, json.dumps(of[i : i + 40])) for s, of in by_symbol.items() for i in range(0, len(of), 40)]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("trade_batches", [False, True], ids=["one-trade-per-message", "trade-batches"])
def test_bars_match_pandas_with_duplicates_late_and_invalid_trades(
    stack_settings, stack_env, kafka_topic, pg, tmp_path, trade_batches
):
    rng = random.Random(7)
    trades_topic, bars_topic = kafka_topic("trades"), kafka_topic("bars")
    t0 = (int(time.time() * 1000) // MINUTE - 30) * MINUTE  # half an hour ago, on a minute boundary
    symbols = ["BTCUSDT", "ETHUSDT", "AAPL"]

    phase1: list[dict] = []
    for symbol in symbols:
        price = {"BTCUSDT": 60000.0, "ETHUSDT": 3000.0, "AAPL": 190.0}[symbol]
        for i in range(120):  # minutes 0..3, several trades per minute, some sharing a millisecond
            ts = t0 + rng.randrange(0, 4 * MINUTE // 1000) * 1000
            price *= 1 + rng.gauss(0, 0.001)
            phase1.append(trade(symbol, ts, round(price, 4), round(rng.uniform(0.0, 3.0), 6), f"{symbol}-{i}"))
    phase1.sort(key=lambda t: t["ts_ms"])
    duplicates = [dict(t) for t in rng.sample(phase1, 15)]
    refused = [
        trade("AAPL", t0 + 1000, -5.0, 1.0, "neg-price"),
        trade("AAPL", t0 + 1000, 190.0, -1.0, "neg-size"),
        {**trade("AAPL", t0 + 1000, 190.0, 1.0, "x"), "symbol": None},
        trade("AAPL", t0 + 10**12, 190.0, 1.0, "future"),
    ]
    # In a trade batch, each bad trade is refused alone, with its element.
    bad = [("AAPL", json.dumps(refused))] if trade_batches else [("AAPL", json.dumps(t)) for t in refused]
    invalid = [("AAPL", "{not json"), *bad]

    job = StreamingJob(
        "bars_job",
        [
            "--trades-topic",
            trades_topic,
            "--bars-topic",
            bars_topic,
            "--watermark",
            "90 seconds",
            "--trigger",
            "2 seconds",
            "--checkpoint",
            str(tmp_path / "ckpt"),
        ],
        stack_env,
    )
    try:
        phase1_messages = as_messages(phase1 + duplicates, trade_batches) + invalid
        produce(stack_settings.kafka_bootstrap, trades_topic, phase1_messages)
        n_phase1 = len(phase1_messages)  # rows_in counts Kafka messages
        job.wait_for("phase 1 consumed", lambda: job.rows_in.get("bars", 0) >= n_phase1)
        # Bars and rejects share one read of the topic (the rejects branch reuses the bars branch's shuffle).
        assert job.rows_in["bars"] == n_phase1, job.log_tail()

        # The watermark is now max(ts) - 90 s, inside minute 2: a trade of minute 3 is late but still counts,
        # one of minute 0 is beyond the watermark and must be dropped (and counted).
        max_ts = max(t["ts_ms"] for t in phase1)
        late_ok = [
            trade(s, max_ts - 30_000, 1.5 * phase1[0]["price"] if s == "BTCUSDT" else 100.0, 2.0, f"{s}-late")
            for s in symbols
        ]
        late_source = f"late-{uuid.uuid4().hex[:8]}"  # this test's own rows in late_trades
        too_late = [
            {**trade("ETHUSDT", t0 + 5_000, 1.0, 1.0, "ETHUSDT-too-late"), "source": late_source},
            {**trade("ETHUSDT", t0 + 6_000, 1.0, 1.0, "ETHUSDT-too-late-2"), "source": late_source},
            {**trade("AAPL", t0 + 7_000, 1.0, 1.0, "AAPL-too-late"), "source": late_source},
        ]
        late_messages = as_messages(late_ok + too_late, trade_batches)
        produce(stack_settings.kafka_bootstrap, trades_topic, late_messages)
        n_late = len(late_messages)
        job.wait_for("late trades consumed", lambda: job.rows_in.get("bars", 0) >= n_phase1 + n_late)

        # A trade ten minutes on moves the watermark past every earlier minute, closing their bars.
        flush = [trade(s, t0 + 10 * MINUTE, 100.0, 1.0, f"{s}-flush") for s in symbols]
        produce(stack_settings.kafka_bootstrap, trades_topic, [(t["symbol"], json.dumps(t)) for t in flush])

        expected = reference_bars(phase1 + duplicates + late_ok)
        got = consume_json(stack_settings.kafka_bootstrap, bars_topic, len(expected), timeout=180)
        # Spark drops rows, one per symbol-minute of a batch (spark_jobs/trade_minutes.py): here two or three.
        assert 2 <= job.late_dropped.get("bars", 0) <= len(too_late), job.log_tail()
        # Spark reports only the total; the job names the symbols (spark_jobs/late_trades.py).
        job.wait_for(
            "late trades attributed to their symbols",
            lambda: (
                pg.execute(
                    "SELECT coalesce(sum(trades), 0) FROM late_trades WHERE source = %s", (late_source,)
                ).fetchone()[0]
                >= len(too_late)
            ),
        )
        late_lines = [line for line in job.lines if "late trades dropped" in line]
    finally:
        job.stop()

    assert len(got) == len(expected), f"{len(got)} bars, expected {len(expected)}"
    assert all(b["_key"] == b["symbol"] for b in got)
    # Marked as already in PostgreSQL, so the metrics job skips them.
    assert all(b["_headers"] == {APPLIED_HEADER: "bars_job"} for b in got)
    actual = pd.DataFrame(got).sort_values(["symbol", "ts_ms"]).reset_index(drop=True)
    expected = expected.sort_values(["symbol", "ts_ms"]).reset_index(drop=True)
    assert actual["ts_ms"].tolist() == expected["ts_ms"].tolist()
    assert actual["symbol"].tolist() == expected["symbol"].tolist()
    for col in ["open", "high", "low", "close", "volume", "vwap"]:
        pd.testing.assert_series_equal(actual[col], expected[col], check_names=False, rtol=1e-12)
    assert actual["trades"].tolist() == expected["trades"].tolist()

    # The same bars are in bars_1m, each with its metrics row, written by the bars job itself.
    stored = pd.DataFrame(
        pg.execute(
            "SELECT b.symbol, (extract(epoch FROM b.ts) * 1000)::bigint AS ts_ms, b.open, b.high, b.low, b.close, "
            "b.volume, b.trades, b.vwap, m.ts IS NOT NULL AS has_metrics FROM bars_1m b "
            "LEFT JOIN metrics_1m m USING (symbol, ts) WHERE b.symbol = ANY(%s) AND b.ts >= to_timestamp(%s / 1000.0) "
            "ORDER BY b.symbol, b.ts",
            (symbols, t0),
        ).fetchall(),
        columns=["symbol", "ts_ms", "open", "high", "low", "close", "volume", "trades", "vwap", "has_metrics"],
    )
    assert stored[["symbol", "ts_ms"]].values.tolist() == expected[["symbol", "ts_ms"]].values.tolist()
    for col in ["open", "high", "low", "close", "volume", "vwap", "trades"]:
        pd.testing.assert_series_equal(stored[col], expected[col], check_names=False, check_dtype=False, rtol=1e-12)
    assert stored["has_metrics"].all()

    rejects = pg.execute(
        'SELECT reason_code, raw, topic, "offset", element FROM rejected_messages WHERE topic = %s '
        'ORDER BY "offset", element',
        (trades_topic,),
    ).fetchall()
    assert [r[0] for r in rejects] == [
        "malformed_json",
        "price_not_positive",
        "size_negative",
        "missing_field",
        "ts_in_future",
    ]
    assert rejects[0][1] == "{not json"
    if trade_batches:  # one message, four refused trades, each with its own bytes and element
        assert len({r[3] for r in rejects[1:]}) == 1 and [r[4] for r in rejects[1:]] == [0, 1, 2, 3]
        assert [json.loads(r[1])["trade_id"] for r in rejects[1:]] == ["neg-price", "neg-size", "x", "future"]

    by_symbol = pg.execute(
        "SELECT symbol, trades, (extract(epoch FROM latest_trade_ts) * 1000)::bigint FROM late_trades_by_symbol "
        "WHERE source = %s ORDER BY symbol",
        (late_source,),
    ).fetchall()
    assert by_symbol == [("AAPL", 1, t0 + 7_000), ("ETHUSDT", 2, t0 + 6_000)]
    first = pg.execute(
        "SELECT (extract(epoch FROM min(first_ts)) * 1000)::bigint FROM late_trades WHERE source = %s AND symbol = %s",
        (late_source, "ETHUSDT"),
    ).fetchone()[0]
    assert first == t0 + 5_000
    assert late_lines and not any("DISAGREES" in line for line in late_lines), late_lines


@pytest.mark.timeout(600)
def test_bars_and_metrics_exactly_once_when_the_driver_is_killed(stack_settings, stack_env, kafka_topic, pg, tmp_path):
    """The bars job writes bars_1m and metrics_1m itself: SIGKILL its driver mid-stream, restart it from the
    checkpoint, and every bar and metrics row is there once, with the values of an uninterrupted run."""
    rng = random.Random(3)
    trades_topic, bars_topic = kafka_topic("trades", partitions=3), kafka_topic("bars")
    tag = uuid.uuid4().hex[:6].upper()
    symbols = [f"K{tag}{i}" for i in range(3)]
    t0 = (int(time.time() * 1000) // MINUTE - 60) * MINUTE
    trades = []
    for symbol in symbols:
        price = 100.0
        for i in range(12 * 30):  # 12 minutes, a trade every 2 s
            price *= 1 + rng.gauss(0, 0.001)
            trades.append(trade(symbol, t0 + i * 2_000, round(price, 4), round(rng.uniform(0.1, 3.0), 6), f"{i}"))
    trades.sort(key=lambda t: t["ts_ms"])
    closer = trade(symbols[0], t0 + 20 * MINUTE, 100.0, 1.0, "closer")  # moves the watermark past minute 11
    expected = reference_bars(trades).sort_values(["symbol", "ts_ms"]).reset_index(drop=True)

    # One gaps topic for both runs: the restarted job resumes its checkpoint on the same one.
    args = ["--trades-topic", trades_topic, "--bars-topic", bars_topic, "--gaps-topic", kafka_topic("gaps", 1),
            "--trigger", "1 second", "--max-offsets-per-trigger", "120",
            "--checkpoint", str(tmp_path / "ckpt")]  # fmt: skip
    produce(stack_settings.kafka_bootstrap, trades_topic, [(t["symbol"], json.dumps(t)) for t in [*trades, closer]])
    job = StreamingJob("bars_job", args, stack_env)
    try:
        job.wait_for("two batches of bars applied", lambda: sum("[bars] batch=" in line for line in job.lines) >= 2)
        job.kill()
    finally:
        job.stop()
    applied_before = pg.execute("SELECT count(*) FROM bars_1m WHERE symbol = ANY(%s)", (symbols,)).fetchone()[0]
    assert 0 < applied_before < len(expected), "the kill must land mid-stream"

    job = StreamingJob("bars_job", args, stack_env)
    try:
        job.wait_for(
            "every bar and its metrics",
            lambda: (
                pg.execute(
                    "SELECT count(*) FROM bars_1m b JOIN metrics_1m m USING (symbol, ts) WHERE symbol = ANY(%s)",
                    (symbols,),
                ).fetchone()[0]
                >= len(expected)
            ),
            timeout=300,
        )
    finally:
        job.stop()

    stored = pd.DataFrame(
        pg.execute(
            "SELECT symbol, (extract(epoch FROM ts) * 1000)::bigint, open, high, low, close, volume, trades, vwap "
            "FROM bars_1m WHERE symbol = ANY(%s) ORDER BY symbol, ts",
            (symbols,),
        ).fetchall(),
        columns=["symbol", "ts_ms", "open", "high", "low", "close", "volume", "trades", "vwap"],
    )
    assert stored[["symbol", "ts_ms"]].values.tolist() == expected[["symbol", "ts_ms"]].values.tolist()
    for col in ["open", "high", "low", "close", "volume", "vwap", "trades"]:
        pd.testing.assert_series_equal(stored[col], expected[col], check_names=False, check_dtype=False, rtol=1e-12)
    assert_same_metrics(stored_metrics(pg, symbols), expected_metrics(stored.to_dict("records")))


@pytest.mark.timeout(600)
def test_a_skewed_clock_cannot_make_other_symbols_trades_late(stack_settings, stack_env, kafka_topic, pg, tmp_path):
    """1,500 trades of 10 symbols, then one trade of another symbol stamped 4 minutes ahead of its receive time (a
    venue with a skewed clock): it is refused (contract max_future_ms), so it cannot drag the watermark forward,
    and every one of the 1,500 is in its bar."""
    rng = random.Random(11)
    trades_topic, bars_topic = kafka_topic("trades"), kafka_topic("bars")
    tag = uuid.uuid4().hex[:6].upper()
    symbols = [f"SK{tag}{i}" for i in range(10)]
    now = int(time.time() * 1000)
    t0 = (now // MINUTE - 20) * MINUTE
    trades = [
        trade(symbols[i % 10], t0 + rng.randrange(0, 5 * MINUTE), round(100 + rng.gauss(0, 1), 4), 1.0, f"{i}")
        for i in range(1_500)
    ]
    trades.sort(key=lambda t: t["ts_ms"])  # a live feed: in time order, so only the skew could make any late
    skewed = trade(f"SKEW{tag}", now + 4 * MINUTE, 50.0, 1.0, "skewed")
    closer = trade(symbols[0], t0 + 10 * MINUTE, 100.0, 1.0, "closer")  # closes minutes 0..4, in the past
    args = ["--trades-topic", trades_topic, "--bars-topic", bars_topic, "--trigger", "1 second",
            "--checkpoint", str(tmp_path / "ckpt")]  # fmt: skip
    job = StreamingJob("bars_job", args, stack_env)
    try:
        # The skewed trade and the first trades in one micro-batch, the rest in later ones: had it been accepted,
        # the watermark would stand 3 minutes in the future and every later trade would be dropped as late.
        first = [(t["symbol"], json.dumps(t)) for t in trades[:700]] + [(skewed["symbol"], json.dumps(skewed))]
        produce(stack_settings.kafka_bootstrap, trades_topic, first)
        job.wait_for("the first trades and the skewed one", lambda: job.rows_in.get("bars", 0) >= 701)
        rest = [(t["symbol"], json.dumps(t)) for t in [*trades[700:], closer]]
        produce(stack_settings.kafka_bootstrap, trades_topic, rest)
        job.wait_for(
            "the bars of the five minutes",
            lambda: (
                pg.execute("SELECT count(*) FROM bars_1m WHERE symbol = ANY(%s)", (symbols,)).fetchone()[0]
                >= len(reference_bars(trades))
            ),
            timeout=300,
        )
    finally:
        job.stop()
    counted = pg.execute("SELECT sum(trades) FROM bars_1m WHERE symbol = ANY(%s)", (symbols,)).fetchone()[0]
    assert counted == 1_500, f"{1_500 - counted} trades dropped"
    assert job.late_dropped.get("bars", 0) == 0, job.log_tail()
    rejected = pg.execute("SELECT reason_code FROM rejected_messages WHERE topic = %s", (trades_topic,)).fetchall()
    assert rejected == [("ts_in_future",)]


@pytest.mark.timeout(600)
def test_a_batch_held_by_a_hung_database_write_is_reported_as_stalled(
    stack_settings, stack_env, kafka_topic, pg, test_db, tmp_path
):
    """Another session holds bars_1m locked, so the batch that closes bars hangs in its write: the job reports the
    stall while it lasts and says when it moves again, and the bars land once the lock goes."""
    trades_topic, bars_topic = kafka_topic("trades"), kafka_topic("bars")
    symbol = f"ST{uuid.uuid4().hex[:6].upper()}"
    t0 = (int(time.time() * 1000) // MINUTE - 10) * MINUTE
    trades = [trade(symbol, t0 + i * 10_000, 100.0 + i, 1.0, f"{i}") for i in range(18)]  # minutes 0..2
    closer = trade(symbol, t0 + 6 * MINUTE, 100.0, 1.0, "closer")
    args = ["--trades-topic", trades_topic, "--bars-topic", bars_topic, "--trigger", "1 second",
            "--checkpoint", str(tmp_path / "ckpt")]  # fmt: skip
    holder = connect(stack_env, test_db)
    job = StreamingJob("bars_job", args, {**stack_env, "SPARKTRENDS_STALL_AFTER_S": "5"})
    try:
        job.wait_for("the query running", lambda: any("[stream] running bars" in line for line in job.lines))
        holder.execute("LOCK TABLE bars_1m IN ACCESS EXCLUSIVE MODE")  # held until the rollback below
        produce(stack_settings.kafka_bootstrap, trades_topic, [(symbol, json.dumps(t)) for t in [*trades, closer]])
        job.wait_for("the stall reported", lambda: any("STALLED: bars" in line for line in job.lines), timeout=120)
        holder.rollback()
        job.wait_for("the query moving again", lambda: any("bars is moving again" in line for line in job.lines))
        job.wait_for(
            "the held bars",
            lambda: pg.execute("SELECT count(*) FROM bars_1m WHERE symbol = %s", (symbol,)).fetchone()[0] == 3,
        )
    finally:
        holder.close()
        job.stop()
    stalled = next(line for line in job.lines if "STALLED: bars" in line)
    assert "has finished no trigger for" in stalled, stalled


@pytest.mark.timeout(600)
# The plans before this one: none marked (trades deduplicated row by row, before issue 16); marked ones, the last
# being minute lists of trade structs (before trade packs). Any marker but STATE_PLAN takes the same path.
@pytest.mark.parametrize(
    "old_plan", [None, "trades-as-minute-lists-with-elements"], ids=["unmarked", "minute-lists-of-structs"]
)
def test_a_checkpoint_of_the_previous_state_plan_is_superseded_and_its_open_minutes_rebuilt(
    stack_settings, stack_env, kafka_topic, pg, tmp_path, old_plan
):
    """An upgrade from an earlier bars job: its checkpoint holds a state Spark cannot resume under the new plan.
    The job moves it aside and rebuilds, from the topic, exactly the minutes the old query had not emitted (window
    end after its last committed watermark), whole; the minutes it had emitted are not built again, so a short
    copy can never replace them."""
    trades_topic, bars_topic = kafka_topic("trades"), kafka_topic("bars")
    symbol = f"UP{uuid.uuid4().hex[:6].upper()}"
    t0 = (int(time.time() * 1000) // MINUTE - 30) * MINUTE
    trades = [trade(symbol, t0 + m * MINUTE + s * 7_000, 100.0 + m + s / 10, 1.0 + s, f"{m}-{s}") for m in range(6)
              for s in range(5)]  # fmt: skip
    closer = trade(symbol, t0 + 20 * MINUTE, 100.0, 1.0, "closer")
    old = tmp_path / "ckpt" / "bars"
    for sub in ("offsets", "commits", "state"):
        (old / sub).mkdir(parents=True)
    # The old query's last committed batch ran with its watermark inside minute 3: minutes 0-2 were emitted.
    metadata = {"batchWatermarkMs": t0 + 3 * MINUTE + 20_000, "batchTimestampMs": 0}
    (old / "offsets" / "4").write_text(f"v1\n{json.dumps(metadata)}\n")
    (old / "commits" / "4").write_text('v1\n{"nextBatchWatermarkMs":0}\n')
    if old_plan is not None:
        (old / PLAN_FILE).write_text(old_plan + "\n")
    produce(stack_settings.kafka_bootstrap, trades_topic, [(t["symbol"], json.dumps(t)) for t in [*trades, closer]])
    args = ["--trades-topic", trades_topic, "--bars-topic", bars_topic, "--trigger", "1 second",
            "--checkpoint", str(tmp_path / "ckpt")]  # fmt: skip
    job = StreamingJob("bars_job", args, stack_env)
    try:
        got = consume_json(stack_settings.kafka_bootstrap, bars_topic, 3, timeout=240)
        time.sleep(3)  # a wrongly rebuilt minute 0-2 would follow in the same or the next batch
        stored = pg.execute(
            "SELECT (extract(epoch FROM ts) * 1000)::bigint, open, close, volume, trades FROM bars_1m "
            "WHERE symbol = %s ORDER BY ts",
            (symbol,),
        ).fetchall()
        log = job.log_tail()
    finally:
        job.stop()
    expected = reference_bars([t for t in trades if t["ts_ms"] >= t0 + 3 * MINUTE])
    assert sorted(b["ts_ms"] for b in got) == expected["ts_ms"].tolist() == [t0 + m * MINUTE for m in (3, 4, 5)]
    assert [r[0] for r in stored] == expected["ts_ms"].tolist(), log
    for row, (_, want) in zip(stored, expected.iterrows(), strict=True):
        assert row[1:] == (want["open"], want["close"], want["volume"], want["trades"])
    superseded = [p.name for p in (tmp_path / "ckpt").iterdir() if p.name.startswith("bars.superseded-")]
    assert len(superseded) == 1 and "another plan's state" in log, log
    assert (old / PLAN_FILE).read_text().strip() == STATE_PLAN
