"""Bounded log files for the local stack and the pipeline runner (.stack/logs).

Every process there writes its log through a file opened for appending (scripts/stack.py spawn, pg_ctl -l,
scripts/pipeline.py), so a log can be rotated by copying it aside and truncating it in place: the writer goes
on at the new end without being told (logrotate's copytruncate). Lines written between the copy and the
truncation are lost; at one check a minute that is a window of microseconds. Compose bounds container logs
with its logging driver instead (docker-compose.yml).
"""

from __future__ import annotations

import shutil
from pathlib import Path

# A log is rotated once it reaches MAX_BYTES; KEEP rotated copies (<name>.log.1 newest ... .KEEP oldest) stay,
# so one service's logs take at most (KEEP + 1) x MAX_BYTES: the same bound as the executors' logs
# (scripts/submit.sh rolls them at 10 MB, five kept).
MAX_BYTES = 10 * 1024 * 1024
KEEP = 5


def rotate(directory: Path, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> list[Path]:
    """Rotates every `*.log` in `directory` that has reached `max_bytes`; returns the rotated logs."""
    rotated = []
    for path in sorted(directory.glob("*.log")):
        try:
            if path.stat().st_size < max_bytes:
                continue
        except FileNotFoundError:
            continue
        for generation in range(keep - 1, 0, -1):
            older = path.with_name(f"{path.name}.{generation}")
            if older.exists():
                older.replace(path.with_name(f"{path.name}.{generation + 1}"))
        shutil.copyfile(path, path.with_name(f"{path.name}.1"))
        with path.open("r+b") as log:
            log.truncate(0)
        rotated.append(path)
    return rotated
