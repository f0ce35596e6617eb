"""Replay throughput of the ingest binary into the local Kafka: >= 1M synthetic trades from a Parquet file,
`--speed 0`, measured from the first message sent to the last one acknowledged (acks=all, idempotent).

    python bench/ingest_replay.py            # against the stack of the current environment (KAFKA_PORT, ...)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import cargo_bin  # noqa: E402

MINUTES = 720  # 50 symbols x ~30 trades/min x 720 min ~ 1.08M trades
SYMBOLS = 50
TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")


def log_time(line: str) -> float:
    stamp = TIMESTAMP.match(line)
    if not stamp:
        raise ValueError(f"no timestamp in {line!r}")
    return datetime.fromisoformat(stamp.group(1)[:26]).timestamp()


def line_with(log: str, text: str) -> str:
    return next(line for line in log.splitlines() if text in line)


def run(stack_settings) -> list[dict]:  # noqa: ANN001 - scripts/stack.py Settings
    from confluent_kafka.admin import AdminClient, NewTopic

    binary = cargo_bin.build("sparktrends-ingest")
    bootstrap = stack_settings.kafka_bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topic = f"bench.trades.{uuid.uuid4().hex[:8]}"
    deadletter = f"bench.deadletter.{uuid.uuid4().hex[:8]}"
    for name, partitions in [(topic, 6), (deadletter, 1)]:
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result()
    env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap, "RUST_LOG": "info"}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            trades_file = Path(tmp) / "trades.parquet"
            subprocess.run(
                [
                    str(binary),
                    "synthetic",
                    "--num-symbols",
                    str(SYMBOLS),
                    "--start",
                    "2024-01-02T00:00:00Z",
                    "--minutes",
                    str(MINUTES),
                    "--trades-out",
                    str(trades_file),
                ],
                env=env,
                check=True,
                capture_output=True,
            )
            started = time.monotonic()
            result = subprocess.run(
                [
                    str(binary),
                    "replay",
                    str(trades_file),
                    "--kind",
                    "trades",
                    "--speed",
                    "0",
                    "--trades-topic",
                    topic,
                    "--deadletter-topic",
                    deadletter,
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            wall = time.monotonic() - started
        log = result.stderr
        if result.returncode != 0:
            raise RuntimeError(f"replay exited {result.returncode}:\n{log[-3000:]}")
        final = re.search(
            r"stopped: produced \d+ messages \(trades (\d+) in (\d+) messages.*delivered (\d+).*payload bytes (\d+)",
            log,
        )
        trades, messages, delivered, payload = (int(g) for g in final.groups())
        if trades < 1_000_000 or delivered != messages:
            raise RuntimeError(f"expected >= 1M trades all delivered: {messages} messages sent, {delivered} delivered")
        # From the first message queued to the last acknowledged: file loading is not ingest throughput.
        seconds = log_time(line_with(log, "stopped: produced")) - log_time(line_with(log, "replay: sending"))
        return [
            {
                "section": "ingest",
                "name": "replay trades -> kafka",
                "value": round(trades / seconds),
                "unit": "trades/s",
                "mb_per_s": round(payload / seconds / 1e6, 1),
                "trades": trades,
                "messages": messages,
                "seconds": round(seconds, 2),
                "process_wall_s": round(wall, 2),
                "settings": "acks=all, idempotent, lz4, linger 5 ms, batch 1 MB, 6 partitions; trades in trade batches "
                "(ingest's defaults, contracts/messages.json trade.batch: up to 200 trades of a symbol or 250 ms "
                "per message)",
            }
        ]
    finally:
        for future in admin.delete_topics([topic, deadletter]).values():
            future.result()


if __name__ == "__main__":
    import stack

    for row in run(stack.settings()):
        print(json.dumps(row))
