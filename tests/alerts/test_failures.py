"""Slack's error answers: permanent 4xx stored with Slack's reason, 5xx and timeouts retried with backoff
until delivered or out of attempts, connection errors retried, 429 Retry-After honoured by the whole process."""

from __future__ import annotations

import pytest

from tests.alerts.conftest import insert_anomalies, rows_by_id, wait_for, wait_until_settled
from tests.alerts.fake_slack import Answer


@pytest.mark.parametrize(
    ("status", "reason"),
    [(400, "invalid_payload"), (403, "action_prohibited"), (404, "no_service"), (410, "channel_is_archived")],
)
def test_permanent_4xx_fails_at_once_with_slacks_reason(outbox, slack, alerters, status, reason):
    slack.answer_with(lambda n, post: Answer(status, reason))
    [anomaly] = insert_anomalies(outbox, [{}])
    alerter = alerters.start(slack.url)

    row = wait_until_settled(outbox, [anomaly])[anomaly]
    assert (row["status"], row["attempts"], row["last_error"]) == ("failed", 1, f"HTTP {status}: {reason}")
    assert row["message_id"] is None, "a failed message leaves no alert_messages row"
    assert outbox.execute("SELECT count(*) FROM alert_messages").fetchone()[0] == 0
    wait_for(lambda: "failed permanently" in alerter.stderr(), what="the failure in the log")
    assert len(slack.snapshot()) == 1, "a permanent failure is never retried"


def test_server_errors_are_retried_with_growing_backoff_until_delivered(outbox, slack, alerters):
    slack.answer_with(lambda n, post: Answer(500, "") if n < 2 else Answer())
    [anomaly] = insert_anomalies(outbox, [{}])
    alerters.start(slack.url, retry_base_ms="300")

    row = wait_until_settled(outbox, [anomaly])[anomaly]
    posts = slack.snapshot()
    assert [p.answered for p in posts] == [500, 500, 200]
    assert (row["status"], row["attempts"], row["last_error"]) == ("delivered", 3, "HTTP 500")
    # Equal jitter: the n-th delay lies in [ceiling/2, ceiling] with ceiling = 300 ms * 2^(n-1).
    first_gap, second_gap = posts[1].received - posts[0].received, posts[2].received - posts[1].received
    assert 0.15 <= first_gap < 1.5, first_gap
    assert 0.30 <= second_gap < 2.0, second_gap


def test_gives_up_after_max_attempts(outbox, slack, alerters):
    slack.answer_with(lambda n, post: Answer(503, "service_unavailable"))
    [anomaly] = insert_anomalies(outbox, [{}])
    alerter = alerters.start(slack.url, max_attempts="3", retry_base_ms="50")

    row = wait_until_settled(outbox, [anomaly])[anomaly]
    assert (row["status"], row["attempts"], row["last_error"]) == ("failed", 3, "HTTP 503: service_unavailable")
    wait_for(lambda: "giving up on 1 anomalies" in alerter.stderr(), what="the give-up in the log")
    assert len(slack.snapshot()) == 3


def test_a_hang_longer_than_the_timeout_is_retried(outbox, slack, alerters):
    slack.answer_with(lambda n, post: Answer(delay=5) if n == 0 else Answer())
    [anomaly] = insert_anomalies(outbox, [{}])
    alerters.start(slack.url, http_timeout_ms="400")

    row = wait_until_settled(outbox, [anomaly], timeout=10)[anomaly]
    posts = slack.snapshot()
    assert len(posts) == 2 and posts[1].received - posts[0].received < 3, "retried after the timeout, not the hang"
    assert (row["status"], row["attempts"]) == ("delivered", 2)
    assert row["last_error"] == "timeout: no answer within 0.4s"
    slack.release_hung()


def test_connection_errors_are_retried_and_recorded_without_the_url(outbox, slack, alerters, unused_port):
    [anomaly] = insert_anomalies(outbox, [{}])
    # Same secret path, but nothing listens on that port.
    alerters.start(slack.url.replace(str(slack.port), str(unused_port)), retry_base_ms="100", max_attempts="2")

    row = wait_until_settled(outbox, [anomaly])[anomaly]
    assert (row["status"], row["attempts"]) == ("failed", 2)
    assert row["last_error"].startswith("connection error:"), row["last_error"]
    assert slack.token not in row["last_error"] and "127.0.0.1" not in row["last_error"]


def test_429_retry_after_is_honoured_and_pauses_all_posting(outbox, slack, alerters):
    slack.answer_with(lambda n, post: Answer(429, "rate_limited", {"Retry-After": "2"}) if n == 0 else Answer())
    ids = insert_anomalies(outbox, [{} for _ in range(4)])
    alerters.start(slack.url, workers="2")

    rows = wait_until_settled(outbox, ids, timeout=15)
    posts = slack.snapshot()
    limited = posts[0]
    assert limited.answered == 429
    later = [p for p in posts[1:] if p.received > limited.received]
    # Posts already in flight when the 429 arrived (the second worker) are allowed; none may START after it
    # within the Retry-After. Allow 0.3 s for a POST that had started before the 429 was answered.
    early = [p for p in later if p.received - limited.received < 1.7]
    assert len(early) <= 1, [round(p.received - limited.received, 2) for p in later]
    assert len(posts) == len(ids) + 1, "only the rate-limited message is posted twice"
    retried = rows[limited.lead_id]
    assert (retried["status"], retried["attempts"]) == ("delivered", 1), "a 429 does not use up an attempt"
    assert retried["last_error"] == "HTTP 429: rate_limited (retry after 2.0s)"
    again = next(p for p in posts[1:] if p.lead_id == limited.lead_id)
    assert again.received - limited.received >= 1.95
    assert {r["status"] for r in rows_by_id(outbox).values()} == {"delivered"}
