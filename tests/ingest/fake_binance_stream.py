"""Binance's combined WebSocket stream (`/stream` + SUBSCRIBE) for a `BinanceMarket`, live on 127.0.0.1.

After a SUBSCRIBE, each subscribed symbol's trades are sent as `@trade` frames when the wall clock reaches their
time, and each subscribed `@kline_1m` gets its closed kline (`x: true`, with first and last trade id) just after its
minute ends: the payload shapes of tests/fixtures/wire/binance. `outage(seconds)` is the fault the repair exists
for: every open connection is closed at once and new ones are refused for that long, so the trades in between
never arrive over the socket (the REST side, `FakeBinanceRest`, still serves them)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

from tests.ingest.fake_binance import MINUTE_MS, BinanceMarket
from tests.ingest.fakes import FakeWebSocketServer, WsConnection


def now_ms() -> int:
    return int(time.time() * 1000)


class FakeBinanceStream:
    def __init__(self, market: BinanceMarket, tick_s: float = 0.05) -> None:
        self.market = market
        self.tick_s = tick_s
        self.outages: list[tuple[int, int]] = []  # (start, end) in epoch ms
        self._refuse_until_ms = 0
        self._epoch = 0
        self.refused = 0
        self.server = FakeWebSocketServer(self._serve)

    def __enter__(self) -> FakeBinanceStream:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    @property
    def url(self) -> str:
        return self.server.url

    def outage(self, seconds: float) -> tuple[int, int]:
        """Drop every connection now and refuse new ones for `seconds`; returns the outage in epoch ms."""
        start = now_ms()
        self._refuse_until_ms = start + int(seconds * 1000)
        self._epoch += 1
        self.outages.append((start, self._refuse_until_ms))
        return start, self._refuse_until_ms

    async def _serve(self, conn: WsConnection) -> None:
        ws = conn.ws
        assert ws is not None
        if now_ms() < self._refuse_until_ms:
            self.refused += 1
            await ws.close(1013, "Try again later")
            return
        epoch = self._epoch
        cursors: dict[str, int] = {}  # symbol -> index of its next trade to send
        klines: set[str] = set()
        next_close = (now_ms() // MINUTE_MS + 1) * MINUTE_MS

        async def read_requests() -> None:
            async for text in ws:
                conn.received.append(text)
                request = json.loads(text)
                if request.get("method") != "SUBSCRIBE":
                    continue
                now = now_ms()
                for stream in request["params"]:
                    name, _, kind = stream.partition("@")
                    symbol = name.upper()
                    if kind == "trade" and symbol not in cursors:
                        trades = self.market.trades(symbol)
                        cursors[symbol] = next((i for i, t in enumerate(trades) if t.time > now), len(trades))
                    elif kind == "kline_1m":
                        klines.add(symbol)
                await ws.send(json.dumps({"result": None, "id": request["id"]}))

        reader = asyncio.create_task(read_requests())
        try:
            while not reader.done():
                if self._epoch != epoch:
                    await ws.close(1001, "Going away")
                    return
                now = now_ms()
                for symbol, index in list(cursors.items()):
                    trades = self.market.trades(symbol)
                    while index < len(trades) and trades[index].time <= now:
                        await ws.send(trade_frame(symbol, trades[index]))
                        index += 1
                    cursors[symbol] = index
                if now >= next_close + 200:
                    for symbol in sorted(klines):
                        frame = kline_frame(self.market, symbol, next_close - MINUTE_MS, now)
                        if frame is not None:
                            await ws.send(frame)
                    next_close += MINUTE_MS
                await asyncio.sleep(self.tick_s)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader


def trade_frame(symbol: str, trade) -> str:
    data = {
        "e": "trade", "E": trade.time + 3, "s": symbol, "t": trade.id, "p": trade.price, "q": trade.qty,
        "T": trade.time, "m": trade.buyer_is_maker, "M": True,
    }  # fmt: skip
    return json.dumps({"stream": f"{symbol.lower()}@trade", "data": data})


def kline_frame(market: BinanceMarket, symbol: str, minute: int, now: int) -> str | None:
    """The closed kline of `minute` as the stream sends it, or None outside the market's range."""
    row = next((r for r in market.klines(symbol, now) if r[0] == minute), None)
    if row is None:
        return None
    ids = [t.id for t in market.trades_between(symbol, minute, minute + MINUTE_MS)]
    k = {
        "t": row[0], "T": row[6], "s": symbol, "i": "1m", "f": ids[0] if ids else -1, "L": ids[-1] if ids else -1,
        "o": row[1], "c": row[4], "h": row[2], "l": row[3], "v": row[5], "n": row[8], "x": True, "q": row[7],
        "V": row[9], "Q": row[10], "B": "0",
    }  # fmt: skip
    data = {"e": "kline", "E": now, "s": symbol, "k": k}
    return json.dumps({"stream": f"{symbol.lower()}@kline_1m", "data": data})
