"""Metrics job: market.bars.1m.v1 -> upsert bars_1m -> Rust metrics with warm-up history -> metrics_1m and the
anomalies outbox.

    scripts/submit.sh metrics_job [--trigger "5 seconds"] [--warmup-bars 512]

Each micro-batch: invalid bars go to rejected_messages; the newest message per (symbol, minute) is upserted
into bars_1m (REST providers and the bars job meet here); then every touched symbol is recomputed from its
earliest touched bar on (spark_jobs.metrics_store.recompute), so a late bar repairs the metrics after it.
Kafka offsets are committed to the checkpoint only after the batch's database work, and every write is
idempotent, so a crash at any point is repaired by replaying the batch.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from spark_jobs import contracts
from spark_jobs.common import checkpoint_dir, read_kafka_stream, spark_session, start_progress_reporter
from spark_jobs.metrics_store import DEFAULT_WARMUP_BARS, purge_stale_staging, recompute
from spark_jobs.store import pg_connect, upsert, write_rejects

BAR_COLUMNS = ["symbol", "ts", "open", "high", "low", "close", "volume", "trades", "vwap", "source"]


def parse_bars(raw: DataFrame) -> DataFrame:
    parsed = raw.select(
        "topic",
        "partition",
        "offset",
        F.col("value").cast("string").alias("raw"),
        F.from_json(F.col("value").cast("string"), contracts.BAR_SCHEMA).alias("b"),
    ).select("topic", "partition", "offset", "raw", "b.*")
    return parsed.withColumn("reject_reason", contracts.bar_reject_reason())


def latest_bars(valid: DataFrame) -> DataFrame:
    """One bar per (symbol, minute): the newest message wins (a provider's correction replaces its bar)."""
    newest_first = Window.partitionBy("symbol", "ts_ms").orderBy(F.col("partition").desc(), F.col("offset").desc())
    return (
        valid.withColumn("rank", F.row_number().over(newest_first))
        .filter("rank = 1")
        .select("symbol", "ts_ms", "open", "high", "low", "close", "volume", "trades", "vwap", "source")
    )


class MetricsBatch:
    """foreachBatch function of the metrics query."""

    def __init__(self, spark: SparkSession, warmup_bars: int) -> None:
        self.spark = spark
        self.warmup_bars = warmup_bars

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        batch = batch.persist()
        write_rejects(batch.filter(F.col("reject_reason").isNotNull()).withColumn("source", F.lit("metrics_job")), 0)
        bars = [tuple(r) for r in latest_bars(batch.filter(F.col("reject_reason").isNull())).toLocalIterator()]
        batch.unpersist()
        if not bars:
            return
        scope: dict[str, dt.datetime] = {}
        rows = []
        for symbol, ts_ms, o, h, low, c, v, n, vwap, source in bars:
            ts = dt.datetime.fromtimestamp(ts_ms / 1000, dt.timezone.utc)
            scope[symbol] = min(scope.get(symbol, ts), ts)
            rows.append((symbol, ts, o, h, low, c, v, n, vwap, source))
        with pg_connect() as conn:
            upsert(conn, "bars_1m", BAR_COLUMNS, ["symbol", "ts"], rows)
        result = recompute(self.spark, scope, self.warmup_bars)
        print(
            f"[metrics] batch={batch_id} bars={len(rows)} symbols={result.symbols} metrics_upserted="
            f"{result.metric_rows} new_anomalies={result.new_anomalies} took={time.monotonic() - started:.2f}s",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars-topic", default=contracts.TOPIC_BARS)
    parser.add_argument("--trigger", default="5 seconds")
    parser.add_argument("--warmup-bars", type=int, default=DEFAULT_WARMUP_BARS)
    parser.add_argument("--starting-offsets", default="earliest")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--max-offsets-per-trigger", type=int, default=None)
    args = parser.parse_args()

    spark = spark_session("sparktrends-metrics")
    purge_stale_staging()
    bars = parse_bars(read_kafka_stream(spark, args.bars_topic, args.starting_offsets, args.max_offsets_per_trigger))
    observed = bars.observe(
        "metrics",
        F.count(F.lit(1)).alias("bars_in"),
        F.count(F.col("reject_reason")).alias("rejects"),
    )
    query = (
        observed.writeStream.queryName("metrics")
        .foreachBatch(MetricsBatch(spark, args.warmup_bars))
        .option("checkpointLocation", checkpoint_dir(args.checkpoint, "metrics"))
        .trigger(processingTime=args.trigger)
        .start()
    )
    start_progress_reporter(spark, [query])
    query.awaitTermination()


if __name__ == "__main__":
    main()
