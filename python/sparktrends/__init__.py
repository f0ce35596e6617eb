"""SparkTrends analytics: Rust kernels exposed to Python and PySpark over Arrow.

- :func:`compute_metrics` / :func:`compute_metrics_with_carry`: one symbol's bars → metrics.
- :func:`make_apply_in_arrow`, :func:`make_map_in_arrow` (and the default-config
  :func:`apply_in_arrow`, :func:`map_in_arrow`): functions for Spark's ``applyInArrow`` and
  ``mapInArrow``.
- :data:`METRICS_SCHEMA` (and :func:`metrics_ddl` for Spark): the output schema, defined once in
  the Rust binding.
- :class:`MetricsConfig`: every window, λ, gap and alert threshold, defaults from the Rust core.
"""

from sparktrends._native import CarryState, MetricsConfig, MetricsStream, __version__
from sparktrends.metrics import (
    METRICS_SCHEMA,
    SERIES_METRICS_SCHEMA,
    compute_metrics,
    compute_metrics_with_carry,
)
from sparktrends.spark import (
    apply_in_arrow,
    apply_in_arrow_with,
    make_apply_in_arrow,
    make_map_in_arrow,
    map_in_arrow,
    map_in_arrow_with,
    metrics_ddl,
)

__all__ = [
    "METRICS_SCHEMA",
    "SERIES_METRICS_SCHEMA",
    "CarryState",
    "MetricsConfig",
    "MetricsStream",
    "__version__",
    "apply_in_arrow",
    "apply_in_arrow_with",
    "compute_metrics",
    "compute_metrics_with_carry",
    "make_apply_in_arrow",
    "make_map_in_arrow",
    "map_in_arrow",
    "map_in_arrow_with",
    "metrics_ddl",
]
