"""Independent NumPy/pandas reference of every metric, written from DESIGN §4 and the rules in the
Rust core's documentation (nulls, segments, thresholds). Deliberately naive: pandas rolling windows
per segment, Python loops where §4 is recursive. Used only to check the Rust kernels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

LN2 = np.log(2.0)
MAD_SCALE = 1.4826


@dataclass(frozen=True)
class Config:
    window: int = 30
    min_periods: int = 10
    lam: float = 0.94
    max_gap_minutes: float = 15.0
    regime_window: int = 10
    price_z_warning: float = 5.25
    price_z_critical: float = 10.0
    volume_z_warning: float = 4.0
    volume_z_critical: float = 6.0
    vol_ratio_warning: float = 3.0
    vol_ratio_critical: float = 4.5

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _valid_price(x: pd.Series) -> pd.Series:
    return x.where(np.isfinite(x) & (x > 0))


def _valid_volume(x: pd.Series) -> pd.Series:
    return x.where(np.isfinite(x) & (x >= 0))


def _ewma_vol(log_ret: pd.Series, m: int, lam: float) -> pd.Series:
    out = np.full(len(log_ret), np.nan)
    seen: list[float] = []
    var = np.nan
    for i, x in enumerate(log_ret.to_numpy()):
        if np.isnan(x):
            continue
        seen.append(x * x)
        if len(seen) == m:
            var = float(np.mean(seen))
        elif len(seen) > m:
            var = lam * var + (1 - lam) * x * x
        if len(seen) >= m:
            out[i] = np.sqrt(var)
    return pd.Series(out, index=log_ret.index)


def _two_pass_std(w: np.ndarray) -> float:
    w = w[~np.isnan(w)]
    if len(w) < 2:
        return np.nan
    if (w == w[0]).all():
        return 0.0  # a flat window has exactly zero dispersion
    return float(np.sqrt(np.sum((w - np.mean(w)) ** 2) / (len(w) - 1)))


def _rolling_std(x: pd.Series, n: int, min_periods: int) -> pd.Series:
    """Sample std over each window, two-pass. pandas' own online ``rolling().std()`` keeps residue
    of values that left the window (e.g. ~1e-155 in a flat window after a change), which the
    z-scores would turn into garbage."""
    return x.rolling(n, min_periods=min_periods).apply(_two_pass_std, raw=True)


def _rolling_mean(x: pd.Series, n: int, min_periods: int) -> pd.Series:
    return x.rolling(n, min_periods=min_periods).apply(lambda w: np.mean(w[~np.isnan(w)]), raw=True)


def _rolling_sum(x: pd.Series, n: int, min_periods: int) -> pd.Series:
    """Each window summed afresh. pandas' online ``rolling().sum()`` keeps residue of values that left
    the window: after a volume spike, a window of zero volumes sums to ~1e-10 instead of 0, which turns
    a null VWAP into a number."""
    return x.rolling(n, min_periods=min_periods).apply(lambda w: np.sum(w[~np.isnan(w)]), raw=True)


def _positive(den: pd.Series) -> pd.Series:
    return den.where(den > 0)


def _segment_metrics(g: pd.DataFrame, cfg: Config) -> pd.DataFrame:
    n, m, s = cfg.window, cfg.min_periods, cfg.regime_window
    o, h, lo, c = (_valid_price(g[k]) for k in ("open", "high", "low", "close"))
    v = _valid_volume(g["volume"])
    prev_c = c.shift(1)

    def roll(x: pd.Series, min_periods: int = m) -> pd.core.window.Rolling:
        return x.rolling(n, min_periods=min_periods)

    out = pd.DataFrame(index=g.index)
    out["ret"] = c / prev_c - 1
    log_ret = np.log(c / prev_c)
    out["log_ret"] = log_ret
    out["vol_cc"] = _rolling_std(log_ret, n, m)
    out["vol_ewma"] = _ewma_vol(log_ret, m, cfg.lam)

    hl = np.log(h / lo)
    co = np.log(c / o)
    rs = np.log(h / c) * np.log(h / o) + np.log(lo / c) * np.log(lo / o)
    with np.errstate(invalid="ignore"):
        out["vol_parkinson"] = np.sqrt(_rolling_mean(hl**2, n, m) / (4 * LN2))
        out["vol_gk"] = np.sqrt(_rolling_mean(0.5 * hl**2 - (2 * LN2 - 1) * co**2, n, m))
        out["vol_rs"] = np.sqrt(_rolling_mean(rs, n, m))

    open_gap = np.log(o / prev_c)
    usable = open_gap.notna() & co.notna() & rs.notna()
    w = usable.astype(float).rolling(n, min_periods=1).sum()
    k = 0.34 / (1.34 + (w + 1) / (w - 1))
    var_yz = (
        _rolling_std(open_gap.where(usable), n, min(2, n)) ** 2
        + k * _rolling_std(co.where(usable), n, min(2, n)) ** 2
        + (1 - k) * _rolling_mean(rs.where(usable), n, 1)
    )
    with np.errstate(invalid="ignore"):
        out["vol_yz"] = np.sqrt(var_yz.where(w >= max(m, 2)))

    bar_vwap = _valid_price(g["vwap"]) if "vwap" in g else pd.Series(np.nan, index=g.index)
    typical = bar_vwap.fillna((h + lo + c) / 3)
    pv = typical * v
    vv = v.where(pv.notna())
    out["vwap_roll"] = _rolling_sum(pv, n, m) / _positive(_rolling_sum(vv, n, m))
    out["vwap_dev"] = (c - out["vwap_roll"]) / _positive(out["vwap_roll"])

    log_volume = np.log1p(v)
    prior_mean = _rolling_mean(log_volume, n, m).shift(1)
    prior_sd = _rolling_std(log_volume, n, m).shift(1)
    out["volume_z"] = (log_volume - prior_mean) / _positive(prior_sd)
    # How many ulps of the data the dispersion spans: near-equal volumes (13.69 and 13.69 + 1e-10) have an sd
    # made of the data's rounding, and any two correct computations of their z-score differ at ~1e-5.
    out["_volume_z_condition"] = prior_mean.abs() / _positive(prior_sd)
    out["return_z"] = log_ret / _positive(out["vol_cc"].shift(1))
    out["_jump_z"] = log_ret.abs() / _positive(out["vol_yz"].shift(1))

    prior_returns = roll(log_ret.shift(1))
    median = prior_returns.median()
    mad = prior_returns.apply(lambda x: np.nanmedian(np.abs(x - np.nanmedian(x))), raw=True)
    out["robust_z"] = (log_ret - median) / _positive(MAD_SCALE * mad)

    short_sigma = MAD_SCALE * log_ret.abs().rolling(s, min_periods=s).median()
    out["_vol_ratio"] = short_sigma / _positive(out["vol_cc"].shift(s))
    return out


def _verdict(row: pd.Series, cfg: Config) -> tuple[float, str | None, str | None]:
    detectors = [
        ("price_jump", row["_jump_z"], cfg.price_z_warning, cfg.price_z_critical),
        ("volume_spike", row["volume_z"], cfg.volume_z_warning, cfg.volume_z_critical),
        ("vol_regime_shift", row["_vol_ratio"], cfg.vol_ratio_warning, cfg.vol_ratio_critical),
    ]
    defined = [(name, stat, warn, crit) for name, stat, warn, crit in detectors if not np.isnan(stat)]
    score = max((stat / warn for _, stat, warn, _ in defined), default=np.nan)
    fired = [(name, stat >= crit) for name, stat, warn, crit in defined if stat >= warn]
    kinds = ",".join(name for name, _ in fired) or None
    severity = None if not fired else ("critical" if any(c for _, c in fired) else "warning")
    return score, kinds, severity


def reference_metrics(bars: pd.DataFrame, cfg: Config = Config()) -> pd.DataFrame:
    """Metrics of one symbol's bars (``ts`` in µs, OHLCV, optional vwap), one row per bar."""
    bars = bars.reset_index(drop=True)
    gap_us = cfg.max_gap_minutes * 60_000_000
    segment = (bars["ts"].diff() > gap_us).cumsum()
    parts = [_segment_metrics(g, cfg) for _, g in bars.groupby(segment, sort=True)]
    out = pd.concat(parts) if parts else _segment_metrics(bars, cfg)
    out = out.replace([np.inf, -np.inf], np.nan)
    verdicts = [_verdict(row, cfg) for _, row in out.iterrows()]
    out["anomaly_score"] = [v[0] for v in verdicts]
    out["is_anomaly"] = [v[1] is not None for v in verdicts]
    out["anomaly_kinds"] = [v[1] for v in verdicts]
    out["severity"] = [v[2] for v in verdicts]
    return out
