"""Several replicas of every sp4n service as real processes, each on its own port, all with
the same settings (the same database and broker, usually reached through fault proxies).

Replicas are named ``intake-0``, ``intake-1``, …; ``kill`` sends SIGKILL (no graceful
shutdown) and ``restart`` starts the replica again on its port, as a supervisor would.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.settings import Settings
from tests.e2e.system import ROOT, free_port, settings_env

SERVICES = ("intake", "routing", "sla", "notify")


@dataclass
class Cluster:
    settings: Settings
    log_dir: Path
    extra: dict[str, object]
    ports: dict[str, int] = field(default_factory=dict)  # replica name → port
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def replicas(self, service: str) -> list[str]:
        return sorted(r for r in self.ports if r.rpartition("-")[0] == service)

    def urls(self, service: str) -> list[str]:
        return [self.url(r) for r in self.replicas(service)]

    def url(self, replica: str) -> str:
        return f"http://127.0.0.1:{self.ports[replica]}"

    def log(self, replica: str) -> Path:
        return self.log_dir / f"{replica}.log"

    def log_tail(self, replica: str, lines: int = 30) -> str:
        return "\n".join(self.log(replica).read_text(errors="replace").splitlines()[-lines:])

    def launch(self, replica: str) -> None:
        service = replica.rpartition("-")[0]
        env = settings_env(self.settings, **{f"{service}_port": self.ports[replica]}, **self.extra)
        env["SP4N_HOST"] = "127.0.0.1"
        self.procs[replica] = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"], env=env, cwd=ROOT,
            stdout=self.log(replica).open("ab"), stderr=subprocess.STDOUT)

    def wait_ready(self, replicas: list[str], timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        for replica in replicas:
            while True:
                if self.procs[replica].poll() is not None:
                    raise RuntimeError(f"{replica} exited:\n{self.log_tail(replica)}")
                try:
                    if httpx.get(f"{self.url(replica)}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{replica} not ready in {timeout}s:\n{self.log_tail(replica)}")
                time.sleep(0.2)

    def kill(self, replica: str) -> None:
        proc = self.procs[replica]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def restart(self, replica: str, timeout: float = 120) -> None:
        # Generous: on a loaded 2-core machine a Python service can take a minute to import.
        assert self.procs[replica].poll() is not None, f"{replica} is still running"
        self.launch(replica)
        self.wait_ready([replica], timeout)

    def alive(self) -> dict[str, bool]:
        return {r: p.poll() is None for r, p in self.procs.items()}

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


def start_cluster(settings: Settings, log_dir: Path, *, replicas: int = 2,
                  services: tuple[str, ...] = SERVICES, ready_timeout: float = 90,
                  **extra: object) -> Cluster:
    """Start ``replicas`` processes of each service and wait until every one is ready."""
    cluster = Cluster(settings, log_dir, extra)
    for service in services:
        for i in range(replicas):
            cluster.ports[f"{service}-{i}"] = free_port()
    try:
        for replica in cluster.ports:
            cluster.launch(replica)
        cluster.wait_ready(list(cluster.ports), ready_timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster
