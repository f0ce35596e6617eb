"""spark_jobs.metrics_store: the driver path computes what the cluster path computes, bit for bit, and two
recomputations of one symbol never overlap."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import threading
import time
import uuid

import numpy as np
import pyarrow as pa
import pytest

from spark_jobs import carries
from spark_jobs.metrics_store import SYMBOL_LOCK_NAMESPACE, Bar, apply_bars, compute_in_driver, compute_symbol
from tests.stack.metrics_checks import assert_same_metrics, expected_metrics, stored_metrics
from tests.stack.test_provider_bars_job import make_bars

MINUTE_US = 60_000_000


def bars(symbol: str, n: int, emit_from_index: int, rng: np.random.Generator) -> pa.Table:
    closes = 100 * np.cumprod(1 + rng.standard_t(4, n) * 1e-3)
    opens = np.concatenate([closes[:1], closes[:-1]])
    ts = 1_700_000_000_000_000 + np.cumsum(rng.choice([1, 1, 1, 2, 45], n)) * MINUTE_US
    timestamp = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "symbol": [symbol] * n,
            "ts": pa.array(ts.tolist(), timestamp),
            "open": opens,
            "high": np.maximum(opens, closes) * 1.0005,
            "low": np.minimum(opens, closes) * 0.9995,
            "close": closes,
            "volume": rng.lognormal(7, 1, n),
            "vwap": (opens + closes) / 2,
            "emit_from": pa.array([int(ts[emit_from_index])] * n, timestamp),
        }
    )


def test_driver_path_equals_per_symbol_groups() -> None:
    rng = np.random.default_rng(5)
    groups = [bars("AAA", 700, 512, rng), bars("BB", 40, 0, rng), bars("C", 300, 299, rng)]
    # Rows arrive in no particular order, as from the database.
    everything = pa.concat_tables(groups)
    shuffled = everything.take(pa.array(rng.permutation(everything.num_rows)))

    in_driver, _ = compute_in_driver(shuffled)

    on_cluster = pa.concat_tables([compute_symbol(group) for group in groups])
    assert in_driver.num_rows == (700 - 512) + 40 + 1
    assert in_driver.sort_by([("symbol", "ascending"), ("ts", "ascending")]).equals(
        on_cluster.sort_by([("symbol", "ascending"), ("ts", "ascending")])
    )


def test_driver_path_of_nothing_is_empty() -> None:
    empty = bars("X", 1, 0, np.random.default_rng(1)).slice(0, 0)
    assert compute_in_driver(empty)[0].num_rows == 0


def test_recomputations_of_one_symbol_wait_for_each_other(stack_env, pg, monkeypatch) -> None:
    """While another recomputation holds a symbol, apply_bars of that symbol waits and writes nothing; it
    finishes once the holder commits."""
    import psycopg

    for name in ("POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        monkeypatch.setenv(name, stack_env[name])
    symbol = f"LOCK{uuid.uuid4().hex[:6].upper()}"
    table = bars(symbol, 40, 0, np.random.default_rng(2))
    rows = [
        {
            "symbol": symbol,
            "ts_ms": ts.value // 1_000_000,
            "open": o,
            "high": h,
            "low": low,
            "close": c,
            "volume": v,
            "trades": 1,
            "vwap": vwap,
            "source": "test",
            "origin": "provider",
        }
        for ts, o, h, low, c, v, vwap in zip(
            *(table.column(name).to_pandas() for name in ("ts", "open", "high", "low", "close", "volume", "vwap")),
            strict=True,
        )
    ]
    finished = threading.Event()

    def apply_in_driver() -> None:
        apply_bars([Bar.of(r) for r in rows])
        finished.set()

    def metrics_rows() -> int:
        return pg.execute("SELECT count(*) FROM metrics_1m WHERE symbol = %s", (symbol,)).fetchone()[0]

    with psycopg.connect(
        host=stack_env["POSTGRES_HOST"], port=stack_env["POSTGRES_PORT"], user=stack_env["POSTGRES_USER"],
        password=stack_env["POSTGRES_PASSWORD"], dbname=stack_env["POSTGRES_DB"],
    ) as holder:  # fmt: skip
        holder.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (SYMBOL_LOCK_NAMESPACE, symbol))
        worker = threading.Thread(target=apply_in_driver, daemon=True)
        worker.start()
        assert not finished.wait(3), "the recomputation must wait for the symbol's holder"
        assert metrics_rows() == 0
        holder.commit()
    assert finished.wait(60)
    worker.join()
    assert metrics_rows() == 40


def test_rejected_messages_are_kept_for_their_retention_only(stack_env, pg, monkeypatch) -> None:
    from spark_jobs.store import purge_old_rejects

    for name in ("POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        monkeypatch.setenv(name, stack_env[name])
    topic = f"retention.{uuid.uuid4().hex[:8]}"
    pg.execute(
        'INSERT INTO rejected_messages (source, topic, "partition", "offset", reason_code, reason, raw, received_at) '
        "VALUES ('bars_job', %s, 0, 1, 'malformed_json', 'x', '{', now() - interval '31 days'), "
        "('bars_job', %s, 0, 2, 'malformed_json', 'x', '{', now() - interval '29 days')",
        (topic, topic),
    )
    assert purge_old_rejects("30 days") >= 1
    kept = pg.execute('SELECT "offset" FROM rejected_messages WHERE topic = %s', (topic,)).fetchall()
    assert kept == [(2,)]


def test_a_stalled_holder_fails_the_recomputation_with_its_name(stack_env, monkeypatch) -> None:
    """A recomputation waits for a symbol another session holds only up to the lock timeout, then fails naming
    the holder, instead of stalling its stream without limit."""
    from spark_jobs.metrics_store import SymbolsLocked, lock_symbols
    from spark_jobs.store import pg_connect

    for name in ("POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        monkeypatch.setenv(name, stack_env[name])
    symbol = f"LOCK{uuid.uuid4().hex[:6].upper()}"
    with pg_connect() as holder:
        holder.execute("SET application_name = 'stalled-test-holder'")
        holder.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (SYMBOL_LOCK_NAMESPACE, symbol))
        started = time.monotonic()
        with pg_connect() as waiter, pytest.raises(SymbolsLocked, match="stalled-test-holder"):
            lock_symbols(waiter, {symbol: dt.datetime.now(dt.timezone.utc)}, timeout_s=1)
        assert time.monotonic() - started < 30


def jump_bars(symbol: str, last_minute: dt.datetime, n: int = 600) -> list[Bar]:
    """`n` quiet 1-minute bars ending at `last_minute`, with a 5% jump six bars before the end that holds."""
    rng = np.random.default_rng(11)
    closes = 100 * np.cumprod(1 + rng.normal(0, 2e-4, n))
    closes[-6:] *= 1.05
    first = last_minute - dt.timedelta(minutes=n - 1)
    rows = []
    for i, close in enumerate(closes):
        open_ = closes[i - 1] if i else close
        ts_ms = int((first + dt.timedelta(minutes=i)).timestamp() * 1000)
        rows.append({"symbol": symbol, "ts_ms": ts_ms, "open": open_, "high": max(open_, close) * 1.0001,
                     "low": min(open_, close) * 0.9999, "close": close, "volume": float(rng.lognormal(5, 0.3)),
                     "trades": 10, "vwap": (open_ + close) / 2, "source": "test", "origin": "provider"})  # fmt: skip
    return [Bar.of(r) for r in rows]


def test_anomalies_of_old_bars_are_recorded_and_only_live_ones_await_posting(stack_env, pg, monkeypatch) -> None:
    """Docs/alerts.md: an anomaly found on a bar that closed longer than alert_live_window() ago (a repaired gap,
    a backfill) is 'recorded' with a note saying so and never becomes 'pending'; a live one is 'pending'."""
    for name in ("POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        monkeypatch.setenv(name, stack_env[name])
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    live, old = (f"{kind}{uuid.uuid4().hex[:5].upper()}" for kind in ("LIVE", "OLD"))
    apply_bars(jump_bars(live, now - dt.timedelta(minutes=1)))
    apply_bars(jump_bars(old, now - dt.timedelta(hours=3)))

    def outbox(symbol: str) -> list[tuple[str, str]]:
        return pg.execute(
            "SELECT status, coalesce(delivery_note, '') FROM anomalies WHERE symbol = %s", (symbol,)
        ).fetchall()

    live_rows, old_rows = outbox(live), outbox(old)
    assert live_rows and old_rows, "the jump must be an anomaly in both series"
    assert {status for status, _ in live_rows} == {"pending"}
    assert {status for status, _ in old_rows} == {"recorded"}
    assert all(note.startswith("recorded, not posted: found ") for _, note in old_rows)
    # A corrected old bar recomputes the range (the anomalies are found again) and they stay recorded: history
    # never turns into news.
    corrected = jump_bars(old, now - dt.timedelta(hours=3))[-8:]
    corrected[0] = dataclasses.replace(corrected[0], volume=corrected[0].volume + 1.0)
    assert apply_bars(corrected).metric_rows >= 8
    assert {status for status, _ in outbox(old)} == {"recorded"}


def test_live_bars_continue_from_their_carry_and_a_late_bar_warms_up_again(stack_env, pg, monkeypatch) -> None:
    """Issue 16: a live bar reads one metrics_carry row (no state: the driver keeps it) and no bar, whatever the
    history, and its metrics are those of the whole history bit for bit, EWMA included; a late bar at or before
    the carry recomputes from the warm-up and leaves a carry the next live bar continues from."""
    for name in ("POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"):
        monkeypatch.setenv(name, stack_env[name])
    symbol = f"CARRY{uuid.uuid4().hex[:5].upper()}"
    start_ms = int(time.time() * 1000) // 60_000 * 60_000 - 900 * 60_000
    rows = [Bar.of(dict(b, origin="provider")) for b in make_bars(symbol, start_ms, 760, random.Random(4))]
    history, live = rows[:700], rows[700:]

    first = apply_bars(history)
    assert (first.carried, first.warmed, first.bars_read) == (0, 1, 700)
    stored_ts = pg.execute("SELECT last_ts FROM metrics_carry WHERE symbol = %s", (symbol,)).fetchone()
    assert stored_ts == (dt.datetime.fromtimestamp(history[-1].ts_ms / 1000, dt.UTC),)

    first_driver = carries.CACHE
    for bar in live[:35]:
        result = apply_bars([bar])
        assert (result.carried, result.carries_from_memory, result.warmed) == (1, 1, 0)
        assert (result.bars_read, result.rows_read) == (0, 1)
    # The stored carry is written every CHECKPOINT_MINUTES only, and stays a valid place to continue from.
    (stored_ts,) = pg.execute("SELECT last_ts FROM metrics_carry WHERE symbol = %s", (symbol,)).fetchone()
    behind = dt.datetime.fromtimestamp(live[34].ts_ms / 1000, dt.UTC) - stored_ts
    assert dt.timedelta(minutes=1) <= behind < dt.timedelta(minutes=carries.CHECKPOINT_MINUTES)

    # Another driver (its own cache) continues from the stored carry and reads the bars after it.
    monkeypatch.setattr(carries, "CACHE", carries.CarryCache())
    restarted = apply_bars([live[35]])
    assert (restarted.carried, restarted.carries_from_memory) == (1, 0)
    assert restarted.bars_read == behind // dt.timedelta(minutes=1) + 1

    # A corrected bar inside the history: recomputed from the warm-up before it, with a fresh generation ...
    close = history[650].close * 1.002
    corrected = dataclasses.replace(history[650], close=close, high=max(history[650].high, close))
    late = apply_bars([corrected])
    assert (late.carried, late.warmed) == (0, 1)
    assert late.bars_read == 512 + (736 - 650)
    # ... so the first driver's cached carry, built on the bar before the correction, is not used again.
    monkeypatch.setattr(carries, "CACHE", first_driver)
    after_correction = apply_bars([live[36]])
    assert (after_correction.carried, after_correction.carries_from_memory) == (1, 0)
    for bar in live[37:]:
        assert apply_bars([bar]).carries_from_memory == 1

    final = [corrected if b is history[650] else b for b in rows]
    stored = stored_metrics(pg, [symbol])
    expected = expected_metrics([dataclasses.asdict(b) for b in final])
    assert_same_metrics(stored, expected)
    # Every live bar continued from a carry: its EWMA is the full history's, exactly.
    for bar in live:
        key = (symbol, dt.datetime.fromtimestamp(bar.ts_ms / 1000, dt.UTC))
        assert stored[key]["vol_ewma"] == expected[key]["vol_ewma"]
