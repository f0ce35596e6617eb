"""Coercion of user-supplied configuration into the native ``MetricsConfig``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

from sparktrends._native import MetricsConfig

ConfigLike = Union[MetricsConfig, Mapping[str, Any], None]


def as_config(config: ConfigLike) -> MetricsConfig:
    """Return ``config`` as a ``MetricsConfig``.

    ``None`` gives the defaults; a mapping overrides them by keyword (``window``, ``min_periods``,
    ``lam``, ``max_gap_minutes``, ``regime_window`` and the ``*_warning``/``*_critical``
    thresholds). The thresholds may also be nested under a ``"thresholds"`` key. Unknown keys raise
    ``TypeError``; values that make a metric meaningless raise ``ValueError``.
    """
    if config is None:
        return MetricsConfig()
    if isinstance(config, MetricsConfig):
        return config
    if isinstance(config, Mapping):
        flat = dict(config)
        nested = flat.pop("thresholds", None)
        if nested is not None:
            if not isinstance(nested, Mapping):
                raise TypeError(f"config['thresholds'] must be a mapping, got {type(nested).__name__}")
            clash = set(nested) & set(flat)
            if clash:
                raise ValueError(f"thresholds given twice: {sorted(clash)}")
            flat.update(nested)
        return MetricsConfig(**flat)
    raise TypeError(f"config must be a MetricsConfig, a mapping or None, got {type(config).__name__}")
