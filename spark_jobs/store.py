"""PostgreSQL writes of the jobs. Every write is an upsert or an insert-if-absent on a natural key, so a
replayed micro-batch changes nothing (exactly-once effect at the database)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import psycopg
from psycopg import sql
from pyspark.sql import DataFrame

from spark_jobs.common import env


def pg_connect() -> psycopg.Connection:
    """A driver-side PostgreSQL connection for the transactional merge steps (upserts, outbox inserts)."""
    return psycopg.connect(
        host=env("POSTGRES_HOST", "127.0.0.1"),
        port=env("POSTGRES_PORT", "5432"),
        user=env("POSTGRES_USER", "sparktrends"),
        password=env("POSTGRES_PASSWORD"),
        dbname=env("POSTGRES_DB", "sparktrends"),
        connect_timeout=10,
    )


REJECT_COLUMNS = ["source", "topic", "partition", "offset", "reject_reason", "raw"]


def write_rejects(batch: DataFrame, batch_id: int) -> None:
    """foreachBatch sink: rejected messages into `rejected_messages`."""
    # collect, not toLocalIterator (one Spark job per partition, in sequence, even when there is nothing):
    # a micro-batch is bounded by maxOffsetsPerTrigger, and its rejects are written from the driver anyway.
    insert_rejects([tuple(r) for r in batch.select(*REJECT_COLUMNS).collect()])


def insert_rejects(rows: Sequence[tuple]) -> None:
    """Rows of REJECT_COLUMNS, idempotent on their Kafka coordinates so a replayed micro-batch inserts nothing
    twice."""
    if not rows:
        return
    with pg_connect() as conn, conn.cursor() as cur:
        cur.executemany(
            'INSERT INTO rejected_messages (source, topic, "partition", "offset", reason, raw) '
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            rows,
        )


def upsert(
    conn: psycopg.Connection,
    table: str,
    columns: Sequence[str],
    key: Sequence[str],
    rows: Iterable[Sequence[object]],
    touch: str | None = None,
) -> int:
    """INSERT ... ON CONFLICT (key) DO UPDATE of `rows`; `touch` names a timestamp column set to now()."""
    updates = [
        sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(c), sql.Identifier(c)) for c in columns if c not in key
    ]
    if touch:
        updates.append(sql.SQL("{} = now()").format(sql.Identifier(touch)))
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) DO UPDATE SET {}").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        sql.SQL(", ").join(map(sql.Identifier, key)),
        sql.SQL(", ").join(updates),
    )
    batch = list(rows)
    with conn.cursor() as cur:
        cur.executemany(statement, batch)
    return len(batch)
