"""Metrics from bars_1m, the one code path of the streaming metrics job and the batch recompute job.

For each symbol in scope, `recompute` loads the last `warmup_bars` bars before the symbol's earliest changed
bar plus everything after it, runs the Rust kernels per symbol on the executors (applyInArrow), keeps the rows
from the earliest changed bar on, and merges them:

    executors --JDBC--> metrics_staging (run_id)      parallel, no transaction needed
    driver:   BEGIN; upsert metrics_1m; insert anomalies (outbox) if absent; delete staging rows; COMMIT

Metrics are a pure function of bars_1m and every statement is keyed on (symbol, ts [, kind]), so replaying a
micro-batch, or recomputing a range, rewrites identical values and never duplicates an alert.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StructType

import sparktrends
from spark_jobs.common import jdbc_options
from spark_jobs.store import pg_connect

METRIC_COLUMNS = [
    "ret", "log_ret", "vol_cc", "vol_ewma", "vol_parkinson", "vol_gk", "vol_rs", "vol_yz", "vwap_roll",
    "vwap_dev", "volume_z", "return_z", "robust_z", "anomaly_score", "is_anomaly",
]  # fmt: skip
ANOMALY_COLUMNS = ["anomaly_kinds", "severity"]
# Enough history that the EWMA (λ = 0.94) has forgotten where the warm-up started: 0.94**512 ≈ 2e-14.
DEFAULT_WARMUP_BARS = 512


@dataclass(frozen=True)
class RecomputeResult:
    symbols: int
    metric_rows: int
    new_anomalies: int
    seconds: float


def output_schema() -> StructType:
    """Spark schema of the per-symbol results: the package's one schema definition, converted."""
    return from_arrow_schema(sparktrends.METRICS_SCHEMA)


def compute_symbol(table: pa.Table) -> pa.Table:
    """applyInArrow function, run on the executors: one symbol's bars (warm-up included) -> its metrics from
    `emit_from` (the symbol's earliest changed bar) on."""
    if table.num_rows == 0:
        return sparktrends.METRICS_SCHEMA.empty_table()
    emit_from = table.column("emit_from")[0]
    metrics = sparktrends.apply_in_arrow(table.drop_columns(["emit_from"]))
    ts = metrics.column("ts")
    return metrics.filter(pc.greater_equal(ts, emit_from.cast(ts.type)))


def _scope_sql(scope: dict[str, dt.datetime]) -> str:
    """VALUES rows of (symbol, earliest changed ts). Symbols passed the contract checks; quoting stays strict."""
    rows = []
    for symbol, earliest in sorted(scope.items()):
        quoted = "'" + symbol.replace("'", "''") + "'"
        rows.append(f"({quoted}, TIMESTAMPTZ '{earliest.isoformat()}')")
    return ", ".join(rows)


def bars_with_warmup(
    spark: SparkSession, scope: dict[str, dt.datetime], warmup_bars: int, until: dt.datetime | None = None
) -> DataFrame:
    """Each scoped symbol's bars from `warmup_bars` before its earliest changed bar on (up to `until`); a symbol
    with less history than that gets all of it."""
    until_sql = f"AND b.ts <= TIMESTAMPTZ '{until.isoformat()}'" if until else ""
    query = f"""
        SELECT b.symbol, b.ts, b.open, b.high, b.low, b.close, b.volume, b.vwap, s.earliest AS emit_from
        FROM (VALUES {_scope_sql(scope)}) AS s(symbol, earliest)
        JOIN bars_1m b ON b.symbol = s.symbol
        WHERE b.ts >= COALESCE(
            (SELECT p.ts FROM bars_1m p WHERE p.symbol = s.symbol AND p.ts < s.earliest
             ORDER BY p.ts DESC OFFSET {max(warmup_bars, 1) - 1} LIMIT 1),
            '-infinity'::timestamptz) {until_sql}
    """
    return spark.read.format("jdbc").options(**jdbc_options()).option("query", query).load()


MERGE_METRICS = f"""
    INSERT INTO metrics_1m (symbol, ts, {", ".join(METRIC_COLUMNS)}, computed_at)
    SELECT symbol, ts, {", ".join(METRIC_COLUMNS[:-1])}, coalesce(is_anomaly, false), now()
    FROM metrics_staging WHERE run_id = %(run_id)s
    ON CONFLICT (symbol, ts) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in METRIC_COLUMNS)}, computed_at = now()
"""

# One outbox row per (symbol, bar, kind). A recomputation (replay, late or corrected bar) refreshes a row that
# has not been sent yet, and revives one it had withdrawn; a row already delivered or failed keeps its state.
INSERT_ANOMALIES = """
    INSERT INTO anomalies (symbol, ts, kind, score, severity, details)
    SELECT s.symbol, s.ts, k.kind, s.anomaly_score, coalesce(s.severity, 'warning'),
           jsonb_strip_nulls(jsonb_build_object(
               'close', b.close, 'volume', b.volume, 'ret', s.ret, 'log_ret', s.log_ret,
               'return_z', s.return_z, 'robust_z', s.robust_z, 'volume_z', s.volume_z,
               'vol_cc', s.vol_cc, 'vol_ewma', s.vol_ewma, 'anomaly_score', s.anomaly_score,
               'kinds', s.anomaly_kinds))
    FROM metrics_staging s
    JOIN bars_1m b ON b.symbol = s.symbol AND b.ts = s.ts
    CROSS JOIN LATERAL unnest(string_to_array(s.anomaly_kinds, ',')) AS k(kind)
    WHERE s.run_id = %(run_id)s AND s.is_anomaly
    ON CONFLICT (symbol, ts, kind) DO UPDATE
        SET score = EXCLUDED.score, severity = EXCLUDED.severity, details = EXCLUDED.details,
            status = 'pending', delivery_note = NULL
        WHERE anomalies.status = 'pending'
           OR (anomalies.status = 'suppressed' AND anomalies.delivery_note LIKE 'withdrawn:%%')
"""

# A pending anomaly that no longer fires after a recomputation (a late or corrected bar changed its baseline)
# is withdrawn before anyone is alerted about it; delivered ones stay as they were.
WITHDRAW_ANOMALIES = """
    UPDATE anomalies a
    SET status = 'suppressed', delivery_note = 'withdrawn: a late or corrected bar changed the metrics'
    FROM metrics_staging s
    WHERE s.run_id = %(run_id)s AND a.symbol = s.symbol AND a.ts = s.ts AND a.status = 'pending'
      AND NOT (coalesce(s.is_anomaly, false) AND a.kind = ANY(string_to_array(s.anomaly_kinds, ',')))
"""


def recompute(
    spark: SparkSession,
    scope: dict[str, dt.datetime],
    warmup_bars: int = DEFAULT_WARMUP_BARS,
    until: dt.datetime | None = None,
) -> RecomputeResult:
    """Recompute and merge the metrics of every symbol in `scope` from its earliest changed bar on."""
    started = time.monotonic()
    if not scope:
        return RecomputeResult(0, 0, 0, 0.0)
    run_id = uuid.uuid4().hex
    bars = bars_with_warmup(spark, scope, warmup_bars, until)
    metrics = bars.groupBy("symbol").applyInArrow(compute_symbol, output_schema())
    staged = metrics.select("symbol", "ts", *METRIC_COLUMNS, *ANOMALY_COLUMNS).withColumn("run_id", F.lit(run_id))
    staged.write.format("jdbc").options(**jdbc_options()).option("dbtable", "metrics_staging").mode("append").save()
    with pg_connect() as conn:
        with conn.cursor() as cur:
            cur.execute(MERGE_METRICS, {"run_id": run_id})
            metric_rows = cur.rowcount
            cur.execute(WITHDRAW_ANOMALIES, {"run_id": run_id})
            cur.execute(INSERT_ANOMALIES, {"run_id": run_id})
            new_anomalies = cur.rowcount
            cur.execute("DELETE FROM metrics_staging WHERE run_id = %(run_id)s", {"run_id": run_id})
        conn.commit()
    return RecomputeResult(len(scope), metric_rows, new_anomalies, time.monotonic() - started)


def purge_stale_staging(max_age: str = "1 hour") -> None:
    """Drop staging rows of runs that died before their merge (their batch is replayed from the checkpoint)."""
    with pg_connect() as conn:
        conn.execute("DELETE FROM metrics_staging WHERE staged_at < now() - %s::interval", (max_age,))
