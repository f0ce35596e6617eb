"""Bars job: market.trades.v1 -> 1-minute OHLCV bars in event time -> bars_1m and their metrics in PostgreSQL,
and market.bars.1m.v1.

    scripts/submit.sh bars_job [--watermark "2 minutes"] [--trigger "5 seconds"]

A bar is emitted in the micro-batch after the one whose watermark passes its end. That batch runs at once:
the Kafka source paces the batches of new trades to `--trigger` and the query's own trigger is zero
(common.paced_trigger), so a closed bar does not wait a further trigger interval.

One streaming query, `bars`, reads the trades topic once per micro-batch and has two outputs:
  * bars: valid trades, grouped per symbol-minute as they are admitted (one row per symbol-minute of a batch,
    not per trade: spark_jobs/trade_minutes.py), gathered per 1-minute event-time window in the aggregation's
    state; once the watermark passes a minute's end (append mode) its trades become its bar, duplicates by
    (source, trade_id) counted once, so late trades inside the watermark still land in their bar. Open/close
    are chosen deterministically by (event time, integer trade id, Kafka offset).
    Closed bars go to bars_1m with their metrics (the one metrics writer, metrics_store.apply_bars), then to
    the bars topic marked as applied, so the provider bars job skips them (docs/decisions.md: it saves a closed bar
    a Kafka hop and another application's micro-batch).
  * rejects: trades that fail the contract go to PostgreSQL `rejected_messages` with their reason and Kafka
    coordinates (idempotent on the coordinates), while valid ones keep flowing.
Both leave through one foreachBatch sink. Every database write is an upsert or insert-if-absent on a natural key
and the Kafka write is at-least-once (consumers upsert), so a replayed micro-batch is harmless.

Why one query: a second query for the rejects read and parsed every trade a second time and paid its own
per-batch cost on the same 2 cores (docs/benchmarks.md has the measurements).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.streaming import StreamingQuery

from spark_jobs import contracts, detector_profiles, gap_repair, late_trades, trade_minutes
from spark_jobs.common import (
    checkpoint_dir,
    interval_ms,
    paced_trigger,
    produce,
    read_kafka_stream,
    spark_session,
    start_progress_reporter,
)
from spark_jobs.contracts import APPLIED_HEADER, REJECT_FIELDS
from spark_jobs.detector_profiles import DetectorProfiles
from spark_jobs.metrics_store import BAR_FIELDS, Bar, apply_bars
from spark_jobs.store import DEFAULT_REJECT_RETENTION, insert_rejects, purge_old_rejects, retrying_through_outages
from spark_jobs.trade_minutes import MINUTE_MS
from sparktrends import contract


def parse_trades(raw: DataFrame) -> DataFrame:
    """Kafka rows -> admitted trade columns (contract: trade message, plus updates_price/updates_volume) and
    `reject_code` (null when the trade is valid), one row per message, by the contract crate's rules: what
    contracts/corpus holds the job to. The job itself admits through `contracts.admit_trade_minutes`, the same
    rules with the trades grouped per symbol-minute."""
    return contracts.admit(raw, "trade")


def with_event_time(minutes: DataFrame, watermark: str) -> DataFrame:
    """Adds the watermarked `event_time` (a minute row's latest trade), null on rejects: a reject's timestamp,
    one far in the future, say, must not move the watermark and make every later trade late."""
    valid = F.col("reject_code").isNull()
    return minutes.withColumn("event_time", F.when(valid, F.timestamp_millis("ts_ms"))).withWatermark(
        "event_time", watermark
    )


def build_bars(minutes: DataFrame) -> DataFrame:
    """Minute rows (contracts.admit_trade_minutes, valid ones, with a watermarked `event_time`) -> closed
    1-minute bars: each minute's trade packs, from every micro-batch that held some, gathered in the aggregation's
    state until the watermark passes the minute's end, then turned into its bar (spark_jobs/trade_minutes.py:
    duplicates by trade id counted once, the print rules of contracts/trade_conditions.json). A minute row
    behind the watermark is dropped whole: a trade is late when its minute's bar has been emitted."""
    gathered = minutes.groupBy(F.window("event_time", "1 minute").alias("w"), "symbol").agg(
        F.collect_list(F.struct(*trade_minutes.PACK_FIELDS)).alias("packs")
    )
    return gathered.select("symbol", F.unix_millis(F.col("w.start")).alias("ts_ms"), "packs").mapInArrow(
        trade_minutes.bars_of_minutes, from_arrow_schema(trade_minutes.BAR)
    )


BAR, REJECT = "bar", "reject"


def bar_and_reject_records(minutes: DataFrame, watermark: str, partitions: int) -> DataFrame:
    """Minute rows and rejects (contracts.admit_trade_minutes) -> one stream of both outputs; `kind` says which.
    Bars carry their Kafka key and JSON value and their fields, rejects the columns of `rejected_messages`.

    Both branches read one shuffle by symbol, so a micro-batch reads and admits the topic once: Spark reuses the
    shuffle's output for the rejects branch (a ReusedExchange) instead of scanning the source a second time.
    Reuse needs the two branches to read identical shuffles, hence:
    - every column but the symbol and the event time travels in one struct, which each branch reads whole
      (nested-column pruning is off for this job: it would cut a different struct for each branch);
    - each branch's filter stays above the shuffle (`_above_shuffle`);
    - the watermark is set before the shuffle.
    What crosses it is one row per symbol-minute of a batch, not one per trade (spark_jobs/trade_minutes.py)."""
    timed = with_event_time(minutes, watermark)
    carried = [c for c in timed.columns if c not in ["symbol", "event_time"]]
    shuffled = timed.select("symbol", "event_time", F.struct(*carried).alias("row")).repartition(partitions, "symbol")

    valid = shuffled.filter(_above_shuffle(F.col("row.reject_code").isNull()))
    bars = build_bars(valid.select("symbol", "event_time", "row.*")).observe(
        "bars", F.count(F.lit(1)).alias("bars_out"), F.sum("trades").alias("trades_in_bars")
    )
    bar_records = bars.select(
        F.lit(BAR).alias("kind"),
        F.col("symbol").alias("key"),
        F.to_json(F.struct(*bars.columns)).alias("value"),
        *bars.columns,  # for the driver's typed Bar; flat, since toArrow fails on a null struct (the rejects')
    )

    rejects = (
        shuffled.filter(_above_shuffle(F.col("row.reject_code").isNotNull()))
        .select("event_time", "row.*")
        .observe("rejects", F.count(F.lit(1)).alias("rejected"))
    )
    reject_records = rejects.select(F.lit(REJECT).alias("kind"), "event_time", *REJECT_FIELDS)
    return bar_records.unionByName(reject_records, allowMissingColumns=True)


def _above_shuffle(condition: Column) -> Column:
    """`condition`, kept above the shuffle it follows. The optimizer pushes a plain filter below a
    repartition, which would give each branch a shuffle (and a source scan) of its own; it cannot move a
    condition that reads spark_partition_id(), and that guard is always true."""
    return F.when(F.spark_partition_id() >= 0, condition)


def publish(bars_topic: str, profiles: DetectorProfiles | None = None) -> Callable[[DataFrame, int], None]:
    """foreachBatch sink, from one collect of the micro-batch's output (a few thousand bars at most; one Spark
    job per batch instead of one per destination):
    - bars into bars_1m and their metrics (metrics_store.apply_bars, the one metrics writer), then onto
      the bars topic marked as applied, so the provider bars job skips them: a closed bar's metrics are committed
      in this batch instead of after another Kafka hop and another job's micro-batch;
    - rejects into rejected_messages.
    Any failure fails the batch, which is replayed from its offsets; every write is idempotent."""

    def write(batch: DataFrame, batch_id: int) -> None:
        # Collected as Arrow: no Row object per value.
        rows = batch.select("kind", "key", "value", *BAR_FIELDS, *REJECT_FIELDS).toArrow().to_pylist()
        bars = [r for r in rows if r["kind"] == BAR]
        result = apply_bars([Bar.of(r) for r in bars], profiles=profiles)
        produce(bars_topic, [(r["key"], r["value"]) for r in bars], headers={APPLIED_HEADER: "bars_job"})
        insert_rejects("bars_job", [r for r in rows if r["kind"] == REJECT])
        if bars:
            print(
                f"[bars] batch={batch_id} bars={len(bars)} symbols={result.symbols} metrics_upserted="
                f"{result.metric_rows} new_anomalies={result.new_anomalies} (bars_1m + metrics "
                f"{result.seconds:.2f}s: {result.carried} symbols from their carry ({result.carries_from_memory} in "
                f"memory), {result.warmed} warmed up, "
                f"{result.rows_read} rows read)",
                flush=True,
            )

    return write


# A micro-batch's trades wait in the aggregation's state until their minutes close: a bound keeps a backlog (a restart
# after a day down) from holding all of it at once. Packed (trade_minutes.PACKED_TRADE, about 55 bytes a trade), 4M
# trades fit the 1 GB executor; each micro-batch also costs 2-3 s whatever it holds, so a backlog drains fastest in
# few large batches (1M: 104k trades/s, 2M: 123k, 4M: 140k; docs/benchmarks.md). Spark bounds a batch in Kafka
# messages, not trades, so the bound assumes ingest's trade batches (contracts/messages.json trade.batch
# producer_trades, 200): 20,000 messages. A producer of one trade per message should raise it
# (--max-offsets-per-trigger 4000000).
DEFAULT_MAX_TRADES_PER_TRIGGER = 4_000_000
# Kafka messages per Arrow batch handed to the Python step: at most ARROW_MESSAGES * max_batch_trades trades, so
# the hand-over stays bounded however full the trade batches are (Spark's default, 10,000 rows, allowed 10M).
ARROW_MESSAGES = 1_000
DEFAULT_MAX_OFFSETS = DEFAULT_MAX_TRADES_PER_TRIGGER // contract.trade_batch()["producer_trades"]

# What the bars query keeps in its state, written beside its checkpoint. Spark cannot resume a checkpoint whose
# state another plan wrote: the trades as rows deduplicated by id, before issue 16 (no such file);
# "trades-as-minute-lists", whose trades had no `element` (their position in a trade batch);
# "trades-as-minute-lists-with-elements", the trades as lists of structs instead of packs.
STATE_PLAN = "trades-as-minute-packs"
PLAN_FILE = "sparktrends-state-plan"


@dataclass(frozen=True)
class Resume:
    """Where a query that supersedes another plan's checkpoint starts: minutes from `first_minute_ms` on were not
    emitted by the old query (their window ended after its last committed watermark), so their trades are read
    again from `read_from_ms` (Kafka time, the gap repair's margin before) and earlier minutes' are skipped."""

    superseded: str
    first_minute_ms: int
    read_from_ms: int


def supersede_old_checkpoint(checkpoint: str) -> Resume | None:
    """Marks a new checkpoint with STATE_PLAN; moves a checkpoint of another plan aside and says where to resume.
    None: start as usual (a new checkpoint, or one of this plan; a remote one is left to Spark)."""
    if "://" in checkpoint:
        return None
    marker = os.path.join(checkpoint, PLAN_FILE)
    if os.path.exists(marker):
        with open(marker, encoding="utf-8") as plan:
            if plan.read().strip() == STATE_PLAN:
                return None
    resume = None
    commits = os.path.join(checkpoint, "commits")
    batches = [int(n) for n in os.listdir(commits) if n.isdigit()] if os.path.isdir(commits) else []
    if batches:
        superseded = f"{checkpoint}.superseded-{int(time.time())}"
        watermark = late_trades.checkpoint_watermark_ms(checkpoint, max(batches)) or 0
        os.rename(checkpoint, superseded)
        first = watermark - watermark % MINUTE_MS
        resume = Resume(superseded, first, first - gap_repair.READ_MARGIN_MS)
    os.makedirs(checkpoint, exist_ok=True)
    with open(marker, "w", encoding="utf-8") as plan:
        plan.write(STATE_PLAN + "\n")
    return resume


def watermark_ms(query: StreamingQuery) -> int | None:
    """The watermark of the query's last completed micro-batch: every bar ending at or before it is emitted."""
    progress = query.lastProgress
    text = ((progress or {}).get("eventTime") or {}).get("watermark")
    return round(datetime.fromisoformat(text).timestamp() * 1000) if text else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trades-topic", default=contracts.TOPIC_TRADES)
    parser.add_argument("--bars-topic", default=contracts.TOPIC_BARS)
    parser.add_argument("--gaps-topic", default=contracts.TOPIC_GAPS)
    parser.add_argument("--watermark", default="1 minute", help="how late a trade may arrive and still count")
    parser.add_argument(
        "--trigger",
        default="5 seconds",
        help="how often a micro-batch reads new trades (a bar that closes "
        "is emitted right after the batch that closed it, not one interval later)",
    )
    parser.add_argument("--starting-offsets", default="earliest")
    parser.add_argument("--checkpoint", default=None, help="checkpoint root (default $SPARKTRENDS_CHECKPOINTS)")
    parser.add_argument(
        "--max-offsets-per-trigger",
        type=int,
        default=DEFAULT_MAX_OFFSETS,
        help="at most this many Kafka messages per micro-batch (a backlog drains in batches of it); the default is "
        f"{DEFAULT_MAX_TRADES_PER_TRIGGER:,} trades in ingest's trade batches",
    )
    parser.add_argument(
        "--reject-retention",
        default=DEFAULT_REJECT_RETENTION,
        help="keep rejected_messages and late_trades rows this long",
    )
    detector_profiles.add_argument(parser)
    args = parser.parse_args()
    profiles = detector_profiles.load(args.detector_config)
    purged = purge_old_rejects(args.reject_retention)
    print(f"[bars] purged {purged} reject and late-trade row(s) older than {args.reject_retention}", flush=True)

    spark = spark_session("sparktrends-bars")
    # See bar_and_reject_records: both branches must read the whole `trade` struct.
    spark.conf.set("spark.sql.optimizer.nestedSchemaPruning.enabled", "false")
    spark.conf.set("spark.sql.optimizer.expression.nestedPruning.enabled", "false")
    spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(ARROW_MESSAGES))
    checkpoint = checkpoint_dir(args.checkpoint, "bars")
    resume = supersede_old_checkpoint(checkpoint)
    raw = read_kafka_stream(
        spark,
        args.trades_topic,
        args.starting_offsets,
        args.max_offsets_per_trigger,
        interval_ms(args.trigger),
        starting_timestamp_ms=resume.read_from_ms if resume else None,
    )
    minutes = contracts.admit_trade_minutes(raw)
    if resume:
        print(
            f"[bars] the checkpoint held another plan's state (before issue 16): moved to {resume.superseded}; "
            f"the minutes from {datetime.fromtimestamp(resume.first_minute_ms / 1000, UTC):%Y-%m-%d %H:%M} UTC on "
            "are built from the trades topic again, the earlier ones were emitted by the previous query",
            flush=True,
        )
        # Rejects keep flowing (their rows are idempotent on their Kafka coordinates).
        minutes = minutes.filter(F.col("reject_code").isNotNull() | (F.col("ts_ms") >= resume.first_minute_ms))
    records = bar_and_reject_records(minutes, args.watermark, int(spark.conf.get("spark.sql.shuffle.partitions")))
    late_trades.watch(spark, "bars", query_name="bars", topic=args.trades_topic, checkpoint=checkpoint)
    query = (
        records.writeStream.queryName("bars")
        .foreachBatch(retrying_through_outages("bars", publish(args.bars_topic, profiles)))
        .option("checkpointLocation", checkpoint)
        .outputMode("append")
        .trigger(**paced_trigger(spark))
        .start()
    )
    # Repairs of the minutes a feed missed trades in: a second query, in this application so it can wait for the
    # bars query's watermark (spark_jobs/gap_repair.py).
    gaps = (
        read_kafka_stream(spark, args.gaps_topic, args.starting_offsets)
        .writeStream.queryName("gaps")
        .foreachBatch(
            retrying_through_outages(
                "bars",
                gap_repair.repair(spark, args.trades_topic, args.bars_topic, lambda: watermark_ms(query), profiles),
            )
        )
        .option("checkpointLocation", checkpoint_dir(args.checkpoint, "bars-gaps"))
        .trigger(processingTime=args.trigger)
        .start()
    )
    start_progress_reporter(spark, [query, gaps])
    spark.streams.awaitAnyTermination()


if __name__ == "__main__":
    main()
