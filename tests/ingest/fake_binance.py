"""A stand-in for Binance's public REST market data on 127.0.0.1.

`BinanceMarket` is a deterministic, seeded market: per symbol, trades with consecutive ids over a time range, and
the 1-minute klines computed from those trades (as Binance computes them: a minute without trades is a kline at
the previous close with zero volume). It knows nothing about HTTP, so a WebSocket side can stream the same market.

`FakeBinanceRest` serves the market with Binance's payload shapes: /api/v3/historicalTrades, /api/v3/aggTrades and
/api/v3/klines; every response carries X-MBX-USED-WEIGHT-1M; a per-window weight limit answers 429 with
Retry-After, and a request that arrives while a 429 wait is in force earns a 418 (an IP ban), as on Binance.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from dataclasses import dataclass

from tests.ingest.fakes import FakeHttpServer, HttpRequest

MINUTE_MS = 60_000
PRICE_SCALE = 100  # prices in cents
QTY_SCALE = 100_000  # quantities in lots of 0.00001
EIGHT_DECIMALS = 100_000_000

WEIGHTS = {"/api/v3/historicalTrades": 25, "/api/v3/aggTrades": 4, "/api/v3/klines": 2, "/api/v3/trades": 25}


def decimal_text(units: int, scale: int) -> str:
    """`units / scale` with Binance's eight decimals ("60650.01000000"), exactly."""
    eighths = units * (EIGHT_DECIMALS // scale)
    return f"{eighths // EIGHT_DECIMALS}.{eighths % EIGHT_DECIMALS:08d}"


@dataclass(frozen=True)
class MarketTrade:
    id: int
    time: int
    price_cents: int
    qty_lots: int
    buyer_is_maker: bool

    @property
    def price(self) -> str:
        return decimal_text(self.price_cents, PRICE_SCALE)

    @property
    def qty(self) -> str:
        return decimal_text(self.qty_lots, QTY_SCALE)

    @property
    def quote_units(self) -> int:
        """price·qty in units of 1e-7 (cents times lots): exact."""
        return self.price_cents * self.qty_lots

    def rest(self) -> dict:
        """As /api/v3/historicalTrades and /api/v3/trades return it."""
        return {
            "id": self.id,
            "price": self.price,
            "qty": self.qty,
            "quoteQty": decimal_text(self.quote_units, PRICE_SCALE * QTY_SCALE),
            "time": self.time,
            "isBuyerMaker": self.buyer_is_maker,
            "isBestMatch": True,
        }

    def canonical(self, symbol: str) -> dict:
        """The message ingest puts on the trades topic for it."""
        return {
            "source": "binance",
            "symbol": symbol,
            "ts_ms": self.time,
            "price": float(self.price),
            "size": float(self.qty),
            "trade_id": str(self.id),
            "side": "sell" if self.buyer_is_maker else "buy",
        }


class BinanceMarket:
    """Seeded trades per symbol over [start_ms, end_ms): consecutive ids from a per-symbol first id, a random walk
    in cents, some minutes without any trade. The first minute always has a trade, so every kline has a close."""

    def __init__(
        self,
        symbols: list[str],
        start_ms: int,
        end_ms: int,
        seed: int = 7,
        trades_per_minute: float = 8.0,
        quiet_share: float = 0.03,
    ) -> None:
        self.symbols = list(symbols)
        self.start_ms = start_ms // MINUTE_MS * MINUTE_MS
        self.end_ms = end_ms
        self._trades: dict[str, list[MarketTrade]] = {}
        for index, symbol in enumerate(self.symbols):
            rng = random.Random(f"{seed}:{symbol}")
            first_id = 1_000_000_000 * (index + 1) + rng.randrange(1_000_000)
            price = rng.randrange(1_000, 6_000_000)
            trades: list[MarketTrade] = []
            for minute in range(self.start_ms, self.end_ms, MINUTE_MS):
                quiet = minute != self.start_ms and rng.random() < quiet_share
                count = 0 if quiet else rng.randint(1, max(1, round(2 * trades_per_minute)))
                end_in_minute = min(MINUTE_MS, self.end_ms - minute)
                for offset in sorted(rng.randrange(end_in_minute) for _ in range(count)):
                    price = max(1, price + rng.randint(-3, 3))
                    trades.append(
                        MarketTrade(
                            id=first_id + len(trades),
                            time=minute + offset,
                            price_cents=price,
                            qty_lots=rng.randint(1, 200_000),
                            buyer_is_maker=rng.random() < 0.5,
                        )
                    )
            self._trades[symbol] = trades

    def trades(self, symbol: str, until_ms: int | None = None) -> list[MarketTrade]:
        """The symbol's trades with time <= until_ms (all when None), oldest first."""
        trades = self._trades[symbol]
        if until_ms is None:
            return trades
        return [t for t in trades if t.time <= until_ms]

    def trades_between(self, symbol: str, from_ms: int, to_ms: int) -> list[MarketTrade]:
        return [t for t in self._trades[symbol] if from_ms <= t.time < to_ms]

    def klines(self, symbol: str, now_ms: int) -> list[list]:
        """Binance kline rows for every minute from the market's start to the minute of `now_ms` (that one still
        open when `now_ms` is inside it)."""
        last_minute = min(now_ms, self.end_ms - 1) // MINUTE_MS * MINUTE_MS
        by_minute: dict[int, list[MarketTrade]] = {}
        for trade in self.trades(symbol, now_ms):
            by_minute.setdefault(trade.time // MINUTE_MS * MINUTE_MS, []).append(trade)
        rows = []
        close = None
        for minute in range(self.start_ms, last_minute + 1, MINUTE_MS):
            trades = by_minute.get(minute, [])
            if trades:
                prices = [t.price_cents for t in trades]
                o, h, low, close = prices[0], max(prices), min(prices), prices[-1]
            else:
                o = h = low = close
            buys = [t for t in trades if not t.buyer_is_maker]
            quote_scale = PRICE_SCALE * QTY_SCALE
            rows.append(
                [
                    minute,
                    decimal_text(o, PRICE_SCALE),
                    decimal_text(h, PRICE_SCALE),
                    decimal_text(low, PRICE_SCALE),
                    decimal_text(close, PRICE_SCALE),
                    decimal_text(sum(t.qty_lots for t in trades), QTY_SCALE),
                    minute + MINUTE_MS - 1,
                    decimal_text(sum(t.quote_units for t in trades), quote_scale),
                    len(trades),
                    decimal_text(sum(t.qty_lots for t in buys), QTY_SCALE),
                    decimal_text(sum(t.quote_units for t in buys), quote_scale),
                    "0",
                ]
            )
        return rows

    def expected_bars(self, symbol: str, from_ms: int, to_ms: int, now_ms: int | None = None) -> list[dict]:
        """The messages ingest puts on the bars topic for the klines opening in [from_ms, to_ms) and closed at
        `now_ms` (default: the wall clock)."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        bars = []
        for row in self.klines(symbol, now):
            if not from_ms <= row[0] < to_ms or row[6] >= now:
                continue
            volume = float(row[5])
            bar = {
                "source": "binance",
                "symbol": symbol,
                "ts_ms": row[0],
                "open": float(row[1]),
                "high": float(row[2]),
                "low": float(row[3]),
                "close": float(row[4]),
                "volume": volume,
                "trades": row[8],
                "taker_buy_volume": float(row[9]),
                "origin": "provider",
            }
            if volume > 0:
                bar["vwap"] = float(row[7]) / volume
            bars.append(bar)
        return bars


def _error(status: int, code: int, msg: str) -> tuple[int, dict, str]:
    return status, {}, json.dumps({"code": code, "msg": msg})


@dataclass
class Served:
    path: str
    query: dict[str, str]
    at: float
    status: int
    weight: int
    used_weight: int
    retry_after: int | None


class FakeBinanceRest:
    """Serves a `BinanceMarket` over HTTP. `weight_limit` per window of `window_s` seconds (Binance: 6000 per
    minute); `now_ms` is the market's clock (default: the wall clock), which decides what has happened yet."""

    def __init__(
        self,
        market: BinanceMarket,
        weight_limit: int = 6000,
        window_s: float = 60.0,
        ban_s: int = 120,
        now_ms=lambda: int(time.time() * 1000),
    ) -> None:
        self.market = market
        self.weight_limit = weight_limit
        self.window_s = window_s
        self.ban_s = ban_s
        self.now_ms = now_ms
        self.served: list[Served] = []
        self._lock = threading.Lock()
        self._window = -1
        self._used = 0
        self._retry_until = 0.0
        self._banned_until = 0.0
        self._http = FakeHttpServer(self._respond)

    def __enter__(self) -> FakeBinanceRest:
        self._http.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.__exit__(*exc)

    @property
    def url(self) -> str:
        return self._http.url

    def statuses(self) -> list[int]:
        with self._lock:
            return [s.status for s in self.served]

    def served_for(self, symbol: str) -> list[Served]:
        with self._lock:
            return [s for s in self.served if s.query.get("symbol") == symbol]

    def served_ok(self, path: str) -> list[Served]:
        with self._lock:
            return [s for s in self.served if s.path == path and s.status == 200]

    def _respond(self, request: HttpRequest, _earlier: list[HttpRequest]) -> tuple[int, dict[str, str], str]:
        weight = WEIGHTS.get(request.path, 1)
        with self._lock:
            now = time.time()
            window = math.floor(now / self.window_s)
            if window != self._window:
                self._window, self._used = window, 0
            retry_after = None
            if now < self._banned_until:
                status, retry_after = 418, math.ceil(self._banned_until - now)
            elif now < self._retry_until:
                # Binance bans an IP that keeps sending while told to wait.
                self._banned_until = now + self.ban_s
                status, retry_after = 418, self.ban_s
            else:
                self._used += weight
                if self._used > self.weight_limit:
                    self._retry_until = (window + 1) * self.window_s
                    status, retry_after = 429, math.ceil(self._retry_until - now)
                else:
                    status = 200
            self.served.append(Served(request.path, request.query, request.at, status, weight, self._used, retry_after))
            used = self._used
        headers = {"X-MBX-USED-WEIGHT-1M": str(used), "X-MBX-USED-WEIGHT": str(used)}
        if status == 418:
            headers["Retry-After"] = str(retry_after)
            until = int((time.time() + (retry_after or 0)) * 1000)
            body = {
                "code": -1003,
                "msg": f"Way too much request weight used; IP banned until {until}. "
                "Please use WebSocket Streams for live updates to avoid bans.",
            }
            return 418, headers, json.dumps(body)
        if status == 429:
            headers["Retry-After"] = str(retry_after)
            body = {
                "code": -1003,
                "msg": f"Too much request weight used; current limit is {self.weight_limit} request weight per 1 "
                "MINUTE. Please use WebSocket Streams for live updates to avoid polling the API.",
            }
            return 429, headers, json.dumps(body)
        status, extra, body = self._answer(request)
        return status, {**headers, **extra}, body

    def _answer(self, request: HttpRequest) -> tuple[int, dict, str]:
        query = request.query
        symbol = query.get("symbol", "")
        if request.path not in WEIGHTS:
            return _error(404, -1000, "Unknown path.")
        if symbol not in self.market.symbols:
            return _error(400, -1121, "Invalid symbol.")
        try:
            limit = int(query.get("limit", "500"))
            numbers = {k: int(query[k]) for k in ("fromId", "startTime", "endTime") if k in query}
        except ValueError:
            return _error(400, -1100, "Illegal characters found in a parameter.")
        if not 1 <= limit <= 1000:
            return _error(400, -1130, "Data sent for parameter 'limit' is not valid.")
        now = self.now_ms()
        if request.path == "/api/v3/klines":
            if query.get("interval") != "1m":
                return _error(400, -1120, "Invalid interval.")
            rows = self.market.klines(symbol, now)
            if "endTime" in numbers:
                rows = [r for r in rows if r[0] <= numbers["endTime"]]
            if "startTime" in numbers:
                rows = [r for r in rows if r[0] >= numbers["startTime"]][:limit]
            else:
                rows = rows[-limit:]
            return 200, {}, json.dumps(rows)
        trades = self.market.trades(symbol, now)
        if request.path in ("/api/v3/historicalTrades", "/api/v3/trades"):
            if "fromId" in numbers and request.path == "/api/v3/historicalTrades":
                chosen = [t for t in trades if t.id >= numbers["fromId"]][:limit]
            else:
                chosen = trades[-limit:]
            return 200, {}, json.dumps([t.rest() for t in chosen])
        # aggTrades: every trade is its own aggregate here (a = its index, f = l = its id).
        first_id = trades[0].id if trades else 0
        if "startTime" in numbers and "endTime" in numbers:
            if numbers["endTime"] - numbers["startTime"] >= 3_600_000:
                return _error(400, -1127, "More than 1 hours between startTime and endTime.")
        if "fromId" in numbers:
            chosen = [t for t in trades if t.id - first_id >= numbers["fromId"]]
        elif "startTime" in numbers or "endTime" in numbers:
            start = numbers.get("startTime", numbers.get("endTime", 0) - 3_599_999)
            end = numbers.get("endTime", start + 3_599_999)
            chosen = [t for t in trades if start <= t.time <= end]
        else:
            chosen = trades[-limit:]
        aggregates = [
            {
                "a": t.id - first_id,
                "p": t.price,
                "q": t.qty,
                "f": t.id,
                "l": t.id,
                "T": t.time,
                "m": t.buyer_is_maker,
                "M": True,
            }
            for t in chosen[:limit]
        ]
        return 200, {}, json.dumps(aggregates)
