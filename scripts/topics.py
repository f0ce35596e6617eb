"""Create the Kafka topics of contracts/topics.json that do not exist yet (idempotent).

Used by the local stack (scripts/stack.py up) and by the compose `topic-init` step, so both brokers get
the same topics, partitions and configs. KAFKA_BOOTSTRAP names the broker.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

TOPICS_FILE = Path(__file__).resolve().parent.parent / "contracts" / "topics.json"


def topic_specs() -> list[dict]:
    return json.loads(TOPICS_FILE.read_text())["topics"]


def create_topics(bootstrap: str, replication_factor: int = 1) -> list[str]:
    """Create the missing topics; returns the names created."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=30).topics)
    wanted = [
        NewTopic(t["name"], num_partitions=t["partitions"], replication_factor=replication_factor, config=t["config"])
        for t in topic_specs()
        if t["name"] not in existing
    ]
    if not wanted:
        return []
    for future in admin.create_topics(wanted, operation_timeout=30).values():
        future.result()
    return [t.topic for t in wanted]


def main() -> int:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    created = create_topics(bootstrap, int(os.environ.get("KAFKA_REPLICATION_FACTOR", "1")))
    print(f"topics: created {', '.join(created)}" if created else f"topics: all {len(topic_specs())} present")
    return 0


if __name__ == "__main__":
    sys.exit(main())
