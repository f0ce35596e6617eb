"""Detector settings at run time: which metric windows and alert thresholds each symbol gets.

    scripts/submit.sh bars_job --detector-config config/detector.json     (or $SPARKTRENDS_DETECTOR_CONFIG)

The file names profiles (any `MetricsConfig` keyword: windows, lambda, gap, the *_warning/*_critical thresholds),
and says which symbols use which, by exact name or shell-style pattern (`*USDT`), first match wins; `default`
applies to the rest. Without a file the jobs run `ASSET_CLASSES` (below): crypto and unknown symbols the package
defaults, equities and futures their exchange's session. Every job that computes metrics
(bars, metrics, recompute) takes the same file, so a symbol's metrics are the same whichever job wrote them.

    {"profiles": {"crypto": {"price_z_warning": 6.0}, "equity": {"session": "America/New_York 09:30-16:00"}},
     "symbols": {"BTCUSDT": "crypto", "*USDT": "crypto", "AAPL": "equity"},
     "default": {}}
"""

from __future__ import annotations

import fnmatch
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sparktrends

ENV = "SPARKTRENDS_DETECTOR_CONFIG"

# The profiles the jobs run without a file: the detector's defaults for markets that never close (crypto, and the
# synthetic market), and regular hours for exchanges that do, so their open and close minutes and extended-hours
# prints are not alerted (measured on real bars: docs/detection_real.md). A symbol matches its exchange by the
# forms our sources use: Binance pairs (BTCUSDT), Finnhub and Twelve Data tickers (AAPL, AZN.L, 9988.HK), CME
# roots (ES, ESZ5). Plain 1-5 letter tickers are taken for US-listed equities; anything else runs around the clock.
ASSET_CLASSES: dict[str, Any] = {
    "profiles": {
        "crypto": {},
        "us_equity": {"session": "America/New_York 09:30-16:00"},
        "lse_equity": {"session": "Europe/London 08:00-16:30"},
        "hkex_equity": {"session": "Asia/Hong_Kong 09:30-12:00,13:00-16:00"},
        # Futures trade overnight: only the regular session's open and close minutes are muted.
        "cme_equity_index": {"session": "America/Chicago 08:30-15:15", "mute_outside_session": False},
    },
    "symbols": {
        **{pattern: "crypto" for pattern in ("*USDT", "*USDC", "*BTC", "*ETH", "*/*", "BINANCE:*")},
        **{pattern: "cme_equity_index" for pattern in ("ES", "ES[FGHJKMNQUVXZ][0-9]", "MES", "NQ", "MNQ")},
        "*.L": "lse_equity",
        "*.HK": "hkex_equity",
        **{"[A-Z]" * n: "us_equity" for n in range(1, 6)},
    },
    "default": {},
}


@dataclass(frozen=True)
class DetectorProfiles:
    """Profiles by name, (pattern, profile) rules in order, and the default settings; plain dicts, so they pickle
    to the executors."""

    profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    rules: tuple[tuple[str, str], ...] = ()
    default: Mapping[str, Any] = field(default_factory=dict)

    def settings_for(self, symbol: str) -> dict[str, Any]:
        """The MetricsConfig keywords of `symbol`: its profile's, else the default's."""
        for pattern, profile in self.rules:
            if symbol == pattern or fnmatch.fnmatchcase(symbol, pattern):
                return dict(self.profiles[profile])
        return dict(self.default)

    def warmup_bars(self) -> int:
        """The most stored history any profile needs before its first computed bar (MetricsConfig.warmup_bars)."""
        settings = [*self.profiles.values(), self.default]
        return max(sparktrends.MetricsConfig(**s).warmup_bars for s in settings)

    def profile_of(self, symbol: str) -> str:
        """The name of `symbol`'s profile, `default` when no rule matches."""
        return next((p for pattern, p in self.rules if symbol == pattern or fnmatch.fnmatchcase(symbol, pattern)),
                    "default")  # fmt: skip


def parse(document: Mapping[str, Any]) -> DetectorProfiles:
    """Validated profiles: every setting must make a valid MetricsConfig, every rule name a profile."""
    profiles = {name: dict(settings) for name, settings in document.get("profiles", {}).items()}
    default = dict(document.get("default", {}))
    for name, settings in [*profiles.items(), ("default", default)]:
        try:
            sparktrends.MetricsConfig(**settings)
        except (TypeError, ValueError) as err:
            raise ValueError(f"detector profile {name!r}: {err}") from None
    rules = tuple((str(pattern), str(name)) for pattern, name in document.get("symbols", {}).items())
    unknown = sorted({name for _, name in rules} - set(profiles))
    if unknown:
        raise ValueError(f"detector config: symbols refer to undefined profiles {unknown}")
    return DetectorProfiles(profiles, rules, default)


def load(path: str | None = None) -> DetectorProfiles:
    """The profiles of `path` (default $SPARKTRENDS_DETECTOR_CONFIG); the asset-class profiles without one."""
    path = path or os.environ.get(ENV)
    if not path:
        return parse(ASSET_CLASSES)
    return parse(json.loads(Path(path).read_text()))


def add_argument(parser: Any) -> None:
    """The jobs' `--detector-config` option (an argparse parser)."""
    parser.add_argument(
        "--detector-config",
        default=None,
        help=f"JSON file of detector profiles per symbol (default ${ENV}; none: the package defaults)",
    )
