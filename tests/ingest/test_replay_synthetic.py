"""replay and synthetic sources into the real Kafka, the simulator's file mode, and the process lifecycle
(SIGTERM flushes and exits 0; an unreachable Kafka is a clear error)."""

from __future__ import annotations

import csv
import json
import re
import socket
import time
from collections import defaultdict

import pyarrow as pa
import pyarrow.parquet as pq

from tests.ingest.conftest import now_ms, read_topic

START = "2024-01-02T00:00:00Z"
START_MS = 1_704_153_600_000


def write_trades_csv(path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["symbol", "ts_ms", "price", "size", "trade_id"])
        writer.writeheader()
        writer.writerows(rows)


def test_replay_keeps_pacing_order_and_dead_letters_bad_rows(run_ingest, topics, stack_settings, tmp_path):
    base = 1_600_000_000_000
    rows = [
        {"symbol": ["AAA", "BBB"][i % 2], "ts_ms": base + i * 10, "price": 10 + i / 100, "size": 1, "trade_id": f"r{i}"}
        for i in range(200)
    ]
    bad = [
        {"symbol": "AAA", "ts_ms": base + 5, "price": -3, "size": 1, "trade_id": "neg"},
        {"symbol": "AAA", "ts_ms": "", "price": 3, "size": 1, "trade_id": "nots"},
        {"symbol": "ZZZ", "ts_ms": base + 7, "price": 3, "size": 1, "trade_id": "unknown"},
    ]
    path = tmp_path / "trades.csv"
    write_trades_csv(path, rows[:100] + bad + rows[100:])

    started = time.monotonic()
    ingest = run_ingest("replay", str(path), "--speed", "2", "--symbols", "AAA,BBB", *topics.args())
    assert ingest.wait(60) == 0, ingest.log()[-3000:]
    elapsed = time.monotonic() - started
    # 1.99 s of data at twice the speed: about one second of pacing, not instantaneous.
    assert elapsed >= 0.95, f"replay took {elapsed:.2f}s"

    trades = read_topic(stack_settings.kafka_bootstrap, topics.trades)
    assert len(trades) == 200
    for symbol in ["AAA", "BBB"]:
        mine = [r.value for r in trades if r.value["symbol"] == symbol]
        assert [t["trade_id"] for t in mine] == [r["trade_id"] for r in rows if r["symbol"] == symbol]
        assert all(t["source"] == "replay" and t["ts_ms"] < now_ms() - 10**10 for t in mine), "history kept"
    letters = read_topic(stack_settings.kafka_bootstrap, topics.deadletter)
    codes = sorted(r.value["reason_code"] for r in letters)
    assert codes == ["missing_field", "price_not_positive", "unknown_symbol"], [r.value for r in letters]
    assert any('"ZZZ"' in r.value["reason"] for r in letters)


def test_replay_parquet_bars_in_a_loop_moves_time_forward(run_ingest, topics, stack_settings, tmp_path):
    bars = pa.table(
        {
            "symbol": ["AAA", "AAA", "AAA"],
            "ts_ms": [START_MS, START_MS + 60_000, START_MS + 120_000],
            "open": [1.0, 2.0, 3.0],
            "high": [1.5, 2.5, 3.5],
            "low": [0.5, 1.5, 2.5],
            "close": [1.2, 2.2, 3.2],
            "volume": [10.0, 20.0, 30.0],
        }
    )
    path = tmp_path / "bars.parquet"
    pq.write_table(bars, path)
    ingest = run_ingest("replay", str(path), "--speed", "0", "--loop", *topics.args())
    ingest.wait_for_log("pass 3 done", 20)
    assert ingest.stop() == 0
    got = [r.value for r in read_topic(stack_settings.kafka_bootstrap, topics.bars)]
    assert len(got) >= 9
    assert [b["ts_ms"] for b in got[:9]] == [START_MS + i * 60_000 for i in range(9)], "each pass 3 minutes later"
    assert [b["open"] for b in got[:6]] == [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]
    assert got[0]["source"] == "replay" and "vwap" not in got[0]


def synthetic_files(run_ingest, tmp_path, name: str, seed: int) -> tuple[pa.Table, pa.Table, list[dict]]:
    out = tmp_path / name
    out.mkdir()
    args = [
        "synthetic",
        "--seed",
        str(seed),
        "--num-symbols",
        "3",
        "--start",
        START,
        "--minutes",
        "240",
        "--jumps-per-day",
        "60",
        "--spikes-per-day",
        "60",
        "--regime-shifts-per-day",
        "12",
        "--trades-out",
        str(out / "trades.parquet"),
        "--bars-out",
        str(out / "bars.parquet"),
        "--labels-out",
        str(out / "labels.jsonl"),
    ]
    ingest = run_ingest(*args, env={"KAFKA_BOOTSTRAP": "127.0.0.1:9"})  # file mode never dials Kafka
    assert ingest.wait(60) == 0, ingest.log()[-3000:]
    labels = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    return pq.read_table(out / "trades.parquet"), pq.read_table(out / "bars.parquet"), labels


def test_synthetic_file_mode_is_deterministic_and_labelled(run_ingest, tmp_path):
    trades, bars, labels = synthetic_files(run_ingest, tmp_path, "a", seed=7)
    trades_again, bars_again, labels_again = synthetic_files(run_ingest, tmp_path, "b", seed=7)
    _, bars_other, labels_other = synthetic_files(run_ingest, tmp_path, "c", seed=8)
    assert trades.equals(trades_again) and bars.equals(bars_again) and labels == labels_again
    assert not bars.equals(bars_other) and labels != labels_other

    assert bars.num_rows == 3 * 240
    assert bars.column("ts_ms").to_pylist()[0] == START_MS
    kinds = {label["kind"] for label in labels}
    assert kinds == {"price_jump", "volume_spike", "vol_regime_shift"}, kinds
    for label in labels:
        assert label["ts_ms"] % 60_000 == 0 and START_MS <= label["ts_ms"] < START_MS + 240 * 60_000
        assert label["symbol"] in {"SYN00", "SYN01", "SYN02"}
    assert all(abs(lab["size_sigma"]) >= 5 for lab in labels if lab["kind"] == "price_jump")

    # Bars are the aggregation of the trades.
    volume: dict[tuple[str, int], float] = defaultdict(float)
    for symbol, ts, size in zip(*(trades.column(c).to_pylist() for c in ["symbol", "ts_ms", "size"])):
        volume[(symbol, ts // 60_000 * 60_000)] += size
    for row in bars.to_pylist():
        assert abs(volume[(row["symbol"], row["ts_ms"])] - row["volume"]) < 1e-6
        assert row["low"] <= min(row["open"], row["close"]) <= max(row["open"], row["close"]) <= row["high"]


def test_synthetic_into_kafka_as_fast_as_possible(run_ingest, topics, stack_settings, tmp_path):
    labels = tmp_path / "labels.jsonl"
    ingest = run_ingest(
        "synthetic",
        "--num-symbols",
        "2",
        "--start",
        START,
        "--minutes",
        "3",
        "--speed",
        "0",
        "--emit",
        "both",
        "--labels-out",
        str(labels),
        *topics.args(),
    )
    assert ingest.wait(60) == 0, ingest.log()[-3000:]
    trades = read_topic(stack_settings.kafka_bootstrap, topics.trades)
    bars = read_topic(stack_settings.kafka_bootstrap, topics.bars)
    assert len(bars) == 6
    assert sum(b.value["trades"] for b in bars) == len(trades)
    assert {r.key for r in trades} == {"SYN00", "SYN01"}
    assert read_topic(stack_settings.kafka_bootstrap, topics.deadletter) == []
    assert labels.exists()


def test_sigterm_flushes_everything_and_exits_zero(run_ingest, topics, stack_settings):
    # Real time after a two-minute backfill: messages are in flight when the signal lands.
    ingest = run_ingest(
        "synthetic", "--num-symbols", "5", "--backfill-minutes", "2", "--trades-per-minute", "600", *topics.args()
    )
    ingest.wait_for_log("continuing at speed", 30)
    time.sleep(1.5)
    assert ingest.stop(grace=20) == 0, ingest.log()[-3000:]
    log = ingest.log()
    assert "SIGTERM received" in log
    final = re.search(
        r"stopped: produced (\d+) messages \(trades (\d+) in (\d+) messages, .*dead letters 0, gap records 0\), "
        r"delivered (\d+), delivery failures 0",
        log,
    )
    assert final, log[-2000:]
    produced, trades_produced, trade_messages, delivered = (int(g) for g in final.groups())
    # Trades travel as trade batches (a symbol's trades of up to --trade-batch-linger-ms in one message).
    assert trades_produced > trade_messages > 0 and delivered == produced == trade_messages
    assert len(read_topic(stack_settings.kafka_bootstrap, topics.trades)) == trades_produced


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_kafka_is_a_clear_error(run_ingest, tmp_path):
    path = tmp_path / "t.csv"
    write_trades_csv(path, [{"symbol": "A", "ts_ms": 1, "price": 1, "size": 1, "trade_id": "1"}])
    started = time.monotonic()
    ingest = run_ingest(
        "replay",
        str(path),
        "--kafka-connect-timeout",
        "2",
        env={"KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}"},
    )
    assert ingest.wait(20) == 2
    assert time.monotonic() - started < 15
    assert "is unreachable" in ingest.log()


def test_missing_topic_is_a_clear_error(run_ingest, topics, tmp_path):
    path = tmp_path / "t.csv"
    write_trades_csv(path, [{"symbol": "A", "ts_ms": 1, "price": 1, "size": 1, "trade_id": "1"}])
    ingest = run_ingest(
        "replay",
        str(path),
        "--trades-topic",
        "test.does-not-exist.0",
        "--bars-topic",
        topics.bars,
        "--deadletter-topic",
        topics.deadletter,
    )
    assert ingest.wait(20) == 2
    assert "has no topic test.does-not-exist.0" in ingest.log()
