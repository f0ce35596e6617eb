"""Every source through the whole pipeline, at once, on the real broker, cluster and database: the wire-level fake
of each provider serves payloads captured from the real service (tests/e2e/tapes.py), `sparktrends-ingest` reads
them, the Spark jobs turn them into bars_1m, metrics_1m, companies and the alert outbox, and the alerter posts to a
fake Slack. Each test asserts the exact rows one source must have produced, computed independently from what its
fake sent (tests/bars_reference.py, the kernels on the expected bars).

    Binance     trades and closed klines (one trade withheld from the socket: the kline is the bar of record,
                and the trade-built bar's disagreement is recorded in bar_agreement)
    Finnhub     trade frames with condition codes (no trade ids) and a company profile
    Twelve Data REST 1-minute bars (backfill, then polls) and WebSocket price ticks for the same symbol
    replay      trades as CSV and Parquet, with and without trade ids (one file replayed twice at once), and a
                Parquet file of bars with a price jump that raises an alert
    synthetic   the seeded market, live
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import os
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from confluent_kafka import Consumer, TopicPartition

from sparktrends import contract
from tests import bars_reference
from tests.e2e import tapes
from tests.e2e.conftest import Pipeline
from tests.ingest.conftest import read_topic
from tests.ingest.fakes import FakeHttpServer, FakeWebSocketServer, HttpRequest, WsConnection
from tests.stack.metrics_checks import assert_same_metrics, expected_metrics, stored_metrics
from tests.stack.streaming import produce

REPO = Path(__file__).resolve().parents[2]
MINUTE = 60_000
# The sources' data spans WINDOW ms and ends on a minute boundary, so its last bar closes as the window does.
WINDOW = 130_000
LEAD = 20_000  # time for every ingest process to connect before the window opens
FINNHUB_KEY = "fh-e2e-0b1c"
TWELVE_DATA_KEY = "td-e2e-9a8b"
NEW_YORK = ZoneInfo("America/New_York")

BINANCE = "BTCUSDT"
# AAPL for its profile: its prints are left out, AAPL's bars are Twelve Data's here.
FINNHUB_SYMBOLS = ["TSLA", "XOM", "GOOG", "CLOV", "BINANCE:BTCUSDT", "AAPL"]
TWELVE_DATA = "AAPL"
REPLAY_TRADES = {"XBT.CSVID": ("csv", True), "XBT.CSVNOID": ("csv", False), "XBT.PQID": ("parquet", True),
                 "XBT.PQNOID": ("parquet", False)}  # fmt: skip
REPLAYED_TWICE = "XBT.CSVNOID"
REPLAY_BARS = "XBTUSDT.KRAKEN"
SYNTHETIC = "SYNE2E"


def now_ms() -> int:
    return int(time.time() * 1000)


async def until(ms: int) -> None:
    """Sleep until the wall clock reads `ms`."""
    await asyncio.sleep(max(0.0, (ms - now_ms()) / 1000))


class Feed:
    """A provider's scheduled frames, played on whichever connection is current: a reconnect resumes where the
    previous connection stopped, as the real service's stream would. Between frames the connection is kept alive
    the way the provider does it (`keepalive`, every `every_ms`), so ingest's silence watchdog never fires
    while the test waits for its window."""

    def __init__(self, events: list[tuple[int, str]], keepalive: Callable[[WsConnection], Any], every_ms: int) -> None:
        self.events = sorted(events, key=lambda e: e[0])
        self.sent = 0
        self.keepalive = keepalive
        self.every_ms = every_ms

    async def play(self, conn: WsConnection) -> None:
        from websockets.exceptions import ConnectionClosed

        assert conn.ws is not None
        next_keepalive = now_ms() + self.every_ms
        try:
            while True:
                due = self.events[self.sent][0] if self.sent < len(self.events) else None
                if due is None or next_keepalive < due:
                    await until(next_keepalive)
                    await self.keepalive(conn)
                    next_keepalive = now_ms() + self.every_ms
                    continue
                await until(due)
                await conn.ws.send(self.events[self.sent][1])
                self.sent += 1
        except ConnectionClosed:
            return


@dataclass
class Scenario:
    start: int
    end: int
    bars: dict[tuple[str, int], dict] = field(default_factory=dict)  # the bar of record each source must leave
    built: dict[tuple[str, int], dict] = field(default_factory=dict)  # trade-built versions that must exist
    disagreeing: set[tuple[str, int]] = field(default_factory=set)
    synthetic_minutes: list[int] = field(default_factory=list)
    twelvedata_first: int | None = None  # the oldest minute the REST fake served
    twelvedata_bar_at: Callable[[int], dict] | None = None
    dead_letters: list[dict] = field(default_factory=list)
    withheld_binance_id: int | None = None  # the trade the Binance socket never sent: a gap in its ids
    synthetic_metrics: str = ""  # the synthetic market's Prometheus endpoint


def window_start() -> int:
    """The window ends on a whole minute at least LEAD + WINDOW from now."""
    end = math.ceil((now_ms() + LEAD + WINDOW) / MINUTE) * MINUTE
    return end - WINDOW


# ---------------------------------------------------------------------------------------------------- Binance


def binance(scenario: Scenario, pipeline: Pipeline, ingest_binary: Path) -> Callable[[], None]:
    trades = tapes.binance_trades(scenario.start, WINDOW)
    withheld = trades[len(trades) // 2]
    by_minute: dict[int, list[tapes.BinanceTrade]] = {}
    for t in trades:
        by_minute.setdefault(t.T // MINUTE * MINUTE, []).append(t)
    events = [(t.T, t.frame(BINANCE)) for t in trades if t is not withheld]
    events += [(m + MINUTE + 1_500, tapes.binance_kline(BINANCE, m, group)) for m, group in by_minute.items()]

    # Binance's server pings every 20 s (a protocol ping, answered by the client's pong).
    feed = Feed(events, lambda conn: conn.ws.ping(), 20_000)
    server = FakeWebSocketServer(feed.play).__enter__()
    # The withheld trade is a gap ingest finds from the ids; without a REST fake here it stays unrepaired (recorded),
    # which is what this scenario checks: tests/ingest/test_gap_repair.py repairs gaps end to end.
    pipeline.ingest(
        ingest_binary, "binance", "binance", "--symbols", BINANCE.lower(), "--ws-url", server.url, "--no-repair"
    )

    for minute, group in by_minute.items():
        kline = json.loads(tapes.binance_kline(BINANCE, minute, group))["data"]["k"]
        volume, quote = float(kline["v"]), float(kline["q"])
        scenario.bars[(BINANCE, minute)] = {
            "source": "binance", "open": float(kline["o"]), "high": float(kline["h"]), "low": float(kline["l"]),
            "close": float(kline["c"]), "volume": volume, "trades": kline["n"], "vwap": quote / volume,
            "taker_buy_volume": float(kline["V"]), "first_trade_id": kline["f"], "last_trade_id": kline["L"],
            "origin": "provider",
        }  # fmt: skip
    sent = [
        {"source": "binance", "symbol": BINANCE, "ts_ms": t.T, "price": float(t.p), "size": float(t.q),
         "trade_id": str(t.t), "side": "sell" if t.m else "buy"}
        for t in trades if t is not withheld
    ]  # fmt: skip
    scenario.built.update(bars_reference.bars(sent))
    scenario.disagreeing.add((BINANCE, withheld.T // MINUTE * MINUTE))
    scenario.withheld_binance_id = withheld.t
    return lambda: server.__exit__(None, None, None)


# ---------------------------------------------------------------------------------------------------- Finnhub


def finnhub(scenario: Scenario, pipeline: Pipeline, ingest_binary: Path) -> Callable[[], None]:
    frames = tapes.finnhub_frames(scenario.start, WINDOW, skip_symbols={TWELVE_DATA})
    control = [json.loads(line) for line in (tapes.WIRE / "finnhub" / "control_frames.jsonl").read_text().splitlines()]
    events = [*frames, *[(scenario.start + 30_000 * (i + 1), frame) for i, frame in enumerate(control)]]
    ping = json.dumps(control[0])  # Finnhub pings with a JSON frame, {"type":"ping"}
    feed = Feed([(when, json.dumps(frame)) for when, frame in events], lambda conn: conn.ws.send(ping), 20_000)

    async def script(conn: WsConnection) -> None:
        for _ in FINNHUB_SYMBOLS:
            await conn.recv_json(timeout=30)
        await feed.play(conn)

    profile = (tapes.WIRE / "finnhub" / "profile2_AAPL.json").read_text()
    empty = (tapes.WIRE / "finnhub" / "profile2_empty.json").read_text()

    def rest(request: HttpRequest, earlier: list[HttpRequest]) -> tuple[int, dict[str, str], str]:
        if request.headers.get("x-finnhub-token") != FINNHUB_KEY:
            return 401, {}, '{"error":"Invalid API key"}'
        return 200, {}, profile if request.query.get("symbol") == "AAPL" else empty

    ws, http = FakeWebSocketServer(script).__enter__(), FakeHttpServer(rest).__enter__()
    pipeline.ingest(
        ingest_binary, "finnhub", "finnhub", "--symbols", ",".join(FINNHUB_SYMBOLS), "--ws-url", ws.url,
        "--rest-url", http.url, "--rest-per-minute", "600", env={"FINNHUB_API_KEY": FINNHUB_KEY},
    )  # fmt: skip
    prints = [
        {"source": "finnhub", "symbol": p["s"], "ts_ms": p["t"], "price": float(p["p"]), "size": float(p["v"]),
         "conditions": p.get("c") or None}
        for _, frame in frames for p in frame["data"]
    ]  # fmt: skip
    scenario.bars.update({key: {**bar, "origin": "trades"} for key, bar in bars_reference.bars(prints).items()})
    scenario.dead_letters.append({"source": "finnhub", "reason_code": "provider_error"})

    def stop() -> None:
        ws.__exit__(None, None, None)
        http.__exit__(None, None, None)

    return stop


# ---------------------------------------------------------------------------------------------------- Twelve Data


def twelvedata(scenario: Scenario, pipeline: Pipeline, ingest_binary: Path) -> Callable[[], None]:
    captured = tapes.twelvedata_series()
    newest = scenario.start // MINUTE * MINUTE - MINUTE  # the captured newest bar lands on this minute

    def bar_at(minute: int) -> dict:
        return captured["values"][((newest - minute) // MINUTE) % len(captured["values"])]

    def rest(request: HttpRequest, earlier: list[HttpRequest]) -> tuple[int, dict[str, str], str]:
        if request.headers.get("authorization") != f"apikey {TWELVE_DATA_KEY}":
            return 200, {}, '{"code":401,"message":"**apikey** parameter is incorrect","status":"error"}'
        size = int(request.query["outputsize"])
        # The API also returns the minute still forming, newest first; this market closes with the window.
        forming = min(now_ms() // MINUTE * MINUTE, scenario.end - MINUTE)
        minutes = [forming - i * MINUTE for i in range(size)]
        if scenario.twelvedata_first is None:
            scenario.twelvedata_first = minutes[-1]
        values = [
            {**bar_at(m), "datetime": dt.datetime.fromtimestamp(m / 1000, NEW_YORK).strftime("%Y-%m-%d %H:%M:%S")}
            for m in minutes
        ]
        return 200, {}, json.dumps({"meta": captured["meta"], "values": values, "status": "ok"})

    subscribed = json.loads((tapes.WIRE / "twelvedata" / "ws_control_frames.jsonl").read_text().splitlines()[0])
    template = json.loads((tapes.WIRE / "twelvedata" / "ws_price_events.jsonl").read_text().splitlines()[1])

    events, day_volume = [], template["day_volume"]
    for i, at in enumerate(range(scenario.start, scenario.end, 4_000)):
        day_volume += 1_000 + 37 * i
        price = float(bar_at(at // MINUTE * MINUTE)["close"]) + (i % 3 - 1) * 0.01
        event = {**template, "symbol": TWELVE_DATA, "timestamp": at // 1000, "price": price, "day_volume": day_volume}
        events.append((at, json.dumps(event)))
    # The server answers the client's heartbeats; the fake sends its captured answer on the same 10 s beat.
    heartbeat = (tapes.WIRE / "twelvedata" / "ws_control_frames.jsonl").read_text().splitlines()[2]
    feed = Feed(events, lambda conn: conn.ws.send(heartbeat), 10_000)

    async def script(conn: WsConnection) -> None:
        await conn.recv_json(timeout=30)
        await conn.ws.send(json.dumps(subscribed))
        await feed.play(conn)

    scenario.twelvedata_bar_at = bar_at
    http, ws = FakeHttpServer(rest).__enter__(), FakeWebSocketServer(script).__enter__()
    pipeline.ingest(
        ingest_binary, "twelvedata", "twelvedata", "--symbols", TWELVE_DATA, "--rest-url", http.url,
        "--ws-url", ws.url, "--backfill-bars", "30", "--poll-interval", "5", "--rate-limit-per-minute", "600",
        "--state-dir", str(pipeline.logs / "ingest-state"),  # a fresh cursor: this run backfills
        env={"TWELVE_DATA_API_KEY": TWELVE_DATA_KEY},
    )  # fmt: skip

    def stop() -> None:
        http.__exit__(None, None, None)
        ws.__exit__(None, None, None)

    return stop


def twelvedata_expectations(scenario: Scenario, bar_at: Callable[[int], dict]) -> None:
    """Every minute the REST fake serves, from its first answer to the window's end, is a provider bar of record:
    each is served again once it has closed, and ingest sends closed bars only."""
    assert scenario.twelvedata_first is not None, "the REST fake was never asked"
    for minute in range(scenario.twelvedata_first, scenario.end, MINUTE):
        value = bar_at(minute)
        scenario.bars[(TWELVE_DATA, minute)] = {
            "source": "twelvedata", **{k: float(value[k]) for k in ("open", "high", "low", "close", "volume")},
            "trades": None, "vwap": None, "origin": "provider",
        }  # fmt: skip


# ---------------------------------------------------------------------------------------------------- replay


def replay(scenario: Scenario, pipeline: Pipeline, ingest_binary: Path, tmp: Path) -> Callable[[], None]:
    tape = tapes.kraken_trades()
    files = []
    for i, (symbol, (fmt, with_ids)) in enumerate(REPLAY_TRADES.items()):
        part = tape[i * 40 : (i + 1) * 40]
        times = tapes.squeeze([t["time"] for t in part], scenario.start, WINDOW)
        rows = [{"symbol": symbol, "ts_ms": at, "price": t["price"], "size": t["size"], "trade_id": t["trade_id"]}
                for t, at in zip(part, times, strict=True)]  # fmt: skip
        frame = pd.DataFrame(rows if with_ids else [{k: v for k, v in r.items() if k != "trade_id"} for r in rows])
        path = tmp / f"{symbol}.{fmt}"
        frame.to_csv(path, index=False) if fmt == "csv" else pq.write_table(pa.Table.from_pandas(frame), path)
        files.append((symbol, path))
        sent = [{**r, "source": "replay", "trade_id": r["trade_id"] if with_ids else None} for r in rows]
        scenario.bars.update({k: {**b, "origin": "trades"} for k, b in bars_reference.bars(sent).items()})

    bars = replay_bars(scenario)
    bars_path = tmp / "bars.parquet"
    pq.write_table(pa.Table.from_pylist(bars), bars_path)
    pipeline.ingest(ingest_binary, "replay-bars", "replay", str(bars_path), "--speed", "0", "--kind", "bars")
    for bar in bars:
        scenario.bars[(REPLAY_BARS, bar["ts_ms"])] = {
            **{k: v for k, v in bar.items() if k not in ("symbol", "ts_ms")}, "source": "replay", "origin": "provider",
        }  # fmt: skip

    def launch() -> None:
        # Replays pace by the files' own times, which start at the window: launched as it opens, they are live.
        time.sleep(max(0.0, (scenario.start - now_ms()) / 1000))
        for symbol, path in files:
            for copy in range(2 if symbol == REPLAYED_TWICE else 1):
                pipeline.ingest(ingest_binary, f"replay-{symbol}-{copy}", "replay", str(path), "--speed", "1")

    threading.Thread(target=launch, daemon=True).start()
    return lambda: None


def replay_bars(scenario: Scenario) -> list[dict]:
    """120 real 1-minute bars (Kraken XBT/USDT, tests/fixtures/wire/kraken) ending the minute before the window,
    with a 5 % level shift 6 bars from the end: a price jump the detector must alert. It is recent enough to be news
    (docs/alerts.md: within alert_live_window() of its bar's close); anomalies of the older bars are history."""
    series = tapes.kraken_ohlc()[300:420]
    last = scenario.start // MINUTE * MINUTE - MINUTE
    bars = []
    for i, bar in enumerate(series):
        shift = 1.05 if i >= len(series) - 6 else 1.0
        prices = {k: bar[k] * shift for k in ("open", "high", "low", "close")}
        vwap = bar["vwap"] * shift if bar["vwap"] else None
        ts_ms = last - (len(series) - 1 - i) * MINUTE
        bars.append({"symbol": REPLAY_BARS, "ts_ms": ts_ms, **prices, "volume": bar["volume"],
                     "trades": bar["trades"], "vwap": vwap})  # fmt: skip
    return bars


# ---------------------------------------------------------------------------------------------------- synthetic


def synthetic(scenario: Scenario, pipeline: Pipeline, ingest_binary: Path) -> Callable[[], None]:
    from tests.browser import free_port

    address = f"127.0.0.1:{free_port()}"
    scenario.synthetic_metrics = f"http://{address}/metrics"
    pipeline.ingest(ingest_binary, "synthetic", "synthetic", "--symbols", SYNTHETIC, "--seed", "9", "--speed", "1",
                    "--metrics-address", address)  # fmt: skip
    first = scenario.start // MINUTE * MINUTE + MINUTE
    scenario.synthetic_minutes = list(range(first, scenario.end, MINUTE))
    return lambda: None


def topic_trades(bootstrap: str, topic: str, symbol: str) -> list[dict]:
    """Every trade of `symbol` on the trades topic, in offset order (one partition holds a symbol), a trade
    batch's in its order."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"e2e-{time.monotonic_ns()}",
                         "enable.auto.commit": False})  # fmt: skip
    try:
        out = []
        for partition in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            consumer.assign([TopicPartition(topic, partition, low)])
            while low < high:
                msg = consumer.poll(5)
                assert msg is not None, f"{topic}[{partition}] stalled at {low} of {high}"
                low = msg.offset() + 1
                if msg.key() == symbol.encode():
                    out += contract.messages_in(msg.value())
        return out
    finally:
        consumer.close()


# ---------------------------------------------------------------------------------------------------- the run


@pytest.fixture(scope="module")
def scenario(pipeline: Pipeline, ingest_binary, stack_settings, tmp_path_factory) -> Scenario:
    start = window_start()
    run = Scenario(start=start, end=start + WINDOW)
    tmp = tmp_path_factory.mktemp("e2e-sources")
    stops = [
        binance(run, pipeline, ingest_binary),
        finnhub(run, pipeline, ingest_binary),
        twelvedata(run, pipeline, ingest_binary),
        replay(run, pipeline, ingest_binary, tmp),
        synthetic(run, pipeline, ingest_binary),
    ]
    poison = [("POISON", b"\x00\x01poison"), ("BAD", json.dumps({"source": "x", "symbol": "BAD\u0000", "ts_ms": start,
              "price": 1.0, "size": 1.0}).encode())]  # fmt: skip
    produce(stack_settings.kafka_bootstrap, pipeline.topics.trades, poison)
    try:
        # The last minute closes with the window; its bars leave once the watermark passes, and REST polls
        # pick up the last REST bars within the poll interval.
        time.sleep(max(0.0, (run.end - now_ms()) / 1000) + 5)
        assert run.twelvedata_bar_at is not None
        twelvedata_expectations(run, run.twelvedata_bar_at)
        synthetic_trades = topic_trades(stack_settings.kafka_bootstrap, pipeline.topics.trades, SYNTHETIC)
        synthetic_bars = bars_reference.bars(synthetic_trades)
        for minute in run.synthetic_minutes:
            run.bars[(SYNTHETIC, minute)] = {**synthetic_bars[(SYNTHETIC, minute)], "origin": "trades"}
        wait_for_rows(pipeline, run, timeout=240)
        wait_for_alerts(pipeline, timeout=120)
    finally:
        for stop in stops:
            stop()
    return run


def db(pipeline: Pipeline):
    import psycopg

    env = pipeline.env
    return psycopg.connect(host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"], user=env["POSTGRES_USER"],
                           password=env["POSTGRES_PASSWORD"], dbname=env["POSTGRES_DB"], autocommit=True)  # fmt: skip


def wait_for_rows(pipeline: Pipeline, run: Scenario, timeout: float) -> None:
    """Until every expected bar of record is in bars_1m with a metrics row."""
    deadline = time.monotonic() + timeout
    wanted = {(s, dt.datetime.fromtimestamp(ts / 1000, dt.timezone.utc)) for s, ts in run.bars}
    with db(pipeline) as conn:
        while True:
            have = set(conn.execute("SELECT b.symbol, b.ts FROM bars_1m b JOIN metrics_1m m USING (symbol, ts)"))
            missing = wanted - have
            if not missing:
                return
            for job in pipeline.jobs.values():
                assert job.proc.poll() is None, f"{job.name} died:\n{job.log_tail()}"
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(missing)} bars never landed, e.g. {sorted(missing)[:8]}")
            time.sleep(1)


def wait_for_alerts(pipeline: Pipeline, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with db(pipeline) as conn:
        while conn.execute("SELECT count(*) FROM anomalies WHERE status = 'pending'").fetchone()[0]:
            assert time.monotonic() < deadline, "anomalies still pending"
            time.sleep(0.5)


# ---------------------------------------------------------------------------------------------------- asserts


def stored_bars(pipeline: Pipeline, symbols: list[str], table: str = "bars_1m", origin: str | None = None) -> dict:
    columns = ["symbol", "ts_ms", "source", "open", "high", "low", "close", "volume", "trades", "vwap",
               "taker_buy_volume", "first_trade_id", "last_trade_id", "origin"]  # fmt: skip
    select = ", ".join("(extract(epoch FROM ts) * 1000)::bigint" if c == "ts_ms" else c for c in columns)
    with db(pipeline) as conn:
        rows = conn.execute(
            f"SELECT {select} FROM {table} WHERE symbol = ANY(%s) AND (%s::text IS NULL OR origin = %s)",
            (symbols, origin, origin),
        ).fetchall()
    return {(r[0], r[1]): dict(zip(columns, r)) for r in rows}


def assert_bars(got: dict, want: dict, keys: list[tuple[str, int]] | None = None) -> None:
    keys = keys if keys is not None else sorted(k for k in want)
    missing = [k for k in keys if k not in got]
    assert not missing, f"missing bars {missing[:5]}"
    for key in keys:
        for column, value in want[key].items():
            stored = got[key][column]
            if isinstance(value, float):
                assert stored == pytest.approx(value, rel=1e-12), (key, column, stored, value)
            else:
                assert stored == value, (key, column, stored, value)


def symbols_of(run: Scenario, *symbols: str) -> dict:
    return {k: v for k, v in run.bars.items() if k[0] in symbols}


def test_binance_klines_are_the_bars_of_record_and_the_trades_a_second_opinion(pipeline, scenario):
    want = symbols_of(scenario, BINANCE)
    got = stored_bars(pipeline, [BINANCE])
    assert set(got) == set(want)
    assert_bars(got, want)
    built = stored_bars(pipeline, [BINANCE], "bar_versions", origin="trades")
    assert set(built) == set(scenario.built)
    assert_bars(built, scenario.built)
    with db(pipeline) as conn:
        verdicts = {
            (s, int(ts.timestamp() * 1000)): (agrees, mismatches)
            for s, ts, agrees, mismatches in conn.execute(
                "SELECT symbol, ts, agrees, mismatches FROM bar_agreement WHERE symbol = %s", (BINANCE,)
            )
        }
    assert set(verdicts) == set(want)
    for key, (agrees, mismatches) in verdicts.items():
        if key in scenario.disagreeing:
            # One trade withheld from the socket: fewer trades, less volume, a gap in the ids.
            assert not agrees and {"trades", "volume"} <= set(mismatches), (key, mismatches)
        else:
            assert agrees, (key, mismatches)
    # Ingest saw the hole in the ids and recorded it (repair off in this scenario).
    with db(pipeline) as conn:
        gaps = conn.execute(
            "SELECT cause, outcome, first_missing_id, last_missing_id FROM gaps WHERE symbol = %s", (BINANCE,)
        ).fetchall()
    withheld = scenario.withheld_binance_id
    assert gaps == [("trade_id_jump", "unrepairable", withheld, withheld)]


def test_finnhub_prints_become_bars_by_the_condition_rule(pipeline, scenario):
    symbols = [s for s in FINNHUB_SYMBOLS if s != TWELVE_DATA]
    want = symbols_of(scenario, *symbols)
    assert len(want) >= 4, "the captured frames cover several symbols and minutes"
    got = stored_bars(pipeline, symbols)
    assert set(got) == set(want)
    assert_bars(got, want)


def test_finnhub_profile_becomes_a_company_and_provider_errors_are_dead_letters(pipeline, scenario, stack_settings):
    profile = json.loads((tapes.WIRE / "finnhub" / "profile2_AAPL.json").read_text())
    with db(pipeline) as conn:
        rows = conn.execute(
            "SELECT symbol, name, exchange, currency, sector, industry, source FROM companies"
        ).fetchall()
    assert rows == [("AAPL", profile["name"], profile["exchange"], profile["currency"], None,
                     profile["finnhubIndustry"], "finnhub")]  # fmt: skip
    letters = [r.value for r in read_topic(stack_settings.kafka_bootstrap, pipeline.topics.deadletter)]
    for want in scenario.dead_letters:
        assert any(all(letter[k] == v for k, v in want.items()) for letter in letters), (want, letters)


def test_twelvedata_rest_bars_win_over_the_bars_its_ticks_build(pipeline, scenario):
    want = symbols_of(scenario, TWELVE_DATA)
    assert len(want) >= 32, "30 bars of backfill and the window's minutes"
    got = stored_bars(pipeline, [TWELVE_DATA])
    assert set(got) == set(want)
    assert_bars(got, want)
    ticks = stored_bars(pipeline, [TWELVE_DATA], "bar_versions", origin="trades")
    window_minutes = {m for m in range(scenario.start // MINUTE * MINUTE, scenario.end, MINUTE)}
    assert {ts for _, ts in ticks} == window_minutes, "every minute of ticks built a bar"
    assert all(b["trades"] is None and b["source"] == "twelvedata" for b in ticks.values()), "ticks are not trades"


def test_replayed_trades_with_and_without_ids_become_exact_bars(pipeline, scenario):
    symbols = list(REPLAY_TRADES)
    want = symbols_of(scenario, *symbols)
    assert {s for s, _ in want} == set(symbols)
    got = stored_bars(pipeline, symbols)
    assert set(got) == set(want)
    # XBT.CSVNOID was replayed by two processes at once: ingest's derived ids made the copies duplicates.
    assert_bars(got, want)
    assert all(b["first_trade_id"] is None for (s, _), b in got.items() if s.endswith("NOID"))


def test_replayed_bars_and_the_synthetic_market(pipeline, scenario):
    want = symbols_of(scenario, REPLAY_BARS, SYNTHETIC)
    got = stored_bars(pipeline, [REPLAY_BARS, SYNTHETIC])
    assert_bars(got, want)
    assert {k for k in got if k[0] == REPLAY_BARS} == {k for k in want if k[0] == REPLAY_BARS}


def test_metrics_of_every_source_equal_the_kernels_on_the_expected_bars(pipeline, scenario):
    symbols = sorted({s for s, _ in scenario.bars} - {SYNTHETIC})
    bars = [{"symbol": s, "ts_ms": ts, **bar} for (s, ts), bar in scenario.bars.items() if s != SYNTHETIC]
    with db(pipeline) as conn:
        assert_same_metrics(stored_metrics(conn, symbols), expected_metrics(bars))


def test_every_anomaly_is_in_the_outbox_once_and_alerted(pipeline, scenario):
    bars = [{"symbol": s, "ts_ms": ts, **bar} for (s, ts), bar in scenario.bars.items() if s != SYNTHETIC]
    expected = {
        (symbol, ts, kind)
        for (symbol, ts), row in expected_metrics(bars).items()
        if row["is_anomaly"]
        for kind in row["anomaly_kinds"].split(",")
    }
    assert any(s == REPLAY_BARS for s, _, _ in expected), "the injected jump must be an anomaly"
    with db(pipeline) as conn:
        rows = conn.execute(
            "SELECT symbol, ts, kind, status, coalesce(delivery_note, ''), "
            "ts + interval '1 minute' < detected_at - alert_live_window() AS history "
            "FROM anomalies WHERE symbol <> %s",
            (SYNTHETIC,),
        ).fetchall()
    found = {(s, ts, k): (status, note, history) for s, ts, k, status, note, history in rows}
    current = {key: value for key, value in found.items() if not value[1].startswith("withdrawn")}
    assert set(current) == expected, "one outbox row per anomaly of the final bars (others withdrawn before alerting)"
    assert len(rows) == len(found)
    # News is alerted; an anomaly of a bar that closed longer than the live window before it was found (the
    # replayed history) is recorded, never posted (docs/alerts.md).
    news = {key for key, (_, _, history) in current.items() if not history}
    assert {status for key, (status, _, _) in current.items() if key in news} <= {"delivered", "suppressed"}
    for key, (status, note, history) in current.items():
        if history:
            assert status == "recorded" and note.startswith("recorded, not posted"), (key, status, note)
    assert any(s == REPLAY_BARS for s, _, _ in news), "the injected jump is recent: it must be alerted"
    posted = {post.payload["text"].split()[1] for post in pipeline.slack.snapshot()}
    assert {s for s, _, _ in news} <= posted


def test_poison_is_rejected_with_its_code_and_the_stream_goes_on(pipeline, scenario):
    with db(pipeline) as conn:
        rejected = conn.execute("SELECT source, reason_code FROM rejected_messages").fetchall()
    # The two poison messages, nothing else: every bar a job built, or a source sent, passed admission.
    assert sorted(rejected) == [("bars_job", "invalid_symbol"), ("bars_job", "malformed_json")]
    assert pipeline.jobs["bars"].proc.poll() is None, "the bars job is still running"


# ---------------------------------------------------------------------------------------------------- dashboard


@pytest.fixture(scope="module")
def dashboard(pipeline: Pipeline, scenario) -> Iterator[str]:
    """The read API and dashboard (dashboard/server.py, as `make run` starts it) on this pipeline's database."""
    from services import ProcessService
    from tests.browser import free_port

    port = free_port()
    server = ProcessService("dashboard", [sys.executable, "-m", "dashboard.server", "--port", str(port)],
                            log_path=pipeline.logs / "dashboard.log", cwd=REPO)  # fmt: skip
    server.start(pipeline.env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1)
            break
        except OSError:
            assert server.alive() and time.monotonic() < deadline, pipeline.log("dashboard")
            time.sleep(0.2)
    try:
        yield url
    finally:
        server.stop()


def screenshot_dir(pipeline: Pipeline) -> Path:
    """Where the browser test leaves its screenshots: SPARKTRENDS_SCREENSHOTS (the README's come from there), else
    beside the pipeline's logs."""
    return Path(os.environ.get("SPARKTRENDS_SCREENSHOTS") or pipeline.logs / "screenshots")


def test_the_dashboard_shows_what_postgresql_holds_in_a_real_browser(pipeline, scenario, dashboard):
    from tests.browser import Browser

    shots = screenshot_dir(pipeline)
    with db(pipeline) as conn:
        stored = {
            symbol: conn.execute(
                "SELECT extract(epoch FROM ts)::bigint, open, high, low, close FROM bars_1m WHERE symbol = %s "
                "AND ts > (SELECT max(ts) FROM bars_1m WHERE symbol = %s) - interval '1 day' ORDER BY ts",
                (symbol, symbol),
            ).fetchall()
            for symbol in (REPLAY_BARS,)
        }
        jump_marks = {int(ts.timestamp()) for (ts,) in conn.execute(
            "SELECT ts FROM anomalies WHERE symbol = %s", (REPLAY_BARS,))}  # fmt: skip
        symbols = [s for (s,) in conn.execute("SELECT DISTINCT symbol FROM bars_1m ORDER BY symbol")]
        anomalies = conn.execute("SELECT count(*) FROM anomalies").fetchone()[0]
    assert jump_marks, "the replayed bars' injected jump is an anomaly (test_every_anomaly_is_in_the_outbox_...)"
    with Browser() as browser:
        ready = "window.sparktrends && window.sparktrends.ready && window.sparktrends.page === '{}'"
        # A page is the one asked for once its own symbol and timeframe say so (a hash change swaps pages in place).
        symbol_page = ready.format("symbol") + " && window.sparktrends.symbol === '{}'"
        symbol_page += " && window.sparktrends.tf === '{}'"
        # The symbol page: the chart holds exactly the bars PostgreSQL holds, with the anomaly's marker on its bar.
        browser.open(f"{dashboard}/#/symbol/{REPLAY_BARS}/1m")
        browser.wait_for(symbol_page.format(REPLAY_BARS, "1m"))
        charted = browser.evaluate(
            "window.sparktrends.candles.data().map(d => [d.time, d.open, d.high, d.low, d.close])"
        )
        assert charted == [list(row) for row in stored[REPLAY_BARS]]
        assert {m["time"] for m in browser.evaluate("window.sparktrends.markers")} == jump_marks
        browser.screenshot(shots / "symbol.png")
        # Another timeframe: the 5-minute candles are the rollup of those minutes.
        browser.open(f"{dashboard}/#/symbol/{REPLAY_BARS}/5m")
        browser.wait_for(symbol_page.format(REPLAY_BARS, "5m"))
        five = browser.evaluate("window.sparktrends.candles.data().map(d => [d.time, d.high, d.low])")
        for start, high, low in five:
            inside = [row for row in stored[REPLAY_BARS] if start <= row[0] < start + 300]
            assert (high, low) == (max(r[2] for r in inside), min(r[3] for r in inside)), start
        # A live page: the synthetic market is still running; its next bar is pushed once its metrics row commits.
        browser.open(f"{dashboard}/#/symbol/{SYNTHETIC}/1m")
        browser.wait_for(symbol_page.format(SYNTHETIC, "1m"))
        first = browser.evaluate("window.sparktrends.candles.data().map(d => [d.time, d.open, d.high, d.low, d.close])")
        with db(pipeline) as conn:
            rows = conn.execute(
                "SELECT extract(epoch FROM ts)::bigint, open, high, low, close FROM bars_1m WHERE symbol = %s "
                "AND ts <= to_timestamp(%s) ORDER BY ts",
                (SYNTHETIC, first[-1][0]),
            ).fetchall()
        assert first == [list(row) for row in rows]
        pushed = browser.wait_for("window.sparktrends.lastPush", timeout=150)
        with db(pipeline) as conn:
            for t in pushed["bars"]:
                row = conn.execute("SELECT 1 FROM metrics_1m WHERE symbol = %s AND ts = to_timestamp(%s)",
                                   (SYNTHETIC, t)).fetchone()  # fmt: skip
                assert row, f"a pushed bar ({t}) has its metrics row"
        assert browser.evaluate("window.sparktrends.candles.data().at(-1).time") == max(pushed["bars"])
        assert not browser.evaluate("window.sparktrends.error"), "the live update ran without an error"
        # The watchlist, the alerts and the pipeline's health.
        browser.open(f"{dashboard}/#/")
        listed = browser.wait_for(ready.format("watchlist") + " && window.sparktrends.symbols.map(s => s.symbol)")
        assert sorted(listed) == symbols
        browser.screenshot(shots / "watchlist.png")
        browser.open(f"{dashboard}/#/alerts")
        assert browser.wait_for(ready.format("alerts") + " && window.sparktrends.anomalies") == anomalies
        browser.screenshot(shots / "alerts.png")
        browser.open(f"{dashboard}/#/pipeline")
        rate = browser.wait_for(ready.format("pipeline") + " && window.sparktrends.tradesPerSecond")
        assert rate > 0, "trades of the last 10 minutes are in bars"
        jobs = browser.evaluate("window.sparktrends.jobs")
        bars_query = [j for j in jobs if j["job"] == "sparktrends-bars" and j["query"] == "bars"]
        assert bars_query and bars_query[0]["batches"] > 0 and bars_query[0]["rowsIn"] > 0, jobs
        browser.screenshot(shots / "pipeline.png")
    for page in ("symbol", "watchlist", "alerts", "pipeline"):
        assert (shots / f"{page}.png").stat().st_size > 10_000, page


def scrape(url: str) -> dict[str, float]:
    """A Prometheus endpoint's samples by series (name and labels as written)."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            samples[series] = float(value)
    return samples


def test_every_component_exports_prometheus_metrics(pipeline, scenario, dashboard):
    import re

    ingest = scrape(scenario.synthetic_metrics)
    assert ingest['sparktrends_ingest_messages_total{kind="trade"}'] > 0
    # A trade batch is one message holding many trades (a quiet symbol's batch of one, the trade itself).
    assert ingest["sparktrends_ingest_trades_total"] >= ingest['sparktrends_ingest_messages_total{kind="trade"}']
    assert ingest["sparktrends_ingest_delivered_total"] > 0
    alerter = scrape(pipeline.alerter_metrics)
    assert alerter["sparktrends_alerter_sent_total"] >= 1, "the injected jump was posted"
    api = scrape(f"{dashboard}/metrics")
    assert api['sparktrends_rejects_total{reason_code="malformed_json"}'] == 1
    assert api['sparktrends_alerts_total{status="delivered"}'] >= 1
    # Spark's own, from the bars job's driver: its streaming query's rates and batch latency.
    port = next(m[1] for line in pipeline.jobs["bars"].lines
                if (m := re.search(r"Successfully started service 'SparkUI' on port (\d+)", line)))  # fmt: skip
    spark = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics/prometheus/", timeout=10).read().decode()
    assert re.search(r"spark_streaming_\w*bars\w*_inputRate", spark), spark[:2000]
    assert re.search(r"spark_streaming_\w*bars\w*_latency", spark)
