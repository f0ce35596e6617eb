"""PostgreSQL writes of the jobs. Every write is an upsert or an insert-if-absent on a natural key, so a
replayed micro-batch changes nothing (exactly-once effect at the database)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql

from spark_jobs.common import env
from spark_jobs.contracts import REJECT_FIELDS


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


def insert_rejects(source: str, rows: Sequence[Any]) -> None:
    """Refused messages (rows with contracts.REJECT_FIELDS) of job `source` into rejected_messages, idempotent
    on their Kafka coordinates so a replayed micro-batch inserts nothing twice."""
    if not rows:
        return
    with pg_connect() as conn, conn.cursor() as cur:
        cur.executemany(
            'INSERT INTO rejected_messages (source, topic, "partition", "offset", reason_code, reason, raw) '
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [(source, *(r[f] for f in REJECT_FIELDS)) for r in rows],
        )


# How long refused messages are kept for inspection by default: long enough to look into a week-old incident,
# short enough that a flood of bad input cannot grow the table without bound (the topics keep the raw bytes
# for their own retention, contracts/topics.json).
DEFAULT_REJECT_RETENTION = "30 days"


def purge_old_rejects(max_age: str = DEFAULT_REJECT_RETENTION) -> int:
    """Delete rejected_messages and late_trades rows older than `max_age` (a PostgreSQL interval): both record
    input the bars job could not use, kept for the same inspection window. Returns how many rows went."""
    with pg_connect() as conn:
        rejects = conn.execute("DELETE FROM rejected_messages WHERE received_at < now() - %s::interval", (max_age,))
        late = conn.execute("DELETE FROM late_trades WHERE recorded_at < now() - %s::interval", (max_age,))
        return rejects.rowcount + late.rowcount


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
