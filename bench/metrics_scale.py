"""`make bench SECTIONS=scale`: a live bar's metrics at 100, 1,000 and 5,000 symbols with 600 minutes of history.

Steady state, as a deployment has it after ten hours: a fresh database gets 600 one-minute bars per symbol through
the shipped writer (`metrics_store.apply_bars`: bars_1m, metrics_1m, the outbox and each symbol's carry). Then the
metrics job runs as shipped (spark-submitted, 5-second trigger, its own bars topic) and live minutes arrive: one bar
per symbol on the bars topic, as a REST provider's closed bars do. Latency runs from the moment a minute's bars are
on the topic to the first poll (every 100 ms) that sees a bar's metrics row; it includes the wait for the next
trigger (0 to 5 s).

Side by side in one run, on the same job and database:
  carry    the shipped path: each symbol continues from its stored carry (one metrics_carry row + its new bar);
  warm-up  the previous design's reads: carries are dropped before each minute, so every symbol re-reads and
           recomputes its 512-bar warm-up (the old code did this in the driver up to 500,000 rows, about 1,000
           symbols, and on the cluster beyond, which was slower: docs/decisions.md).
Also: PostgreSQL rows read per live bar (from the job's per-batch line), the batch's database time, and peak
resident memory of the driver (spark-submit's JVM and its Python) and of the executors.

    python bench/run.py scale
    BENCH_SCALE_SYMBOLS=100,1000 BENCH_SCALE_MINUTES=3 python bench/run.py scale     # a quicker look

Writes docs/scale_latency.png (latency against symbols, both paths).
"""

from __future__ import annotations

import math
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

import migrate  # noqa: E402
import stack  # noqa: E402
from tests.stack.streaming import StreamingJob, produce  # noqa: E402

SYMBOL_COUNTS = [int(n) for n in os.environ.get("BENCH_SCALE_SYMBOLS", "100,1000,5000").split(",")]
HISTORY_MINUTES = int(os.environ.get("BENCH_SCALE_HISTORY", 600))
LIVE_MINUTES = int(os.environ.get("BENCH_SCALE_MINUTES", 8))
WARMUP_MINUTES = int(os.environ.get("BENCH_SCALE_WARMUP_MINUTES", 3))  # the slow comparison path: fewer minutes
TRIGGER_S = 5  # the jobs' shipped trigger
DATABASE = "sparktrends_bench_scale"
LOAD_CHUNK_SYMBOLS = 250
MINUTE_MS = 60_000
PLOT = REPO / "docs" / "scale_latency.png"
BATCH_LINE = re.compile(r"\[provider_bars\] batch=\d+ bars=(?P<bars>\d+) .*bars_1m \+ metrics (?P<db>[\d.]+)s .*?"
                        r"(?P<carried>\d+) symbols from their carry \((?P<memory>\d+) in memory\), "
                        r"(?P<warmed>\d+) warmed up, "
                        r"(?P<rows>\d+) rows read")  # fmt: skip


def log(message: str) -> None:
    print(f"[scale] {time.strftime('%H:%M:%S')} {message}", flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def bar(symbol: str, ts_ms: int, close: float, rng: random.Random) -> dict:
    open_ = close * math.exp(rng.gauss(0, 0.0008))
    return {"source": "bench", "symbol": symbol, "ts_ms": ts_ms, "open": open_,
            "high": max(open_, close) * (1 + abs(rng.gauss(0, 3e-4))),
            "low": min(open_, close) * (1 - abs(rng.gauss(0, 3e-4))), "close": close,
            "volume": rng.lognormvariate(5, 0.6), "trades": rng.randint(5, 400), "vwap": (open_ + close) / 2,
            "origin": "provider"}  # fmt: skip


class Market:
    """A random walk per symbol, one bar per minute."""

    def __init__(self, symbols: list[str], seed: int) -> None:
        self.rng = random.Random(seed)
        self.close = {s: 20 + 200 * self.rng.random() for s in symbols}

    def minute(self, ts_ms: int) -> list[dict]:
        out = []
        for symbol, close in self.close.items():
            self.close[symbol] = close * math.exp(self.rng.gauss(0, 0.001))
            out.append(bar(symbol, ts_ms, self.close[symbol], self.rng))
        return out


def rss_mb(pids: set[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def process_tree(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def executor_pids() -> set[int]:
    pids = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if b"CoarseGrainedExecutorBackend" in cmdline.read_bytes():
                pids |= process_tree(int(cmdline.parent.name))
        except (OSError, ValueError):
            continue
    return pids


class MemorySampler(threading.Thread):
    """Peak RSS of the driver's process tree and of the executors, sampled every half second."""

    def __init__(self, driver_pid: int) -> None:
        super().__init__(daemon=True)
        self.driver_pid = driver_pid
        self.driver_peak = self.executor_peak = 0.0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.driver_peak = max(self.driver_peak, rss_mb(process_tree(self.driver_pid)))
            self.executor_peak = max(self.executor_peak, rss_mb(executor_pids()))
            time.sleep(0.5)


def load_history(symbols: list[str], market: Market, first_ms: int) -> float:
    from spark_jobs.metrics_store import Bar, apply_bars

    started = time.monotonic()
    minutes = [market.minute(first_ms + i * MINUTE_MS) for i in range(HISTORY_MINUTES)]
    for at in range(0, len(symbols), LOAD_CHUNK_SYMBOLS):
        chunk = set(symbols[at : at + LOAD_CHUNK_SYMBOLS])
        apply_bars([Bar.of(b) for minute in minutes for b in minute if b["symbol"] in chunk])
        log(f"history: {min(at + LOAD_CHUNK_SYMBOLS, len(symbols)):,}/{len(symbols):,} symbols x {HISTORY_MINUTES} "
            f"bars ({time.monotonic() - started:.0f}s)")  # fmt: skip
    return time.monotonic() - started


def live_minute(conn, settings: stack.Settings, topic: str, bars: list[dict]) -> list[float]:  # noqa: ANN001
    """Sends one minute's bars and returns each bar's latency to its visible metrics row."""
    import json

    ts = bars[0]["ts_ms"]
    produce(settings.kafka_bootstrap, topic, [(b["symbol"], json.dumps(b)) for b in bars])
    sent = time.monotonic()
    seen: set[str] = set()
    latencies: list[float] = []
    deadline = sent + 600
    while len(seen) < len(bars) and time.monotonic() < deadline:
        rows = conn.execute(
            "SELECT symbol FROM metrics_1m WHERE ts = 'epoch'::timestamptz + %s * interval '1 millisecond'", (ts,)
        ).fetchall()
        now = time.monotonic()
        for (symbol,) in rows:
            if symbol not in seen:
                seen.add(symbol)
                latencies.append(now - sent)
        time.sleep(0.1)
    if len(seen) < len(bars):
        raise RuntimeError(f"only {len(seen)}/{len(bars)} metrics rows of minute {ts} after 600 s")
    return latencies


def batch_stats(lines: list[str]) -> tuple[int, int, list[float]]:
    bars = rows = 0
    db_seconds = []
    for line in lines:
        match = BATCH_LINE.search(line)
        if match:
            bars += int(match["bars"])
            rows += int(match["rows"])
            db_seconds.append(float(match["db"]))
    return bars, rows, db_seconds


def one_scale(settings: stack.Settings, env: dict[str, str], symbols_count: int, workdir: Path) -> list[dict]:
    import psycopg
    from confluent_kafka.admin import AdminClient, NewTopic

    migrate.recreate_database(DATABASE, {**env, **settings.owner_env()})
    symbols = [f"SC{i:05d}" for i in range(symbols_count)]
    market = Market(symbols, seed=symbols_count)
    now_min = int(time.time() * 1000) // MINUTE_MS * MINUTE_MS
    first_ms = now_min - (HISTORY_MINUTES + LIVE_MINUTES + WARMUP_MINUTES + 6) * MINUTE_MS
    load_s = load_history(symbols, market, first_ms)
    next_ms = first_ms + HISTORY_MINUTES * MINUTE_MS

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    topic = f"bench.scale.bars.{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])[topic].result()
    job = StreamingJob("provider_bars_job", ["--bars-topic", topic, "--trigger", f"{TRIGGER_S} seconds",
                                       "--checkpoint", str(workdir / f"ckpt-{symbols_count}")], env)  # fmt: skip
    rows_out: list[dict] = []
    conn = psycopg.connect(host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"], user=env["POSTGRES_USER"],
                           password=env["POSTGRES_PASSWORD"], dbname=DATABASE, autocommit=True)  # fmt: skip
    try:
        job.wait_for("its first (empty) micro-batch", lambda: bool(job.batches), timeout=300)
        # One unmeasured minute: the job's first batch with data pays Spark's one-time start-up (4-5 s), which is
        # not the steady state this section measures.
        live_minute(conn, settings, topic, market.minute(next_ms))
        next_ms += MINUTE_MS
        sampler = MemorySampler(job.proc.pid)
        sampler.start()
        rng = random.Random(1)
        for mode, minutes in (("carry", LIVE_MINUTES), ("warm-up", WARMUP_MINUTES)):
            latencies: list[float] = []
            lines_before = len(job.lines)
            sampler.driver_peak = sampler.executor_peak = 0.0
            for _ in range(minutes):
                if mode == "warm-up":
                    conn.execute("DELETE FROM metrics_carry")
                time.sleep(rng.uniform(0, TRIGGER_S))  # land anywhere in the trigger interval
                latencies += live_minute(conn, settings, topic, market.minute(next_ms))
                next_ms += MINUTE_MS
            bars, rows, db_seconds = batch_stats(job.lines[lines_before:])
            label = f"{symbols_count:,} symbols, {mode}"
            notes = (f"{minutes} live minutes x {symbols_count:,} bars, {HISTORY_MINUTES} min of history each; "
                     f"trigger {TRIGGER_S} s")  # fmt: skip
            log(
                f"{label}: p50 {statistics.median(latencies):.2f}s p99 {percentile(latencies, 0.99):.2f}s, "
                f"{rows / max(bars, 1):.1f} rows read per live bar, driver {sampler.driver_peak:.0f} MB"
            )
            rows_out += [
                {"name": f"bar on topic -> metrics row p50 ({label})", "impl": mode,
                 "value": statistics.median(latencies), "unit": "s", "notes": notes},
                {"name": f"bar on topic -> metrics row p99 ({label})", "impl": mode,
                 "value": percentile(latencies, 0.99), "unit": "s", "notes": notes},
                {"name": f"PostgreSQL rows read per live bar ({label})", "impl": mode, "value": rows / max(bars, 1),
                 "unit": "rows", "notes": "bars and carries read to compute the batch's metrics"},
                {"name": f"metrics writer time per batch p50 ({label})", "impl": mode,
                 "value": statistics.median(db_seconds) if db_seconds else float("nan"), "unit": "s",
                 "notes": "bars_1m upsert + metrics + outbox + carries, from the job's batch line"},
                {"name": f"peak driver memory ({label})", "impl": mode, "value": sampler.driver_peak, "unit": "MB",
                 "notes": "RSS of spark-submit's JVM and its Python"},
                {"name": f"peak executor memory ({label})", "impl": mode, "value": sampler.executor_peak,
                 "unit": "MB", "notes": "RSS of the executors (they only read Kafka: metrics run in the driver)"},
            ]  # fmt: skip
        sampler.running = False
        load_notes = f"{load_s:.0f} s through the shipped writer, {LOAD_CHUNK_SYMBOLS} symbols per call"
        rows_out.append({"name": f"history load ({symbols_count:,} symbols x {HISTORY_MINUTES} bars)",
                         "impl": "apply_bars", "value": symbols_count * HISTORY_MINUTES / load_s, "unit": "bars/s",
                         "notes": load_notes})  # fmt: skip
    finally:
        conn.close()
        job.stop()
        (REPO / ".bench" / "logs").mkdir(parents=True, exist_ok=True)
        (REPO / ".bench" / "logs" / f"scale-{symbols_count}.log").write_text("\n".join(job.lines) + "\n")
        for future in admin.delete_topics([topic]).values():
            future.result()
    return rows_out


def plot(rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for mode, style in (("carry", "o-"), ("warm-up", "s--")):
        for q in ("p50", "p99"):
            points = sorted(
                (int(re.search(r"\(([\d,]+) symbols", r["name"])[1].replace(",", "")), r["value"])
                for r in rows
                if r["impl"] == mode and r["name"].startswith(f"bar on topic -> metrics row {q}")
            )
            if points:
                ax.plot(*zip(*points), style, label=f"{mode} {q}", alpha=1.0 if q == "p99" else 0.6)
    ax.axhline(TRIGGER_S + 2, color="grey", lw=0.8, ls=":", label="target p99: trigger + 2 s")
    ax.set_xscale("log")
    ax.set_xlabel(f"live symbols ({HISTORY_MINUTES} min of history each)")
    ax.set_ylabel("bar on topic → metrics row (s)")
    ax.set_title("Metrics job latency against symbols (trigger 5 s)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(PLOT)
    log(f"plot: {PLOT.relative_to(REPO)}")


def run(settings: stack.Settings) -> list[dict]:
    env = {**os.environ, **settings.client_env(), **stack.spark_env(settings), "POSTGRES_DB": DATABASE,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    os.environ.update({k: env[k] for k in ("POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_USER", "POSTGRES_PASSWORD")})
    os.environ["POSTGRES_DB"] = DATABASE  # apply_bars (history load) connects from this process
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        for count in SYMBOL_COUNTS:
            rows += one_scale(settings, env, count, Path(tmp))
    plot(rows)
    return rows
