//! Trades and bars as files (CSV or Parquet, chosen by extension) through polars: read for replay, written by
//! the simulator's file mode. Columns are the topic fields; `ts_ms` is epoch milliseconds (UTC).

use std::fs::File;
use std::path::Path;

use anyhow::bail;
use polars::prelude::*;

use crate::messages::{Bar, Trade};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Csv,
    Parquet,
}

pub fn format_of(path: &Path) -> anyhow::Result<FileFormat> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => Ok(FileFormat::Csv),
        Some("parquet" | "pq") => Ok(FileFormat::Parquet),
        _ => bail!("{}: expected a .csv or .parquet file", path.display()),
    }
}

pub fn read_frame(path: &Path) -> anyhow::Result<DataFrame> {
    let location = PlRefPath::try_from_path(path)?;
    let lazy = match format_of(path)? {
        FileFormat::Parquet => LazyFrame::scan_parquet(location, ScanArgsParquet::default())?,
        FileFormat::Csv => LazyCsvReader::new(location)
            .with_has_header(true)
            .finish()?,
    };
    lazy.collect()
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableKind {
    Trades,
    Bars,
}

/// Bars have an `open` column; trades a `price` column.
pub fn detect_kind(frame: &DataFrame) -> anyhow::Result<TableKind> {
    let has = |name: &str| frame.column(name).is_ok();
    match (has("open"), has("price")) {
        (true, _) => Ok(TableKind::Bars),
        (false, true) => Ok(TableKind::Trades),
        _ => bail!("neither a trades table (price column) nor a bars table (open column)"),
    }
}

fn required_column<'a>(frame: &'a DataFrame, name: &str) -> anyhow::Result<&'a Column> {
    frame
        .column(name)
        .map_err(|_| anyhow::anyhow!("missing column {name}"))
}

fn floats(frame: &DataFrame, name: &str) -> anyhow::Result<Vec<Option<f64>>> {
    let column = required_column(frame, name)?;
    Ok(column.cast(&DataType::Float64)?.f64()?.iter().collect())
}

fn ints(frame: &DataFrame, name: &str) -> anyhow::Result<Vec<Option<i64>>> {
    let column = required_column(frame, name)?;
    Ok(column.cast(&DataType::Int64)?.i64()?.iter().collect())
}

fn texts(frame: &DataFrame, name: &str) -> anyhow::Result<Vec<Option<String>>> {
    let column = required_column(frame, name)?;
    Ok(column
        .cast(&DataType::String)?
        .str()?
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

fn optional<T>(
    frame: &DataFrame,
    name: &str,
    read: fn(&DataFrame, &str) -> anyhow::Result<Vec<Option<T>>>,
) -> anyhow::Result<Option<Vec<Option<T>>>> {
    if frame.column(name).is_ok() {
        read(frame, name).map(Some)
    } else {
        Ok(None)
    }
}

/// A row that cannot become a message (null where a value is required), with a JSON rendering for the dead
/// letter.
pub type RowError = (String, String);

/// Column vectors of a trades table; rows are built on demand so a large replay holds one copy of the data.
pub struct TradeRows {
    source: Option<Vec<Option<String>>>,
    symbol: Vec<Option<String>>,
    ts_ms: Vec<Option<i64>>,
    price: Vec<Option<f64>>,
    size: Vec<Option<f64>>,
    trade_id: Option<Vec<Option<String>>>,
}

impl TradeRows {
    pub fn from_frame(frame: &DataFrame) -> anyhow::Result<Self> {
        Ok(Self {
            source: optional(frame, "source", texts)?,
            symbol: texts(frame, "symbol")?,
            ts_ms: ints(frame, "ts_ms")?,
            price: floats(frame, "price")?,
            size: floats(frame, "size")?,
            trade_id: optional(frame, "trade_id", texts)?,
        })
    }

    pub fn len(&self) -> usize {
        self.symbol.len()
    }

    pub fn is_empty(&self) -> bool {
        self.symbol.is_empty()
    }

    pub fn ts_ms(&self, row: usize) -> Option<i64> {
        self.ts_ms[row]
    }

    pub fn row(&self, row: usize, default_source: &str) -> Result<Trade, RowError> {
        let source = self
            .source
            .as_ref()
            .and_then(|c| c[row].clone())
            .unwrap_or_else(|| default_source.to_string());
        let trade_id = self.trade_id.as_ref().and_then(|c| c[row].clone());
        match (&self.symbol[row], self.ts_ms[row], self.price[row], self.size[row]) {
            (Some(symbol), Some(ts_ms), Some(price), Some(size)) => {
                Ok(Trade { trade_id, ..Trade::new(&source, symbol, ts_ms, price, size) })
            }
            (symbol, ts_ms, price, size) => Err((
                format!("row {row}: null in a required column"),
                serde_json::json!({"row": row, "symbol": symbol, "ts_ms": ts_ms, "price": price, "size": size}).to_string(),
            )),
        }
    }
}

pub struct BarRows {
    source: Option<Vec<Option<String>>>,
    symbol: Vec<Option<String>>,
    ts_ms: Vec<Option<i64>>,
    open: Vec<Option<f64>>,
    high: Vec<Option<f64>>,
    low: Vec<Option<f64>>,
    close: Vec<Option<f64>>,
    volume: Vec<Option<f64>>,
    trades: Option<Vec<Option<i64>>>,
    vwap: Option<Vec<Option<f64>>>,
}

impl BarRows {
    pub fn from_frame(frame: &DataFrame) -> anyhow::Result<Self> {
        Ok(Self {
            source: optional(frame, "source", texts)?,
            symbol: texts(frame, "symbol")?,
            ts_ms: ints(frame, "ts_ms")?,
            open: floats(frame, "open")?,
            high: floats(frame, "high")?,
            low: floats(frame, "low")?,
            close: floats(frame, "close")?,
            volume: floats(frame, "volume")?,
            trades: optional(frame, "trades", ints)?,
            vwap: optional(frame, "vwap", floats)?,
        })
    }

    pub fn len(&self) -> usize {
        self.symbol.len()
    }

    pub fn is_empty(&self) -> bool {
        self.symbol.is_empty()
    }

    pub fn ts_ms(&self, row: usize) -> Option<i64> {
        self.ts_ms[row]
    }

    pub fn row(&self, row: usize, default_source: &str) -> Result<Bar, RowError> {
        let source = self
            .source
            .as_ref()
            .and_then(|c| c[row].clone())
            .unwrap_or_else(|| default_source.to_string());
        let fields = (
            &self.symbol[row],
            self.ts_ms[row],
            self.open[row],
            self.high[row],
            self.low[row],
            self.close[row],
            self.volume[row],
        );
        match fields {
            (Some(symbol), Some(ts_ms), Some(open), Some(high), Some(low), Some(close), Some(volume)) => Ok(Bar {
                trades: self.trades.as_ref().and_then(|c| c[row]),
                vwap: self.vwap.as_ref().and_then(|c| c[row]),
                ..Bar::ohlcv(&source, symbol, ts_ms, open, high, low, close, volume)
            }),
            (symbol, ts_ms, open, high, low, close, volume) => Err((
                format!("row {row}: null in a required column"),
                serde_json::json!({"row": row, "symbol": symbol, "ts_ms": ts_ms, "open": open, "high": high,
                                   "low": low, "close": close, "volume": volume})
                .to_string(),
            )),
        }
    }
}

pub fn trades_frame(trades: &[Trade]) -> anyhow::Result<DataFrame> {
    let columns = vec![
        Column::new(
            "source".into(),
            trades.iter().map(|t| t.source.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "symbol".into(),
            trades.iter().map(|t| t.symbol.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "ts_ms".into(),
            trades.iter().map(|t| t.ts_ms).collect::<Vec<_>>(),
        ),
        Column::new(
            "price".into(),
            trades.iter().map(|t| t.price).collect::<Vec<_>>(),
        ),
        Column::new(
            "size".into(),
            trades.iter().map(|t| t.size).collect::<Vec<_>>(),
        ),
        Column::new(
            "trade_id".into(),
            trades
                .iter()
                .map(|t| t.trade_id.as_deref())
                .collect::<Vec<_>>(),
        ),
    ];
    Ok(DataFrame::new(trades.len(), columns)?)
}

pub fn bars_frame(bars: &[Bar]) -> anyhow::Result<DataFrame> {
    let columns = vec![
        Column::new(
            "source".into(),
            bars.iter().map(|b| b.source.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "symbol".into(),
            bars.iter().map(|b| b.symbol.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "ts_ms".into(),
            bars.iter().map(|b| b.ts_ms).collect::<Vec<_>>(),
        ),
        Column::new(
            "open".into(),
            bars.iter().map(|b| b.open).collect::<Vec<_>>(),
        ),
        Column::new(
            "high".into(),
            bars.iter().map(|b| b.high).collect::<Vec<_>>(),
        ),
        Column::new("low".into(), bars.iter().map(|b| b.low).collect::<Vec<_>>()),
        Column::new(
            "close".into(),
            bars.iter().map(|b| b.close).collect::<Vec<_>>(),
        ),
        Column::new(
            "volume".into(),
            bars.iter().map(|b| b.volume).collect::<Vec<_>>(),
        ),
        Column::new(
            "trades".into(),
            bars.iter().map(|b| b.trades).collect::<Vec<_>>(),
        ),
        Column::new(
            "vwap".into(),
            bars.iter().map(|b| b.vwap).collect::<Vec<_>>(),
        ),
    ];
    Ok(DataFrame::new(bars.len(), columns)?)
}

pub fn write_frame(frame: &mut DataFrame, path: &Path) -> anyhow::Result<()> {
    let file =
        File::create(path).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    match format_of(path)? {
        FileFormat::Parquet => {
            ParquetWriter::new(file).finish(frame)?;
        }
        FileFormat::Csv => CsvWriter::new(file).include_header(true).finish(frame)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trade(i: i64) -> Trade {
        Trade {
            trade_id: (i % 3 != 0).then(|| format!("id-{i}")),
            ..Trade::new(
                "synthetic",
                &format!("S{}", i % 2),
                1_700_000_000_000 + i,
                10.0 + i as f64,
                0.5,
            )
        }
    }

    #[test]
    fn trades_round_trip_through_parquet_and_csv() {
        let dir = tempfile::tempdir().unwrap();
        let trades: Vec<Trade> = (0..50).map(trade).collect();
        for name in ["t.parquet", "t.csv"] {
            let path = dir.path().join(name);
            write_frame(&mut trades_frame(&trades).unwrap(), &path).unwrap();
            let frame = read_frame(&path).unwrap();
            assert_eq!(detect_kind(&frame).unwrap(), TableKind::Trades);
            let rows = TradeRows::from_frame(&frame).unwrap();
            let back: Vec<Trade> = (0..rows.len())
                .map(|i| rows.row(i, "replay").unwrap())
                .collect();
            assert_eq!(back, trades, "{name}");
        }
    }

    #[test]
    fn bars_round_trip_and_missing_optional_columns() {
        let dir = tempfile::tempdir().unwrap();
        let bar = Bar {
            trades: Some(4),
            ..Bar::ohlcv("s", "A", 60_000, 1.0, 2.0, 0.5, 1.5, 3.0)
        };
        let path = dir.path().join("b.parquet");
        write_frame(&mut bars_frame(std::slice::from_ref(&bar)).unwrap(), &path).unwrap();
        let frame = read_frame(&path).unwrap();
        assert_eq!(detect_kind(&frame).unwrap(), TableKind::Bars);
        assert_eq!(
            BarRows::from_frame(&frame).unwrap().row(0, "x").unwrap(),
            bar
        );

        let csv = dir.path().join("plain.csv");
        std::fs::write(
            &csv,
            "symbol,ts_ms,price,size\nAAPL,1700000000000,189.5,10\nAAPL,,189.6,1\n",
        )
        .unwrap();
        let rows = TradeRows::from_frame(&read_frame(&csv).unwrap()).unwrap();
        let first = rows.row(0, "replay").unwrap();
        assert_eq!(
            (first.source.as_str(), first.trade_id.as_deref()),
            ("replay", None)
        );
        assert!(rows.row(1, "replay").unwrap_err().0.contains("null"));
    }

    #[test]
    fn unknown_extension_is_refused() {
        assert!(format_of(Path::new("x.json")).is_err());
    }
}
