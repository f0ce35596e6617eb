"""Spark RPC authentication on the local stack: the secret file stack.py writes (0600, generated once, kept), and
that no process of the cluster gets the secret, or the switch that turns authentication on, on its command line
(`ps` shows command lines to every user of the machine). No stack is started: the processes are recorded."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import stack

REPO = Path(__file__).resolve().parents[2]
SECURITY_WORDS = ("spark.authenticate", "spark.network.crypto", "_SPARK_AUTH_SECRET")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def secret_of(conf_dir: Path) -> str:
    return stack.read_properties(conf_dir / stack.SPARK_DEFAULTS_FILE)[stack.SPARK_AUTH_SECRET]


def test_the_file_holds_every_security_property_and_a_generated_secret_readable_by_its_owner_only(tmp_path):
    path = stack.spark_rpc_security_conf(tmp_path / "spark")

    assert path == tmp_path / "spark" / "spark-defaults.conf"
    assert mode(path) == 0o600
    props = stack.read_properties(path)
    assert props["spark.authenticate"] == "true"
    assert {k: props[k] for k in stack.SPARK_RPC_SECURITY} == stack.SPARK_RPC_SECURITY
    assert re.fullmatch(r"[0-9a-f]{64}", props[stack.SPARK_AUTH_SECRET])  # 256 random bits
    assert not list(path.parent.glob(".*")), "no temporary file is left behind"


def test_the_file_is_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        path = stack.spark_rpc_security_conf(tmp_path)
    finally:
        os.umask(old)
    assert mode(path) == 0o600


def test_an_existing_secret_is_kept_and_the_file_not_rewritten(tmp_path):
    # Every running process of the cluster holds the secret: a new one would lock them out of each other.
    first = stack.spark_rpc_security_conf(tmp_path)
    secret, inode, mtime = secret_of(tmp_path), first.stat().st_ino, first.stat().st_mtime_ns

    again = stack.spark_rpc_security_conf(tmp_path)

    assert secret_of(tmp_path) == secret
    assert (again.stat().st_ino, again.stat().st_mtime_ns) == (inode, mtime)


def test_each_cluster_gets_its_own_secret(tmp_path):
    stack.spark_rpc_security_conf(tmp_path / "a")
    stack.spark_rpc_security_conf(tmp_path / "b")
    assert secret_of(tmp_path / "a") != secret_of(tmp_path / "b")


def test_a_loosened_mode_is_tightened_again(tmp_path):
    path = stack.spark_rpc_security_conf(tmp_path)
    path.chmod(0o644)
    stack.spark_rpc_security_conf(tmp_path)
    assert mode(path) == 0o600


def test_an_older_file_gets_the_current_properties_and_keeps_its_secret(tmp_path):
    # A file from an earlier version of the stack (here: authentication without encryption) follows the code.
    path = tmp_path / stack.SPARK_DEFAULTS_FILE
    path.write_text(f"spark.authenticate true\n{stack.SPARK_AUTH_SECRET}=kept-secret\n")
    stack.spark_rpc_security_conf(tmp_path)
    props = stack.read_properties(path)
    assert props == {**stack.SPARK_RPC_SECURITY, stack.SPARK_AUTH_SECRET: "kept-secret"}
    assert mode(path) == 0o600


def test_compose_s_init_step_writes_the_same_file_and_never_prints_the_secret(tmp_path, capsys):
    assert stack.main(["cluster-secrets", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert "spark-defaults.conf" in out.out
    assert secret_of(tmp_path) not in out.out + out.err


@pytest.fixture
def scratch_stack(tmp_path, monkeypatch) -> dict[str, list]:
    """stack.start_spark with every directory in tmp_path and the processes recorded instead of started."""
    for name in ("LOGS", "RUN", "DATA", "CONF"):
        monkeypatch.setattr(stack, name, tmp_path / name.lower())
        (tmp_path / name.lower()).mkdir()
    started: dict[str, list] = {"names": [], "cmds": [], "envs": []}

    def spawn(name: str, cmd: list[str], env: dict[str, str] | None = None) -> int:
        started["names"].append(name)
        started["cmds"].append(cmd)
        started["envs"].append(env or {})
        return 1

    monkeypatch.setattr(stack, "spawn", spawn)
    monkeypatch.setattr(stack, "require_free", lambda *_: None)
    monkeypatch.setattr(stack, "wait_until", lambda *_, **__: None)
    return started


def test_master_and_worker_read_authentication_from_the_conf_dir_and_get_no_secret_as_an_argument(scratch_stack):
    stack.start_spark(stack.settings())

    assert scratch_stack["names"] == ["spark-master", "spark-worker"]
    conf_dir = Path(scratch_stack["envs"][0]["SPARK_CONF_DIR"])
    secret = secret_of(conf_dir)
    assert stack.read_properties(conf_dir / stack.SPARK_DEFAULTS_FILE)["spark.authenticate"] == "true"
    assert mode(conf_dir / stack.SPARK_DEFAULTS_FILE) == 0o600
    for cmd, env in zip(scratch_stack["cmds"], scratch_stack["envs"]):
        assert env["SPARK_CONF_DIR"] == str(conf_dir)  # spark-class loads its spark-defaults.conf
        for text in [*cmd, *env.values()]:
            assert secret not in text
            assert not any(word in text for word in SECURITY_WORDS), text


def test_a_master_started_before_authentication_keeps_its_clients_unauthenticated(scratch_stack, monkeypatch):
    # Authenticating clients could not talk to it; the file appears when the master is next restarted.
    monkeypatch.setattr(stack, "read_pid", lambda path: 1 if path.name == "spark-master.pid" else None)
    monkeypatch.setattr(stack, "pid_alive", lambda pid: pid == 1)
    monkeypatch.setattr(stack, "master_state", lambda _: {"status": "ALIVE", "workers": []})

    stack.start_spark(stack.settings())

    assert scratch_stack["names"] == ["spark-worker"]
    assert not (Path(scratch_stack["envs"][0]["SPARK_CONF_DIR"]) / stack.SPARK_DEFAULTS_FILE).exists()


def test_submit_reads_the_stack_s_conf_dir_and_passes_no_security_flag(tmp_path):
    # A stand-in spark-submit records what submit.sh hands it: the arguments and the conf dir it will read.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    record = tmp_path / "record"
    fake = fake_bin / "spark-submit"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$SPARK_CONF_DIR" "$@" > {record}\n')
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_CONF_DIR", "SPARK_SUBMIT_OPTS_EXTRA")}
    env.update(PATH=f"{fake_bin}{os.pathsep}{env['PATH']}", SPARKTRENDS_STACK_DIR=str(tmp_path / "stack"))

    result = subprocess.run(
        [str(REPO / "scripts" / "submit.sh"), "smoke_kafka_to_postgres"], env=env, capture_output=True, text=True
    )

    assert result.returncode == 0, result.stderr
    conf_dir, *args = record.read_text().splitlines()
    # The same directory stack.spark_env gives the master and the worker.
    assert conf_dir == str(tmp_path / "stack" / stack.CONF.relative_to(stack.STACK) / "spark")
    assert not any(word in arg for arg in args for word in SECURITY_WORDS), args
