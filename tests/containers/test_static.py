"""Static checks of the containers (there is no Docker engine here): the Dockerfile passes hadolint, the compose
file validates against the compose-spec schema, and nothing the containers run, expose or pin has drifted from
what the local stack runs and tests."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pipeline
import pytest
import yaml

import jars
import logfiles
import stack
import topics

REPO = Path(__file__).resolve().parent.parent.parent
DOCKERFILE = REPO / "spark-image" / "Dockerfile"
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
PINS = jars.read_pins()
ONE_SHOT = {"migrate", "topic-init", "cluster-secrets"}
# Every service that runs a Spark JVM: the daemons, the drivers (runner) and, inside the workers, the executors.
SPARK_PROCESSES = ("spark-master", "spark-worker", "runner")


def tool(name: str) -> str:
    path = shutil.which(name) or str(Path(sys.executable).parent / name)
    assert Path(path).exists(), f"{name} is not installed (requirements-dev.txt)"
    return path


def test_dockerfile_passes_hadolint():
    result = subprocess.run([tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_matches_the_compose_spec():
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(REPO / "docker-compose.yml")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_versions_come_from_the_pin_file():
    dockerfile = DOCKERFILE.read_text()
    assert re.search(rf"^ARG SPARK_VERSION={re.escape(PINS['SPARK_VERSION'])}$", dockerfile, re.M)
    assert "FROM apache/spark:${SPARK_VERSION}-scala" + PINS["SCALA_BINARY_VERSION"] in dockerfile
    assert SERVICES["spark-master"]["build"]["args"]["SPARK_VERSION"] == PINS["SPARK_VERSION"]
    assert SERVICES["kafka"]["image"] == f"apache/kafka:{PINS['KAFKA_BROKER_VERSION']}"
    assert SERVICES["postgres"]["image"] == f"postgres:{PINS['POSTGRES_MAJOR']}"
    # The jars are fetched and SHA-256-checked by the same module (and pins) as the local stack's.
    assert "COPY versions.env ./" in dockerfile
    assert "RUN python3 scripts/jars.py fetch /opt/spark/jars" in dockerfile


def test_postgres_volume_is_where_its_major_version_keeps_data():
    # Up to 17 the official image keeps PGDATA in /var/lib/postgresql/data; 18 moved it to a versioned path.
    assert int(PINS["POSTGRES_MAJOR"]) < 18
    assert "pgdata:/var/lib/postgresql/data" in SERVICES["postgres"]["volumes"][0]


def test_kafka_broker_is_configured_like_the_local_one(tmp_path, monkeypatch):
    monkeypatch.setattr(stack, "CONF", tmp_path)
    local = dict(
        line.split("=", 1) for line in stack.kafka_config(stack.settings()).read_text().splitlines() if "=" in line
    )
    env = SERVICES["kafka"]["environment"]
    addressing = {"listeners", "advertised.listeners", "controller.quorum.voters", "log.dirs"}
    for key, value in local.items():
        if key in addressing:
            continue
        compose_key = "KAFKA_" + key.upper().replace(".", "_")
        assert str(env.get(compose_key)) == value, f"{compose_key}: compose {env.get(compose_key)!r}, local {value!r}"


def test_spark_services_run_the_local_stack_classes_and_ports():
    master, worker = SERVICES["spark-master"]["command"], SERVICES["spark-worker"]["command"]
    defaults = stack.settings()
    assert master[:2] == ["spark-class", "org.apache.spark.deploy.master.Master"]
    assert worker[:2] == ["spark-class", "org.apache.spark.deploy.worker.Worker"]
    assert master[master.index("--port") + 1] == str(defaults.master_port)
    assert master[master.index("--webui-port") + 1] == str(defaults.master_ui_port)
    assert worker[worker.index("--webui-port") + 1] == str(defaults.worker_ui_port)
    assert worker[2] == f"spark://spark-master:{defaults.master_port}"
    assert f"{LOOPBACK}:{defaults.master_ui_port}:{defaults.master_ui_port}" in SERVICES["spark-master"]["ports"]
    assert SERVICES["spark-worker"]["environment"]["SPARK_WORKER_OPTS"] == stack.WORKER_CLEANUP_OPTS
    recovery = "/var/lib/sparktrends/spark-recovery"
    assert SERVICES["spark-master"]["environment"]["SPARK_MASTER_OPTS"] == stack.master_recovery_opts(recovery)
    assert any(v.endswith(f":{recovery}") for v in SERVICES["spark-master"]["volumes"]), "recovery state on a volume"
    # Scalable workers: no fixed name, no published host port.
    assert "container_name" not in SERVICES["spark-worker"] and "ports" not in SERVICES["spark-worker"]


def test_every_command_is_one_the_local_stack_runs():
    for name in ("migrate", "topic-init"):
        cmd = SERVICES[name]["command"]
        assert cmd[0] == "python3" and (REPO / cmd[1]).is_file(), cmd
    assert SERVICES["migrate"]["command"][1] == "scripts/migrate.py"
    assert SERVICES["topic-init"]["command"][1] == "scripts/topics.py"
    assert Path(topics.TOPICS_FILE) == REPO / "contracts" / "topics.json"

    runner = SERVICES["runner"]["command"]
    assert runner[:2] == ["python3", "scripts/pipeline.py"]
    names = runner[runner.index("--components") + 1].split(",")
    assert set(names) <= set(pipeline.COMPONENTS)
    for component in pipeline.components(names, "synthetic", []):
        assert component.cmd[0].endswith("scripts/submit.sh")
        assert (REPO / "spark_jobs" / f"{component.cmd[1]}.py").is_file()
    assert SERVICES["runner"]["environment"]["SPARK_MASTER_URL"].startswith("spark://spark-master:")

    cargo_bins = {
        m.group(1)
        for toml in REPO.glob("crates/*/Cargo.toml")
        for m in re.finditer(r'name = "([^"]+)"', toml.read_text())
    }
    assert "sparktrends-ingest" in SERVICES["ingest"]["command"][-1]
    assert {"sparktrends-ingest", "sparktrends-alerter"} <= cargo_bins
    assert SERVICES["alerter"]["command"] == ["sparktrends-alerter"]
    assert "pipeline.py" in (REPO / "Makefile").read_text(), "make run must use the same pipeline script"


def test_the_dashboard_is_the_one_make_run_starts_on_the_same_port():
    defaults = stack.settings()
    command = SERVICES["dashboard"]["command"]
    assert command[:3] == ["python3", "-m", "dashboard.server"]
    port = command[command.index("--port") + 1]
    assert port == str(defaults.dashboard_port)
    assert SERVICES["dashboard"]["ports"] == [f"{LOOPBACK}:{port}:{port}"]
    assert '"dashboard.server"' in (REPO / "scripts" / "pipeline.py").read_text()


def test_ingest_and_the_alerter_serve_metrics_on_the_local_stacks_ports():
    defaults = stack.settings()
    for service, variable, port in [
        ("ingest", "SPARKTRENDS_INGEST_METRICS_ADDRESS", defaults.ingest_metrics_port),
        ("alerter", "ALERTER_METRICS_ADDRESS", defaults.alerter_metrics_port),
    ]:
        assert SERVICES[service]["environment"][variable] == f"0.0.0.0:{port}"
        assert SERVICES[service]["ports"] == [f"{LOOPBACK}:{port}:{port}"]
    # The same variables are the binaries' own (clap `env`).
    assert 'env = "SPARKTRENDS_INGEST_METRICS_ADDRESS"' in (REPO / "crates/ingest/src/cli.rs").read_text()
    assert 'env = "ALERTER_METRICS_ADDRESS"' in (REPO / "crates/alerter/src/cli.rs").read_text()


@pytest.mark.parametrize(
    ("secret", "allowed"),
    [
        # The owner's password: schema changes and roles. The components get the application role's.
        ("POSTGRES_PASSWORD", {"postgres", "migrate"}),
        ("SPARKTRENDS_APP_PASSWORD", {"migrate", "cluster-secrets", "runner", "alerter", "dashboard"}),
        ("SLACK_WEBHOOK", {"alerter"}),
        ("FINNHUB_API_KEY", {"ingest"}),
        ("TWELVE_DATA_API_KEY", {"ingest"}),
        ("BINANCE_API_KEY", {"ingest"}),
    ],
)
def test_each_service_gets_only_its_own_secrets(secret, allowed):
    """By the .env variable a value comes from, whatever the name it is given inside the container."""
    holders = {
        name
        for name, svc in SERVICES.items()
        if any(
            f"${{{secret}:" in str(value) or f"${{{secret}}}" in str(value)
            for value in (svc.get("environment") or {}).values()
        )
    }
    assert holders == allowed
    assert secret not in DOCKERFILE.read_text(), "secrets are never baked into the image"


def test_components_connect_to_postgres_as_the_application_role():
    for name in ("runner", "alerter"):
        assert SERVICES[name]["environment"]["POSTGRES_USER"].startswith("${SPARKTRENDS_APP_USER"), name
    assert SERVICES["migrate"]["environment"]["POSTGRES_USER"].startswith("${POSTGRES_USER"), "the owner migrates"
    assert SERVICES["runner"]["environment"]["PGPASSFILE"].startswith(
        SERVICES["runner"]["environment"]["SPARK_CONF_DIR"]
    )


def test_every_service_log_is_bounded_like_the_local_stacks():
    for name, service in SERVICES.items():
        options = service["logging"]["options"]
        assert options["max-size"] == f"{logfiles.MAX_BYTES // 2**20}m", name
        assert int(options["max-file"]) == logfiles.KEEP + 1, name  # the live file and KEEP rotated ones


def test_env_example_documents_every_variable_compose_reads():
    used = set(re.findall(r"\$\{([A-Z_]+)[:}]", (REPO / "docker-compose.yml").read_text()))
    documented = {line.split("=")[0] for line in (REPO / ".env.example").read_text().splitlines() if "=" in line}
    assert used <= documented, f"undocumented in .env.example: {sorted(used - documented)}"


def test_health_gated_start_order():
    for name, svc in SERVICES.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            wanted = "service_completed_successfully" if dep in ONE_SHOT else None
            if wanted:
                assert cond["condition"] == wanted
            elif "healthcheck" in SERVICES[dep]:
                assert cond["condition"] == "service_healthy", f"{name} -> {dep}"


LOOPBACK = "${SPARKTRENDS_PUBLISH_ADDRESS:-127.0.0.1}"


def test_published_ports_bind_loopback_unless_the_user_opts_in():
    published = {name: service.get("ports", []) for name, service in SERVICES.items() if service.get("ports")}
    assert published, "some ports are published"
    for name, ports in published.items():
        assert all(str(p).startswith(f"{LOOPBACK}:") for p in ports), (name, ports)
    # Spark RPC is authenticated but not TLS: the master's port is never published, not even on loopback.
    assert not any(str(p).endswith(":7077") for ports in published.values() for p in ports)


def test_every_spark_process_reads_rpc_authentication_from_the_cluster_secrets_volume():
    writer = SERVICES["cluster-secrets"]
    conf_dir = writer["command"][-1]
    # stack.py's own function writes it, so compose and the local stack set the same properties (tests/scripts).
    assert writer["command"] == ["python3", "scripts/stack.py", "cluster-secrets", conf_dir]
    assert f"spark-conf:{conf_dir}" in writer["volumes"]
    for name in SPARK_PROCESSES:
        service = SERVICES[name]
        assert service["environment"]["SPARK_CONF_DIR"] == conf_dir, name
        assert f"spark-conf:{conf_dir}:ro" in service["volumes"], name
        assert service["depends_on"]["cluster-secrets"]["condition"] == "service_completed_successfully", name
    holders = {
        name
        for name, service in SERVICES.items()
        if any(str(volume).startswith("spark-conf:") for volume in service.get("volumes", []))
    }
    assert holders == {"cluster-secrets", *SPARK_PROCESSES}, "only Spark's processes can read the secret"
    # A new volume takes the owner and mode of the image's mount point: the spark user, 0700.
    dockerfile = DOCKERFILE.read_text()
    assert f"chmod 0700 {conf_dir}" in dockerfile and conf_dir in dockerfile.split("chown -R 185:185", 1)[1]


def code_lines(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))


@pytest.mark.parametrize("word", ["spark.authenticate", "spark.network.crypto", "_SPARK_AUTH_SECRET"])
def test_spark_rpc_security_is_never_on_a_command_line_nor_in_the_image(word):
    # A --conf or -D flag (SPARK_*_OPTS, SPARK_SUBMIT_OPTS_EXTRA) shows in `ps` to every user of the machine, and
    # one in the image or .env would be the same secret everywhere: the settings live in the cluster-secrets volume
    # only.
    for path in (REPO / "docker-compose.yml", DOCKERFILE, REPO / "scripts" / "submit.sh", REPO / ".env.example"):
        assert word not in code_lines(path), f"{word} in {path.name}"


def test_the_build_context_leaves_secrets_and_state_out():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".env", ".stack", ".venv", ".bench", "target", ".git"} <= ignored


def test_long_running_services_restart_and_one_shot_ones_do_not():
    for name, service in SERVICES.items():
        expected = "no" if name in ONE_SHOT else "unless-stopped"
        assert service.get("restart") == expected, name
