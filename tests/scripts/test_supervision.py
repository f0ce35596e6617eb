"""Supervision (scripts/services.py), what the pipeline runner (`make run`, compose's runner) relies on: a service
that dies is started again after a backoff that doubles with each quick death, one line per death; one that
finishes (exit 0) is left alone; a stop reaches the whole process group. Real processes, a driven clock."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import services


def wait_dead(service: services.ProcessService) -> None:
    deadline = time.monotonic() + 10
    while service.alive():
        assert time.monotonic() < deadline, "the test process did not exit"
        time.sleep(0.01)


def supervised(tmp_path: Path, script: str, said: list[str]) -> tuple[services.ProcessService, services.Supervisor]:
    service = services.ProcessService("crasher", ["sh", "-c", script], log_path=tmp_path / "crasher.log")
    return service, services.Supervisor([service], env={}, say=said.append)


def test_a_dying_service_is_restarted_with_doubling_backoff(tmp_path):
    said: list[str] = []
    crasher, supervisor = supervised(tmp_path, "echo started; exit 3", said)
    supervisor.start()
    watch = supervisor.watches[0]
    now, delays = time.monotonic(), []
    for _ in range(4):
        wait_dead(crasher)
        assert supervisor.dead() == [crasher]
        supervisor.tick(now)  # notices the death, schedules the restart
        assert watch.restart_at is not None
        delays.append(watch.restart_at - now)
        supervisor.tick(now)  # before the backoff: nothing
        assert not crasher.alive() and watch.restart_at is not None
        now = watch.restart_at
        supervisor.tick(now)  # due: started again
    wait_dead(crasher)
    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert watch.restarts == 4
    assert sum("crasher exited (3); restart" in line for line in said) == 4
    assert sum(line.startswith("restarted crasher") for line in said) == 4
    assert (tmp_path / "crasher.log").read_text() == "started\n" * 5  # every run appends to one log


def test_the_backoff_is_capped_and_resets_after_a_stable_run(tmp_path):
    crasher, supervisor = supervised(tmp_path, "exit 1", [])
    watch = supervisor.watches[0]
    watch.restarts = 10
    supervisor.start()
    wait_dead(crasher)
    now = crasher.started_at + 1
    supervisor.tick(now)
    assert watch.restart_at == pytest.approx(now + services.BACKOFF_MAX_S)
    # The same death after a long healthy run: back to the initial backoff.
    watch.restart_at = None
    now = crasher.started_at + services.STABLE_AFTER_S + 1
    supervisor.tick(now)
    assert watch.restart_at == pytest.approx(now + services.BACKOFF_INITIAL_S)


def test_a_finished_service_is_not_restarted(tmp_path):
    said: list[str] = []
    replay, supervisor = supervised(tmp_path, "exit 0", said)
    supervisor.start()
    wait_dead(replay)
    supervisor.tick(time.monotonic())
    supervisor.tick(time.monotonic() + 1000)
    watch = supervisor.watches[0]
    assert watch.finished and watch.restart_at is None and watch.restarts == 0
    assert supervisor.dead() == []
    assert "crasher finished (exit 0); not restarted" in said


def test_output_goes_to_the_log_and_line_by_line_to_a_reader(tmp_path):
    lines: list[str] = []
    service = services.ProcessService(
        "talker", ["sh", "-c", "echo one; echo two >&2"], log_path=tmp_path / "talker.log", on_line=lines.append
    )
    service.start({})
    wait_dead(service)
    deadline = time.monotonic() + 5
    while len(lines) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lines == ["one", "two"]
    assert (tmp_path / "talker.log").read_text() == "one\ntwo\n"
    assert service.health() == services.Health(False, "exited 0")


def test_a_stop_reaches_the_whole_process_group(tmp_path):
    # A parent that ignores nothing and a child it started, as spark-submit starts the driver's JVM and Python.
    service = services.ProcessService("tree", ["sh", "-c", "sleep 300 & echo $! > child.pid; wait"], cwd=tmp_path)
    service.start({})
    deadline = time.monotonic() + 5
    while not (tmp_path / "child.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    child = int((tmp_path / "child.pid").read_text())
    assert service.health().up
    assert service.stop(grace=5)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not Path(f"/proc/{child}").exists(), "the child outlived the stop"
    assert not service.stop(), "a second stop finds nothing to do"
