//! One delivery loop on its own connection: claim a symbol's due rows, plan, deliver, settle, all in one
//! transaction per message. Between messages it sleeps until woken by NOTIFY, the next retry falls due, or
//! the polling interval passes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio_postgres::{Client, Transaction};
use tracing::{error, info, warn};

use crate::anomaly::Anomaly;
use crate::channel::Channel;
use crate::db::PgSettings;
use crate::gate::RateGate;
use crate::outbox::{self, Delivery, Statements};
use crate::plan::{plan, LastMessage, Plan};
use crate::slack::Outcome;
use crate::stats::Stats;
use sparktrends_service::backoff::retry_delay;

/// Symbols skipped in one claim round because another alerter holds them; past this many, wait for a wake.
const MAX_BUSY_SYMBOLS: usize = 32;

#[derive(Debug, Clone)]
pub struct Policy {
    pub max_attempts: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub cooldown: Duration,
    pub max_group: i64,
    pub poll_interval: Duration,
    /// Bounds how long a hung alerter can hold row locks (the HTTP timeout already bounds a healthy one).
    pub idle_in_transaction_timeout: Duration,
}

/// Shared by the workers of one process.
pub struct Shared {
    pub channel: Channel,
    pub policy: Policy,
    pub gate: RateGate,
    pub stats: Stats,
    /// Poked by the LISTEN task when anomalies are inserted.
    pub wake: Arc<Notify>,
}

enum Step {
    Worked,
    Idle,
}

struct Session {
    client: Client,
    sql: Statements,
}

pub struct Worker {
    name: String,
    pg: PgSettings,
    shared: Arc<Shared>,
}

impl Worker {
    pub fn new(name: String, pg: PgSettings, shared: Arc<Shared>) -> Self {
        Self { name, pg, shared }
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut reconnect_attempt = 0u32;
        let mut session: Option<Session> = None;
        while !*shutdown.borrow() {
            let current = match session.as_mut() {
                Some(s) if !s.client.is_closed() => s,
                _ => {
                    match self.open_session().await {
                        Ok(s) => {
                            reconnect_attempt = 0;
                            session.insert(s)
                        }
                        Err(error) => {
                            reconnect_attempt += 1;
                            let wait = retry_delay(
                                reconnect_attempt,
                                Duration::from_millis(200),
                                Duration::from_secs(10),
                                rand::random(),
                            );
                            error!("{}: cannot open the outbox session ({error}); retrying in {wait:?}", self.name);
                            sleep_unless_shutdown(wait, &mut shutdown).await;
                            continue;
                        }
                    }
                }
            };

            if let Some(wait) = self.shared.gate.remaining() {
                sleep_unless_shutdown(wait, &mut shutdown).await;
                continue;
            }

            // Registered before the claim: an INSERT that commits while we look is not missed.
            let woken = self.shared.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();

            match self.deliver_next(current).await {
                Ok(Step::Worked) => {}
                Ok(Step::Idle) => {
                    let nap = self.idle_nap(current).await;
                    tokio::select! {
                        _ = &mut woken => {}
                        _ = tokio::time::sleep(nap) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Err(error) => {
                    error!("{}: outbox error: {error}", self.name);
                    sleep_unless_shutdown(Duration::from_millis(500), &mut shutdown).await;
                }
            }
        }
        info!("{}: stopped", self.name);
    }

    async fn open_session(&self) -> anyhow::Result<Session> {
        let client = self.pg.connect_client(&self.name).await?;
        let timeout_ms = self.shared.policy.idle_in_transaction_timeout.as_millis();
        client
            .batch_execute(&format!(
                "SET idle_in_transaction_session_timeout = {timeout_ms}"
            ))
            .await?;
        let sql = Statements::prepare(&client).await.map_err(|e| {
            anyhow::anyhow!("{e} (are the migrations, 0004_alert_delivery included, applied?)")
        })?;
        info!("{}: connected to {}", self.name, self.pg.describe());
        Ok(Session { client, sql })
    }

    /// Until the earliest retry is due, at most the polling interval.
    async fn idle_nap(&self, session: &Session) -> Duration {
        let poll = self.shared.policy.poll_interval;
        match outbox::next_due(&session.client, &session.sql).await {
            Ok(Some(seconds)) => Duration::from_secs_f64(seconds.clamp(0.001, poll.as_secs_f64())),
            _ => poll,
        }
    }

    async fn deliver_next(&self, session: &mut Session) -> anyhow::Result<Step> {
        let mut busy_symbols: Vec<String> = Vec::new();
        loop {
            let tx = session.client.transaction().await?;
            let Some((lead_id, symbol)) =
                outbox::claim_lead(&tx, &session.sql, &busy_symbols).await?
            else {
                tx.rollback().await?;
                return Ok(Step::Idle);
            };
            if !outbox::try_lock_symbol(&tx, &session.sql, &symbol).await? {
                tx.rollback().await?;
                busy_symbols.push(symbol);
                if busy_symbols.len() >= MAX_BUSY_SYMBOLS {
                    return Ok(Step::Idle);
                }
                continue;
            }
            let group = outbox::lock_group(
                &tx,
                &session.sql,
                &symbol,
                lead_id,
                self.shared.policy.max_group,
            )
            .await?;
            let last = outbox::last_message(&tx, &session.sql, &symbol).await?;
            match plan(&group, last.as_ref(), self.shared.policy.cooldown) {
                None => tx.rollback().await?,
                Some(Plan::Suppress { message_id, ids }) => {
                    self.suppress(tx, &session.sql, &symbol, &ids, message_id, last.as_ref())
                        .await?
                }
                Some(Plan::Send { lead, folded }) => {
                    self.send(tx, &session.sql, &group, lead, &folded).await?
                }
            }
            return Ok(Step::Worked);
        }
    }

    async fn suppress(
        &self,
        tx: Transaction<'_>,
        sql: &Statements,
        symbol: &str,
        ids: &[i64],
        message_id: i64,
        last: Option<&LastMessage>,
    ) -> anyhow::Result<()> {
        let note = match last {
            Some(last) => format!(
                "cooldown: {symbol} was alerted by message {message_id} {:.0}s ago at severity {}; not more severe",
                last.age.as_secs_f64(),
                last.severity
            ),
            None => format!("cooldown: covered by message {message_id}"),
        };
        outbox::record_suppression(&tx, sql, ids, message_id, &note).await?;
        tx.commit().await?;
        Stats::add(&self.shared.stats.suppressed, ids.len());
        info!(
            "{}: suppressed {} anomalies for {symbol} (cooldown of message {message_id})",
            self.name,
            ids.len()
        );
        Ok(())
    }

    /// The duplicate window is here: between `deliver` (Slack has the message) and the COMMIT returning.
    /// Everything the COMMIT makes durable is written before the POST, inside a savepoint, so after a 200
    /// the only work left is the COMMIT itself.
    async fn send(
        &self,
        tx: Transaction<'_>,
        sql: &Statements,
        group: &[Anomaly],
        lead_id: i64,
        folded_ids: &[i64],
    ) -> anyhow::Result<()> {
        let lead = group
            .iter()
            .find(|a| a.id == lead_id)
            .expect("the plan's lead is in the group");
        let folded: Vec<Anomaly> = group.iter().filter(|a| a.id != lead_id).cloned().collect();
        let ids: Vec<i64> = group.iter().map(|a| a.id).collect();
        let channel = &self.shared.channel;

        tx.batch_execute("SAVEPOINT before_delivery").await?;
        let delivery = Delivery {
            lead,
            ids: ids.clone(),
            channel: channel.name(),
            note: channel.note(),
        };
        let message_id = outbox::record_delivery(&tx, sql, &delivery).await?;

        let outcome = channel.deliver(lead, &folded).await;

        if outcome == Outcome::Delivered {
            if let Err(error) = tx.commit().await {
                error!(
                    "{}: message {message_id} for {} was accepted but its COMMIT failed ({error}); anomalies {ids:?} \
                     stay pending and will be sent again (the documented duplicate window)",
                    self.name, lead.symbol
                );
                return Err(error.into());
            }
            Stats::add(&self.shared.stats.sent, 1);
            Stats::add(&self.shared.stats.folded, folded_ids.len());
            info!(
                "{}: delivered message {message_id} ({}) for {}: anomaly {} (+{} folded)",
                self.name,
                channel.name(),
                lead.symbol,
                lead.id,
                folded_ids.len()
            );
            return Ok(());
        }

        tx.batch_execute("ROLLBACK TO SAVEPOINT before_delivery")
            .await?;
        let policy = &self.shared.policy;
        let max_attempts = policy.max_attempts as i32;
        match outcome {
            Outcome::Delivered => unreachable!("handled above"),
            Outcome::RateLimited { wait, reason } => {
                self.shared.gate.pause_for(wait);
                outbox::record_retry(&tx, sql, &ids, 0, &reason, max_attempts, wait).await?;
                tx.commit().await?;
                Stats::add(&self.shared.stats.rate_limited, 1);
                warn!(
                    "{}: rate limited on {}: {reason}; posting paused for {wait:?}",
                    self.name, lead.symbol
                );
            }
            Outcome::Retryable { reason } => {
                let attempt = group
                    .iter()
                    .map(|a| a.attempts.max(0) as u32)
                    .max()
                    .unwrap_or(0)
                    + 1;
                let delay =
                    retry_delay(attempt, policy.retry_base, policy.retry_max, rand::random());
                let gave_up =
                    outbox::record_retry(&tx, sql, &ids, 1, &reason, max_attempts, delay).await?;
                tx.commit().await?;
                if gave_up > 0 {
                    Stats::add(&self.shared.stats.failed, gave_up);
                    error!(
                        "{}: giving up on {gave_up} anomalies for {} after {attempt} attempts: {reason}",
                        self.name, lead.symbol
                    );
                }
                if gave_up < ids.len() {
                    Stats::add(&self.shared.stats.retried, 1);
                    warn!(
                        "{}: attempt {attempt} for {} failed: {reason}; retry in {delay:?}",
                        self.name, lead.symbol
                    );
                }
            }
            Outcome::Permanent { reason } => {
                outbox::record_failure(&tx, sql, &ids, &reason).await?;
                tx.commit().await?;
                Stats::add(&self.shared.stats.failed, ids.len());
                error!(
                    "{}: {} anomalies for {} failed permanently: {reason}",
                    self.name,
                    ids.len(),
                    lead.symbol
                );
            }
        }
        Ok(())
    }
}

async fn sleep_unless_shutdown(wait: Duration, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = shutdown.changed() => {}
    }
}
