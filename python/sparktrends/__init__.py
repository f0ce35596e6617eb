"""SparkTrends analytics: Rust kernels exposed to Python and PySpark over Arrow."""

from sparktrends._native import __version__

__all__ = ["__version__"]
