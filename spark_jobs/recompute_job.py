"""Batch recompute / backfill: metrics for a symbol set and time range from bars_1m, through the very code
path the streaming jobs use (spark_jobs.metrics_store.recompute).

    scripts/submit.sh recompute_job --symbols AAPL,MSFT --from 2026-01-01T00:00:00Z [--to ...]
    scripts/submit.sh recompute_job            (every symbol, its whole history)
"""

from __future__ import annotations

import argparse
import datetime as dt

from spark_jobs import detector_profiles
from spark_jobs.common import spark_session
from spark_jobs.metrics_store import DEFAULT_WARMUP_BARS, recompute
from spark_jobs.store import pg_connect


def parse_time(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--symbols", help="comma-separated; default: every symbol in bars_1m")
    parser.add_argument("--from", dest="start", type=parse_time, help="first bar to recompute (default: first)")
    parser.add_argument("--to", dest="end", type=parse_time, help="last bar to recompute (default: last)")
    parser.add_argument("--warmup-bars", type=int, default=DEFAULT_WARMUP_BARS)
    detector_profiles.add_argument(parser)
    args = parser.parse_args()

    with pg_connect() as conn:
        wanted = args.symbols.split(",") if args.symbols else None
        rows = conn.execute(
            "SELECT symbol, min(ts) FROM bars_1m WHERE (%(s)s::text[] IS NULL OR symbol = ANY(%(s)s)) "
            "AND (%(from)s::timestamptz IS NULL OR ts >= %(from)s) GROUP BY symbol",
            {"s": wanted, "from": args.start},
        ).fetchall()
    scope = {symbol: earliest for symbol, earliest in rows}
    spark = spark_session("sparktrends-recompute")
    result = recompute(
        spark,
        scope,
        args.warmup_bars,
        until=args.end,
        engine="cluster",
        profiles=detector_profiles.load(args.detector_config),
    )
    print(
        f"recompute: {result.symbols} symbols, {result.metric_rows} metric rows, "
        f"{result.new_anomalies} new anomalies in {result.seconds:.1f}s on the {result.ran_on}",
        flush=True,
    )
    spark.stop()


if __name__ == "__main__":
    main()
