#!/usr/bin/env bash
# spark-submit one job of spark_jobs/ to the standalone master. The runner container and the local stack
# both go through this script, so a job runs the same way in either.
#   scripts/submit.sh <job module> [job args...]      e.g. scripts/submit.sh smoke_kafka_to_postgres --topic T
#   scripts/submit.sh path/to/driver.py [args...]     a driver outside spark_jobs/ (benchmarks)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
job="${1:?usage: submit.sh <job> [args...]}"; shift
master="${SPARK_MASTER_URL:-spark://127.0.0.1:7077}"
case "$master" in spark://*) ;; *) echo "submit: SPARK_MASTER_URL must be spark://... (got $master)" >&2; exit 2;; esac

stack_dir="${SPARKTRENDS_STACK_DIR:-$repo/.stack}"
# spark-submit reads the cluster's RPC authentication (spark.authenticate and its secret) from
# $SPARK_CONF_DIR/spark-defaults.conf: a file, never a --conf flag, so the secret stays out of `ps`. Compose sets
# SPARK_CONF_DIR to its volume; by default it is the local stack's (scripts/stack.py spark_env).
export SPARK_CONF_DIR="${SPARK_CONF_DIR:-$stack_dir/conf/spark}"

# The jobs package travels to the executors as a zip; built fresh so the cluster runs the code on disk.
pkg_dir="$stack_dir/submit"
mkdir -p "$pkg_dir"
zip_path="$pkg_dir/spark_jobs.zip"
(cd "$repo" && python3 - "$zip_path" <<'PY'
import sys, zipfile, pathlib
with zipfile.ZipFile(sys.argv[1], "w") as z:
    for p in sorted(pathlib.Path("spark_jobs").rglob("*.py")):
        z.write(p)
PY
)
# The executors' JDBC driver reads the database password from PGPASSFILE (a path, not the secret; spark_jobs/common.py
# jdbc_options leaves the password out when the file exists).
# Each application takes a few of the worker's slots, so the pipeline's streaming jobs run side by side; few
# shuffle partitions because a 2-core cluster pays per task (2 rather than 6 cut a live bars batch from ~1 s to
# ~0.6 s), and a stateful query keeps this number for life. Executor logs roll at 10 MB, five kept: a streaming job
# runs for weeks. Each driver's UI serves Spark's metrics for Prometheus at /metrics/prometheus/ (with every streaming
# query's input and processing rates, batch latency and watermark) and executors' at /metrics/executors/prometheus/.
# JVMs compile with C1 only (TieredStopAtLevel=1): a streaming query generates fresh classes every micro-batch (its
# watermark and batch values are literals in the generated code), so C2 kept recompiling for the job's whole life;
# in a backlog drain the JIT threads took about a fifth of the machine's CPU (docs/decisions.md, issue 16).
jvm_options="-Duser.timezone=UTC -XX:TieredStopAtLevel=1"
exec spark-submit --master "$master" --py-files "$zip_path" \
  --conf "spark.sql.session.timeZone=UTC" \
  --conf "spark.driver.extraJavaOptions=$jvm_options" \
  --conf "spark.executor.extraJavaOptions=$jvm_options" \
  --conf "spark.cores.max=${SPARK_APP_CORES:-2}" \
  --conf "spark.executor.memory=${SPARK_EXECUTOR_MEMORY:-1g}" \
  --conf "spark.sql.shuffle.partitions=${SPARK_SHUFFLE_PARTITIONS:-2}" \
  --conf "spark.executor.logs.rolling.strategy=size" \
  --conf "spark.executor.logs.rolling.maxSize=10485760" \
  --conf "spark.executor.logs.rolling.maxRetainedFiles=5" \
  --conf "spark.sql.streaming.metricsEnabled=true" \
  --conf "spark.ui.prometheus.enabled=true" \
  --conf "spark.metrics.conf.*.sink.prometheusServlet.class=org.apache.spark.metrics.sink.PrometheusServlet" \
  --conf "spark.metrics.conf.*.sink.prometheusServlet.path=/metrics/prometheus" \
  ${PGPASSFILE:+--conf "spark.executorEnv.PGPASSFILE=$PGPASSFILE"} \
  ${SPARK_SUBMIT_OPTS_EXTRA:-} \
  "$(case "$job" in *.py) echo "$job";; *) echo "$repo/spark_jobs/$job.py";; esac)" "$@"
