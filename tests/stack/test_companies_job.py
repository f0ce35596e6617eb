"""The companies job on the real broker, cluster and database: the newest profile of a symbol wins, a replay
changes nothing, and an invalid profile is rejected with its reject code."""

from __future__ import annotations

import json
import time

from tests.stack.streaming import StreamingJob, produce


def profile(symbol: str, name: str, **extra: str) -> str:
    return json.dumps(
        {
            "symbol": symbol,
            "name": name,
            "exchange": "NASDAQ",
            "currency": "USD",
            "sector": "Technology",
            "industry": "Software",
            "source": "finnhub",
            **extra,
        }
    )


def test_latest_profile_wins_and_invalid_ones_are_rejected(stack_settings, stack_env, kafka_topic, pg, tmp_path):
    topic = kafka_topic("companies", partitions=1)
    produce(
        stack_settings.kafka_bootstrap,
        topic,
        [
            ("AAPL", profile("AAPL", "Apple Computer")),
            ("MSFT", profile("MSFT", "Microsoft Corporation")),
            ("AAPL", profile("AAPL", "Apple Inc")),
            ("", json.dumps({"name": "no symbol", "source": "finnhub"})),
        ],
    )
    args = ["--topic", topic, "--trigger", "2 seconds", "--checkpoint", str(tmp_path / "ckpt")]
    job = StreamingJob("companies_job", args, stack_env)
    try:
        job.wait_for("profiles consumed", lambda: job.rows_in.get("companies", 0) >= 4)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            rows = pg.execute("SELECT symbol, name, sector FROM companies ORDER BY symbol").fetchall()
            if len(rows) == 2:
                break
            time.sleep(0.5)
    finally:
        job.stop()
    assert rows == [("AAPL", "Apple Inc", "Technology"), ("MSFT", "Microsoft Corporation", "Technology")]
    codes = pg.execute("SELECT reason_code FROM rejected_messages WHERE topic = %s", (topic,)).fetchall()
    assert codes == [("missing_field",)]

    # Restart from the same checkpoint after a replayed message: still one row per symbol.
    produce(stack_settings.kafka_bootstrap, topic, [("MSFT", profile("MSFT", "Microsoft Corporation"))])
    job = StreamingJob("companies_job", args, stack_env)
    try:
        job.wait_for("replay consumed", lambda: job.rows_in.get("companies", 0) >= 1)
    finally:
        job.stop()
    assert pg.execute("SELECT count(*) FROM companies").fetchone() == (2,)
