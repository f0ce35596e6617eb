"""An independent reading of how trades become a 1-minute bar (contracts/trade_conditions.json and the trade
message's kind, side and id), in plain Python: what the tests expect of the bars job, computed without its
code."""

from __future__ import annotations

from collections import defaultdict

from sparktrends import contract

MINUTE = 60_000


def rule(source: str, conditions: list[str] | None) -> tuple[bool, bool]:
    """(may set the price, counts in volume) of a print, read straight from contracts/trade_conditions.json."""
    table = contract.files()["trade_conditions.json"]["sources"].get(source)
    price = volume = True
    for code in (conditions or []) if table else []:
        entry = table["codes"].get(code, table["unlisted"])
        price &= entry["updates_price"]
        volume &= entry["updates_volume"]
    return price, volume


def bar(trades: list[dict]) -> dict | None:
    """One minute's bar from its trades, in arrival order: price from the prints that may set it, else from those
    that count in volume (none: no bar); volume, VWAP, taker-buy volume from the counted ones; executions (not
    ticks) counted, null for a bar of ticks only; the integer trade-id range. Ties in time go by integer trade id
    (an exchange numbers its trades in order; a trade without one comes first), then arrival order."""

    def order(item: tuple[int, dict]) -> tuple:
        arrival, t = item
        numeric = str(t.get("trade_id") or "").lstrip("-").isdigit()
        return (t["ts_ms"], (1, int(t["trade_id"])) if numeric else (0, 0), arrival)

    ordered = sorted(enumerate(trades), key=order)
    flags = [(t, *rule(t["source"], t.get("conditions"))) for _, t in ordered]
    pricing = [t for t, price, _ in flags if price] or [t for t, _, volume in flags if volume]
    if not pricing:
        return None
    counted = [t for t, _, volume in flags if volume]
    volume = sum(t["size"] for t in counted)
    executions = sum(1 for t in counted if t.get("kind", "trade") == "trade")
    sided = [t for t in counted if t.get("side")]
    ids = [int(t["trade_id"]) for t in trades if str(t.get("trade_id") or "").lstrip("-").isdigit()]
    return {
        "source": ordered[0][1]["source"],
        "open": pricing[0]["price"],
        "high": max(t["price"] for t in pricing),
        "low": min(t["price"] for t in pricing),
        "close": pricing[-1]["price"],
        "volume": volume,
        "trades": executions or None,  # a bar of ticks has no known number of executions
        "vwap": sum(t["price"] * t["size"] for t in counted) / volume if volume > 0 else None,
        "taker_buy_volume": sum(t["size"] for t in sided if t["side"] == "buy") if sided else None,
        "first_trade_id": min(ids) if ids else None,
        "last_trade_id": max(ids) if ids else None,
    }


def bars(trades: list[dict]) -> dict[tuple[str, int], dict]:
    """Bars by (symbol, minute) of trades in arrival order, duplicates (same source, symbol and trade id) kept
    once: a trade without an id has no identity and always counts."""
    seen: set[tuple[str, str, str]] = set()
    minutes: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for t in trades:
        if t.get("trade_id") is not None:
            key = (t["source"], t["symbol"], t["trade_id"])
            if key in seen:
                continue
            seen.add(key)
        minutes[(t["symbol"], t["ts_ms"] // MINUTE * MINUTE)].append(t)
    out = {}
    for key, group in minutes.items():
        built = bar(group)
        if built is not None:
            out[key] = {"symbol": key[0], "ts_ms": key[1], **built}
    return out
