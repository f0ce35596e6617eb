//! A resilient WebSocket session shared by the streaming providers: connect, (re)subscribe, answer what the
//! protocol needs answered, send heartbeats, reconnect a silent or closed connection with jittered backoff,
//! and close cleanly on shutdown. Provider specifics live behind [`WsProtocol`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::Message;
use tracing::{info, warn};

use crate::shutdown::Shutdown;
use crate::stats::Stats;
use sparktrends_service::backoff::Backoff;

/// What a provider adds to the generic session.
pub trait WsProtocol: Send {
    /// Messages sent after every (re)connect.
    fn subscribe_messages(&self) -> Vec<String>;
    /// Handle one text frame; returns frames to send back (a JSON pong, for instance).
    fn on_text(&mut self, text: &str) -> Vec<String>;
    /// A binary frame: none of our providers send one, so by default it is handed over as text if it is UTF-8.
    fn on_binary(&mut self, data: &[u8]) -> Vec<String> {
        match std::str::from_utf8(data) {
            Ok(text) => self.on_text(text),
            Err(_) => {
                self.on_malformed(
                    "binary frame that is not UTF-8",
                    &String::from_utf8_lossy(data),
                );
                Vec::new()
            }
        }
    }
    fn on_malformed(&mut self, reason: &str, raw: &str);
}

pub struct WsEndpoint {
    /// Provider name for log lines.
    pub name: &'static str,
    /// The URL to dial; may carry a token (Finnhub), so it is never logged.
    pub url: String,
    /// The same URL with secrets redacted: the only form that appears in logs.
    pub log_url: String,
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone)]
pub struct WsTiming {
    /// Reconnect when nothing (data, ping, anything) arrived for this long.
    pub silence_timeout: Duration,
    pub connect_timeout: Duration,
    /// Application-level heartbeat: interval and message.
    pub heartbeat: Option<(Duration, String)>,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

enum SessionEnd {
    Shutdown,
    Lost(String),
}

/// Runs until shutdown, reconnecting for ever: a market feed has nothing better to do than come back.
pub async fn run_session<P: WsProtocol>(
    endpoint: &WsEndpoint,
    timing: &WsTiming,
    protocol: &mut P,
    stats: &Arc<Stats>,
    shutdown: &Shutdown,
) {
    let mut backoff = Backoff::new(timing.backoff_initial, timing.backoff_max);
    let mut first = true;
    while !shutdown.is_triggered() {
        if !first {
            Stats::bump(&stats.reconnects);
            let delay = backoff.next_delay();
            info!(
                "{}: reconnecting to {} in {:?} (attempt {})",
                endpoint.name,
                endpoint.log_url,
                delay,
                backoff.attempts()
            );
            if !shutdown.sleep(delay).await {
                break;
            }
        }
        first = false;
        match connect_and_stream(endpoint, timing, protocol, shutdown, &mut backoff).await {
            Ok(SessionEnd::Shutdown) => break,
            Ok(SessionEnd::Lost(why)) => warn!("{}: connection lost: {why}", endpoint.name),
            Err(err) => warn!("{}: {err:#}", endpoint.name),
        }
    }
    info!("{}: stopped", endpoint.name);
}

async fn connect_and_stream<P: WsProtocol>(
    endpoint: &WsEndpoint,
    timing: &WsTiming,
    protocol: &mut P,
    shutdown: &Shutdown,
    backoff: &mut Backoff,
) -> anyhow::Result<SessionEnd> {
    let mut request = endpoint
        .url
        .as_str()
        .into_client_request()
        .context("invalid WebSocket URL")?;
    for (name, value) in &endpoint.headers {
        request.headers_mut().insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(value).context("header value is not valid")?,
        );
    }
    let connect = tokio_tungstenite::connect_async(request);
    let (mut socket, _) = tokio::select! {
        result = tokio::time::timeout(timing.connect_timeout, connect) => result
            .map_err(|_| anyhow::anyhow!("connect to {} timed out after {:?}", endpoint.log_url, timing.connect_timeout))?
            // tungstenite errors never contain the request URL, so they are safe to log.
            .with_context(|| format!("cannot connect to {}", endpoint.log_url))?,
        _ = shutdown.wait() => return Ok(SessionEnd::Shutdown),
    };
    info!("{}: connected to {}", endpoint.name, endpoint.log_url);
    let subscriptions = protocol.subscribe_messages();
    for message in &subscriptions {
        socket
            .send(Message::text(message.clone()))
            .await
            .context("cannot send subscription")?;
    }
    if !subscriptions.is_empty() {
        info!(
            "{}: sent {} subscription message(s)",
            endpoint.name,
            subscriptions.len()
        );
    }

    let heartbeat_period = timing
        .heartbeat
        .as_ref()
        .map(|(period, _)| *period)
        .unwrap_or(Duration::from_secs(3600));
    let mut heartbeat = tokio::time::interval_at(
        tokio::time::Instant::now() + heartbeat_period,
        heartbeat_period,
    );
    let mut received_any = false;
    // The watchdog counts from the last frame received; our own heartbeats must not keep a dead link "alive".
    let mut last_frame = tokio::time::Instant::now();
    loop {
        let frame = tokio::select! {
            frame = tokio::time::timeout_at(last_frame + timing.silence_timeout, socket.next()) => frame,
            _ = heartbeat.tick(), if timing.heartbeat.is_some() => {
                let (_, message) = timing.heartbeat.as_ref().expect("checked by the guard");
                socket.send(Message::text(message.clone())).await.context("cannot send heartbeat")?;
                continue;
            }
            _ = shutdown.wait() => {
                // Best effort: the process is leaving either way.
                let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                return Ok(SessionEnd::Shutdown);
            }
        };
        let message = match frame {
            Err(_) => {
                return Ok(SessionEnd::Lost(format!(
                    "silent for {:?} (watchdog)",
                    timing.silence_timeout
                )));
            }
            Ok(None) => return Ok(SessionEnd::Lost("stream ended".into())),
            Ok(Some(Err(err))) => return Ok(SessionEnd::Lost(format!("read error: {err}"))),
            Ok(Some(Ok(message))) => message,
        };
        last_frame = tokio::time::Instant::now();
        if !received_any {
            // The connection demonstrably works: the next outage starts from the shortest delay again.
            received_any = true;
            backoff.reset();
        }
        let replies = match message {
            Message::Text(text) => protocol.on_text(text.as_str()),
            Message::Binary(data) => protocol.on_binary(&data),
            // tungstenite queues the pong itself and sends it with the next read or write.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Vec::new(),
            Message::Close(frame) => {
                let why = frame
                    .map(|f| format!("{} {}", f.code, f.reason))
                    .unwrap_or_default();
                return Ok(SessionEnd::Lost(
                    format!("server closed the connection {why}")
                        .trim_end()
                        .to_string(),
                ));
            }
        };
        for reply in replies {
            socket
                .send(Message::text(reply))
                .await
                .context("cannot send reply")?;
        }
    }
}
