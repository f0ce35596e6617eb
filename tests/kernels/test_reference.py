"""compute_metrics against the independent pandas reference, on random and adversarial series."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import FLOAT_COLUMNS, bar_frames, bars_frame, small_configs, to_table
from hypothesis import HealthCheck, given, settings
from reference import Config, reference_metrics

import sparktrends

RTOL = 1e-9
ATOL = 1e-12
THRESHOLD_MARGIN = 1e-7
# A baseline whose points differ only by rounding (e.g. two returns of the same tick computed from
# different prices) has a dispersion of ~1e-17: its z-scores are ~1e14 or, if the dispersion rounds
# to 0, null. Beyond this magnitude a z-score is rounding noise, and either answer is correct.
ILL_CONDITIONED_Z = 1e6
Z_COLUMNS = {"return_z", "robust_z", "volume_z", "anomaly_score"}


def compare(frame: pd.DataFrame, config: dict) -> None:
    actual = sparktrends.compute_metrics(to_table(frame), config)
    expected = reference_metrics(frame, Config(**config))
    assert actual.num_rows == len(frame)
    ill_conditioned = np.zeros(len(frame), dtype=bool)
    for name in Z_COLUMNS:
        got = actual.column(name).to_numpy(zero_copy_only=False).astype(float)
        want = expected[name].to_numpy(float)
        huge = (np.abs(got) > ILL_CONDITIONED_Z) | (np.abs(want) > ILL_CONDITIONED_Z)
        ill_conditioned |= huge
    ill_conditioned |= (expected["_vol_ratio"] > ILL_CONDITIONED_Z).to_numpy()
    ill_conditioned |= (expected["_jump_z"] > ILL_CONDITIONED_Z).to_numpy()
    ill_conditioned |= (expected["_volume_z_condition"] > ILL_CONDITIONED_Z).to_numpy()
    ill_conditioned |= (expected["_volume_excess_condition"] > ILL_CONDITIONED_Z).to_numpy()
    for name in FLOAT_COLUMNS:
        got = actual.column(name).to_numpy(zero_copy_only=False).astype(float)
        want = expected[name].to_numpy(float)
        if name in Z_COLUMNS:
            got, want = got[~ill_conditioned], want[~ill_conditioned]
        assert np.array_equal(np.isnan(got), np.isnan(want)), (
            f"{name}: null positions differ at rows {np.flatnonzero(np.isnan(got) != np.isnan(want))}"
            f"\n got {got}\nwant {want}"
        )
        assert not np.isinf(got).any(), name
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL, err_msg=name)

    # Kinds and severity are compared exactly, except on rows where a statistic sits within
    # rounding distance of a threshold (either side is then a correct answer).
    cfg = Config(**config)
    stats = [
        (expected["_jump_z"], cfg.price_z_warning, cfg.price_z_critical),
        (expected["_volume_stat"], cfg.volume_z_warning, cfg.volume_z_critical),
        (expected["_vol_ratio"], cfg.vol_ratio_warning, cfg.vol_ratio_critical),
    ]
    borderline = ill_conditioned.copy()
    for stat, *levels in stats:
        for level in levels:
            borderline |= (np.abs(stat - level) <= THRESHOLD_MARGIN * level).to_numpy()
    for name in ("is_anomaly", "anomaly_kinds", "severity"):
        got = actual.column(name).to_pylist()
        want = list(expected[name])
        for row in np.flatnonzero(~borderline):
            assert got[row] == want[row], f"{name} row {row}: {got[row]!r} vs {want[row]!r}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(frame=bar_frames(), config=small_configs)
def test_matches_reference_on_adversarial_series(frame: pd.DataFrame, config: dict) -> None:
    compare(frame, config)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(frame=bar_frames(max_len=250))
def test_matches_reference_with_default_config(frame: pd.DataFrame) -> None:
    compare(frame, {})


@pytest.mark.parametrize("seed", range(5))
def test_matches_reference_on_random_walks_with_injected_anomalies(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 2000
    returns = rng.standard_t(4, n) * 1e-3
    returns[rng.integers(100, n, 5)] += rng.choice([-0.03, 0.03], 5)
    returns[1200:1260] *= 5  # a volatility regime
    volumes = rng.lognormal(8, 0.5, n)
    volumes[rng.integers(100, n, 5)] *= 80
    steps = np.where(rng.random(n) < 0.003, 600, 1)  # a few overnight gaps
    frame = bars_frame(100 * np.cumprod(1 + returns), volumes, steps)
    result = sparktrends.compute_metrics(to_table(frame))
    assert sum(result.column("is_anomaly").to_pylist()) > 0
    compare(frame, {})
    compare(frame, {"window": 60, "min_periods": 20, "regime_window": 5, "price_z_warning": 4.0})
    # Every flag alerted, and a session that mutes the edges and the hours outside it.
    compare(frame, {"episode_minutes": 0, "session": "America/New_York 09:30-16:00", "vol_ratio_warning": 2.0})


def test_single_row_and_empty_series() -> None:
    compare(bars_frame(np.array([100.0])), {})
    compare(bars_frame(np.array([100.0]))[:0], {})
