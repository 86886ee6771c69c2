"""Routing's domain metrics, registered on the service runtime's registry.

Counted after commit, so a redelivered or duplicate event is never counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass(frozen=True)
class RoutingMetrics:
    routed: Counter
    triage: Counter
    suggested: Counter
    duplicate_suspected: Counter
    decision_seconds: Histogram

    @classmethod
    def register(cls, registry: CollectorRegistry) -> RoutingMetrics:
        return cls(
            routed=Counter("sp4n_complaints_routed", "Complaints routed to an OPD by a rule",
                           ["opd"], registry=registry),
            triage=Counter("sp4n_complaints_triage",
                           "Complaints sent to the admin koordinator's triage queue",
                           registry=registry),
            suggested=Counter("sp4n_complaints_routing_suggested",
                              "Complaints whose matching rule only suggests an OPD (auto_dispose off);"
                              " the admin koordinator decides", ["opd"], registry=registry),
            duplicate_suspected=Counter(
                "sp4n_complaints_duplicate_suspected",
                "Complaints flagged as possible duplicates (same category and desa within the window)",
                registry=registry),
            decision_seconds=Histogram(
                "sp4n_routing_decision_seconds",
                "Time to decide and store one routing decision (rules, transaction, outbox)",
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
                registry=registry),
        )
