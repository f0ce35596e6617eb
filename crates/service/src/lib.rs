//! What the SparkTrends services share, so the ingest and the alerter cannot drift apart on it:
//! - [`secret`]: secrets read from the environment in a type that cannot print them, URL redaction;
//! - [`backoff`]: exponential retry delays with equal jitter;
//! - [`retry_after`]: the `Retry-After` header (delay-seconds or an HTTP date);
//! - [`prometheus`]: the Prometheus text format and a `/metrics` endpoint;
//! - [`init_logging`]: one log line format on stderr, filtered by `RUST_LOG`.

pub mod backoff;
pub mod prometheus;
pub mod retry_after;
pub mod secret;

/// Logs to stderr at `RUST_LOG` (default `info`), with colour codes only for a person at a terminal: logs read
/// by tools and files stay plain.
pub fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
