"""Settings from the environment and the driver-side PostgreSQL connection: what the jobs and the read API
(dashboard/) share. Free of pyspark, so a process that only reads the database need not import Spark."""

from __future__ import annotations

import os

import psycopg


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise SystemExit(f"missing environment variable {name}")
    return value


def pg_connect() -> psycopg.Connection:
    """A PostgreSQL connection as the environment says (POSTGRES_*): the components' application role."""
    return psycopg.connect(
        host=env("POSTGRES_HOST", "127.0.0.1"),
        port=env("POSTGRES_PORT", "5432"),
        user=env("POSTGRES_USER", "sparktrends"),
        password=env("POSTGRES_PASSWORD"),
        dbname=env("POSTGRES_DB", "sparktrends"),
        connect_timeout=10,
    )
