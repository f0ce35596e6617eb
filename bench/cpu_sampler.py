"""Where a benchmark's CPU goes: every process of this machine sampled from /proc while it runs, its CPU time summed
per component (a job's driver and executor, their JIT and GC threads, the executor's Python workers, ingest, the
broker, PostgreSQL). The profile that found issue 16's C2 recompiling and the provider job's wasted admission.

Linux only: it reads /proc/<pid>/stat, cmdline and task/<tid>/comm. A process is sampled every `interval_s`, so one
that lives less than that may be missed, and up to `interval_s` of a process's last CPU time before it exits.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# JVM threads whose CPU is the runtime's, not the job's work.
JVM_OVERHEAD = {"C1 CompilerThre": "JIT", "C2 CompilerThre": "JIT", "GC Thread": "GC", "G1 Conc": "GC",
                "G1 Refine": "GC", "G1 Main Marker": "GC", "G1 Young RemSet": "GC", "G1 Service": "GC"}  # fmt: skip


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None


def _stat(path: str) -> tuple[int, int] | None:
    """(parent pid, CPU ticks: user + system) of a /proc stat file."""
    text = _read(path)
    if text is None:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])


class CpuSampler:
    """Context manager: samples until exit; `seconds()` is CPU seconds per component over the window.

    `apps` names Spark applications by their id (app-...), so executors and their Python workers are named after
    their job. A sample reads about a thousand small files: once a second costs about 2% of a core."""

    def __init__(self, apps: dict[str, str] | None = None, interval_s: float = 1.0) -> None:
        self.apps = apps or {}
        self.interval_s = interval_s
        self._first: dict[tuple[int, int], int] = {}
        self._last: dict[tuple[int, int], tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def __enter__(self) -> CpuSampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _label(self, pid: int, parents: dict[int, int], commands: dict[int, str]) -> str | None:
        """The component a process belongs to, from its command line or its nearest labelled ancestor's."""
        command = commands.get(pid, "")
        if match := re.search(r"CoarseGrainedExecutorBackend.*--app-id (\S+)", command):
            return f"{self.apps.get(match.group(1), match.group(1))} executor"
        if match := re.search(r"SparkSubmit .*?(\w+)\.py(?:\s|$)", command):
            return f"{match.group(1)} driver"
        if "kafka.Kafka" in command:
            return "kafka broker"
        if "sparktrends-ingest" in command:
            return "ingest"
        if command.startswith("postgres"):
            return "postgres"
        parent = parents.get(pid)
        if parent and parent != pid and parent in commands:
            above = self._label(parent, parents, commands)
            if above and above.endswith(" executor"):
                return above.removesuffix(" executor") + " Python workers"
            return above
        return None

    def _sample(self) -> None:
        parents, commands = {}, {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (stat := _stat(f"/proc/{entry}/stat")) is not None:
                parents[int(entry)] = stat[0]
                commands[int(entry)] = (_read(f"/proc/{entry}/cmdline") or "").replace("\0", " ")
        for pid in parents:
            label = self._label(pid, parents, commands)
            if label is None:
                continue
            java = "java" in commands[pid].split(" ", 1)[0]
            for tid in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []:
                stat = _stat(f"/proc/{pid}/task/{tid}/stat")
                if stat is None:
                    continue
                name = (_read(f"/proc/{pid}/task/{tid}/comm") or "").strip()
                overhead = next((kind for prefix, kind in JVM_OVERHEAD.items() if name.startswith(prefix)), None)
                component = f"{label} {overhead}" if java and overhead else label
                key = (pid, int(tid))
                self._first.setdefault(key, stat[1])
                self._last[key] = (component, stat[1])

    def seconds(self) -> dict[str, float]:
        """CPU seconds per component over the window, largest first."""
        total: Counter[str] = Counter()
        for key, (component, ticks) in self._last.items():
            total[component] += (ticks - self._first[key]) / TICKS_PER_S
        return {name: round(s, 1) for name, s in total.most_common() if s >= 0.1}

    def summary(self, wall_s: float) -> str:
        """One line: CPU seconds by component, and the share of the cores none of them used."""
        spent = self.seconds()
        cores = os.cpu_count() or 1
        unused = max(0.0, 1 - sum(spent.values()) / (wall_s * cores))
        parts = ", ".join(f"{name} {s:.1f}" for name, s in spent.items())
        return f"CPU seconds over {wall_s:.1f} s on {cores} cores ({unused:.0%} unused by these): {parts}"


def sleep_then_report(seconds: float) -> None:
    """A look at the machine for `seconds`: python bench/cpu_sampler.py 30"""
    with CpuSampler() as sampler:
        time.sleep(seconds)
    print(sampler.summary(seconds))


if __name__ == "__main__":
    import sys

    sleep_then_report(float(sys.argv[1]) if len(sys.argv) > 1 else 30.0)
