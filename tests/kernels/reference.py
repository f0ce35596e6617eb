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
    regime_window: int = 30
    price_z_warning: float = 5.5
    price_z_critical: float = 11.0
    volume_z_warning: float = 5.25
    volume_z_critical: float = 10.5
    vol_ratio_warning: float = 4.25
    vol_ratio_critical: float = 8.5
    scale_floor_window: int = 480
    scale_floor_share: float = 0.5
    volume_scale_floor: float = 0.3
    regime_trim: int = 2
    episode_minutes: float = 30.0
    session: str | None = None
    session_edge_minutes: int = 2
    mute_outside_session: bool = True

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
    n, m = cfg.window, cfg.min_periods
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

    prior_returns = roll(log_ret.shift(1))
    median = prior_returns.median()
    mad = prior_returns.apply(lambda x: np.nanmedian(np.abs(x - np.nanmedian(x))), raw=True)
    out["robust_z"] = (log_ret - median) / _positive(MAD_SCALE * mad)
    return out


def _detector_statistics(bars: pd.DataFrame, out: pd.DataFrame, cfg: Config) -> None:
    """The jump and regime statistics over the whole series (the detector's scale does not reset at gaps), written
    the slow way from the definitions: every window is sliced afresh."""
    n = len(bars)
    ts = bars["ts"].to_numpy()
    log_close = np.log(_valid_price(bars["close"]).to_numpy(float))
    log_ret = out["log_ret"].to_numpy(float)
    squares = log_ret**2
    gap_us = cfg.max_gap_minutes * 60_000_000
    ewma = _ewma_vol(pd.Series(log_ret), cfg.min_periods, cfg.lam).to_numpy()
    # The EWMA after bar t is the last seeded value at or before t (a null return leaves it unchanged).
    ewma = pd.Series(ewma).ffill().to_numpy()
    scale = np.full(n, np.nan)
    for t in range(n):
        window = squares[max(0, t - cfg.scale_floor_window + 1) : t + 1]
        window = window[~np.isnan(window)]
        floor = cfg.scale_floor_share * np.sqrt(window.mean()) if len(window) >= cfg.window else np.nan
        scale[t] = np.fmax(ewma[t], floor)
    jump = np.full(n, np.nan)
    regime = np.full(n, np.nan)
    for t in range(n):
        if t >= 4 and (np.diff(ts[t - 4 : t + 1]) <= gap_us).all():
            level = np.median(log_close[t - 4 : t - 1])
            before, after, sigma = log_close[t - 1] - level, log_close[t] - level, scale[t - 2]
            if not (np.isnan(before) or np.isnan(after) or np.isnan(sigma) or sigma <= 0):
                jump[t] = min(abs(before), abs(after)) / sigma if before * after > 0 else 0.0
        s = cfg.regime_window
        if t >= s:
            window = squares[t - s + 1 : t + 1]
            if not np.isnan(window).any() and scale[t - s] > 0:
                kept = np.sort(window)[: s - cfg.regime_trim]
                regime[t] = np.sqrt(kept.mean()) / scale[t - s]
    out["_jump_z"] = jump
    out["_vol_ratio"] = regime
    _volume_statistic(bars, out, cfg, scale)


RELATIVE_VOLUME_OFFSET = 0.05


def _volume_statistic(bars: pd.DataFrame, out: pd.DataFrame, cfg: Config, scale: np.ndarray) -> None:
    """The detector's volume statistic over the whole series: the excess x_t = ln(V_t / mean V of the last
    scale_floor_window bars + 0.05) - ln(1 + max(ln(H/L), |log_ret|) / scale[t - 1]), then (x_t - mean) /
    max(sd, volume_scale_floor) over the `window` excesses before t. Every window sliced afresh."""
    n, m = len(bars), cfg.min_periods
    volume = _valid_volume(bars["volume"]).to_numpy(float)
    high, low = (_valid_price(bars[k]).to_numpy(float) for k in ("high", "low"))
    with np.errstate(divide="ignore", invalid="ignore"):
        moved = np.fmax(np.log(high / low), np.abs(out["log_ret"].to_numpy(float)))
    excess = np.full(n, np.nan)
    stat = np.full(n, np.nan)
    condition = np.full(n, np.nan)
    for t in range(n):
        before = excess[max(0, t - cfg.window) : t]
        before = before[~np.isnan(before)]
        if len(before) >= m:
            mean = before.mean()
            sd = before.std(ddof=1) if len(before) > 1 else np.nan
            spread = np.fmax(sd, cfg.volume_scale_floor)
            condition[t] = abs(mean) / spread if spread > 0 else np.inf
        past = volume[max(0, t - cfg.scale_floor_window) : t]
        past = past[~np.isnan(past)]
        sigma = scale[t - 1] if t > 0 else np.nan
        if len(past) >= m and past.mean() > 0 and sigma > 0:
            with np.errstate(divide="ignore", invalid="ignore"):
                x = np.log(volume[t] / past.mean() + RELATIVE_VOLUME_OFFSET) - np.log1p(moved[t] / sigma)
            if np.isfinite(x):
                excess[t] = x
        if len(before) >= m and spread > 0:
            stat[t] = (excess[t] - mean) / spread
    out["_volume_stat"] = stat
    # How many ulps of the data the dispersion spans (see _volume_z_condition).
    out["_volume_excess_condition"] = condition


def _session_phase(ts_us: int, spec: str, edge: int) -> str:
    """regular, edge or outside: the exchange's local clock against its windows, weekdays only."""
    from datetime import datetime, timezone
    from zoneinfo import ZoneInfo

    zone, hours = spec.split(maxsplit=1)
    local = datetime.fromtimestamp(ts_us / 1e6, tz=timezone.utc).astimezone(ZoneInfo(zone))
    if local.weekday() >= 5:
        return "outside"
    minute = local.hour * 60 + local.minute
    for window in hours.split(","):
        open_, close = (int(x[:2]) * 60 + int(x[3:]) for x in window.strip().split("-"))
        if open_ <= minute < close:
            return "edge" if minute < open_ + edge or minute >= close - edge else "regular"
    return "outside"


def _verdict(row: pd.Series, cfg: Config) -> tuple[float, str | None, str | None]:
    detectors = [
        ("price_jump", row["_jump_z"], cfg.price_z_warning, cfg.price_z_critical),
        ("volume_spike", row["_volume_stat"], cfg.volume_z_warning, cfg.volume_z_critical),
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
    _detector_statistics(bars, out, cfg)
    out = out.replace([np.inf, -np.inf], np.nan)
    verdicts = [_verdict(row, cfg) for _, row in out.iterrows()]
    out["anomaly_score"] = [v[0] for v in verdicts]
    # Session mute, then one alert per episode: a flag less than `episode` after the previous flag continues its
    # episode, alerted only as the episode's first critical.
    alerted, last_flag, episode_critical = [], None, False
    for ts, (_, kinds, severity) in zip(bars["ts"], verdicts):
        keep = False
        if kinds is not None:
            phase = _session_phase(int(ts), cfg.session, cfg.session_edge_minutes) if cfg.session else "regular"
            muted = phase == "edge" or (phase == "outside" and cfg.mute_outside_session)
            if not muted:
                critical = severity == "critical"
                if last_flag is None or ts - last_flag >= cfg.episode_minutes * 60_000_000:
                    keep, episode_critical = True, critical
                elif critical and not episode_critical:
                    keep, episode_critical = True, True
                last_flag = ts
        alerted.append(keep)
    out["is_anomaly"] = alerted
    out["anomaly_kinds"] = [v[1] if keep else None for v, keep in zip(verdicts, alerted)]
    out["severity"] = [v[2] if keep else None for v, keep in zip(verdicts, alerted)]
    return out
