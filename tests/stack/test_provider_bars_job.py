"""The metrics job on the real broker, cluster and database.

One scenario, the way production meets it: bars arrive (the REST path: straight onto the bars topic), the
metrics driver is killed with SIGKILL mid-stream and restarted from its checkpoint, late bars and a corrected
bar arrive after the bars that follow them, and invalid bars are mixed in. Then:
  * no missing and no duplicated rows in bars_1m, metrics_1m or anomalies;
  * metrics_1m equals the Rust kernels run on each symbol's final bars (late bars repaired what followed);
  * batch/stream parity: the batch recompute job, from an empty metrics_1m, writes the same numbers and the
    same anomalies;
  * invalid bars are in rejected_messages with their reject codes;
  * a bar the bars job has already applied (its header says so) is skipped.
"""

from __future__ import annotations

import json
import math
import random
import time
import uuid

import pytest

from spark_jobs.contracts import APPLIED_HEADER
from tests.stack.metrics_checks import assert_same_metrics, expected_metrics, stored_metrics
from tests.stack.streaming import StreamingJob, produce

MINUTE_MS = 60_000


def make_bars(symbol: str, start_ms: int, count: int, rng: random.Random) -> list[dict]:
    """A random walk with a 30-minute overnight-like gap and a couple of injected price jumps."""
    bars, price = [], 100.0 * (1 + rng.random())
    jumps = set(rng.sample(range(60, count), 2))
    ts = start_ms
    for i in range(count):
        ts += MINUTE_MS * (31 if i == count // 2 else 1)
        ret = rng.gauss(0, 0.001) + (0.02 if i in jumps else 0.0)
        open_ = price
        close = price * math.exp(ret)
        high = max(open_, close) * (1 + abs(rng.gauss(0, 0.0005)))
        low = min(open_, close) * (1 - abs(rng.gauss(0, 0.0005)))
        volume = rng.lognormvariate(3, 0.5) * (8 if i in jumps else 1)
        bars.append({"source": "test", "symbol": symbol, "ts_ms": ts, "open": open_, "high": high, "low": low,
                     "close": close, "volume": volume, "trades": rng.randint(1, 50),
                     "vwap": (high + low + close) / 3})  # fmt: skip
        price = close
    return bars


def messages(bars: list[dict]) -> list[tuple[str, str]]:
    return [(b["symbol"], json.dumps(b)) for b in bars]


def anomalies(pg, symbols: list[str]) -> list[tuple]:
    """The live outbox rows: an alert raised on a bar whose baseline a late bar then changed is withdrawn."""
    return pg.execute(
        "SELECT symbol, ts, kind, severity, round(score::numeric, 9) FROM anomalies WHERE symbol = ANY(%s) "
        "AND coalesce(delivery_note, '') NOT LIKE 'withdrawn:%%' ORDER BY symbol, ts, kind",
        (symbols,),
    ).fetchall()


@pytest.mark.timeout(900)
def test_kill_restart_late_bars_and_batch_parity(stack_settings, stack_env, kafka_topic, pg, submit, tmp_path):
    rng = random.Random(11)
    tag = uuid.uuid4().hex[:6].upper()
    symbols = [f"T{tag}A", f"T{tag}B", f"T{tag}C"]
    start_ms = (int(time.time() * 1000) // MINUTE_MS - 400) * MINUTE_MS
    all_bars = [b for s in symbols for b in make_bars(s, start_ms, 200, rng)]
    all_bars.sort(key=lambda b: b["ts_ms"])

    # Hold back some bars of the first half: they arrive late, after the bars that follow them.
    first_half, second_half = all_bars[: len(all_bars) // 2], all_bars[len(all_bars) // 2 :]
    late = rng.sample(first_half[60:], 12)
    on_time = [b for b in first_half if b not in late]
    # A provider correction: the same minute again with a new close; the newest message wins.
    corrected = dict(second_half[40], close=second_half[40]["close"] * 1.01)
    corrected["high"] = max(corrected["high"], corrected["close"])
    final_bars = [corrected if b is second_half[40] else b for b in all_bars]
    invalid = [
        (symbols[0], "not json at all"),
        (symbols[0], json.dumps({**on_time[0], "high": -1.0})),
        (symbols[0], json.dumps({**on_time[0], "ts_ms": on_time[0]["ts_ms"] + 1234})),
    ]

    topic = kafka_topic("bars", partitions=3)
    args = ["--bars-topic", topic, "--trigger", "2 seconds", "--checkpoint", str(tmp_path / "ckpt")]
    job = StreamingJob("provider_bars_job", args, stack_env)
    try:
        produce(stack_settings.kafka_bootstrap, topic, messages(on_time[: len(on_time) // 2]))
        job.wait_for("first batches", lambda: job.rows_in.get("provider_bars", 0) >= len(on_time) // 2)
        produce(stack_settings.kafka_bootstrap, topic, messages(on_time[len(on_time) // 2 :]) + invalid)
        time.sleep(1.5)  # let the next micro-batch start, then kill the driver in the middle of the stream
        job.kill()
    finally:
        job.stop()

    produce(
        stack_settings.kafka_bootstrap,
        topic,
        [*messages(second_half + late), (corrected["symbol"], json.dumps(corrected))],
    )
    applied_elsewhere = make_bars(f"T{tag}D", start_ms, 100, random.Random(0))[:1]
    produce(stack_settings.kafka_bootstrap, topic, messages(applied_elsewhere), headers={APPLIED_HEADER: "bars_job"})
    total = len(all_bars) + 1 + len(invalid) + len(applied_elsewhere)
    job = StreamingJob("provider_bars_job", args, stack_env)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            count = pg.execute("SELECT count(*) FROM metrics_1m WHERE symbol = ANY(%s)", (symbols,)).fetchone()[0]
            newest = pg.execute(
                "SELECT close FROM bars_1m WHERE symbol = %s AND ts = to_timestamp(%s / 1000.0)",
                (corrected["symbol"], corrected["ts_ms"]),
            ).fetchone()
            if count == len(all_bars) and newest and newest[0] == corrected["close"]:
                break
            assert job.proc.poll() is None, job.log_tail()
            time.sleep(1)
        time.sleep(5)  # one more trigger: the repair of late bars lands in the same batches
    finally:
        job.stop()
    # Resumed from the checkpoint: what the first run committed is not read again.
    assert job.rows_in.get("provider_bars", 0) <= total - len(on_time) // 2, job.log_tail()
    # Micro-batches this small compute in the driver; the recompute job below runs on the cluster, so the
    # parity check compares the two.
    assert "on the driver" in job.log_tail(400), job.log_tail()

    bars_count = pg.execute("SELECT count(*), count(DISTINCT (symbol, ts)) FROM bars_1m WHERE symbol = ANY(%s)",
                            (symbols,)).fetchone()  # fmt: skip
    assert bars_count == (len(all_bars), len(all_bars))
    assert "applied_by_bars_job=1" in job.log_tail(400), job.log_tail()  # read, counted ...
    assert pg.execute("SELECT count(*) FROM bars_1m WHERE symbol = %s", (f"T{tag}D",)).fetchone() == (0,)  # skipped

    streamed = stored_metrics(pg, symbols)
    assert_same_metrics(streamed, expected_metrics(final_bars))
    streamed_anomalies = anomalies(pg, symbols)
    assert streamed_anomalies, "the injected jumps must raise anomalies"
    assert len(streamed_anomalies) == len(set((a[0], a[1], a[2]) for a in streamed_anomalies))

    # Batch parity: the recompute job, from scratch, through the same code path.
    pg.execute("DELETE FROM metrics_1m WHERE symbol = ANY(%s)", (symbols,))
    pg.execute("DELETE FROM anomalies WHERE symbol = ANY(%s)", (symbols,))
    result = submit("recompute_job", "--symbols", ",".join(symbols))
    assert f"{len(symbols)} symbols, {len(all_bars)} metric rows" in result.stdout
    assert "on the cluster" in result.stdout
    assert_same_metrics(stored_metrics(pg, symbols), streamed)
    assert anomalies(pg, symbols) == streamed_anomalies

    codes = [r[0] for r in pg.execute("SELECT reason_code FROM rejected_messages WHERE topic = %s", (topic,))]
    assert sorted(codes) == sorted(["malformed_json", "price_not_positive", "ts_not_minute_aligned"])
