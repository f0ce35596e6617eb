"""Per-symbol grouping and cooldown: a burst becomes one message; rows inside the cooldown are suppressed
with a reference to the message that covered them; a more severe row breaks the cooldown."""

from __future__ import annotations

import time

from tests.alerts.conftest import insert_anomalies, wait_until_settled


def test_a_burst_for_one_symbol_becomes_one_message(outbox, slack, alerters):
    burst = [{"symbol": "BTCUSDT", "score": 1.5 + i / 100} for i in range(50)]
    burst[17] = {"symbol": "BTCUSDT", "severity": "critical", "score": 1.1}
    ids = insert_anomalies(outbox, [*burst, {"symbol": "ETHUSDT"}])
    alerters.start(slack.url, cooldown_secs="600")

    rows = wait_until_settled(outbox, ids)
    posts = slack.wait_for_posts(2)
    time.sleep(0.5)  # nothing else may follow
    assert len(slack.snapshot()) == 2
    btc = next(p for p in posts if "BTCUSDT" in p.payload["text"])
    assert btc.lead_id == ids[17], "the most severe row leads the message"
    assert btc.folded == 49 and "(+49 more for BTCUSDT)" in btc.payload["text"]
    assert btc.payload["blocks"][2]["text"]["text"].startswith("*+49 more for BTCUSDT in this burst*")

    btc_rows = [rows[i] for i in ids[:50]]
    assert {r["status"] for r in btc_rows} == {"delivered"}
    assert len({r["message_id"] for r in btc_rows}) == 1
    message_id = btc_rows[0]["message_id"]
    folded_notes = {r["delivery_note"] for r in btc_rows if r["id"] != ids[17]}
    assert folded_notes == {f"folded into message {message_id} (lead anomaly {ids[17]})"}
    assert rows[ids[17]]["delivery_note"] is None
    count, lead, severity = outbox.execute(
        "SELECT anomaly_count, lead_anomaly_id, severity FROM alert_messages WHERE id = %s", (message_id,)
    ).fetchone()
    assert (count, lead, severity) == (50, ids[17], "critical")


def test_cooldown_suppresses_until_a_more_severe_anomaly_arrives(outbox, slack, alerters):
    alerters.start(slack.url, cooldown_secs="600")

    def next_row(severity: str, minute: int) -> dict:
        [anomaly] = insert_anomalies(
            outbox, [{"symbol": "AAPL", "severity": severity, "ts": f"2026-03-02 15:{minute:02d}Z"}]
        )
        return wait_until_settled(outbox, [anomaly])[anomaly]

    first = next_row("warning", 0)
    assert first["status"] == "delivered"
    same = next_row("warning", 1)
    assert (same["status"], same["message_id"]) == ("suppressed", first["message_id"])
    assert same["delivery_note"].startswith(f"cooldown: AAPL was alerted by message {first['message_id']}")
    escalation = next_row("critical", 2)
    assert escalation["status"] == "delivered" and escalation["message_id"] != first["message_id"]
    after_critical = next_row("warning", 3)
    assert (after_critical["status"], after_critical["message_id"]) == ("suppressed", escalation["message_id"])
    other_symbol = insert_anomalies(outbox, [{"symbol": "MSFT"}])
    assert wait_until_settled(outbox, other_symbol)[other_symbol[0]]["status"] == "delivered"

    assert [p.lead_id for p in slack.snapshot()] == [first["id"], escalation["id"], other_symbol[0]]


def test_after_the_cooldown_the_symbol_alerts_again(outbox, slack, alerters):
    alerters.start(slack.url, cooldown_secs="1")
    first = insert_anomalies(outbox, [{"symbol": "NVDA"}])
    wait_until_settled(outbox, first)
    time.sleep(1.2)
    second = insert_anomalies(outbox, [{"symbol": "NVDA", "ts": "2026-03-02 16:00Z"}])
    rows = wait_until_settled(outbox, second)
    assert rows[second[0]]["status"] == "delivered"
    assert [p.lead_id for p in slack.snapshot()] == [first[0], second[0]]
