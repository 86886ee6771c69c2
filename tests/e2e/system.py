"""Start sp4n services as real processes for end-to-end tests.

``Processes`` is what every such test shares: named processes (a service's name, or a
replica's: ``intake-0``), each on its own port with a log file of its own, that can be waited
for, killed (SIGKILL: no graceful shutdown) and restarted on the same port as a supervisor
would. ``RunningSystem`` runs one process per service (``start``); ``tests.faults.cluster``
runs replicas.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def settings_env(settings: Settings, **extra: object) -> dict[str, str]:
    """The environment a service process needs to see ``settings`` (plus overrides)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SP4N_")}
    values = settings.model_dump() | extra
    for key, value in values.items():
        if value is not None:
            # A settings section (nested model) travels as JSON, which pydantic-settings parses.
            env[f"SP4N_{key.upper()}"] = json.dumps(value) if isinstance(value, dict) else str(value)
    env["PYTHONPATH"] = str(ROOT)
    return env


@dataclass
class Processes(ABC):
    settings: Settings
    log_dir: Path
    ports: dict[str, int] = field(default_factory=dict)  # process name → port
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def service_of(self, name: str) -> str:
        return name

    @abstractmethod
    def env_of(self, name: str) -> dict[str, str]:
        """The environment process ``name`` starts with."""

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def log(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 40) -> str:
        return "\n".join(self.log(name).read_text(errors="replace").splitlines()[-lines:])

    def launch(self, name: str) -> None:
        env = self.env_of(name)
        env["SP4N_HOST"] = "127.0.0.1"
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.service_of(name)}"], env=env, cwd=ROOT,
            stdout=self.log(name).open("ab"), stderr=subprocess.STDOUT)

    def wait_ready(self, names: list[str], timeout: float = 120) -> None:
        """Until each of ``names`` answers 200 on ``/readyz``; raises, with its log's tail,
        when one exits or is not ready within ``timeout`` seconds (for all of them)."""
        deadline = time.monotonic() + timeout
        for name in names:
            while True:
                if self.procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited:\n{self.log_tail(name)}")
                try:
                    if httpx.get(f"{self.url(name)}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} not ready in {timeout}s:\n{self.log_tail(name)}")
                time.sleep(0.2)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def restart(self, name: str, timeout: float = 120) -> None:
        # Generous: on a loaded 2-core machine a Python service can take a minute to import.
        assert self.procs[name].poll() is not None, f"{name} is still running"
        self.launch(name)
        self.wait_ready([name], timeout)

    def alive(self) -> dict[str, bool]:
        return {n: p.poll() is None for n, p in self.procs.items()}

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def start_all(self, timeout: float) -> None:
        """Launch every process and wait until each is ready; all are stopped if one is not."""
        try:
            for name in self.ports:
                self.launch(name)
            self.wait_ready(list(self.ports), timeout)
        except BaseException:
            self.stop()
            raise


@dataclass
class RunningSystem(Processes):
    """One process per service, named by the service. Each sees every service's port, the
    shared ``extra`` settings and its own ``env_by_service`` variables."""

    extra: dict[str, object] = field(default_factory=dict)
    env_by_service: dict[str, dict[str, str]] = field(default_factory=dict)

    def env_of(self, name: str) -> dict[str, str]:
        env = settings_env(self.settings, **{f"{svc}_port": p for svc, p in self.ports.items()},
                           **self.extra)
        return env | self.env_by_service.get(name, {})


def start(settings: Settings, services: list[str], log_dir: Path, ready_timeout: float = 40,
          env_of: dict[str, dict[str, str]] | None = None, **extra: object) -> RunningSystem:
    """Start ``services`` as processes; ``env_of`` adds variables per service (its own
    credentials: ``SP4N_DATABASE_URL``, ``SP4N_AMQP_URL``, …) over the shared ones."""
    system = RunningSystem(settings, log_dir, {svc: free_port() for svc in services},
                           extra=extra, env_by_service=env_of or {})
    system.start_all(ready_timeout)
    return system
