"""Anomaly detection on real 1-minute bars: false-alarm load, injected anomalies, baselines, candidate redesigns.

    python bench/detection_real.py [--seeds 3] [--json out.json]

The bars are the 18 real series of `bench/real_bars.py` (see bench/data/README.md). In one run it reports:

1. the false-alarm load of the shipped detector (`sparktrends.compute_metrics` with each series' asset-class profile,
   as the jobs run it) on the un-injected bars: flagged bars per 1,000 and Slack messages per symbol per trading
   day after the alerter's grouping and 300 s per-symbol cooldown (crates/alerter/src/plan.rs), per asset class
   and session, and the top 5 alerts per series with the 5 bars before and after each;
2. recall, delay and precision on anomalies injected into the real background (level shifts of k sigma, volume
   x m, volatility x f for 60 minutes), one kind and size per run, several seeds;
3. the same for baselines (rolling return z, EWMA return z, rolling volume z, the first detector's price z) and
   for the numpy prototypes the design was chosen from, each thresholded to the shipped detector's false-alarm
   rate on the clean bars, and again at a budget of 1 flagged bar per 1,000.

Every detector is a per-bar score; it flags a bar when score >= threshold. "Equal false-alarm rate" means the
threshold that flags the same share of the pooled clean bars as the shipped detector does at its defaults.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

import sparktrends

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))
import real_bars

from spark_jobs.detector_profiles import ASSET_CLASSES, parse

MAX_GAP_MIN = 15  # same as the detector's max_gap: a longer gap starts a new segment (no return across it)
COOLDOWN_S = 300
HISTORY = 90  # bars of history before an injection
SIGMA_WINDOW = 60  # bars of log returns behind the injection's sigma
SPACING = 300  # bars between two injections of one run
PER_SERIES = 25  # most injections per series and run
SIZES: dict[str, list[float]] = {"jump": [4, 6, 8, 10], "volume": [3, 5, 10], "vol": [2, 3, 5]}
# Bars after the injected bar in which a flag counts as detecting it (the injected bar is offset 0).
DETECT_WINDOW = {"jump": 2, "volume": 2, "vol": 60}
VOL_DURATION = 60
BUDGET_1 = 1.0  # flagged bars per 1,000 for the fixed-budget comparison
SEV_RANK = {"": 0, "warning": 1, "critical": 2}


# ------------------------------------------------------------------------------------------------------ data


@dataclass
class Bars:
    id: str
    asset_class: str
    ticker: str  # the symbol as our sources write it, which picks its detector profile (spark_jobs/detector_profiles)
    ts: np.ndarray  # int64 minutes since epoch (bar start)
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    session: np.ndarray  # str labels
    day: np.ndarray  # trading-day key per bar (str)
    new_segment: np.ndarray = field(init=False)  # True where the bar starts a segment (gap > MAX_GAP_MIN)

    def __post_init__(self) -> None:
        gap = np.diff(self.ts, prepend=self.ts[0] - 10 * MAX_GAP_MIN)
        self.new_segment = gap > MAX_GAP_MIN

    def replace(self, **arrays: np.ndarray) -> Bars:
        names = ("id", "asset_class", "ticker", "ts", "open", "high", "low", "close", "volume")
        fields = {k: getattr(self, k) for k in names}
        fields.update(arrays)
        return Bars(**fields, session=self.session, day=self.day)  # type: ignore[arg-type]


def trading_day(ts: pd.Series, series_id: str, asset_class: str) -> np.ndarray:
    """Crypto: UTC date. Futures: CME trading day (Chicago time shifted 7 h, so 17:00 CT opens the next day).
    Equities: the exchange's local date."""
    if asset_class == "crypto":
        return ts.dt.strftime("%Y-%m-%d").to_numpy()
    tz = real_bars.series_info(series_id).session["exchange_tz"]
    local = ts.dt.tz_convert(tz)
    if asset_class == "future":
        local = local + pd.Timedelta(hours=7)
    return local.dt.strftime("%Y-%m-%d").to_numpy()


def load_all() -> list[Bars]:
    out = []
    for sid in real_bars.series_ids():
        frame = real_bars.load_series(sid)
        info = real_bars.series_info(sid)
        ts = frame["ts"]
        out.append(
            Bars(
                id=sid,
                asset_class=info.asset_class,
                ticker=info.symbol.split()[0],
                ts=(ts.astype("int64") // 60_000_000_000).to_numpy(),
                open=frame["open"].to_numpy(),
                high=frame["high"].to_numpy(),
                low=frame["low"].to_numpy(),
                close=frame["close"].to_numpy(),
                volume=frame["volume"].to_numpy(),
                session=real_bars.session(ts, sid).to_numpy().astype(str),
                day=trading_day(ts, sid, info.asset_class),
            )
        )
    return out


def log_returns(b: Bars) -> np.ndarray:
    """Close-to-close log returns; NaN on the first bar of each segment."""
    lc = np.log(b.close)
    r = np.diff(lc, prepend=np.nan)
    r[b.new_segment] = np.nan
    return r


# ------------------------------------------------------------------------------------------------ detectors


@dataclass
class Output:
    """Per-bar score (flag when >= threshold) and severity.

    `critical` is the severity at the detector's own default threshold. A candidate sets `critical_ratio` (critical
    when score >= ratio x threshold, at any threshold) and `episode`: one alert per episode, i.e. a flagged bar
    less than `episode` bars after the previous flagged bar (kept or not) is dropped unless it is critical and the
    episode's last kept alert was not."""

    score: np.ndarray
    critical: np.ndarray
    critical_ratio: float = 0.0
    episode: int = 0
    kind: np.ndarray | None = None  # candidates: the component that gives the score (jump / volume / regime)
    alerted: np.ndarray | None = None  # the shipped kernel: its own decision at its defaults (threshold 1)

    def critical_at(self, thr: float) -> np.ndarray:
        return self.score >= self.critical_ratio * thr if self.critical_ratio else self.critical

    def flag(self, thr: float) -> np.ndarray:
        if self.alerted is not None and thr == 1.0:
            return self.alerted
        raw = self.score >= thr
        if not self.episode:
            return raw
        crit = self.critical_at(thr)
        keep = np.zeros(len(raw), bool)
        previous, episode_critical = -(10**9), False
        for i in np.flatnonzero(raw):
            if i - previous >= self.episode:
                keep[i], episode_critical = True, bool(crit[i])
            elif crit[i] and not episode_critical:
                keep[i], episode_critical = True, True
            previous = i
        return keep


Detector = Callable[[Bars], Output]


def _roll(x: np.ndarray, window: int, min_periods: int, how: str, lag: int = 1) -> np.ndarray:
    s = pd.Series(x).rolling(window, min_periods=min_periods)
    out = getattr(s, how)(**({"ddof": 1} if how == "std" else {}))
    return out.shift(lag).to_numpy()


def _clean(score: np.ndarray) -> np.ndarray:
    """NaN (undefined) never flags; +inf (division by a zero scale) flags at every threshold."""
    return np.where(np.isnan(score), -np.inf, score)


PROFILES = parse(ASSET_CLASSES)
KERNEL_KINDS = {"price_jump": "jump", "volume_spike": "volume", "vol_regime_shift": "regime"}


def kernel_metrics(b: Bars, profiles: bool = True) -> pa.RecordBatch:
    """The shipped kernels on one series, with the series' asset-class profile (what the jobs run without a
    --detector-config) or the package defaults."""
    table = pa.table(
        {
            "ts": pa.array(b.ts * 60_000_000, type=pa.timestamp("us", tz="UTC")),
            "open": b.open,
            "high": b.high,
            "low": b.low,
            "close": b.close,
            "volume": b.volume,
        }
    )
    return sparktrends.compute_metrics(table, PROFILES.settings_for(b.ticker) if profiles else None)


def shipped_detector(b: Bars, profiles: bool = True) -> Output:
    """The kernel's detector. At its defaults its own decision (session mute and one alert per episode included);
    at a matched threshold its raw anomaly_score, with the prototypes' bar-based session mute and no episode rule,
    as for the candidates."""
    m = kernel_metrics(b, profiles)
    score = _clean(m.column("anomaly_score").to_numpy(zero_copy_only=False).astype(float))
    alerted = m.column("is_anomaly").to_numpy(zero_copy_only=False).astype(bool)
    labels = m.column("anomaly_kinds").to_pylist()
    kind = np.array([KERNEL_KINDS[k.split(",")[0]] if k else "" for k in labels])
    if profiles:
        score = np.where(session_mute(b), -np.inf, score)
    critical = np.array([s == "critical" for s in m.column("severity").to_pylist()])
    return Output(score, critical, critical_ratio=2.0, kind=kind, alerted=alerted)


def first_price_z(b: Bars) -> Output:
    """The first detector's price-jump statistic (issue 13's starting point): |log_ret| / vol_yz(t - 1), over its
    warning threshold 5.25. Both columns are still metrics."""
    m = kernel_metrics(b, profiles=False)
    lr = m.column("log_ret").to_numpy(zero_copy_only=False).astype(float)
    yz = m.column("vol_yz").to_numpy(zero_copy_only=False).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(lr) / np.concatenate([[np.nan], yz[:-1]]) / 5.25
    return Output(_clean(z), z >= 10 / 5.25)


def return_z(b: Bars, window: int = 30) -> Output:
    """Baseline: |r_t - mean| / std of the last `window` returns ending at t - 1 (two-sided)."""
    r = log_returns(b)
    mu, sd = _roll(r, window, 10, "mean"), _roll(r, window, 10, "std")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(r - mu) / sd
    return Output(_clean(z), np.zeros(len(z), bool))


def ewma_z(b: Bars, lam: float = 0.94) -> Output:
    """Baseline: |r_t| / sqrt(EWMA variance ending at t - 1), lambda 0.94, seeded on 10 returns."""
    r = log_returns(b)
    var = pd.Series(r * r).ewm(alpha=1 - lam, adjust=False, min_periods=10, ignore_na=True).mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(r) / np.sqrt(var.shift(1).to_numpy())
    return Output(_clean(z), np.zeros(len(z), bool))


def volume_z(b: Bars, window: int = 30) -> Output:
    """Baseline: (ln(1+V_t) - mean) / std over the last `window` bars ending at t - 1 (one-sided)."""
    x = np.log1p(b.volume)
    mu, sd = _roll(x, window, 10, "mean"), _roll(x, window, 10, "std")
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (x - mu) / sd
    return Output(_clean(z), np.zeros(len(z), bool))


# ---------------------------------------------------------------------------------------- candidate detectors


def tick_scale(b: Bars, r: np.ndarray, window: int = 120, tick_window: int = 1440) -> np.ndarray:
    """Tried first: sigma_hat(t - 1) = max(RMS of the last `window` returns, tick floor), both ending at t - 1; the
    tick floor is the smallest non-zero |close change| of the last `tick_window` bars as a log return."""
    rms = np.sqrt(_roll(r * r, window, 30, "mean"))
    dc = np.abs(np.diff(b.close, prepend=np.nan))
    dc[dc == 0] = np.nan
    tick = pd.Series(dc).rolling(tick_window, min_periods=1).min().shift(1).to_numpy()
    prev_close = np.concatenate([[np.nan], b.close[:-1]])
    return np.fmax(rms, np.log1p(tick / prev_close))


def mix_scale(r: np.ndarray, lam: float = 0.94, long: int = 1440, floor_share: float = 0.5) -> np.ndarray:
    """The candidate's scale: sigma_hat(t - 1) = max(sqrt(EWMA_lam of r^2 through t - 1),
    floor_share * RMS of the last `long` returns through t - 1). The EWMA follows the local volatility; the
    day-long RMS is a floor in price terms that a stale stretch of zero returns cannot collapse."""
    var = pd.Series(r * r).ewm(alpha=1 - lam, adjust=False, min_periods=10, ignore_na=True).mean()
    long_rms = np.sqrt(_roll(r * r, long, 30, "mean"))
    return np.fmax(np.sqrt(var.shift(1).to_numpy()), floor_share * long_rms)


def cand_jump(b: Bars, scale: str = "mix", confirm: str = "level", long: int = 1440) -> np.ndarray:
    """Jump statistic over sigma_hat(t - 1).

    - "none": |r_t| / sigma_hat, at t.
    - "next" (reported at t + 1): min(|r_t|, |c_{t+1} - c_{t-1}|) / sigma_hat, 0 when the two moves differ in sign.
    - "level" (reported at t + 1): with m = median(c_{t-3}, c_{t-2}, c_{t-1}) (log closes), d0 = c_t - m and
      d1 = c_{t+1} - m: min(|d0|, |d1|) / sigma_hat, 0 when d0 and d1 differ in sign. The price must leave the level
      of the three bars before and stay there one bar; a single print at t - 1 that bar t undoes scores ~0."""
    r = log_returns(b)
    sig = mix_scale(r, long=long) if scale == "mix" else tick_scale(b, r)
    with np.errstate(divide="ignore", invalid="ignore"):
        if confirm == "none":
            return np.abs(r) / sig
        if confirm == "next":
            two = r + np.concatenate([r[1:], [np.nan]])
            keep = np.minimum(np.abs(r), np.abs(two)) / sig
            keep = np.where(np.sign(two) == np.sign(r), keep, 0.0)
        else:
            lc = np.log(b.close)
            n = len(lc)
            lag = [np.concatenate([np.full(k, np.nan), lc[: n - k]]) for k in (1, 2, 3)]
            m = np.median(np.vstack(lag), axis=0)
            d0 = lc - m
            d1 = np.concatenate([lc[1:], [np.nan]]) - m
            keep = np.minimum(np.abs(d0), np.abs(d1)) / sig
            keep = np.where(np.sign(d0) == np.sign(d1), keep, 0.0)
            # every bar from t - 3 to t + 1 in one segment
            seg = np.cumsum(b.new_segment)
            seg_next = np.concatenate([seg[1:], [-1]])
            seg_back = np.concatenate([np.full(3, -1), seg[: n - 3]])
            keep = np.where((seg_next == seg) & (seg_back == seg), keep, np.nan)
    return np.concatenate([[np.nan], keep[:-1]])  # known at t + 1


def time_of_day_profile(b: Bars, x: np.ndarray) -> np.ndarray:
    """Median of x at the same clock minute on up to 10 earlier trading days (tried for equity volume)."""
    frame = pd.DataFrame({"day": b.day, "minute": b.ts % 1440, "x": x})
    wide = frame.pivot_table(index="day", columns="minute", values="x", aggfunc="first").sort_index()
    prof = wide.shift(1).rolling(10, min_periods=1).median()
    looked = prof.stack(future_stack=True).rename("p")
    key = pd.MultiIndex.from_arrays([frame["day"], frame["minute"]])
    p = looked.reindex(key).to_numpy()
    return np.where(np.isnan(p), np.nanmedian(x), p)


def cand_volume(b: Bars, window: int = 30, floor: float = 0.3) -> np.ndarray:
    """The baseline volume z with a floor on its scale: (ln(1+V_t) - mean) / max(std, floor) over `window` bars
    ending at t - 1, so a run of identical (e.g. zero) volumes cannot make the next trade infinitely unusual."""
    x = np.log1p(b.volume)
    mu, sd = _roll(x, window, 10, "mean"), _roll(x, window, 10, "std")
    return (x - mu) / np.fmax(sd, floor)


def cand_volume_effort(b: Bars, window: int = 30, floor: float = 0.3, long: int = 480, eps: float = 0.05) -> np.ndarray:
    """Volume beyond what the bar's price activity explains ("effort vs result"): u_t = ln(V_t / mean V of the last
    `long` bars through t - 1 + eps), a_t = ln(1 + max(ln(H/L), |r_t|) / sigma_hat(t - 1)), x_t = u_t - a_t, and the
    statistic (x_t - mean) / max(std, floor) over the `window` x before t. Busy real minutes move the price; a block
    that trades without moving it, or a spike in a quiet market, does not. Relative to the long mean, so the units
    of volume (0.006 BTC or 100,000 shares a minute) do not change the log's curvature."""
    v = b.volume.astype(float)
    mean_v = _roll(v, long, 10, "mean")
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.log(v / np.where(mean_v > 0, mean_v, np.nan) + eps)
        r = log_returns(b)
        move = np.fmax(np.log(b.high / b.low), np.abs(r))
        a = np.log1p(move / mix_scale(r, long=long))
    x = u - a
    mu, sd = _roll(x, window, 10, "mean"), _roll(x, window, 10, "std")
    return (x - mu) / np.fmax(sd, floor)


def cand_regime(b: Bars, short: int = 30, long: int = 1440, trim: int = 0) -> np.ndarray:
    """sqrt(mean r^2 over the `short` returns ending at t) / sigma_hat(t - short): the scale known just before the
    short window starts, so the new regime does not dilute its own baseline. `trim`: leave out the window's `trim`
    largest r^2, so that one jump (or a print and its reversal, with 2) cannot make a regime on its own."""
    r = log_returns(b)
    sig = mix_scale(r, long=long)
    sq = pd.Series(r * r)
    ms = sq.rolling(short, min_periods=short).mean().to_numpy()
    if trim:
        from numpy.lib.stride_tricks import sliding_window_view

        win = np.sort(sliding_window_view(np.nan_to_num(sq.to_numpy(), nan=np.nan), short), axis=1)
        kept = np.nanmean(win[:, : short - trim], axis=1)
        kept[np.isnan(win).any(axis=1)] = np.nan
        ms = np.concatenate([np.full(short - 1, np.nan), kept])
    base = np.concatenate([np.full(short - 1, np.nan), sig[: len(sig) - short + 1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sqrt(ms) / base


def session_mute(b: Bars, minutes: int = 2) -> np.ndarray:
    """True on the first and last `minutes` bars of each equity/futures regular session and outside regular
    hours of equities (auctions, single prints): those bars are not alerted."""
    if b.asset_class == "crypto":
        return np.zeros(len(b.ts), bool)
    reg = b.session == "regular"
    mute = ~reg if b.asset_class == "equity" else np.zeros(len(b.ts), bool)
    start = reg & ~np.concatenate([[False], reg[:-1]]) | (reg & b.new_segment)
    end = reg & ~np.concatenate([reg[1:], [False]])
    seg_end = np.concatenate([b.new_segment[1:], [True]])
    end |= reg & seg_end
    for k in range(minutes):
        mute |= np.concatenate([np.zeros(k, bool), start[: len(start) - k]])
        mute |= np.concatenate([end[k:], np.zeros(k, bool)])
    return mute


@dataclass(frozen=True)
class Candidate:
    """Combined candidate: score = max(J / tj, V / tv, R / tr), with one alert per episode and session muting.

    J: cand_jump (confirmed, mix scale); V: cand_volume (the baseline volume z, scale floored at 0.3);
    R: cand_regime (30 returns). A bar is flagged when score >= 1, critical when score >= `critical`."""

    tj: float = 5.5
    tv: float = 6.5
    tr: float = 4.5
    scale: str = "mix"
    confirm: str = "level"
    episode: int = 30  # one alert per episode: see Output.flag
    mute: bool = True
    critical: float = 2.0
    kinds: tuple[str, ...] = ("jump", "volume", "regime")
    long: int = 480  # bars of the scale floor's RMS (480 + 30 + 1 fit the jobs' warm-up)
    trim: int = 2  # largest squared returns left out of the regime window
    volume: str = "floored"  # "floored": cand_volume; "effort": cand_volume_effort

    def __call__(self, b: Bars) -> Output:
        n = len(b.ts)
        nan = np.full(n, np.nan)
        jump = cand_jump(b, self.scale, self.confirm, self.long) / self.tj if "jump" in self.kinds else nan
        volume_stat = cand_volume_effort if self.volume == "effort" else cand_volume
        vol = volume_stat(b) / self.tv if "volume" in self.kinds else nan
        reg = cand_regime(b, long=self.long, trim=self.trim) / self.tr if "regime" in self.kinds else nan
        parts = np.vstack([_clean(jump), _clean(vol), _clean(reg)])
        kind = np.array(["jump", "volume", "regime"])[np.argmax(parts, axis=0)]
        score = parts.max(axis=0)
        if self.mute:
            score = np.where(session_mute(b), -np.inf, score)
        return Output(score, score >= self.critical, critical_ratio=self.critical, episode=self.episode, kind=kind)


# ------------------------------------------------------------------------------------------------ injection


def eligible(b: Bars, r: np.ndarray, sigma: np.ndarray, kind: str) -> np.ndarray:
    """Positions with HISTORY bars of the same segment before and the detection window after, sigma > 0."""
    n = len(b.ts)
    seg_id = np.cumsum(b.new_segment)
    idx = np.arange(n)
    after = DETECT_WINDOW[kind] + (VOL_DURATION if kind == "vol" else 0)
    ok = (idx >= HISTORY) & (idx + after < n)
    ok[ok] &= seg_id[idx[ok] - HISTORY] == seg_id[idx[ok]]
    ok[ok] &= seg_id[np.minimum(idx[ok] + after, n - 1)] == seg_id[idx[ok]]
    ok &= np.isfinite(sigma) & (sigma > 0)
    if kind == "volume":
        ok &= b.volume > 0
    return ok


def pick_positions(ok: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    chosen: list[int] = []
    for p in rng.permutation(np.flatnonzero(ok)):
        if all(abs(p - q) >= SPACING for q in chosen):
            chosen.append(int(p))
            if len(chosen) >= PER_SERIES:
                break
    return np.array(sorted(chosen), dtype=int)


def inject(b: Bars, kind: str, size: float, rng: np.random.Generator) -> tuple[Bars, np.ndarray]:
    r = log_returns(b)
    sigma = pd.Series(r).rolling(SIGMA_WINDOW, min_periods=SIGMA_WINDOW).std().shift(1).to_numpy()
    pos = pick_positions(eligible(b, r, sigma, kind), rng)
    lo, lh, ll, lc = (np.log(a) for a in (b.open, b.high, b.low, b.close))
    vol = b.volume.copy()
    if kind == "jump":
        # Level shift of +-k sigma from bar p on (the bar opens at the new level).
        shift = np.zeros(len(lc))
        for p in pos:
            shift[p:] += rng.choice([-1.0, 1.0]) * size * sigma[p]
        lo, lh, ll, lc = lo + shift, lh + shift, ll + shift, lc + shift
    elif kind == "volume":
        vol[pos] *= size
    else:
        # Volatility x f for VOL_DURATION bars: every price of bar i moves f times as far from close_{i-1}.
        orig = [a.copy() for a in (lo, lh, ll, lc)]
        lo, lh, ll, lc = (a.copy() for a in orig)
        for p in pos:
            for i in range(p, p + VOL_DURATION):
                ref, new_ref = orig[3][i - 1], lc[i - 1]
                lo[i], lh[i], ll[i], lc[i] = (new_ref + size * (a[i] - ref) for a in orig)
            offset = lc[p + VOL_DURATION - 1] - orig[3][p + VOL_DURATION - 1]
            for a, o in zip((lo, lh, ll, lc), orig):
                a[p + VOL_DURATION :] = o[p + VOL_DURATION :] + offset
            orig = [a.copy() for a in (lo, lh, ll, lc)]
    return b.replace(open=np.exp(lo), high=np.exp(lh), low=np.exp(ll), close=np.exp(lc), volume=vol), pos


# ------------------------------------------------------------------------------------------------- scoring


def threshold_for(outs: list[Output], per_1000: float) -> float:
    """Lowest threshold that flags at most `per_1000` of the pooled bars by raw score (score >= threshold, before
    any episode rule; ties at +inf can exceed the budget)."""
    pooled = np.sort(np.concatenate([o.score for o in outs]))[::-1]
    k = round(per_1000 * len(pooled) / 1000)
    if k <= 0:
        return float(np.nextafter(pooled[0], np.inf))
    thr = pooled[k - 1]
    if k < len(pooled) and pooled[k] == thr:  # a tie straddles the budget: go just above it
        thr = np.nextafter(thr, np.inf)
    return float(thr)


def messages(ts_min: np.ndarray, flagged: np.ndarray, critical: np.ndarray) -> np.ndarray:
    """Indices of bars that post a Slack message: the first flagged bar, then any flagged bar >= COOLDOWN_S after
    the last message or more severe than it (crates/alerter/src/plan.rs; one bar = one group)."""
    sent: list[int] = []
    last_t, last_sev = None, 0
    for i in np.flatnonzero(flagged):
        sev = 2 if critical[i] else 1
        if last_t is None or (ts_min[i] - last_t) * 60 >= COOLDOWN_S or sev > last_sev:
            sent.append(int(i))
            last_t, last_sev = ts_min[i], sev
    return np.array(sent, dtype=int)


def load_table(data: list[Bars], outs: list[Output], thr: float, at_default: bool) -> dict[str, dict[str, Any]]:
    """Flagged bars per 1,000 and messages per symbol per trading day, by class/session and overall. At the
    detector's defaults its severities and episode rule apply; at a matched threshold, raw flags (score >= thr)
    and every flag a warning."""
    acc: dict[str, dict[str, float]] = {}

    def add(key: str, bars: int, flags: int, msgs: int, days: float) -> None:
        a = acc.setdefault(key, {"bars": 0, "flags": 0, "msgs": 0, "symbol_days": 0.0})
        a["bars"] += bars
        a["flags"] += flags
        a["msgs"] += msgs
        a["symbol_days"] += days

    for b, o in zip(data, outs):
        flagged = o.flag(thr) if at_default else o.score >= thr
        crit = o.critical_at(thr) if at_default else np.zeros(len(flagged), bool)
        sent = np.zeros(len(flagged), bool)
        sent[messages(b.ts, flagged, crit & flagged)] = True
        for sess in np.unique(b.session):
            m = b.session == sess
            if b.asset_class == "crypto":
                days = (b.ts[m].max() - b.ts[m].min() + 1) / 1440
            else:
                days = float(len(np.unique(b.day[m])))
            for key in (f"{b.asset_class}/{sess}", f"{b.asset_class}/all", "all"):
                add(key, int(m.sum()), int(flagged[m].sum()), int(sent[m].sum()), days if key != "all" else 0.0)
        days_all = float(len(np.unique(b.day))) if b.asset_class != "crypto" else (np.ptp(b.ts) + 1) / 1440
        add("all", 0, 0, 0, days_all)
        add(f"series:{b.id}", len(flagged), int(flagged.sum()), int(sent.sum()), days_all)
    return {
        k: {
            "bars": int(a["bars"]),
            "flags_per_1000": 1000 * a["flags"] / a["bars"] if a["bars"] else 0.0,
            "msgs_per_symbol_day": a["msgs"] / a["symbol_days"] if a["symbol_days"] else 0.0,
            "msgs": int(a["msgs"]),
        }
        for k, a in sorted(acc.items())
    }


def top_alerts(b: Bars, o: Output, n: int = 5, lag: int = 0) -> list[dict[str, Any]]:
    """The n highest-scored bars (at least 30 bars apart) with the bars t-5..t+5 around the event bar t, which is
    `lag` bars before the flagged bar (1 for the candidates: a confirmed jump at t is flagged at t + 1)."""
    ranked = o.score if o.alerted is None else np.where(o.alerted, o.score, -np.inf)
    order = np.argsort(-ranked, kind="stable")
    picked: list[int] = []
    for i in order:
        if not np.isfinite(ranked[i]) and ranked[i] < 0:
            break
        if all(abs(i - j) >= 30 for j in picked):
            picked.append(int(i))
        if len(picked) == n:
            break
    r = log_returns(b)
    out = []
    for flagged in picked:
        kind = str(o.kind[flagged]) if o.kind is not None else "any"
        i = max(0, flagged - (lag if kind == "jump" else 0))
        lo, hi = max(0, i - 5), min(len(b.ts), i + 6)
        prev30 = r[max(0, i - 30) : i]
        med_v = float(np.median(b.volume[max(0, i - 30) : i])) if i > 0 else float("nan")
        out.append(
            {
                "ts": pd.Timestamp(int(b.ts[i]) * 60, unit="s", tz="UTC").isoformat(),
                "flagged_at": pd.Timestamp(int(b.ts[flagged]) * 60, unit="s", tz="UTC").isoformat(),
                "session": str(b.session[i]),
                "kind": kind,
                "score": float(o.score[flagged]),
                "ret_bp": float(1e4 * r[i]) if np.isfinite(r[i]) else None,
                "next_ret_bp": float(1e4 * r[i + 1]) if i + 1 < len(r) and np.isfinite(r[i + 1]) else None,
                "zero_returns_prev30": int(np.sum(prev30 == 0)),
                "volume_vs_median30": float(b.volume[i] / med_v) if med_v > 0 else None,
                "context": [
                    {
                        "dt": int(j - i),
                        "ts": pd.Timestamp(int(b.ts[j]) * 60, unit="s", tz="UTC").strftime("%m-%d %H:%M"),
                        "o": float(b.open[j]),
                        "h": float(b.high[j]),
                        "l": float(b.low[j]),
                        "c": float(b.close[j]),
                        "v": float(b.volume[j]),
                    }
                    for j in range(lo, hi)
                ],
                "judgement": judge(b, r, i, kind),
            }
        )
    return out


def judge(b: Bars, r: np.ndarray, i: int, kind: str = "any") -> str:
    """A rule-of-thumb label for a top alert, for a person to check against the context bars."""
    prev = r[max(0, i - 30) : i]
    notes = []
    if kind == "volume":
        med = float(np.median(b.volume[max(0, i - 30) : i])) if i > 0 else 0.0
        if med == 0:
            return "likely artefact: volume after a run of zero-volume bars"
        return f"volume spike x{b.volume[i] / med:.0f} the 30-bar median: real trade activity, check the news"
    if b.session[i] in ("pre", "post", "closed"):
        notes.append(f"{b.session[i]}-market bar")
    mute = session_mute(b)
    if mute[i] and b.asset_class != "crypto":
        notes.append("session open/close minute")
    if len(prev) and np.mean(prev == 0) >= 0.5:
        notes.append(f"stale window ({int(np.sum(prev == 0))}/30 zero returns)")
    if i + 1 < len(r) and np.isfinite(r[i]) and np.isfinite(r[i + 1]) and r[i] != 0:
        back = -r[i + 1] / r[i]
        if 0.6 < back < 1.5:
            notes.append(f"reverts {back:.0%} at t+1")
    if i >= 1 and np.isfinite(r[i - 1]) and np.isfinite(r[i]) and r[i - 1] != 0 and 0.6 < -r[i] / r[i - 1] < 1.5:
        notes.append("undoes the move of t-1 (single print)")
    if np.isfinite(r[i]) and r[i] == 0:
        notes.append("no price change at the event bar")
    if not notes:
        return "plausible real move (persists, liquid window)"
    return "likely artefact: " + ", ".join(notes)


def injected_scores(
    detectors: dict[str, Detector], data: list[Bars], kind: str, size: float, seed: int
) -> dict[str, Any]:
    rng = np.random.default_rng([seed, ["jump", "volume", "vol"].index(kind), int(size * 10)])
    runs = []
    for b in data:
        nb, pos = inject(b, kind, size, rng)
        runs.append((nb, pos, {name: det(nb) for name, det in detectors.items()}))
    return {"runs": runs}


def score_injected(
    runs: list[tuple[Bars, np.ndarray, dict[str, Output]]],
    clean: dict[str, list[Output]],
    name: str,
    thr: float,
    kind: str,
    rule: bool,
) -> dict[str, float]:
    """Recall (injections with a flag in their detection window), chance (the same windows flagged in the clean
    bars), precision (flags inside any detection window / all flags of the injected run) and mean delay (bars).
    `rule`: apply the detector's episode rule (at its defaults); else raw flags, score >= thr."""
    w = DETECT_WINDOW[kind]
    found = chance = total = alarms = inside = 0
    delays: list[int] = []
    for (_bars, pos, scores), clean_score in zip(runs, clean[name]):
        flagged = scores[name].flag(thr) if rule else scores[name].score >= thr
        clean_flag = clean_score.flag(thr) if rule else clean_score.score >= thr
        window_mask = np.zeros(len(flagged), bool)
        for p in pos:
            hit = np.flatnonzero(flagged[p : p + w])
            window_mask[p : p + w] = True
            total += 1
            if len(hit):
                found += 1
                delays.append(int(hit[0]))
            chance += bool(clean_flag[p : p + w].any())
        alarms += int(flagged.sum())
        inside += int((flagged & window_mask).sum())
    return {
        "n": total,
        "recall": found / total if total else float("nan"),
        "chance": chance / total if total else float("nan"),
        "precision": inside / alarms if alarms else float("nan"),
        "mean_delay": float(np.mean(delays)) if delays else float("nan"),
    }


# ------------------------------------------------------------------------------------------------------ main


REFERENCE = "shipped (defaults)"  # the kernel as the jobs run it; "equal_far" matches its false-alarm rate
BEST = "prototype E (numpy)"


def detectors() -> dict[str, Detector]:
    return {
        REFERENCE: shipped_detector,
        "shipped, no session profiles": lambda b: shipped_detector(b, profiles=False),
        "first detector's price_z": first_price_z,
        "baseline return z30": return_z,
        "baseline EWMA z": ewma_z,
        "baseline volume z30": volume_z,
        "prototype T jump: RMS120+tick floor, next-bar confirm": Candidate(
            scale="tick", confirm="next", kinds=("jump",), mute=False
        ),
        "prototype D jump, unconfirmed": Candidate(confirm="none", kinds=("jump",), mute=False),
        "prototype D jump, next-bar confirm": Candidate(confirm="next", kinds=("jump",), mute=False),
        "prototype D jump (level confirm)": Candidate(kinds=("jump",), mute=False),
        "prototype D regime, untrimmed": Candidate(kinds=("regime",), mute=False, trim=0),
        "prototype D regime": Candidate(kinds=("regime",), mute=False),
        "prototype D volume": Candidate(kinds=("volume",), mute=False),
        "prototype E volume (excess over price activity)": Candidate(kinds=("volume",), mute=False, volume="effort"),
        "prototype D, long floor 1440": Candidate(long=1440),
        "prototype D (numpy)": Candidate(),
        BEST: Candidate(volume="effort", tv=5.25, tr=4.25),
    }


def evaluate(seeds: int = 3, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every number of the section (see the module docstring); about 45 s for 3 seeds on one core."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows at series starts and gaps
        return _evaluate(seeds, log)


def _evaluate(seeds: int, log: Callable[[str], None]) -> dict[str, Any]:
    started = time.monotonic()
    data = load_all()
    dets = detectors()
    clean_out = {name: [det(b) for b in data] for name, det in dets.items()}
    n_bars = sum(len(b.ts) for b in data)
    log(f"clean scores of {len(dets)} detectors on {n_bars:,} bars: {time.monotonic() - started:.0f}s")

    cur_thr = 1.0
    cur_far = load_table(data, clean_out[REFERENCE], cur_thr, True)["all"]["flags_per_1000"]
    thresholds: dict[str, dict[str, float]] = {}
    for name in dets:
        thresholds[name] = {
            "default": 1.0 if name.startswith(("shipped", "prototype")) else float("nan"),
            "equal_far": threshold_for(clean_out[name], cur_far),
            "budget_1": threshold_for(clean_out[name], BUDGET_1),
        }
    loads = {}
    for name in dets:
        outs = clean_out[name]
        loads[name] = {
            label: load_table(data, outs, thr, label == "default")
            for label, thr in thresholds[name].items()
            if np.isfinite(thr)
        }
    tops = {}
    for name in (REFERENCE, "first detector's price_z"):
        tops[name] = {b.id: top_alerts(b, o, lag=1) for b, o in zip(data, clean_out[name])}
    log(f"loads and top alerts: {time.monotonic() - started:.0f}s")

    injected: dict[str, Any] = {}
    for kind, sizes in SIZES.items():
        for size in sizes:
            per_seed: dict[str, dict[str, list[dict[str, float]]]] = {}
            for seed in range(seeds):
                runs = injected_scores(dets, data, kind, size, seed)["runs"]
                for name in dets:
                    for label, thr in thresholds[name].items():
                        if np.isfinite(thr):
                            res = score_injected(runs, clean_out, name, thr, kind, label == "default")
                            per_seed.setdefault(name, {}).setdefault(label, []).append(res)
            injected[f"{kind} x{size:g}"] = {
                name: {label: {k: float(np.nanmean([r[k] for r in rs])) for k in rs[0]} for label, rs in labels.items()}
                for name, labels in per_seed.items()
            }
            log(f"injected {kind} {size:g}: {time.monotonic() - started:.0f}s")
    return {
        "bars": int(sum(len(b.ts) for b in data)),
        "series": len(data),
        "seeds": seeds,
        "current_far_per_1000": cur_far,
        "thresholds": thresholds,
        "load": loads,
        "top_alerts": tops,
        "injected": injected,
        "seconds": time.monotonic() - started,
    }


def run(_settings: object = None) -> list[dict[str, Any]]:
    """bench/run.py section rows (see evaluate() for everything)."""
    res = evaluate(seeds=3, log=lambda _m: None)
    rows: list[dict[str, Any]] = []
    for name, by_label in res["load"].items():
        for label, table in by_label.items():
            rows.append(
                {
                    "section": "detection_real",
                    "name": f"msgs/symbol/day ({label})",
                    "impl": name,
                    "value": table["all"]["msgs_per_symbol_day"],
                    "unit": "messages",
                    "notes": f"{table['all']['flags_per_1000']:.2f} flagged/1000 bars, {res['bars']:,} real bars",
                }
            )
    for case, by_name in res["injected"].items():
        for name, by_label in by_name.items():
            for label in ("equal_far", "budget_1"):
                if label in by_label:
                    r = by_label[label]
                    rows.append(
                        {
                            "section": "detection_real",
                            "name": f"{case} recall ({label})",
                            "impl": name,
                            "value": r["recall"],
                            "unit": "ratio",
                            "notes": f"chance {r['chance']:.3f}, precision {r['precision']:.3f}, {res['seeds']} seeds",
                        }
                    )
    return rows


def fmt(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{x:.2f}"


def report(res: dict[str, Any]) -> str:
    lines = [f"{res['bars']:,} bars, {res['series']} series, {res['seeds']} seeds, {res['seconds']:.0f}s"]
    lines.append(f"shipped detector at defaults: {res['current_far_per_1000']:.2f} flagged bars per 1,000")
    keys = [k for k in res["load"][REFERENCE]["default"] if not k.startswith("series:")]
    lines.append("\n## Load on clean bars: flagged/1000 | msgs/symbol/day\n")
    lines.append("| detector | threshold | " + " | ".join(keys) + " |")
    lines.append("|---|---|" + "---:|" * len(keys))
    for name, by_label in res["load"].items():
        for label, table in by_label.items():
            cells = [
                f"{table[k]['flags_per_1000']:.2f} / {table[k]['msgs_per_symbol_day']:.2f}" if k in table else "-"
                for k in keys
            ]
            thr = res["thresholds"][name][label]
            lines.append(f"| {name} | {label} ({thr:.3g}) | " + " | ".join(cells) + " |")
    lines.append("\n## Messages per symbol per trading day, by series, at each detector's defaults\n")
    series_keys = [k for k in res["load"][REFERENCE]["default"] if k.startswith("series:")]
    lines.append("| detector | " + " | ".join(k.split(":", 1)[1] for k in series_keys) + " |")
    lines.append("|---|" + "---:|" * len(series_keys))
    for name in (REFERENCE, "shipped, no session profiles", BEST):
        table = res["load"][name]["default"]
        lines.append(f"| {name} | " + " | ".join(f"{table[k]['msgs_per_symbol_day']:.2f}" for k in series_keys) + " |")
    for label in ("equal_far", "budget_1", "default"):
        lines.append(f"\n## Recall (chance) [precision] at {label}\n")
        cases = list(res["injected"])
        lines.append("| detector | " + " | ".join(cases) + " |")
        lines.append("|---|" + "---:|" * len(cases))
        for name in res["load"]:
            cells = []
            for case in cases:
                r = res["injected"][case][name].get(label)
                cells.append("-" if r is None else f"{fmt(r['recall'])} ({fmt(r['chance'])}) [{fmt(r['precision'])}]")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("\n## Mean delay (bars) at equal_far\n")
    cases = list(res["injected"])
    lines.append("| detector | " + " | ".join(cases) + " |")
    lines.append("|---|" + "---:|" * len(cases))
    for name in res["load"]:
        cells = [fmt(res["injected"][c][name]["equal_far"]["mean_delay"]) for c in cases]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, by_series in res["top_alerts"].items():
        lines.append(f"\n## Top alerts: {name}\n")
        for sid, alerts in by_series.items():
            for a in alerts:
                closes = " ".join(f"{c['c']:.6g}" for c in a["context"])
                bp = {k: "-" if a[k] is None else f"{a[k]:.1f}" for k in ("ret_bp", "next_ret_bp")}
                vol = "-" if a["volume_vs_median30"] is None else f"{a['volume_vs_median30']:.3g}"
                lines.append(
                    f"- {sid} {a['ts'][:16]} {a['session']} score {a['score']:.3g} ret {bp['ret_bp']} bp, next "
                    f"{bp['next_ret_bp']} bp, vol x{vol}: {a['judgement']} | closes {closes}"
                )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="also write every number here")
    args = parser.parse_args()
    res = evaluate(args.seeds, log=lambda m: print(m, file=sys.stderr, flush=True))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=float))
    print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
