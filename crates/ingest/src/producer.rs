//! The Kafka side: an idempotent, fully acknowledged, compressed, batching producer, a start-up check that the
//! broker answers and the topics exist, and a bounded flush at shutdown.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context as _};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;
use tracing::{error, info, warn};

use crate::shutdown::ShutdownTrigger;
use crate::sink::Sink;
use crate::stats::Stats;

#[derive(Debug, Clone)]
pub struct ProducerSettings {
    pub bootstrap: String,
    pub linger_ms: u32,
    pub batch_bytes: u32,
    pub compression: String,
    pub connect_timeout: Duration,
    /// Extra librdkafka properties (`key=value`), applied last.
    pub overrides: Vec<(String, String)>,
}

/// Counts broker acknowledgements and watches for a fatal producer error; librdkafka calls it from the producer's
/// polling thread.
pub struct DeliveryCounter {
    stats: Arc<Stats>,
    /// The first fatal error: after one, an idempotent producer can deliver nothing more.
    fatal: Arc<OnceLock<String>>,
    /// Stops the source, so the process exits non-zero and its supervisor starts a fresh producer.
    on_fatal: ShutdownTrigger,
}

impl DeliveryCounter {
    pub fn new(stats: Arc<Stats>, on_fatal: ShutdownTrigger) -> Self {
        Self {
            stats,
            fatal: Arc::default(),
            on_fatal,
        }
    }
}

impl ClientContext for DeliveryCounter {
    fn error(&self, err: KafkaError, reason: &str) {
        if err.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            if self.fatal.set(reason.to_string()).is_ok() {
                error!("fatal Kafka producer error: {reason}; stopping so that a restart starts a fresh producer");
            }
            self.on_fatal.trigger();
        } else {
            // Transient (a broker restarting, a connection reset): librdkafka retries on its own.
            warn!("Kafka: {err}: {reason}");
        }
    }
}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((err, _)) => {
                let failures = self.stats.delivery_failures.fetch_add(1, Ordering::Relaxed);
                // The first failures say what is wrong; the rate line counts the rest.
                if failures < 10 {
                    error!("delivery failed: {err}");
                }
            }
        }
    }
}

pub struct KafkaSink {
    producer: ThreadedProducer<DeliveryCounter>,
}

impl KafkaSink {
    /// Creates the producer and checks, within the connect timeout, that the broker answers and every topic in
    /// `required_topics` exists (a missing topic would otherwise be auto-created with the wrong settings).
    pub fn connect(
        settings: &ProducerSettings,
        required_topics: &[&str],
        context: DeliveryCounter,
    ) -> anyhow::Result<Self> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &settings.bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &settings.compression)
            .set("linger.ms", settings.linger_ms.to_string())
            .set("batch.size", settings.batch_bytes.to_string())
            // A deep local queue lets replay run ahead of the network without blocking on every batch.
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .set("client.id", "sparktrends-ingest");
        for (key, value) in &settings.overrides {
            config.set(key, value);
        }
        let producer: ThreadedProducer<DeliveryCounter> = config
            .create_with_context(context)
            .context("cannot create the Kafka producer")?;
        // A topic created a moment ago may still report an error (no partition leader yet): ask again until
        // the connect timeout before calling it missing.
        let deadline = std::time::Instant::now() + settings.connect_timeout;
        let (metadata, missing) = loop {
            let metadata = producer
                .client()
                .fetch_metadata(None, settings.connect_timeout)
                .map_err(|err| {
                    anyhow::anyhow!(
                        "Kafka at {} is unreachable (no metadata within {:?}): {err}",
                        settings.bootstrap,
                        settings.connect_timeout
                    )
                })?;
            let missing: Vec<&str> = required_topics
                .iter()
                .copied()
                .filter(|name| {
                    !metadata
                        .topics()
                        .iter()
                        .any(|t| t.name() == *name && t.error().is_none())
                })
                .collect();
            if missing.is_empty() || std::time::Instant::now() >= deadline {
                break (metadata, missing);
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if !missing.is_empty() {
            bail!(
                "Kafka at {} has no topic {} (create it first)",
                settings.bootstrap,
                missing.join(", ")
            );
        }
        info!(
            "connected to Kafka at {} ({} broker(s)); topics: {}",
            settings.bootstrap,
            metadata.brokers().len(),
            required_topics.join(", ")
        );
        Ok(Self { producer })
    }

    /// The fatal error librdkafka reported, if any: the run must end non-zero.
    pub fn fatal_error(&self) -> Option<String> {
        self.producer.context().fatal.get().cloned()
    }

    /// Waits for every queued message to be acknowledged; returns how many were still pending on timeout.
    pub fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        self.producer.flush(timeout).map_err(|err| {
            anyhow::anyhow!(
                "flush incomplete after {timeout:?}: {err}; {} message(s) undelivered",
                self.producer.in_flight_count()
            )
        })
    }
}

impl KafkaSink {
    /// Queues one record; back-pressure (a full local queue) waits for batches to leave rather than drop.
    fn queue(&self, topic: &str, mut record: BaseRecord<'_, str, [u8]>) -> anyhow::Result<()> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((err, _)) => {
                    return Err(err).with_context(|| format!("cannot queue a message for {topic}"))
                }
            }
        }
    }
}

impl Sink for KafkaSink {
    fn send(&self, topic: &str, key: &str, payload: &[u8]) -> anyhow::Result<()> {
        self.queue(topic, BaseRecord::to(topic).key(key).payload(payload))
    }

    fn send_with_header(
        &self,
        topic: &str,
        key: &str,
        payload: &[u8],
        (name, value): (&str, &str),
    ) -> anyhow::Result<()> {
        let headers = OwnedHeaders::new().insert(Header {
            key: name,
            value: Some(value),
        });
        let record = BaseRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        self.queue(topic, record)
    }

    fn flush(&self, timeout: Duration) -> anyhow::Result<()> {
        KafkaSink::flush(self, timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown;

    #[test]
    fn a_fatal_error_stops_the_run_and_a_transient_one_does_not() {
        let (trigger, shutdown) = shutdown::channel();
        let context = DeliveryCounter::new(Arc::new(Stats::default()), trigger);
        context.error(
            KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert!(!shutdown.is_triggered());
        assert!(context.fatal.get().is_none());
        context.error(
            KafkaError::Global(RDKafkaErrorCode::Fatal),
            "Producer epoch fenced",
        );
        assert!(shutdown.is_triggered());
        assert_eq!(
            context.fatal.get().map(String::as_str),
            Some("Producer epoch fenced")
        );
        // Only the first reason is kept.
        context.error(KafkaError::Global(RDKafkaErrorCode::Fatal), "later");
        assert_eq!(
            context.fatal.get().map(String::as_str),
            Some("Producer epoch fenced")
        );
    }
}
