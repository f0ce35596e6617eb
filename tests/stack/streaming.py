"""Helpers to drive a streaming job under test: run it in the background, follow its progress lines."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from confluent_kafka import Consumer, Producer

from services import ProcessService

REPO = Path(__file__).resolve().parent.parent.parent
PROGRESS = re.compile(
    r"\[stream\] (?P<name>\S+) batch=(?P<batch>\d+) rows_in=(?P<rows>\d+) .*late_dropped=(?P<late>\d+)"
)


class StreamingJob(ProcessService):
    """A spark-submitted streaming job (scripts/submit.sh), started at once, whose output lines are kept and whose
    progress lines are parsed as they arrive. `log_path` also keeps the output in a file."""

    def __init__(self, job: str, args: list[str], env: dict[str, str], log_path: Path | None = None) -> None:
        self.own_topics: list[str] = []
        if job == "bars_job" and "--gaps-topic" not in args:
            # The broker's market.gaps.v1 holds other runs' gaps; their rebuilds would write bars into this run's
            # database. A test that names no gaps topic gets an empty one of its own, deleted at the end.
            args = [*args, "--gaps-topic", self._own_topic(env["KAFKA_BOOTSTRAP"], "gaps")]
        super().__init__(job, [str(REPO / "scripts" / "submit.sh"), job, *args], log_path=log_path, on_line=self._parse)
        self.lines: list[str] = []
        self.rows_in: dict[str, int] = {}
        self.late_dropped: dict[str, int] = {}
        self.batches: dict[str, int] = {}
        self._lock = threading.Lock()
        self.start(env)

    def _own_topic(self, bootstrap: str, role: str) -> str:
        from confluent_kafka.admin import AdminClient, NewTopic

        self._admin = AdminClient({"bootstrap.servers": bootstrap})
        name = f"test.{role}.{uuid.uuid4().hex[:10]}"
        self._admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])[name].result()
        self.own_topics.append(name)
        return name

    def stop(self, grace: float = 30.0) -> bool:
        stopped = super().stop(grace)
        if self.own_topics:
            for future in self._admin.delete_topics(self.own_topics).values():
                future.result()
            self.own_topics = []
        return stopped

    def _parse(self, line: str) -> None:
        with self._lock:
            self.lines.append(line)
            match = PROGRESS.search(line)
            if match:
                name = match["name"]
                self.rows_in[name] = self.rows_in.get(name, 0) + int(match["rows"])
                self.late_dropped[name] = self.late_dropped.get(name, 0) + int(match["late"])
                self.batches[name] = int(match["batch"])

    def wait_for(self, what: str, condition: Callable[[], bool], timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if not self.alive():
                raise AssertionError(f"job exited ({self.returncode}) waiting for {what}:\n{self.log_tail()}")
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        with self._lock:
            return "\n".join(self.lines[-n:])


def produce(
    bootstrap: str, topic: str, messages: Iterable[tuple[str, str | bytes]], headers: dict[str, str] | None = None
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for key, value in messages:
        producer.produce(topic, key=key, value=value, headers=headers)
    assert producer.flush(15) == 0


def consume_json(bootstrap: str, topic: str, expected: int, timeout: float = 120) -> list[dict]:
    """Read `topic` from the beginning until `expected` messages (or the timeout) have arrived."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            record = json.loads(msg.value())
            record["_key"] = msg.key().decode()
            record["_headers"] = {k: v.decode() for k, v in msg.headers() or []}
            out.append(record)
    finally:
        consumer.close()
    return out
