"""Fixtures for tests that run against the real local stack (scripts/stack.py up)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import cargo_bin  # noqa: E402
import migrate  # noqa: E402
import stack  # noqa: E402

TEST_DB = os.environ.get("SPARKTRENDS_TEST_DB", "sparktrends_test")


@pytest.fixture(scope="session")
def stack_settings() -> stack.Settings:
    """The running stack's settings; fails (never skips) when a service is down: these tests need all of it."""
    s = stack.settings()
    down = [f"{name}: {detail}" for name, up, _, _, detail in stack.service_rows(s) if not up]
    if down:
        pytest.fail("the local stack is not up (run `make up`):\n  " + "\n  ".join(down))
    return s


@pytest.fixture(scope="session")
def stack_env(stack_settings: stack.Settings) -> dict[str, str]:
    """Environment for processes the tests start: the stack's clients, pointed at the test database."""
    env = {**os.environ, **stack_settings.client_env(), **stack.spark_env(stack_settings)}
    env["POSTGRES_DB"] = TEST_DB
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return env


@pytest.fixture(scope="session")
def owner_env(stack_settings: stack.Settings, stack_env: dict[str, str]) -> dict[str, str]:
    """stack_env as the database owner: for a test's own set-up and inspection (creating databases, triggers),
    never for the components under test, which connect as the application role like in production."""
    return {**stack_env, **stack_settings.owner_env(), "POSTGRES_DB": stack_env["POSTGRES_DB"]}


@pytest.fixture(scope="session")
def test_db(owner_env: dict[str, str]) -> str:
    """A fresh database migrated like production, so tests never touch the pipeline's own data."""
    migrate.recreate_database(TEST_DB, owner_env)
    return TEST_DB


def connect(env: dict[str, str], dbname: str, autocommit: bool = False):
    """A connection to `dbname` as `env` says (stack_env: the application role; owner_env: the owner)."""
    import psycopg

    return psycopg.connect(
        host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"],
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        dbname=dbname,
        autocommit=autocommit,
    )


@pytest.fixture
def pg(owner_env: dict[str, str], test_db: str) -> Iterator[object]:
    """The test's own connection to its database, as the owner."""
    with connect(owner_env, test_db, autocommit=True) as conn:
        yield conn


@pytest.fixture
def kafka_topic(stack_settings: stack.Settings) -> Iterator[Callable[..., str]]:
    """Factory for throw-away topics with unique names; deleted after the test."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": stack_settings.kafka_bootstrap})
    created: list[str] = []

    def make(base: str = "test", partitions: int = 3) -> str:
        name = f"test.{base}.{uuid.uuid4().hex[:10]}"
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result()
        created.append(name)
        return name

    yield make
    if created:
        for future in admin.delete_topics(created).values():
            future.result()


@pytest.fixture
def submit(stack_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run scripts/submit.sh <job> <args> against the standalone master; fails the test with the log tail."""

    def run(job: str, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(REPO / "scripts" / "submit.sh"), job, *args],
            env=stack_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            pytest.fail(f"spark-submit {job} exited {result.returncode}:\n{result.stderr[-4000:]}")
        return result

    return run


@pytest.fixture(scope="session")
def local_spark() -> Iterator[object]:
    """A local SparkSession for the jobs' logic (parsing, admission, bars) in seconds, without the cluster.
    The jobs themselves always run on the standalone master; this is the unit-test harness only."""
    from pyspark.sql import SparkSession

    # Python workers must import the installed sparktrends wheel: the interpreter running the tests.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.master("local[1]")
        .appName("sparktrends-unit")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    yield spark
    spark.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need the local stack carry the `stack` marker (`pytest -m "not stack"` runs the fast ones)."""
    for item in items:
        if "stack_settings" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)


def debug_binary(package: str) -> Path:
    """A workspace binary in the debug profile: `cargo test` has already compiled its dependencies that way,
    which saves a cold release build in CI."""
    try:
        return cargo_bin.build(package, release=False)
    except cargo_bin.BuildError as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def ingest_binary() -> Path:
    return debug_binary("sparktrends-ingest")


@pytest.fixture(scope="session")
def alerter_binary() -> Path:
    return debug_binary("sparktrends-alerter")


def master_json(stack_settings: stack.Settings) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack_settings.master_ui_port}/json/", timeout=5) as resp:
        return json.load(resp)
