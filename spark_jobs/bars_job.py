"""Bars job: market.trades.v1 -> 1-minute OHLCV bars in event time -> market.bars.1m.v1.

    scripts/submit.sh bars_job [--watermark "2 minutes"] [--trigger "5 seconds"]

Two streaming queries in one application, both reading the trades topic:
  * `bars`: valid trades, duplicates dropped by (source, symbol, trade_id) within the watermark, grouped into
    1-minute event-time windows; a bar is emitted once the watermark passes its end (append mode), so late
    trades inside the watermark still land in their bar. Open/close are chosen deterministically by
    (event time, Kafka offset): one symbol lives in one partition, so the offset orders same-millisecond trades.
  * `trade-rejects`: trades that fail the contract go to PostgreSQL `rejected_messages` with their reason and
    Kafka coordinates (idempotent on the coordinates), while valid ones keep flowing.
The Kafka sink is at-least-once; downstream every write is an upsert on (symbol, ts), so a replayed
micro-batch is harmless.
"""

from __future__ import annotations

import argparse

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_jobs import contracts
from spark_jobs.common import (
    checkpoint_dir,
    kafka_bootstrap,
    read_kafka_stream,
    spark_session,
    start_progress_reporter,
)
from spark_jobs.store import write_rejects


def parse_trades(raw: DataFrame) -> DataFrame:
    """Kafka rows -> trade columns plus `reject_reason` (null when the trade is valid)."""
    parsed = raw.select(
        F.col("topic"),
        F.col("partition"),
        F.col("offset"),
        F.col("value").cast("string").alias("raw"),
        F.from_json(F.col("value").cast("string"), contracts.TRADE_SCHEMA, {"mode": "PERMISSIVE"}).alias("t"),
    ).select("topic", "partition", "offset", "raw", "t.*")
    return parsed.withColumn("reject_reason", contracts.trade_reject_reason())


def build_bars(trades: DataFrame, watermark: str) -> DataFrame:
    order_key: Column = F.struct("ts_ms", "partition", "offset")
    bars = (
        trades.withColumn("event_time", F.timestamp_millis("ts_ms"))
        .withWatermark("event_time", watermark)
        .dropDuplicatesWithinWatermark(["source", "symbol", "trade_id"])
        .groupBy(F.window("event_time", "1 minute").alias("w"), "symbol")
        .agg(
            F.min_by("price", order_key).alias("open"),
            F.max("price").alias("high"),
            F.min("price").alias("low"),
            F.max_by("price", order_key).alias("close"),
            F.sum("size").alias("volume"),
            F.count("*").alias("trades"),
            F.sum(F.col("price") * F.col("size")).alias("notional"),
            F.first("source").alias("source"),
        )
    )
    return bars.select(
        F.col("source"),
        F.col("symbol"),
        F.unix_millis(F.col("w.start")).alias("ts_ms"),
        "open",
        "high",
        "low",
        "close",
        "volume",
        "trades",
        # A bar of zero-size trades (quotes) has no volume-weighted price: null, never a division by zero.
        F.when(F.col("volume") > 0, F.col("notional") / F.col("volume")).alias("vwap"),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trades-topic", default=contracts.TOPIC_TRADES)
    parser.add_argument("--bars-topic", default=contracts.TOPIC_BARS)
    parser.add_argument("--watermark", default="1 minute", help="how late a trade may arrive and still count")
    parser.add_argument("--trigger", default="5 seconds")
    parser.add_argument("--starting-offsets", default="earliest")
    parser.add_argument("--checkpoint", default=None, help="checkpoint root (default $SPARKTRENDS_CHECKPOINTS)")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=None)
    args = parser.parse_args()

    spark = spark_session("sparktrends-bars")
    raw = read_kafka_stream(spark, args.trades_topic, args.starting_offsets, args.max_offsets_per_trigger)
    trades = parse_trades(raw)

    valid = trades.filter(F.col("reject_reason").isNull())
    bars = build_bars(valid, args.watermark).observe(
        "bars", F.count(F.lit(1)).alias("bars_out"), F.sum("trades").alias("trades_in_bars")
    )
    bars_query = (
        bars.select(F.col("symbol").alias("key"), F.to_json(F.struct(*bars.columns)).alias("value"))
        .writeStream.queryName("bars")
        .format("kafka")
        .option("kafka.bootstrap.servers", kafka_bootstrap())
        .option("topic", args.bars_topic)
        .option("kafka.enable.idempotence", "true")
        .option("kafka.acks", "all")
        .option("checkpointLocation", checkpoint_dir(args.checkpoint, "bars"))
        .outputMode("append")
        .trigger(processingTime=args.trigger)
        .start()
    )

    rejects = trades.filter(F.col("reject_reason").isNotNull()).withColumn("source", F.lit("bars_job"))
    rejects_query = (
        rejects.writeStream.queryName("trade-rejects")
        .foreachBatch(write_rejects)
        .option("checkpointLocation", checkpoint_dir(args.checkpoint, "trade-rejects"))
        .trigger(processingTime=args.trigger)
        .start()
    )
    start_progress_reporter(spark, [bars_query, rejects_query])
    spark.streams.awaitAnyTermination()


if __name__ == "__main__":
    main()
