"""A micro-batch's writes go on through a short PostgreSQL outage (spark_jobs/store.py retrying_through_outages):
the batch is written again after doubling pauses, one line per retry, and fails once the budget is spent; any
other error fails it at once."""

from __future__ import annotations

import psycopg
import pytest

from spark_jobs import store


class FlakyWrite:
    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures, self.calls = failures, 0
        self.error = error or psycopg.OperationalError("connection refused\nIs the server running?")

    def __call__(self, batch: object, batch_id: int) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error


@pytest.fixture
def pauses(monkeypatch) -> list[float]:
    slept: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(store.time, "sleep", sleep)
    monkeypatch.setattr(store.time, "monotonic", lambda: now[0])
    return slept


def test_an_outage_shorter_than_the_budget_is_ridden_out(pauses, capsys):
    write = FlakyWrite(failures=4)
    store.retrying_through_outages("bars", write, limit_s=120)(None, 7)
    assert write.calls == 5
    assert pauses == [1.0, 2.0, 4.0, 8.0]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[bars] batch=7: database unavailable (connection refused); again in 1s"
    assert len(lines) == 4


def test_the_batch_fails_once_the_budget_is_spent(pauses):
    write = FlakyWrite(failures=100)
    with pytest.raises(psycopg.OperationalError):
        store.retrying_through_outages("bars", write, limit_s=60)(None, 7)
    assert sum(pauses) <= 60
    assert pauses == [1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0]  # 60 s of pauses, then the error


def test_other_errors_are_not_retried(pauses):
    write = FlakyWrite(failures=1, error=ValueError("a bug"))
    with pytest.raises(ValueError):
        store.retrying_through_outages("bars", write)(None, 7)
    assert write.calls == 1 and pauses == []
