"""Several replicas of every sp4n service as real processes, each on its own port, all with
the same settings (the same database and broker, usually reached through fault proxies).

Replicas are named ``intake-0``, ``intake-1``, …; ``kill`` sends SIGKILL (no graceful
shutdown) and ``restart`` starts the replica again on its port, as a supervisor would
(``tests.e2e.system.Processes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shared.settings import Settings
from tests.e2e.system import Processes, free_port, settings_env

SERVICES = ("intake", "routing", "sla", "notify")


@dataclass
class Cluster(Processes):
    extra: dict[str, object] = field(default_factory=dict)

    def service_of(self, name: str) -> str:
        return name.rpartition("-")[0]

    def env_of(self, name: str) -> dict[str, str]:
        return settings_env(self.settings, **{f"{self.service_of(name)}_port": self.ports[name]},
                            **self.extra)

    def replicas(self, service: str) -> list[str]:
        return sorted(r for r in self.ports if self.service_of(r) == service)

    def urls(self, service: str) -> list[str]:
        return [self.url(r) for r in self.replicas(service)]


def start_cluster(settings: Settings, log_dir: Path, *, replicas: int = 2,
                  services: tuple[str, ...] = SERVICES, ready_timeout: float = 90,
                  **extra: object) -> Cluster:
    """Start ``replicas`` processes of each service and wait until every one is ready."""
    cluster = Cluster(settings, log_dir, {f"{svc}-{i}": free_port() for svc in services
                                          for i in range(replicas)}, extra=extra)
    cluster.start_all(ready_timeout)
    return cluster
