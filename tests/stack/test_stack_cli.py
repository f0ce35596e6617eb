"""The local stack CLI as a person uses it: `status` names a dead service plainly, `up` is idempotent and
brings back only what is missing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

import stack
from tests.conftest import REPO
from tests.stack.streaming import StreamingJob, produce

STACK = [sys.executable, str(REPO / "scripts" / "stack.py")]


def run_stack(*verb: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STACK, *verb], capture_output=True, text=True, timeout=180)


def test_status_reports_a_killed_service_and_up_restores_only_it(stack_settings):
    before = run_stack("status")
    assert before.returncode == 0, before.stdout
    for service in ("postgres", "kafka", "spark-master", "spark-worker"):
        assert f"{service}" in before.stdout

    worker_pid = int((stack.RUN / "spark-worker.pid").read_text())
    kafka_pid = int((stack.RUN / "kafka.pid").read_text())
    os.kill(worker_pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and os.path.exists(f"/proc/{worker_pid}"):
        time.sleep(0.2)

    after = run_stack("status")
    assert after.returncode == 1
    worker_line = next(line for line in after.stdout.splitlines() if "spark-worker" in line)
    assert "DOWN" in worker_line and f"process {worker_pid} is not running" in worker_line

    restored = run_stack("up")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "kafka already running" in restored.stdout
    assert "spark worker up" in restored.stdout
    assert int((stack.RUN / "kafka.pid").read_text()) == kafka_pid
    assert run_stack("status").returncode == 0


@pytest.mark.timeout(600)
def test_a_streaming_job_keeps_its_executors_when_the_master_is_killed(stack_env, kafka_topic, pg, tmp_path):
    """kill -9 of the Spark master under a running bars job, then `up`: the new master reads back the running
    applications (recovery mode), so the worker keeps their executors and bars go on landing. Without recovery, the
    new master had the worker kill them, and the job stalled for good."""
    trades_topic, bars_topic = kafka_topic("trades"), kafka_topic("bars")
    symbol = f"MK{uuid.uuid4().hex[:6].upper()}"
    t0 = (int(time.time() * 1000) // 60_000 - 20) * 60_000

    def minutes(first: int, last: int) -> list[tuple[str, str]]:
        return [
            (symbol, json.dumps({"source": "test", "symbol": symbol, "ts_ms": t0 + m * 60_000 + i * 10_000,
                                 "price": 100.0 + m, "size": 1.0, "trade_id": f"{m}-{i}"}))
            for m in range(first, last + 1)
            for i in range(6)
        ]  # fmt: skip

    def bars() -> int:
        return pg.execute("SELECT count(*) FROM bars_1m WHERE symbol = %s", (symbol,)).fetchone()[0]

    args = ["--trades-topic", trades_topic, "--bars-topic", bars_topic, "--watermark", "10 seconds",
            "--trigger", "1 second", "--checkpoint", str(tmp_path / "ckpt")]  # fmt: skip
    job = StreamingJob("bars_job", args, stack_env)
    try:
        produce(stack.settings().kafka_bootstrap, trades_topic, minutes(0, 2))  # minutes 0 and 1 close
        job.wait_for("the first bars", lambda: bars() == 2)
        os.kill(int((stack.RUN / "spark-master.pid").read_text()), signal.SIGKILL)
        restored = run_stack("up")
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert "spark master up" in restored.stdout
        produce(stack.settings().kafka_bootstrap, trades_topic, minutes(3, 5))  # closes minutes 2 to 4
        job.wait_for("bars after the master's restart", lambda: bars() == 5, timeout=240)
        assert job.alive()
    finally:
        job.stop()
    lost = [line for line in job.lines if "Lost executor" in line]
    assert not lost, lost
