"""The chaos run: the pipeline on the real local stack under a schedule of faults, then every stored row checked.

    make chaos                      (= python bench/chaos.py [--json .bench/chaos.json] [--markdown .bench/chaos.md])

The run's logs are in .stack/logs/chaos-<tag>/; its topics are deleted at the end unless SPARKTRENDS_KEEP_CHAOS is
set.

A seeded synthetic market (30 minutes of history at once, then live in real time, with injected jumps and volume
spikes often enough that alerts happen) feeds the bars job, the metrics job and the alerter (posting to a local
fake Slack), on topics and a database of their own. While it runs, one component at a time is hit: kill -9 of
each driver, of ingest and of the alerter (started again by the supervisor `make run` uses), a PostgreSQL fast
restart and a 90-second outage, a Kafka restart, kill -9 of the Spark master and the loss of the Spark worker
(each started again), and poison: every time-independent reject case of the admission corpus plus a valid trade
stamped four minutes ahead (a skewed venue clock), produced into the live trades topic. Ingest, restarted with
the same seed and start, sends the same history again (same ids) and goes on live: the replayed trades must be
dropped as duplicates or as late, never counted twice.

At the end, with the market stopped and the last bars closed, the run compares what is stored with the reference
computed from the trades topic's contents (tests/bars_reference.py, deduplicated by trade id) and the kernels:
- bars: every closed minute present, none extra, each equal to the reference;
- metrics: every bar's row, equal to the kernels on the final bars;
- anomalies: one outbox row per alerted (symbol, bar, kind), the alerted bars those the kernels alert on, and
  every Slack post for a distinct anomaly;
- poison: every injected message in rejected_messages once, with the corpus's reject code; the skewed trade too.
Per fault it reports the recovery time (until the next bar lands, so bars closing once a minute make it coarse: up
to a minute plus the watermark even without a fault; for the alerter, until the outbox is empty again) and the
bars lost among the minutes the market produced while the component was down. Exit 1 when any row is lost,
duplicated or wrong.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

import psycopg  # noqa: E402

import cargo_bin  # noqa: E402
import migrate  # noqa: E402
import stack  # noqa: E402
from services import ProcessService, Supervisor  # noqa: E402
from sparktrends import contract  # noqa: E402
from tests import bars_reference  # noqa: E402
from tests.alerts.fake_slack import FakeSlack  # noqa: E402
from tests.contract.test_admission_corpus import corpus  # noqa: E402
from tests.stack.metrics_checks import METRICS, expected_metrics, stored_metrics  # noqa: E402
from tests.stack.streaming import StreamingJob  # noqa: E402

DB = "sparktrends_chaos"
WATERMARK_S = 10
HISTORY_MINUTES = 30
SYMBOLS = 8
SEED = 11
# About ten jumps and ten volume spikes per symbol over a run: enough for the alert path to carry real anomalies.
INJECTED_PER_DAY = 300
# Poison goes in under this key, so the reference leaves it out; its corpus cases whose verdict depends on when
# they are received stay out (the corpus holds them against a fixed receive time).
POISON_KEY = b"chaos-poison"
TIME_RELATIVE_CODES = {"ts_in_future", "ts_too_old"}
SKEW_AHEAD_MS = 4 * 60_000
# Longer than a micro-batch's retries and the alerter's reconnect backoff: the jobs' batches fail while it lasts.
LONG_OUTAGE_S = 90.0


@dataclass
class Fault:
    name: str
    hit: Callable[[], None]
    recovered: Callable[[], bool]
    started: float = 0.0
    recovery_s: float | None = None
    sim_window: tuple[int, int] = (0, 0)  # simulated ms produced while it was down
    lost: int = 0
    notes: list[str] = field(default_factory=list)


class Run:
    def __init__(self, log: Callable[[str], None]) -> None:
        self.log = log
        self.settings = stack.settings()
        down = [name for name, up, *_ in stack.service_rows(self.settings) if not up]
        if down:
            raise SystemExit(f"chaos: the stack is not up ({', '.join(down)}): run `make up` first")
        self.env = {**os.environ, **self.settings.client_env(), **stack.spark_env(self.settings), "POSTGRES_DB": DB}
        self.env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{self.env['PATH']}"
        tag = uuid.uuid4().hex[:8]
        self.topics = {role: f"chaos.{role}.{tag}" for role in ("trades", "bars", "companies", "deadletter", "gaps")}
        self.logs = stack.LOGS / f"chaos-{tag}"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.checkpoints = self.logs / "checkpoints"
        self.jobs: dict[str, StreamingJob] = {}
        self.ingest: ProcessService | None = None
        self.alerter: ProcessService | None = None
        self.slack = FakeSlack().start()
        self.env.update({"SLACK_WEBHOOK": self.slack.url, "RUST_LOG": "info"})  # for ingest and the alerter
        self.supervisor: Supervisor | None = None
        self.current: Fault | None = None  # the fault in progress: what the supervisor says goes to its notes
        self.poison: list[tuple[bytes, str]] = []  # (raw message, the reject code the corpus expects)
        # A fixed start: a restarted ingest regenerates exactly the same market (seed and start decide it).
        self.sim_start_ms = (int(time.time() // 60) - HISTORY_MINUTES) * 60_000
        # The debug builds the tests use: a few hundred messages a second need no optimiser.
        self.ingest_bin = cargo_bin.build("sparktrends-ingest", release=False)
        self.alerter_bin = cargo_bin.build("sparktrends-alerter", release=False)

    # ------------------------------------------------------------------------------------------ components

    def start_job(self, name: str) -> None:
        args = {
            "bars": ["bars_job", "--trades-topic", self.topics["trades"], "--bars-topic", self.topics["bars"],
                     "--gaps-topic", self.topics["gaps"],
                     "--watermark", f"{WATERMARK_S} seconds", "--trigger", "1 second"],
            "provider_bars": ["provider_bars_job", "--bars-topic", self.topics["bars"], "--trigger", "1 second"],
        }[name]  # fmt: skip
        self.jobs[name] = StreamingJob(args[0], [*args[1:], "--checkpoint", str(self.checkpoints)], self.env)

    def kill_job(self, name: str) -> None:
        """kill -9 of a driver; the supervisor starts it again, as `make run`'s would."""
        job = self.jobs[name]
        (self.logs / f"job-{name}-{int(time.time())}.log").write_text("\n".join(job.lines))
        job.kill()

    def wait(self, seconds: float, until: Callable[[], bool] = lambda: False) -> None:
        """Sleeps up to `seconds` (less once `until` holds) while the supervisor restarts what dies."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not until():
            if self.supervisor is not None:
                self.supervisor.tick()
            time.sleep(0.5)

    def supervised(self, line: str) -> None:
        self.log(f"chaos: supervisor: {line}")
        if self.current is not None and "exited" in line:
            self.current.notes.append(line.split(";")[0])

    def start_ingest(self) -> None:
        self.ingest = ProcessService(
            "ingest",
            [str(self.ingest_bin), "synthetic", "--seed", str(SEED), "--num-symbols", str(SYMBOLS),
             "--start", str(self.sim_start_ms),
             "--trades-topic", self.topics["trades"], "--bars-topic", self.topics["bars"],
             "--companies-topic", self.topics["companies"], "--deadletter-topic", self.topics["deadletter"],
             "--gaps-topic", self.topics["gaps"],
             "--stats-interval", "5", "--jumps-per-day", str(INJECTED_PER_DAY),
             "--spikes-per-day", str(INJECTED_PER_DAY)],
            log_path=self.logs / "ingest.log",
        )  # fmt: skip
        self.ingest.start(self.env)

    def start_alerter(self) -> None:
        self.alerter = ProcessService(
            "alerter",
            [str(self.alerter_bin), "--poll-interval-ms", "200", "--stats-interval-ms", "5000"],
            log_path=self.logs / "alerter.log",
        )
        self.alerter.start(self.env)

    # ------------------------------------------------------------------------------------------ observation

    def pg(self) -> psycopg.Connection:
        return psycopg.connect(
            host=self.env["POSTGRES_HOST"], port=self.env["POSTGRES_PORT"], user=self.env["POSTGRES_USER"],
            password=self.env["POSTGRES_PASSWORD"], dbname=DB, connect_timeout=3, autocommit=True,
        )  # fmt: skip

    def count(self, sql: str) -> int | None:
        try:
            with self.pg() as conn:
                return int(conn.execute(sql).fetchone()[0])
        except psycopg.Error:
            return None

    def bars_stored(self) -> int | None:
        return self.count("SELECT count(*) FROM bars_1m")

    def grows(self, what: Callable[[], int | None], since: int | None) -> bool:
        now = what()
        return now is not None and since is not None and now > since

    # ------------------------------------------------------------------------------------------ faults

    def faults(self) -> list[Fault]:
        def job_fault(name: str, output: Callable[[], int | None]) -> Fault:
            """Recovered when the job's own output grows again."""
            baseline: dict[str, int | None] = {}

            def hit() -> None:
                baseline["rows"] = output()
                self.kill_job(name)

            return Fault(f"kill -9 {name} job driver", hit, lambda: self.grows(output, baseline["rows"]))

        def service_fault(label: str, stop: Callable[[], None], start: Callable[[], None], pause: float = 3.0) -> Fault:
            """Recovered when bars land again."""
            baseline: dict[str, int | None] = {}

            def hit() -> None:
                baseline["bars"] = self.bars_stored()
                stop()
                time.sleep(pause)
                start()

            return Fault(label, hit, lambda: self.grows(self.bars_stored, baseline["bars"]))

        def alerter_recovered() -> bool:
            pending = self.count("SELECT count(*) FROM anomalies WHERE status = 'pending'")
            return self.alerter is not None and self.alerter.alive() and pending == 0

        def alerter_hit() -> None:
            if self.alerter is not None:
                self.alerter.kill()

        poison_baseline: dict[str, int | None] = {}

        def poison_hit() -> None:
            poison_baseline["bars"] = self.bars_stored()
            self.inject_poison()

        def poison_recovered() -> bool:
            rejected = self.count("SELECT count(*) FROM rejected_messages")
            return rejected == len(self.poison) and self.grows(self.bars_stored, poison_baseline["bars"])

        def master_down() -> None:
            pid = stack.read_pid(stack.RUN / "spark-master.pid")
            if pid is not None:
                os.kill(pid, signal.SIGKILL)

        s = self.settings
        return [
            job_fault("bars", self.bars_stored),
            service_fault("kill -9 ingest", lambda: self.ingest and self.ingest.kill(), lambda: None, pause=0),
            job_fault("provider_bars", lambda: self.count("SELECT count(*) FROM metrics_1m")),
            Fault("kill -9 alerter", alerter_hit, alerter_recovered),
            service_fault("PostgreSQL fast restart", stack.stop_postgres, lambda: stack.start_postgres(s)),
            service_fault(
                f"PostgreSQL down {LONG_OUTAGE_S:.0f} s",
                stack.stop_postgres,
                lambda: stack.start_postgres(s),
                pause=LONG_OUTAGE_S,
            ),
            service_fault("Kafka restart", lambda: stack.terminate("kafka"), lambda: stack.start_kafka(s)),
            service_fault(
                "Spark worker lost and back", lambda: stack.terminate("spark-worker"), lambda: stack.start_spark(s)
            ),
            service_fault("kill -9 Spark master", master_down, lambda: stack.start_spark(s)),
            Fault("poison and a skewed clock in the trades topic", poison_hit, poison_recovered),
        ]

    def inject_poison(self) -> None:
        """Produces self.poison into the live trades topic, keyed POISON_KEY."""
        from confluent_kafka import Producer

        skewed = {"source": "chaos", "symbol": "CHAOSSKEW", "ts_ms": int(time.time() * 1000) + SKEW_AHEAD_MS,
                  "price": 100.0, "size": 1.0, "trade_id": "skewed-1"}  # fmt: skip
        self.poison = [
            *(
                (c["bytes"], c["expect"])
                for c in corpus("trades.jsonl")
                if c["expect"] not in {None, *TIME_RELATIVE_CODES}
            ),
            (json.dumps(skewed).encode(), "ts_in_future"),
        ]
        producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap, "message.max.bytes": 2_000_000})
        for raw, _ in self.poison:
            producer.produce(self.topics["trades"], key=POISON_KEY, value=raw)
        if producer.flush(30):
            raise RuntimeError("chaos: poison not delivered")

    # ------------------------------------------------------------------------------------------ the run

    @staticmethod
    def sim_now_ms(_started: float) -> int:
        return int(time.time() * 1000)  # live: simulated time is wall time

    def run(self, spacing: float) -> dict:
        from confluent_kafka.admin import AdminClient, NewTopic

        migrate.recreate_database(DB, {**self.env, **self.settings.owner_env()})
        admin = AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap})
        for future in admin.create_topics(
            [NewTopic(t, num_partitions=3, replication_factor=1) for t in self.topics.values()]
        ).values():
            future.result()
        for name in ("bars", "provider_bars"):
            self.start_job(name)
        for job in self.jobs.values():
            job.wait_for("the query to start", lambda job=job: any("[stream] running" in x for x in job.lines), 240)
        self.start_alerter()
        self.log(f"chaos: jobs up; market of {SYMBOLS} symbols, {HISTORY_MINUTES} minutes of history, then live")
        started = time.monotonic()
        self.start_ingest()
        assert self.alerter is not None and self.ingest is not None
        # What dies is started again after a backoff, by the supervisor `make run` uses (scripts/services.py).
        self.supervisor = Supervisor([*self.jobs.values(), self.alerter, self.ingest], self.env, say=self.supervised)
        faults = self.faults()
        self.wait(spacing)
        for fault in faults:
            self.current = fault
            fault.started = time.monotonic()
            sim_from = self.sim_now_ms(started)
            self.log(f"chaos: {fault.name}")
            fault.hit()
            self.wait(240, until=fault.recovered)
            if fault.recovered():
                fault.recovery_s = time.monotonic() - fault.started
                self.log(f"chaos: {fault.name}: recovered in {fault.recovery_s:.1f}s")
            else:
                fault.notes.append("not recovered within 240 s")
                self.log(f"chaos: {fault.name}: NOT recovered within 240 s")
            fault.sim_window = (sim_from, self.sim_now_ms(started))
            self.wait(spacing)
            self.current = None
        self.log("chaos: schedule done; one more minute of market, then ingest stops and the last bars close")
        self.wait(70)
        self.supervisor = None  # nothing is restarted from here on: ingest stops for good
        self.ingest.stop(grace=60)
        return self.settle_and_check(faults)

    def settle_and_check(self, faults: list[Fault]) -> dict:
        trades = self.topic_trades()
        self.log(f"chaos: {len(trades):,} trade messages on the topic, besides {len(self.poison)} poison")
        reference = bars_reference.bars(trades)
        last_event = max(t["ts_ms"] for t in trades)
        # Minutes the watermark has closed: the last one stays open (no later trade moves the watermark past it).
        closed = {k: v for k, v in reference.items() if k[1] + 60_000 + WATERMARK_S * 1000 <= last_event}
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            stored = self.count("SELECT count(*) FROM bars_1m")
            metrics = self.count("SELECT count(*) FROM metrics_1m")
            if stored is not None and stored >= len(closed) and metrics is not None and metrics >= stored:
                break
            time.sleep(2)
        time.sleep(10)  # one more batch of each job, and the alerter's last posts
        with self.pg() as conn:
            rows = conn.execute(
                "SELECT symbol, (extract(epoch from ts) * 1000)::bigint, open, high, low, close, volume, trades, vwap "
                "FROM bars_1m"
            ).fetchall()
            anomalies = conn.execute("SELECT id, symbol, ts, kind, status FROM anomalies").fetchall()
            rejected = dict(conn.execute("SELECT reason_code, count(*) FROM rejected_messages GROUP BY 1").fetchall())
            late = conn.execute("SELECT coalesce(sum(trades), 0) FROM late_trades").fetchone()[0]
            symbols = [r[0] for r in conn.execute("SELECT DISTINCT symbol FROM bars_1m").fetchall()]
            stored_m = stored_metrics(conn, symbols)
        stored_bars = {(r[0], int(r[1])): r for r in rows}
        lost = sorted(set(closed) - set(stored_bars))
        extra = sorted(set(stored_bars) - set(reference))
        wrong = [k for k in set(closed) & set(stored_bars) if not same_bar(stored_bars[k], closed[k])]
        final_bars = [
            {"symbol": k[0], "ts_ms": k[1], **{c: v for c, v in zip(("open", "high", "low", "close", "volume"),
                                                               stored_bars[k][2:7])},
             "vwap": stored_bars[k][8]}
            for k in stored_bars
        ]  # fmt: skip
        expected_m = expected_metrics(final_bars)
        metrics_missing = len(expected_m.keys() - stored_m.keys())
        metrics_wrong = 0
        for key in expected_m.keys() & stored_m.keys():
            want, got = expected_m[key], stored_m[key]
            for column in METRICS:
                a, b = got[column], want[column]
                if (a is None) != (b is None) or (a is not None and abs(a - b) > 1e-9 * max(1.0, abs(b))):
                    metrics_wrong += 1
                    break
            else:
                metrics_wrong += got["is_anomaly"] != want["is_anomaly"]
        outbox_keys = [(a[1], a[2], a[3]) for a in anomalies]
        # The bars the kernels alert on (is_anomaly) against those with a live outbox row (not withdrawn).
        alerted_expected = {key for key, row in expected_m.items() if row["is_anomaly"]}
        alerted_stored = {(a[1], a[2]) for a in anomalies if a[4] != "suppressed"}
        poison_expected = Counter(code for _, code in self.poison)
        rejects_wrong = sum((poison_expected - Counter(rejected)).values()) + sum(
            (Counter(rejected) - poison_expected).values()
        )
        posts = self.slack.snapshot()
        lead_ids = [p.lead_id for p in posts]
        for fault in faults:
            lo, hi = fault.sim_window
            fault.lost = sum(1 for k in lost if lo - 60_000 <= k[1] <= hi)
        result = {
            "symbols": SYMBOLS,
            "history_minutes": HISTORY_MINUTES,
            "trade_messages": len(trades),
            "bars_closed_in_reference": len(closed),
            "bars_stored": len(stored_bars),
            "bars_lost": len(lost),
            "bars_extra": len(extra),
            "bars_wrong": len(wrong),
            "metrics_rows": len(stored_m),
            "metrics_missing": metrics_missing,
            "metrics_wrong": metrics_wrong,
            "anomalies": len(anomalies),
            "alerted_bars_expected": len(alerted_expected),
            "alerted_bars_missing": len(alerted_expected - alerted_stored),
            "alerted_bars_extra": len(alerted_stored - alerted_expected),
            "anomalies_duplicated": len(outbox_keys) - len(set(outbox_keys)),
            "anomalies_delivered": sum(1 for a in anomalies if a[4] == "delivered"),
            "slack_posts": len(posts),
            "slack_posts_duplicated": len(lead_ids) - len(set(lead_ids)),
            "slack_posts_missing": len({a[0] for a in anomalies if a[4] == "delivered"} - set(lead_ids)),
            "poison_injected": len(self.poison),
            "rejects_by_code": rejected,
            "rejects_wrong": rejects_wrong,
            "late_trades_dropped": late,
            "examples": {"lost": [list(k) for k in lost[:5]], "wrong": [list(k) for k in wrong[:5]]},
            "faults": [
                {
                    "fault": f.name,
                    "recovery_s": f.recovery_s,
                    "bars_lost_in_window": f.lost,
                    "sim_window_minutes": round((f.sim_window[1] - f.sim_window[0]) / 60_000, 1),
                    "notes": f.notes,
                }
                for f in faults
            ],
        }
        return result

    def topic_trades(self) -> list[dict]:
        """Every trade message on the topic except the injected poison, as the reference reads them."""
        from confluent_kafka import Consumer

        consumer = Consumer({"bootstrap.servers": self.settings.kafka_bootstrap, "group.id": f"chaos-{uuid.uuid4()}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})  # fmt: skip
        consumer.subscribe([self.topics["trades"]])
        trades, quiet_since = [], time.monotonic()
        try:
            while time.monotonic() - quiet_since < 10:
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                quiet_since = time.monotonic()
                if msg.key() != POISON_KEY:
                    trades += contract.messages_in(msg.value())
        finally:
            consumer.close()
        return trades

    def close(self) -> None:
        if self.ingest is not None:
            self.ingest.kill()
        if self.alerter is not None:
            self.alerter.stop(grace=20)
        for name, job in self.jobs.items():
            job.stop()
            (self.logs / f"job-{name}.log").write_text("\n".join(job.lines))
        self.slack.stop()
        if os.environ.get("SPARKTRENDS_KEEP_CHAOS") is None:  # keep the topics to inspect a failed run
            from confluent_kafka.admin import AdminClient

            admin = AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap})
            for future in admin.delete_topics(list(self.topics.values())).values():
                try:
                    future.result()
                except Exception as err:  # a topic the run never created
                    self.log(f"chaos: could not delete a topic: {err}")


def same_bar(stored: tuple, reference: dict) -> bool:
    """Prices and the trade count exactly; volume and VWAP to rounding (Spark sums in no fixed order)."""
    prices = tuple(stored[2:6]) == tuple(reference[c] for c in ("open", "high", "low", "close"))
    close_enough = all(
        (a is None) == (b is None) and (a is None or abs(a - b) <= 1e-9 * max(1.0, abs(b)))
        for a, b in ((stored[6], reference["volume"]), (stored[8], reference["vwap"]))
    )
    return prices and close_enough and stored[7] == reference["trades"]


def markdown(res: dict) -> str:
    lines = [
        f"{res['symbols']} symbols, {res['history_minutes']} minutes of history then live, "
        f"{res['trade_messages']:,} trade messages; {res['bars_closed_in_reference']} closed bars in the reference",
        "",
        "| fault | recovery (s) | bars lost (minutes produced while down) | notes |",
        "|---|---:|---:|---|",
    ]
    for f in res["faults"]:
        rec = "-" if f["recovery_s"] is None else f"{f['recovery_s']:.1f}"
        lines.append(
            f"| {f['fault']} | {rec} | {f['bars_lost_in_window']} ({f['sim_window_minutes']} min) | "
            f"{'; '.join(f['notes'])} |"
        )
    lines += [
        "",
        "| check | count |",
        "|---|---:|",
        *(f"| {k} | {res[k]} |" for k in ("bars_stored", "bars_lost", "bars_extra", "bars_wrong", "metrics_rows",
                                            "metrics_missing", "metrics_wrong", "anomalies", "anomalies_duplicated",
                                            "alerted_bars_expected", "alerted_bars_missing", "alerted_bars_extra",
                                            "anomalies_delivered", "slack_posts", "slack_posts_duplicated",
                                            "slack_posts_missing", "poison_injected", "rejects_wrong",
                                            "late_trades_dropped")),
    ]  # fmt: skip
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spacing", type=float, default=30.0, help="seconds between faults")
    parser.add_argument("--json", type=Path, default=REPO / ".bench" / "chaos.json")
    parser.add_argument("--markdown", type=Path, default=REPO / ".bench" / "chaos.md")
    args = parser.parse_args()
    # SIGTERM (a timeout, a Ctrl-C from a wrapper) must still stop the jobs and processes this run started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run = Run(lambda m: print(f"{dt.datetime.now():%H:%M:%S} {m}", flush=True))
    try:
        res = run.run(args.spacing)
    finally:
        run.close()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1, default=str))
    text = markdown(res)
    args.markdown.write_text(text + "\n")
    print(text)
    bad = sum(res[k] for k in ("bars_lost", "bars_extra", "bars_wrong", "metrics_missing", "metrics_wrong",
                               "anomalies_duplicated", "alerted_bars_missing", "alerted_bars_extra",
                               "slack_posts_duplicated", "slack_posts_missing", "rejects_wrong"))  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
