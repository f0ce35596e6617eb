"""twelvedata source against local stand-ins for Twelve Data's REST time_series and WebSocket price stream."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.ingest.conftest import now_ms, read_topic, wait_for_records
from tests.ingest.fakes import FakeHttpServer, FakeWebSocketServer, HttpRequest, WsConnection, hold

KEY = "td-test-key-55e0a"
NEW_YORK = ZoneInfo("America/New_York")


def open_price(ts_ms: int) -> float:
    """A price that encodes the bar's UTC minute, so a wrong time-zone conversion shows as a wrong price."""
    return round(100 + (ts_ms // 60_000) % 10_000 / 100, 2)


def series(symbol: str, outputsize: int, newest: int | None = None) -> dict:
    """The latest `outputsize` minutes up to the one still forming (or up to `newest`), newest first, in New York
    wall time."""
    current = now_ms() // 60_000 * 60_000 if newest is None else newest
    values = []
    for i in range(outputsize):
        ts = current - i * 60_000
        local = datetime.fromtimestamp(ts / 1000, tz=timezone.utc).astimezone(NEW_YORK)
        o = open_price(ts)
        values.append(
            {
                "datetime": local.strftime("%Y-%m-%d %H:%M:%S"),
                "open": f"{o:.5f}",
                "high": f"{o + 1:.5f}",
                "low": f"{o - 1:.5f}",
                "close": f"{o + 0.5:.5f}",
                "volume": str(1000 + i),
            }
        )
    meta = {
        "symbol": symbol,
        "interval": "1min",
        "currency": "USD",
        "exchange_timezone": "America/New_York",
        "exchange": "NASDAQ",
        "mic_code": "XNGS",
        "type": "Common Stock",
    }
    return {"meta": meta, "values": values, "status": "ok"}


def time_series(request: HttpRequest, earlier: list[HttpRequest]) -> tuple[int, dict[str, str], str]:
    if request.headers.get("authorization") != f"apikey {KEY}":
        return 200, {}, json.dumps({"code": 401, "message": "apikey is incorrect", "status": "error"})
    symbol = request.query["symbol"]
    if symbol == "NOPE":
        body = {"code": 400, "message": "**symbol** not found: NOPE.", "status": "error"}
        return 200, {}, json.dumps(body)
    if symbol == "AAPL" and not earlier:
        body = {"code": 500, "message": "Internal error, please retry", "status": "error"}
        return 200, {}, json.dumps(body)
    if symbol == "MSFT" and not earlier:
        return 429, {"Retry-After": "1"}, json.dumps({"code": 429, "message": "Too many requests", "status": "error"})
    return 200, {}, json.dumps(series(symbol, int(request.query["outputsize"])))


def test_rest_backfill_incremental_errors_and_rate_limits(run_ingest, topics, stack_settings, tmp_path):
    with FakeHttpServer(time_series) as rest:
        ingest = run_ingest(
            "twelvedata",
            "--symbols",
            "AAPL,MSFT,NOPE",
            "--no-ws",
            "--rest-url",
            rest.url,
            "--state-dir",
            str(tmp_path / "state"),
            "--backfill-bars",
            "30",
            "--poll-interval",
            "1",
            "--rate-limit-per-minute",
            "600",
            *topics.args(),
            env={"TWELVE_DATA_API_KEY": KEY},
        )
        ingest.wait_for_log("backfilled 29 bar(s) for MSFT", 20)
        # Let a few incremental polls overlap the bars already sent.
        deadline = time.monotonic() + 15
        while len(rest.matching("/time_series", symbol="AAPL")) < 5 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ingest.stop() == 0, ingest.log()[-3000:]

    stop_ms = now_ms()
    bars = read_topic(stack_settings.kafka_bootstrap, topics.bars)
    for symbol in ["AAPL", "MSFT"]:
        mine = [r.value for r in bars if r.value["symbol"] == symbol]
        stamps = [b["ts_ms"] for b in mine]
        assert len(stamps) == len(set(stamps)), f"{symbol}: a bar was sent twice"
        assert stamps == sorted(stamps), f"{symbol}: bars out of order"
        assert 29 <= len(stamps) <= 31, f"{symbol}: {len(stamps)} bars"
        assert all(ts % 60_000 == 0 and ts + 60_000 <= stop_ms for ts in stamps), "closed minutes only"
        assert all(b["open"] == open_price(b["ts_ms"]) for b in mine), "New York wall time -> UTC ms"
    assert not [r for r in bars if r.value["symbol"] == "NOPE"]

    aapl = rest.matching("/time_series", symbol="AAPL")
    assert aapl[0].query["outputsize"] == "30" and aapl[1].query["outputsize"] == "30", "error is not a backfill"
    assert all(int(r.query["outputsize"]) <= 4 for r in aapl[2:]), "incremental polls ask only for the gap"
    msft = rest.matching("/time_series", symbol="MSFT")
    assert msft[1].at - msft[0].at >= 0.9, "Retry-After honoured"
    assert len(rest.matching("/time_series", symbol="NOPE")) == 1, "a 400 is not retried"
    assert all("apikey" not in r.query for r in rest.requests)

    letters = [r.value for r in read_topic(stack_settings.kafka_bootstrap, topics.deadletter)]
    reasons = [letter["reason"] for letter in letters if letter["reason_code"] == "provider_error"]
    assert any("AAPL: provider error 500" in reason for reason in reasons), letters
    assert any("NOPE: provider error 400" in reason for reason in reasons), letters
    assert any('"status": "error"' in letter["raw"] for letter in letters)
    assert KEY not in ingest.log()


MINUTE = 60_000
SYMBOLS = ["AAPL", "MSFT"]
CURSOR_FILE = "twelvedata-rest-cursor.json"


class Market:
    """A REST fake whose newest bar is the test's choice, closed and a few minutes old (inside the live window):
    moving it on between runs is "the provider now has one more bar"."""

    def __init__(self, newest: int) -> None:
        self.newest = newest

    def respond(self, request: HttpRequest, earlier: list[HttpRequest]) -> tuple[int, dict[str, str], str]:
        size = int(request.query["outputsize"])
        return 200, {}, json.dumps(series(request.query["symbol"], size, self.newest))


def run_rest(run_ingest, topics, rest: FakeHttpServer, state: Path):
    return run_ingest(
        "twelvedata",
        "--symbols",
        ",".join(SYMBOLS),
        "--no-ws",
        "--rest-url",
        rest.url,
        "--state-dir",
        str(state),
        "--backfill-bars",
        "30",
        "--poll-interval",
        "1",
        "--rate-limit-per-minute",
        "600",
        *topics.args(),
        env={"TWELVE_DATA_API_KEY": KEY},
    )


def saved_cursor(state: Path) -> dict[str, int] | None:
    path = state / CURSOR_FILE
    return json.loads(path.read_text()) if path.exists() else None


def wait_for_cursor(state: Path, newest: int, timeout: float = 20) -> None:
    expected = dict.fromkeys(SYMBOLS, newest)
    deadline = time.monotonic() + timeout
    while saved_cursor(state) != expected:
        assert time.monotonic() < deadline, f"cursor {saved_cursor(state)}, expected {expected}"
        time.sleep(0.1)


def stamps_by_symbol(bootstrap: str, topic: str) -> dict[str, Counter[int]]:
    bars = read_topic(bootstrap, topic)
    return {symbol: Counter(r.value["ts_ms"] for r in bars if r.value["symbol"] == symbol) for symbol in SYMBOLS}


def minutes(first: int, last: int) -> list[int]:
    return list(range(first, last + MINUTE, MINUTE))


def test_rest_cursor_restart_sends_only_the_new_bar(run_ingest, topics, stack_settings, tmp_path):
    state = tmp_path / "state"
    newest = now_ms() // MINUTE * MINUTE - 5 * MINUTE
    market = Market(newest)
    with FakeHttpServer(market.respond) as rest:
        first = run_rest(run_ingest, topics, rest, state)
        wait_for_cursor(state, newest)
        # A few incremental polls that find nothing new, as a long-running ingest would.
        deadline = time.monotonic() + 15
        while len(rest.matching("/time_series", symbol="AAPL")) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert first.stop() == 0, first.log()[-3000:]
    assert "backfilled 30 bar(s) for AAPL" in first.log()

    market.newest = newest + MINUTE
    with FakeHttpServer(market.respond) as rest:
        restarted_ms = now_ms()
        second = run_rest(run_ingest, topics, rest, state)
        for symbol in SYMBOLS:
            second.wait_for_log(f"resumed {symbol} after its cursor: 1 new bar(s)", 20)
        wait_for_cursor(state, newest + MINUTE)
        asked_by_ms = now_ms()
        assert second.stop() == 0, second.log()[-3000:]

    assert "resuming from the cursor in" in second.log() and "2 symbol(s), the oldest" in second.log()
    assert "backfilled" not in second.log()
    for symbol in SYMBOLS:
        resumed = rest.matching("/time_series", symbol=symbol)[0]
        # Enough minutes to reach back to the cursor (the outputsize function: minutes since it, plus 2).
        low, high = ((t - newest) // MINUTE + 2 for t in (restarted_ms, asked_by_ms))
        assert low <= int(resumed.query["outputsize"]) <= high < 30, resumed.query

    held = stamps_by_symbol(stack_settings.kafka_bootstrap, topics.bars)
    for symbol, counts in held.items():
        assert max(counts.values()) == 1, f"{symbol}: re-sent {[ts for ts, n in counts.items() if n > 1]}"
        assert sorted(counts) == minutes(newest - 29 * MINUTE, newest + MINUTE), f"{symbol}: a bar is missing"


def test_crash_between_send_and_save_resends_only_the_unsaved_bars(run_ingest, topics, stack_settings, tmp_path):
    """A directory where the cursor's temporary file goes makes every save fail after its flush succeeded: the
    bars are in Kafka, the file still names the older bar, exactly as if kill -9 landed between the two."""
    state = tmp_path / "state"
    newest = now_ms() // MINUTE * MINUTE - 6 * MINUTE
    market = Market(newest)
    with FakeHttpServer(market.respond) as rest:
        first = run_rest(run_ingest, topics, rest, state)
        wait_for_cursor(state, newest)
        assert first.stop() == 0, first.log()[-3000:]

    obstacle = state / f".{CURSOR_FILE}.tmp"
    obstacle.mkdir()
    market.newest = newest + 2 * MINUTE
    with FakeHttpServer(market.respond) as rest:
        crashing = run_rest(run_ingest, topics, rest, state)
        for symbol in SYMBOLS:
            crashing.wait_for_log(f"resumed {symbol} after its cursor: 2 new bar(s)", 20)
        deadline = time.monotonic() + 20
        while crashing.log().count("cursor not saved") < len(SYMBOLS):
            assert time.monotonic() < deadline, crashing.log()[-3000:]
            time.sleep(0.05)
        crashing.kill()
    assert saved_cursor(state) == dict.fromkeys(SYMBOLS, newest), "a failed save left the cursor as it was"

    obstacle.rmdir()
    market.newest = newest + 3 * MINUTE
    with FakeHttpServer(market.respond) as rest:
        third = run_rest(run_ingest, topics, rest, state)
        for symbol in SYMBOLS:
            third.wait_for_log(f"resumed {symbol} after its cursor: 3 new bar(s)", 20)
        wait_for_cursor(state, newest + 3 * MINUTE)
        assert third.stop() == 0, third.log()[-3000:]

    unsaved = {newest + MINUTE, newest + 2 * MINUTE}
    held = stamps_by_symbol(stack_settings.kafka_bootstrap, topics.bars)
    for symbol, counts in held.items():
        assert sorted(counts) == minutes(newest - 29 * MINUTE, newest + 3 * MINUTE), f"{symbol}: a bar is missing"
        assert {ts for ts, n in counts.items() if n > 1} == unsaved, f"{symbol}: {counts}"
        assert max(counts.values()) == 2


def test_price_stream_heartbeats_and_refused_subscriptions(run_ingest, topics, stack_settings):
    heartbeats: list[float] = []

    async def script(conn: WsConnection) -> None:
        subscribe = await conn.recv_json()
        assert subscribe == {"action": "subscribe", "params": {"symbols": "AAPL,EUR/USD"}}
        status = {
            "event": "subscribe-status",
            "status": "ok",
            "success": [{"symbol": "AAPL", "exchange": "NASDAQ", "mic_code": "XNAS", "type": "Common Stock"}],
            "fails": [{"symbol": "EUR/USD"}],
        }
        await conn.ws.send(json.dumps(status))
        for i in range(5):
            event = {
                "event": "price",
                "symbol": "AAPL",
                "currency": "USD",
                "exchange": "NASDAQ",
                "mic_code": "XNAS",
                "type": "Common Stock",
                "timestamp": now_ms() // 1000,
                "price": 190.0 + i,
                "day_volume": 1_000_000 + i,
            }
            await conn.ws.send(json.dumps(event))
        while len(heartbeats) < 2:
            message = await conn.recv_json(timeout=5)
            if message == {"action": "heartbeat"}:
                heartbeats.append(time.monotonic())
                await conn.ws.send('{"event":"heartbeat","status":"ok"}')
        await hold(conn)

    with FakeWebSocketServer(script) as server:
        ingest = run_ingest(
            "twelvedata",
            "--symbols",
            "AAPL,EUR/USD",
            "--no-rest",
            "--ws-url",
            server.url,
            "--heartbeat-interval",
            "0.5",
            *topics.args(),
            env={"TWELVE_DATA_API_KEY": KEY},
        )
        trades = wait_for_records(stack_settings.kafka_bootstrap, topics.trades, 5)
        deadline = time.monotonic() + 10
        while len(heartbeats) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ingest.stop() == 0
        assert not server.errors, server.errors

    assert server.connections[0].path == "/v1/quotes/price"
    assert server.connections[0].headers["authorization"] == f"apikey {KEY}"
    assert len(heartbeats) == 2, "heartbeats sent on schedule"
    # A tick's size is the volume since the symbol's previous tick: day_volume rose by 1 each time.
    assert [(r.value["price"], r.value["size"]) for r in trades] == [(190.0 + i, min(i, 1)) for i in range(5)]
    assert all(r.value["kind"] == "tick" for r in trades), "a price event is a tick, not a trade"
    letters = read_topic(stack_settings.kafka_bootstrap, topics.deadletter)
    assert [(r.value["reason_code"], r.value["reason"]) for r in letters] == [
        ("provider_error", "the provider answered with an error: subscription refused for EUR/USD")
    ]


def test_watchdog_is_not_fooled_by_our_own_heartbeats(run_ingest, topics):
    async def script(conn: WsConnection) -> None:
        # Reads subscriptions and heartbeats, answers nothing: a dead upstream behind a live socket.
        while True:
            await conn.recv_json(timeout=30)

    with FakeWebSocketServer(script) as server:
        ingest = run_ingest(
            "twelvedata",
            "--symbols",
            "AAPL",
            "--no-rest",
            "--ws-url",
            server.url,
            "--heartbeat-interval",
            "0.3",
            "--silence-timeout",
            "1.5",
            "--backoff-initial-ms",
            "100",
            *topics.args(),
            env={"TWELVE_DATA_API_KEY": KEY},
        )
        server.wait_connections(2, timeout=10)
        assert ingest.stop() == 0
    first = server.connections[0].received
    assert first[0].startswith('{"action":"subscribe"') and '{"action":"heartbeat"}' in first[1:]
    assert "watchdog" in ingest.log()
