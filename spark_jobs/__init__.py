"""SparkTrends Spark jobs, spark-submitted to the standalone cluster by scripts/submit.sh."""
