"""Rows shaped as Spark's Kafka source delivers them, for the jobs' logic on a local SparkSession."""

from __future__ import annotations

import datetime as dt
import json

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import (
    ArrayType,
    BinaryType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

KAFKA_SCHEMA = StructType(
    [
        StructField("key", BinaryType()),
        StructField("value", BinaryType()),
        StructField("topic", StringType()),
        StructField("partition", IntegerType()),
        StructField("offset", LongType()),
        StructField("timestamp", TimestampType()),
        StructField(
            "headers", ArrayType(StructType([StructField("key", StringType()), StructField("value", BinaryType())]))
        ),
    ]
)


def kafka_rows(spark: SparkSession, values: list[bytes | dict], received_ms: list[int] | int) -> DataFrame:
    """One Kafka row per value (a dict is sent as its JSON), in one partition at offsets 0, 1, ...; the record
    timestamp, the receive time an event time is held against, is `received_ms`."""
    times = received_ms if isinstance(received_ms, list) else [received_ms] * len(values)
    rows = [
        (
            None,
            bytearray(json.dumps(v).encode() if isinstance(v, dict) else v),
            "unit",
            0,
            offset,
            dt.datetime.fromtimestamp(at / 1000, dt.timezone.utc),
            None,
        )
        for offset, (v, at) in enumerate(zip(values, times, strict=True))
    ]
    return spark.createDataFrame(rows, KAFKA_SCHEMA)
