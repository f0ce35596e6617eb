"""The whole pipeline for the end-to-end tests, started once per module on the real stack: the bars, metrics and
companies jobs on the Spark cluster, the alerter posting to a fake Slack, all on topics and a database of their
own (migrated like production), so nothing else in the session can touch what these tests assert."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import migrate
from services import ProcessService
from tests.alerts.fake_slack import FakeSlack
from tests.ingest.conftest import Topics
from tests.stack.streaming import StreamingJob

E2E_DB = "sparktrends_e2e"
# Closed bars leave the bars job this long after their minute ends (the watermark); short, so the test is.
WATERMARK = "20 seconds"


@dataclass
class Pipeline:
    env: dict[str, str]
    topics: Topics
    jobs: dict[str, StreamingJob]
    slack: FakeSlack
    alerter: ProcessService
    logs: Path
    alerter_metrics: str
    ingests: list[ProcessService] = field(default_factory=list)

    def ingest(self, binary: Path, name: str, *args: str, env: dict[str, str] | None = None) -> ProcessService:
        """Start `sparktrends-ingest` with this pipeline's topics; its log goes to logs/ingest-<name>.log."""
        process = ProcessService(
            f"ingest-{name}",
            [str(binary), *args, *self.topics.args(), "--stats-interval", "2"],
            log_path=self.logs / f"ingest-{name}.log",
        )
        # Its own state directory: sources remember cursors and last trades across runs (docs/gaps.md).
        state = {"SPARKTRENDS_INGEST_STATE_DIR": str(self.logs / f"ingest-state-{name}")}
        process.start({**self.env, "RUST_LOG": "info", **state, **(env or {})})
        self.ingests.append(process)
        return process

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def pipeline(stack_settings, stack_env, owner_env, alerter_binary, tmp_path_factory) -> Iterator[Pipeline]:
    from confluent_kafka.admin import AdminClient, NewTopic

    migrate.recreate_database(E2E_DB, owner_env)
    env = {**stack_env, "POSTGRES_DB": E2E_DB}
    tag = uuid.uuid4().hex[:8]
    topics = Topics(*(f"e2e.{role}.{tag}" for role in ("trades", "bars", "companies", "deadletter", "gaps")))
    admin = AdminClient({"bootstrap.servers": stack_settings.kafka_bootstrap})
    names = [topics.trades, topics.bars, topics.companies, topics.deadletter, topics.gaps]
    for future in admin.create_topics([NewTopic(n, num_partitions=3, replication_factor=1) for n in names]).values():
        future.result()
    logs = tmp_path_factory.mktemp("e2e")
    checkpoints = logs / "checkpoints"
    jobs = {
        "bars": StreamingJob(
            "bars_job",
            ["--trades-topic", topics.trades, "--bars-topic", topics.bars, "--gaps-topic", topics.gaps,
             "--watermark", WATERMARK,
             "--trigger", "1 second", "--checkpoint", str(checkpoints)],
            env,
        ),
        "provider_bars": StreamingJob(
            "provider_bars_job", ["--bars-topic", topics.bars, "--checkpoint", str(checkpoints)], env
        ),
        "companies": StreamingJob(
            "companies_job", ["--topic", topics.companies, "--trigger", "2 seconds", "--checkpoint", str(checkpoints)],
            env,
        ),
    }  # fmt: skip
    slack = FakeSlack().start()
    from tests.browser import free_port

    metrics_address = f"127.0.0.1:{free_port()}"
    alerter = ProcessService(
        "alerter",
        [str(alerter_binary), "--poll-interval-ms", "200", "--stats-interval-ms", "1000",
         "--metrics-address", metrics_address],
        log_path=logs / "alerter.log",
    )  # fmt: skip
    alerter.start({**env, "SLACK_WEBHOOK": slack.url, "RUST_LOG": "info"})
    pipeline = Pipeline(env, topics, jobs, slack, alerter, logs, f"http://{metrics_address}/metrics")
    try:
        for job in jobs.values():
            job.wait_for("the query to start", lambda job=job: any("[stream] running" in x for x in job.lines), 240)
        yield pipeline
    finally:
        for process in [*pipeline.ingests, alerter]:
            process.stop(grace=20)
        for job in jobs.values():
            job.stop()
        slack.stop()
        for name, job in jobs.items():
            (logs / f"job-{name}.log").write_text("\n".join(job.lines))
        if os.environ.get("SPARKTRENDS_KEEP_E2E") is None:
            for future in admin.delete_topics(names).values():
                future.result()
