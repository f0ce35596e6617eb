"""The Spark side of the message contract (contracts/*.json, read through the sparktrends package): topic
names, and admission of raw Kafka values as a mapInArrow step that runs the contract crate's rules, the same
functions ingest applies. A refused message keeps its Kafka coordinates, reject code, reason and raw text;
an admitted one gets the contract's fields (tests/contract holds the jobs to contracts/corpus)."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

from spark_jobs import trade_minutes
from sparktrends import contract
from sparktrends.admission import MessageKind, admission_schema, make_admit_in_arrow

TOPIC_TRADES = contract.topic(contract.messages()["trade"].topic_prefix)
TOPIC_BARS = contract.topic(contract.messages()["bar"].topic_prefix)
TOPIC_COMPANIES = contract.topic(contract.messages()["company"].topic_prefix)
TOPIC_DEADLETTER = contract.topic(contract.messages()["dead_letter"].topic_prefix)
TOPIC_GAPS = contract.topic(contract.messages()["gap"].topic_prefix)
# Header of a bars-topic message whose bar its producer (the bars job) has already written to PostgreSQL, with
# its metrics: the provider bars job skips it. Any other producer's bars carry no such header and are applied.
APPLIED_HEADER = "sparktrends-applied"
# Header of a trade a gap repair or a backfill fetched (its value: the gap cause). It reaches the bars job behind
# the watermark by design, and spark_jobs/gap_repair.py rebuilds its minutes: it is no late trade.
REPAIR_HEADER = "sparktrends-repair"
assert {APPLIED_HEADER, REPAIR_HEADER} == set(contract.names("kafka_headers"))

# What a job keeps of a Kafka row besides its value: the coordinates of a reject, and the timestamp, which is
# the receive time an event time is held against (contracts/admission.json max_future_ms).
KAFKA_COLUMNS = ["topic", "partition", "offset", "timestamp"]
# The columns of a refusal as rejected_messages stores them, after `source` (the job's name).
# `element`: a trade's position in its message's trade batch (contracts/messages.json trade.batch), else 0.
REJECT_FIELDS = ["topic", "partition", "offset", "element", "reject_code", "reject_reason", "raw"]


def admit(kafka_rows: DataFrame, kind: MessageKind, *extra: str) -> DataFrame:
    """Kafka rows -> KAFKA_COLUMNS, `extra` columns, the `kind` message's fields and the reject columns
    (reject_code null when admitted)."""
    rows = kafka_rows.select(*KAFKA_COLUMNS, *extra, F.col("value"))
    schema = from_arrow_schema(admission_schema(kind, to_arrow_schema(rows.schema)))
    return rows.mapInArrow(make_admit_in_arrow(kind), schema)


def admit_trade_minutes(kafka_rows: DataFrame) -> DataFrame:
    """Kafka rows of the trades topic -> the bars job's rows (spark_jobs/trade_minutes.py MINUTE_ROW): the
    admitted trades of each (source, symbol, minute) of a batch as one row, and each refusal as a row of its own
    with KAFKA_COLUMNS' coordinates, its reject code, reason and raw text."""
    rows = kafka_rows.select(*KAFKA_COLUMNS, F.col("value"))
    return rows.mapInArrow(trade_minutes.admit_minutes, from_arrow_schema(trade_minutes.MINUTE_ROW))
