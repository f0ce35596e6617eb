"""The gap message as the bars job's repair query reads it: what it accepts, what it refuses with which code, and
which minutes a gap makes it rebuild."""

from __future__ import annotations

import json

from spark_jobs.gap_repair import Gap, parse_gap
from sparktrends import contract

MINUTE = 60_000
T0 = 1_700_000_040_000  # a whole minute


def message(**overrides) -> str:
    gap = {
        "source": "binance", "symbol": "BTCUSDT", "cause": "reconnect", "outcome": "repaired",
        "from_ts_ms": T0 + 59_000, "to_ts_ms": T0 + 2 * MINUTE + 1_000, "first_missing_id": 11,
        "last_missing_id": 40, "repaired_trades": 30, "detected_ms": T0 + 3 * MINUTE,
    }  # fmt: skip
    gap.update(overrides)
    return json.dumps({k: v for k, v in gap.items() if v is not None})


def test_a_gap_message_of_every_contract_field_is_read_whole():
    gap, code = parse_gap(message())
    assert code is None and isinstance(gap, Gap)
    assert sorted(vars(gap)) == sorted(contract.messages()["gap"].field_names)
    assert (gap.first_missing_id, gap.last_missing_id, gap.repaired_trades) == (11, 40, 30)


def test_the_minutes_rebuilt_run_from_the_last_trade_before_to_the_first_after():
    gap, _ = parse_gap(message())
    assert gap is not None
    assert list(gap.minutes) == [T0, T0 + MINUTE, T0 + 2 * MINUTE]
    assert gap.end_ms == T0 + 3 * MINUTE
    same_minute, _ = parse_gap(message(from_ts_ms=T0 + 1, to_ts_ms=T0 + 2))
    assert same_minute is not None and list(same_minute.minutes) == [T0]


def test_an_empty_reconnect_has_no_id_range():
    gap, code = parse_gap(message(outcome="empty", first_missing_id=None, last_missing_id=None, repaired_trades=0))
    assert code is None and gap is not None and gap.first_missing_id is None


def test_what_is_not_a_gap_is_refused_with_a_contract_code():
    codes = {r.code for r in contract.reject_codes()}
    cases = {
        b"{oops": "malformed_json",
        message(cause=None): "missing_field",
        message(cause="solar_flare"): "unknown_name",
        message(outcome="fixed"): "unknown_name",
        message(to_ts_ms=T0): "ts_out_of_range",
        json.dumps([1, 2]): "malformed_json",
    }
    for value, expected in cases.items():
        gap, code = parse_gap(value)
        assert gap is None and code == expected, value
        assert code in codes
