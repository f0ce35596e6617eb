"""`pipeline` section: trades -> Kafka -> bars job -> metrics job -> PostgreSQL, end to end on the local stack.

Both jobs run as shipped (spark-submitted to the standalone master, Kafka connector, Rust UDFs, JDBC + merge),
on fresh topics and a fresh database, and are idle before any trade is sent. Three measurements:

- throughput (backlog drain): synthetic trades (default 500 symbols x 40 minutes, ~3.9M trades) are
  replayed into the trades topic as fast as the producer goes, then one trade far enough ahead to close every
  bar. trades/s = trades / (first trade sent -> last bar's metrics row visible in PostgreSQL), after a small
  warm-up market has gone through. What limits it is Spark's processing, not the producer (~400k msg/s).
  Run once per ingest --trade-batch-max in BENCH_PIPELINE_TRADE_BATCHES (default "200,1"): ingest's default (the
  contract's trade.batch producer_trades), a symbol's trades in trade batches of up to 200 per Kafka message,
  against one message per trade.
- backlog: the same trades already on the topic when the jobs start (a restart after a stop): Spark's rate without
  the producer beside it, in micro-batches as large as the bars job's bound, timed from spark-submit.
- workers: the same drain with a second Spark worker on this machine registered with the master (as compose's
  `--scale spark-worker=2` does): the jobs' executors spread over both (their cores in use are sampled).
- latency: a live synthetic market at wall-clock pace. A bar closes when event time passes its end plus the
  watermark (with live trades, event time is wall time); its latency runs from that moment to the first poll
  (every 100 ms) that sees its metrics row committed. It includes the waits for both jobs' next triggers.
  Measured once per trigger interval in BENCH_PIPELINE_LATENCY_TRIGGERS_S (default "5,1").

    python bench/run.py pipeline
    BENCH_PIPELINE_SYMBOLS=100 BENCH_PIPELINE_MINUTES=10 python bench/run.py pipeline     # a quicker look
    BENCH_PIPELINE_PARTS=latency BENCH_PIPELINE_LATENCY_TRIGGERS_S=1 python bench/run.py pipeline

Each job's driver output (one progress line per micro-batch, with its timings) is kept in .bench/logs/.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

from cpu_sampler import CpuSampler  # noqa: E402

import cargo_bin  # noqa: E402
import migrate  # noqa: E402
import stack  # noqa: E402
from services import ProcessService  # noqa: E402
from spark_jobs.bars_job import DEFAULT_MAX_TRADES_PER_TRIGGER  # noqa: E402
from sparktrends import contract  # noqa: E402
from tests.stack.streaming import StreamingJob  # noqa: E402

SYMBOLS = int(os.environ.get("BENCH_PIPELINE_SYMBOLS", 500))
MINUTES = int(os.environ.get("BENCH_PIPELINE_MINUTES", 40))
TRADES_PER_MINUTE = float(os.environ.get("BENCH_PIPELINE_TRADES_PER_MINUTE", 100))
TRIGGER_S = int(os.environ.get("BENCH_PIPELINE_TRIGGER_S", 5))  # the jobs' shipped default
# Latency is measured once per trigger interval: the shipped 5 s, and 1 s (batches then run back to back).
LATENCY_TRIGGERS_S = [int(t) for t in os.environ.get("BENCH_PIPELINE_LATENCY_TRIGGERS_S", "5,1").split(",")]
PARTS = os.environ.get("BENCH_PIPELINE_PARTS", "throughput,backlog,workers,latency").split(",")
EXTRA_WORKER_UI_PORT = 8091  # the second worker of the `workers` part
# Trades per micro-batch, as the bars job's default bounds them: Spark counts Kafka messages, so a drain passes this
# divided by its trades per message.
MAX_TRADES_PER_TRIGGER = int(os.environ.get("BENCH_PIPELINE_MAX_TRADES", DEFAULT_MAX_TRADES_PER_TRIGGER))
# Trades per Kafka message in the drain (ingest's --trade-batch-max; its default first): the bars job's cost is per
# message more than per trade (docs/decisions.md, "Trades travel in trade batches").
_DEFAULT_BATCHES = f"{contract.trade_batch()['producer_trades']},1"
TRADE_BATCHES = [int(n) for n in os.environ.get("BENCH_PIPELINE_TRADE_BATCHES", _DEFAULT_BATCHES).split(",")]
LATENCY_SYMBOLS = int(os.environ.get("BENCH_PIPELINE_LATENCY_SYMBOLS", 100))
LATENCY_RUN_S = int(os.environ.get("BENCH_PIPELINE_LATENCY_S", 300))
WATERMARK_S = 60  # the bars job's default watermark ("1 minute")
DATABASE = "sparktrends_bench"
START = "2024-01-02T00:00:00Z"
WARMUP_START = "2024-01-01T23:00:00Z"  # an hour before START: its bars close before the measured trades arrive
DRAIN_TIMEOUT_S = 1800
LOGS = REPO / ".bench" / "logs"  # each job's driver output, for reading the per-batch progress lines


class Run:
    """Fresh topics, a fresh database and the two streaming jobs, torn down on exit."""

    def __init__(self, settings: stack.Settings, label: str, workdir: Path, trigger_s: int = TRIGGER_S,
                 trade_batch: int = TRADE_BATCHES[0], start: bool = True) -> None:  # fmt: skip
        from confluent_kafka.admin import AdminClient, NewTopic

        self.settings = settings
        self.label = label
        self.max_offsets = max(1, MAX_TRADES_PER_TRIGGER // trade_batch)
        suffix = f"{label}.{uuid.uuid4().hex[:8]}"
        self.trades_topic, self.bars_topic = f"bench.trades.{suffix}", f"bench.bars.{suffix}"
        self.deadletter_topic = f"bench.deadletter.{suffix}"
        self.admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
        for name, partitions in [(self.trades_topic, 6), (self.bars_topic, 6), (self.deadletter_topic, 1)]:
            self.admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result()
        self.env = {**os.environ, **settings.client_env(), **stack.spark_env(settings), "POSTGRES_DB": DATABASE,
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
        migrate.recreate_database(DATABASE, {**self.env, **settings.owner_env()})
        self.trigger_s, self.workdir = trigger_s, workdir
        self.jobs: list[StreamingJob] = []
        if start:
            self.start()

    def start(self) -> None:
        """Starts both jobs and waits for each one's first micro-batch."""
        trigger_s, workdir = self.trigger_s, self.workdir
        # The trigger is the bars job's: how often trades are read. The metrics job looks for new bars at its
        # default interval (500 ms).
        self.jobs = [
            StreamingJob("bars_job", ["--trades-topic", self.trades_topic, "--bars-topic", self.bars_topic,
                                      "--trigger", f"{trigger_s} seconds",
                                      "--max-offsets-per-trigger", str(self.max_offsets),
                                      "--checkpoint", str(workdir / "ckpt-bars")], self.env),
            StreamingJob("provider_bars_job", ["--bars-topic", self.bars_topic,
                                         "--checkpoint", str(workdir / "ckpt-metrics")], self.env),
        ]  # fmt: skip
        for job in self.jobs:
            job.wait_for("its first micro-batch", lambda job=job: bool(job.batches), timeout=300)

    def spark_apps(self) -> dict[str, str]:
        """Each running job's Spark application id -> the job's name (for CpuSampler's labels)."""
        apps = {}
        for job in self.jobs:
            for line in job.lines:
                if match := re.search(r"Connected to Spark cluster with app ID (\S+)", line):
                    apps[match.group(1)] = job.name
        return apps

    def connect(self):  # noqa: ANN201 - psycopg.Connection
        import psycopg

        e = self.env
        return psycopg.connect(host=e["POSTGRES_HOST"], port=e["POSTGRES_PORT"], user=e["POSTGRES_USER"],
                               password=e["POSTGRES_PASSWORD"], dbname=DATABASE, autocommit=True)  # fmt: skip

    def trade_messages(self) -> int:
        """Messages on the trades topic so far (its partitions' end offsets)."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.settings.kafka_bootstrap, "group.id": f"bench-{uuid.uuid4()}"})
        try:
            topic = self.trades_topic
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions]
            return sum(high for _, high in ends)
        finally:
            consumer.close()

    def ingest_args(self) -> list[str]:
        return ["--trades-topic", self.trades_topic, "--deadletter-topic", self.deadletter_topic]

    def bars_emitted(self) -> dict[tuple[str, float], float]:
        """When each bar reached the bars topic: (symbol, bar start in epoch seconds) -> the record's timestamp
        (the bars job's producer sets it as it sends)."""
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.settings.kafka_bootstrap, "group.id": f"bench-{uuid.uuid4()}",
                             "enable.auto.commit": False, "enable.partition.eof": True})  # fmt: skip
        partitions = consumer.list_topics(self.bars_topic, timeout=10).topics[self.bars_topic].partitions
        consumer.assign([TopicPartition(self.bars_topic, p, OFFSET_BEGINNING) for p in partitions])
        emitted, at_end = {}, set()
        while len(at_end) < len(partitions):
            msg = consumer.poll(5)
            if msg is None:
                break
            if msg.error():
                at_end.add(msg.partition())
                continue
            bar = json.loads(msg.value())
            emitted.setdefault((bar["symbol"], bar["ts_ms"] / 1000), msg.timestamp()[1] / 1000)
        consumer.close()
        return emitted

    def close(self) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        for job in self.jobs:
            job.stop()
            (LOGS / f"pipeline-{self.label}-{job.name}.log").write_text("\n".join(job.lines) + "\n")
        for future in self.admin.delete_topics([self.trades_topic, self.bars_topic, self.deadletter_topic]).values():
            future.result()


def market(ingest: Path, path: Path, start: str, minutes: int, symbols: list[str]) -> tuple[pa.Table, int]:
    """Synthetic trades to a Parquet file, plus one trade of an extra symbol late enough in event time that the
    watermark closes every bar before it. Returns the trades and how many bars they make."""
    subprocess.run([str(ingest), "synthetic", "--symbols", ",".join(symbols), "--start", start, "--minutes",
                    str(minutes), "--trades-per-minute", str(TRADES_PER_MINUTE), "--trades-out", str(path)],
                   check=True, capture_output=True)  # fmt: skip
    trades = pq.read_table(path, columns=["source", "symbol", "ts_ms", "price", "size", "trade_id"])
    closer = f"ZZ{symbols[0][:4]}"
    last_ms = pc.max(trades["ts_ms"]).as_py()
    row = {"source": ["synthetic"], "symbol": [closer], "ts_ms": [last_ms + (WATERMARK_S + 120) * 1000],
           "price": [100.0], "size": [1.0], "trade_id": [f"{closer}-1"]}  # fmt: skip
    pq.write_table(pa.concat_tables([trades, pa.table(row, schema=trades.schema)]), path)
    minute = pc.divide(trades["ts_ms"], 60_000)
    bars = pa.table({"s": trades["symbol"], "m": minute}).group_by(["s", "m"]).aggregate([]).num_rows
    return trades, bars


def replay(run: Run, ingest: Path, path: Path, trade_batch: int = TRADE_BATCHES[0]) -> None:
    done = subprocess.run([str(ingest), "replay", str(path), "--kind", "trades", "--speed", "0",
                           "--trade-batch-max", str(trade_batch), *run.ingest_args()],
                          env=run.env, capture_output=True, text=True, timeout=600)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"replay exited {done.returncode}:\n{done.stderr[-3000:]}")


def wait_for_rows(run: Run, table: str, prefix: str, expected: int, since: float) -> float:
    """Polls until `table` holds `expected` rows of symbols starting with `prefix`; returns when it saw them."""
    last_report = 0.0
    with run.connect() as conn:
        while time.time() - since < DRAIN_TIMEOUT_S:
            (rows,) = conn.execute(f"SELECT count(*) FROM {table} WHERE symbol LIKE %s", (prefix + "%",)).fetchone()
            now = time.time()
            if rows >= expected:
                return now
            if now - last_report > 15:
                print(f"bench: pipeline throughput: {rows:,}/{expected:,} {prefix}* rows in {table}, "
                      f"{now - since:.0f}s", flush=True)  # fmt: skip
                last_report = now
            for job in run.jobs:
                if job.proc.poll() is not None:
                    raise RuntimeError(f"{job.name} exited:\n{job.log_tail()}")
            time.sleep(0.25)
    raise RuntimeError(f"fewer than {expected:,} {prefix}* rows in {table} after {DRAIN_TIMEOUT_S}s")


def spark_profile(app_name: str) -> dict[str, dict[str, float]]:
    """Where an application's executors spent their time, from its driver's REST API: every completed stage,
    summed by its side of the shuffle. In the bars job, `map` stages read Kafka, admit the trades (contract crate,
    Python worker), group them per symbol-minute and write the shuffle; `reduce` stages read it, gather each
    minute's trades in the state store and build the closed bars (Python worker) for the driver; `other` are
    driver-side collects of small results. (The SQL operators of a foreachBatch query show no metrics through the
    API: its actions run on an RDD scan.)"""
    import urllib.request

    def get(url: str) -> Any:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return json.load(resp)

    for port in range(4040, 4050):
        base = f"http://127.0.0.1:{port}/api/v1/applications"
        try:
            app = next((a for a in get(base) if a.get("name") == app_name), None)
        except OSError:
            continue
        if app is None:
            continue
        totals: dict[str, dict[str, float]] = {}
        for stage in get(f"{base}/{app['id']}/stages?status=complete"):
            side = "map" if stage.get("shuffleWriteBytes") else "reduce" if stage.get("shuffleReadBytes") else "other"
            t = totals.setdefault(side, {"stages": 0, "tasks": 0, "run_s": 0.0, "cpu_s": 0.0, "gc_s": 0.0,
                                         "shuffle_write_s": 0.0, "records_in": 0, "shuffle_records": 0})  # fmt: skip
            t["stages"] += 1
            t["tasks"] += stage.get("numCompleteTasks", 0)
            t["run_s"] += stage.get("executorRunTime", 0) / 1e3
            t["cpu_s"] += stage.get("executorCpuTime", 0) / 1e9
            t["gc_s"] += stage.get("jvmGcTime", 0) / 1e3
            t["shuffle_write_s"] += stage.get("shuffleWriteTime", 0) / 1e9
            t["records_in"] += stage.get("inputRecords", 0)
            t["shuffle_records"] += stage.get("shuffleWriteRecords", 0) + stage.get("shuffleReadRecords", 0)
        return totals
    return {}


class ExtraWorker:
    """A second Spark worker on this machine, registered with the stack's master for one measurement (compose
    scales the same way: `docker compose up --scale spark-worker=2`). Samples the cores each worker gives to
    applications while it runs."""

    def __init__(self, settings: stack.Settings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.busiest: dict[str, int] = {}
        self._stop = threading.Event()

    def __enter__(self) -> ExtraWorker:
        before = stack.alive_workers(self.settings)
        cmd = [str(stack.spark_home() / "bin" / "spark-class"), "org.apache.spark.deploy.worker.Worker",
               self.settings.master_url, "--host", "127.0.0.1", "--webui-port", str(EXTRA_WORKER_UI_PORT),
               "--cores", str(self.settings.worker_cores), "--memory", self.settings.worker_memory,
               "--work-dir", str(self.workdir / "spark-work-2")]  # fmt: skip
        self.log = (self.workdir / "spark-worker-2.log").open("ab")
        env = {**os.environ, **stack.spark_env(self.settings)}
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 90
        while stack.alive_workers(self.settings) <= before:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"the second worker did not register; see {self.workdir / 'spark-worker-2.log'}")
            time.sleep(1)
        threading.Thread(target=self._sample, daemon=True).start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            for worker in (stack.master_state(self.settings) or {}).get("workers", []):
                if worker.get("state") == "ALIVE":
                    name = f"{worker.get('host')}:{worker.get('port')}"
                    self.busiest[name] = max(self.busiest.get(name, 0), int(worker.get("coresused", 0)))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def throughput(
    settings: stack.Settings, ingest: Path, workdir: Path, workers: int = 1, trade_batch: int = TRADE_BATCHES[0]
) -> list[dict]:
    # A small market an hour earlier in event time goes through first, so that Spark's code generation, the
    # Python workers and the connections are warm when the clock starts: the drain rate is the sustained one.
    warm_file, trades_file = workdir / "warmup.parquet", workdir / "trades.parquet"
    _, warm_bars = market(ingest, warm_file, WARMUP_START, 5, [f"WARM{i:02}" for i in range(20)])
    trades, expected_bars = market(ingest, trades_file, START, MINUTES, [f"SYN{i:03}" for i in range(SYMBOLS)])
    print(f"bench: pipeline throughput: {trades.num_rows:,} trades -> {expected_bars:,} bars", flush=True)

    extra = ExtraWorker(settings, workdir) if workers == 2 else contextlib.nullcontext()
    with extra:
        return _drain(settings, ingest, workdir, trades, expected_bars, warm_file, warm_bars, trades_file, extra,
                      trade_batch)  # fmt: skip


def _drain(settings: stack.Settings, ingest: Path, workdir: Path, trades: pa.Table, expected_bars: int,
           warm_file: Path, warm_bars: int, trades_file: Path, extra: object,
           trade_batch: int) -> list[dict]:  # fmt: skip
    label = "drain-2-workers" if isinstance(extra, ExtraWorker) else "drain"
    label += "" if trade_batch == TRADE_BATCHES[0] else f"-batch-{trade_batch}"
    run = Run(settings, label, workdir, trade_batch=trade_batch)
    try:
        warm_started = time.time()
        replay(run, ingest, warm_file)
        wait_for_rows(run, "metrics_1m", "WARM", warm_bars, warm_started)
        print(f"bench: pipeline throughput: warm after {time.time() - warm_started:.0f}s", flush=True)
        before = run.trade_messages()
        with CpuSampler(run.spark_apps()) as cpu:
            started = time.time()
            replay(run, ingest, trades_file, trade_batch)
            produced = time.time()
            messages = run.trade_messages() - before
            done = wait_for_rows(run, "metrics_1m", "SYN", expected_bars, started)
        with run.connect() as conn:
            (bars,) = conn.execute("SELECT count(*) FROM bars_1m WHERE symbol LIKE 'SYN%'").fetchone()
        late = sum(run.jobs[0].late_dropped.values())
        profile = spark_profile("sparktrends-bars")
    finally:
        run.close()
    LOGS.mkdir(parents=True, exist_ok=True)
    (LOGS / f"pipeline-{label}-profile.json").write_text(json.dumps(profile, indent=1) + "\n")
    top = "; ".join(
        f"{side}: {t['stages']:.0f} stages, run {t['run_s']:.0f} s (CPU {t['cpu_s']:.0f} s, GC {t['gc_s']:.0f} s, "
        f"shuffle write {t['shuffle_write_s']:.0f} s)"
        for side, t in sorted(profile.items())
    )
    seconds = done - started
    spread = ""
    if isinstance(extra, ExtraWorker):
        spread = "; two workers, most cores in use at once per worker: " + ", ".join(
            f"{name} {cores}" for name, cores in sorted(extra.busiest.items())
        )
    return [
        {
            "name": "trades -> bars -> metrics -> Postgres (backlog drain)"
            + (", two workers" if isinstance(extra, ExtraWorker) else "")
            + (f", {trade_batch} trades per message" if trade_batch > 1 else ", one message per trade"),
            "impl": "bars job + metrics job (Rust UDFs), Spark standalone",
            "value": round(trades.num_rows / seconds),
            "unit": "trades/s",
            "notes": f"{trades.num_rows:,} trades in {messages:,} messages, {SYMBOLS} symbols, {bars:,} bars in "
            f"{seconds:.1f}s "
            f"(producer done after {produced - started:.1f}s); {late} late-dropped; trigger {TRIGGER_S}s, "
            f"max {run.max_offsets:,} offsets/trigger; jobs warmed up first{spread}; bars job's executor "
            f"time by stage side (task time, 2 cores): {top}; {cpu.summary(seconds)}",
            "cpu_s": cpu.seconds(),
            "trades": trades.num_rows,
            "messages": messages,
            "trade_batch": trade_batch,
            "bars": bars,
            "seconds": round(seconds, 2),
        }
    ]


def backlog(settings: stack.Settings, ingest: Path, workdir: Path) -> list[dict]:
    """The drain's trades already on the topic when the jobs start, as after a stop: Spark's rate alone, in
    micro-batches as large as the bars job's bound, from spark-submit on (the JVMs and Python workers start cold)."""
    trades_file = workdir / "trades.parquet"
    trades, expected_bars = market(ingest, trades_file, START, MINUTES, [f"SYN{i:03}" for i in range(SYMBOLS)])
    run = Run(settings, "backlog", workdir, start=False)
    try:
        replay(run, ingest, trades_file)
        messages = run.trade_messages()
        print(f"bench: pipeline backlog: {trades.num_rows:,} trades in {messages:,} messages on the topic", flush=True)
        started = time.time()
        run.start()
        done = wait_for_rows(run, "metrics_1m", "SYN", expected_bars, started)
        lines = [line for line in run.jobs[0].lines if line.startswith("[stream] bars batch=")]
        took = [re.search(r" took=(\S+)s ", line) for line in lines]
    finally:
        run.close()
    seconds = done - started
    return [
        {
            "name": "trades -> bars -> metrics -> Postgres (backlog on the topic before the jobs start)",
            "impl": "bars job + metrics job (Rust UDFs), Spark standalone",
            "value": round(trades.num_rows / seconds),
            "unit": "trades/s",
            "notes": f"{trades.num_rows:,} trades in {messages:,} messages, {SYMBOLS} symbols, {expected_bars:,} bars "
            f"in {seconds:.1f}s from spark-submit (the JVMs and Python workers start cold); max {run.max_offsets:,} "
            f"offsets/trigger; the bars query's micro-batches reported by then took "
            f"{', '.join(m.group(1) + ' s' for m in took if m)}",
            "trades": trades.num_rows,
            "messages": messages,
            "seconds": round(seconds, 2),
        }
    ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency(settings: stack.Settings, ingest: Path, workdir: Path, trigger_s: int) -> list[dict]:
    run = Run(settings, f"live-{trigger_s}s", workdir, trigger_s)
    first_seen: dict[tuple[str, float], float] = {}
    stop_polling = threading.Event()

    def poll() -> None:
        with run.connect() as conn:
            while not stop_polling.is_set():
                rows = conn.execute("SELECT symbol, extract(epoch FROM ts)::float8 FROM metrics_1m").fetchall()
                now = time.time()
                for key in rows:
                    first_seen.setdefault(key, now)
                time.sleep(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    try:
        poller.start()
        producer = ProcessService("ingest", [str(ingest), "synthetic", "--num-symbols", str(LATENCY_SYMBOLS),
                                             "--trades-per-minute", "300", *run.ingest_args()])  # fmt: skip
        producer.start(run.env)
        live_from = time.time()
        print(f"bench: pipeline latency: live market of {LATENCY_SYMBOLS} symbols for {LATENCY_RUN_S}s", flush=True)
        time.sleep(LATENCY_RUN_S)
        live_until = time.time()
        time.sleep(2 * trigger_s + 20)  # bars that closed just before the producer stopped are still on their way
        producer.stop(grace=30)
        emitted = run.bars_emitted()
    finally:
        stop_polling.set()
        poller.join(10)
        run.close()
    latencies, per_bar = [], []
    for (symbol, bar_start), seen in sorted(first_seen.items(), key=lambda item: item[0][1]):
        closed = bar_start + 60 + WATERMARK_S
        if live_from < closed <= live_until:
            latencies.append(seen - closed)
            on_topic = emitted.get((symbol, bar_start))
            per_bar.append({"symbol": symbol, "bar_start": bar_start, "closed": closed, "latency_s": seen - closed,
                            "bars_job_s": None if on_topic is None else on_topic - closed})  # fmt: skip
    (LOGS / f"pipeline-latency-{trigger_s}s.json").write_text(json.dumps(per_bar))
    if len(latencies) < LATENCY_SYMBOLS:
        raise RuntimeError(f"only {len(latencies)} bars closed and reached metrics_1m during the live run")
    # Where the time goes: close -> the bar published on the bars topic, which the bars job does right after it
    # committed the bar's metrics (the rest is the poll that sees the row); for bars the metrics job applies,
    # close -> topic is the bars job's share and topic -> row the metrics job's.
    bars_job = [b["bars_job_s"] for b in per_bar if b["bars_job_s"] is not None]
    split = ""
    if bars_job:
        split = (f"; close -> bar published on the bars topic p50 {percentile(bars_job, 0.5):.2f}s "
                 f"p99 {percentile(bars_job, 0.99):.2f}s")  # fmt: skip
    notes = (f"{len(latencies)} bars, {LATENCY_SYMBOLS} symbols at 5 trades/s each; target p99 < {trigger_s + 2}s"
             f"{split}")  # fmt: skip
    impl = f"bars + metrics jobs, trigger {trigger_s}s"
    rows = []
    for name, q in [("p50", 0.5), ("p99", 0.99)]:
        rows.append({"name": f"bar close -> metrics row committed, {name}", "impl": impl,
                     "value": round(percentile(latencies, q), 3), "unit": "s", "notes": notes})  # fmt: skip
    rows.append({"name": "bar close -> metrics row committed, mean", "impl": impl,
                 "value": round(statistics.fmean(latencies), 3), "unit": "s", "notes": notes})  # fmt: skip
    # The first closes meet each driver's first batch (Python workers start, code is generated): reported apart.
    warm_from = min(first_seen.values())
    warm = [b["latency_s"] for b in per_bar if b["closed"] > warm_from]
    warm_bars_job = [b["bars_job_s"] for b in per_bar if b["closed"] > warm_from and b["bars_job_s"] is not None]
    if warm_bars_job:
        split = f"; close -> bar published on the bars topic p99 {percentile(warm_bars_job, 0.99):.2f}s"
    if warm:
        rows.append({"name": "bar close -> metrics row committed, p99 once warm", "impl": impl,
                     "value": round(percentile(warm, 0.99), 3), "unit": "s",
                     "notes": f"{len(warm)} bars closing after the first metrics row; p50 "
                              f"{percentile(warm, 0.5):.2f}s{split}"})  # fmt: skip
    return rows


def run(settings: stack.Settings) -> list[dict]:
    ingest = cargo_bin.build("sparktrends-ingest")
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        workdir = Path(tmp)
        rows = []
        if "throughput" in PARTS:
            for trade_batch in TRADE_BATCHES:
                (workdir / f"drain-{trade_batch}").mkdir()
                rows += throughput(settings, ingest, workdir / f"drain-{trade_batch}", trade_batch=trade_batch)
        if "backlog" in PARTS:
            (workdir / "backlog").mkdir()
            rows += backlog(settings, ingest, workdir / "backlog")
        if "workers" in PARTS:
            (workdir / "drain-2").mkdir()
            rows += throughput(settings, ingest, workdir / "drain-2", workers=2)
        if "latency" in PARTS:
            for trigger_s in LATENCY_TRIGGERS_S:
                (workdir / f"live-{trigger_s}").mkdir()
                rows += latency(settings, ingest, workdir / f"live-{trigger_s}", trigger_s)
    return [{"section": "pipeline", **row} for row in rows]


if __name__ == "__main__":
    for row in run(stack.settings()):
        print(row)
