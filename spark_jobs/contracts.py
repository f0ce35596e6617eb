"""Spark schemas and validation rules of the Kafka message contracts (DESIGN.md section 2).

Topic names mirror contracts/topics.json (tests/stack/test_contracts.py keeps the two in step).
"""

from __future__ import annotations

import operator
from functools import reduce

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, LongType, StringType, StructField, StructType

TOPIC_TRADES = "market.trades.v1"
TOPIC_BARS = "market.bars.1m.v1"
TOPIC_COMPANIES = "reference.companies.v1"
TOPIC_DEADLETTER = "market.deadletter.v1"
# Header of a bars-topic message whose bar its producer (the bars job) has already written to PostgreSQL, with
# its metrics: the metrics job skips it. Any other producer's bars carry no such header and are applied.
APPLIED_HEADER = "sparktrends-applied"

# A trade dated further ahead than this would drag the watermark forward and make every real trade "late".
MAX_FUTURE_MS = 5 * 60 * 1000

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

BAR_SCHEMA = StructType(
    [
        StructField("source", StringType()),
        StructField("symbol", StringType()),
        StructField("ts_ms", LongType()),
        StructField("open", DoubleType()),
        StructField("high", DoubleType()),
        StructField("low", DoubleType()),
        StructField("close", DoubleType()),
        StructField("volume", DoubleType()),
        StructField("trades", LongType()),
        StructField("vwap", DoubleType()),
    ]
)

COMPANY_SCHEMA = StructType(
    [
        StructField(name, StringType())
        for name in ("symbol", "name", "exchange", "currency", "sector", "industry", "source")
    ]
)


def _finite(col: Column) -> Column:
    return col.isNotNull() & ~F.isnan(col) & (F.abs(col) < F.lit(float("inf")))


def _first_failure(rules: list[tuple[Column, str]]) -> Column:
    """The reason of the first rule whose condition is false, or null when every rule holds."""
    expr = F.lit(None).cast("string")
    for ok, reason in reversed(rules):
        expr = F.when(~F.coalesce(ok, F.lit(False)), F.lit(reason)).otherwise(expr)
    return expr


def _timestamp_rules() -> list[tuple[Column, str]]:
    now_ms = F.unix_millis(F.current_timestamp())
    return [
        (F.col("ts_ms").isNotNull(), "missing ts_ms"),
        (F.col("ts_ms") > 0, "ts_ms must be positive"),
        (F.col("ts_ms") <= now_ms + F.lit(MAX_FUTURE_MS), "ts_ms is in the future"),
    ]


def _identity_rules() -> list[tuple[Column, str]]:
    return [
        (F.col("raw").isNotNull(), "empty message"),
        (F.col("symbol").isNotNull() | F.col("ts_ms").isNotNull(), "malformed JSON"),
        (F.col("symbol").isNotNull() & (F.length("symbol") > 0), "missing symbol"),
        (F.col("source").isNotNull(), "missing source"),
    ]


def trade_reject_reason() -> Column:
    return _first_failure(
        [
            *_identity_rules(),
            *_timestamp_rules(),
            (F.col("trade_id").isNotNull(), "missing trade_id"),
            (_finite(F.col("price")) & (F.col("price") > 0), "price must be finite and > 0"),
            (_finite(F.col("size")) & (F.col("size") >= 0), "size must be finite and >= 0"),
        ]
    )


def bar_reject_reason() -> Column:
    prices = [F.col(c) for c in ("open", "high", "low", "close")]
    return _first_failure(
        [
            *_identity_rules(),
            *_timestamp_rules(),
            (F.col("ts_ms") % 60000 == 0, "ts_ms must be the start of a UTC minute"),
            (reduce(operator.and_, [_finite(p) & (p > 0) for p in prices]), "OHLC must be finite and > 0"),
            (
                (F.col("high") >= F.greatest("open", "close", "low")) & (F.col("low") <= F.least("open", "close")),
                "high/low do not bound open/close",
            ),
            (_finite(F.col("volume")) & (F.col("volume") >= 0), "volume must be finite and >= 0"),
            (F.col("vwap").isNull() | (_finite(F.col("vwap")) & (F.col("vwap") > 0)), "vwap must be finite and > 0"),
        ]
    )


def company_reject_reason() -> Column:
    return _first_failure(
        [
            (F.col("raw").isNotNull(), "empty message"),
            (F.col("symbol").isNotNull() & (F.length("symbol") > 0), "missing symbol"),
            (F.col("source").isNotNull(), "missing source"),
        ]
    )
