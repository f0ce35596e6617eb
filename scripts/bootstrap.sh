#!/usr/bin/env bash
# Installs what SparkTrends needs on a fresh Debian 12 machine, idempotently:
#   system: Java 17, Maven, PostgreSQL server (Debian packages) — only when missing;
#   Python: .venv with pyspark==$SPARK_VERSION (versions.env) and requirements-dev.txt;
#   JVM:    the Kafka broker classpath and the Spark connector/JDBC jars (scripts/stack.py deps).
set -euo pipefail
cd "$(dirname "$0")/.."
source versions.env

say() { printf 'bootstrap: %s\n' "$*"; }

missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
command -v cargo >/dev/null || { say "Rust (cargo) is required: install it with rustup"; exit 1; }
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's package starts a system cluster on 5432; ours is private, so leave theirs alone but quiet.
fi

PYTHON="${PYTHON:-python3}"
stamp=".venv/.bootstrap-$(cat versions.env requirements-*.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  say "creating .venv (pyspark==$SPARK_VERSION + requirements-dev.txt)"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q "pyspark==$SPARK_VERSION" -r requirements-dev.txt
  rm -f .venv/.bootstrap-*
  touch "$stamp"
fi

.venv/bin/python scripts/stack.py deps
say "ready"
