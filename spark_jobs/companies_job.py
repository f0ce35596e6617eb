"""Companies job: reference.companies.v1 (compacted) -> upsert `companies`.

    scripts/submit.sh companies_job [--trigger "30 seconds"]

Within a micro-batch the newest message of a symbol (highest offset) wins; the upsert is keyed on symbol,
so a replayed batch leaves the table as it was.
"""

from __future__ import annotations

import argparse
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from spark_jobs import contracts
from spark_jobs.common import checkpoint_dir, read_kafka_stream, spark_session, start_progress_reporter
from spark_jobs.contracts import REJECT_FIELDS
from spark_jobs.store import insert_rejects, pg_connect, retrying_through_outages, upsert
from sparktrends import contract

COMPANY_COLUMNS = contract.messages()["company"].field_names


def parse_companies(raw: DataFrame) -> DataFrame:
    """Kafka rows -> admitted company columns, `reject_code` null when the profile is valid."""
    return contracts.admit(raw, "company")


def store_companies(batch: DataFrame, batch_id: int) -> None:
    """Within a micro-batch the newest message of a symbol (highest offset) wins; one collect per batch."""
    rows = batch.select(*REJECT_FIELDS, *[c for c in COMPANY_COLUMNS if c not in REJECT_FIELDS]).collect()
    insert_rejects("companies_job", [r for r in rows if r["reject_code"] is not None])
    newest: dict[str, Any] = {}
    for r in rows:
        if r["reject_code"] is None:
            kept = newest.get(r["symbol"])
            if kept is None or (r["partition"], r["offset"]) > (kept["partition"], kept["offset"]):
                newest[r["symbol"]] = r
    if newest:
        with pg_connect() as conn:
            upsert(
                conn, "companies", COMPANY_COLUMNS, ["symbol"],
                [tuple(r[c] for c in COMPANY_COLUMNS) for r in newest.values()], touch="updated_at",
            )  # fmt: skip


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
        F.count(F.col("reject_code")).alias("rejects"),
    )
    query = (
        observed.writeStream.queryName("companies")
        .foreachBatch(retrying_through_outages("companies", store_companies))
        .option("checkpointLocation", checkpoint_dir(args.checkpoint, "companies"))
        .trigger(processingTime=args.trigger)
        .start()
    )
    start_progress_reporter(spark, [query])
    query.awaitTermination()


if __name__ == "__main__":
    main()
