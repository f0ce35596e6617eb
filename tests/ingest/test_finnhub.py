"""finnhub source against local stand-ins for Finnhub's WebSocket and REST API, into the real Kafka."""

from __future__ import annotations

import json

from tests.ingest.conftest import now_ms, read_topic, wait_for_records
from tests.ingest.fakes import FakeHttpServer, FakeWebSocketServer, HttpRequest, WsConnection, hold

KEY = "fh-test-key-7c1d9"
SYMBOLS = ["AAPL", "MSFT"]

APPLE = {
    "country": "US",
    "currency": "USD",
    "estimateCurrency": "USD",
    "exchange": "NASDAQ NMS - GLOBAL MARKET",
    "finnhubIndustry": "Technology",
    "ipo": "1980-12-12",
    "logo": "https://static2.finnhub.io/file/publicdatany/finnhubimage/stock_logo/AAPL.png",
    "marketCapitalization": 2900000,
    "name": "Apple Inc",
    "phone": "14089961010",
    "shareOutstanding": 15550.06,
    "ticker": "AAPL",
    "weburl": "https://www.apple.com/",
}


def trades_frame(start: int, count: int) -> str:
    data = [
        {"c": ["1"], "p": 150.0 + i, "s": SYMBOLS[i % 2], "t": now_ms(), "v": float(i + 1)}
        for i in range(start, start + count)
    ]
    return json.dumps({"type": "trade", "data": data})


def test_trades_pings_errors_reconnect_and_profiles(run_ingest, topics, stack_settings):
    pong_replies: list[dict] = []

    async def script(conn: WsConnection) -> None:
        subscribed = {(await conn.recv_json())["symbol"] for _ in SYMBOLS}
        assert subscribed == set(SYMBOLS)
        if conn.index == 0:
            await conn.ws.send(trades_frame(0, 10))
            await conn.ws.send('{"type":"ping"}')
            pong_replies.append(await conn.recv_json())
            await conn.ws.send('{"type":"error","msg":"Subscribing to too many symbols"}')
            await conn.ws.send('{"type":"trade","data":[{"s":"AAPL","p":"n/a","t":1,"v":1}]}')
            await conn.ws.close()
            return
        await conn.ws.send(trades_frame(10, 10))
        await hold(conn)

    def profile(request: HttpRequest, earlier: list[HttpRequest]) -> tuple[int, dict[str, str], str]:
        if request.headers.get("x-finnhub-token") != KEY:
            return 401, {}, '{"error":"Invalid API key"}'
        symbol = request.query["symbol"]
        if symbol == "AAPL" and not earlier:
            return 429, {"Retry-After": "1"}, '{"error":"API limit reached"}'
        return 200, {}, json.dumps(APPLE if symbol == "AAPL" else {})

    with FakeWebSocketServer(script) as ws_server, FakeHttpServer(profile) as rest:
        ingest = run_ingest(
            "finnhub",
            "--symbols",
            ",".join(SYMBOLS),
            "--ws-url",
            ws_server.url,
            "--rest-url",
            rest.url,
            "--rest-per-minute",
            "600",
            "--backoff-initial-ms",
            "100",
            *topics.args(),
            env={"FINNHUB_API_KEY": KEY},
        )
        ws_server.wait_connections(2)
        trades = wait_for_records(stack_settings.kafka_bootstrap, topics.trades, 20)
        companies = wait_for_records(stack_settings.kafka_bootstrap, topics.companies, 1)
        assert ingest.stop() == 0
        assert not ws_server.errors, ws_server.errors

    assert all(c.query["token"] == [KEY] for c in ws_server.connections), "token travels as ?token="
    assert pong_replies == [{"type": "pong"}]
    assert sorted(r.value["price"] for r in trades) == [150.0 + i for i in range(20)]
    # Finnhub has no trade ids: ingest derives one from the print (contract: messages::derived_trade_id).
    assert all(r.value["source"] == "finnhub" and r.value["trade_id"].startswith("~") for r in trades)
    assert all(r.value["conditions"] == ["1"] for r in trades)

    assert [(r.key, r.value) for r in companies] == [
        (
            "AAPL",
            {
                "symbol": "AAPL",
                "name": "Apple Inc",
                "exchange": "NASDAQ NMS - GLOBAL MARKET",
                "currency": "USD",
                "sector": None,
                "industry": "Technology",
                "source": "finnhub",
            },
        )
    ]
    apple = rest.matching("/api/v1/stock/profile2", symbol="AAPL")
    assert len(apple) == 2 and apple[1].at - apple[0].at >= 0.9, "Retry-After: 1 honoured"
    assert all(r.headers["x-finnhub-token"] == KEY and "token" not in r.query for r in rest.requests)

    letters = read_topic(stack_settings.kafka_bootstrap, topics.deadletter)
    by_code = {r.value["reason_code"]: r.value["reason"] for r in letters}
    assert "Subscribing to too many symbols" in by_code["provider_error"], by_code
    assert "malformed trade" in by_code["provider_malformed"], by_code

    # The reconnect is a gap of every symbol that traded before it; without trade ids or a free REST history it
    # is recorded as unrepairable (docs/gaps.md).
    gaps = [r.value for r in read_topic(stack_settings.kafka_bootstrap, topics.gaps)]
    assert sorted(g["symbol"] for g in gaps) == sorted(SYMBOLS), "both traded in the first connection's frame"
    assert all((g["cause"], g["outcome"], g["repaired_trades"]) == ("reconnect", "unrepairable", 0) for g in gaps)

    log = ingest.log()
    assert KEY not in log, "the key must never be logged"
    assert "token=***" in log
    assert "HTTP 429" in log


def test_missing_key_is_a_configuration_error(run_ingest, topics):
    ingest = run_ingest("finnhub", "--symbols", "AAPL", *topics.args(), env={"FINNHUB_API_KEY": ""})
    assert ingest.wait(15) == 2
    assert "FINNHUB_API_KEY is not set" in ingest.log()
