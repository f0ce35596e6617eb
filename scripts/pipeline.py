"""Run the whole SparkTrends pipeline on a running stack: ingest -> bars job -> metrics job (+ companies job)
-> PostgreSQL -> alerter, and print what has landed every few seconds.

    python scripts/pipeline.py [--source synthetic|binance|finnhub|twelvedata|replay] [--for SECONDS]
    python scripts/pipeline.py --external-stack --components bars-job,provider-bars-job,companies-job   (compose runner)

Locally the stack (`make up`) must be up. Every process logs to .stack/logs/pipeline-<name>.log; Ctrl-C (or
--for) stops them all, ingest first so the jobs can drain. A component that dies is started again after a backoff
that doubles with each quick death (1 s up to 60 s, reset after 5 minutes up), with one line saying so; one that
finishes (exit 0, e.g. a replay at its end) is not. `--no-restart` ends the pipeline at the first death instead.
The compose runner runs this same script for the Spark jobs; there, ingest and the alerter are services of their
own, which compose restarts.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import cargo_bin  # noqa: E402
import logfiles  # noqa: E402
import services  # noqa: E402
import stack  # noqa: E402

# How often the runner bounds .stack/logs (every service's log and its components', scripts/logfiles.py).
LOG_CHECK_S = 60.0

COMPONENTS = ["bars-job", "provider-bars-job", "companies-job", "alerter", "dashboard", "ingest"]


def components(names: list[str], source: str, source_args: list[str]) -> list[services.ProcessService]:
    """The pipeline's processes in start order (consumers before the producer)."""
    submit = str(REPO / "scripts" / "submit.sh")
    settings = stack.settings()
    ingest_args = [source, *source_args, "--metrics-address", f"127.0.0.1:{settings.ingest_metrics_port}"]
    if source == "synthetic" and not source_args:
        # Three hours of history at once, then live: windows are warm and rows land within a minute or two.
        ingest_args += ["--backfill-minutes", "180", "--labels-out", str(stack.STACK / "synthetic-labels.jsonl")]
    commands = {
        "bars-job": lambda: [submit, "bars_job"],
        "provider-bars-job": lambda: [submit, "provider_bars_job"],
        "companies-job": lambda: [submit, "companies_job"],
        "alerter": lambda: [
            cargo_bin.installed_or_built("sparktrends-alerter"),
            "--metrics-address",
            f"127.0.0.1:{settings.alerter_metrics_port}",
        ],
        "dashboard": lambda: [
            sys.executable,
            "-m",
            "dashboard.server",
            "--port",
            str(settings.dashboard_port),
        ],
        "ingest": lambda: [cargo_bin.installed_or_built("sparktrends-ingest"), *ingest_args],
    }
    return [
        services.ProcessService(name, commands[name](), log_path=stack.LOGS / f"pipeline-{name}.log", cwd=REPO)
        for name in COMPONENTS
        if name in names
    ]


COUNTS = """
    SELECT (SELECT count(*) FROM bars_1m), (SELECT count(*) FROM metrics_1m), (SELECT count(*) FROM anomalies),
           (SELECT count(*) FROM anomalies WHERE status = 'delivered'), (SELECT count(*) FROM rejected_messages),
           (SELECT count(DISTINCT symbol) FROM bars_1m), (SELECT max(ts) FROM metrics_1m)
"""


def report(started: float) -> None:
    import migrate

    try:
        with migrate.connect() as conn:
            bars, metrics, anomalies, delivered, rejects, symbols, latest = conn.execute(COUNTS).fetchone()
    except Exception as err:  # the database may restart under us; say so and keep going
        print(f"pipeline: (database not reachable: {type(err).__name__})", flush=True)
        return
    print(
        f"pipeline: {time.monotonic() - started:5.0f}s  bars={bars} metrics={metrics} anomalies={anomalies} "
        f"(alerted {delivered}) rejects={rejects} symbols={symbols} latest_metric={latest}",
        flush=True,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default=os.environ.get("SOURCE", "synthetic"))
    parser.add_argument("--for", dest="duration", type=float, default=None, help="stop after this many seconds")
    parser.add_argument("--every", type=float, default=10.0, help="seconds between progress lines")
    parser.add_argument("--components", default=",".join(COMPONENTS), help="comma-separated subset to run")
    parser.add_argument(
        "--external-stack", action="store_true", help="services are not the local stack's (compose): use the env"
    )
    parser.add_argument("--no-restart", action="store_true", help="end the pipeline when a component dies")
    parser.add_argument("source_args", nargs="*", help="extra arguments for sparktrends-ingest <source>")
    args = parser.parse_args()

    env = dict(os.environ)
    if not args.external_stack:
        s = stack.settings()
        down = [name for name, up, *_ in stack.service_rows(s) if not up]
        if down:
            print(f"pipeline: the stack is not up ({', '.join(down)} down): run `make up` first", file=sys.stderr)
            return 2
        env.update({**s.client_env(), **stack.spark_env(s)})
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.setdefault("SPARKTRENDS_CHECKPOINTS", str(stack.STACK / "checkpoints"))
    env.setdefault("SPARK_MASTER_UI", "http://127.0.0.1:8080")
    os.environ.update(env)
    stack.LOGS.mkdir(parents=True, exist_ok=True)

    parts = components(args.components.split(","), args.source, args.source_args)
    dashboard = f"http://127.0.0.1:{stack.settings().dashboard_port}/"
    print(
        f"pipeline: source={args.source}; dashboard {dashboard} ; Spark master UI {env['SPARK_MASTER_UI']}, "
        "driver UIs from :4040",
        flush=True,
    )
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    started = time.monotonic()
    supervisor = services.Supervisor(parts, env, say=lambda line: print(f"pipeline: {line}", flush=True))
    try:
        supervisor.start()
        last_report = last_rotation = 0.0
        while not stopping and (args.duration is None or time.monotonic() - started < args.duration):
            dead = supervisor.dead()
            if dead and args.no_restart:
                for part in dead:
                    print(f"pipeline: {part.name} exited ({part.returncode}); see {part.describe()}", file=sys.stderr)
                return 1
            supervisor.tick()
            if time.monotonic() - last_report >= args.every:
                report(started)
                last_report = time.monotonic()
            if time.monotonic() - last_rotation >= LOG_CHECK_S:
                for path in logfiles.rotate(stack.LOGS):
                    print(f"pipeline: rotated {path.name} (over {logfiles.MAX_BYTES // 2**20} MB)", flush=True)
                last_rotation = time.monotonic()
            time.sleep(0.5)
    finally:
        supervisor.stop()  # ingest first (started last), so the jobs see the last messages
        report(started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
