"""The jars Spark needs on top of its own (Kafka connector, token provider, kafka-clients, commons-pool2,
PostgreSQL JDBC), fetched from Maven Central and checked against versions.env's SHA-256 sums.

One code path for both places that need them:
    local stack:   scripts/stack.py deps   -> cached, then copied into pyspark's jars/ folder
    Docker image:  python3 jars.py fetch /opt/spark/jars   (spark-image/Dockerfile)
"""

from __future__ import annotations

import hashlib
import re
import sys
import urllib.request
from pathlib import Path

MAVEN_CENTRAL = "https://repo.maven.apache.org/maven2"
PINS_FILE = Path(__file__).resolve().parent.parent / "versions.env"


class JarError(RuntimeError):
    pass


def read_pins(path: Path = PINS_FILE) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pins[key.strip()] = value.strip()
    return pins


def connector_artifacts(pins: dict[str, str]) -> list[tuple[str, str, str]]:
    """(group, artifact, version) of every jar added to Spark's classpath."""
    scala, spark = pins["SCALA_BINARY_VERSION"], pins["SPARK_VERSION"]
    return [
        ("org.apache.spark", f"spark-sql-kafka-0-10_{scala}", spark),
        ("org.apache.spark", f"spark-token-provider-kafka-0-10_{scala}", spark),
        ("org.apache.kafka", "kafka-clients", pins["KAFKA_CLIENTS_VERSION"]),
        ("org.apache.commons", "commons-pool2", pins["COMMONS_POOL2_VERSION"]),
        ("org.postgresql", "postgresql", pins["POSTGRES_JDBC_VERSION"]),
    ]


def sha_key(artifact: str) -> str:
    """versions.env key of a jar's SHA-256, e.g. spark-sql-kafka-0-10_2.13 -> SHA256_SPARK_SQL_KAFKA."""
    base = re.sub(r"(-0-10)?_\d+\.\d+$", "", artifact)
    return "SHA256_" + re.sub(r"[^A-Za-z0-9]", "_", base).upper()


def jar_name(artifact: str, version: str) -> str:
    return f"{artifact}-{version}.jar"


def jar_url(group: str, artifact: str, version: str) -> str:
    return f"{MAVEN_CENTRAL}/{group.replace('.', '/')}/{artifact}/{version}/{jar_name(artifact, version)}"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(dest: Path, pins: dict[str, str] | None = None) -> list[Path]:
    """Download the missing jars into `dest` and verify every one; a mismatch is an error, never a warning."""
    pins = pins or read_pins()
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for group, artifact, version in connector_artifacts(pins):
        path = dest / jar_name(artifact, version)
        expected = pins.get(sha_key(artifact))
        if expected is None:
            raise JarError(f"versions.env has no {sha_key(artifact)} for {path.name}")
        if not path.exists():
            partial = path.with_suffix(".part")
            with urllib.request.urlopen(jar_url(group, artifact, version), timeout=60) as resp:
                partial.write_bytes(resp.read())
            partial.rename(path)
        actual = sha256(path)
        if actual != expected:
            path.unlink()
            raise JarError(f"{path.name}: sha256 {actual} does not match versions.env {sha_key(artifact)}={expected}")
        paths.append(path)
    return paths


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "fetch":
        print("usage: jars.py fetch DEST_DIR", file=sys.stderr)
        return 2
    try:
        for path in fetch(Path(argv[1])):
            print(f"jars: {path} verified")
    except JarError as err:
        print(f"jars: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
