"""Fixtures for the ingest binary's integration tests (the debug binary: tests/conftest.py), a runner
that keeps its log, and a Kafka reader that returns every message a topic holds."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services import ProcessService
from sparktrends import contract

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Topics:
    trades: str
    bars: str
    companies: str
    deadletter: str
    gaps: str

    def args(self) -> list[str]:
        return [
            "--trades-topic",
            self.trades,
            "--bars-topic",
            self.bars,
            "--companies-topic",
            self.companies,
            "--deadletter-topic",
            self.deadletter,
            "--gaps-topic",
            self.gaps,
        ]


@pytest.fixture
def topics(kafka_topic) -> Topics:
    return Topics(
        trades=kafka_topic("trades", partitions=3),
        bars=kafka_topic("bars", partitions=3),
        companies=kafka_topic("companies", partitions=1),
        deadletter=kafka_topic("deadletter", partitions=1),
        gaps=kafka_topic("gaps", partitions=1),
    )


class Ingest(ProcessService):
    """One run of the binary, started at once, its output in a file (a pipe nobody reads could fill and block it)."""

    def __init__(self, binary: Path, args: list[str], env: dict[str, str], log_path: Path) -> None:
        super().__init__("ingest", [str(binary), *args], log_path=log_path, cwd=REPO)
        self.start(env)

    def log(self) -> str:
        assert self.log_path is not None
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if not self.alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not logged within {timeout}s; log:\n{self.log()[-3000:]}")

    def stop(self, grace: float = 20) -> int:  # type: ignore[override] # the tests want the exit code
        """SIGTERM, then the exit code (a clean stop is 0)."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
        return self.wait(grace)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"ingest did not exit within {timeout}s; log:\n{self.log()[-3000:]}") from None


@pytest.fixture
def run_ingest(ingest_binary, stack_settings, tmp_path) -> Iterator:
    started: list[Ingest] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Ingest:
        # Each test its own state directory (a flag given by the test wins): a Binance feed remembers its last trades.
        full_env = {**os.environ, "KAFKA_BOOTSTRAP": stack_settings.kafka_bootstrap, "RUST_LOG": "info",
                    "SPARKTRENDS_INGEST_STATE_DIR": str(tmp_path / "ingest-state")}  # fmt: skip
        full_env.update(env or {})
        run = Ingest(ingest_binary, [*args, "--stats-interval", "1"], full_env, tmp_path / f"ingest-{len(started)}.log")
        started.append(run)
        return run

    yield start
    for run in started:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait(5)


@dataclass
class Record:
    """One message, or one trade of a trade batch (contracts/messages.json trade.batch): `element` its position."""

    key: str
    value: dict
    partition: int
    offset: int
    element: int = 0


def read_topic(bootstrap: str, topic: str, timeout: float = 20) -> list[Record]:
    """Every message the topic holds now (up to its high watermarks), a trade batch's trades each a record, in
    partition/offset/element order."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-ingest-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        if not ends:
            return []
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        records: list[Record] = []
        remaining = dict(ends)
        deadline = time.monotonic() + timeout
        while remaining and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            key, partition, offset = msg.key().decode(), msg.partition(), msg.offset()
            values = contract.messages_in(msg.value())
            records += [Record(key, value, partition, offset, i) for i, value in enumerate(values)]
            if msg.offset() + 1 >= remaining.get(msg.partition(), 0):
                remaining.pop(msg.partition(), None)
        assert not remaining, f"timed out reading {topic}: partitions {sorted(remaining)} incomplete"
        return sorted(records, key=lambda r: (r.partition, r.offset, r.element))
    finally:
        consumer.close()


def wait_for_records(bootstrap: str, topic: str, count: int, timeout: float = 20) -> list[Record]:
    deadline = time.monotonic() + timeout
    while True:
        records = read_topic(bootstrap, topic)
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.3)


def now_ms() -> int:
    return int(time.time() * 1000)
