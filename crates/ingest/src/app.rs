//! Wiring: configuration checks, the Kafka connection (checked before any source starts), the source's tasks,
//! signals, the rate reporter, and the final flush. Returns the process exit code.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use crate::cli::{
    BackfillArgs, BackfillKindArg, BackfillProvider, BinanceArgs, BinanceRestArgs, Cli, EmitArg,
    KindArg, SourceCommand, SyntheticArgs,
};
use crate::emitter::{Emitter, TradeBatching};
use crate::producer::{DeliveryCounter, KafkaSink, ProducerSettings};
use crate::shutdown::{self, Shutdown};
use crate::sim::{default_symbols, SimConfig};
use crate::sources::{
    binance, binance_backfill, binance_gaps, binance_rest, finnhub, replay, synthetic, twelvedata,
};
use crate::stats::Stats;
use crate::tables::TableKind;
use crate::topics::Topics;
use crate::validation::Validator;
use crate::ws::{self, WsEndpoint, WsTiming};
use sparktrends_service::secret::redact_url;

pub const EXIT_OK: i32 = 0;
pub const EXIT_RUNTIME: i32 = 1;
pub const EXIT_CONFIG: i32 = 2;

pub fn run(cli: Cli) -> i32 {
    sparktrends_service::init_logging();
    match plan(&cli) {
        Ok(Plan::Files) => run_file_mode(&cli),
        Ok(Plan::Kafka {
            required_topics,
            known_symbols,
        }) => run_into_kafka(cli, &required_topics, known_symbols),
        Err(message) => {
            error!("{message}");
            EXIT_CONFIG
        }
    }
}

enum Plan {
    /// The simulator writing files: no Kafka at all.
    Files,
    Kafka {
        required_topics: Vec<String>,
        known_symbols: Option<HashSet<String>>,
    },
}

/// Everything checkable before touching the network: keys present, flags coherent, which topics and symbols.
fn plan(cli: &Cli) -> Result<Plan, String> {
    let k = &cli.kafka;
    let set = |symbols: &[String]| Some(symbols.iter().cloned().collect::<HashSet<_>>());
    let (mut topics, known) = match &cli.source {
        SourceCommand::Binance(args) => {
            if args.no_trades && args.no_klines {
                return Err("binance: --no-trades and --no-klines leave nothing to do".into());
            }
            binance_connections(args)?;
            let mut topics = Vec::new();
            if !args.no_trades {
                topics.push(k.trades_topic.clone());
                topics.push(k.gaps_topic.clone());
            }
            if !args.no_klines || args.warmup_minutes > 0 {
                topics.push(k.bars_topic.clone());
            }
            let upper: Vec<String> = args
                .symbols
                .iter()
                .map(|s| s.to_ascii_uppercase())
                .collect();
            (topics, set(&upper))
        }
        SourceCommand::Finnhub(args) => {
            require_env("FINNHUB_API_KEY")?;
            if args.no_trades && args.no_profiles {
                return Err("finnhub: --no-trades and --no-profiles leave nothing to do".into());
            }
            (
                vec![
                    k.trades_topic.clone(),
                    k.companies_topic.clone(),
                    k.gaps_topic.clone(),
                ],
                set(&args.symbols),
            )
        }
        SourceCommand::Twelvedata(args) => {
            require_env("TWELVE_DATA_API_KEY")?;
            if args.no_rest && args.no_ws {
                return Err("twelvedata: --no-rest and --no-ws leave nothing to do".into());
            }
            if !args.no_rest {
                // An unreadable cursor would mean starting over (re-sending) or guessing (skipping).
                twelvedata::open_cursor(&cli.state_dir.join(twelvedata::CURSOR_FILE))
                    .map_err(|err| format!("twelvedata: {err:#}"))?;
            }
            (
                vec![k.bars_topic.clone(), k.trades_topic.clone()],
                set(&args.symbols),
            )
        }
        SourceCommand::Replay(args) => {
            if args.speed < 0.0 || !args.speed.is_finite() {
                return Err("replay: --speed must be 0 (as fast as possible) or positive".into());
            }
            let known = (!args.symbols.is_empty()).then(|| args.symbols.iter().cloned().collect());
            let topics = match args.kind {
                KindArg::Trades => vec![k.trades_topic.clone()],
                KindArg::Bars => vec![k.bars_topic.clone()],
                KindArg::Auto => vec![k.trades_topic.clone(), k.bars_topic.clone()],
            };
            (topics, known)
        }
        SourceCommand::Synthetic(args) => {
            if args.speed < 0.0 || !args.speed.is_finite() {
                return Err(
                    "synthetic: --speed must be 0 (as fast as possible) or positive".into(),
                );
            }
            if args.trades_out.is_some() || args.bars_out.is_some() {
                if args.minutes.is_none() {
                    return Err("synthetic: --trades-out/--bars-out need --minutes".into());
                }
                return Ok(Plan::Files);
            }
            let mut topics = Vec::new();
            if args.emit != EmitArg::Bars {
                topics.push(k.trades_topic.clone());
            }
            if args.emit != EmitArg::Trades {
                topics.push(k.bars_topic.clone());
            }
            (topics, set(&synthetic_symbols(args)))
        }
        SourceCommand::Backfill(BackfillArgs {
            provider: BackfillProvider::Binance(args),
        }) => {
            if args.from >= args.to {
                return Err("backfill binance: --from must be before --to".into());
            }
            if !(args.progress_interval > 0.0 && args.progress_interval.is_finite()) {
                return Err("backfill binance: --progress-interval must be positive".into());
            }
            // An unreadable progress file would mean starting over (re-sending) or guessing (skipping).
            let kind = backfill_kind(args.kind);
            crate::state::StateFile::<binance_backfill::BackfillState>::open(
                cli.state_dir.join(binance_backfill::state_file_name(kind)),
            )
            .map_err(|err| format!("backfill binance: {err:#}"))?;
            // A trades backfill asks the bars job to rebuild its minutes with a gap message.
            let topics = match kind {
                binance_backfill::BackfillKind::Klines => vec![k.bars_topic.clone()],
                binance_backfill::BackfillKind::Trades => {
                    vec![k.trades_topic.clone(), k.gaps_topic.clone()]
                }
            };
            (topics, set(&upper_case(&args.symbols)))
        }
    };
    topics.push(k.deadletter_topic.clone());
    Ok(Plan::Kafka {
        required_topics: topics,
        known_symbols: known,
    })
}

fn binance_kinds(args: &BinanceArgs) -> binance::StreamKinds {
    binance::StreamKinds {
        trades: !args.no_trades,
        klines: !args.no_klines,
    }
}

fn binance_connections(args: &BinanceArgs) -> Result<Vec<binance::ConnectionPlan>, String> {
    binance::plan_connections(
        &args.symbols,
        binance_kinds(args),
        usize::from(args.streams_per_connection),
    )
}

fn backfill_kind(kind: BackfillKindArg) -> binance_backfill::BackfillKind {
    match kind {
        BackfillKindArg::Klines => binance_backfill::BackfillKind::Klines,
        BackfillKindArg::Trades => binance_backfill::BackfillKind::Trades,
    }
}

fn binance_rest_settings(args: &BinanceRestArgs) -> binance_rest::RestSettings {
    binance_rest::RestSettings {
        base_url: args.rest_url.clone(),
        weight_per_minute: args.rest_weight_per_minute,
        server_weight_limit: args.rest_server_weight_limit,
        http_timeout: secs(args.rest_timeout),
        ..binance_rest::RestSettings::default()
    }
}

fn upper_case(symbols: &[String]) -> Vec<String> {
    symbols.iter().map(|s| s.to_ascii_uppercase()).collect()
}

fn require_env(name: &str) -> Result<String, String> {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => Ok(value.trim().to_string()),
        _ => Err(format!(
            "{name} is not set: this source needs it (secrets come from the environment only)"
        )),
    }
}

fn synthetic_symbols(args: &SyntheticArgs) -> Vec<String> {
    if args.symbols.is_empty() {
        default_symbols(args.num_symbols)
    } else {
        args.symbols.clone()
    }
}

fn sim_config(args: &SyntheticArgs, now_ms: i64) -> Result<SimConfig, String> {
    let start = match &args.start {
        Some(text) => crate::cli::parse_start(text)?,
        None => {
            crate::messages::minute_floor(now_ms)
                - args.backfill_minutes as i64 * crate::messages::MINUTE_MS
        }
    };
    let mut config = SimConfig::new(args.seed, synthetic_symbols(args), start);
    config.trades_per_minute = args.trades_per_minute;
    config.base_sigma = args.base_sigma;
    config.session_minutes = args.session_minutes;
    config.jumps_per_day = args.jumps_per_day;
    config.spikes_per_day = args.spikes_per_day;
    config.regime_shifts_per_day = args.regime_shifts_per_day;
    if config.symbols.is_empty() || config.trades_per_minute <= 0.0 || config.base_sigma <= 0.0 {
        return Err(
            "synthetic: need at least one symbol, positive --trades-per-minute and --base-sigma"
                .into(),
        );
    }
    Ok(config)
}

fn run_file_mode(cli: &Cli) -> i32 {
    let SourceCommand::Synthetic(args) = &cli.source else {
        unreachable!("file mode is the simulator's")
    };
    let config = match sim_config(args, crate::messages::now_ms()) {
        Ok(config) => config,
        Err(message) => {
            error!("{message}");
            return EXIT_CONFIG;
        }
    };
    let outputs = synthetic::FileOutputs {
        trades_out: args.trades_out.clone(),
        bars_out: args.bars_out.clone(),
        labels_out: args.labels_out.clone(),
    };
    match synthetic::run_to_files(config, args.minutes.unwrap_or(0), &outputs) {
        Ok(()) => EXIT_OK,
        Err(err) => {
            error!("synthetic: {err:#}");
            EXIT_RUNTIME
        }
    }
}

fn secs(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds.max(0.0))
}

fn run_into_kafka(
    cli: Cli,
    required_topics: &[String],
    known_symbols: Option<HashSet<String>>,
) -> i32 {
    let stats = Arc::new(Stats::default());
    if let Some(address) = cli.metrics_address {
        let scraped = stats.clone();
        match sparktrends_service::prometheus::serve(address, move || {
            crate::stats::exposition(&scraped)
        }) {
            Ok(bound) => info!("metrics on http://{bound}/metrics"),
            Err(err) => {
                error!("cannot serve metrics on {address}: {err}");
                return EXIT_CONFIG;
            }
        }
    }
    let settings = ProducerSettings {
        bootstrap: cli.kafka.kafka_bootstrap.clone(),
        linger_ms: cli.kafka.linger_ms,
        batch_bytes: cli.kafka.batch_bytes,
        compression: cli.kafka.compression.librdkafka_name().to_string(),
        connect_timeout: secs(cli.kafka.kafka_connect_timeout),
        overrides: cli.kafka.producer_properties.clone(),
    };
    let required: Vec<&str> = required_topics.iter().map(String::as_str).collect();
    let (trigger, shutdown) = shutdown::channel();
    // Before any source starts: a broker that does not answer is a clear error, not a silent queue.
    let context = DeliveryCounter::new(stats.clone(), trigger.clone());
    let sink = match KafkaSink::connect(&settings, &required, context) {
        Ok(sink) => Arc::new(sink),
        Err(err) => {
            error!("{err:#}");
            return EXIT_CONFIG;
        }
    };
    let topics = Topics {
        trades: cli.kafka.trades_topic.clone(),
        bars: cli.kafka.bars_topic.clone(),
        companies: cli.kafka.companies_topic.clone(),
        deadletter: cli.kafka.deadletter_topic.clone(),
        gaps: cli.kafka.gaps_topic.clone(),
    };
    let validator = Validator::new(known_symbols, (cli.validation.max_past * 1000.0) as i64);
    let batching = TradeBatching::new(
        cli.kafka.trade_batch_max,
        Duration::from_millis(cli.kafka.trade_batch_linger_ms),
    );
    let emitter = Arc::new(
        Emitter::new(sink.clone(), topics, validator, stats.clone()).with_trade_batching(batching),
    );

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            error!("cannot start the async runtime: {err}");
            return EXIT_RUNTIME;
        }
    };
    let outcome = runtime.block_on(async {
        let signals = tokio::spawn(shutdown::on_signals(trigger.clone()));
        let reporter = tokio::spawn(crate::stats::report_rates(
            stats.clone(),
            secs(cli.stats_interval.max(0.1)),
            shutdown.clone(),
        ));
        let linger = tokio::spawn(emitter.clone().run_linger(shutdown.clone()));
        let outcome = run_source(&cli, emitter.clone(), shutdown.clone()).await;
        // A finished source (replay done) or a failed one stops the rest too.
        trigger.trigger();
        // Its last act sends the trade batches still open, before the final flush below.
        let _ = linger.await;
        let _ = reporter.await;
        signals.abort();
        outcome
    });
    drop(runtime);

    // A source stopped by a signal may have added trades after the linger task's last send.
    emitter.send_open_batches();
    let flush_timeout = secs(cli.kafka.flush_timeout);
    let flushed = sink.flush(flush_timeout);
    let totals = stats.snapshot();
    info!(
        "stopped: produced {} messages (trades {} in {} messages, bars {}, companies {}, dead letters {}, gap records {}), delivered {}, delivery failures {}, reconnects {}, gaps {}, repaired trades {}, payload bytes {}",
        totals.produced(),
        totals.trades,
        totals.trade_messages,
        totals.bars,
        totals.companies,
        totals.dead_letters,
        totals.gap_records,
        totals.delivered,
        totals.delivery_failures,
        totals.reconnects,
        totals.gaps,
        totals.repaired_trades,
        totals.payload_bytes
    );
    if let Some(reason) = sink.fatal_error() {
        error!("exiting after a fatal Kafka producer error: {reason}");
        return EXIT_RUNTIME;
    }
    match (outcome, flushed) {
        (Ok(()), Ok(())) if totals.delivery_failures == 0 => EXIT_OK,
        (Ok(()), Ok(())) => {
            error!(
                "{} message(s) could not be delivered",
                totals.delivery_failures
            );
            EXIT_RUNTIME
        }
        (Err(err), _) => {
            error!("{err:#}");
            EXIT_RUNTIME
        }
        (_, Err(err)) => {
            error!("{err:#}");
            EXIT_RUNTIME
        }
    }
}

fn timing(
    connection: &crate::cli::ConnectionArgs,
    heartbeat: Option<(Duration, String)>,
) -> WsTiming {
    WsTiming {
        silence_timeout: secs(connection.silence_timeout),
        connect_timeout: secs(connection.connect_timeout),
        heartbeat,
        backoff_initial: Duration::from_millis(connection.backoff_initial_ms),
        backoff_max: Duration::from_millis(connection.backoff_max_ms),
        min_send_interval: Duration::ZERO,
    }
}

async fn run_source(cli: &Cli, emitter: Arc<Emitter>, shutdown: Shutdown) -> anyhow::Result<()> {
    let stats = emitter.stats().clone();
    match &cli.source {
        SourceCommand::Binance(args) => {
            let connections = binance_connections(args).map_err(anyhow::Error::msg)?;
            let url = binance::endpoint_url(&args.ws_url);
            let timing = WsTiming {
                min_send_interval: binance::MIN_SEND_INTERVAL,
                ..timing(&args.connection, None)
            };
            let count = connections.len();
            info!(
                "binance: {} symbol(s), {} stream(s) over {count} connection(s) of at most {} streams",
                connections.iter().map(|c| c.symbols.len()).sum::<usize>(),
                connections.iter().map(|c| c.streams.len()).sum::<usize>(),
                args.streams_per_connection
            );
            let rest = binance_rest::BinanceRest::new(
                binance_rest_settings(&args.rest),
                shutdown.clone(),
            )?;
            if args.warmup_minutes > 0 {
                // Before the first live bar: a new symbol's metrics start from this history, not cold.
                let symbols: Vec<String> =
                    connections.iter().flat_map(|c| c.symbols.clone()).collect();
                // Whole minutes: the N klines before the current one, which the live stream will close itself.
                let to_ms = crate::messages::minute_floor(crate::messages::now_ms());
                let from_ms = to_ms - i64::from(args.warmup_minutes) * crate::messages::MINUTE_MS;
                let options = binance_backfill::BackfillOptions {
                    flush_timeout: secs(cli.kafka.flush_timeout),
                    ..Default::default()
                };
                let summary = binance_backfill::backfill_klines(
                    &rest, &emitter, &symbols, from_ms, to_ms, &options, &shutdown,
                )
                .await?;
                info!("binance warm-up: {}", summary.line());
            }
            let mut sessions = tokio::task::JoinSet::new();
            // What the last run left (each symbol's last trade, unfinished repairs): a restart is a reconnect.
            let state = crate::state::StateFile::<binance_gaps::FeedMemory>::open(
                cli.state_dir.join(binance_gaps::FEED_STATE_FILE),
            )?;
            let memory = binance_gaps::SharedMemory::new(state.get().clone());
            if !state.get().last_trades.is_empty() {
                info!(
                    "binance: resuming from {}: last trades of {} symbol(s), {} unfinished repair(s)",
                    state.path().display(),
                    state.get().last_trades.len(),
                    state.get().pending.len()
                );
            }
            let repairs = (!args.no_trades).then(|| {
                let (sender, receiver) = binance_gaps::gap_channel(memory.clone());
                sessions.spawn(binance_gaps::run_repairs(
                    receiver,
                    memory.clone(),
                    (!args.no_repair).then(|| rest.clone()),
                    emitter.clone(),
                    secs(cli.kafka.flush_timeout),
                    shutdown.clone(),
                ));
                sessions.spawn(binance_gaps::keep_memory(
                    memory.clone(),
                    state,
                    emitter.clone(),
                    binance_gaps::SAVE_EVERY,
                    secs(cli.kafka.flush_timeout),
                    shutdown.clone(),
                ));
                sender
            });
            for (index, connection) in connections.into_iter().enumerate() {
                let name = format!("{}[{}/{count}]", binance::SOURCE, index + 1);
                let endpoint = WsEndpoint {
                    name: name.clone(),
                    log_url: redact_url(&url),
                    url: url.clone(),
                    headers: Vec::new(),
                };
                // One protocol per connection: a symbol's state lives where its frames arrive.
                let mut protocol =
                    binance::BinanceProtocol::new(emitter.clone(), connection.symbols)
                        .with_kinds(binance_kinds(args))
                        .with_label(name)
                        .with_gap_tracking(repairs.clone().map(|sender| (sender, memory.clone())));
                let (timing, stats, shutdown) = (timing.clone(), stats.clone(), shutdown.clone());
                let dial_delay = binance::DIAL_STAGGER * index as u32;
                // Spawned, not joined in place: each connection parses its frames on its own worker thread.
                sessions.spawn(async move {
                    if shutdown.sleep(dial_delay).await {
                        ws::run_session(&endpoint, &timing, &mut protocol, &stats, &shutdown).await;
                    }
                });
            }
            while let Some(ended) = sessions.join_next().await {
                ended.map_err(|err| anyhow::anyhow!("a binance connection failed: {err}"))?;
            }
            Ok(())
        }
        SourceCommand::Finnhub(args) => {
            let key = require_env("FINNHUB_API_KEY").map_err(anyhow::Error::msg)?;
            let separator = if args.ws_url.contains('?') { '&' } else { '?' };
            // Finnhub's socket only authenticates by query parameter; the URL is logged redacted only.
            let url = format!(
                "{}{separator}token={}",
                args.ws_url,
                crate::sources::finnhub::encode_query(&key)
            );
            let endpoint = WsEndpoint {
                name: finnhub::SOURCE.to_string(),
                log_url: redact_url(&url),
                url,
                headers: Vec::new(),
            };
            let trades = async {
                if !args.no_trades {
                    let mut protocol = finnhub::FinnhubProtocol {
                        emitter: emitter.clone(),
                        symbols: args.symbols.clone(),
                        reconnects: finnhub::ReconnectGaps::default(),
                    };
                    ws::run_session(
                        &endpoint,
                        &timing(&args.connection, None),
                        &mut protocol,
                        &stats,
                        &shutdown,
                    )
                    .await;
                }
            };
            let profiles = async {
                if args.no_profiles {
                    return Ok(());
                }
                let settings = finnhub::ProfileSettings {
                    rest_url: args.rest_url.clone(),
                    api_key: key.clone(),
                    symbols: args.symbols.clone(),
                    refresh: secs(args.profile_refresh),
                    per_minute: args.rest_per_minute,
                    http_timeout: secs(args.connection.connect_timeout),
                };
                finnhub::run_profiles(settings, emitter.clone(), shutdown.clone()).await
            };
            let ((), profiles) = tokio::join!(trades, profiles);
            profiles
        }
        SourceCommand::Twelvedata(args) => {
            let key = require_env("TWELVE_DATA_API_KEY").map_err(anyhow::Error::msg)?;
            let url = format!("{}/v1/quotes/price", args.ws_url.trim_end_matches('/'));
            let endpoint = WsEndpoint {
                name: twelvedata::SOURCE.to_string(),
                log_url: redact_url(&url),
                url,
                headers: vec![("authorization", format!("apikey {key}"))],
            };
            let heartbeat = Some((
                secs(args.heartbeat_interval),
                twelvedata::HEARTBEAT.to_string(),
            ));
            let prices = async {
                if !args.no_ws {
                    let mut protocol =
                        twelvedata::PriceProtocol::new(emitter.clone(), args.symbols.clone());
                    ws::run_session(
                        &endpoint,
                        &timing(&args.connection, heartbeat),
                        &mut protocol,
                        &stats,
                        &shutdown,
                    )
                    .await;
                }
            };
            let bars = async {
                if args.no_rest {
                    return;
                }
                let settings = twelvedata::RestSettings {
                    rest_url: args.rest_url.clone(),
                    api_key: key.clone(),
                    symbols: args.symbols.clone(),
                    backfill_bars: args.backfill_bars,
                    poll_interval: secs(args.poll_interval),
                    per_minute: args.rate_limit_per_minute,
                    http_timeout: secs(args.connection.connect_timeout),
                    cursor_path: cli.state_dir.join(twelvedata::CURSOR_FILE),
                    flush_timeout: secs(cli.kafka.flush_timeout),
                };
                // Losing the REST side must not stop the price stream.
                if let Err(err) =
                    twelvedata::run_rest(settings, emitter.clone(), shutdown.clone()).await
                {
                    error!("{err:#}");
                }
            };
            tokio::join!(prices, bars);
            Ok(())
        }
        SourceCommand::Replay(args) => {
            let settings = replay::ReplaySettings {
                files: args.files.clone(),
                speed: args.speed,
                looped: args.looped,
                source: args.source_name.clone(),
                kind: match args.kind {
                    KindArg::Auto => None,
                    KindArg::Trades => Some(TableKind::Trades),
                    KindArg::Bars => Some(TableKind::Bars),
                },
            };
            let shutdown = shutdown.clone();
            tokio::task::spawn_blocking(move || replay::run(settings, emitter, shutdown)).await?
        }
        SourceCommand::Synthetic(args) => {
            let launched_ms = crate::messages::now_ms();
            let sim = sim_config(args, launched_ms).map_err(anyhow::Error::msg)?;
            if sim.start_ms < launched_ms - crate::messages::MINUTE_MS {
                info!(
                    "synthetic: backfilling from {} ms, {} symbol(s)",
                    sim.start_ms,
                    sim.symbols.len()
                );
            }
            if args.speed == 0.0 && args.minutes.is_none() {
                warn!("synthetic: --speed 0 without --minutes generates until stopped");
            }
            let settings = synthetic::SyntheticSettings {
                sim,
                speed: args.speed,
                minutes: args.minutes,
                emit_trades: args.emit != EmitArg::Bars,
                emit_bars: args.emit != EmitArg::Trades,
                labels_out: args.labels_out.clone(),
                launched_ms,
            };
            let shutdown = shutdown.clone();
            tokio::task::spawn_blocking(move || {
                synthetic::run_to_kafka(settings, emitter, shutdown)
            })
            .await?
        }
        SourceCommand::Backfill(BackfillArgs {
            provider: BackfillProvider::Binance(args),
        }) => {
            let client = binance_rest::BinanceRest::new(
                binance_rest_settings(&args.rest),
                shutdown.clone(),
            )?;
            let kind = backfill_kind(args.kind);
            let symbols = upper_case(&args.symbols);
            let options = binance_backfill::BackfillOptions {
                limit: args.limit,
                state_path: Some(cli.state_dir.join(binance_backfill::state_file_name(kind))),
                progress_interval: secs(args.progress_interval),
                flush_timeout: secs(cli.kafka.flush_timeout),
            };
            let (from, to) = (args.from, args.to);
            let summary = match kind {
                binance_backfill::BackfillKind::Klines => {
                    binance_backfill::backfill_klines(
                        &client, &emitter, &symbols, from, to, &options, &shutdown,
                    )
                    .await?
                }
                binance_backfill::BackfillKind::Trades => {
                    binance_backfill::backfill_trades(
                        &client, &emitter, &symbols, from, to, &options, &shutdown,
                    )
                    .await?
                }
            };
            if summary.dropped.is_empty() {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "binance backfill incomplete: {} symbol(s) dropped",
                    summary.dropped.len()
                ))
            }
        }
    }
}
