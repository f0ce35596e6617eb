"""The Spark jobs' parsers against the admission corpus (contracts/corpus): every message gets the reject code
its line expects, the code ingest gives it too (contracts/tests/corpus.rs, crates/ingest/tests). A job that
adds, drops or reorders a rule of its own fails here."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from pyspark.sql import DataFrame

from spark_jobs.bars_job import parse_trades
from spark_jobs.companies_job import parse_companies
from spark_jobs.contracts import admit
from spark_jobs.provider_bars_job import parse_bars
from sparktrends import contract
from tests.jobs.kafka import kafka_rows

CORPUS = Path(__file__).resolve().parents[2] / "contracts" / "corpus"


def corpus(file: str) -> list[dict]:
    """The lines of a corpus file with their raw bytes, as contracts/src/corpus.rs reads them."""
    cases = []
    for line in (CORPUS / file).read_text().splitlines():
        case = json.loads(line)
        raw = bytes.fromhex(case["raw_hex"]) if "raw_hex" in case else case["raw"].encode()
        if "pad_bytes" in case:
            raw = raw[:-1] + b" " * case["pad_bytes"] + raw[-1:]
        cases.append({**case, "bytes": raw})
    return cases


PARSERS: dict[str, Callable[[DataFrame], DataFrame]] = {
    "trades.jsonl": parse_trades,
    "bars.jsonl": parse_bars,
    "companies.jsonl": parse_companies,
}


@pytest.mark.parametrize("file", sorted(PARSERS))
def test_every_corpus_message_gets_its_code_from_the_job(local_spark, file):
    cases = corpus(file)
    rows = kafka_rows(local_spark, [c["bytes"] for c in cases], [c["received_ms"] for c in cases])
    parsed = PARSERS[file](rows).select("offset", "reject_code").collect()
    got = {r["offset"]: r["reject_code"] for r in parsed}
    mismatches = [
        f"{c['case']}: job says {got[i]!r}, corpus {c['expect']!r}"
        for i, c in enumerate(cases)
        if got[i] != c["expect"]
    ]
    assert not mismatches, "\n".join(mismatches)
    assert len(got) == len(cases)


def test_every_code_the_jobs_give_is_a_contract_code(local_spark):
    codes = {c.code for c in contract.reject_codes()}
    seen = set()
    for file, parse in PARSERS.items():
        cases = corpus(file)
        rows = kafka_rows(local_spark, [c["bytes"] for c in cases], [c["received_ms"] for c in cases])
        seen |= {r[0] for r in parse(rows).select("reject_code").collect()}
    assert seen - {None} <= codes
    # The corpus reaches every code a topic consumer can give (ts_too_old is ingest's live window only).
    consumer_codes = {c.code for c in contract.reject_codes() if c.stage != "ingest"} - {"ts_too_old"}
    assert consumer_codes <= seen


def test_every_trade_of_a_trade_batch_gets_its_code_from_the_jobs_admission(local_spark):
    """contracts/corpus/trade_batches.jsonl: a message holding a trade batch is one row per trade, in order, each
    with the code its line expects (a refusal of the whole message is one row), as the contract crate gives."""
    cases = corpus("trade_batches.jsonl")
    rows = kafka_rows(local_spark, [c["bytes"] for c in cases], [c["received_ms"] for c in cases])
    admitted = admit(rows, "trade").select("offset", "element", "reject_code").collect()
    got: dict[int, list[tuple[int, str | None]]] = {}
    for r in admitted:
        got.setdefault(r["offset"], []).append((r["element"], r["reject_code"]))
    for i, c in enumerate(cases):
        assert sorted(got[i]) == list(enumerate(c["expect"])), c["case"]
