"""Metrics from bars_1m: the one writer of metrics_1m, the anomalies outbox and metrics_carry, used by the bars
job, the metrics job and the batch recompute job alike.

Where the kernels run is a decision about the kind of work, not a row count (docs/decisions.md):

    driver  (`apply_bars`: every streaming job's closed bars). A symbol whose changed bars all come after its
            stored carry (metrics_carry: the kernels' state after its last computed bar) continues from it: one
            carry row and its new bars are read, whatever its history. A symbol without a usable carry, or whose
            changed bar is at or before it (a late, repaired or corrected bar), is recomputed from the last
            `warmup_bars` bars before its earliest changed bar on. The driver reads the bars with one COPY into
            Arrow, runs the kernels (MetricsStream, the engine of applyInArrow), COPYs the rows into
            metrics_staging and saves each symbol's new carry, all inside the merge transaction.
    cluster (`recompute_job`: a backfill or a recompute of history, any size). Executors run the kernels per
            symbol (applyInArrow) and write metrics_staging (run_id) over JDBC in parallel; then the driver
            merges and drops the carries of those symbols, whose next live bar warms up once.
    merge:  BEGIN; upsert metrics_1m; insert anomalies (outbox) if absent; save or drop carries; delete staging
            rows; COMMIT

Metrics are a pure function of bars_1m (a carry continues a series bit for bit, as if computed in one call) and
every statement is keyed on (symbol, ts [, kind]), so replaying a micro-batch, or recomputing a range, rewrites
identical values and never duplicates an alert.
"""

from __future__ import annotations

import datetime as dt
import io
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StructType

import sparktrends
from spark_jobs.common import jdbc_options
from spark_jobs.detector_profiles import DetectorProfiles
from spark_jobs.store import pg_connect
from sparktrends import contract

METRIC_COLUMNS = contract.metric_columns()
ANOMALY_COLUMNS = ["anomaly_kinds", "severity"]
# Enough history that the EWMA (λ = 0.94) has forgotten where the warm-up started (0.94**512 ≈ 2e-14), and at least
# what the detector's windows need to see what the full history gives (the package's MetricsConfig.warmup_bars).
DEFAULT_WARMUP_BARS = max(512, sparktrends.MetricsConfig().warmup_bars)
# Where the kernels run (module docstring): "driver" for streaming jobs' closed bars, "cluster" for batch recomputes.
Engine = Literal["driver", "cluster"]


@dataclass(frozen=True)
class RecomputeResult:
    symbols: int
    metric_rows: int
    new_anomalies: int
    seconds: float
    bars_read: int = 0  # rows of bars_1m read (warm-up included)
    ran_on: str = ""  # the Engine
    carried: int = 0  # symbols continued from their stored carry (one metrics_carry row read each)
    warmed: int = 0  # symbols recomputed from a warm-up of stored bars

    @property
    def rows_read(self) -> int:
        """PostgreSQL rows read to compute the metrics: bars and carries."""
        return self.bars_read + self.carried


def output_schema() -> StructType:
    """Spark schema of the per-symbol results: the package's one schema definition, converted."""
    return from_arrow_schema(sparktrends.METRICS_SCHEMA)


def symbol_computer(profiles: DetectorProfiles) -> Callable[[pa.Table], pa.Table]:
    """The applyInArrow function, run on the executors: one symbol's bars (warm-up included) -> its metrics, with
    its detector profile, from `emit_from` (the symbol's earliest changed bar) on. Closes over plain dicts only."""

    def compute_symbol(table: pa.Table) -> pa.Table:
        if table.num_rows == 0:
            return sparktrends.METRICS_SCHEMA.empty_table()
        emit_from = table.column("emit_from")[0]
        settings = profiles.settings_for(table.column("symbol")[0].as_py())
        metrics = sparktrends.apply_in_arrow_with(table.drop_columns(["emit_from"]), settings)
        ts = metrics.column("ts")
        return metrics.filter(pc.greater_equal(ts, emit_from.cast(ts.type)))

    return compute_symbol


compute_symbol = symbol_computer(DetectorProfiles())  # the package defaults


def _scope_sql(scope: dict[str, dt.datetime]) -> str:
    """VALUES rows of (symbol, earliest changed ts). Symbols passed the contract checks; quoting stays strict."""
    rows = []
    for symbol, earliest in sorted(scope.items()):
        quoted = "'" + symbol.replace("'", "''") + "'"
        rows.append(f"({quoted}, TIMESTAMPTZ '{earliest.isoformat()}')")
    return ", ".join(rows)


def bars_with_warmup_sql(
    scope: dict[str, dt.datetime], warmup_bars: int, until: dt.datetime | None = None, epoch_us: bool = False
) -> str:
    """Each scoped symbol's bars from `warmup_bars` before its earliest changed bar on (up to `until`); a symbol
    with less history than that gets all of it. `epoch_us` gives the timestamps as integer microseconds."""
    until_sql = f"AND b.ts <= TIMESTAMPTZ '{until.isoformat()}'" if until else ""
    ts, emit_from = "b.ts", "s.earliest"
    if epoch_us:
        ts, emit_from = (f"(extract(epoch FROM {c}) * 1000000)::bigint" for c in (ts, emit_from))
    return f"""
        SELECT b.symbol, {ts} AS ts, b.open, b.high, b.low, b.close, b.volume, b.vwap, {emit_from} AS emit_from
        FROM (VALUES {_scope_sql(scope)}) AS s(symbol, earliest)
        JOIN bars_1m b ON b.symbol = s.symbol
        WHERE b.ts >= COALESCE(
            (SELECT p.ts FROM bars_1m p WHERE p.symbol = s.symbol AND p.ts < s.earliest
             ORDER BY p.ts DESC OFFSET {max(warmup_bars, 1) - 1} LIMIT 1),
            '-infinity'::timestamptz) {until_sql}
    """


def bars_after_sql(after: dict[str, dt.datetime]) -> str:
    """Each symbol's bars after its carry's last bar (as bars_with_warmup_sql(epoch_us=True) gives them)."""
    us = "(extract(epoch FROM {}) * 1000000)::bigint"
    return f"""
        SELECT b.symbol, {us.format("b.ts")} AS ts, b.open, b.high, b.low, b.close, b.volume, b.vwap,
               {us.format("s.after")} AS emit_from
        FROM (VALUES {_scope_sql(after)}) AS s(symbol, after)
        JOIN bars_1m b ON b.symbol = s.symbol AND b.ts > s.after
    """


def bars_with_warmup(
    spark: SparkSession, scope: dict[str, dt.datetime], warmup_bars: int, until: dt.datetime | None = None
) -> DataFrame:
    """bars_with_warmup_sql as a DataFrame read over JDBC."""
    query = bars_with_warmup_sql(scope, warmup_bars, until)
    return spark.read.format("jdbc").options(**jdbc_options()).option("query", query).load()


_BARS_CSV_TYPES = {
    "symbol": pa.string(), "ts": pa.int64(), "open": pa.float64(), "high": pa.float64(), "low": pa.float64(),
    "close": pa.float64(), "volume": pa.float64(), "vwap": pa.float64(), "emit_from": pa.int64(),
}  # fmt: skip


def read_bars_arrow(conn: psycopg.Connection, query: str) -> pa.Table:
    """The rows of bars_with_warmup_sql(epoch_us=True) as Arrow, through COPY ... CSV: PostgreSQL writes it and
    Arrow's parser reads it without a Python object per value."""
    buffer = io.BytesIO()
    with conn.cursor().copy(f"COPY ({query}) TO STDOUT (FORMAT csv, HEADER true)") as copy:
        for chunk in copy:
            buffer.write(chunk)
    buffer.seek(0)
    table = pa_csv.read_csv(buffer, convert_options=pa_csv.ConvertOptions(column_types=_BARS_CSV_TYPES))
    timestamp = pa.timestamp("us", tz="UTC")
    return table.set_column(1, "ts", table.column("ts").cast(timestamp)).set_column(
        table.schema.get_field_index("emit_from"), "emit_from", table.column("emit_from").cast(timestamp)
    )


def compute_in_driver(
    bars: pa.Table,
    profiles: DetectorProfiles | None = None,
    carries: Mapping[str, sparktrends.CarryState] | None = None,
) -> tuple[pa.Table, dict[str, sparktrends.CarryState]]:
    """The metrics of every symbol in `bars`, from each symbol's `emit_from` on, and each symbol's carry after its
    last bar: the kernels of compute_symbol, run over all symbols of one detector profile at once (MetricsStream
    keeps each symbol's state apart). A symbol with a carry continues from it; its bars must all come after it."""
    if bars.num_rows == 0:
        return sparktrends.METRICS_SCHEMA.empty_table(), {}
    profiles = profiles or DetectorProfiles()
    carries = carries or {}
    bars = bars.sort_by([("symbol", "ascending"), ("ts", "ascending")])
    by_profile: dict[str, list[str]] = {}
    for symbol in pc.unique(bars.column("symbol")).to_pylist():
        by_profile.setdefault(profiles.profile_of(symbol), []).append(symbol)
    parts, next_carries = [], {}
    for symbols in by_profile.values():
        part = bars.filter(pc.is_in(bars.column("symbol"), pa.array(symbols)))
        stream = sparktrends.MetricsStream(sparktrends.MetricsConfig(**profiles.settings_for(symbols[0])))
        for symbol in symbols:
            if symbol in carries:
                stream.set_carry(symbol, carries[symbol])
        batches = [stream.process(b) for b in part.drop_columns(["emit_from"]).to_batches() if b.num_rows]
        metrics = pa.Table.from_batches(batches, schema=sparktrends.METRICS_SCHEMA)
        # process keeps the input's row order, so the bars' emit_from lines up with the metrics rows.
        parts.append(metrics.filter(pc.greater_equal(metrics.column("ts"), part.column("emit_from"))))
        next_carries.update({symbol: carry for symbol in symbols if (carry := stream.carry(symbol)) is not None})
    return pa.concat_tables(parts), next_carries


def load_carries(
    conn: psycopg.Connection, scope: dict[str, dt.datetime], profiles: DetectorProfiles
) -> dict[str, sparktrends.CarryState]:
    """The stored carries a scoped symbol can continue from: its changed bars all come after the carry, and the
    carry restores under its profile's windows (a carry of another version or other windows is not used)."""
    rows = conn.execute(
        "SELECT symbol, last_ts, state FROM metrics_carry WHERE symbol = ANY(%s)", (list(scope),)
    ).fetchall()
    usable = {}
    for symbol, last_ts, state in rows:
        if scope[symbol] <= last_ts:
            continue  # a late, repaired or corrected bar: recomputed from the warm-up
        try:
            config = sparktrends.MetricsConfig(**profiles.settings_for(symbol))
            usable[symbol] = sparktrends.CarryState(bytes(state), config)
        except ValueError:
            continue
    return usable


SAVE_CARRIES = """
    INSERT INTO metrics_carry (symbol, last_ts, profile, state)
    SELECT symbol, 'epoch'::timestamptz + last_us * interval '1 microsecond', profile, state
    FROM unnest(%s::text[], %s::bigint[], %s::text[], %s::bytea[]) AS c(symbol, last_us, profile, state)
    ON CONFLICT (symbol) DO UPDATE
        SET last_ts = EXCLUDED.last_ts, profile = EXCLUDED.profile, state = EXCLUDED.state, updated_at = now()
"""


def _save_carries(
    conn: psycopg.Connection, carries: Mapping[str, sparktrends.CarryState], profiles: DetectorProfiles
) -> None:
    symbols = sorted(s for s, c in carries.items() if c.last_ts_us is not None)
    if symbols:
        conn.execute(
            SAVE_CARRIES,
            (
                symbols,
                [carries[s].last_ts_us for s in symbols],
                [profiles.profile_of(s) for s in symbols],
                [carries[s].to_bytes() for s in symbols],
            ),
        )


MERGE_METRICS = f"""
    INSERT INTO metrics_1m (symbol, ts, {", ".join(METRIC_COLUMNS)}, computed_at)
    SELECT symbol, ts, {", ".join(METRIC_COLUMNS[:-1])}, coalesce(is_anomaly, false), now()
    FROM metrics_staging WHERE run_id = %(run_id)s
    ON CONFLICT (symbol, ts) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in METRIC_COLUMNS)}, computed_at = now()
"""

# One outbox row per (symbol, bar, kind). A recomputation (replay, late or corrected bar) refreshes a row that
# has not been sent yet, and revives one it had withdrawn; a row already delivered or failed keeps its state.
# An anomaly of a bar that closed longer than alert_live_window() ago (a repaired gap, a backfill, a recompute of
# history: migration 0008) is 'recorded', never posted as if it were news; docs/alerts.md.
INSERT_ANOMALIES = f"""
    INSERT INTO anomalies (symbol, ts, kind, score, severity, details, status, delivery_note)
    SELECT s.symbol, s.ts, k.kind, s.anomaly_score, coalesce(s.severity, '{contract.severities()[0]}'),
           jsonb_strip_nulls(jsonb_build_object(
               'close', b.close, 'volume', b.volume, 'ret', s.ret, 'log_ret', s.log_ret,
               'ret_2_bars', b.close / nullif(before.close, 0) - 1,
               'return_z', s.return_z, 'robust_z', s.robust_z, 'volume_z', s.volume_z,
               'vol_cc', s.vol_cc, 'vol_ewma', s.vol_ewma, 'anomaly_score', s.anomaly_score,
               'kinds', s.anomaly_kinds)),
           CASE WHEN live THEN 'pending' ELSE 'recorded' END,
           CASE WHEN NOT live THEN format('recorded, not posted: found %%s after its bar closed (a repaired gap, a '
                                          'backfill or a recompute of history)',
                                          date_trunc('second', now() - s.ts - interval '1 minute')) END
    FROM metrics_staging s
    CROSS JOIN LATERAL (SELECT s.ts + interval '1 minute' >= now() - alert_live_window() AS live) AS age
    JOIN bars_1m b ON b.symbol = s.symbol AND b.ts = s.ts
    -- A price jump is reported by the bar that confirms it held; the move is the bar before, so the alert also
    -- shows the return over the two bars.
    LEFT JOIN LATERAL (
        SELECT p.close FROM bars_1m p WHERE p.symbol = s.symbol AND p.ts < s.ts ORDER BY p.ts DESC OFFSET 1 LIMIT 1
    ) before ON true
    CROSS JOIN LATERAL unnest(string_to_array(s.anomaly_kinds, ',')) AS k(kind)
    WHERE s.run_id = %(run_id)s AND s.is_anomaly
    ON CONFLICT (symbol, ts, kind) DO UPDATE
        SET score = EXCLUDED.score, severity = EXCLUDED.severity, details = EXCLUDED.details,
            -- A revived row is judged live or not now; a pending or recorded one keeps what it was found as.
            status = CASE WHEN anomalies.status = 'suppressed' THEN EXCLUDED.status ELSE anomalies.status END,
            delivery_note = CASE WHEN anomalies.status = 'suppressed' THEN EXCLUDED.delivery_note
                                 ELSE anomalies.delivery_note END
        WHERE anomalies.status IN ('pending', 'recorded')
           OR (anomalies.status = 'suppressed' AND anomalies.delivery_note LIKE 'withdrawn:%%')
"""

# A pending anomaly that no longer fires after a recomputation (a late or corrected bar changed its baseline)
# is withdrawn before anyone is alerted about it; delivered ones stay as they were.
WITHDRAW_ANOMALIES = """
    UPDATE anomalies a
    SET status = 'suppressed', delivery_note = 'withdrawn: a late or corrected bar changed the metrics'
    FROM metrics_staging s
    WHERE s.run_id = %(run_id)s AND a.symbol = s.symbol AND a.ts = s.ts AND a.status IN ('pending', 'recorded')
      AND NOT (coalesce(s.is_anomaly, false) AND a.kind = ANY(string_to_array(s.anomaly_kinds, ',')))
"""


STAGED_COLUMNS = ["symbol", "ts", *METRIC_COLUMNS, *ANOMALY_COLUMNS]


def recompute(
    spark: SparkSession | None,
    scope: dict[str, dt.datetime],
    warmup_bars: int = DEFAULT_WARMUP_BARS,
    until: dt.datetime | None = None,
    engine: Engine = "driver",
    profiles: DetectorProfiles | None = None,
) -> RecomputeResult:
    """Recompute and merge the metrics of every symbol in `scope` from its earliest changed bar on (up to `until`),
    on `engine` (module docstring)."""
    started = time.monotonic()
    if not scope:
        return RecomputeResult(0, 0, 0, 0.0)
    profiles = profiles or DetectorProfiles()
    warmup_bars = max(warmup_bars, profiles.warmup_bars())
    run_id = uuid.uuid4().hex
    with pg_connect() as conn:
        lock_symbols(conn, scope)
        bars_read, carries = 0, {}
        if engine == "driver":
            carries = load_carries(conn, scope, profiles) if until is None else {}
            after_carries = {symbol: carry_ts(carries[symbol]) for symbol in carries}
            warm = {symbol: earliest for symbol, earliest in scope.items() if symbol not in carries}
            queries = []
            if warm:
                queries.append(bars_with_warmup_sql(warm, warmup_bars, until, epoch_us=True))
            if after_carries:
                queries.append(bars_after_sql(after_carries))
            bars = pa.concat_tables([read_bars_arrow(conn, q) for q in queries])
            bars_read = bars.num_rows
            metrics, next_carries = compute_in_driver(bars, profiles, carries)
            _stage(conn, run_id, metrics)
            if until is None:
                _save_carries(conn, next_carries, profiles)
            else:
                conn.execute("DELETE FROM metrics_carry WHERE symbol = ANY(%s)", (list(scope),))
        else:
            if spark is None:
                raise ValueError("the cluster engine needs a Spark session")
            bars_df = bars_with_warmup(spark, scope, warmup_bars, until)
            metrics_df = bars_df.groupBy("symbol").applyInArrow(symbol_computer(profiles), output_schema())
            staged = metrics_df.select(*STAGED_COLUMNS).withColumn("run_id", F.lit(run_id))
            staged.write.format("jdbc").options(**jdbc_options()).option("dbtable", "metrics_staging").mode(
                "append"
            ).save()
            # Carries are built by the driver only: these symbols' next live bar warms up once and stores one.
            conn.execute("DELETE FROM metrics_carry WHERE symbol = ANY(%s)", (list(scope),))
        with conn.cursor() as cur:
            cur.execute(MERGE_METRICS, {"run_id": run_id})
            metric_rows = cur.rowcount
            cur.execute(WITHDRAW_ANOMALIES, {"run_id": run_id})
            cur.execute(INSERT_ANOMALIES, {"run_id": run_id})
            new_anomalies = cur.rowcount
            cur.execute("DELETE FROM metrics_staging WHERE run_id = %(run_id)s", {"run_id": run_id})
        conn.commit()
    return RecomputeResult(
        len(scope),
        metric_rows,
        new_anomalies,
        time.monotonic() - started,
        bars_read=bars_read,
        ran_on=engine,
        carried=len(carries),
        warmed=len(scope) - len(carries),
    )


def carry_ts(carry: sparktrends.CarryState) -> dt.datetime:
    """The time of the last bar behind `carry`."""
    return dt.datetime.fromtimestamp(0, dt.timezone.utc) + dt.timedelta(microseconds=carry.last_ts_us or 0)


# First key of the two-part advisory locks on a symbol's metrics ('SM'); the alerter's delivery locks use 'ST',
# so a slow webhook never holds up a recomputation.
SYMBOL_LOCK_NAMESPACE = 0x534D


# How long a recomputation waits for a symbol another one holds. Far above a healthy merge (seconds); past it the
# holder is stalled (a lost worker, a hung batch), and failing the batch, named, beats waiting without limit.
SYMBOL_LOCK_TIMEOUT_S = 300


class SymbolsLocked(RuntimeError):
    """A recomputation waited SYMBOL_LOCK_TIMEOUT_S for symbols that another session holds."""


def lock_symbols(
    conn: psycopg.Connection, scope: dict[str, dt.datetime], timeout_s: float = SYMBOL_LOCK_TIMEOUT_S
) -> None:
    """Holds every scoped symbol until the merge commits. Two recomputations of one symbol (the bars job and
    the metrics job, or a backfill) then run one after the other, and the later one reads every bar the
    earlier saw: without it, one that read an older snapshot could commit last and leave stale metrics.
    Taken in the order of the lock keys (two symbols may share one), so overlapping holders cannot deadlock.
    Waits at most `timeout_s`, then raises SymbolsLocked naming the sessions that hold them."""
    keys = conn.execute("SELECT DISTINCT hashtext(s) FROM unnest(%s::text[]) AS s ORDER BY 1", (list(scope),))
    conn.execute(f"SET LOCAL lock_timeout = '{int(timeout_s * 1000)}ms'")
    try:
        with conn.cursor() as cur:
            cur.executemany(f"SELECT pg_advisory_xact_lock({SYMBOL_LOCK_NAMESPACE}, %s)", keys.fetchall())
    except psycopg.errors.LockNotAvailable as err:
        raise SymbolsLocked(
            f"waited {timeout_s:g}s for {len(scope)} symbol(s) held by another recomputation "
            f"({_symbol_lock_holders()}); is a batch stalled?"
        ) from err


def _symbol_lock_holders() -> str:
    """Who holds symbol locks now: pid, application and since when, from a fresh connection (the caller's
    transaction is aborted)."""
    with pg_connect() as conn:
        rows = conn.execute(
            "SELECT a.pid, coalesce(nullif(a.application_name, ''), '?'), a.xact_start FROM pg_locks l "
            "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
            "AND l.classid = %s GROUP BY 1, 2, 3 ORDER BY 3",
            (SYMBOL_LOCK_NAMESPACE,),
        ).fetchall()
    return ", ".join(f"pid {pid} ({app}) since {since:%H:%M:%S}" for pid, app, since in rows) or "no holder now"


BAR_FIELDS = contract.messages()["bar"].field_names  # as the bars topic carries them (ts_ms: epoch ms)
BAR_COLUMNS = ["ts" if f == "ts_ms" else f for f in BAR_FIELDS]  # bars_1m and bar_versions
# The bar origins, weakest claim to be the bar of record first (contracts/messages.json bar_origins): a
# provider's own bar replaces one built from trades, never the other way round.
ORIGINS = contract.names("bar_origins")
_PG_TYPES = {"text": "text", "symbol": "text", "int64": "bigint", "float64": "double precision"}
_BAR_TYPES = [_PG_TYPES[f.type] for f in contract.messages()["bar"].fields]


def _bar_sql() -> str:
    """Bars (one array parameter per contract field, then ORIGINS three times) into bar_versions, every version
    kept, and into bars_1m by the origin rule; returns the (symbol, ts) of every bars_1m row that changed."""
    columns = ", ".join(BAR_COLUMNS)
    unnest = ", ".join(f"%s::{t}[]" for t in _BAR_TYPES)
    epoch_ms = "'epoch'::timestamptz + ts_ms * interval '1 millisecond' AS ts"
    select = ", ".join(epoch_ms if f == "ts_ms" else f for f in BAR_FIELDS)
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in BAR_COLUMNS if c not in ("symbol", "ts"))
    rank = "array_position(%s::text[], {}.origin)"  # parameter: ORIGINS
    return f"""
        WITH incoming AS (SELECT {select} FROM unnest({unnest}) AS i({", ".join(BAR_FIELDS)})),
        versions AS (
            INSERT INTO bar_versions ({columns}) SELECT {columns} FROM incoming
            ON CONFLICT (symbol, ts, origin) DO UPDATE SET {updates}, received_at = now())
        INSERT INTO bars_1m ({columns})
        SELECT DISTINCT ON (symbol, ts) {columns} FROM incoming AS i
        ORDER BY symbol, ts, {rank.format("i")} DESC
        ON CONFLICT (symbol, ts) DO UPDATE SET {updates}
        WHERE {rank.format("EXCLUDED")} >= {rank.format("bars_1m")}
        RETURNING symbol, ts
    """


_UPSERT_BARS = _bar_sql()


def apply_bars(
    bars: list[dict],
    warmup_bars: int = DEFAULT_WARMUP_BARS,
    profiles: DetectorProfiles | None = None,
) -> RecomputeResult:
    """Closed bars (dicts of BAR_FIELDS, as the bars topic carries them) into bar_versions and, by the origin
    rule, bars_1m; then the metrics of each symbol whose bar of record changed, from its earliest changed bar
    on, so a late or corrected bar repairs what follows it, in the driver (no Spark job: a live bar continues
    from its symbol's carry). Both writes are idempotent: replaying the same bars changes nothing."""
    if not bars:
        return RecomputeResult(0, 0, 0, 0.0)
    params = [[bar.get(f) for bar in bars] for f in BAR_FIELDS]
    with pg_connect() as conn, conn.cursor() as cur:
        cur.execute(_UPSERT_BARS, [*params, *([ORIGINS] * 3)])
        changed = cur.fetchall()
    scope: dict[str, dt.datetime] = {}
    for symbol, ts in changed:
        scope[symbol] = min(scope.get(symbol, ts), ts)
    return recompute(None, scope, warmup_bars, engine="driver", profiles=profiles)


def _stage(conn: psycopg.Connection, run_id: str, metrics: pa.Table) -> None:
    """COPY the driver's metrics rows into metrics_staging, in the merge's transaction."""
    columns = ", ".join(["run_id", *STAGED_COLUMNS])
    with conn.cursor().copy(f"COPY metrics_staging ({columns}) FROM STDIN") as copy:
        for row in metrics.select(STAGED_COLUMNS).to_pylist():
            copy.write_row([run_id, *row.values()])


def purge_stale_staging(max_age: str = "1 hour") -> None:
    """Drop staging rows of runs that died before their merge (their batch is replayed from the checkpoint)."""
    with pg_connect() as conn:
        conn.execute("DELETE FROM metrics_staging WHERE staged_at < now() - %s::interval", (max_age,))
