"""Late trades per symbol: which symbols lost trades to the bars job's lateness rule, and how many.

Spark drops a row that arrives behind the watermark inside its stateful operators and reports only a total per
micro-batch (`numRowsDroppedByWatermark`), of rows, which in the bars query are symbol-minutes of a batch, not
trades. One venue's stale feed and a general backlog look the same in that
number. So when a batch of the bars query reports drops, this module re-reads exactly that batch's offsets
from the trades topic (a batch query, off the streaming path: normal batches with no drops cost nothing),
admits them by the same contract, and counts the valid trades whose minute ends at or before the batch's
watermark per (source, symbol). The counts go to PostgreSQL `late_trades` (idempotent on query, batch and
symbol) and into one log line; when they are fewer than Spark's dropped rows the line says so, rather than
hiding a disagreement.

It runs on a daemon thread of the driver fed by a streaming-query listener: a listener callback must return
at once, and a failure here is logged and never stops the stream.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQueryListener

from spark_jobs import contracts
from spark_jobs.common import kafka_bootstrap
from spark_jobs.store import pg_connect, upsert
from spark_jobs.trade_minutes import MINUTE_MS

LATE_COLUMNS = ["query_id", "batch_id", "source", "symbol", "trades", "first_ts", "last_ts", "watermark"]
LATE_KEY = ["query_id", "batch_id", "source", "symbol"]


@dataclass(frozen=True)
class LateBatch:
    """A micro-batch of the watched query whose stateful operators dropped rows behind the watermark."""

    query_id: str
    batch_id: int
    watermark_ms: int  # rows with an event time at or before it were dropped
    start_offsets: str  # the batch's Kafka offsets, as the progress reports them (JSON; end exclusive)
    end_offsets: str
    dropped: int  # Spark's total for the batch: rows (symbol-minutes of a batch), each of one or more trades


def late_batch(progress: Any, watermark_ms: int | None) -> LateBatch | None:
    """The batch of a query progress if it dropped late rows, else None. `watermark_ms` is the watermark its
    operators held rows against (see LateTradeListener)."""
    dropped = sum(op.numRowsDroppedByWatermark for op in progress.stateOperators)
    if dropped == 0 or watermark_ms is None or len(progress.sources) != 1:
        return None
    source = progress.sources[0]
    return LateBatch(
        query_id=str(progress.id),
        batch_id=progress.batchId,
        watermark_ms=watermark_ms,
        start_offsets=source.startOffset or "earliest",
        end_offsets=source.endOffset,
        dropped=dropped,
    )


def progress_watermark_ms(progress: Any) -> int | None:
    """The watermark a progress reports (ISO-8601 UTC), in epoch milliseconds; None before the first one."""
    text = (progress.eventTime or {}).get("watermark")
    if not text:
        return None
    return round(datetime.fromisoformat(text).timestamp() * 1000)


def checkpoint_watermark_ms(checkpoint: str, batch_id: int) -> int | None:
    """The watermark batch `batch_id` ran with, from the query's offset log (`offsets/<id>`: a version line,
    then the batch's metadata as JSON); None when that file is not on a local path."""
    path = os.path.join(checkpoint, "offsets", str(batch_id))
    try:
        with open(path, encoding="utf-8") as log:
            metadata = json.loads(log.read().splitlines()[1])
    except (OSError, IndexError, ValueError):
        return None
    return int(metadata.get("batchWatermarkMs", 0))


def count_late(trades: DataFrame, watermark_ms: int) -> list[Row]:
    """Admitted trades (contracts.admit) -> per (source, symbol): how many valid trades the bars query dropped
    behind `watermark_ms`, those whose minute ends at or before it (its bar was emitted: the bars query holds
    each minute's trades until then, spark_jobs/bars_job.build_bars), and their first and last event time in ms;
    and apart, `repaired`: those a gap repair or a backfill sent (contracts.REPAIR_HEADER), which are behind the
    watermark by design and whose minutes spark_jobs/gap_repair.py rebuilds. Rejected trades never reach the
    watermark (bars_job.with_event_time), so they are not late."""
    minute_end = F.col("ts_ms") - F.col("ts_ms") % F.lit(MINUTE_MS) + F.lit(MINUTE_MS)
    behind = trades.filter(F.col("reject_code").isNull() & (minute_end <= F.lit(watermark_ms)))
    repaired = F.col("repaired") if "repaired" in trades.columns else F.lit(False)
    late = ~repaired
    return (
        behind.groupBy("source", "symbol")
        .agg(
            F.count(F.when(late, 1)).alias("trades"),
            F.min(F.when(late, F.col("ts_ms"))).alias("first_ms"),
            F.max(F.when(late, F.col("ts_ms"))).alias("last_ms"),
            F.count(F.when(repaired, 1)).alias("repaired"),
        )
        .orderBy(F.desc("trades"), "source", "symbol")
        .collect()
    )


def read_batch(spark: SparkSession, topic: str, batch: LateBatch) -> DataFrame:
    """The batch's records, as the streaming query read them."""
    raw = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", kafka_bootstrap())
        .option("subscribe", topic)
        .option("startingOffsets", batch.start_offsets)
        .option("endingOffsets", batch.end_offsets)
        # Offsets already deleted by the topic's retention are reported as missing, not fatal.
        .option("failOnDataLoss", "false")
        .option("includeHeaders", "true")
        .load()
    )
    raw = raw.withColumn(
        "repaired", F.exists(F.coalesce("headers", F.array()), lambda h: h["key"] == contracts.REPAIR_HEADER)
    )
    return contracts.admit(raw, "trade", "repaired")


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def record(batch: LateBatch, counts: list[Row]) -> None:
    """Upserts the batch's per-symbol counts into late_trades (a replayed batch changes nothing)."""
    rows = [
        (batch.query_id, batch.batch_id, r["source"], r["symbol"], r["trades"], _utc(r["first_ms"]),
         _utc(r["last_ms"]), _utc(batch.watermark_ms))
        for r in counts
        if r["trades"] > 0
    ]  # fmt: skip
    with pg_connect() as conn:
        upsert(conn, "late_trades", LATE_COLUMNS, LATE_KEY, rows, touch="recorded_at")


def describe(job: str, batch: LateBatch, counts: list[Row], shown: int = 8) -> str:
    """One log line: the batch, its watermark, the symbols by count, and whether they add up to Spark's total."""
    late = [r for r in counts if r["trades"] > 0]
    found = sum(r["trades"] for r in late)
    repaired = sum(r["repaired"] for r in counts)
    symbols = " ".join(f"{r['symbol']}={r['trades']}" for r in late[:shown])
    more = f" (+{len(late) - shown} more symbols)" if len(late) > shown else ""
    by_design = (
        f"; {repaired} repaired or backfilled trade(s), late by design, rebuilt from the topic" if repaired else ""
    )
    # Spark counts the rows it dropped: one per symbol-minute of a batch (spark_jobs/trade_minutes.py), each
    # holding at least one trade.
    agreement = "" if found + repaired >= batch.dropped else f" DISAGREES with Spark's {batch.dropped} dropped rows"
    return (
        f"[{job}] batch={batch.batch_id} late trades dropped behind watermark "
        f"{_utc(batch.watermark_ms):%Y-%m-%d %H:%M:%S}: {found} trade(s) of {len(late)} symbol(s): {symbols}{more}"
        f"{by_design}{agreement}"
    )


class LateTradeListener(StreamingQueryListener):
    """Watches one named query; hands each batch that dropped late rows to a worker thread.

    The rows a batch drops are those behind the watermark its operators hold late rows against: the
    watermark of the previous batch (Spark 3.4+ keeps late-row filtering one batch behind eviction, so a chain
    of stateful operators agrees on what is late). The listener keeps each query's last reported watermark;
    for the first batch after a restart, when late rows are most likely, it reads the previous batch's from
    the checkpoint."""

    def __init__(self, spark: SparkSession, job: str, query_name: str, topic: str, checkpoint: str) -> None:
        self.spark, self.job, self.query_name, self.topic = spark, job, query_name, topic
        self.checkpoint = checkpoint
        self.previous_watermark: dict[str, int | None] = {}
        self.pending: queue.Queue[LateBatch] = queue.Queue()
        threading.Thread(target=self._work, name=f"{job}-late-trades", daemon=True).start()

    def onQueryStarted(self, event: Any) -> None:
        pass

    def onQueryProgress(self, event: Any) -> None:
        progress = event.progress
        if progress.name != self.query_name:
            return
        query = str(progress.id)
        if query in self.previous_watermark:
            previous = self.previous_watermark[query]
        else:
            previous = checkpoint_watermark_ms(self.checkpoint, progress.batchId - 1)
        batch = late_batch(progress, previous)
        self.previous_watermark[query] = progress_watermark_ms(progress)
        if batch is not None:
            self.pending.put(batch)

    def onQueryIdle(self, event: Any) -> None:
        pass

    def onQueryTerminated(self, event: Any) -> None:
        pass

    def _work(self) -> None:
        while True:
            batch = self.pending.get()
            try:
                counts = count_late(read_batch(self.spark, self.topic, batch), batch.watermark_ms)
                record(batch, counts)
                print(describe(self.job, batch, counts), flush=True)
            except Exception as error:  # an audit failure must never stop the stream
                print(f"[{self.job}] batch={batch.batch_id} late trades not attributed: {error}", flush=True)


def watch(spark: SparkSession, job: str, query_name: str, topic: str, checkpoint: str) -> LateTradeListener:
    """Counts the named query's late trades per symbol from now on (see the module docstring); `checkpoint` is
    the query's checkpoint location."""
    listener = LateTradeListener(spark, job, query_name, topic, checkpoint)
    spark.streams.addListener(listener)
    return listener
