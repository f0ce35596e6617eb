"""Detector settings at run time: which metric windows and alert thresholds each symbol gets.

    scripts/submit.sh metrics_job --detector-config config/detector.json     (or $SPARKTRENDS_DETECTOR_CONFIG)

The file names profiles (any `MetricsConfig` keyword: windows, lambda, gap, the *_warning/*_critical thresholds),
and says which symbols use which, by exact name or shell-style pattern (`*USDT`), first match wins; `default`
applies to the rest. Without a file every symbol runs the package defaults. Every job that computes metrics
(bars, metrics, recompute) takes the same file, so a symbol's metrics are the same whichever job wrote them.

    {"profiles": {"crypto": {"price_z_warning": 6.0}, "equity": {"volume_z_warning": 5.0}},
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
    """The profiles of `path` (default $SPARKTRENDS_DETECTOR_CONFIG); the package defaults without one."""
    path = path or os.environ.get(ENV)
    if not path:
        return DetectorProfiles()
    return parse(json.loads(Path(path).read_text()))


def add_argument(parser: Any) -> None:
    """The jobs' `--detector-config` option (an argparse parser)."""
    parser.add_argument(
        "--detector-config",
        default=None,
        help=f"JSON file of detector profiles per symbol (default ${ENV}; none: the package defaults)",
    )
