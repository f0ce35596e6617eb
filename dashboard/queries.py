"""What the read API and the dashboard read from PostgreSQL: bars (1m and rollups) with their metrics, anomalies and
their delivery, the watchlist and the pipeline's health. Every function takes an open connection and returns plain
rows (lists of dicts, JSON-ready) or an Arrow table; none writes."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pyarrow as pa

from dashboard.timeframes import MINUTES, daily_session, minutes_per_year
from spark_jobs.detector_profiles import DetectorProfiles
from sparktrends import contract

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# The longest range one request may ask for, in bars of its timeframe: a month of 1-minute bars is 43,200.
MAX_BARS = 100_000

BAR_COLUMNS = ["ts", "open", "high", "low", "close", "volume", "trades", "vwap", "minutes"]
METRIC_COLUMNS = contract.metric_columns()  # the contract's, in metrics_1m's order

# One aggregation of a bucket's minutes, shared by the intraday and the daily rollups: first open, last close,
# extremes, sums, and the volume-weighted VWAP of the minutes that have one.
_AGGREGATE = """
    (array_agg(open ORDER BY ts))[1] AS open, max(high) AS high, min(low) AS low,
    (array_agg(close ORDER BY ts DESC))[1] AS close, sum(volume) AS volume, sum(trades)::bigint AS trades,
    sum(vwap * volume) FILTER (WHERE vwap IS NOT NULL)
        / NULLIF(sum(volume) FILTER (WHERE vwap IS NOT NULL), 0) AS vwap,
    count(*) AS minutes
"""


def floor_to(ts: datetime, minutes: int) -> datetime:
    """`ts` rounded down to its bucket of `minutes` (buckets aligned to the UTC epoch)."""
    step = minutes * 60
    return EPOCH + timedelta(seconds=int((ts - EPOCH).total_seconds()) // step * step)


def bars(
    conn: psycopg.Connection,
    symbol: str,
    timeframe: str,
    start: datetime,
    end: datetime,
    profiles: DetectorProfiles,
    with_metrics: bool = True,
) -> list[dict[str, Any]]:
    """`symbol`'s bars of `timeframe` whose bucket starts in [start, end) or holds `start`, oldest first. 1-minute
    bars come with their metrics row (null columns when not computed yet); rollups carry the number of minutes they
    aggregate."""
    minutes = MINUTES[timeframe]
    if minutes == 1:
        return _minute_bars(conn, symbol, start, end, with_metrics)
    if minutes < 1440:
        start, end = floor_to(start, minutes), end
        rows = conn.execute(
            f"""SELECT date_bin(make_interval(mins => %(m)s), ts, TIMESTAMPTZ '1970-01-01 00:00:00+00') AS ts,
                       {_AGGREGATE}
                FROM bars_1m WHERE symbol = %(symbol)s AND ts >= %(start)s AND ts < %(end)s
                GROUP BY 1 ORDER BY 1 LIMIT %(limit)s""",
            {"m": minutes, "symbol": symbol, "start": start, "end": end, "limit": MAX_BARS},
        ).fetchall()
        return [dict(zip(BAR_COLUMNS, row)) for row in rows]
    return _daily_bars(conn, symbol, start, end, profiles)


def _minute_bars(
    conn: psycopg.Connection, symbol: str, start: datetime, end: datetime, with_metrics: bool
) -> list[dict[str, Any]]:
    metric_select = ", ".join(f"m.{c}" for c in METRIC_COLUMNS) if with_metrics else ""
    rows = conn.execute(
        f"""SELECT b.ts, b.open, b.high, b.low, b.close, b.volume, b.trades, b.vwap, 1 AS minutes
                   {"," if with_metrics else ""} {metric_select}
            FROM bars_1m b {"LEFT JOIN metrics_1m m USING (symbol, ts)" if with_metrics else ""}
            WHERE b.symbol = %s AND b.ts >= %s AND b.ts < %s ORDER BY b.ts LIMIT %s""",
        (symbol, start, end, MAX_BARS),
    ).fetchall()
    columns = BAR_COLUMNS + (METRIC_COLUMNS if with_metrics else [])
    return [dict(zip(columns, row)) for row in rows]


def _daily_bars(
    conn: psycopg.Connection, symbol: str, start: datetime, end: datetime, profiles: DetectorProfiles
) -> list[dict[str, Any]]:
    session = daily_session(profiles.settings_for(symbol))
    in_session = " OR ".join(f"(local_minute >= {int(a)} AND local_minute < {int(b)})" for a, b in session.windows)
    if in_session:  # a session's hours are weekdays' (spark_jobs' sessions, as the detector's mute reads them)
        in_session = f"extract(isodow FROM local_ts) < 6 AND ({in_session})"
    rows = conn.execute(
        f"""WITH local AS (
                SELECT *, (ts AT TIME ZONE %(zone)s) AS local_ts,
                       extract(hour FROM ts AT TIME ZONE %(zone)s) * 60
                           + extract(minute FROM ts AT TIME ZONE %(zone)s) AS local_minute
                FROM bars_1m
                WHERE symbol = %(symbol)s AND ts >= %(start)s - interval '1 day' AND ts < %(end)s + interval '1 day')
            SELECT (local_ts::date)::timestamp AT TIME ZONE %(zone)s AS ts, {_AGGREGATE}
            FROM local {f"WHERE {in_session}" if in_session else ""}
            GROUP BY local_ts::date
            HAVING (local_ts::date)::timestamp AT TIME ZONE %(zone)s > %(start)s - interval '1 day'
               AND (local_ts::date)::timestamp AT TIME ZONE %(zone)s < %(end)s
            ORDER BY 1""",
        {"zone": session.zone, "symbol": symbol, "start": start, "end": end},
    ).fetchall()
    return [dict(zip(BAR_COLUMNS, row)) for row in rows]


def to_arrow(rows: list[dict[str, Any]], columns: list[str]) -> pa.Table:
    """Rows as an Arrow table with `columns` (timestamps in µs UTC)."""
    arrays: dict[str, Any] = {c: [r.get(c) for r in rows] for c in columns}
    table = pa.table(arrays) if rows else pa.table({c: pa.array([], pa.float64()) for c in columns})
    if rows and "ts" in columns:
        table = table.set_column(columns.index("ts"), "ts", pa.array(arrays["ts"], pa.timestamp("us", tz="UTC")))
    return table


def anomalies(
    conn: psycopg.Connection,
    symbol: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    status: str | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Anomalies with their delivery (newest first): what fired, how strongly, and what the alerter did with it."""
    cur = conn.execute(
        """SELECT a.id, a.symbol, a.ts, a.kind, a.score, a.severity, a.details, a.status, a.attempts,
                  a.detected_at, a.delivered_at, a.last_error, a.delivery_note, a.message_id,
                  m.channel, m.sent_at, m.anomaly_count
           FROM anomalies a LEFT JOIN alert_messages m ON m.id = a.message_id
           WHERE (%(symbol)s::text IS NULL OR a.symbol = %(symbol)s)
             AND (%(start)s::timestamptz IS NULL OR a.ts >= %(start)s)
             AND (%(end)s::timestamptz IS NULL OR a.ts < %(end)s)
             AND (%(status)s::text IS NULL OR a.status = %(status)s)
           ORDER BY a.ts DESC, a.id DESC LIMIT %(limit)s""",
        {"symbol": symbol, "start": start, "end": end, "status": status, "limit": limit},
    )
    names = [d.name for d in cur.description or []]
    return [dict(zip(names, row)) for row in cur.fetchall()]


_SYMBOLS = """
    WITH RECURSIVE symbols AS (
        (SELECT symbol FROM bars_1m ORDER BY symbol LIMIT 1)
        UNION ALL
        SELECT (SELECT b.symbol FROM bars_1m b WHERE b.symbol > s.symbol ORDER BY b.symbol LIMIT 1)
        FROM symbols s WHERE s.symbol IS NOT NULL)
    SELECT symbol FROM symbols WHERE symbol IS NOT NULL
"""


def watchlist(conn: psycopg.Connection, profiles: DetectorProfiles) -> list[dict[str, Any]]:
    """Every symbol with a bar: its last bar and metrics, annualised volatility (its asset class's trading minutes a
    year), last volume against the mean of the 30 bars before it, and its alerts of the last 24 hours."""
    rows = conn.execute(
        f"""SELECT s.symbol, last.ts, last.close, last.volume, last.source, m.ret, m.vol_ewma, m.vol_yz,
                   m.anomaly_score, usual.volume AS usual_volume, alerts.recent, alerts.last_kind, alerts.last_ts,
                   alerts.last_severity
            FROM ({_SYMBOLS}) s
            CROSS JOIN LATERAL (SELECT ts, close, volume, source FROM bars_1m b
                                WHERE b.symbol = s.symbol ORDER BY ts DESC LIMIT 1) last
            LEFT JOIN metrics_1m m ON m.symbol = s.symbol AND m.ts = last.ts
            CROSS JOIN LATERAL (SELECT avg(volume) AS volume FROM (
                                    SELECT volume FROM bars_1m b WHERE b.symbol = s.symbol AND b.ts < last.ts
                                    ORDER BY ts DESC LIMIT 30) prior) usual
            CROSS JOIN LATERAL (SELECT count(*) AS recent,
                                       (array_agg(kind ORDER BY ts DESC))[1] AS last_kind, max(ts) AS last_ts,
                                       (array_agg(severity ORDER BY ts DESC))[1] AS last_severity
                                FROM anomalies a WHERE a.symbol = s.symbol AND a.ts > last.ts - interval '24 hours'
                               ) alerts
            ORDER BY s.symbol"""
    ).fetchall()
    names = [
        "symbol",
        "ts",
        "close",
        "volume",
        "source",
        "ret",
        "vol_ewma",
        "vol_yz",
        "anomaly_score",
        "usual_volume",
        "alerts_24h",
        "last_alert_kind",
        "last_alert_ts",
        "last_alert_severity",
    ]
    out = []
    for row in rows:
        item = dict(zip(names, row))
        settings = profiles.settings_for(item["symbol"])
        item["profile"] = profiles.profile_of(item["symbol"])
        item["vol_annualised"] = annualise(item["vol_ewma"], settings)
        usual = item.pop("usual_volume")
        item["volume_vs_usual"] = item["volume"] / usual if usual else None
        out.append(item)
    return out


def annualise(per_minute: float | None, settings: dict[str, Any]) -> float | None:
    """A per-minute volatility as a yearly one, over the profile's trading minutes a year."""
    if per_minute is None or not math.isfinite(per_minute):
        return None
    return per_minute * math.sqrt(minutes_per_year(settings))


def pipeline_health(conn: psycopg.Connection) -> dict[str, Any]:
    """The pipeline as the database sees it: bars and trades per source over the last 10 minutes of event time,
    each streaming query's micro-batches of the last 10 minutes (rows, batch time, Kafka lag: stream_progress), the
    newest bar and metrics row, rejects by reason code, gaps, late trades and the alert queue."""
    by_source = conn.execute(
        """SELECT source, count(*) AS bars, coalesce(sum(trades), 0)::bigint AS trades,
                  count(DISTINCT symbol) AS symbols, max(ts) AS last_bar
           FROM bars_1m WHERE ts > now() - interval '10 minutes' GROUP BY source ORDER BY source"""
    ).fetchall()
    rejects = conn.execute(
        """SELECT reason_code, count(*), max(received_at),
                  count(*) FILTER (WHERE received_at > now() - interval '10 minutes')
           FROM rejected_messages GROUP BY reason_code ORDER BY count(*) DESC"""
    ).fetchall()
    gaps = conn.execute(
        """SELECT source, symbol, gaps, missing_trades, repaired_trades, unrepairable, awaiting_rebuild, last_gap_at
           FROM gaps_by_symbol WHERE gaps > 0 ORDER BY last_gap_at DESC LIMIT 50"""
    ).fetchall()
    late = conn.execute(
        """SELECT source, symbol, trades, latest_trade_ts FROM late_trades_by_symbol
           ORDER BY last_seen DESC LIMIT 50"""
    ).fetchall()
    queue = conn.execute(
        """SELECT count(*) FILTER (WHERE status = 'pending'), min(detected_at) FILTER (WHERE status = 'pending'),
                  count(*) FILTER (WHERE status = 'delivered'), count(*) FILTER (WHERE status = 'failed'),
                  count(*) FILTER (WHERE status = 'suppressed'), count(*) FILTER (WHERE status = 'recorded'), now()
           FROM anomalies"""
    ).fetchone()
    jobs = conn.execute(
        """WITH recent AS (SELECT * FROM stream_progress WHERE at > now() - interval '10 minutes')
           SELECT last.job, last.query, last.batch_id, last.at, last.duration_ms, last.write_ms, last.offsets_behind,
                  last.source, last.watermark, agg.rows_in, agg.batches, agg.p50_ms, agg.max_ms, agg.late
           FROM (SELECT DISTINCT ON (job, query) * FROM recent ORDER BY job, query, at DESC) last
           JOIN (SELECT job, query, sum(rows_in)::bigint AS rows_in, count(*) AS batches,
                        percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50_ms,
                        max(duration_ms) AS max_ms, sum(late_dropped)::bigint AS late
                 FROM recent GROUP BY job, query) agg USING (job, query)
           ORDER BY last.job, last.query"""
    ).fetchall()
    freshness = conn.execute(
        "SELECT (SELECT max(ts) FROM bars_1m), (SELECT max(computed_at) FROM metrics_1m), now()"
    ).fetchone()
    assert queue is not None and freshness is not None
    pending, oldest, delivered, failed, suppressed, recorded, now = queue
    return {
        "sources": [
            {
                "source": s,
                "bars_10m": n,
                "trades_10m": t,
                "trades_per_s": t / 600.0,
                "symbols": k,
                "last_bar": last,
            }
            for s, n, t, k, last in by_source
        ],
        "rejects": [
            {"reason_code": code, "count": n, "last_at": last, "count_10m": recent} for code, n, last, recent in rejects
        ],
        "gaps": [
            dict(
                zip(
                    [
                        "source",
                        "symbol",
                        "gaps",
                        "missing_trades",
                        "repaired_trades",
                        "unrepairable",
                        "awaiting_rebuild",
                        "last_gap_at",
                    ],
                    row,
                )
            )
            for row in gaps
        ],
        "late_trades": [dict(zip(["source", "symbol", "trades", "latest_trade_ts"], row)) for row in late],
        "jobs": [
            {
                "job": job,
                "query": query,
                "last_batch": batch,
                "last_batch_at": at,
                "last_duration_ms": duration,
                "last_write_ms": write,
                "offsets_behind": behind,
                "source": source,
                "watermark": watermark,
                "rows_in_10m": rows,
                "rows_per_s": rows / 600.0,
                "batches_10m": batches,
                "p50_duration_ms": p50,
                "max_duration_ms": longest,
                "late_dropped_10m": dropped,
            }
            for (
                job,
                query,
                batch,
                at,
                duration,
                write,
                behind,
                source,
                watermark,
                rows,
                batches,
                p50,
                longest,
                dropped,
            ) in jobs
        ],
        "alerts": {
            "pending": pending,
            "oldest_pending_age_s": (now - oldest).total_seconds() if oldest else None,
            "delivered": delivered,
            "failed": failed,
            "suppressed": suppressed,
            "recorded": recorded,
        },
        "last_bar": freshness[0],
        "last_metrics_computed_at": freshness[1],
        "now": freshness[2],
    }


def metrics_since(
    conn: psycopg.Connection, symbol: str, computed_after: datetime | None
) -> tuple[list[dict[str, Any]], datetime | None]:
    """1-minute bars of `symbol` whose metrics row was written after `computed_after` (all of the last hour when
    None), with the newest computed_at: what a live page has not seen yet."""
    floor = computed_after or datetime.now(timezone.utc) - timedelta(hours=1)
    cur = conn.execute(
        f"""SELECT b.ts, b.open, b.high, b.low, b.close, b.volume, b.trades, b.vwap, 1 AS minutes,
                   {", ".join(f"m.{c}" for c in METRIC_COLUMNS)}, m.computed_at
            FROM metrics_1m m JOIN bars_1m b USING (symbol, ts)
            WHERE m.symbol = %s AND m.computed_at > %s ORDER BY b.ts""",
        (symbol, floor),
    )
    rows = cur.fetchall()
    columns = BAR_COLUMNS + METRIC_COLUMNS + ["computed_at"]
    out = [dict(zip(columns, row)) for row in rows]
    newest = max((r.pop("computed_at") for r in out), default=computed_after)
    return out, newest
