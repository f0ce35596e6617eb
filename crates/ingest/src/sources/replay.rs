//! Replays CSV/Parquet files of trades or bars: at the original pacing scaled by `--speed`, or as fast as the
//! producer takes them (`--speed 0`), optionally looping. Historical data on purpose: no time-window check.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tracing::info;

use crate::emitter::Emitter;
use crate::messages::{RejectCode, MINUTE_MS};
use crate::shutdown::Shutdown;
use crate::tables::{self, BarRows, TableKind, TradeRows};
use crate::validation::TimeCheck;

pub struct ReplaySettings {
    pub files: Vec<PathBuf>,
    /// 1 = original pacing, 10 = ten times faster, 0 = no pacing at all.
    pub speed: f64,
    pub looped: bool,
    /// `source` for rows whose file has no source column.
    pub source: String,
    pub kind: Option<TableKind>,
}

enum Table {
    Trades(TradeRows),
    Bars(BarRows),
}

impl Table {
    fn len(&self) -> usize {
        match self {
            Table::Trades(rows) => rows.len(),
            Table::Bars(rows) => rows.len(),
        }
    }

    fn ts_ms(&self, row: usize) -> Option<i64> {
        match self {
            Table::Trades(rows) => rows.ts_ms(row),
            Table::Bars(rows) => rows.ts_ms(row),
        }
    }
}

fn load(settings: &ReplaySettings) -> anyhow::Result<Vec<Table>> {
    settings
        .files
        .iter()
        .map(|path| {
            let frame = tables::read_frame(path)?;
            let kind = match settings.kind {
                Some(kind) => kind,
                None => tables::detect_kind(&frame).with_context(|| path.display().to_string())?,
            };
            let table = match kind {
                TableKind::Trades => Table::Trades(TradeRows::from_frame(&frame)?),
                TableKind::Bars => Table::Bars(BarRows::from_frame(&frame)?),
            };
            info!(
                "replay: loaded {} {:?} row(s) from {}",
                table.len(),
                kind,
                path.display()
            );
            Ok(table)
        })
        .collect()
}

/// Blocking: runs on its own thread so the pacing sleeps and the hot loop never stall the async runtime.
pub fn run(
    settings: ReplaySettings,
    emitter: Arc<Emitter>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let tables = load(&settings)?;
    let timestamps = || {
        tables
            .iter()
            .flat_map(|t| (0..t.len()).filter_map(|r| t.ts_ms(r)))
    };
    let (Some(first_ts), Some(last_ts)) = (timestamps().min(), timestamps().max()) else {
        info!("replay: nothing to replay");
        return Ok(());
    };
    // Each loop moves time forward by the data's span, rounded up to whole minutes so bars stay aligned.
    let span = ((last_ts - first_ts) / MINUTE_MS + 1) * MINUTE_MS;
    let rows: usize = tables.iter().map(Table::len).sum();
    info!(
        "replay: sending {rows} row(s) at speed {}{}",
        settings.speed,
        if settings.looped { ", looping" } else { "" }
    );
    let started = Instant::now();
    let mut pass: i64 = 0;
    let mut sent: u64 = 0;
    loop {
        let shift = pass * span;
        for table in &tables {
            for row in 0..table.len() {
                if sent.is_multiple_of(4096) && shutdown.is_triggered() {
                    return Ok(());
                }
                if let Some(ts) = table.ts_ms(row) {
                    if !pace(
                        settings.speed,
                        started,
                        (ts + shift - first_ts) as f64,
                        &shutdown,
                    ) {
                        return Ok(());
                    }
                }
                emit_row(table, row, shift, pass, &settings.source, &emitter);
                sent += 1;
            }
        }
        info!(
            "replay: pass {} done, {sent} row(s) so far in {:.1?}",
            pass + 1,
            started.elapsed()
        );
        if !settings.looped {
            return Ok(());
        }
        pass += 1;
    }
}

fn emit_row(table: &Table, row: usize, shift: i64, pass: i64, source: &str, emitter: &Emitter) {
    match table {
        Table::Trades(rows) => match rows.row(row, source) {
            Ok(mut trade) => {
                if pass > 0 {
                    trade.ts_ms += shift;
                    // A repeated trade id would look like a duplicate delivery downstream.
                    trade.trade_id = trade.trade_id.map(|id| format!("{id}#{pass}"));
                }
                emitter.trade(&trade, None, TimeCheck::Exempt);
            }
            Err((reason, raw)) => {
                emitter.dead_letter(source, RejectCode::MissingField, &reason, &raw)
            }
        },
        Table::Bars(rows) => match rows.row(row, source) {
            Ok(mut bar) => {
                bar.ts_ms += shift;
                emitter.bar(&bar, None, TimeCheck::Exempt);
            }
            Err((reason, raw)) => {
                emitter.dead_letter(source, RejectCode::MissingField, &reason, &raw)
            }
        },
    }
}

/// Sleep until `offset_ms` of data time has passed at `speed`; false on shutdown.
pub fn pace(speed: f64, started: Instant, offset_ms: f64, shutdown: &Shutdown) -> bool {
    if speed <= 0.0 {
        return true;
    }
    let target = started + Duration::from_secs_f64((offset_ms / speed / 1000.0).max(0.0));
    loop {
        let now = Instant::now();
        if now >= target {
            return true;
        }
        // Short naps so a signal is noticed within 100 ms even at slow speeds.
        std::thread::sleep((target - now).min(Duration::from_millis(100)));
        if shutdown.is_triggered() {
            return false;
        }
    }
}
