# SparkTrends developer entry points. Everything installs itself: a fresh Debian 12 machine needs only
# `make run` (the pipeline on the local stack) and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python
STACK := $(PY) scripts/stack.py

.PHONY: setup wheel up down status logs run bench chaos test unit lint fmt clean

setup:            ## system packages, .venv, Kafka broker classpath, Spark connector jars
	@bash scripts/bootstrap.sh

wheel: setup      ## build the abi3 wheel (maturin) and install it into .venv
	@bash scripts/build_wheel.sh

up: setup wheel   ## start PostgreSQL, Kafka (KRaft) and the Spark standalone cluster on loopback
	@$(STACK) up

down:             ## stop everything `make up` started
	@$(STACK) down

status:           ## one line per service: state, pid, endpoint (exit 1 if any is down)
	@$(STACK) status

logs:             ## last lines of every service log (make logs SERVICE=kafka FOLLOW=1)
	@$(STACK) logs $(SERVICE) $(if $(FOLLOW),-f)

run: up           ## the pipeline on the local stack: synthetic market (or SOURCE=binance|...) -> ... -> alerts
	@$(PY) scripts/pipeline.py --source $(or $(SOURCE),synthetic) $(if $(FOR),--for $(FOR)) -- $(ARGS)

bench: wheel      ## every benchmark section side by side; JSON + markdown in .bench/ (make bench SECTIONS=kernels)
	@$(PY) bench/run.py $(SECTIONS)

chaos: up         ## faults under a live market (kill -9 drivers, ingest, alerter, Spark master; PostgreSQL, Kafka, worker restarts; poison), every row checked; ~15 min
	@$(PY) bench/chaos.py

test:             ## install, build, lint, start the stack, run Rust tests and pytest, stop the stack
	@bash scripts/test.sh

unit: wheel       ## the tests that need no stack (contract parity, job logic on a local SparkSession, kernels), ~1 min
	@PATH="$(CURDIR)/.venv/bin:$$PATH" $(PY) -m pytest -m "not stack"

lint: setup       ## cargo fmt --check, clippy -D warnings, ruff
	@bash scripts/lint.sh

fmt:
	cargo fmt --all
	.venv/bin/ruff format python spark_jobs scripts tests bench
	.venv/bin/ruff check --fix python spark_jobs scripts tests bench

clean: down
	rm -rf .stack target/wheels
