"""The pipeline runner's supervision (scripts/pipeline.py): a component that dies is started again after a backoff
that doubles with each quick death, one line per death; one that finishes (exit 0) is left alone. Real processes,
a driven clock."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import pipeline


def wait_dead(component: pipeline.Component) -> None:
    deadline = time.monotonic() + 10
    while component.alive():
        assert time.monotonic() < deadline, "the test process did not exit"
        time.sleep(0.01)


def test_a_dying_component_is_restarted_with_doubling_backoff(tmp_path, capsys):
    crasher = pipeline.Component("crasher", ["sh", "-c", "exit 3"], logs=tmp_path)
    crasher.start({})
    now = time.monotonic()
    starts = 1
    delays = []
    for _ in range(4):
        wait_dead(crasher)
        crasher.supervise({}, now)  # notices the death, schedules the restart
        assert crasher.restart_at is not None
        delays.append(crasher.restart_at - now)
        crasher.supervise({}, now)  # before the backoff: nothing
        assert not crasher.alive() and crasher.restart_at is not None
        now = crasher.restart_at
        crasher.supervise({}, now)  # due: started again
        starts += 1
    assert delays == [1.0, 2.0, 4.0, 8.0]
    assert crasher.restarts == 4
    err = capsys.readouterr().err
    assert err.count("pipeline: crasher exited (3); restart") == 4
    assert (tmp_path / "pipeline-crasher.log").exists()
    assert starts == 5


def test_the_backoff_is_capped_and_resets_after_a_stable_run(tmp_path):
    crasher = pipeline.Component("crasher", ["sh", "-c", "exit 1"], logs=tmp_path, restarts=10)
    crasher.start({})
    wait_dead(crasher)
    now = crasher.started_at + 1
    crasher.supervise({}, now)
    assert crasher.restart_at == pytest.approx(now + pipeline.BACKOFF_MAX_S)
    # The same death after a long healthy run: back to the initial backoff.
    crasher.restart_at = None
    now = crasher.started_at + pipeline.STABLE_AFTER_S + 1
    crasher.supervise({}, now)
    assert crasher.restart_at == pytest.approx(now + pipeline.BACKOFF_INITIAL_S)


def test_a_finished_component_is_not_restarted(tmp_path, capsys):
    replay = pipeline.Component("ingest", ["sh", "-c", "exit 0"], logs=tmp_path)
    replay.start({})
    wait_dead(replay)
    replay.supervise({}, time.monotonic())
    replay.supervise({}, time.monotonic() + 1000)
    assert replay.finished and replay.restart_at is None and replay.restarts == 0
    assert "ingest finished (exit 0); not restarted" in capsys.readouterr().out
