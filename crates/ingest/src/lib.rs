//! SparkTrends ingest: market data from exchange feeds, file replays and a synthetic market into the Kafka
//! topics of DESIGN §2, validated, keyed by symbol, bad input dead-lettered.

pub mod app;
pub mod cli;
pub mod emitter;
pub mod http;
pub mod messages;
pub mod producer;
pub mod shutdown;
pub mod sim;
pub mod sink;
pub mod sources;
pub mod state;
pub mod stats;
pub mod tables;
pub mod topics;
pub mod validation;
pub mod ws;
