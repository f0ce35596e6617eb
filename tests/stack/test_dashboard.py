"""The read API on the real database: rollups equal aggregating their minutes (and follow a repaired minute at once),
equity daily bars are the regular session of the exchange's local date, and JSON, Arrow and Parquet carry the same
bars. The pages themselves are tested in a real browser by the end-to-end pipeline (tests/e2e)."""

from __future__ import annotations

import io
import json
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dashboard import queries
from dashboard.timeframes import MINUTES
from services import ProcessService
from spark_jobs import detector_profiles
from tests.browser import free_port

PROFILES = detector_profiles.parse(detector_profiles.ASSET_CLASSES)
CRYPTO, EQUITY = "DASHBTCUSDT", "DASHX"  # a 24-hour symbol and a US equity (plain ticker) of the test's own
START = datetime(2026, 3, 6, 12, 0, tzinfo=timezone.utc)  # a Friday; New York is on EST (UTC-5) until 8 March


def minute_bars(symbol: str, start: datetime, minutes: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, minutes)))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0, 5e-4, minutes)) * close
    volume = rng.lognormal(3, 1, minutes)
    vwap = np.where(rng.random(minutes) < 0.1, np.nan, (open_ + close) / 2)  # some minutes have no VWAP
    trades = rng.integers(1, 50, minutes)
    return pd.DataFrame(
        {
            "symbol": symbol,
            "ts": [start + timedelta(minutes=i) for i in range(minutes)],
            "open": open_,
            "high": np.maximum(open_, close) + spread,
            "low": np.minimum(open_, close) - spread,
            "close": close,
            "volume": volume,
            "trades": trades,
            "vwap": vwap,
            "source": "synthetic",
        }
    )


@pytest.fixture
def stored(pg) -> Iterator[pd.DataFrame]:
    # Two days and a bit: 12:00 UTC Friday to Sunday 13:00, crossing New York's regular session twice (14:30-21:00
    # UTC in winter) with pre- and post-market minutes around it, and the weekend for the crypto symbol.
    frames = [minute_bars(CRYPTO, START, 2 * 1440 + 60, 1), minute_bars(EQUITY, START, 2 * 1440 + 60, 2)]
    bars = pd.concat(frames, ignore_index=True)
    pg.execute("DELETE FROM bars_1m WHERE symbol = ANY(%s)", ([CRYPTO, EQUITY],))
    with pg.cursor().copy(
        "COPY bars_1m (symbol, ts, open, high, low, close, volume, trades, vwap, source, origin) FROM STDIN"
    ) as copy:
        for row in bars.itertuples(index=False):
            vwap = None if np.isnan(row.vwap) else row.vwap
            copy.write_row((row.symbol, row.ts, row.open, row.high, row.low, row.close, row.volume, row.trades, vwap,
                            row.source, "trades"))  # fmt: skip
    yield bars
    pg.execute("DELETE FROM bars_1m WHERE symbol = ANY(%s)", ([CRYPTO, EQUITY],))


def aggregate(minutes: pd.DataFrame, key: pd.Series) -> pd.DataFrame:
    """The reference rollup: each group's first open, extremes, last close, sums and volume-weighted VWAP."""
    weighted = minutes["vwap"] * minutes["volume"]
    vwap_volume = minutes["volume"].where(minutes["vwap"].notna())
    g = minutes.assign(key=key.to_numpy(), pv=weighted, vv=vwap_volume).sort_values("ts").groupby("key")
    out = pd.DataFrame(
        {
            "open": g["open"].first(),
            "high": g["high"].max(),
            "low": g["low"].min(),
            "close": g["close"].last(),
            "volume": g["volume"].sum(),
            "trades": g["trades"].sum(),
            "vwap": g["pv"].sum(min_count=1) / g["vv"].sum(min_count=1),
            "minutes": g.size(),
        }
    )
    return out


def check(got: list[dict], want: pd.DataFrame) -> None:
    assert [row["ts"] for row in got] == list(want.index), "bucket starts"
    for row, (_, expected) in zip(got, want.iterrows()):
        for column in ("open", "high", "low", "close", "volume", "vwap"):
            assert row[column] == pytest.approx(expected[column], rel=1e-12, nan_ok=True), (row["ts"], column)
        assert row["trades"] == expected["trades"] and row["minutes"] == expected["minutes"], row["ts"]


@pytest.mark.parametrize("timeframe", ["5m", "15m", "1h"])
def test_intraday_rollups_equal_aggregating_their_minutes(pg, stored, timeframe):
    step = pd.Timedelta(minutes=MINUTES[timeframe])
    end = START + timedelta(days=2)
    for symbol in (CRYPTO, EQUITY):
        minutes = stored[(stored.symbol == symbol) & (stored.ts < end)]
        want = aggregate(minutes, minutes["ts"].dt.floor(step))
        check(queries.bars(pg, symbol, timeframe, START, end, PROFILES), want)


def test_daily_bars_follow_the_asset_class(pg, stored):
    end = START + timedelta(days=3)
    crypto = stored[stored.symbol == CRYPTO]
    check(queries.bars(pg, CRYPTO, "1d", START, end, PROFILES), aggregate(crypto, crypto["ts"].dt.floor("1D")))
    # The equity's daily bar is its regular session (09:30-16:00 New York, weekdays) of each local date: Friday
    # only, though the test wrote minutes for Saturday and Sunday too.
    equity = stored[stored.symbol == EQUITY]
    local = equity["ts"].dt.tz_convert("America/New_York")
    minute = local.dt.hour * 60 + local.dt.minute
    regular = equity[(minute >= 9 * 60 + 30) & (minute < 16 * 60) & (local.dt.weekday < 5)]
    day = regular["ts"].dt.tz_convert("America/New_York").dt.normalize().dt.tz_convert("UTC")
    want = aggregate(regular, day)
    got = queries.bars(pg, EQUITY, "1d", START, end, PROFILES)
    check(got, want)
    assert len(got) == 1
    assert got[0]["ts"] == datetime(2026, 3, 6, 5, 0, tzinfo=timezone.utc)  # Friday, midnight in New York
    assert got[0]["minutes"] == 390


def test_a_repaired_minute_changes_its_rollups_at_once(pg, stored):
    repaired = START + timedelta(minutes=37)
    before = queries.bars(pg, CRYPTO, "15m", START, START + timedelta(hours=1), PROFILES)
    pg.execute("UPDATE bars_1m SET high = high * 1.5, volume = volume + 1000 WHERE symbol = %s AND ts = %s",
               (CRYPTO, repaired))  # fmt: skip
    after = queries.bars(pg, CRYPTO, "15m", START, START + timedelta(hours=1), PROFILES)
    changed = [a["ts"] for a, b in zip(after, before) if a != b]
    assert changed == [START + timedelta(minutes=30)]
    assert after[2]["volume"] == pytest.approx(before[2]["volume"] + 1000)


@pytest.fixture
def api(stack_env, test_db, tmp_path) -> Iterator[str]:
    port = free_port()
    server = ProcessService(
        "dashboard",
        [sys.executable, "-m", "dashboard.server", "--port", str(port)],
        log_path=tmp_path / "dashboard.log",
        cwd=Path(__file__).resolve().parents[2],
    )
    server.start({**stack_env, "POSTGRES_DB": test_db})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=1)
                break
            except OSError:
                assert server.alive(), (tmp_path / "dashboard.log").read_text()
                time.sleep(0.1)
        yield url
    finally:
        server.stop()


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def test_the_api_serves_the_same_bars_as_json_arrow_and_parquet(stored, api):
    query = f"{api}/api/v1/bars?symbol={CRYPTO}&tf=1h&from=2026-03-06T12:00:00Z&to=2026-03-07T12:00:00Z"
    as_json = json.loads(get(query))
    as_arrow = pa.ipc.open_stream(io.BytesIO(get(query + "&format=arrow"))).read_all()
    as_parquet = pq.read_table(io.BytesIO(get(query + "&format=parquet")))
    assert len(as_json["bars"]) == as_arrow.num_rows == as_parquet.num_rows == 24
    assert as_arrow.equals(as_parquet)
    assert as_arrow.column("close").to_pylist() == [b["close"] for b in as_json["bars"]]
    assert as_arrow.column("ts").type == pa.timestamp("us", tz="UTC")
    assert as_json["profile"] == "crypto"
    watchlist = {row["symbol"]: row for row in json.loads(get(f"{api}/api/v1/symbols"))["symbols"]}
    assert watchlist[EQUITY]["profile"] == "us_equity"
    assert watchlist[CRYPTO]["close"] == pytest.approx(stored[stored.symbol == CRYPTO]["close"].iloc[-1])
    assert b"sparktrends_api_requests_total" in get(f"{api}/metrics")
    for bad in ("tf=2m", "from=2026-03-06T12:00:00 00:00"):  # an unencoded '+' arrives as a space
        with pytest.raises(urllib.error.HTTPError) as refused:
            get(f"{api}/api/v1/bars?symbol={CRYPTO}&{bad.replace(' ', '%20')}")
        assert refused.value.code == 400, bad


def test_the_api_never_logs_the_database_password(stored, api, stack_env, tmp_path):
    get(f"{api}/api/v1/symbols")
    log = (tmp_path / "dashboard.log").read_text()
    assert "listening on" in log
    assert stack_env["POSTGRES_PASSWORD"] not in log
