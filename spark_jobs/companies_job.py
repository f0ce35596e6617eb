"""Companies job: reference.companies.v1 (compacted) -> upsert `companies`.

    scripts/submit.sh companies_job [--trigger "30 seconds"]

Within a micro-batch the newest message of a symbol (highest offset) wins; the upsert is keyed on symbol,
so a replayed batch leaves the table as it was.
"""

from __future__ import annotations

import argparse

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from spark_jobs import contracts
from spark_jobs.common import checkpoint_dir, read_kafka_stream, spark_session, start_progress_reporter
from spark_jobs.store import pg_connect, upsert, write_rejects

COMPANY_COLUMNS = ["symbol", "name", "exchange", "currency", "sector", "industry", "source"]


def parse_companies(raw: DataFrame) -> DataFrame:
    parsed = raw.select(
        "topic",
        "partition",
        "offset",
        F.col("value").cast("string").alias("raw"),
        F.from_json(F.col("value").cast("string"), contracts.COMPANY_SCHEMA).alias("c"),
    ).select("topic", "partition", "offset", "raw", "c.*")
    return parsed.withColumn("reject_reason", contracts.company_reject_reason())


def store_companies(batch: DataFrame, batch_id: int) -> None:
    batch = batch.persist()  # read once from Kafka, used twice below
    write_rejects(batch.filter(F.col("reject_reason").isNotNull()).withColumn("source", F.lit("companies_job")), 0)
    newest_first = Window.partitionBy("symbol").orderBy(F.col("partition").desc(), F.col("offset").desc())
    latest = (
        batch.filter(F.col("reject_reason").isNull())
        .withColumn("rank", F.row_number().over(newest_first))
        .filter("rank = 1")
        .select(*COMPANY_COLUMNS)
    )
    rows = [tuple(r) for r in latest.collect()]
    if rows:
        with pg_connect() as conn:
            upsert(conn, "companies", COMPANY_COLUMNS, ["symbol"], rows, touch="updated_at")
    batch.unpersist()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", default=contracts.TOPIC_COMPANIES)
    parser.add_argument("--trigger", default="30 seconds")
    parser.add_argument("--starting-offsets", default="earliest")
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()

    spark = spark_session("sparktrends-companies")
    companies = parse_companies(read_kafka_stream(spark, args.topic, args.starting_offsets))
    observed = companies.observe(
        "companies",
        F.count(F.lit(1)).alias("messages_in"),
        F.count(F.col("reject_reason")).alias("rejects"),
    )
    query = (
        observed.writeStream.queryName("companies")
        .foreachBatch(store_companies)
        .option("checkpointLocation", checkpoint_dir(args.checkpoint, "companies"))
        .trigger(processingTime=args.trigger)
        .start()
    )
    start_progress_reporter(spark, [query])
    query.awaitTermination()


if __name__ == "__main__":
    main()
