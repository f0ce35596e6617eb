"""Every consumer of the contract's columns and names against contracts/*.json: the PostgreSQL tables
(information_schema of a database migrated like production), the Arrow schema the kernels write, the SQL the
jobs write, and the kinds and severities the kernels emit. Changing a column or a name in one place only fails
here (the Rust side: contracts/src/messages.rs, rust_udfs/core metrics tests, crates/alerter severity)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

import sparktrends
from spark_jobs.companies_job import COMPANY_COLUMNS
from spark_jobs.metrics_store import BAR_COLUMNS, METRIC_COLUMNS, STAGED_COLUMNS
from sparktrends import contract

PG_TYPES = {
    "text": "text",
    "symbol": "text",
    "int64": "bigint",
    "float64": "double precision",
    "bool": "boolean",
}


def table_columns(pg, table: str) -> dict[str, str]:
    rows = pg.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    assert rows, f"no table {table}"
    return dict(rows)


def contract_bar_columns() -> dict[str, str]:
    return {
        ("ts" if f.name == "ts_ms" else f.name): ("timestamp with time zone" if f.name == "ts_ms" else PG_TYPES[f.type])
        for f in contract.messages()["bar"].fields
    }


def test_metrics_1m_and_its_staging_hold_the_contract_metric_columns(pg):
    metrics = {c["name"]: PG_TYPES[c["type"]] for c in contract.files()["analytics.json"]["metric_columns"]}
    stored = table_columns(pg, "metrics_1m")
    assert list(stored)[:2] == ["symbol", "ts"]
    assert {k: v for k, v in stored.items() if k in metrics} == metrics
    assert set(stored) - set(metrics) == {"symbol", "ts", "computed_at"}
    assert list(stored)[2 : 2 + len(metrics)] == list(metrics), "table order follows the contract"
    staged = table_columns(pg, "metrics_staging")
    assert set(STAGED_COLUMNS) <= set(staged)
    assert METRIC_COLUMNS == list(metrics)


def test_the_arrow_schema_of_the_kernels_is_the_contract(pg):
    schema = sparktrends.METRICS_SCHEMA
    assert schema.names[:2] == ["symbol", "ts"]
    assert schema.names[2:-2] == contract.metric_columns()
    assert schema.names[-2:] == ["anomaly_kinds", "severity"]
    arrow_types = {"float64": pa.float64(), "bool": pa.bool_()}
    for column in contract.files()["analytics.json"]["metric_columns"]:
        assert schema.field(column["name"]).type == arrow_types[column["type"]], column["name"]


def test_bar_tables_hold_the_bar_message(pg):
    want = contract_bar_columns()
    assert table_columns(pg, "bars_1m") == {k: want[k] for k in table_columns(pg, "bars_1m")}
    assert set(table_columns(pg, "bars_1m")) == set(want)
    versions = table_columns(pg, "bar_versions")
    assert set(versions) == set(want) | {"received_at"}
    assert all(versions[k] == v for k, v in want.items())
    assert set(BAR_COLUMNS) == set(want)


def test_companies_hold_the_company_message(pg):
    want = {f.name: PG_TYPES[f.type] for f in contract.messages()["company"].fields}
    stored = table_columns(pg, "companies")
    assert {k: stored[k] for k in want} == want
    assert set(stored) - set(want) == {"updated_at"}
    assert COMPANY_COLUMNS == list(want)


def test_rejected_messages_keep_the_reject_code(pg):
    assert {"reason_code", "reason", "raw", "topic", "partition", "offset"} <= set(
        table_columns(pg, "rejected_messages")
    )


def test_the_kernels_emit_only_contract_kinds_and_severities():
    rng = np.random.default_rng(5)
    n = 400
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    close[200:] *= 1.05  # a jump
    volume = rng.lognormal(3, 0.2, n)
    volume[300] *= 50  # a spike
    bars = pa.table(
        {
            "ts": pa.array(np.arange(n) * 60_000_000 + 1_700_000_040_000_000, pa.timestamp("us", tz="UTC")),
            "open": close,
            "high": close * 1.0005,
            "low": close * 0.9995,
            "close": close,
            "volume": volume,
        }
    )
    out = sparktrends.compute_metrics(bars).to_pydict()
    kinds = {k for label in out["anomaly_kinds"] if label for k in label.split(",")}
    severities = {s for s in out["severity"] if s}
    assert kinds and kinds <= set(contract.anomaly_kinds())
    assert severities and severities <= set(contract.severities())
