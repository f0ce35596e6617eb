"""One notion of a service for everything that starts and watches processes: the stack CLI (PostgreSQL, Kafka,
the Spark master and worker), the pipeline runner (`make run`, compose's runner), the test fixtures and the
benchmarks.

A `Service` starts, stops, says whether it is alive, checks its health and describes itself in one line.
- `ProcessService` is a child process in a process group of its own (a stop reaches spark-submit's JVM and
  its Python driver alike), its output appended to a log file, or handed line by line to a callback (what tests
  and benchmarks parse), or both.
- The stack's daemons (scripts/stack.py `DAEMONS`) outlive the command that starts them; they are services
  whose start, stop and health are the stack's own functions.
- `Supervisor` keeps a set of services running: a service that dies is started again after a backoff that
  doubles with each quick death, with one line per death; one that finishes (exit 0) is left alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

BACKOFF_INITIAL_S = 1.0
BACKOFF_MAX_S = 60.0
# Up this long, a service counts as healthy again: its next death restarts it after the initial backoff.
STABLE_AFTER_S = 300.0


@dataclass(frozen=True)
class Health:
    up: bool
    detail: str  # what a person needs to know: "accepting connections", "exited 1", "port 9092 is taken by ..."


class Service(Protocol):
    name: str

    def start(self, env: Mapping[str, str] | None = None) -> None: ...

    def stop(self, grace: float = 30.0) -> bool: ...

    def alive(self) -> bool: ...

    def health(self) -> Health: ...

    def describe(self) -> str: ...


class ProcessService:
    """A child process in its own process group. Its output goes to `log_path` (appended) and, when `on_line`
    is given, line by line to it as well; its stderr goes with it unless `stderr_path` keeps it apart."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        *,
        log_path: Path | None = None,
        on_line: Callable[[str], None] | None = None,
        stderr_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name, self.cmd, self.log_path, self.on_line, self.cwd = name, list(cmd), log_path, on_line, cwd
        self.stderr_path = stderr_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def start(self, env: Mapping[str, str] | None = None) -> None:
        log: IO[bytes] | None = self.log_path.open("ab") if self.log_path else None
        errors: IO[bytes] | None = self.stderr_path.open("ab") if self.stderr_path else None
        piped = self.on_line is not None
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=subprocess.PIPE if piped else (log or subprocess.DEVNULL),
            stderr=errors or subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=self.cwd,
            start_new_session=True,
        )
        self.started_at = time.monotonic()
        if errors is not None:
            errors.close()  # the child holds its own descriptor
        if piped:
            threading.Thread(
                target=self._follow, args=(self.proc, log), name=f"{self.name}-output", daemon=True
            ).start()
        elif log is not None:
            log.close()  # the child holds its own descriptor

    def _follow(self, proc: subprocess.Popen[bytes], log: IO[bytes] | None) -> None:
        assert proc.stdout is not None and self.on_line is not None
        for raw in proc.stdout:
            if log is not None:
                log.write(raw)
                log.flush()
            self.on_line(raw.decode(errors="replace").rstrip("\n"))
        if log is not None:
            log.close()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 30.0) -> bool:
        """SIGTERM to the process group, SIGKILL after `grace` seconds; True if it was running."""
        return self._end(signal.SIGTERM, grace)

    def kill(self) -> bool:
        """kill -9 of the whole process group, as a crash would."""
        return self._end(signal.SIGKILL, 10.0)

    def _end(self, sig: int, grace: float) -> bool:
        if not self.alive():
            return False
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(grace)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        return True

    def health(self) -> Health:
        if self.proc is None:
            return Health(False, "not started")
        code = self.proc.poll()
        return (
            Health(True, f"running for {time.monotonic() - self.started_at:.0f}s")
            if code is None
            else Health(False, f"exited {code}")
        )

    def describe(self) -> str:
        where = f", log {self.log_path}" if self.log_path else ""
        return f"{self.name} (pid {self.pid or '-'}: {' '.join(self.cmd[:2])} ...){where}"


@dataclass
class _Watch:
    service: ProcessService
    restarts: int = 0  # quick deaths in a row: the exponent of the next backoff
    restart_at: float | None = None  # when a dead service is due to start again
    finished: bool = False  # exited 0: done, not restarted


class Supervisor:
    """Keeps `services` running in `env`: `tick()` (call it every second or so) starts a dead one again after its
    backoff and says so, once per death, through `say`."""

    def __init__(
        self, services: Sequence[ProcessService], env: Mapping[str, str], say: Callable[[str], None] = print
    ) -> None:
        self.watches = [_Watch(s) for s in services]
        self.env, self.say = env, say

    def start(self) -> None:
        for watch in self.watches:
            watch.service.start(self.env)
            self.say(f"started {watch.service.describe()}")

    def dead(self) -> list[ProcessService]:
        """Services that died and are not finished (exit 0)."""
        return [w.service for w in self.watches if not w.service.alive() and not w.finished and w.service.proc]

    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for watch in self.watches:
            service = watch.service
            if service.alive() or watch.finished or service.proc is None:
                continue
            if watch.restart_at is None:
                code = service.returncode
                if code == 0:
                    watch.finished = True
                    self.say(f"{service.name} finished (exit 0); not restarted")
                    continue
                if now - service.started_at >= STABLE_AFTER_S:
                    watch.restarts = 0
                delay = min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2**watch.restarts)
                watch.restart_at = now + delay
                where = f"; see {service.log_path}" if service.log_path else ""
                self.say(f"{service.name} exited ({code}); restart {watch.restarts + 1} in {delay:.0f}s{where}")
            elif now >= watch.restart_at:
                watch.restarts += 1
                watch.restart_at = None
                service.start(self.env)
                self.say(f"restarted {service.describe()}")

    def stop(self, grace: float = 60.0) -> None:
        """Stops every service, the last started first."""
        for watch in reversed(self.watches):
            if watch.service.stop(grace):
                self.say(f"stopped {watch.service.name}")
