//! LISTEN on the channel the `anomalies` INSERT trigger notifies (migration 0004), and wake the workers.
//! NOTIFY is delivered at commit, so a worker starts claiming milliseconds after the metrics job commits.
//! If this connection drops, the workers' polling keeps delivering (at the polling interval) until it is back.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{watch, Notify};
use tokio_postgres::AsyncMessage;
use tracing::{info, warn};

use crate::db::PgSettings;
use sparktrends_service::backoff::retry_delay;

/// Must match `pg_notify(...)` in db/migrations/0004_alert_delivery.sql.
pub const CHANNEL: &str = "sparktrends_anomalies";

pub async fn run(pg: PgSettings, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    let mut attempt = 0u32;
    while !*shutdown.borrow() {
        tokio::select! {
            result = listen_once(&pg, &wake) => {
                let reason = match result {
                    Ok(()) => "connection closed".to_string(),
                    Err(error) => error.to_string(),
                };
                attempt += 1;
                let wait = retry_delay(attempt, Duration::from_millis(200), Duration::from_secs(10), rand::random());
                warn!("listener: {reason}; polling only until it reconnects in {wait:?}");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
            _ = shutdown.changed() => {}
        }
    }
}

/// Returns when the connection ends.
async fn listen_once(pg: &PgSettings, wake: &Notify) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = pg.connect("listener").await?;
    let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
    let statement = format!("LISTEN {CHANNEL}");
    {
        // The connection only makes progress while polled: drive it while LISTEN is sent.
        let listen = client.batch_execute(&statement);
        tokio::pin!(listen);
        loop {
            tokio::select! {
                result = &mut listen => { result?; break; }
                message = messages.next() => match message {
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error),
                    None => return Ok(()),
                },
            }
        }
    }
    info!("listener: listening on {CHANNEL}");
    // Rows inserted while we were not listening are due now.
    wake.notify_waiters();
    while let Some(message) = messages.next().await {
        match message? {
            AsyncMessage::Notification(_) => wake.notify_waiters(),
            AsyncMessage::Notice(notice) => {
                info!("listener: postgres notice: {}", notice.message())
            }
            _ => {}
        }
    }
    // The client must live as long as we listen: dropping it closes the connection.
    drop(client);
    Ok(())
}
