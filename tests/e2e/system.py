"""Start sp4n services as real processes for end-to-end tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
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
class RunningSystem:
    settings: Settings
    ports: dict[str, int]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def log_tail(self, service: str, lines: int = 40) -> str:
        return "\n".join(self.logs[service].read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def start(settings: Settings, services: list[str], log_dir: Path, ready_timeout: float = 40,
          env_of: dict[str, dict[str, str]] | None = None, **extra: object) -> RunningSystem:
    """Start ``services`` as processes; ``env_of`` adds variables per service (its own
    credentials: ``SP4N_DATABASE_URL``, ``SP4N_AMQP_URL``, …) over the shared ones."""
    ports = {svc: free_port() for svc in services}
    system = RunningSystem(settings, ports)
    env = settings_env(settings, **{f"{svc}_port": port for svc, port in ports.items()}, **extra)
    env["SP4N_HOST"] = "127.0.0.1"
    for svc in services:
        log = log_dir / f"{svc}.log"
        system.logs[svc] = log
        system.procs[svc] = subprocess.Popen(
            [sys.executable, "-m", f"services.{svc}"], env=env | (env_of or {}).get(svc, {}),
            cwd=ROOT,
            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + ready_timeout
    for svc in services:
        while True:
            if system.procs[svc].poll() is not None:
                system.stop()
                raise RuntimeError(f"{svc} exited early:\n{system.log_tail(svc)}")
            try:
                if httpx.get(f"{system.url(svc)}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                system.stop()
                raise RuntimeError(f"{svc} not ready in {ready_timeout}s:\n{system.log_tail(svc)}")
            time.sleep(0.2)
    return system
