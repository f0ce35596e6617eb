"""Build one of the workspace's binaries and return its path: the one place that knows where cargo puts them.

Tests use the debug profile (`cargo test` has already compiled the dependencies that way); `make run` and the
benchmarks use release. The target folder is cargo's own answer, so CARGO_TARGET_DIR is honoured.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT_S = 1800
QUIET_BUILD_S = 3.0  # an up-to-date build returns within this and says nothing
PROGRESS_EVERY_S = 30.0


def say(line: str) -> None:
    print(f"cargo: {line}", file=sys.stderr, flush=True)


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
    """`cargo build -p package` (quietly, output kept for the error) and the binary's path. A build that takes
    more than a few seconds says so on stderr, and again every 30 s: a fresh clone's first release build takes
    minutes, and a silent terminal looks hung."""
    command = ["cargo", "build", "--quiet", "-p", package, *(["--release"] if release else [])]
    profile = "release" if release else "debug"
    started = time.monotonic()
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=errors)
        announced = False
        while proc.poll() is None:
            waited = time.monotonic() - started
            if waited > BUILD_TIMEOUT_S:
                proc.kill()
                raise BuildError(f"{' '.join(command)} took more than {BUILD_TIMEOUT_S} s")
            if not announced and waited >= QUIET_BUILD_S:
                say(f"building {package} ({profile}); a fresh clone's first build takes several minutes")
                announced, last_word = True, waited
            elif announced and waited - last_word >= PROGRESS_EVERY_S:
                say(f"still building {package} ({profile}): {waited:.0f} s")
                last_word = waited
            time.sleep(0.5)
        errors.seek(0)
        stderr = errors.read().decode(errors="replace")
    if announced:
        say(f"built {package} ({profile}) in {time.monotonic() - started:.0f} s")
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(command)} failed:\n{stderr[-4000:]}")
    binary = target_dir() / ("release" if release else "debug") / package
    if not binary.exists():
        raise BuildError(f"{' '.join(command)} succeeded but {binary} does not exist")
    return binary


def installed_or_built(package: str) -> str:
    """The binary on PATH (the container image installs it), else this checkout's release build."""
    return shutil.which(package) or str(build(package))
