"""The native module's type stubs (python/sparktrends/_native.pyi) match what the module really exports: names,
signatures, classes (mypy's stubtest against the installed wheel), and the typed package passes mypy --strict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args, "--config-file" if args[0] == "mypy" else "--mypy-config-file",
         str(REPO / "pyproject.toml")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip


def test_stubs_match_the_native_module():
    result = run_mypy("mypy.stubtest", "sparktrends._native")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_python_package_is_strictly_typed():
    result = run_mypy("mypy", "-p", "sparktrends")
    assert result.returncode == 0, result.stdout + result.stderr
