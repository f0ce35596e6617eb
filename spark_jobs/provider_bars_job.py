"""Provider bars job: the bars on market.bars.1m.v1 that no job of ours wrote (REST providers' bars, Binance
klines, replays, other producers) -> bars_1m, their metrics and the anomalies outbox, through the one metrics
writer (spark_jobs.metrics_store.apply_bars) the bars job uses for the bars it builds from trades.

    scripts/submit.sh provider_bars_job [--trigger "500 ms"] [--warmup-bars 512]

Each micro-batch: invalid bars go to rejected_messages; the newest message per (symbol, minute) is upserted
into bars_1m; then every touched symbol is recomputed from its earliest touched bar on
(spark_jobs.metrics_store.apply_bars), so a late bar repairs the metrics after it. Kafka offsets are committed
to the checkpoint only after the batch's database work, and every write is idempotent, so a crash at any point
is repaired by replaying the batch.

Bars the bars job has already written to PostgreSQL itself carry the header `contracts.APPLIED_HEADER` and are
skipped before admission (counted as applied_by_bars_job): this job applies everything else on the topic (REST
providers, bar replays, other producers).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_jobs import contracts, detector_profiles
from spark_jobs.common import checkpoint_dir, interval_ms, read_kafka_stream, spark_session, start_progress_reporter
from spark_jobs.contracts import REJECT_FIELDS
from spark_jobs.detector_profiles import DetectorProfiles
from spark_jobs.metrics_store import BAR_FIELDS, DEFAULT_WARMUP_BARS, Bar, apply_bars, purge_stale_staging
from spark_jobs.store import insert_rejects, retrying_through_outages

QUERY = "provider_bars"
APPLIED_METRICS = "provider_bars_applied"  # a second observation of the query: the rows before the filter


def parse_bars(raw: DataFrame) -> DataFrame:
    """Kafka rows -> the admitted bar columns, `reject_code` null when the bar is valid (the contract crate's
    rules)."""
    return contracts.admit(raw, "bar")


def applied_by_bars_job() -> Column:
    """Whether a Kafka row of the bars topic carries the bars job's header: that bar is in PostgreSQL already."""
    return F.exists(F.coalesce("headers", F.array()), lambda h: h["key"] == contracts.APPLIED_HEADER)


def bars_to_apply(raw: DataFrame) -> DataFrame:
    """Kafka rows of the bars topic -> the admitted bars (and rejects) of every producer but the bars job. The bars
    job's own bars are counted, then dropped before admission, in the JVM: they are most of the topic, and were
    admitted in Python workers only to be skipped."""
    applied = applied_by_bars_job()
    counted = raw.observe(APPLIED_METRICS, F.count(F.when(applied, 1)).alias("applied_by_bars_job"))
    return parse_bars(counted.filter(~applied))


def latest_bars(records: list[dict[str, Any]]) -> list[Bar]:
    """One bar per (symbol, minute, origin): the newest message wins (a provider's correction replaces its
    bar). Kafka keeps a symbol in one partition, so its offsets order its messages."""
    newest: dict[tuple[str, int, str], dict[str, Any]] = {}
    for r in records:
        key = (r["symbol"], r["ts_ms"], r["origin"])
        kept = newest.get(key)
        if kept is None or (r["partition"], r["offset"]) > (kept["partition"], kept["offset"]):
            newest[key] = r
    return [Bar.of(r) for _, r in sorted(newest.items())]


class ProviderBarsBatch:
    """foreachBatch function of the provider_bars query."""

    def __init__(self, warmup_bars: int, profiles: DetectorProfiles | None = None) -> None:
        self.warmup_bars = warmup_bars
        self.profiles = profiles

    def __call__(self, batch: DataFrame, batch_id: int) -> None:
        started = time.monotonic()
        # One Spark action per micro-batch: the batch is small (bounded by maxOffsetsPerTrigger) and every row of
        # it is written from the driver anyway; each extra action or shuffle costs seconds on a 2-core cluster.
        # Collected as Arrow: no Row object per value (5,000 bars: 0.4 s less than collect()).
        records = batch.select(*REJECT_FIELDS, *BAR_FIELDS).toArrow().to_pylist()
        insert_rejects("provider_bars_job", [r for r in records if r["reject_code"] is not None])
        bars = latest_bars([r for r in records if r["reject_code"] is None])
        collected = time.monotonic()
        if not bars:
            return
        result = apply_bars(bars, self.warmup_bars, self.profiles)
        done = time.monotonic()
        print(
            f"[provider_bars] batch={batch_id} bars={len(bars)} symbols={result.symbols} metrics_upserted="
            f"{result.metric_rows} new_anomalies={result.new_anomalies} took={done - started:.2f}s "
            f"(read {collected - started:.2f}s, bars_1m + metrics {done - collected:.2f}s on the {result.ran_on}: "
            f"{result.carried} symbols from their carry ({result.carries_from_memory} in memory), {result.warmed} "
            f"warmed up, {result.rows_read} rows read)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars-topic", default=contracts.TOPIC_BARS)
    parser.add_argument(
        "--trigger",
        default="500 ms",
        help="how often to look for new bars; an idle look is one offsets request "
        "to the broker, so a short interval costs nothing and a closed bar does not wait for it",
    )
    parser.add_argument("--warmup-bars", type=int, default=DEFAULT_WARMUP_BARS)
    parser.add_argument("--starting-offsets", default="earliest")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--max-offsets-per-trigger", type=int, default=None)
    detector_profiles.add_argument(parser)
    args = parser.parse_args()

    spark = spark_session("sparktrends-provider-bars")
    purge_stale_staging()
    bars = bars_to_apply(
        read_kafka_stream(
            spark, args.bars_topic, args.starting_offsets, args.max_offsets_per_trigger, include_headers=True
        )
    )
    observed = bars.observe(QUERY, F.count(F.lit(1)).alias("bars_in"), F.count(F.col("reject_code")).alias("rejects"))
    query = (
        observed.writeStream.queryName(QUERY)
        .foreachBatch(
            retrying_through_outages(
                QUERY,
                ProviderBarsBatch(args.warmup_bars, detector_profiles.load(args.detector_config)),
            )
        )
        # The job was called the metrics job until issue 16: its checkpoint keeps the old name, so an upgraded
        # deployment resumes from its offsets instead of applying the whole bars topic again.
        .option("checkpointLocation", checkpoint_dir(args.checkpoint, "metrics"))
        .trigger(processingTime=f"{interval_ms(args.trigger)} milliseconds")
        .start()
    )
    start_progress_reporter(spark, [query])
    query.awaitTermination()


if __name__ == "__main__":
    main()
