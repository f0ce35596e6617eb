"""Smoke job: every real part once. Reads a Kafka topic with the JVM connector (batch, earliest to latest),
parses the trade contract and appends the rows to a PostgreSQL table over JDBC.

    scripts/submit.sh smoke_kafka_to_postgres --topic T --table TBL
"""

from __future__ import annotations

import argparse

from pyspark.sql import functions as F

from spark_jobs.common import jdbc_options, kafka_bootstrap, spark_session
from spark_jobs.contracts import TRADE_SCHEMA


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--topic", required=True)
    parser.add_argument("--table", required=True)
    parser.add_argument("--app-name", default="sparktrends-smoke")
    args = parser.parse_args()

    spark = spark_session(args.app_name)
    raw = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", kafka_bootstrap())
        .option("subscribe", args.topic)
        .option("startingOffsets", "earliest")
        .option("endingOffsets", "latest")
        .load()
    )
    trades = raw.select(
        F.col("key").cast("string").alias("kafka_key"),
        F.col("partition"),
        F.col("offset"),
        F.from_json(F.col("value").cast("string"), TRADE_SCHEMA).alias("t"),
    ).select("kafka_key", "partition", "offset", "t.*")
    trades.write.format("jdbc").options(**jdbc_options()).option("dbtable", args.table).mode("append").save()
    print(f"smoke: wrote {trades.count()} trades from {args.topic} to {args.table}")
    spark.stop()


if __name__ == "__main__":
    main()
