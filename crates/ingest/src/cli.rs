//! Command line: one subcommand per source; Kafka, validation and logging options are global so they may
//! follow the source name. Secrets are read from the environment only, never from flags.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::topics;

const ENVIRONMENT: &str = "\
Environment:
  KAFKA_BOOTSTRAP       Kafka bootstrap servers (default 127.0.0.1:9092; --kafka-bootstrap overrides)
  FINNHUB_API_KEY       finnhub: required. Sent as the X-Finnhub-Token header to REST; the WebSocket takes it
                        as ?token= (Finnhub's only way), and that URL is only ever logged redacted.
  TWELVE_DATA_API_KEY   twelvedata: required. Sent as the header `Authorization: apikey <key>`.
  BINANCE_API_KEY       binance: optional and unused (market data streams are public).
  SPARKTRENDS_INGEST_STATE_DIR
                        directory of the sources' durable state: REST cursors, backfill progress (default
                        .sparktrends-ingest-state; --state-dir overrides). Two runs of one source need two.
  RUST_LOG              log filter (default info), e.g. RUST_LOG=debug

Exit codes: 0 after a clean stop (SIGINT/SIGTERM, a finished replay or backfill), 1 on a runtime error or
incomplete flush (or a backfill that had to drop a symbol), 2 on bad configuration or when Kafka is unreachable
at start.";

#[derive(Debug, Parser)]
#[command(
    name = "sparktrends-ingest",
    version,
    about = "Market data into Kafka: exchange feeds, file replays and a labelled synthetic market",
    after_help = ENVIRONMENT
)]
pub struct Cli {
    #[command(subcommand)]
    pub source: SourceCommand,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub validation: ValidationArgs,
    /// Seconds between rate lines (messages/s, totals, dead letters, reconnects).
    #[arg(long, global = true, default_value_t = 5.0, value_name = "SECONDS")]
    pub stats_interval: f64,
    /// Serve Prometheus metrics (`GET /metrics`) on this address, e.g. 127.0.0.1:9464; none by default.
    #[arg(
        long,
        global = true,
        env = "SPARKTRENDS_INGEST_METRICS_ADDRESS",
        value_name = "HOST:PORT"
    )]
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Directory of the sources' durable state (REST cursors, backfill progress), so a restart neither
    /// re-sends nor skips.
    #[arg(
        long,
        global = true,
        env = "SPARKTRENDS_INGEST_STATE_DIR",
        default_value = ".sparktrends-ingest-state",
        value_name = "DIR"
    )]
    pub state_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum SourceCommand {
    /// Binance public market streams: trades and closed 1-minute klines (no key needed), over as many
    /// connections as the symbols need.
    #[command(after_help = ENVIRONMENT)]
    Binance(BinanceArgs),
    /// Finnhub WebSocket trades and REST company profiles (needs FINNHUB_API_KEY).
    #[command(after_help = ENVIRONMENT)]
    Finnhub(FinnhubArgs),
    /// Twelve Data REST 1-minute bars (backfill, then incremental) and WebSocket prices (needs TWELVE_DATA_API_KEY).
    #[command(after_help = ENVIRONMENT)]
    Twelvedata(TwelveDataArgs),
    /// Replay CSV/Parquet files of trades or bars at their original pacing scaled by --speed.
    #[command(after_help = ENVIRONMENT)]
    Replay(ReplayArgs),
    /// Seeded synthetic market with labelled injected anomalies, into Kafka or into files.
    #[command(after_help = ENVIRONMENT)]
    Synthetic(SyntheticArgs),
    /// History from a provider's REST API into the topics, resumable (progress in --state-dir).
    ///
    /// A rerun of the same command continues where the saved progress says; `backfill <provider> --help` has
    /// the details.
    #[command(after_help = ENVIRONMENT)]
    Backfill(BackfillArgs),
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Kafka")]
pub struct KafkaArgs {
    /// Kafka bootstrap servers.
    #[arg(
        long,
        global = true,
        env = "KAFKA_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    pub kafka_bootstrap: String,
    /// Trades topic.
    #[arg(long, global = true, default_value_t = topics::contract_defaults().trades)]
    pub trades_topic: String,
    /// 1-minute bars topic.
    #[arg(long, global = true, default_value_t = topics::contract_defaults().bars)]
    pub bars_topic: String,
    /// Company profiles topic (compacted).
    #[arg(long, global = true, default_value_t = topics::contract_defaults().companies)]
    pub companies_topic: String,
    /// Dead-letter topic for refused input.
    #[arg(long, global = true, default_value_t = topics::contract_defaults().deadletter)]
    pub deadletter_topic: String,
    /// Gaps topic: trades a feed missed and what their repair did.
    #[arg(long, global = true, default_value_t = topics::contract_defaults().gaps)]
    pub gaps_topic: String,
    /// Seconds to wait for broker metadata at start before giving up (exit 2).
    #[arg(long, global = true, default_value_t = 10.0, value_name = "SECONDS")]
    pub kafka_connect_timeout: f64,
    /// Producer linger: how long a batch may wait to fill.
    #[arg(long, global = true, default_value_t = 5)]
    pub linger_ms: u32,
    /// Trades of one symbol per trades-topic message (a trade batch, contracts/messages.json trade.batch; at
    /// most the contract's max_batch_trades). 1: a message per trade.
    #[arg(long, global = true, default_value_t = sparktrends_contract::spec::trade_batch().producer_trades)]
    pub trade_batch_max: usize,
    /// How long a symbol's first trade may wait for its batch to fill before the batch is sent.
    #[arg(long, global = true, value_name = "MS",
          default_value_t = sparktrends_contract::spec::trade_batch().producer_linger_ms)]
    pub trade_batch_linger_ms: u64,
    /// Producer batch size in bytes.
    #[arg(long, global = true, default_value_t = 1_000_000)]
    pub batch_bytes: u32,
    /// Producer compression.
    #[arg(long, global = true, value_enum, default_value_t = Compression::Lz4)]
    pub compression: Compression,
    /// Seconds to wait for outstanding messages at shutdown.
    #[arg(long, global = true, default_value_t = 30.0, value_name = "SECONDS")]
    pub flush_timeout: f64,
    /// Extra librdkafka producer property, KEY=VALUE (repeatable), applied last.
    #[arg(long = "producer-property", global = true, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub producer_properties: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Compression {
    Lz4,
    Snappy,
    Gzip,
    None,
}

impl Compression {
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            Compression::Lz4 => "lz4",
            Compression::Snappy => "snappy",
            Compression::Gzip => "gzip",
            Compression::None => "none",
        }
    }
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Validation")]
pub struct ValidationArgs {
    /// Live data older than this many seconds is dead-lettered (replays and backfills are exempt). Data
    /// ahead of the clock by more than the contract's max_future_ms (contracts/admission.json) always is.
    #[arg(
        long,
        global = true,
        default_value_t = 86_400.0,
        value_name = "SECONDS"
    )]
    pub max_past: f64,
}

#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Connection")]
pub struct ConnectionArgs {
    /// Reconnect when a connection has been silent (no frame, no ping) for this long.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub silence_timeout: f64,
    /// First reconnect delay; doubles (with jitter) per failed attempt.
    #[arg(long, default_value_t = 500)]
    pub backoff_initial_ms: u64,
    /// Ceiling of the reconnect delay.
    #[arg(long, default_value_t = 30_000)]
    pub backoff_max_ms: u64,
    /// Timeout of one connection attempt or HTTP request.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub connect_timeout: f64,
}

#[derive(Debug, Args)]
pub struct BinanceArgs {
    /// Symbols, comma-separated, any case (btcusdt,ethusdt); messages carry them upper-case.
    #[arg(long, value_delimiter = ',', required = true)]
    pub symbols: Vec<String>,
    /// WebSocket base URL; /stream is appended, and each connection subscribes to its streams with SUBSCRIBE
    /// requests (200 streams each, at most one message every 400 ms: Binance allows 5 a second).
    #[arg(long, default_value = "wss://stream.binance.com:9443")]
    pub ws_url: String,
    /// Do not subscribe to <symbol>@trade.
    #[arg(long)]
    pub no_trades: bool,
    /// Do not subscribe to <symbol>@kline_1m.
    #[arg(long)]
    pub no_klines: bool,
    /// Most streams on one connection (Binance allows 1024). Symbols are spread evenly over as few connections
    /// as fit, a symbol's two streams always on the same one; connections are dialled 1 s apart.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub streams_per_connection: u16,
    /// Do not repair gaps (skipped trade ids, reconnects) from the REST API; they are still detected and put
    /// on the gaps topic as unrepairable.
    #[arg(long)]
    pub no_repair: bool,
    /// Before the first connection, load this many minutes of closed 1-minute klines per symbol (bars topic), so
    /// a new symbol's metrics and anomaly baselines do not start cold.
    #[arg(long, default_value_t = 0, value_name = "MINUTES")]
    pub warmup_minutes: u32,
    #[command(flatten)]
    pub rest: BinanceRestArgs,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct FinnhubArgs {
    /// Symbols, comma-separated, as Finnhub spells them (AAPL,BINANCE:BTCUSDT).
    #[arg(long, value_delimiter = ',', required = true)]
    pub symbols: Vec<String>,
    /// WebSocket URL; ?token=<FINNHUB_API_KEY> is appended.
    #[arg(long, default_value = "wss://ws.finnhub.io")]
    pub ws_url: String,
    /// REST base URL for /api/v1/stock/profile2.
    #[arg(long, default_value = "https://finnhub.io")]
    pub rest_url: String,
    /// Skip company profiles.
    #[arg(long)]
    pub no_profiles: bool,
    /// Skip the WebSocket trades.
    #[arg(long)]
    pub no_trades: bool,
    /// Seconds between profile refreshes.
    #[arg(long, default_value_t = 86_400.0, value_name = "SECONDS")]
    pub profile_refresh: f64,
    /// REST requests per minute at most (the free plan allows 60).
    #[arg(long, default_value_t = 30.0)]
    pub rest_per_minute: f64,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct TwelveDataArgs {
    /// Symbols, comma-separated, as Twelve Data spells them (AAPL,EUR/USD).
    #[arg(long, value_delimiter = ',', required = true)]
    pub symbols: Vec<String>,
    /// REST base URL for /time_series.
    #[arg(long, default_value = "https://api.twelvedata.com")]
    pub rest_url: String,
    /// WebSocket base URL; /v1/quotes/price is appended.
    #[arg(long, default_value = "wss://ws.twelvedata.com")]
    pub ws_url: String,
    /// Skip the REST bars.
    #[arg(long)]
    pub no_rest: bool,
    /// Skip the WebSocket prices.
    #[arg(long)]
    pub no_ws: bool,
    /// Bars fetched per symbol at start (outputsize, at most 5000).
    #[arg(long, default_value_t = 390)]
    pub backfill_bars: usize,
    /// Seconds between incremental polls of each symbol.
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub poll_interval: f64,
    /// REST requests per minute at most (the free plan allows 8).
    #[arg(long, default_value_t = 8.0)]
    pub rate_limit_per_minute: f64,
    /// Seconds between WebSocket heartbeats ({"action":"heartbeat"}).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub heartbeat_interval: f64,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    Auto,
    Trades,
    Bars,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// CSV or Parquet files with the topic's columns (ts_ms in epoch milliseconds), replayed in order.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Table kind; auto: bars if there is an `open` column, else trades.
    #[arg(long, value_enum, default_value_t = KindArg::Auto)]
    pub kind: KindArg,
    /// Pacing: 1 = original, 10 = ten times faster, 0 = as fast as possible.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Start over at the end, shifting time forward by the data's span each pass.
    #[arg(long = "loop")]
    pub looped: bool,
    /// Allowed symbols (comma-separated); others are dead-lettered. Default: any.
    #[arg(long, value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// `source` for rows of files without a source column.
    #[arg(long, default_value = "replay")]
    pub source_name: String,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum EmitArg {
    Trades,
    Bars,
    Both,
}

#[derive(Debug, Args)]
pub struct SyntheticArgs {
    /// Random seed: the same seed gives the same market and the same labels.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Number of symbols (named SYN00, SYN01, ...), unless --symbols names them.
    #[arg(long, default_value_t = 20)]
    pub num_symbols: usize,
    /// Explicit symbol names, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub symbols: Vec<String>,
    /// First simulated minute: RFC 3339 (2024-01-02T14:30:00Z) or epoch milliseconds. Default: now minus
    /// --backfill-minutes.
    #[arg(long)]
    pub start: Option<String>,
    /// Minutes of history before now to send at once before going live.
    #[arg(long, default_value_t = 0)]
    pub backfill_minutes: u64,
    /// Stop after this many simulated minutes (required with --trades-out/--bars-out).
    #[arg(long)]
    pub minutes: Option<u64>,
    /// Simulated seconds per wall-clock second after the backfill; 0 = as fast as possible.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// What to send to Kafka.
    #[arg(long, value_enum, default_value_t = EmitArg::Trades)]
    pub emit: EmitArg,
    /// Mean trades per symbol per minute.
    #[arg(long, default_value_t = 30.0)]
    pub trades_per_minute: f64,
    /// Per-minute volatility of log returns around which the stochastic volatility reverts.
    #[arg(long, default_value_t = 0.001)]
    pub base_sigma: f64,
    /// Length in minutes of the session the U-shaped volume profile spans (from midnight UTC).
    #[arg(long, default_value_t = 1440)]
    pub session_minutes: u32,
    /// Injected price jumps per symbol per day.
    #[arg(long, default_value_t = 3.0)]
    pub jumps_per_day: f64,
    /// Injected volume spikes per symbol per day.
    #[arg(long, default_value_t = 3.0)]
    pub spikes_per_day: f64,
    /// Injected volatility regime shifts per symbol per day.
    #[arg(long, default_value_t = 1.0)]
    pub regime_shifts_per_day: f64,
    /// JSON-lines file receiving one label per injected anomaly (symbol, kind, ts_ms, size).
    #[arg(long)]
    pub labels_out: Option<PathBuf>,
    /// File mode (no Kafka): write the bars to this .parquet/.csv file.
    #[arg(long)]
    pub bars_out: Option<PathBuf>,
    /// File mode (no Kafka): write the trades to this .parquet/.csv file.
    #[arg(long)]
    pub trades_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    #[command(subcommand)]
    pub provider: BackfillProvider,
}

#[derive(Debug, Subcommand)]
pub enum BackfillProvider {
    /// Binance public REST (no key): closed 1-minute klines or trades of [--from, --to).
    ///
    /// Every closed kline goes to the bars topic, every trade to the trades topic; symbols take turns, within
    /// the request-weight budget. Progress per symbol is in
    /// <state-dir>/backfill-binance-<kind>.json, saved once Kafka acknowledged what it covers: after a crash the
    /// same command re-sends at most the pages sent since the last save and skips nothing; another range for a
    /// symbol starts that symbol over. The part of the range still in the future is left for a later run.
    #[command(after_help = ENVIRONMENT)]
    Binance(BinanceBackfillArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum BackfillKindArg {
    /// Closed 1-minute klines into the bars topic (/api/v3/klines, weight 2 per 1000).
    Klines,
    /// Every trade into the trades topic (/api/v3/historicalTrades, weight 25 per 1000).
    Trades,
}

#[derive(Debug, Args)]
pub struct BinanceBackfillArgs {
    /// Symbols, comma-separated, any case (btcusdt,ethusdt); messages carry them upper-case.
    #[arg(long, value_delimiter = ',', required = true)]
    pub symbols: Vec<String>,
    /// Start of the range (inclusive): RFC 3339 (2024-01-02T00:00:00Z) or epoch milliseconds.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: i64,
    /// End of the range (exclusive): RFC 3339 or epoch milliseconds.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: i64,
    /// What to backfill.
    #[arg(long, value_enum, default_value_t = BackfillKindArg::Klines)]
    pub kind: BackfillKindArg,
    /// Rows per request (Binance serves at most 1000; the weight is the same for any number).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Seconds between progress lines (done/total, percent, rate, ETA, request weight used).
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS")]
    pub progress_interval: f64,
    #[command(flatten)]
    pub rest: BinanceRestArgs,
}

/// Binance REST settings, shared by every source that calls Binance's REST API.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Binance REST")]
pub struct BinanceRestArgs {
    /// REST base URL (public market data, no key).
    #[arg(long, default_value = crate::sources::binance_rest::DEFAULT_REST_URL)]
    pub rest_url: String,
    /// Request weight this process spends per minute at most, over all its requests (half of Binance's 6000
    /// per IP by default, so a live feed and a backfill on one IP stay clear of it together).
    #[arg(long, default_value_t = crate::sources::binance_rest::DEFAULT_WEIGHT_PER_MINUTE,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rest_weight_per_minute: u32,
    /// Binance's request-weight limit per minute for this IP: when the server's count (X-MBX-USED-WEIGHT-1M,
    /// other clients on the IP included) reaches 90% of it, requests wait for the next minute.
    #[arg(long, default_value_t = crate::sources::binance_rest::SERVER_WEIGHT_LIMIT,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub rest_server_weight_limit: u32,
    /// Timeout of one REST request.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub rest_timeout: f64,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

/// `--start`: RFC 3339 or epoch milliseconds.
pub fn parse_start(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("--start {text:?}: neither RFC 3339 nor epoch milliseconds ({e})"))
}

/// A point in time: RFC 3339 or epoch milliseconds.
pub fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("neither RFC 3339 nor epoch milliseconds ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn backfill_takes_a_provider_a_range_and_the_rest_budget() {
        let cli = Cli::try_parse_from([
            "sparktrends-ingest",
            "backfill",
            "binance",
            "--symbols",
            "btcusdt,ETHUSDT",
            "--from",
            "2024-01-01T00:00:00Z",
            "--to",
            "1704070800000",
            "--bars-topic",
            "b.x",
        ])
        .unwrap();
        assert_eq!(cli.kafka.bars_topic, "b.x");
        let SourceCommand::Backfill(BackfillArgs {
            provider: BackfillProvider::Binance(args),
        }) = cli.source
        else {
            panic!("backfill binance expected")
        };
        assert_eq!(args.symbols, vec!["btcusdt", "ETHUSDT"]);
        assert_eq!((args.from, args.to), (1_704_067_200_000, 1_704_070_800_000));
        assert_eq!(args.kind, BackfillKindArg::Klines);
        assert_eq!(args.limit, 1000);
        assert_eq!(args.rest.rest_url, "https://data-api.binance.vision");
        assert_eq!(args.rest.rest_weight_per_minute, 3000);
        let bad = |extra: &[&str]| {
            let mut argv = vec![
                "sparktrends-ingest",
                "backfill",
                "binance",
                "--symbols",
                "x",
                "--from",
                "0",
                "--to",
                "1",
            ];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv).is_err()
        };
        assert!(bad(&["--limit", "1001"]));
        assert!(bad(&["--rest-weight-per-minute", "0"]));
        assert!(bad(&["--kind", "quotes"]));
        assert!(!bad(&["--kind", "trades"]));
        assert!(Cli::try_parse_from([
            "sparktrends-ingest",
            "backfill",
            "binance",
            "--from",
            "yesterday"
        ])
        .is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_may_follow_the_source() {
        let cli = Cli::try_parse_from([
            "sparktrends-ingest",
            "binance",
            "--symbols",
            "btcusdt,ethusdt",
            "--trades-topic",
            "t.x",
            "--max-past",
            "60",
        ])
        .unwrap();
        assert_eq!(cli.kafka.trades_topic, "t.x");
        assert_eq!(cli.validation.max_past, 60.0);
        let SourceCommand::Binance(args) = cli.source else {
            panic!("binance expected")
        };
        assert_eq!(args.symbols, vec!["btcusdt", "ethusdt"]);
        assert_eq!(args.streams_per_connection, 1024);
        assert_eq!(cli.kafka.bars_topic, "market.bars.1m.v1");
    }

    #[test]
    fn streams_per_connection_stays_within_binances_limit() {
        let parse = |value: &str| {
            Cli::try_parse_from([
                "sparktrends-ingest",
                "binance",
                "--symbols",
                "btcusdt",
                "--streams-per-connection",
                value,
            ])
        };
        assert!(parse("1").is_ok());
        assert!(parse("1024").is_ok());
        assert!(parse("0").is_err());
        assert!(parse("1025").is_err());
    }

    #[test]
    fn help_mentions_every_secret_variable() {
        let help = Cli::command().render_long_help().to_string();
        for name in [
            "KAFKA_BOOTSTRAP",
            "FINNHUB_API_KEY",
            "TWELVE_DATA_API_KEY",
            "BINANCE_API_KEY",
        ] {
            assert!(help.contains(name), "{name} missing from --help");
        }
    }

    #[test]
    fn state_dir_is_global_with_a_default() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["sparktrends-ingest", "twelvedata", "--symbols", "AAPL"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args).unwrap().state_dir
        };
        if std::env::var_os("SPARKTRENDS_INGEST_STATE_DIR").is_none() {
            assert_eq!(parse(&[]), PathBuf::from(".sparktrends-ingest-state"));
        }
        assert_eq!(
            parse(&["--state-dir", "/var/lib/x"]),
            PathBuf::from("/var/lib/x")
        );
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("SPARKTRENDS_INGEST_STATE_DIR"));
    }

    #[test]
    fn start_accepts_rfc3339_and_millis() {
        assert_eq!(parse_start("1704067200000"), Ok(1_704_067_200_000));
        assert_eq!(parse_start("2024-01-01T00:00:00Z"), Ok(1_704_067_200_000));
        assert!(parse_start("yesterday").is_err());
        assert_eq!(parse_key_value("a=b"), Ok(("a".into(), "b".into())));
        assert!(parse_key_value("=b").is_err());
    }
}
