//! Command line and environment. Secrets are environment-only (see `secret`): `SLACK_WEBHOOK` (unset or blank:
//! console mode) and `POSTGRES_PASSWORD`.

use clap::Parser;

#[derive(Debug, Parser)]
#[command(
    name = "sparktrends-alerter",
    version,
    about = "Delivers anomalies from the PostgreSQL outbox to a Slack incoming webhook (console when unset)",
    after_help = "Secrets come from the environment only: SLACK_WEBHOOK (the incoming-webhook URL; unset or blank \
                  prints alerts to stdout) and POSTGRES_PASSWORD. See docs/alerts.md."
)]
pub struct Cli {
    #[arg(long, env = "POSTGRES_HOST", default_value = "127.0.0.1")]
    pub pg_host: String,
    #[arg(long, env = "POSTGRES_PORT", default_value_t = 5432)]
    pub pg_port: u16,
    #[arg(long, env = "POSTGRES_USER", default_value = "sparktrends")]
    pub pg_user: String,
    #[arg(long, env = "POSTGRES_DB", default_value = "sparktrends")]
    pub pg_db: String,

    /// Polling fallback when no NOTIFY arrives (milliseconds).
    #[arg(long, env = "ALERTER_POLL_INTERVAL_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    pub poll_interval_ms: u64,
    /// Whole-request timeout for the webhook POST (milliseconds); also caps the connect timeout.
    #[arg(long, env = "ALERTER_HTTP_TIMEOUT_MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub http_timeout_ms: u64,
    /// Attempts (POSTs answered by 5xx, timeouts, connection errors) before a row is marked failed.
    #[arg(long, env = "ALERTER_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_attempts: u32,
    /// First retry delay (milliseconds); doubles per attempt, with jitter.
    #[arg(long, env = "ALERTER_RETRY_BASE_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub retry_base_ms: u64,
    /// Ceiling of the retry delay (milliseconds).
    #[arg(long, env = "ALERTER_RETRY_MAX_MS", default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub retry_max_ms: u64,
    /// Per-symbol cooldown (seconds): within it only a more severe anomaly is sent; 0 disables it.
    #[arg(long, env = "ALERTER_COOLDOWN_SECS", default_value_t = 300)]
    pub cooldown_secs: u64,
    /// Most anomaly rows folded into one message.
    #[arg(long, env = "ALERTER_MAX_GROUP", default_value_t = 200, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub max_group: i64,
    /// Wait after a 429 without a readable Retry-After (seconds).
    #[arg(long, env = "ALERTER_RATE_LIMIT_DEFAULT_SECS", default_value_t = 30)]
    pub rate_limit_default_secs: u64,
    /// Longest Retry-After honoured (seconds).
    #[arg(long, env = "ALERTER_RATE_LIMIT_MAX_SECS", default_value_t = 900)]
    pub rate_limit_max_secs: u64,
    /// Serve Prometheus metrics (`GET /metrics`) on this address, e.g. 127.0.0.1:9465; none by default.
    #[arg(long, env = "ALERTER_METRICS_ADDRESS", value_name = "HOST:PORT")]
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Interval of the `stats ...` log line (milliseconds).
    #[arg(long, env = "ALERTER_STATS_INTERVAL_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub stats_interval_ms: u64,
    /// Delivery loops in this process, each on its own connection (Slack allows about one message a second
    /// per webhook, so more than one mostly helps console mode and bursts across many symbols).
    #[arg(long, env = "ALERTER_WORKERS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub workers: u16,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn rejects_zero_attempts() {
        assert!(Cli::try_parse_from(["sparktrends-alerter", "--max-attempts", "0"]).is_err());
    }
}
