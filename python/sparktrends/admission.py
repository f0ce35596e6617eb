"""Admission of raw Kafka values over Arrow: the contract's rules, run by the same Rust functions ingest
applies, so a message gets the same reject code whichever side refuses it.

:func:`admit` takes a RecordBatch with a binary ``value`` column (and the Kafka ``timestamp``, the receive time
an event time is held against); every other column passes through. It returns the message's fields (null
where refused), ``reject_code``, ``reject_reason`` and a printable ``raw`` (only where refused). Trades also get
``updates_price`` and ``updates_volume``: whether the print may set its bar's price and count in its volume
(contracts/trade_conditions.json).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Literal

import pyarrow as pa

from sparktrends import _native

MessageKind = Literal["trade", "bar", "company"]


def admit(kind: MessageKind, batch: pa.RecordBatch) -> pa.RecordBatch:
    """Admit or refuse every row of ``batch`` as a ``kind`` message."""
    return _native.admit(kind, batch)


def admission_schema(kind: MessageKind, schema: pa.Schema) -> pa.Schema:
    """The schema :func:`admit` returns for a batch of ``schema``."""
    return _native.admission_schema(kind, schema)


def make_admit_in_arrow(kind: MessageKind) -> Callable[[Iterable[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """A ``mapInArrow`` function admitting ``kind`` messages (it pickles: it closes over a string only)."""

    def admit_batches(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield _native.admit(kind, batch)

    return admit_batches
