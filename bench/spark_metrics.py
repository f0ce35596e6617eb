"""`spark` section: the full metric set on the standalone cluster, Rust Arrow UDFs vs applyInPandas vs native
Spark SQL windows (see bench/spark_metrics_job.py). ≥ 1M bars over ≥ 500 symbols by default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import stack  # noqa: E402

SYMBOLS = int(os.environ.get("BENCH_SPARK_SYMBOLS", 500))
BARS_PER_SYMBOL = int(os.environ.get("BENCH_SPARK_BARS_PER_SYMBOL", 2000))


def run(settings: stack.Settings) -> list[dict]:
    env = {**os.environ, **settings.client_env(), **stack.spark_env(settings),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           # The benchmark may use the whole worker: 2 physical cores.
           "SPARK_APP_CORES": os.environ.get("BENCH_SPARK_CORES", "2"), "SPARK_EXECUTOR_MEMORY": "3g"}  # fmt: skip
    result = subprocess.run(
        [str(REPO / "scripts" / "submit.sh"), str(REPO / "bench" / "spark_metrics_job.py"), str(SYMBOLS),
         str(BARS_PER_SYMBOL)], env=env, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"spark bench failed:\n{result.stderr[-3000:]}")
    rows = []
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            rows.append({"section": "spark", "name": f"metrics over {r['rows']:,} bars, {SYMBOLS} symbols",
                         "impl": r["impl"], "value": r["rows_per_s"], "unit": "bars/s",
                         "notes": f"wall {r['seconds']:.1f}s (best of 2)"})  # fmt: skip
    return rows
