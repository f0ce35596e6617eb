"""Alert latency: from an anomaly row's COMMIT (as the writer sees it return) to the webhook POST arriving at
a local fake Slack, with the alerter's default poll and timeout settings (LISTEN/NOTIFY wakes it; polling is
the fallback). Two shapes: a steady trickle, one anomaly per transaction, and bursts of many symbols
committed together (the worker then drains them one message each).

    python bench/alerts_latency.py            # against the stack of the current environment (POSTGRES_PORT, ...)

Runs in its own database (sparktrends_bench_alerts), migrated like production, so it never touches the
pipeline's outbox.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

import cargo_bin  # noqa: E402
from services import ProcessService  # noqa: E402
from tests.alerts.fake_slack import FakeSlack  # noqa: E402

BENCH_DB = "sparktrends_bench_alerts"
TRICKLE = 300  # anomalies, one per transaction
TRICKLE_GAP_S = 0.02
BURSTS = 10  # transactions ...
BURST_SIZE = 30  # ... of this many symbols each
BURST_GAP_S = 0.5


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def insert(conn, symbols: list[str], bar: datetime) -> tuple[list[int], float]:  # noqa: ANN001 - psycopg
    """One transaction; returns the ids and the monotonic time the COMMIT returned."""
    with conn.transaction():
        ids = [
            conn.execute(
                "INSERT INTO anomalies (symbol, ts, kind, score, severity, details)"
                " VALUES (%s, %s, 'price_jump', 2.5, 'warning', %s::jsonb) RETURNING id",
                (symbol, bar, json.dumps({"close": 101.5, "ret": 0.031, "return_z": 5.2, "robust_z": 6.8})),
            ).fetchone()[0]
            for symbol in symbols
        ]
    return ids, time.monotonic()


def summarise(name: str, committed: dict[int, float], slack: FakeSlack, notes: str) -> dict:
    first_post = {}
    for post in slack.snapshot():
        first_post.setdefault(post.lead_id, post.received)
    missing = set(committed) - set(first_post)
    if missing:
        raise RuntimeError(f"{name}: {len(missing)} anomalies never reached the webhook")
    latencies_ms = [(first_post[i] - committed[i]) * 1000 for i in committed]
    p50, p99 = percentile(latencies_ms, 0.50), percentile(latencies_ms, 0.99)
    return {
        "section": "alerts",
        "name": name,
        "impl": "LISTEN/NOTIFY + 1 s poll, 1 worker",
        "value": round(p99, 1),
        "p50_ms": round(p50, 1),
        "p99_ms": round(p99, 1),
        "max_ms": round(max(latencies_ms), 1),
        "mean_ms": round(statistics.fmean(latencies_ms), 1),
        "unit": "ms",
        "anomalies": len(latencies_ms),
        "notes": f"p50 {p50:.1f} ms, p99 {p99:.1f} ms; {notes}",
    }


def wait_delivered(slack: FakeSlack, ids: list[int], timeout: float = 60) -> None:
    wanted = set(ids)
    deadline = time.monotonic() + timeout
    while not wanted <= {p.lead_id for p in slack.snapshot()}:
        if time.monotonic() > deadline:
            raise RuntimeError("the alerter did not deliver every anomaly in time")
        time.sleep(0.05)


def run(stack_settings) -> list[dict]:  # noqa: ANN001 - scripts/stack.py Settings
    import psycopg

    import migrate

    binary = cargo_bin.build("sparktrends-alerter")
    env = {**os.environ, **stack_settings.client_env(), "POSTGRES_DB": BENCH_DB, "RUST_LOG": "warn"}
    migrate.recreate_database(BENCH_DB, {**env, **stack_settings.owner_env()})

    slack = FakeSlack().start()
    env["SLACK_WEBHOOK"] = slack.url
    rows = []
    with (
        tempfile.TemporaryDirectory() as logs,
        psycopg.connect(
            migrate.conninfo(BENCH_DB), user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"]
        ) as conn,
    ):
        alerter = ProcessService("alerter", [str(binary)], log_path=Path(logs) / "alerter.log")
        alerter.start(env)
        try:
            time.sleep(1.0)  # connected and listening
            bar = datetime(2026, 1, 5, 14, 30, tzinfo=timezone.utc)
            committed: dict[int, float] = {}
            for i in range(TRICKLE):
                ids, at = insert(conn, [f"T{i:04d}"], bar)
                committed[ids[0]] = at
                time.sleep(TRICKLE_GAP_S)
            wait_delivered(slack, list(committed))
            rows.append(
                summarise(
                    "anomaly commit -> webhook POST",
                    committed,
                    slack,
                    f"{TRICKLE} anomalies, one per transaction every {TRICKLE_GAP_S * 1000:.0f} ms",
                )
            )

            committed = {}
            for b in range(BURSTS):
                ids, at = insert(conn, [f"B{b:02d}S{s:03d}" for s in range(BURST_SIZE)], bar + timedelta(minutes=1))
                committed.update(dict.fromkeys(ids, at))
                time.sleep(BURST_GAP_S)
            wait_delivered(slack, list(committed))
            rows.append(
                summarise(
                    "anomaly commit -> webhook POST (bursts)",
                    committed,
                    slack,
                    f"{BURSTS} transactions of {BURST_SIZE} symbols each, one message per symbol",
                )
            )
        finally:
            alerter.stop(grace=15)
            slack.stop()
    return rows


if __name__ == "__main__":
    import stack

    for row in run(stack.settings()):
        print(json.dumps(row))
