"""Every micro-batch's progress in PostgreSQL (`stream_progress`, migration 0012): rows in, rate, batch time, the
write's share, rows dropped as too late, how far the Kafka source is behind its topic, the watermark. The dashboard's
pipeline page and the read API's /metrics read it. Written from the driver's query listener after each batch; a
failure to write is reported (once a minute at most) and never reaches the stream."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import psycopg

from spark_jobs.database import pg_connect

KEEP = "7 days"
PURGE_EVERY = 720  # batches between purges of rows older than KEEP (an hour of 5 s triggers)
REPORT_EVERY_S = 60.0

_UPSERT = """
    INSERT INTO stream_progress (job, query, batch_id, at, rows_in, rows_per_s, duration_ms, write_ms, late_dropped,
                                 source, offsets_behind, watermark)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (job, query, batch_id) DO UPDATE SET
        at = EXCLUDED.at, rows_in = EXCLUDED.rows_in, rows_per_s = EXCLUDED.rows_per_s,
        duration_ms = EXCLUDED.duration_ms, write_ms = EXCLUDED.write_ms, late_dropped = EXCLUDED.late_dropped,
        source = EXCLUDED.source, offsets_behind = EXCLUDED.offsets_behind, watermark = EXCLUDED.watermark
"""


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def row_of(job: str, p: Any) -> tuple[Any, ...]:
    """The stream_progress row of a StreamingQueryProgress."""
    took = p.durationMs or {}
    behind = [
        int(float(s.metrics["maxOffsetsBehindLatest"]))
        for s in p.sources
        if s.metrics and s.metrics.get("maxOffsetsBehindLatest") not in (None, "", "NaN")
    ]
    return (
        job,
        p.name or str(p.id),
        p.batchId,
        _time(p.timestamp),
        p.numInputRows,
        p.processedRowsPerSecond,
        took.get("triggerExecution"),
        took.get("addBatch"),
        sum(op.numRowsDroppedByWatermark for op in p.stateOperators),
        ", ".join(s.description for s in p.sources)[:500] or None,
        max(behind) if behind else None,
        _time((p.eventTime or {}).get("watermark")),
    )


class ProgressStore:
    def __init__(self, job: str) -> None:
        self.job = job
        self.conn: psycopg.Connection | None = None
        self.written = 0
        self.last_report = 0.0

    def record(self, progress: Any) -> None:
        try:
            if self.conn is None or self.conn.closed:
                self.conn = pg_connect()
                self.conn.autocommit = True
            self.conn.execute(_UPSERT, row_of(self.job, progress))
            self.written += 1
            if self.written % PURGE_EVERY == 1:
                self.conn.execute(f"DELETE FROM stream_progress WHERE at < now() - interval '{KEEP}'")
        except Exception as err:  # the stream must not notice: say so, reconnect next time
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            if time.monotonic() - self.last_report > REPORT_EVERY_S:
                self.last_report = time.monotonic()
                print(f"[stream] progress not stored ({type(err).__name__}: {str(err).strip()[:200]})", flush=True)
