"""A stand-in for Binance's public REST market data on 127.0.0.1.

`BinanceMarket` is a deterministic, seeded market: per symbol, trades with consecutive ids over a time range, and
the 1-minute klines computed from those trades (as Binance computes them: a minute without trades is a kline at
the previous close with zero volume). It knows nothing about HTTP, so a WebSocket side can stream the same market.
`CompactBinanceMarket` is the same kind of market for months of history (bench/backfill.py): its trades live in
numpy arrays and every closed kline is computed once.

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
import zlib
from dataclasses import dataclass

import numpy as np

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
            sums = (
                sum(t.qty_lots for t in trades),
                sum(t.quote_units for t in trades),
                len(trades),
                sum(t.qty_lots for t in buys),
                sum(t.quote_units for t in buys),
            )
            rows.append(kline_row(minute, (o, h, low, close), sums))
        return rows

    def kline_page(
        self, symbol: str, now_ms: int, start_ms: int | None = None, end_ms: int | None = None, limit: int | None = None
    ) -> list[list]:
        """/api/v3/klines' choice of rows: those opening in [start_ms, end_ms] (Binance's bounds are both
        inclusive), the first `limit` of them from start_ms on, or the last `limit` without a start."""
        rows = self.klines(symbol, now_ms)
        if end_ms is not None:
            rows = [r for r in rows if r[0] <= end_ms]
        if start_ms is not None:
            return [r for r in rows if r[0] >= start_ms][:limit]
        return rows if limit is None else rows[-limit:]

    def trades_page(self, symbol: str, now_ms: int, from_id: int | None, limit: int) -> list[MarketTrade]:
        """/api/v3/historicalTrades' choice: `limit` trades from id `from_id` on, or the last `limit`."""
        trades = self.trades(symbol, now_ms)
        if from_id is not None:
            return [t for t in trades if t.id >= from_id][:limit]
        return trades[-limit:]

    def agg_trades_page(
        self,
        symbol: str,
        now_ms: int,
        limit: int,
        from_agg_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> tuple[int, list[MarketTrade]]:
        """/api/v3/aggTrades' choice, every trade its own aggregate (aggregate id: trade id - the first trade's id):
        that first id, and up to `limit` trades from aggregate `from_agg_id` on, or in [start_ms, end_ms], or the
        last ones."""
        trades = self.trades(symbol, now_ms)
        first_id = trades[0].id if trades else 0
        if from_agg_id is not None:
            chosen = [t for t in trades if t.id - first_id >= from_agg_id]
        elif start_ms is not None and end_ms is not None:
            chosen = [t for t in trades if start_ms <= t.time <= end_ms]
        else:
            chosen = trades[-limit:]
        return first_id, chosen[:limit]

    def expected_bars(self, symbol: str, from_ms: int, to_ms: int, now_ms: int | None = None) -> list[dict]:
        """The messages ingest puts on the bars topic for the klines opening in [from_ms, to_ms) and closed at
        `now_ms` (default: the wall clock)."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return [bar_message(symbol, row) for row in self.kline_page(symbol, now, from_ms, to_ms - 1) if row[6] < now]


def bar_message(symbol: str, row: list) -> dict:
    """The message ingest puts on the bars topic for a closed kline row."""
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
    return bar


def kline_row(minute: int, prices: tuple[int, int, int, int], sums: tuple[int, int, int, int, int]) -> list:
    """A Binance kline row: (open, high, low, close) in cents; (volume in lots, quote volume in cents x lots,
    trade count, taker-buy volume, taker-buy quote volume)."""
    volume, quote, count, buy_volume, buy_quote = sums
    quote_scale = PRICE_SCALE * QTY_SCALE
    return [
        minute,
        *(decimal_text(p, PRICE_SCALE) for p in prices),
        decimal_text(volume, QTY_SCALE),
        minute + MINUTE_MS - 1,
        decimal_text(quote, quote_scale),
        count,
        decimal_text(buy_volume, QTY_SCALE),
        decimal_text(buy_quote, quote_scale),
        "0",
    ]


@dataclass
class _Series:
    """One symbol of a `CompactBinanceMarket`: trade i has id first_id + i; per minute m of the market, its trades
    are [bounds[m], bounds[m + 1]), and a minute with trades (`busy`) has its kline's figures at index
    rank[m] of the per-busy-minute arrays; a quiet minute's rank is the last busy minute's before it."""

    first_id: int
    time: np.ndarray  # int64 ms, ascending
    price: np.ndarray  # int32 cents
    qty: np.ndarray  # int32 lots
    buyer_is_maker: np.ndarray  # bool
    bounds: np.ndarray
    busy: np.ndarray
    rank: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    quote: np.ndarray
    count: np.ndarray
    buy_volume: np.ndarray
    buy_quote: np.ndarray

    def trade(self, index: int) -> MarketTrade:
        return MarketTrade(
            id=self.first_id + index,
            time=int(self.time[index]),
            price_cents=int(self.price[index]),
            qty_lots=int(self.qty[index]),
            buyer_is_maker=bool(self.buyer_is_maker[index]),
        )

    def visible(self, now_ms: int) -> int:
        """How many trades have happened at `now_ms` (time <= now_ms)."""
        return int(np.searchsorted(self.time, now_ms, side="right"))

    def nbytes(self) -> int:
        return sum(v.nbytes for v in vars(self).values() if isinstance(v, np.ndarray))


class CompactBinanceMarket(BinanceMarket):
    """A `BinanceMarket` for months of history. 30 days of 20 symbols at 8 trades a minute are 7M trades: too many
    Python objects, and `klines()` would recompute a symbol's 43,200 rows on every request. Here the trades are
    drawn vectorised into numpy arrays (the same shape of market: consecutive ids from a per-symbol first id, a
    random walk in cents, quiet minutes; not the same draws as BinanceMarket for a seed), each closed kline's
    figures are summed once, and a request makes MarketTrade objects and rows only for what it returns."""

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
        self._series = {
            symbol: self._generate(
                np.random.default_rng([seed, zlib.crc32(symbol.encode())]), index, trades_per_minute, quiet_share
            )
            for index, symbol in enumerate(self.symbols)
        }

    def _generate(self, rng: np.random.Generator, index: int, trades_per_minute: float, quiet_share: float) -> _Series:
        minutes = np.arange(self.start_ms, self.end_ms, MINUTE_MS, dtype=np.int64)
        first_id = 1_000_000_000 * (index + 1) + int(rng.integers(1_000_000))
        start_price = int(rng.integers(1_000, 6_000_000))
        counts = rng.integers(1, max(1, round(2 * trades_per_minute)) + 1, len(minutes))
        quiet = rng.random(len(minutes)) < quiet_share
        quiet[0] = False  # the first minute has a trade, so every kline has a close
        counts[quiet] = 0
        total = int(counts.sum())
        spans = np.repeat(np.minimum(MINUTE_MS, self.end_ms - minutes), counts)
        # Each offset is inside its own minute, so one sort orders the trades by time and keeps them by minute.
        times = np.sort(np.repeat(minutes, counts) + (rng.random(total) * spans).astype(np.int64))
        price = np.maximum(1, start_price + np.cumsum(rng.integers(-3, 4, total))).astype(np.int32)
        qty = rng.integers(1, 200_001, total).astype(np.int32)
        buyer_is_maker = rng.random(total) < 0.5
        bounds = np.concatenate(([0], np.cumsum(counts)))
        busy = counts > 0
        # A busy minute's trades run up to the next busy minute's first one: reduceat over those starts.
        starts = bounds[:-1][busy]
        quote = price.astype(np.int64) * qty
        taker_buy = ~buyer_is_maker
        return _Series(
            first_id=first_id,
            time=times,
            price=price,
            qty=qty,
            buyer_is_maker=buyer_is_maker,
            bounds=bounds,
            busy=busy,
            rank=np.cumsum(busy) - 1,
            open=price[starts],
            high=np.maximum.reduceat(price, starts),
            low=np.minimum.reduceat(price, starts),
            close=price[bounds[1:][busy] - 1],
            volume=np.add.reduceat(qty.astype(np.int64), starts),
            quote=np.add.reduceat(quote, starts),
            count=counts[busy],
            buy_volume=np.add.reduceat(np.where(taker_buy, qty, 0).astype(np.int64), starts),
            buy_quote=np.add.reduceat(np.where(taker_buy, quote, 0), starts),
        )

    def nbytes(self) -> int:
        """The arrays' memory: what the market costs."""
        return sum(series.nbytes() for series in self._series.values())

    def trade_count(self, symbol: str) -> int:
        return len(self._series[symbol].time)

    def trades(self, symbol: str, until_ms: int | None = None) -> list[MarketTrade]:
        series = self._series[symbol]
        count = len(series.time) if until_ms is None else series.visible(until_ms)
        return [series.trade(i) for i in range(count)]

    def trades_between(self, symbol: str, from_ms: int, to_ms: int) -> list[MarketTrade]:
        series = self._series[symbol]
        low, high = np.searchsorted(series.time, [from_ms, to_ms], side="left")
        return [series.trade(i) for i in range(int(low), int(high))]

    def klines(self, symbol: str, now_ms: int) -> list[list]:
        return self.kline_page(symbol, now_ms)

    def kline_page(
        self, symbol: str, now_ms: int, start_ms: int | None = None, end_ms: int | None = None, limit: int | None = None
    ) -> list[list]:
        series = self._series[symbol]
        last_minute = min(now_ms, self.end_ms - 1) // MINUTE_MS * MINUTE_MS
        rows = max(0, (last_minute - self.start_ms) // MINUTE_MS + 1)
        first = 0 if start_ms is None else max(0, -((self.start_ms - start_ms) // MINUTE_MS))  # ceil
        after = rows if end_ms is None else min(rows, max(0, (end_ms - self.start_ms) // MINUTE_MS + 1))
        if limit is not None:
            if start_ms is None:
                first = max(first, after - limit)
            else:
                after = min(after, first + limit)
        return [self._kline_row(series, m, now_ms) for m in range(first, after)]

    def _kline_row(self, series: _Series, m: int, now_ms: int) -> list:
        minute = self.start_ms + m * MINUTE_MS
        rank = int(series.rank[m])
        if minute + MINUTE_MS > now_ms:
            # The minute still open at now_ms: only its trades so far.
            low_index, high_index = int(series.bounds[m]), min(int(series.bounds[m + 1]), series.visible(now_ms))
            trades = [series.trade(i) for i in range(low_index, high_index)]
            if trades:
                prices = [t.price_cents for t in trades]
                buys = [t for t in trades if not t.buyer_is_maker]
                return kline_row(
                    minute,
                    (prices[0], max(prices), min(prices), prices[-1]),
                    (
                        sum(t.qty_lots for t in trades),
                        sum(t.quote_units for t in trades),
                        len(trades),
                        sum(t.qty_lots for t in buys),
                        sum(t.quote_units for t in buys),
                    ),
                )
            if series.busy[m]:
                rank -= 1  # its trades are all still to come: the previous busy minute's close
            close = int(series.close[rank])
            return kline_row(minute, (close, close, close, close), (0, 0, 0, 0, 0))
        if not series.busy[m]:
            close = int(series.close[rank])
            return kline_row(minute, (close, close, close, close), (0, 0, 0, 0, 0))
        prices = (series.open[rank], series.high[rank], series.low[rank], series.close[rank])
        sums = (series.volume[rank], series.quote[rank], series.count[rank], series.buy_volume[rank],
                series.buy_quote[rank])  # fmt: skip
        return kline_row(minute, tuple(int(p) for p in prices), tuple(int(v) for v in sums))

    def trades_page(self, symbol: str, now_ms: int, from_id: int | None, limit: int) -> list[MarketTrade]:
        series = self._series[symbol]
        visible = series.visible(now_ms)
        first = max(0, visible - limit) if from_id is None else max(0, from_id - series.first_id)
        return [series.trade(i) for i in range(first, min(visible, first + limit))]

    def agg_trades_page(
        self,
        symbol: str,
        now_ms: int,
        limit: int,
        from_agg_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> tuple[int, list[MarketTrade]]:
        series = self._series[symbol]
        visible = series.visible(now_ms)
        first_id = series.first_id if visible else 0
        if from_agg_id is not None:
            first, after = max(0, from_agg_id), visible
        elif start_ms is not None and end_ms is not None:
            first = int(np.searchsorted(series.time, start_ms, side="left"))
            after = min(visible, int(np.searchsorted(series.time, end_ms, side="right")))
        else:
            first, after = max(0, visible - limit), visible
        return first_id, [series.trade(i) for i in range(first, min(after, first + limit))]


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
            rows = self.market.kline_page(symbol, now, numbers.get("startTime"), numbers.get("endTime"), limit)
            return 200, {}, json.dumps(rows)
        if request.path in ("/api/v3/historicalTrades", "/api/v3/trades"):
            from_id = numbers.get("fromId") if request.path == "/api/v3/historicalTrades" else None
            chosen = self.market.trades_page(symbol, now, from_id, limit)
            return 200, {}, json.dumps([t.rest() for t in chosen])
        # aggTrades: every trade is its own aggregate here (a = its index, f = l = its id).
        if "startTime" in numbers and "endTime" in numbers:
            if numbers["endTime"] - numbers["startTime"] >= 3_600_000:
                return _error(400, -1127, "More than 1 hours between startTime and endTime.")
        start = end = None
        if "fromId" not in numbers and ("startTime" in numbers or "endTime" in numbers):
            start = numbers.get("startTime", numbers.get("endTime", 0) - 3_599_999)
            end = numbers.get("endTime", start + 3_599_999)
        first_id, chosen = self.market.agg_trades_page(symbol, now, limit, numbers.get("fromId"), start, end)
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
            for t in chosen
        ]
        return 200, {}, json.dumps(aggregates)
