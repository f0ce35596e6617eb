#!/usr/bin/env bash
# Installs what SparkTrends needs on a fresh Debian 12 machine, idempotently:
#   system: Java 17, Maven, PostgreSQL server (Debian packages) — only when missing;
#   Python: .venv with pyspark==$SPARK_VERSION (versions.env) and requirements-dev.txt;
#   JVM:    the Kafka broker classpath and the Spark connector/JDBC jars (scripts/stack.py deps);
#   web:    the dashboard's charting library (npm ci from dashboard/package-lock.json, served locally, no CDN),
#           and Debian's Chromium for the browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source versions.env

say() { printf 'bootstrap: %s\n' "$*"; }
source scripts/progress.sh

missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
command -v npm >/dev/null || missing+=(npm)
command -v chromium >/dev/null || missing+=(chromium)
command -v cargo >/dev/null || { say "Rust (cargo) is required: install it with rustup"; exit 1; }
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  long "bootstrap: apt-get update" $SUDO apt-get update -qq
  long "bootstrap: apt-get install" bash -c 'DEBIAN_FRONTEND=noninteractive '"$SUDO"' apt-get install -y -qq \
    --no-install-recommends "$@" >/dev/null' _ "${missing[@]}"
  # Debian's package starts a system cluster on 5432; ours is private, so leave theirs alone but quiet.
fi

PYTHON="${PYTHON:-python3}"
stamp=".venv/.bootstrap-$(cat versions.env requirements-*.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  say "creating .venv (pyspark==$SPARK_VERSION + requirements-dev.txt)"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  long "bootstrap: pip install" .venv/bin/pip install -q "pyspark==$SPARK_VERSION" -r requirements-dev.txt
  rm -f .venv/.bootstrap-*
  touch "$stamp"
fi

web_stamp="dashboard/node_modules/.bootstrap-$(sha256sum dashboard/package-lock.json | cut -c1-16)"
if [ ! -f "$web_stamp" ]; then
  say "installing the dashboard's charting library (npm ci)"
  long "bootstrap: npm ci" bash -c 'npm ci --prefix dashboard --no-audit --no-fund --loglevel=error >/dev/null'
  touch "$web_stamp"
fi

.venv/bin/python scripts/stack.py deps
say "ready"
