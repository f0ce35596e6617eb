"""Spark schemas of the Kafka message contracts (DESIGN.md section 2)."""

from __future__ import annotations

from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

TRADE_SCHEMA = StructType(
    [
        StructField("source", StringType()),
        StructField("symbol", StringType()),
        StructField("ts_ms", LongType()),
        StructField("price", DoubleType()),
        StructField("size", DoubleType()),
        StructField("trade_id", StringType()),
    ]
)
