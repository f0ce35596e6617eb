"""The local stack CLI as a person uses it: `status` names a dead service plainly, `up` is idempotent and
brings back only what is missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import stack
from tests.conftest import REPO

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
