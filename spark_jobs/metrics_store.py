"""Metrics from bars_1m: the one writer of metrics_1m, the anomalies outbox and metrics_carry, used by the bars
job, the provider bars job and the batch recompute job alike.

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
import json
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema
from pyspark.sql.types import StructType

import sparktrends
from spark_jobs import carries
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
    carried: int = 0  # symbols continued from a carry (spark_jobs/carries.py)
    warmed: int = 0  # symbols recomputed from a warm-up of stored bars
    carry_rows_read: int = 0  # metrics_carry rows read (without and with the state)
    carries_from_memory: int = 0  # carried symbols whose state came from the driver's cache

    @property
    def rows_read(self) -> int:
        """PostgreSQL rows read to compute the metrics: bars and metrics_carry rows."""
        return self.bars_read + self.carry_rows_read


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


def _epoch_us(column: str) -> str:
    """SQL: a timestamptz column as integer microseconds since the epoch (what read_bars_arrow parses)."""
    return f"(extract(epoch FROM {column}) * 1000000)::bigint"


def bars_with_warmup_sql(
    scope: dict[str, dt.datetime], warmup_bars: int, until: dt.datetime | None = None, epoch_us: bool = False
) -> str:
    """Each scoped symbol's bars from `warmup_bars` before its earliest changed bar on (up to `until`); a symbol
    with less history than that gets all of it. `epoch_us` gives the timestamps as integer microseconds."""
    until_sql = f"AND b.ts <= TIMESTAMPTZ '{until.isoformat()}'" if until else ""
    ts, emit_from = "b.ts", "s.earliest"
    if epoch_us:
        ts, emit_from = _epoch_us(ts), _epoch_us(emit_from)
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
    """Each symbol's bars after its carry's last bar (as bars_with_warmup_sql(epoch_us=True) gives them). LATERAL
    keeps it one index range scan per symbol: a plain join of thousands of VALUES rows is planned as a hash join
    over the whole of bars_1m (0.4 s at 5,000 symbols with 600 bars each)."""
    return f"""
        SELECT s.symbol, {_epoch_us("b.ts")} AS ts, b.open, b.high, b.low, b.close, b.volume, b.vwap,
               {_epoch_us("s.after")} AS emit_from
        FROM (VALUES {_scope_sql(after)}) AS s(symbol, after)
        CROSS JOIN LATERAL (
            SELECT * FROM bars_1m b WHERE b.symbol = s.symbol AND b.ts > s.after ORDER BY b.ts
        ) b
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
    """Recompute and merge the metrics of every symbol in `scope` (symbol -> earliest changed bar) from its
    earliest changed bar on (up to `until`), on `engine` (module docstring), in one transaction."""
    if not scope:
        return RecomputeResult(0, 0, 0, 0.0)
    with pg_connect() as conn:
        lock_symbols(conn, scope)
        return _recompute_locked(conn, spark, scope, warmup_bars, until, engine, profiles)


def _recompute_locked(
    conn: psycopg.Connection,
    spark: SparkSession | None,
    scope: dict[str, dt.datetime],
    warmup_bars: int,
    until: dt.datetime | None,
    engine: Engine,
    profiles: DetectorProfiles | None,
    appended_after: Mapping[str, dt.datetime | None] | None = None,
    new_bars: pa.Table | None = None,
) -> RecomputeResult:
    """recompute, in `conn`'s transaction, which holds the locks of `scope`'s symbols; commits. `appended_after`
    names the symbols whose changed bars all come after their last bar before the change (the value; None for a
    new symbol): any other change rewrote history, and every cached carry of it is abandoned
    (spark_jobs/carries.py). `new_bars` (read_bars_arrow's columns) are the changed bars, when the caller wrote
    them in this transaction."""
    started = time.monotonic()
    profiles = profiles or DetectorProfiles()
    warmup_bars = max(warmup_bars, profiles.warmup_bars())
    appended_after = appended_after or {}
    run_id = uuid.uuid4().hex
    bars_read, planned, computed, generations = 0, carries.Plan(), {}, {}
    try:
        if engine == "driver":
            if until is not None:
                raise ValueError(
                    "the driver engine computes through the last bar; a recompute up to a time runs on the cluster"
                )
            planned = carries.plan(conn, scope, profiles)
            bars, bars_read = _bars_to_compute(conn, scope, planned, warmup_bars, appended_after, new_bars)
            metrics, computed = compute_in_driver(bars, profiles, planned.carries)
            _stage(conn, run_id, metrics)
            generations = carries.save(conn, planned, computed, set(appended_after), profiles)
        else:
            if spark is None:
                raise ValueError("the cluster engine needs a Spark session")
            bars_df = bars_with_warmup(spark, scope, warmup_bars, until)
            metrics_df = bars_df.groupBy("symbol").applyInArrow(symbol_computer(profiles), output_schema())
            staged = metrics_df.select(*STAGED_COLUMNS).withColumn("run_id", F.lit(run_id))
            staged.write.format("jdbc").options(**jdbc_options()).option("dbtable", "metrics_staging").mode(
                "append"
            ).save()
            # Carries are built in the driver only: these symbols' next live bar warms up once and stores one.
            carries.forget(conn, list(scope))
        with conn.cursor() as cur:
            cur.execute(MERGE_METRICS, {"run_id": run_id})
            metric_rows = cur.rowcount
            cur.execute(WITHDRAW_ANOMALIES, {"run_id": run_id})
            cur.execute(INSERT_ANOMALIES, {"run_id": run_id})
            new_anomalies = cur.rowcount
            cur.execute("DELETE FROM metrics_staging WHERE run_id = %(run_id)s", {"run_id": run_id})
        conn.commit()
    except BaseException:
        carries.CACHE.drop(carries.database_key(conn), list(scope))
        raise
    carries.remember(conn, computed, generations, profiles)
    return RecomputeResult(
        len(scope),
        metric_rows,
        new_anomalies,
        time.monotonic() - started,
        bars_read=bars_read,
        ran_on=engine,
        carried=len(planned.carries),
        warmed=len(scope) - len(planned.carries),
        carry_rows_read=planned.rows_read,
        carries_from_memory=planned.from_cache,
    )


def _bars_to_compute(
    conn: psycopg.Connection,
    scope: Mapping[str, dt.datetime],
    planned: carries.Plan,
    warmup_bars: int,
    appended_after: Mapping[str, dt.datetime | None],
    new_bars: pa.Table | None,
) -> tuple[pa.Table, int]:
    """The bars each symbol's metrics are computed from, and how many of them were read from bars_1m: a carried
    symbol's bars after its carry (the new bars themselves, not read, when the carry ends at the bar before them),
    the others' warm-up and everything after it."""
    given: list[str] = []
    read_after: dict[str, dt.datetime] = {}
    for symbol, carry in planned.carries.items():
        carried_to = carries.last_ts(carry)
        if new_bars is not None and symbol in appended_after and appended_after[symbol] == carried_to:
            given.append(symbol)
        else:
            read_after[symbol] = carried_to
    warm = {symbol: earliest for symbol, earliest in scope.items() if symbol not in planned.carries}
    read = []
    if warm:
        read.append(read_bars_arrow(conn, bars_with_warmup_sql(warm, warmup_bars, epoch_us=True)))
    if read_after:
        read.append(read_bars_arrow(conn, bars_after_sql(read_after)))
    rows_read = sum(part.num_rows for part in read)
    if given and new_bars is not None:
        read.append(new_bars.filter(pc.is_in(new_bars.column("symbol"), pa.array(given))))
    return pa.concat_tables(read), rows_read


# First key of the two-part advisory locks on a symbol's metrics ('SM'); the alerter's delivery locks use 'ST',
# so a slow webhook never holds up a recomputation.
SYMBOL_LOCK_NAMESPACE = 0x534D


# How long a recomputation waits for a symbol another one holds. Far above a healthy merge (seconds); past it the
# holder is stalled (a lost worker, a hung batch), and failing the batch, named, beats waiting without limit.
SYMBOL_LOCK_TIMEOUT_S = 300


class SymbolsLocked(RuntimeError):
    """A recomputation waited SYMBOL_LOCK_TIMEOUT_S for symbols that another session holds."""


def lock_symbols(conn: psycopg.Connection, symbols: Collection[str], timeout_s: float = SYMBOL_LOCK_TIMEOUT_S) -> None:
    """Holds every scoped symbol until the merge commits. Two recomputations of one symbol (the bars job and
    the provider bars job, or a backfill) then run one after the other, and the later one reads every bar the
    earlier saw: without it, one that read an older snapshot could commit last and leave stale metrics.
    Taken in the order of the lock keys (two symbols may share one), so overlapping holders cannot deadlock.
    Waits at most `timeout_s`, then raises SymbolsLocked naming the sessions that hold them."""
    conn.execute(f"SET LOCAL lock_timeout = '{int(timeout_s * 1000)}ms'")
    try:
        # One statement: the aggregate takes the locks row by row in the subquery's order.
        conn.execute(
            f"SELECT count(pg_advisory_xact_lock({SYMBOL_LOCK_NAMESPACE}, k)) FROM "
            "(SELECT DISTINCT hashtext(s) AS k FROM unnest(%s::text[]) AS s ORDER BY 1) keys",
            (list(symbols),),
        )
    except psycopg.errors.LockNotAvailable as err:
        raise SymbolsLocked(
            f"waited {timeout_s:g}s for {len(symbols)} symbol(s) held by another recomputation "
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


@dataclass(frozen=True, slots=True)
class Bar:
    """A closed 1-minute bar, as the bars topic carries it: the contract's `bar` message (contracts/messages.json;
    tests/jobs/test_bar_type.py holds the fields, their types and which are required to it)."""

    source: str
    symbol: str
    ts_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    trades: int | None = None
    vwap: float | None = None
    taker_buy_volume: float | None = None
    first_trade_id: int | None = None
    last_trade_id: int | None = None
    origin: str | None = None

    @classmethod
    def of(cls, fields: Mapping[str, Any]) -> Bar:
        """The bar of a record with (at least) the contract's fields: a collected row, a parsed message."""
        return cls(**{f: fields.get(f) for f in BAR_FIELDS})

    def to_json(self) -> str:
        """The bars topic's message: null fields left out, as Spark's to_json writes them."""
        return json.dumps({f: v for f in BAR_FIELDS if (v := getattr(self, f)) is not None})


BAR_COLUMNS = ["ts" if f == "ts_ms" else f for f in BAR_FIELDS]  # bars_1m and bar_versions
# The bar origins, weakest claim to be the bar of record first (contracts/messages.json bar_origins): a
# provider's own bar replaces one built from trades, never the other way round.
ORIGINS = contract.names("bar_origins")
_PG_TYPES = {"text": "text", "symbol": "text", "int64": "bigint", "float64": "double precision"}
_BAR_TYPES = [_PG_TYPES[f.type] for f in contract.messages()["bar"].fields]


def _bar_sql() -> str:
    """Bars (one array parameter per contract field, then ORIGINS three times) into bar_versions, every version
    kept, and into bars_1m by the origin rule. Returns every bars_1m row that changed, as _NEW_BAR_COLUMNS: its
    values of record and the symbol's last bar before the statement (every CTE reads the same snapshot)."""
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
            ON CONFLICT (symbol, ts, origin) DO UPDATE SET {updates}, received_at = now()),
        previous AS (
            SELECT s.symbol, (SELECT max(b.ts) FROM bars_1m b WHERE b.symbol = s.symbol) AS last_ts
            FROM (SELECT DISTINCT symbol FROM incoming) s),
        changed AS (
            INSERT INTO bars_1m ({columns})
            SELECT DISTINCT ON (symbol, ts) {columns} FROM incoming AS i
            ORDER BY symbol, ts, {rank.format("i")} DESC
            ON CONFLICT (symbol, ts) DO UPDATE SET {updates}
            WHERE {rank.format("EXCLUDED")} >= {rank.format("bars_1m")}
            RETURNING symbol, ts, open, high, low, close, volume, vwap)
        SELECT c.symbol, c.ts, c.open, c.high, c.low, c.close, c.volume, c.vwap, p.last_ts
        FROM changed c JOIN previous p USING (symbol)
    """


_UPSERT_BARS = _bar_sql()


def apply_bars(
    bars: Sequence[Bar],
    warmup_bars: int = DEFAULT_WARMUP_BARS,
    profiles: DetectorProfiles | None = None,
) -> RecomputeResult:
    """Closed bars into bar_versions and, by the origin
    rule, bars_1m; then the metrics of each symbol whose bar of record changed, from its earliest changed bar
    on, so a late or corrected bar repairs what follows it, in the driver (no Spark job: a live bar continues
    from its symbol's carry). Both writes are idempotent: replaying the same bars changes nothing."""
    if not bars:
        return RecomputeResult(0, 0, 0, 0.0)
    params = [[getattr(bar, f) for bar in bars] for f in BAR_FIELDS]
    with pg_connect() as conn:
        # The bars are written under their symbols' locks, in the metrics' transaction: "the symbol's last bar
        # before these" then holds until the merge, whoever else writes the symbol (carries.py relies on it).
        lock_symbols(conn, {bar.symbol for bar in bars})
        changed = conn.execute(_UPSERT_BARS, [*params, *([ORIGINS] * 3)]).fetchall()
        if not changed:
            conn.commit()
            return RecomputeResult(0, 0, 0, 0.0)
        scope: dict[str, dt.datetime] = {}
        previous_last: dict[str, dt.datetime | None] = {}
        for symbol, ts, *_, last_before in changed:
            scope[symbol] = min(scope.get(symbol, ts), ts)
            previous_last[symbol] = last_before
        appended_after = {s: last for s, last in previous_last.items() if last is None or scope[s] > last}
        return _recompute_locked(
            conn, None, scope, warmup_bars, None, "driver", profiles, appended_after, _changed_bars_table(changed)
        )


def _changed_bars_table(changed: list[tuple]) -> pa.Table:
    """The rows _UPSERT_BARS returned, as read_bars_arrow gives bars (emit_from: the bar itself)."""
    timestamp = pa.timestamp("us", tz="UTC")
    ts = pa.array([row[1] for row in changed], timestamp)
    columns = {"symbol": pa.array([row[0] for row in changed], pa.string()), "ts": ts}
    for i, name in enumerate(["open", "high", "low", "close", "volume", "vwap"], start=2):
        columns[name] = pa.array([row[i] for row in changed], pa.float64())
    columns["emit_from"] = ts
    return pa.table(columns)


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
