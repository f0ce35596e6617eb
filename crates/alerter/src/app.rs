//! Wiring: settings, the channel, the LISTEN task, the workers, the stats line, and a clean stop on
//! SIGINT/SIGTERM (a message in flight is finished and settled first).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tracing::{error, info, warn};

use crate::channel::Channel;
use crate::cli::Cli;
use crate::db::PgSettings;
use crate::gate::RateGate;
use crate::slack::{RateLimitPolicy, Webhook};
use crate::stats::Stats;
use crate::worker::{Policy, Shared, Worker};
use crate::{listener, outbox};
use sparktrends_service::secret::Secret;

pub fn run(cli: Cli) -> i32 {
    sparktrends_service::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            error!("cannot start the async runtime: {error}");
            return 1;
        }
    };
    runtime.block_on(serve(cli))
}

async fn serve(cli: Cli) -> i32 {
    let pg = PgSettings {
        host: cli.pg_host.clone(),
        port: cli.pg_port,
        user: cli.pg_user.clone(),
        dbname: cli.pg_db.clone(),
        password: Secret::from_env("POSTGRES_PASSWORD"),
    };
    let http_timeout = Duration::from_millis(cli.http_timeout_ms);
    let channel = match Secret::from_env("SLACK_WEBHOOK") {
        Some(url) => {
            let rate_limit = RateLimitPolicy {
                default_wait: Duration::from_secs(cli.rate_limit_default_secs),
                max_wait: Duration::from_secs(cli.rate_limit_max_secs.max(1)),
            };
            match Webhook::new(url, http_timeout, rate_limit) {
                Ok(webhook) => Channel::Slack(webhook),
                Err(error) => {
                    error!("{error}");
                    return 1;
                }
            }
        }
        None => {
            warn!("SLACK_WEBHOOK is not set: alerts are printed to stdout and marked delivered with a note");
            Channel::Console
        }
    };
    let policy = Policy {
        max_attempts: cli.max_attempts,
        retry_base: Duration::from_millis(cli.retry_base_ms),
        retry_max: Duration::from_millis(cli.retry_max_ms.max(cli.retry_base_ms)),
        cooldown: Duration::from_secs(cli.cooldown_secs),
        max_group: cli.max_group,
        poll_interval: Duration::from_millis(cli.poll_interval_ms),
        idle_in_transaction_timeout: (http_timeout * 4).max(Duration::from_secs(30)),
    };
    info!(
        "alerter starting: channel={} postgres={} workers={} poll={}ms http_timeout={}ms max_attempts={} \
         retry_base={}ms cooldown={}s max_group={}",
        channel.name(),
        pg.describe(),
        cli.workers,
        cli.poll_interval_ms,
        cli.http_timeout_ms,
        cli.max_attempts,
        cli.retry_base_ms,
        cli.cooldown_secs,
        cli.max_group
    );

    let shared = Arc::new(Shared {
        channel,
        policy,
        gate: RateGate::default(),
        stats: Stats::default(),
        wake: Arc::new(Notify::new()),
    });
    if let Some(address) = cli.metrics_address {
        let scraped = shared.clone();
        match sparktrends_service::prometheus::serve(address, move || scraped.stats.exposition()) {
            Ok(bound) => info!("metrics on http://{bound}/metrics"),
            Err(err) => {
                error!("cannot serve metrics on {address}: {err}");
                return 2;
            }
        }
    }
    let (stop, shutdown) = watch::channel(false);

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(listener::run(
        pg.clone(),
        shared.wake.clone(),
        shutdown.clone(),
    ));
    tasks.spawn(report_stats(
        pg.clone(),
        shared.clone(),
        Duration::from_millis(cli.stats_interval_ms),
        shutdown.clone(),
    ));
    let mut workers = tokio::task::JoinSet::new();
    for n in 1..=cli.workers {
        workers.spawn(
            Worker::new(format!("worker-{n}"), pg.clone(), shared.clone()).run(shutdown.clone()),
        );
    }

    wait_for_signal().await;
    info!("stopping: finishing the message in flight");
    let _ = stop.send(true);
    while workers.join_next().await.is_some() {}
    tasks.shutdown().await;
    info!("final stats {}", shared.stats.counters());
    0
}

async fn report_stats(
    pg: PgSettings,
    shared: Arc<Shared>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut client = None;
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        if client
            .as_ref()
            .is_none_or(|c: &tokio_postgres::Client| c.is_closed())
        {
            client = pg.connect_client("stats").await.ok();
        }
        let queue = match &client {
            Some(c) => outbox::queue(c).await.ok(),
            None => None,
        };
        shared.stats.remember(queue);
        info!("{}", shared.stats.line(queue));
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
