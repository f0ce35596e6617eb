"""The metrics writer's typed bar is the contract's `bar` message: same fields, in order, same types, and the
contract's required fields are the ones without a default."""

from __future__ import annotations

import dataclasses
import json
import typing

from spark_jobs.metrics_store import BAR_FIELDS, Bar
from sparktrends import contract

PYTHON_TYPES = {"text": str, "symbol": str, "int64": int, "float64": float}


def test_the_bar_type_is_the_contracts_bar_message() -> None:
    hints = typing.get_type_hints(Bar)
    fields = dataclasses.fields(Bar)
    message = contract.messages()["bar"]
    assert [f.name for f in fields] == BAR_FIELDS == [f.name for f in message.fields]
    for field, declared in zip(fields, message.fields, strict=True):
        wanted = PYTHON_TYPES[declared.type]
        if declared.required:
            assert hints[field.name] is wanted, field.name
            assert field.default is dataclasses.MISSING, field.name
        else:
            assert hints[field.name] == wanted | None, field.name
            assert field.default is None, field.name


def test_a_bar_reads_a_record_and_writes_the_topics_message() -> None:
    record = {"source": "binance", "symbol": "BTCUSDT", "ts_ms": 1_700_000_040_000, "open": 1.0, "high": 2.0,
              "low": 0.5, "close": 1.5, "volume": 3.0, "trades": 7, "origin": "trades", "partition": 2}  # fmt: skip
    bar = Bar.of(record)
    assert bar.vwap is None and bar.trades == 7
    assert json.loads(bar.to_json()) == {k: v for k, v in record.items() if k != "partition"}
