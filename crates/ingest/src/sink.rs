//! Where accepted and refused messages go. Kafka in production; an in-memory sink lets the sources' mapping be
//! unit-tested without a broker.

use std::sync::Mutex;

pub trait Sink: Send + Sync {
    /// Queue one record; `key` is the symbol so one partition holds a symbol's messages in order.
    fn send(&self, topic: &str, key: &str, payload: &[u8]) -> anyhow::Result<()>;
    /// `send` with one Kafka header (contract: kafka_headers). A sink without headers keeps the record only.
    fn send_with_header(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        header: (&str, &str),
    ) -> anyhow::Result<()> {
        let _ = header;
        self.send(topic, key, payload)
    }
    /// Blocks until every queued record is acknowledged (or `timeout` passes: an error). A source saves a
    /// cursor only after this, so the cursor never runs ahead of what Kafka holds.
    fn flush(&self, timeout: std::time::Duration) -> anyhow::Result<()> {
        let _ = timeout;
        Ok(())
    }
}

/// A record as a sink received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub topic: String,
    pub key: String,
    pub payload: serde_json::Value,
    /// The Kafka header it was sent with, if any.
    pub header: Option<(String, String)>,
}

#[derive(Default)]
pub struct MemorySink {
    records: Mutex<Vec<Record>>,
}

impl MemorySink {
    pub fn records(&self) -> Vec<Record> {
        self.records.lock().expect("memory sink lock").clone()
    }

    pub fn on_topic(&self, topic: &str) -> Vec<Record> {
        self.records()
            .into_iter()
            .filter(|r| r.topic == topic)
            .collect()
    }
}

impl MemorySink {
    fn keep(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        header: Option<(&str, &str)>,
    ) -> anyhow::Result<()> {
        let payload = serde_json::from_slice(payload)?;
        self.records.lock().expect("memory sink lock").push(Record {
            topic: topic.to_string(),
            key: key.to_string(),
            payload,
            header: header.map(|(name, value)| (name.to_string(), value.to_string())),
        });
        Ok(())
    }
}

impl Sink for MemorySink {
    fn send(&self, topic: &str, key: &str, payload: &[u8]) -> anyhow::Result<()> {
        self.keep(topic, key, payload, None)
    }

    fn send_with_header(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        header: (&str, &str),
    ) -> anyhow::Result<()> {
        self.keep(topic, key, payload, Some(header))
    }
}
