"""Detector settings per symbol at run time (spark_jobs/detector_profiles.py): which profile a symbol gets, that a
bad file is refused, and that both metric paths (the driver's, the executors') run each symbol with its profile."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import sparktrends
from spark_jobs.detector_profiles import ASSET_CLASSES, DetectorProfiles, load, parse
from spark_jobs.metrics_store import compute_in_driver, symbol_computer

PROFILES = parse(
    {
        "profiles": {"crypto": {"price_z_warning": 1000.0, "price_z_critical": 2000.0}, "equity": {"window": 20}},
        "symbols": {"BTCUSDT": "equity", "*USDT": "crypto", "AAPL": "equity"},
    }
)


def test_first_matching_rule_wins_and_the_rest_get_the_default():
    assert PROFILES.profile_of("BTCUSDT") == "equity", "an exact rule listed first wins over a later pattern"
    assert PROFILES.profile_of("ETHUSDT") == "crypto"
    assert PROFILES.profile_of("MSFT") == "default"
    assert PROFILES.settings_for("ETHUSDT") == {"price_z_warning": 1000.0, "price_z_critical": 2000.0}
    assert PROFILES.settings_for("MSFT") == {}


@pytest.mark.parametrize(
    "document",
    [
        {"profiles": {"x": {"price_z_warning": 5.0, "price_z_critical": 4.0}}},
        {"profiles": {"x": {"no_such_setting": 1}}},
        {"profiles": {}, "symbols": {"AAPL": "missing"}},
        {"default": {"window": 0}},
    ],
)
def test_a_bad_file_is_refused(document):
    with pytest.raises(ValueError):
        parse(document)


def bars(symbol: str, n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    close[n - 5 :] *= 1.03  # a jump five bars from the end
    ts = np.arange(n) * 60_000_000 + 1_700_000_040_000_000
    return pa.table(
        {
            "symbol": [symbol] * n,
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "open": close,
            "high": close * 1.0004,
            "low": close * 0.9996,
            "close": close,
            "volume": rng.lognormal(3, 0.2, n),
            "vwap": close,
            "emit_from": pa.array([int(ts[0])] * n, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        }
    )


def kinds(table: pa.Table, symbol: str) -> set[str]:
    rows = table.filter(pa.compute.equal(table.column("symbol"), symbol)).to_pylist()
    return {k for r in rows if r["anomaly_kinds"] for k in r["anomaly_kinds"].split(",")}


def test_each_symbol_is_computed_with_its_profile_on_both_paths():
    table = pa.concat_tables([bars("ETHUSDT", 200, 1), bars("MSFT", 200, 2), bars("AAPL", 200, 3)])
    driver, _ = compute_in_driver(table, PROFILES)
    assert "price_jump" in kinds(driver, "MSFT"), "the default profile alerts the jump"
    assert "price_jump" not in kinds(driver, "ETHUSDT"), "the crypto profile's threshold is far above it"
    for symbol in ("ETHUSDT", "MSFT", "AAPL"):
        one = table.filter(pa.compute.equal(table.column("symbol"), symbol))
        want = sparktrends.compute_metrics(one.drop_columns(["symbol", "emit_from"]), PROFILES.settings_for(symbol))
        got = driver.filter(pa.compute.equal(driver.column("symbol"), symbol)).drop_columns(["symbol"])
        assert got.to_pylist() == pa.Table.from_batches([want]).to_pylist(), symbol
        executors = symbol_computer(PROFILES)(one)
        assert executors.to_pylist() == driver.filter(pa.compute.equal(driver.column("symbol"), symbol)).to_pylist()


def test_without_a_file_every_symbol_runs_the_package_defaults():
    table = bars("ETHUSDT", 120, 4)
    assert compute_in_driver(table, DetectorProfiles())[0].to_pylist() == compute_in_driver(table)[0].to_pylist()
    assert "price_jump" in kinds(compute_in_driver(table)[0], "ETHUSDT")


def test_the_jobs_default_profiles_follow_asset_classes(monkeypatch):
    monkeypatch.delenv("SPARKTRENDS_DETECTOR_CONFIG", raising=False)
    profiles = load()
    assert profiles == parse(ASSET_CLASSES)
    cases = {
        "BTCUSDT": "crypto",
        "BINANCE:ETHUSDT": "crypto",
        "ETH/BTC": "crypto",
        "AAPL": "us_equity",
        "SPY": "us_equity",
        "AZN.L": "lse_equity",
        "9988.HK": "hkex_equity",
        "ES": "cme_equity_index",
        "ESZ5": "cme_equity_index",
        "SYN07": "default",  # the synthetic market trades around the clock
    }
    assert {symbol: profiles.profile_of(symbol) for symbol in cases} == cases
    assert profiles.settings_for("AAPL")["session"] == "America/New_York 09:30-16:00"
    # The warm-up a job reads covers every profile's windows.
    assert profiles.warmup_bars() == sparktrends.MetricsConfig().warmup_bars


def test_a_us_equity_is_not_alerted_outside_its_session():
    """The same 5 % jump at 11:00 New York is alerted for AAPL and the synthetic symbol; at 18:00 (post-market) only
    the synthetic symbol, which trades around the clock, alerts it."""
    profiles = parse(ASSET_CLASSES)
    day = 1_608_249_600_000_000  # 2020-12-18 00:00 UTC, a Friday; New York is UTC-5
    for start_hour_utc, aapl_alerted in ((15, True), (22, False)):  # the jump lands at 11:00 / 18:00 New York
        closes = np.full(200, 100.0) + 0.05 * np.sin(np.arange(200))
        closes[100:] *= 1.05
        ts = day + (start_hour_utc * 60 - 100) * 60_000_000 + np.arange(200) * 60_000_000
        frame = pa.table({
            "ts": pa.array(ts, pa.timestamp("us", tz="UTC")), "open": closes, "high": closes * 1.0005,
            "low": closes * 0.9995, "close": closes, "volume": np.full(200, 10.0),
        })  # fmt: skip
        for symbol, expected in (("AAPL", aapl_alerted), ("SYN07", True)):
            metrics = sparktrends.compute_metrics(frame, profiles.settings_for(symbol))
            alerted = metrics.column("is_anomaly").to_pylist()
            assert alerted[101] is expected, (symbol, start_hour_utc)
