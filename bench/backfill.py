"""`make bench SECTIONS=backfill`: 30 days of 1-minute bars for 20 symbols from Binance's REST API, within its
request-weight limit, as klines and, the alternative, as trades the bars would be built from.

A local fake of Binance's REST API (tests/ingest/fake_binance.py: Binance's payloads, its weights, its limit of
6000 per minute answered with 429 and then 418) serves a seeded market of 30 days (`CompactBinanceMarket`: 8
trades a minute on average, some quiet minutes). The release ingest binary runs `backfill binance` as shipped
(its own budget: 3000 weight a minute, half the limit) into fresh topics:
- `--kind klines` over the 30 days: every closed kline to the bars topic, 1000 per request of weight 2;
- `--kind trades` over the last hour of that range only: every trade to the trades topic, 1000 per request of
  weight 25, plus aggTrades lookups (weight 4) for the range's first and end trade ids. Over 30 days it would take
  the weight per bar measured here times 864,000 bars.

Each run is checked against the market: every kline (or trade) of the range on its topic exactly once and equal
to the fake's. The fake's own count of weight per minute gives the peak against the limit.
Target (issue 15): 30 days of klines for 20 symbols within the exchange's weight limit, and its rate in bars/s.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

import cargo_bin  # noqa: E402
import stack  # noqa: E402
from services import ProcessService  # noqa: E402
from sparktrends import contract  # noqa: E402
from tests.ingest.fake_binance import MINUTE_MS, CompactBinanceMarket, FakeBinanceRest, Served  # noqa: E402

SYMBOLS = [f"H{i:02d}USDT" for i in range(20)]
DAYS = 30
HOUR_MS = 3_600_000
TRADES_SPAN_MS = HOUR_MS
SERVER_LIMIT = 6000  # Binance's REQUEST_WEIGHT per minute and IP
CLIENT_BUDGET = 3000  # ingest's default --rest-weight-per-minute
TRADES_PER_MINUTE = 8
RUN_TIMEOUT_S = 900
SUMMARY = re.compile(r"binance backfill (klines|trades): (\d+) (?:bars|trades) sent in ([\d.]+) s")


def now_ms() -> int:
    return int(time.time() * 1000)


def sliding_peak(served: list[Served], window_s: float = 60.0) -> int:
    """The most weight answered within any `window_s` seconds (the fake counts per calendar minute, like Binance;
    this is the stricter reading)."""
    counted = [(s.at, s.weight) for s in served if s.status != 418]
    peak = total = first = 0
    for at, weight in counted:
        total += weight
        while counted[first][0] < at - window_s:
            total -= counted[first][1]
            first += 1
        peak = max(peak, total)
    return peak


def read_by_partition(bootstrap: str, topic: str):  # noqa: ANN201 - yields (partition, [message values])
    """Every message of the topic, one partition at a time (keyed by symbol: a symbol's messages are in one
    partition, in the order sent), so only one partition's messages are in memory at once."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-backfill-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "isolation.level": "read_committed"})  # fmt: skip
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        for partition in sorted(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            values: list[dict] = []
            if high > low:
                consumer.assign([TopicPartition(topic, partition, low)])
                deadline = time.monotonic() + 120
                offset = low - 1
                while offset < high - 1:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"timed out reading {topic}[{partition}] at {offset} of {high}")
                    for msg in consumer.consume(num_messages=10_000, timeout=1):
                        if msg.error():
                            continue
                        values += contract.messages_in(msg.value())
                        offset = msg.offset()
            yield partition, values
    finally:
        consumer.close()


def check_topic(bootstrap: str, topic: str, expected_of, key: str) -> dict:  # noqa: ANN001
    """Compares the topic with `expected_of(symbol)` (the fake's messages, in order): how many are on it, how many
    of the expected ones exactly once, repeated, missing, or unexpected/different."""
    once = repeated = missing = wrong = on_topic = expected_total = 0
    unseen = set(SYMBOLS)
    for _, values in read_by_partition(bootstrap, topic):
        on_topic += len(values)
        by_symbol: dict[str, list[dict]] = {}
        for value in values:
            by_symbol.setdefault(value["symbol"], []).append(value)
        for symbol, got in by_symbol.items():
            unseen.discard(symbol)
            want = {v[key]: v for v in expected_of(symbol)}
            expected_total += len(want)
            counts = Counter(v[key] for v in got)
            first = {}
            for v in got:
                first.setdefault(v[key], v)
            repeated += sum(n - 1 for n in counts.values())
            missing += sum(1 for k in want if k not in counts)
            wrong += sum(1 for v in got if want.get(v[key]) != v)
            once += sum(1 for k, v in want.items() if counts.get(k) == 1 and first[k] == v)
    for symbol in unseen:
        expected = len(expected_of(symbol))
        expected_total += expected
        missing += expected
    return {"on_topic": on_topic, "expected": expected_total, "once": once, "repeated": repeated,
            "missing": missing, "wrong": wrong}  # fmt: skip


def one_run(settings: stack.Settings, binary: Path, market: CompactBinanceMarket, kind: str, span: tuple[int, int],
            log) -> dict:  # noqa: ANN001 # fmt: skip
    from confluent_kafka.admin import AdminClient, NewTopic

    from_ms, to_ms = span
    tag = uuid.uuid4().hex[:8]
    topics = {role: f"bench.backfill.{role}.{tag}" for role in ("trades", "bars", "gaps", "deadletter")}
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    for future in admin.create_topics(
        [
            NewTopic(t, num_partitions=1 if role == "deadletter" else 6, replication_factor=1)
            for role, t in topics.items()
        ]
    ).values():
        future.result()
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-backfill-{kind}-"))
    env = {**os.environ, "KAFKA_BOOTSTRAP": settings.kafka_bootstrap, "RUST_LOG": "info"}
    lines: list[str] = []

    def progress(line: str) -> None:
        lines.append(line)
        at = line.find("binance backfill")
        if at >= 0 and " finished [" not in line:
            log(f"backfill: {line[at:]}")

    try:
        with FakeBinanceRest(market, weight_limit=SERVER_LIMIT, window_s=60) as rest:
            args = ["backfill", "binance", "--symbols", ",".join(SYMBOLS), "--from", str(from_ms), "--to", str(to_ms),
                    "--kind", kind, "--rest-url", rest.url, "--state-dir", str(workdir / "state"),
                    "--progress-interval", "5",
                    *[a for role, t in topics.items() for a in (f"--{role}-topic", t)]]  # fmt: skip
            ingest = ProcessService("ingest", [str(binary), *args], log_path=workdir / "ingest.log", on_line=progress)
            started = time.monotonic()
            ingest.start(env)
            assert ingest.proc is not None
            try:
                code = ingest.proc.wait(RUN_TIMEOUT_S)
            finally:
                ingest.stop()
            wall = time.monotonic() - started
            served = list(rest.served)
        if code != 0:
            raise RuntimeError(
                f"backfill {kind} exited {code}; log {workdir / 'ingest.log'}:\n" + "\n".join(lines[-30:])
            )
        summary = next(m for m in map(SUMMARY.search, lines) if m)
        log(f"backfill: {kind}: checking the topic against the market")
        if kind == "klines":
            check = check_topic(settings.kafka_bootstrap, topics["bars"],
                                lambda s: market.expected_bars(s, from_ms, to_ms), "ts_ms")  # fmt: skip
        else:
            check = check_topic(
                settings.kafka_bootstrap,
                topics["trades"],
                lambda s: [t.canonical(s) for t in market.trades_between(s, from_ms, to_ms)],
                "trade_id",
            )
    finally:
        for future in admin.delete_topics(list(topics.values())).values():
            future.result()
    statuses = Counter(s.status for s in served)
    result = {
        "kind": kind,
        "wall_s": wall,
        "ingest_s": float(summary.group(3)),
        "sent": int(summary.group(2)),
        "minutes": (to_ms - from_ms) // MINUTE_MS * len(SYMBOLS),
        "requests": len(served),
        "by_path": dict(Counter(s.path.rsplit("/", 1)[-1] for s in served)),
        "weight": sum(s.weight for s in served if s.status != 418),
        "peak_minute": max((s.used_weight for s in served), default=0),
        "peak_sliding": sliding_peak(served),
        "status_429": statuses[429],
        "status_418": statuses[418],
        **check,
    }
    log(f"backfill: {kind}: {result}")
    return result


def fake_page_ms(market: CompactBinanceMarket, from_ms: int) -> float:
    """What the fake spends on one klines answer of 1000 rows (rows and JSON), without HTTP."""
    started = time.perf_counter()
    pages = 20
    for page in range(pages):
        start = from_ms + page * 1000 * MINUTE_MS
        json.dumps(market.kline_page(SYMBOLS[page % len(SYMBOLS)], now_ms(), start, start + 1000 * MINUTE_MS - 1, 1000))
    return (time.perf_counter() - started) / pages * 1000


def run(settings: stack.Settings) -> list[dict]:
    binary = cargo_bin.build("sparktrends-ingest")
    # Ending at a whole minute two hours ago: every kline of the range is closed, and the market goes on an hour
    # past it, where the trades backfill looks for the first trade id after its range.
    to_ms = now_ms() // MINUTE_MS * MINUTE_MS - 2 * HOUR_MS
    from_ms = to_ms - DAYS * 24 * HOUR_MS
    started = time.monotonic()
    market = CompactBinanceMarket(SYMBOLS, from_ms - HOUR_MS, to_ms + HOUR_MS, seed=15,
                                  trades_per_minute=TRADES_PER_MINUTE)  # fmt: skip
    generated_s = time.monotonic() - started
    trades_total = sum(market.trade_count(s) for s in SYMBOLS)
    print(f"backfill: market of {DAYS} days x {len(SYMBOLS)} symbols, {trades_total:,} trades, "
          f"{market.nbytes() / 1e6:.0f} MB, generated in {generated_s:.1f} s", flush=True)  # fmt: skip
    page_ms = fake_page_ms(market, from_ms)
    klines = one_run(settings, binary, market, "klines", (from_ms, to_ms), lambda m: print(m, flush=True))
    trades = one_run(settings, binary, market, "trades", (to_ms - TRADES_SPAN_MS, to_ms),
                     lambda m: print(m, flush=True))  # fmt: skip

    def per_bar(r: dict) -> float:
        return r["weight"] / r["minutes"]

    def rate(r: dict) -> float:
        return r["minutes"] / r["wall_s"]

    def exactly_once(r: dict, unit: str) -> str:
        good = r["once"] == r["expected"] == r["on_topic"] and not (r["repeated"] or r["missing"] or r["wrong"])
        return (f"{'every' if good else 'NOT every'} {unit} of the range on the topic exactly once and equal to the "
                f"fake's: {r['once']:,}/{r['expected']:,} ({r['on_topic']:,} messages, {r['repeated']} repeated, "
                f"{r['missing']} missing, {r['wrong']} different)")  # fmt: skip

    klines_impl = "klines (/api/v3/klines: 1000 bars per request of weight 2)"
    trades_impl = "bars from trades (/api/v3/historicalTrades: 1000 trades per request of weight 25, + aggTrades)"
    thirty_days_bars = DAYS * 1440 * len(SYMBOLS)
    trades_weight_30d = per_bar(trades) * thirty_days_bars
    requests = ", ".join(f"{n} {path}" for path, n in sorted(trades["by_path"].items()))
    return [
        {"name": f"backfill {DAYS} days x {len(SYMBOLS)} symbols of 1-minute bars", "impl": klines_impl,
         "value": rate(klines), "unit": "bars/s",
         "notes": f"{klines['minutes']:,} bars in {klines['wall_s']:.1f} s wall (process start to exit; ingest's own "
                  f"count: {klines['ingest_s']:.1f} s); {exactly_once(klines, 'kline')}; ingest's budget "
                  f"{CLIENT_BUDGET} weight/min (its default)"},
        {"name": "backfill 1 hour x 20 symbols of 1-minute bars", "impl": trades_impl,
         "value": rate(trades), "unit": "bars-equivalent/s",
         "notes": f"{trades['minutes']:,} minutes ({trades['sent']:,} trades, {TRADES_PER_MINUTE} a minute on average) "
                  f"in {trades['wall_s']:.1f} s wall (ingest: {trades['ingest_s']:.1f} s); "
                  f"{exactly_once(trades, 'trade')}; same budget"},
        {"name": "request weight per bar", "impl": klines_impl, "value": per_bar(klines), "unit": "weight/bar",
         "notes": f"{klines['requests']} requests, weight {klines['weight']:,} in all"},
        {"name": "request weight per bar", "impl": trades_impl, "value": per_bar(trades), "unit": "weight/bar",
         "notes": f"{requests}, weight {trades['weight']:,} in all; grows with the trades per minute. "
                  f"{DAYS} days this way: weight {trades_weight_30d:,.0f}, "
                  f"{trades_weight_30d / CLIENT_BUDGET / 60:.1f} h at {CLIENT_BUDGET}/min, "
                  f"{trades_weight_30d / SERVER_LIMIT / 60:.1f} h at the whole limit (estimate from the weight per "
                  f"bar measured here)"},
        *({"name": "peak weight in one minute (the fake's count, like Binance's)", "impl": impl,
           "value": r["peak_minute"], "unit": "weight",
           "notes": f"limit {SERVER_LIMIT}; most in any sliding 60 s: {r['peak_sliding']:,}"}
          for impl, r in ((klines_impl, klines), (trades_impl, trades))),
        *({"name": "429 / 418 answers", "impl": impl, "value": f"{r['status_429']} / {r['status_418']}",
           "unit": "answers", "notes": f"of {r['requests']} requests"}
          for impl, r in ((klines_impl, klines), (trades_impl, trades))),
        {"name": "what the fake costs", "impl": "CompactBinanceMarket (tests/ingest/fake_binance.py)",
         "value": market.nbytes() / 1e6, "unit": "MB",
         "notes": f"{trades_total:,} trades in numpy arrays, generated in {generated_s:.1f} s; a 1000-row klines "
                  f"answer takes {page_ms:.1f} ms to build (BinanceMarket: every trade a Python object, and all "
                  f"43,200 klines of a symbol recomputed per request)"},
    ]  # fmt: skip


if __name__ == "__main__":
    for row in run(stack.settings()):
        print(row)
