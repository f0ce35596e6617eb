"""What every job shares: the session, connection settings from the environment, JDBC options."""

from __future__ import annotations

import os

from pyspark.sql import SparkSession


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise SystemExit(f"missing environment variable {name}")
    return value


def spark_session(app_name: str) -> SparkSession:
    """The master comes from spark-submit (--master spark://...), never from code: jobs never pick local[*]."""
    spark = SparkSession.builder.appName(app_name).getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "WARN"))
    return spark


def kafka_bootstrap() -> str:
    return env("KAFKA_BOOTSTRAP", "127.0.0.1:9092")


def jdbc_url() -> str:
    host, port = env("POSTGRES_HOST", "127.0.0.1"), env("POSTGRES_PORT", "5432")
    return f"jdbc:postgresql://{host}:{port}/{env('POSTGRES_DB', 'sparktrends')}"


def jdbc_options() -> dict[str, str]:
    """JDBC options; the password travels as an option (Spark redacts it in plans and UIs), never in the URL."""
    return {
        "url": jdbc_url(),
        "user": env("POSTGRES_USER", "sparktrends"),
        "password": env("POSTGRES_PASSWORD"),
        "driver": "org.postgresql.Driver",
    }
