"""Crashes: kill -9 while a POST is in flight loses nothing, and the only anomaly posted twice is the one in
flight; the documented duplicate window (Slack answered 200, COMMIT not done) yields exactly that one
duplicate, and nothing else."""

from __future__ import annotations

from collections import Counter

from tests.alerts.conftest import insert_anomalies, rows_by_id, wait_for, wait_until_settled
from tests.alerts.fake_slack import OK, Answer
from tests.conftest import connect

# Session-level advisory key the test holds to stall the alerter's COMMIT (ours use the two-key form).
STALL_KEY = 4242


def test_kill_9_mid_batch_loses_nothing(outbox, slack, alerters):
    ids = insert_anomalies(outbox, [{} for _ in range(20)])
    slack.answer_with(lambda n, post: Answer(delay=60) if n == 5 else OK)
    first = alerters.start(slack.url, http_timeout_ms="30000")
    posts = slack.wait_for_posts(6)
    in_flight = posts[5].lead_id
    first.kill9()
    slack.release_hung()

    # The killed transaction rolled back: the in-flight row is pending again, the five before are delivered.
    rows = wait_for(
        lambda: (r := rows_by_id(outbox)) and r[in_flight]["status"] == "pending" and r,
        what="the in-flight row back to pending",
    )
    assert sum(r["status"] == "delivered" for r in rows.values()) == 5
    assert rows[in_flight]["attempts"] == 0, "the uncommitted attempt left no trace"

    alerters.start(slack.url)
    rows = wait_until_settled(outbox, ids)
    assert {r["status"] for r in rows.values()} == {"delivered"}
    counts = Counter(slack.lead_ids())
    assert sorted(counts) == ids, "nothing lost"
    assert {i: c for i, c in counts.items() if c > 1} == {in_flight: 2}, "only the in-flight message twice"


def test_duplicate_window_between_slacks_200_and_commit(outbox, slack, alerters, stack_env, test_db):
    # A deferred constraint trigger runs inside COMMIT; it waits for an advisory lock this test holds, so the
    # alerter's COMMIT is stuck after Slack has answered 200: exactly the documented window.
    outbox.execute(
        f"CREATE FUNCTION alerts_test_stall() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" PERFORM pg_advisory_lock({STALL_KEY}); PERFORM pg_advisory_unlock({STALL_KEY}); RETURN NULL; END $$"
    )
    outbox.execute(
        "CREATE CONSTRAINT TRIGGER alerts_test_stall AFTER UPDATE ON anomalies DEFERRABLE INITIALLY DEFERRED"
        " FOR EACH ROW WHEN (NEW.status = 'delivered') EXECUTE FUNCTION alerts_test_stall()"
    )
    holder = connect(stack_env, test_db, autocommit=True)
    try:
        holder.execute("SELECT pg_advisory_lock(%s)", (STALL_KEY,))
        [windowed] = insert_anomalies(outbox, [{"symbol": "WINDOW"}])
        first = alerters.start(slack.url)
        [post] = slack.wait_for_posts(1)
        assert post.lead_id == windowed
        backend = wait_for(
            lambda: outbox.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'sparktrends-alerter/worker-1'"
                " AND wait_event_type = 'Lock' AND query = 'COMMIT'"
            ).fetchone(),
            what="the alerter's COMMIT waiting",
        )[0]
        wait_for(lambda: post.answered == 200, what="Slack's 200")

        first.kill9()
        # The process is gone but its COMMIT already reached the server; terminating the backend is the
        # other half of the crash (connection lost before the COMMIT completed).
        outbox.execute("SELECT pg_terminate_backend(%s)", (backend,))
        wait_for(
            lambda: not outbox.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (backend,)).fetchone(),
            what="the backend to exit",
        )
    finally:
        holder.close()
        outbox.execute("DROP TRIGGER IF EXISTS alerts_test_stall ON anomalies")
        outbox.execute("DROP FUNCTION IF EXISTS alerts_test_stall()")

    row = rows_by_id(outbox)[windowed]
    assert (row["status"], row["attempts"], row["message_id"]) == ("pending", 0, None), "the COMMIT never happened"
    others = insert_anomalies(outbox, [{"symbol": f"AFTER{i}"} for i in range(5)])
    alerters.start(slack.url)
    rows = wait_until_settled(outbox, [windowed, *others])
    assert {r["status"] for r in rows.values()} == {"delivered"}
    counts = Counter(slack.lead_ids())
    assert counts == {windowed: 2, **dict.fromkeys(others, 1)}, "exactly one duplicate: the one in the window"
    assert outbox.execute("SELECT count(*) FROM alert_messages").fetchone()[0] == 6
