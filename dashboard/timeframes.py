"""Timeframes of the read API and how a symbol's bars roll up into them.

Rollups are computed from `bars_1m` when they are read, so they are always current: a 1-minute bar that arrives
late or is repaired changes its 5m, 15m, 1h and 1d bars at once, and every rollup bar is by construction the
aggregate of its minutes (tests/stack/test_dashboard.py holds it to a Python aggregation). Intraday buckets are
aligned to the UTC epoch. A daily bar follows the symbol's asset-class profile (spark_jobs/detector_profiles):
- no session (crypto, the synthetic market): the UTC day, every minute;
- a session whose outside hours are muted (equities): the exchange's local date, regular-session minutes only, as
  an exchange's official daily bar (pre- and post-market prints are not in it);
- a session traded around the clock (CME futures): the exchange's local date, every minute.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MINUTES = {"1m": 1, "5m": 5, "15m": 15, "1h": 60, "1d": 1440}
TIMEFRAMES = tuple(MINUTES)

# Trading days a year of a market that closes at weekends (equities, futures).
TRADING_DAYS = 252
# Minutes a day CME Globex trades (17:00-16:00 Chicago): a futures profile's session is its regular hours only.
AROUND_THE_CLOCK_WEEKDAY_MINUTES = 23 * 60


@dataclass(frozen=True)
class DailySession:
    """How a profile's minutes make daily bars: the time zone whose date names the day, and the local windows
    (minutes after midnight, [open, close)) a minute must fall in; no windows: every minute counts."""

    zone: str
    windows: tuple[tuple[int, int], ...]


def parse_session(spec: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """'America/New_York 09:30-16:00[,HH:MM-HH:MM]' -> zone and [open, close) windows in local minutes."""
    zone, hours = spec.split(maxsplit=1)

    def minute(hhmm: str) -> int:
        hh, mm = hhmm.strip().split(":")
        return int(hh) * 60 + int(mm)

    windows = tuple((minute(a), minute(b)) for a, b in (w.split("-") for w in hours.split(",")))
    return zone, windows


def daily_session(settings: dict[str, Any]) -> DailySession:
    """The daily-bar rule of a profile's MetricsConfig settings (see the module docstring)."""
    spec = settings.get("session")
    if not spec:
        return DailySession("UTC", ())
    zone, windows = parse_session(spec)
    if settings.get("mute_outside_session", True):
        return DailySession(zone, windows)
    return DailySession(zone, ())


def minutes_per_year(settings: dict[str, Any]) -> float:
    """Trading minutes in a year of a profile: what annualises a per-minute volatility at presentation."""
    spec = settings.get("session")
    if not spec:
        return 365.0 * 1440
    if not settings.get("mute_outside_session", True):
        return float(TRADING_DAYS * AROUND_THE_CLOCK_WEEKDAY_MINUTES)
    _, windows = parse_session(spec)
    return float(TRADING_DAYS * sum(close - open_ for open_, close in windows))
