//! The SQL of the outbox: claiming a symbol's due rows, and settling them. Every statement is prepared
//! once per connection, so settling after Slack's answer costs no parse or plan.
//!
//! Locking: the lead row is claimed with `FOR UPDATE SKIP LOCKED` (other alerters skip it instead of
//! waiting); a transaction-scoped advisory lock on the symbol then keeps two alerters from alerting the same
//! symbol at once (the second would not yet see the first's message and would break the cooldown); the rest
//! of the symbol's due rows are locked with `SKIP LOCKED` too. All locks end with the transaction.

use std::time::Duration;

use tokio_postgres::{Client, Statement, Transaction};

use crate::anomaly::Anomaly;
use crate::plan::LastMessage;
use crate::stats::Queue;

/// First key of the two-part advisory lock (`'ST'`): keeps our symbol locks apart from other users' keys.
const SYMBOL_LOCK_CLASS: i32 = 0x5354;

pub struct Statements {
    claim_lead: Statement,
    lock_symbol: Statement,
    lock_group: Statement,
    last_message: Statement,
    record_delivery: Statement,
    record_retry: Statement,
    record_failure: Statement,
    record_suppression: Statement,
    next_due: Statement,
}

impl Statements {
    pub async fn prepare(client: &Client) -> Result<Self, tokio_postgres::Error> {
        Ok(Self {
            claim_lead: client
                .prepare(
                    "SELECT id, symbol FROM anomalies
                     WHERE status = 'pending' AND next_attempt_at <= now() AND NOT (symbol = ANY($1::text[]))
                     ORDER BY next_attempt_at, id
                     LIMIT 1
                     FOR UPDATE SKIP LOCKED",
                )
                .await?,
            lock_symbol: client.prepare("SELECT pg_try_advisory_xact_lock($1::int4, hashtext($2::text))").await?,
            lock_group: client
                .prepare(
                    "SELECT id, symbol, ts, kind, score, severity, details, attempts FROM anomalies
                     WHERE symbol = $1::text AND status = 'pending' AND (next_attempt_at <= now() OR id = $2::int8)
                     ORDER BY id = $2::int8 DESC, ts, id
                     LIMIT $3::int8
                     FOR UPDATE SKIP LOCKED",
                )
                .await?,
            last_message: client
                .prepare(
                    "SELECT id, severity, GREATEST(EXTRACT(EPOCH FROM clock_timestamp() - sent_at), 0)::float8
                     FROM alert_messages WHERE symbol = $1::text
                     ORDER BY sent_at DESC LIMIT 1",
                )
                .await?,
            record_delivery: client
                .prepare(
                    "WITH message AS (
                         INSERT INTO alert_messages (symbol, lead_anomaly_id, severity, anomaly_count, channel)
                         VALUES ($1::text, $2::int8, $3::text, $4::int4, $5::text)
                         RETURNING id)
                     UPDATE anomalies a
                     SET status = 'delivered', delivered_at = clock_timestamp(), attempts = a.attempts + 1,
                         message_id = message.id,
                         delivery_note = CASE WHEN a.id = $2::int8 THEN $6::text
                             ELSE format('folded into message %s (lead anomaly %s)', message.id, $2::int8) END
                     FROM message
                     WHERE a.id = ANY($7::int8[])
                     RETURNING message.id",
                )
                .await?,
            record_retry: client
                .prepare(
                    "UPDATE anomalies
                     SET attempts = attempts + $2::int4, last_error = $3::text,
                         status = CASE WHEN attempts + $2::int4 >= $4::int4 THEN 'failed' ELSE 'pending' END,
                         next_attempt_at = clock_timestamp() + $5::float8 * interval '1 millisecond'
                     WHERE id = ANY($1::int8[])
                     RETURNING status",
                )
                .await?,
            record_failure: client
                .prepare(
                    "UPDATE anomalies SET status = 'failed', attempts = attempts + 1, last_error = $2::text
                     WHERE id = ANY($1::int8[])",
                )
                .await?,
            record_suppression: client
                .prepare(
                    "UPDATE anomalies SET status = 'suppressed', message_id = $2::int8, delivery_note = $3::text
                     WHERE id = ANY($1::int8[])",
                )
                .await?,
            next_due: client
                .prepare(
                    "SELECT EXTRACT(EPOCH FROM min(next_attempt_at) - clock_timestamp())::float8
                     FROM anomalies WHERE status = 'pending'",
                )
                .await?,
        })
    }
}

/// The oldest due row nobody else holds, skipping `excluded` symbols: (id, symbol).
pub async fn claim_lead(
    tx: &Transaction<'_>,
    sql: &Statements,
    excluded: &[String],
) -> Result<Option<(i64, String)>, tokio_postgres::Error> {
    Ok(tx
        .query_opt(&sql.claim_lead, &[&excluded])
        .await?
        .map(|row| (row.get(0), row.get(1))))
}

/// False when another transaction is working on this symbol.
pub async fn try_lock_symbol(
    tx: &Transaction<'_>,
    sql: &Statements,
    symbol: &str,
) -> Result<bool, tokio_postgres::Error> {
    Ok(tx
        .query_one(&sql.lock_symbol, &[&SYMBOL_LOCK_CLASS, &symbol])
        .await?
        .get(0))
}

/// The symbol's due pending rows (the lead first, then by bar time), at most `limit`.
pub async fn lock_group(
    tx: &Transaction<'_>,
    sql: &Statements,
    symbol: &str,
    lead: i64,
    limit: i64,
) -> Result<Vec<Anomaly>, tokio_postgres::Error> {
    let rows = tx.query(&sql.lock_group, &[&symbol, &lead, &limit]).await?;
    Ok(rows
        .iter()
        .map(|row| Anomaly {
            id: row.get(0),
            symbol: row.get(1),
            ts: row.get(2),
            kind: row.get(3),
            score: row.get(4),
            severity: row.get(5),
            details: row.get(6),
            attempts: row.get(7),
        })
        .collect())
}

pub async fn last_message(
    tx: &Transaction<'_>,
    sql: &Statements,
    symbol: &str,
) -> Result<Option<LastMessage>, tokio_postgres::Error> {
    Ok(tx
        .query_opt(&sql.last_message, &[&symbol])
        .await?
        .map(|row| LastMessage {
            id: row.get(0),
            severity: row.get(1),
            age: Duration::from_secs_f64(row.get::<_, f64>(2).max(0.0)),
        }))
}

/// What a delivered message records; written before the POST so that after Slack's 200 only COMMIT remains.
pub struct Delivery<'a> {
    pub lead: &'a Anomaly,
    pub ids: Vec<i64>,
    pub channel: &'a str,
    pub note: Option<&'a str>,
}

/// Inserts the message row and marks every row of the group delivered; returns the message id.
pub async fn record_delivery(
    tx: &Transaction<'_>,
    sql: &Statements,
    delivery: &Delivery<'_>,
) -> Result<i64, tokio_postgres::Error> {
    let count = delivery.ids.len() as i32;
    let rows = tx
        .query(
            &sql.record_delivery,
            &[
                &delivery.lead.symbol,
                &delivery.lead.id,
                &delivery.lead.severity,
                &count,
                &delivery.channel,
                &delivery.note,
                &delivery.ids,
            ],
        )
        .await?;
    debug_assert_eq!(rows.len(), delivery.ids.len());
    Ok(rows.first().map(|row| row.get(0)).unwrap_or_default())
}

/// Schedules another attempt after `delay`; rows that reach `max_attempts` become `failed`. `consumed` is
/// 1 for a real failure, 0 for a 429 (rate limiting does not use up the retry budget). Returns how many
/// rows were given up on.
pub async fn record_retry(
    tx: &Transaction<'_>,
    sql: &Statements,
    ids: &[i64],
    consumed: i32,
    reason: &str,
    max_attempts: i32,
    delay: Duration,
) -> Result<usize, tokio_postgres::Error> {
    let delay_ms = delay.as_secs_f64() * 1000.0;
    let rows = tx
        .query(
            &sql.record_retry,
            &[&ids, &consumed, &reason, &max_attempts, &delay_ms],
        )
        .await?;
    Ok(rows
        .iter()
        .filter(|row| row.get::<_, &str>(0) == "failed")
        .count())
}

pub async fn record_failure(
    tx: &Transaction<'_>,
    sql: &Statements,
    ids: &[i64],
    reason: &str,
) -> Result<u64, tokio_postgres::Error> {
    tx.execute(&sql.record_failure, &[&ids, &reason]).await
}

pub async fn record_suppression(
    tx: &Transaction<'_>,
    sql: &Statements,
    ids: &[i64],
    message_id: i64,
    note: &str,
) -> Result<u64, tokio_postgres::Error> {
    tx.execute(&sql.record_suppression, &[&ids, &message_id, &note])
        .await
}

/// Time until the earliest pending row falls due (negative: already due); None when nothing is pending.
pub async fn next_due(
    client: &Client,
    sql: &Statements,
) -> Result<Option<f64>, tokio_postgres::Error> {
    Ok(client.query_one(&sql.next_due, &[]).await?.get(0))
}

/// Queue depth and the age of the oldest undelivered row, for the metrics line.
pub async fn queue(client: &Client) -> Result<Queue, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(detected_at)), 0)::float8
             FROM anomalies WHERE status = 'pending'",
            &[],
        )
        .await?;
    Ok(Queue {
        pending: row.get(0),
        oldest_pending_s: row.get(1),
    })
}
