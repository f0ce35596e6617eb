"""`dashboard` section: the read API and the symbol page on a month of one symbol's 1-minute bars with metrics.

- a day of 1-minute bars with metrics for one symbol, as JSON and as Arrow (target < 50 ms);
- the 1-hour rollup of a month, computed on read in PostgreSQL (target < 100 ms), against its natural alternative:
  fetching the month's 1-minute bars and aggregating them in pandas;
- the symbol page's first render in headless Chromium, a day of 1-minute bars with metrics and markers (target
  < 1 s from navigation to the chart drawn);
- a new bar on an open page: from its metrics row's commit to the page receiving it (target < 1 s).

The database is the bench's own (sparktrends_bench_dashboard); metrics come from the kernels, as the jobs write
them. Numbers are p50 and p99 (or the worst of a few) of repeated requests on this machine.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

import sparktrends  # noqa: E402
from services import ProcessService  # noqa: E402
from sparktrends import contract  # noqa: E402
from tests.browser import Browser, free_port  # noqa: E402

BENCH_DB = "sparktrends_bench_dashboard"
SYMBOL = "BENCHUSDT"
DAYS = 30
REPEATS = 30
END = datetime(2026, 11, 1, tzinfo=timezone.utc)
METRIC_COLUMNS = contract.metric_columns()


def month_of_bars() -> pd.DataFrame:
    n = DAYS * 1440
    rng = np.random.default_rng(17)
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 8e-4, n)))
    open_ = np.concatenate([[30_000.0], close[:-1]])
    spread = np.abs(rng.normal(0, 4e-4, n)) * close
    return pd.DataFrame(
        {
            "ts": pd.date_range(END - timedelta(days=DAYS), periods=n, freq="1min", tz="UTC"),
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": rng.lognormal(2, 1, n),
            "trades": rng.integers(1, 200, n),
            "vwap": (open_ + close) / 2,
        }
    )


def seed(conn: Any, bars: pd.DataFrame) -> None:
    metrics = sparktrends.compute_metrics(pa.Table.from_pandas(bars[["ts", "open", "high", "low", "close", "volume"]]))
    frame = metrics.to_pandas()
    with conn.cursor().copy(
        "COPY bars_1m (symbol, ts, open, high, low, close, volume, trades, vwap, source, origin) FROM STDIN"
    ) as copy:
        for row in bars.itertuples(index=False):
            copy.write_row((SYMBOL, row.ts, row.open, row.high, row.low, row.close, row.volume, row.trades, row.vwap,
                            "synthetic", "trades"))  # fmt: skip
    with conn.cursor().copy(f"COPY metrics_1m (symbol, ts, {', '.join(METRIC_COLUMNS)}) FROM STDIN") as copy:
        for ts, row in zip(bars["ts"], frame[METRIC_COLUMNS].itertuples(index=False)):
            copy.write_row((SYMBOL, ts, *(None if isinstance(v, float) and np.isnan(v) else v for v in row)))
    # One anomaly a day, for the page's markers.
    for day in range(DAYS):
        ts = END - timedelta(days=day, minutes=17)
        conn.execute(
            "INSERT INTO anomalies (symbol, ts, kind, score, severity, status) VALUES (%s, %s, 'price_jump', 1.5, "
            "'warning', 'delivered')",
            (SYMBOL, ts),
        )
    conn.commit()


def timed(fn: Any, repeats: int = REPEATS) -> list[float]:
    fn()  # warm: connection pool, plan cache
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def row(name: str, impl: str, seconds: list[float], notes: str) -> dict[str, Any]:
    ms = sorted(1000 * s for s in seconds)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return {
        "section": "dashboard",
        "name": name,
        "impl": impl,
        "value": statistics.median(ms),
        "unit": "ms (p50)",
        "notes": f"p99 {p99:.1f} ms over {len(ms)} runs; {notes}",
    }


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read()


def run(stack_settings: Any) -> list[dict[str, Any]]:
    import psycopg

    import migrate

    owner = {**os.environ, **stack_settings.owner_env(), "POSTGRES_DB": BENCH_DB}
    migrate.recreate_database(BENCH_DB, owner)
    bars = month_of_bars()
    with psycopg.connect(migrate.conninfo(BENCH_DB), user=owner["POSTGRES_USER"],
                         password=owner["POSTGRES_PASSWORD"]) as conn:  # fmt: skip
        seed(conn, bars)
        conn.execute("ANALYZE")
        conn.commit()
    print(f"bench: dashboard: {len(bars):,} bars of {SYMBOL} with metrics stored", flush=True)

    env = {**os.environ, **stack_settings.client_env(), "POSTGRES_DB": BENCH_DB}
    port = free_port()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as logs:
        server = ProcessService("dashboard", [sys.executable, "-m", "dashboard.server", "--port", str(port)],
                                log_path=Path(logs) / "dashboard.log", cwd=REPO)  # fmt: skip
        server.start(env)
        api = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    fetch(f"{api}/healthz")
                    break
                except OSError:
                    time.sleep(0.1)
            day, month, end = (
                t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in (END - timedelta(days=1), END - timedelta(days=DAYS), END)
            )
            one_day = f"{api}/api/v1/bars?symbol={SYMBOL}&tf=1m&from={day}&to={end}"
            rows.append(
                row(
                    "a day of 1m bars with metrics (1,440 rows)",
                    "read API, JSON",
                    timed(lambda: fetch(one_day)),
                    "bars_1m joined with metrics_1m, and the day's anomalies",
                )
            )
            rows.append(
                row(
                    "a day of 1m bars with metrics (1,440 rows)",
                    "read API, Arrow IPC",
                    timed(lambda: fetch(one_day + "&format=arrow")),
                    "same rows, typed columns",
                )
            )
            hourly = f"{api}/api/v1/bars?symbol={SYMBOL}&tf=1h&from={month}&to={end}&format=arrow"
            rows.append(
                row(
                    "1h rollup of a month (720 bars from 43,200 minutes)",
                    "read API: on read in PostgreSQL",
                    timed(lambda: fetch(hourly)),
                    "date_bin + first/last by ts, Arrow",
                )
            )
            minutes = f"{api}/api/v1/bars?symbol={SYMBOL}&tf=1m&from={month}&to={end}&format=arrow&metrics=0"

            def client_side() -> None:
                table = pa.ipc.open_stream(fetch(minutes)).read_all().to_pandas()
                table.set_index("ts").resample("1h").agg(
                    {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum", "trades": "sum"}
                )

            rows.append(row("1h rollup of a month (720 bars from 43,200 minutes)",
                            "alternative: fetch the month's 1m bars, aggregate in pandas", timed(client_side, 10),
                            "43,200 rows over the wire"))  # fmt: skip
            rows += browser_rows(api, env)
        finally:
            server.stop()
    return rows


def browser_rows(api: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """First render of the symbol page, and a committed bar's way onto the open page."""
    import psycopg

    out: list[dict[str, Any]] = []
    renders = []
    with Browser() as browser:
        for _ in range(7):
            browser.open("about:blank")
            browser.wait_for("document.readyState === 'complete'")
            browser.open(f"{api}/#/symbol/{SYMBOL}/1m")
            renders.append(browser.wait_for("window.sparktrends && window.sparktrends.renderedMs") / 1000)
        cold = "navigation start to chart drawn; the first load is left out (cold cache)"
        out.append(row("symbol page first render (a day of 1m bars, metrics, markers)", "headless Chromium",
                       renders[1:], cold))  # fmt: skip
        latencies = []
        time.sleep(1.0)  # the page's event stream has subscribed
        conn = psycopg.connect(host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"], user=env["POSTGRES_USER"],
                               password=env["POSTGRES_PASSWORD"], dbname=env["POSTGRES_DB"])  # fmt: skip
        with conn:
            for i in range(10):
                ts = END + timedelta(minutes=i)
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO bars_1m (symbol, ts, open, high, low, close, volume, source, origin) "
                        "VALUES (%s, %s, 1, 1, 1, 1, 1, 'synthetic', 'trades')",
                        (SYMBOL, ts),
                    )
                    conn.execute("INSERT INTO metrics_1m (symbol, ts) VALUES (%s, %s)", (SYMBOL, ts))
                committed = time.time()
                expected = int(ts.timestamp())
                arrived = browser.wait_for(
                    f"window.sparktrends.lastPush && window.sparktrends.lastPush.bars.includes({expected}) "
                    "&& window.sparktrends.lastPush.at",
                    timeout=30,
                )
                latencies.append(arrived / 1000 - committed)
                time.sleep(0.5)
        out.append(row("new bar on an open page after its metrics row commits", "server-sent events (250 ms poll)",
                       latencies, "commit to the page's event handler, same clock"))  # fmt: skip
    return out
