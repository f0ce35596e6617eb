"""binance source against a local server speaking Binance's combined-stream format, into the real Kafka."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter, deque
from urllib.parse import urlsplit

from tests.ingest.conftest import now_ms, read_topic, wait_for_records
from tests.ingest.fakes import FakeWebSocketServer, WsConnection, hold

SYMBOLS = ["BTCUSDT", "ETHUSDT"]
PER_CONNECTION = 60
# Binance's documented limits (tests/fixtures/wire/binance/NOTES.md).
MAX_STREAMS_PER_CONNECTION = 1024
MAX_MESSAGES_PER_SECOND = 5
# A literal error frame from Binance's documented table (control_frames.jsonl).
REFUSED = '{"code": 2, "msg": "Invalid request: request ID must be an unsigned integer"}'


def trade_frame(symbol: str, trade_id: int, ts: int) -> str:
    data = {
        "e": "trade",
        "E": ts + 1,
        "s": symbol,
        "t": trade_id,
        "p": f"{100 + trade_id * 0.01:.8f}",
        "q": "0.01000000",
        "T": ts,
        "m": trade_id % 2 == 0,
        "M": True,
    }
    return json.dumps({"stream": f"{symbol.lower()}@trade", "data": data})


def kline_frame(symbol: str, start: int, closed: bool) -> str:
    k = {
        "t": start,
        "T": start + 59_999,
        "s": symbol,
        "i": "1m",
        "f": 1,
        "L": 9,
        "o": "100.0",
        "c": "101.0",
        "h": "102.0",
        "l": "99.0",
        "v": "4.0",
        "n": 9,
        "x": closed,
        "q": "402.0",
        "V": "2.0",
        "Q": "201.0",
        "B": "0",
    }
    return json.dumps(
        {"stream": f"{symbol.lower()}@kline_1m", "data": {"e": "kline", "E": start + 60_000, "s": symbol, "k": k}}
    )


def test_trades_klines_reconnect_pings_and_dead_letters(run_ingest, topics, stack_settings):
    sent: list[tuple[str, int]] = []
    pongs: list[bool] = []
    minute = now_ms() // 60_000 * 60_000 - 60_000

    async def script(conn: WsConnection) -> None:
        ws = conn.ws
        request = await conn.recv_json()
        await ws.send(json.dumps({"result": None, "id": request["id"]}))
        if conn.index == 0:
            # First connection: half the trades, a protocol ping that must be answered, then a clean close.
            for i in range(PER_CONNECTION):
                symbol = SYMBOLS[i % 2]
                await ws.send(trade_frame(symbol, i, now_ms()))
                sent.append((symbol, i))
            pong = await ws.ping()
            await asyncio.wait_for(pong, 5)
            pongs.append(True)
            await ws.close(1001, "going away")
            return
        if conn.index == 1:
            for i in range(PER_CONNECTION, 2 * PER_CONNECTION):
                symbol = SYMBOLS[i % 2]
                await ws.send(trade_frame(symbol, i, now_ms()))
                sent.append((symbol, i))
            await ws.send(kline_frame("BTCUSDT", minute, closed=False))
            await ws.send(kline_frame("BTCUSDT", minute, closed=True))
            await ws.send('{"stream":"btcusdt@trade","data":{"e":"trade","s":"BTCUSDT"')  # truncated JSON
            await ws.send(trade_frame("BTCUSDT", 10_000, now_ms()).replace('"p": "', '"p": "-'))  # negative price
            await ws.send(trade_frame("DOGEUSDT", 10_001, now_ms()))  # not subscribed
            await ws.send(REFUSED)
        await hold(conn)

    with FakeWebSocketServer(script) as server:
        ingest = run_ingest(
            "binance",
            "--symbols",
            "btcusdt,ethusdt",
            "--ws-url",
            server.url,
            "--no-repair",  # gaps are recorded, not fetched: no REST here (tests/ingest/test_gap_repair.py repairs)
            "--backoff-initial-ms",
            "100",
            *topics.args(),
        )
        server.wait_connections(2)
        trades = wait_for_records(stack_settings.kafka_bootstrap, topics.trades, 2 * PER_CONNECTION)
        letters = wait_for_records(stack_settings.kafka_bootstrap, topics.deadletter, 4)
        assert ingest.stop() == 0, ingest.log()[-3000:]
        assert not server.errors, server.errors

    # The combined endpoint, and the same SUBSCRIBE again after the reconnect.
    for conn in server.connections[:2]:
        assert conn.path == "/stream"
        assert [json.loads(text) for text in conn.received] == [
            {
                "method": "SUBSCRIBE",
                "params": ["btcusdt@trade", "btcusdt@kline_1m", "ethusdt@trade", "ethusdt@kline_1m"],
                "id": 1,
            }
        ]
    assert pongs == [True], "protocol ping not answered"

    trades = read_topic(stack_settings.kafka_bootstrap, topics.trades)
    got = [(r.value["symbol"], int(r.value["trade_id"])) for r in trades]
    assert sorted(got) == sorted(sent), "every trade exactly once across the reconnect"
    for symbol in SYMBOLS:
        per_symbol = [r for r in trades if r.value["symbol"] == symbol]
        assert {r.partition for r in per_symbol} == {per_symbol[0].partition}, "one partition per symbol"
        ids = [int(r.value["trade_id"]) for r in per_symbol]
        assert ids == sorted(ids), f"{symbol} order kept"
        assert all(r.key == symbol for r in per_symbol)
    first = trades[0].value
    assert set(first) == {"source", "symbol", "ts_ms", "price", "size", "trade_id", "side"}
    assert first["source"] == "binance" and isinstance(first["price"], float)
    # m (the buyer was the maker) means the taker sold.
    assert all(r.value["side"] == ("sell" if int(r.value["trade_id"]) % 2 == 0 else "buy") for r in trades)

    bars = read_topic(stack_settings.kafka_bootstrap, topics.bars)
    assert [r.value for r in bars] == [
        {
            "source": "binance",
            "symbol": "BTCUSDT",
            "ts_ms": minute,
            "open": 100.0,
            "high": 102.0,
            "low": 99.0,
            "close": 101.0,
            "volume": 4.0,
            "trades": 9,
            "vwap": 100.5,
            "taker_buy_volume": 2.0,
            "first_trade_id": 1,
            "last_trade_id": 9,
            "origin": "provider",
        }
    ], "only the closed kline becomes a bar"

    letters = read_topic(stack_settings.kafka_bootstrap, topics.deadletter)
    codes = [r.value["reason_code"] for r in letters]
    assert codes == ["provider_malformed", "price_not_positive", "unknown_symbol", "provider_error"], [
        r.value for r in letters
    ]
    assert letters[0].value["raw"].startswith('{"stream"')
    assert "DOGEUSDT" in letters[2].value["raw"]
    assert letters[3].value["raw"] == REFUSED
    assert all(r.value["source"] == "binance" and r.value["received_ms"] > 0 for r in letters)

    log = ingest.log()
    assert "reconnecting" in log and "server closed the connection" in log
    assert "reconnects 1" in log
    assert "binance[1/1]: connected" in log, "a connection names itself"
    assert log.count("binance[1/1]: subscribed to 4 stream(s)") == 2, "one line per confirmed SUBSCRIBE"
    refusal_lines = [line for line in log.splitlines() if "request ID must be" in line]
    assert len(refusal_lines) == 1 and "binance[1/1]" in refusal_lines[0], "the refusal logged once, by connection"


def test_silent_connection_is_reconnected_by_the_watchdog(run_ingest, topics, stack_settings):
    async def script(conn: WsConnection) -> None:
        if conn.index == 0:
            await hold(conn)  # accepts, then says nothing: a half-dead connection
            return
        await conn.ws.send(trade_frame("BTCUSDT", 1, now_ms()))
        await hold(conn)

    with FakeWebSocketServer(script) as server:
        ingest = run_ingest(
            "binance",
            "--symbols",
            "BTCUSDT",
            "--ws-url",
            server.url,
            "--no-repair",
            "--silence-timeout",
            "1",
            "--backoff-initial-ms",
            "100",
            *topics.args(),
        )
        server.wait_connections(2, timeout=10)
        trades = wait_for_records(stack_settings.kafka_bootstrap, topics.trades, 1)
        assert ingest.stop() == 0
    assert [r.value["trade_id"] for r in trades] == ["1"]
    assert "watchdog" in ingest.log()


def test_a_big_feed_is_spread_over_connections_within_binances_limits(run_ingest, topics, stack_settings):
    """1,500 symbols are 3,000 streams: more than one connection may carry. A fake as strict as Binance closes a
    connection subscribing over 1,024 streams or sending over 5 messages in a second."""
    symbols = [f"S{i:04d}USDT" for i in range(1500)]
    subscribed: list[str] = []
    opened_at: dict[int, float] = {}
    closed_for_rate: list[int] = []
    closed_for_streams: list[int] = []

    async def strict_binance(conn: WsConnection) -> None:
        ws = conn.ws
        opened_at[conn.index] = time.monotonic()
        assert urlsplit(conn.path).path == "/stream", conn.path
        streams = 0
        arrivals: deque[float] = deque()
        async for text in ws:
            now = time.monotonic()
            arrivals.append(now)
            while now - arrivals[0] > 1.0:
                arrivals.popleft()
            if len(arrivals) > MAX_MESSAGES_PER_SECOND:
                closed_for_rate.append(conn.index)
                await ws.close(1008, "Too many requests")
                return
            conn.received.append(text)
            request = json.loads(text)
            assert request["method"] == "SUBSCRIBE", request
            streams += len(request["params"])
            if streams > MAX_STREAMS_PER_CONNECTION:
                closed_for_streams.append(conn.index)
                await ws.close(1008, "Too many streams")
                return
            subscribed.extend(request["params"])
            await ws.send(json.dumps({"result": None, "id": request["id"]}))
            for stream in request["params"]:
                name, _, kind = stream.partition("@")
                if kind == "trade":
                    symbol = name.upper()
                    await ws.send(trade_frame(symbol, int(symbol[1:5]), now_ms()))

    with FakeWebSocketServer(strict_binance) as server:
        ingest = run_ingest(
            "binance",
            "--symbols",
            ",".join(s.lower() for s in symbols),
            "--ws-url",
            server.url,
            *topics.args(),
        )
        trades = wait_for_records(stack_settings.kafka_bootstrap, topics.trades, len(symbols), timeout=60)
        assert ingest.stop() == 0, ingest.log()[-3000:]
        assert not server.errors, server.errors
        connections = len(server.connections)

    assert closed_for_rate == [], "a connection sent more than 5 messages in a second"
    assert closed_for_streams == [], "a connection subscribed to more than 1,024 streams"
    assert connections == 3
    expected = [f"{s.lower()}@{kind}" for s in symbols for kind in ("trade", "kline_1m")]
    assert Counter(subscribed) == Counter(expected), "every stream subscribed exactly once"
    for conn in server.connections:
        streams = [stream for text in conn.received for stream in json.loads(text)["params"]]
        names = {stream.partition("@")[0] for stream in streams}
        assert len(streams) == 2 * len(names), "a symbol's two streams on one connection"
        assert all(len(json.loads(text)["params"]) <= 200 for text in conn.received)
    dials = sorted(opened_at.values())
    assert all(later - earlier > 0.8 for earlier, later in zip(dials, dials[1:])), "dials staggered"

    assert len(trades) == len(symbols)
    assert {r.value["symbol"] for r in trades} == set(symbols)
    log = ingest.log()
    assert "3000 stream(s) over 3 connection(s)" in log
    for n in (1, 2, 3):
        assert f"binance[{n}/3]: connected" in log
        assert log.count(f"binance[{n}/3]: subscribed to") == 5
