"""The local stack's KRaft cluster id: one random id in 64 encodes to a string starting with "-", which
kafka-storage's argument parser reads as an option (a CI run failed on exactly that at `stack up`)."""

from __future__ import annotations

import base64
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import stack

# 0xf8 as the first byte encodes to a leading "-" in URL-safe base64.
DASH_LEADING = uuid.UUID(bytes=bytes([0xF8]) + bytes(15))
PLAIN = uuid.UUID(bytes=bytes([0x10]) + bytes(15))


def test_an_id_that_would_read_as_an_option_is_drawn_again(monkeypatch):
    assert base64.urlsafe_b64encode(DASH_LEADING.bytes).decode().startswith("-")
    draws = iter([DASH_LEADING, DASH_LEADING, PLAIN])
    monkeypatch.setattr(stack.uuid, "uuid4", lambda: next(draws))

    cluster_id = stack.new_kafka_cluster_id()

    assert cluster_id == base64.urlsafe_b64encode(PLAIN.bytes).decode().rstrip("=")


def test_ids_are_22_character_uuids_kafka_accepts():
    for _ in range(2_000):
        cluster_id = stack.new_kafka_cluster_id()
        assert len(cluster_id) == 22 and not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16
