#!/usr/bin/env bash
# Build the sparktrends abi3 wheel with maturin and install it into .venv: the same file the Spark image
# installs, so executors import exactly what the tests import.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${CARGO_TARGET_DIR:-target}/wheels"
rm -f "$out"/sparktrends-*.whl
source scripts/progress.sh
# A cold release build of the kernels takes minutes on a fresh machine; `long` says so while it runs.
long "wheel: maturin build (release)" .venv/bin/maturin build --release --quiet --out "$out"
wheel=$(ls "$out"/sparktrends-*.whl)
.venv/bin/pip install --quiet --force-reinstall --no-deps "$wheel"
echo "wheel: installed $(basename "$wheel")"
