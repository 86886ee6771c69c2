"""The process supervisor of ``sp4n run all``: one child process per service; a child that
dies is restarted with exponential backoff while the others keep running; ``stop`` ends
them all gracefully (SIGTERM, then SIGKILL after a timeout).

Invariants:
- A child exit is never a reason to stop the others: only ``stop`` (Ctrl-C, SIGTERM) is.
- The delay before a restart doubles with each exit in a row (``backoff_s`` … ``backoff_max_s``);
  a child that ran for ``stable_s`` before it exited starts the series again.
- Every exit is reported with the service, its exit code (negative: the signal) and the delay.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Exit:
    service: str
    returncode: int
    restart_in_s: float


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class _Child:
    command: Sequence[str]
    env: dict[str, str] | None = None  # None: this process's environment
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    exits_in_a_row: int = 0
    restart_at: float | None = None


class Supervisor:
    def __init__(self, commands: Mapping[str, Sequence[str]], *, stop_timeout_s: float,
                 backoff_s: float = 1.0, backoff_max_s: float = 30.0, stable_s: float = 60.0,
                 poll_s: float = 0.2, report: Callable[[str], None] = _stderr,
                 envs: Mapping[str, Mapping[str, str]] | None = None) -> None:
        given = envs or {}
        self._children = {svc: _Child(list(cmd), dict(given[svc]) if svc in given else None)
                          for svc, cmd in commands.items()}
        self._stop_timeout_s = stop_timeout_s
        self._backoff_s = backoff_s
        self._backoff_max_s = backoff_max_s
        self._stable_s = stable_s
        self._poll_s = poll_s
        self._report = report
        self._stopping = threading.Event()
        self.exits: list[Exit] = []

    def pids(self) -> dict[str, int | None]:
        """The running child of each service (None while it waits for its restart)."""
        return {svc: c.proc.pid if c.proc is not None and c.proc.poll() is None else None
                for svc, c in self._children.items()}

    def stop(self) -> None:
        """Ask ``run`` to stop every child gracefully and return (safe from a signal handler)."""
        self._stopping.set()

    def delay(self, exits_in_a_row: int) -> float:
        return float(min(self._backoff_max_s, self._backoff_s * 2 ** (exits_in_a_row - 1)))

    def run(self) -> int:
        for svc in self._children:
            self._start(svc)
        self._report(f"running {', '.join(f'{s} (pid {p})' for s, p in self.pids().items())};"
                     " Ctrl-C stops all")
        while not self._stopping.wait(self._poll_s):
            now = time.monotonic()
            for svc, child in self._children.items():
                if child.proc is not None and (code := child.proc.poll()) is not None:
                    self._exited(svc, child, code, now)
                elif child.restart_at is not None and now >= child.restart_at:
                    self._start(svc)
                    self._report(f"{svc} restarted (pid {self.pids()[svc]})")
        self._stop_all()
        return 0

    def _start(self, svc: str) -> None:
        child = self._children[svc]
        child.proc = subprocess.Popen(child.command, env=child.env)
        child.started_at = time.monotonic()
        child.restart_at = None

    def _exited(self, svc: str, child: _Child, code: int, now: float) -> None:
        child.proc = None
        ran_s = now - child.started_at
        child.exits_in_a_row = 1 if ran_s >= self._stable_s else child.exits_in_a_row + 1
        delay = self.delay(child.exits_in_a_row)
        child.restart_at = now + delay
        self.exits.append(Exit(svc, code, delay))
        self._report(f"{svc} exited with {code} after {ran_s:.1f}s; restarting in {delay:g}s"
                     " (the others keep running)")

    def _stop_all(self) -> None:
        running = [c.proc for c in self._children.values()
                   if c.proc is not None and c.proc.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self._stop_timeout_s
        for proc in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
