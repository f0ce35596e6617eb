"""Driver for tests/stack/test_udfs_on_cluster.py: the package's applyInArrow and mapInArrow entry points on the
standalone cluster, over bars read from a Parquet file; results written to Parquet for the test to compare.

    submit.sh tests/stack/drivers/udf_entry_points.py BARS.parquet OUT_DIR
"""

from __future__ import annotations

import sys

from pyspark.sql import SparkSession

import sparktrends


def main() -> None:
    bars_path, out_dir = sys.argv[1], sys.argv[2]
    spark = (
        SparkSession.builder.appName("sparktrends-udf-entry-points")
        # Small Arrow batches, so every symbol straddles several of them in mapInArrow.
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "37")
        .getOrCreate()
    )
    bars = spark.read.parquet(bars_path)
    schema = sparktrends.metrics_ddl()
    applied = bars.groupBy("symbol").applyInArrow(sparktrends.make_apply_in_arrow(), schema)
    applied.write.mode("overwrite").parquet(f"{out_dir}/apply")
    streamed = (
        bars.repartition(3, "symbol")
        .sortWithinPartitions("symbol", "ts")
        .mapInArrow(sparktrends.make_map_in_arrow(), schema)
    )
    streamed.write.mode("overwrite").parquet(f"{out_dir}/map")
    spark.stop()


if __name__ == "__main__":
    main()
