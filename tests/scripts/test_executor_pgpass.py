"""The executors' PostgreSQL password file (scripts/stack.py executor_pgpass): private from the first byte, one
line in the format libpq and pgjdbc read, with ":" and "\\" escaped; and compose's init step writes it from the
environment."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

import stack


def test_the_file_is_private_and_escapes_separators(tmp_path):
    path = stack.executor_pgpass(tmp_path / "conf", "127.0.0.1", 55432, "app", r"pa:ss\word")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "127.0.0.1:55432:*:app:pa\\:ss\\\\word\n"
    assert not list((tmp_path / "conf").glob(".*")), "no temporary file left behind"


def test_compose_init_step_writes_it_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("POSTGRES_HOST", "postgres")
    monkeypatch.setenv("POSTGRES_PORT", "5432")
    monkeypatch.setenv("SPARKTRENDS_APP_USER", "sparktrends_app")
    monkeypatch.setenv("SPARKTRENDS_APP_PASSWORD", "s3cret")
    assert stack.main(["cluster-secrets", str(tmp_path)]) == 0
    assert (tmp_path / stack.PGPASS_FILE).read_text() == "postgres:5432:*:sparktrends_app:s3cret\n"
    assert stat.S_IMODE((tmp_path / stack.SPARK_DEFAULTS_FILE).stat().st_mode) == 0o600
