//! Market analytics kernels for SparkTrends, over plain column slices.
//!
//! No Python or Arrow types here: the binding crate (`sparktrends-py`) adapts Arrow arrays
//! to these slices, so the math is tested and benchmarked on its own.

/// Crate version, surfaced by the Python package for diagnostics.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
