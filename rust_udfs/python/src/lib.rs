//! The `sparktrends._native` extension module: a thin layer over `sparktrends-core`.

use pyo3::prelude::*;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", sparktrends_core::VERSION)?;
    Ok(())
}
