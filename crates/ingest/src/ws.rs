//! A resilient WebSocket session shared by the streaming providers: connect, (re)subscribe, answer what the
//! protocol needs answered, send heartbeats, reconnect a silent or closed connection with jittered backoff,
//! and close cleanly on shutdown. Provider specifics live behind [`WsProtocol`]. Providers that cap what a client
//! may send per second (Binance: 5 messages a second, pongs included) get every outgoing message paced by
//! [`WsTiming::min_send_interval`].

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
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
    /// A connection (the first or a reconnect) is up: what arrives next follows an outage, if any.
    fn on_connected(&mut self) {}
}

pub struct WsEndpoint {
    /// Provider name for log lines, naming the connection when a provider uses several (`binance[2/3]`).
    pub name: String,
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
    /// Least time between two messages this client sends on one connection (subscriptions, replies, heartbeats);
    /// the automatic pong to a server ping counts as one too. Zero: unpaced.
    pub min_send_interval: Duration,
}

/// Schedules a connection's outgoing messages at least `interval` apart. The schedule takes the clock as an
/// argument, so it is testable without a runtime.
#[derive(Debug)]
struct SendPacer {
    interval: Duration,
    next_free: Option<Instant>,
}

impl SendPacer {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            next_free: None,
        }
    }

    /// When the next message may go, that slot being taken by the caller.
    fn reserve(&mut self, now: Instant) -> Instant {
        let at = self.next_free.map_or(now, |free| free.max(now));
        self.next_free = Some(at + self.interval);
        at
    }

    /// A message that went out without waiting (tungstenite answers a ping by itself): it still uses budget, so
    /// the next paced message waits a whole interval after it, or after the slot already taken, whichever is later.
    fn charge_unpaced(&mut self, now: Instant) {
        self.reserve(now);
    }

    async fn wait_turn(&mut self) {
        let now = Instant::now();
        let at = self.reserve(now);
        if at > now {
            tokio::time::sleep_until(at).await;
        }
    }
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
    protocol.on_connected();
    let mut pacer = SendPacer::new(timing.min_send_interval);
    let subscriptions = protocol.subscribe_messages();
    let subscribe = async {
        for message in &subscriptions {
            pacer.wait_turn().await;
            socket
                .send(Message::text(message.clone()))
                .await
                .context("cannot send subscription")?;
        }
        anyhow::Ok(())
    };
    // Paced, a big subscription takes seconds: shutdown must not wait for it.
    tokio::select! {
        sent = subscribe => sent?,
        _ = shutdown.wait() => return Ok(SessionEnd::Shutdown),
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
                pacer.wait_turn().await;
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
        // Only data shows the connection works: a server that accepts and at once closes (overloaded, "try again
        // later") must not reset the backoff, or the client redials in a tight loop.
        if !received_any && matches!(message, Message::Text(_) | Message::Binary(_)) {
            // The next outage starts from the shortest delay again.
            received_any = true;
            backoff.reset();
        }
        let replies = match message {
            Message::Text(text) => protocol.on_text(text.as_str()),
            Message::Binary(data) => protocol.on_binary(&data),
            Message::Ping(_) => {
                // tungstenite queues the pong itself and sends it with the next read or write: we cannot delay
                // it, only count it.
                pacer.charge_unpaced(Instant::now());
                Vec::new()
            }
            Message::Pong(_) | Message::Frame(_) => Vec::new(),
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
            pacer.wait_turn().await;
            socket
                .send(Message::text(reply))
                .await
                .context("cannot send reply")?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_millis(400);

    #[test]
    fn paced_messages_are_an_interval_apart_and_an_idle_connection_sends_at_once() {
        let start = Instant::now();
        let mut pacer = SendPacer::new(INTERVAL);
        let slots: Vec<Duration> = (0..4).map(|_| pacer.reserve(start) - start).collect();
        assert_eq!(slots, [0, 400, 800, 1200].map(Duration::from_millis));
        let later = start + Duration::from_secs(10);
        assert_eq!(
            pacer.reserve(later),
            later,
            "no debt carried over an idle time"
        );
    }

    #[test]
    fn an_unpaced_pong_pushes_the_next_message_back() {
        let start = Instant::now();
        let mut pacer = SendPacer::new(INTERVAL);
        assert_eq!(pacer.reserve(start), start);
        // A ping answered 100 ms after a subscription: the next one waits a full interval more.
        pacer.charge_unpaced(start + Duration::from_millis(100));
        assert_eq!(pacer.reserve(start), start + Duration::from_millis(800));
        // A ping answered long after the last message: the next one waits an interval after the pong.
        let pong = start + Duration::from_secs(5);
        pacer.charge_unpaced(pong);
        assert_eq!(pacer.reserve(pong), pong + INTERVAL);
    }

    /// Sends at the paced slots of messages ready at `ready`, and the pong to one server ping: as in
    /// `connect_and_stream`, a ping that arrives while a send waits for its slot is read (and answered) right
    /// after that send; one that arrives while the connection is idle is answered at once.
    fn simulate(ready: &[Instant], ping: Instant) -> Vec<Instant> {
        let mut pacer = SendPacer::new(INTERVAL);
        let mut sent = Vec::new();
        let mut ping = Some(ping);
        let mut free_at = ready[0];
        for &at in ready {
            let call = at.max(free_at);
            if let Some(idle_ping) = ping.filter(|&p| p <= call) {
                let pong = idle_ping.max(free_at);
                pacer.charge_unpaced(pong);
                sent.push(pong);
                ping = None;
            }
            let slot = pacer.reserve(call);
            sent.push(slot);
            free_at = slot;
            if ping.is_some_and(|p| p <= slot) {
                pacer.charge_unpaced(slot);
                sent.push(slot);
                ping = None;
            }
        }
        sent.extend(ping.map(|p| p.max(free_at)));
        sent.sort();
        sent
    }

    #[test]
    fn no_second_holds_more_than_four_messages_even_with_a_pong() {
        // Binance closes a connection over 5 incoming messages in a second, pongs included.
        let start = Instant::now();
        let ms = |ms: u64| start + Duration::from_millis(ms);
        let bursts: [Vec<Instant>; 3] = [
            vec![start; 8],
            [vec![start; 3], vec![ms(1500); 3]].concat(),
            (0..8).map(|i| ms(i * 300)).collect(),
        ];
        for ready in &bursts {
            for ping_ms in (0..4000).step_by(10) {
                let sent = simulate(ready, ms(ping_ms));
                assert_eq!(sent.len(), ready.len() + 1);
                for (i, &from) in sent.iter().enumerate() {
                    let window = sent[i..]
                        .iter()
                        .take_while(|&&t| t <= from + Duration::from_secs(1))
                        .count();
                    assert!(
                        window <= 4,
                        "ping at {ping_ms} ms: {window} messages in 1 s: {sent:?}"
                    );
                }
            }
        }
    }
}
