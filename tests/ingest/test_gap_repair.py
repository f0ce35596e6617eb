"""The whole path of a feed gap (issue 15), on the real broker, cluster and database: a Binance feed (a local fake of
its WebSocket and REST endpoints, real payload shapes) drops mid-minute and comes back. Ingest finds each symbol's
gap from the trade ids, fetches the missing trades from REST through a 429 with Retry-After, and puts a gap
message on the gaps topic; the bars job records it and rebuilds the gap's minutes. Then bars_1m and metrics_1m
equal the reference computed from the complete trade sequence, and the gap is accounted for in the database."""

from __future__ import annotations

import datetime as dt
import json
import re
import time

import pytest

from tests.bars_reference import bars as reference_bars
from tests.ingest.conftest import now_ms
from tests.ingest.fake_binance import MINUTE_MS, BinanceMarket, FakeBinanceRest
from tests.ingest.fake_binance_stream import FakeBinanceStream
from tests.stack.metrics_checks import assert_same_metrics, expected_metrics, stored_metrics
from tests.stack.streaming import StreamingJob

# Symbols of this module only: the bars land in the shared test database, where other tests' symbols live too.
SYMBOLS = ["GAPAUSDT", "GAPBUSDT", "GAPCUSDT"]
BAR_FIELDS = ["open", "high", "low", "close", "volume", "trades", "vwap", "taker_buy_volume", "first_trade_id",
              "last_trade_id"]  # fmt: skip
OUTAGE_S = 20


def stored_bars(pg, symbols: list[str]) -> dict[tuple[str, int], dict]:
    rows = pg.execute(
        f"SELECT symbol, (extract(epoch FROM ts) * 1000)::bigint AS ts_ms, origin, {', '.join(BAR_FIELDS)} "
        "FROM bars_1m WHERE symbol = ANY(%s) ORDER BY symbol, ts",
        (symbols,),
    ).fetchall()
    columns = ["symbol", "ts_ms", "origin", *BAR_FIELDS]
    return {(r[0], r[1]): dict(zip(columns, r, strict=True)) for r in rows}


def start_bars_job(topics, stack_env: dict[str, str], tmp_path) -> StreamingJob:
    """The bars job on the test's topics, with a short watermark so a gap's minutes close soon."""
    args = ["--trades-topic", topics.trades, "--bars-topic", topics.bars, "--gaps-topic", topics.gaps,
            "--watermark", "10 seconds", "--trigger", "1 second",
            "--checkpoint", str(tmp_path / "checkpoints")]  # fmt: skip
    return StreamingJob("bars_job", args, stack_env)


def assert_same_bars(stored: dict[tuple[str, int], dict], reference: dict[tuple[str, int], dict]) -> None:
    """Every reference bar is stored, field by field (sums of floats to 1e-12)."""
    for key, want in sorted(reference.items()):
        got = stored.get(key)
        assert got is not None, f"no bar for {key}"
        assert got["origin"] == "trades"
        for field in BAR_FIELDS:
            if isinstance(want[field], float):
                assert got[field] == pytest.approx(want[field], rel=1e-12), (key, field)
            else:
                assert got[field] == want[field], (key, field)


def wait_until(what: str, condition, timeout: float, job: StreamingJob) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{job.log_tail()}"
        assert job.alive(), f"the bars job died waiting for {what}:\n{job.log_tail()}"
        time.sleep(1)


@pytest.mark.timeout(900)
def test_a_socket_dropped_mid_minute_is_repaired_to_the_exact_bars_and_metrics(
    run_ingest, topics, stack_settings, stack_env, pg, tmp_path
):
    start = now_ms() - 5 * MINUTE_MS
    market = BinanceMarket(SYMBOLS, start, start + 15 * MINUTE_MS, seed=15, trades_per_minute=40, quiet_share=0)
    bars_job = start_bars_job(topics, stack_env, tmp_path)
    # One historicalTrades request (weight 25) per 10-second window: repairing three symbols at once earns 429s.
    with FakeBinanceRest(market, weight_limit=30, window_s=10) as rest, FakeBinanceStream(market) as stream:
        try:
            ingest = run_ingest(
                "binance", "--symbols", ",".join(SYMBOLS), "--no-klines", "--ws-url", stream.url,
                "--rest-url", rest.url, "--backoff-initial-ms", "200", "--backoff-max-ms", "1000", *topics.args(),
            )  # fmt: skip
            ingest.wait_for_log("subscribed to", timeout=30)
            connected_ms = now_ms()
            # Drop mid-minute, with at least one whole minute of live trades before it.
            first_full_minute = (connected_ms // MINUTE_MS + 1) * MINUTE_MS
            drop_at = first_full_minute + MINUTE_MS + 25_000
            time.sleep(max(0.0, (drop_at - now_ms()) / 1000))
            outage_start, outage_end = stream.outage(OUTAGE_S)
            ingest.wait_for_log("gap (reconnect)", timeout=OUTAGE_S + 30)

            def rebuilt() -> bool:
                # A symbol that happened not to trade while the socket was down has an 'empty' gap: nothing to rebuild.
                recorded, open_ = pg.execute(
                    "SELECT count(*), count(*) FILTER (WHERE outcome = 'repaired' AND rebuilt_at IS NULL) "
                    "FROM gaps WHERE symbol = ANY(%s)",
                    (SYMBOLS,),
                ).fetchone()
                return recorded == len(SYMBOLS) and open_ == 0

            wait_until("every symbol's gap rebuilt", rebuilt, timeout=240, job=bars_job)
            assert ingest.stop() == 0, ingest.log()[-3000:]
            counted = re.search(r"gaps [1-9]\d* repaired trades [1-9]", ingest.log())
            assert counted, "the gaps and repaired trades are counted in the rate line"
        finally:
            bars_job.stop()
        statuses = rest.statuses()
        history_requests = [s for s in rest.served if s.path == "/api/v3/historicalTrades"]

    # The REST side: the budget was hit, each 429's Retry-After was honoured, no ban was ever earned.
    assert 429 in statuses and 418 not in statuses, statuses
    for told, after in zip(history_requests, history_requests[1:], strict=False):
        if told.status == 429:
            assert after.at >= told.at + told.retry_after - 0.05, "a request came before Retry-After had passed"
    assert all(s.query.get("symbol") in SYMBOLS for s in history_requests)

    # The gaps: one per symbol, from the last trade before the drop to the first after it, repaired in full.
    gaps = pg.execute(
        "SELECT symbol, cause, outcome, first_missing_id, last_missing_id, repaired_trades, from_ts, to_ts "
        "FROM gaps WHERE symbol = ANY(%s) ORDER BY symbol",
        (SYMBOLS,),
    ).fetchall()
    assert [g[0] for g in gaps] == sorted(SYMBOLS)
    missed_window = (outage_start, outage_end)
    assert any(g[2] == "repaired" for g in gaps), "the outage must have cost some symbol trades"
    for symbol, cause, outcome, first_id, last_id, repaired, from_ts, to_ts in gaps:
        if outcome == "empty":
            assert (cause, first_id, repaired) == ("reconnect", None, 0)
            continue
        trades = market.trades(symbol)
        missed = [t for t in trades if first_id <= t.id <= last_id]
        assert (cause, outcome) == ("reconnect", "repaired")
        assert repaired == last_id - first_id + 1 == len(missed) > 0
        assert from_ts.timestamp() * 1000 <= missed_window[0] + 1_000
        assert to_ts.timestamp() * 1000 >= missed_window[1] - 1_000

    # Every whole minute from the first one after ingest connected through the gap's last one: exactly the bars of
    # the complete trade sequence, built from trades (no kline stream here).
    last_gap_minute = max(int(g[7].timestamp() * 1000) for g in gaps) // MINUTE_MS * MINUTE_MS
    complete = [t.canonical(s) for s in SYMBOLS for t in market.trades(s)]
    reference = {
        key: bar for key, bar in reference_bars(complete).items() if first_full_minute <= key[1] <= last_gap_minute
    }
    stored = stored_bars(pg, SYMBOLS)
    gap_minutes = {(s, m) for s in SYMBOLS for m in range(first_full_minute, last_gap_minute + 1, MINUTE_MS)}
    assert set(reference) == gap_minutes, "the market trades every minute"
    assert_same_bars(stored, reference)

    # The metrics of the repaired minutes (and of everything after the earliest one) are what the kernels give on
    # those exact bars.
    history = [{"symbol": s, "ts_ms": ts, **{f: b[f] for f in BAR_FIELDS}} for (s, ts), b in stored.items()]
    want_metrics = expected_metrics(history)
    got_metrics = stored_metrics(pg, SYMBOLS)
    first_gap = dt.datetime.fromtimestamp(first_full_minute / 1000, dt.UTC)
    assert_same_metrics(
        {k: v for k, v in got_metrics.items() if k[1] >= first_gap},
        {k: v for k, v in want_metrics.items() if k[1] >= first_gap},
    )


@pytest.mark.timeout(300)
def test_trades_missed_while_ingest_was_down_are_repaired_after_a_kill_9(run_ingest, topics, stack_settings, tmp_path):
    """A restart is a reconnect: ingest is killed with SIGKILL mid-stream and started again 10 s later with the same
    --state-dir. Its saved memory (each symbol's last trade Kafka acknowledged) makes the first trade after the
    restart show the gap, and the repair fills it: the trades topic then holds every trade id from the first one
    received to the last, with no hole, and the gaps topic says what was repaired."""
    from tests.ingest.conftest import read_topic

    start = now_ms() - 2 * MINUTE_MS
    symbols = SYMBOLS[:2]
    market = BinanceMarket(symbols, start, start + 10 * MINUTE_MS, seed=9, trades_per_minute=120, quiet_share=0)
    args = ["binance", "--symbols", ",".join(symbols), "--no-klines", "--backoff-initial-ms", "200",
            "--backoff-max-ms", "1000", "--state-dir", str(tmp_path / "state"), *topics.args()]  # fmt: skip
    with FakeBinanceRest(market) as rest, FakeBinanceStream(market) as stream:
        first = run_ingest(*args, "--ws-url", stream.url, "--rest-url", rest.url)
        first.wait_for_log("subscribed to", timeout=30)
        time.sleep(12)  # past a save of the feed's memory (every 5 s)
        first.kill()
        time.sleep(10)
        second = run_ingest(*args, "--ws-url", stream.url, "--rest-url", rest.url)
        second.wait_for_log("resuming from", timeout=30)
        second.wait_for_log("gap (reconnect)", timeout=60)
        time.sleep(3)
        assert second.stop() == 0, second.log()[-3000:]

    trades = read_topic(stack_settings.kafka_bootstrap, topics.trades)
    gaps = [r.value for r in read_topic(stack_settings.kafka_bootstrap, topics.gaps)]
    for symbol in symbols:
        ids = sorted({int(r.value["trade_id"]) for r in trades if r.key == symbol})
        assert ids, symbol
        assert ids == list(range(ids[0], ids[-1] + 1)), f"{symbol}: trade ids missing after the restart"
        by_id = {t.id: t.canonical(symbol) for t in market.trades(symbol)}
        for record in (r for r in trades if r.key == symbol):
            assert record.value == by_id[int(record.value["trade_id"])]
        repaired = [g for g in gaps if g["symbol"] == symbol and g["outcome"] == "repaired"]
        assert len(repaired) == 1 and repaired[0]["cause"] == "reconnect"
        gap = repaired[0]
        assert gap["repaired_trades"] == gap["last_missing_id"] - gap["first_missing_id"] + 1 >= 10 * 1  # 10 s down


@pytest.mark.timeout(600)
def test_a_trades_backfill_becomes_the_exact_bars_of_its_minutes(
    run_ingest, topics, stack_settings, stack_env, pg, tmp_path
):
    """Backfilled trades reach the bars job behind its watermark (one symbol's history after another's), so its
    lateness rule drops most of them. The backfill's gap message (cause 'backfill') makes the bars job rebuild the
    range's minutes from the topic: every bar equals the bar of the market's trades."""
    from tests.stack.streaming import produce

    now = now_ms()
    start = (now // MINUTE_MS - 30) * MINUTE_MS
    symbols = ["BFAUSDT", "BFBUSDT"]
    market = BinanceMarket(symbols, start, now + MINUTE_MS, seed=21, trades_per_minute=30, quiet_share=0.1)
    first, last = start + 2 * MINUTE_MS, (now // MINUTE_MS - 1) * MINUTE_MS  # [first, last): whole minutes
    bars_job = start_bars_job(topics, stack_env, tmp_path)
    try:
        # A live trade of another symbol first, as a running feed would have sent: the watermark is then near
        # now, and every backfilled trade arrives behind it.
        closer = {"source": "binance", "symbol": "BFCUSDT", "ts_ms": now_ms(), "price": 1.0, "size": 1.0,
                  "trade_id": "1"}  # fmt: skip
        produce(stack_settings.kafka_bootstrap, topics.trades, [("BFCUSDT", json.dumps(closer))])
        bars_job.wait_for("the live trade read", lambda: bars_job.rows_in.get("bars", 0) >= 1, timeout=300)
        with FakeBinanceRest(market) as rest:
            backfill = run_ingest(
                "backfill", "binance", "--kind", "trades", "--symbols", ",".join(symbols), "--from", str(first),
                "--to", str(last), "--rest-url", rest.url, "--state-dir", str(tmp_path / "state"), *topics.args(),
            )  # fmt: skip
            assert backfill.wait(120) == 0, backfill.log()[-3000:]

        def rebuilt() -> bool:
            return pg.execute(
                "SELECT count(*) FROM gaps WHERE symbol = ANY(%s) AND cause = 'backfill' AND rebuilt_at IS NOT NULL",
                (symbols,),
            ).fetchone()[0] == len(symbols)

        wait_until("both symbols' backfilled minutes rebuilt", rebuilt, timeout=240, job=bars_job)
        assert bars_job.late_dropped.get("bars", 0) > 0, (
            "the lateness rule dropped backfilled trades: the rebuild mattered"
        )
    finally:
        bars_job.stop()

    complete = [t.canonical(s) for s in symbols for t in market.trades_between(s, first, last)]
    reference = reference_bars(complete)
    stored = stored_bars(pg, symbols)
    assert set(stored) == set(reference), "a bar for every minute that traded in the range, and no other"
    assert_same_bars(stored, reference)
    counted = pg.execute("SELECT sum(gaps) FROM gaps_by_symbol WHERE symbol = ANY(%s)", (symbols,)).fetchone()[0]
    assert counted == 0, "a backfill lost nothing: it is no gap"
