//! Runs the simulator ([`crate::sim`]) as a source: into Kafka in real time, accelerated or as fast as
//! possible (minutes before the launch time are a backfill and are sent at once), or into files with no
//! Kafka at all. Labels of the injected anomalies go to a JSON-lines file either way.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tracing::info;

use crate::emitter::Emitter;
use crate::messages::{Bar, Trade, MINUTE_MS};
use crate::shutdown::Shutdown;
use crate::sim::{Label, Market, Minute, SimConfig};
use crate::sources::replay::pace;
use crate::tables;
use crate::validation::TimeCheck;

pub struct SyntheticSettings {
    pub sim: SimConfig,
    pub speed: f64,
    pub minutes: Option<u64>,
    pub emit_trades: bool,
    pub emit_bars: bool,
    pub labels_out: Option<PathBuf>,
    /// Wall-clock time at launch: simulated time before it is backfill.
    pub launched_ms: i64,
}

struct LabelWriter(Option<BufWriter<File>>);

impl LabelWriter {
    fn create(path: Option<&Path>) -> anyhow::Result<Self> {
        let file = path
            .map(|p| File::create(p).with_context(|| format!("cannot create {}", p.display())))
            .transpose()?;
        Ok(Self(file.map(BufWriter::new)))
    }

    fn write(&mut self, labels: &[Label]) -> anyhow::Result<()> {
        if let Some(out) = &mut self.0 {
            for label in labels {
                serde_json::to_writer(&mut *out, label)?;
                out.write_all(b"\n")?;
            }
            // Flushed per minute: a reader of a live run sees labels as soon as their minute starts.
            out.flush()?;
        }
        Ok(())
    }
}

/// Blocking, like replay: pacing sleeps on its own thread.
pub fn run_to_kafka(
    settings: SyntheticSettings,
    emitter: Arc<Emitter>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut market = Market::new(settings.sim.clone());
    let mut labels = LabelWriter::create(settings.labels_out.as_deref())?;
    let launched = Instant::now();
    let backfill_end = settings.launched_ms;
    // Offset of a simulated time from the launch, in data milliseconds; backfill has none.
    let offset = |ts: i64| (ts - backfill_end).max(0) as f64;
    let time_check = |ts: i64| {
        if settings.speed == 1.0 && ts >= backfill_end {
            TimeCheck::Live
        } else {
            TimeCheck::Exempt
        }
    };
    let mut minutes_done = 0u64;
    let mut live = false;
    while settings.minutes.is_none_or(|limit| minutes_done < limit) {
        let minute = market.next_minute();
        if !live && settings.speed > 0.0 && minute.ts_ms + MINUTE_MS > backfill_end {
            live = true;
            info!(
                "synthetic: {minutes_done} backfill minute(s) sent, continuing at speed {}",
                settings.speed
            );
        }
        labels.write(&minute.labels)?;
        if settings.emit_trades {
            for trade in &minute.trades {
                if !pace(settings.speed, launched, offset(trade.ts_ms), &shutdown) {
                    return Ok(());
                }
                emitter.trade(trade, None, time_check(trade.ts_ms));
            }
        }
        if settings.emit_bars {
            // A bar exists once its minute is over.
            if !pace(
                settings.speed,
                launched,
                offset(minute.ts_ms + MINUTE_MS),
                &shutdown,
            ) {
                return Ok(());
            }
            for bar in &minute.bars {
                emitter.bar(bar, None, time_check(bar.ts_ms));
            }
        }
        if shutdown.is_triggered() {
            return Ok(());
        }
        minutes_done += 1;
    }
    info!("synthetic: {minutes_done} minute(s) generated");
    Ok(())
}

pub struct FileOutputs {
    pub trades_out: Option<PathBuf>,
    pub bars_out: Option<PathBuf>,
    pub labels_out: Option<PathBuf>,
}

/// Offline mode: `minutes` of market into files, as fast as possible, no Kafka.
pub fn run_to_files(sim: SimConfig, minutes: u64, outputs: &FileOutputs) -> anyhow::Result<()> {
    let mut market = Market::new(sim);
    let mut labels = LabelWriter::create(outputs.labels_out.as_deref())?;
    let mut trades: Vec<Trade> = Vec::new();
    let mut bars: Vec<Bar> = Vec::new();
    let mut label_count = 0;
    for _ in 0..minutes {
        let Minute {
            trades: t,
            bars: b,
            labels: l,
            ..
        } = market.next_minute();
        labels.write(&l)?;
        label_count += l.len();
        if outputs.trades_out.is_some() {
            trades.extend(t);
        }
        if outputs.bars_out.is_some() {
            bars.extend(b);
        }
    }
    if let Some(path) = &outputs.trades_out {
        tables::write_frame(&mut tables::trades_frame(&trades)?, path)?;
        info!(
            "synthetic: wrote {} trade(s) to {}",
            trades.len(),
            path.display()
        );
    }
    if let Some(path) = &outputs.bars_out {
        tables::write_frame(&mut tables::bars_frame(&bars)?, path)?;
        info!(
            "synthetic: wrote {} bar(s) to {}",
            bars.len(),
            path.display()
        );
    }
    info!("synthetic: {minutes} minute(s), {label_count} labelled anomal(ies)");
    Ok(())
}
