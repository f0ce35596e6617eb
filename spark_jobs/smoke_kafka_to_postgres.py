"""Smoke job: every real part once. Reads a Kafka topic with the JVM connector (batch, earliest to latest),
admits the trades by the contract (the Rust rules, in Python workers on the executors) and appends the rows
to a PostgreSQL table over JDBC.

    scripts/submit.sh smoke_kafka_to_postgres --topic T --table TBL
"""

from __future__ import annotations

import argparse

from pyspark.sql import functions as F

from spark_jobs import contracts
from spark_jobs.common import jdbc_options, kafka_bootstrap, spark_session


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
    admitted = contracts.admit(raw.withColumn("kafka_key", F.col("key").cast("string")), "trade", "kafka_key")
    trades = admitted.filter(F.col("reject_code").isNull()).select(
        "kafka_key", "partition", "offset", "source", "symbol", "ts_ms", "price", "size", "trade_id"
    )
    trades.write.format("jdbc").options(**jdbc_options()).option("dbtable", args.table).mode("append").save()
    print(f"smoke: wrote {trades.count()} trades from {args.topic} to {args.table}")
    spark.stop()


if __name__ == "__main__":
    main()
