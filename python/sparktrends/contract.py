"""The SparkTrends data contract, as the native module was built with it (contracts/*.json in the repository):
message fields and the names they may hold, reject codes and limits, which trade conditions update a bar,
metric columns, anomaly kinds and severities, and the Kafka topics.

The Rust contract crate generates its names from the same files and embeds them in this module, so Python
reads exactly the bytes the Rust admission rules were compiled from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from sparktrends import _native


@dataclass(frozen=True)
class Field:
    """One field of a message: its JSON type (text, symbol, int64, float64, text[]), whether it is required, and
    the names group its values must come from, if any."""

    name: str
    type: str
    required: bool
    names: str | None = None
    default: str | None = None
    doc: str = ""


@dataclass(frozen=True)
class Message:
    kind: str
    topic_prefix: str
    fields: tuple[Field, ...]

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]


@dataclass(frozen=True)
class RejectCode:
    code: str
    stage: str
    message: str


@cache
def files() -> dict[str, Any]:
    """Every contract file, parsed: {file name: JSON value}."""
    return {name: json.loads(text) for name, text in _native.contract_files().items()}


@cache
def messages() -> dict[str, Message]:
    """The messages of contracts/messages.json by kind (trade, bar, company, dead_letter)."""
    return {
        kind: Message(
            kind=kind,
            topic_prefix=spec["topic_prefix"],
            fields=tuple(
                Field(
                    name=f["name"],
                    type=f["type"],
                    required=f["required"],
                    names=f.get("names"),
                    default=f.get("default"),
                    doc=f.get("doc", ""),
                )
                for f in spec["fields"]
            ),
        )
        for kind, spec in files()["messages.json"]["messages"].items()
    }


def names(group: str) -> list[str]:
    """The names of a group of contracts/messages.json (sides, trade_kinds, bar_origins, sources), in order."""
    return list(files()["messages.json"]["names"][group])


@cache
def reject_codes() -> list[RejectCode]:
    """Every reject code of contracts/admission.json, in the order their rules apply."""
    return [RejectCode(r["code"], r["stage"], r["message"]) for r in files()["admission.json"]["rejects"]]


def limits() -> dict[str, float]:
    return dict(files()["admission.json"]["limits"])


def metric_columns() -> list[str]:
    """The metrics_1m columns after (symbol, ts), in table order."""
    return [c["name"] for c in files()["analytics.json"]["metric_columns"]]


def anomaly_kinds() -> list[str]:
    return [k["name"] for k in files()["analytics.json"]["anomaly_kinds"]]


def severities() -> list[str]:
    """Least severe first."""
    return [s["name"] for s in files()["analytics.json"]["severities"]]


def topic(prefix: str) -> str:
    """The one topic of contracts/topics.json whose name starts with `prefix` (a message's topic_prefix)."""
    found: list[str] = [t["name"] for t in files()["topics.json"]["topics"] if t["name"].startswith(prefix)]
    if len(found) != 1:
        raise LookupError(f"contracts/topics.json has {len(found)} topics starting with {prefix!r}")
    return found[0]


def messages_in(value: bytes | str) -> list[dict[str, Any]]:
    """The messages a Kafka value holds, for a reader that is not a job (tests, benchmarks): the value's object,
    or each trade of a trade batch (contracts/messages.json trade.batch: a JSON array), in order. No admission:
    the jobs admit through the contract crate."""
    parsed = json.loads(value)
    return parsed if isinstance(parsed, list) else [parsed]


def trade_batch() -> dict[str, Any]:
    """contracts/messages.json `trade.batch`: what a trade batch is, and how ingest batches by default
    (producer_trades, producer_linger_ms)."""
    return dict(files()["messages.json"]["messages"]["trade"]["batch"])
