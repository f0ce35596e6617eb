"""The webhook URL is a secret: not in logs, stdout, stored errors, nor --help, whatever goes wrong."""

from __future__ import annotations

import subprocess

from tests.alerts.conftest import insert_anomalies, wait_until_settled
from tests.alerts.fake_slack import Answer


def test_webhook_url_never_appears_in_output_or_stored_errors(outbox, slack, alerters, unused_port):
    # A misbehaving proxy echoes the full URL in its error body: the stored reason must still not carry it.
    slack.answer_with(lambda n, post: Answer(400, f"invalid_payload for {slack.url}"))
    [echoed] = insert_anomalies(outbox, [{}])
    alerter = alerters.start(slack.url, workers="1")
    row = wait_until_settled(outbox, [echoed])[echoed]
    assert row["status"] == "failed" and row["last_error"] == "HTTP 400: invalid_payload for ***"
    alerter.stop()

    # Connection errors: reqwest's error text names the URL unless stripped.
    [refused] = insert_anomalies(outbox, [{"symbol": "REFUSED"}])
    alerters.start(slack.url.replace(str(slack.port), str(unused_port)), retry_base_ms="50", max_attempts="2")
    row = wait_until_settled(outbox, [refused])[refused]
    assert row["status"] == "failed" and row["last_error"].startswith("connection error")

    stored = outbox.execute(
        "SELECT string_agg(coalesce(last_error, '') || coalesce(delivery_note, ''), ' ') FROM anomalies"
    )
    assert slack.token not in stored.fetchone()[0]
    output = alerters.all_output()
    assert "connection error" in output and "failed permanently" in output, "the errors were logged..."
    assert slack.token not in output, "...without the URL"


def test_help_does_not_show_the_webhook_from_the_environment(alerter_binary, stack_env, slack):
    result = subprocess.run(
        [str(alerter_binary), "--help"],
        env={**stack_env, "SLACK_WEBHOOK": slack.url},
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert "SLACK_WEBHOOK" in result.stdout
    assert slack.token not in result.stdout + result.stderr
    assert stack_env["POSTGRES_PASSWORD"] not in result.stdout
