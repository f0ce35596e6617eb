"""PostgreSQL writes of the jobs. Every write is an upsert or an insert-if-absent on a natural key, so a
replayed micro-batch changes nothing (exactly-once effect at the database)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql
from pyspark.sql import DataFrame

from spark_jobs.contracts import REJECT_FIELDS
from spark_jobs.database import pg_connect

# How long a micro-batch's writes keep trying through a PostgreSQL outage before the batch fails and the job exits
# for its supervisor to restart it from the checkpoint. A fast restart or a fail-over takes seconds, and a restart of
# the job costs 20-30 s of spark-submit and a first batch; a longer outage is better reported by a dead job.
DATABASE_RETRY_S = float(os.environ.get("SPARKTRENDS_DATABASE_RETRY_S", "120"))


def retrying_through_outages(
    job: str, write: Callable[[DataFrame, int], None], limit_s: float | None = None
) -> Callable[[DataFrame, int], None]:
    """`write` (a foreachBatch function) run again, with doubling pauses, while PostgreSQL is unreachable, for at
    most `limit_s` (DATABASE_RETRY_S); one line per retry. Safe because every write of a batch is idempotent (an
    upsert or insert-if-absent on a natural key, a Kafka record its consumers upsert): a batch written in part
    and then written again ends as if written once."""
    budget = DATABASE_RETRY_S if limit_s is None else limit_s

    def run(batch: DataFrame, batch_id: int) -> None:
        deadline, pause = time.monotonic() + budget, 1.0
        while True:
            try:
                return write(batch, batch_id)
            except psycopg.OperationalError as error:
                if time.monotonic() + pause > deadline:
                    raise
                reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                print(f"[{job}] batch={batch_id}: database unavailable ({reason}); again in {pause:.0f}s", flush=True)
                time.sleep(pause)
                pause = min(pause * 2, 15.0)

    return run


def insert_rejects(source: str, rows: Sequence[Any]) -> None:
    """Refused messages (rows with contracts.REJECT_FIELDS) of job `source` into rejected_messages, idempotent
    on their Kafka coordinates and element (a trade's position in a trade batch) so a replayed micro-batch inserts
    nothing twice."""
    if not rows:
        return
    with pg_connect() as conn, conn.cursor() as cur:
        cur.executemany(
            'INSERT INTO rejected_messages (source, topic, "partition", "offset", element, reason_code, reason, raw) '
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
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
