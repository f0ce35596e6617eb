//! SparkTrends alerter: delivers rows of the `anomalies` outbox to a Slack incoming webhook (Block Kit), or
//! prints them when `SLACK_WEBHOOK` is unset. Operator documentation: `docs/alerts.md`.
//!
//! # Delivery state machine
//!
//! Every `anomalies` row starts `pending` (`attempts = 0`, `next_attempt_at = now()`). One transaction per
//! message:
//!
//! 1. `BEGIN`; claim the oldest due row (`status = 'pending' AND next_attempt_at <= now()`) with
//!    `FOR UPDATE SKIP LOCKED`; take a transaction-scoped advisory lock on its symbol (busy: roll back and
//!    try another symbol); lock the symbol's other due rows (`SKIP LOCKED`, at most `--max-group`).
//! 2. Plan ([`plan`]): within the per-symbol cooldown and no more severe than the last message, every row
//!    becomes `suppressed` (`message_id` = the message that covered it, `delivery_note` says why) and we
//!    commit. Otherwise one message: the most severe row leads, the others are folded into it.
//! 3. `SAVEPOINT`; insert the `alert_messages` row and mark the rows `delivered` (`attempts + 1`,
//!    `delivered_at`, `message_id`; folded rows get a note naming the message and lead).
//! 4. POST (or print). The answer decides:
//!    - 2xx → `COMMIT`. Nothing else is left to do at this point.
//!    - 429 → roll back to the savepoint; `next_attempt_at = now + Retry-After` (default/capped), `attempts`
//!      unchanged (rate limiting is not the message's fault), `last_error`; the whole process stops posting
//!      until then ([`gate`]); `COMMIT`.
//!    - 5xx, 408, timeout, connection error → roll back to the savepoint; `attempts + 1`, `last_error`,
//!      `next_attempt_at = now + backoff` ([`sparktrends_service::backoff`], exponential with jitter); a row reaching
//!      `--max-attempts` becomes `failed`; `COMMIT`.
//!    - any other status (Slack: `400 invalid_payload`, `403 action_prohibited`, `404 no_service`,
//!      `410 channel_is_archived`) → roll back to the savepoint; `failed`, `attempts + 1`,
//!      `last_error = "HTTP 404: no_service"`; `COMMIT`.
//!
//! Terminal states: `delivered`, `suppressed`, `failed`. A crash anywhere before step 4's COMMIT rolls the
//! whole transaction back (PostgreSQL aborts it when the connection drops), so the rows are `pending` again
//! and the next alerter picks them up: nothing is lost.
//!
//! # Where a duplicate can still appear
//!
//! Slack incoming webhooks have no idempotency key, so one window cannot be closed: **after Slack has
//! received the POST and before our COMMIT is durable**. If the alerter dies (kill -9, OOM, host loss), or
//! its database connection breaks, inside that window, the transaction rolls back, the rows are pending
//! again, and the message is posted a second time. Concretely this covers: Slack accepted the request but
//! its 200 has not reached us yet (or never does: then we also time out and retry, a duplicate as well);
//! the 200 arrived and the COMMIT is in flight. The COMMIT's own failure is logged as such.
//!
//! How the window is kept small:
//! - everything the COMMIT makes durable is written *before* the POST (inside a savepoint), with
//!   statements prepared when the connection opened, so after a 200 the only step left is one `COMMIT`
//!   round trip on an open connection;
//! - one message per transaction: a crash can duplicate at most the one message in flight per worker,
//!   never a batch;
//! - the HTTP timeout is short (default 5 s) so a stalled Slack holds the window open only briefly, and the
//!   session's `idle_in_transaction_session_timeout` bounds how long a hung process can hold locks;
//! - retries of the same rows re-send the same content, so a duplicate is recognisable (same anomaly id in
//!   the context line).
//!
//! Several alerter processes are safe: `SKIP LOCKED` lets each claim different rows, and the advisory lock
//! per symbol keeps the cooldown exact across them.

pub mod anomaly;
pub mod app;
pub mod channel;
pub mod cli;
pub mod db;
pub mod gate;
pub mod listener;
pub mod message;
pub mod outbox;
pub mod plan;
pub mod severity;
pub mod slack;
pub mod stats;
pub mod worker;
