"""What every job shares: the session, connection settings from the environment, JDBC options."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Producer
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery, StreamingQueryListener

from spark_jobs.database import env


def spark_session(app_name: str) -> SparkSession:
    """The master comes from spark-submit (--master spark://...), never from code: jobs never pick local[*]."""
    spark = SparkSession.builder.appName(app_name).getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "WARN"))
    return spark


def kafka_bootstrap() -> str:
    return env("KAFKA_BOOTSTRAP", "127.0.0.1:9092")


_producer: Producer | None = None


def produce(topic: str, records: list[tuple[str, str]], headers: dict[str, str] | None = None) -> None:
    """Sends (key, value) records from the driver and waits until the broker has them all; raises otherwise, so
    the micro-batch fails and is replayed (at-least-once, like Spark's Kafka sink; consumers upsert)."""
    global _producer
    if not records:
        return
    if _producer is None:
        _producer = Producer(
            {
                "bootstrap.servers": kafka_bootstrap(),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                # The JVM client's key hashing, so a symbol lands where Spark's Kafka sink would put it.
                "partitioner": "murmur2_random",
            }
        )
    failures: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    for key, value in records:
        while True:
            try:
                _producer.produce(topic, key=key, value=value, headers=headers, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                _producer.poll(0.1)
    unsent = _producer.flush(60)
    if failures or unsent:
        raise RuntimeError(f"kafka: {len(failures)} records failed ({failures[:3]}), {unsent} unsent to {topic}")


def jdbc_url() -> str:
    host, port = env("POSTGRES_HOST", "127.0.0.1"), env("POSTGRES_PORT", "5432")
    return f"jdbc:postgresql://{host}:{port}/{env('POSTGRES_DB', 'sparktrends')}"


def jdbc_options() -> dict[str, str]:
    """JDBC options for reads and writes that run on the executors. The password is not among them when
    PGPASSFILE names a file: the executors' JDBC driver reads it there (scripts/submit.sh hands them the path),
    so it travels in no task closure or plan. Without one, it goes as an option (Spark redacts it in plans and
    UIs), never in the URL."""
    options = {"url": jdbc_url(), "user": env("POSTGRES_USER", "sparktrends"), "driver": "org.postgresql.Driver"}
    passfile = os.environ.get("PGPASSFILE")
    if not (passfile and os.path.isfile(passfile)):
        options["password"] = env("POSTGRES_PASSWORD")
    return options


def checkpoint_dir(root: str | None, query: str) -> str:
    """Checkpoints persist across restarts (a volume in compose, .stack/checkpoints locally)."""
    base = root or env("SPARKTRENDS_CHECKPOINTS", os.path.join(os.getcwd(), ".stack", "checkpoints"))
    return os.path.join(base, query)


_INTERVAL = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*$")
_UNIT_MS = {
    **dict.fromkeys(["ms", "millisecond", "milliseconds"], 1),
    **dict.fromkeys(["s", "sec", "secs", "second", "seconds"], 1_000),
    **dict.fromkeys(["m", "min", "mins", "minute", "minutes"], 60_000),
}


def interval_ms(text: str) -> int:
    """A trigger interval such as "5 seconds", "500 ms" or "1 minute", in milliseconds."""
    match = _INTERVAL.match(text.lower())
    if not match or match[2] not in _UNIT_MS:
        raise SystemExit(f"not an interval: {text!r} (say e.g. '5 seconds', '500 ms', '1 minute')")
    return round(float(match[1]) * _UNIT_MS[match[2]])


def read_kafka_stream(
    spark: SparkSession,
    topic: str,
    starting_offsets: str = "earliest",
    max_offsets: int | None = None,
    pace_ms: int | None = None,
    include_headers: bool = False,
    starting_timestamp_ms: int | None = None,
) -> DataFrame:
    """The topic as a stream. `pace_ms` makes the source, not the trigger, space the micro-batches that read
    new data (see `paced_trigger`): a batch starts once the previous one is `pace_ms` old, or at once when a
    backlog of `max_offsets` (default 100,000) offsets waits. `starting_timestamp_ms`, when given, replaces
    `starting_offsets` for a query without a checkpoint: each partition from its first record at or after it."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", kafka_bootstrap())
        .option("subscribe", topic)
        .option("startingOffsets", starting_offsets)
        # A deleted or compacted offset range is reported in the log, not fatal to a long-running stream.
        .option("failOnDataLoss", "false")
        # Executors only read offset ranges that exist, yet with the broker's default long poll (500 ms) each
        # partition's read waited on it: reading 100 bars from 6 partitions took 1.9 s, with 10 ms 0.3 s.
        .option("kafka.fetch.max.wait.ms", "10")
    )
    if starting_timestamp_ms is not None:
        reader = reader.option("startingTimestamp", str(starting_timestamp_ms)).option(
            "startingOffsetsByTimestampStrategy", "latest"
        )
    if max_offsets:
        reader = reader.option("maxOffsetsPerTrigger", str(max_offsets))
    if include_headers:
        reader = reader.option("includeHeaders", "true")
    if pace_ms:
        reader = reader.option("minOffsetsPerTrigger", str(max_offsets or 100_000)).option(
            "maxTriggerDelay", f"{pace_ms}ms"
        )
    return reader.load()


def paced_trigger(spark: SparkSession) -> dict[str, str]:
    """The trigger of a query whose source is paced (read_kafka_stream's `pace_ms`), for writeStream.trigger.

    Spark emits an event-time window only in the micro-batch after the one whose watermark passes it. Under a
    processing-time trigger that batch waits a whole interval (5 s by default); under a zero trigger with the
    pacing done by the source, it runs as soon as the watermark moves, while batches of new data still come
    no more often than the interval. When there is nothing to do, the query asks the broker for the latest
    offsets every 100 ms (Spark's default is every 10 ms)."""
    spark.conf.set("spark.sql.streaming.pollingDelay", "100ms")
    return {"processingTime": "0 seconds"}


class ProgressReporter(StreamingQueryListener):
    """One line per micro-batch: rows in, rate, observed metrics and rows dropped as too late, and its row in
    PostgreSQL's stream_progress when given a `store`. Every progress and idle event also tells `watch` the query is
    alive."""

    def __init__(self, watch: StallWatch | None = None, store: Any = None) -> None:
        super().__init__()
        self.watch = watch
        self.store = store

    def _heard(self, query_id: Any) -> None:
        if self.watch is not None and (line := self.watch.heard(query_id)):
            print(line, flush=True)

    def onQueryStarted(self, event: Any) -> None:
        print(f"[stream] {event.name} started (id {event.id})", flush=True)

    def onQueryProgress(self, event: Any) -> None:
        p = event.progress
        self._heard(p.id)
        observed = {k: v.asDict() for k, v in (p.observedMetrics or {}).items()}
        late = sum(op.numRowsDroppedByWatermark for op in p.stateOperators)
        rate = p.processedRowsPerSecond or 0.0
        metrics = " ".join(f"{k}={v}" for obs in observed.values() for k, v in obs.items())
        took = p.durationMs or {}
        print(
            f"[stream] {p.name} batch={p.batchId} rows_in={p.numInputRows} rate={rate:.0f}/s "
            f"took={took.get('triggerExecution', 0) / 1000:.1f}s (write {took.get('addBatch', 0) / 1000:.1f}s) "
            f"late_dropped={late} {metrics}",
            flush=True,
        )
        if self.store is not None:
            self.store.record(p)

    def onQueryIdle(self, event: Any) -> None:
        self._heard(event.id)

    def onQueryTerminated(self, event: Any) -> None:
        status = f"failed: {event.exception}" if event.exception else "stopped"
        print(f"[stream] query {event.id} {status}", flush=True)


# A micro-batch still running after this long is reported as stalled: a lost worker leaves a batch waiting for
# executors with no limit, and a hung database write holds it. A full backlog batch here takes well under a minute.
STALL_AFTER_S = float(os.environ.get("SPARKTRENDS_STALL_AFTER_S", "300"))


class StallWatch:
    """Finds queries that have gone quiet. A running query reports every trigger to its listeners: a progress
    event after each batch, an idle event at least every 10 s when there is no data
    (spark.sql.streaming.noDataProgressEventInterval). One that reports nothing for `after_s` is inside a batch
    that does not finish. One line when a stall is found, one every `repeat_s` while it lasts (with Spark's own
    status message, which says what the batch waits for), one when it ends."""

    def __init__(
        self, after_s: float = STALL_AFTER_S, repeat_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ):
        self.after_s, self.repeat_s, self.clock = after_s, repeat_s, clock
        # By query id (an idle event carries no name): when it last reported a trigger, when its stall was
        # last reported, and its name for the log.
        self.last_heard: dict[str, float] = {}
        self.last_report: dict[str, float] = {}
        self.names: dict[str, str] = {}
        self.lock = threading.Lock()

    def heard(self, query_id: object) -> str | None:
        """Called on each progress or idle event (and at start); returns a line when it ends a stall."""
        key = str(query_id)
        with self.lock:
            now, quiet_since = self.clock(), self.last_heard.get(key)
            self.last_heard[key] = now
            if self.last_report.pop(key, None) is not None and quiet_since is not None:
                name = self.names.get(key, key)
                return f"[stream] {name} is moving again after {now - quiet_since:.0f}s without a trigger"
            return None

    def check(self, queries: Sequence[StreamingQuery]) -> list[str]:
        lines = []
        with self.lock:
            now = self.clock()
            for query in queries:
                key = str(query.id)
                name = self.names.setdefault(key, query.name or key)
                quiet = now - self.last_heard.setdefault(key, now)
                reported = self.last_report.get(key)
                if not query.isActive or quiet < self.after_s or (reported and now - reported < self.repeat_s):
                    continue
                progress = query.lastProgress
                after = f"batch {progress['batchId']}" if progress else "its start"
                lines.append(
                    f"[stream] STALLED: {name} has finished no trigger for {quiet:.0f}s since {after} "
                    f"(Spark: {query.status.get('message', '?')})"
                )
                self.last_report[key] = now
        return lines


def start_stall_watch(queries: Sequence[StreamingQuery], watch: StallWatch, every_s: float = 10.0) -> None:
    """Checks `queries` with `watch` on a daemon thread, printing what it finds."""

    def run() -> None:
        while True:
            time.sleep(every_s)
            for line in watch.check(queries):
                print(line, flush=True)

    threading.Thread(target=run, name="stall-watch", daemon=True).start()


def start_progress_reporter(spark: SparkSession, queries: list[StreamingQuery]) -> None:
    """One line per micro-batch (ProgressReporter) and a report of any batch that stalls (StallWatch)."""
    watch = StallWatch()
    for query in queries:
        watch.heard(query.id)
    from spark_jobs.progress_store import ProgressStore

    spark.streams.addListener(ProgressReporter(watch, ProgressStore(spark.sparkContext.appName)))
    start_stall_watch(queries, watch)
    names = ", ".join(q.name or "?" for q in queries)
    print(
        f"[stream] running {names}; a batch running over {STALL_AFTER_S:.0f}s is reported as stalled; "
        f"Spark UI {spark.sparkContext.uiWebUrl}",
        flush=True,
    )
