#!/usr/bin/env bash
# The test command (README quick start and .ci/run): install, build, lint, start the local stack, run the
# Rust tests and pytest against it, and stop the stack again even when tests fail (unless it was already up).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
step() { printf '\n=== %s (%ss)\n' "$*" "$(( $(date +%s) - start ))"; }

step "setup"; bash scripts/bootstrap.sh
step "wheel"; bash scripts/build_wheel.sh
step "lint"; bash scripts/lint.sh

step "stack up"
if .venv/bin/python scripts/stack.py status >/dev/null 2>&1; then
  echo "the stack was already up: leaving it running afterwards"
else
  trap 'step "stack down"; .venv/bin/python scripts/stack.py down' EXIT
  .venv/bin/python scripts/stack.py up
fi

source scripts/progress.sh
step "cargo test"
long "cargo test (build and run)" bash -c "set -o pipefail; cargo test --workspace --exclude sparktrends-py --quiet 2>&1 \
  | grep -vE '^\s*$'"
step "pytest"
PATH="$PWD/.venv/bin:$PATH" .venv/bin/python -m pytest ${PYTEST_ARGS:-}
step "done"
