"""StallWatch (spark_jobs/common.py): a query that reports no trigger for longer than the limit is reported
once, again each repeat interval while it lasts, and once more when it moves; a query that keeps reporting,
with data or idle, never is. Fake queries, a driven clock."""

from __future__ import annotations

from types import SimpleNamespace

from spark_jobs.common import StallWatch


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def query(active: bool = True, batch: int | None = 7) -> SimpleNamespace:
    return SimpleNamespace(
        id="q-1",
        name="bars",
        isActive=active,
        lastProgress={"batchId": batch} if batch is not None else None,
        status={"message": "Processing new data"},
    )


def test_a_query_that_keeps_reporting_is_never_stalled():
    clock = Clock()
    watch, bars = StallWatch(after_s=60, clock=clock), query()
    watch.heard("q-1")
    for _ in range(30):  # idle events every 10 s for five minutes
        clock.now += 10
        assert watch.heard("q-1") is None
        assert watch.check([bars]) == []


def test_a_silent_query_is_reported_then_repeated_then_cleared():
    clock = Clock()
    watch, bars = StallWatch(after_s=60, repeat_s=60, clock=clock), query()
    watch.heard("q-1")
    clock.now += 59
    assert watch.check([bars]) == []
    clock.now += 1
    assert watch.check([bars]) == [
        "[stream] STALLED: bars has finished no trigger for 60s since batch 7 (Spark: Processing new data)"
    ]
    clock.now += 30
    assert watch.check([bars]) == []  # not again before the repeat interval
    clock.now += 30
    assert watch.check([bars]) == [
        "[stream] STALLED: bars has finished no trigger for 120s since batch 7 (Spark: Processing new data)"
    ]
    clock.now += 5
    assert watch.heard("q-1") == "[stream] bars is moving again after 125s without a trigger"
    assert watch.heard("q-1") is None
    clock.now += 59
    assert watch.check([bars]) == []


def test_a_query_that_never_finished_its_first_batch_or_has_stopped():
    clock = Clock()
    watch = StallWatch(after_s=60, clock=clock)
    first, stopped = query(batch=None), SimpleNamespace(**{**vars(query()), "id": "q-2", "isActive": False})
    assert watch.check([first, stopped]) == []  # first sight starts the clock
    clock.now += 61
    assert watch.check([first, stopped]) == [
        "[stream] STALLED: bars has finished no trigger for 61s since its start (Spark: Processing new data)"
    ]
