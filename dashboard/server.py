"""The read API and the dashboard, one HTTP server on loopback.

    python -m dashboard.server --port 8050 [--host 127.0.0.1]

Read API (docs/api.md has examples):
    GET /api/v1/symbols                                      the watchlist
    GET /api/v1/bars?symbol=S&tf=1m|5m|15m|1h|1d[&from=ISO][&to=ISO][&format=json|arrow|parquet]
    GET /api/v1/anomalies[?symbol=S][&from=ISO][&to=ISO][&status=pending|delivered|failed|suppressed]
    GET /api/v1/pipeline                                     rates, rejects, gaps, late trades, the alert queue
    GET /api/v1/stream?symbol=S                              server-sent events: bars whose metrics were just written
    GET /metrics                                             Prometheus text format
Pages: / (watchlist), #/symbol/S, #/alerts, #/pipeline; the charting library is served from the repo's own
node_modules (dashboard/package.json), never a CDN.

PostgreSQL is read with the components' role and environment (POSTGRES_*), through a small pool of autocommit
connections. One line per start and stop, and a rate summary of requests every minute.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from dashboard import queries
from dashboard.timeframes import MINUTES, TIMEFRAMES, minutes_per_year
from spark_jobs import detector_profiles
from spark_jobs.database import pg_connect

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
VENDOR = {
    "lightweight-charts.js": HERE
    / "node_modules"
    / "lightweight-charts"
    / "dist"
    / "lightweight-charts.standalone.production.js"
}
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
# Default range of a bars request without `from`: about a screenful of each timeframe.
DEFAULT_SPAN = {"1m": timedelta(days=1), "5m": timedelta(days=5), "15m": timedelta(days=15), "1h": timedelta(days=60)}
DEFAULT_SPAN["1d"] = timedelta(days=730)
# How often a live page's stream looks for new metrics rows (the dashboard's target: a new bar on screen < 1 s
# after its metrics row commits).
STREAM_POLL_S = 0.25
STREAM_KEEPALIVE_S = 15.0
RATE_SUMMARY_S = 60.0


class Pool:
    """A few autocommit PostgreSQL connections reused across requests; a broken one is replaced."""

    def __init__(self, size: int = 4) -> None:
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with self._slots:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                conn = pg_connect()
                conn.autocommit = True
            try:
                yield conn
            except (psycopg.OperationalError, psycopg.InterfaceError):
                conn.close()
                raise
            else:
                self._idle.put(conn)


class Stats:
    """Requests by route and status, and their total time: the API's own Prometheus metrics."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.seconds: dict[str, float] = {}

    def record(self, route: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[(route, status)] += 1
            self.seconds[route] = self.seconds.get(route, 0.0) + seconds

    def total(self) -> int:
        with self.lock:
            return sum(self.requests.values())


class BadRequest(ValueError):
    pass


def jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):  # PostgreSQL sums of bigint columns (the gap and late-trade views)
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _scalar(value: Any) -> Any:
    converted = jsonable(value)
    if converted is value:
        raise TypeError(f"{type(value).__name__} is not JSON")
    return converted


def to_json(value: Any) -> bytes:
    """`value` as JSON: the encoder's fast path, and the converting walk only when a non-finite float needs null."""
    try:
        return json.dumps(value, default=_scalar, allow_nan=False).encode()
    except ValueError:
        return json.dumps(jsonable(value)).encode()


def with_time(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row with `time`, its bucket start in epoch seconds (what the charts plot)."""
    for row in rows:
        row["time"] = int(row["ts"].timestamp())
    return rows


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time (UTC when it names no zone); a malformed one is the client's error (400)."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"not an ISO 8601 time: {text!r} (a '+' in a query string must be sent as %2B)") from None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def label(value: str) -> str:
    """A Prometheus label value, escaped (source names come from the data)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus(stats: Stats, health: dict[str, Any]) -> str:
    """The API's request counters and the database-side gauges of the pipeline, in Prometheus text format."""
    lines = [
        "# HELP sparktrends_api_requests_total Read API requests by route and HTTP status.",
        "# TYPE sparktrends_api_requests_total counter",
    ]
    with stats.lock:
        requests = dict(stats.requests)
        seconds = dict(stats.seconds)
    for (route, code), n in sorted(requests.items()):
        lines.append(f'sparktrends_api_requests_total{{route="{label(route)}",status="{code}"}} {n}')
    lines += [
        "# HELP sparktrends_api_request_seconds_total Time spent answering read API requests, by route.",
        "# TYPE sparktrends_api_request_seconds_total counter",
    ]
    for route, s in sorted(seconds.items()):
        lines.append(f'sparktrends_api_request_seconds_total{{route="{label(route)}"}} {s:.6f}')
    alerts = health["alerts"]
    lines += [
        "# HELP sparktrends_alerts_pending Anomalies in the outbox not yet delivered.",
        "# TYPE sparktrends_alerts_pending gauge",
        f"sparktrends_alerts_pending {alerts['pending']}",
        "# HELP sparktrends_alerts_oldest_pending_age_seconds Age of the oldest pending anomaly (0 when none).",
        "# TYPE sparktrends_alerts_oldest_pending_age_seconds gauge",
        f"sparktrends_alerts_oldest_pending_age_seconds {alerts['oldest_pending_age_s'] or 0:.3f}",
        "# HELP sparktrends_alerts_total Anomalies by outbox status.",
        "# TYPE sparktrends_alerts_total gauge",
    ]
    for status in ("delivered", "failed", "suppressed", "recorded"):
        lines.append(f'sparktrends_alerts_total{{status="{status}"}} {alerts[status]}')
    lines += [
        "# HELP sparktrends_rejects_total Messages refused by the jobs, by contract reason code.",
        "# TYPE sparktrends_rejects_total counter",
    ]
    for row in health["rejects"]:
        lines.append(f'sparktrends_rejects_total{{reason_code="{label(row["reason_code"])}"}} {row["count"]}')
    per_source = [
        ("sparktrends_bars_last_10m", "1-minute bars stored for the last 10 minutes of event time, by source.",
         lambda row: row["bars_10m"]),
        ("sparktrends_trades_per_second", "Trades per second in bars of the last 10 minutes, by source.",
         lambda row: row["trades_per_s"]),
    ]  # fmt: skip
    for name, help_text, value in per_source:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for row in health["sources"]:
            lines.append(f'{name}{{source="{label(row["source"])}"}} {value(row):g}')
    per_query = [
        ("sparktrends_stream_rows_per_second", "Rows a streaming query read per second over the last 10 minutes.",
         lambda job: job["rows_per_s"]),
        ("sparktrends_stream_batch_seconds", "The last micro-batch's duration, by job and query.",
         lambda job: (job["last_duration_ms"] or 0) / 1000),
        ("sparktrends_stream_offsets_behind", "Offsets the query's Kafka source is behind its topic's end.",
         lambda job: job["offsets_behind"]),
    ]  # fmt: skip
    for name, help_text, value in per_query:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for job in health["jobs"]:
            if value(job) is not None:
                labels = f'job="{label(job["job"])}",query="{label(job["query"])}"'
                lines.append(f"{name}{{{labels}}} {value(job):g}")
    last_bar = health["last_bar"]
    lines += [
        "# HELP sparktrends_last_bar_timestamp_seconds Start of the newest 1-minute bar in PostgreSQL.",
        "# TYPE sparktrends_last_bar_timestamp_seconds gauge",
        f"sparktrends_last_bar_timestamp_seconds {last_bar.timestamp() if last_bar else 0:.0f}",
    ]
    return "\n".join(lines) + "\n"


def make_handler(pool: Pool, stats: Stats, profiles: detector_profiles.DetectorProfiles) -> type:
    class Handler(BaseHTTPRequestHandler):
        server_version = "sparktrends-dashboard"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per request would drown the log; the rate summary counts them

        def do_GET(self) -> None:
            started = time.perf_counter()
            url = urlparse(self.path)
            params = {k: v[-1] for k, v in parse_qs(url.query).items()}
            route = url.path
            status = HTTPStatus.OK
            try:
                status = self.route(route, params)
            except BadRequest as err:
                status = HTTPStatus.BAD_REQUEST
                self.send_json({"error": str(err)}, status)
            except (psycopg.OperationalError, psycopg.InterfaceError) as err:
                status = HTTPStatus.SERVICE_UNAVAILABLE
                self.send_json({"error": f"database unavailable: {type(err).__name__}"}, status)
            except (BrokenPipeError, ConnectionResetError):
                pass
            except Exception as err:  # a bug must cost one request, not the connection: say so once, answer 500
                status = HTTPStatus.INTERNAL_SERVER_ERROR
                print(f"dashboard: {route} failed: {type(err).__name__}: {err}", flush=True)
                self.send_json({"error": f"{type(err).__name__}"}, status)
            label = route if route.startswith(("/api/", "/metrics")) else "/static"
            stats.record(label, int(status), time.perf_counter() - started)

        def route(self, path: str, params: dict[str, str]) -> HTTPStatus:
            if path in ("/", "/index.html"):
                return self.send_file(STATIC / "index.html")
            if path.startswith("/static/"):
                return self.send_file(STATIC / path.removeprefix("/static/"))
            if path.startswith("/vendor/") and path.removeprefix("/vendor/") in VENDOR:
                return self.send_file(VENDOR[path.removeprefix("/vendor/")])
            if path == "/healthz":
                return self.send_json({"ok": True})
            if path == "/metrics":
                with pool.connection() as conn:
                    health = queries.pipeline_health(conn)
                body = prometheus(stats, health).encode()
                return self.send_bytes(body, "text/plain; version=0.0.4; charset=utf-8")
            if path == "/api/v1/symbols":
                with pool.connection() as conn:
                    return self.send_json({"symbols": queries.watchlist(conn, profiles)})
            if path == "/api/v1/bars":
                return self.bars(params)
            if path == "/api/v1/anomalies":
                with pool.connection() as conn:
                    rows = queries.anomalies(
                        conn,
                        params.get("symbol"),
                        parse_time(params.get("from")),
                        parse_time(params.get("to")),
                        params.get("status"),
                        int(params.get("limit", "500")),
                    )
                return self.send_json({"anomalies": with_time(rows)})
            if path == "/api/v1/pipeline":
                with pool.connection() as conn:
                    return self.send_json(queries.pipeline_health(conn))
            if path == "/api/v1/stream":
                return self.stream(params)
            self.send_json({"error": f"no route {path}"}, HTTPStatus.NOT_FOUND)
            return HTTPStatus.NOT_FOUND

        def bars(self, params: dict[str, str]) -> HTTPStatus:
            symbol = params.get("symbol")
            timeframe = params.get("tf", "1m")
            fmt = params.get("format", "json")
            if not symbol:
                raise BadRequest("symbol is required")
            if timeframe not in MINUTES:
                raise BadRequest(f"tf must be one of {', '.join(TIMEFRAMES)}")
            if fmt not in ("json", "arrow", "parquet"):
                raise BadRequest("format must be json, arrow or parquet")
            with pool.connection() as conn:
                end = parse_time(params.get("to"))
                if end is None:
                    last = conn.execute("SELECT max(ts) FROM bars_1m WHERE symbol = %s", (symbol,)).fetchone()
                    end = (last[0] if last and last[0] else datetime.now(timezone.utc)) + timedelta(minutes=1)
                start = parse_time(params.get("from")) or end - DEFAULT_SPAN[timeframe]
                rows = queries.bars(conn, symbol, timeframe, start, end, profiles, params.get("metrics") != "0")
                marks = queries.anomalies(conn, symbol, start, end) if fmt == "json" else []
            if fmt == "json":
                settings = profiles.settings_for(symbol)
                return self.send_json(
                    {
                        "symbol": symbol,
                        "tf": timeframe,
                        "from": start,
                        "to": end,
                        "profile": profiles.profile_of(symbol),
                        "annualise": math.sqrt(minutes_per_year(settings)),
                        "bars": with_time(rows),
                        "anomalies": with_time(marks),
                    }
                )
            columns = list(rows[0]) if rows else queries.BAR_COLUMNS
            table = queries.to_arrow(rows, columns)
            sink = io.BytesIO()
            if fmt == "arrow":
                with pa.ipc.new_stream(sink, table.schema) as writer:
                    writer.write_table(table)
                return self.send_bytes(sink.getvalue(), "application/vnd.apache.arrow.stream")
            pq.write_table(table, sink)
            return self.send_bytes(sink.getvalue(), "application/vnd.apache.parquet")

        def stream(self, params: dict[str, str]) -> HTTPStatus:
            """Server-sent events: every bar of `symbol` whose metrics row is written from now on, as it commits."""
            symbol = params.get("symbol")
            if not symbol:
                raise BadRequest("symbol is required")
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            with pool.connection() as conn:
                newest = conn.execute("SELECT max(computed_at) FROM metrics_1m WHERE symbol = %s", (symbol,)).fetchone()
            seen = newest[0] if newest else None
            last_sent = time.monotonic()
            while True:
                with pool.connection() as conn:
                    rows, seen = queries.metrics_since(conn, symbol, seen)
                if rows:
                    payload = to_json({"bars": with_time(rows)})
                    self.wfile.write(b"event: bars\ndata: " + payload + b"\n\n")
                    self.wfile.flush()
                    last_sent = time.monotonic()
                elif time.monotonic() - last_sent > STREAM_KEEPALIVE_S:
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
                    last_sent = time.monotonic()
                time.sleep(STREAM_POLL_S)

        def send_json(self, value: Any, status: HTTPStatus = HTTPStatus.OK) -> HTTPStatus:
            return self.send_bytes(to_json(value), "application/json", status)

        def send_file(self, path: Path) -> HTTPStatus:
            resolved = path.resolve()
            allowed = resolved.is_relative_to(STATIC) or resolved in VENDOR.values()
            if not allowed or not resolved.is_file():
                self.send_json({"error": "not found"}, HTTPStatus.NOT_FOUND)
                return HTTPStatus.NOT_FOUND
            content_type = CONTENT_TYPES.get(resolved.suffix, "application/octet-stream")
            return self.send_bytes(resolved.read_bytes(), content_type)

        def send_bytes(self, body: bytes, content_type: str, status: HTTPStatus = HTTPStatus.OK) -> HTTPStatus:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)
            return status

    return Handler


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback unless asked)")
    detector_profiles.add_argument(parser)
    args = parser.parse_args()
    if not VENDOR["lightweight-charts.js"].is_file():
        print("dashboard: dashboard/node_modules is missing: run `make setup` (npm ci)", file=sys.stderr)
        return 2
    profiles = detector_profiles.load(args.detector_config)
    stats = Stats()
    server = ThreadingHTTPServer((args.host, args.port), make_handler(Pool(), stats, profiles))
    server.daemon_threads = True
    print(f"dashboard: listening on http://{args.host}:{args.port}/", flush=True)

    def summarise() -> None:
        previous = 0
        while True:
            time.sleep(RATE_SUMMARY_S)
            total = stats.total()
            print(f"dashboard: {total - previous} requests in the last {RATE_SUMMARY_S:.0f}s", flush=True)
            previous = total

    threading.Thread(target=summarise, daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        print("dashboard: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
