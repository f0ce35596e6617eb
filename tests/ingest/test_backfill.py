"""`backfill binance` against a fake Binance REST server (tests/ingest/fake_binance.py) into the real Kafka:
klines and trades exactly once, 429s honoured without ever earning a 418, and a kill -9 resumed from the saved
progress; and the live source's warm-up (the same klines backfill) ahead of its first live bar."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from pathlib import Path

from tests.ingest.conftest import now_ms, read_topic
from tests.ingest.fake_binance import MINUTE_MS, BinanceMarket, FakeBinanceRest
from tests.ingest.fake_binance_stream import FakeBinanceStream

HOUR_MS = 3_600_000
SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]


def market_hours_ago(symbols: list[str], hours: int = 6) -> BinanceMarket:
    """A market that ended an hour ago: every kline of it is closed."""
    start = now_ms() // HOUR_MS * HOUR_MS - hours * HOUR_MS
    return BinanceMarket(symbols, start, start + (hours - 1) * HOUR_MS)


def backfill_args(rest: FakeBinanceRest, state_dir: Path, symbols: list[str], start: int, end: int, *extra: str):
    return [
        "backfill",
        "binance",
        "--symbols",
        ",".join(s.lower() for s in symbols),
        "--from",
        str(start),
        "--to",
        str(end),
        "--rest-url",
        rest.url,
        "--state-dir",
        str(state_dir),
        "--progress-interval",
        "0.5",
        *extra,
    ]


def bars_by_symbol(bootstrap: str, topic: str) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for record in read_topic(bootstrap, topic):
        assert record.key == record.value["symbol"]
        found.setdefault(record.value["symbol"], []).append(record.value)
    return found


def test_klines_backfill_lands_every_kline_once(run_ingest, topics, stack_settings, tmp_path):
    market = market_hours_ago(SYMBOLS)
    start = market.start_ms + 30 * MINUTE_MS + 17_000  # not a whole minute: the first kline is the next one
    end = start + 3 * HOUR_MS
    with FakeBinanceRest(market) as rest:
        args = backfill_args(rest, tmp_path / "state", SYMBOLS, start, end, "--limit", "100", *topics.args())
        ingest = run_ingest(*args)
        assert ingest.wait(60) == 0, ingest.log()[-3000:]
        klines_requests = len(rest.served_ok("/api/v3/klines"))
        # Run again: the state says every range is complete, so nothing is asked or sent.
        again = run_ingest(*args)
        assert again.wait(30) == 0, again.log()[-3000:]
        assert len(rest.served) == klines_requests, "a complete range is not fetched again"
        assert set(rest.statuses()) == {200}

    found = bars_by_symbol(stack_settings.kafka_bootstrap, topics.bars)
    assert sorted(found) == sorted(SYMBOLS)
    for symbol in SYMBOLS:
        expected = market.expected_bars(symbol, start, end)
        assert len(expected) == 180, "the minutes opening in [--from, --to)"
        assert any(b["trades"] == 0 for b in expected + market.expected_bars(symbol, market.start_ms, end)), (
            "the market has quiet minutes"
        )
        assert found[symbol] == expected, f"{symbol}: klines differ from the market's"
    # Symbols take turns: the first three requests are one page of each.
    first = [s.query["symbol"] for s in rest.served[:3]]
    assert sorted(first) == sorted(SYMBOLS)

    log = ingest.log()
    assert "binance backfill klines: 540 bars sent" in log, log[-3000:]
    assert "BTCUSDT finished" in log and "ETHUSDT finished" in log and "BNBUSDT finished" in log
    assert "540/540 bars (100.0%)" in log
    state = json.loads((tmp_path / "state" / "backfill-binance-klines.json").read_text())
    assert all(state["symbols"][s]["complete"] for s in SYMBOLS)
    assert "0 bars sent" in again.log()


def test_an_invalid_symbol_is_dropped_and_the_others_finish(run_ingest, topics, stack_settings, tmp_path):
    market = market_hours_ago(["BTCUSDT"])
    start, end = market.start_ms, market.start_ms + HOUR_MS
    with FakeBinanceRest(market) as rest:
        args = backfill_args(rest, tmp_path / "state", ["NOPEUSDT", "BTCUSDT"], start, end, *topics.args())
        ingest = run_ingest(*args)
        assert ingest.wait(60) == 1, "an incomplete backfill is not a success"
        assert len(rest.served_for("NOPEUSDT")) == 1, "a 400 is not retried"
    found = bars_by_symbol(stack_settings.kafka_bootstrap, topics.bars)
    assert found["BTCUSDT"] == market.expected_bars("BTCUSDT", start, end)
    log = ingest.log()
    assert "dropping NOPEUSDT: Binance does not list it (HTTP 400, code -1121: Invalid symbol.)" in log, log[-3000:]
    letters = [r.value for r in read_topic(stack_settings.kafka_bootstrap, topics.deadletter)]
    assert [(d["reason_code"], d["raw"]) for d in letters] == [
        ("http_status", '{"code": -1121, "msg": "Invalid symbol."}')
    ]


def test_429_pauses_the_backfill_and_nothing_is_lost(run_ingest, topics, stack_settings, tmp_path):
    market = market_hours_ago(SYMBOLS)
    start, end = market.start_ms, market.start_ms + 3 * HOUR_MS
    # 20 klines requests per 3-second window; the client's own budget is far higher, so the server says stop.
    with FakeBinanceRest(market, weight_limit=40, window_s=3) as rest:
        args = backfill_args(
            rest, tmp_path / "state", SYMBOLS, start, end, "--limit", "10", "--rest-weight-per-minute", "100000"
        )
        ingest = run_ingest(*args, *topics.args())
        assert ingest.wait(90) == 0, ingest.log()[-3000:]
        served = list(rest.served)

    statuses = Counter(s.status for s in served)
    assert statuses[429] >= 1, statuses
    assert statuses[418] == 0, "a request was sent while a 429 wait was in force"
    for index, answer in enumerate(served[:-1]):
        if answer.status == 429:
            following = served[index + 1]
            assert following.at - answer.at >= answer.retry_after - 0.01, "the next request came before Retry-After"
    # Every page asked for was eventually answered: 54 pages of 10 klines, each exactly once with a 200.
    pages = Counter((s.query["symbol"], s.query["startTime"]) for s in served if s.status == 200)
    assert len(pages) == 54 and set(pages.values()) == {1}
    found = bars_by_symbol(stack_settings.kafka_bootstrap, topics.bars)
    for symbol in SYMBOLS:
        assert found[symbol] == market.expected_bars(symbol, start, end)
    assert "HTTP 429" in ingest.log() and "Retry-After" in ingest.log()


def test_kill_9_then_rerun_resumes_from_the_saved_progress(run_ingest, topics, stack_settings, tmp_path):
    market = market_hours_ago(SYMBOLS)
    start, end = market.start_ms, market.start_ms + 3 * HOUR_MS
    limit = 20
    state_path = tmp_path / "state" / "backfill-binance-klines.json"
    with FakeBinanceRest(market) as rest:
        # 2 weight per klines request at 300 a minute: a page every 0.4 s, 27 pages in about 11 s.
        args = backfill_args(
            rest,
            tmp_path / "state",
            SYMBOLS,
            start,
            end,
            "--limit",
            str(limit),
            "--rest-weight-per-minute",
            "300",
            *topics.args(),
        )
        first = run_ingest(*args)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if state_path.exists():
                saved = json.loads(state_path.read_text())["symbols"]
                if all(saved.get(s, {}).get("next_start_ms", start) >= start + 2 * limit * MINUTE_MS for s in SYMBOLS):
                    break
            time.sleep(0.05)
        # Mid-round: some pages of this round are sent, none of them saved yet.
        time.sleep(0.5)
        first.kill()
        assert first.proc.returncode == -9
        saved = {s: p["next_start_ms"] for s, p in json.loads(state_path.read_text())["symbols"].items()}
        assert all(start < saved[s] < end for s in SYMBOLS), saved
        asked_by_first = len(rest.served)

        second = run_ingest(*args)
        assert second.wait(60) == 0, second.log()[-3000:]
        rerun = rest.served[asked_by_first:]

    # The rerun's first request for each symbol starts at the saved progress, not at --from.
    for symbol in SYMBOLS:
        first_of_symbol = next(s for s in rerun if s.query["symbol"] == symbol)
        assert int(first_of_symbol.query["startTime"]) == saved[symbol]
        assert f"resuming {symbol} at" in second.log()

    found = bars_by_symbol(stack_settings.kafka_bootstrap, topics.bars)
    for symbol in SYMBOLS:
        expected = market.expected_bars(symbol, start, end)
        got = found[symbol]
        assert {b["ts_ms"] for b in got} == {b["ts_ms"] for b in expected}, f"{symbol}: a kline is missing"
        assert all(b in expected for b in got)
        twice = sorted(ts for ts, n in Counter(b["ts_ms"] for b in got).items() if n > 1)
        assert all(n <= 2 for n in Counter(b["ts_ms"] for b in got).values())
        # Re-sent: only what the first run sent after its last save, at most the one page of the round in flight.
        assert all(saved[symbol] <= ts < saved[symbol] + limit * MINUTE_MS for ts in twice), (symbol, twice)


def test_trades_backfill_equals_the_markets_trades(run_ingest, topics, stack_settings, tmp_path):
    market = market_hours_ago(SYMBOLS[:2])
    start = market.start_ms + 10 * MINUTE_MS + 123
    end = start + 40 * MINUTE_MS
    with FakeBinanceRest(market) as rest:
        args = backfill_args(
            rest,
            tmp_path / "state",
            SYMBOLS[:2],
            start,
            end,
            "--kind",
            "trades",
            "--limit",
            "100",
            "--rest-weight-per-minute",
            "60000",
            *topics.args(),
        )
        ingest = run_ingest(*args)
        assert ingest.wait(60) == 0, ingest.log()[-3000:]
        agg = rest.served_ok("/api/v3/aggTrades")

    trades = read_topic(stack_settings.kafka_bootstrap, topics.trades)
    state = json.loads((tmp_path / "state" / "backfill-binance-trades.json").read_text())["symbols"]
    for symbol in SYMBOLS[:2]:
        expected = [t.canonical(symbol) for t in market.trades_between(symbol, start, end)]
        assert len(expected) > 250
        got = [r.value for r in trades if r.value["symbol"] == symbol]
        assert got == expected, f"{symbol}: trades differ from the market's"
        first_in, first_after = (
            market.trades_between(symbol, start, end)[0],
            market.trades_between(symbol, end, end + HOUR_MS)[0],
        )
        assert state[symbol]["first_trade_id"] == first_in.id
        assert state[symbol]["end_trade_id"] == first_after.id
        assert state[symbol]["complete"]
        # The range's ends come from aggTrades windows under an hour, as Binance requires.
        windows = [(int(s.query["startTime"]), int(s.query["endTime"])) for s in agg if s.query["symbol"] == symbol]
        assert windows[:2] == [(start, end - 1), (end, end + HOUR_MS - 1)]
        assert all(e - s < HOUR_MS for s, e in windows)
    assert f"{len(trades)} trades sent" in ingest.log()


def create_times(bootstrap: str, topic: str) -> dict[tuple[int, int], int]:
    """(partition, offset) -> the message's Kafka timestamp (CreateTime: when ingest produced it, in ms)."""
    from confluent_kafka import Consumer, TopicPartition

    records = read_topic(bootstrap, topic)
    messages = {(r.partition, r.offset) for r in records}  # a trade batch's trades share theirs
    ends: dict[int, int] = {}
    for r in records:
        ends[r.partition] = max(ends.get(r.partition, -1), r.offset)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-times-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})  # fmt: skip
    try:
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        times: dict[tuple[int, int], int] = {}
        deadline = time.monotonic() + 20
        while len(times) < len(messages) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                times[(msg.partition(), msg.offset())] = msg.timestamp()[1]
        assert len(times) == len(messages), f"timed out reading {topic}'s timestamps"
        return times
    finally:
        consumer.close()


def test_a_new_symbol_gets_its_warm_up_history_before_its_first_live_bar(run_ingest, topics, stack_settings):
    """`binance --warmup-minutes 120`: before it dials, ingest puts each symbol's closed klines of the two hours
    before it started on the bars topic, each once, ahead of every live trade and live kline."""
    bootstrap = stack_settings.kafka_bootstrap
    symbols = ["BTCUSDT", "ETHUSDT"]
    market = BinanceMarket(symbols, now_ms() - 3 * HOUR_MS, now_ms() + 10 * MINUTE_MS, seed=120, trades_per_minute=30)
    with FakeBinanceRest(market) as rest, FakeBinanceStream(market) as stream:
        # The warm-up ends at the minute ingest starts in: not a few seconds before the next one.
        if now_ms() % MINUTE_MS > MINUTE_MS - 5_000:
            time.sleep((MINUTE_MS - now_ms() % MINUTE_MS) / 1000 + 0.1)
        start_minute = now_ms() // MINUTE_MS * MINUTE_MS
        ingest = run_ingest(
            "binance", "--symbols", ",".join(s.lower() for s in symbols), "--warmup-minutes", "120",
            "--ws-url", stream.url, "--rest-url", rest.url, *topics.args(),
        )  # fmt: skip
        ingest.wait_for_log("subscribed to", timeout=30)
        # The first live kline is the one of the minute ingest connected in, sent when that minute closes.
        deadline = time.monotonic() + 80
        while {r.key for r in read_topic(bootstrap, topics.bars) if r.value["ts_ms"] >= start_minute} != set(symbols):
            assert time.monotonic() < deadline, f"no live kline of each symbol; log:\n{ingest.log()[-3000:]}"
            assert ingest.alive(), ingest.log()[-3000:]
            time.sleep(1)
        assert ingest.stop() == 0, ingest.log()[-3000:]
        klines_requests = rest.served_ok("/api/v3/klines")

    assert len(klines_requests) == len(symbols), "one page of 1000 holds a symbol's 120 klines"
    bars = read_topic(bootstrap, topics.bars)
    trades = read_topic(bootstrap, topics.trades)
    bar_times, trade_times = create_times(bootstrap, topics.bars), create_times(bootstrap, topics.trades)
    for symbol in symbols:
        of_symbol = [r for r in bars if r.key == symbol]
        assert len({r.partition for r in of_symbol}) == 1, "keyed by symbol: one partition, offsets in send order"
        warm = [r for r in of_symbol if r.value["ts_ms"] < start_minute]
        live = [r for r in of_symbol if r.value["ts_ms"] >= start_minute]
        expected = market.expected_bars(symbol, start_minute - 120 * MINUTE_MS, start_minute)
        assert len(expected) == 120
        assert [r.value for r in warm] == expected, (
            f"{symbol}: the warm-up is not the last 120 closed klines, once: {len(warm)} bars from "
            f"{warm[0].value['ts_ms'] if warm else None}, want 120 from {expected[0]['ts_ms']}"
        )
        assert max(r.offset for r in warm) < min(r.offset for r in live), f"{symbol}: a live kline came first"
        live_trades = [r for r in trades if r.key == symbol]
        assert live_trades, f"{symbol}: no live trade"
        last_warm = max(bar_times[(r.partition, r.offset)] for r in warm)
        first_live = min(trade_times[(r.partition, r.offset)] for r in live_trades)
        assert last_warm <= first_live, f"{symbol}: a live trade was produced before the end of its warm-up"
    log = ingest.log()
    assert "binance warm-up: binance backfill klines: 240 bars sent" in log, log[-3000:]
    assert log.index("binance warm-up:") < log.index("subscribed to"), "the warm-up comes before the connection"
