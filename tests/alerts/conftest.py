"""Fixtures for the alerter's integration tests: the debug binary (built once per session;
`cargo test` has already compiled its dependencies in that profile), a fake Slack
webhook on 127.0.0.1, a clean outbox in the test database, and a runner that starts alerter processes, keeps
their output and checks, for every test, that the webhook URL never appears in it."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import ClassVar

import pytest

from services import ProcessService
from tests.alerts.fake_slack import FakeSlack

REPO = Path(__file__).resolve().parents[2]
BAR0 = datetime(2026, 3, 2, 14, 30, tzinfo=timezone.utc)
FULL_DETAILS = {
    "close": 187.25,
    "ret": -0.0412,
    "log_ret": -0.0421,
    "return_z": -6.3,
    "robust_z": -9.1,
    "volume_z": 3.4,
    "vol_cc": 0.0021,
    "anomaly_score": 2.27,
}


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    server = FakeSlack().start()
    yield server
    server.stop()


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def outbox(pg) -> object:
    """The test database's outbox, emptied: every test starts from no anomalies and no messages."""
    pg.execute("TRUNCATE anomalies, alert_messages RESTART IDENTITY CASCADE")
    return pg


def insert_anomalies(pg, rows: Sequence[dict]) -> list[int]:
    """Insert rows in ONE transaction (like a metrics micro-batch); each dict overrides the defaults."""
    ids = []
    with pg.transaction():
        for i, row in enumerate(rows):
            row = {
                "symbol": f"SYM{i:04d}",
                "ts": BAR0 + timedelta(minutes=i),
                "kind": "price_jump",
                "score": 2.5,
                "severity": "warning",
                "details": FULL_DETAILS,
                **row,
            }
            ids.append(
                pg.execute(
                    "INSERT INTO anomalies (symbol, ts, kind, score, severity, details)"
                    " VALUES (%s, %s, %s, %s, %s, %s::jsonb) RETURNING id",
                    (row["symbol"], row["ts"], row["kind"], row["score"], row["severity"], json.dumps(row["details"])),
                ).fetchone()[0]
            )
    return ids


def rows_by_id(pg) -> dict[int, dict]:
    cur = pg.execute(
        "SELECT id, symbol, status, attempts, last_error, message_id, delivery_note, delivered_at, next_attempt_at"
        " FROM anomalies ORDER BY id"
    )
    names = [c.name for c in cur.description]
    return {row[0]: dict(zip(names, row)) for row in cur.fetchall()}


def wait_until_settled(pg, ids: Sequence[int], timeout: float = 30) -> dict[int, dict]:
    """Until none of `ids` is pending; fails with the stragglers."""
    deadline = time.monotonic() + timeout
    while True:
        rows = rows_by_id(pg)
        pending = [i for i in ids if rows[i]["status"] == "pending"]
        if not pending:
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"still pending after {timeout}s: {[rows[i] for i in pending[:5]]}")
        time.sleep(0.05)


def wait_for(condition, timeout: float = 20, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Alerter(ProcessService):
    """One alerter process, its stdout and stderr in files of their own (the tests read them apart)."""

    def __init__(self, args: list[str], stdout_path: Path, stderr_path: Path) -> None:
        super().__init__("alerter", args, log_path=stdout_path, stderr_path=stderr_path)

    def stdout(self) -> str:
        assert self.log_path is not None
        return self.log_path.read_text(errors="replace")

    def stderr(self) -> str:
        assert self.stderr_path is not None
        return self.stderr_path.read_text(errors="replace")

    def kill9(self) -> None:
        self.kill()

    def stop(self, grace: float = 15) -> int:  # type: ignore[override] # the tests want the exit code
        super().stop(grace)
        assert self.proc is not None
        return self.proc.wait()


class AlerterRunner:
    """Starts alerter processes against the test database; fast test defaults, overridable per flag."""

    DEFAULTS: ClassVar[dict[str, str]] = {
        "--poll-interval-ms": "200",
        "--http-timeout-ms": "1000",
        "--retry-base-ms": "200",
        "--retry-max-ms": "2000",
        "--cooldown-secs": "0",
        "--stats-interval-ms": "500",
    }

    def __init__(self, binary: Path, env: dict[str, str], tmp: Path) -> None:
        self.binary = binary
        self.env = env
        self.tmp = tmp
        self.started: list[Alerter] = []

    def start(self, webhook: str | None, *flags: str, **overrides: str) -> Alerter:
        env = {k: v for k, v in self.env.items() if k != "SLACK_WEBHOOK"}
        env["RUST_LOG"] = "info"
        if webhook is not None:
            env["SLACK_WEBHOOK"] = webhook
        options = {**self.DEFAULTS, **{f"--{k.replace('_', '-')}": str(v) for k, v in overrides.items()}}
        args = [str(self.binary), *[x for pair in options.items() for x in pair], *flags]
        n = len(self.started)
        out, err = self.tmp / f"alerter-{n}.stdout", self.tmp / f"alerter-{n}.stderr"
        alerter = Alerter(args, out, err)
        alerter.cwd = self.tmp
        alerter.start(env)
        self.started.append(alerter)
        return alerter

    def all_output(self) -> str:
        return "".join(a.stdout() + a.stderr() for a in self.started)


@pytest.fixture
def alerters(alerter_binary, stack_env, test_db, tmp_path, slack) -> Iterator[AlerterRunner]:
    runner = AlerterRunner(alerter_binary, stack_env, tmp_path)
    yield runner
    for alerter in runner.started:
        alerter.stop()
    output = runner.all_output()
    # The webhook URL is a secret: whatever happened in the test, no process may have printed it.
    assert slack.token not in output, "the webhook URL leaked into the alerter's output"
    assert stack_env["POSTGRES_PASSWORD"] not in output, "the database password leaked into the alerter's output"
