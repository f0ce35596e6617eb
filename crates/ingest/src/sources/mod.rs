//! One module per source; each maps its provider's format to the canonical messages and hands them to the
//! [`crate::emitter::Emitter`].

pub mod binance;
pub mod finnhub;
pub mod replay;
pub mod synthetic;
pub mod twelvedata;
