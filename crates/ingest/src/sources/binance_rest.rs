//! Binance public REST market data (no key): trades by id (`/api/v3/historicalTrades`), the first trade id at a
//! time (`/api/v3/aggTrades`) and closed 1-minute klines (`/api/v3/klines`), for history backfills and for
//! repairing a live feed's gaps. Trades and bars are mapped by the same functions as the live stream's
//! (`binance::trade_from_wire`, `binance::closed_kline_bar`).
//!
//! Every request of the process draws on one request-weight budget ([`WeightBudget`], shared by cloning the
//! client): requests are spaced by their weight; the server's own count (`X-MBX-USED-WEIGHT-1M`, which includes
//! other clients on this IP) holds requests back until the next minute when it nears the limit; a 429 or 418
//! holds every request for `Retry-After` and the same request is then sent again. Sending anything while such a
//! wait is in force is what turns a 429 into an IP ban (418), so no request ever does.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;
use sparktrends_service::backoff::Backoff;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::http;
use crate::messages::{now_ms, Bar, Trade, MINUTE_MS};
use crate::shutdown::Shutdown;
use crate::sources::binance::{closed_kline_bar, trade_from_wire, KlineFields};
use crate::sources::finnhub::encode_query;

/// Binance's market-data-only host: the same public endpoints as api.binance.com, without account traffic.
pub const DEFAULT_REST_URL: &str = "https://data-api.binance.vision";
/// The most rows `limit` may ask for on every endpoint used here.
pub const MAX_LIMIT: u32 = 1000;
/// Binance's REQUEST_WEIGHT limit per minute and IP (exchangeInfo `rateLimits`).
pub const SERVER_WEIGHT_LIMIT: u32 = 6000;
/// Half the server's limit: a live feed's gap repairs and a backfill on one IP never get near it together.
pub const DEFAULT_WEIGHT_PER_MINUTE: u32 = 3000;
/// Binance answers `{"code":-1121,"msg":"Invalid symbol."}` for a symbol it does not list.
pub const INVALID_SYMBOL: i64 = -1121;
/// `aggTrades` refuses a startTime..endTime window of an hour or more.
const AGG_TRADES_WINDOW_MS: i64 = 3_600_000;
const USED_WEIGHT_HEADER: &str = "x-mbx-used-weight-1m";
/// The shortest IP ban; used when a 418 comes without `Retry-After`.
const DEFAULT_BAN_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    HistoricalTrades,
    AggTrades,
    Klines,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::HistoricalTrades => "/api/v3/historicalTrades",
            Endpoint::AggTrades => "/api/v3/aggTrades",
            Endpoint::Klines => "/api/v3/klines",
        }
    }

    /// Request weight as documented (tests/fixtures/wire/binance/NOTES.md), for any `limit` up to 1000.
    pub fn weight(self) -> u32 {
        match self {
            Endpoint::HistoricalTrades => 25,
            Endpoint::AggTrades => 4,
            Endpoint::Klines => 2,
        }
    }
}

/// The process's request-weight budget. Requests are spaced so that `per_minute` weight is spent per minute at
/// most (a request of weight w holds the next one back w·60/per_minute seconds); a hold (429, 418, or the
/// server's count near its limit) stops every request until it ends.
pub struct WeightBudget {
    per_minute: f64,
    server_limit: u32,
    state: Mutex<BudgetState>,
}

struct BudgetState {
    next_slot: Instant,
    hold_until: Option<Instant>,
    spent: u64,
    server_used: Option<u32>,
}

impl WeightBudget {
    pub fn new(per_minute: u32, server_limit: u32) -> Self {
        Self {
            per_minute: f64::from(per_minute.max(1)),
            server_limit: server_limit.max(1),
            state: Mutex::new(BudgetState {
                next_slot: Instant::now(),
                hold_until: None,
                spent: 0,
                server_used: None,
            }),
        }
    }

    /// How long a request of `weight` holds the next one back.
    pub fn spacing(&self, weight: u32) -> Duration {
        Duration::from_secs_f64(f64::from(weight) * 60.0 / self.per_minute)
    }

    /// Books a request of `weight` at `now`, or says how long to wait before asking again.
    pub fn try_reserve(&self, weight: u32, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().expect("weight budget lock");
        let earliest = match state.hold_until {
            Some(hold) => state.next_slot.max(hold),
            None => state.next_slot,
        };
        if earliest > now {
            return Err(earliest - now);
        }
        state.next_slot = now + self.spacing(weight);
        state.spent += u64::from(weight);
        Ok(())
    }

    /// Waits for the budget to allow a request of `weight` and books it; false if shutdown came first.
    pub async fn acquire(&self, weight: u32, shutdown: &Shutdown) -> bool {
        loop {
            if shutdown.is_triggered() {
                return false;
            }
            match self.try_reserve(weight, Instant::now()) {
                Ok(()) => return true,
                // Asking again after the wait: a hold may have been set meanwhile by another request's 429.
                Err(wait) => {
                    if !shutdown.sleep(wait).await {
                        return false;
                    }
                }
            }
        }
    }

    /// No request before `now + wait` (after a 429 or 418).
    pub fn hold_at(&self, wait: Duration, now: Instant) {
        let mut state = self.state.lock().expect("weight budget lock");
        let until = now + wait;
        state.hold_until = Some(state.hold_until.map_or(until, |hold| hold.max(until)));
    }

    pub fn hold(&self, wait: Duration) {
        self.hold_at(wait, Instant::now());
    }

    /// Records the server's weight count for this IP and minute. When it leaves less than a tenth of the limit
    /// (other clients on this IP count too), every request waits for the server's next minute; returns that wait.
    pub fn observe_server_weight(&self, used: u32, now: Instant, wall_ms: i64) -> Option<Duration> {
        let nearly_spent = u64::from(used) * 10 >= u64::from(self.server_limit) * 9;
        self.state.lock().expect("weight budget lock").server_used = Some(used);
        if !nearly_spent {
            return None;
        }
        let wait = until_next_minute(wall_ms);
        self.hold_at(wait, now);
        Some(wait)
    }

    /// Weight this process has spent so far.
    pub fn spent(&self) -> u64 {
        self.state.lock().expect("weight budget lock").spent
    }

    /// The server's last reported count for this IP's current minute.
    pub fn server_used(&self) -> Option<u32> {
        self.state.lock().expect("weight budget lock").server_used
    }
}

/// Until the next whole UTC minute, plus a second for clock skew: the server's weight window is the minute.
fn until_next_minute(wall_ms: i64) -> Duration {
    Duration::from_millis((MINUTE_MS - wall_ms.rem_euclid(MINUTE_MS) + 1_000) as u64)
}

#[derive(Debug, Clone)]
pub struct RestSettings {
    pub base_url: String,
    pub weight_per_minute: u32,
    pub server_weight_limit: u32,
    pub http_timeout: Duration,
    /// 5xx answers and network failures in a row before a request is given up.
    pub max_attempts: u32,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for RestSettings {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_REST_URL.to_string(),
            weight_per_minute: DEFAULT_WEIGHT_PER_MINUTE,
            server_weight_limit: SERVER_WEIGHT_LIMIT,
            http_timeout: Duration::from_secs(10),
            max_attempts: 8,
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RestError {
    /// A 4xx other than 429/418: asking again cannot help (an unknown symbol, a bad parameter).
    Rejected {
        status: u16,
        code: Option<i64>,
        message: String,
        body: String,
    },
    /// A 2xx whose body is not the documented shape.
    Malformed { reason: String, body: String },
    /// 5xx answers or network failures `max_attempts` times in a row.
    Unavailable(String),
    /// Shutdown came before an answer.
    Shutdown,
}

impl RestError {
    pub fn is_invalid_symbol(&self) -> bool {
        matches!(
            self,
            RestError::Rejected {
                code: Some(INVALID_SYMBOL),
                ..
            }
        )
    }
}

impl std::fmt::Display for RestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestError::Rejected {
                status,
                code: Some(code),
                message,
                ..
            } => write!(f, "HTTP {status}, code {code}: {message}"),
            RestError::Rejected { status, body, .. } => write!(f, "HTTP {status}: {body}"),
            RestError::Malformed { reason, .. } => write!(f, "{reason}"),
            RestError::Unavailable(reason) => write!(f, "unavailable: {reason}"),
            RestError::Shutdown => write!(f, "stopped by shutdown"),
        }
    }
}

impl std::error::Error for RestError {}

/// A Binance REST client. Clones share the weight budget: make one per process and clone it.
#[derive(Clone)]
pub struct BinanceRest {
    http: reqwest::Client,
    base: String,
    budget: Arc<WeightBudget>,
    settings: RestSettings,
    shutdown: Shutdown,
}

impl BinanceRest {
    pub fn new(settings: RestSettings, shutdown: Shutdown) -> anyhow::Result<Self> {
        Ok(Self {
            http: http::client(settings.http_timeout)?,
            base: settings.base_url.trim_end_matches('/').to_string(),
            budget: Arc::new(WeightBudget::new(
                settings.weight_per_minute,
                settings.server_weight_limit,
            )),
            settings,
            shutdown,
        })
    }

    pub fn budget(&self) -> &Arc<WeightBudget> {
        &self.budget
    }

    /// Up to `limit` (at most 1000) trades from id `from_id` on, oldest first, mapped as the `@trade` stream
    /// maps them. Weight 25.
    pub async fn historical_trades(
        &self,
        symbol: &str,
        from_id: i64,
        limit: u32,
    ) -> Result<Vec<Trade>, RestError> {
        let query = format!(
            "symbol={}&fromId={from_id}&limit={}",
            encode_query(symbol),
            clamp_limit(limit)
        );
        let body = self.get(Endpoint::HistoricalTrades, &query).await?;
        parse_historical_trades(symbol, &body)
            .map_err(|reason| RestError::Malformed { reason, body })
    }

    /// The id of the first trade at or after `time_ms` and before `until_ms`, or None if there is none.
    /// `aggTrades` with `limit=1` (weight 4 per hour of the window searched: it accepts windows under an hour).
    pub async fn first_trade_id_at(
        &self,
        symbol: &str,
        time_ms: i64,
        until_ms: i64,
    ) -> Result<Option<i64>, RestError> {
        let mut start = time_ms;
        while start < until_ms {
            let end = (start + AGG_TRADES_WINDOW_MS).min(until_ms);
            // endTime is inclusive.
            let query = format!(
                "symbol={}&startTime={start}&endTime={}&limit=1",
                encode_query(symbol),
                end - 1
            );
            let body = self.get(Endpoint::AggTrades, &query).await?;
            let first = parse_first_agg_trade_id(&body)
                .map_err(|reason| RestError::Malformed { reason, body })?;
            if first.is_some() {
                return Ok(first);
            }
            start = end;
        }
        Ok(None)
    }

    /// The closed 1-minute klines opening in [start_ms, end_ms), oldest first, up to `limit` (at most 1000) of
    /// them. A kline whose close time has not passed yet is still changing and is left out. Weight 2.
    /// Fewer than `limit` bars means the range (or what of it is closed) is exhausted.
    pub async fn klines_1m(
        &self,
        symbol: &str,
        start_ms: i64,
        end_ms: i64,
        limit: u32,
    ) -> Result<Vec<Bar>, RestError> {
        let query = format!(
            "symbol={}&interval=1m&startTime={start_ms}&endTime={}&limit={}",
            encode_query(symbol),
            end_ms - 1,
            clamp_limit(limit)
        );
        let body = self.get(Endpoint::Klines, &query).await?;
        parse_klines(symbol, &body, now_ms())
            .map_err(|reason| RestError::Malformed { reason, body })
    }

    /// One GET through the budget; 429/418 wait and send the same request again, 5xx and network failures are
    /// retried with backoff, other 4xx are the caller's error.
    async fn get(&self, endpoint: Endpoint, query: &str) -> Result<String, RestError> {
        let url = format!("{}{}?{query}", self.base, endpoint.path());
        // The URL carries only public parameters: safe in a log line.
        let what = format!("{}?{query}", endpoint.path());
        let mut backoff = Backoff::new(self.settings.backoff_initial, self.settings.backoff_max);
        loop {
            if !self.budget.acquire(endpoint.weight(), &self.shutdown).await {
                return Err(RestError::Shutdown);
            }
            let failure = match self.http.get(&url).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let headers = response.headers().clone();
                    self.observe_weight(&headers);
                    match status {
                        429 => {
                            let wait = http::retry_after(&headers, until_next_minute(now_ms()));
                            self.budget.hold(wait);
                            warn!("binance rest: HTTP 429 (request weight exhausted) for {what}: no request for {wait:?} as Retry-After asks, then the same request again");
                            continue;
                        }
                        418 => {
                            let wait = http::retry_after(&headers, DEFAULT_BAN_WAIT);
                            self.budget.hold(wait);
                            error!("binance rest: HTTP 418, this IP is banned for ignoring 429s; no request for {wait:?} as Retry-After asks, then {what} again");
                            continue;
                        }
                        _ => {}
                    }
                    match response.text().await {
                        Ok(body) if (200..300).contains(&status) => return Ok(body),
                        Ok(body) if (400..500).contains(&status) => {
                            let (code, message) = parse_error_body(&body);
                            return Err(RestError::Rejected {
                                status,
                                code,
                                message,
                                body,
                            });
                        }
                        Ok(_) => format!("HTTP {status}"),
                        Err(err) => format!("cannot read the body: {}", err.without_url()),
                    }
                }
                Err(err) => format!("request failed: {}", err.without_url()),
            };
            if backoff.attempts() + 1 >= self.settings.max_attempts {
                return Err(RestError::Unavailable(format!(
                    "{what}: {failure} ({} attempts)",
                    self.settings.max_attempts
                )));
            }
            let delay = backoff.next_delay();
            warn!(
                "binance rest: {what}: {failure}; retrying in {delay:?} (attempt {})",
                backoff.attempts() + 1
            );
            if !self.shutdown.sleep(delay).await {
                return Err(RestError::Shutdown);
            }
        }
    }

    fn observe_weight(&self, headers: &HeaderMap) {
        let Some(used) = used_weight(headers) else {
            return;
        };
        if let Some(wait) = self
            .budget
            .observe_server_weight(used, Instant::now(), now_ms())
        {
            info!(
                "binance rest: the server counts {used} request weight this minute (limit {}): pausing {wait:?} until its next minute",
                self.settings.server_weight_limit
            );
        }
    }
}

fn clamp_limit(limit: u32) -> u32 {
    limit.clamp(1, MAX_LIMIT)
}

/// `X-MBX-USED-WEIGHT-1M`: the weight this IP has used in the current minute, as the server counts it.
pub fn used_weight(headers: &HeaderMap) -> Option<u32> {
    headers
        .get(USED_WEIGHT_HEADER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `{"code":-1121,"msg":"Invalid symbol."}` -> (Some(-1121), "Invalid symbol."); other bodies are kept as text.
pub fn parse_error_body(body: &str) -> (Option<i64>, String) {
    match serde_json::from_str::<Value>(body) {
        Ok(value) => (
            value.get("code").and_then(Value::as_i64),
            value
                .get("msg")
                .and_then(Value::as_str)
                .map_or_else(|| body.to_string(), str::to_string),
        ),
        Err(_) => (None, body.to_string()),
    }
}

fn number(field: &str, text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .map_err(|_| format!("field {field} is not a number: {text:?}"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RestTrade {
    id: i64,
    price: String,
    qty: String,
    time: i64,
    is_buyer_maker: Option<bool>,
}

/// A `/api/v3/historicalTrades` (or `/api/v3/trades`) body; the symbol is the one asked for (rows carry none).
pub fn parse_historical_trades(symbol: &str, body: &str) -> Result<Vec<Trade>, String> {
    let rows: Vec<RestTrade> =
        serde_json::from_str(body).map_err(|e| format!("malformed trades: {e}"))?;
    rows.iter()
        .map(|row| {
            Ok(trade_from_wire(
                symbol,
                row.id,
                row.time,
                number("price", &row.price)?,
                number("qty", &row.qty)?,
                row.is_buyer_maker,
            ))
        })
        .collect()
}

#[derive(Deserialize)]
struct AggTrade {
    /// The first trade id the aggregate covers.
    f: i64,
}

/// The first trade id of an `/api/v3/aggTrades` body, None when it is empty.
pub fn parse_first_agg_trade_id(body: &str) -> Result<Option<i64>, String> {
    let rows: Vec<AggTrade> =
        serde_json::from_str(body).map_err(|e| format!("malformed aggTrades: {e}"))?;
    Ok(rows.first().map(|row| row.f))
}

/// A `/api/v3/klines` body: rows are arrays [open time, open, high, low, close, volume, close time, quote
/// volume, trades, taker-buy base volume, taker-buy quote volume, ignore]. Only klines closed at `now_ms` (close
/// time passed) become bars. REST rows carry no first/last trade id, so those stay None (the stream's klines
/// have them).
pub fn parse_klines(symbol: &str, body: &str, now_ms: i64) -> Result<Vec<Bar>, String> {
    let rows: Vec<Vec<Value>> =
        serde_json::from_str(body).map_err(|e| format!("malformed klines: {e}"))?;
    let mut bars = Vec::with_capacity(rows.len());
    for (index, row) in rows.iter().enumerate() {
        if row.len() < 11 {
            return Err(format!(
                "kline row {index} has {} fields, expected 12",
                row.len()
            ));
        }
        let integer = |at: usize, name: &str| {
            row[at]
                .as_i64()
                .ok_or_else(|| format!("kline row {index}: {name} is not an integer: {}", row[at]))
        };
        let decimal = |at: usize, name: &str| match &row[at] {
            Value::String(text) => number(name, text),
            other => Err(format!(
                "kline row {index}: {name} is not a decimal string: {other}"
            )),
        };
        let close_time = integer(6, "close time")?;
        if close_time >= now_ms {
            continue;
        }
        bars.push(closed_kline_bar(&KlineFields {
            symbol,
            open_time_ms: integer(0, "open time")?,
            open: decimal(1, "open")?,
            high: decimal(2, "high")?,
            low: decimal(3, "low")?,
            close: decimal(4, "close")?,
            volume: decimal(5, "volume")?,
            trades: integer(8, "number of trades")?,
            quote_volume: Some(decimal(7, "quote asset volume")?),
            taker_buy_volume: Some(decimal(9, "taker buy base asset volume")?),
            first_trade_id: None,
            last_trade_id: None,
        }));
    }
    Ok(bars)
}

/// A one-request-per-connection HTTP/1.1 server on 127.0.0.1 for the client's and the backfill's tests.
#[cfg(test)]
pub(crate) mod test_server {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::time::Instant;

    /// (status, extra headers, body) for a request's path and query.
    pub type Responder = dyn Fn(&str) -> (u16, Vec<(&'static str, String)>, String) + Send + Sync;

    pub struct TestServer {
        pub url: String,
        /// Path and query of every request, with its arrival time.
        pub requests: Arc<Mutex<Vec<(String, Instant)>>>,
    }

    impl TestServer {
        pub fn paths(&self) -> Vec<String> {
            self.requests
                .lock()
                .unwrap()
                .iter()
                .map(|(p, _)| p.clone())
                .collect()
        }
    }

    pub async fn serve(responder: Arc<Responder>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let (responder, log) = (responder.clone(), log.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let target = text.split_whitespace().nth(1).unwrap_or("/").to_string();
                    log.lock().unwrap().push((target.clone(), Instant::now()));
                    let (status, headers, body) = responder(&target);
                    let mut response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                        body.len()
                    );
                    for (name, value) in headers {
                        response.push_str(&format!("{name}: {value}\r\n"));
                    }
                    response.push_str("\r\n");
                    response.push_str(&body);
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        TestServer { url, requests }
    }

    /// The value of `name` in a request target's query.
    pub fn query_value(target: &str, name: &str) -> Option<String> {
        let query = target.split_once('?')?.1;
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::test_server::{query_value, serve, Responder};
    use super::*;
    use crate::messages::Side;
    use crate::sources::binance::{parse_frame, BinanceEvent};
    use reqwest::header::HeaderValue;

    const FIXTURES: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/wire/binance"
    );

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture")
    }

    #[test]
    fn historical_trades_map_like_the_stream() {
        let trades =
            parse_historical_trades("BTCUSDT", &fixture("rest_trades_BTCUSDT.json")).unwrap();
        assert_eq!(trades.len(), 10);
        let first = &trades[0];
        assert_eq!(first.trade_id.as_deref(), Some("1111468873"));
        assert_eq!(
            (first.ts_ms, first.price, first.size),
            (1_634_942_949_263, 60650.0, 0.02924)
        );
        assert_eq!(first.side, Some(Side::Sell), "isBuyerMaker: the taker sold");
        assert_eq!(trades[1].side, Some(Side::Buy));
        // The same trade as a stream frame gives the same message.
        let frame = r#"{"e":"trade","E":1634942949300,"s":"BTCUSDT","t":1111468873,"p":"60650.00000000","q":"0.02924000","T":1634942949263,"m":true,"M":true}"#;
        assert_eq!(
            parse_frame(frame).unwrap(),
            BinanceEvent::Trade(first.clone())
        );
        let ids: Vec<i64> = trades
            .iter()
            .map(|t| t.trade_id.as_ref().unwrap().parse().unwrap())
            .collect();
        assert!(ids.windows(2).all(|w| w[1] == w[0] + 1));
    }

    #[test]
    fn malformed_trades_are_errors() {
        assert!(parse_historical_trades("X", "{}")
            .unwrap_err()
            .contains("malformed trades"));
        let bad = r#"[{"id":1,"price":"abc","qty":"1","quoteQty":"1","time":1,"isBuyerMaker":true,"isBestMatch":true}]"#;
        assert!(parse_historical_trades("X", bad)
            .unwrap_err()
            .contains("field price"));
    }

    #[test]
    fn first_agg_trade_id_is_its_f_field() {
        assert_eq!(
            parse_first_agg_trade_id(&fixture("rest_agg_trades_BTCUSDT.json")).unwrap(),
            Some(1_111_480_471)
        );
        assert_eq!(parse_first_agg_trade_id("[]").unwrap(), None);
        assert!(parse_first_agg_trade_id(r#"{"code":-1121}"#).is_err());
    }

    #[test]
    fn klines_become_bars_and_the_open_one_is_left_out() {
        let body = fixture("rest_klines_BTCUSDT_1m.json");
        let bars = parse_klines("BTCUSDT", &body, 1_700_000_000_000).unwrap();
        assert_eq!(bars.len(), 10);
        let first = &bars[0];
        assert_eq!(
            (first.symbol.as_str(), first.ts_ms),
            ("BTCUSDT", 1_634_943_780_000)
        );
        assert_eq!(
            (first.open, first.high, first.low, first.close, first.volume),
            (60685.22, 60729.84, 60670.9, 60719.27, 21.63272)
        );
        assert_eq!(first.trades, Some(617));
        assert_eq!(first.vwap, Some(1_313_200.013_404_1 / 21.63272));
        assert_eq!(first.taker_buy_volume, Some(12.28492));
        assert_eq!((first.first_trade_id, first.last_trade_id), (None, None));
        assert_eq!(first.source, "binance");
        // At a time inside the last kline's minute, that kline is still open.
        let during_last = parse_klines("BTCUSDT", &body, 1_634_944_340_000).unwrap();
        assert_eq!(during_last.len(), 9);
        assert_eq!(during_last.last().unwrap().ts_ms, 1_634_944_260_000);
        // Its close time (…379_999) has to be past, not reached.
        assert_eq!(
            parse_klines("BTCUSDT", &body, 1_634_944_379_999)
                .unwrap()
                .len(),
            9
        );
        assert_eq!(
            parse_klines("BTCUSDT", &body, 1_634_944_380_000)
                .unwrap()
                .len(),
            10
        );
    }

    #[test]
    fn a_kline_without_trades_has_no_vwap() {
        let body = r#"[[1634943780000,"1.0","1.0","1.0","1.0","0.00000000",1634943839999,"0.00000000",0,"0.00000000","0.00000000","0"]]"#;
        let bars = parse_klines("BTCUSDT", body, i64::MAX).unwrap();
        assert_eq!(
            (bars[0].trades, bars[0].vwap, bars[0].volume),
            (Some(0), None, 0.0)
        );
    }

    #[test]
    fn malformed_klines_are_errors() {
        assert!(parse_klines("X", "[[1,2]]", 0)
            .unwrap_err()
            .contains("fields"));
        let numeric_price = r#"[[0,1.5,"1","1","1","1",59999,"1",1,"1","1","0"]]"#;
        assert!(parse_klines("X", numeric_price, i64::MAX)
            .unwrap_err()
            .contains("open is not a decimal string"));
    }

    #[test]
    fn error_bodies_and_rate_limit_headers() {
        let errors: Vec<Value> = serde_json::from_str(&fixture("rest_http_errors.json")).unwrap();
        let invalid = errors.iter().find(|e| e["status"] == 400).unwrap();
        let (code, message) = parse_error_body(invalid["body"].as_str().unwrap());
        assert_eq!(
            (code, message.as_str()),
            (Some(INVALID_SYMBOL), "Invalid symbol.")
        );
        let rejected = RestError::Rejected {
            status: 400,
            code,
            message,
            body: String::new(),
        };
        assert!(rejected.is_invalid_symbol());
        assert_eq!(
            rejected.to_string(),
            "HTTP 400, code -1121: Invalid symbol."
        );
        assert_eq!(parse_error_body("<html>"), (None, "<html>".to_string()));

        let too_many = errors.iter().find(|e| e["status"] == 429).unwrap();
        let mut headers = HeaderMap::new();
        for (name, value) in too_many["headers"].as_object().unwrap() {
            headers.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value.as_str().unwrap()).unwrap(),
            );
        }
        assert_eq!(
            used_weight(&headers),
            Some(1201),
            "header names are case-insensitive"
        );
        assert_eq!(
            http::retry_after(&headers, Duration::from_secs(1)),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn spacing_is_proportional_to_weight() {
        let budget = WeightBudget::new(3000, SERVER_WEIGHT_LIMIT);
        assert_eq!(
            budget.spacing(Endpoint::Klines.weight()),
            Duration::from_millis(40)
        );
        assert_eq!(
            budget.spacing(Endpoint::AggTrades.weight()),
            Duration::from_millis(80)
        );
        assert_eq!(
            budget.spacing(Endpoint::HistoricalTrades.weight()),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn reservations_are_spaced_by_the_previous_requests_weight() {
        let budget = WeightBudget::new(600, SERVER_WEIGHT_LIMIT); // 10 weight per second
        let t0 = Instant::now();
        assert_eq!(budget.try_reserve(25, t0), Ok(()));
        assert_eq!(budget.try_reserve(2, t0), Err(Duration::from_millis(2500)));
        assert_eq!(
            budget.try_reserve(2, t0 + Duration::from_millis(2000)),
            Err(Duration::from_millis(500))
        );
        assert_eq!(
            budget.try_reserve(2, t0 + Duration::from_millis(2500)),
            Ok(())
        );
        assert_eq!(budget.spent(), 27);
    }

    #[test]
    fn no_minute_ever_spends_more_than_the_budget_and_one_request() {
        let budget = WeightBudget::new(3000, SERVER_WEIGHT_LIMIT);
        let t0 = Instant::now();
        let mut now = t0;
        let mut sent: Vec<(Duration, u32)> = Vec::new();
        let weights = [25, 2, 4, 2, 2, 25, 25, 2];
        for i in 0..2_000 {
            let weight = weights[i % weights.len()];
            match budget.try_reserve(weight, now) {
                Ok(()) => sent.push((now - t0, weight)),
                Err(wait) => {
                    now += wait;
                    assert_eq!(budget.try_reserve(weight, now), Ok(()));
                    sent.push((now - t0, weight));
                }
            }
        }
        let span = sent.last().unwrap().0;
        assert!(span > Duration::from_secs(120), "{span:?}");
        for (start, _) in &sent {
            let in_window: u32 = sent
                .iter()
                .filter(|(at, _)| *at >= *start && *at < *start + Duration::from_secs(60))
                .map(|(_, w)| w)
                .sum();
            assert!(in_window <= 3000 + 25, "{in_window} weight in a minute");
        }
    }

    #[test]
    fn a_hold_stops_every_request_until_it_ends() {
        let budget = WeightBudget::new(60_000, SERVER_WEIGHT_LIMIT);
        let t0 = Instant::now();
        budget.hold_at(Duration::from_secs(30), t0);
        assert_eq!(budget.try_reserve(2, t0), Err(Duration::from_secs(30)));
        // A shorter hold later never shortens the one in force.
        budget.hold_at(Duration::from_secs(1), t0 + Duration::from_secs(10));
        assert_eq!(
            budget.try_reserve(2, t0 + Duration::from_secs(10)),
            Err(Duration::from_secs(20))
        );
        assert_eq!(budget.try_reserve(2, t0 + Duration::from_secs(30)), Ok(()));
        assert_eq!(budget.spent(), 2);
    }

    #[test]
    fn the_servers_count_near_its_limit_holds_requests_until_its_next_minute() {
        let budget = WeightBudget::new(3000, 6000);
        let t0 = Instant::now();
        let wall = 1_700_000_020_000; // 40 s into a minute
        assert_eq!(budget.observe_server_weight(5399, t0, wall), None);
        assert_eq!(budget.server_used(), Some(5399));
        assert_eq!(budget.try_reserve(2, t0), Ok(()));
        let wait = budget.observe_server_weight(5400, t0, wall).unwrap();
        assert_eq!(
            wait,
            Duration::from_secs(21),
            "20 s to the minute and 1 s of clock skew"
        );
        assert_eq!(
            budget.try_reserve(2, t0 + Duration::from_secs(1)),
            Err(Duration::from_secs(20))
        );
        assert_eq!(budget.try_reserve(2, t0 + wait), Ok(()));
    }

    fn client_for(url: &str, shutdown: Shutdown) -> BinanceRest {
        let settings = RestSettings {
            base_url: url.to_string(),
            weight_per_minute: 600_000,
            max_attempts: 3,
            backoff_initial: Duration::from_millis(10),
            backoff_max: Duration::from_millis(20),
            ..RestSettings::default()
        };
        BinanceRest::new(settings, shutdown).unwrap()
    }

    const ONE_KLINE: &str = r#"[[1634943780000,"1.0","1.0","1.0","1.0","1.00000000",1634943839999,"1.00000000",1,"0.50000000","0.50000000","0"]]"#;

    #[tokio::test]
    async fn a_429_holds_every_request_for_retry_after_then_sends_the_same_one_again() {
        let calls = Arc::new(Mutex::new(0));
        let counter = calls.clone();
        let responder: Arc<Responder> = Arc::new(move |_target: &str| {
            let mut calls = counter.lock().unwrap();
            *calls += 1;
            if *calls == 1 {
                let headers = vec![
                    ("Retry-After", "0.3".to_string()),
                    ("X-MBX-USED-WEIGHT-1M", "41".to_string()),
                ];
                (
                    429,
                    headers,
                    r#"{"code":-1003,"msg":"Too much request weight used"}"#.to_string(),
                )
            } else {
                (
                    200,
                    vec![("X-MBX-USED-WEIGHT-1M", "2".to_string())],
                    ONE_KLINE.to_string(),
                )
            }
        });
        let server = serve(responder).await;
        let (_trigger, shutdown) = crate::shutdown::channel();
        let client = client_for(&server.url, shutdown);
        let bars = client
            .klines_1m("BTCUSDT", 0, 1_700_000_000_000, 500)
            .await
            .unwrap();
        assert_eq!(bars.len(), 1);
        let requests = server.requests.lock().unwrap().clone();
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].0, requests[1].0, "the same request again");
        assert!(requests[1].1 - requests[0].1 >= Duration::from_millis(300));
        assert_eq!(
            requests[0].0,
            "/api/v3/klines?symbol=BTCUSDT&interval=1m&startTime=0&endTime=1699999999999&limit=500"
        );
        assert_eq!(client.budget().server_used(), Some(2));
    }

    #[tokio::test]
    async fn a_418_is_waited_out_too() {
        let calls = Arc::new(Mutex::new(0));
        let counter = calls.clone();
        let responder: Arc<Responder> = Arc::new(move |_target: &str| {
            let mut calls = counter.lock().unwrap();
            *calls += 1;
            if *calls == 1 {
                (
                    418,
                    vec![("Retry-After", "0.2".to_string())],
                    r#"{"code":-1003,"msg":"IP banned"}"#.to_string(),
                )
            } else {
                (200, vec![], "[]".to_string())
            }
        });
        let server = serve(responder).await;
        let (_trigger, shutdown) = crate::shutdown::channel();
        let client = client_for(&server.url, shutdown);
        assert_eq!(
            client.historical_trades("BTCUSDT", 7, 5000).await.unwrap(),
            vec![]
        );
        let requests = server.requests.lock().unwrap().clone();
        assert!(requests[1].1 - requests[0].1 >= Duration::from_millis(200));
        assert_eq!(
            query_value(&requests[1].0, "limit").as_deref(),
            Some("1000"),
            "limit capped"
        );
        assert_eq!(query_value(&requests[1].0, "fromId").as_deref(), Some("7"));
    }

    #[tokio::test]
    async fn server_errors_are_retried_and_given_up_after_max_attempts() {
        let calls = Arc::new(Mutex::new(0));
        let counter = calls.clone();
        let responder: Arc<Responder> = Arc::new(move |target: &str| {
            let mut calls = counter.lock().unwrap();
            *calls += 1;
            if target.contains("ETHUSDT") || *calls < 3 {
                (503, vec![], "busy".to_string())
            } else {
                (200, vec![], ONE_KLINE.to_string())
            }
        });
        let server = serve(responder).await;
        let (_trigger, shutdown) = crate::shutdown::channel();
        let client = client_for(&server.url, shutdown);
        assert_eq!(
            client
                .klines_1m("BTCUSDT", 0, i64::MAX, 1)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(server.paths().len(), 3);
        let failed = client
            .klines_1m("ETHUSDT", 0, i64::MAX, 1)
            .await
            .unwrap_err();
        assert!(
            matches!(failed, RestError::Unavailable(ref reason) if reason.contains("HTTP 503")),
            "{failed}"
        );
        assert_eq!(server.paths().len(), 6, "3 attempts");
    }

    #[tokio::test]
    async fn an_invalid_symbol_is_an_error_at_once() {
        let responder: Arc<Responder> = Arc::new(|_target: &str| {
            (
                400,
                vec![],
                r#"{"code":-1121,"msg":"Invalid symbol."}"#.to_string(),
            )
        });
        let server = serve(responder).await;
        let (_trigger, shutdown) = crate::shutdown::channel();
        let client = client_for(&server.url, shutdown);
        let err = client.first_trade_id_at("NOPE", 0, 10).await.unwrap_err();
        assert!(err.is_invalid_symbol(), "{err}");
        assert_eq!(
            server.paths(),
            vec!["/api/v3/aggTrades?symbol=NOPE&startTime=0&endTime=9&limit=1"]
        );
    }

    #[tokio::test]
    async fn first_trade_id_searches_hour_windows_until_a_trade() {
        let responder: Arc<Responder> = Arc::new(|target: &str| {
            let start: i64 = query_value(target, "startTime").unwrap().parse().unwrap();
            let body = if start >= 2 * AGG_TRADES_WINDOW_MS {
                r#"[{"a":1,"p":"1.0","q":"1.0","f":42,"l":43,"T":7300000,"m":true,"M":true}]"#
            } else {
                "[]"
            };
            (200, vec![], body.to_string())
        });
        let server = serve(responder).await;
        let (_trigger, shutdown) = crate::shutdown::channel();
        let client = client_for(&server.url, shutdown);
        assert_eq!(
            client
                .first_trade_id_at("BTCUSDT", 0, 10 * AGG_TRADES_WINDOW_MS)
                .await,
            Ok(Some(42))
        );
        let windows: Vec<(String, String)> = server
            .paths()
            .iter()
            .map(|p| {
                (
                    query_value(p, "startTime").unwrap(),
                    query_value(p, "endTime").unwrap(),
                )
            })
            .collect();
        assert_eq!(
            windows,
            [
                ("0", "3599999"),
                ("3600000", "7199999"),
                ("7200000", "10799999")
            ]
            .map(|(a, b)| (a.to_string(), b.to_string()))
        );
        assert_eq!(
            client
                .first_trade_id_at("BTCUSDT", 0, AGG_TRADES_WINDOW_MS)
                .await,
            Ok(None)
        );
    }

    #[tokio::test]
    async fn acquire_waits_for_a_hold_and_gives_up_on_shutdown() {
        let (trigger, shutdown) = crate::shutdown::channel();
        let budget = WeightBudget::new(60_000, SERVER_WEIGHT_LIMIT);
        let start = Instant::now();
        budget.hold(Duration::from_millis(200));
        assert!(budget.acquire(2, &shutdown).await);
        assert!(start.elapsed() >= Duration::from_millis(200));
        budget.hold(Duration::from_secs(60));
        trigger.trigger();
        assert!(!budget.acquire(2, &shutdown).await);
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
