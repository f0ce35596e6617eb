"""Driver of the `spark` benchmark section (spark-submitted to the standalone cluster by bench/spark_metrics.py).

The same bars, three ways, each forced to completion with the `noop` sink and timed:
  rust    groupBy(symbol).applyInArrow(sparktrends.apply_in_arrow): the full metric set
  pandas  groupBy(symbol).applyInPandas(idiomatic pandas rolling windows): the full metric set
  sql     native Spark SQL window functions: the subset SQL can express (no EWMA recursion, no rolling
          median/MAD, no Yang-Zhang); a lower bound for that approach
Prints one JSON line per measurement.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
from pyspark.sql import SparkSession, Window
from pyspark.sql import functions as F

import sparktrends

N, M = 30, 10
LN2 = float(np.log(2.0))


def make_bars(symbols: int, bars_per_symbol: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frames = []
    start = np.datetime64("2026-01-05T00:00:00", "us")
    ts = start + np.arange(bars_per_symbol).astype("timedelta64[m]")
    for i in range(symbols):
        ret = rng.normal(0, 1e-3, bars_per_symbol)
        close = 100 * np.exp(np.cumsum(ret))
        open_ = np.concatenate([[100.0], close[:-1]])
        spread = np.abs(rng.normal(0, 5e-4, bars_per_symbol))
        frames.append(pd.DataFrame({
            "symbol": f"S{i:04d}", "ts": ts, "open": open_, "high": np.maximum(open_, close) * (1 + spread),
            "low": np.minimum(open_, close) * (1 - spread), "close": close,
            "volume": rng.lognormal(3, 0.5, bars_per_symbol),
        }))  # fmt: skip
    df = pd.concat(frames, ignore_index=True)
    df["ts"] = df["ts"].dt.tz_localize("UTC")
    return df


def pandas_metrics(g: pd.DataFrame) -> pd.DataFrame:
    """The metric set in idiomatic pandas (vectorised rolling windows; MAD through rolling().apply)."""
    g = g.sort_values("ts")
    c, o, h, low, v = g["close"], g["open"], g["high"], g["low"], g["volume"]
    lr = np.log(c / c.shift())
    roll = lr.rolling(N, min_periods=M)
    vol_cc = roll.std()
    lam = 0.94
    ewma = (lr**2).ewm(alpha=1 - lam, adjust=False).mean() ** 0.5
    hl, co = np.log(h / low), np.log(c / o)
    park = ((hl**2).rolling(N, min_periods=M).mean() / (4 * LN2)) ** 0.5
    gk = ((0.5 * hl**2 - (2 * LN2 - 1) * co**2).rolling(N, min_periods=M).mean()).clip(lower=0) ** 0.5
    rs_term = np.log(h / c) * np.log(h / o) + np.log(low / c) * np.log(low / o)
    rs = rs_term.rolling(N, min_periods=M).mean().clip(lower=0) ** 0.5
    oc = np.log(o / c.shift())
    k = 0.34 / (1.34 + (N + 1) / (N - 1))
    yz = (oc.rolling(N, min_periods=M).var() + k * co.rolling(N, min_periods=M).var() + (1 - k) * rs**2) ** 0.5
    typical = (h + low + c) / 3
    vwap_roll = (typical * v).rolling(N, min_periods=M).sum() / v.rolling(N, min_periods=M).sum()
    med = roll.median().shift()
    mad = roll.apply(lambda w: np.median(np.abs(w - np.median(w))), raw=True).shift()
    lv = np.log1p(v)
    volume_z = (lv - lv.rolling(N, min_periods=M).mean().shift()) / lv.rolling(N, min_periods=M).std().shift()
    return_z = lr / vol_cc.shift()
    robust_z = (lr - med) / (1.4826 * mad)
    score = pd.concat([np.fmin(robust_z.abs(), return_z.abs()) / 4.5, volume_z / 4.0], axis=1).max(axis=1)
    return pd.DataFrame({
        "symbol": g["symbol"], "ts": g["ts"], "ret": c / c.shift() - 1, "log_ret": lr, "vol_cc": vol_cc,
        "vol_ewma": ewma, "vol_parkinson": park, "vol_gk": gk, "vol_rs": rs, "vol_yz": yz, "vwap_roll": vwap_roll,
        "vwap_dev": (c - vwap_roll) / vwap_roll, "volume_z": volume_z, "return_z": return_z, "robust_z": robust_z,
        "anomaly_score": score, "is_anomaly": score >= 1,
    })  # fmt: skip


PANDAS_SCHEMA = (
    "symbol string, ts timestamp, ret double, log_ret double, vol_cc double, vol_ewma double, "
    "vol_parkinson double, vol_gk double, vol_rs double, vol_yz double, vwap_roll double, vwap_dev double, "
    "volume_z double, return_z double, robust_z double, anomaly_score double, is_anomaly boolean"
)


def sql_metrics(bars):  # noqa: ANN001, ANN201 (pyspark DataFrames)
    w = Window.partitionBy("symbol").orderBy("ts")
    frame = w.rowsBetween(-(N - 1), 0)
    prior = w.rowsBetween(-N, -1)
    lr = F.log(F.col("close") / F.lag("close").over(w))
    df = bars.withColumn("log_ret", lr).withColumn("lv", F.log1p("volume"))
    df = df.withColumn("hl2", F.pow(F.log(F.col("high") / F.col("low")), 2)).withColumn(
        "co", F.log(F.col("close") / F.col("open"))
    )
    vol_cc = F.stddev("log_ret").over(frame)
    return df.select(
        "symbol", "ts",
        (F.col("close") / F.lag("close").over(w) - 1).alias("ret"), "log_ret",
        vol_cc.alias("vol_cc"),
        F.sqrt(F.avg("hl2").over(frame) / (4 * LN2)).alias("vol_parkinson"),
        F.sqrt(F.greatest(F.lit(0.0), F.avg(0.5 * F.col("hl2") - (2 * LN2 - 1) * F.col("co") ** 2).over(frame)))
        .alias("vol_gk"),
        (F.sum(F.col("volume") * (F.col("high") + F.col("low") + F.col("close")) / 3).over(frame)
         / F.sum("volume").over(frame)).alias("vwap_roll"),
        (F.col("log_ret") / F.stddev("log_ret").over(prior)).alias("return_z"),
        ((F.col("lv") - F.avg("lv").over(prior)) / F.stddev("lv").over(prior)).alias("volume_z"),
    )  # fmt: skip


def timed(label: str, df, rows: int, runs: int = 2) -> None:  # noqa: ANN001
    """Best of `runs`: the first run also pays for Python worker start-up and imports."""
    seconds = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        df.write.format("noop").mode("overwrite").save()
        seconds = min(seconds, time.perf_counter() - started)
    print(json.dumps({"impl": label, "rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}), flush=True)


def main() -> None:
    symbols, per_symbol = int(sys.argv[1]), int(sys.argv[2])
    spark = SparkSession.builder.appName("sparktrends-bench-metrics").getOrCreate()
    spark.conf.set("spark.sql.ansi.enabled", "false")  # the SQL variant divides by zero on flat windows
    pdf = make_bars(symbols, per_symbol)
    bars = spark.createDataFrame(pa.Table.from_pandas(pdf, preserve_index=False).to_pandas())
    bars = bars.repartition(spark.sparkContext.defaultParallelism * 2, "symbol").cache()
    rows = bars.count()
    print(f"bench: {rows:,} bars over {symbols} symbols, cached", file=sys.stderr, flush=True)
    timed("rust applyInArrow (full set)", bars.groupBy("symbol").applyInArrow(
        sparktrends.apply_in_arrow, sparktrends.metrics_ddl()), rows)  # fmt: skip
    timed("pandas applyInPandas (full set)", bars.groupBy("symbol").applyInPandas(pandas_metrics, PANDAS_SCHEMA), rows)
    timed("spark sql windows (subset)", sql_metrics(bars), rows)
    spark.stop()


if __name__ == "__main__":
    main()
