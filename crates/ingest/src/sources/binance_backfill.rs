//! Binance history into the topics: every closed 1-minute kline (bars topic) or every trade (trades topic) of
//! [from, to) for each symbol, fetched through the REST client's shared weight budget. Symbols take turns, one
//! page each per round, so all progress together.
//!
//! Resumable: each symbol's requested range and position (the next kline open time, the next trade id) live in
//! a [`StateFile`], saved after every round (and every few seconds within a long one), each time only once
//! `Emitter::flush` confirmed that Kafka holds everything the positions cover. A kill -9 therefore re-sends at
//! most the pages sent since the last save and never skips one. A rerun with the same range continues where the state says; a symbol whose range changed starts over.
//!
//! The part of a range that lies in the future is left for a later run: only closed klines exist, and only
//! trades up to now.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::emitter::Emitter;
use crate::messages::{minute_floor, now_ms, Gap, GapCause, GapOutcome, RejectCode, MINUTE_MS};
use crate::shutdown::Shutdown;
use crate::sources::binance::SOURCE;
use crate::sources::binance_rest::{BinanceRest, RestError, MAX_LIMIT};
use crate::state::StateFile;
use crate::validation::TimeCheck;

/// Progress is saved after every round of pages, and within a round at least this often.
const SAVE_INTERVAL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackfillKind {
    Klines,
    Trades,
}

impl BackfillKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackfillKind::Klines => "klines",
            BackfillKind::Trades => "trades",
        }
    }

    /// What the progress lines count.
    fn unit(self) -> &'static str {
        match self {
            BackfillKind::Klines => "bars",
            BackfillKind::Trades => "trades",
        }
    }
}

/// `backfill-binance-<kind>.json`, the state file's name inside the state directory.
pub fn state_file_name(kind: BackfillKind) -> String {
    format!("backfill-binance-{}.json", kind.as_str())
}

#[derive(Debug, Clone)]
pub struct BackfillOptions {
    /// Rows per request (at most 1000).
    pub limit: u32,
    /// Where progress is kept; None: no resuming (a warm-up that is cheap to repeat).
    pub state_path: Option<PathBuf>,
    pub progress_interval: Duration,
    /// How long a checkpoint waits for Kafka to acknowledge what was sent.
    pub flush_timeout: Duration,
}

impl Default for BackfillOptions {
    fn default() -> Self {
        Self {
            limit: MAX_LIMIT,
            state_path: None,
            progress_interval: Duration::from_secs(5),
            flush_timeout: Duration::from_secs(30),
        }
    }
}

/// The state file: one entry per symbol ever backfilled with this kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackfillState {
    pub symbols: BTreeMap<String, SymbolProgress>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymbolProgress {
    /// The range asked for, [from_ms, to_ms): a run asking for another range starts the symbol over.
    pub from_ms: i64,
    pub to_ms: i64,
    /// klines: open time of the next kline to fetch.
    #[serde(default)]
    pub next_start_ms: Option<i64>,
    /// trades: the first trade id of the range (None: not looked up yet).
    #[serde(default)]
    pub first_trade_id: Option<i64>,
    /// trades: the next trade id to fetch.
    #[serde(default)]
    pub next_trade_id: Option<i64>,
    /// trades: the first id at or after `to_ms`, the range's exclusive end, when known.
    #[serde(default)]
    pub end_trade_id: Option<i64>,
    /// Everything of the range was sent and delivered.
    #[serde(default)]
    pub complete: bool,
}

impl SymbolProgress {
    fn new(kind: BackfillKind, from_ms: i64, to_ms: i64) -> Self {
        Self {
            from_ms,
            to_ms,
            next_start_ms: (kind == BackfillKind::Klines).then(|| minute_ceil(from_ms)),
            first_trade_id: None,
            next_trade_id: None,
            end_trade_id: None,
            complete: false,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub kind: BackfillKind,
    /// Messages sent this run (a resumed run re-sends the unsaved pages of the one before).
    pub sent: u64,
    /// Symbols whose whole range is done.
    pub finished: Vec<String>,
    /// Symbols done up to now whose range goes on into the future: a later run continues them.
    pub caught_up: Vec<String>,
    /// Symbols given up, with the reason (an invalid symbol, a malformed answer).
    pub dropped: Vec<(String, String)>,
    /// Shutdown came first; the saved state resumes the rest.
    pub stopped: bool,
    pub elapsed: Duration,
    /// Request weight spent by the process so far.
    pub weight: u64,
}

impl Summary {
    pub fn complete(&self) -> bool {
        !self.stopped && self.dropped.is_empty() && self.caught_up.is_empty()
    }

    pub fn line(&self) -> String {
        let seconds = self.elapsed.as_secs_f64();
        let mut line = format!(
            "binance backfill {}: {} {} sent in {seconds:.1} s, {} symbol(s) finished",
            self.kind.as_str(),
            self.sent,
            self.kind.unit(),
            self.finished.len()
        );
        if !self.caught_up.is_empty() {
            line.push_str(&format!(
                ", {} caught up to now (the rest of their range is in the future: run again later)",
                self.caught_up.join(",")
            ));
        }
        if !self.dropped.is_empty() {
            let dropped: Vec<String> = self
                .dropped
                .iter()
                .map(|(symbol, reason)| format!("{symbol} ({reason})"))
                .collect();
            line.push_str(&format!(", dropped {}", dropped.join(", ")));
        }
        if self.stopped {
            line.push_str(", stopped before the end: rerun the same command to resume");
        }
        line.push_str(&format!(", request weight used {}", self.weight));
        line
    }
}

/// Every closed 1-minute kline of [from_ms, to_ms) for each symbol into the bars topic. What the live source
/// calls for a warm-up (`state_path: None`) and what `backfill binance` runs.
pub async fn backfill_klines(
    client: &BinanceRest,
    emitter: &Emitter,
    symbols: &[String],
    from_ms: i64,
    to_ms: i64,
    options: &BackfillOptions,
    shutdown: &Shutdown,
) -> anyhow::Result<Summary> {
    let range = Range {
        kind: BackfillKind::Klines,
        from_ms,
        to_ms,
    };
    run(client, emitter, symbols, range, options, shutdown).await
}

/// Every trade of [from_ms, to_ms) for each symbol into the trades topic.
pub async fn backfill_trades(
    client: &BinanceRest,
    emitter: &Emitter,
    symbols: &[String],
    from_ms: i64,
    to_ms: i64,
    options: &BackfillOptions,
    shutdown: &Shutdown,
) -> anyhow::Result<Summary> {
    let range = Range {
        kind: BackfillKind::Trades,
        from_ms,
        to_ms,
    };
    run(client, emitter, symbols, range, options, shutdown).await
}

#[derive(Debug, Clone, Copy)]
struct Range {
    kind: BackfillKind,
    from_ms: i64,
    to_ms: i64,
}

/// One symbol during a run.
struct Task {
    symbol: String,
    progress: SymbolProgress,
    /// Where this run stops: `to_ms`, or now when the range reaches into the future.
    run_end_ms: i64,
    /// Work done when this run started, for the rate and ETA.
    done_at_start: u64,
    sent: u64,
    state: TaskState,
}

#[derive(Debug, Clone, PartialEq)]
enum TaskState {
    Active,
    Finished,
    CaughtUp,
    Dropped(String),
}

enum Step {
    Page,
    EndReached,
}

fn minute_ceil(ms: i64) -> i64 {
    minute_floor(ms + MINUTE_MS - 1)
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

impl Task {
    fn new(symbol: &str, kind: BackfillKind, progress: SymbolProgress, start_wall_ms: i64) -> Self {
        let run_end_ms = match kind {
            // A kline opening before the current minute is closed.
            BackfillKind::Klines => progress.to_ms.min(minute_floor(start_wall_ms)),
            BackfillKind::Trades => progress.to_ms.min(start_wall_ms),
        };
        let state = if progress.complete {
            TaskState::Finished
        } else {
            TaskState::Active
        };
        let mut task = Self {
            symbol: symbol.to_string(),
            progress,
            run_end_ms,
            done_at_start: 0,
            sent: 0,
            state,
        };
        task.done_at_start = task.done(kind);
        task
    }

    /// Units (minutes or trade ids) of the range covered so far.
    fn done(&self, kind: BackfillKind) -> u64 {
        match kind {
            BackfillKind::Klines => {
                let start = minute_ceil(self.progress.from_ms);
                let next = minute_ceil(
                    self.progress
                        .next_start_ms
                        .unwrap_or(start)
                        .min(self.run_end_ms),
                );
                ((next - start).max(0) / MINUTE_MS) as u64
            }
            BackfillKind::Trades => {
                match (self.progress.first_trade_id, self.progress.next_trade_id) {
                    (Some(first), Some(next)) => (next - first).max(0) as u64,
                    _ => 0,
                }
            }
        }
    }

    /// Units of the range this run can cover; None while the trades' bounds are not known.
    fn total(&self, kind: BackfillKind) -> Option<u64> {
        match kind {
            BackfillKind::Klines => {
                // Klines open on whole minutes: those in [start, run_end) number ⌈(run_end − start) / 1 min⌉.
                let start = minute_ceil(self.progress.from_ms);
                Some(((minute_ceil(self.run_end_ms) - start).max(0) / MINUTE_MS) as u64)
            }
            BackfillKind::Trades => {
                if self.state != TaskState::Active {
                    return Some(self.done(kind));
                }
                match (self.progress.first_trade_id, self.progress.end_trade_id) {
                    (Some(first), Some(end)) => Some((end - first).max(0) as u64),
                    _ => None,
                }
            }
        }
    }

    /// The gap message asking the bars job to rebuild the minutes of the trades this symbol's backfill covers.
    fn rebuild_request(&self) -> Option<Gap> {
        let first = self.progress.first_trade_id?;
        let next = self.progress.next_trade_id?;
        if next <= first {
            return None;
        }
        Some(Gap {
            source: SOURCE.to_string(),
            symbol: self.symbol.clone(),
            cause: GapCause::Backfill,
            outcome: GapOutcome::Repaired,
            from_ts_ms: self.progress.from_ms,
            to_ts_ms: self.run_end_ms.min(self.progress.to_ms) - 1,
            first_missing_id: Some(first),
            last_missing_id: Some(next - 1),
            repaired_trades: next - first,
            detected_ms: crate::messages::now_ms(),
        })
    }

    /// Ends the run for this symbol: finished when the whole range is done, caught up when it goes on past now.
    fn end_reached(&mut self) {
        if self.run_end_ms >= self.progress.to_ms {
            self.progress.complete = true;
            self.state = TaskState::Finished;
        } else {
            self.state = TaskState::CaughtUp;
        }
    }

    async fn step(
        &mut self,
        client: &BinanceRest,
        emitter: &Emitter,
        kind: BackfillKind,
        limit: u32,
    ) -> Result<Step, RestError> {
        match kind {
            BackfillKind::Klines => self.klines_page(client, emitter, limit).await,
            BackfillKind::Trades => self.trades_page(client, emitter, limit).await,
        }
    }

    async fn klines_page(
        &mut self,
        client: &BinanceRest,
        emitter: &Emitter,
        limit: u32,
    ) -> Result<Step, RestError> {
        let next = self
            .progress
            .next_start_ms
            .unwrap_or_else(|| minute_ceil(self.progress.from_ms));
        if next >= self.run_end_ms {
            return Ok(Step::EndReached);
        }
        let bars = client
            .klines_1m(&self.symbol, next, self.run_end_ms, limit)
            .await?;
        for bar in bars
            .iter()
            .filter(|bar| bar.ts_ms >= next && bar.ts_ms < self.run_end_ms)
        {
            emitter.bar(bar, None, TimeCheck::Exempt);
            self.sent += 1;
        }
        // A short page is the end of what exists in the range (minutes without klines, e.g. an exchange
        // maintenance, are simply absent).
        let following = match bars.last() {
            Some(last) if bars.len() >= limit as usize => {
                (last.ts_ms + MINUTE_MS).max(next + MINUTE_MS)
            }
            _ => self.run_end_ms,
        };
        self.progress.next_start_ms = Some(following.min(self.run_end_ms));
        if following >= self.run_end_ms {
            Ok(Step::EndReached)
        } else {
            Ok(Step::Page)
        }
    }

    async fn trades_page(
        &mut self,
        client: &BinanceRest,
        emitter: &Emitter,
        limit: u32,
    ) -> Result<Step, RestError> {
        let from_ms = self.progress.from_ms;
        if self.progress.next_trade_id.is_none() {
            let Some(first) = client
                .first_trade_id_at(&self.symbol, from_ms, self.run_end_ms)
                .await?
            else {
                // No trade in the range up to now.
                return Ok(Step::EndReached);
            };
            self.progress.first_trade_id = Some(first);
            self.progress.next_trade_id = Some(first);
        }
        if self.progress.end_trade_id.is_none() && self.run_end_ms >= self.progress.to_ms {
            // Only for the percentage: the time check below ends the range whether or not this is found, so
            // the search stops after an hour instead of walking up to now through a quiet market.
            let to_ms = self.progress.to_ms;
            self.progress.end_trade_id = client
                .first_trade_id_at(&self.symbol, to_ms, (to_ms + 3_600_000).min(now_ms()))
                .await?;
        }
        let next = self.progress.next_trade_id.unwrap_or_default();
        let trades = client.historical_trades(&self.symbol, next, limit).await?;
        let mut following = next;
        let mut end_reached = trades.len() < limit as usize;
        for trade in &trades {
            let Some(id) = trade
                .trade_id
                .as_deref()
                .and_then(|id| id.parse::<i64>().ok())
            else {
                continue;
            };
            if id < next {
                continue;
            }
            let past_end = self.progress.end_trade_id.is_some_and(|end| id >= end);
            if past_end || trade.ts_ms >= self.run_end_ms {
                end_reached = true;
                break;
            }
            if trade.ts_ms >= from_ms {
                emitter.repaired_trade(trade, GapCause::Backfill);
                self.sent += 1;
            }
            following = id + 1;
        }
        self.progress.next_trade_id = Some(following);
        if end_reached {
            Ok(Step::EndReached)
        } else {
            Ok(Step::Page)
        }
    }
}

struct Meter {
    kind: BackfillKind,
    started: Instant,
    last_line: Instant,
    interval: Duration,
    /// Work done at the last line, so the closing line is not a repeat.
    reported: Option<u64>,
}

impl Meter {
    fn maybe_report(&mut self, tasks: &[Task], client: &BinanceRest) {
        if self.last_line.elapsed() >= self.interval {
            self.report(tasks, client);
        }
    }

    fn report(&mut self, tasks: &[Task], client: &BinanceRest) {
        self.last_line = Instant::now();
        self.reported = Some(tasks.iter().map(|t| t.done(self.kind)).sum());
        info!("{}", self.line(tasks, client));
    }

    fn finish(&mut self, tasks: &[Task], client: &BinanceRest) {
        if self.reported != Some(tasks.iter().map(|t| t.done(self.kind)).sum()) {
            self.report(tasks, client);
        }
    }

    fn line(&self, tasks: &[Task], client: &BinanceRest) -> String {
        let kind = self.kind;
        let done: u64 = tasks.iter().map(|t| t.done(kind)).sum();
        let done_now: u64 = tasks
            .iter()
            .map(|t| t.done(kind).saturating_sub(t.done_at_start))
            .sum();
        let totals: Option<u64> = tasks.iter().map(|t| t.total(kind)).sum();
        let rate = done_now as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let server = client
            .budget()
            .server_used()
            .map(|used| format!(", server count {used} this minute"))
            .unwrap_or_default();
        let weight = client.budget().spent();
        progress_line(kind, done, totals, rate, weight, &server)
    }
}

/// `binance backfill klines: 1200/4320 bars (27.8%), 310 bars/s, ETA 10s, weight used 24`.
fn progress_line(
    kind: BackfillKind,
    done: u64,
    total: Option<u64>,
    rate: f64,
    weight: u64,
    server: &str,
) -> String {
    let unit = kind.unit();
    let amount = match total {
        Some(total) if total > 0 => {
            let percent = 100.0 * done as f64 / total as f64;
            let eta = if rate > 0.0 {
                format!("{:.0}s", total.saturating_sub(done) as f64 / rate)
            } else {
                "unknown".to_string()
            };
            format!("{done}/{total} {unit} ({percent:.1}%), {rate:.0} {unit}/s, ETA {eta}")
        }
        Some(_) => format!("{done}/0 {unit}, {rate:.0} {unit}/s"),
        None => format!("{done} {unit} (total not known yet), {rate:.0} {unit}/s"),
    };
    format!(
        "binance backfill {}: {amount}, weight used {weight}{server}",
        kind.as_str()
    )
}

async fn run(
    client: &BinanceRest,
    emitter: &Emitter,
    symbols: &[String],
    range: Range,
    options: &BackfillOptions,
    shutdown: &Shutdown,
) -> anyhow::Result<Summary> {
    anyhow::ensure!(
        range.from_ms < range.to_ms,
        "binance backfill: from must be before to"
    );
    let kind = range.kind;
    let started = Instant::now();
    let mut state: Option<StateFile<BackfillState>> = match &options.state_path {
        Some(path) => Some(StateFile::open(path)?),
        None => None,
    };
    let start_wall_ms = now_ms();
    let mut tasks: Vec<Task> = Vec::new();
    // Logged after the run's first line.
    let mut notes: Vec<String> = Vec::new();
    for symbol in symbols {
        if tasks.iter().any(|t| &t.symbol == symbol) {
            continue;
        }
        let saved = state.as_ref().and_then(|s| s.get().symbols.get(symbol));
        let progress = match saved {
            Some(saved) if saved.from_ms == range.from_ms && saved.to_ms == range.to_ms => {
                if !saved.complete {
                    notes.push(format!(
                        "binance backfill {}: resuming {symbol} at {}",
                        kind.as_str(),
                        match kind {
                            BackfillKind::Klines =>
                                saved.next_start_ms.map_or("the start".to_string(), rfc3339),
                            BackfillKind::Trades => saved
                                .next_trade_id
                                .map_or("the start".to_string(), |id| format!("trade id {id}")),
                        }
                    ));
                }
                saved.clone()
            }
            Some(saved) => {
                notes.push(format!(
                    "binance backfill {}: {symbol} was saved for [{}, {}): another range, starting it over",
                    kind.as_str(),
                    rfc3339(saved.from_ms),
                    rfc3339(saved.to_ms)
                ));
                SymbolProgress::new(kind, range.from_ms, range.to_ms)
            }
            None => SymbolProgress::new(kind, range.from_ms, range.to_ms),
        };
        tasks.push(Task::new(symbol, kind, progress, start_wall_ms));
    }
    info!(
        "binance backfill {}: {} symbol(s), [{}, {}){}{}",
        kind.as_str(),
        tasks.len(),
        rfc3339(range.from_ms),
        rfc3339(range.to_ms),
        if range.to_ms > start_wall_ms {
            format!(
                " up to now ({}): the rest is in the future",
                rfc3339(start_wall_ms)
            )
        } else {
            String::new()
        },
        state
            .as_ref()
            .map(|s| format!(", progress in {}", s.path().display()))
            .unwrap_or_default()
    );
    for note in notes {
        info!("{note}");
    }

    let mut meter = Meter {
        kind,
        started,
        last_line: Instant::now(),
        interval: options.progress_interval,
        reported: None,
    };
    // The client caps a page at 1000 rows; a larger limit would make every page look short (the end).
    let limit = options.limit.clamp(1, MAX_LIMIT);
    let mut last_save = Instant::now();
    let mut stopped = false;
    let mut failure: Option<anyhow::Error> = None;
    while !stopped && failure.is_none() && tasks.iter().any(|t| t.state == TaskState::Active) {
        for index in 0..tasks.len() {
            if tasks[index].state != TaskState::Active {
                continue;
            }
            if shutdown.is_triggered() {
                stopped = true;
                break;
            }
            let task = &mut tasks[index];
            match task.step(client, emitter, kind, limit).await {
                Ok(Step::Page) => {}
                Ok(Step::EndReached) => {
                    task.end_reached();
                    if kind == BackfillKind::Trades {
                        // Behind the bars job's watermark these trades are dropped as late: their minutes are
                        // rebuilt from the topic instead, like a repaired gap's (spark_jobs/gap_repair.py). The
                        // trades must be in Kafka before the message that asks for it.
                        emitter.flush(options.flush_timeout).await?;
                        if let Some(gap) = task.rebuild_request() {
                            emitter.gap(&gap);
                        }
                    }
                    info!(
                        "binance backfill {}: {} {}: {} {} sent this run",
                        kind.as_str(),
                        task.symbol,
                        if task.state == TaskState::Finished {
                            format!(
                                "finished [{}, {})",
                                rfc3339(task.progress.from_ms),
                                rfc3339(task.progress.to_ms)
                            )
                        } else {
                            format!("caught up to {}", rfc3339(task.run_end_ms))
                        },
                        task.sent,
                        kind.unit()
                    );
                }
                Err(RestError::Shutdown) => {
                    stopped = true;
                    break;
                }
                Err(err @ (RestError::Rejected { .. } | RestError::Malformed { .. })) => {
                    let (code, body) = match &err {
                        RestError::Rejected { body, .. } => (RejectCode::HttpStatus, body.as_str()),
                        RestError::Malformed { body, .. } => {
                            (RejectCode::ProviderMalformed, body.as_str())
                        }
                        _ => unreachable!("matched above"),
                    };
                    let reason = if err.is_invalid_symbol() {
                        format!("Binance does not list it ({err})")
                    } else {
                        err.to_string()
                    };
                    error!(
                        "binance backfill {}: dropping {}: {reason}; the other symbols go on",
                        kind.as_str(),
                        task.symbol
                    );
                    emitter.dead_letter(
                        SOURCE,
                        code,
                        &format!("backfill {} {}: {err}", kind.as_str(), task.symbol),
                        body,
                    );
                    task.state = TaskState::Dropped(reason);
                }
                Err(err @ RestError::Unavailable(_)) => {
                    failure = Some(anyhow::anyhow!(
                        "binance backfill {}: {}: {err}; progress is saved, rerun to resume",
                        kind.as_str(),
                        task.symbol
                    ));
                    break;
                }
            }
            meter.maybe_report(&tasks, client);
            // With many symbols a round is long: save within it too, so a crash re-sends little.
            if last_save.elapsed() >= SAVE_INTERVAL {
                checkpoint(emitter, state.as_mut(), &tasks, options.flush_timeout).await?;
                last_save = Instant::now();
            }
        }
        checkpoint(emitter, state.as_mut(), &tasks, options.flush_timeout).await?;
        last_save = Instant::now();
    }
    if let Some(err) = failure {
        return Err(err);
    }
    meter.finish(&tasks, client);
    let pick = |wanted: &dyn Fn(&TaskState) -> bool| -> Vec<String> {
        tasks
            .iter()
            .filter(|t| wanted(&t.state))
            .map(|t| t.symbol.clone())
            .collect()
    };
    let summary = Summary {
        kind,
        sent: tasks.iter().map(|t| t.sent).sum(),
        finished: pick(&|s| *s == TaskState::Finished),
        caught_up: pick(&|s| *s == TaskState::CaughtUp),
        dropped: tasks
            .iter()
            .filter_map(|t| match &t.state {
                TaskState::Dropped(reason) => Some((t.symbol.clone(), reason.clone())),
                _ => None,
            })
            .collect(),
        stopped: stopped || tasks.iter().any(|t| t.state == TaskState::Active),
        elapsed: started.elapsed(),
        weight: client.budget().spent(),
    };
    info!("{}", summary.line());
    if stopped {
        warn!(
            "binance backfill {}: stopped by shutdown; the saved progress resumes it",
            kind.as_str()
        );
    }
    Ok(summary)
}

/// Saves every symbol's position once Kafka holds all that was sent: a position never runs ahead of delivery.
async fn checkpoint(
    emitter: &Emitter,
    state: Option<&mut StateFile<BackfillState>>,
    tasks: &[Task],
    flush_timeout: Duration,
) -> anyhow::Result<()> {
    let Some(state) = state else {
        return Ok(());
    };
    emitter.flush(flush_timeout).await?;
    let saved = &mut state.get_mut().symbols;
    let mut changed = false;
    for task in tasks {
        if saved.get(&task.symbol) != Some(&task.progress) {
            saved.insert(task.symbol.clone(), task.progress.clone());
            changed = true;
        }
    }
    if changed {
        state.save()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::emitter::test_support::memory_emitter;
    use crate::sources::binance_rest::test_server::{query_value, serve, Responder, TestServer};
    use crate::sources::binance_rest::RestSettings;

    /// 2024-01-01T00:00:00Z
    const T0: i64 = 1_704_067_200_000;

    /// Binance's klines answer for a market with one kline per minute from T0 on; BADUSDT is not listed.
    fn klines_responder() -> Arc<Responder> {
        Arc::new(|target: &str| {
            if query_value(target, "symbol").as_deref() == Some("BADUSDT") {
                return (
                    400,
                    vec![],
                    r#"{"code":-1121,"msg":"Invalid symbol."}"#.to_string(),
                );
            }
            let number = |name: &str| query_value(target, name).unwrap().parse::<i64>().unwrap();
            let (start, end, limit) = (number("startTime"), number("endTime"), number("limit"));
            let rows: Vec<String> = (0..10_000)
                .map(|minute| T0 + minute * MINUTE_MS)
                .filter(|&open| open >= start && open <= end)
                .take(limit as usize)
                .map(|open| {
                    let price = 100 + (open - T0) / MINUTE_MS;
                    format!(
                        r#"[{open},"{price}","{price}","{price}","{price}","2.0",{},"{}",3,"1.0","{price}","0"]"#,
                        open + MINUTE_MS - 1,
                        price * 2
                    )
                })
                .collect();
            (200, vec![], format!("[{}]", rows.join(",")))
        })
    }

    fn client(server: &TestServer, shutdown: Shutdown) -> BinanceRest {
        let settings = RestSettings {
            base_url: server.url.clone(),
            weight_per_minute: 600_000,
            ..RestSettings::default()
        };
        BinanceRest::new(settings, shutdown).unwrap()
    }

    fn options(state_path: Option<PathBuf>, limit: u32) -> BackfillOptions {
        BackfillOptions {
            limit,
            state_path,
            ..BackfillOptions::default()
        }
    }

    fn symbols(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn klines_of_every_symbol_in_turn_and_a_complete_range_is_not_fetched_again() {
        let server = serve(klines_responder()).await;
        let (_trigger, shutdown) = crate::shutdown::channel();
        let client = client(&server, shutdown.clone());
        let (emitter, sink) = memory_emitter(&["BTCUSDT", "ETHUSDT"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(state_file_name(BackfillKind::Klines));
        let wanted = symbols(&["BTCUSDT", "ETHUSDT"]);
        // From 30 s into the first minute: its kline opened before the range and is not part of it.
        let (from, to) = (T0 + 30_000, T0 + 10 * MINUTE_MS);
        let options = options(Some(path.clone()), 4);
        let summary = backfill_klines(&client, &emitter, &wanted, from, to, &options, &shutdown)
            .await
            .unwrap();
        assert!(summary.complete(), "{summary:?}");
        assert_eq!(summary.sent, 18);
        assert_eq!(summary.finished, wanted);
        let bars = sink.on_topic("market.bars.1m.v1");
        for symbol in &wanted {
            let stamps: Vec<i64> = bars
                .iter()
                .filter(|r| &r.key == symbol)
                .map(|r| r.payload["ts_ms"].as_i64().unwrap())
                .collect();
            assert_eq!(
                stamps,
                (1..10).map(|m| T0 + m * MINUTE_MS).collect::<Vec<_>>()
            );
        }
        assert_eq!(bars[0].payload["vwap"], 2.0 * 101.0 / 2.0);
        // Turns: a page of BTCUSDT, one of ETHUSDT, then the next of each.
        let asked: Vec<(String, String)> = server
            .paths()
            .iter()
            .map(|p| {
                (
                    query_value(p, "symbol").unwrap(),
                    query_value(p, "startTime").unwrap(),
                )
            })
            .collect();
        let minute = |m: i64| (T0 + m * MINUTE_MS).to_string();
        assert_eq!(
            asked,
            vec![
                ("BTCUSDT".to_string(), minute(1)),
                ("ETHUSDT".to_string(), minute(1)),
                ("BTCUSDT".to_string(), minute(5)),
                ("ETHUSDT".to_string(), minute(5)),
                ("BTCUSDT".to_string(), minute(9)),
                ("ETHUSDT".to_string(), minute(9)),
            ]
        );
        let saved: StateFile<BackfillState> = StateFile::open(&path).unwrap();
        assert!(saved.get().symbols.values().all(|p| p.complete));

        let again = backfill_klines(&client, &emitter, &wanted, from, to, &options, &shutdown)
            .await
            .unwrap();
        assert_eq!((again.sent, server.paths().len()), (0, 6));
        // Another range for one symbol starts that one over; the other stays complete.
        let later = backfill_klines(
            &client,
            &emitter,
            &wanted[..1],
            from,
            to + MINUTE_MS,
            &options,
            &shutdown,
        )
        .await
        .unwrap();
        assert_eq!(later.sent, 10);
        assert_eq!(
            query_value(&server.paths()[6], "startTime"),
            Some(minute(1))
        );
    }

    #[tokio::test]
    async fn a_rerun_starts_at_the_saved_position() {
        let server = serve(klines_responder()).await;
        let (_trigger, shutdown) = crate::shutdown::channel();
        let client = client(&server, shutdown.clone());
        let (emitter, sink) = memory_emitter(&["BTCUSDT"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress.json");
        let (from, to) = (T0, T0 + 60 * MINUTE_MS);
        let mut state: StateFile<BackfillState> = StateFile::open(&path).unwrap();
        let mut progress = SymbolProgress::new(BackfillKind::Klines, from, to);
        progress.next_start_ms = Some(T0 + 42 * MINUTE_MS);
        state.get_mut().symbols.insert("BTCUSDT".into(), progress);
        state.save().unwrap();
        let summary = backfill_klines(
            &client,
            &emitter,
            &symbols(&["BTCUSDT"]),
            from,
            to,
            &options(Some(path), 1000),
            &shutdown,
        )
        .await
        .unwrap();
        assert_eq!(summary.sent, 18);
        assert_eq!(
            query_value(&server.paths()[0], "startTime"),
            Some((T0 + 42 * MINUTE_MS).to_string())
        );
        assert_eq!(
            sink.on_topic("market.bars.1m.v1")[0].payload["ts_ms"],
            T0 + 42 * MINUTE_MS
        );
    }

    #[tokio::test]
    async fn an_unlisted_symbol_is_dropped_and_dead_lettered_while_the_others_finish() {
        let server = serve(klines_responder()).await;
        let (_trigger, shutdown) = crate::shutdown::channel();
        let client = client(&server, shutdown.clone());
        let (emitter, sink) = memory_emitter(&["BTCUSDT", "BADUSDT"]);
        let summary = backfill_klines(
            &client,
            &emitter,
            &symbols(&["BADUSDT", "BTCUSDT"]),
            T0,
            T0 + 5 * MINUTE_MS,
            &options(None, 1000),
            &shutdown,
        )
        .await
        .unwrap();
        assert!(!summary.complete());
        assert_eq!(summary.finished, ["BTCUSDT"]);
        assert_eq!(summary.dropped.len(), 1);
        assert!(
            summary.dropped[0].1.contains("-1121"),
            "{:?}",
            summary.dropped
        );
        assert_eq!(sink.on_topic("market.bars.1m.v1").len(), 5);
        let letters = sink.on_topic("market.deadletter.v1");
        assert_eq!(letters[0].payload["reason_code"], "http_status");
        assert!(
            summary.line().contains("dropped BADUSDT"),
            "{}",
            summary.line()
        );
    }

    #[tokio::test]
    async fn the_future_part_of_a_range_is_left_for_later_and_shutdown_stops_cleanly() {
        let server = serve(klines_responder()).await;
        let (trigger, shutdown) = crate::shutdown::channel();
        let client = client(&server, shutdown.clone());
        let (emitter, _sink) = memory_emitter(&["BTCUSDT"]);
        let now = now_ms();
        let summary = backfill_klines(
            &client,
            &emitter,
            &symbols(&["BTCUSDT"]),
            minute_floor(now) - 3 * MINUTE_MS,
            now + 3_600_000,
            &options(None, 1000),
            &shutdown,
        )
        .await
        .unwrap();
        // The server only has klines from 2024; what matters is where the run stopped asking.
        assert_eq!(summary.caught_up, ["BTCUSDT"]);
        assert!(!summary.complete());
        let end = query_value(&server.paths()[0], "endTime").unwrap();
        assert_eq!(
            end,
            (minute_floor(now) - 1).to_string(),
            "closed klines only"
        );

        trigger.trigger();
        let stopped = backfill_klines(
            &client,
            &emitter,
            &symbols(&["BTCUSDT"]),
            T0,
            T0 + MINUTE_MS,
            &options(None, 1000),
            &shutdown,
        )
        .await
        .unwrap();
        assert!(stopped.stopped && stopped.sent == 0);
    }

    #[test]
    fn progress_counts_minutes_of_unaligned_ranges() {
        let mut progress = SymbolProgress::new(
            BackfillKind::Klines,
            T0 + 17_000,
            T0 + 180 * MINUTE_MS + 17_000,
        );
        assert_eq!(progress.next_start_ms, Some(T0 + MINUTE_MS));
        let task = Task::new("X", BackfillKind::Klines, progress.clone(), i64::MAX);
        assert_eq!(
            (
                task.done(BackfillKind::Klines),
                task.total(BackfillKind::Klines)
            ),
            (0, Some(180))
        );
        progress.next_start_ms = Some(T0 + 181 * MINUTE_MS);
        let task = Task::new("X", BackfillKind::Klines, progress, i64::MAX);
        assert_eq!(task.done(BackfillKind::Klines), 180);
        // A range into the future counts up to the current minute only.
        let future = SymbolProgress::new(BackfillKind::Klines, T0, T0 + 600 * MINUTE_MS);
        let task = Task::new(
            "X",
            BackfillKind::Klines,
            future,
            T0 + 10 * MINUTE_MS + 5_000,
        );
        assert_eq!(task.total(BackfillKind::Klines), Some(10));

        let mut trades = SymbolProgress::new(BackfillKind::Trades, T0, T0 + MINUTE_MS);
        let task = Task::new("X", BackfillKind::Trades, trades.clone(), i64::MAX);
        assert_eq!(
            (
                task.done(BackfillKind::Trades),
                task.total(BackfillKind::Trades)
            ),
            (0, None)
        );
        (
            trades.first_trade_id,
            trades.next_trade_id,
            trades.end_trade_id,
        ) = (Some(100), Some(150), Some(300));
        let task = Task::new("X", BackfillKind::Trades, trades, i64::MAX);
        assert_eq!(
            (
                task.done(BackfillKind::Trades),
                task.total(BackfillKind::Trades)
            ),
            (50, Some(200))
        );
    }

    #[test]
    fn progress_lines() {
        assert_eq!(
            progress_line(BackfillKind::Klines, 1200, Some(4800), 300.0, 24, ", server count 30 this minute"),
            "binance backfill klines: 1200/4800 bars (25.0%), 300 bars/s, ETA 12s, weight used 24, server count 30 this minute"
        );
        assert_eq!(
            progress_line(BackfillKind::Trades, 10, None, 0.0, 25, ""),
            "binance backfill trades: 10 trades (total not known yet), 0 trades/s, weight used 25"
        );
        assert!(
            progress_line(BackfillKind::Trades, 0, Some(10), 0.0, 0, "").contains("ETA unknown")
        );
    }

    #[test]
    fn the_state_file_spells_its_fields_for_people_and_tests() {
        let mut state = BackfillState::default();
        state.symbols.insert(
            "BTCUSDT".into(),
            SymbolProgress::new(BackfillKind::Klines, T0, T0 + MINUTE_MS),
        );
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["symbols"]["BTCUSDT"]["next_start_ms"], T0);
        assert_eq!(json["symbols"]["BTCUSDT"]["complete"], false);
        assert_eq!(json["symbols"]["BTCUSDT"]["from_ms"], T0);
        let back: BackfillState = serde_json::from_value(json).unwrap();
        assert_eq!(back, state);
        assert_eq!(
            state_file_name(BackfillKind::Trades),
            "backfill-binance-trades.json"
        );
    }
}
