"""Happy path against the real PostgreSQL and a fake Slack: each anomaly posted exactly once, as Block Kit,
settled in the outbox; two alerters share the work without double delivery; console mode; the stats line."""

from __future__ import annotations

import re
from collections import Counter

from tests.alerts.conftest import insert_anomalies, wait_for, wait_until_settled


def test_each_anomaly_is_posted_once_as_block_kit_and_marked_delivered(outbox, slack, alerters):
    ids = insert_anomalies(outbox, [{} for _ in range(30)])
    alerter = alerters.start(slack.url)

    rows = wait_until_settled(outbox, ids)
    posts = slack.wait_for_posts(len(ids))
    assert sorted(p.lead_id for p in posts) == ids, "every anomaly exactly once"
    assert all(r["status"] == "delivered" and r["attempts"] == 1 and r["delivered_at"] for r in rows.values())
    assert len({r["message_id"] for r in rows.values()}) == len(ids)
    messages = outbox.execute("SELECT count(*), min(channel), max(channel) FROM alert_messages").fetchone()
    assert messages == (len(ids), "slack", "slack")

    payload = next(p.payload for p in posts if p.lead_id == ids[3])
    assert payload["text"].startswith("[warning] SYM0003 price_jump at 2026-03-02 14:33 UTC | close 187.25")
    fields = [f["text"] for f in payload["blocks"][1]["fields"]]
    for expected in ["*Symbol*\nSYM0003", "*Close*\n187.25", "*Return*\n-4.12%", "*Return z*\n-6.30"]:
        assert expected in fields
    assert "*Robust z*\n-9.10" in fields and "*Volume z*\n+3.40" in fields and "*Severity*\nwarning" in fields
    assert "delivered message" in alerter.stderr()
    # Nothing arrives twice after the fact either.
    assert len(slack.snapshot()) == len(ids)


def test_rows_with_missing_or_odd_details_still_deliver(outbox, slack, alerters):
    ids = insert_anomalies(
        outbox,
        [
            {"details": {}},
            {"details": {"close": None, "ret": "nan", "log_ret": 0.01}},
            {"details": {"close": "101.5", "weird": [1, 2]}},
        ],
    )
    alerters.start(slack.url)
    rows = wait_until_settled(outbox, ids)
    assert {r["status"] for r in rows.values()} == {"delivered"}
    bodies = {p.lead_id: str(p.payload) for p in slack.wait_for_posts(3)}
    assert all("None" not in body and "null" not in body and "NaN" not in body for body in bodies.values())
    assert "+1.00% (log)" in bodies[ids[1]]
    assert "*Close*\\n101.50" in bodies[ids[2]]


def test_two_alerters_together_deliver_each_anomaly_exactly_once(outbox, slack, alerters):
    # A slow Slack keeps each POST in flight long enough for the two processes to overlap.
    from tests.alerts.fake_slack import Answer

    slack.answer_with(lambda n, post: Answer(delay=0.01))
    first = alerters.start(slack.url, workers="2")
    second = alerters.start(slack.url, workers="2")
    ids = []
    for batch in range(8):
        ids += insert_anomalies(outbox, [{"symbol": f"B{batch}S{i:02d}"} for i in range(25)])
    wait_until_settled(outbox, ids, timeout=60)

    counts = Counter(slack.lead_ids())
    assert sorted(counts) == ids
    assert [i for i, c in counts.items() if c > 1] == [], "no anomaly may be posted twice"
    assert len(slack.snapshot()) == len(ids)
    # Both processes really took part: each delivered some of them.
    delivered = [len(re.findall("delivered message", a.stderr())) for a in (first, second)]
    assert min(delivered) > 0 and sum(delivered) == len(ids), delivered


def test_without_webhook_each_alert_is_one_console_line_and_marked_delivered(outbox, slack, alerters):
    ids = insert_anomalies(
        outbox, [{"symbol": s, "severity": sev} for s, sev in [("AAPL", "critical"), ("MSFT", "warning")]]
    )
    alerter = alerters.start(None)
    rows = wait_until_settled(outbox, ids)

    lines = [line for line in alerter.stdout().splitlines() if line.startswith("ALERT ")]
    assert len(lines) == 2
    assert any(
        line.startswith("ALERT [critical] AAPL price_jump at 2026-03-02 14:30 UTC | close 187.25") for line in lines
    )
    assert all(f"anomaly #{i}" in "\n".join(lines) for i in ids)
    for row in rows.values():
        assert row["status"] == "delivered"
        assert row["delivery_note"].startswith("console: SLACK_WEBHOOK is not set")
    assert outbox.execute("SELECT array_agg(DISTINCT channel) FROM alert_messages").fetchone()[0] == ["console"]
    assert slack.snapshot() == []
    assert "SLACK_WEBHOOK is not set" in alerter.stderr()


def test_periodic_stats_line_reports_counters_and_queue(outbox, slack, alerters):
    from tests.alerts.fake_slack import Answer

    # Two rows delivered; one row Slack refuses for good; one stays queued, not yet due, 90 s old.
    ids = insert_anomalies(outbox, [{} for _ in range(3)])
    slack.answer_with(lambda n, post: Answer(404, "no_service") if post.lead_id == ids[2] else Answer())
    outbox.execute(
        "INSERT INTO anomalies (symbol, ts, kind, score, severity, next_attempt_at, detected_at)"
        " VALUES ('LATER', now(), 'price_jump', 2, 'warning', now() + interval '1 hour', now() - interval '90 seconds')"
    )
    alerter = alerters.start(slack.url, stats_interval_ms="300")
    wait_until_settled(outbox, ids)

    line = wait_for(
        lambda: next((ln for ln in alerter.stderr().splitlines() if "stats sent=2 " in ln), None),
        what="a stats line after the deliveries",
    )
    stats = dict(re.findall(r"(\w+)=([\d.?]+)", line))
    assert stats["sent"] == "2" and stats["failed"] == "1" and stats["suppressed"] == "0" and stats["retried"] == "0"
    assert stats["pending"] == "1"
    assert 89 <= float(stats["oldest_pending_s"]) < 200
