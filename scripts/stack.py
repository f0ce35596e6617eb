"""The local SparkTrends stack: PostgreSQL, Apache Kafka (KRaft) and a Spark standalone cluster on loopback.

    python scripts/stack.py deps     resolve the broker classpath and the Spark connector jars (Maven)
    python scripts/stack.py up       start what is not running, apply migrations, create topics
    python scripts/stack.py status   one line per service: state, pid, endpoint
    python scripts/stack.py down     stop everything this stack started
    python scripts/stack.py logs [service] [-f]
    python scripts/stack.py cluster-secrets DIR   DIR/spark-defaults.conf (Spark RPC authentication) and DIR/pgpass
                                                  (the executors' PostgreSQL password): compose's init step

All state and logs live under .stack/ (git-ignored). Versions come from versions.env, ports and
credentials from the environment (see `settings()`), so the same file drives CI and a laptop.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))  # sibling modules: jars, migrate, topics

import jars  # noqa: E402
import logfiles  # noqa: E402
import services  # noqa: E402

STACK = Path(os.environ.get("SPARKTRENDS_STACK_DIR", REPO / ".stack"))
CACHE = Path(os.environ.get("SPARKTRENDS_CACHE", Path.home() / ".cache" / "sparktrends"))
LOGS, RUN, DATA, CONF = STACK / "logs", STACK / "run", STACK / "data", STACK / "conf"


class StackError(RuntimeError):
    """A failure the user can act on; printed without a traceback."""


def log(msg: str) -> None:
    print(f"stack: {msg}", flush=True)


# --------------------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class Settings:
    pins: dict[str, str]
    pg_port: int
    pg_user: str  # the owner: migrations, and tests that set up their own databases
    pg_password: str
    pg_db: str
    app_user: str  # every component (jobs, ingest, alerter): rows only, no DDL (scripts/migrate.py grants)
    app_password: str
    kafka_port: int
    kafka_controller_port: int
    master_port: int
    master_ui_port: int
    worker_ui_port: int
    dashboard_port: int  # the read API and dashboard (dashboard/server.py), which `make run` starts
    ingest_metrics_port: int  # Prometheus endpoints of `make run`'s ingest and alerter (docs/api.md)
    alerter_metrics_port: int
    worker_cores: int
    worker_memory: str

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    def client_env(self) -> dict[str, str]:
        """What a component of the pipeline (a job, ingest, the alerter) needs in its environment: it connects
        to PostgreSQL as the application role."""
        return {
            "POSTGRES_HOST": "127.0.0.1",
            "POSTGRES_PORT": str(self.pg_port),
            "POSTGRES_USER": self.app_user,
            "POSTGRES_PASSWORD": self.app_password,
            "POSTGRES_DB": self.pg_db,
            "PGPASSFILE": str(CONF / "spark" / PGPASS_FILE),  # for the executors' JDBC driver (executor_pgpass)
            "KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "SPARK_MASTER_URL": self.master_url,
            "SPARK_MASTER_UI": f"http://127.0.0.1:{self.master_ui_port}",
            "SPARKTRENDS_DASHBOARD_PORT": str(self.dashboard_port),
        }

    def owner_env(self) -> dict[str, str]:
        """client_env as the database owner, with the application role's name and password: what migrations
        (which create and grant that role) and a test's or benchmark's own database set-up need."""
        return {
            **self.client_env(),
            "POSTGRES_USER": self.pg_user,
            "POSTGRES_PASSWORD": self.pg_password,
            "SPARKTRENDS_APP_USER": self.app_user,
            "SPARKTRENDS_APP_PASSWORD": self.app_password,
        }


def settings() -> Settings:
    env = os.environ.get
    return Settings(
        pins=jars.read_pins(),
        pg_port=int(env("POSTGRES_PORT", "55432")),
        pg_user=env("POSTGRES_USER", "sparktrends"),
        # A loopback-only development default; set POSTGRES_PASSWORD to override it.
        pg_password=env("POSTGRES_PASSWORD", "sparktrends-local"),
        pg_db=env("POSTGRES_DB", "sparktrends"),
        app_user=env("SPARKTRENDS_APP_USER", "sparktrends_app"),
        # Loopback-only like the owner's; set SPARKTRENDS_APP_PASSWORD to override it.
        app_password=env("SPARKTRENDS_APP_PASSWORD", "sparktrends-app-local"),
        kafka_port=int(env("KAFKA_PORT", "9092")),
        kafka_controller_port=int(env("KAFKA_CONTROLLER_PORT", "9093")),
        master_port=int(env("SPARK_MASTER_PORT", "7077")),
        master_ui_port=int(env("SPARK_MASTER_WEBUI_PORT", "8080")),
        worker_ui_port=int(env("SPARK_WORKER_WEBUI_PORT", "8081")),
        dashboard_port=int(env("SPARKTRENDS_DASHBOARD_PORT", "8050")),
        ingest_metrics_port=int(env("SPARKTRENDS_INGEST_METRICS_PORT", "9464")),
        alerter_metrics_port=int(env("SPARKTRENDS_ALERTER_METRICS_PORT", "9465")),
        # More slots than physical cores on purpose: the pipeline runs several small streaming
        # applications at once and each needs an executor core of its own.
        worker_cores=int(env("SPARK_WORKER_CORES", "6")),
        worker_memory=env("SPARK_WORKER_MEMORY", "6g"),
    )


# --------------------------------------------------------------------------- dependencies


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def maven_copy(deps: list[tuple[str, str, str]], dest: Path) -> None:
    """Resolve `deps` and their runtime dependencies from Maven Central into `dest` (mvn copy-dependencies)."""
    if shutil.which("mvn") is None:
        raise StackError("Maven (mvn) is not installed: run scripts/bootstrap.sh")
    work = dest.parent / f".{dest.name}.resolve"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    dep_xml = "".join(
        f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version></dependency>"
        for g, a, v in deps
    )
    (work / "pom.xml").write_text(
        '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
        "<groupId>sparktrends</groupId><artifactId>resolve</artifactId><version>1</version>"
        f"<packaging>pom</packaging><dependencies>{dep_xml}</dependencies></project>"
    )
    settings_xml, pom = REPO / "scripts" / "maven-settings.xml", work / "pom.xml"
    cmd = ["mvn", "-q", "-B", "-s", str(settings_xml), "-f", str(pom), "dependency:copy-dependencies",
           "-DincludeScope=runtime", f"-DoutputDirectory={work / 'out'}"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"Maven resolution failed:\n{result.stdout[-3000:]}{result.stderr[-2000:]}")
    shutil.rmtree(dest, ignore_errors=True)
    (work / "out").rename(dest)
    shutil.rmtree(work, ignore_errors=True)


def kafka_libs(pins: dict[str, str]) -> Path:
    version = pins["KAFKA_BROKER_VERSION"]
    libs = CACHE / f"kafka_2.13-{version}" / "libs"
    if not (libs / f"kafka_2.13-{version}.jar").exists():
        log(f"resolving the Apache Kafka {version} broker classpath from Maven Central ...")
        # Kafka's own distribution logs through slf4j-reload4j; without a binding the broker logs nothing.
        maven_copy(
            [("org.apache.kafka", "kafka_2.13", version), ("org.slf4j", "slf4j-reload4j", "1.7.36")],
            libs,
        )
        log(f"kafka broker classpath: {len(list(libs.glob('*.jar')))} jars in {libs}")
    return libs


def install_connector_jars(pins: dict[str, str]) -> None:
    """Put the connector jars into $SPARK_HOME/jars: the layout of the Docker image, so master, worker,
    driver and executors all see them without per-job --jars flags."""
    target = spark_home() / "jars"
    try:
        cached = jars.fetch(CACHE / f"spark-jars-{pins['SPARK_VERSION']}", pins)
    except (jars.JarError, OSError) as err:
        raise StackError(f"Spark connector jars: {err}") from err
    for jar in cached:
        dest = target / jar.name
        if not dest.exists():
            shutil.copy2(jar, dest)


def cmd_deps(_: argparse.Namespace) -> None:
    s = settings()
    check_java()
    kafka_libs(s.pins)
    install_connector_jars(s.pins)
    log("dependencies ready")


# --------------------------------------------------------------------------- process helpers


def check_java() -> None:
    java = shutil.which("java")
    if java is None:
        raise StackError("Java is not installed (Kafka and Spark need Java 17): run scripts/bootstrap.sh")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    match = re.search(r'version "(\d+)', out)
    if not match or int(match.group(1)) < 17:
        raise StackError(f"Java 17 or newer is required, found: {out.splitlines()[0] if out else '?'}")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive: it only waits to be reaped.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def wait_until(what: str, check: Callable[[], bool], timeout: float, log_file: Path, pid: int | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not pid_alive(pid):
            raise StackError(f"{what} exited during start-up; last lines of {log_file}:\n{tail(log_file, 25)}")
        time.sleep(0.5)
    raise StackError(f"{what} did not come up within {timeout:.0f}s; last lines of {log_file}:\n{tail(log_file, 25)}")


def tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


def require_free(port: int, service: str, env_name: str) -> None:
    if port_open(port):
        raise StackError(
            f"port {port} ({service}) is already in use by another process: stop it, or set {env_name} to a free port"
        )


def spawn(name: str, cmd: list[str], env: dict[str, str] | None = None) -> int:
    """Start a long-running service detached from this process, logging to .stack/logs/<name>.log."""
    log_path = LOGS / f"{name}.log"
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=STACK,
        )
    (RUN / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def terminate(name: str, grace: float = 30.0) -> bool:
    pid_file = RUN / f"{name}.pid"
    pid = read_pid(pid_file)
    if not pid_alive(pid):
        pid_file.unlink(missing_ok=True)
        return False
    assert pid is not None
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.3)
    if pid_alive(pid):
        log(f"{name} ignored SIGTERM for {grace:.0f}s; killing it")
        os.killpg(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


# --------------------------------------------------------------------------- PostgreSQL


def pg_bindir() -> Path:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise StackError("PostgreSQL server binaries not found: run scripts/bootstrap.sh (installs Debian's postgresql)")


def pg_runner() -> list[str]:
    """initdb and postgres refuse to run as root; as root, run them as the `postgres` system user."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
            check=True,
        )
    return ["runuser", "-u", "postgres", "--"]


def grant_traverse(path: Path) -> None:
    """Let the postgres user reach its data directory inside a root-owned checkout (e.g. a 0700 mktemp dir):
    add only the search bit to ancestors that lack it."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            os.chmod(parent, mode | 0o001)


PG_DATA = DATA / "postgres"


def pg_pid() -> int | None:
    return read_pid(PG_DATA / "postmaster.pid")


def pg_healthy(s: Settings) -> bool:
    try:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1",
            port=s.pg_port,
            user=s.pg_user,
            password=s.pg_password,
            dbname="postgres",
            connect_timeout=2,
        ) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except Exception:
        return False


def start_postgres(s: Settings) -> None:
    if pid_alive(pg_pid()) and pg_healthy(s):
        log(f"postgres already running on 127.0.0.1:{s.pg_port}")
    else:
        require_free(s.pg_port, "postgres", "POSTGRES_PORT")
        bindir, runner = pg_bindir(), pg_runner()
        if not (PG_DATA / "PG_VERSION").exists():
            log(f"initialising a private PostgreSQL cluster in {PG_DATA}")
            shutil.rmtree(PG_DATA, ignore_errors=True)
            PG_DATA.mkdir(parents=True)
            pwfile = RUN / "pg.pw"
            pwfile.write_text(s.pg_password + "\n")
            if runner:
                grant_traverse(STACK)
                shutil.chown(PG_DATA, "postgres")
                shutil.chown(pwfile, "postgres")
            pwfile.chmod(0o600)
            try:
                result = subprocess.run(
                    [
                        *runner,
                        str(bindir / "initdb"),
                        "-D",
                        str(PG_DATA),
                        "-U",
                        s.pg_user,
                        f"--pwfile={pwfile}",
                        "--auth=scram-sha-256",
                        "--encoding=UTF8",
                        "--locale=C.UTF-8",
                    ],
                    capture_output=True,
                    text=True,
                )
            finally:
                pwfile.unlink(missing_ok=True)
            if result.returncode != 0:
                raise StackError(f"initdb failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
        log_path = LOGS / "postgres.log"
        if runner:
            log_path.touch()
            shutil.chown(log_path, "postgres")
        # TCP on loopback only; no unix socket, so deep checkout paths cannot hit the socket-path length limit.
        opts = f"-p {s.pg_port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=on"
        result = subprocess.run(
            [
                *runner,
                str(bindir / "pg_ctl"),
                "-D",
                str(PG_DATA),
                "-l",
                str(log_path),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise StackError(f"postgres did not start:\n{result.stdout}{result.stderr}\n{tail(log_path, 20)}")
        wait_until("postgres", lambda: pg_healthy(s), 30, log_path)
        log(f"postgres up on 127.0.0.1:{s.pg_port} (pid {pg_pid()})")
    os.environ.update(s.owner_env())
    import migrate

    if migrate.ensure_database(s.pg_db):
        log(f"created database {s.pg_db}")
    applied = migrate.migrate(s.pg_db)
    log(f"migrations: {', '.join(applied) if applied else 'up to date'}")
    log(f"components connect as {migrate.grant_application_role(s.pg_db)} (rows only, no DDL)")
    executor_pgpass(CONF / "spark", "127.0.0.1", s.pg_port, s.app_user, s.app_password)


def stop_postgres() -> bool:
    if not pid_alive(pg_pid()):
        return False
    subprocess.run(
        [*pg_runner(), str(pg_bindir() / "pg_ctl"), "-D", str(PG_DATA), "-m", "fast", "-w", "stop"],
        capture_output=True,
        text=True,
    )
    return True


# --------------------------------------------------------------------------- Kafka


KAFKA_DATA = DATA / "kafka"


def kafka_config(s: Settings) -> Path:
    conf_dir = CONF / "kafka"
    conf_dir.mkdir(parents=True, exist_ok=True)
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{s.kafka_controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(KAFKA_DATA),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.cleaner.min.compaction.lag.ms": "0",
    }
    path = conf_dir / "server.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    (conf_dir / "log4j.properties").write_text(
        "log4j.rootLogger=INFO, stdout\n"
        "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
        "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
        "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
        "log4j.logger.kafka=INFO\nlog4j.logger.org.apache.kafka=INFO\n"
        "log4j.logger.kafka.request.logger=WARN\nlog4j.logger.state.change.logger=WARN\n"
    )
    return path


def kafka_healthy(s: Settings) -> bool:
    if not port_open(s.kafka_port):
        return False
    try:
        from confluent_kafka.admin import AdminClient

        AdminClient({"bootstrap.servers": s.kafka_bootstrap}).list_topics(timeout=3)
        return True
    except Exception:
        return False


def new_kafka_cluster_id() -> str:
    """A random KRaft cluster id as Kafka's own ``Uuid.randomUuid`` makes it: URL-safe base64 of a
    UUID that never starts with "-" (one in 64 would, and kafka-storage's parser takes it for an
    option: CI failed on exactly that)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def start_kafka(s: Settings) -> None:
    if pid_alive(read_pid(RUN / "kafka.pid")) and kafka_healthy(s):
        log(f"kafka already running on {s.kafka_bootstrap}")
    else:
        require_free(s.kafka_port, "kafka", "KAFKA_PORT")
        require_free(s.kafka_controller_port, "kafka controller", "KAFKA_CONTROLLER_PORT")
        libs, config = kafka_libs(s.pins), kafka_config(s)
        classpath = f"{libs}/*"
        log4j = f"-Dlog4j.configuration=file:{CONF / 'kafka' / 'log4j.properties'}"
        if not (KAFKA_DATA / "meta.properties").exists():
            # KRaft storage is formatted once with a fresh cluster id; later starts reuse it.
            cluster_id = new_kafka_cluster_id()
            KAFKA_DATA.mkdir(parents=True, exist_ok=True)
            result = subprocess.run(
                [
                    "java",
                    log4j,
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    # "=" form: an id is an argument even if a tool's parser would read it as an option
                    f"--cluster-id={cluster_id}",
                    "-c",
                    str(config),
                ],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise StackError(f"kafka storage format failed:\n{result.stdout}{result.stderr}")
            log(f"formatted KRaft storage in {KAFKA_DATA} (cluster {cluster_id})")
        pid = spawn(
            "kafka",
            [
                "java",
                "-Xms256m",
                "-Xmx768m",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                log4j,
                "-cp",
                classpath,
                "kafka.Kafka",
                str(config),
            ],
        )
        wait_until("kafka", lambda: kafka_healthy(s), 90, LOGS / "kafka.log", pid)
        log(f"kafka up on {s.kafka_bootstrap} (pid {pid})")
    create_topics(s)


def create_topics(s: Settings) -> None:
    import topics

    created = topics.create_topics(s.kafka_bootstrap)
    log(f"created topics {', '.join(created)}" if created else f"topics: all {len(topics.topic_specs())} present")


# --------------------------------------------------------------------------- Spark standalone


# The worker deletes the work directories (the application's jars, zip and executor logs) of applications that
# stopped more than a day ago: each restart of a streaming job is a new application, so without this spark-work/
# grows with every restart. Compose's worker reads the same value (a static test compares them).
WORKER_CLEANUP_OPTS = (
    "-Dspark.worker.cleanup.enabled=true -Dspark.worker.cleanup.interval=1800 -Dspark.worker.cleanup.appDataTtl=86400"
)


def master_recovery_opts(directory: str | Path) -> str:
    """The master keeps its applications and workers in `directory` and reads them back when it restarts: without
    it, a restarted master does not know the running applications, tells their worker to kill their executors,
    and every streaming job stalls with no executors (the chaos run found it). Compose's master reads the same
    value for its volume (a static test compares them)."""
    return f"-Dspark.deploy.recoveryMode=FILESYSTEM -Dspark.deploy.recoveryDirectory={directory}"


MASTER_RECOVERY_DIR = DATA / "spark-recovery"
# A restarted master waits this long at most for its workers and applications to answer before it is ALIVE.
MASTER_RECOVERY_TIMEOUT_S = 120


# Spark RPC security for every process of the cluster: master, workers, drivers (spark-submit) and executors.
# Without it, anyone who reaches the master's port can start executors that run their code as the worker's user.
# The standalone master takes one secret shared by all of them, and Spark 4.0 accepts it in standalone mode only
# as the property spark.authenticate.secret (spark.authenticate.secret.file is Kubernetes-only). It therefore
# lives in $SPARK_CONF_DIR/spark-defaults.conf, mode 0600, which the Master and Worker daemons and spark-submit
# all load without a flag; a worker hands it to its executors in their environment (_SPARK_AUTH_SECRET), never on
# a command line. Compose writes the same file with the same function (`stack.py cluster-secrets DIR`).
SPARK_DEFAULTS_FILE = "spark-defaults.conf"
SPARK_AUTH_SECRET = "spark.authenticate.secret"
SPARK_RPC_SECURITY = {
    "spark.authenticate": "true",
    # AES encryption of every RPC and block transfer, keys from the version-2 key agreement (version 1 is kept by
    # Spark for old peers only); no fallback to the older SASL DIGEST-MD5 handshake. The cipher stays Spark's
    # default AES/CTR: AES/GCM loses messages in 4.0.0 (a worker never registers; SPARK-56227, fixed after 4.0.0).
    "spark.network.crypto.enabled": "true",
    "spark.network.crypto.authEngineVersion": "2",
    "spark.network.crypto.saslFallback": "false",
}


def read_properties(path: Path) -> dict[str, str]:
    """`key value` / `key=value` lines as spark-defaults.conf has them (comments and blank lines skipped)."""
    props = {}
    for line in path.read_text().splitlines():
        match = re.match(r"\s*([^\s#!=:][^\s=:]*)\s*[\s=:]\s*(.*?)\s*$", line)
        if match:
            props[match.group(1)] = match.group(2)
    return props


def spark_rpc_security_conf(conf_dir: Path) -> Path:
    """conf_dir/spark-defaults.conf with SPARK_RPC_SECURITY and the cluster's shared secret, mode 0600.

    The secret is generated on first use and kept from then on: every running process of the cluster holds it, so
    a new one would lock the running ones out of each other. An older file whose other properties differ is
    rewritten with its secret kept. The secret is never printed."""
    path = conf_dir / SPARK_DEFAULTS_FILE
    existing = read_properties(path) if path.exists() else {}
    secret = existing.get(SPARK_AUTH_SECRET) or secrets.token_hex(32)
    wanted = {**SPARK_RPC_SECURITY, SPARK_AUTH_SECRET: secret}
    if existing == wanted:
        if path.stat().st_mode & 0o777 != 0o600:
            path.chmod(0o600)
        return path
    text = "# Written by scripts/stack.py (spark_rpc_security_conf); keep it 0600, it holds the cluster's secret.\n"
    text += "".join(f"{key} {value}\n" for key, value in wanted.items())
    return write_private(path, text)


def write_private(path: Path, text: str) -> Path:
    """Writes a file that holds a secret: created 0600 under a temporary name and renamed into place, so the
    secret is never readable by others, not even for an instant, and a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # whatever the umask
        out.write(text)
    os.replace(tmp, path)
    return path


# The application role's password for the JDBC driver on the executors. pgjdbc, like libpq, reads the password
# file named by PGPASSFILE; scripts/submit.sh hands that path (not the password) to the executors as
# spark.executorEnv.PGPASSFILE, so no JDBC option carries the password into a task closure or a plan
# (spark_jobs/common.py jdbc_options). It sits beside spark-defaults.conf: where the cluster's secrets are kept.
PGPASS_FILE = "pgpass"


def executor_pgpass(conf_dir: Path, host: str, port: int | str, user: str, password: str) -> Path:
    """conf_dir/pgpass (0600) with one line, `host:port:*:user:password` (":" and "\\" escaped)."""

    def field(value: object) -> str:
        return str(value).replace("\\", "\\\\").replace(":", "\\:")

    line = ":".join([field(host), field(port), "*", field(user), field(password)])
    return write_private(conf_dir / PGPASS_FILE, line + "\n")


def spark_env(s: Settings) -> dict[str, str]:
    conf = CONF / "spark"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "log4j2.properties").write_text(
        "rootLogger.level = info\nrootLogger.appenderRef.stdout.ref = console\n"
        "appender.console.type = Console\nappender.console.name = console\nappender.console.target = SYSTEM_ERR\n"
        "appender.console.layout.type = PatternLayout\n"
        "appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex\n"
        "logger.jetty.name = org.sparkproject.jetty\nlogger.jetty.level = warn\n"
    )
    return {
        "SPARK_HOME": str(spark_home()),
        "SPARK_CONF_DIR": str(conf),
        "SPARK_LOG_DIR": str(LOGS),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOCAL_DIRS": str(DATA / "spark-local"),
        "SPARK_DAEMON_MEMORY": "512m",
        "SPARK_WORKER_OPTS": WORKER_CLEANUP_OPTS,
        "SPARK_MASTER_OPTS": master_recovery_opts(MASTER_RECOVERY_DIR),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }


def master_state(s: Settings) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{s.master_ui_port}/json/", timeout=2) as resp:
            return json.load(resp)
    except Exception:
        return None


def alive_workers(s: Settings) -> int:
    state = master_state(s) or {}
    return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")


def start_spark(s: Settings) -> None:
    start_spark_master(s)
    start_spark_worker(s)


def start_spark_master(s: Settings) -> None:
    env = spark_env(s)
    spark_class = str(spark_home() / "bin" / "spark-class")
    if pid_alive(read_pid(RUN / "spark-master.pid")) and (master_state(s) or {}).get("status") == "ALIVE":
        log(f"spark master already running at {s.master_url}")
        if not (Path(env["SPARK_CONF_DIR"]) / SPARK_DEFAULTS_FILE).exists():
            # Started before RPC authentication existed: its worker and clients must stay unauthenticated like it.
            log("spark master runs WITHOUT RPC authentication: `stack.py down && stack.py up` turns it on")
    else:
        require_free(s.master_port, "spark master", "SPARK_MASTER_PORT")
        require_free(s.master_ui_port, "spark master UI", "SPARK_MASTER_WEBUI_PORT")
        # Only when the master (re)starts: the file's presence is what tells clients and a restarted worker to
        # authenticate, so it must never appear under a master that was started without it.
        spark_rpc_security_conf(Path(env["SPARK_CONF_DIR"]))
        MASTER_RECOVERY_DIR.mkdir(parents=True, exist_ok=True)
        pid = spawn(
            "spark-master",
            [
                spark_class,
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(s.master_port),
                "--webui-port",
                str(s.master_ui_port),
            ],
            env,
        )
        wait_until(
            "spark master",
            lambda: (master_state(s) or {}).get("status") == "ALIVE",
            MASTER_RECOVERY_TIMEOUT_S,
            LOGS / "spark-master.log",
            pid,
        )
        log(
            f"spark master up at {s.master_url}, UI http://127.0.0.1:{s.master_ui_port} (pid {pid}); "
            f"RPC authenticated and encrypted, secret in {Path(env['SPARK_CONF_DIR']) / SPARK_DEFAULTS_FILE}"
        )


def stop_spark_master() -> bool:
    """A deliberate stop: the applications it knew are gone with the stack, so nothing is left to recover (a
    recovery of stale entries would hold the next master in RECOVERING for a minute)."""
    stopped = terminate("spark-master")
    shutil.rmtree(MASTER_RECOVERY_DIR, ignore_errors=True)
    return stopped


def start_spark_worker(s: Settings) -> None:
    env = spark_env(s)
    spark_class = str(spark_home() / "bin" / "spark-class")
    worker_pid = read_pid(RUN / "spark-worker.pid")
    if pid_alive(worker_pid) and alive_workers(s) == 0:
        # A worker outlives a master that died, and registers with the new one on its own within seconds; one
        # that does not within a minute is restarted.
        try:
            wait_until("spark worker to re-register", lambda: alive_workers(s) > 0, 60, LOGS / "spark-worker.log")
            log("spark worker registered again with the restarted master")
        except StackError:
            log("spark worker did not register with the restarted master: restarting it")
            terminate("spark-worker")
    if pid_alive(read_pid(RUN / "spark-worker.pid")) and alive_workers(s) > 0:
        log("spark worker already running")
    else:
        require_free(s.worker_ui_port, "spark worker UI", "SPARK_WORKER_WEBUI_PORT")
        work_dir = DATA / "spark-work"
        work_dir.mkdir(parents=True, exist_ok=True)
        pid = spawn(
            "spark-worker",
            [
                spark_class,
                "org.apache.spark.deploy.worker.Worker",
                s.master_url,
                "--host",
                "127.0.0.1",
                "--webui-port",
                str(s.worker_ui_port),
                "--cores",
                str(s.worker_cores),
                "--memory",
                s.worker_memory,
                "--work-dir",
                str(work_dir),
            ],
            env,
        )
        wait_until("spark worker", lambda: alive_workers(s) > 0, 60, LOGS / "spark-worker.log", pid)
        log(
            f"spark worker up ({s.worker_cores} cores, {s.worker_memory}), UI http://127.0.0.1:{s.worker_ui_port} "
            f"(pid {pid})"
        )


# --------------------------------------------------------------------------- verbs


def cmd_up(_: argparse.Namespace) -> None:
    s = settings()
    check_java()
    for d in (LOGS, RUN, DATA, CONF):
        d.mkdir(parents=True, exist_ok=True)
    logfiles.rotate(LOGS)  # the long-running runner (pipeline.py) rotates them while it runs
    install_connector_jars(s.pins)
    started = time.monotonic()
    for daemon in daemons(s):
        daemon.start()
    (STACK / "env").write_text("".join(f"{k}={v}\n" for k, v in s.client_env().items() if k != "POSTGRES_PASSWORD"))
    log(f"stack up in {time.monotonic() - started:.0f}s")
    print_status(s)


def cmd_down(_: argparse.Namespace) -> None:
    stopped = [daemon.name for daemon in reversed(daemons(settings())) if daemon.stop()]
    log(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")


@dataclasses.dataclass
class Daemon:
    """A service of the local stack (scripts/services.py's notion): a process that outlives the command that
    started it, its pid in .stack/run, its log in .stack/logs/<name>.log."""

    name: str
    settings: Settings
    endpoint: str
    port: int  # the port a health check talks to, named when the process runs but does not answer
    starter: Callable[[Settings], None]
    stopper: Callable[[], bool]
    pid_of: Callable[[], int | None]
    check: Callable[[], str | None]  # what a healthy one reports, None when it does not answer

    def start(self, env: Mapping[str, str] | None = None) -> None:
        self.starter(self.settings)

    def stop(self, grace: float = 30.0) -> bool:
        return self.stopper()

    def alive(self) -> bool:
        return pid_alive(self.pid_of())

    def health(self) -> services.Health:
        pid = self.pid_of()
        detail = self.check() if pid_alive(pid) else None
        return (
            services.Health(True, detail)
            if detail
            else services.Health(False, describe_down(pid, self.port, self.name))
        )

    def describe(self) -> str:
        health = self.health()
        return status_line(self.name, health.up, str(self.pid_of() or "-"), self.endpoint, health.detail)


def daemons(s: Settings) -> list[Daemon]:
    """The stack's services in start order."""

    def master_check() -> str | None:
        state = master_state(s) or {}
        return f"ALIVE, {len(state.get('activeapps', []))} running apps" if state.get("status") == "ALIVE" else None

    def worker_check() -> str | None:
        workers = alive_workers(s)
        return f"registered with the master ({s.worker_cores} cores)" if workers else None

    def pid_file(name: str) -> Callable[[], int | None]:
        return lambda: read_pid(RUN / f"{name}.pid")

    return [
        Daemon("postgres", s, f"127.0.0.1:{s.pg_port} db={s.pg_db}", s.pg_port, start_postgres, stop_postgres, pg_pid,
               lambda: "accepting connections" if pg_healthy(s) else None),
        Daemon("kafka", s, s.kafka_bootstrap, s.kafka_port, start_kafka, lambda: terminate("kafka", grace=45),
               pid_file("kafka"), lambda: "broker answers metadata" if kafka_healthy(s) else None),
        Daemon("spark-master", s, f"{s.master_url}  UI http://127.0.0.1:{s.master_ui_port}", s.master_ui_port,
               start_spark_master, stop_spark_master, pid_file("spark-master"), master_check),
        Daemon("spark-worker", s, f"UI http://127.0.0.1:{s.worker_ui_port}", s.worker_ui_port, start_spark_worker,
               lambda: terminate("spark-worker"), pid_file("spark-worker"), worker_check),
    ]  # fmt: skip


def service_rows(s: Settings) -> list[tuple[str, bool, str, str, str]]:
    """(service, healthy, pid, endpoint, detail) for each service."""
    rows = []
    for daemon in daemons(s):
        health = daemon.health()
        rows.append((daemon.name, health.up, str(daemon.pid_of() or "-"), daemon.endpoint, health.detail))
    return rows


def describe_down(pid: int | None, port: int, name: str) -> str:
    if pid is None:
        return "not started"
    if not pid_alive(pid):
        return f"DOWN: process {pid} is not running (see .stack/logs/{name}.log)"
    if not port_open(port):
        return f"process {pid} runs but port {port} is closed"
    return f"process {pid} runs but does not answer its health check"


def status_line(name: str, up: bool, pid: str, endpoint: str, detail: str, width: int = 0) -> str:
    """One service's line of `status` (and of Daemon.describe): `width` aligns the endpoints of a table."""
    return f"{name:<13} {'UP  ' if up else 'DOWN'}  pid {pid:<8} {endpoint:<{width}}  {detail}"


def print_status(s: Settings) -> bool:
    rows = service_rows(s)
    width = max(len(r[3]) for r in rows)
    for row in rows:
        print(f"  {status_line(*row, width=width)}")
    print(f"  logs: {LOGS}")
    return all(r[1] for r in rows)


def cmd_status(_: argparse.Namespace) -> int:
    return 0 if print_status(settings()) else 1


def cmd_logs(args: argparse.Namespace) -> None:
    names = [args.service] if args.service else [daemon.name for daemon in daemons(settings())]
    paths = [LOGS / f"{n}.log" for n in names]
    if args.follow:
        os.execvp("tail", ["tail", "-n", "20", "-F", *map(str, paths)])
    for path in paths:
        print(f"==> {path} <==\n{tail(path, args.lines)}\n")


def cmd_cluster_secrets(args: argparse.Namespace) -> None:
    """Compose's cluster-secrets service: the local stack's files in the volume its master, workers and runner
    mount: Spark RPC security and, from the environment, the executors' PostgreSQL password file."""
    path = spark_rpc_security_conf(Path(args.conf_dir))
    log(f"Spark RPC authentication and encryption: {path} (0600)")
    env = os.environ.get
    if env("SPARKTRENDS_APP_PASSWORD"):
        pgpass = executor_pgpass(
            Path(args.conf_dir), env("POSTGRES_HOST", "postgres"), env("POSTGRES_PORT", "5432"),
            env("SPARKTRENDS_APP_USER", "sparktrends_app"), env("SPARKTRENDS_APP_PASSWORD", ""),
        )  # fmt: skip
        log(f"executors' PostgreSQL password file: {pgpass} (0600)")


def cmd_env(_: argparse.Namespace) -> None:
    # The password is left out on purpose: clients take it from their own environment.
    for key, value in settings().client_env().items():
        if key != "POSTGRES_PASSWORD":
            print(f"export {key}={value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stack", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("deps", help="resolve the Kafka broker and Spark connector jars").set_defaults(func=cmd_deps)
    sub.add_parser("up", help="start the stack (idempotent)").set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop the stack").set_defaults(func=cmd_down)
    sub.add_parser("status", help="health of each service; exit 1 if any is down").set_defaults(func=cmd_status)
    sub.add_parser("env", help="print the client environment as shell exports").set_defaults(func=cmd_env)
    auth = sub.add_parser(
        "cluster-secrets",
        help="write CONF_DIR/spark-defaults.conf (Spark RPC auth, generated secret) and CONF_DIR/pgpass",
    )
    auth.add_argument("conf_dir")
    auth.set_defaults(func=cmd_cluster_secrets)
    logs = sub.add_parser("logs", help="show (or -f follow) service logs")
    logs.add_argument("service", nargs="?", choices=[daemon.name for daemon in daemons(settings())])
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("-n", "--lines", type=int, default=40)
    logs.set_defaults(func=cmd_logs)
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except StackError as err:
        print(f"stack: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
