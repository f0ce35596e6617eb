"""Build one of the workspace's binaries and return its path: the one place that knows where cargo puts them.

Tests use the debug profile (`cargo test` has already compiled the dependencies that way); `make run` and the
benchmarks use release. The target folder is cargo's own answer, so CARGO_TARGET_DIR is honoured.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT_S = 1800


class BuildError(RuntimeError):
    """cargo build failed; the message ends with the tail of its output."""


def target_dir() -> Path:
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return Path(json.loads(out.stdout)["target_directory"])


def build(package: str, release: bool = True) -> Path:
    """`cargo build -p package` (quietly, output kept for the error) and the binary's path."""
    command = ["cargo", "build", "--quiet", "-p", package, *(["--release"] if release else [])]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    if result.returncode != 0:
        raise BuildError(f"{' '.join(command)} failed:\n{result.stderr[-4000:]}")
    binary = target_dir() / ("release" if release else "debug") / package
    if not binary.exists():
        raise BuildError(f"{' '.join(command)} succeeded but {binary} does not exist")
    return binary


def installed_or_built(package: str) -> str:
    """The binary on PATH (the container image installs it), else this checkout's release build."""
    return shutil.which(package) or str(build(package))
