#!/usr/bin/env bash
# Style gates: rustfmt, clippy with warnings as errors, ruff (lint + format check).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
.venv/bin/ruff check python spark_jobs dashboard scripts tests bench
.venv/bin/ruff format --check python spark_jobs dashboard scripts tests bench
echo "lint: ok"
