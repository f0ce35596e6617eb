"""Real market data for the end-to-end test, captured from the providers (tests/fixtures/wire, provenance in its
PROVENANCE.md), moved in time to the test's window: a live source refuses
history, so each tape keeps its values, its order and its relative timing, squeezed into `window` milliseconds
from `start`. What each fake sends is exactly what its tape says; the test computes its expectations from the
tapes, never from the pipeline's output."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

WIRE = Path(__file__).resolve().parents[1] / "fixtures" / "wire"


def squeeze(times: list[float], start: int, window: int) -> list[int]:
    """Times moved into [start, start + window), order and relative spacing kept."""
    first, last = min(times), max(times)
    span = max(last - first, 1)
    return [start + int((t - first) / span * (window - 1)) for t in times]


@dataclass(frozen=True)
class BinanceTrade:
    """A Binance spot trade as the trade stream carries it (t id, p price, q quantity, T time, m buyer is maker)."""

    t: int
    p: str
    q: str
    T: int
    m: bool

    def frame(self, symbol: str) -> str:
        data = {"e": "trade", "E": self.T + 7, "s": symbol, "t": self.t, "p": self.p, "q": self.q, "T": self.T,
                "m": self.m, "M": True}  # fmt: skip
        return json.dumps({"stream": f"{symbol.lower()}@trade", "data": data})


def binance_trades(start: int, window: int) -> list[BinanceTrade]:
    """BTCUSDT trades captured from Binance's REST /api/v3/trades (tests/fixtures/wire/binance)."""
    records = json.loads((WIRE / "binance" / "rest_trades_BTCUSDT.json").read_text())
    times = squeeze([r["time"] for r in records], start, window)
    return [
        BinanceTrade(t=r["id"], p=r["price"], q=r["qty"], T=at, m=r["isBuyerMaker"])
        for r, at in zip(records, times, strict=True)
    ]


def binance_kline(symbol: str, minute: int, trades: list[BinanceTrade]) -> str:
    """The closed 1-minute kline Binance publishes for `trades` (its fields computed as Binance defines them), in
    the shape of the captured kline frames."""
    from decimal import Decimal

    ordered = sorted(trades, key=lambda t: (t.T, t.t))
    volume = sum(Decimal(t.q) for t in ordered)
    quote = sum(Decimal(t.p) * Decimal(t.q) for t in ordered)
    taker_buys = [t for t in ordered if not t.m]
    k = {
        "t": minute, "T": minute + 59_999, "s": symbol, "i": "1m", "f": ordered[0].t, "L": ordered[-1].t,
        "o": ordered[0].p, "c": ordered[-1].p, "h": max(ordered, key=lambda t: Decimal(t.p)).p,
        "l": min(ordered, key=lambda t: Decimal(t.p)).p, "v": f"{volume:.8f}", "n": len(ordered), "x": True,
        "q": f"{quote:.8f}", "V": f"{sum(Decimal(t.q) for t in taker_buys):.8f}",
        "Q": f"{sum(Decimal(t.p) * Decimal(t.q) for t in taker_buys):.8f}", "B": "0",
    }  # fmt: skip
    return json.dumps(
        {"stream": f"{symbol.lower()}@kline_1m", "data": {"e": "kline", "E": minute + 60_001, "s": symbol, "k": k}}
    )


def finnhub_frames(start: int, window: int, skip_symbols: set[str]) -> list[tuple[int, dict]]:
    """Finnhub trade frames captured from its WebSocket (tests/fixtures/wire/finnhub), each with its send time:
    the frames spread over the window in their captured order, each print as far behind its frame's send
    time as it was behind the frame's newest print (prints within a frame are not in time order)."""
    frames = [json.loads(line) for line in (WIRE / "finnhub" / "trade_frames.jsonl").read_text().splitlines()]
    frames = [f for f in frames if f.get("type") == "trade"]
    sends = squeeze(list(range(len(frames))), start + 1_000, window - 2_000)
    out = []
    for frame, sent in zip(frames, sends, strict=True):
        newest = max(p["t"] for p in frame["data"])
        data = [{**p, "t": sent - (newest - p["t"])} for p in frame["data"] if p["s"] not in skip_symbols]
        if data:
            out.append((sent, {**frame, "data": data}))
    return out


def twelvedata_series() -> dict:
    """A Twelve Data time_series answer captured for AAPL (tests/fixtures/wire/twelvedata), newest bar first."""
    return json.loads((WIRE / "twelvedata" / "time_series_AAPL_1min.json").read_text())


def kraken_ohlc() -> list[dict]:
    """XBT/USDT 1-minute bars captured from Kraken's REST /0/public/OHLC (nautilus_trader test data; fixtures
    PROVENANCE.md): start time (s), OHLC, VWAP, volume and trade count; Kraken repeats the last close in a minute
    without trades (VWAP 0, count 0)."""
    body = json.loads((WIRE / "kraken" / "rest_ohlc_XBTUSDT.json").read_text())
    rows = body["result"]["XBTUSDT"]
    return [
        {"ts_ms": int(r[0]) * 1000, "open": float(r[1]), "high": float(r[2]), "low": float(r[3]), "close": float(r[4]),
         "vwap": float(r[5]) or None, "volume": float(r[6]), "trades": int(r[7])}
        for r in rows
    ]  # fmt: skip


def kraken_trades() -> list[dict]:
    """XBT/USDT trades captured from Kraken's REST /0/public/Trades (nautilus_trader test data; fixtures
    PROVENANCE.md): price, volume, time (s), side, id."""
    body = json.loads((WIRE / "kraken" / "rest_trades_XBTUSDT.json").read_text())
    rows = body["result"]["XBTUSDT"]
    return [{"price": float(r[0]), "size": float(r[1]), "time": float(r[2]), "side": r[3], "trade_id": str(r[6])}
            for r in rows]  # fmt: skip
