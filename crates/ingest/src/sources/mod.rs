//! One module per source; each maps its provider's format to the canonical messages and hands them to the
//! [`crate::emitter::Emitter`].

pub mod binance;
pub mod binance_backfill;
pub mod binance_gaps;
pub mod binance_rest;
pub mod finnhub;
pub mod replay;
pub mod synthetic;
pub mod twelvedata;
